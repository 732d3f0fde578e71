"""The layered network both models share: parameters, their initialisation and their files.

Layers s_0 (input) .. s_L (output); one weight matrix per pair of adjacent layers, used in both
directions (symmetric connections), ``W[l]: (n_l, n_{l+1})``, and a bias per non-input layer,
``b[l]: (n_{l+1},)``. Rate-based EP (``pipeline/models/ep.py``) and EqSpike (``pipeline/models/eqspike/``)
both train a ``Params``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from types import ModuleType
from typing import NamedTuple

import numpy as np

from pipeline.core.backend import array_module, to_host
from pipeline.core.compiled import ema_pass


class Params(NamedTuple):
    """Weights and biases, updated in place. ``W[l]: (n_l, n_{l+1})``, ``b[l]: (n_{l+1},)``."""

    W: list
    b: list


def init_params(sizes: Sequence[int], seed: int, xp: ModuleType = np, dtype: str = "float32") -> Params:
    """PyTorch ``nn.Linear`` default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and
    biases, drawn on the host with NumPy from ``seed`` so CPU and GPU start identical."""
    rng = np.random.default_rng(seed)
    W, b = [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / np.sqrt(n_in)
        W.append(xp.asarray(rng.uniform(-bound, bound, (n_in, n_out)).astype(dtype)))
        b.append(xp.asarray(rng.uniform(-bound, bound, (n_out,)).astype(dtype)))
    return Params(W, b)


def sizes_of(params: Params) -> list[int]:
    return [params.W[0].shape[0], *(w.shape[1] for w in params.W)]


def copy_params(params: Params) -> Params:
    return Params([w.copy() for w in params.W], [b.copy() for b in params.b])


def is_finite(params: Params) -> bool:
    xp = array_module(params.W[0])
    return all(bool(xp.isfinite(a).all()) for a in (*params.W, *params.b))


def save_weights(path, params: Params, ema: Params | None = None, **extra) -> None:
    """``.npz`` with W0.., b0.. (and ema_W0.., ema_b0..) and scalar/str extras; no pickled objects."""
    arrays = {f"W{i}": to_host(w) for i, w in enumerate(params.W)}
    arrays.update({f"b{i}": to_host(b) for i, b in enumerate(params.b)})
    if ema is not None:
        arrays.update({f"ema_W{i}": to_host(w) for i, w in enumerate(ema.W)})
        arrays.update({f"ema_b{i}": to_host(b) for i, b in enumerate(ema.b)})
    arrays.update({k: np.asarray(v) for k, v in extra.items()})
    np.savez(path, **arrays)


def load_weights(path, xp: ModuleType = np, prefix: str = "") -> tuple[Params, dict]:
    """Inverse of ``save_weights`` (``prefix="ema_"`` for the averaged weights);
    ``allow_pickle=False``, so a crafted file cannot run code."""
    with np.load(path, allow_pickle=False) as z:
        n = sum(1 for k in z.files if k.startswith(f"{prefix}W"))
        params = Params([xp.asarray(z[f"{prefix}W{i}"]) for i in range(n)],
                        [xp.asarray(z[f"{prefix}b{i}"]) for i in range(n)])
        extra = {k: z[k].item() if z[k].ndim == 0 else z[k] for k in z.files
                 if not re.fullmatch(r"(ema_)?[Wb]\d+", k)}
    return params, extra


def ema_update(avg: Params, params: Params, decay: float) -> None:
    """avg <- decay avg + (1 - decay) w for every array (the weight average), in place."""
    ema_arrays(avg.W + avg.b, params.W + params.b, decay)


def ema_arrays(avgs, ws, decay: float) -> None:
    """``ema_update`` on lists of arrays (``a`` and ``w`` of one shape): one compiled pass per
    contiguous NumPy array, array operations otherwise (a GPU; a strided view)."""
    for a, w in zip(avgs, ws, strict=True):
        if array_module(a) is np and a.flags.c_contiguous and w.flags.c_contiguous:
            t = a.dtype.type
            ema_pass(a.reshape(-1), w.reshape(-1), t(decay), t(1.0 - decay))
        else:
            a *= decay
            a += (1.0 - decay) * w
