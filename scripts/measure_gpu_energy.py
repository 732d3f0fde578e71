"""Measure the GPU's energy per inference and per training example of the rate-based EP network
(claim C4, beyond the paper's spec-sheet estimate) and write a ``gpu=measured_<card>`` preset.

    python scripts/measure_gpu_energy.py                 # paper sizes, batch 20, T/K of EqSpike
    python scripts/measure_gpu_energy.py --batch 1 --seconds 20

Method: NVML board power (nvidia-ml-py) sampled every 10 ms in a thread; idle power measured for
``--idle-seconds`` before the load, then inference (free phases) and training (free + nudged
phases + update) are run for ``--seconds`` each with CuPy, synchronised; the energy above idle is
the integral of (power - idle) over the run, divided by the examples processed. Needs a CUDA GPU
with CuPy (the gpu extra: LOCK=requirements-gpu.lock bash scripts/setup.sh); without one it exits with a message and status 2.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[784, 512, 10])
    ap.add_argument("--T", type=int, default=40)
    ap.add_argument("--K", type=int, default=20)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--idle-seconds", type=float, default=5.0)
    ap.add_argument("--out-dir", default=str(ROOT / "conf" / "energy" / "gpu"))
    args = ap.parse_args()

    from pipeline.backend import BackendError, get_xp

    try:
        xp = get_xp("gpu")
        import pynvml
    except (BackendError, ImportError) as exc:
        print(f"measure_gpu_energy: needs a CUDA GPU with CuPy and nvidia-ml-py: {exc}", file=sys.stderr)
        return 2
    from pipeline import ep

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(xp.cuda.Device().id)
    card = pynvml.nvmlDeviceGetName(handle)
    card = card.decode() if isinstance(card, bytes) else card
    slug = "".join(c if c.isalnum() else "_" for c in card.lower()).strip("_")

    def sync():
        xp.cuda.Stream.null.synchronize()

    rng = np.random.default_rng(0)
    x = xp.asarray(rng.random((args.batch, args.sizes[0]), dtype=np.float32))
    target = ep.centred_target(xp.asarray(rng.integers(0, args.sizes[-1], args.batch)), args.sizes[-1], xp,
                               np.float32)
    params = ep.init_params(args.sizes, 0, xp)
    dyn = ep.Dynamics(T=args.T, K=args.K, beta=0.2, nudge="symmetric")

    def infer():
        ep.free_phase(params, x, dyn)
        return args.batch

    def train():
        ep.train_batch(params, x, target, dyn, [1e-4] * (len(args.sizes) - 1))
        return args.batch

    infer(), train(), sync()  # warm-up: kernels compiled, memory pools filled
    results = {}
    idle: list = []
    stop = threading.Event()
    thread = threading.Thread(target=sample_power, args=(handle, stop, idle))
    thread.start()
    time.sleep(args.idle_seconds)
    stop.set()
    thread.join()
    idle_w = float(np.median([p for _, p in idle]))
    for name, work in (("inference", infer), ("training", train)):
        samples: list = []
        stop = threading.Event()
        thread = threading.Thread(target=sample_power, args=(handle, stop, samples))
        thread.start()
        n = run_for(args.seconds, work, sync)
        stop.set()
        thread.join()
        results[name] = energy_above(samples, idle_w) / n
        print(f"{name}: {n} examples, {results[name]:.3e} J per example above idle ({idle_w:.1f} W idle)")
    how = (f"measured with scripts/measure_gpu_energy.py: NVML board power every 10 ms minus idle "
           f"({idle_w:.1f} W), CuPy, sizes {args.sizes}, T={args.T}, K={args.K}, batch {args.batch}, "
           f"symmetric nudging, float32, {time.strftime('%Y-%m-%d')}")
    text = (f"name: measured_{slug}\n"
            f"description: {card}, measured energy above idle, batch {args.batch}\n"
            f"inference_j: {{value: {results['inference']:.6e}, source: \"{how}\"}}\n"
            f"training_example_j: {{value: {results['training']:.6e}, source: \"{how}\"}}\n")
    out = Path(args.out_dir) / f"measured_{slug}.yaml"
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
