"""DVC stage ``aggregate``: the training runs of every seed, summarised (claims C1 and C2 read
intervals; summaries and verdicts in ``pipeline/analysis/aggregate.py``).

    python -m stages.aggregate
    python -m stages.aggregate "runtime.seeds=[0,1]"

Reads ``<runs>/seed<n>/metrics.json`` and ``predictions.npz`` of the models of ``aggregate.models`` (the
paper's four: rate EP, EqSpike, the EqSpike variant, the backprop MLP) for every seed in ``runtime.seeds``; writes flat numbers to
``aggregate.out.metrics`` and the per-seed tables, intervals and verdicts to
``aggregate.out.detail`` (read by the report).
"""

from __future__ import annotations

import json
import sys
import zipfile

import numpy as np

from pipeline.analysis.aggregate import aggregate
from pipeline.config import Config
from pipeline.core.io import write_json
from runner.config import REPO, seed_paths
from runner.stage import stage_main
from runner.tracking import Run


def read_predictions(path, stage: str) -> dict:
    """A run's per-example test predictions (``.npz``, never unpickled)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: rerun {stage} (dvc repro {stage})")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable predictions file ({exc}); rerun {stage}") from exc


def worker(cfg: Config, run: Run) -> None:
    models = {name: cfg.model(name) for name in cfg.aggregate.models}
    per_seed, predictions = {}, {}
    for name, m in models.items():
        paths = [seed_paths(m.out, seed).metrics for seed in cfg.runtime.seeds]
        for seed, path in zip(cfg.runtime.seeds, paths):
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: run train_{name} for seed {seed} first "
                                        f"(dvc repro train_{name}@{seed})")
        per_seed[name] = [json.loads(p.read_text()) for p in paths]
        predictions[name] = [read_predictions(seed_paths(m.out, seed).predictions, f"train_{name}@{seed}")
                             for seed in cfg.runtime.seeds]
    detail, flat = aggregate(per_seed, predictions, cfg.runtime.seeds, {k: m.sizes for k, m in models.items()},
                             cfg.data.name, cfg.data.train_images.shape[0], cfg.report.paper_eqspike_accuracy,
                             cfg.report.paper_rate_accuracy, cfg.aggregate.margins)
    out = cfg.aggregate.out
    write_json(REPO / out.detail, detail)
    write_json(REPO / out.metrics, flat)
    run.metrics({k: v for k, v in flat.items() if isinstance(v, (int, float))})
    for path in (out.metrics, out.detail):
        run.artifact(REPO / path)
    for name, v in detail["verdicts"].items():
        print(f"{name}: {v}")


main = stage_main("aggregate", worker)

if __name__ == "__main__":
    sys.exit(main())
