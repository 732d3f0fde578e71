"""DVC stage ``train_eqspike_variant``: a second EqSpike model beside the default (claim C5's
comparison; by default the memoryless neuron, g = 1): ``eqspike`` with the keys of ``variant``
(conf/variant/) deep-merged over it, written to ``variant.out``. Any key can vary:

    python -m stages.train_eqspike_variant runtime.seed=0
    python -m stages.train_eqspike_variant variant.neuron.leak=0.5 variant.pre_factor=trace
    python -m stages.train_eqspike_variant +variant.T=80 "+variant.lr=[0.1,0.05]"
"""

from __future__ import annotations

import sys

from pipeline.config import Config
from pipeline.core.backend import get_xp
from pipeline.data.idx import load
from pipeline.models.eqspike import training
from runner.config import REPO, seed_paths
from runner.stage import stage_main
from runner.tracking import Run


def worker(cfg: Config, run: Run) -> None:
    training.train(cfg.variant, load(cfg.data, REPO), cfg.runtime, get_xp(cfg.runtime.device), run,
                   seed_paths(cfg.variant.out, cfg.runtime.seed), cfg.report.paper_eqspike_accuracy,
                   cfg.train)


main = stage_main("train_eqspike_variant", worker)

if __name__ == "__main__":
    sys.exit(main())
