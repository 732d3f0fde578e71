"""Benchmark: rate-based EP training throughput vs this machine's own GEMM speed.

    python benchmarks/bench_ep.py                   # 6000 examples of the paper config
    python benchmarks/bench_ep.py --examples 60000  # a full epoch
    OMP_NUM_THREADS=1 python benchmarks/bench_ep.py # pin BLAS to one thread

Prints examples/s, seconds per 60k-example epoch, the FLOP count of the model (dense
multiply-adds of the dynamics and the update), the achieved GFLOP/s and its ratio to the
float32 GEMM GFLOP/s measured in the same run (a large square product and the model's own
input-layer product), and a per-part time profile. Uses real MNIST when fetched, else random
pixels (the cost does not depend on the values). Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import ep
from pipeline.backend import get_xp, to_host


def gemm_gflops(xp, m: int, k: int, n: int, seconds: float = 1.0) -> float:
    a = xp.asarray(np.random.default_rng(0).random((m, k), dtype=np.float32))
    b = xp.asarray(np.random.default_rng(1).random((k, n), dtype=np.float32))
    sync = (lambda: xp.cuda.Stream.null.synchronize()) if xp.__name__ == "cupy" else (lambda: None)
    a @ b
    sync()
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    sync()
    return 2.0 * m * k * n * reps / (time.perf_counter() - t0) / 1e9


def flops_per_example(sizes, T: int, K: int, nudged_phases: int) -> float:
    """Dense FLOPs (2 per multiply-add) of one training example, matrix products only."""
    input_drive = 2 * sizes[0] * sizes[1]  # x W_1, once per batch
    inner = sum(2 * 2 * a * b for a, b in zip(sizes[1:-1], sizes[2:]))  # up and down, per step
    steps = T + nudged_phases * K
    update = 2 * sizes[0] * sizes[1] + sum(2 * 2 * a * b for a, b in zip(sizes[1:-1], sizes[2:]))
    return input_drive + steps * inner + update


def load_data(n: int, dim: int):
    try:
        import yaml

        from pipeline.data import load
        from pipeline.schema import DataCfg, parse

        root = Path(__file__).resolve().parents[1]
        raw = yaml.safe_load((root / "params.yaml").read_text())["data"]
        ds = load(parse(DataCfg, raw, "data"), root)
        return ds.x_train[:n], ds.y_train[:n], "MNIST"
    except Exception:
        rng = np.random.default_rng(0)
        return rng.random((n, dim), dtype=np.float32), rng.integers(0, 10, n), "random pixels"


def profile(params, x, t, dyn, lr, xp, batches: int) -> dict:
    """Seconds per batch spent in each part of a training step (dense EP, end of phase)."""
    sync = (lambda: xp.cuda.Stream.null.synchronize()) if xp.__name__ == "cupy" else (lambda: None)
    parts = dict.fromkeys(["offsets (x W1)", "free phase", "nudged phases", "update"], 0.0)

    def timed(part, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        sync()
        parts[part] += (time.perf_counter() - t0) / batches
        return out

    def both_nudged(c, u, tb):
        return (ep.run_phase(params, c, u, dyn.K, dyn, tb, dyn.beta),
                ep.run_phase(params, c, u, dyn.K, dyn, tb, -dyn.beta))

    B = x.shape[0] // batches
    scale = [e / (2 * dyn.beta * B) for e in lr]
    for i in range(batches):
        xb, tb = x[i * B:(i + 1) * B], t[i * B:(i + 1) * B]
        c = timed("offsets (x W1)", ep.offsets, params, xb)
        u = timed("free phase", ep.run_phase, params, c, ep.initial_state(params, B), dyn.T, dyn)
        up, un = timed("nudged phases", both_nudged, c, u, tb)
        timed("update", ep.apply_update, params, xb, [ep.to_rate(v) for v in up],
              [ep.to_rate(v) for v in un], scale)
    return parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=6000)
    ap.add_argument("--device", default="cpu", choices=["cpu", "gpu", "auto"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[784, 512, 10])
    ap.add_argument("--T", type=int, default=30)
    ap.add_argument("--K", type=int, default=10)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--nudge", default="symmetric", choices=["symmetric", "one_sided", "random_sign"])
    args = ap.parse_args()

    xp = get_xp(args.device)
    x_host, y_host, source = load_data(args.examples, args.sizes[0])
    n = len(y_host) - len(y_host) % args.batch
    x = xp.asarray(x_host[:n])
    t = ep.centred_target(xp.asarray(y_host[:n]), args.sizes[-1], xp, np.float32)
    dyn = ep.Dynamics(T=args.T, K=args.K, beta=0.2, nudge=args.nudge)
    lr = [0.08, 0.04, 0.02, 0.01][: len(args.sizes) - 1]
    params = ep.init_params(args.sizes, seed=0, xp=xp)
    sync = (lambda: xp.cuda.Stream.null.synchronize()) if xp.__name__ == "cupy" else (lambda: None)

    print(f"device {args.device} ({xp.__name__}), data: {source}, {n} examples, sizes {args.sizes}, "
          f"T={args.T} K={args.K} batch={args.batch} nudge={args.nudge}")
    peak = gemm_gflops(xp, 1024, 1024, 1024)
    own = gemm_gflops(xp, args.batch, args.sizes[0], args.sizes[1])
    print(f"GEMM float32: {peak:.1f} GFLOP/s (1024^3), {own:.1f} GFLOP/s "
          f"({args.batch}x{args.sizes[0]} @ {args.sizes[0]}x{args.sizes[1]}, the model's largest product)")

    # warm-up, then timed training
    warm = copy.deepcopy(params) if xp is np else params
    ep.train_batch(warm, x[: args.batch], t[: args.batch], dyn, lr)
    sync()
    t0 = time.perf_counter()
    for start in range(0, n, args.batch):
        ep.train_batch(params, x[start:start + args.batch], t[start:start + args.batch], dyn, lr)
    sync()
    elapsed = time.perf_counter() - t0
    rate = n / elapsed
    phases = 2 if args.nudge == "symmetric" else 1
    flops = flops_per_example(args.sizes, args.T, args.K, phases)
    achieved = flops * rate / 1e9
    print(f"training: {rate:,.0f} examples/s, {60000 / rate:.2f} s per 60k-example epoch")
    print(f"model: {flops / 1e6:.2f} MFLOP per example (matrix products), achieved {achieved:.1f} GFLOP/s = "
          f"{100 * achieved / peak:.0f} % of the 1024^3 GEMM, {100 * achieved / own:.0f} % of the model-shape GEMM")
    steps = args.T + phases * args.K
    print(f"time steps per batch: {steps}; {1e6 * elapsed / (n / args.batch) / steps:.1f} us per step "
          "(all layers, incl. the per-batch products spread over the steps)")
    if args.nudge == "symmetric":
        parts = profile(params, x[: 200 * args.batch], t[: 200 * args.batch], dyn, lr, xp, 200)
        total = sum(parts.values())
        print("profile per batch: " + ", ".join(f"{k} {1e3 * v:.3f} ms ({100 * v / total:.0f} %)"
                                                 for k, v in parts.items()))
    _ = to_host(params.W[0][:1, :1])


if __name__ == "__main__":
    main()
