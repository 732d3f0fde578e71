"""Config for the entry points: ``params.yaml`` (generated from ``conf/`` by DVC's Hydra
composition) composed with the command line's overrides through Hydra's compose API (which writes
no output folders), then validated by ``pipeline.core.schema`` before any work. The only module
besides ``cli/compose.py`` that imports Hydra."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.config import Config
from pipeline.core.io import SeedPaths
from pipeline.core.schema import ConfigError, parse

REPO = Path(__file__).resolve().parents[1]
PARAMS_FILE = "params.yaml"
# The pipelines beside the paper's that have their own params file, ``<name>/params.yaml``:
# conf/ composed with ``experiment=<name>`` (``python -m cli.compose`` writes them). Their stages
# are the paper's, run with ``EQSPIKE_PARAMS=<name>/params.yaml`` (the pipeline's dvc.yaml says so).
OWN_PARAMS = ("fashion", "depth")
# the paper's stages each of them runs (cli/compose.py writes <name>/dvc.yaml from dvc.yaml's own)
OWN_STAGES = {"fashion": ("fetch_data", "train_ep", "train_bp", "train_eqspike", "train_eqspike_variant", "aggregate"),
              "depth": ("train_ep", "train_eqspike", "aggregate", "bias")}
PARAMS_ENV = "EQSPIKE_PARAMS"

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def params_file() -> str:
    """The params file the stages read, relative to the repository: ``params.yaml``, or
    ``$EQSPIKE_PARAMS`` (one of ``<name>/params.yaml`` of ``OWN_PARAMS``), checked before any work."""
    value = os.environ.get(PARAMS_ENV)
    if not value:
        return PARAMS_FILE
    allowed = [f"{name}/{PARAMS_FILE}" for name in OWN_PARAMS]
    if value not in allowed:
        raise ConfigError(f"{PARAMS_ENV}={value!r}: not a pipeline's params file (one of {PARAMS_FILE} "
                          f"(unset), {', '.join(allowed)})")
    if not (REPO / value).is_file():
        raise ConfigError(f"{PARAMS_ENV}={value!r}: {REPO / value} does not exist (python -m cli.compose writes it)")
    return value


def own_experiment(params: str) -> str | None:
    """The experiment a pipeline's params file composes (``fashion/params.yaml`` -> ``fashion``)."""
    return None if params == PARAMS_FILE else params.split("/", 1)[0]


def compose_raw(overrides: list[str] | None = None, config_dir: Path | None = None,
                config_name: str = "params") -> dict:
    """Compose ``<config_dir>/<config_name>.yaml`` with Hydra and return a plain dict.

    By default this is the params file the stages read (``params_file()``: ``params.yaml`` at
    the repository root); ``conf/`` + ``config`` gives the defaults that ``params.yaml`` must
    equal (tests/test_config.py).
    """
    if config_dir is None:
        path = REPO / params_file()
        config_dir, config_name = path.parent, path.stem
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base=None):
            cfg = compose(config_name=config_name, overrides=list(overrides or []))
        return OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"cannot compose {config_dir / config_name}.yaml with overrides {overrides}: {exc}") from exc


CONF = REPO / "conf"
# folders of conf/ that their own code reads (energy presets, launcher settings), not Hydra groups
NOT_GROUPS = ("energy/gpu", "energy/neuromorphic", "energy/measured", "launcher", "tuning")


def config_groups(conf: Path = CONF) -> dict[str, list[str]]:
    """The Hydra config groups of ``conf/`` and their options, ``{"eqspike/neuron": ["bernoulli",
    "sigma_delta"], ...}``."""
    out = {}
    for d in sorted(p for p in conf.rglob("*") if p.is_dir()):
        rel = d.relative_to(conf).as_posix()
        options = sorted(f.stem for f in d.glob("*.yaml"))
        if options and not rel.startswith(NOT_GROUPS):
            out[rel] = options
    return out


def group_selections(overrides: list[str], conf: Path = CONF) -> tuple[list[str], list[str]]:
    """Split ``overrides`` into config-group selections (``eqspike/neuron=bernoulli``, also written
    ``eqspike.neuron=bernoulli`` or by the group's last name, ``neuron=bernoulli``) and the rest.
    A selection of an option the group does not have raises ``ConfigError`` naming its options."""
    groups = config_groups(conf)
    selections, rest = [], []
    for o in overrides:
        key, sep, value = o.partition("=")
        name = key.replace(".", "/")
        if name not in groups:
            by_last = [g for g in groups if g.rsplit("/", 1)[-1] == name]
            name = by_last[0] if len(by_last) == 1 else name
        if not sep or name not in groups or not value.replace("_", "").isalnum():
            rest.append(o)
            continue
        if value not in groups[name]:
            raise ConfigError(f"{name}={value}: the config group {name} has no option {value!r} "
                              f"(options: {', '.join(groups[name])}; conf/{name}/)")
        selections.append(f"{name}={value}")
    return selections, rest


def load_config(overrides: list[str] | None = None) -> tuple[dict, Config]:
    """The config a stage runs with: ``params.yaml`` with ``overrides`` (``key=value``). With a
    config-group selection among them (``eqspike/neuron=bernoulli``), ``conf/`` is composed instead
    (``params.yaml`` is its composition), as ``dvc exp run -S`` does."""
    selections, rest = group_selections(list(overrides or []))
    if selections:
        experiment = own_experiment(params_file())  # a pipeline's own params: its experiment too
        if experiment and not any(s.startswith("experiment=") for s in selections):
            selections = [f"experiment={experiment}", *selections]
        raw = compose_raw(selections + rest, config_dir=CONF, config_name="config")
    else:
        raw = compose_raw(rest)
    return raw, parse(Config, raw)


def checkpoint_root() -> Path:
    """Where checkpoints live: the repository, or ``$EQSPIKE_CHECKPOINT_ROOT`` (a shared
    directory, so that a job resubmitted on another node resumes)."""
    root = os.environ.get("EQSPIKE_CHECKPOINT_ROOT")
    return Path(root) if root else REPO


def seed_paths(out, seed: int) -> SeedPaths:
    """Where one seed's run of a model writes, in this repository (checkpoints under
    ``checkpoint_root()``)."""
    return SeedPaths(out, seed, REPO, checkpoint_root())
