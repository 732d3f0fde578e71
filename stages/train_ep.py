"""DVC stage ``train_ep``: train the rate-based EP baseline (claim C2; the equations:
``pipeline/models/ep.py``).

    python -m stages.train_ep                        # as dvc repro runs it
    python -m stages.train_ep ep.epochs=2 data.n_train=2000 runtime.device=cpu

Checkpoints every epoch to ``<ep.out.checkpoints>/<run key>.npz``; killed and rerun with the same
config, it resumes from the last finished epoch and ends with the same weights.
"""

from __future__ import annotations

import sys

from pipeline.config import Config
from pipeline.core.backend import get_xp
from pipeline.data.idx import load
from pipeline.models.ep import EPModel
from pipeline.models.run import train_and_write
from runner.config import REPO, seed_paths
from runner.stage import stage_main
from runner.tracking import Run


def worker(cfg: Config, run: Run) -> None:
    model = EPModel(cfg.ep, get_xp(cfg.runtime.device), cfg.ep.eval_batch_size)
    train_and_write(model, cfg.ep, load(cfg.data, REPO), cfg.runtime.seed, cfg.runtime.dtype, run,
                    f"rate-based EP {cfg.ep.sizes}", cfg.report.paper_rate_accuracy, cfg.runtime.progress,
                    seed_paths(cfg.ep.out, cfg.runtime.seed), cfg.train.ema_decay,
                    snapshot_epochs=cfg.train.snapshot_epochs)


main = stage_main("train_ep", worker)

if __name__ == "__main__":
    sys.exit(main())
