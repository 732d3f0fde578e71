"""DVC stage ``train_eqspike_stochastic``: the stochastic EqSpike (claim C5's Bernoulli windows):
``eqspike`` with the keys of ``stochastic`` (conf/stochastic/: Bernoulli spikes, everything else
the default model's) deep-merged over it, trained for one seed and written to ``stochastic.out``;
the stdp stage measures its windows with the same controls as the default model and the variant.

    python -m stages.train_eqspike_stochastic
    python -m stages.train_eqspike_stochastic stochastic.neuron.leak=1.0 "+stochastic.T=80"
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
    training.train(cfg.stochastic, load(cfg.data, REPO), cfg.runtime, get_xp(cfg.runtime.device), run,
                   seed_paths(cfg.stochastic.out, cfg.runtime.seed), cfg.report.paper_eqspike_accuracy,
                   cfg.train)


main = stage_main("train_eqspike_stochastic", worker)

if __name__ == "__main__":
    sys.exit(main())
