"""Benchmark: training speed of rate-based EP and EqSpike through the training stages' own code
path, beside this machine's limits measured in the same run.

    python benchmarks/bench.py                        # 6000 training examples per model
    python benchmarks/bench.py --examples 60000       # a full epoch
    python benchmarks/bench.py --section eqspike --json out.json
    python benchmarks/bench.py --device gpu           # CuPy (array engine)

What is timed is ``pipeline.train.fit`` for one epoch on the first ``--examples`` training
examples and ``--test`` test examples, with the model built from ``params.yaml`` exactly as the
stage builds it (``stages.train_ep.dynamics``, ``stages.train_eqspike.dynamics``): event counters,
weight averaging, the BLAS thread limit and the evaluation of both weight sets included. Seconds
per epoch are the training part scaled to 60,000 examples; the evaluation is reported apart.

Each model runs with its engines in the same process, so their ratio is measured on the same
machine state: ``compiled`` (the default on a CPU) and ``array`` (NumPy or CuPy array
operations, numerically the previous implementation); EqSpike also with ``input_layer=dense``.

Machine limits, measured here: the float32 GEMM rate (1024^3 product) and the memory bandwidth
(a 256 MB array triad). Reported against them: the achieved rate of dense products (FLOP/s) and
of the event-driven input layer (bytes of W_1 rows addressed by the input spikes per second, 4 per input synaptic event; the
complemented pixels read fewer, see ``pipeline/spike_kernels.py``). Run it on an idle machine:
another process on one of the two cores slows every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import ep, events, spiking  # noqa: E402
from pipeline.backend import get_xp  # noqa: E402
from pipeline.data import Dataset, load  # noqa: E402
from pipeline.network import copy_params, init_params  # noqa: E402
from pipeline.train import fit  # noqa: E402
from stages import train_ep, train_eqspike  # noqa: E402
from stages.common import REPO, load_config  # noqa: E402
from stages.training import schedule  # noqa: E402

EPOCH = 60_000


def sync(xp) -> None:
    if xp.__name__ == "cupy":
        xp.cuda.Stream.null.synchronize()


def gemm_gflops(xp, n: int = 1024, seconds: float = 1.0) -> float:
    a = xp.asarray(np.random.default_rng(0).random((n, n), dtype=np.float32))
    b = xp.asarray(np.random.default_rng(1).random((n, n), dtype=np.float32))
    a @ b
    sync(xp)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    sync(xp)
    return 2.0 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def bandwidth_gbs(xp, mbytes: int = 256, seconds: float = 1.0) -> float:
    """Triad c = a + b over arrays of ``mbytes``: 3 x mbytes moved per pass."""
    n = mbytes * 2**20 // 4
    a, b, c = (xp.ones(n, dtype=np.float32) for _ in range(3))
    xp.add(a, b, out=c)
    sync(xp)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        xp.add(a, b, out=c)
        reps += 1
    sync(xp)
    return 3 * n * 4 * reps / (time.perf_counter() - t0) / 1e9


def subset(data: Dataset, n_train: int, n_test: int) -> Dataset:
    return replace(data, x_train=data.x_train[:n_train], y_train=data.y_train[:n_train],
                   x_test=data.x_test[:n_test], y_test=data.y_test[:n_test])


def time_fit(model, model_cfg, data: Dataset, seed: int, dtype: str) -> dict:
    """One epoch of ``fit`` as the stage runs it (one batch of warm-up first: compilation)."""
    xp = model.xp
    sched = replace(schedule(model_cfg), epochs=1)
    params = init_params(model_cfg.sizes, seed, xp, dtype)
    ema = copy_params(params) if sched.ema_decay > 0 else None
    fit(model, copy_params(params), subset(data, sched.batch_size, 10), sched, seed, progress=False,
        ema=copy_params(params) if ema is not None else None)
    model.epoch_extras()
    sync(xp)
    record = fit(model, params, data, sched, seed, ema=ema, progress=False)[0]
    sync(xp)
    n = len(data.y_train)
    return {"train_seconds": record["seconds"], "eval_seconds": record["eval_seconds"],
            "seconds_per_epoch": record["seconds"] * EPOCH / n, "examples_per_s": n / record["seconds"],
            "record": record}


def bench_ep(cfg, data, xp, engines) -> dict:
    out = {}
    for engine in engines:
        c = replace(cfg.ep, engine=engine)
        model = ep.EPModel(train_ep.dynamics(c), xp, c.eval_batch_size)
        r = time_fit(model, c, data, cfg.runtime.seed, cfg.runtime.dtype)
        r.pop("record")
        out[engine] = r
    return out


def bench_eqspike(cfg, data, xp, variants, peak: float, bw: float) -> dict:
    out = {}
    n1 = cfg.eqspike.sizes[1]
    for engine, input_layer in variants:
        c = replace(cfg.eqspike, engine=engine, input_layer=input_layer)
        model = spiking.EqSpikeModel(train_eqspike.dynamics(c, cfg.neuron), xp, cfg.runtime.seed, c.eval_batch_size)
        r = time_fit(model, c, data, cfg.runtime.seed, cfg.runtime.dtype)
        train = events.totals(events.from_json(r["record"]["events"]["train"]), events.PHASES)
        per_layer = events.by_layer(events.from_json(r["record"]["events"]["train"]), events.PHASES, "synaptic_events")
        n = len(data.y_train)
        r["synaptic_events_per_example"] = train["synaptic_events"]
        r["input_share_of_synaptic_events"] = per_layer.get("input", 0.0) / max(train["synaptic_events"], 1.0)
        r["synaptic_events_per_s"] = train["synaptic_events"] * n / r["train_seconds"]
        # the input layer's work, written as dense products (the dense option computes exactly these)
        T, K = c.T, c.K
        dense_flop = 2.0 * n * (T + K) * c.sizes[0] * n1 + 2.0 * n * K * c.sizes[0] * n1
        r["dense_input_gflop_per_s_equivalent"] = dense_flop / r["train_seconds"] / 1e9
        # 4 bytes of W_1 per input synaptic event (a spike addresses its row of n_1 weights)
        r["input_spike_rows_gb_per_s"] = per_layer.get("input", 0.0) * 4 * n / r["train_seconds"] / 1e9
        r.pop("record")
        out[f"{engine}/{input_layer}"] = r
    for r in out.values():
        r["fraction_of_gemm_peak_dense_equivalent"] = r["dense_input_gflop_per_s_equivalent"] / peak
        r["fraction_of_memory_bandwidth_spike_rows"] = r["input_spike_rows_gb_per_s"] / bw
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=6000, help="training examples timed per model")
    ap.add_argument("--test", type=int, default=1000, help="test examples evaluated after the epoch")
    ap.add_argument("--section", choices=("all", "ep", "eqspike"), default="all")
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. eqspike.T=40")
    args = ap.parse_args(argv)
    _, cfg = load_config(args.overrides)
    xp = get_xp(args.device)
    data = subset(load(cfg.data, REPO), args.examples, args.test)
    figures = {"device": args.device, "examples": args.examples, "test_examples": args.test,
               "gemm_gflops": gemm_gflops(xp), "memory_gb_per_s": bandwidth_gbs(xp)}
    print(f"machine: float32 GEMM {figures['gemm_gflops']:.0f} GFLOP/s, memory {figures['memory_gb_per_s']:.1f} GB/s")
    gpu = args.device == "gpu"
    if args.section in ("all", "ep"):
        figures["ep"] = bench_ep(cfg, data, xp, ["array"] if gpu else ["compiled", "array"])
        for engine, r in figures["ep"].items():
            print(f"rate EP {engine:9s}  {r['seconds_per_epoch']:6.2f} s per epoch ({r['examples_per_s']:,.0f} "
                  f"examples/s), evaluation of {args.test}: {r['eval_seconds']:.2f} s")
    if args.section in ("all", "eqspike"):
        variants = [("array", "event")] if gpu else [("compiled", "event"), ("compiled", "dense"), ("array", "event")]
        figures["eqspike"] = bench_eqspike(cfg, data, xp, variants, figures["gemm_gflops"], figures["memory_gb_per_s"])
        for name, r in figures["eqspike"].items():
            print(f"EqSpike {name:17s} {r['seconds_per_epoch']:6.2f} s per epoch, evaluation of {args.test} "
                  f"(twice: average and raw weights): {r['eval_seconds']:.2f} s, "
                  f"{r['synaptic_events_per_s'] / 1e9:.2f} G synaptic events/s "
                  f"({r['synaptic_events_per_example'] / 1e6:.2f} M per example, "
                  f"{100 * r['input_share_of_synaptic_events']:.0f} % from the input layer); input layer as dense "
                  f"products: {r['dense_input_gflop_per_s_equivalent']:.1f} GFLOP/s equivalent = "
                  f"{100 * r['fraction_of_gemm_peak_dense_equivalent']:.0f} % of GEMM peak; input spike rows "
                  f"{r['input_spike_rows_gb_per_s']:.1f} GB/s = {100 * r['fraction_of_memory_bandwidth_spike_rows']:.0f} "
                  "% of memory bandwidth")
        if "array/event" in figures["eqspike"] and "compiled/event" in figures["eqspike"]:
            e = figures["eqspike"]
            print(f"EqSpike compiled/event vs array: {e['array/event']['seconds_per_epoch'] / e['compiled/event']['seconds_per_epoch']:.1f}x faster")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
