"""Scale-out with real components, started here on 127.0.0.1: PostgreSQL (Debian's package, as an
unprivileged user in a temporary directory) behind ``mlflow server``, a local DVC remote
directory, a bare git repository as origin, submitit's local executor; ``dvc queue`` against the
SQLite default. Each test works on a clone of this repository's last commit with a tiny dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import REPO, data_cfg_dict, synthetic_arrays, write_idx_dir

BIN = Path(sys.executable).parent
PG_BIN = next((p for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None) \
    if Path("/usr/lib/postgresql").is_dir() else None
REQUIRED = os.environ.get("EQSPIKE_REQUIRE_SCALEOUT") == "1"  # CI: a missing component fails


def need(ok: bool, why: str):
    if not ok:
        if REQUIRED:
            pytest.fail(why)
        pytest.skip(why)


def run(cmd, cwd, env=None, check=True, timeout=600):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} -> {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(tmp: Path) -> dict:
    env = dict(os.environ)
    env.update({"PATH": f"{BIN}{os.pathsep}{env['PATH']}", "DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
                "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@example.org", "EQSPIKE_THREADS": "1"})
    for key in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "EQSPIKE_CHECKPOINT_ROOT", "EQSPIKE_PARENT_RUN_ID"):
        env.pop(key, None)
    return env


TINY = ["data=toy", "runtime.seeds=[0,1]", "runtime.progress=false", "ep.sizes=[784,16,10]", "ep.epochs=1",
        "ep.T=6", "ep.K=3", "ep.batch_size=20", "ep.eval_batch_size=100", "ep.engine=array"]


@pytest.fixture
def toy_repo(tmp_path):
    """A clone of this repository's HEAD with a 28x28 toy dataset as ``data=toy``, fetched by
    its own fetch_data stage, committed, with a bare repository as origin."""
    need(shutil.which("git") is not None, "git is not installed")
    env = base_env(tmp_path)
    head = tmp_path / "head"
    run(["git", "clone", "--quiet", REPO, head], tmp_path, env)
    arrays = synthetic_arrays(n_train=200, n_test=100, side=28)
    src = write_idx_dir(tmp_path / "toy_src", arrays)
    data = {**data_cfg_dict(arrays, [{"kind": "local", "path": str(src)}], directory="data/toy"),
            "n_train": None, "n_test": None}
    (head / "conf" / "data" / "toy.yaml").write_text(yaml.safe_dump(data))
    run([BIN / "python", "-m", "cli.compose", *TINY], head, env)
    run(["git", "add", "-A"], head, env)
    run(["git", "commit", "-qm", "toy"], head, env)
    run([BIN / "dvc", "repro", "fetch_data"], head, env)
    run(["git", "add", "-A"], head, env)
    run(["git", "commit", "-qm", "toy data"], head, env)
    origin = tmp_path / "origin.git"
    run(["git", "init", "--quiet", "--bare", origin], tmp_path, env)
    run(["git", "remote", "set-url", "origin", origin], head, env)
    run(["git", "push", "--quiet", "origin", "HEAD:refs/heads/main"], head, env)
    return head, env


@pytest.fixture
def mlflow_on_postgres(tmp_path):
    """PostgreSQL as an unprivileged user in a temporary directory, ``mlflow server`` on it;
    yields (tracking URI, psycopg connection string)."""
    need(PG_BIN is not None and (PG_BIN / "initdb").exists(), "PostgreSQL is not installed (apt install postgresql)")
    pg = Path(os.environ.get("EQSPIKE_PG_TMP", "/tmp")) / f"eqspike-pg-{os.getpid()}-{time.monotonic_ns()}"
    pg.mkdir(parents=True)
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        need(shutil.which("runuser") is not None, "runuser is needed to start PostgreSQL as an unprivileged user")
        shutil.chown(pg, "nobody")
        as_user = ["runuser", "-u", "nobody", "--"]
    port, http = free_port(), free_port()
    run([*as_user, PG_BIN / "initdb", "-D", pg / "data", "-U", "postgres", "--auth=trust", "-E", "UTF8"], pg)
    run([*as_user, PG_BIN / "pg_ctl", "-D", pg / "data", "-w", "-l", pg / "log",
         "-o", f"-p {port} -k {pg} -c listen_addresses=127.0.0.1", "start"], pg)
    server = None
    try:
        run([PG_BIN / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "mlflow"], pg)
        db = f"postgresql+psycopg://postgres@127.0.0.1:{port}/mlflow"
        artifacts = tmp_path / "mlflow-artifacts"
        artifacts.mkdir()
        log = open(tmp_path / "mlflow-server.log", "w")
        server = subprocess.Popen([BIN / "mlflow", "server", "--backend-store-uri", db, "--artifacts-destination",
                                   artifacts, "--host", "127.0.0.1", "--port", str(http), "--workers", "1"],
                                  stdout=log, stderr=subprocess.STDOUT, env=base_env(tmp_path), start_new_session=True)
        uri = f"http://127.0.0.1:{http}"
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError("mlflow server did not start: " + (tmp_path / "mlflow-server.log").read_text()[-3000:])
        yield uri, f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        run([*as_user, PG_BIN / "pg_ctl", "-D", pg / "data", "-m", "fast", "stop"], pg, check=False)
        shutil.rmtree(pg, ignore_errors=True)


def test_launcher_configs_are_valid_and_bad_ones_are_named(tmp_path):
    from cli.launch import load_launcher
    from pipeline.core.schema import ConfigError

    assert load_launcher("local").executor == "local"
    slurm = load_launcher("slurm")
    assert slurm.executor == "slurm" and slurm.gpus_per_node == 1 and slurm.partition
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"executor": "kubernetes"}))
    with pytest.raises(ConfigError, match="executor"):
        load_launcher("bad", tmp_path)
    with pytest.raises(ConfigError, match="no .*nope.yaml"):
        load_launcher("nope", tmp_path)


def test_local_launcher_runs_at_most_max_parallel_jobs_at_once():
    """The head submits the next job when one ends: never more than the limit unfinished, every
    item submitted once, in order; the jobs come back in the items' order."""
    from types import SimpleNamespace

    from cli.launch import submit_limited

    clock = {"t": 0}
    live: list = []
    peak = {"n": 0}

    class Job:
        def __init__(self, spec, length):
            self.spec, self.end = spec, clock["t"] + length

        def done(self):
            clock["t"] += 1  # time passes as the head polls
            return clock["t"] >= self.end

    class Executor:
        def __init__(self):
            self.submitted = []

        def submit(self, fn, spec):
            job = Job(spec, length=3 + len(self.submitted) % 3)
            self.submitted.append(spec.item)
            live[:] = [j for j in live if clock["t"] < j.end] + [job]
            peak["n"] = max(peak["n"], len(live))
            return job

    specs = [SimpleNamespace(item=f"train_ep@{i}") for i in range(7)]
    for limit, expected_peak in ((2, 2), (3, 3)):
        ex, clock["t"], peak["n"] = Executor(), 0, 0
        live.clear()
        jobs = submit_limited(ex, None, specs, limit, poll_s=0)
        assert ex.submitted == [s.item for s in specs] and [j.spec for j in jobs] == specs
        assert peak["n"] == expected_peak  # the limit is reached, never passed
        assert all(clock["t"] >= j.end for j in jobs)  # all done when it returns


def test_local_launcher_with_a_limit_refuses_no_wait(capsys):
    """--no-wait would leave nobody to start the next job: named before anything is submitted
    (in-process, on this repository: the refusal comes before git, DVC pushes or MLflow)."""
    from cli.launch import load_launcher, main

    assert load_launcher("local").max_parallel == 2
    jobs = REPO / ".scaleout" / "jobs"
    before = sorted(jobs.iterdir()) if jobs.is_dir() else []
    assert main(["train_ep@0", "--launcher", "local", "--no-wait"]) == 2
    err = capsys.readouterr().err
    assert "--no-wait" in err and "max_parallel" in err
    assert (sorted(jobs.iterdir()) if jobs.is_dir() else []) == before  # no sweep started


def test_thread_cap_from_the_environment(monkeypatch):
    import numba

    from pipeline.core.schema import ConfigError
    from runner.stage import apply_thread_limits

    monkeypatch.setenv("EQSPIKE_THREADS", "1")
    before = numba.get_num_threads()
    try:
        assert apply_thread_limits() == 1 and numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(before)
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=None)
    monkeypatch.setenv("EQSPIKE_THREADS", "zero")
    with pytest.raises(ConfigError, match="EQSPIKE_THREADS"):
        apply_thread_limits()


def test_transient_tracking_errors_are_retried(monkeypatch):
    from runner import tracking as common

    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("server restarting")
        return "ok"

    assert common.retrying(flaky, "x", delays=(0, 0, 0)) == "ok" and len(calls) == 3
    with pytest.raises(common.TrackingError, match="failed 2 times"):
        common.retrying(lambda: 1 / 0, "y", delays=(0,))


def test_two_item_sweep_on_postgres_and_the_head_recomputes_nothing(toy_repo, mlflow_on_postgres):
    import mlflow
    import psycopg

    head, env = toy_repo
    uri, pg = mlflow_on_postgres
    env = {**env, "MLFLOW_TRACKING_URI": uri}
    t0 = time.monotonic()
    out = run([BIN / "python", "-m", "cli.launch", "train_ep@0", "train_ep@1", "--launcher", "local",
               "--sweep", "s1"], head, env)
    sweep_seconds = time.monotonic() - t0
    assert "all 2 items finished" in out.stdout, out.stdout + out.stderr
    # two FINISHED child runs under one parent, in PostgreSQL
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("eqspike")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.info.run_name == "s1"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["s1/train_ep@0", "s1/train_ep@1"]
    assert {r.info.status for r in children} == {"FINISHED"} and parent.info.status == "FINISHED"
    commit = run(["git", "rev-parse", "HEAD"], head, env).stdout.strip()
    for r in children:
        assert r.data.tags["mlflow.source.git.commit"] == commit
        assert "test_accuracy" in r.data.metrics
        names = {a.path for a in client.list_artifacts(r.info.run_id, "sweep")}
        assert names == {"sweep/params.yaml", "sweep/dvc.lock"}
    with psycopg.connect(pg) as conn:
        (n,) = conn.execute("select count(*) from runs where status = 'FINISHED' and run_uuid = any(%s)",
                            ([r.info.run_id for r in children],)).fetchone()
    assert n == 2
    # the outputs and the run-cache are in the remote
    remote = head / ".scaleout" / "remote"
    assert any((remote / "files" / "md5").rglob("*")) and any((remote / "runs").rglob("*"))
    # the head restores both stages from the run-cache: nothing recomputed, no new MLflow run
    run([BIN / "dvc", "pull", "--run-cache", "--allow-missing"], head, env)
    repro = run([BIN / "dvc", "repro", "--pull", "train_ep"], head, env)
    assert repro.stdout.count("skipping run") == 2, repro.stdout
    assert len(client.search_runs([exp.experiment_id])) == len(runs)
    for seed in (0, 1):
        assert json.loads((head / "runs" / "ep" / f"seed{seed}" / "metrics.json").read_text())["epochs"] == 1
    print(f"two-item sweep: {sweep_seconds:.1f} s")


def test_sigkilled_job_resubmitted_resumes_to_the_same_weights(toy_repo, tmp_path):
    from cli.launch import JobSpec, checkout, run_job
    from pipeline.core.network import load_weights

    head, env = toy_repo
    long = ["ep.epochs=150", "ep.sizes=[784,32,10]"]
    run(["git", "push", "--quiet", "origin", "HEAD:refs/heads/main"], head, env)
    uri = f"sqlite:///{tmp_path / 'jobs-mlflow.db'}"
    run([BIN / "python", "-m", "cli.tracking_init"], head, {**env, "MLFLOW_TRACKING_URI": uri})

    def spec(sweep, ckpt):
        return JobSpec(item="train_ep@0", sweep=sweep, origin=str(tmp_path / "origin.git"),
                       commit=run(["git", "rev-parse", "HEAD"], head, env).stdout.strip(), overrides=tuple(TINY + long),
                       remote=str(tmp_path / "remote"), workdir=str(tmp_path / "jobs"), checkpoint_root=str(ckpt),
                       threads=1, tracking_uri=uri, parent_run_id="", experiment="eqspike", python_bin=str(BIN))

    run([BIN / "dvc", "remote", "add", "--local", "-f", "-d", "shared", tmp_path / "remote"], head, env)
    run([BIN / "dvc", "push", "--quiet"], head, env, check=False)  # the inputs on the shared remote
    # the first attempt, killed with SIGKILL after a few epochs
    s = spec("killed", tmp_path / "ck")
    d = checkout(s)
    job_env = {**env, "EQSPIKE_CHECKPOINT_ROOT": s.checkpoint_root, "MLFLOW_TRACKING_URI": uri}
    run([BIN / "python", "-m", "cli.compose", *s.overrides], d, job_env)
    run([BIN / "dvc", "remote", "add", "--local", "-f", "-d", "shared", s.remote], d, job_env)
    run([BIN / "dvc", "pull", "--quiet", "--allow-missing", "--with-deps", "train_ep@0"], d, job_env)
    proc = subprocess.Popen([BIN / "dvc", "repro", "--single-item", "train_ep@0"], cwd=d, env=job_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ck_dir = Path(s.checkpoint_root) / "checkpoints" / "ep"
    deadline = time.monotonic() + 300
    epoch = 0
    while time.monotonic() < deadline and proc.poll() is None:
        files = [f for f in ck_dir.glob("*.npz") if not f.name.startswith(".")]
        if files:
            try:
                epoch = int(load_weights(files[0])[1]["epoch"])
            except Exception:  # noqa: BLE001 - being replaced right now
                epoch = 0
            if epoch >= 3:
                break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # a kill in the middle of a write leaves its temporary file (".<name>.<random>.npz") beside
    # the last complete checkpoint, which is what a resubmitted job finds
    (ck,) = [f for f in ck_dir.glob("*.npz") if not f.name.startswith(".")]
    killed_at = int(load_weights(ck)[1]["epoch"])
    assert 3 <= killed_at < 150, "the job should be killed mid-run"
    # resubmitted: the same job again, through the launcher's job function
    r = run_job(s)
    assert r["status"] == "FINISHED", r["log"]
    resumed, _ = load_weights(d / "models" / "ep" / "seed0.npz")
    # an uninterrupted run, its own checkpoints
    r2 = run_job(spec("clean", tmp_path / "ck2"))
    assert r2["status"] == "FINISHED", r2["log"]
    clean, _ = load_weights(tmp_path / "jobs" / "clean" / "train_ep_0" / "models" / "ep" / "seed0.npz")
    for a, b in zip(resumed.W + resumed.b, clean.W + clean.b):
        np.testing.assert_array_equal(a, b)


def test_failed_item_is_reported_with_the_command_that_resubmits_it(toy_repo, tmp_path):
    head, env = toy_repo
    env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"}
    # a learning rate that diverges: the job's stage fails, the sweep says which item and how to rerun it
    out = run([BIN / "python", "-m", "cli.launch", "train_ep@1", "--launcher", "local", "--sweep", "bad",
               "-S", "ep.lr=[1e38,1e38]", "-S", "ep.epochs=2"], head, env, check=False)
    assert out.returncode == 1
    assert "1 of 1 items failed: train_ep@1" in out.stdout
    assert "python -m cli.launch train_ep@1 --launcher local --sweep bad -S ep.lr=[1e38,1e38]" in out.stdout
    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["eqspike"], output_format="list")
    assert {r.info.run_name: r.info.status for r in runs} == {"bad": "FAILED", "bad/train_ep@1": "FAILED"}
    bad = run([BIN / "python", "-m", "cli.launch", "nope@3", "--launcher", "local"], head, env, check=False)
    assert bad.returncode == 2 and "nope@3" in bad.stderr


def test_two_queued_experiments_with_two_workers(toy_repo):
    """``dvc queue start -j 2`` against the SQLite default: both runs and their metrics in the
    store, each with its own checkpoint."""
    import mlflow

    head, env = toy_repo
    run([BIN / "python", "-m", "cli.tracking_init"], head, env)
    for lr in ("0.1", "0.05"):
        run([BIN / "dvc", "exp", "run", "--queue", "-S", f"ep.lr=[{lr},{lr}]", "train_ep@0"], head, env)
    run([BIN / "dvc", "queue", "start", "-j", "2"], head, env)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = run([BIN / "dvc", "queue", "status"], head, env).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    run([BIN / "dvc", "queue", "stop", "--kill"], head, env, check=False)
    assert status.count("Success") == 2, status
    mlflow.set_tracking_uri(f"sqlite:///{head / 'mlflow.db'}")
    runs = [r for r in mlflow.search_runs(experiment_names=["eqspike"], output_format="list")
            if r.data.tags.get("stage") == "train_ep"]
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert all("test_accuracy" in r.data.metrics for r in runs)
    assert len({r.data.tags["run_key"] for r in runs}) == 2  # two checkpoints, never one shared
    assert {r.data.tags["threads"] for r in runs} == {"1"}  # EQSPIKE_THREADS reached the workers
    assert {r.data.params["ep.lr"] for r in runs} == {"[0.1, 0.1]", "[0.05, 0.05]"}
