"""Config: conf/ composes to params.yaml, every file composes, the schema names bad keys."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import yaml

from pipeline.config import Config
from pipeline.core.schema import ConfigError, parse
from runner.config import compose_raw, load_config
from tests.conftest import REPO

CONF = REPO / "conf"


def test_params_yaml_matches_conf():
    composed = compose_raw(config_dir=CONF, config_name="config")
    committed = yaml.safe_load((REPO / "params.yaml").read_text())
    assert composed == committed, "params.yaml is stale: run `python -m cli.compose`"


def test_params_yaml_is_byte_for_byte_what_dvc_writes():
    """``dvc exp run`` rewrites params.yaml with its Hydra composition; the committed file is that
    text exactly, so an experiment does not reformat it."""
    from cli.compose import compose_text

    assert compose_text([]) == (REPO / "params.yaml").read_text(encoding="utf-8")


# conf/energy/{gpu,neuromorphic,measured}/ hold presets the energy stage reads itself (validated in
# tests/test_energy.py) and conf/launcher/ the launcher's settings (tests/test_scaleout.py), not
# Hydra groups; conf/tuning/ is the tuning protocol (cli/tune.py, tests/test_selection.py)
GROUP_FILES = sorted((str(p.parent.relative_to(CONF)), p.stem) for p in CONF.glob("*/**/*.yaml")
                     if p.parent.parent != CONF / "energy" and p.parent not in (CONF / "launcher", CONF / "tuning"))


@pytest.mark.parametrize("group,name", GROUP_FILES)
def test_every_config_file_composes(group, name):
    raw = compose_raw([f"{group}={name}"], config_dir=CONF, config_name="config")
    parse(Config, raw)


def test_stage_overrides_apply():
    raw, cfg = load_config(["data.timeout_s=5", "ep.epochs=2"])
    assert cfg.data.timeout_s == 5.0 and cfg.ep.epochs == 2


@pytest.mark.parametrize(
    "override,key",
    [
        ("ep.beta=0", "ep.beta"),
        ("ep.beta=-0.1", "ep.beta"),
        ("ep.K=0", "ep.K"),
        ("ep.T=0", "ep.T"),
        ("ep.activation=relu", "ep.activation"),
        ("ep.sizes=[100,512,10]", "ep.sizes"),
        ("ep.sizes=[784,512,7]", "ep.sizes"),
        ("ep.lr=[0.1]", "ep.lr"),
        ("ep.lr=[0.1,-0.1]", "ep.lr"),
        ("ep.epochs=many", "ep.epochs"),
        ("ep.batch_size=2.5", "ep.batch_size"),
        ("runtime.device=tpu", "runtime.device"),
        ("data.timeout_s=0", "data.timeout_s"),
        ("data.train_images.sha256=abc", "data.train_images.sha256"),
        ("data.sources.0.kind=ftp", "data.sources[0].kind"),
        ("ep.rule=cep", "ep.rule"),
    ],
)
def test_schema_rejects_bad_values_naming_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config([override])
    assert str(err.value).startswith(key), str(err.value)


def test_unknown_key_is_rejected():
    raw, _ = load_config()
    raw["ep"]["betta"] = 0.1
    with pytest.raises(ConfigError, match=r"ep\.betta: unknown key"):
        parse(Config, raw)


def test_override_of_missing_key_is_an_error():
    with pytest.raises(ConfigError, match="timoeut"):
        load_config(["data.timoeut=5"])


def test_bad_config_stops_the_stage_before_any_work(tmp_path, monkeypatch, capsys):
    from stages.train_ep import main

    db = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    assert main(["ep.beta=-1"]) == 2
    assert "ep.beta" in capsys.readouterr().err
    assert not db.exists(), "no tracking run may start for a rejected config"


def test_dvc_hydra_composition_is_enabled():
    text = Path(REPO / ".dvc" / "config").read_text()
    assert "[hydra]" in text and "enabled = true" in text and "config_dir = conf" in text


def test_conf_is_the_one_source_of_defaults():
    """Every schema field that has a default is set in conf/ (so the default is never used), and
    the science fields have no default at all: a default could only disagree with conf/."""
    import dataclasses

    from pipeline import config as schema
    from runner.config import compose_raw

    raw = schema.Config.prepare(compose_raw(config_dir=REPO / "conf", config_name="config"))  # variant merged
    missing: list[str] = []
    hints = typing.get_type_hints(schema.Config)
    for name, tp in hints.items():
        cls = tp if dataclasses.is_dataclass(tp) else next(
            (t for t in typing.get_args(tp) if dataclasses.is_dataclass(t)), None)
        if cls is not None:
            walk_resolved(cls, raw.get(name), name, missing)
    assert missing == [], f"keys with a schema default but absent from conf/: {missing}"
    from pipeline.core.neuron import NeuronModel
    from pipeline.models import bp, ep, eqspike, train

    for cls in (train.Schedule, ep.Dynamics, ep.EPConfig, eqspike.SpikeDynamics, eqspike.EqSpikeConfig,
                NeuronModel, bp.BPConfig):
        science = {"sizes", "activation", "T", "K", "beta", "nudge", "lr", "batch_size", "epochs", "lr_decay",
                   "model", "threshold", "tau_syn_steps", "leak", "pre_factor", "eval_avg_steps", "rule",
                   "nudge_placement", "ema_decay", "engine", "input_layer", "eval_batch_size"}
        for f in dataclasses.fields(cls):
            if f.name in science:
                assert f.default is dataclasses.MISSING, f"{cls.__name__}.{f.name} has a default"


def walk_resolved(cls, value, path, missing):
    """Record in ``missing`` the fields of ``cls`` with a default that ``value`` (conf) lacks."""
    import dataclasses

    if not isinstance(value, dict):
        return
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{path}.{f.name}"
        # a default of None means "not given" (an optional field), not a value that could disagree
        has_default = f.default not in (dataclasses.MISSING, None) or f.default_factory is not dataclasses.MISSING
        if f.name not in value:
            if has_default:
                missing.append(key)
            continue
        tp = hints[f.name]
        sub_cls = tp if dataclasses.is_dataclass(tp) else next(
            (t for t in typing.get_args(tp) if dataclasses.is_dataclass(t)), None)
        if sub_cls is not None:
            walk_resolved(sub_cls, value[f.name], key, missing)


def test_system_check_names_what_is_missing_and_how_to_install_it(monkeypatch):
    import shutil
    import sys

    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import check_system
    finally:
        sys.path.remove(str(REPO / "scripts"))
    assert check_system.problems()[0] == []  # this machine has what the set-up needs
    real_which = shutil.which
    monkeypatch.setattr(check_system.shutil, "which", lambda name: None if name in ("git", "npm") else real_which(name))
    errors, warnings = check_system.problems()
    assert any("git is not on PATH" in e and "apt-get install git" in e for e in errors)
    assert any("npm" in w and "apt-get install npm" in w for w in warnings)
    from types import SimpleNamespace

    monkeypatch.setattr(check_system.sys, "version_info", SimpleNamespace(major=3, minor=10))
    errors, _ = check_system.problems()
    assert any("needs Python 3.11, 3.12 or 3.13" in e for e in errors)
