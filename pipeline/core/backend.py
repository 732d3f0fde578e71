"""Array backend: NumPy on the CPU, CuPy on a GPU, the same model code on both.

Functions in this package take their array module from their inputs (``array_module``), not
from a global flag. CuPy is imported only when a GPU is asked for (``device`` = ``gpu`` or
``auto``), never at import time. Random numbers that must match across backends (initial
weights, data order) are drawn on the host with NumPy and then moved (``asarray``).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

DEVICES = ("auto", "cpu", "gpu")
# how a model runs its equations (not what): compiled CPU kernels, array operations, or auto
# (compiled on the CPU, array on a GPU); the one list of every model's ``engine``
ENGINES = ("auto", "array", "compiled")


class BackendError(RuntimeError):
    """A device was requested that this machine cannot provide."""


def gpu_available() -> bool:
    """True when CuPy imports and ``cupy.cuda.is_available()`` says a CUDA device is usable."""
    try:
        import cupy
    except ImportError:
        return False
    try:
        return bool(cupy.cuda.is_available())
    except Exception:  # a broken driver raises rather than returning False
        return False


def get_xp(device: str) -> ModuleType:
    """Array module for ``device`` (``auto`` | ``cpu`` | ``gpu``).

    ``auto`` picks CuPy only when a CUDA device is usable; ``gpu`` without one is an error,
    never a silent fall-back to the CPU.
    """
    if device not in DEVICES:
        raise BackendError(f"runtime.device must be one of {DEVICES}, got {device!r}")
    if device == "cpu":
        return np
    if device == "gpu":
        try:
            import cupy
        except ImportError as exc:
            raise BackendError(
                "runtime.device=gpu but CuPy is not installed "
                "(pip install -e .[gpu], or LOCK=requirements-gpu.lock bash scripts/setup.sh)"
            ) from exc
        if not gpu_available():
            raise BackendError(
                "runtime.device=gpu but no usable CUDA device (cupy.cuda.is_available() is False)"
            )
        return cupy
    if gpu_available():
        import cupy

        return cupy
    return np


def array_module(x: Any) -> ModuleType:
    """The module (numpy or cupy) that owns array ``x``."""
    if type(x).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    return np


def to_host(x: Any) -> np.ndarray:
    """A NumPy copy (or view) of ``x``; for CuPy arrays this is a device-to-host transfer."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "get"):
        return x.get()
    return np.asarray(x)


def device_name(xp: ModuleType) -> str:
    return "gpu" if xp.__name__ == "cupy" else "cpu"
