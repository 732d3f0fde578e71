"""Regenerate ``params.yaml`` from ``conf/`` (what ``dvc exp run`` does through its Hydra
integration), for after editing ``conf/`` by hand:  python -m stages.compose [overrides]."""

from __future__ import annotations

import sys

import yaml

from pipeline.schema import Config, ConfigError, parse
from stages.common import PARAMS_FILE, REPO, atomic_write, compose_raw


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        raw = compose_raw(argv, config_dir=REPO / "conf", config_name="config")
        parse(Config, raw)
    except ConfigError as exc:
        print(f"compose: bad config: {exc}", file=sys.stderr)
        return 2
    text = yaml.safe_dump(raw, sort_keys=False, default_flow_style=None, width=100)
    atomic_write(REPO / PARAMS_FILE, lambda p: p.write_text(text))
    print(f"wrote {REPO / PARAMS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
