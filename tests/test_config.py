"""Config: conf/ composes to params.yaml, every file composes, the schema names bad keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.schema import Config, ConfigError, parse
from stages.common import compose_raw, load_config
from tests.conftest import REPO

CONF = REPO / "conf"


def test_params_yaml_matches_conf():
    composed = compose_raw(config_dir=CONF, config_name="config")
    committed = yaml.safe_load((REPO / "params.yaml").read_text())
    assert composed == committed, "params.yaml is stale: run `python -m stages.compose`"


GROUP_FILES = sorted((str(p.parent.relative_to(CONF)), p.stem) for p in CONF.glob("*/**/*.yaml"))


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
