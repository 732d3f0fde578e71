"""DVC stage ``stdp``: STDP emergence in the trained EqSpike network (claim C5; the method and
the verdict in pipeline/stdp.py).

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
from pipeline.schema import Config
from stages.common import REPO, Run, SeedPaths, atomic_write, load_params, repo_path, stage_main, write_json
from stages.train_eqspike import dynamics


def worker(cfg: Config, run: Run) -> None:
    sc = cfg.stdp
    xp = get_xp(cfg.runtime.device)
    weights = repo_path(sc.weights) if sc.weights else SeedPaths(cfg.eqspike.out, cfg.runtime.seed).weights
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing: train EqSpike first (dvc repro train_eqspike)")
    params, _ = load_params(weights, xp, cfg.eqspike.sizes)
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

    # ---- windows, fits, shape, verdicts (pipeline/stdp.py) ------------------------------------
    windows, fits, groups = stdp.analyse(recorder_events, sc.max_dt_steps, sc.step_ms)
    leak = sc.pairing_leak if sc.pairing_leak is not None else cfg.neuron.leak
    pair_dts = list(range(-sc.max_dt_steps, sc.max_dt_steps + 1))
    pairing = {
        "input synapse (S_pre ds_post)": (pair_dts, stdp.pairing_window(
            pair_dts, leak, cfg.neuron.tau_syn_steps, sc.pairing_weight, sc.pairing_pulse, input_synapse=True)),
        "hidden synapse (S_pre ds_post + S_post ds_pre)": (pair_dts, stdp.pairing_window(
            pair_dts, leak, cfg.neuron.tau_syn_steps, sc.pairing_weight, sc.pairing_pulse)),
    }

    # ---- outputs ------------------------------------------------------------------------
    detail = {
        "step_ms": sc.step_ms,
        "n_examples": n,
        "groups": groups,
        "bi_poo": {"tau_plus_ms": stdp.BI_POO_TAU_PLUS_MS, "tau_minus_ms": stdp.BI_POO_TAU_MINUS_MS},
        "pairing": {name: {"dt_steps": d, "dw": [float(v) for v in w]} for name, (d, w) in pairing.items()},
    }
    write_json(repo_path(sc.out.detail), detail)
    write_json(repo_path(sc.out.metrics), stdp.flat_metrics(groups))
    window_dir = repo_path(sc.out.window_dir)
    window_dir.mkdir(parents=True, exist_ok=True)
    for name, win in windows.items():
        def write_csv(tmp, win=win):
            with open(tmp, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["dt_steps", "dt_ms", "mean_dw", "std_dw", "sem_dw", "n"])
                for i, d in enumerate(win["dt"]):
                    w.writerow([int(d), float(d) * sc.step_ms, win["mean"][i], win["std"][i], win["sem"][i],
                                int(win["n"][i])])

        atomic_write(window_dir / f"{stdp.slug(name)}.csv", write_csv)
    panels = {mode: ({k.split(", ")[0]: w for k, w in windows.items() if k.endswith(mode)},
                     {k.split(", ")[0]: f for k, f in fits.items() if k.endswith(mode)}) for mode in stdp.MODES}
    atomic_write(repo_path(sc.out.figure_png), lambda p: stdp.stdp_figure(panels, pairing, sc.step_ms, p))
    run.metrics({k: v for k, v in stdp.flat_metrics(groups).items() if np.isfinite(v)})
    for path in (sc.out.metrics, sc.out.detail, sc.out.figure_png):
        run.artifact(repo_path(path))
    for name, m in groups.items():
        print(f"{name}: {m['verdict']}")


main = stage_main("stdp", worker)

if __name__ == "__main__":
    sys.exit(main())
