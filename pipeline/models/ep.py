"""Rate-based Equilibrium Propagation, discrete-time "prototypical" form (equations: docs/model.md).

Network: input x (fixed), layers s_1 .. s_L (the last is the output), one weight matrix per pair
of adjacent layers used in both directions (symmetric), biases per layer. Every layer is updated
from the previous step (synchronous):

    s_l[t+1] = rho(s_{l-1}[t] W_l + b_l + s_{l+1}[t] W_{l+1}^T)        (s_0 = x)
    rho(v)   = 1 / (1 + exp(-4 (v - 0.5)))    or the hard sigmoid clip(v, 0, 1)

Nudging of the output during the second phase (y one-hot):
    outside rho (Ernoult et al. 2019): s_L = rho(v) + beta (y - s_L)
    inside rho:                        s_L = rho(v + beta (y - s_L))
the second makes the nudged fixed point a stationary point of Phi - beta/2 ||y - s_L||^2, so the
EP update tends to minus the gradient of L = 1/2 ||y - s_L*||^2 (tests/test_ep_gradient.py).

EP update after the phases (B examples, per-layer rate eta_l):
    dW_l = eta_l / (beta B) * sum_batch (s_{l-1}^b s_l^b^T - s_{l-1}* s_l*^T),   db_l likewise
symmetric +-beta (Laborieux et al. 2021): (s^b, s*) -> (s^+beta, s^-beta) and beta -> 2 beta.
C-EP (Ernoult et al. 2020): the same expression with (s[t+1], s[t]) applied at every nudged step.

Implementation note (speed). The dynamics run on the centred state u = 2 s - 1. With
z = 2 v - 1 the slope-4 sigmoid is rho(v) = (1 + tanh(z)) / 2, i.e. u = tanh(z), and the hard
sigmoid is u = clip(z, -1, 1). Since s = (u + 1) / 2,

    z_l = u_{l-1} W_l + u_{l+1} W_{l+1}^T + c_l,    c_l = 1 W_l + W_{l+1} 1 + 2 b_l - 1

(for the first layer, 2 x W_1 replaces u_0 W_1 + 1 W_1). The offsets c_l are computed once per
phase, so one step costs a matrix product, an add and a tanh per layer, instead of seven array
operations in the rate form. Nudging maps exactly: 2 (y - s) = y~ - u with y~ = 2 y - 1, so
outside rho u_L += beta (y~ - u_L), inside rho z_L += beta (y~ - u_L). The learning rule uses s = (u + 1) / 2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np
from numba import njit, prange

from pipeline.core.backend import ENGINES, array_module, to_host
from pipeline.core.compiled import (
    ACT_EXACT,
    ACT_FAST,
    ACT_HARD,
    FASTMATH,
    _copy,
    _from_above,
    _from_below,
    fast_tanh,
)
from pipeline.core.network import Params, init_params, is_finite  # noqa: F401  (re-exported)
from pipeline.core.neuron import ACTIVATIONS, check_activation, rho, rho_centred  # noqa: F401
from pipeline.core.schema import Checked, ConfigError, req
from pipeline.models.train import ModelOut, Phases, Schedule


@dataclass(frozen=True, kw_only=True)
class Dynamics(Phases, Checked):
    """How rate-based EP relaxes and nudges (part of the ``ep`` config; values in conf/ep/)."""

    config_path = "ep"

    # "outside": o = rho(.) + beta (y - o) (Ernoult's code); "inside": o = rho(. + beta (y - o))
    nudge_placement: str = req(choices=("outside", "inside"))
    activation: str = req(choices=ACTIVATIONS)
    rule: str = req(choices=("ep", "cep"))  # end-of-phase EP or continual EP (C-EP)
    engine: str = req(choices=ENGINES)  # how, not what: the same equations

    def check(self, path: str) -> None:
        if self.rule == "cep" and self.nudge == "symmetric":
            raise ConfigError(f"{path}.rule: cep (continual EP) updates during one nudged phase; "
                              f"use {path}.nudge=one_sided or random_sign with it")

    def compiled(self, xp) -> bool:
        if self.engine == "compiled" and xp is not np:
            raise ValueError("ep.engine=compiled runs on the CPU (NumPy arrays); use array or auto on a GPU")
        return self.engine == "compiled" or (self.engine == "auto" and xp is np)


@dataclass(frozen=True, kw_only=True)
class EPConfig(Schedule, Dynamics):
    """The ``ep`` config: the network, the dynamics, the schedule and where it writes."""

    sizes: list[int] = req(min_len=2, ge=1)
    out: ModelOut = req()

    def check(self, path: str) -> None:
        Dynamics.check(self, path)
        self.check_lr(path, self.sizes)


def centred_activation(name: str):
    """rho in the centred coordinates (``pipeline.neuron.rho_centred``), checked once."""
    check_activation(name)
    return lambda z, xp: rho_centred(z, name)


def to_rate(u):
    """s = (u + 1) / 2: the EP state of each neuron, in [0, 1]."""
    return (u + 1.0) * 0.5


def offsets(params: Params, x) -> list:
    """c_l of the module docstring; the first one includes the input drive, ``(B, n_1)``."""
    W, b = params
    L = len(W)
    c = []
    for l in range(L):
        off = 2.0 * b[l] - 1.0
        if l > 0:
            off = off + W[l].sum(axis=0)
        if l < L - 1:
            off = off + W[l + 1].sum(axis=1)
        c.append(off)
    c[0] = c[0] + 2.0 * (x @ W[0])
    return c


def initial_state(params: Params, batch: int) -> list:
    """All layers at s = 0, i.e. u = -1."""
    xp = array_module(params.W[0])
    return [xp.full((batch, w.shape[1]), -1.0, dtype=w.dtype) for w in params.W]


def step(params: Params, c: list, u: Sequence, dyn: Dynamics, target=None, beta: float = 0.0) -> list:
    """One synchronous update of every layer from the previous state ``u`` (centred form).

    ``c``: offsets from ``offsets``; ``target``: y~ = 2 y - 1, ``(B, n_L)``; ``beta`` signed.
    Returns the new state; ``u`` is not modified.
    """
    xp = array_module(u[0])
    g = centred_activation(dyn.activation)
    W = params.W
    L = len(u)
    new = []
    for l in range(L):
        # input from above (W^T) and from below (W); the first layer's input drive is in c[0]
        if l + 1 < L:
            z = u[l + 1] @ W[l + 1].T
            if l > 0:
                z += u[l - 1] @ W[l]
        elif l > 0:
            z = u[l - 1] @ W[l]
        else:
            z = xp.zeros_like(u[l])
        z += c[l]
        if l + 1 == L and beta != 0.0:
            nudge = target - u[l]
            nudge *= beta
            if dyn.nudge_placement == "inside":
                z += nudge
                g(z, xp)
            else:
                g(z, xp)
                z += nudge
        else:
            g(z, xp)
        new.append(z)
    return new


def run_phase(params: Params, c: list, u: Sequence, steps: int, dyn: Dynamics, target=None,
              beta: float = 0.0) -> list:
    """``steps`` synchronous steps (``step``); the compiled engine runs them in one kernel."""
    if dyn.compiled(array_module(u[0])):
        return _run_phase_compiled(params, c, u, steps, dyn, target, beta)
    for _ in range(steps):
        u = step(params, c, u, dyn, target, beta)
    return u


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _example_phase(WT, c, off, u, steps, target, beta, inside, act):
    """``steps`` steps of one example: ``u`` and ``c`` rows ``(N,)``, layers at ``off``."""
    N = u.shape[0]
    L = off.shape[0] - 1
    one = c[0] - c[0] + 1
    z = np.empty(N, u.dtype)
    fb = np.empty(N, u.dtype)
    lo_out = off[L - 1]
    for _ in range(steps):
        for m in range(L):
            lo, hi = off[m], off[m + 1]
            if m > 0:
                _from_below(z[lo:hi], u[off[m - 1]:lo], WT[m - 1], c[lo:hi])
            else:
                _copy(z[lo:hi], c[lo:hi])
            if m + 1 < L:
                _from_above(z[lo:hi], fb[lo:hi], u[hi:off[m + 2]], WT[m])
        if beta != 0.0 and inside:
            for i in range(N - lo_out):
                z[lo_out + i] += beta * (target[i] - u[lo_out + i])
        if act == ACT_EXACT:
            for i in range(N):
                z[i] = math.tanh(z[i])
        elif act == ACT_FAST:
            for i in range(N):
                z[i] = fast_tanh(z[i])
        else:
            for i in range(N):
                z[i] = min(max(z[i], -one), one)
        if beta != 0.0 and not inside:
            for i in range(N - lo_out):
                z[lo_out + i] += beta * (target[i] - u[lo_out + i])
        _copy(u, z)


@njit(parallel=True, error_model="numpy", cache=True)
def _phase_kernel(WT, c, off, u, steps, target, beta, inside, act):
    for bb in prange(u.shape[0]):
        b = np.int64(bb)
        _example_phase(WT, c[b], off, u[b], steps, target[min(b, np.int64(target.shape[0] - 1))], beta,
                       inside, act)


def _run_phase_compiled(params: Params, c: list, u: Sequence, steps: int, dyn: Dynamics, target=None,
                        beta: float = 0.0) -> list:
    B = u[0].shape[0]
    dtype = u[0].dtype
    sizes = [v.shape[1] for v in u]
    off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    packed = np.concatenate(u, axis=1)
    cc = np.concatenate([np.broadcast_to(v, (B, n)) for v, n in zip(c, sizes)], axis=1)
    WT = tuple(np.ascontiguousarray(w.T) for w in params.W[1:]) or (np.zeros((1, 1), dtype),)
    act = ACT_HARD if dyn.activation == "hard_sigmoid" else (ACT_EXACT if dtype == np.float64 else ACT_FAST)
    tgt = target if target is not None else np.zeros((1, sizes[-1]), dtype)
    _phase_kernel(WT, cc, off, packed, steps, tgt, dtype.type(beta), dyn.nudge_placement == "inside", act)
    return [packed[:, off[m]:off[m + 1]] for m in range(len(sizes))]


def free_phase(params: Params, x, dyn: Dynamics, steps: int | None = None) -> list:
    """T steps (or ``steps``) from s = 0 with no nudging; returns the centred state."""
    c = offsets(params, x)
    return run_phase(params, c, initial_state(params, x.shape[0]), dyn.T if steps is None else steps, dyn)


def apply_update(params: Params, x, s_a: Sequence, s_b: Sequence, scale: Sequence[float]) -> None:
    """W_l += scale_l * (s_{l-1}^a^T s_l^a - s_{l-1}^b^T s_l^b), b_l += scale_l * sum(s_l^a - s_l^b).

    ``s_a``, ``s_b``: rate-form states (input excluded); ``scale_l`` = eta_l / (beta B).
    The input layer is the same in both, so its term is x^T (s_1^a - s_1^b): one product.
    """
    W, b = params
    for l in range(len(W)):
        diff = s_a[l] - s_b[l]
        diff *= scale[l]  # scale the small (B, n) factor, not the (n_in, n_out) product
        if l == 0:
            W[l] += x.T @ diff
        else:
            W[l] += scale[l] * (s_a[l - 1].T @ s_a[l] - s_b[l - 1].T @ s_b[l])
        b[l] += diff.sum(axis=0)


def train_batch(params: Params, x, target, dyn: Dynamics, lr: Sequence[float], sign: float = 1.0):
    """One EP step of learning on a batch. ``target``: y~ = 2 y - 1 ``(B, n_L)``; ``sign``: the
    sign of beta for ``random_sign`` nudging. Returns the free-phase output (centred)."""
    B = x.shape[0]
    c = offsets(params, x)
    u_free = run_phase(params, c, initial_state(params, B), dyn.T, dyn)
    beta = dyn.beta * sign
    if dyn.rule == "cep":
        u = u_free
        s_prev = [to_rate(v) for v in u]
        for _ in range(dyn.K):
            u = step(params, c, u, dyn, target, beta)  # the array engine: the weights move every step
            s_next = [to_rate(v) for v in u]
            apply_update(params, x, s_next, s_prev, [eta / (beta * B) for eta in lr])
            c = offsets(params, x)  # the weights moved: C-EP's next step sees them
            s_prev = s_next
        return u_free[-1]
    u_pos = run_phase(params, c, u_free, dyn.K, dyn, target, beta)
    if dyn.nudge == "symmetric":
        u_neg = run_phase(params, c, u_free, dyn.K, dyn, target, -beta)
        apply_update(params, x, [to_rate(v) for v in u_pos], [to_rate(v) for v in u_neg],
                     [eta / (2.0 * beta * B) for eta in lr])
    else:
        apply_update(params, x, [to_rate(v) for v in u_pos], [to_rate(v) for v in u_free],
                     [eta / (beta * B) for eta in lr])
    return u_free[-1]


def centred_target(labels, n_classes: int, xp: ModuleType, dtype) -> np.ndarray:
    """y~ = 2 onehot(labels) - 1, ``(B, n_classes)``."""
    t = xp.full((labels.shape[0], n_classes), -1.0, dtype=dtype)
    t[xp.arange(labels.shape[0]), labels] = 1.0
    return t


def evaluate(params: Params, x, labels, dyn: Dynamics, batch_size: int = 1000,
             predicted: list | None = None) -> tuple[float, float]:
    """Test accuracy (argmax of the output after the free phase) and mean loss
    1/2 ||y - s_L||^2 per example. Returns host floats (one device sync per batch);
    ``predicted``: a list that receives each batch's predicted classes (host arrays)."""
    xp = array_module(x)
    correct, loss = 0, 0.0
    n_classes = params.W[-1].shape[1]
    for start in range(0, x.shape[0], batch_size):
        xb, yb = x[start : start + batch_size], labels[start : start + batch_size]
        out = to_rate(free_phase(params, xb, dyn)[-1])
        onehot = (centred_target(yb, n_classes, xp, out.dtype) + 1.0) * 0.5
        guess = out.argmax(axis=1)
        correct += int((guess == yb).sum())
        if predicted is not None:
            predicted.append(to_host(guess))
        loss += float(0.5 * ((onehot - out) ** 2).sum())
    return correct / x.shape[0], loss / x.shape[0]


class EPModel:
    """Rate-based EP as seen by ``pipeline.models.train.fit``."""

    name = "ep"

    def __init__(self, dyn: Dynamics, xp: ModuleType, eval_batch_size: int):
        self.dyn, self.xp, self.eval_batch_size = dyn, xp, eval_batch_size
        self.compiled = dyn.compiled(xp)

    def train_batch(self, params: Params, x, labels, lr, sign: float):
        target = centred_target(labels, params.W[-1].shape[1], self.xp, x.dtype)
        return train_batch(params, x, target, self.dyn, lr, sign)

    def evaluate(self, params: Params, x, labels, count: bool = True, keep: bool = False) -> dict:
        """``keep``: the per-example predicted classes too (``predicted``)."""
        guesses: list | None = [] if keep else None
        accuracy, loss = evaluate(params, x, labels, self.dyn, self.eval_batch_size, guesses)
        out = {"accuracy": accuracy, "loss": loss}
        if keep:
            out["predicted"] = np.concatenate(guesses).astype(np.int8)
        return out

    def start_epoch(self, epoch: int) -> None:
        pass

    def epoch_extras(self) -> dict:
        return {}
