"""PNG figures (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def learning_curves(records: Sequence[dict], path: Path, title: str, reference: float | None = None) -> None:
    """Train and test error (log scale) and test accuracy against epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in records]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [100 * r["train_error"] for r in records], "o-", label="train error")
    ax1.plot(epochs, [100 * r["test_error"] for r in records], "s-", label="test error")
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("error (%)")
    ax1.legend()
    ax1.grid(alpha=0.3, which="both")
    ax2.plot(epochs, [100 * r["test_accuracy"] for r in records], "s-", color="C1", label="test accuracy")
    if reference is not None:
        ax2.axhline(100 * reference, color="k", ls="--", lw=1, label=f"paper target {100 * reference:.1f} %")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("test accuracy (%)")
    ax2.legend()
    ax2.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def spike_raster(raster: dict, path: Path, title: str, label: int, n_show: int = 80) -> None:
    """Raster of one example: input pixels (the most active), hidden neurons (the most active)
    and all outputs, through the free and nudged phases, phases separated by lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    phases = list(raster)
    steps = [len(raster[p]) for p in phases]
    n_layers = len(raster[phases[0]][0])
    names = ["input"] + [f"hidden {i}" for i in range(1, n_layers - 1)] + ["output"]
    fig, axes = plt.subplots(n_layers, 1, figsize=(10, 2.2 * n_layers), sharex=True,
                             gridspec_kw={"height_ratios": [3] * (n_layers - 1) + [1.2]})
    for layer, ax in enumerate(axes):
        trains = np.concatenate([np.stack([np.asarray(s[layer])[0] for s in raster[p]]) for p in phases])
        if layer < n_layers - 1:
            keep = np.argsort(-trains.sum(axis=0), kind="stable")[:n_show]
            trains = trains[:, np.sort(keep)]
        t, neuron = np.nonzero(trains)
        ax.scatter(t, neuron, s=2, marker="|", color="k")
        ax.set_ylabel(f"{names[layer]}\n({trains.shape[1]} shown)")
        edge = 0
        for p, n in zip(phases, steps):
            ax.axvline(edge, color="C3", lw=0.8)
            if layer == 0:
                ax.text(edge + n / 2, trains.shape[1] * 1.02, p, ha="center", va="bottom", fontsize=8)
            edge += n
        if layer == n_layers - 1:
            ax.set_yticks(range(trains.shape[1]))
            ax.axhline(label, color="C2", lw=4, alpha=0.3)
    axes[-1].set_xlabel("time step (free phase, then each nudged phase from the free state)")
    fig.suptitle(f"{title} (label {label}: green band)", y=1.0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def energy_chart(rows: Sequence[dict], presets: dict, path: Path, paper_inference: float,
                 paper_training: float) -> None:
    """Left: energy per inference and per training example of every preset (log scale).
    Right: GPU / neuromorphic energy ratio of every pair, the paper's ratios marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(presets)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [1, 1.6]})
    xs = np.arange(len(names))
    ax1.bar(xs - 0.2, [presets[n]["inference_j"] for n in names], 0.4, label="per inference")
    ax1.bar(xs + 0.2, [presets[n]["training_j"] for n in names], 0.4, label="per training example")
    ax1.set_yscale("log")
    ax1.set_xticks(xs, [f"{n}\n({presets[n]['kind']})" for n in names], rotation=60, ha="right", fontsize=8)
    ax1.set_ylabel("energy (J)")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3, axis="y", which="both")
    labels = [f"{r['gpu']} / {r['neuromorphic']}" for r in rows]
    xr = np.arange(len(rows))
    ax2.scatter(xr, [r["inference_ratio"] for r in rows], marker="o", label="inference")
    ax2.scatter(xr, [r["training_ratio"] for r in rows], marker="^", label="training")
    ax2.axhline(paper_inference, color="C0", ls="--", lw=1, label=f"paper, inference ({paper_inference:g}x)")
    ax2.axhline(paper_training, color="C1", ls="--", lw=1, label=f"paper, training ({paper_training:g}x)")
    ax2.axhline(1, color="k", lw=0.8)
    ax2.set_yscale("log")
    ax2.set_xticks(xr, labels, rotation=75, ha="right", fontsize=7)
    ax2.set_ylabel("GPU energy / neuromorphic energy")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3, axis="y", which="both")
    fig.suptitle("EqSpike energy estimates from measured event counts (claim C4)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def stdp_figure(windows: dict, fits: dict, pairing: dict, step_ms: float, path: Path, bi_poo) -> None:
    """Left: in-network dw vs dt per synapse group (mean +- s.e.m., fitted window, Bi & Poo shape
    scaled, the theory's antisymmetric part). Right: the pairing protocol's windows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    scale = 0.0
    for k, (name, w) in enumerate(windows.items()):
        ms = w["dt"] * step_ms
        ax1.errorbar(ms, w["mean"], yerr=np.nan_to_num(w["sem"]), fmt="o", ms=3, capsize=2,
                     color=f"C{k}", label=f"{name} (mean +- s.e.m.)")
        f = fits[name]
        for sign in (1.0, -1.0):
            key = "plus" if sign > 0 else "minus"
            A, tau = f[f"A_{key}"], f[f"tau_{key}_steps"]
            if np.isfinite(A) and np.isfinite(tau):
                d = np.linspace(0.5, abs(ms).max(), 100) * sign
                ax1.plot(d, sign * A * np.exp(-np.abs(d) / (tau * step_ms)), color=f"C{k}", lw=1)
        anti = (w["mean"] - w["mean"][::-1]) / 2.0
        ax1.plot(ms, anti, ":", color=f"C{k}", lw=1, label=f"{name}: antisymmetric part (theory's shape)")
        scale = max(scale, float(np.nanmax(np.abs(w["mean"]))))
    d = np.linspace(-max(abs(w["dt"]).max() for w in windows.values()) * step_ms,
                    max(abs(w["dt"]).max() for w in windows.values()) * step_ms, 400)
    ax1.plot(d, bi_poo(d, scale), "k--", lw=1, label="Bi & Poo shape (16.8 / 33.7 ms), scaled")
    lim = 1.6 * max(scale, 1e-12)
    ax1.set_ylim(-lim, lim)  # the fitted curves may overshoot the data near dt = 0
    ax1.axhline(0, color="k", lw=0.5)
    ax1.axvline(0, color="k", lw=0.5)
    ax1.set_xlabel(f"dt = t_post - t_pre (ms; 1 step = {step_ms:g} ms)")
    ax1.set_ylabel("dw per unit learning rate")
    ax1.set_title("in the network, during learning")
    ax1.legend(fontsize=7)
    for k, (name, (dts, dws)) in enumerate(pairing.items()):
        ax2.plot(np.asarray(dts) * step_ms, dws, "o-", ms=3, color=f"C{k + 3}", label=name)
    ax2.axhline(0, color="k", lw=0.5)
    ax2.axvline(0, color="k", lw=0.5)
    ax2.set_xlabel("dt (ms)")
    ax2.set_ylabel("dw per unit learning rate")
    ax2.set_title("pairing protocol: one synapse, imposed spikes")
    ax2.legend(fontsize=7)
    fig.suptitle("Does EqSpike's update look like STDP? (claim C5)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
