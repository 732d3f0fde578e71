"""DVC stage ``train_ep``: train the rate-based EP baseline (claim C2; equations: README, "The model").

    python -m stages.train_ep                        # as dvc repro runs it
    python -m stages.train_ep ep.epochs=2 data.n_train=2000 runtime.device=cpu

Checkpoints every epoch to ``<ep.out.checkpoints>/<run key>.npz``; killed and rerun with the same config, it
resumes from the last finished epoch and ends with the same weights.
"""

from __future__ import annotations

import sys

from pipeline import ep
from pipeline.backend import get_xp
from pipeline.data import load
from pipeline.schema import Config, EPCfg
from stages.common import REPO, Run, stage_main
from stages.training import train_and_write

PAPER_RATE_EP_ACCURACY = 0.98  # Ernoult et al. 2019, 784-512-10 (recalled, not re-read in the paper)


def dynamics(c: EPCfg) -> ep.Dynamics:
    return ep.Dynamics(T=c.T, K=c.K, beta=c.beta, nudge=c.nudge, placement=c.nudge_placement,
                       activation=c.activation, rule=c.rule, engine=c.engine)


def worker(cfg: Config, run: Run) -> None:
    xp = get_xp(cfg.runtime.device)
    data = load(cfg.data, REPO)
    model = ep.EPModel(dynamics(cfg.ep), xp, cfg.ep.eval_batch_size)
    train_and_write(model, cfg.ep, data, cfg.runtime.seed, cfg.runtime.dtype, run,
                    f"rate-based EP {cfg.ep.sizes}", PAPER_RATE_EP_ACCURACY, cfg.runtime.progress)


main = stage_main("train_ep", worker)

if __name__ == "__main__":
    sys.exit(main())
