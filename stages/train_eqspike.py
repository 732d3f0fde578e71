"""DVC stage ``train_eqspike``: train EqSpike, the spiking network with the spike-driven local
rule (claim C1; the equations: ``pipeline/models/eqspike/``).

    python -m stages.train_eqspike                   # as dvc repro runs it
    python -m stages.train_eqspike eqspike.epochs=1 eqspike/neuron=bernoulli
    python -m stages.train_eqspike eqspike.nudge=one_sided eqspike.neuron.tau_syn_steps=8

Besides the outputs of ``train_ep`` it writes the event counts per example of training and
inference (``events.json`` in the run's folder, read by the energy stage) and a spike raster of
one test example through the free and nudged phases.
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
    training.train(cfg.eqspike, load(cfg.data, REPO), cfg.runtime, get_xp(cfg.runtime.device), run,
                   seed_paths(cfg.eqspike.out, cfg.runtime.seed), cfg.report.paper_eqspike_accuracy,
                   cfg.train)


main = stage_main("train_eqspike", worker)

if __name__ == "__main__":
    sys.exit(main())
