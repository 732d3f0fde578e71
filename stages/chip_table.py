"""DVC stage ``chip_table`` (chip/dvc.yaml): the table "As a chip would run it": per row the test
accuracy of the raw weights with its interval and the C1 verdict (``aggregate.margins``), the
cost against the reference, energy per example with the C4 chip preset (``energy.headline``),
memory per synapse; the figure, accuracy against weight bits per update mode; and the page "As a
chip would run it" beside the paper's report (``report.out.chip_markdown``, ``chip_html``).

    python -m stages.chip_table
    python -m stages.chip_table energy.headline.neuromorphic=truenorth
"""

from __future__ import annotations

import os
import sys
import zipfile

import numpy as np

from pipeline.analysis import chip_study, energy_study, report
from pipeline.config import Config
from pipeline.core.io import atomic_write, read_json, write_json
from runner.config import REPO
from runner.stage import stage_main
from runner.tracking import Run


def worker(cfg: Config, run: Run) -> None:
    study = cfg.chip
    rows_path = REPO / study.out.rows
    trained = read_json(rows_path, "chip/dvc.yaml:chip_train")
    try:
        with np.load(rows_path.with_suffix(".npz"), allow_pickle=False) as z:
            predicted = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{rows_path.with_suffix('.npz')}: unreadable ({exc}); rerun chip_train") from exc
    labels = predicted.pop("labels")
    rows = {name: [{**r, "correct": (predicted[f"{name}__seed{r['seed']}"] == labels).astype(np.int8)} for r in runs]
            for name, runs in trained["rows"].items()}
    missing = [r.name for r in study.rows if r.name not in rows]
    if missing:
        raise ValueError(f"{rows_path}: no results for the rows {missing}: rerun chip_train")
    ecfg = cfg.energy
    neuro, _, _ = energy_study.presets(ecfg, REPO)
    name = ecfg.headline.neuromorphic
    dyn, _ = chip_study.scaled(study, cfg.eqspike, cfg.data)
    margin = cfg.aggregate.margins.reproduced
    tab = chip_study.table(study, rows, dyn, neuro[name], name, ecfg.host_mac_pj.value,
                           cfg.report.paper_eqspike_accuracy, margin,
                           read_json(REPO / study.out.selection, "chip/dvc.yaml:chip_select"),
                           trained["n_train"])
    out = study.out
    write_json(REPO / out.table, tab)
    atomic_write(REPO / out.table_md, lambda p: p.write_text(chip_study.markdown(tab)))
    atomic_write(REPO / out.figure, lambda p: chip_study.figure(tab, p))
    # the page "As a chip would run it", beside the paper's report
    page_md, page_html = REPO / cfg.report.out.chip_markdown, REPO / cfg.report.out.chip_html
    figure = os.path.relpath(REPO / out.figure, page_md.parent)
    blocks = report.chip_blocks(tab, chip_study.markdown(tab), figure)
    atomic_write(page_md, lambda p: p.write_text(report.to_markdown(blocks)))
    atomic_write(page_html, lambda p: p.write_text(report.to_html(blocks, "EqSpike as a chip would run it",
                                                                  page_html.parent)))
    for r in tab["rows"]:
        run.metrics({f"{r['name']}_test_accuracy": r["test_accuracy"]})
    for path in (out.table, out.table_md, out.figure, cfg.report.out.chip_markdown, cfg.report.out.chip_html):
        run.artifact(REPO / path)
    print(chip_study.markdown(tab))


main = stage_main("chip_table", worker)

if __name__ == "__main__":
    sys.exit(main())
