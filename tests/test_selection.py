"""The tuning protocol: the same budget for every model, the selection rule on known answers,
the provenance of every knob, and the queued experiments it asks DVC for."""

from __future__ import annotations

import pytest

from cli import tune
from pipeline.analysis import selection
from pipeline.core.schema import ConfigError, parse


def test_the_protocol_gives_every_model_the_same_budget():
    protocol = tune.load_protocol()
    assert set(protocol.models) == {"ep", "eqspike", "eqspike_variant", "bp"}
    assert {len(m.candidates) for m in protocol.models.values()} == {protocol.budget}
    assert protocol.budget >= 8 and protocol.validation == 10000
    for m in protocol.models.values():
        assert m.candidates[0] == {}  # the default first


def test_a_protocol_with_unequal_budgets_or_foreign_knobs_is_refused():
    base = {"validation": 10000, "seed": 0, "budget": 2,
            "models": {"bp": {"stage": "train_bp", "knobs": ["bp.lr"], "candidates": [{}, {"bp.lr": [0.2, 0.2]}]}}}
    parse(selection.TuningProtocol, base, "tuning")
    with pytest.raises(ConfigError, match="tuning.models.bp.candidates: 2 configurations, the protocol gives every model 3"):
        parse(selection.TuningProtocol, {**base, "budget": 3}, "tuning")
    bad = {**base, "models": {"bp": {"stage": "train_bp", "knobs": ["bp.lr"], "candidates": [{}, {"bp.epochs": 30}]}}}
    with pytest.raises(ConfigError, match="bp.epochs is not one of this model's knobs"):
        parse(selection.TuningProtocol, bad, "tuning")
    first = {**base, "models": {"bp": {"stage": "train_bp", "knobs": ["bp.lr"], "candidates": [{"bp.lr": [1, 1]}, {}]}}}
    with pytest.raises(ConfigError, match="the first candidate must be the default"):
        parse(selection.TuningProtocol, first, "tuning")


PROTO = selection.ModelProtocol(stage="train_bp", knobs=["bp.lr", "bp.lr_decay"],
                                candidates=[{}, {"bp.lr": [0.2, 0.2]}, {"bp.lr_decay": 0.95}])
DEFAULTS = {"bp.lr": [0.1, 0.1], "bp.lr_decay": 0.9}


def results(*accuracies):
    return {selection.experiment_name("bp", i): {"val_accuracy": a} for i, a in enumerate(accuracies)}


@pytest.mark.parametrize("accuracies,winner", [
    ((0.980, 0.9825, 0.979), "tune-bp-1"),   # beats the default by 0.25 points > 1 SE (0.14)
    ((0.980, 0.9810, 0.979), "tune-bp-0"),   # within one standard error: the default stays
    ((0.980, 0.975, 0.979), "tune-bp-0"),    # the default is best
])
def test_the_rule_on_known_answers(accuracies, winner):
    got = selection.select("bp", PROTO, results(*accuracies), 10000, DEFAULTS)
    assert got["winner"] == winner
    assert got["standard_error"] == pytest.approx((0.98 * 0.02 / 10000) ** 0.5)


def test_every_knob_has_a_provenance_row():
    got = selection.select("bp", PROTO, results(0.980, 0.9825, 0.979), 10000, DEFAULTS)
    rows = {r["knob"]: r for r in got["provenance"]}
    assert rows["bp.lr"]["value"] == [0.2, 0.2] and rows["bp.lr"]["chosen_by"] == "tune-bp-1"
    assert rows["bp.lr_decay"]["value"] == 0.9  # the winner kept the default's decay
    assert rows["bp.lr"]["val_accuracy"] == 0.9825 and "[0.1, 0.1]" in rows["bp.lr"]["tried"]
    assert not rows["bp.lr"]["at_edge"]  # two values tried: no edge to speak of
    assert selection.at_edge([0.4, 0.4], [[0.1, 0.1], [0.2, 0.2], [0.4, 0.4]])
    assert not selection.at_edge(0.2, [0.1, 0.2, 0.4])


def test_hyperparameters_not_tuned_say_where_they_come_from():
    proto = selection.ModelProtocol(stage="train_bp", knobs=["bp.lr"], candidates=[{}, {"bp.lr": [0.2, 0.2]}],
                                    fixed={"bp.batch_size": "the batch of every model"})
    got = selection.select("bp", proto, results(0.98, 0.97), 10000, {"bp.lr": [0.1, 0.1], "bp.batch_size": 20})
    (row,) = [r for r in got["provenance"] if r["knob"] == "bp.batch_size"]
    assert row["value"] == 20 and row["chosen_by"] == "not tuned: the batch of every model"
    assert got["rule"].startswith("the default is best")  # the rule's sentence, not a fixed value's
    protocol = tune.load_protocol()
    assert all(m.fixed for m in protocol.models.values())  # every model names its untuned values


def test_a_missing_run_stops_the_selection():
    with pytest.raises(ValueError, match=r"no validation result for \['tune-bp-2'\]"):
        selection.select("bp", PROTO, results(0.98, 0.97), 10000, DEFAULTS)


def test_queue_commands_are_argument_lists_of_dvc_experiments():
    protocol = tune.load_protocol()
    cmds = tune.queue_commands(protocol, "eqspike_variant")
    assert len(cmds) == protocol.budget
    first, second = cmds[0], cmds[1]
    assert first[:6] == ["dvc", "exp", "run", "--queue", "-n", "tune-eqspike_variant-0"]
    assert "data.validation=10000" in first and "runtime.seeds=[0]" in first and first[-1] == "train_eqspike_variant@0"
    assert "variant.lr=[0.32,0.16]" in second


def test_every_candidate_composes_to_a_valid_config():
    """Each candidate's overrides are keys the config has, with values it accepts."""
    from runner.config import load_config

    protocol = tune.load_protocol()
    for m in protocol.models.values():
        for cand in m.candidates[1:]:
            _, cfg = load_config([tune.override(k, v) for k, v in cand.items()])
            assert cfg.data.validation == 0  # the protocol's split is added by the queue, not here


def test_the_pipelines_beside_the_paper_are_tuned_by_the_same_protocol(monkeypatch):
    """fashion/ takes the paper's protocol; depth/ its own candidates (three learning rates) with the
    same budget, split, seed and rule; their experiments set the pipeline's params file and target
    its stage, and every depth candidate composes to a valid config of depth/."""
    from runner.config import load_config

    paper, fashion, depth = (tune.load_protocol(tune.protocol_path(p)) for p in (None, "fashion", "depth"))
    assert fashion == paper and tune.protocol_path("fashion") == tune.PROTOCOL
    assert (depth.budget, depth.validation, depth.seed) == (paper.budget, paper.validation, paper.seed)
    cmd = tune.queue_commands(fashion, "eqspike_variant", "fashion")[1]
    assert cmd[:6] == ["dvc", "exp", "run", "--queue", "-n", "tune-fashion-eqspike_variant-1"]
    assert "fashion/params.yaml:data.validation=10000" in cmd and "fashion/params.yaml:variant.lr=[0.32,0.16]" in cmd
    assert cmd[-1] == "fashion/dvc.yaml:train_eqspike_variant@0"
    assert tune.results_path("depth") == tune.REPO / "results" / "depth" / "tuning.json"
    monkeypatch.setenv("EQSPIKE_PARAMS", "depth/params.yaml")
    for name, m in depth.models.items():
        assert tune.queue_commands(depth, name, "depth")[0][-1] == f"depth/dvc.yaml:{m.stage}@0"
        for cand in m.candidates[1:]:
            _, cfg = load_config([tune.override(k, v) for k, v in cand.items()])
            assert len(getattr(cfg, name).lr) == 3


def test_a_missing_run_of_a_pipeline_names_its_queue_command():
    with pytest.raises(ValueError, match=r"tune-depth-bp-0.*python -m cli.tune queue --pipeline depth bp"):
        selection.select("bp", PROTO, {}, 10000, DEFAULTS, "depth")


def test_one_rule_serves_the_protocol_and_the_chip_table():
    """``selection.rule``: a diverged candidate (None) never wins, a challenger within one standard
    error leaves the default; the chip table's committed choices are what it gives."""
    import json

    from pipeline.analysis.chip_study import choose
    from tests.conftest import REPO

    assert selection.rule([0.90, None, 0.95], 2000)[:2] == (2, 2)
    assert selection.rule([0.90, 0.905, None], 2000)[:2] == (0, 1)  # 0.5 points < one standard error (0.67)
    with pytest.raises(ValueError, match="diverged"):
        selection.rule([None, 0.9], 2000)
    committed = json.loads((REPO / "results" / "chip" / "selection.json").read_text())
    for m in committed["modes"].values():
        scales = [c["lr_scale"] for c in m["candidates"]]
        again = choose(scales, [c.get("val_accuracy") for c in m["candidates"]], committed["n_val"])
        assert again["lr_scale"] == m["lr_scale"] and again["why"] == m["why"]


def test_the_committed_configs_train_what_the_protocol_selected():
    """Every model in results/tuning.json: the composed config holds its winner's final values
    (a winner selected but not written into conf/, or conf/ moved since, fails here)."""
    import json

    from runner.config import load_config

    results = json.loads((tune.RESULTS).read_text())
    _, cfg = load_config([])
    assert results, "results/tuning.json selects nothing"
    for model, chosen in results.items():
        for key, value in chosen["final"].items():
            section, *path = key.split(".")
            current = getattr(cfg, section)
            for part in path:
                current = getattr(current, part)
            current = list(current) if isinstance(current, tuple) else current
            assert current == value, f"{model}: {key} is {current} in conf/, the protocol chose {value}"
