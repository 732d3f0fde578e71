"""DVC stage ``energy``: EqSpike on neuromorphic presets against three GPU workloads at stated
utilisation (claim C4; the study in ``pipeline/analysis/energy_study.py``, formulas in
``pipeline/analysis/energy.py``, constants in conf/energy/).

    python -m stages.energy
    python -m stages.energy "energy.headline.regime=peak" energy.headline.workload=spiking_sim

Every preset file in conf/energy/{neuromorphic,gpu,measured}/ is read and validated before any
work; ``energy.headline`` picks the headline row by the rule it states.
"""

from __future__ import annotations

import json
import sys

from pipeline.analysis import energy_study
from pipeline.analysis.energy import CountsMissing
from pipeline.config import Config
from pipeline.core.schema import ConfigError
from runner.config import REPO, seed_paths
from runner.stage import stage_main
from runner.tracking import Run


def worker(cfg: Config, run: Run) -> None:
    ecfg = cfg.energy
    if ecfg is None:
        raise ConfigError("energy: missing from the config (conf/config.yaml defaults: energy: default)")
    found = energy_study.presets(ecfg, REPO)  # a bad preset stops the stage before any work
    events_path = seed_paths(cfg.eqspike.out, cfg.runtime.seed).events
    if not events_path.is_file():
        raise CountsMissing(f"{events_path} is missing: run the train_eqspike stage first (dvc repro train_eqspike)")
    comparison = energy_study.study(ecfg, found, json.loads(events_path.read_text()), cfg.ep, cfg.bp.sizes)
    flat, files = energy_study.write(comparison, ecfg, REPO)
    run.metrics({k: v for k, v in flat.items() if isinstance(v, float)})
    for path in files:
        run.artifact(path)
    h, head = ecfg.headline, comparison["headline"]
    print(f"headline ({h.rule}): {head['workload']} on {head['gpu']} at {head['regime']} / {head['neuromorphic']}: "
          f"inference {head['inference_ratio']:.3g}x, training {head['training_ratio']:.3g}x "
          f"(paper: {ecfg.paper_inference_ratio:g}x, {ecfg.paper_training_ratio:g}x)")
    for sentence in comparison["assumptions"].values():
        print(sentence)


main = stage_main("energy", worker)

if __name__ == "__main__":
    sys.exit(main())
