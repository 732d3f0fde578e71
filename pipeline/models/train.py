"""Training loop shared by rate-based EP and EqSpike: epochs of mini-batch learning, weight
averaging, evaluation, callbacks. A model adapter (``ep.EPModel``, ``eqspike.EqSpikeModel``)
supplies the batch update and the evaluation; a ``Schedule`` the epochs and learning rates.

The loop is deterministic for a given seed on the CPU: the data order and the signs of beta
(``random_sign`` nudging) of epoch e come from ``np.random.default_rng([seed, e])`` on the host,
so a run resumed from the checkpoint of epoch e ends with the same weights as an uninterrupted
one. The caller (a stage) owns I/O and tracking through ``on_epoch_end``; this module knows no
config schema.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from pipeline.core.backend import to_host
from pipeline.core.network import Params, ema_update, is_finite
from pipeline.core.schema import ConfigError, req

if TYPE_CHECKING:
    from pipeline.data.idx import Dataset

# how often (in batches) the loop checks the weights for NaN/inf: a cheap look at the last layer
FINITE_CHECK_EVERY = 200


class DivergenceError(RuntimeError):
    """Training produced non-finite weights."""


# how the output is nudged; the one list of every model's ``nudge`` (docs/model.md)
NUDGES = ("symmetric", "one_sided", "random_sign")


@dataclass(frozen=True, kw_only=True)
class Phases:
    """The phases both EP models share: T free steps, then nudged phases of K steps at beta."""

    T: int = req(ge=1)  # free-phase steps
    K: int = req(ge=1)  # steps of each nudged phase
    beta: float = req(gt=0)
    nudge: str = req(choices=NUDGES)


@dataclass(frozen=True, kw_only=True)
class ModelOut:
    """Where a trained model writes, per seed n: ``<models>/seed<n>.npz`` (weights),
    ``<runs>/seed<n>/`` (metrics.json, curves; EqSpike also events.json and raster.png) and its
    checkpoint ``<checkpoints>/<run key>.npz``. The folders of each model are in its conf/ file."""

    models: str = req(min_len=1)
    checkpoints: str = req(min_len=1)
    runs: str = req(min_len=1)


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """The training schedule every model shares (part of each model's config: ``ep``, ``eqspike``,
    ``bp``). No defaults: every value comes from the model's conf/ file."""

    lr: list[float] = req(min_len=1, gt=0)  # one per weight matrix
    batch_size: int = req(ge=1)
    epochs: int = req(ge=1)
    eval_batch_size: int = req(ge=1)
    # multiply every learning rate by this factor after each epoch (1.0: constant)
    lr_decay: float = req(gt=0, le=1)
    # evaluate (and save) an exponential moving average of the weights, factor per update
    # (0: off, use the raw weights)
    ema_decay: float = req(ge=0, lt=1)

    @property
    def random_sign(self) -> bool:
        """Draw the sign of beta per batch (models with ``nudge: random_sign`` say so)."""
        return getattr(self, "nudge", None) == "random_sign"

    def check_lr(self, path: str, sizes) -> None:
        if len(self.lr) != len(sizes) - 1:
            raise ConfigError(f"{path}.lr: needs one learning rate per weight matrix "
                              f"({len(sizes) - 1} for sizes {list(sizes)}), got {len(self.lr)}")


def epoch_plan(seed: int, epoch: int, n: int, batch_size: int, random_sign: bool):
    """Data order and per-batch sign of beta for ``epoch``, drawn on the host."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n)
    n_batches = -(-n // batch_size)
    signs = rng.choice([-1.0, 1.0], size=n_batches) if random_sign else np.ones(n_batches)
    return order, signs


def blas_single_thread(xp):
    """On the CPU with compiled kernels, keep BLAS to one thread: its idle threads spin and take
    the cores from the kernels' own threads (measured: 4.4 ms a batch instead of 17)."""
    if xp is not np:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a requirement
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def named(split: str, figures: dict, suffix: str = "") -> dict:
    """``{"accuracy": a}`` -> ``{"<split>_accuracy<suffix>": a}``."""
    return {f"{split}_{k}{suffix}": v for k, v in figures.items()}


def fit(model, params: Params, data: Dataset, schedule: Schedule, seed: int, start_epoch: int = 0,
        ema: Params | None = None, on_epoch_end: Callable[[int, dict], None] | None = None,
        progress: bool = True) -> list[dict]:
    """Train ``params`` in place from ``start_epoch`` to ``schedule.epochs``; return the records.

    With ``schedule.ema_decay`` > 0, ``ema`` (updated in place) holds the moving average of the
    weights and is what ``test_accuracy`` evaluates; the raw weights give ``test_accuracy_raw``.
    With a validation split (``data.x_val``) every epoch is evaluated on it too (``val_*``): the
    figures that choices of hyper-parameters read. ``model.evaluate`` returns a dict of figures
    (``accuracy``, ``loss``, and for EqSpike ``accuracy_spike_count``).
    """
    xp = model.xp
    dtype = params.W[0].dtype
    x_train, y_train = xp.asarray(data.x_train, dtype=dtype), xp.asarray(data.y_train)
    x_test, y_test = xp.asarray(data.x_test, dtype=dtype), xp.asarray(data.y_test)
    has_val = data.x_val is not None
    if has_val:
        x_val, y_val = xp.asarray(data.x_val, dtype=dtype), xp.asarray(data.y_val)
    n, B = x_train.shape[0], schedule.batch_size
    records = []
    limits = blas_single_thread(xp) if getattr(model, "compiled", False) else contextlib.nullcontext()
    with limits:
        for epoch in range(start_epoch, schedule.epochs):
            # ---- one epoch of learning ----------------------------------------------------
            t0 = time.perf_counter()
            order, signs = epoch_plan(seed, epoch, n, B, schedule.random_sign)
            model.start_epoch(epoch)
            lr = [eta * schedule.lr_decay**epoch for eta in schedule.lr]
            correct = xp.zeros((), dtype=xp.int64)  # accumulated on the device: no sync per batch
            starts = range(0, n, B)
            for b, start in enumerate(tqdm(starts, desc=f"{model.name} epoch {epoch + 1}/{schedule.epochs}",
                                           disable=not progress, leave=False, mininterval=1.0)):
                idx = xp.asarray(order[start : start + B])
                xb, yb = x_train[idx], y_train[idx]
                out = model.train_batch(params, xb, yb, lr, float(signs[b]))
                correct += (out.argmax(axis=1) == yb).sum()
                if ema is not None:
                    ema_update(ema, params, schedule.ema_decay)
                if b % FINITE_CHECK_EVERY == FINITE_CHECK_EVERY - 1 and not bool(xp.isfinite(params.W[-1]).all()):
                    raise DivergenceError(
                        f"training diverged in epoch {epoch + 1}, batch {b + 1}: non-finite weights "
                        f"(lower {model.name}.lr, now {list(schedule.lr)}, or {model.name}.beta)"
                    )
            train_seconds = time.perf_counter() - t0
            if not is_finite(params):
                raise DivergenceError(
                    f"training diverged in epoch {epoch + 1}: non-finite weights "
                    f"(lower {model.name}.lr, now {list(schedule.lr)}, or {model.name}.beta)"
                )
            # ---- evaluation: the evaluated weights (the average when there is one), the raw
            # weights beside them, on the validation split (what choices read) and the test set
            train_accuracy = float(to_host(correct)) / n
            record = {"epoch": epoch + 1, "train_accuracy": train_accuracy, "train_error": 1.0 - train_accuracy,
                      "seconds": train_seconds}
            splits = ([("val", x_val, y_val)] if has_val else []) + [("test", x_test, y_test)]
            for split, x, y in splits:
                record.update(named(split, model.evaluate(ema if ema is not None else params, x, y,
                                                          count=split == "test")))
                if ema is not None:
                    raw = model.evaluate(params, x, y, count=False)
                    record.update(named(split, {k: v for k, v in raw.items() if k.startswith("accuracy")}, "_raw"))
            record["test_error"] = 1.0 - record["test_accuracy"]
            record.update(model.epoch_extras())
            record["eval_seconds"] = time.perf_counter() - t0 - train_seconds
            records.append(record)
            if on_epoch_end is not None:
                on_epoch_end(epoch, record)
    return records
