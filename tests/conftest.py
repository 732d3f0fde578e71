"""Shared fixtures: synthetic IDX datasets, an isolated MLflow store, the real composed config."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.schema import parse
from pipeline.data.idx import encode_idx, sha256_hex
from pipeline.data.spec import DataCfg

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REPO = Path(__file__).resolve().parents[1]


def synthetic_arrays(n_train: int = 60, n_test: int = 20, side: int = 4, seed: int = 0) -> dict:
    """Learnable toy images: class c lights pixel band c (plus noise), 10 classes."""
    rng = np.random.default_rng(seed)

    def make(n):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        images = rng.integers(0, 60, (n, side, side))
        flat = images.reshape(n, -1)
        for i, c in enumerate(labels):
            flat[i, (c * 3) % flat.shape[1] : (c * 3) % flat.shape[1] + 3] = 250
        return images.astype(np.uint8), labels.astype(np.uint8)

    xtr, ytr = make(n_train)
    xte, yte = make(n_test)
    return {"train-images-idx3-ubyte": xtr, "train-labels-idx1-ubyte": ytr,
            "t10k-images-idx3-ubyte": xte, "t10k-labels-idx1-ubyte": yte}


def data_cfg_dict(arrays: dict, sources: list[dict], directory: str = "data/toy") -> dict:
    """A DataCfg mapping whose hashes, shapes and label counts are those of ``arrays``."""

    def spec(name):
        a = arrays[name]
        d = {"name": name, "sha256": sha256_hex(encode_idx(a)), "shape": list(a.shape)}
        if a.ndim == 1:
            d["label_counts"] = np.bincount(a, minlength=10).tolist()
        return d

    return {
        "name": "toy", "dir": directory, "timeout_s": 1.0, "sources": sources, "validation": 0,
        "train_images": spec("train-images-idx3-ubyte"), "train_labels": spec("train-labels-idx1-ubyte"),
        "test_images": spec("t10k-images-idx3-ubyte"), "test_labels": spec("t10k-labels-idx1-ubyte"),
    }


def write_idx_dir(directory: Path, arrays: dict, gz: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        raw = encode_idx(a)
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (directory / name).write_bytes(raw)
    return directory


@pytest.fixture
def toy_arrays() -> dict:
    return synthetic_arrays()


@pytest.fixture
def toy_cfg(toy_arrays):
    def make(sources: list[dict]) -> DataCfg:
        return parse(DataCfg, data_cfg_dict(toy_arrays, sources), "data")

    return make


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch) -> str:
    """An isolated SQLite MLflow store for the test; returns its URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_STAGE", raising=False)
    return uri


@pytest.fixture
def mnist_like_dir(tmp_path) -> tuple[Path, list[str]]:
    """A small 28x28 IDX dataset on disk and the overrides that point a stage at it."""
    arrays = synthetic_arrays(n_train=200, n_test=100, side=28)
    directory = write_idx_dir(tmp_path / "mnist_like", arrays)
    overrides = [
        f"data.dir={directory}",
        "data.train_images.shape=[200,28,28]", "data.train_labels.shape=[200]",
        "data.test_images.shape=[100,28,28]", "data.test_labels.shape=[100]",
        "data.train_labels.label_counts=null", "data.test_labels.label_counts=null",
        "runtime.device=cpu", "runtime.progress=false",
    ]
    return directory, overrides


# --------------------------------------------------------------------------------------------
# The library's parameter types have no defaults for the science (conf/ is their one source);
# these build them in tests with the values most tests share.
# --------------------------------------------------------------------------------------------


def ep_dynamics(**kw):
    from pipeline.models import ep

    base = dict(nudge="symmetric", nudge_placement="outside", activation="sigmoid", rule="ep", engine="auto")
    return ep.Dynamics(**{**base, **kw})


def spike_dynamics(**kw):
    from pipeline.models import eqspike

    base = dict(engine="auto", input_layer="event")
    return eqspike.SpikeDynamics(**{**base, **kw})
