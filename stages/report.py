"""DVC stage ``report``: the paper side by side, claim by claim (C1-C5), with the C3 comparison
table, the figures, the config (overrides against the defaults), git commit, DVC experiment,
wall time per stage and MLflow run ids. Writes report/REPORT.md and a self-contained HTML page.

    python -m stages.report
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml

from pipeline import report as rp
from pipeline.schema import Config, flatten, to_dict
from stages.common import PARAMS_FILE, REPO, Run, _git, atomic_write, compose_raw, repo_path, stage_main

STAGES = ["fetch_data", "train_ep", "train_eqspike", "stdp", "energy"]


def read_json(path: str, stage: str) -> dict:
    p = repo_path(path)
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


def overrides() -> list[list[str]]:
    """Keys of params.yaml that differ from the composition of conf/ defaults."""
    defaults = flatten(compose_raw(config_dir=REPO / "conf", config_name="config"))
    current = flatten(yaml.safe_load((REPO / PARAMS_FILE).read_text()))
    keys = sorted(set(defaults) | set(current))
    return [[k, str(defaults.get(k, "(absent)")), str(current.get(k, "(absent)"))]
            for k in keys if defaults.get(k) != current.get(k)]


def build(cfg: Config, ep: dict, eqs: dict, stdp: dict, energy: dict, runs: dict,
          figure_dir: str) -> list[tuple]:
    rc = cfg.report
    ours = [
        {"method": "EqSpike, this reproduction", "learning": "local, spike-driven EP, symmetric nudging",
         "network": "-".join(map(str, cfg.eqspike.sizes)), "accuracy": eqs["test_accuracy"],
         "source": f"metrics/train_eqspike.json, {eqs['epochs']} epochs"},
        {"method": "rate-based EP, this reproduction", "learning": "local EP, rate-based",
         "network": "-".join(map(str, cfg.ep.sizes)), "accuracy": ep["test_accuracy"],
         "source": f"metrics/train_ep.json, {ep['epochs']} epochs"},
    ]
    published = [to_dict(r) for r in rc.published]
    total = sum(r["seconds"] or 0.0 for r in runs.values())
    # a training stage that resumed from a finished checkpoint runs in seconds: show the
    # training time recorded epoch by epoch as well
    trained = {"train_ep": ep, "train_eqspike": eqs}
    blocks: list[tuple] = [
        ("h", 1, "EqSpike reproduction: the paper side by side"),
        ("p", "Martin et al., *EqSpike: spike-driven equilibrium propagation for neuromorphic "
              "implementations*, iScience 24(3):102222, 2021 (arXiv 2010.07859). Every number below "
              "comes from this run; the command that reproduces it is `dvc repro`."),
        ("h", 2, "Claims"),
        ("table", ["claim", "paper", "this run", "difference", "verdict"],
         rp.claims_rows(ep, eqs, energy, stdp, rc.paper_eqspike_accuracy, rc.paper_rate_accuracy)),
        ("h", 2, "C3: MNIST results of spiking networks and of rate-based EP"),
        ("table", ["method", "learning", "network", "MNIST test accuracy", "source"],
         rp.comparison_rows(published, ours)),
        ("h", 2, "Learning curves"),
        ("img", f"{figure_dir}/{Path(cfg.ep.out.curve_png).name}", "rate-based EP"),
        ("img", f"{figure_dir}/{Path(cfg.eqspike.out.curve_png).name}", "EqSpike"),
        ("p", f"Rate-based EP: {rp.pct(ep['test_accuracy'])} test accuracy after {ep['epochs']} epochs "
              f"({ep['seconds_per_epoch']:.1f} s per epoch). EqSpike: {rp.pct(eqs['test_accuracy'])} "
              f"({eqs['weights_evaluated']} weights; raw weights {rp.pct(eqs.get('test_accuracy_raw'))}) after "
              f"{eqs['epochs']} epochs ({eqs['seconds_per_epoch']:.1f} s per epoch)."),
        ("h", 2, "Spikes"),
        ("img", f"{figure_dir}/{Path(cfg.eqspike.out.raster_png).name}", "spike raster of one test example"),
        ("p", f"Per inference: {eqs['spikes_per_inference']:,.0f} spikes, "
              f"{eqs['synaptic_events_per_inference']:,.0f} synaptic events; per training example "
              f"{eqs['weight_updates_per_training_example']:,.0f} spike-triggered weight updates."),
        ("h", 2, "C5: STDP"),
        ("img", f"{figure_dir}/{Path(cfg.stdp.out.figure_png).name}", "weight change vs spike timing"),
        ("table", ["synapses", "A+", "tau+ (ms)", "A-", "tau- (ms)", "area ratio", "verdict"],
         [[name, f"{g['A_plus']:.3g} +- {g['A_plus_err']:.2g}", f"{g['tau_plus_ms']:.3g} +- {g['tau_plus_err_ms']:.2g}",
           f"{g['A_minus']:.3g} +- {g['A_minus_err']:.2g}", f"{g['tau_minus_ms']:.3g} +- {g['tau_minus_err_ms']:.2g}",
           f"{g['area_ratio']:.2f}", g["verdict"]] for name, g in stdp["groups"].items()]),
        ("p", f"One time step is taken as {stdp['step_ms']:g} ms. Bi & Poo (1998, fit of 2001): "
              "tau+ 16.8 ms, tau- 33.7 ms; the theory (Bengio et al. 2015-2017) predicts an antisymmetric "
              "window with equal areas (area ratio 1)."),
        ("h", 2, "C4: energy"),
        ("img", f"{figure_dir}/{Path(cfg.energy.out.chart_png).name}", "energy per example and ratios"),
        ("table", ["GPU preset", "neuromorphic preset", "inference ratio", "training ratio"],
         [[r["gpu"], r["neuromorphic"], rp.times(r["inference_ratio"]), rp.times(r["training_ratio"])]
          for r in energy["pairs"]]),
        ("p", f"Spread over all pairs: inference {rp.times(energy['spread']['inference_ratio_min'])} to "
              f"{rp.times(energy['spread']['inference_ratio_max'])}, training "
              f"{rp.times(energy['spread']['training_ratio_min'])} to "
              f"{rp.times(energy['spread']['training_ratio_max'])}. GPU energies are those of the equivalent "
              "rate-based network evaluated step by step (pipeline/energy.py); presets and their sources "
              "are in conf/energy/."),
        ("h", 2, "Run"),
        ("table", ["item", "value"], [
            ["git commit", _git("rev-parse", "HEAD")],
            ["DVC experiment", os.environ.get("DVC_EXP_NAME", "(workspace run, not a named experiment)")],
            ["total stage time", f"{total / 60:.1f} min"],
        ] + [[f"stage {s}", f"{(r['seconds'] or 0):.1f} s this run"
              + (f" (training: {trained[s]['train_seconds_total']:.0f} s over {trained[s]['epochs']} epochs"
                 " plus evaluation)" if s in trained else "")
              + f", MLflow run {r['run_id']}"] for s, r in runs.items()]),
        ("h", 3, "Config: overrides against the defaults of conf/"),
        ("table", ["key", "default", "this run"], overrides() or [["(none)", "", ""]]),
    ]
    return blocks


def worker(cfg: Config, run: Run) -> None:
    ep = read_json(cfg.ep.out.metrics, "train_ep")
    eqs = read_json(cfg.eqspike.out.metrics, "train_eqspike")
    stdp = read_json(cfg.stdp.out.metrics, "stdp")
    energy = read_json(cfg.energy.out.metrics, "energy")
    runs = stage_runs(cfg)
    md_path, html_path = repo_path(cfg.report.out.markdown), repo_path(cfg.report.out.html)
    figure_dir = os.path.relpath(repo_path(cfg.ep.out.curve_png).parent, md_path.parent)
    blocks = build(cfg, ep, eqs, stdp, energy, runs, figure_dir)
    atomic_write(md_path, lambda p: p.write_text(rp.to_markdown(blocks)))
    atomic_write(html_path, lambda p: p.write_text(rp.to_html(blocks, "EqSpike reproduction", md_path.parent)))
    run.artifact(md_path)
    run.artifact(html_path)
    run.tags({f"run_id.{s}": r["run_id"] for s, r in runs.items()})
    print(f"wrote {md_path} and {html_path}")


main = stage_main("report", worker)

if __name__ == "__main__":
    sys.exit(main())
