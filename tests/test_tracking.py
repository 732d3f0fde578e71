"""MLflow tracking of stage runs: params, tags, FINISHED/FAILED, unreachable stores fail fast."""

from __future__ import annotations

import socket
import time

import mlflow
import pytest

from runner.stage import stage_main
from runner.tracking import tracking_root


def _runs():
    return mlflow.search_runs(experiment_names=["eqspike"], output_format="list")


def test_run_logged_with_tags_params_and_artifact(tmp_path, mlflow_store, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "exp-test")
    report = tmp_path / "report.json"
    report.write_text("{}")

    def worker(cfg, run):
        run.metrics({"answer": 42.0})
        run.artifact(report)

    assert stage_main("demo", worker)(["ep.epochs=3"]) == 0
    (run,) = _runs()
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert len(tags["git_commit"]) in (40, len("unknown"))
    assert tags["dvc_stage"] == "demo" and tags["dvc_exp_name"] == "exp-test"
    assert run.data.params["ep.epochs"] == "3"
    assert run.data.params["data.sources.2.kind"] == "npm"
    assert run.data.metrics["answer"] == 42.0
    artifacts = [f.path for f in mlflow.MlflowClient().list_artifacts(run.info.run_id)]
    assert artifacts == ["report.json"]


def test_failing_worker_marks_run_failed(mlflow_store, capsys):
    def worker(cfg, run):
        raise RuntimeError("boom")

    assert stage_main("demo", worker)([]) == 1
    assert "demo: failed: boom" in capsys.readouterr().err
    (run,) = _runs()
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: boom"


def test_sqlite_store_in_missing_directory_fails_fast(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'nope' / 'mlflow.db'}")
    called = []
    assert stage_main("demo", lambda cfg, run: called.append(1))([]) == 3
    assert str(tmp_path / "nope") in capsys.readouterr().err
    assert called == []


def test_unreachable_server_fails_fast(monkeypatch, capsys):
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    t0 = time.monotonic()
    assert stage_main("demo", lambda cfg, run: None)([]) == 3
    assert time.monotonic() - t0 < 30
    assert f"127.0.0.1:{port}" in capsys.readouterr().err


def test_queued_experiments_track_into_the_parent_repo(monkeypatch, tmp_path):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert tracking_root() == tmp_path.resolve()
    monkeypatch.delenv("DVC_ROOT")
    from runner.config import REPO

    assert tracking_root() == REPO


def test_default_store_is_absolute_sqlite(monkeypatch):
    from runner.config import load_config
    from runner.tracking import tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    uri = tracking_uri(load_config()[1])
    assert uri.startswith("sqlite:////") and uri.endswith("/mlflow.db")


@pytest.fixture(autouse=True)
def _reset_mlflow():
    yield
    while mlflow.active_run():
        mlflow.end_run()


def test_experiment_opens_on_training_runs_and_runs_say_what_they_were(mlflow_store, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "exp-lr")
    assert stage_main("demo", lambda cfg, run: None)(["eqspike.epochs=2", "eqspike.neuron.model=bernoulli"]) == 0
    exp = mlflow.get_experiment_by_name("eqspike")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    (run,) = _runs()
    assert run.info.run_name == "demo [exp-lr] eqspike.epochs=2 eqspike.neuron.model=bernoulli"
    note = run.data.tags["mlflow.note.content"]
    assert "| eqspike.epochs | 15 | 2 |" in note and "exp-lr" in note
    assert run.data.tags["mlflow.source.git.commit"] == run.data.tags["git_commit"]


def test_run_left_running_by_a_killed_process_is_marked_killed(mlflow_store, capsys):
    """SIGKILL leaves a run RUNNING; the next start of the same stage closes it as KILLED."""
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    client = mlflow.MlflowClient(tracking_uri=mlflow_store)
    exp_id = client.create_experiment("eqspike")
    stale = client.create_run(exp_id, tags={"stage": "demo", "host": socket.gethostname(), "pid": str(dead.pid)})
    other = client.create_run(exp_id, tags={"stage": "other", "host": socket.gethostname(), "pid": str(dead.pid)})
    alive = client.create_run(exp_id, tags={"stage": "demo", "host": socket.gethostname(), "pid": "1"})
    assert stage_main("demo", lambda cfg, run: None)([]) == 0
    assert client.get_run(stale.info.run_id).info.status == "KILLED"
    assert "ended without closing the run" in client.get_run(stale.info.run_id).data.tags["error"]
    assert client.get_run(other.info.run_id).info.status == "RUNNING"  # another stage: not ours to close
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"  # its process still runs
    assert f"marked the stale MLflow run {stale.info.run_id} KILLED" in capsys.readouterr().err


def test_two_starts_closing_the_same_stale_run_both_go_on(mlflow_store, monkeypatch):
    """Two queue workers start the same stage at once and find the same stale run: the second
    one's tag hits the unique key the first one's wrote; it goes on and the run ends KILLED."""
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    client = mlflow.MlflowClient(tracking_uri=mlflow_store)
    exp_id = client.create_experiment("eqspike")
    stale = client.create_run(exp_id, tags={"stage": "demo", "host": socket.gethostname(), "pid": str(dead.pid)})
    original = mlflow.MlflowClient.set_tag

    def raced(self, run_id, key, value, **kw):
        if key == "error":  # the other worker's insert lands first, then ours fails
            original(self, run_id, key, "the other worker's", **kw)
            raise mlflow.exceptions.MlflowException("UNIQUE constraint failed: tags.key, tags.run_uuid")
        return original(self, run_id, key, value, **kw)

    monkeypatch.setattr(mlflow.MlflowClient, "set_tag", raced)
    assert stage_main("demo", lambda cfg, run: None)([]) == 0
    assert client.get_run(stale.info.run_id).info.status == "KILLED"


def test_a_failing_tag_on_a_stale_run_is_not_hidden(mlflow_store, monkeypatch):
    """The negative case: the tag fails and nobody else wrote it: the error is not swallowed."""
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    client = mlflow.MlflowClient(tracking_uri=mlflow_store)
    exp_id = client.create_experiment("eqspike")
    client.create_run(exp_id, tags={"stage": "demo", "host": socket.gethostname(), "pid": str(dead.pid)})

    def broken(self, run_id, key, value, **kw):
        raise mlflow.exceptions.MlflowException("database is locked")

    monkeypatch.setattr(mlflow.MlflowClient, "set_tag", broken)
    with pytest.raises(mlflow.exceptions.MlflowException, match="database is locked"):
        stage_main("demo", lambda cfg, run: None)([])
