"""DVC stage ``chip_train`` (chip/dvc.yaml): every row of the chip table trained (the reference
with today's loop, the chip rows side by side in one compiled run), each network's test set read
once; writes ``chip.out.rows`` (JSON) and every network's per-example test predictions beside it
(``.npz``: ``labels``, ``<row>__seed<n>``).

    python -m stages.chip_train
    python -m stages.chip_train chip.epochs=1 chip.n_train=2000
"""

from __future__ import annotations

import sys

import numpy as np

from pipeline.analysis import chip_study
from pipeline.config import Config
from pipeline.core.io import atomic_write, read_json, write_json
from pipeline.data.idx import load
from runner.config import REPO
from runner.stage import stage_main
from runner.tracking import Run


def worker(cfg: Config, run: Run) -> None:
    study = cfg.chip
    selection = read_json(REPO / study.out.selection, "chip/dvc.yaml:chip_select")
    dyn, data_cfg = chip_study.scaled(study, cfg.eqspike, cfg.data)
    data = load(data_cfg, REPO)
    rows = chip_study.train_rows(study, dyn, data, selection, cfg.runtime.dtype, cfg.train.ema_decay,
                                 cfg.runtime.progress)
    predicted = {f"{name}__seed{r['seed']}": r.pop("predicted") for name, runs in rows.items() for r in runs}
    for runs in rows.values():
        for r in runs:
            r.pop("correct")
    out = REPO / study.out.rows
    atomic_write(out.with_suffix(".npz"), lambda p: np.savez(p, labels=data.y_test.astype(np.int8), **predicted))
    write_json(out, {"n_train": len(data.y_train), "epochs": dyn.epochs, "rows": rows})
    for name, runs in rows.items():
        accs = [r["test_accuracy"] for r in runs]
        run.metrics({f"{name}_test_accuracy": float(np.mean(accs))})
        print(f"{name}: test accuracy {', '.join(f'{100 * a:.2f}' for a in accs)} %")
    run.artifact(out)


main = stage_main("chip_train", worker)

if __name__ == "__main__":
    sys.exit(main())
