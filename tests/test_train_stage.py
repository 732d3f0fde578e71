"""The train_ep stage end to end on a tiny config: outputs, resume, divergence."""

from __future__ import annotations

import csv
import json

import mlflow
import numpy as np

from pipeline.core.network import load_weights
from stages.train_ep import main


def tiny(tmp_path, mnist_like_dir, epochs, **extra):
    _, data = mnist_like_dir
    overrides = [
        *data, "ep.sizes=[784,16,10]", f"ep.epochs={epochs}", "ep.T=6", "ep.K=3",
        "ep.batch_size=10", "ep.eval_batch_size=50", "ep.lr=[0.1,0.05]",
        f"ep.out.models={tmp_path / 'out' / 'models'}", f"ep.out.checkpoints={tmp_path / 'ckpt' / 'ck'}", f"ep.out.runs={tmp_path / 'out' / 'runs'}",
    ]
    return overrides + [f"{k}={v}" for k, v in extra.items()]


def test_outputs_and_tracking(tmp_path, mnist_like_dir, mlflow_store):
    assert main(tiny(tmp_path, mnist_like_dir, 2)) == 0
    out = tmp_path / "out"
    metrics = json.loads((out / "runs" / "seed0" / "metrics.json").read_text())
    assert metrics["epochs"] == 2
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and 0.0 <= metrics["train_accuracy"] <= 1.0
    assert metrics["seconds_per_epoch"] > 0
    rows = list(csv.DictReader((out / "runs" / "seed0" / "curve.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert (out / "runs" / "seed0" / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    params, extra = load_weights(out / "models" / "seed0.npz")
    assert [w.shape for w in params.W] == [(784, 16), (16, 10)]
    # both sets of weights, labelled: the raw ones (headline) and the shared average beside them
    averaged, _ = load_weights(out / "models" / "seed0.npz", prefix="ema_")
    assert extra["ema_decay"] == 0.999 and "raw weights" in str(extra["contents"])
    assert not np.array_equal(params.W[0], averaged.W[0])
    assert "test_accuracy_averaged" in metrics and metrics["ema_decay"] == 0.999
    with np.load(out / "runs" / "seed0" / "predictions.npz", allow_pickle=False) as z:
        assert z["predicted"].shape == z["labels"].shape == (metrics["n_test"],)
        assert (z["predicted"] == z["labels"]).mean() == metrics["test_accuracy"]
        assert (z["predicted_averaged"] == z["labels"]).mean() == metrics["test_accuracy_averaged"]
    (run,) = mlflow.search_runs(experiment_names=["eqspike"], output_format="list")
    assert run.info.status == "FINISHED"
    client = mlflow.MlflowClient()
    # the test set is read once, after the last epoch; training figures every epoch
    assert sorted({m.step for m in client.get_metric_history(run.info.run_id, "test_accuracy")}) == [2]
    assert sorted({m.step for m in client.get_metric_history(run.info.run_id, "train_accuracy")}) == [1, 2]


def test_toy_problem_is_learned(tmp_path, mnist_like_dir, mlflow_store):
    assert main(tiny(tmp_path, mnist_like_dir, 8)) == 0
    metrics = json.loads((tmp_path / "out" / "runs" / "seed0" / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.5  # chance is 0.1


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, mnist_like_dir, mlflow_store, capsys):
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(tiny(full, mnist_like_dir, 3)) == 0
    # a run killed after its first epoch leaves exactly the checkpoint of a 1-epoch run
    assert main(tiny(part, mnist_like_dir, 1)) == 0
    assert main(tiny(part, mnist_like_dir, 3)) == 0
    assert "resuming from" in capsys.readouterr().out
    a, _ = load_weights(full / "out" / "models" / "seed0.npz")
    b, _ = load_weights(part / "out" / "models" / "seed0.npz")
    for x, y in zip(a.W + a.b, b.W + b.b):
        np.testing.assert_array_equal(x, y)
    curve = list(csv.DictReader((part / "out" / "runs" / "seed0" / "curve.csv").open()))
    assert [int(r["epoch"]) for r in curve] == [1, 2, 3]


def test_checkpoint_of_another_config_is_not_resumed(tmp_path, mnist_like_dir, mlflow_store, capsys):
    assert main(tiny(tmp_path, mnist_like_dir, 1)) == 0
    assert main(tiny(tmp_path, mnist_like_dir, 1, **{"ep.beta": 0.3})) == 0
    assert "resuming" not in capsys.readouterr().out
    ckpts = sorted((tmp_path / "ckpt" / "ck").glob("*.npz"), key=lambda p: p.stat().st_mtime_ns)
    assert len(ckpts) == 2  # one per run key: two configs never share a checkpoint
    # a checkpoint file whose recorded key is another config's (copied by hand) is not resumed either
    ckpts[0].write_bytes(ckpts[1].read_bytes())
    assert main(tiny(tmp_path, mnist_like_dir, 1)) == 0
    assert "belongs to another config" in capsys.readouterr().out


def test_divergence_stops_with_a_failed_run(tmp_path, mnist_like_dir, mlflow_store, capsys):
    rc = main(tiny(tmp_path, mnist_like_dir, 2, **{"ep.lr": "[1e38,1e38]"}))
    assert rc == 1
    assert "diverged" in capsys.readouterr().err
    (run,) = mlflow.search_runs(experiment_names=["eqspike"], output_format="list")
    assert run.info.status == "FAILED"
    assert not (tmp_path / "out" / "runs" / "seed0" / "metrics.json").exists()


def test_snapshots_of_the_raw_weights_survive_a_resume(tmp_path, mnist_like_dir, mlflow_store):
    """train.snapshot_epochs [1, 3]: the raw weights after epochs 1 and 3 are outputs of the run,
    equal to those of a 1-epoch and a 3-epoch run, also when the run was resumed after DVC removed
    its outputs (the snapshots wait beside the checkpoint)."""
    import shutil

    one, full = tmp_path / "one", tmp_path / "full"
    assert main(tiny(one, mnist_like_dir, 1)) == 0
    assert main(tiny(full, mnist_like_dir, 1)) == 0
    shutil.rmtree(full / "out")  # what DVC does before it reruns a stage
    assert main(tiny(full, mnist_like_dir, 3)) == 0
    snaps = full / "out" / "runs" / "seed0" / "snapshots"
    assert sorted(p.name for p in snaps.glob("*.npz")) == ["epoch1.npz", "epoch3.npz"]
    a, _ = load_weights(snaps / "epoch1.npz")
    b, _ = load_weights(one / "out" / "models" / "seed0.npz")
    c, _ = load_weights(snaps / "epoch3.npz")
    d, _ = load_weights(full / "out" / "models" / "seed0.npz")
    for x, y in zip(a.W + c.W, b.W + d.W):
        np.testing.assert_array_equal(x, y)
