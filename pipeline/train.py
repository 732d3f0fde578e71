"""Training loop shared by rate-based EP and EqSpike: epochs of mini-batch learning, weight
averaging, evaluation, callbacks. A model adapter (``EPModel``, ``EqSpikeModel``) supplies the
batch update and the evaluation.

The loop is deterministic for a given seed on the CPU: the data order and the signs of beta
(``random_sign`` nudging) of epoch e come from ``np.random.default_rng([seed, e])`` on the host,
so a run resumed from the checkpoint of epoch e ends with the same weights as an uninterrupted
one. The stage owns I/O and tracking through ``on_epoch_end``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict
from types import ModuleType

import numpy as np
from tqdm import tqdm

from pipeline import ep, spiking
from pipeline.backend import to_host
from pipeline.data import Dataset
from pipeline.schema import EPCfg, EqSpikeCfg, NeuronCfg

# how often (in batches) the loop checks the weights for NaN/inf: a cheap look at the last layer
FINITE_CHECK_EVERY = 200


class DivergenceError(RuntimeError):
    """Training produced non-finite weights."""


class EPModel:
    """Rate-based EP (pipeline.ep) as seen by ``fit``."""

    name = "ep"

    def __init__(self, cfg: EPCfg, xp: ModuleType, seed: int):
        self.cfg, self.xp = cfg, xp
        self.dyn = ep.Dynamics(T=cfg.T, K=cfg.K, beta=cfg.beta, nudge=cfg.nudge,
                               placement=cfg.nudge_placement, activation=cfg.activation, rule=cfg.rule)

    def train_batch(self, params: ep.Params, x, labels, lr, sign: float):
        target = ep.centred_target(labels, params.W[-1].shape[1], self.xp, x.dtype)
        return ep.train_batch(params, x, target, self.dyn, lr, sign)

    def evaluate(self, params: ep.Params, x, labels, count: bool = True) -> tuple[float, float]:
        return ep.evaluate(params, x, labels, self.dyn, self.cfg.eval_batch_size)

    def start_epoch(self, epoch: int) -> None:
        pass

    def epoch_extras(self) -> dict:
        return {}


class EqSpikeModel:
    """EqSpike (pipeline.spiking) as seen by ``fit``; counts events of training and inference."""

    name = "eqspike"

    def __init__(self, cfg: EqSpikeCfg, neuron: NeuronCfg, xp: ModuleType, seed: int):
        self.cfg, self.xp = cfg, xp
        self.dyn = spiking.SpikeDynamics(
            T=cfg.T, K=cfg.K, beta=cfg.beta, nudge=cfg.nudge, pre_factor=cfg.pre_factor,
            activation=cfg.activation, eval_avg_steps=cfg.eval_avg_steps,
            neuron=spiking.NeuronModel(model=neuron.model, threshold=neuron.threshold,
                                       tau_syn_steps=neuron.tau_syn_steps, leak=neuron.leak))
        self.seed = seed
        self.rng = spiking.make_rng(xp, [seed, 1, 0])
        self._reset()

    def start_epoch(self, epoch: int) -> None:
        # Bernoulli spikes: one stream per epoch, so a resumed run draws what an uninterrupted
        # one would have drawn
        self.rng = spiking.make_rng(self.xp, [self.seed, 1, epoch])

    def _reset(self) -> None:
        self.train_counts, self.test_counts = spiking.Counts(), spiking.Counts()
        self.n_train = self.n_test = 0

    def train_batch(self, params, x, labels, lr, sign: float):
        self.n_train += x.shape[0]
        target = spiking.onehot(labels, params.W[-1].shape[1], self.xp, x.dtype)
        return spiking.train_batch(params, x, target, self.dyn, lr, sign, self.rng, self.train_counts)

    def evaluate(self, params, x, labels, count: bool = True) -> tuple[float, float]:
        """``count``: add this evaluation's events to the inference counts (the evaluated
        weights only, not the raw weights evaluated beside a moving average)."""
        if count:
            self.n_test += x.shape[0]
        return spiking.evaluate(params, x, labels, self.dyn, self.cfg.eval_batch_size, self.rng,
                                self.test_counts if count else None)

    def epoch_extras(self) -> dict:
        """Event counts per example of this epoch: training (free + nudged phases, updates) and
        inference (one free phase of the evaluated weights)."""
        out = {f"events.train.{k}": v / max(self.n_train, 1) for k, v in self.train_counts.host().items()}
        out.update({f"events.inference.{k}": v / max(self.n_test, 1)
                    for k, v in self.test_counts.host().items()})
        self._reset()
        return out


def code_digest() -> str:
    """Hash of the modules that shape the weights: a checkpoint made by other code is not resumed."""
    h = hashlib.sha256()
    for path in (ep.__file__, spiking.__file__, __file__):
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def run_key(cfg, seed: int, dtype: str, n_train: int, extra: dict | None = None) -> str:
    """Identity of a training run for resuming: everything that shapes the weights (config,
    seed, data size, code) except the number of epochs, so a finished run can be extended."""
    relevant = {k: v for k, v in asdict(cfg).items() if k not in ("epochs", "out", "eval_batch_size")}
    relevant.update(seed=seed, dtype=dtype, n_train=n_train, code=code_digest(), **(extra or {}))
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def epoch_plan(seed: int, epoch: int, n: int, batch_size: int, random_sign: bool):
    """Data order and per-batch sign of beta for ``epoch``, drawn on the host."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n)
    n_batches = -(-n // batch_size)
    signs = rng.choice([-1.0, 1.0], size=n_batches) if random_sign else np.ones(n_batches)
    return order, signs


def copy_params(params: ep.Params) -> ep.Params:
    return ep.Params([w.copy() for w in params.W], [b.copy() for b in params.b])


def fit(model, params: ep.Params, data: Dataset, seed: int, start_epoch: int = 0,
        ema: ep.Params | None = None, on_epoch_end: Callable[[int, dict], None] | None = None,
        progress: bool = True) -> list[dict]:
    """Train ``params`` in place from ``start_epoch`` to ``cfg.epochs``; return the records.

    With ``cfg.ema_decay`` > 0, ``ema`` (updated in place) holds the moving average of the
    weights and is what ``test_accuracy`` evaluates; the raw weights give ``test_accuracy_raw``.
    """
    cfg, xp = model.cfg, model.xp
    dtype = params.W[0].dtype
    x_train, y_train = xp.asarray(data.x_train, dtype=dtype), xp.asarray(data.y_train)
    x_test, y_test = xp.asarray(data.x_test, dtype=dtype), xp.asarray(data.y_test)
    n, B = x_train.shape[0], cfg.batch_size
    decay = cfg.ema_decay
    records = []
    for epoch in range(start_epoch, cfg.epochs):
        # ---- one epoch of learning --------------------------------------------------------
        t0 = time.perf_counter()
        order, signs = epoch_plan(seed, epoch, n, B, cfg.nudge == "random_sign")
        model.start_epoch(epoch)
        lr = [eta * cfg.lr_decay**epoch for eta in cfg.lr]
        correct = xp.zeros((), dtype=xp.int64)  # accumulated on the device: no sync per batch
        starts = range(0, n, B)
        for b, start in enumerate(tqdm(starts, desc=f"{model.name} epoch {epoch + 1}/{cfg.epochs}",
                                       disable=not progress, leave=False, mininterval=1.0)):
            idx = xp.asarray(order[start : start + B])
            xb, yb = x_train[idx], y_train[idx]
            out = model.train_batch(params, xb, yb, lr, float(signs[b]))
            correct += (out.argmax(axis=1) == yb).sum()
            if ema is not None:
                for w, w_avg in zip(params.W + params.b, ema.W + ema.b):
                    w_avg *= decay
                    w_avg += (1.0 - decay) * w
            if b % FINITE_CHECK_EVERY == FINITE_CHECK_EVERY - 1 and not bool(xp.isfinite(params.W[-1]).all()):
                raise DivergenceError(
                    f"training diverged in epoch {epoch + 1}, batch {b + 1}: non-finite weights "
                    f"(lower {model.name}.lr, now {list(cfg.lr)}, or {model.name}.beta)"
                )
        train_seconds = time.perf_counter() - t0
        if not ep.is_finite(params):
            raise DivergenceError(
                f"training diverged in epoch {epoch + 1}: non-finite weights "
                f"(lower {model.name}.lr, now {list(cfg.lr)}, or {model.name}.beta)"
            )
        # ---- evaluation -------------------------------------------------------------------
        test_accuracy, test_loss = model.evaluate(ema if ema is not None else params, x_test, y_test)
        train_accuracy = float(to_host(correct)) / n
        record = {
            "epoch": epoch + 1,
            "train_accuracy": train_accuracy,
            "train_error": 1.0 - train_accuracy,
            "test_accuracy": test_accuracy,
            "test_error": 1.0 - test_accuracy,
            "test_loss": test_loss,
            "seconds": train_seconds,
        }
        if ema is not None:
            record["test_accuracy_raw"] = model.evaluate(params, x_test, y_test, count=False)[0]
        record.update(model.epoch_extras())
        record["eval_seconds"] = time.perf_counter() - t0 - train_seconds
        records.append(record)
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
    return records


def save_weights(path, params: ep.Params, ema: ep.Params | None = None, **extra) -> None:
    """``.npz`` with W0.., b0.. (and ema_W0.., ema_b0..) and scalar/str extras; no pickled objects."""
    arrays = {f"W{i}": to_host(w) for i, w in enumerate(params.W)}
    arrays.update({f"b{i}": to_host(b) for i, b in enumerate(params.b)})
    if ema is not None:
        arrays.update({f"ema_W{i}": to_host(w) for i, w in enumerate(ema.W)})
        arrays.update({f"ema_b{i}": to_host(b) for i, b in enumerate(ema.b)})
    arrays.update({k: np.asarray(v) for k, v in extra.items()})
    np.savez(path, **arrays)


def load_weights(path, xp: ModuleType = np, prefix: str = "") -> tuple[ep.Params, dict]:
    """Inverse of ``save_weights`` (``prefix="ema_"`` for the averaged weights);
    ``allow_pickle=False``, so a crafted file cannot run code."""
    with np.load(path, allow_pickle=False) as z:
        n = sum(1 for k in z.files if k.startswith(f"{prefix}W"))
        params = ep.Params([xp.asarray(z[f"{prefix}W{i}"]) for i in range(n)],
                           [xp.asarray(z[f"{prefix}b{i}"]) for i in range(n)])
        extra = {k: z[k].item() if z[k].ndim == 0 else z[k] for k in z.files
                 if not re.fullmatch(r"(ema_)?[Wb]\d+", k)}
    return params, extra
