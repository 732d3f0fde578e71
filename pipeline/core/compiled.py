"""Compiled building blocks (Numba) shared by the CPU kernels of both models.

The loops below run over float32 rows that LLVM vectorises (AVX-512 on this project's machines);
what makes that work, measured on EqSpike's kernels:

- ``error_model="numpy"``: Numba's default raises ZeroDivisionError on a float division by zero,
  and that branch stops the vectoriser (``fast_tanh`` ran at 2.2 ns per element, 0.21 with it);
- ``fastmath={"reassoc"}``: lets LLVM reorder the sums of the dot products (no FMA contraction,
  no nnan/ninf, so non-finite weights are still caught);
- float32 constants (a Python float promotes a float32 loop to float64);
- one small function per loop over 1-D rows (``s[b]``), not a big loop body over 2-D indices.

Why Numba: plain loops in the project's language, no build step and no compiler needed on the
user's machine, compiled code cached in ``__pycache__``. It has no vectorised tanh of its own
(no SVML since 0.6x), so ``fast_tanh`` is a rational approximation fitted for this project:
|error| < 7e-7 in float32 (about 10x the rounding of NumPy's tanh); float64 runs use ``math.tanh``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

FASTMATH = {"reassoc"}  # lets LLVM vectorise the dot products; no FMA contraction, no nnan/ninf

# tanh(z) ~ z P(z^2) / Q(z^2) on |z| <= 9 (tanh(9) = 1 - 3e-8): least-squares fit with relative
# weights, made for this project; max |error| 6.3e-7 in float32 over [-12, 12] (tests/test_compiled.py)
_P = tuple(np.float32(c) for c in (9.99999981e-01, 1.29760258e-01, 2.98180501e-03, 9.82187574e-06,
                                   -1.44198189e-08, 2.23539104e-11))
_Q = tuple(np.float32(c) for c in (1.0, 4.63093449e-01, 2.40131569e-02, 2.36525732e-04))
_ZMAX = np.float32(9.0)

ACT_EXACT, ACT_FAST, ACT_HARD = 0, 1, 2


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def fast_tanh(z):
    """tanh in float32 from + - * / only, so LLVM vectorises the loops that call it."""
    z = min(max(z, -_ZMAX), _ZMAX)
    z2 = z * z
    p = ((((_P[5] * z2 + _P[4]) * z2 + _P[3]) * z2 + _P[2]) * z2 + _P[1]) * z2 + _P[0]
    q = ((_Q[3] * z2 + _Q[2]) * z2 + _Q[1]) * z2 + _Q[0]
    return z * p / q


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def fast_tanh_array(z, out):
    for i in range(z.shape[0]):
        out[i] = fast_tanh(z[i])


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _add_row(acc, row):
    for i in range(acc.shape[0]):
        acc[i] += row[i]


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _sum(x):
    acc = 0.0
    for i in range(x.shape[0]):
        acc += x[i]
    return acc


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _from_below(v, r_below, WT, bias):
    """v[i] = sum_k r_below[k] WT[i, k] + bias[i]  (WT: (n, n_below))."""
    zero = bias[0] - bias[0]
    for i in range(v.shape[0]):
        acc = zero
        row = WT[i]
        for k in range(r_below.shape[0]):
            acc += r_below[k] * row[k]
        v[i] = acc + bias[i]


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _from_above(v, fb, r_above, WT):
    """v[i] = sum_j r_above[j] WT[j, i] + v[i]  (WT: (n_above, n))."""
    for i in range(fb.shape[0]):
        fb[i] = 0.0
    for j in range(r_above.shape[0]):
        rj = r_above[j]
        row = WT[j]
        for i in range(fb.shape[0]):
            fb[i] += rj * row[i]
    for i in range(v.shape[0]):
        v[i] = fb[i] + v[i]


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _diff(out, v, s):
    for i in range(v.shape[0]):
        out[i] = v[i] - s[i]


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _copy(out, x):
    for i in range(x.shape[0]):
        out[i] = x[i]


@njit(parallel=True, cache=True)
def ema_pass(avg, w, decay, rest):
    """avg <- decay avg + rest w, one pass."""
    for i in prange(avg.shape[0]):
        avg[i] = avg[i] * decay + rest * w[i]
