"""EqSpike as a chip would run it: the ``chip`` config (conf/chip/) and the training of several
networks side by side under its constraints (``train_networks``), each switched on alone:

    update       batch       today's: the batch's summed change applied once per batch
                 example     batch 1: an example's change applied at the end of its nudged phases
                             (an accumulator per synapse holds it meanwhile)
                 continual   every spike-triggered change applied when it happens (C-EP style;
                             no accumulator)
    weight_bits  None (float) | b: the weights and biases of each layer in b-bit fixed point on
                 +- weight_range / sqrt(fan_in), every update stochastically rounded (seeded)
    average      the weight average (train.ema_decay) kept beside the raw weights, or not
    state_bits   None (float) | b: the states s and traces r on 2^b levels of [0, 1] (rounded to
                 the nearest); the accumulators of the sigma-delta neurons follow (sums of them)
    free_rerun   the free phase run again before the second nudged phase (no state snapshot)
    lr_scale     the mode's learning rates: eqspike.lr x lr_scale (chosen on the validation split)

``batch`` runs today's loop (``pipeline.models.train.fit``), one network after another;
``example`` and ``continual`` run ``chip_kernel.chip_kernel``, the networks side by side (one thread each, as
many threads as Numba's), one example at a time each. Supported dynamics: sigma-delta neurons, the spike pre factor, the
event-driven input layer, symmetric nudging (``check_dynamics`` names any other setting).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
from tqdm import tqdm

from pipeline.core.events import Counts, to_json
from pipeline.core.network import Params, ema_arrays, init_params
from pipeline.core.schema import Checked, ConfigError, opt, req
from pipeline.models.eqspike.chip_kernel import MODE_CONTINUAL, MODE_EXAMPLE, chip_kernel, stochastic_round
from pipeline.models.eqspike.dynamics import EqSpikeConfig
from pipeline.models.eqspike.schedule import count_phase, evaluate
from pipeline.models.train import epoch_plan

UPDATES = ("batch", "example", "continual")
FLOAT_BITS = 32  # what a float32 weight, average or accumulator costs per synapse


@dataclass(frozen=True, kw_only=True)
class ChipCfg(Checked):
    """The ``chip`` config: how a chip constrains EqSpike's training (conf/chip/default.yaml)."""

    config_path = "chip"

    update: str = req(choices=UPDATES)
    weight_bits: int | None = opt(None, ge=1, le=16)  # None: float weights (runtime.dtype)
    weight_range: float = req(gt=0)  # fixed point: each layer on +- weight_range / sqrt(fan_in)
    state_bits: int | None = opt(None, ge=1, le=16)  # None: float states and traces
    average: bool = req()  # keep the weight average (train.ema_decay) beside the raw weights
    free_rerun: bool = req()  # run the free phase again instead of keeping a snapshot of its state
    lr_scale: float = req(gt=0)  # learning rates: eqspike.lr x lr_scale

    def check(self, path: str) -> None:
        for key in ("weight_bits", "state_bits"):
            if self.update == "batch" and getattr(self, key) is not None:
                raise ConfigError(f"{path}.{key}: fixed point needs update: example or continual (the batch "
                                  f"loop keeps float weights and states), got update: batch")

    @property
    def state_step(self) -> float:
        """The grid step of the states and traces (0: float)."""
        return 0.0 if self.state_bits is None else 1.0 / (2**self.state_bits - 1)

    @property
    def mode(self) -> int:
        return {"example": MODE_EXAMPLE, "continual": MODE_CONTINUAL}[self.update]

    def memory_bits(self) -> dict:
        """Bits per synapse: the weight, the accumulator of the update mode, the average."""
        weight = self.weight_bits or FLOAT_BITS
        accumulator = 0 if self.update == "continual" else FLOAT_BITS
        average = FLOAT_BITS if self.average else 0
        return {"weight": weight, "accumulator": accumulator, "average": average,
                "total": weight + accumulator + average}


def check_dynamics(dyn: EqSpikeConfig, chip: ChipCfg, path: str = "eqspike") -> None:
    """The dynamics the chip kernel runs; any other setting is named before any work."""
    if chip.update == "batch":
        return
    wanted = {"neuron.model": (dyn.neuron.model, "sigma_delta"), "pre_factor": (dyn.pre_factor, "spike"),
              "input_layer": (dyn.input_layer, "event"), "nudge": (dyn.nudge, "symmetric")}
    for key, (value, need) in wanted.items():
        if value != need:
            raise ConfigError(f"{path}.{key}: chip.update={chip.update} runs {key} {need!r} only, got {value!r} "
                              f"(chip.update=batch runs any setting)")


@dataclass(frozen=True)
class Grid:
    """The fixed-point grid of every layer m (its weights W[m] and the biases b[m]):
    lo[m] + k step[m], k = 0..top. ``step`` 0: float."""

    lo: np.ndarray
    step: np.ndarray
    top: float

    @classmethod
    def of(cls, sizes: Sequence[int], chip: ChipCfg) -> Grid:
        L = len(sizes) - 1
        if chip.weight_bits is None:
            return cls(np.zeros(L), np.zeros(L), 0.0)
        top = float(2**chip.weight_bits - 1)
        wmax = np.array([chip.weight_range / np.sqrt(sizes[m]) for m in range(L)])
        return cls(-wmax, 2.0 * wmax / top, top)

    def on_grid(self, params: Params) -> bool:
        """Whether every weight and bias is one of its layer's grid values."""
        if self.top == 0.0:
            return True
        for m, (w, b) in enumerate(zip(params.W, params.b)):
            for a in (w, b):
                k = (np.asarray(a, np.float64) - self.lo[m]) / self.step[m]
                if np.abs(k - np.round(k)).max() > 1e-3 or k.min() < -1e-3 or k.max() > self.top + 1e-3:
                    return False
        return True


def stream_state(seed: int, salt: int) -> np.ndarray:
    """The starting counter of one network's stream of uniforms (splitmix64 of a counter), drawn on
    the host from its seed."""
    return np.array([np.random.default_rng([seed, 3, salt]).integers(1, 2**63, dtype=np.uint64)], np.uint64)


class Networks:
    """Networks side by side, laid out for ``chip_kernel``: ``W0s`` (n, n_0, n_1), ``WTs`` (per
    network, a tuple of W_{m+1}^T), ``biases`` (n, N: layers concatenated); ``params(i)`` is
    network i as ``Params`` of views (evaluation reads it, nothing copies it back)."""

    def __init__(self, params: Sequence[Params]):
        self.sizes = [params[0].W[0].shape[0], *(w.shape[1] for w in params[0].W)]
        self.off = np.concatenate([[0], np.cumsum(self.sizes[1:])]).astype(np.int64)
        self.W0s = np.ascontiguousarray(np.stack([p.W[0] for p in params]))
        self.WTs = tuple(tuple(np.ascontiguousarray(p.W[m].T) for m in range(1, len(p.W))) for p in params)
        self.biases = np.ascontiguousarray(np.stack([np.concatenate(p.b) for p in params]))

    def __len__(self) -> int:
        return self.W0s.shape[0]

    def params(self, i: int) -> Params:
        L = len(self.sizes) - 1
        W = [self.W0s[i], *(self.WTs[i][m].T for m in range(L - 1))]
        b = [self.biases[i][self.off[m]:self.off[m + 1]] for m in range(L)]
        return Params(W, b)

    def arrays(self):
        """Every array of every network (for the average)."""
        return [self.W0s, *(w for t in self.WTs for w in t), self.biases]

    def accumulators(self):
        """Per network, zero accumulators of the synapses between layers and of the biases (the
        input layer's change of an example is summed over its window at once)."""
        return tuple(tuple(np.zeros_like(w) for w in t) for t in self.WTs), np.zeros_like(self.biases)


@dataclass(frozen=True)
class Net:
    """One network of a side-by-side run: its seed (initial weights, data order, rounding
    stream) and its constraints (``chip``: update mode, weight bits, rerun, learning rates)."""

    seed: int
    chip: ChipCfg


def initial_networks(dyn: EqSpikeConfig, nets: Sequence[Net], dtype: str) -> tuple[Networks, list[Grid]]:
    """Each network's initial weights (``init_params`` of its seed: the same as today's run of
    that seed), rounded onto its grid with its own stream when its weights are fixed point."""
    grids = [Grid.of(dyn.sizes, net.chip) for net in nets]
    params = [init_params(dyn.sizes, net.seed, np, dtype) for net in nets]
    for i, (p, net, grid) in enumerate(zip(params, nets, grids)):
        if grid.top:
            state = stream_state(net.seed, 1000 + i)
            for m, (w, b) in enumerate(zip(p.W, p.b)):
                for a in (w, b):
                    stochastic_round(a.reshape(-1), grid.lo[m], grid.step[m], grid.top, state)
    return Networks(params), grids


def train_networks(dyn: EqSpikeConfig, nets: Sequence[Net], data, dtype: str = "float32",
                   ema_decay: float = 0.0, progress: bool = True,
                   on_epoch_end: Callable[[int, list[dict]], None] | None = None,
                   chunk: int = 500) -> tuple[Networks, list[list[dict]], Networks | None, list[Counts]]:
    """Train the networks ``nets`` (each: update ``example`` or ``continual``, its own bits,
    rerun and learning rates) for ``dyn.epochs``, side by side; returns the networks, each one's
    records (per epoch: train accuracy, seconds, and with a validation split ``val_accuracy``),
    the weight average (when the networks keep it, ``chip.average``: ``ema_decay`` per
    ``dyn.batch_size`` examples, as many updates per epoch as today's loop) and each network's
    training event counts of the last epoch.

    Network i sees epoch e's examples in the order of ``epoch_plan(seed_i, e)`` (today's order
    for that seed), with learning rates eqspike.lr x lr_scale_i x lr_decay^e. The networks run
    in as many threads as Numba has (``EQSPIKE_THREADS``), each network in one thread at a time. A
    network whose weights stop being finite is marked ``diverged`` in its records (no validation
    figure) while the others go on."""
    for net in nets:
        check_dynamics(dyn, net.chip)
        if net.chip.update == "batch":
            raise ValueError("train_networks runs update example or continual; batch is today's loop (fit)")
    averaged = {net.chip.average for net in nets}
    if len(averaged) > 1:
        raise ValueError("train_networks: the networks of one run either all keep the weight average or none")
    nw, grids = initial_networks(dyn, nets, dtype)
    ema = Networks([nw.params(i) for i in range(len(nw))]) if averaged == {True} else None
    accT, accb = nw.accumulators()
    t = np.dtype(dtype).type
    nm = dyn.neuron
    x_train = np.asarray(data.x_train, dtype=dtype)
    Q = np.ascontiguousarray(nm.kind.rate(x_train, nm, np))
    Y = np.asarray(data.y_train, np.int64)
    n = len(Y)
    L = len(dyn.sizes) - 1
    states = np.stack([stream_state(net.seed, i) for i, net in enumerate(nets)])
    act = {"sigmoid": 1 if dtype == "float32" else 0, "hard_sigmoid": 2}[dyn.activation]
    step = chunk if ema is None else dyn.batch_size
    records: list[list[dict]] = [[] for _ in nets]
    counts: list[Counts] = []
    pool = ThreadPoolExecutor(max_workers=max(1, min(len(nets), numba.get_num_threads())))
    for epoch in range(dyn.epochs):
        t0 = time.perf_counter()
        orders = np.stack([epoch_plan(net.seed, epoch, n, 1, False)[0] for net in nets]).astype(np.int64)
        scales = np.array([[eta * net.chip.lr_scale * dyn.lr_decay**epoch / (2.0 * dyn.beta) for eta in dyn.lr]
                           for net in nets], dtype=dtype)
        raw = np.zeros((len(nets), 2 + 2 * L))
        correct = np.zeros(len(nets), np.int64)
        for start in tqdm(range(0, n, step), desc=f"chip epoch {epoch + 1}/{dyn.epochs} ({len(nets)} networks)",
                          disable=not progress, leave=False, mininterval=1.0):
            part = np.ascontiguousarray(orders[:, start:start + step])

            def one(i, part=part, scales=scales, raw=raw, correct=correct):
                c, g = nets[i].chip, grids[i]
                chip_kernel(nw.W0s[i], nw.WTs[i], nw.biases[i], accT[i], accb[i], nw.off, Q, Y, part[i],
                            scales[i], dyn.T, dyn.K, dyn.beta, t(1.0), t(nm.alpha), t(1.0 - nm.alpha),
                            t(nm.threshold), nm.reset == "zero", t(nm.leak), act, c.mode, c.free_rerun,
                            g.lo, g.step, g.top, c.state_step, states[i], raw[i], correct[i:i + 1])

            list(pool.map(one, range(len(nets))))
            if ema is not None:
                ema_arrays(ema.arrays(), nw.arrays(), ema_decay)
        seconds = time.perf_counter() - t0
        finite = [bool(np.isfinite(nw.biases[i]).all() and np.isfinite(nw.W0s[i]).all()) for i in range(len(nets))]
        counts = [epoch_counts(dyn, raw[i], n) for i in range(len(nets))]
        if data.x_val is not None:
            x_val, y_val = np.asarray(data.x_val, dtype=dtype), np.asarray(data.y_val)
        for i in range(len(nets)):
            record = {"epoch": epoch + 1, "train_accuracy": float(correct[i]) / n, "seconds": seconds,
                      "events": {"train": to_json(counts[i].per_example(n))}}
            if not finite[i]:  # the others go on; the caller decides (the selection: it loses)
                records[i].append({**record, "diverged": True})
                continue
            if data.x_val is not None:
                record["val_accuracy"] = evaluate(nw.params(i), x_val, y_val, dyn, dyn.eval_batch_size)["accuracy"]
                if ema is not None:
                    record["val_accuracy_averaged"] = evaluate(ema.params(i), x_val, y_val, dyn,
                                                               dyn.eval_batch_size)["accuracy"]
            records[i].append(record)
        if on_epoch_end is not None:
            on_epoch_end(epoch, [r[-1] for r in records])
    pool.shutdown()
    return nw, records, ema, counts


def epoch_counts(dyn: EqSpikeConfig, raw: np.ndarray, n: int) -> Counts:
    """The events of one network's epoch (``chip_kernel``'s spike totals ``raw``) as ``Counts``,
    laid out as today's: the free phase once (a rerun is the energy model's variant
    ``free state rerun``, which charges a copy of it) and both nudged phases with their
    spike-triggered updates."""
    L = len(dyn.sizes) - 1
    counts = Counts()
    count_phase(counts, "free", dyn.sizes, dyn.T * n, 1, raw[0], list(raw[2:2 + L]), False)
    count_phase(counts, "nudged", dyn.sizes, 2 * dyn.K * n, 1, raw[1], list(raw[2 + L:2 + 2 * L]), True)
    return counts
