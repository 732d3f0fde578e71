"""Training loop for the rate-based EP network: epochs of mini-batch EP, evaluation, callbacks.

The loop is deterministic for a given seed on the CPU: the data order and the signs of beta
(``random_sign`` nudging) of epoch e come from ``np.random.default_rng([seed, e])`` on the host,
so a run resumed from the checkpoint of epoch e ends with the same weights as an uninterrupted
one. The stage owns I/O and tracking through ``on_epoch_end``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from types import ModuleType

import numpy as np
from tqdm import tqdm

from pipeline import ep
from pipeline.backend import to_host
from pipeline.data import Dataset
from pipeline.schema import EPCfg

# how often (in batches) the loop checks the weights for NaN/inf: a cheap look at the last layer
FINITE_CHECK_EVERY = 200


class DivergenceError(RuntimeError):
    """Training produced non-finite weights."""


def dynamics(cfg: EPCfg) -> ep.Dynamics:
    return ep.Dynamics(T=cfg.T, K=cfg.K, beta=cfg.beta, nudge=cfg.nudge,
                       placement=cfg.nudge_placement, activation=cfg.activation, rule=cfg.rule)


def code_digest() -> str:
    """Hash of the modules that shape the weights: a checkpoint made by other code is not resumed."""
    h = hashlib.sha256()
    for path in (ep.__file__, __file__):
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def run_key(cfg: EPCfg, seed: int, dtype: str, n_train: int) -> str:
    """Identity of a training run for resuming: everything that shapes the weights (config,
    seed, data size, code) except the number of epochs, so a finished run can be extended."""
    relevant = {k: v for k, v in asdict(cfg).items() if k not in ("epochs", "out", "eval_batch_size")}
    relevant.update(seed=seed, dtype=dtype, n_train=n_train, code=code_digest())
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def epoch_plan(seed: int, epoch: int, n: int, batch_size: int, random_sign: bool):
    """Data order and per-batch sign of beta for ``epoch``, drawn on the host."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n)
    n_batches = -(-n // batch_size)
    signs = rng.choice([-1.0, 1.0], size=n_batches) if random_sign else np.ones(n_batches)
    return order, signs


def fit(params: ep.Params, data: Dataset, cfg: EPCfg, seed: int, xp: ModuleType,
        start_epoch: int = 0, on_epoch_end: Callable[[int, dict], None] | None = None,
        progress: bool = True) -> list[dict]:
    """Train ``params`` in place from ``start_epoch`` to ``cfg.epochs``; return the records."""
    dyn = dynamics(cfg)
    dtype = params.W[0].dtype
    x_train, y_train = xp.asarray(data.x_train, dtype=dtype), xp.asarray(data.y_train)
    x_test, y_test = xp.asarray(data.x_test, dtype=dtype), xp.asarray(data.y_test)
    n, B = x_train.shape[0], cfg.batch_size
    n_classes = params.W[-1].shape[1]
    records = []
    for epoch in range(start_epoch, cfg.epochs):
        # ---- one epoch of EP ------------------------------------------------------------
        t0 = time.perf_counter()
        order, signs = epoch_plan(seed, epoch, n, B, cfg.nudge == "random_sign")
        lr = [eta * cfg.lr_decay**epoch for eta in cfg.lr]
        correct = xp.zeros((), dtype=xp.int64)  # accumulated on the device: no sync per batch
        starts = range(0, n, B)
        for b, start in enumerate(tqdm(starts, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                                       disable=not progress, leave=False, mininterval=1.0)):
            idx = xp.asarray(order[start : start + B])
            xb, yb = x_train[idx], y_train[idx]
            out = ep.train_batch(params, xb, ep.centred_target(yb, n_classes, xp, dtype), dyn, lr,
                                 float(signs[b]))
            correct += (out.argmax(axis=1) == yb).sum()
            if b % FINITE_CHECK_EVERY == FINITE_CHECK_EVERY - 1 and not bool(xp.isfinite(params.W[-1]).all()):
                raise DivergenceError(
                    f"training diverged in epoch {epoch + 1}, batch {b + 1}: non-finite weights "
                    f"(lower ep.lr, now {list(cfg.lr)}, or ep.beta)"
                )
        train_seconds = time.perf_counter() - t0
        if not ep.is_finite(params):
            raise DivergenceError(
                f"training diverged in epoch {epoch + 1}: non-finite weights "
                f"(lower ep.lr, now {list(cfg.lr)}, or ep.beta)"
            )
        # ---- evaluation -------------------------------------------------------------------
        test_accuracy, test_loss = ep.evaluate(params, x_test, y_test, dyn, cfg.eval_batch_size)
        train_accuracy = float(to_host(correct)) / n
        record = {
            "epoch": epoch + 1,
            "train_accuracy": train_accuracy,
            "train_error": 1.0 - train_accuracy,
            "test_accuracy": test_accuracy,
            "test_error": 1.0 - test_accuracy,
            "test_loss": test_loss,
            "seconds": train_seconds,
            "eval_seconds": time.perf_counter() - t0 - train_seconds,
        }
        records.append(record)
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
    return records


def save_weights(path, params: ep.Params, **extra) -> None:
    """``.npz`` with W0.., b0.. and scalar/str extras (no pickled objects)."""
    arrays = {f"W{i}": to_host(w) for i, w in enumerate(params.W)}
    arrays.update({f"b{i}": to_host(b) for i, b in enumerate(params.b)})
    arrays.update({k: np.asarray(v) for k, v in extra.items()})
    np.savez(path, **arrays)


def load_weights(path, xp: ModuleType = np) -> tuple[ep.Params, dict]:
    """Inverse of ``save_weights``; ``allow_pickle=False``, so a crafted file cannot run code."""
    with np.load(path, allow_pickle=False) as z:
        n = sum(1 for k in z.files if k.startswith("W"))
        params = ep.Params([xp.asarray(z[f"W{i}"]) for i in range(n)],
                           [xp.asarray(z[f"b{i}"]) for i in range(n)])
        extra = {k: z[k].item() if z[k].ndim == 0 else z[k] for k in z.files
                 if not (k[0] in "Wb" and k[1:].isdigit())}
    return params, extra
