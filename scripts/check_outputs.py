"""Check what a `dvc repro` / `dvc exp run` produced: the report exists and the metrics are
numbers. Used by CI after the smoke experiment:  python scripts/check_outputs.py"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NUMBERS = {
    "metrics/train_ep.json": ["test_accuracy", "train_accuracy", "epochs", "seconds_per_epoch"],
    "metrics/train_eqspike.json": ["test_accuracy", "train_accuracy", "epochs", "seconds_per_epoch",
                                   "spikes_per_inference", "synaptic_events_per_inference"],
    "metrics/energy.json": ["headline.inference_ratio", "headline.training_ratio"],
    "metrics/stdp.json": ["step_ms", "n_examples"],
}


def get(d: dict, dotted: str):
    for part in dotted.split("."):
        d = d[part]
    return d


def main() -> int:
    problems = []
    for rel, keys in NUMBERS.items():
        path = ROOT / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
            continue
        data = json.loads(path.read_text())
        for key in keys:
            try:
                value = get(data, key)
            except KeyError:
                problems.append(f"{rel}: {key} missing")
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                problems.append(f"{rel}: {key} = {value!r} is not a finite number")
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
