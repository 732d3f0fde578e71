"""Benchmark: training speed of rate-based EP and EqSpike through the training stages' own code
path, beside this machine's limits measured in the same run.

    python benchmarks/bench.py                        # 6000 training examples per model
    python benchmarks/bench.py --examples 60000       # a full epoch
    python benchmarks/bench.py --section eqspike --json out.json
    python benchmarks/bench.py --device gpu           # CuPy (array engine)
    python benchmarks/bench.py --section depth        # two hidden layers (depth/params.yaml) beside one

What is timed is ``pipeline.models.train.fit`` for one epoch on the first ``--examples`` training
examples and ``--test`` test examples, with the model built from ``params.yaml`` exactly as the
stage builds it (the parsed ``ep`` and ``eqspike`` configs are the models' own types): event counters,
weight averaging, the BLAS thread limit and the evaluation of both weight sets included. Seconds
per epoch are the training part scaled to 60,000 examples; the evaluation is reported apart.

Each model runs with its engines in the same process, so their ratio is measured on the same
machine state: ``compiled`` (the default on a CPU) and ``array`` (NumPy or CuPy array
operations, numerically the previous implementation); EqSpike also with ``input_layer=dense``.

Machine limits, measured here: the float32 GEMM rate (1024^3 product), the memory bandwidth (a
256 MB array triad) and the L2-resident bandwidth (the same triad on 256 KB arrays; W_1 is 1.6 MB
and stays in each core's L2). Reported against them: the dense input layer's FLOP/s against the
GEMM peak; the event-driven input layer's bytes of W_1 rows per second (row operations counted
from the data as the kernel does them) against the L2 triad; synaptic events per second against
the multiply-add peak (half the GEMM FLOP/s), as if each event were one add. Run it on an idle machine:
another process on one of the two cores slows every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.core import events
from pipeline.core.backend import get_xp  # noqa: E402
from pipeline.core.network import copy_params, init_params  # noqa: E402
from pipeline.data.idx import Dataset, load  # noqa: E402
from pipeline.models import ep, eqspike
from pipeline.models.train import fit, test  # noqa: E402
from runner.config import PARAMS_ENV, REPO, load_config  # noqa: E402

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


def bandwidth_gbs(xp, mbytes: int = 256, seconds: float = 1.0, nbytes: int | None = None) -> float:
    """Triad c = a + b over arrays of ``mbytes`` (or ``nbytes``): 3 arrays moved per pass."""
    n = (nbytes if nbytes is not None else mbytes * 2**20) // 4
    a, b, c = (xp.ones(n, dtype=np.float32) for _ in range(3))
    xp.add(a, b, out=c)
    sync(xp)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        xp.add(a, b, out=c)
        reps += 1
    sync(xp)
    return 3 * n * 4 * reps / (time.perf_counter() - t0) / 1e9


def cache_bandwidth_gbs(xp, kbytes: int = 256, seconds: float = 1.0) -> float:
    """The same triad on arrays of ``kbytes`` each, which stay in the L2 cache (where the event-driven
    input layer finds W_1: 784 x 512 x 4 bytes = 1.6 MB per core)."""
    return bandwidth_gbs(xp, mbytes=0, seconds=seconds, nbytes=kbytes * 1024)


def input_row_operations(x: np.ndarray, T: int, K: int, theta: float) -> float:
    """Row operations of the event-driven input layer per example and training step schedule
    (free T steps, two nudged phases of K steps), as ``pipeline/models/eqspike/compiled_engine.py`` does them:
    a pixel spiking at more than half of the steps is counted by its silent steps, plus its row
    once per batch example in the base current; others by their spikes. Mean over ``x``."""
    q = (x / np.float32(theta)).astype(np.float32)
    k = np.arange(T + K + 1, dtype=np.float32)
    counts = np.floor(k[:, None, None] * q[None])  # (steps + 1, n, pixels)
    spikes = counts[1:] - counts[:-1]
    schedule = np.concatenate([np.arange(T), np.arange(T, T + K), np.arange(T, T + K)])
    comp = (q > 0.5) & (q <= 1.0)
    silent = (spikes[schedule] == 0) & (q > 0)
    ops = np.where(comp[None], silent, spikes[schedule]).sum(axis=(0, 2)) + comp.sum(axis=1)
    return float(ops.mean())


def subset(data: Dataset, n_train: int, n_test: int) -> Dataset:
    return replace(data, x_train=data.x_train[:n_train], y_train=data.y_train[:n_train],
                   x_test=data.x_test[:n_test], y_test=data.y_test[:n_test])


def time_fit(model, model_cfg, data: Dataset, seed: int, dtype: str, ema_decay: float) -> dict:
    """One epoch of ``fit`` and the test-set evaluation as the stage runs them (one batch of
    warm-up first: compilation)."""
    xp = model.xp
    sched = replace(model_cfg, epochs=1)
    params = init_params(model_cfg.sizes, seed, xp, dtype)
    ema = copy_params(params) if ema_decay > 0 else None
    fit(model, copy_params(params), subset(data, sched.batch_size, 10), sched, seed, progress=False,
        ema=copy_params(params) if ema is not None else None, ema_decay=ema_decay)
    model.epoch_extras()
    sync(xp)
    record = fit(model, params, data, sched, seed, ema=ema, ema_decay=ema_decay, progress=False)[0]
    sync(xp)
    t0 = time.perf_counter()
    test(model, params, ema, data)
    sync(xp)
    record["eval_seconds"] = time.perf_counter() - t0
    n = len(data.y_train)
    return {"train_seconds": record["seconds"], "eval_seconds": record["eval_seconds"],
            "seconds_per_epoch": record["seconds"] * EPOCH / n, "examples_per_s": n / record["seconds"],
            "record": record}


def bench_ep(cfg, data, xp, engines) -> dict:
    out = {}
    for engine in engines:
        c = replace(cfg.ep, engine=engine)
        model = ep.EPModel(c, xp, c.eval_batch_size)
        r = time_fit(model, c, data, cfg.runtime.seed, cfg.runtime.dtype, cfg.train.ema_decay)
        r.pop("record")
        out[engine] = r
    return out


def bench_eqspike(cfg, data, xp, variants, peak: float, l2: float) -> dict:
    out = {}
    n1 = cfg.eqspike.sizes[1]
    for engine, input_layer in variants:
        c = replace(cfg.eqspike, engine=engine, input_layer=input_layer)
        model = eqspike.EqSpikeModel(c, xp, cfg.runtime.seed, c.eval_batch_size)
        r = time_fit(model, c, data, cfg.runtime.seed, cfg.runtime.dtype, cfg.train.ema_decay)
        train = events.totals(events.from_json(r["record"]["events"]["train"]), events.PHASES)
        per_layer = events.by_layer(events.from_json(r["record"]["events"]["train"]), events.PHASES, "synaptic_events")
        n = len(data.y_train)
        r["synaptic_events_per_example"] = train["synaptic_events"]
        r["input_share_of_synaptic_events"] = per_layer.get("input", 0.0) / max(train["synaptic_events"], 1.0)
        r["synaptic_events_per_s"] = train["synaptic_events"] * n / r["train_seconds"]
        # the input layer's work written as dense products (what input_layer=dense computes)
        dense_flop = 2.0 * n * (c.T + c.K) * c.sizes[0] * n1 + 2.0 * n * c.K * c.sizes[0] * n1
        r["dense_input_gflop_per_s"] = dense_flop / r["train_seconds"] / 1e9
        # the event-driven input layer's work: rows of W_1 added or subtracted (current only)
        rows = input_row_operations(data.x_train[:200], c.T, c.K, c.neuron.threshold) * n
        r["input_row_operations_per_example"] = rows / n
        r["input_row_gb_per_s"] = rows * n1 * 4 / r["train_seconds"] / 1e9
        r.pop("record")
        out[f"{engine}/{input_layer}"] = r
    for r in out.values():
        r["fraction_of_gemm_peak_dense"] = r["dense_input_gflop_per_s"] / peak
        r["fraction_of_multiply_add_peak_synaptic_events"] = r["synaptic_events_per_s"] / (peak / 2 * 1e9)
        r["fraction_of_cache_bandwidth_input_rows"] = r["input_row_gb_per_s"] / l2
    return out


def bench_depth(cfg, overrides, data, xp, machine) -> dict:
    """The compiled engines (EqSpike with its event-driven input layer, rate EP; rate EP's array
    engine beside it) on the two-hidden-layer config of depth/ beside the one-hidden-layer config,
    in the same process."""
    os.environ[PARAMS_ENV] = "depth/params.yaml"
    try:
        _, deep = load_config(overrides)
    finally:
        os.environ.pop(PARAMS_ENV)
    out = {}
    for label, c in (("one hidden layer", cfg), ("two hidden layers", deep)):
        eq = bench_eqspike(c, data, xp, [("compiled", "event")], machine["gemm_gflops"], machine["cache_gb_per_s"])
        out[label] = {"sizes": c.eqspike.sizes, "eqspike": eq["compiled/event"],
                      "ep_sizes": c.ep.sizes, **{f"ep_{k}": v for k, v in bench_ep(c, data, xp, ["compiled", "array"]).items()},
                      "eqspike_T_K": [c.eqspike.T, c.eqspike.K], "ep_T_K": [c.ep.T, c.ep.K]}
        r = out[label]
        print(f"{label}: EqSpike {'-'.join(map(str, c.eqspike.sizes))} (T {c.eqspike.T}, K {c.eqspike.K}) "
              f"{r['eqspike']['seconds_per_epoch']:.1f} s per epoch, {100 * r['eqspike']['input_share_of_synaptic_events']:.0f} % "
              f"of synaptic events from the input layer; rate EP (T {c.ep.T}, K {c.ep.K}) {r['ep_compiled']['seconds_per_epoch']:.2f} s per epoch "
              f"compiled, {r['ep_array']['seconds_per_epoch']:.2f} s array (batched products)")
    one, two = out["one hidden layer"], out["two hidden layers"]
    print(f"two hidden layers / one: EqSpike {two['eqspike']['seconds_per_epoch'] / one['eqspike']['seconds_per_epoch']:.2f}x, "
          f"rate EP {two['ep_compiled']['seconds_per_epoch'] / one['ep_compiled']['seconds_per_epoch']:.2f}x per epoch (compiled)")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=6000, help="training examples timed per model")
    ap.add_argument("--test", type=int, default=1000, help="test examples evaluated after the epoch")
    ap.add_argument("--section", choices=("all", "ep", "eqspike", "depth"), default="all",
                    help="depth: the compiled engines on depth/'s two-hidden-layer config beside params.yaml's")
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. eqspike.T=40")
    args = ap.parse_args(argv)
    _, cfg = load_config(args.overrides)
    xp = get_xp(args.device)
    data = subset(load(cfg.data, REPO), args.examples, args.test)
    figures = {"device": args.device, "examples": args.examples, "test_examples": args.test,
               "gemm_gflops": gemm_gflops(xp), "memory_gb_per_s": bandwidth_gbs(xp),
               "cache_gb_per_s": cache_bandwidth_gbs(xp)}
    print(f"machine: float32 GEMM {figures['gemm_gflops']:.0f} GFLOP/s, memory {figures['memory_gb_per_s']:.1f} GB/s, "
          f"L2-resident triad {figures['cache_gb_per_s']:.0f} GB/s")
    gpu = args.device == "gpu"
    if args.section in ("all", "ep"):
        figures["ep"] = bench_ep(cfg, data, xp, ["array"] if gpu else ["compiled", "array"])
        for engine, r in figures["ep"].items():
            print(f"rate EP {engine:9s}  {r['seconds_per_epoch']:6.2f} s per epoch ({r['examples_per_s']:,.0f} "
                  f"examples/s), evaluation of {args.test}: {r['eval_seconds']:.2f} s")
    if args.section in ("all", "eqspike"):
        variants = [("array", "event")] if gpu else [("compiled", "event"), ("compiled", "dense"), ("array", "event")]
        figures["eqspike"] = bench_eqspike(cfg, data, xp, variants, figures["gemm_gflops"], figures["cache_gb_per_s"])
        for name, r in figures["eqspike"].items():
            print(f"EqSpike {name:15s} {r['seconds_per_epoch']:6.2f} s per epoch; evaluation of {args.test} "
                  f"(average and raw weights): {r['eval_seconds']:.2f} s; "
                  f"{r['synaptic_events_per_s'] / 1e9:.1f} G synaptic events/s = "
                  f"{100 * r['fraction_of_multiply_add_peak_synaptic_events']:.0f} % of the multiply-add peak "
                  f"({r['synaptic_events_per_example'] / 1e6:.2f} M per example, "
                  f"{100 * r['input_share_of_synaptic_events']:.0f} % from the input layer)")
            if name == "compiled/dense":
                print(f"    input layer as dense products: {r['dense_input_gflop_per_s']:.0f} GFLOP/s over the "
                      f"training time = {100 * r['fraction_of_gemm_peak_dense']:.0f} % of the GEMM peak")
            elif name == "compiled/event":
                print(f"    event-driven input layer: {r['input_row_operations_per_example']:,.0f} row operations of "
                      f"W_1 per example, {r['input_row_gb_per_s']:.0f} GB/s of rows over the training time = "
                      f"{100 * r['fraction_of_cache_bandwidth_input_rows']:.0f} % of the L2-resident triad")
        if "array/event" in figures["eqspike"] and "compiled/event" in figures["eqspike"]:
            e = figures["eqspike"]
            print(f"EqSpike compiled/event vs array: {e['array/event']['seconds_per_epoch'] / e['compiled/event']['seconds_per_epoch']:.1f}x faster")
    if args.section == "depth":
        figures["depth"] = bench_depth(cfg, args.overrides, data, xp, figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
