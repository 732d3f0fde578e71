"""Benchmark: training throughput of rate-based EP and of EqSpike vs this machine's GEMM speed.

    python benchmarks/bench.py                      # 6000 examples of each paper config
    python benchmarks/bench.py --examples 60000     # a full epoch
    python benchmarks/bench.py --section eqspike    # only EqSpike
    OMP_NUM_THREADS=1 python benchmarks/bench.py    # pin BLAS to one thread

Rate-based EP section: prints examples/s, seconds per 60k-example epoch, the FLOP count of the model (dense
multiply-adds of the dynamics and the update), the achieved GFLOP/s and its ratio to the
float32 GEMM GFLOP/s measured in the same run (a large square product and the model's own
input-layer product), and a per-part time profile. Uses real MNIST when fetched, else random
pixels (the cost does not depend on the values). Run it on an idle machine.

EqSpike section: seconds per epoch of the EqSpike paper config, synaptic events per second,
the ratio to a rate-based epoch at the same T, K and batch, and three formulations of the input
layer (the cost centre) timed on the same batches, checked to give the same weights:
  batched  (default)  one product for the input current of every step, one for the rule over
                      the stacked steps, silent pixels left out;
  per-step dense      the input current and the rule computed step by step;
  event-driven        input current from the spikes only (sparse CSR rows of spikes times W1,
                      then the trace filter), i.e. cost proportional to the input spikes.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import ep, spiking
from pipeline.backend import get_xp


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


def bench_ep(args, xp, x_host, y_host, peak: float, own: float) -> None:
    n = len(y_host) - len(y_host) % args.batch
    x = xp.asarray(x_host[:n])
    t = ep.centred_target(xp.asarray(y_host[:n]), args.sizes[-1], xp, np.float32)
    dyn = ep.Dynamics(T=args.T, K=args.K, beta=0.2, nudge=args.nudge)
    lr = [0.08, 0.04, 0.02, 0.01][: len(args.sizes) - 1]
    params = ep.init_params(args.sizes, seed=0, xp=xp)
    print(f"\n== rate-based EP: {n} examples, sizes {args.sizes}, T={args.T} K={args.K} "
          f"batch={args.batch} nudge={args.nudge}")
    rate = ep_rate(params, x, t, dyn, lr, args.batch, xp)
    phases = 2 if args.nudge == "symmetric" else 1
    flops = flops_per_example(args.sizes, args.T, args.K, phases)
    achieved = flops * rate / 1e9
    print(f"training: {rate:,.0f} examples/s, {60000 / rate:.2f} s per 60k-example epoch")
    print(f"model: {flops / 1e6:.2f} MFLOP per example (matrix products), achieved {achieved:.1f} GFLOP/s = "
          f"{100 * achieved / peak:.0f} % of the 1024^3 GEMM, {100 * achieved / own:.0f} % of the model-shape GEMM")
    steps = args.T + phases * args.K
    print(f"time steps per batch: {steps}; {1e6 * args.batch / rate / steps:.1f} us per step "
          "(all layers, incl. the per-batch products spread over the steps)")
    if args.nudge == "symmetric":
        parts = profile(params, x[: 200 * args.batch], t[: 200 * args.batch], dyn, lr, xp, 200)
        total = sum(parts.values())
        print("profile per batch: " + ", ".join(f"{k} {1e3 * v:.3f} ms ({100 * v / total:.0f} %)"
                                                 for k, v in parts.items()))


def ep_rate(params, x, t, dyn, lr, batch: int, xp) -> float:
    """Training examples per second of rate-based EP (after one warm-up batch)."""
    sync = (lambda: xp.cuda.Stream.null.synchronize()) if xp.__name__ == "cupy" else (lambda: None)
    warm = copy.deepcopy(params) if xp is np else params
    ep.train_batch(warm, x[:batch], t[:batch], dyn, lr)
    sync()
    t0 = time.perf_counter()
    for start in range(0, x.shape[0], batch):
        ep.train_batch(params, x[start:start + batch], t[start:start + batch], dyn, lr)
    sync()
    return x.shape[0] / (time.perf_counter() - t0)


def input_layer_formulations(params, x, dyn, xp, batches: int, batch: int) -> dict:
    """Seconds per batch of the input layer's work (current of every step + the rule's product
    over the K nudged steps) in three formulations; checks they agree."""
    import scipy.sparse

    rng = np.random.default_rng(0)
    steps, K = dyn.T + dyn.K, dyn.K
    W0, b0 = params.W[0], params.b[0]
    n_hidden = W0.shape[1]
    alpha = 1.0 / dyn.neuron.tau_syn_steps
    lag = np.arange(steps)[:, None] - np.arange(steps)[None, :]
    filt = np.where(lag >= 0, alpha * (1.0 - alpha) ** np.maximum(lag, 0), 0.0).astype(np.float32)
    times = dict.fromkeys(["batched (default)", "per-step dense", "event-driven (sparse)"], 0.0)
    for i in range(batches):
        xb = x[i * batch:(i + 1) * batch]
        post = rng.standard_normal((K, batch, n_hidden)).astype(np.float32)  # stands for ds(+) - ds(-)

        t0 = time.perf_counter()
        active = spiking.active_inputs(xb)
        S, R = spiking.encode_input(xb[:, active], steps, dyn.neuron)
        drive_a = spiking.input_drive(params, R, active)
        rule_a = np.zeros_like(W0)
        rule_a[active] = S[dyn.T:].reshape(K * batch, -1).T @ post.reshape(K * batch, -1)
        t1 = time.perf_counter()
        S_full, R_full = spiking.encode_input(xb, steps, dyn.neuron)
        drive_b = np.empty_like(drive_a)
        for t in range(steps):
            drive_b[t] = R_full[t] @ W0 + b0
        rule_b = np.zeros_like(W0)
        for k in range(K):
            rule_b += S_full[dyn.T + k].T @ post[k]
        t2 = time.perf_counter()
        S_sparse = scipy.sparse.csr_matrix(S_full.reshape(steps * batch, -1))
        currents = (S_sparse @ W0).reshape(steps, -1)
        drive_c = (filt @ currents).reshape(steps, batch, -1) + b0
        window = scipy.sparse.csr_matrix(S_full[dyn.T:].reshape(K * batch, -1))
        rule_c = np.asarray(window.T @ post.reshape(K * batch, -1))
        t3 = time.perf_counter()
        for k, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
            times[k] += dt / batches
        for d in (drive_b, drive_c):
            np.testing.assert_allclose(d, drive_a, rtol=1e-3, atol=1e-3)
        for r in (rule_b, rule_c):
            np.testing.assert_allclose(r, rule_a, rtol=1e-3, atol=1e-2)
    return times


def bench_eqspike(args, xp, x_host, y_host) -> None:
    B, T, K = args.spike_batch, args.spike_T, args.spike_K
    n = len(y_host) - len(y_host) % B
    x = xp.asarray(x_host[:n])
    y = spiking.onehot(xp.asarray(y_host[:n]), args.sizes[-1], xp, np.float32)
    dyn = spiking.SpikeDynamics(T=T, K=K, beta=0.5, eval_avg_steps=10)
    lr = [0.16, 0.08, 0.04, 0.02][: len(args.sizes) - 1]
    print(f"\n== EqSpike: {n} examples, sizes {args.sizes}, T={T} K={K} batch={B}, sigma-delta, "
          "symmetric nudging")
    params = ep.init_params(args.sizes, seed=0, xp=xp)
    sync = (lambda: xp.cuda.Stream.null.synchronize()) if xp.__name__ == "cupy" else (lambda: None)
    spiking.train_batch(copy.deepcopy(params) if xp is np else params, x[:B], y[:B], dyn, lr)
    counts = spiking.Counts()
    sync()
    t0 = time.perf_counter()
    for start in range(0, n, B):
        spiking.train_batch(params, x[start:start + B], y[start:start + B], dyn, lr, counts=counts)
    sync()
    elapsed = time.perf_counter() - t0
    rate = n / elapsed
    events = sum(v for k, v in counts.host().items() if k.endswith("synaptic_events"))
    print(f"training: {rate:,.0f} examples/s, {60000 / rate:.1f} s per 60k-example epoch, "
          f"{events / elapsed / 1e6:,.0f} M synaptic events/s ({events / n / 1e6:.2f} M per example)")
    rate_params = ep.init_params(args.sizes, seed=0, xp=xp)
    t_rate = ep.centred_target(xp.asarray(y_host[:n]), args.sizes[-1], xp, np.float32)
    ep_r = ep_rate(rate_params, x, t_rate, ep.Dynamics(T=T, K=K, beta=0.2, nudge="symmetric"),
                   [0.08, 0.04, 0.02, 0.01][: len(args.sizes) - 1], B, xp)
    print(f"rate-based EP at the same T={T}, K={K}, batch={B}: {60000 / ep_r:.1f} s per epoch; "
          f"EqSpike / rate-based = {ep_r / rate:.1f}x")
    if xp is np:
        batches = min(50, n // B)
        times = input_layer_formulations(params, x_host[: batches * B], dyn, xp, batches, B)
        best = min(times, key=times.get)
        print("input layer per batch (current of every step + rule over the nudged steps): "
              + ", ".join(f"{k} {1e3 * v:.2f} ms" for k, v in times.items()) + f"; fastest: {best}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=6000)
    ap.add_argument("--section", default="all", choices=["all", "ep", "eqspike"])
    ap.add_argument("--device", default="cpu", choices=["cpu", "gpu", "auto"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[784, 512, 10])
    ap.add_argument("--T", type=int, default=30)
    ap.add_argument("--K", type=int, default=10)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--nudge", default="symmetric", choices=["symmetric", "one_sided", "random_sign"])
    ap.add_argument("--spike-T", type=int, default=40)
    ap.add_argument("--spike-K", type=int, default=20)
    ap.add_argument("--spike-batch", type=int, default=20)
    args = ap.parse_args()

    xp = get_xp(args.device)
    x_host, y_host, source = load_data(args.examples, args.sizes[0])
    print(f"device {args.device} ({xp.__name__}), data: {source}")
    peak = gemm_gflops(xp, 1024, 1024, 1024)
    own = gemm_gflops(xp, args.batch, args.sizes[0], args.sizes[1])
    print(f"GEMM float32: {peak:.1f} GFLOP/s (1024^3), {own:.1f} GFLOP/s "
          f"({args.batch}x{args.sizes[0]} @ {args.sizes[0]}x{args.sizes[1]}, the model's largest product)")
    if args.section in ("all", "ep"):
        bench_ep(args, xp, x_host, y_host, peak, own)
    if args.section in ("all", "eqspike"):
        bench_eqspike(args, xp, x_host, y_host)


if __name__ == "__main__":
    main()
