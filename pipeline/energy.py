"""Energy estimates of claim C4: EqSpike on neuromorphic hardware vs the rate-based network on a
GPU. Every constant comes from a preset with its source (conf/energy/*, each value with
the publication it comes from); the counts come from our own simulation.

Neuromorphic (event-based cost model, as in Davies et al. 2018 and Merolla et al. 2014):

    E = N_synaptic_events e_synop + N_spikes e_spike + N_neuron_updates e_neuron
        + N_weight_updates e_update                                       (per example)

with the counts measured by ``pipeline.events.Counts`` (a synaptic event is a spike delivered
to one synapse: spikes x fan-out; weight updates are the spike-triggered changes of the rule).

GPU (operation-count model, the same spirit as nanoGPT's ``estimate_mfu``): the equivalent
rate-based network of the same size, evaluated step by step (README, "The model"), i.e. every
step computes every layer's input from below and from above:

    MACs per step   = sum_l n_{l-1} n_l  (from below)  +  sum_{l < L} n_l n_{l+1}  (from above)
    inference       = T steps
    training        = (T + P K) steps  +  update MACs (outer products: the input layer once,
                      the others twice, s^a s^a^T - s^b s^b^T),    P = number of nudged phases
    E = 2 MACs x e_flop   (or a measured energy per inference / training example)

Our own rate-based implementation computes the input layer's product once per phase (it does
not change within a phase), which cuts the GPU work by about T x for that layer; the step-by-step
count is what a straightforward GPU implementation (and the paper's comparison) does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from pipeline import events
from pipeline.schema import GpuPresetCfg, NeuromorphicPresetCfg

PJ = 1e-12
EVENT_KINDS = {
    "synaptic_events": "synaptic_event_pj",
    "spikes": "spike_pj",
    "neuron_updates": "neuron_update_pj",
    "weight_updates": "weight_update_pj",
}


class CountsMissing(ValueError):
    """The event counts needed for an estimate are not there (training has not run)."""


def event_totals(per_example: dict, phases: Sequence[str]) -> dict[str, float]:
    """Sum the nested counts ``{phase: {layer: {kind: count}}}`` (``pipeline.events.to_json``)
    over layers and the given phases, per kind."""
    if not any(p in per_example for p in phases):
        raise CountsMissing(f"no event counts for phases {list(phases)} (run the train_eqspike stage)")
    totals = events.totals(events.from_json(per_example), phases)
    return {kind: totals[kind] for kind in EVENT_KINDS}


def neuromorphic_energy(totals: dict[str, float], preset: NeuromorphicPresetCfg) -> dict[str, float]:
    """Joules per example, total and per event kind."""
    parts = {kind: totals[kind] * getattr(preset, field).value * PJ for kind, field in EVENT_KINDS.items()}
    return {"total_j": sum(parts.values()), **{f"{k}_j": v for k, v in parts.items()}}


def macs_per_step(sizes: Sequence[int]) -> int:
    below = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    above = sum(a * b for a, b in zip(sizes[1:-1], sizes[2:]))
    return below + above


def rate_network_macs(sizes: Sequence[int], T: int, K: int, nudged_phases: int) -> dict[str, int]:
    """MACs of the equivalent rate-based network per inference and per training example."""
    step = macs_per_step(sizes)
    update = sizes[0] * sizes[1] + 2 * sum(a * b for a, b in zip(sizes[1:-1], sizes[2:]))
    return {
        "macs_per_step": step,
        "inference_macs": T * step,
        "training_macs": (T + nudged_phases * K) * step + update,
    }


def gpu_energy(macs: dict[str, int], preset: GpuPresetCfg) -> dict[str, float]:
    """Joules per inference and per training example on the GPU preset."""
    if preset.flop_pj is not None:
        e = preset.flop_pj.value * PJ
        return {"inference_j": 2 * macs["inference_macs"] * e, "training_j": 2 * macs["training_macs"] * e}
    return {"inference_j": preset.inference_j.value, "training_j": preset.training_example_j.value}


def ratio(gpu_j: float, neuro_j: float) -> float:
    """How many times less energy the neuromorphic estimate needs (inf when it needs none)."""
    return gpu_j / neuro_j if neuro_j > 0 else math.inf


def log_distance(a: float, b: float) -> float:
    """|log10(a / b)|: how many decades apart two ratios are."""
    return abs(math.log10(a / b)) if a > 0 and b > 0 and math.isfinite(a) else math.inf


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


PAIR_FIELDS = ["neuromorphic", "gpu", "neuromorphic_inference_j", "gpu_inference_j", "inference_ratio",
               "neuromorphic_training_j", "gpu_training_j", "training_ratio"]


def compare(events: dict, neuro: dict, gpus: dict, head_neuro: str, head_gpu: str,
            paper_inference_ratio: float, paper_training_ratio: float) -> dict:
    """Every neuromorphic preset against every GPU preset, from the event counts written by the
    train_eqspike stage: energies, ratio of each pair, the headline pair, the pairs closest to
    the paper's ratios (in decades) and the spread."""
    per_example = events["per_example"]
    train_counts = event_totals(per_example["train"], ("free", "nudged"))
    infer_counts = event_totals(per_example["inference"], ("inference",))
    macs = rate_network_macs(events["sizes"], events["T"], events["K"], events["nudged_phases"])
    energies = {}
    for name, preset in neuro.items():
        inf, tr = neuromorphic_energy(infer_counts, preset), neuromorphic_energy(train_counts, preset)
        energies[name] = {"kind": "neuromorphic", "inference_j": inf["total_j"], "training_j": tr["total_j"],
                          "inference_breakdown_j": inf, "training_breakdown_j": tr}
    for name, preset in gpus.items():
        g = gpu_energy(macs, preset)
        energies[name] = {"kind": "gpu", "inference_j": g["inference_j"], "training_j": g["training_j"]}
    rows = []
    for g in gpus:
        for n in neuro:
            rows.append({
                "neuromorphic": n, "gpu": g,
                "neuromorphic_inference_j": energies[n]["inference_j"], "gpu_inference_j": energies[g]["inference_j"],
                "inference_ratio": ratio(energies[g]["inference_j"], energies[n]["inference_j"]),
                "neuromorphic_training_j": energies[n]["training_j"], "gpu_training_j": energies[g]["training_j"],
                "training_ratio": ratio(energies[g]["training_j"], energies[n]["training_j"]),
            })
    head = next(r for r in rows if r["neuromorphic"] == head_neuro and r["gpu"] == head_gpu)
    closest_inf = min(rows, key=lambda r: log_distance(r["inference_ratio"], paper_inference_ratio))
    closest_tr = min(rows, key=lambda r: log_distance(r["training_ratio"], paper_training_ratio))
    finite = [r for r in rows if r["inference_ratio"] < float("inf")]
    return {
        "headline": {k: head[k] for k in PAIR_FIELDS},
        "paper": {"inference_ratio": paper_inference_ratio, "training_ratio": paper_training_ratio},
        "closest_to_paper": {
            "inference": {"pair": f"{closest_inf['gpu']} / {closest_inf['neuromorphic']}",
                          "ratio": closest_inf["inference_ratio"],
                          "decades_off": log_distance(closest_inf["inference_ratio"], paper_inference_ratio)},
            "training": {"pair": f"{closest_tr['gpu']} / {closest_tr['neuromorphic']}",
                         "ratio": closest_tr["training_ratio"],
                         "decades_off": log_distance(closest_tr["training_ratio"], paper_training_ratio)},
        },
        "spread": {"inference_ratio_min": min(r["inference_ratio"] for r in finite),
                   "inference_ratio_max": max(r["inference_ratio"] for r in finite),
                   "training_ratio_min": min(r["training_ratio"] for r in finite),
                   "training_ratio_max": max(r["training_ratio"] for r in finite)},
        "pairs": rows,
        "counts_per_example": {"inference": infer_counts, "training": train_counts},
        "rate_network_macs": macs,
        "presets": energies,
    }


def flat_metrics(comparison: dict) -> dict[str, float]:
    """The headline and summary numbers of ``compare`` as one flat mapping (energies in uJ)."""
    h, close, spread = comparison["headline"], comparison["closest_to_paper"], comparison["spread"]
    out = {"inference_ratio": h["inference_ratio"], "training_ratio": h["training_ratio"]}
    for side in ("neuromorphic", "gpu"):
        for task in ("inference", "training"):
            out[f"{side}_{task}_uj"] = h[f"{side}_{task}_j"] * 1e6
    out["closest_inference_ratio"] = close["inference"]["ratio"]
    out["closest_training_ratio"] = close["training"]["ratio"]
    out.update({k: float(v) for k, v in spread.items()})
    return out
