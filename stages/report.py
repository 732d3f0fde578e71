"""DVC stage ``report``: the paper side by side, claim by claim (C1-C5), with the C3 comparison
table, the figures, the config (overrides against the defaults), git commit, DVC experiment,
wall time per stage and MLflow run ids. Writes report/REPORT.md and a self-contained HTML page.

    python -m stages.report
"""

from __future__ import annotations

import json
import os
import sys

import yaml

from pipeline import report as rp
from pipeline.schema import Config, to_dict
from stages.common import (
    PARAMS_FILE,
    REPO,
    Run,
    SeedPaths,
    _git,
    atomic_write,
    config_overrides,
    repo_path,
    stage_main,
)

STAGES = ["fetch_data", "train_ep", "train_eqspike", "train_eqspike_variant", "train_bp", "aggregate", "bias", "stdp",
          "energy"]


def read_json(path, stage: str) -> dict:
    p = repo_path(path) if isinstance(path, str) else path
    if not p.is_file():
        raise FileNotFoundError(f"{p} is missing: run the {stage} stage first (dvc repro {stage})")
    return json.loads(p.read_text())


def stage_runs(cfg: Config) -> dict[str, dict]:
    """The latest finished MLflow run of every stage: id and wall time."""
    import mlflow

    out = {}
    for stage in STAGES:
        runs = mlflow.search_runs(experiment_names=[cfg.tracking.experiment], output_format="list",
                                  filter_string=f"tags.stage = '{stage}' and attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
        if runs:
            r = runs[0]
            out[stage] = {"run_id": r.info.run_id, "seconds": r.data.metrics.get("stage_seconds")}
    return out


def worker(cfg: Config, run: Run) -> None:
    seed = cfg.runtime.seed
    ep_run, eq_run = SeedPaths(cfg.ep.out, seed), SeedPaths(cfg.eqspike.out, seed)
    ep = read_json(ep_run.metrics, "train_ep")
    eqs = read_json(eq_run.metrics, "train_eqspike")
    agg = read_json(cfg.aggregate.out.detail, "aggregate")
    bias = read_json(cfg.bias.out.detail, "bias")
    stdp = read_json(cfg.stdp.out.detail, "stdp")
    energy = read_json(cfg.energy.out.detail, "energy")
    runs = stage_runs(cfg)
    md_path, html_path = repo_path(cfg.report.out.markdown), repo_path(cfg.report.out.html)
    def rel(path) -> str:
        return os.path.relpath(repo_path(path) if isinstance(path, str) else path, md_path.parent)

    facts = {
        "sizes": {"ep": cfg.ep.sizes, "eqspike": cfg.eqspike.sizes, "bp": cfg.bp.sizes},
        "paper_eqspike_accuracy": cfg.report.paper_eqspike_accuracy,
        "paper_rate_accuracy": cfg.report.paper_rate_accuracy,
        "published": [to_dict(r) for r in cfg.report.published],
        "aggregate": agg,
        "bias": bias,
        "figures": {"ep_curve": rel(ep_run.curve_png), "eqspike_curve": rel(eq_run.curve_png),
                    "raster": rel(eq_run.raster_png), "stdp": rel(cfg.stdp.out.figure_png),
                    "bias": rel(cfg.bias.out.figure_png),
                    "energy": rel(cfg.energy.out.chart_png)},
        "runs": runs, "commit": _git("rev-parse", "HEAD"),
        "dvc_experiment": os.environ.get("DVC_EXP_NAME", "(workspace run, not a named experiment)"),
        "overrides": config_overrides(yaml.safe_load((REPO / PARAMS_FILE).read_text())),
    }
    blocks = rp.build(ep, eqs, stdp, energy, facts)
    atomic_write(md_path, lambda p: p.write_text(rp.to_markdown(blocks)))
    atomic_write(html_path, lambda p: p.write_text(rp.to_html(blocks, "EqSpike reproduction", md_path.parent)))
    run.artifact(md_path)
    run.artifact(html_path)
    run.tags({f"run_id.{s}": r["run_id"] for s, r in runs.items()})
    print(f"wrote {md_path} and {html_path}")


main = stage_main("report", worker)

if __name__ == "__main__":
    sys.exit(main())
