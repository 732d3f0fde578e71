"""What every stage shares: config loading (Hydra compose over params.yaml), validation, MLflow
tracking, atomic output writing. Stages are thin: ``main = stage_main("name", worker)``.

Config: ``params.yaml`` (generated from ``conf/`` by DVC's Hydra composition) is composed with
the command line's overrides (``python -m stages.fetch_data data.timeout_s=5``) through Hydra's
compose API, which writes no output folders, then validated by ``pipeline.schema`` before any
work. Tracking: one MLflow run per stage run, FAILED when the worker raises.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.schema import Config, ConfigError, flatten, parse

REPO = Path(__file__).resolve().parents[1]
PARAMS_FILE = "params.yaml"

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


class TrackingError(RuntimeError):
    """The MLflow store cannot be reached or created."""


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


def repo_path(relative: str) -> Path:
    return REPO / relative


def checkpoint_root() -> Path:
    """Where checkpoints live: the repository, or ``$EQSPIKE_CHECKPOINT_ROOT`` (a shared
    directory, so that a job resubmitted on another node resumes)."""
    root = os.environ.get("EQSPIKE_CHECKPOINT_ROOT")
    return Path(root) if root else REPO


class SeedPaths:
    """Where one seed's run of a model writes: ``<models>/seed<n>.npz`` (weights, DVC-cached),
    ``<runs>/seed<n>/`` (metrics, curves, events, raster), and its checkpoint
    ``<checkpoints>/<run key>.npz`` (not a DVC output: keyed by everything that shapes the
    weights, so two experiments never share one, and DVC's run-cache can restore the stage).
    Each path reads only its own config key (the stages declare what they read)."""

    def __init__(self, out, seed: int):
        self.out, self.seed = out, seed

    @property
    def weights(self) -> Path:
        return repo_path(f"{self.out.models}/seed{self.seed}.npz")

    def checkpoint(self, run_key: str) -> Path:
        return checkpoint_root() / self.out.checkpoints / f"{run_key}.npz"

    @property
    def dir(self) -> Path:
        return repo_path(f"{self.out.runs}/seed{self.seed}")

    metrics = property(lambda self: self.dir / "metrics.json")
    curve_csv = property(lambda self: self.dir / "curve.csv")
    curve_png = property(lambda self: self.dir / "curve.png")
    events = property(lambda self: self.dir / "events.json")
    raster_png = property(lambda self: self.dir / "raster.png")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class WeightsError(ValueError):
    """A weights file that cannot be used: unreadable, pickled objects, wrong shapes, NaN."""


def load_params(path: Path, xp, sizes, prefix: str = ""):
    """``network.load_weights`` with every check a file from elsewhere needs: readable without
    unpickling, one matrix per pair of layers of ``sizes`` with matching shapes, finite values."""
    import zipfile

    from pipeline.network import is_finite, load_weights

    try:
        params, extra = load_weights(path, xp, prefix=prefix)
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"{path}: not a readable weights file ({type(exc).__name__}: {exc})") from exc
    want_W = [(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
    got_W = [tuple(w.shape) for w in params.W]
    got_b = [tuple(b.shape) for b in params.b]
    if got_W != want_W or got_b != [(b,) for _, b in want_W]:
        raise WeightsError(f"{path}: {prefix}weights of shapes {got_W} and biases {got_b} do not fit a "
                           f"network of sizes {list(sizes)}")
    if not is_finite(params):
        raise WeightsError(f"{path}: {prefix}weights hold NaN or infinite values")
    return params, extra


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))


# --------------------------------------------------------------------------------------------
# Tracking
# --------------------------------------------------------------------------------------------


def tracking_root() -> Path:
    """The repository that owns the MLflow store. Queued DVC experiments run in a temporary
    copy; DVC then sets DVC_ROOT to the parent repository, so their runs land in its store."""
    root = os.environ.get("DVC_ROOT")
    return Path(root).resolve() if root else REPO


def tracking_uri(cfg: Config) -> str:
    return (
        os.environ.get("MLFLOW_TRACKING_URI")
        or cfg.tracking.uri
        or f"sqlite:///{tracking_root() / 'mlflow.db'}"
    )


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def _connect(cfg: Config):
    """Point MLflow at the store and make sure it answers, fast; return the experiment id."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    import mlflow

    uri = tracking_uri(cfg)
    if uri.startswith("sqlite:///"):
        db_dir = Path(uri[len("sqlite:///"):]).parent
        if not db_dir.is_dir() or not os.access(db_dir, os.W_OK):
            raise TrackingError(f"MLflow store {uri}: directory {db_dir} does not exist or is not writable")
    mlflow.set_tracking_uri(uri)
    try:
        exp = mlflow.get_experiment_by_name(cfg.tracking.experiment)
        if exp is not None:
            for key, value in EXPERIMENT_TAGS.items():
                if exp.tags.get(key) != value:
                    mlflow.MlflowClient().set_experiment_tag(exp.experiment_id, key, value)
            return exp.experiment_id
        location = None
        if uri.startswith("sqlite:") or uri.startswith("file:"):
            location = (tracking_root() / cfg.tracking.artifact_dir).resolve().as_uri()
        return mlflow.create_experiment(cfg.tracking.experiment, artifact_location=location, tags=EXPERIMENT_TAGS)
    except Exception as exc:  # MLflow raises many kinds; all mean "cannot use this store"
        raise TrackingError(f"cannot reach the MLflow tracking store at {uri}: {exc}") from exc


# MLflow 3 opens an experiment on its GenAI "Traces" view unless the experiment says it holds
# training runs
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def config_overrides(raw: dict) -> list[list[str]]:
    """``[key, default, this run]`` for every key of this run's config that differs from the
    composition of ``conf/`` (the defaults)."""
    defaults = flatten(compose_raw(config_dir=REPO / "conf", config_name="config"))
    current = flatten(raw)
    keys = sorted(set(defaults) | set(current))
    return [[k, str(defaults.get(k, "(absent)")), str(current.get(k, "(absent)"))]
            for k in keys if defaults.get(k) != current.get(k)]


def run_name(stage: str, overrides: list[list[str]]) -> str:
    """``stage [DVC experiment] key=value ...`` (the overrides that differ from conf/)."""
    name = stage
    if os.environ.get("DVC_EXP_NAME"):
        name += f" [{os.environ['DVC_EXP_NAME']}]"
    changed = [f"{k}={v}" for k, _, v in overrides if ".out." not in k and not k.startswith("data.dir")]
    if changed:
        name += " " + " ".join(changed)
    return name if len(name) <= 250 else name[:247] + "..."


def describe(stage: str, overrides: list[list[str]]) -> str:
    """The run's description (MLflow's note): what ran, from which commit, with what changed."""
    lines = [f"DVC stage `{stage}` at git commit `{_git('rev-parse', '--short', 'HEAD')}`",
             f"DVC experiment: {os.environ.get('DVC_EXP_NAME', '(workspace run)')}", ""]
    if overrides:
        lines += ["| key | default (conf/) | this run |", "|---|---|---|"]
        lines += [f"| {k} | {d[:80]} | {v[:80]} |" for k, d, v in overrides[:50]]
    else:
        lines.append("Config: the defaults of conf/ (no overrides).")
    return "\n".join(lines)


def mark_stale_runs(mlflow_module, experiment_id: str, stage: str) -> list[str]:
    """Runs of this stage left RUNNING by a process of this machine that no longer exists (killed
    with SIGKILL, or the machine lost power) are marked KILLED; returns their ids."""
    host = socket.gethostname()
    client = mlflow_module.MlflowClient()
    stale = []
    runs = client.search_runs([experiment_id], filter_string=f"tags.stage = '{stage}' and "
                              f"attributes.status = 'RUNNING' and tags.host = '{host}'", max_results=100)
    for r in runs:
        try:
            pid = int(r.data.tags.get("pid", "-1"))
        except ValueError:
            continue
        if pid <= 0 or _alive(pid):
            continue
        client.set_tag(r.info.run_id, "error", f"process {pid} ended without closing the run (killed)")
        client.set_terminated(r.info.run_id, status="KILLED")
        stale.append(r.info.run_id)
    return stale


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# a tracking call that fails is retried after these pauses (seconds): a server restarting, a
# SQLite store locked by another worker; then the error is raised
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)


def retrying(call: Callable[[], Any], what: str, delays: Sequence[float] | None = None) -> Any:
    """``call()``, retried with exponential backoff on any exception (MLflow raises many kinds
    for a transient store error); the last error is raised with ``what`` in the message."""
    delays = RETRY_DELAYS if delays is None else delays
    for attempt, delay in enumerate((*delays, None)):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - the store's errors have no common type
            if delay is None:
                raise TrackingError(f"{what}: failed {attempt + 1} times, last: {type(exc).__name__}: {exc}") from exc
            print(f"tracking: {what} failed ({type(exc).__name__}: {str(exc)[:200]}); retrying in {delay:g} s",
                  file=sys.stderr)
            time.sleep(delay)
    raise AssertionError("unreachable")


class Run:
    """What a worker may log; the stage keeps MLflow out of ``pipeline/``. Every call is retried
    with backoff (``retrying``)."""

    def __init__(self, mlflow_module, run_id: str):
        self._mlflow, self.run_id = mlflow_module, run_id

    def metrics(self, values: dict[str, float], step: int | None = None) -> None:
        values = {k: float(v) for k, v in values.items()}
        retrying(lambda: self._mlflow.log_metrics(values, step=step), "log_metrics")

    def artifact(self, path: Path) -> None:
        retrying(lambda: self._mlflow.log_artifact(str(path)), f"log_artifact {path}")

    def tags(self, values: dict[str, str]) -> None:
        retrying(lambda: self._mlflow.set_tags(values), "set_tags")


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


@contextmanager
def tracked(stage: str, raw: dict, cfg: Config) -> Iterator[Run]:
    import mlflow

    experiment_id = _connect(cfg)
    for run_id in mark_stale_runs(mlflow, experiment_id, stage):
        print(f"{stage}: marked the stale MLflow run {run_id} KILLED (its process is gone)", file=sys.stderr)
    overrides = config_overrides(raw)
    tags = {
        "git_commit": _git("rev-parse", "HEAD"),
        "mlflow.source.git.commit": _git("rev-parse", "HEAD"),
        "git_dirty": str(bool(_git("status", "--porcelain", "--untracked-files=no"))),
        "dvc_stage": os.environ.get("DVC_STAGE", stage),
        "stage": stage,
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
        "threads": os.environ.get("EQSPIKE_THREADS", "all"),
        "mlflow.note.content": describe(stage, overrides),
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    # a job of a sweep (stages/launch.py): a child of the sweep's run, named <sweep>/<stage>@<item>
    if os.environ.get("EQSPIKE_PARENT_RUN_ID"):
        tags["mlflow.parentRunId"] = os.environ["EQSPIKE_PARENT_RUN_ID"]
    name = os.environ.get("EQSPIKE_RUN_NAME") or run_name(stage, overrides)
    run = retrying(lambda: mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags), "start_run")
    with run:
        if os.environ.get("EQSPIKE_RUN_ID_FILE"):
            Path(os.environ["EQSPIKE_RUN_ID_FILE"]).write_text(run.info.run_id)
        params = {k: str(v)[:6000] for k, v in flatten(raw).items()}
        items = sorted(params.items())
        for i in range(0, len(items), 100):  # MLflow's batch limit
            retrying(lambda batch=dict(items[i : i + 100]): mlflow.log_params(batch), "log_params")
        yield Run(mlflow, run.info.run_id)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


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
                    import mlflow

                    mlflow.set_tag("error", f"{type(exc).__name__}: {exc}"[:5000])
                    mlflow.end_run(status="FAILED")
                    if os.environ.get("EQSPIKE_TRACEBACK"):
                        traceback.print_exc()
                    print(f"{stage}: failed: {exc}", file=sys.stderr)
                    return 1
        except TrackingError as exc:
            print(f"{stage}: {exc}", file=sys.stderr)
            return 3
        return 0

    return main
