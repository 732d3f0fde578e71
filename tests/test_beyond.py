"""The pipelines beside the paper's (fashion/, depth/: issue 25): generated from the paper's stages
and conf/experiment/<name>.yaml, read through EQSPIKE_PARAMS, summarised by the same aggregate
with the verdicts their models allow (none: another dataset, another network)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from pipeline.analysis.aggregate import aggregate
from pipeline.analysis.stats import Margins
from pipeline.core.schema import ConfigError
from runner.config import OWN_PARAMS, OWN_STAGES, load_config, params_file
from tests.conftest import REPO


@pytest.mark.parametrize("name", OWN_PARAMS)
def test_each_pipeline_is_what_compose_writes(name):
    """<name>/params.yaml is conf/ composed with experiment=<name> (as DVC's Hydra writes it) and
    <name>/dvc.yaml is the paper's own stages: edit conf/ or dvc.yaml, then `python -m cli.compose`."""
    from cli.compose import compose_text, own_pipeline

    assert (REPO / name / "params.yaml").read_text() == compose_text([f"experiment={name}"]), \
        f"{name}/params.yaml is stale: run `python -m cli.compose`"
    paper = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert (REPO / name / "dvc.yaml").read_text() == own_pipeline(name, paper), \
        f"{name}/dvc.yaml is stale: run `python -m cli.compose`"
    stages = yaml.safe_load((REPO / name / "dvc.yaml").read_text())["stages"]
    assert list(stages) == [*OWN_STAGES[name], "beside_table"]
    for stage in OWN_STAGES[name]:  # the paper's command, deps and outs, with the pipeline's params
        spec = stages[stage]
        assert spec["cmd"] == f"EQSPIKE_PARAMS={name}/params.yaml " + paper["stages"][stage]["cmd"]
        assert spec["outs"] == paper["stages"][stage]["outs"]
        assert set(spec["deps"]) <= set(paper["stages"][stage]["deps"])
        assert next(iter(spec["params"][0])) == f"{name}/params.yaml"


def test_depth_summaries_do_not_depend_on_models_it_does_not_train():
    deps = yaml.safe_load((REPO / "depth" / "dvc.yaml").read_text())["stages"]["aggregate"]["deps"]
    assert "${ep.out.runs}" in deps and "${eqspike.out.runs}" in deps
    assert not any(d.startswith(("${bp.", "${variant.")) for d in deps)


def test_the_params_file_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("EQSPIKE_PARAMS", raising=False)
    assert params_file() == "params.yaml"
    _, cfg = load_config([])
    assert cfg.data.name == "mnist"
    monkeypatch.setenv("EQSPIKE_PARAMS", "fashion/params.yaml")
    _, cfg = load_config([])
    assert cfg.data.name == "fashion_mnist" and cfg.eqspike.out.models == "models/fashion/eqspike"
    # a group selection composes conf/ with the pipeline's experiment, not the paper's defaults
    _, cfg = load_config(["eqspike/neuron=bernoulli"])
    assert cfg.data.name == "fashion_mnist" and cfg.eqspike.neuron.model == "bernoulli"
    monkeypatch.setenv("EQSPIKE_PARAMS", "depth/params.yaml")
    _, cfg = load_config(["ep.epochs=3"])
    assert cfg.eqspike.sizes == [784, 512, 512, 10] and len(cfg.eqspike.lr) == 3 and cfg.ep.epochs == 3
    assert cfg.aggregate.models == ["ep", "eqspike"]
    for bad in ("other/params.yaml", "../params.yaml"):
        monkeypatch.setenv("EQSPIKE_PARAMS", bad)
        with pytest.raises(ConfigError, match="EQSPIKE_PARAMS=.*not a pipeline's params file"):
            load_config([])


def test_a_stage_reads_the_pipelines_params(monkeypatch, capsys):
    """`--cfg job` of a stage under EQSPIKE_PARAMS prints that pipeline's config (nothing run)."""
    from stages.train_eqspike import main

    monkeypatch.setenv("EQSPIKE_PARAMS", "depth/params.yaml")
    assert main(["--cfg", "job"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["eqspike"]["sizes"] == [784, 512, 512, 10]
    monkeypatch.setenv("EQSPIKE_PARAMS", "nowhere.yaml")
    assert main(["--cfg", "job"]) == 2
    assert "EQSPIKE_PARAMS='nowhere.yaml'" in capsys.readouterr().err


def fake_runs(models, sizes, n_test=400, seeds=(0, 1, 2), accuracy=0.9):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n_test)
    per_seed, predictions = {}, {}
    for m in models:
        per_seed[m], predictions[m] = [], []
        for _ in seeds:
            predicted = np.where(rng.random(n_test) < accuracy, labels, (labels + 1) % 10)
            acc = float((predicted == labels).mean())
            per_seed[m].append({"test_accuracy": acc, "val_accuracy": acc, "train_accuracy": acc, "n_train": 60000,
                                "epochs": 15, "ema_decay": 0.999})
            predictions[m].append({"labels": labels, "predicted": predicted})
    return per_seed, predictions, {m: sizes for m in models}


def test_two_models_on_a_deeper_network_give_their_gap_and_no_verdict():
    per_seed, predictions, sizes = fake_runs(("ep", "eqspike"), [784, 512, 512, 10])
    detail, flat = aggregate(per_seed, predictions, [0, 1, 2], sizes, "mnist", 60000, 0.976, 0.98,
                             Margins(reproduced=0.005, similar=0.005))
    assert set(detail["gaps"]) == {"ep_minus_eqspike"}
    assert set(detail["verdicts"]) == {"C1 EqSpike", "C2 rate-based EP", "C2 EqSpike similar to rate-based EP"}
    assert all(v.startswith("no verdict: network [784, 512, 512, 10]") for v in detail["verdicts"].values())
    assert detail["ranking_raw"] and "gap.ep_minus_eqspike.mean" in flat
    json.dumps(detail)  # the stage writes it


def test_another_dataset_gets_no_verdict_for_any_model():
    models = ("ep", "eqspike", "eqspike_variant", "bp")
    per_seed, predictions, sizes = fake_runs(models, [784, 512, 10])
    detail, _ = aggregate(per_seed, predictions, [0, 1, 2], sizes, "fashion_mnist", 60000, 0.976, 0.98,
                          Margins(reproduced=0.005, similar=0.005))
    assert detail["verdicts"] and all(
        v == "no verdict: the paper's claims are about MNIST, this run is on fashion_mnist" for v in detail["verdicts"].values())
    # the same runs called MNIST are judged: the guard, not the data, made the difference
    detail, _ = aggregate(per_seed, predictions, [0, 1, 2], sizes, "mnist", 60000, 0.976, 0.98,
                          Margins(reproduced=0.005, similar=0.005))
    assert not any(v.startswith("no verdict") for v in detail["verdicts"].values())


def test_a_model_outside_the_four_is_named():
    with pytest.raises(ConfigError, match=r"aggregate.models: must be one of"):
        load_config(["aggregate.models=[ep,lif]"])


def test_the_depth_pipeline_runs_end_to_end_on_tiny_data(tmp_path, mnist_like_dir, mlflow_store, monkeypatch):
    """depth/'s stages, through their own entry points with depth/params.yaml: rate EP and EqSpike
    with two hidden layers train (every layer's weights move), the aggregate gives the gap and no
    verdict, the bias check has a row per layer, the page is written."""
    import importlib

    from pipeline.core.network import load_weights

    _, data = mnist_like_dir
    monkeypatch.setenv("EQSPIKE_PARAMS", "depth/params.yaml")
    o = tmp_path / "o"
    common = [*data, "runtime.seeds=[0,1]", "train.ema_decay=0.9",
              f"ep.out.models={o}/m/ep", f"ep.out.runs={o}/r/ep", f"ep.out.checkpoints={o}/c/ep",
              f"eqspike.out.models={o}/m/eq", f"eqspike.out.runs={o}/r/eq", f"eqspike.out.checkpoints={o}/c/eq",
              f"aggregate.out.detail={o}/agg.json", f"aggregate.out.metrics={o}/agg_flat.json",
              f"bias.out.detail={o}/bias.json", f"bias.out.metrics={o}/bias_flat.json",
              f"bias.out.figure_png={o}/bias.png", "bias.batch_size=4", "bias.n_batches=2", "bias.realisations=[1,2]",
              f"beside.out.table_md={o}/table.md", f"beside.out.page_md={o}/PAGE.md", f"beside.out.page_html={o}/PAGE.html"]
    ep = ["ep.sizes=[784,16,16,10]", "ep.epochs=1", "ep.T=8", "ep.K=4", "ep.lr=[0.2,0.1,0.05]"]
    # K 8: the nudge needs 5 steps to reach the first of two spiking hidden layers (the test below)
    eq = ["eqspike.sizes=[784,16,16,10]", "eqspike.epochs=1", "eqspike.T=12", "eqspike.K=8", "eqspike.eval_avg_steps=2",
          "eqspike.lr=[0.2,0.1,0.05]", "eqspike.eval_batch_size=50"]
    argv = [*common, *ep, *eq]

    def run(stage, *extra):
        assert importlib.import_module(f"stages.{stage}").main([*argv, *extra]) == 0, stage

    for seed in (0, 1):
        run("train_ep", f"runtime.seed={seed}")
        run("train_eqspike", f"runtime.seed={seed}")
    from pipeline.core.network import init_params

    init = init_params([784, 16, 16, 10], 0, np, "float32")  # what the stage starts from (run.py)
    for model in ("ep", "eq"):
        trained, _ = load_weights(o / "m" / model / "seed0.npz")
        assert len(trained.W) == 3
        moved = [float(np.abs(a - b).max()) for a, b in zip(trained.W, init.W)]
        assert all(m > 1e-4 for m in moved), f"{model}: every layer of the two-hidden-layer net learns ({moved})"
    run("aggregate")
    agg = json.loads((o / "agg.json").read_text())
    assert set(agg["gaps"]) == {"ep_minus_eqspike", "ep_minus_eqspike_averaged"}
    assert all(v.startswith("no verdict: network [784, 16, 16, 10]") for v in agg["verdicts"].values())
    run("bias")
    bias = json.loads((o / "bias.json").read_text())
    assert len(bias["results"]["headline"]["trained"]["spikes_vs_rate_ep"]) == 3  # one entry per layer
    run("beside_table")
    page = (o / "PAGE.md").read_text()
    assert "Depth, two hidden layers" in page and "W2 (hidden 2 -> output)" in page
    assert "no verdict: network" in (o / "table.md").read_text()
    assert (o / "PAGE.html").read_text().startswith("<!DOCTYPE html>")


def test_the_table_stage_refuses_the_papers_params(monkeypatch, capsys):
    from stages.beside_table import main

    monkeypatch.delenv("EQSPIKE_PARAMS", raising=False)
    assert main([]) == 1
    assert "beside.out: params.yaml names no table or page" in capsys.readouterr().err


def first_reached(sizes: str, max_k: int = 10) -> int:
    """The shortest nudged phase (K steps) after which EqSpike's rule changes the first layer's
    weights at all: the nudge has to travel from the output through every spiking hidden layer."""
    from pipeline.core.events import Counts
    from pipeline.core.network import copy_params, init_params
    from pipeline.models import eqspike

    n_layers = sizes.count(",")
    rng = np.random.default_rng(0)
    x = (rng.random((20, 784)) > 0.7).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[np.arange(20) % 10]
    for k in range(1, max_k + 1):
        _, cfg = load_config([f"eqspike.sizes={sizes}", "eqspike.T=20", f"eqspike.K={k}",
                              f"eqspike.lr=[{','.join(['0.1'] * n_layers)}]",
                              f"variant.lr=[{','.join(['0.1'] * n_layers)}]"])  # its own rates: per layer too
        params = init_params(cfg.eqspike.sizes, 0)
        before = copy_params(params)
        eqspike.train_batch(params, x, y, cfg.eqspike, list(cfg.eqspike.lr), 1.0, None, Counts())
        if not np.array_equal(params.W[0], before.W[0]):
            assert not np.array_equal(params.W[-1], before.W[-1])
            return k
    raise AssertionError(f"{sizes}: the first layer never moved within {max_k} nudged steps")


def test_the_nudge_reaches_the_first_layer_later_through_two_hidden_layers():
    """Why depth/ has longer phases: with one hidden layer the first layer's weights move from
    K = 2 nudged steps, with two from K = 5 (below that the rule leaves them exactly unchanged);
    the configs' K (30, 40) are far beyond both."""
    one, two = first_reached("[784,16,10]"), first_reached("[784,16,16,10]")
    assert (one, two) == (2, 5)
    _, cfg = load_config([])
    depth_k = yaml.safe_load((REPO / "depth" / "params.yaml").read_text())["eqspike"]["K"]
    assert cfg.eqspike.K >= 6 * one and depth_k >= 6 * two
