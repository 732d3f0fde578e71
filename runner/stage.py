"""What every DVC stage shares: ``main = stage_main("name", worker)`` loads and validates the config,
caps the threads, opens the MLflow run and calls ``worker(cfg, run)``, which calls the library."""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable

from pipeline.config import Config
from pipeline.core.schema import ConfigError
from runner.config import load_config
from runner.tracking import Run, TrackingError, fail_active_run, tracked


def apply_thread_limits() -> int | None:
    """``$EQSPIKE_THREADS`` caps Numba's and BLAS's threads of this process (a worker of
    ``dvc queue start -j N`` or a cluster job gets cores / N); returns the cap."""
    value = os.environ.get("EQSPIKE_THREADS")
    if not value:
        return None
    try:
        n = int(value)
        if n < 1:
            raise ValueError
    except ValueError:
        raise ConfigError(f"EQSPIKE_THREADS: {value!r} is not a positive integer") from None
    import numba
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    threadpool_limits(limits=n)
    return n


def stage_main(stage: str, worker: Callable[[Config, Run], None]) -> Callable[[list[str] | None], int]:
    """Build ``main(argv)``: load and validate config, open an MLflow run, call the worker.

    Exit codes: 0 success, 1 the worker failed (run marked FAILED), 2 bad config (nothing
    done), 3 tracking store unreachable (nothing done).
    """

    def main(argv: list[str] | None = None) -> int:
        argv = sys.argv[1:] if argv is None else argv
        start = time.monotonic()
        try:
            raw, cfg = load_config(argv)
            apply_thread_limits()
        except ConfigError as exc:
            print(f"{stage}: bad config: {exc}", file=sys.stderr)
            return 2
        try:
            with tracked(stage, raw, cfg) as run:
                try:
                    worker(cfg, run)
                    run.metrics({"stage_seconds": time.monotonic() - start})
                except KeyboardInterrupt:
                    raise
                except Exception as exc:
                    fail_active_run(exc)
                    if os.environ.get("EQSPIKE_TRACEBACK"):
                        traceback.print_exc()
                    print(f"{stage}: failed: {exc}", file=sys.stderr)
                    return 1
        except TrackingError as exc:
            print(f"{stage}: {exc}", file=sys.stderr)
            return 3
        return 0

    return main
