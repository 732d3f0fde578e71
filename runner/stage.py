"""What every DVC stage shares: ``main = stage_main("name", worker)`` loads and validates the config,
caps the threads, opens the MLflow run and calls ``worker(cfg, run)``, which calls the library."""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable

import yaml

from pipeline.config import Config
from pipeline.core.schema import ConfigError, flatten
from runner.config import REPO, config_groups, load_config, params_file
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


PIPELINES = ("dvc.yaml", "chip/dvc.yaml", "fashion/dvc.yaml", "depth/dvc.yaml")


def help_text(stage: str, doc: str) -> str:
    """What ``--help`` prints: the stage's own description and examples, the config groups with
    their options, the keys the stage reads (its ``params:`` in dvc.yaml) with their values now,
    and how overrides are written."""
    params = yaml.safe_load((REPO / params_file()).read_text())
    stages = {}
    for pipeline in PIPELINES:  # the paper's, the chip's and those beside them (the paper's stages again)
        stages.update(yaml.safe_load((REPO / pipeline).read_text())["stages"])
    declared = []  # plain keys of params.yaml, or {file: [keys]} (the pipelines beside the paper's)
    for p in stages.get(stage, {}).get("params", []):
        declared += [p] if isinstance(p, str) else [k for keys in p.values() for k in (keys or [])]
    flat = flatten(params)
    keys = [k for k in flat if any(k == d or k.startswith(d + ".") for d in declared if d != "params.yaml")]
    lines = [f"usage: python -m stages.{stage} [key=value ...] [group=option ...] [--cfg job] [--help]", "",
             doc.strip(), "", "Config groups (group=option; conf/<group>/):"]
    lines += [f"  {g:<16} {', '.join(opts)}" for g, opts in config_groups().items()]
    lines += ["", f"Keys this stage reads (dvc.yaml params of {stage}; value in {params_file()} now):"]
    shown = keys[:40]
    lines += [f"  {k} = {flat[k]}" for k in shown]
    if len(keys) > len(shown):
        lines.append(f"  ... and {len(keys) - len(shown)} more (--cfg job prints the whole config)")
    lines += ["", "Overrides use Hydra's syntax: key=value, +key=value for a key the config lacks (the variant's),",
              "group=option. --cfg job prints the composed config and runs nothing. Exit codes: 0 done,",
              "1 the work failed (MLflow run FAILED), 2 bad config (nothing done), 3 tracking store unreachable."]
    return "\n".join(lines)


def stage_main(stage: str, worker: Callable[[Config, Run], None]) -> Callable[[list[str] | None], int]:
    """Build ``main(argv)``: load and validate config, open an MLflow run, call the worker.

    Exit codes: 0 success, 1 the worker failed (run marked FAILED), 2 bad config (nothing
    done), 3 tracking store unreachable (nothing done).
    """

    def main(argv: list[str] | None = None) -> int:
        argv = sys.argv[1:] if argv is None else argv
        if "--help" in argv or "-h" in argv:
            print(help_text(stage, sys.modules[worker.__module__].__doc__ or ""))
            return 0
        start = time.monotonic()
        cfg_job = argv[:2] == ["--cfg", "job"]  # Hydra's: print the composed config, run nothing
        try:
            raw, cfg = load_config(argv[2:] if cfg_job else argv)
            if not cfg_job:
                apply_thread_limits()
        except ConfigError as exc:
            print(f"{stage}: bad config: {exc}", file=sys.stderr)
            return 2
        if cfg_job:
            print(yaml.safe_dump(raw, sort_keys=False), end="")
            return 0
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
