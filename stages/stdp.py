"""DVC stage ``stdp``: STDP emergence in the trained EqSpike network (claim C5,
shared/SPEC.md section 4; method in pipeline/stdp.py).

    python -m stages.stdp
    python -m stages.stdp stdp.n_examples=50 stdp.step_ms=2
"""

from __future__ import annotations

import csv
import sys

import numpy as np

from pipeline import spiking, stdp
from pipeline.backend import get_xp
from pipeline.data import load
from pipeline.network import load_weights
from pipeline.schema import Config
from stages.common import REPO, Run, atomic_write, repo_path, stage_main, write_json
from stages.train_eqspike import dynamics

GROUPS = {"input synapses": 0, "hidden synapses": 1}
# the +beta phase alone (what a synapse does during one nudged phase) and the net update
# (+beta minus -beta, over 2 beta: what learning keeps; the spike-noise part cancels)
MODES = ("one nudged phase", "net of both phases")
CONSISTENT_FRACTION = 0.55  # share of updates that must potentiate (dt > 0) / depress (dt < 0)


def worker(cfg: Config, run: Run) -> None:
    sc = cfg.stdp
    xp = get_xp(cfg.runtime.device)
    weights = repo_path(sc.weights or cfg.eqspike.out.weights)
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing: train EqSpike first (dvc repro train_eqspike)")
    params, _ = load_weights(weights, xp)
    data = load(cfg.data, REPO)
    dyn = dynamics(cfg.eqspike, cfg.neuron, engine="array")  # observers need the array engine
    sizes = [params.W[0].shape[0], *(w.shape[1] for w in params.W)]

    # ---- record spike-triggered updates of sampled synapses (no weight change) ------------
    recorder_events = []
    rng = spiking.make_rng(xp, [sc.seed, 3])
    n = min(sc.n_examples, len(data.y_train))
    order = np.random.default_rng(sc.seed).permutation(len(data.y_train))[:n]
    synapses = stdp.sample_synapses(sizes, sc.synapses_per_layer, sc.seed)
    B = cfg.eqspike.batch_size
    for start in range(0, n, B):
        idx = order[start:start + B]
        x = xp.asarray(data.x_train[idx], dtype=params.W[0].dtype)
        y = spiking.onehot(xp.asarray(data.y_train[idx]), sizes[-1], xp, x.dtype)
        rec = stdp.Recorder(synapses, dyn.beta, dyn.nudge == "symmetric")
        spiking.simulate_learning(params, x, y, dyn, rng, rec)
        recorder_events.extend(rec.events(sc.max_dt_steps))
    if not recorder_events:
        raise RuntimeError("no spike-triggered update had a partner spike within stdp.max_dt_steps")

    # ---- windows, fits, shape ---------------------------------------------------------------
    layer = np.array([e["layer"] for e in recorder_events])
    phase = np.array([e["phase"] for e in recorder_events])
    dts = np.array([e["dt"] for e in recorder_events])
    dws = np.array([e["dw"] for e in recorder_events])
    windows, fits, shapes = {}, {}, {}
    modes = {MODES[0]: phase == "nudged+", MODES[1]: np.ones(phase.size, dtype=bool)}
    for mode, in_mode in modes.items():
        for name, lo in GROUPS.items():
            sel = in_mode & ((layer == lo) if lo == 0 else (layer >= lo))
            if not sel.any():
                continue
            key = f"{name}, {mode}"
            windows[key] = stdp.binned_window(dts[sel], dws[sel], sc.max_dt_steps)
            fits[key] = stdp.fit_window(windows[key])
            shapes[key] = stdp.shape_metrics(dts[sel], dws[sel], windows[key])
    leak = sc.pairing_leak if sc.pairing_leak is not None else cfg.neuron.leak
    pair_dts = list(range(-sc.max_dt_steps, sc.max_dt_steps + 1))
    pairing = {
        "input synapse (S_pre ds_post)": (pair_dts, stdp.pairing_window(
            pair_dts, leak, cfg.neuron.tau_syn_steps, sc.pairing_weight, sc.pairing_pulse, input_synapse=True)),
        "hidden synapse (S_pre ds_post + S_post ds_pre)": (pair_dts, stdp.pairing_window(
            pair_dts, leak, cfg.neuron.tau_syn_steps, sc.pairing_weight, sc.pairing_pulse)),
    }

    # ---- outputs ------------------------------------------------------------------------
    def in_ms(fit: dict) -> dict:
        out = dict(fit)
        for key in ("tau_plus", "tau_plus_err", "tau_minus", "tau_minus_err"):
            out[f"{key}_ms"] = fit[f"{key}_steps"] * sc.step_ms
        return out

    metrics = {
        "step_ms": sc.step_ms,
        "n_examples": n,
        "groups": {name: {**in_ms(fits[name]), **shapes[name],
                          "verdict": verdict(fits[name], shapes[name])} for name in windows},
        "bi_poo": {"tau_plus_ms": stdp.BI_POO_TAU_PLUS_MS, "tau_minus_ms": stdp.BI_POO_TAU_MINUS_MS},
        "pairing": {name: {"dt_steps": d, "dw": [float(v) for v in w]} for name, (d, w) in pairing.items()},
    }
    write_json(repo_path(sc.out.metrics), metrics)

    def write_csv(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["group", "dt_steps", "dt_ms", "mean_dw", "std_dw", "sem_dw", "n"])
            for name, win in windows.items():
                for i, d in enumerate(win["dt"]):
                    w.writerow([name, int(d), float(d) * sc.step_ms, win["mean"][i], win["std"][i],
                                win["sem"][i], int(win["n"][i])])

    atomic_write(repo_path(sc.out.window_csv), write_csv)
    panels = {mode: ({k.split(", ")[0]: w for k, w in windows.items() if k.endswith(mode)},
                     {k.split(", ")[0]: f for k, f in fits.items() if k.endswith(mode)}) for mode in MODES}
    atomic_write(repo_path(sc.out.figure_png), lambda p: stdp.stdp_figure(panels, pairing, sc.step_ms, p))
    for name, m in metrics["groups"].items():
        key = name.replace(", ", ".").replace(" ", "_")
        run.metrics({f"{key}.{k}": v for k, v in m.items() if isinstance(v, (int, float)) and np.isfinite(v)})
    for path in (sc.out.metrics, sc.out.window_csv, sc.out.figure_png):
        run.artifact(repo_path(path))
    for name, m in metrics["groups"].items():
        print(f"{name}: {m['verdict']}")


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


main = stage_main("stdp", worker)

if __name__ == "__main__":
    sys.exit(main())
