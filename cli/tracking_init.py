"""Prepare the MLflow store once, before parallel workers start: create (or upgrade) its schema
and the experiment, so that two workers never race to do it.

    python -m cli.tracking_init && dvc queue start -j 2
    MLFLOW_TRACKING_URI=http://head:5000 python -m cli.tracking_init
"""

from __future__ import annotations

import sys

from pipeline.core.schema import ConfigError
from runner.config import load_config
from runner.tracking import TrackingError, connect, tracking_uri


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--help" in argv or "-h" in argv:
        print(f"usage: python -m cli.tracking_init [key=value ...] [group=option ...]\n\n{__doc__.strip()}")
        return 0
    try:
        _, cfg = load_config(argv)
        experiment_id = connect(cfg)
    except ConfigError as exc:
        print(f"tracking_init: bad config: {exc}", file=sys.stderr)
        return 2
    except TrackingError as exc:
        print(f"tracking_init: {exc}", file=sys.stderr)
        return 3
    print(f"MLflow store {tracking_uri(cfg)} ready: experiment {cfg.tracking.experiment!r} (id {experiment_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
