"""DVC stage ``report``: the paper side by side, claim by claim (C1-C5), with the C3 comparison
table, the figures, the config (overrides against the defaults), git commit, DVC experiment,
wall time per stage and MLflow run ids. Writes report/REPORT.md, a self-contained HTML page
(``pipeline/analysis/report.py``) and the headline figures, one file per claim in metrics/ (the
DVC metrics: ``dvc metrics show``; ``pipeline/analysis/headline.py``).

    python -m stages.report
"""

from __future__ import annotations

import json
import os
import sys

import yaml

from pipeline.analysis import report as rp
from pipeline.analysis.headline import headline
from pipeline.config import Config
from pipeline.core.io import atomic_write, read_json, write_json
from runner.config import PARAMS_FILE, REPO, seed_paths
from runner.stage import stage_main
from runner.tracking import Run, config_overrides, git, latest_stage_runs

STAGES = ["fetch_data", "train_ep", "train_eqspike", "train_eqspike_variant", "train_bp", "aggregate", "bias", "stdp",
          "energy"]


def worker(cfg: Config, run: Run) -> None:
    ep_run, eq_run = seed_paths(cfg.ep.out, cfg.runtime.seed), seed_paths(cfg.eqspike.out, cfg.runtime.seed)
    inputs = {"ep": (ep_run.metrics, "train_ep"), "eqspike": (eq_run.metrics, "train_eqspike"),
              "aggregate": (REPO / cfg.aggregate.out.detail, "aggregate"), "bias": (REPO / cfg.bias.out.detail, "bias"),
              "stdp": (REPO / cfg.stdp.out.detail, "stdp"), "energy": (REPO / cfg.energy.out.detail, "energy")}
    read = {name: read_json(path, stage) for name, (path, stage) in inputs.items()}
    tuning = REPO / cfg.report.tuning
    read["tuning"] = json.loads(tuning.read_text()) if tuning.is_file() else {}
    md_path, html_path = REPO / cfg.report.out.markdown, REPO / cfg.report.out.html
    figures = {"ep_curve": ep_run.curve_png, "eqspike_curve": eq_run.curve_png, "raster": eq_run.raster_png,
               "stdp": REPO / cfg.stdp.out.figure_png, "bias": REPO / cfg.bias.out.figure_png,
               "energy": REPO / cfg.energy.out.chart_png}
    runs = latest_stage_runs(cfg.tracking.experiment, STAGES)
    facts = rp.facts(cfg, read, {k: os.path.relpath(v, md_path.parent) for k, v in figures.items()}, runs,
                     commit=git("rev-parse", "HEAD"),
                     experiment=os.environ.get("DVC_EXP_NAME", "(workspace run, not a named experiment)"),
                     overrides=config_overrides(yaml.safe_load((REPO / PARAMS_FILE).read_text())))
    blocks = rp.build(read["ep"], read["eqspike"], read["stdp"], read["energy"], facts)
    for name, row in headline(read["aggregate"], read["energy"], read["stdp"]).items():
        write_json(REPO / cfg.report.out.headline_dir / f"{name}.json", row)
    atomic_write(md_path, lambda p: p.write_text(rp.to_markdown(blocks)))
    atomic_write(html_path, lambda p: p.write_text(rp.to_html(blocks, "EqSpike reproduction", md_path.parent)))
    run.artifact(md_path)
    run.artifact(html_path)
    run.tags({f"run_id.{s}": r["run_id"] for s, r in runs.items()})
    print(f"wrote {md_path} and {html_path}")


main = stage_main("report", worker)

if __name__ == "__main__":
    sys.exit(main())
