"""Training loop shared by every model (rate-based EP, EqSpike, the backprop MLP): epochs of
mini-batch learning, the weight average, evaluation, callbacks. A model adapter (``ep.EPModel``,
``eqspike.EqSpikeModel``, ``bp.BPModel``) supplies the batch update and the evaluation; a
``Schedule`` the epochs and learning rates; ``TrainCfg`` the aids every model shares (one decay
of the weight average for all, or none).

What is read when (docs/selection.md): every epoch, the validation split when there is one (the
figures that choices read); the test set once, after the last epoch (``test``), for the raw
weights (the headline: what the rule leaves in the synapses) and the average beside them.

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
from pipeline.core.schema import Checked, ConfigError, req

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

    @property
    def random_sign(self) -> bool:
        """Draw the sign of beta per batch (models with ``nudge: random_sign`` say so)."""
        return getattr(self, "nudge", None) == "random_sign"

    def check_lr(self, path: str, sizes) -> None:
        if len(self.lr) != len(sizes) - 1:
            raise ConfigError(f"{path}.lr: needs one learning rate per weight matrix "
                              f"({len(sizes) - 1} for sizes {list(sizes)}), got {len(self.lr)}")


@dataclass(frozen=True, kw_only=True)
class TrainCfg(Checked):
    """The ``train`` config: the aids of the training loop, one setting for every model, so that
    no model gets an aid the others lack (conf/train/default.yaml)."""

    config_path = "train"

    # exponential moving average of the weights, factor per update (0: none); evaluated and
    # saved beside the raw weights, never in their place
    ema_decay: float = req(ge=0, lt=1)
    # keep the raw weights after these epochs (<runs>/seed<n>/snapshots/epoch<e>.npz): the
    # analyses can look at learning along the way, not only at its end
    snapshot_epochs: list[int] = req(ge=1)


def epoch_plan(seed: int, epoch: int, n: int, batch_size: int, random_sign: bool):
    """Data order and per-batch sign of beta for ``epoch``, drawn on the host."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n)
    n_batches = -(-n // batch_size)
    signs = rng.choice([-1.0, 1.0], size=n_batches) if random_sign else np.ones(n_batches)
    return order, signs


def blas_single_thread(xp):
    """On the CPU with compiled kernels (the models' or the weight average's), keep BLAS to one
    thread: its idle threads spin and take the cores from the kernels' own threads (measured:
    4.4 ms a batch instead of 17)."""
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


def evaluate_both(model, params: Params, ema: Params | None, x, y, split: str, keep: bool = False) -> dict:
    """``<split>_*`` figures of the raw weights (their events counted), and with a weight average
    ``<split>_accuracy*_averaged`` beside them; ``keep``: the per-example predictions too (arrays
    under ``predicted*``, ``predicted*_averaged``)."""
    figures = model.evaluate(params, x, y, count=True, keep=keep)
    out = named(split, {k: v for k, v in figures.items() if not k.startswith("predicted")})
    out.update({k: v for k, v in figures.items() if k.startswith("predicted")})
    if ema is not None:
        avg = model.evaluate(ema, x, y, count=False, keep=keep)
        out.update(named(split, {k: v for k, v in avg.items() if k.startswith("accuracy")}, "_averaged"))
        out.update({f"{k}_averaged": v for k, v in avg.items() if k.startswith("predicted")})
    return out


def test(model, params: Params, ema: Params | None, data: Dataset) -> tuple[dict, dict]:
    """The test set, read once, after training: ``test_*`` figures of the raw weights (and of the
    average beside them) with the model's extras (EqSpike: the inference events), and the
    per-example predictions (host arrays) that intervals over test examples need."""
    xp = model.xp
    dtype = params.W[0].dtype
    x, y = xp.asarray(data.x_test, dtype=dtype), xp.asarray(data.y_test)
    out = evaluate_both(model, params, ema, x, y, "test", keep=True)
    predictions = {k: v for k, v in out.items() if k.startswith("predicted")}
    figures = {k: v for k, v in out.items() if not k.startswith("predicted")}
    figures.update(model.epoch_extras())
    return figures, predictions


def fit(model, params: Params, data: Dataset, schedule: Schedule, seed: int, start_epoch: int = 0,
        ema: Params | None = None, ema_decay: float = 0.0,
        on_epoch_end: Callable[[int, dict], None] | None = None, progress: bool = True) -> list[dict]:
    """Train ``params`` in place from ``start_epoch`` to ``schedule.epochs``; return the records.

    ``ema`` (updated in place with factor ``ema_decay``), when given, holds the moving average
    of the weights. With a validation split (``data.x_val``) every epoch is evaluated on it
    (``val_*``: the raw weights; ``val_accuracy_averaged``: the average): the figures that
    choices of hyper-parameters read. The test set is not read here (``test``, after training).
    ``model.evaluate`` returns a dict of figures (``accuracy``, ``loss``, and for EqSpike
    ``accuracy_spike_count``).
    """
    xp = model.xp
    dtype = params.W[0].dtype
    x_train, y_train = xp.asarray(data.x_train, dtype=dtype), xp.asarray(data.y_train)
    has_val = data.x_val is not None
    if has_val:
        x_val, y_val = xp.asarray(data.x_val, dtype=dtype), xp.asarray(data.y_val)
    n, B = x_train.shape[0], schedule.batch_size
    records = []
    # compiled kernels, or the weight average's compiled pass, beside BLAS: BLAS on one thread
    # (the backprop MLP with the average: 16.5 ms a batch with BLAS's threads, 1.9 ms without)
    limits = (blas_single_thread(xp) if getattr(model, "compiled", False) or ema is not None
              else contextlib.nullcontext())
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
                    ema_update(ema, params, ema_decay)
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
            # ---- evaluation on the validation split (what choices read): the raw weights, the
            # average beside them
            train_accuracy = float(to_host(correct)) / n
            record = {"epoch": epoch + 1, "train_accuracy": train_accuracy, "train_error": 1.0 - train_accuracy,
                      "seconds": train_seconds}
            if has_val:
                record.update(evaluate_both(model, params, ema, x_val, y_val, "val"))
                record["val_error"] = 1.0 - record["val_accuracy"]
            record.update(model.epoch_extras())
            record["eval_seconds"] = time.perf_counter() - t0 - train_seconds
            records.append(record)
            if on_epoch_end is not None:
                on_epoch_end(epoch, record)
    return records
