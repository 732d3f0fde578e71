"""Array backend selection, and the promise that `import pipeline` stays light."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pipeline.core.backend import BackendError, array_module, get_xp, gpu_available, to_host
from tests.conftest import REPO


def test_cpu_is_numpy():
    assert get_xp("cpu") is np
    assert array_module(np.zeros(2)) is np
    a = np.arange(3)
    assert to_host(a) is a


def test_auto_uses_numpy_without_gpu():
    if gpu_available():
        import cupy

        assert get_xp("auto") is cupy
    else:
        assert get_xp("auto") is np


def test_gpu_without_gpu_is_a_clear_error():
    if gpu_available():
        pytest.skip("a GPU is usable here; the error path cannot be exercised")
    with pytest.raises(BackendError, match="runtime.device=gpu"):
        get_xp("gpu")


def test_unknown_device_is_rejected():
    with pytest.raises(BackendError, match="runtime.device"):
        get_xp("tpu")


def test_import_pipeline_loads_no_heavy_module():
    code = (
        "import sys, pkgutil, importlib, pipeline\n"
        "for m in pkgutil.iter_modules(pipeline.__path__):\n"
        "    importlib.import_module('pipeline.' + m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in "
        "('cupy', 'mlflow', 'hydra', 'omegaconf', 'dvc'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
