"""DVC stage ``chip_select`` (chip/dvc.yaml): the learning rate of every update mode of the rows
(the batch-20 reference, per example, continual) chosen on the validation split, with the same
budget and rule for each, the rule of every model
(``pipeline/analysis/chip_study.py``); writes ``chip.out.selection``.

    python -m stages.chip_select
    python -m stages.chip_select chip.epochs=1 chip.n_train=2000 chip.selection.validation=500
"""

from __future__ import annotations

import sys

from pipeline.analysis import chip_study
from pipeline.config import Config
from pipeline.core.io import write_json
from pipeline.data.idx import load
from runner.config import REPO
from runner.stage import stage_main
from runner.tracking import Run


def worker(cfg: Config, run: Run) -> None:
    study = cfg.chip
    dyn, data_cfg = chip_study.scaled(study, cfg.eqspike, cfg.data, study.selection.validation)
    result = chip_study.select(study, dyn, load(data_cfg, REPO), cfg.runtime.dtype, cfg.runtime.progress)
    write_json(REPO / study.out.selection, result)
    run.artifact(REPO / study.out.selection)
    for mode, m in result["modes"].items():
        run.metrics({f"lr_scale_{mode}": m["lr_scale"]})
        print(f"{mode}: lr_scale {m['lr_scale']} ({m['why']}); "
              + ", ".join(f"{c['lr_scale']:g}: " + ("diverged" if c["val_accuracy"] is None
                                                     else f"{100 * c['val_accuracy']:.2f} %") for c in m["candidates"]))


main = stage_main("chip_select", worker)

if __name__ == "__main__":
    sys.exit(main())
