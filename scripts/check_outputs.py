"""Check what a `dvc repro` / `dvc exp run` produced: the report exists, the metrics files are
flat and hold numbers, the detail files exist. Used by CI after the smoke experiment:  python scripts/check_outputs.py"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NUMBERS = {
    "runs/ep/seed0/metrics.json": ["test_accuracy", "train_accuracy", "epochs", "seconds_per_epoch"],
    "runs/eqspike/seed0/metrics.json": ["test_accuracy", "test_accuracy_averaged", "test_accuracy_spike_count",
                                        "train_accuracy", "epochs", "seconds_per_epoch", "spikes_per_inference",
                                        "synaptic_events_per_inference"],
    "runs/eqspike_variant/seed0/metrics.json": ["test_accuracy", "test_accuracy_averaged", "epochs"],
    "runs/eqspike_stochastic/seed0/metrics.json": ["test_accuracy", "test_accuracy_averaged", "epochs"],
    "runs/bp/seed0/metrics.json": ["test_accuracy", "epochs"],
    "results/flat/aggregate.json": ["eqspike.test_accuracy.mean", "ep.test_accuracy.mean", "eqspike_variant.test_accuracy.mean",
                               "bp.test_accuracy.mean", "gap.ep_minus_eqspike.ci_low", "n_seeds", "like_for_like"],
    "results/flat/energy.json": ["inference_ratio", "training_ratio", "neuromorphic_inference_uj",
                            "mlp_bp.batch1.inference_ratio", "spiking_sim.peak.training_ratio",
                            "input_share_of_synaptic_events"],
    "results/flat/stdp.json": ["control.positive.stdp_like", "control.negative.stdp_like",
                          "eqspike_variant.hidden_synapses.trace.lobe_pos", "eqspike.hidden_synapses.applied.lobe_neg",
                          "eqspike_stochastic.hidden_synapses.applied.lobe_pos"],
}
DETAIL = ["results/energy.json", "results/stdp.json", "results/aggregate.json", "runs/eqspike/seed0/events.json",
          "runs/ep/seed0/predictions.npz", "runs/bp/seed0/predictions.npz", "runs/eqspike/seed0/predictions.npz"]


def get(d: dict, key: str):
    return d[key]


def main(argv: list[str] | None = None) -> int:
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog="example:  python scripts/check_outputs.py      # after dvc repro or dvc exp run -S experiment=smoke").parse_args(argv)
    problems = []
    for rel, keys in NUMBERS.items():
        path = ROOT / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
            continue
        data = json.loads(path.read_text())
        nested = [k for k, v in data.items() if isinstance(v, (dict, list))]
        if nested:  # dvc metrics show / dvc exp show need flat files
            problems.append(f"{rel}: not flat (nested under {nested[:3]})")
        for key in keys:
            try:
                value = get(data, key)
            except KeyError:
                problems.append(f"{rel}: {key} missing")
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                problems.append(f"{rel}: {key} = {value!r} is not a finite number")
    for rel in DETAIL:
        if not (ROOT / rel).is_file():
            problems.append(f"{rel}: missing")
    for rel in ("report/REPORT.md", "report/REPORT.html"):
        path = ROOT / rel
        if not path.is_file() or "Claims" not in path.read_text():
            problems.append(f"{rel}: missing or without the claims table")
    for p in problems:
        print(p, file=sys.stderr)
    print("outputs OK" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
