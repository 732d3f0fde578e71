"""Run stage instances (``train_eqspike@3``) as jobs on other machines, with DVC lineage and one
MLflow sweep: submitit's ``local`` executor on a laptop and in the tests, ``slurm`` on a cluster
(conf/launcher/*.yaml: partition, GPUs, CPUs, memory, time; where the shared remote, job
folders and checkpoints live).

    python -m cli.launch train_ep@0 train_ep@1 --launcher local
    python -m cli.launch train_eqspike@0 train_eqspike@1 --launcher slurm -S eqspike.epochs=20
    python -m cli.launch --collect          # on the head: restore every finished job's stage

The head (this process) pushes the inputs to the shared DVC remote, opens a parent MLflow run
for the sweep, and submits one job per item. A job checks out the head's commit from ``origin``
(or the head's repository on a shared file system), applies the overrides to params.yaml, pulls
the item's inputs, runs ``dvc repro --single-item <item>`` with its MLflow run a child of the
sweep's (named ``<sweep>/<item>``), logs params.yaml and dvc.lock to it, and pushes the outputs
and the run-cache. ``--collect`` (or ``dvc pull --run-cache && dvc repro --pull``) then restores every
finished job's stage on the head instead of recomputing it, and runs what is left (aggregate,
report). A job killed and resubmitted resumes from its checkpoint (``$EQSPIKE_CHECKPOINT_ROOT``
on the shared file system); the head lists the items that failed and the command that
resubmits only those.

submitit moves the job function and its result between head and job with pickle: objects this
code made itself, in directories it owns; no data file is ever unpickled.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.core.schema import ConfigError, opt, parse, req
from runner.config import REPO, load_config
from runner.tracking import (
    TrackingError,
    close_run,
    connect,
    open_run,
    record_sweep_job,
    tracking_uri,
)

LAUNCHERS = REPO / "conf" / "launcher"


@dataclass(frozen=True, kw_only=True)
class LauncherCfg:
    """One file of conf/launcher/: where and how jobs run."""

    executor: str = req(choices=("local", "slurm"))
    cpus_per_task: int = req(ge=1)
    mem_gb: float = req(gt=0)
    timeout_min: int = req(ge=1)
    gpus_per_node: int = opt(0, ge=0)
    partition: str | None = opt(None)
    # paths: absolute, or relative to the head's repository
    remote: str = req(min_len=1)  # the shared DVC remote (a directory all nodes see, or s3://...)
    workdir: str = req(min_len=1)  # job checkouts and submitit's logs
    checkpoint_root: str = req(min_len=1)  # $EQSPIKE_CHECKPOINT_ROOT of the jobs
    threads: int | None = opt(None, ge=1)  # $EQSPIKE_THREADS of a job; None: cpus_per_task
    max_parallel: int = opt(0, ge=0)  # jobs of one sweep at once (0: no limit); local: the head waits


def load_launcher(name: str, directory: Path = LAUNCHERS) -> LauncherCfg:
    path = directory / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.yaml"))
        raise ConfigError(f"--launcher: no {path} (one of {known})")
    raw = yaml.safe_load(path.read_text())
    return parse(LauncherCfg, raw if isinstance(raw, dict) else {}, f"{path}:")


def absolute(path: str, base: Path) -> str:
    if "://" in path:
        return path
    p = Path(path)
    return str(p if p.is_absolute() else (base / p).resolve())


def _run(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """A subprocess from an argument list (never a shell string); output kept for the report."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}) in {cwd}:\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")
    return proc


def git(*args: str, cwd: Path = REPO) -> str:
    return _run(["git", *args], cwd).stdout.strip()


@dataclass(frozen=True)
class JobSpec:
    """Everything a job needs, made by the head."""

    item: str
    sweep: str
    origin: str
    commit: str
    overrides: tuple[str, ...]
    remote: str
    workdir: str
    checkpoint_root: str
    threads: int
    tracking_uri: str
    parent_run_id: str
    experiment: str
    python_bin: str


def checkout(spec: JobSpec) -> Path:
    """The job's checkout of the head's commit (reused when a resubmitted job finds it)."""
    d = Path(spec.workdir) / spec.sweep / spec.item.replace("@", "_")
    if not (d / ".git").is_dir():
        if d.exists():
            shutil.rmtree(d)
        d.parent.mkdir(parents=True, exist_ok=True)
        _run(["git", "clone", "--quiet", "--no-checkout", spec.origin, str(d)], d.parent)
    _run(["git", "fetch", "--quiet", "origin"], d, check=False)
    _run(["git", "checkout", "--quiet", "--force", spec.commit], d)
    return d


def run_job(spec: JobSpec) -> dict:
    """One stage instance on this node (submitit calls it in the job)."""
    t0 = time.monotonic()
    d = checkout(spec)
    env = dict(os.environ)
    env.update({
        "PATH": f"{spec.python_bin}{os.pathsep}{env.get('PATH', '')}",
        "EQSPIKE_THREADS": str(spec.threads), "NUMBA_NUM_THREADS": str(spec.threads),
        "OMP_NUM_THREADS": str(spec.threads),
        "EQSPIKE_CHECKPOINT_ROOT": spec.checkpoint_root,
        "MLFLOW_TRACKING_URI": spec.tracking_uri,
        "EQSPIKE_PARENT_RUN_ID": spec.parent_run_id,
        "EQSPIKE_RUN_NAME": f"{spec.sweep}/{spec.item}",
        "EQSPIKE_RUN_ID_FILE": str(d / ".dvc" / "tmp" / "eqspike_run_id"),
        "DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
    })
    env.pop("DVC_ROOT", None)
    run_id_file = Path(env["EQSPIKE_RUN_ID_FILE"])
    run_id_file.parent.mkdir(parents=True, exist_ok=True)
    run_id_file.unlink(missing_ok=True)
    dvc = [str(Path(spec.python_bin) / "dvc")]
    _run([*dvc, "remote", "add", "--local", "--force", "--default", "shared", spec.remote], d, env)
    if spec.overrides:
        _run([str(Path(spec.python_bin) / "python"), "-m", "cli.compose", *spec.overrides], d, env)
    _run([*dvc, "pull", "--quiet", "--with-deps", "--allow-missing", spec.item], d, env, check=False)
    repro = _run([*dvc, "repro", "--single-item", spec.item], d, env, check=False)
    status = "FINISHED" if repro.returncode == 0 else "FAILED"
    if status == "FINISHED":
        _run([*dvc, "push", "--quiet", spec.item], d, env)
        _run([*dvc, "push", "--quiet", "--run-cache"], d, env)
    run_id = record_job(spec, d, run_id_file, status, repro)
    return {"item": spec.item, "status": status, "run_id": run_id, "seconds": time.monotonic() - t0,
            "log": (repro.stdout + repro.stderr)[-2000:]}


def record_job(spec: JobSpec, d: Path, run_id_file: Path, status: str, repro) -> str:
    """params.yaml and dvc.lock logged to the job's child run; a run made here when the stage
    did not run (restored from the run-cache, or DVC failed before it)."""
    run_id = run_id_file.read_text().strip() if run_id_file.is_file() else None
    tags = {"mlflow.source.git.commit": spec.commit, "stage": spec.item.split("@")[0],
            "restored_from_run_cache": str(status == "FINISHED")}
    if spec.parent_run_id:
        tags["mlflow.parentRunId"] = spec.parent_run_id
    return record_sweep_job(spec.tracking_uri, spec.experiment, run_id, f"{spec.sweep}/{spec.item}", tags, status,
                            (repro.stdout + repro.stderr)[-4000:], [d / "params.yaml", d / "dvc.lock"])


# --------------------------------------------------------------------------------------------
# The head
# --------------------------------------------------------------------------------------------

def executor_for(lc: LauncherCfg, folder: Path):
    import submitit

    if lc.executor == "local":
        ex = submitit.LocalExecutor(folder=str(folder))
        ex.update_parameters(timeout_min=lc.timeout_min)
        return ex
    ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    params = {"timeout_min": lc.timeout_min, "cpus_per_task": lc.cpus_per_task, "mem_gb": lc.mem_gb,
              "gpus_per_node": lc.gpus_per_node, "slurm_array_parallelism": lc.max_parallel or None}
    if lc.partition:
        params["slurm_partition"] = lc.partition
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return ex


def check_items(items: list[str]) -> None:
    """Every item names a stage instance of dvc.yaml (before anything is submitted)."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        names = {s.addressing for s in repo.index.stages}
    unknown = [i for i in items if i not in names]
    if unknown:
        raise ConfigError(f"items: {unknown} are not stages of dvc.yaml (e.g. {sorted(names)[:6]})")


def launch(items: list[str], launcher: str, sweep: str | None, overrides: list[str], wait: bool = True) -> int:
    lc = load_launcher(launcher)
    check_items(items)
    _, cfg = load_config(overrides)  # the overrides must make a valid config before any job starts
    if not wait and lc.executor == "local" and lc.max_parallel:
        raise ConfigError(f"--no-wait: conf/launcher/{launcher}.yaml runs {lc.max_parallel} jobs at a time on "
                          "this machine, so the head stays to start each next one (set max_parallel: 0, or wait)")
    if git("status", "--porcelain", "--untracked-files=no"):
        raise ConfigError("the working tree has uncommitted changes: jobs check out a commit, commit first")
    commit = git("rev-parse", "HEAD")
    try:
        origin = git("remote", "get-url", "origin")
    except RuntimeError:
        origin = str(REPO)  # the head's repository itself, on a shared file system
    if "://" not in origin and not origin.startswith("git@"):
        origin = absolute(origin, REPO)
    remote = absolute(lc.remote, REPO)
    workdir = Path(absolute(lc.workdir, REPO))
    sweep = sweep or time.strftime("sweep-%Y%m%d-%H%M%S")
    python_bin = str(Path(sys.executable).parent)
    # inputs on the shared remote
    dvc = [str(Path(python_bin) / "dvc")]
    _run([*dvc, "remote", "add", "--local", "--force", "--default", "shared", remote], REPO)
    _run([*dvc, "push", "--quiet"], REPO, check=False)  # what the head has (missing outputs only warn)
    # the sweep's parent run
    experiment_id = connect(cfg)
    uri = tracking_uri(cfg)
    parent_id = open_run(experiment_id, sweep, {
        "mlflow.source.git.commit": commit, "sweep": sweep, "launcher": launcher, "items": " ".join(items),
        "overrides": " ".join(overrides)})
    specs = [JobSpec(item=i, sweep=sweep, origin=origin, commit=commit, overrides=tuple(overrides), remote=remote,
                     workdir=str(workdir), checkpoint_root=absolute(lc.checkpoint_root, REPO),
                     threads=lc.threads or lc.cpus_per_task, tracking_uri=uri, parent_run_id=parent_id,
                     experiment=cfg.tracking.experiment, python_bin=python_bin) for i in items]
    ex = executor_for(lc, workdir / sweep / "submitit")
    if lc.executor == "local" and lc.max_parallel:
        # submitit's local executor starts every job at once: the head submits the next one when
        # one ends, so that at most max_parallel share the machine's cores
        print(f"sweep {sweep}: {len(specs)} jobs, {lc.max_parallel} at a time ({launcher}); "
              f"MLflow parent run {parent_id}", flush=True)
        jobs = submit_limited(ex, run_job, specs, lc.max_parallel)
    else:
        jobs = [ex.submit(run_job, s) for s in specs]
        print(f"sweep {sweep}: {len(jobs)} jobs submitted ({launcher}); MLflow parent run {parent_id}")
        if not wait:
            return 0
    return report(sweep, launcher, overrides, jobs, items, parent_id)


def submit_limited(ex, fn, specs: list, limit: int, poll_s: float = 2.0) -> list:
    """Submit ``fn(spec)`` for every spec in order, at most ``limit`` unfinished at once; returns
    the jobs (all done) in the order of ``specs``."""
    jobs: list = []
    running: list = []
    for spec in specs:
        while len(running) >= limit:
            running = [j for j in running if not j.done()]
            if len(running) >= limit:
                time.sleep(poll_s)
        job = ex.submit(fn, spec)
        print(f"  started {spec.item}", flush=True)
        jobs.append(job)
        running.append(job)
    while any(not j.done() for j in running):
        time.sleep(poll_s)
    return jobs


def report(sweep, launcher, overrides, jobs, items, parent_run_id) -> int:
    results, failed = [], []
    for item, job in zip(items, jobs):
        try:
            r = job.result()
        except Exception as exc:  # the job died (killed, out of time or memory) or raised
            r = {"item": item, "status": "FAILED", "log": str(exc)[-2000:]}
        results.append(r)
        print(f"  {item}: {r['status']}" + (f" ({r['seconds']:.0f} s)" if "seconds" in r else ""))
        if r["status"] != "FINISHED":
            failed.append(item)
            print(f"    {r.get('log', '')[-600:]}")
    close_run(parent_run_id, "FAILED" if failed else "FINISHED")
    if failed:
        again = ["python", "-m", "cli.launch", *failed, "--launcher", launcher, "--sweep", sweep,
                 *[x for o in overrides for x in ("-S", o)]]
        print(f"{len(failed)} of {len(items)} items failed: {' '.join(failed)}\nresubmit only those with:\n  "
              + " ".join(again))
        return 1
    print(f"all {len(items)} items finished; on the head: python -m cli.launch --collect")
    return 0


def collect() -> int:
    """Restore every finished job's stage from the shared run-cache (``--pull`` fetches the
    outputs a run-cache entry names), then run what is left."""
    dvc = [str(Path(sys.executable).parent / "dvc")]
    for cmd in ([*dvc, "pull", "--run-cache", "--allow-missing"], [*dvc, "repro", "--pull"]):
        proc = subprocess.run(cmd, cwd=REPO)
        if proc.returncode != 0:
            return proc.returncode
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cli.launch", description=__doc__.split("\n\n")[0])
    p.add_argument("items", nargs="*", help="stage instances of dvc.yaml, e.g. train_eqspike@3")
    p.add_argument("--launcher", default="local", help="a file of conf/launcher/ (local, slurm)")
    p.add_argument("--sweep", help="name of the sweep (the MLflow parent run); default: time-stamped")
    p.add_argument("-S", "--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                   help="config override applied by every job (as dvc exp run -S)")
    p.add_argument("--no-wait", action="store_true", help="submit and return")
    p.add_argument("--collect", action="store_true",
                   help="on the head: dvc pull --run-cache, then dvc repro --pull")
    args = p.parse_args(argv)
    if args.collect:
        return collect()
    if not args.items:
        p.error("name at least one stage instance (or --collect)")
    try:
        return launch(args.items, args.launcher, args.sweep, args.overrides, wait=not args.no_wait)
    except ConfigError as exc:
        print(f"launch: bad config: {exc}", file=sys.stderr)
        return 2
    except TrackingError as exc:
        print(f"launch: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())

