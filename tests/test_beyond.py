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
    assert list(stages) == list(OWN_STAGES[name])
    for stage, spec in stages.items():  # the paper's command, deps and outs, with the pipeline's params
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
