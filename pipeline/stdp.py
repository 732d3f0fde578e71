"""STDP emergence (claim C5): EqSpike's spike-triggered weight updates
against the spike-timing difference dt = t_post - t_pre.

In the network. ``Recorder`` observes the very step function the training uses
(``spiking.simulate_learning``) and keeps, for a sample of synapses of every layer, the spikes
and state changes of their two neurons. Each spike-triggered update of the rule
(README, "The model": the rule) during a nudged phase becomes one event:

    presynaptic spike of j at t:   dw = c S_j[t] ds_i[t],  dt = (nearest spike of i) - t
    postsynaptic spike of i at t:  dw = c S_i[t] ds_j[t],  dt = t - (nearest spike of j)
    (input synapses have the first kind only: an input's state does not change)

with c = +-1 / (2 beta) for the +beta / -beta phase of symmetric nudging (1 / beta one-sided),
i.e. dw is the event's contribution to the update per unit learning rate. "Nearest" searches the
free phase and the event's own nudged phase, within ``max_dt`` steps.

Pairing protocol. One synapse, two neurons following the neuron model's state equation
s[t+1] = s[t] + g (rho(I[t]) - s[t]); a current pulse one step before each imposed spike raises
the neuron's state, as the rising state is what makes a neuron spike; the postsynaptic neuron
also receives w times the presynaptic trace. The rule applied to the imposed pair gives the
rule's own window, beside the in-network one.

Fit (Song, Miller & Abbott 2000): dw = A+ exp(-dt / tau+) for dt > 0, -A- exp(dt / tau-) for
dt < 0, by least squares on the binned means weighted by their standard errors; parameter
uncertainties from the covariance. Theory (Bengio et al. 2015-2017): presynaptic activity times
the rate of change of the postsynaptic activity, an antisymmetric window with equal areas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline import neuron
from pipeline.backend import to_host

BI_POO_TAU_PLUS_MS = 16.8  # Bi & Poo 2001 fit, used by Pfister & Gerstner 2006
BI_POO_TAU_MINUS_MS = 33.7


def sample_synapses(sizes: Sequence[int], per_layer: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each weight matrix l, ``(pre indices, post indices)`` of ``per_layer`` synapses."""
    rng = np.random.default_rng(seed)
    out = []
    for n_pre, n_post in zip(sizes[:-1], sizes[1:]):
        k = min(per_layer, n_pre * n_post)
        flat = rng.choice(n_pre * n_post, size=k, replace=False)
        out.append((flat // n_post, flat % n_post))
    return out


class Recorder:
    """Observer of ``spiking.simulate_learning``: spikes and state changes of sampled neurons."""

    def __init__(self, synapses: list[tuple[np.ndarray, np.ndarray]], beta: float, symmetric: bool):
        self.synapses = synapses
        self.scale = 1.0 / (2.0 * beta) if symmetric else 1.0 / beta
        self.steps: dict[str, list] = {}

    def __call__(self, phase, t, spikes_in, spikes, old, new) -> None:
        layers = [spikes_in, *spikes]
        ds = [None] + [n.s - o.s for n, o in zip(new, old)]
        keep = []
        for l, (pre, post) in enumerate(self.synapses):
            keep.append((to_host(layers[l][:, pre]), to_host(layers[l + 1][:, post]),
                         None if l == 0 else to_host(ds[l][:, pre]), to_host(ds[l + 1][:, post])))
        self.steps.setdefault(phase, []).append((t, keep))

    def events(self, max_dt: int) -> list[dict]:
        """One record per spike-triggered update of a sampled synapse in a nudged phase."""
        free = self.steps.get("free", [])
        out: list[dict] = []
        for phase, steps in self.steps.items():
            if not phase.startswith("nudged"):
                continue
            sign = -1.0 if phase == "nudged-" else 1.0
            history = free + steps
            times = np.array([t for t, _ in history])
            n_nudged = len(steps)
            for l in range(len(self.synapses)):
                pre = np.stack([h[1][l][0] for h in history])  # (steps, B, k)
                post = np.stack([h[1][l][1] for h in history])
                ds_post = np.stack([h[1][l][3] for h in steps])  # nudged steps only
                ds_pre = None if l == 0 else np.stack([h[1][l][2] for h in steps])
                first = len(history) - n_nudged
                events = _pair_events(l, pre, post, ds_pre, ds_post, times, first, sign * self.scale, max_dt)
                out.extend({**e, "phase": phase} for e in events)
        return out


def _nearest(spike_times: np.ndarray, t: int) -> int | None:
    if spike_times.size == 0:
        return None
    k = np.searchsorted(spike_times, t)
    best = [spike_times[i] for i in (k - 1, k) if 0 <= i < spike_times.size]
    return int(min(best, key=lambda s: (abs(s - t), s)))


def _pair_events(layer, pre, post, ds_pre, ds_post, times, first, scale, max_dt) -> list[dict]:
    out = []
    _, B, k = pre.shape
    for b in range(B):
        for s in range(k):
            pre_times = times[np.flatnonzero(pre[:, b, s])]
            post_times = times[np.flatnonzero(post[:, b, s])]
            for idx in np.flatnonzero(pre[first:, b, s]):  # presynaptic spike triggers
                partner = _nearest(post_times, times[first + idx])
                if partner is not None and abs(partner - times[first + idx]) <= max_dt:
                    out.append({"layer": layer, "trigger": "pre", "dt": partner - int(times[first + idx]),
                                "dw": float(scale * ds_post[idx, b, s])})
            if ds_pre is None:
                continue
            for idx in np.flatnonzero(post[first:, b, s]):  # postsynaptic spike triggers
                partner = _nearest(pre_times, times[first + idx])
                if partner is not None and abs(partner - times[first + idx]) <= max_dt:
                    out.append({"layer": layer, "trigger": "post", "dt": int(times[first + idx]) - partner,
                                "dw": float(scale * ds_pre[idx, b, s])})
    return out


def binned_window(dts: np.ndarray, dws: np.ndarray, max_dt: int) -> dict[str, np.ndarray]:
    """Mean, standard deviation, standard error and count of dw per dt in [-max_dt, max_dt]."""
    bins = np.arange(-max_dt, max_dt + 1)
    mean, std, sem, n = (np.full(bins.size, np.nan) for _ in range(4))
    for i, d in enumerate(bins):
        v = dws[dts == d]
        n[i] = v.size
        if v.size:
            mean[i], std[i] = v.mean(), v.std()
            sem[i] = v.std(ddof=1) / math.sqrt(v.size) if v.size > 1 else np.nan
    return {"dt": bins, "mean": mean, "std": std, "sem": sem, "n": n}


def _fit_side(dt: np.ndarray, mean: np.ndarray, sem: np.ndarray) -> dict[str, float]:
    """Least squares of A exp(-|dt| / tau) on one side; uncertainties from the covariance."""
    from scipy.optimize import curve_fit

    ok = np.isfinite(mean)
    x, y = np.abs(dt[ok]).astype(float), mean[ok]
    if x.size < 3:
        return {"A": math.nan, "A_err": math.nan, "tau": math.nan, "tau_err": math.nan,
                "note": f"only {x.size} bins with data"}
    s = sem[ok]
    s = np.where(np.isfinite(s) & (s > 0), s, np.nanmax(np.where(np.isfinite(s), s, 0)) or 1.0)
    a0 = y[np.argmin(x)] if y[np.argmin(x)] != 0 else (y.mean() or 1e-6)
    try:
        p, cov = curve_fit(lambda d, A, tau: A * np.exp(-d / tau), x, y, p0=(a0, 2.0), sigma=s,
                           absolute_sigma=False, bounds=([-np.inf, 1e-3], [np.inf, 1e4]), maxfev=20000)
    except (RuntimeError, ValueError) as exc:
        return {"A": math.nan, "A_err": math.nan, "tau": math.nan, "tau_err": math.nan, "note": str(exc)}
    err = np.sqrt(np.diag(cov)) if np.all(np.isfinite(cov)) else np.full(2, math.nan)
    return {"A": float(p[0]), "A_err": float(err[0]), "tau": float(p[1]), "tau_err": float(err[1]), "note": ""}


def fit_window(window: dict[str, np.ndarray]) -> dict[str, float]:
    """A+, tau+ (dt > 0) and A-, tau- (dt < 0, dw = -A- exp(dt / tau-)), in steps."""
    dt, mean, sem = window["dt"], window["mean"], window["sem"]
    pos, neg = dt > 0, dt < 0
    p, n = _fit_side(dt[pos], mean[pos], sem[pos]), _fit_side(dt[neg], -mean[neg], sem[neg])
    return {"A_plus": p["A"], "A_plus_err": p["A_err"], "tau_plus_steps": p["tau"], "tau_plus_err_steps": p["tau_err"],
            "A_minus": n["A"], "A_minus_err": n["A_err"], "tau_minus_steps": n["tau"],
            "tau_minus_err_steps": n["tau_err"], "fit_note": "; ".join(x for x in (p["note"], n["note"]) if x)}


def shape_metrics(dts: np.ndarray, dws: np.ndarray, window: dict[str, np.ndarray]) -> dict[str, float]:
    """Fractions of potentiation (dt > 0) and depression (dt < 0), the area ratio
    -area(dt < 0) / area(dt > 0) (1 for the theory's antisymmetric window), and an
    antisymmetry residual |m(dt) + m(-dt)| / (|m(dt)| + |m(-dt)|) over dt > 0 (0: antisymmetric,
    1: symmetric)."""
    pos, neg = dts > 0, dts < 0
    m, dt = np.nan_to_num(window["mean"]), window["dt"]
    area_pos, area_neg = m[dt > 0].sum(), m[dt < 0].sum()
    mirrored = m[dt < 0][::-1]
    denom = np.abs(m[dt > 0]).sum() + np.abs(mirrored).sum()
    return {
        "fraction_potentiation_dt_pos": float((dws[pos] > 0).mean()) if pos.any() else math.nan,
        "fraction_depression_dt_neg": float((dws[neg] < 0).mean()) if neg.any() else math.nan,
        "area_pos": float(area_pos),
        "area_neg": float(area_neg),
        "area_ratio": float(-area_neg / area_pos) if area_pos != 0 else math.nan,
        "antisymmetry_residual": float(np.abs(m[dt > 0] + mirrored).sum() / denom) if denom > 0 else math.nan,
        "events": int(dts.size),
    }


def pairing_window(dts: Sequence[int], leak: float, tau_syn_steps: float, weight: float = 0.5,
                   pulse: float = 2.0, input_synapse: bool = False, margin: int = 40) -> np.ndarray:
    """The rule's own window: dw(dt) for an imposed presynaptic spike at 0 and postsynaptic
    spike at dt (module docstring). Slope-4 sigmoid as rho; states start at rest."""
    def rho(v):
        return float(neuron.rho(np.asarray(v, dtype=np.float64)))

    alpha = 1.0 / tau_syn_steps
    out = []
    for d in dts:
        t0 = -margin
        n = 2 * margin + abs(d) + 2
        ts = np.arange(t0, t0 + n)
        S_pre, S_post = (ts == 0).astype(float), (ts == d).astype(float)
        s_pre, s_post = np.empty(n + 1), np.empty(n + 1)
        s_pre[0] = s_post[0] = rho(0.0)
        r_pre = 0.0
        for k, t in enumerate(ts):
            r_pre += alpha * (S_pre[k] - r_pre)
            s_pre[k + 1] = s_pre[k] + leak * (rho(pulse * (t == -1)) - s_pre[k])
            s_post[k + 1] = s_post[k] + leak * (rho(pulse * (t == d - 1) + weight * r_pre) - s_post[k])
        ds_pre, ds_post = np.diff(s_pre), np.diff(s_post)
        dw = float((S_pre * ds_post).sum())
        if not input_synapse:
            dw += float((S_post * ds_pre).sum())
        out.append(dw)
    return np.array(out)


def bi_poo_shape(dt_ms: np.ndarray, scale: float) -> np.ndarray:
    """Bi & Poo's window shape (tau+ 16.8 ms, tau- 33.7 ms), scaled: potentiation for dt > 0."""
    return np.where(dt_ms > 0, scale * np.exp(-dt_ms / BI_POO_TAU_PLUS_MS),
                    np.where(dt_ms < 0, -scale * np.exp(dt_ms / BI_POO_TAU_MINUS_MS), 0.0))


def stdp_figure(panels: dict, pairing: dict, step_ms: float, path: Path) -> None:
    """One panel per entry of ``panels`` (title -> (windows, fits)): dw vs dt per synapse group
    (mean +- s.e.m., fitted window, the antisymmetric part, Bi & Poo's shape scaled); a last
    panel with the pairing protocol's windows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(6 * (len(panels) + 1), 4.8))
    for ax, (title, (windows, fits)) in zip(axes, panels.items()):
        scale = 0.0
        for k, (name, w) in enumerate(windows.items()):
            ms = w["dt"] * step_ms
            ax.errorbar(ms, w["mean"], yerr=np.nan_to_num(w["sem"]), fmt="o", ms=3, capsize=2,
                        color=f"C{k}", label=f"{name} (mean +- s.e.m.)")
            f = fits[name]
            for sign in (1.0, -1.0):
                key = "plus" if sign > 0 else "minus"
                A, tau = f[f"A_{key}"], f[f"tau_{key}_steps"]
                if np.isfinite(A) and np.isfinite(tau):
                    d = np.linspace(0.5, abs(ms).max(), 100) * sign
                    ax.plot(d, sign * A * np.exp(-np.abs(d) / (tau * step_ms)), color=f"C{k}", lw=1)
            anti = (w["mean"] - w["mean"][::-1]) / 2.0
            ax.plot(ms, anti, ":", color=f"C{k}", lw=1, label=f"{name}: antisymmetric part")
            scale = max(scale, float(np.nanmax(np.abs(w["mean"]))))
        reach = max(abs(w["dt"]).max() for w in windows.values()) * step_ms
        d = np.linspace(-reach, reach, 400)
        ax.plot(d, bi_poo_shape(d, scale), "k--", lw=1, label="Bi & Poo shape (16.8 / 33.7 ms), scaled")
        lim = 1.6 * max(scale, 1e-12)
        ax.set_ylim(-lim, lim)  # the fitted curves may overshoot the data near dt = 0
        ax.axhline(0, color="k", lw=0.5)
        ax.axvline(0, color="k", lw=0.5)
        ax.set_xlabel(f"dt = t_post - t_pre (ms; 1 step = {step_ms:g} ms)")
        ax.set_ylabel("dw per unit learning rate")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=6)
    ax = axes[-1]
    for k, (name, (dts, dws)) in enumerate(pairing.items()):
        ax.plot(np.asarray(dts) * step_ms, dws, "o-", ms=3, color=f"C{k + 3}", label=name)
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("dt (ms)")
    ax.set_ylabel("dw per unit learning rate")
    ax.set_title("pairing protocol: one synapse, imposed spikes", fontsize=10)
    ax.legend(fontsize=7)
    fig.suptitle("Does EqSpike's update look like STDP? (claim C5)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# Analysis of the recorded updates, and the verdict
# --------------------------------------------------------------------------------------------

GROUPS = {"input synapses": 0, "hidden synapses": 1}
# the +beta phase alone (what a synapse does during one nudged phase) and the net update
# (+beta minus -beta, over 2 beta: what learning keeps; the spike-noise part cancels)
MODES = ("one nudged phase", "net of both phases")
CONSISTENT_FRACTION = 0.55  # share of updates that must potentiate (dt > 0) / depress (dt < 0)


def analyse(recorder_events: list[dict], max_dt: int, step_ms: float) -> tuple[dict, dict, dict]:
    """Binned windows, exponential fits and shape metrics per group of synapses and mode, and a
    verdict per group; times also in ms (``step_ms`` per step). Returns windows, fits, groups."""
    layer = np.array([e["layer"] for e in recorder_events])
    phase = np.array([e["phase"] for e in recorder_events])
    dts = np.array([e["dt"] for e in recorder_events])
    dws = np.array([e["dw"] for e in recorder_events])
    windows, fits, groups = {}, {}, {}
    modes = {MODES[0]: phase == "nudged+", MODES[1]: np.ones(phase.size, dtype=bool)}
    for mode, in_mode in modes.items():
        for name, lo in GROUPS.items():
            sel = in_mode & ((layer == lo) if lo == 0 else (layer >= lo))
            if not sel.any():
                continue
            key = f"{name}, {mode}"
            windows[key] = binned_window(dts[sel], dws[sel], max_dt)
            fits[key] = fit_window(windows[key])
            shape = shape_metrics(dts[sel], dws[sel], windows[key])
            fit_ms = dict(fits[key])
            for k in ("tau_plus", "tau_plus_err", "tau_minus", "tau_minus_err"):
                fit_ms[f"{k}_ms"] = fits[key][f"{k}_steps"] * step_ms
            groups[key] = {**fit_ms, **shape, "verdict": verdict(fits[key], shape)}
    return windows, fits, groups


def verdict(fit: dict, shape: dict) -> str:
    """One plain sentence on the window's shape."""
    pot = shape["fraction_potentiation_dt_pos"]
    dep = shape["fraction_depression_dt_neg"]
    signs_match = shape["area_pos"] > 0 > shape["area_neg"]
    # a consistent window needs more than the sign of two noisy means: most updates on each side
    # must go the STDP way
    consistent = pot > CONSISTENT_FRACTION and dep > CONSISTENT_FRACTION
    anti = shape["antisymmetry_residual"]
    if signs_match and consistent:
        kind = "STDP-like (potentiation for dt > 0, depression for dt < 0)"
    elif signs_match:
        kind = ("not STDP-like: the mean areas have STDP's signs, but updates potentiate and depress "
                "about equally often on both sides")
    else:
        kind = "not STDP-like in sign"
    sym = ("close to antisymmetric" if anti < 0.25 else "partly antisymmetric" if anti < 0.6
           else "mostly symmetric")
    return (f"{kind}; {100 * pot:.0f} % of updates with dt > 0 potentiate, {100 * dep:.0f} % with dt < 0 "
            f"depress; area ratio {shape['area_ratio']:.2f} (theory: 1), {sym} "
            f"(residual {anti:.2f}); {shape['events']} events")


def slug(group: str) -> str:
    """``input synapses, one nudged phase`` -> ``input_synapses.one_nudged_phase``."""
    return group.replace(", ", ".").replace(" ", "_")


FLAT_KEYS = ("tau_plus_ms", "tau_minus_ms", "area_ratio")  # the rest: results/stdp.json


def flat_metrics(groups: dict) -> dict[str, float]:
    """The numbers of every group as one flat mapping (``<group>.<key>``), and ``stdp_like`` 1/0."""
    out: dict[str, float] = {}
    for name, g in groups.items():
        for key in FLAT_KEYS:
            if key in g and isinstance(g[key], (int, float)):
                out[f"{slug(name)}.{key}"] = float(g[key])
        out[f"{slug(name)}.stdp_like"] = float(g["verdict"].startswith("STDP-like"))
    return out
