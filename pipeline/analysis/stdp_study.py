"""The STDP study of claim C5, end to end: record the trained networks (``record``), measure the
windows of every synapse group, term and phase against the shuffle control, stratify by the
postsynaptic rate, run the synthetic controls with a known answer and the pairing protocol
(``study``), and write the results (``write``). The method itself is ``pipeline.analysis.stdp``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.analysis import stdp
from pipeline.analysis.stdp import StdpCfg
from pipeline.core.io import atomic_write, write_json
from pipeline.core.schema import ConfigError
from pipeline.models import eqspike
from pipeline.models.eqspike import EqSpikeConfig

GROUPS = {0: "input synapses", 1: "hidden synapses"}
TERM_NAMES = {"spike": "pre->post, spike factor", "trace": "pre->post, trace factor (eligibility)",
              "applied": "applied rule (spike factor, both terms)"}
FIT_BOOTSTRAP = 200  # at most this many bootstrap resamples for the time-constant fits
# the synthetic controls: synapses, pre and post rates (spikes per step), the post state's jump
CONTROL_SYNAPSES, CONTROL_RATE, CONTROL_JUMP = 50, 0.05, 0.1


@dataclass
class StdpResult:
    detail: dict  # everything (results/stdp.json)
    flat: dict  # the flat numbers (results/flat/stdp.json)
    figure_rows: dict
    controls: dict
    pairing_curves: dict
    windows: dict  # one window per model x group x term x phase (the CSV files)


def _at(root: Path, relative: str) -> Path:
    return Path(root) / relative


def record(cfg: EqSpikeConfig, sc: StdpCfg, params, data, xp, n: int) -> tuple[dict, int]:
    """Recordings ``{(layer, phase): [Recording per batch]}`` of ``n`` training examples."""
    dyn = replace(cfg, engine="array")  # observers need the array engine
    sizes = [params.W[0].shape[0], *(w.shape[1] for w in params.W)]
    rng = eqspike.make_rng(xp, [sc.seed, 3])
    order = np.random.default_rng(sc.seed).permutation(len(data.y_train))[:n]
    synapses = stdp.sample_synapses(sizes, sc.synapses_per_layer, sc.seed)
    out: dict = {}
    B = cfg.batch_size
    done = 0
    for start in range(0, n, B):
        idx = order[start:start + B]
        if idx.size < 2:  # the shuffle control pairs example b with b + 1 of the same batch
            break
        done = start + idx.size
        x = xp.asarray(data.x_train[idx], dtype=params.W[0].dtype)
        y = eqspike.onehot(xp.asarray(data.y_train[idx]), sizes[-1], xp, x.dtype)
        rec = stdp.Recorder(synapses, dyn.beta, dyn.nudge == "symmetric", cfg.neuron.alpha)
        eqspike.simulate_learning(params, x, y, dyn, rng, rec)
        for key, r in rec.recordings(np.arange(start, start + idx.size)).items():
            out.setdefault(key, []).append(r)
    if not out:
        raise RuntimeError("stdp: no nudged phase recorded (eqspike.nudge and stdp.n_examples)")
    return out, done


def rate_strata(recs, n_strata: int, step_ms: float):
    """Quantile edges of the postsynaptic firing rate (spikes per step over the nudged phase) and
    a mask maker per stratum; rates in Hz."""
    rates = np.concatenate([r.post[r.first:].mean(axis=0).ravel() for r in recs])
    firing = rates[rates > 0]  # silent postsynaptic neurons make no pair: strata of the firing ones
    edges = np.quantile(firing if firing.size else rates, np.linspace(0, 1, n_strata + 1))
    edges[0] = min(edges[0], firing.min()) if firing.size else edges[0]
    edges[-1] += 1e-9
    makers = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        def mask(r, lo=lo, hi=hi):
            rate = r.post[r.first:].mean(axis=0)
            return (rate >= lo) & (rate < hi)
        makers.append(((lo * 1000 / step_ms, hi * 1000 / step_ms), mask))
    return makers


def phase_windows(sums: dict, weights, max_dt: int) -> tuple[dict, str]:
    """Window of each recorded phase, and ``net`` (+beta minus -beta) when both ran; the name of
    the window the verdict reads (``net``, or the one phase of one-sided nudging)."""
    wins = {ph: stdp.window(s, weights, max_dt) for ph, s in sums.items()}
    if len(sums) == 2:
        wins["net"] = stdp.window(sums, weights, max_dt, net=True)
    return wins, "net" if "net" in wins else next(iter(sums))


def summarise(win: dict, fit: dict | None, step_ms: float) -> dict:
    kind, sentence = stdp.verdict(win)
    out = {"verdict": kind, "sentence": sentence, "lobe_pos": win["lobe_pos"], "lobe_neg": win["lobe_neg"],
           "area_ratio": win["area_ratio"], "pairs": float(np.nansum(win["pairs"]))}
    if fit is not None:
        out["fit"] = fit
        for side in ("plus", "minus"):
            iv = fit[f"tau_{side}"]
            out[f"tau_{side}_ms"] = {k: v * step_ms for k, v in iv.items()}
    return out


def window_table(win: dict) -> dict:
    return {k: [None if not math.isfinite(float(v)) else float(v) for v in win[k]]
            for k in ("dt", "mean", "lo", "hi", "raw_mean", "control_mean", "pairs")}


def measured_rates(recs, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``k`` (pre, post) rate pairs drawn from the recorded synapse-examples (spikes per step over
    each nudged phase) whose two neurons both fire: the network's own rates, as pairs."""
    pre = np.concatenate([r.pre[r.first:].mean(axis=0).ravel() for r in recs])
    post = np.concatenate([r.post[r.first:].mean(axis=0).ravel() for r in recs])
    both = (pre > 0) & (post > 0)
    if not both.any():
        raise ValueError("stdp: no recorded synapse whose two neurons both fire: no network rate to copy")
    pick = np.random.default_rng([seed, 11]).choice(np.flatnonzero(both), size=k)
    return pre[pick], post[pick]


def theory_check(win: dict, theory_ratio: float) -> dict:
    """Whether a positive control recovers the theory's area ratio (truncated to the window)
    within its interval, and a sentence that says which way it misses."""
    ar = win["area_ratio"]
    ok = bool(ar["lo"] <= theory_ratio <= ar["hi"]) if math.isfinite(ar["lo"]) else False
    if ok:
        sentence = f"area ratio {ar['value']:.2f} [{ar['lo']:.2f}, {ar['hi']:.2f}] holds the theory's {theory_ratio:.2f}"
    else:
        side = "below" if ar["value"] < theory_ratio else "above"
        sentence = (f"area ratio {ar['value']:.2f} [{ar['lo']:.2f}, {ar['hi']:.2f}] is {side} the theory's "
                    f"{theory_ratio:.2f} for isolated pairs")
    return {"theory_area_ratio": theory_ratio, "area_ratio_recovered": ok, "sentence": sentence}


def learning_windows(mcfg: EqSpikeConfig, params, data, sc: StdpCfg, xp, n: int) -> dict:
    """The trained rule's main window (spike factor: the applied term) of every synapse group for
    the weights ``params`` (a snapshot during learning), with the same control and intervals."""
    W = sc.max_dt_steps
    recs, n_ex = record(mcfg, sc, params, data, xp, n)
    boot = stdp.bootstrap_weights(n_ex, sc.bootstrap, sc.seed)
    term = "applied" if mcfg.pre_factor == "spike" else "trace"
    out = {}
    for layer, group in GROUPS.items():
        sums = {ph: stdp.Sums.collect(recs[(layer, ph)], term, W, n_ex, control=sc.control, stationary=sc.stationary) for ph in stdp.PHASES
                if (layer, ph) in recs}
        wins, main = phase_windows(sums, boot, W)
        out[group] = {"term": term, "window": main, **summarise(wins[main], None, sc.step_ms)}
    return out


def study(models: dict[str, tuple[EqSpikeConfig, object]], data, sc: StdpCfg, xp,
          snapshots: dict[str, dict[int, object]] | None = None) -> StdpResult:
    """The whole C5 measurement for ``models`` (name -> (its config, its trained weights)); the
    controls use the first model's neuron and phases. ``snapshots``: per model, the raw weights
    after earlier epochs (``{epoch: params}``), whose trained-rule windows go beside the final ones."""
    n = min(sc.n_examples, len(data.y_train))
    W = sc.max_dt_steps
    if sc.stationary:  # named before any recording
        for model, (mcfg, _) in models.items():
            if mcfg.K <= W or mcfg.T < W:
                raise ConfigError(f"stdp.max_dt_steps: {W} leaves no trigger that every dt bin sees in {model}'s "
                                  f"phases (T {mcfg.T}, K {mcfg.K}; stdp.stationary needs K > {W} and T >= {W})")
    detail = {"step_ms": sc.step_ms, "n_examples": n, "max_dt_steps": W, "bootstrap": sc.bootstrap, "control": sc.control,
              "stationary": sc.stationary,
              "bi_poo": {"tau_plus_ms": stdp.BI_POO_TAU_PLUS_MS, "tau_minus_ms": stdp.BI_POO_TAU_MINUS_MS},
              "models": {}, "controls": {}, "pairing": {}}
    flat: dict[str, float] = {}
    figure_rows, csv_windows = {}, {}
    weights_boot = None

    # ---- the trained networks ------------------------------------------------------------
    first_recs = None
    for model, (mcfg, params) in models.items():
        recs, n_ex = record(mcfg, sc, params, data, xp, n)
        if first_recs is None:
            first_recs = [r for ph in stdp.PHASES for r in recs.get((1, ph), [])]
        if weights_boot is None or weights_boot.shape[1] != n_ex:
            weights_boot = stdp.bootstrap_weights(n_ex, sc.bootstrap, sc.seed)
        g = mcfg.neuron.leak
        m = {"neuron": mcfg.neuron.model, "leak": g, "tau_m_steps": (-1.0 / math.log(1.0 - g)) if g < 1 else 0.0,
             "tau_syn_steps": mcfg.neuron.tau_syn_steps, "pre_factor": mcfg.pre_factor, "groups": {}}
        panels, verdicts, phases_panel = {}, {}, {}
        for layer, group in GROUPS.items():
            gout = {}
            for term in stdp.TERMS:
                sums = {ph: stdp.Sums.collect(recs[(layer, ph)], term, W, n_ex, control=sc.control, stationary=sc.stationary) for ph in stdp.PHASES
                        if (layer, ph) in recs}
                wins, main = phase_windows(sums, weights_boot, W)
                tout = {}
                for ph, win in wins.items():
                    fit = stdp.fit_window(win, min(FIT_BOOTSTRAP, sc.bootstrap)) if ph == main else None
                    tout[ph] = {**summarise(win, fit, sc.step_ms), "window": window_table(win)}
                    csv_windows[f"{model}, {group}, {term}, {ph}"] = win
                gout[term] = tout
                key = stdp.slug(f"{model}, {group}, {term}")
                verdicts[(group, term)] = tout[main]["verdict"]
                flat[f"{key}.stdp_like"] = float(tout[main]["verdict"] == "STDP-like")
                flat[f"{key}.lobe_pos"] = tout[main]["lobe_pos"]["value"]
                flat[f"{key}.lobe_neg"] = tout[main]["lobe_neg"]["value"]
                if term in ("trace", "applied"):
                    panels.setdefault(f"{group}, {main} window", {})[TERM_NAMES[term]] = wins[main]
                if layer == 1 and term == "trace":  # the figure's per-phase panel
                    phases_panel = {f"{ph} phase": wins[ph] for ph in stdp.PHASES if ph in wins}
            # firing-rate strata of the trace term's net window
            strata = []
            all_recs = [r for ph in stdp.PHASES for r in recs.get((layer, ph), [])]
            for (lo_hz, hi_hz), mask in rate_strata(all_recs, sc.rate_strata, sc.step_ms):
                sums = {ph: stdp.Sums.collect(recs[(layer, ph)], "trace", W, n_ex, mask, sc.control, sc.stationary) for ph in stdp.PHASES
                        if (layer, ph) in recs}
                wins, main = phase_windows(sums, weights_boot, W)
                win = wins[main]
                strata.append({"post_rate_hz": [lo_hz, hi_hz], **summarise(win, None, sc.step_ms)})
            gout["trace_by_post_rate"] = strata
            m["groups"][group] = gout
        panels["hidden synapses, trace term: +beta and -beta phases"] = phases_panel
        figure_rows[f"{model} (g {g:g})"] = panels
        m["during_learning"] = {str(e): learning_windows(mcfg, p, data, sc, xp, n)
                                for e, p in sorted((snapshots or {}).get(model, {}).items())}
        for e, groups in m["during_learning"].items():
            for group, w in groups.items():
                flat[f"{stdp.slug(f'{model}, {group}')}.epoch{e}.stdp_like"] = float(w["verdict"] == "STDP-like")
        detail["models"][model] = m
        print(f"{model}: " + "; ".join(f"{grp} {t}: {verdicts[(grp, t)]}" for grp in GROUPS.values() for t in stdp.TERMS))

    # ---- controls with a known answer (the same recorder format and analysis) ------------------
    # three positive controls: Poisson at a low rate (isolated pairs: the theory's setting), then
    # at the first model's own measured rates (hidden synapses: pre and post rate of each
    # recorded synapse-example), as Poisson and as the sigma-delta trains the network emits
    reference = next(iter(models.values()))[0]  # the first model's neuron and phases
    tau_syn = reference.neuron.tau_syn_steps
    g_ctrl = 1.0 - math.exp(-1.0 / sc.control_tau_m)
    theory_ratio = stdp.theory_area_ratio(W, 1.0 / tau_syn, g_ctrl)
    rate_pre, rate_post = measured_rates(first_recs, CONTROL_SYNAPSES, sc.seed)
    detail["controls_rates"] = {"pre": [float(v) for v in rate_pre], "post": [float(v) for v in rate_post],
                                "from": "the first model's hidden synapses, nudged phases (spikes per step)"}
    ctrl_windows = {}
    setups = (("positive control (state jumps at the post spike)", True, "poisson", CONTROL_RATE, CONTROL_RATE),
              ("negative control (post spikes independent of the state)", False, "poisson", CONTROL_RATE, CONTROL_RATE),
              ("positive control at the network's rates, Poisson trains", True, "poisson", rate_pre, rate_post),
              ("positive control at the network's rates, sigma-delta trains", True, "sigma_delta", rate_pre,
               rate_post))
    for name, coupled, trains, r_pre, r_post in setups:
        recs = stdp.synthetic_recording(n, 2 * (reference.T // 2 + reference.K), reference.T // 2, CONTROL_SYNAPSES,
                                        r_pre, r_post, sc.control_tau_m, tau_syn, CONTROL_JUMP, sc.seed,
                                        coupled, trains=trains)
        win = stdp.window(stdp.Sums.collect(recs, "trace", W, n, control=sc.control, stationary=sc.stationary),
                          stdp.bootstrap_weights(n, sc.bootstrap, sc.seed), W)
        fit = stdp.fit_window(win, min(FIT_BOOTSTRAP, sc.bootstrap))
        entry = {**summarise(win, fit, sc.step_ms), "window": window_table(win), "trains": trains,
                 "expected": {"tau_plus_steps": -1.0 / math.log(1.0 - 1.0 / tau_syn),
                              "tau_minus_steps": sc.control_tau_m,
                              "verdict": "STDP-like" if coupled else "no window"}}
        if coupled:
            entry["theory"] = theory_check(win, theory_ratio)
        detail["controls"][name] = entry
        ctrl_windows[name] = win
        key = "negative" if not coupled else ("positive" if r_pre is CONTROL_RATE else f"positive_{trains}_network_rates")
        flat[f"control.{key}.stdp_like"] = float(entry["verdict"] == "STDP-like")
        if coupled:
            flat[f"control.{key}.area_ratio_within_theory"] = float(entry["theory"]["area_ratio_recovered"])
    detail["controls"]["theory_window_positive"] = [
        float(v) * CONTROL_JUMP for v in stdp.theory_window(np.arange(-W, W + 1), 1.0 / tau_syn, g_ctrl)]

    # ---- pairing protocol: spikes from the neurons' own threshold crossings ---------------------
    pairing_curves = {}
    offsets = list(range(-W, W + 1))
    # the protocol times the first spike of each neuron: deterministic neurons only (a stochastic
    # model's windows are its recorded ones above, with the same controls)
    deterministic = {model: c for model, c in models.items() if not getattr(c[0].neuron.kind, "stochastic", False)}
    detail["pairing_skipped"] = {model: f"{c[0].neuron.model} spikes are random draws: no pairing protocol (its "
                                        "windows are the recorded ones, with the same controls)"
                                 for model, c in models.items() if model not in deterministic}
    for model, (mcfg, _) in deterministic.items():
        res = stdp.pairing(offsets, mcfg.neuron, sc.pairing_weight, sc.pairing_pulse, sc.pairing_pulse_steps,
                           sc.pairing_rest)
        detail["pairing"][model] = {"raw": res, "terms": {}}
        for term in stdp.TERMS:
            d, w = stdp.pairing_window(res, term)
            fit = stdp.fit_pairing(d, w)
            detail["pairing"][model]["terms"][term] = {"dt_steps": d.tolist(), "dw": w.tolist(), "fit_steps": fit}
            if term != "applied":
                pairing_curves[f"{model} (g {mcfg.neuron.leak:g}), {term} term"] = (d, w)

    # ---- the trained rule first: its pairing window under every pulse of the sweep -------------
    detail["pairing_sweep"] = {}
    for model, (mcfg, _) in deterministic.items():
        rows = []
        for pulse, steps in zip(sc.pairing_sweep_pulses, sc.pairing_sweep_steps):
            res = stdp.pairing(offsets, mcfg.neuron, sc.pairing_weight, pulse, steps, sc.pairing_rest)
            row = {"pulse": pulse, "pulse_steps": steps, "default": (pulse, steps) == (sc.pairing_pulse,
                                                                                       sc.pairing_pulse_steps)}
            for term in stdp.TERMS:
                d, w = stdp.pairing_window(res, term)
                row[term] = {"pattern": stdp.sign_pattern(d, w, W), "sign_changes": stdp.sign_changes(d, w),
                             "pairs": int(len(d))}
            rows.append(row)
        trained = "applied" if mcfg.pre_factor == "spike" else "trace"
        patterns = {r[trained]["pattern"] for r in rows}
        detail["pairing_sweep"][model] = {"trained_term": trained, "rows": rows,
                                          "pattern_depends_on_protocol": len(patterns) > 1}
        flat[f"{model}.pairing_sweep.patterns"] = float(len(patterns))

    flat = {k: v for k, v in flat.items() if math.isfinite(v)}
    return StdpResult(detail, flat, figure_rows, ctrl_windows, pairing_curves, csv_windows)


def write(res: StdpResult, sc: StdpCfg, root: Path) -> list[Path]:
    """Write ``res`` where ``sc.out`` says (under ``root``); returns the files to log."""
    detail, flat, figure_rows, ctrl_windows, pairing_curves, csv_windows = (
        res.detail, res.flat, res.figure_rows, res.controls, res.pairing_curves, res.windows)
    write_json(_at(root, sc.out.detail), detail)
    write_json(_at(root, sc.out.metrics), flat)
    window_dir = _at(root, sc.out.window_dir)
    window_dir.mkdir(parents=True, exist_ok=True)
    for name, win in csv_windows.items():
        def write_csv(tmp, win=win):
            with open(tmp, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["dt_steps", "dt_ms", "mean_dw", "ci_low", "ci_high", "control_mean", "pairs"])
                for i, d in enumerate(win["dt"]):
                    w.writerow([int(d), float(d) * sc.step_ms, win["mean"][i], win["lo"][i], win["hi"][i],
                                win["control_mean"][i], int(win["pairs"][i])])

        atomic_write(window_dir / f"{stdp.slug(name)}.csv", write_csv)
    atomic_write(_at(root, sc.out.figure_png),
                 lambda p: stdp.stdp_figure(figure_rows, ctrl_windows, pairing_curves, sc.step_ms, p))
    return [_at(root, p) for p in (sc.out.metrics, sc.out.detail, sc.out.figure_png)]


