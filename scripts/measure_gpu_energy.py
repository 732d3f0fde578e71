"""Measure a GPU's energy per inference and per training example of the three GPU workloads of
claim C4 (pipeline/analysis/energy.py: ``spiking_sim``, ``rate_ep``, ``mlp_bp``) at batch 1 and at batch B,
and write one measured preset per workload and batch to ``conf/energy/measured/`` (the energy
stage marks those rows "measured").

    python scripts/measure_gpu_energy.py                    # batches 1 and 1000, params.yaml's networks
    python scripts/measure_gpu_energy.py --batches 1 20 --seconds 20

Method: NVML board power (nvidia-ml-py) sampled every 10 ms in a thread; idle power measured for
``--idle-seconds`` first; each workload runs for ``--seconds`` with CuPy, synchronised; the energy
above idle is the integral of (power - idle) over the run, divided by the examples processed.
The networks and schedules are those of params.yaml (EqSpike's for spiking_sim, rate EP's for
rate_ep, bp's for mlp_bp). Needs a CUDA GPU with CuPy (the gpu extra:
LOCK=requirements-gpu.lock bash scripts/setup.sh); without one it exits with a message and status 2.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sample_power(handle, stop: threading.Event, out: list) -> None:
    import pynvml

    while not stop.is_set():
        out.append((time.perf_counter(), pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0))  # mW -> W
        time.sleep(0.01)


def energy_above(samples: list, idle_w: float) -> float:
    """Trapezoid integral of (power - idle), joules."""
    t = np.array([s[0] for s in samples])
    p = np.array([s[1] for s in samples]) - idle_w
    return float(np.sum((p[1:] + p[:-1]) / 2 * np.diff(t))) if len(t) > 1 else 0.0


def run_for(seconds: float, work, sync) -> int:
    """Repeat ``work()`` (returns examples done) for about ``seconds``; returns examples."""
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        done += work()
    sync()
    return done


def preset(card: str, workload: str, batch: int, inference_j: float, training_j: float, how: str) -> dict:
    """A ``conf/energy/measured`` entry (``pipeline.core.schema.MeasuredGpuCfg``)."""
    return {"gpu": card, "kind": "measured", "workload": workload, "batch": batch, "convention": "dynamic",
            "inference_j": {"value": float(inference_j), "source": how},
            "training_j": {"value": float(training_j), "source": how}}


def write_preset(out_dir: Path, slug: str, entry: dict) -> Path:
    from pipeline.core.io import atomic_write

    path = out_dir / f"{slug}_{entry['workload']}_b{entry['batch']}.yaml"
    atomic_write(path, lambda p: p.write_text(yaml.safe_dump(entry, sort_keys=False)))
    return path


def workloads(cfg, xp, batch: int):
    """``{workload: (infer(), train())}``, each returning the examples it processed; the models
    the stages train, with params.yaml's configs (on a GPU, CuPy's array engine)."""
    from pipeline.core.network import init_params
    from pipeline.models import bp, ep, eqspike

    rng = np.random.default_rng(0)
    out = {}
    for name, sizes in (("spiking_sim", cfg.eqspike.sizes), ("rate_ep", cfg.ep.sizes), ("mlp_bp", cfg.bp.sizes)):
        x = xp.asarray(rng.random((batch, sizes[0]), dtype=np.float32))
        labels = xp.asarray(rng.integers(0, sizes[-1], batch))
        params = init_params(sizes, 0, xp)
        lr = [1e-4] * (len(sizes) - 1)
        if name == "spiking_sim":
            model = eqspike.EqSpikeModel(cfg.eqspike, xp, 0, batch)
        elif name == "rate_ep":
            model = ep.EPModel(cfg.ep, xp, batch)
        else:
            model = bp.BPModel(xp, batch)

        def infer(model=model, params=params, x=x, labels=labels):
            model.evaluate(params, x, labels, count=False)
            return batch

        def train(model=model, params=params, x=x, labels=labels, lr=lr):
            model.train_batch(params, x, labels, lr, 1.0)
            return batch

        out[name] = (infer, train)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 1000])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--idle-seconds", type=float, default=5.0)
    ap.add_argument("--out-dir", default=str(ROOT / "conf" / "energy" / "measured"))
    args = ap.parse_args()

    from pipeline.core.backend import BackendError, get_xp
    from runner.config import load_config

    try:
        xp = get_xp("gpu")
        import pynvml
    except (BackendError, ImportError) as exc:
        print(f"measure_gpu_energy: needs a CUDA GPU with CuPy and nvidia-ml-py: {exc}", file=sys.stderr)
        return 2
    _, cfg = load_config([])
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(xp.cuda.Device().id)
    card = pynvml.nvmlDeviceGetName(handle)
    card = card.decode() if isinstance(card, bytes) else card
    slug = "".join(c if c.isalnum() else "_" for c in card.lower()).strip("_")

    def sync():
        xp.cuda.Stream.null.synchronize()

    def measure(work) -> tuple[float, int]:
        samples: list = []
        stop = threading.Event()
        thread = threading.Thread(target=sample_power, args=(handle, stop, samples))
        thread.start()
        n = run_for(args.seconds, work, sync)
        stop.set()
        thread.join()
        return energy_above(samples, idle_w) / n, n

    idle: list = []
    stop = threading.Event()
    thread = threading.Thread(target=sample_power, args=(handle, stop, idle))
    thread.start()
    time.sleep(args.idle_seconds)
    stop.set()
    thread.join()
    idle_w = float(np.median([p for _, p in idle]))
    for batch in args.batches:
        for name, (infer, train) in workloads(cfg, xp, batch).items():
            infer(), train(), sync()  # warm-up: kernels compiled, memory pools filled
            e_inf, n_inf = measure(infer)
            e_tr, n_tr = measure(train)
            how = (f"measured with scripts/measure_gpu_energy.py: NVML board power every 10 ms minus idle "
                   f"({idle_w:.1f} W), CuPy, float32, params.yaml's {name} network, batch {batch}, "
                   f"{args.seconds:g} s per task, {time.strftime('%Y-%m-%d')}")
            path = write_preset(Path(args.out_dir), slug, preset(card, name, batch, e_inf, e_tr, how))
            print(f"{name} batch {batch}: inference {e_inf:.3e} J ({n_inf} examples), training {e_tr:.3e} J "
                  f"({n_tr} examples) per example above idle -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
