"""Faults and bad input (docs/faults.md): each row of that table has its test
here, or names the test elsewhere that shows it."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import mlflow
import numpy as np
import pytest

from pipeline.core.io import atomic_write
from pipeline.core.network import init_params, load_weights, save_weights


def ep_args(tmp_path, data, epochs=1):
    out = tmp_path / "out"
    return [*data, "ep.sizes=[784,16,10]", f"ep.epochs={epochs}", f"ep.out.models={out / 'models'}", f"ep.out.checkpoints={tmp_path / 'ck'}", f"ep.out.runs={out / 'runs'}"]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "nan"])
def test_corrupt_checkpoint_restarts_from_scratch_with_a_warning(damage, tmp_path, mnist_like_dir, mlflow_store,
                                                                 capsys):
    from stages.train_ep import main

    _, data = mnist_like_dir
    assert main(ep_args(tmp_path, data)) == 0
    (ckpt,) = (tmp_path / "ck").glob("*.npz")  # <run key>.npz: the epoch count is not in the key
    good = ckpt.read_bytes()
    if damage == "garbage":
        ckpt.write_bytes(b"not a zip file at all")
    elif damage == "truncated":
        ckpt.write_bytes(good[: len(good) // 2])
    else:
        params, extra = load_weights(ckpt)
        params.W[0][0, 0] = np.nan
        save_weights(ckpt, params, **extra)
    assert main(ep_args(tmp_path, data, epochs=2)) == 0  # and again: never fails on every rerun
    err = capsys.readouterr().err
    assert f"checkpoint {ckpt} is unusable" in err and "starting from scratch" in err
    _, extra = load_weights(ckpt)
    assert int(extra["epoch"]) == 2
    assert main(ep_args(tmp_path, data, epochs=2)) == 0
    assert "resuming" in capsys.readouterr().out


def test_n_train_larger_than_the_split_is_rejected_before_work(tmp_path, mnist_like_dir, monkeypatch, capsys):
    from stages.train_ep import main

    _, data = mnist_like_dir
    db = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    assert main([*data, "data.n_train=500"]) == 2
    assert capsys.readouterr().err.startswith("train_ep: bad config: data.n_train: 500 is more than the 200")
    assert not db.exists()


def crafted(path, kind):
    params = init_params([784, 16, 10], seed=0)
    arrays = {f"W{i}": w for i, w in enumerate(params.W)} | {f"b{i}": b for i, b in enumerate(params.b)}
    if kind == "pickled":
        arrays["W0"] = np.array([object()], dtype=object)
    elif kind == "shape":
        arrays["W0"] = np.zeros((10, 16), np.float32)
    elif kind == "nan":
        arrays["W1"] = np.full((16, 10), np.nan, np.float32)
    np.savez(path, **arrays)


@pytest.mark.parametrize("kind,message", [("pickled", "not a readable weights file"),
                                          ("shape", "do not fit a network of sizes"),
                                          ("nan", "NaN or infinite")])
def test_crafted_weights_file_is_rejected_with_a_clear_message(kind, message, tmp_path, mnist_like_dir,
                                                               mlflow_store, capsys):
    from stages.stdp import main

    _, data = mnist_like_dir
    crafted(tmp_path / "seed0.npz", kind)
    assert main([*data, f"eqspike.out.models={tmp_path}", f"variant.out.models={tmp_path}",
                 f"stochastic.out.models={tmp_path}", "eqspike.sizes=[784,16,10]"]) == 1
    err = capsys.readouterr().err
    assert message in err and str(tmp_path / "seed0.npz") in err


def test_eqspike_divergence_fails_the_run_and_keeps_the_last_finite_checkpoint(tmp_path, mnist_like_dir,
                                                                               mlflow_store, monkeypatch):
    from pipeline.models import eqspike
    from stages.train_eqspike import main

    _, data = mnist_like_dir
    out = tmp_path / "out"
    real = eqspike.EqSpikeModel.train_batch
    calls = []

    def blow_up_in_epoch_2(self, params, x, labels, lr, sign):
        calls.append(1)
        result = real(self, params, x, labels, lr, sign)
        if len(calls) > 10:  # 200 examples / batch 20: epoch 2 starts at call 11
            params.W[0][:] = np.inf  # what an overflow in the spiking network leaves
        return result

    monkeypatch.setattr(eqspike.EqSpikeModel, "train_batch", blow_up_in_epoch_2)
    args = [*data, "eqspike.sizes=[784,16,10]", "eqspike.epochs=3", "eqspike.T=6", "eqspike.K=3",
            "eqspike.eval_avg_steps=2", f"eqspike.out.models={out / 'models'}", f"eqspike.out.checkpoints={tmp_path / 'ck'}", f"eqspike.out.runs={out / 'runs'}"]
    assert main(args) == 1
    (run,) = mlflow.search_runs(experiment_names=["eqspike"], output_format="list")
    assert run.info.status == "FAILED" and "diverged in epoch 2" in run.data.tags["error"]
    (ckpt,) = (tmp_path / "ck").glob("*.npz")
    params, extra = load_weights(ckpt)
    assert int(extra["epoch"]) == 1 and ckpt.stem == extra["run_key"]
    assert all(np.isfinite(w).all() for w in params.W + params.b)


def test_a_failed_write_leaves_the_previous_file(tmp_path):
    """A full disk (ENOSPC) in the middle of writing a checkpoint or a metrics file: the previous
    file survives intact and no temporary file is left."""
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"test_accuracy": 0.97}))

    def write_then_fail(tmp):
        tmp.write_text('{"test_acc')
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, write_then_fail)
    assert json.loads(path.read_text()) == {"test_accuracy": 0.97}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_faults_table_names_tests_that_exist():
    """Every test the "Faults and bad input" table (docs/faults.md) names is a test of this suite."""
    import re

    from tests.conftest import REPO

    table = (REPO / "docs" / "faults.md").read_text().split("# Faults and bad input", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) >= 10
    sources = {p.name: p.read_text() for p in (REPO / "tests").glob("test_*.py")}
    for row in rows:
        test_cell = row.rstrip(" |").rsplit("|", 1)[1]
        names = re.findall(r"`(tests/test_\w+\.py)(?:::(\w+))?`|`(test_\w+)`", test_cell)
        assert names, f"no test named in: {row}"
        for path, func, bare in names:
            if path:
                assert Path(path).name in sources, path
                if func:
                    assert f"def {func}(" in sources[Path(path).name], f"{path}::{func}"
            else:
                assert any(f"def {bare}(" in text for text in sources.values()), bare
