"""Compiled kernel of EqSpike as a chip would run it (``pipeline/models/eqspike/chip.py``): one
example at a time, several independent networks side by side (one thread per network: the
kernel releases the GIL).

A chip sees one example at a time, so today's parallelism over the batch is gone; what is left
is the networks themselves: seeds, or learning rates under selection, each trained by its own
thread on its own data order (deterministic: a network is always run by one thread, in order).
Per example and network (``chip_kernel``):

    free phase (T steps, from zero)  ->  nudged +beta (K steps)  ->  the free state again
    (rerun from zero, or the snapshot)  ->  nudged -beta (K steps)  ->  the rule

The dynamics of a phase are ``compiled_engine._example_phase``, the batch engine's own code, so
the equations are the same. The rule (``_rule_step``) is the spike rule of one step t,

    dW_l[i, j] = scale_l (P_{l-1}[i] ds_l[j] + ds_{l-1}[i] P_l[j]),  db_l = scale_l ds_l,
    W_0[p] += scale_0 n_spikes(p, t) ds_1              (the input layer: its spikes only)

event-driven (a weight changes only if a neuron at one of its ends spiked), with
scale_l = +-eta_l / (2 beta) (batch 1). ``mode`` 0 (per example): the changes of both nudged
phases go to an accumulator per synapse and are applied once, after the second phase; 1
(continual, C-EP style): each step's change is applied when it happens.

Fixed point (``step[m] > 0``): the weights and biases of layer m live on the grid
lo_m + k step_m, k = 0..top (``top`` = 2^b - 1); a change d goes to k + d / step_m, rounded
down or up with the probability of its fraction (stochastic rounding: unbiased inside the
range), then clipped. The uniforms come from one counter-based stream per network (splitmix64
of a counter that starts where the host's seed puts it; a row's draws are counters c .. c + n - 1,
so the loop vectorises): the same seed gives the same weights whatever the number of threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from pipeline.core.compiled import FASTMATH
from pipeline.models.eqspike.compiled_engine import _complemented, _example_phase

MODE_EXAMPLE, MODE_CONTINUAL = 0, 1


@njit(inline="always", error_model="numpy")
def _mix(z):
    """splitmix64's output function: a counter -> 64 well-mixed bits (counter-based, so a whole
    row's draws are independent of each other and the loop vectorises)."""
    z = z * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(inline="always", error_model="numpy")
def _u01(z):
    """The top 53 bits as a uniform in [0, 1) (through int64: a uint64 -> float conversion is
    several times slower)."""
    return np.int64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(inline="always", error_model="numpy")
def _uniform(state):
    """The next uniform of the network's stream: counter ``state[0]``, advanced by one."""
    c = state[0]
    state[0] = c + np.uint64(1)
    return _u01(_mix(c))


@njit(inline="always", error_model="numpy")
def _round_to(x, u, top):
    """Stochastic rounding of the grid coordinate x: up with the probability of its fraction, clipped."""
    k = math.floor(x)
    if u < x - k:
        k += 1.0
    return min(max(k, 0.0), top)


@njit(inline="always", error_model="numpy")
def _put(w, d, lo, step, top, state):
    """w + d, on the grid when ``step > 0`` (w on it already): stochastic rounding, clipped."""
    if step <= 0.0:
        return w + d
    inv = 1.0 / step
    k0 = math.floor((w - lo) * inv + 0.5)
    return lo + _round_to(k0 + d * inv, _uniform(state), top) * step


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _put_row(row, d, lo, step, top, state):
    """row[i] <- _put(row[i], d[i]) for a whole row, the draws counters state[0] + i (a change of
    zero leaves its weight: its fraction is 0)."""
    n = row.shape[0]
    if step <= 0.0:
        for i in range(n):
            row[i] += d[i]
        return
    c = state[0]
    state[0] = c + np.uint64(n)
    inv = 1.0 / step
    for i in range(n):
        k0 = math.floor((row[i] - lo) * inv + 0.5)
        row[i] = lo + _round_to(k0 + d[i] * inv, _u01(_mix(c + np.uint64(i))), top) * step


@njit(error_model="numpy", cache=True)
def stochastic_round(values, lo, step, top, state):
    """``values`` (1-D, in place) onto the grid lo + k step, k = 0..top, by stochastic rounding
    from the grid's zero point (the initial weights; the round-trip and unbiasedness tests)."""
    for i in range(values.shape[0]):
        values[i] = lo + _round_to((values[i] - lo) / step, _uniform(state), top) * step


@njit(error_model="numpy", cache=True)
def _example_events(nzi, nzq, cnt, kf, steps, ev_idx, ev_cnt, ev_n):
    """The input spike lists of one example, as ``compiled_engine.sigma_delta_events`` writes
    them for one row of a batch (the same codes, so ``_example_phase`` reads them the same)."""
    for t in range(steps):
        ev_cnt[t] = 0
        ev_n[t] = 0
    for p in range(cnt):
        qp = nzq[p]
        comp = _complemented(qp)
        prev = math.floor(kf[0] * qp)
        for t in range(steps):
            nxt = math.floor(kf[t + 1] * qp)
            n_sp = nxt - prev
            prev = nxt
            ev_n[t] += n_sp
            if comp:
                if n_sp == 0:
                    ev_idx[t, ev_cnt[t]] = -1 - nzi[p]
                    ev_cnt[t] += 1
            else:
                for _ in range(n_sp):
                    ev_idx[t, ev_cnt[t]] = nzi[p]
                    ev_cnt[t] += 1


@njit(error_model="numpy", cache=True)
def _base(W0, nzi, nzq, cnt, base):
    """base = the sum of the rows of the example's complemented pixels (``complement_base``)."""
    base[:] = 0.0
    for p in range(cnt):
        if _complemented(nzq[p]):
            row = W0[nzi[p]]
            for i in range(base.shape[0]):
                base[i] += row[i]


@njit(error_model="numpy", cache=True)
def _rule_step(W0, WT, bias, accT, accb, direct, scale, pre, ds, t, nzi, nzq, cnt, kf, off, base,
               lo, step, top, state, spiking, dbuf):
    """The rule's change of step ``t`` (pre factors ``pre``, state changes ``ds``, layers
    concatenated like the state): applied to the weights (``direct``; kept on the grid, and the
    complemented pixels' ``base`` kept equal to the sum of their rows) or, for the synapses
    between layers and the biases only, added to the accumulators ``accT, accb`` (per example:
    the input layer's change is summed over the window at once, ``_apply_input``)."""
    L = off.shape[0] - 1
    n1 = off[1]
    s0 = scale[0]
    # ---- input synapses: the pixels that spiked at step t ---------------------------------
    for p in range(cnt if direct else 0):
        qp = nzq[p]
        n_sp = math.floor(kf[t + 1] * qp) - math.floor(kf[t] * qp)
        if n_sp == 0:
            continue
        row = W0[nzi[p]]
        for i in range(n1):
            dbuf[i] = s0 * n_sp * ds[i]
        if _complemented(qp):  # keep base = the sum of the complemented rows
            for i in range(n1):
                base[i] -= row[i]
            _put_row(row, dbuf, lo[0], step[0], top, state)
            for i in range(n1):
                base[i] += row[i]
        else:
            _put_row(row, dbuf, lo[0], step[0], top, state)
    # ---- synapses between layers m and m + 1 (WT[m] = W_{m+1}^T, (n_upper, n_lower)) -----
    for m in range(L - 1):
        la, ha, hb = off[m], off[m + 1], off[m + 2]
        sc = scale[m + 1]
        ns = 0
        for i in range(la, ha):
            if pre[i] != 0.0:
                spiking[ns] = i - la
                ns += 1
        W = WT[m]
        A = accT[m]
        for jj in range(hb - ha):
            pb = pre[ha + jj]
            db = ds[ha + jj]
            row = W[jj] if direct else A[jj]
            if pb != 0.0:
                for i in range(ha - la):
                    d = sc * (pre[la + i] * db + ds[la + i] * pb)
                    if direct:
                        row[i] = _put(row[i], d, lo[m + 1], step[m + 1], top, state)
                    else:
                        row[i] += d
            elif db != 0.0:
                for q in range(ns):
                    i = spiking[q]
                    d = sc * pre[la + i] * db
                    if direct:
                        row[i] = _put(row[i], d, lo[m + 1], step[m + 1], top, state)
                    else:
                        row[i] += d
    # ---- biases -------------------------------------------------------------------------
    for m in range(L):
        sc = scale[m]
        for i in range(off[m], off[m + 1]):
            d = sc * ds[i]
            if direct:
                bias[i] = _put(bias[i], d, lo[m], step[m], top, state)
            else:
                accb[i] += d


@njit(error_model="numpy", cache=True)
def _apply_input(W0, post, nzi, nzq, cnt, kf, t0, lo, step, top, state, d):
    """W_0[p] += the sum of ``post[k]`` over the steps t0 + k at which pixel p spiked, for the
    example's pixels (complemented ones: the window's total minus their silent steps, as
    ``compiled_engine.sigma_delta_input_rule``), on the grid; ``post`` is cleared."""
    K, n1 = post.shape
    total = np.zeros(n1, post.dtype)
    for k in range(K):
        for i in range(n1):
            total[i] += post[k, i]
    for p in range(cnt):
        q = nzq[p]
        if _complemented(q):
            d[:] = total
            for k in range(K):
                if math.floor(kf[t0 + k + 1] * q) - math.floor(kf[t0 + k] * q) == 0:
                    for i in range(n1):
                        d[i] -= post[k, i]
        else:
            d[:] = 0.0
            for k in range(K):
                n_sp = math.floor(kf[t0 + k + 1] * q) - math.floor(kf[t0 + k] * q)
                for _ in range(n_sp):
                    for i in range(n1):
                        d[i] += post[k, i]
        _put_row(W0[nzi[p]], d, lo[0], step[0], top, state)
    post[:] = 0.0


@njit(error_model="numpy", cache=True)
def _apply_accumulated(WT, bias, accT, accb, off, lo, step, top, state):
    """Apply and clear the accumulators (per-example mode): every synapse between layers, the
    biases."""
    L = off.shape[0] - 1
    for m in range(L - 1):
        W, A = WT[m], accT[m]
        for jj in range(W.shape[0]):
            _put_row(W[jj], A[jj], lo[m + 1], step[m + 1], top, state)
            A[jj, :] = 0.0
    for m in range(L):
        _put_row(bias[off[m]:off[m + 1]], accb[off[m]:off[m + 1]], lo[m], step[m], top, state)
    accb[:] = 0.0


@njit(error_model="numpy", cache=True)
def _phase(WT, bias, off, s, a, r, c, W0, base, ev_idx, ev_cnt, ev_n, one, alpha, oma, theta, reset_zero, g,
           act, t0, steps, target, beta, rec, rec_ds, rec_pre, spk, inc, qs):
    """``steps`` steps of one example from ``t0`` (``_example_phase``, sigma-delta, event input;
    ``qs`` > 0: states and traces on the grid of multiples of ``qs``)."""
    n_out = off[-1] - off[-2]
    D = np.zeros((1, 1), s.dtype)
    U = np.zeros((1, 1), s.dtype)
    out_sum = np.zeros(n_out, s.dtype)
    out_spk = np.zeros(n_out, s.dtype)
    _example_phase(WT, bias, off, s, a, r, c, W0, base, ev_idx, ev_cnt, ev_n, D, 0,
                   one, alpha, oma, theta, reset_zero, g, 0, act, U, t0, steps, target, beta, rec, False,
                   rec_ds, rec_pre, spk, inc, out_sum, out_spk, np.iinfo(np.int64).max, qs)


@njit(nogil=True, error_model="numpy", cache=True)
def chip_kernel(W0, WT, bias, accT, accb, off, Q, Y, order, scales, T, K, beta, one, alpha, oma,
                theta, reset_zero, g, act, mode, rerun, lo, step, top, qs, state, counts, correct):
    """Train one network on the examples ``order``, one at a time (``nogil``: the caller runs
    the networks side by side in threads, one network per call, so each is deterministic).

    The network: ``W0`` (n_0, n_1), ``WT`` (a tuple: W_{m+1}^T), ``bias`` (flattened like the
    state), accumulators ``accT, accb`` (zero; per-example mode), ``scales[l]`` =
    eta_l / (2 beta), its stream ``state``. ``Q`` the input rates (n_examples, n_0), ``Y`` the
    labels. ``qs`` > 0: the states and traces in fixed point (multiples of ``qs`` on [0, 1],
    rounded to the nearest). ``rerun``: the free phase run again before the second nudged phase (a chip keeps no
    snapshot); in continual mode the weights have changed since, so it is run; per example it
    would give the same state, so the kernel restores it. Either way ``counts`` hold the first
    free run only: the energy model charges the rerun as a copy of it (``neuromorphic_variants``). ``counts``: free input
    spikes, nudged input spikes, then per layer free and nudged spikes; ``correct[0]``: training
    examples whose free output was right.
    """
    n_in = Q.shape[1]
    L = off.shape[0] - 1
    N = off[L]
    n1 = off[1]
    steps = T + K
    kf = np.arange(steps + 1).astype(Q.dtype)
    sc_pos = scales.copy()
    sc_neg = -scales
    dt = W0.dtype
    s = np.zeros(N, dt)
    a = np.zeros(N, dt)
    r = np.zeros(N, dt)
    c = np.zeros(n1, dt)
    fs = np.zeros(N, dt)
    fa = np.zeros(N, dt)
    fr = np.zeros(N, dt)
    fc = np.zeros(n1, dt)
    base = np.zeros(n1, dt)
    nzi = np.empty(n_in, np.int32)
    nzq = np.empty(n_in, Q.dtype)
    ev_idx = np.empty((steps, n_in), np.int32)
    ev_cnt = np.empty(steps, np.int64)
    ev_n = np.empty(steps, np.int64)
    rec_ds = np.empty((K, N), dt)
    rec_pre = np.empty((K, N), dt)
    spiking = np.empty(N, np.int64)
    post = np.zeros((K, n1), dt)
    d = np.empty(n1, dt)
    target = np.zeros(off[L] - off[L - 1], dt)
    spk_free = np.zeros(L, np.float64)
    spk_nudged = np.zeros(L, np.float64)
    in_free = np.zeros(1, np.float64)
    in_nudged = np.zeros(1, np.float64)
    spk_rerun = np.zeros(L, np.float64)  # not reported: the energy model charges a copy of the first run
    in_rerun = np.zeros(1, np.float64)
    for e in range(order.shape[0]):
        ex = order[e]
        cnt = 0
        for j in range(n_in):
            if Q[ex, j] > 0:
                nzi[cnt] = j
                nzq[cnt] = Q[ex, j]
                cnt += 1
        _example_events(nzi, nzq, cnt, kf, steps, ev_idx, ev_cnt, ev_n)
        _base(W0, nzi, nzq, cnt, base)
        target[:] = 0.0
        target[Y[ex]] = one
        # ---- free phase --------------------------------------------------------------
        s[:] = 0.0
        a[:] = 0.0
        r[:] = 0.0
        c[:] = 0.0
        _phase(WT, bias, off, s, a, r, c, W0, base, ev_idx, ev_cnt, ev_n, one, alpha, oma, theta,
               reset_zero, g, act, 0, T, target, 0.0, False, rec_ds, rec_pre, spk_free, in_free, qs)
        best = 0
        for i in range(off[L - 1], N):
            if s[i] > s[off[L - 1] + best]:
                best = i - off[L - 1]
        if best == Y[ex]:
            correct[0] += 1
        fs[:] = s
        fa[:] = a
        fr[:] = r
        fc[:] = c
        # ---- the two nudged phases ---------------------------------------------------
        for phase in range(2):
            sgn = 1.0 if phase == 0 else -1.0
            sc = sc_pos if phase == 0 else sc_neg
            if phase == 1:
                if rerun and mode == MODE_CONTINUAL:  # the weights changed: run it again
                    s[:] = 0.0
                    a[:] = 0.0
                    r[:] = 0.0
                    c[:] = 0.0
                    _phase(WT, bias, off, s, a, r, c, W0, base, ev_idx, ev_cnt, ev_n, one, alpha, oma,
                           theta, reset_zero, g, act, 0, T, target, 0.0, False, rec_ds, rec_pre,
                           spk_rerun, in_rerun, qs)
                else:  # the snapshot (or, per example, the rerun's state: the same)
                    s[:] = fs
                    a[:] = fa
                    r[:] = fr
                    c[:] = fc
            if mode == MODE_CONTINUAL:
                for k in range(K):
                    _phase(WT, bias, off, s, a, r, c, W0, base, ev_idx, ev_cnt, ev_n, one, alpha, oma,
                           theta, reset_zero, g, act, T + k, 1, target, sgn * beta, True, rec_ds[k:k + 1],
                           rec_pre[k:k + 1], spk_nudged, in_nudged, qs)
                    _rule_step(W0, WT, bias, accT, accb, True, sc, rec_pre[k], rec_ds[k], T + k,
                               nzi, nzq, cnt, kf, off, base, lo, step, top, state, spiking, d)
            else:
                _phase(WT, bias, off, s, a, r, c, W0, base, ev_idx, ev_cnt, ev_n, one, alpha, oma, theta,
                       reset_zero, g, act, T, K, target, sgn * beta, True, rec_ds, rec_pre, spk_nudged,
                       in_nudged, qs)
                for k in range(K):
                    for i in range(n1):
                        post[k, i] += sc[0] * rec_ds[k, i]
                    _rule_step(W0, WT, bias, accT, accb, False, sc, rec_pre[k], rec_ds[k], T + k,
                               nzi, nzq, cnt, kf, off, base, lo, step, top, state, spiking, d)
        if mode != MODE_CONTINUAL:
            _apply_input(W0, post, nzi, nzq, cnt, kf, T, lo, step, top, state, d)
            _apply_accumulated(WT, bias, accT, accb, off, lo, step, top, state)
    counts[0] += in_free[0]
    counts[1] += in_nudged[0]
    for m in range(L):
        counts[2 + m] += spk_free[m]
        counts[2 + L + m] += spk_nudged[m]
