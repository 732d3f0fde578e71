"""DVC stage ``train_bp``: train the backprop MLP baseline of EqSpike's size (claims C3 and C4;
``pipeline/models/bp.py``), with the same data, validation split, seeds and outputs as the EP models.

    python -m stages.train_bp runtime.seed=0
    python -m stages.train_bp bp.epochs=2 data.n_train=2000
"""

from __future__ import annotations

import sys

from pipeline.config import Config
from pipeline.core.backend import get_xp
from pipeline.data.idx import load
from pipeline.models.bp import BPModel
from pipeline.models.run import train_and_write
from runner.config import REPO, seed_paths
from runner.stage import stage_main
from runner.tracking import Run


def worker(cfg: Config, run: Run) -> None:
    model = BPModel(get_xp(cfg.runtime.device), cfg.bp.eval_batch_size)
    # the learning curve's line: rate EP's published 98 %, what a 784-512-10 MLP also reaches
    train_and_write(model, cfg.bp, load(cfg.data, REPO), cfg.runtime.seed, cfg.runtime.dtype, run,
                    f"backprop MLP {cfg.bp.sizes}", cfg.report.paper_rate_accuracy, cfg.runtime.progress,
                    seed_paths(cfg.bp.out, cfg.runtime.seed), cfg.train.ema_decay,
                    snapshot_epochs=cfg.train.snapshot_epochs)


main = stage_main("train_bp", worker)

if __name__ == "__main__":
    sys.exit(main())
