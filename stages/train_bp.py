"""DVC stage ``train_bp``: train the backprop MLP baseline of EqSpike's size (claims C3 and C4;
pipeline/bp.py), with the same data, validation split, seeds and outputs as the EP models.

    python -m stages.train_bp runtime.seed=0
    python -m stages.train_bp bp.epochs=2 data.n_train=2000
"""

from __future__ import annotations

import sys

from pipeline.backend import get_xp
from pipeline.bp import BPModel
from pipeline.data import load
from pipeline.schema import Config
from stages.common import REPO, Run, stage_main
from stages.training import train_and_write

REFERENCE = 0.98  # the line drawn on the learning curve (a 784-512-10 MLP reaches about 98 %)


def worker(cfg: Config, run: Run) -> None:
    xp = get_xp(cfg.runtime.device)
    data = load(cfg.data, REPO)
    model = BPModel(xp, cfg.bp.eval_batch_size)
    train_and_write(model, cfg.bp, data, cfg.runtime.seed, cfg.runtime.dtype, run,
                    f"backprop MLP {cfg.bp.sizes}", REFERENCE, cfg.runtime.progress)


main = stage_main("train_bp", worker)

if __name__ == "__main__":
    sys.exit(main())
