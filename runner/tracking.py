"""Tracking: the one module that imports MLflow. One MLflow run per stage run (FAILED when the
worker raises), tagged with the commit, the DVC stage and experiment, the host and the thread cap;
every parameter logged; each call retried with backoff (a server restarting, a locked SQLite store)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.core.schema import ConfigError, flatten
from runner.config import REPO, compose_raw, load_config


class TrackingError(RuntimeError):
    """The MLflow store cannot be reached or created."""


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


def git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def connect(cfg: Config):
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


# The runs table a person should land on: a saved, shareable view of the MLflow UI (MLflow >= 3.15
# keeps it as this experiment tag and opens it with ``?viewStateShareKey=<key>``): the run names,
# the accuracies (raw and averaged weights, validation), the epoch time, and the tags that say
# which stage and seed a run is. ``runs_url`` is the address that opens it.
RUNS_VIEW_KEY = "eqspike-runs"
RUNS_VIEW = {
    "selectedColumns": [*(f"metrics.`{m}`" for m in ("test_accuracy", "test_accuracy_averaged", "val_accuracy",
                                                        "val_accuracy_averaged", "seconds_per_epoch")),
                        *(f"tags.`{t}`" for t in ("stage", "seed"))],
    "orderByKey": "attributes.start_time",
    "orderByAsc": False,
}
# MLflow 3 opens an experiment on its GenAI "Overview" unless told it holds training runs (the tag
# does not switch the sidebar's GenAI / Model training toggle, which the browser keeps: upstream);
# the saved runs view above, so that ``runs_url`` shows the useful columns
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development",
                   f"mlflow.sharedViewState.{RUNS_VIEW_KEY}": json.dumps(RUNS_VIEW, sort_keys=True)}


def runs_url(base: str, experiment_id: str) -> str:
    """The MLflow UI address that opens straight on the runs table with the saved view."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?viewStateShareKey={RUNS_VIEW_KEY}"


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
    lines = [f"DVC stage `{stage}` at git commit `{git('rev-parse', '--short', 'HEAD')}`",
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
        try:
            client.set_tag(r.info.run_id, "error", f"process {pid} ended without closing the run (killed)")
        except mlflow_module.exceptions.MlflowException:
            # two starts of this stage at once (two queue workers) both found it: the other one's
            # tag went in first (a unique key); anything else is a real failure
            if "error" not in client.get_run(r.info.run_id).data.tags:
                raise
            client.set_terminated(r.info.run_id, status="KILLED")
            continue
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


@contextmanager
def tracked(stage: str, raw: dict, cfg: Config) -> Iterator[Run]:
    import mlflow

    experiment_id = connect(cfg)
    for run_id in mark_stale_runs(mlflow, experiment_id, stage):
        print(f"{stage}: marked the stale MLflow run {run_id} KILLED (its process is gone)", file=sys.stderr)
    overrides = config_overrides(raw)
    tags = {
        "git_commit": git("rev-parse", "HEAD"),
        "mlflow.source.git.commit": git("rev-parse", "HEAD"),
        "git_dirty": str(bool(git("status", "--porcelain", "--untracked-files=no"))),
        "dvc_stage": os.environ.get("DVC_STAGE", stage),
        "stage": stage,
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
        "threads": os.environ.get("EQSPIKE_THREADS", "all"),
        "mlflow.note.content": describe(stage, overrides),
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    # a job of a sweep (cli/launch.py): a child of the sweep's run, named <sweep>/<stage>@<item>
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


def prepared_store(prog: str, overrides: list[str]):
    """For a command (not a stage): the config and the experiment id of the store, created when
    missing; an exit code instead (2 bad config, 3 store unreachable), the reason printed."""
    try:
        _, cfg = load_config(overrides)
        return cfg, connect(cfg)
    except ConfigError as exc:
        print(f"{prog}: bad config: {exc}", file=sys.stderr)
        return 2
    except TrackingError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 3


def fail_active_run(exc: BaseException) -> None:
    """Mark the active run FAILED with the error as a tag."""
    import mlflow

    mlflow.set_tag("error", f"{type(exc).__name__}: {exc}"[:5000])
    mlflow.end_run(status="FAILED")


def latest_stage_runs(experiment: str, stages: list[str]) -> dict[str, dict]:
    """The latest finished MLflow run of every stage: id and wall time."""
    import mlflow

    out = {}
    for stage in stages:
        runs = mlflow.search_runs(experiment_names=[experiment], output_format="list",
                                  filter_string=f"tags.stage = '{stage}' and attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
        if runs:
            r = runs[0]
            out[stage] = {"run_id": r.info.run_id, "seconds": r.data.metrics.get("stage_seconds")}
    return out


def experiment_results(experiment: str, names: list[str], stage: str) -> dict[str, dict[str, float]]:
    """The metrics of the latest finished run of ``stage`` tagged with each DVC experiment name of
    ``names`` (queued experiments log to the parent repository's store): ``{name: metrics}``."""
    import mlflow

    out = {}
    for name in names:
        runs = mlflow.search_runs(experiment_names=[experiment], output_format="list",
                                  filter_string=f"tags.dvc_exp_name = '{name}' and tags.stage = '{stage}' "
                                                "and attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
        if runs:
            out[name] = {**runs[0].data.metrics, "run_id": runs[0].info.run_id, "params": dict(runs[0].data.params)}
    return out


# --------------------------------------------------------------------------------------------
# Sweeps (cli/launch.py): the parent run on the head, each job's child run
# --------------------------------------------------------------------------------------------


def open_run(experiment_id: str, name: str, tags: dict[str, str]) -> str:
    """A new run left open (a sweep's parent); returns its id."""
    import mlflow

    run = retrying(lambda: mlflow.MlflowClient().create_run(experiment_id, run_name=name, tags=tags), "create_run")
    return run.info.run_id


def close_run(run_id: str, status: str) -> None:
    import mlflow

    retrying(lambda: mlflow.MlflowClient().set_terminated(run_id, status=status), f"close run {run_id}")


def record_sweep_job(uri: str, experiment: str, run_id: str | None, name: str, tags: dict[str, str], status: str,
                     log: str, files: Sequence[Path]) -> str:
    """A job's child run: the stage's own (``run_id``), or one made here when the stage did not
    run (restored from the run-cache, or DVC failed before it); ``files`` logged to it; a run the
    killed stage never closed is marked FAILED. Returns the run id."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    if run_id is None:
        exp = retrying(lambda: client.get_experiment_by_name(experiment), "get_experiment")
        run = retrying(lambda: client.create_run(exp.experiment_id, run_name=name, tags=tags), "create_run")
        run_id = run.info.run_id
        if status == "FAILED":
            client.set_tag(run_id, "error", log)
        client.set_terminated(run_id, status=status)
    for path in files:
        if Path(path).is_file():
            retrying(lambda path=path: client.log_artifact(run_id, str(path), "sweep"), f"log {Path(path).name}")
    if status == "FAILED" and client.get_run(run_id).info.status == "RUNNING":  # killed: say so
        client.set_terminated(run_id, status="FAILED")
    return run_id
