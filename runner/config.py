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

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def compose_raw(overrides: list[str] | None = None, config_dir: Path | None = None,
                config_name: str = "params") -> dict:
    """Compose ``<config_dir>/<config_name>.yaml`` with Hydra and return a plain dict.

    By default this is ``params.yaml`` at the repository root; ``conf/`` + ``config`` gives the
    defaults that ``params.yaml`` must equal (tests/test_config.py).
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    config_dir = REPO if config_dir is None else config_dir
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base=None):
            cfg = compose(config_name=config_name, overrides=list(overrides or []))
        return OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"cannot compose {config_dir / config_name}.yaml with overrides {overrides}: {exc}") from exc


def load_config(overrides: list[str] | None = None) -> tuple[dict, Config]:
    raw = compose_raw(overrides)
    return raw, parse(Config, raw)


def repo_path(relative: str) -> Path:
    return REPO / relative


def checkpoint_root() -> Path:
    """Where checkpoints live: the repository, or ``$EQSPIKE_CHECKPOINT_ROOT`` (a shared
    directory, so that a job resubmitted on another node resumes)."""
    root = os.environ.get("EQSPIKE_CHECKPOINT_ROOT")
    return Path(root) if root else REPO


def seed_paths(out, seed: int) -> SeedPaths:
    """Where one seed's run of a model writes, in this repository (checkpoints under
    ``checkpoint_root()``)."""
    return SeedPaths(out, seed, REPO, checkpoint_root())
