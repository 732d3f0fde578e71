"""Regenerate ``params.yaml`` from ``conf/`` exactly as ``dvc exp run`` does through its Hydra
integration (DVC's own ``compose_and_dump``, with the settings of ``.dvc/config``), for after
editing ``conf/`` by hand:  python -m cli.compose [overrides]

The result is validated before it replaces ``params.yaml`` (written to a temporary file, then
renamed), so a bad config never lands there.
"""

from __future__ import annotations

import configparser
import sys
import tempfile
from pathlib import Path

import yaml

from pipeline.config import Config
from pipeline.core.io import atomic_write
from pipeline.core.schema import ConfigError, parse
from runner.config import PARAMS_FILE, REPO


def hydra_settings(repo: Path = REPO) -> dict:
    """The ``[hydra]`` section of ``.dvc/config`` with DVC's defaults."""
    parser = configparser.ConfigParser()
    parser.read(repo / ".dvc" / "config")
    section = parser["hydra"] if parser.has_section("hydra") else {}
    return {"config_dir": str(repo / section.get("config_dir", "conf")),
            "config_name": section.get("config_name", "config"),
            "plugins_path": str(repo / section.get("plugins_path", ""))}


def compose_text(overrides: list[str]) -> str:
    """What ``dvc exp run -S`` writes to params.yaml for these overrides."""
    from dvc.utils.hydra import compose_and_dump

    s = hydra_settings()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / PARAMS_FILE
        compose_and_dump(out, s["config_dir"], None, s["config_name"], s["plugins_path"], overrides)
        return out.read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--help" in argv or "-h" in argv:
        print(f"usage: python -m cli.compose [key=value ...] [group=option ...]\n\n{__doc__.strip()}")
        return 0
    try:
        text = compose_text(argv)
        parse(Config, yaml.safe_load(text))
    except ConfigError as exc:
        print(f"compose: bad config: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # Hydra's errors: an unknown group or key in the overrides
        print(f"compose: cannot compose conf/ with {argv}: {exc}", file=sys.stderr)
        return 2
    atomic_write(REPO / PARAMS_FILE, lambda p: p.write_text(text, encoding="utf-8"))
    print(f"wrote {REPO / PARAMS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
