"""PNG figures (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def learning_curves(records: Sequence[dict], path: Path, title: str, reference: float | None = None) -> None:
    """Training error and, with a validation split, validation error (log scale) against epochs;
    accuracy against epochs (validation: raw weights and the average; training without a split).
    The test set, read once after the last epoch, is one marker (raw weights)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in records]
    has_val = all("val_accuracy" in r for r in records)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [100 * r["train_error"] for r in records], "o-", label="training error (during the epoch)")
    if has_val:
        ax1.plot(epochs, [100 * (1 - r["val_accuracy"]) for r in records], "s-", label="validation error")
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("error (%)")
    ax1.legend()
    ax1.grid(alpha=0.3, which="both")
    if has_val:
        ax2.plot(epochs, [100 * r["val_accuracy"] for r in records], "s-", color="C1", label="validation, raw weights")
        if all("val_accuracy_averaged" in r for r in records):
            ax2.plot(epochs, [100 * r["val_accuracy_averaged"] for r in records], "^--", color="C2",
                     label="validation, weight average")
    else:
        ax2.plot(epochs, [100 * r["train_accuracy"] for r in records], "o-", color="C0",
                 label="training accuracy (during the epoch)")
    last = records[-1] if records else {}
    if "test_accuracy" in last:
        ax2.plot([last["epoch"]], [100 * last["test_accuracy"]], "*", ms=14, color="C3",
                 label=f"test, read once: {100 * last['test_accuracy']:.2f} %")
    if reference is not None:
        ax2.axhline(100 * reference, color="k", ls="--", lw=1, label=f"paper {100 * reference:.1f} %")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy (%)")
    ax2.legend(fontsize=8)
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
