"""Prepare the MLflow store once, before parallel workers start: create (or upgrade) its schema
and the experiment, so that two workers never race to do it.

    python -m cli.tracking_init && dvc queue start -j 2
    MLFLOW_TRACKING_URI=http://head:5000 python -m cli.tracking_init
"""

from __future__ import annotations

import sys

from runner.tracking import prepared_store, tracking_uri


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--help" in argv or "-h" in argv:
        print(f"usage: python -m cli.tracking_init [key=value ...] [group=option ...]\n\n{__doc__.strip()}")
        return 0
    prepared = prepared_store("tracking_init", argv)
    if isinstance(prepared, int):
        return prepared
    cfg, experiment_id = prepared
    print(f"MLflow store {tracking_uri(cfg)} ready: experiment {cfg.tracking.experiment!r} (id {experiment_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
