"""Compiled CPU kernels of EqSpike (Numba): the ``compiled`` engine of ``pipeline/models/eqspike/``.

Same equations as the array engine (``eqspike.step`` and ``eqspike.spike_rule``), laid out for a
CPU whose limit at EqSpike's sizes is per-call overhead on small arrays, not arithmetic:

- ``phase_kernel`` runs a whole phase (T or K steps) of every example in parallel (prange over
  the batch); per example and step it fuses the input layer, emission, trace, rho, nudge, leak
  and the recording of what the rule reads (``_example_phase``).
- The input layer is event-driven: an input spike adds its row of W_1 to the hidden current c,
  which the trace filters, c <- (1 - alpha) c + alpha sum_spikes W_1[j]. A sigma-delta pixel of
  rate q spikes floor((t + 1) q) - floor(t q) times at step t (``sigma_delta_events``, the array
  engine's formula, so the spikes are the same). Pixels that spike at more than half of the
  steps are counted by their silent steps instead: their rows are summed once per batch
  (``complement_base``) and a silent step subtracts the row. On MNIST that is about 21 row
  operations per example and step instead of 102 spikes (the event counts are the true spikes).
- ``sigma_delta_input_rule`` applies the input layer's rule the same way: W_1[j] += the sum of
  scale ds_1 over the (step, example) pairs in which pixel j spiked, parallel over pixels.

Shared building blocks and why they are written as they are: ``pipeline/core/compiled.py``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from pipeline.core.compiled import (
    ACT_EXACT,
    ACT_FAST,
    ACT_HARD,
    FASTMATH,
    _add_row,
    _copy,
    _diff,
    _from_above,
    _from_below,
    _sum,
    fast_tanh,
)
from pipeline.core.network import Params
from pipeline.models.eqspike.dynamics import (
    PhaseResult,
    SpikeDynamics,
    Window,
    active_inputs,
    encode_input,
    input_drive,
)


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _add_rows(acc, W, idx, cnt):
    """acc += W[j] for each code j >= 0 of ``idx[:cnt]``, acc -= W[-1 - j] for each code j < 0."""
    n = acc.shape[0]
    for m in range(cnt):
        j = idx[m]
        row = W[j] if j >= 0 else W[-1 - j]
        if j >= 0:
            for i in range(n):
                acc[i] += row[i]
        else:
            for i in range(n):
                acc[i] -= row[i]


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _filter(c, inp, alpha, oma):
    for i in range(c.shape[0]):
        c[i] = oma * c[i] + alpha * inp[i]


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _emit_sigma_delta(s, a, S, theta, one, zero, reset_zero):
    for i in range(s.shape[0]):
        acc = a[i] + s[i]
        sp = one if acc >= theta else zero
        a[i] = acc * (one - sp) if reset_zero else acc - theta * sp
        S[i] = sp


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _emit_bernoulli(s, u, S, one, zero):
    for i in range(s.shape[0]):
        S[i] = one if u[i] < s[i] else zero


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _trace(r, S, alpha):
    for i in range(r.shape[0]):
        r[i] = r[i] + alpha * (S[i] - r[i])


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _rho(v, act, one, two, half, zero):
    if act == 0:
        for i in range(v.shape[0]):
            v[i] = (math.tanh(two * v[i] - one) + one) * half
    elif act == 1:
        for i in range(v.shape[0]):
            v[i] = (fast_tanh(two * v[i] - one) + one) * half
    else:
        for i in range(v.shape[0]):
            v[i] = min(max(v[i], zero), one)


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _nudge(v, y, s, beta):
    for i in range(v.shape[0]):
        v[i] = v[i] + beta * (y[i] - s[i])


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _relax(v, s, g):
    for i in range(v.shape[0]):
        v[i] = (v[i] - s[i]) * g + s[i]


@njit(error_model="numpy", cache=True)
def _quantise(x, q):
    """x <- the nearest multiple of q (ties away from zero), in place."""
    for i in range(x.shape[0]):
        x[i] = math.floor(x[i] / q + 0.5) * q


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _example_phase(WT, bias, off, s, a, r, c, W0, base, ev_idx, ev_cnt, ev_n, D, in_mode,
                   one, alpha, oma, theta, reset_zero, g, model, act, U, t0, steps, target, beta, rec, pre_trace,
                   rec_ds, rec_pre, spk_count, in_count, out_sum, out_spk, avg_from, qs=0.0):
    """The phase of one example ``b`` (see ``phase_kernel``); ``s, a, r, c`` are its rows.
    ``qs`` > 0 (the chip kernel's fixed-point states): every new state s and trace r rounded to
    the nearest multiple of ``qs`` (their range is [0, 1]); 0 leaves them float."""
    N = s.shape[0]
    L = off.shape[0] - 1
    n1 = off[1]
    lo_out = off[L - 1]
    zero = one - one
    two = one + one
    half = one / two
    S = np.empty(N, s.dtype)
    v = np.empty(N, s.dtype)
    fb = np.empty(N, s.dtype)
    inp = np.empty(n1, s.dtype)
    for k in range(steps):
        t = t0 + k
        # ---- input layer: spikes of step t and the filtered current c --------------------------
        if in_mode != 2:
            _copy(inp, base)
            _add_rows(inp, W0, ev_idx[t], ev_cnt[t])
            in_count[0] += ev_n[t]
            _filter(c, inp, alpha, oma)
        # ---- emit and trace, every layer ----------------------------------------------------
        if model == 0:
            _emit_sigma_delta(s, a, S, theta, one, zero, reset_zero)
        else:
            _emit_bernoulli(s, U[k], S, one, zero)
        _trace(r, S, alpha)
        if qs > 0.0:
            _quantise(r, qs)
        for m in range(L):
            spk_count[m] += _sum(S[off[m]:off[m + 1]])
        _add_row(out_spk, S[lo_out:])
        if rec and not pre_trace:
            _copy(rec_pre[k], S)
        # ---- input from below (+ bias) and from above ----------------------------------------
        for m in range(L):
            lo, hi = off[m], off[m + 1]
            if m == 0:
                if in_mode == 2:
                    _copy(v[:hi], D[t])
                else:
                    _copy(v[:hi], c)
                    _add_row(v[:hi], bias[:hi])
            else:
                _from_below(v[lo:hi], r[off[m - 1]:lo], WT[m - 1], bias[lo:hi])
            if m + 1 < L:
                _from_above(v[lo:hi], fb[lo:hi], r[hi:off[m + 2]], WT[m])
        # ---- rho, nudge, leak, what the rule reads -------------------------------------------
        _rho(v, act, one, two, half, zero)
        if beta != 0.0:
            _nudge(v[lo_out:], target, s[lo_out:], beta)
        if g != one:
            _relax(v, s, g)
        if qs > 0.0:
            _quantise(v, qs)
        if rec:
            _diff(rec_ds[k], v, s)
            if pre_trace:
                _copy(rec_pre[k], r)
        _copy(s, v)
        if t >= avg_from:
            _add_row(out_sum, s[lo_out:])


@njit(parallel=True, error_model="numpy", cache=True)
def phase_kernel(WT, bias, off, s, a, r, c, W0, base, ev_idx, ev_cnt, ev_n, D, in_mode,
                 one, alpha, oma, theta, reset_zero, g, model, act, U, t0, steps, target, beta, rec, pre_trace,
                 rec_ds, rec_pre, spk_count, in_count, out_sum, out_spk, avg_from):
    """``steps`` steps from time ``t0`` of every example in parallel, states updated in place.

    State: ``s, a, r`` ``(B, N)`` (layers concatenated, layer m at ``off[m]:off[m+1]``), ``c``
    ``(B, n_1)`` the filtered input current. Weights: ``WT[m]`` = W_{m+1}^T ``(n_{m+1}, n_m)``
    (a tuple), ``bias`` flattened like ``s``, ``W0`` the input weights.

    Input (``in_mode``): 0, spike lists, pixel ``ev_idx[t, b, :ev_cnt[t, b]]`` spiked at step t
    (``input_events``); 2, the input current ``D[t, b]`` given (dense mode, bias included).
    ``model`` 0 sigma-delta, 1 Bernoulli with the uniforms ``U[k, b]``. ``act``: 0 exact
    sigmoid, 1 ``fast_tanh`` sigmoid, 2 hard sigmoid. With ``rec``: ``rec_ds[k, b]`` and
    ``rec_pre[k, b]`` (spikes, or traces with ``pre_trace``). Counts: ``spk_count[b, m]``,
    ``in_count[b]``; ``out_sum[b]`` sums the output state over the steps t >= ``avg_from``,
    ``out_spk[b]`` the output spikes over the phase.
    """
    B = s.shape[0]
    for bb in prange(B):
        b = np.int64(bb)
        _example_phase(WT, bias, off, s[b], a[b], r[b], c[b], W0, base[min(b, np.int64(base.shape[0] - 1))],
                       ev_idx[:, min(b, np.int64(ev_idx.shape[1] - 1))],
                       ev_cnt[:, min(b, np.int64(ev_cnt.shape[1] - 1))],
                       ev_n[:, min(b, np.int64(ev_n.shape[1] - 1))],
                       D[:, min(b, np.int64(D.shape[1] - 1))], in_mode,
                       one, alpha, oma, theta, reset_zero, g, model, act, U[:, min(b, np.int64(U.shape[1] - 1))], t0,
                       steps,
                       target[min(b, np.int64(target.shape[0] - 1))], beta, rec, pre_trace,
                       rec_ds[:, min(b, np.int64(rec_ds.shape[1] - 1))],
                       rec_pre[:, min(b, np.int64(rec_pre.shape[1] - 1))],
                       spk_count[b], in_count[b:b + 1], out_sum[b], out_spk[b], avg_from)


@njit(inline="always", error_model="numpy")
def _n_spikes(kf, t, q):
    """Sigma-delta spikes of a constant input at step t: floor((t + 1) q) - floor(t q), in the
    array engine's dtype and formula (``neuron.SigmaDelta.encode``), so the spikes are the same."""
    return math.floor(kf[t + 1] * q) - math.floor(kf[t] * q)


@njit(inline="always", error_model="numpy")
def _complemented(q):
    """Pixels that spike at more than half of the steps (and at most once a step) are handled
    by their silent steps: sum over spikes = sum over all steps - sum over silent steps."""
    return 0.5 < q <= 1.0


@njit(parallel=True, error_model="numpy", cache=True)
def sigma_delta_events(nz_ptr, nz_idx, q, kf, steps, ev_idx, ev_cnt, ev_n):
    """Input spike lists of sigma-delta pixels for steps 0..steps-1, as rows to add: the pixels
    that spike (``_n_spikes`` times), except complemented pixels (``_complemented``), which are
    listed with a negative code -1 - j at the steps where they are silent (their rows are in the
    base current of ``complement_base``). ``ev_n[t, b]``: the true number of input spikes."""
    B = nz_ptr.shape[0] - 1
    for bb in prange(B):
        b = np.int64(bb)
        counts = np.empty(steps + 1, np.int64)
        for t in range(steps):
            ev_cnt[t, b] = 0
            ev_n[t, b] = 0
        for p in range(nz_ptr[b], nz_ptr[b + 1]):
            qp = q[p]
            for t in range(steps + 1):
                counts[t] = math.floor(kf[t] * qp)  # = _n_spikes, cumulated
            if _complemented(qp):
                for t in range(steps):
                    n_sp = counts[t + 1] - counts[t]
                    ev_n[t, b] += n_sp
                    if n_sp == 0:
                        ev_idx[t, b, ev_cnt[t, b]] = -1 - nz_idx[p]
                        ev_cnt[t, b] += 1
            else:
                for t in range(steps):
                    n_sp = counts[t + 1] - counts[t]
                    ev_n[t, b] += n_sp
                    for _ in range(n_sp):
                        ev_idx[t, b, ev_cnt[t, b]] = nz_idx[p]
                        ev_cnt[t, b] += 1


@njit(parallel=True, fastmath=FASTMATH, error_model="numpy", cache=True)
def complement_base(W0, nz_ptr, nz_idx, q, base):
    """base[b] = sum of the rows of example b's complemented pixels."""
    B = nz_ptr.shape[0] - 1
    for bb in prange(B):
        b = np.int64(bb)
        base[b, :] = 0.0
        for p in range(nz_ptr[b], nz_ptr[b + 1]):
            if _complemented(q[p]):
                row = W0[nz_idx[p]]
                for i in range(base.shape[1]):
                    base[b, i] += row[i]


@njit(parallel=True, error_model="numpy", cache=True)
def dense_events(spikes, active, ev_idx, ev_cnt, ev_n):
    """Spike lists from given spike counts ``spikes[t, b, k]`` of pixels ``active[k]``."""
    steps, B, n = spikes.shape
    for bb in prange(B):
        b = np.int64(bb)
        for t in range(steps):
            m = 0
            for p in range(n):
                for _ in range(int(spikes[t, b, p])):
                    ev_idx[t, b, m] = active[p]
                    m += 1
            ev_cnt[t, b] = m
            ev_n[t, b] = m


@njit(error_model="numpy", cache=True)
def _events_by_pixel(ev_idx, ev_cnt, n_in):
    """Counting sort of the (step, example) events by pixel: pixel j's events are
    ``order[start[j]:start[j+1]]``, each coded k * B + b."""
    K, B = ev_cnt.shape
    start = np.zeros(n_in + 1, np.int64)
    for k in range(K):
        for b in range(B):
            for m in range(ev_cnt[k, b]):
                start[ev_idx[k, b, m] + 1] += 1
    for j in range(n_in):
        start[j + 1] += start[j]
    fill = start[:-1].copy()
    order = np.empty(start[n_in], np.int64)
    for k in range(K):
        for b in range(B):
            for m in range(ev_cnt[k, b]):
                j = ev_idx[k, b, m]
                order[fill[j]] = k * B + b
                fill[j] += 1
    return start, order


@njit(parallel=True, fastmath=FASTMATH, error_model="numpy", cache=True)
def _input_rule(W0, start, order, post):
    K, B, n1 = post.shape
    for jj in prange(W0.shape[0]):
        j = np.int64(jj)
        if start[j] == start[j + 1]:
            continue
        acc = np.zeros(n1, W0.dtype)
        for e in range(start[j], start[j + 1]):
            kb = order[e]
            row = post[kb // B, kb % B]
            for i in range(n1):
                acc[i] += row[i]
        for i in range(n1):
            W0[j, i] += acc[i]


@njit(parallel=True, fastmath=FASTMATH, error_model="numpy", cache=True)
def sigma_delta_input_rule(W0, pix_ptr, pix_b, pix_q, kf, t0, post, total):
    """W0[j] += sum over the examples b in which pixel j is nonzero of the sum of ``post[k, b]``
    over the steps t0 + k at which it spiked (complemented pixels: ``total[b]`` minus the silent
    steps), parallel over pixels."""
    K, B, n1 = post.shape
    for jj in prange(W0.shape[0]):
        j = np.int64(jj)
        if pix_ptr[j] == pix_ptr[j + 1]:
            continue
        acc = np.zeros(n1, W0.dtype)
        for e in range(pix_ptr[j], pix_ptr[j + 1]):
            b, q = pix_b[e], pix_q[e]
            if _complemented(q):
                row = total[b]
                for i in range(n1):
                    acc[i] += row[i]
                for k in range(K):
                    if _n_spikes(kf, t0 + k, q) == 0:
                        row = post[k, b]
                        for i in range(n1):
                            acc[i] -= row[i]
            else:
                for k in range(K):
                    for _ in range(_n_spikes(kf, t0 + k, q)):
                        row = post[k, b]
                        for i in range(n1):
                            acc[i] += row[i]
        for i in range(n1):
            W0[j, i] += acc[i]


# the neuron models whose emission ``_example_phase`` implements, by ``kernel_code``
KERNEL_MODELS = {0: "sigma_delta", 1: "bernoulli"}


class CompiledEngine:
    """The compiled engine behind ``eqspike.make_engine``: the same interface as
    ``eqspike.ArrayEngine`` (``initial_state``, ``run_phase``, ``active``)."""

    def __init__(self, params: Params, x, steps: int, dyn: SpikeDynamics, rng=None):
        nm = dyn.neuron
        self.dyn, self.rng, self.params = dyn, rng, params
        dt = x.dtype.type
        self.B = x.shape[0]
        self.sizes = [w.shape[1] for w in params.W]
        self.off = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        L = len(self.sizes)
        # W_1..W_{L-1} transposed; a single layer gets a placeholder (the tuple must not be empty)
        self.WT = tuple(np.ascontiguousarray(params.W[m].T) for m in range(1, L)) or (np.zeros((1, 1), x.dtype),)
        self.bias = np.concatenate(params.b)
        self.W0 = params.W[0]
        self.active = active_inputs(x)
        self.model = getattr(nm.kind, "kernel_code", None)
        if self.model not in KERNEL_MODELS:
            raise ValueError(f"eqspike.engine=compiled: no compiled kernel for the neuron model {nm.model!r} "
                             f"(kernel_code {self.model!r}; known: {KERNEL_MODELS}); use eqspike.engine=array")
        self.alpha, self.theta, self.g = dt(nm.alpha), dt(nm.threshold), dt(nm.leak)
        self.oma = dt(1.0) - self.alpha
        if x.dtype == np.float64:
            self.act = {"sigmoid": ACT_EXACT, "hard_sigmoid": ACT_HARD}[dyn.activation]
        else:
            self.act = {"sigmoid": ACT_FAST, "hard_sigmoid": ACT_HARD}[dyn.activation]
        dense = dyn.input_layer == "dense" or dyn.pre_factor == "trace"
        self.D = np.zeros((1, 1, 1), x.dtype)
        self.base = np.zeros((1, self.sizes[0]), x.dtype)
        if dense:
            self.in_mode = 2
            self.spikes_in, self.traces_in = encode_input(x[:, self.active], steps, nm, rng)
            self.D = np.ascontiguousarray(input_drive(params, self.traces_in, self.active))
            self.ev_idx = np.zeros((1, 1, 1), np.int32)
            self.ev_cnt = self.ev_n = np.zeros((1, 1), np.int64)
            return
        self.in_mode = 0
        self.ev_cnt = np.empty((steps, self.B), np.int64)
        self.ev_n = np.empty((steps, self.B), np.int64)
        if self.model == 0:
            rows, cols = np.nonzero(x)
            per_example = np.bincount(rows, minlength=self.B)
            nz_ptr = np.concatenate([[0], np.cumsum(per_example)]).astype(np.int64)
            q = nm.kind.rate(x, nm, np)[rows, cols]
            per_pixel = max(1, int(np.ceil(float(q.max(initial=0.0)))))
            self.kf = np.arange(steps + 1, dtype=x.dtype)
            self.ev_idx = np.empty((steps, self.B, max(1, int(per_example.max(initial=1)) * per_pixel)), np.int32)
            pixels = cols.astype(np.int32)
            sigma_delta_events(nz_ptr, pixels, q, self.kf, steps, self.ev_idx, self.ev_cnt, self.ev_n)
            self.base = np.empty((self.B, self.sizes[0]), x.dtype)
            complement_base(self.W0, nz_ptr, pixels, q, self.base)
            order = np.argsort(cols, kind="stable")  # pixel-major, for the input rule
            self.pix_ptr = np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=x.shape[1]))]).astype(np.int64)
            self.pix_b, self.pix_q = rows[order].astype(np.int32), q[order]
        else:
            spikes = np.ascontiguousarray(nm.kind.encode(x[:, self.active], steps, nm, np, rng))
            per_pixel = max(1, int(spikes.max(initial=0.0)))
            self.ev_idx = np.empty((steps, self.B, max(1, self.active.size * per_pixel)), np.int32)
            dense_events(spikes, self.active.astype(np.int32), self.ev_idx, self.ev_cnt, self.ev_n)

    def apply_input_rule(self, W0, start: int, post) -> None:
        """W_1[j] += sum of ``post[k, b]`` over the steps k of the window from ``start`` at which
        pixel j of example b spiked: the input layer's rule, event-driven, in place."""
        post = np.ascontiguousarray(post)
        steps = post.shape[0]
        if self.model == 0:
            sigma_delta_input_rule(W0, self.pix_ptr, self.pix_b, self.pix_q, self.kf, start, post, post.sum(axis=0))
        else:
            start_, order = _events_by_pixel(self.ev_idx[start:start + steps], self.ev_cnt[start:start + steps],
                                             W0.shape[0])
            _input_rule(W0, start_, order, post)

    def initial_state(self):
        N = int(self.off[-1])
        z = np.zeros((self.B, N), self.W0.dtype)
        return (z, z.copy(), z.copy(), np.zeros((self.B, self.sizes[0]), self.W0.dtype))

    def output(self, state):
        return state[0][:, self.off[-2]:]

    def run_phase(self, state, start: int, steps: int, target=None, beta: float = 0.0, record: bool = False,
                  observer=None, avg_from: int | None = None):
        if observer is not None:
            raise ValueError("observers need eqspike.engine=array")
        dt = self.W0.dtype
        s, a, r, c = (x.copy() for x in state)
        B, N = s.shape
        L = len(self.sizes)
        if self.model == 1:  # the array engine's draws, in its order: per step, per layer
            U = np.stack([np.concatenate([self.rng((B, n), dt) for n in self.sizes], axis=1)
                          for _ in range(steps)])
        else:
            U = np.zeros((1, 1, 1), dt)
        if record:
            rec_ds = np.empty((steps, B, N), dt)
            rec_pre = np.empty((steps, B, N), dt)
        else:
            rec_ds = rec_pre = np.zeros((1, 1, 1), dt)
        spk_count = np.zeros((B, L), np.float64)
        in_count = np.zeros(B, np.float64)
        n_out = self.sizes[-1]
        out_sum = np.zeros((B, n_out), dt)
        out_spk = np.zeros((B, n_out), dt)
        tgt = target if target is not None else np.zeros((1, n_out), dt)
        phase_kernel(self.WT, self.bias, self.off, s, a, r, c, self.W0, self.base, self.ev_idx, self.ev_cnt,
                     self.ev_n, self.D,
                     self.in_mode, dt.type(1.0), self.alpha, self.oma, self.theta, self.dyn.neuron.reset == "zero", self.g, self.model,
                     self.act, U,
                     start, steps, tgt, dt.type(beta), record, self.dyn.pre_factor == "trace", rec_ds, rec_pre,
                     spk_count, in_count, out_sum, out_spk,
                     avg_from if avg_from is not None else np.iinfo(np.int64).max)
        window = None
        if record:
            pre = [rec_pre[:, :, self.off[m]:self.off[m + 1]] for m in range(L)]
            ds = [rec_ds[:, :, self.off[m]:self.off[m + 1]] for m in range(L)]
            if self.in_mode == 2:
                src = self.spikes_in if self.dyn.pre_factor == "spike" else self.traces_in
                window = Window(start, src[start:start + steps], pre, ds)
            else:
                window = Window(start, None, pre, ds, self)
        if self.in_mode == 2:
            input_spikes = float(self.spikes_in[start:start + steps].sum())
        else:
            input_spikes = float(in_count.sum())
        layer_spikes = [float(v) for v in spk_count.sum(axis=0)]
        prediction = avg_from is not None
        return PhaseResult((s, a, r, c), window, input_spikes, layer_spikes, out_sum if prediction else None,
                           out_spk if prediction else None)

