"""STDP emergence (claim C5): EqSpike's spike-triggered weight updates against the spike-timing
difference dt = t_post - t_pre, measured so that the measurement could show a window, with
controls that say whether it can.

Terms. During a nudged phase (``+beta`` or ``-beta``; scale c = 1 / (2 beta) for symmetric
nudging, 1 / beta one-sided) each presynaptic spike of j at t contributes to w_ij

    spike   c S_j[t] ds_i[t]                                  (the pre -> post term, spike factor)
    trace   c S_j[t] e_i[t],  e_i[t] = alpha sum_k (1 - alpha)^k ds_i[t + k]   (the spike opens an
            eligibility window; summed over the spikes this is exactly the rule with the
            presynaptic trace r_j as pre factor, up to the trace carried into the phase)

and, for a hidden synapse, the rule the network applies adds the post -> pre term c S_i[t] ds_j[t]
(``applied``). Every trigger is paired with *every* partner spike within +-W steps (free phase and
the trigger's own nudged phase), not only the nearest one.

Per-bin mean and its control. For each bin dt, the mean of the trigger's dw over all pairs at
that dt; the shuffle control computes the same with the partner spikes taken from another example
(b + 1 of the same batch; ``other_example``, the default) or circularly shifted in time by half the
recorded history (``shift``: same neuron, example and rate; but sigma-delta trains at a constant
rate are periodic, and a shift by a multiple of a period returns the same train, which cancels a
real window; ``other_example``: this one
also changes the partner's rate, and a dw that depends on the neuron's own rate then shows as a
flat offset); the window is the difference. The +beta and -beta phases are windows of their
own (no sign flip); their difference is the ``net`` window (what learning keeps). Intervals:
bootstrap over examples (the per-example sums are resampled together for real and control).

Verdict (``verdict``): "STDP-like" only when, after the control, the dt > 0 lobe (sum of the
bins dt = 1..W) is positive and the dt < 0 lobe (dt = -W..-1) negative, both intervals excluding
zero. Fit (Song, Miller & Abbott 2000): A+ exp(-dt / tau+) for dt > 0, -A- exp(dt / tau-) for
dt < 0, weighted least squares, percentile intervals over the bootstrap.

Controls. ``synthetic_recording``: a postsynaptic neuron whose state jumps at each of its own
(random) spikes and relaxes with a known time constant tau_m, and independent Poisson presynaptic
spikes, in the recorder's format. The trace term must recover the window theory predicts
(tau+ = the trace's, tau- = tau_m, equal areas: ``theory_window``); with the post spikes
independent of the state (``coupled=False``) the window must be flat.

Pairing protocol (``pairing``): two leaky sigma-delta neurons at rest (silent), each made to
spike by its own threshold crossing under an injected current pulse; one synapse; dt is the
measured difference of the two spike times; dw summed until the traces have decayed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core import neuron
from pipeline.core.backend import to_host
from pipeline.core.schema import ConfigError, opt, req


@dataclass(frozen=True, kw_only=True)
class StdpOutCfg:
    metrics: str = opt("results/flat/stdp.json")  # flat numbers (MLflow); the headline is metrics/
    detail: str = opt("results/stdp.json")  # everything: verdicts, fits, pairing windows
    window_dir: str = opt("plots/stdp")  # one CSV per group of synapses (dvc plots)
    figure_png: str = opt("plots/stdp.png")


@dataclass(frozen=True, kw_only=True)
class StdpCfg:
    """STDP measurement (claim C5)."""

    n_examples: int = req(ge=2)
    synapses_per_layer: int = req(ge=1)
    max_dt_steps: int = req(ge=2)
    step_ms: float = req(gt=0)  # how long one time step lasts, to compare with biology
    seed: int = req(ge=0)
    control: str = req(choices=("shift", "other_example"))  # shuffle control (pipeline/analysis/stdp.py)
    # only triggers where every bin dt sees the same trigger times (pair_sums): no drift with dt
    stationary: bool = req()
    bootstrap: int = req(ge=20)  # resamples of the examples for the intervals
    rate_strata: int = req(ge=1)  # post firing-rate strata (quantiles) of the net window
    pairing_weight: float = req()
    pairing_pulse: float = req(gt=0)  # injected current that makes a neuron cross threshold
    pairing_pulse_steps: int = req(ge=1)
    pairing_rest: float = req()  # resting input current (the neurons are silent at rest)
    # the protocol's pulse swept, (amplitude, width) pairs: which features of a window belong to
    # the rule and which to the protocol
    pairing_sweep_pulses: list[float] = req(min_len=1, gt=0)
    pairing_sweep_steps: list[int] = req(min_len=1, ge=1)  # one width per amplitude

    def check(self, path: str) -> None:
        if len(self.pairing_sweep_pulses) != len(self.pairing_sweep_steps):
            raise ConfigError(f"{path}.pairing_sweep_steps: one width per amplitude of pairing_sweep_pulses "
                              f"({len(self.pairing_sweep_pulses)}), got {len(self.pairing_sweep_steps)}")
    control_tau_m: float = req(gt=0)  # the synthetic controls' post-state time constant (steps)
    out: StdpOutCfg = opt(StdpOutCfg())



BI_POO_TAU_PLUS_MS = 16.8  # Bi & Poo 2001 fit, used by Pfister & Gerstner 2006
BI_POO_TAU_MINUS_MS = 33.7
TERMS = ("spike", "trace", "applied")
PHASES = ("nudged+", "nudged-")


def sample_synapses(sizes: Sequence[int], per_layer: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each weight matrix l, ``(pre indices, post indices)`` of ``per_layer`` synapses."""
    rng = np.random.default_rng(seed)
    out = []
    for n_pre, n_post in zip(sizes[:-1], sizes[1:]):
        k = min(per_layer, n_pre * n_post)
        flat = rng.choice(n_pre * n_post, size=k, replace=False)
        out.append((flat // n_post, flat % n_post))
    return out


@dataclass
class Recording:
    """One nudged phase of one batch for one group of synapses (k of them), host arrays:
    spikes over the history (free steps then the phase's steps) ``pre``/``post`` ``(H, B, k)``,
    state changes over the phase's steps ``ds_pre``/``ds_post`` ``(P, B, k)`` (``ds_pre`` None for
    input synapses), ``first`` = H - P, ``scale`` = c, ``alpha`` = 1 / tau_syn, ``examples`` the
    global index of each example ``(B,)``."""

    pre: np.ndarray
    post: np.ndarray
    ds_pre: np.ndarray | None
    ds_post: np.ndarray
    scale: float
    alpha: float
    examples: np.ndarray

    @property
    def first(self) -> int:
        return self.pre.shape[0] - self.ds_post.shape[0]


class Recorder:
    """Observer of ``eqspike.simulate_learning``: spikes and state changes of sampled synapses."""

    def __init__(self, synapses: list[tuple[np.ndarray, np.ndarray]], beta: float, symmetric: bool, alpha: float):
        self.synapses, self.alpha = synapses, alpha
        self.scale = 1.0 / (2.0 * beta) if symmetric else 1.0 / beta
        self.steps: dict[str, list] = {}

    def __call__(self, phase, t, spikes_in, spikes, old, new) -> None:
        layers = [spikes_in, *spikes]
        ds = [None] + [n.s - o.s for n, o in zip(new, old)]
        keep = []
        for l, (pre, post) in enumerate(self.synapses):
            keep.append((to_host(layers[l][:, pre]), to_host(layers[l + 1][:, post]),
                         None if l == 0 else to_host(ds[l][:, pre]), to_host(ds[l + 1][:, post])))
        self.steps.setdefault(phase, []).append(keep)

    def recordings(self, examples: np.ndarray) -> dict[tuple[int, str], Recording]:
        """``{(layer, phase): Recording}`` for every nudged phase seen."""
        free = self.steps.get("free", [])
        out = {}
        for phase, steps in self.steps.items():
            if phase not in PHASES:
                continue
            hist = free + steps
            for l in range(len(self.synapses)):
                out[(l, phase)] = Recording(
                    pre=np.stack([h[l][0] for h in hist]), post=np.stack([h[l][1] for h in hist]),
                    ds_pre=None if l == 0 else np.stack([h[l][2] for h in steps]),
                    ds_post=np.stack([h[l][3] for h in steps]),
                    scale=self.scale, alpha=self.alpha, examples=np.asarray(examples))
        return out


def eligibility(ds: np.ndarray, alpha: float) -> np.ndarray:
    """e[t] = alpha sum_{k >= 0} (1 - alpha)^k ds[t + k] within the phase (axis 0)."""
    e = np.empty_like(ds, dtype=np.float64)
    acc = np.zeros(ds.shape[1:])
    for t in range(ds.shape[0] - 1, -1, -1):
        acc = alpha * ds[t] + (1.0 - alpha) * acc
        e[t] = acc
    return e


def _shift(a: np.ndarray, d: int, length: int, start: int) -> np.ndarray:
    """``a[start + i + d]`` for i in 0..length-1 along axis 0, zeros outside ``a``."""
    out = np.zeros((length, *a.shape[1:]), dtype=a.dtype)
    lo, hi = max(0, -(start + d)), min(length, a.shape[0] - start - d)
    if hi > lo:
        out[lo:hi] = a[start + lo + d:start + hi + d]
    return out


CONTROLS = ("shift", "other_example")
# sigma-delta trains at a constant rate are periodic: a circular shift by a multiple of a firing
# period returns the same train, and real minus control is zero whatever the timing
# (tests/test_stdp.py). Partners from another example cannot cancel a window that way.
DEFAULT_CONTROL = "other_example"


def pair_sums(rec: Recording, term: str, max_dt: int, control: str | None = None,
              stationary: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per example and bin dt in [-W, W]: sum of the trigger's dw over all pairs, and the number
    of pairs; ``(B, 2W + 1)`` each. ``control``: the partner spikes circularly shifted by half
    the history (``shift``: same neuron, same example, same rate, timing destroyed) or taken from
    example b + 1 of the batch (``other_example``). ``stationary``: only triggers in the first
    P - W steps of the phase, so that every bin dt samples the same trigger times (otherwise the
    bins dt > 0 lose the phase's last steps, where ds is not what it is earlier, and the window
    drifts with dt whatever the timing)."""
    first, P = rec.first, rec.ds_post.shape[0]
    if stationary and (P <= max_dt or first < max_dt):
        raise ValueError(f"stdp.stationary: a phase of {P} steps after {first} recorded ones cannot keep the same "
                         f"triggers for every dt up to {max_dt} (stdp.max_dt_steps): lower it or lengthen the phases")
    pre, post = rec.pre.astype(np.float64), rec.post.astype(np.float64)
    if control == "shift":
        h = pre.shape[0] // 2
        pre_partner, post_partner = np.roll(pre, h, axis=0), np.roll(post, h, axis=0)
    elif control == "other_example":
        pre_partner, post_partner = np.roll(pre, -1, axis=1), np.roll(post, -1, axis=1)
    elif control is None:
        pre_partner, post_partner = pre, post
    else:
        raise ValueError(f"control: unknown control {control!r} (one of {CONTROLS})")
    u_post = rec.ds_post if term == "spike" or term == "applied" else eligibility(rec.ds_post, rec.alpha)
    u_post = rec.scale * u_post
    trig_pre = pre[first:].copy()  # presynaptic spikes in the phase trigger u_post
    trig_post = post[first:].copy()
    if stationary:
        trig_pre[P - max_dt:] = 0.0
        trig_post[P - max_dt:] = 0.0
    B = pre.shape[1]
    sums, counts = np.zeros((B, 2 * max_dt + 1)), np.zeros((B, 2 * max_dt + 1))
    for i, d in enumerate(range(-max_dt, max_dt + 1)):
        partner = _shift(post_partner, d, P, first)  # post spike at t_pre + d
        w = trig_pre * partner
        sums[:, i] += (w * u_post).sum(axis=(0, 2))
        counts[:, i] += w.sum(axis=(0, 2))
        if term == "applied" and rec.ds_pre is not None:
            partner_pre = _shift(pre_partner, -d, P, first)  # pre spike at t_post - d
            w2 = trig_post * partner_pre
            sums[:, i] += (w2 * rec.scale * rec.ds_pre).sum(axis=(0, 2))
            counts[:, i] += w2.sum(axis=(0, 2))
    return sums, counts


@dataclass
class Sums:
    """Per-example sums of one window (real and control), examples along axis 0."""

    real: np.ndarray
    n_real: np.ndarray
    ctrl: np.ndarray
    n_ctrl: np.ndarray

    @staticmethod
    def collect(recs: Sequence[Recording], term: str, max_dt: int, n_examples: int,
                mask=None, control: str = "shift", stationary: bool = False) -> Sums:
        """Accumulate ``pair_sums`` of every recording into one row per global example.
        ``mask(rec) -> (B, k) bool`` keeps only some synapse-examples (rate strata)."""
        shape = (n_examples, 2 * max_dt + 1)
        out = Sums(*(np.zeros(shape) for _ in range(4)))
        for rec in recs:
            r = rec if mask is None else _masked(rec, mask(rec))
            for ctl, (s_arr, n_arr) in ((None, (out.real, out.n_real)), (control, (out.ctrl, out.n_ctrl))):
                s, n = pair_sums(r, term, max_dt, ctl, stationary)
                np.add.at(s_arr, r.examples, s)
                np.add.at(n_arr, r.examples, n)
        return out


def _masked(rec: Recording, keep: np.ndarray) -> Recording:
    """The recording with the triggers of the synapse-examples outside ``keep`` removed."""
    k = keep.astype(rec.pre.dtype)
    pre = rec.pre.copy()
    pre[rec.first:] *= k
    post = rec.post.copy()
    post[rec.first:] *= k
    return Recording(pre, post, rec.ds_pre, rec.ds_post, rec.scale, rec.alpha, rec.examples)


def _estimates(w: np.ndarray, s: Sums) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin means for example weights ``w`` ``(R, n)`` (row 0 all ones: the estimate):
    control-subtracted ``(R, bins)``, and the estimate's real and control means ``(bins,)``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        real = (w @ s.real) / (w @ s.n_real)
        ctrl = (w @ s.ctrl) / (w @ s.n_ctrl)
    return real - ctrl, real[0], ctrl[0]


def bootstrap_weights(n_examples: int, n_boot: int, seed: int) -> np.ndarray:
    """``(1 + n_boot, n)``: row 0 all ones (the estimate), then resampled example counts."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_examples, size=(n_boot, n_examples))
    w = np.zeros((n_boot + 1, n_examples))
    w[0] = 1.0
    for r in range(n_boot):
        w[r + 1] = np.bincount(draws[r], minlength=n_examples)
    return w


def window(sums: dict[str, Sums] | Sums, weights: np.ndarray, max_dt: int, net: bool = False) -> dict:
    """Window of one term with its intervals. ``sums`` is one ``Sums`` or, with ``net``, the
    ``{"nudged+": ..., "nudged-": ...}`` pair whose difference is taken."""
    if net:
        plus, minus = _estimates(weights, sums["nudged+"]), _estimates(weights, sums["nudged-"])
        est, raw, ctrl = (p - m for p, m in zip(plus, minus))
        base = sums["nudged+"]
    else:
        (est, raw, ctrl), base = _estimates(weights, sums), sums
    dt = np.arange(-max_dt, max_dt + 1)
    boot = est[1:]
    with warnings.catch_warnings():  # a bin without pairs has no interval (NaN), not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(boot, [2.5, 97.5], axis=0) if boot.shape[0] else (est[0], est[0])
    pos, neg = dt > 0, dt < 0
    lobe_pos, lobe_neg = np.nansum(est[:, pos], axis=1), np.nansum(est[:, neg], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = -lobe_neg / lobe_pos
    return {"dt": dt, "mean": est[0], "lo": lo, "hi": hi, "raw_mean": raw, "control_mean": ctrl,
            "pairs": base.n_real.sum(axis=0), "control_pairs": base.n_ctrl.sum(axis=0),
            "lobe_pos": _interval(lobe_pos), "lobe_neg": _interval(lobe_neg), "area_ratio": _interval(ratio),
            "boot": est}


def _interval(values: np.ndarray) -> dict[str, float]:
    """Estimate (row 0) and the 95 % percentile interval of the bootstrap rows."""
    boot = values[1:][np.isfinite(values[1:])]
    if boot.size < 2:
        return {"value": float(values[0]), "lo": math.nan, "hi": math.nan}
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"value": float(values[0]), "lo": float(lo), "hi": float(hi)}


# --------------------------------------------------------------------------------------------
# Fit and verdict
# --------------------------------------------------------------------------------------------

def _fit_side(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least squares of A exp(-x / tau) (x > 0): (A, tau), NaN when it does not converge."""
    from scipy.optimize import curve_fit

    ok = np.isfinite(y)
    x, y = x[ok].astype(float), y[ok]
    if x.size < 3 or not np.any(y):
        return math.nan, math.nan
    a0 = y[np.argmin(x)] or float(np.mean(y)) or 1e-9
    try:
        p, _ = curve_fit(lambda d, A, tau: A * np.exp(-d / tau), x, y, p0=(a0, 3.0),
                         bounds=([-np.inf, 0.05], [np.inf, 1e3]), maxfev=5000)
    except (RuntimeError, ValueError):
        return math.nan, math.nan
    return float(p[0]), float(p[1])


def fit_window(win: dict, fit_boot: int = 200) -> dict[str, dict[str, float]]:
    """A+, tau+ (dt > 0) and A-, tau- (dt < 0, dw = -A- exp(dt / tau-)), in steps, each with
    a percentile interval over the first ``fit_boot`` bootstrap rows."""
    dt, est = win["dt"], win["boot"]
    rows = est[: 1 + min(fit_boot, est.shape[0] - 1)]
    vals = {k: [] for k in ("A_plus", "tau_plus", "A_minus", "tau_minus")}
    for row in rows:
        a, t = _fit_side(dt[dt > 0], row[dt > 0])
        vals["A_plus"].append(a)
        vals["tau_plus"].append(t)
        a, t = _fit_side(-dt[dt < 0], -row[dt < 0])
        vals["A_minus"].append(a)
        vals["tau_minus"].append(t)
    return {k: _interval(np.asarray(v)) for k, v in vals.items()}


def significant(iv: dict[str, float]) -> int:
    """+1 / -1 when the interval lies above / below zero, 0 when it contains zero."""
    if not (np.isfinite(iv["lo"]) and np.isfinite(iv["hi"])):
        return 0
    return 1 if iv["lo"] > 0 else -1 if iv["hi"] < 0 else 0


def verdict(win: dict) -> tuple[str, str]:
    """(kind, sentence) from the control-subtracted lobes and their intervals."""
    p, n = significant(win["lobe_pos"]), significant(win["lobe_neg"])
    kind = {
        (1, -1): "STDP-like",
        (-1, 1): "anti-STDP",
        (1, 0): "potentiation lobe only",
        (0, -1): "depression lobe only",
        (0, 0): "no window",
    }.get((p, n), "same sign on both sides")
    lp, ln, ar = win["lobe_pos"], win["lobe_neg"], win["area_ratio"]
    sentence = (f"{kind}: dt > 0 lobe {lp['value']:.3g} [{lp['lo']:.3g}, {lp['hi']:.3g}], dt < 0 lobe "
                f"{ln['value']:.3g} [{ln['lo']:.3g}, {ln['hi']:.3g}] (after the shuffle control, 95 % "
                f"bootstrap intervals); area ratio {ar['value']:.2f} (theory 1)")
    return kind, sentence


# --------------------------------------------------------------------------------------------
# Controls with a known answer
# --------------------------------------------------------------------------------------------

def theory_window(dts: np.ndarray, alpha: float, g: float, jump: float = 1.0) -> np.ndarray:
    """Expected trace-term dw (per unit c) for an isolated pair when the post state jumps by
    ``jump`` at its spike (ds[t_post] = jump) and relaxes by (1 - g) per step afterwards:
    dt >= 0: alpha J (1-alpha)^dt (1 - g (1-alpha) / (1 - (1-alpha)(1-g)));
    dt < 0: -alpha J g (1-g)^(|dt|-1) / (1 - (1-alpha)(1-g))."""
    q = 1.0 - (1.0 - alpha) * (1.0 - g)
    d = np.asarray(dts)
    pos = alpha * jump * (1.0 - alpha) ** np.maximum(d, 0) * (1.0 - g * (1.0 - alpha) / q)
    neg = -alpha * jump * g * (1.0 - g) ** (np.maximum(-d, 1) - 1) / q
    return np.where(d >= 0, pos, neg)


TRAINS = ("poisson", "sigma_delta")


def _trains(rng, steps: int, B: int, rates: np.ndarray, kind: str) -> np.ndarray:
    """Spike trains ``(steps, B, k)`` at one rate per synapse (``rates``, ``(k,)``): Poisson
    (Bernoulli per step) or sigma-delta (deterministic and periodic, as the network's neurons at
    a constant rate: a spike whenever phi + t q passes an integer, phi uniform per
    synapse-example)."""
    if kind == "poisson":
        return (rng.random((steps, B, rates.size)) < rates).astype(np.float32)
    if kind != "sigma_delta":
        raise ValueError(f"trains: unknown kind {kind!r} (one of {TRAINS})")
    phi = rng.random((B, rates.size))
    counts = np.floor(phi + np.arange(steps + 1).reshape(-1, 1, 1) * rates)
    return np.minimum(np.diff(counts, axis=0), 1.0).astype(np.float32)


def synthetic_recording(n_examples: int, steps: int, first: int, k: int, rate_pre, rate_post,
                        tau_m: float, tau_syn: float, jump: float, seed: int, coupled: bool = True,
                        batch: int = 20, trains: str = "poisson") -> list[Recording]:
    """Recordings of a synthetic synapse group, in the network recorder's format: pre and post
    spikes (``trains``: Poisson, or sigma-delta as the network's neurons emit them) at
    ``rate_pre``/``rate_post`` (scalars, or one rate per synapse ``(k,)``: the network's measured
    rates); the post state jumps by ``jump`` at each post spike (``coupled``) or at the spikes
    of an independent hidden train (``coupled=False``: post spikes unrelated to the state) and
    relaxes with time constant ``tau_m`` (g = 1 - exp(-1 / tau_m))."""
    rng = np.random.default_rng(seed)
    g = 1.0 - math.exp(-1.0 / tau_m)
    scalar = not np.ndim(rate_pre) and not np.ndim(rate_post)
    out = []
    for b0 in range(0, n_examples, batch):
        B = min(batch, n_examples - b0)
        if scalar and trains == "poisson":  # the original draws, in their order
            pre = (rng.random((steps, B, k)) < rate_pre).astype(np.float32)
            post = (rng.random((steps, B, k)) < rate_post).astype(np.float32)
            drive = post if coupled else (rng.random((steps, B, k)) < rate_post).astype(np.float32)
        else:
            rp, rq = (np.broadcast_to(np.asarray(r, dtype=np.float64), (k,)) for r in (rate_pre, rate_post))
            pre, post = _trains(rng, steps, B, rp, trains), _trains(rng, steps, B, rq, trains)
            drive = post if coupled else _trains(rng, steps, B, rq, trains)
        s = np.zeros((steps + 1, B, k))
        for t in range(steps):
            s[t + 1] = (1.0 - g) * s[t] + jump * drive[t]
        ds = np.diff(s, axis=0)[first:]
        out.append(Recording(pre=pre, post=post, ds_pre=None, ds_post=ds, scale=1.0, alpha=1.0 / tau_syn,
                             examples=np.arange(b0, b0 + B)))
    return out


def theory_area_ratio(max_dt: int, alpha: float, g: float) -> float:
    """The area ratio -lobe(dt < 0) / lobe(dt > 0) of ``theory_window`` truncated to |dt| <= max_dt,
    as ``window`` measures it (dt = 0 in neither lobe)."""
    d = np.arange(-max_dt, max_dt + 1)
    w = theory_window(d, alpha, g)
    return float(-w[d < 0].sum() / w[d > 0].sum())


# --------------------------------------------------------------------------------------------
# Pairing protocol
# --------------------------------------------------------------------------------------------

def _neuron_run(current: np.ndarray, nm: neuron.NeuronModel, rest: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One neuron of the network's model ``nm`` under an input current, stepped with the model's
    own equations (``neuron.emit``, ``neuron.relax``, the trace of ``eqspike.step``): its
    spikes, states ``s[0..n]`` and trace. It starts at the state of its resting current."""
    n = current.size
    s = np.empty(n + 1)
    state = neuron.rho(np.array([float(rest)]))
    s[0] = state[0]
    a = np.zeros(1)
    spikes, trace = np.zeros(n), np.zeros(n)
    r = np.zeros(1)
    for t in range(n):
        S, a = neuron.emit(state, a, nm, np)
        r = r + nm.alpha * (S - r)
        state = neuron.relax(state, neuron.rho(np.array([rest + current[t]])), nm)
        spikes[t], trace[t], s[t + 1] = S[0], r[0], state[0]
    return spikes, s, trace


def pairing(offsets: Sequence[int], nm: neuron.NeuronModel, weight: float, pulse: float, pulse_steps: int,
            rest: float = -1.5, margin: int | None = None) -> dict[str, np.ndarray]:
    """One synapse j -> i of two neurons of the model ``nm`` at rest (``rest`` current: silent).
    Neuron j gets a current pulse at 0, neuron i at each ``offset``; each spikes when its own
    model emits (sigma-delta: its accumulator crosses threshold). Returns per offset the measured
    dt = t_post - t_pre (first spikes), the number of spikes of each neuron, and dw summed over
    the whole run (until the traces have decayed) for the terms: ``spike`` sum S_j ds_i,
    ``trace`` sum r_j ds_i, ``applied`` sum S_j ds_i + S_i ds_j; each minus the same run without
    neuron j's pulse. Neuron i receives j's trace through the weight, as in the network."""
    g, tau_syn = nm.leak, nm.tau_syn_steps
    tau_m = -1.0 / math.log(1.0 - g) if g < 1 else 0.0
    margin = margin or int(10 * max(tau_syn, tau_m, 1.0)) + 4 * pulse_steps
    out = {k: [] for k in ("offset", "dt", "n_pre", "n_post", *TERMS)}
    for off in offsets:
        t0 = -margin
        ts = np.arange(t0, margin + abs(off) + margin)
        res = {}
        for with_pre in (True, False):
            cur_j = pulse * ((ts >= 0) & (ts < pulse_steps)) * with_pre
            S_j, s_j, r_j = _neuron_run(cur_j, nm, rest)
            cur_i = pulse * ((ts >= off) & (ts < off + pulse_steps)) + weight * r_j
            S_i, s_i, _ = _neuron_run(cur_i, nm, rest)
            ds_i, ds_j = np.diff(s_i), np.diff(s_j)
            res[with_pre] = {"spike": (S_j * ds_i).sum(), "trace": (r_j * ds_i).sum(),
                             "applied": (S_j * ds_i).sum() + (S_i * ds_j).sum(), "S_j": S_j, "S_i": S_i}
        a, b = res[True], res[False]
        tj, ti = np.flatnonzero(a["S_j"]), np.flatnonzero(a["S_i"])
        out["offset"].append(off)
        out["dt"].append(int(ts[ti[0]] - ts[tj[0]]) if tj.size and ti.size else None)
        out["n_pre"].append(int(tj.size))
        out["n_post"].append(int(ti.size))
        for term in TERMS:
            out[term].append(float(a[term] - b[term]))
    return out


def sign_pattern(dts: np.ndarray, dws: np.ndarray, max_dt: int, rel: float = 1e-3) -> str:
    """One character per dt in [-W, W]: ``+`` / ``-`` (|dw| above ``rel`` of the largest), ``0``
    (below), ``.`` (no isolated pair at that dt)."""
    by_dt = dict(zip((int(d) for d in dts), (float(w) for w in dws)))
    top = max((abs(w) for w in by_dt.values()), default=0.0)
    out = []
    for d in range(-max_dt, max_dt + 1):
        w = by_dt.get(d)
        out.append("." if w is None else "0" if abs(w) <= rel * top else "+" if w > 0 else "-")
    return "".join(out)


def sign_changes(dts: np.ndarray, dws: np.ndarray, rel: float = 1e-3) -> list[float]:
    """Where the window changes sign (the midpoint of the two dts), zeros skipped."""
    top = float(np.max(np.abs(dws))) if len(dws) else 0.0
    keep = [(int(d), float(w)) for d, w in sorted(zip(dts, dws)) if abs(w) > rel * top]
    return [(a[0] + b[0]) / 2 for a, b in zip(keep, keep[1:]) if (a[1] > 0) != (b[1] > 0)]


def pairing_window(result: dict, term: str) -> tuple[np.ndarray, np.ndarray]:
    """(dt, dw) of the isolated pairs (one spike each), one value per measured dt."""
    by_dt: dict[int, float] = {}
    for d, npre, npost, w in zip(result["dt"], result["n_pre"], result["n_post"], result[term]):
        if d is not None and npre == 1 and npost == 1 and d not in by_dt:
            by_dt[d] = w
    dts = np.array(sorted(by_dt))
    return dts, np.array([by_dt[d] for d in dts])


def _tail_lobe(x: np.ndarray, y: np.ndarray, sign: float) -> int:
    """Index from which ``y`` keeps ``sign`` to the end of ``x`` (sorted by distance from 0):
    where the lobe starts; ``len(x)`` when the last bin has the other sign."""
    k = len(x)
    while k > 0 and np.sign(y[k - 1]) == sign:
        k -= 1
    return k


def fit_pairing(dts: np.ndarray, dws: np.ndarray) -> dict[str, float]:
    """A+, tau+, A-, tau- of a deterministic window (no noise to resample), each side fitted on
    its lobe: the bins from where dw takes the side's STDP sign to the end of the window (a spike's
    latency after the current that caused it shifts the lobe away from dt = 0); the onsets too."""
    out = {}
    for side, sel, sign in (("plus", dts > 0, 1.0), ("minus", dts < 0, -1.0)):
        order = np.argsort(np.abs(dts[sel]))
        x, y = np.abs(dts[sel])[order].astype(float), dws[sel][order]
        k = _tail_lobe(x, y, sign)
        a, tau = _fit_side(x[k:], sign * y[k:]) if len(x) - k >= 3 else (math.nan, math.nan)
        out[f"A_{side}"], out[f"tau_{side}_steps"] = a, tau
        out[f"onset_{side}_steps"] = float(x[k]) if k < len(x) else math.nan
    return out


# --------------------------------------------------------------------------------------------
# Figure
# --------------------------------------------------------------------------------------------

def bi_poo_shape(dt_ms: np.ndarray, scale: float) -> np.ndarray:
    """Bi & Poo's window shape (tau+ 16.8 ms, tau- 33.7 ms), scaled: potentiation for dt > 0."""
    return np.where(dt_ms > 0, scale * np.exp(-dt_ms / BI_POO_TAU_PLUS_MS),
                    np.where(dt_ms < 0, -scale * np.exp(dt_ms / BI_POO_TAU_MINUS_MS), 0.0))


def _panel(ax, windows: dict[str, dict], step_ms: float, title: str, control: bool = True) -> None:
    scale = 0.0
    for k, (name, w) in enumerate(windows.items()):
        ms = w["dt"] * step_ms
        ax.fill_between(ms, w["lo"], w["hi"], color=f"C{k}", alpha=0.2)
        ax.plot(ms, w["mean"], "o-", ms=3, color=f"C{k}", label=f"{name} (control subtracted, 95 % CI)")
        if control:
            ax.plot(ms, w["control_mean"] - np.nanmean(w["control_mean"]), ":", color=f"C{k}", lw=1,
                    label=f"{name}: shuffle control (centred)")
        scale = max(scale, float(np.nanmax(np.abs(w["mean"]))) if np.any(np.isfinite(w["mean"])) else 0.0)
    reach = max(abs(w["dt"]).max() for w in windows.values()) * step_ms
    d = np.linspace(-reach, reach, 400)
    ax.plot(d, bi_poo_shape(d, scale), "k--", lw=0.8, label="Bi & Poo shape, scaled")
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel(f"dt = t_post - t_pre (ms; 1 step = {step_ms:g} ms)")
    ax.set_ylabel("dw per unit learning rate")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)


def stdp_figure(rows: dict[str, dict[str, dict]], controls: dict[str, dict], pairings: dict[str, dict],
                step_ms: float, path: Path) -> None:
    """One row per model (columns: input synapses and hidden synapses, net windows of the trace
    and applied terms; +beta and -beta phases of the trace term), a last row with the positive
    and negative controls and the pairing protocol."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = max(3, max(len(r) for r in rows.values()) if rows else 3)
    fig, axes = plt.subplots(len(rows) + 1, ncols, figsize=(5.5 * ncols, 4.2 * (len(rows) + 1)), squeeze=False)
    for i, (model, panels) in enumerate(rows.items()):
        for j, (title, wins) in enumerate(panels.items()):
            _panel(axes[i][j], wins, step_ms, f"{model}: {title}")
        for j in range(len(panels), ncols):
            axes[i][j].axis("off")
    last = axes[len(rows)]
    _panel(last[0], controls, step_ms, "controls (synthetic post neuron, trace term)", control=False)
    for k, (name, (dts, dws)) in enumerate(pairings.items()):
        last[1].plot(np.asarray(dts) * step_ms, dws, "o-", ms=3, color=f"C{k}", label=name)
    last[1].axhline(0, color="k", lw=0.5)
    last[1].axvline(0, color="k", lw=0.5)
    last[1].set_xlabel("measured dt (ms)")
    last[1].set_ylabel("dw per unit learning rate")
    last[1].set_title("pairing protocol: spikes from threshold crossings", fontsize=9)
    last[1].legend(fontsize=6)
    for j in range(2, ncols):
        last[j].axis("off")
    fig.suptitle("Does EqSpike's update look like STDP? (claim C5)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def slug(name: str) -> str:
    """``leaky, input synapses, trace, net`` -> ``leaky.input_synapses.trace.net``."""
    return name.replace(", ", ".").replace(" ", "_")
