"""EqSpike: Equilibrium Propagation in a network of spiking neurons with a spike-driven local rule
(shared/SPEC.md section 2, our reconstruction of Martin et al. 2021).

Neurons talk only through binary spikes. Each neuron i keeps an analog EP state s_i and emits
spikes whose rate encodes it; the spikes reach the neighbours through a synaptic trace r:

    emit        S_i[t] in {0, 1}     sigma-delta: a_i += s_i; S_i = [a_i >= theta]; a_i -= theta S_i
                                      Bernoulli:   S_i ~ Bernoulli(s_i)
    trace       r_i += (S_i[t] - r_i) / tau_syn
    state       s_i[t+1] = (1 - g) s_i[t] + g rho(sum_j W_ij r_j + b_i)       (+ nudge, outputs)
    nudge       outputs: s_o[t+1] = (1 - g) s_o + g (rho(...) + beta (y - s_o))   (outside rho)

Input pixels are spike-coded by the same neuron model, with rate x.

Learning rule (SPEC section 2, rule 3): a synapse changes when one of its neurons spikes, by the
spike times the other neuron's own state change ds = s[t+1] - s[t]:

    dW_ij[t] = eta / beta (S_j[t] ds_i[t] + S_i[t] ds_j[t])        (input synapses: first term)
    db_i[t]  = eta / beta ds_i[t]

accumulated over a nudged phase. Spike noise makes ds nonzero without any nudge; the bias is
removed by ``nudge``: ``symmetric`` runs a +beta and a -beta phase from the same free state and
takes (acc(+beta) - acc(-beta)) / 2 beta, where the noise terms cancel; ``one_sided`` and
``random_sign`` subtract the same rule measured over the last K steps of the free phase.
``pre_factor: trace`` replaces the spike S_j by the trace r_j (an ablation: not spike-driven).

Cost model (why it is written this way): the input layer's spikes do not depend on the network,
so its trains, traces and the input current r_x W_1 of every step are computed for the whole
phase in one matrix product, and the input-layer rule sum_t S_x[t]^T ds_1[t] is one product over
the stacked steps (the +beta and -beta phases share S_x, so symmetric nudging needs one product
of S_x with ds(+) - ds(-)). Dense products beat event-driven scatter on a CPU at these spike
densities (benchmarks/bench_ep.py prints both).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import NamedTuple

import numpy as np

from pipeline.backend import array_module
from pipeline.ep import Params

MODELS = ("sigma_delta", "bernoulli")


@dataclass(frozen=True)
class NeuronModel:
    """Spiking neuron parameters. ``leak`` is g in the state update (1: no leak)."""

    model: str = "sigma_delta"
    threshold: float = 1.0
    tau_syn_steps: float = 5.0
    leak: float = 1.0


@dataclass(frozen=True)
class SpikeDynamics:
    T: int
    K: int
    beta: float
    neuron: NeuronModel = field(default_factory=NeuronModel)
    nudge: str = "symmetric"  # symmetric | one_sided | random_sign
    pre_factor: str = "spike"  # spike | trace
    activation: str = "sigmoid"
    eval_avg_steps: int = 1  # prediction: output state averaged over the last n free steps


class Layer(NamedTuple):
    """State of one layer, all ``(B, n)``: EP state s, sigma-delta accumulator a, trace r."""

    s: object
    a: object
    r: object


class Counts:
    """Event counters of a simulation, per phase and layer (SPEC section 2, for the energy
    estimate of claim C4). Values are host floats, summed over examples."""

    KINDS = ("spikes", "synaptic_events", "weight_updates", "neuron_updates", "time_steps")

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def add(self, phase: str, layer: str, kind: str, value) -> None:
        key = f"{phase}.{layer}.{kind}"
        self.values[key] = self.values.get(key, 0.0) + value

    def merge(self, other: Counts) -> None:
        for k, v in other.values.items():
            self.values[k] = self.values.get(k, 0.0) + v

    def host(self) -> dict[str, float]:
        """Totals as Python floats (one device sync per value on a GPU)."""
        return {k: float(v) for k, v in sorted(self.values.items())}


def rho(v, activation: str, xp: ModuleType):
    """SPEC section 1: 1 / (1 + exp(-4 (v - 0.5))) = (1 + tanh(2 v - 1)) / 2, in place; or clip."""
    if activation == "hard_sigmoid":
        return xp.clip(v, 0.0, 1.0, out=v)
    v *= 2.0
    v -= 1.0
    xp.tanh(v, out=v)
    v += 1.0
    v *= 0.5
    return v


def emit(s, a, neuron: NeuronModel, xp: ModuleType, rng=None):
    """Spikes from the states (and the new accumulators): the neuron model's only job."""
    if neuron.model == "sigma_delta":
        a = a + s
        spikes = (a >= neuron.threshold).astype(s.dtype)
        a -= neuron.threshold * spikes
        return spikes, a
    if neuron.model == "bernoulli":
        return (rng(s.shape, s.dtype) < s).astype(s.dtype), a
    raise ValueError(f"neuron.model: unknown model {neuron.model!r} (one of {MODELS})")


def encode_input(x, steps: int, neuron: NeuronModel, rng=None):
    """Spike trains and traces of the input pixels (rate x / threshold), ``(steps, B, n)``.

    The input does not depend on the network, so whole trains are computed up front. For
    sigma-delta coding of a constant x (a += x; spike when a >= theta; a -= theta) the number of
    spikes after t + 1 steps is floor((t + 1) x / theta), so the train is the difference of
    that count: the coder without the rounding drift of a float32 accumulator. The trace r += (S - r) / tau is a causal
    filter over time, applied as one small matrix product.
    """
    xp = array_module(x)
    if neuron.model == "sigma_delta":
        k = xp.arange(steps + 1, dtype=x.dtype).reshape(-1, 1, 1)
        counts = xp.floor(k * (x / x.dtype.type(neuron.threshold)))
        spikes = counts[1:] - counts[:-1]
    else:
        spikes = xp.stack([emit(x, None, neuron, xp, rng)[0] for _ in range(steps)])
    alpha = 1.0 / neuron.tau_syn_steps
    lag = np.arange(steps)[:, None] - np.arange(steps)[None, :]
    filt = np.where(lag >= 0, alpha * (1.0 - alpha) ** np.maximum(lag, 0), 0.0)  # r[t] = sum_k filt[t,k] S[k]
    traces = (xp.asarray(filt.astype(x.dtype)) @ spikes.reshape(steps, -1)).reshape(spikes.shape)
    return spikes, traces


def active_inputs(x):
    """Indices of the pixels that are nonzero in some example of the batch. The others never
    spike (rate 0): they drive nothing and their synapses never change, so every input-layer
    product leaves them out (about 40 % of MNIST's pixels for a batch of 20)."""
    xp = array_module(x)
    return xp.flatnonzero(x.max(axis=0) > 0)


def input_drive(params: Params, traces, active):
    """Input current r_x[t] W_1 + b_1 for every step at once, ``traces: (steps, B, n_active)``
    -> ``(steps, B, n_1)``."""
    steps, B, n_in = traces.shape
    return (traces.reshape(steps * B, n_in) @ params.W[0][active]).reshape(steps, B, -1) + params.b[0]


def initial_state(params: Params, batch: int) -> list[Layer]:
    xp = array_module(params.W[0])
    return [Layer(*(xp.zeros((batch, w.shape[1]), dtype=w.dtype) for _ in range(3))) for w in params.W]


def step(params: Params, state: Sequence[Layer], drive, dyn: SpikeDynamics, target=None,
         beta: float = 0.0, rng=None) -> tuple[list, list[Layer]]:
    """One time step of every layer: emit spikes from s[t], filter them, update s to s[t+1].

    ``drive``: input current of this step ``(B, n_1)``; ``target``: one-hot ``(B, n_L)``.
    Neurons receive only their neighbours' filtered spikes (traces), never their states.
    Returns the spikes S[t] of every layer and the new state.
    """
    xp = array_module(drive)
    nm = dyn.neuron
    alpha, g = 1.0 / nm.tau_syn_steps, nm.leak
    W, b = params
    L = len(state)
    spikes, traces, accs = [], [], []
    for layer in state:
        S, a = emit(layer.s, layer.a, nm, xp, rng)
        r = layer.r + alpha * (S - layer.r)
        spikes.append(S)
        traces.append(r)
        accs.append(a)
    new = []
    for l in range(L):
        if l + 1 < L:
            v = traces[l + 1] @ W[l + 1].T
            v += drive if l == 0 else traces[l - 1] @ W[l] + b[l]
        else:
            v = drive.copy() if l == 0 else traces[l - 1] @ W[l] + b[l]
        rho(v, dyn.activation, xp)
        s_old = state[l].s
        if l + 1 == L and beta != 0.0:
            v += beta * (target - s_old)
        if g != 1.0:
            v = s_old + g * (v - s_old)
        new.append(Layer(v, accs[l], traces[l]))
    return spikes, new


def _count(counts: Counts, phase: str, spikes_in, spikes: Sequence, sizes: Sequence[int],
           plastic: bool) -> None:
    """Events of one step (``spikes``) or of a window of input steps (``spikes_in``: any shape).

    Fan-out of a spike: every neuron of the adjacent layers it projects to (the input projects
    to layer 1 only). Spike-triggered updates (when ``plastic``): an input spike updates its n_1
    synapses; a spike of layer l updates its synapses to layer l+1 (its presynaptic term) and
    from layer l-1 unless that is the input, whose ds is zero."""
    if spikes_in is not None:
        n_in = spikes_in.sum()
        counts.add(phase, "input", "spikes", n_in)
        counts.add(phase, "input", "synaptic_events", n_in * sizes[1])
        if plastic:
            counts.add(phase, "input", "weight_updates", n_in * sizes[1])
        return
    L = len(spikes)
    for l, S in enumerate(spikes):
        name = f"layer{l + 1}"
        n = S.sum()
        fanout = (sizes[l] if l > 0 else 0) + (sizes[l + 2] if l + 1 < L else 0)
        counts.add(phase, name, "spikes", n)
        counts.add(phase, name, "synaptic_events", n * fanout)
        counts.add(phase, name, "neuron_updates", float(S.size))
        if plastic:
            counts.add(phase, name, "weight_updates", n * fanout)
    counts.add(phase, "all", "time_steps", 1.0)


class RuleTrace:
    """The spike-driven rule accumulated over one measurement window."""

    def __init__(self, params: Params):
        xp = array_module(params.W[0])
        self.hidden = [xp.zeros_like(w) for w in params.W[1:]]  # sum_t P^T ds + ds^T P
        self.pre_in: list = []  # input pre factor per step, (B, n_0)
        self.ds_first: list = []  # state change of layer 1 per step, (B, n_1)
        self.start = -1  # first time step of the window
        self.s_start: list | None = None
        self.s_end: list | None = None

    def record(self, pre_in, pre: Sequence, old: Sequence[Layer], new: Sequence[Layer]) -> None:
        ds = [n.s - o.s for n, o in zip(new, old)]
        self.pre_in.append(pre_in)
        self.ds_first.append(ds[0])
        for l in range(1, len(ds)):
            self.hidden[l - 1] += pre[l - 1].T @ ds[l] + ds[l - 1].T @ pre[l]


def run_phase(params: Params, state: list[Layer], drive, start: int, steps: int, dyn: SpikeDynamics,
              counts: Counts, phase: str, sizes: Sequence[int], spikes_in, traces_in, target=None,
              beta: float = 0.0, rule: RuleTrace | None = None, rng=None, observer=None):
    """``steps`` steps from time ``start``; records the rule into ``rule`` when given.

    ``observer(t, spikes_in_t, spikes, old_state, new_state)``, when given, sees every step
    (rasters, the STDP recorder): it observes, it does not change the simulation."""
    if rule is not None:
        rule.start = start
        rule.s_start = [layer.s for layer in state]
    _count(counts, phase, spikes_in[start:start + steps], None, sizes, rule is not None)
    for k in range(steps):
        t = start + k
        spikes, new = step(params, state, drive[t], dyn, target, beta, rng)
        _count(counts, phase, None, spikes, sizes, rule is not None)
        if observer is not None:
            observer(t, spikes_in[t], spikes, state, new)
        if rule is not None:
            pre = spikes if dyn.pre_factor == "spike" else [layer.r for layer in new]
            rule.record(spikes_in[t] if dyn.pre_factor == "spike" else traces_in[t], pre, state, new)
        state = new
    if rule is not None:
        rule.s_end = [layer.s for layer in state]
    return state


def _apply(params: Params, a: RuleTrace, b: RuleTrace, scale: Sequence[float], active) -> None:
    """W += scale (rule(a) - rule(b)); the input layer as one product over the stacked steps."""
    xp = array_module(params.W[0])
    if a.start == b.start:
        # same window (symmetric nudging): the input's pre factors are the same in both phases
        pre = xp.concatenate(a.pre_in, axis=0)
        post = xp.concatenate([da - db for da, db in zip(a.ds_first, b.ds_first)], axis=0)
    else:
        pre = xp.concatenate(a.pre_in + b.pre_in, axis=0)
        post = xp.concatenate(a.ds_first + [-d for d in b.ds_first], axis=0)
    post *= scale[0]
    params.W[0][active] += pre.T @ post  # silent pixels: zero update, left out
    for l in range(1, len(params.W)):
        params.W[l] += scale[l] * (a.hidden[l - 1] - b.hidden[l - 1])
    for l in range(len(params.b)):
        # sum_t ds telescopes to s_end - s_start
        diff = (a.s_end[l] - a.s_start[l]) - (b.s_end[l] - b.s_start[l])
        params.b[l] += scale[l] * diff.sum(axis=0)


def train_batch(params: Params, x, y_onehot, dyn: SpikeDynamics, lr: Sequence[float], sign: float = 1.0,
                rng=None, counts: Counts | None = None):
    """One EqSpike learning step on a batch; returns the output state after the free phase."""
    counts = Counts() if counts is None else counts
    B = x.shape[0]
    sizes = [x.shape[1], *(w.shape[1] for w in params.W)]
    active = active_inputs(x)
    spikes_in, traces_in = encode_input(x[:, active], dyn.T + dyn.K, dyn.neuron, rng)
    drive = input_drive(params, traces_in, active)
    common = dict(params=params, drive=drive, dyn=dyn, counts=counts, sizes=sizes,
                  spikes_in=spikes_in, traces_in=traces_in, rng=rng)
    state = initial_state(params, B)
    beta = dyn.beta * sign
    if dyn.nudge == "symmetric":
        free = run_phase(state=state, start=0, steps=dyn.T, phase="free", **common)
        pos, neg = RuleTrace(params), RuleTrace(params)
        run_phase(state=free, start=dyn.T, steps=dyn.K, phase="nudged", target=y_onehot, beta=beta,
                  rule=pos, **common)
        run_phase(state=free, start=dyn.T, steps=dyn.K, phase="nudged", target=y_onehot, beta=-beta,
                  rule=neg, **common)
        _apply(params, pos, neg, [eta / (2.0 * beta * B) for eta in lr], active)
        return free[-1].s
    # one-sided: subtract the rule measured over the last K free steps (same length of window)
    window = min(dyn.K, dyn.T)
    state = run_phase(state=state, start=0, steps=dyn.T - window, phase="free", **common)
    ref = RuleTrace(params)
    free = run_phase(state=state, start=dyn.T - window, steps=window, phase="free", rule=ref, **common)
    nudged = RuleTrace(params)
    run_phase(state=free, start=dyn.T, steps=dyn.K, phase="nudged", target=y_onehot, beta=beta,
              rule=nudged, **common)
    if window != dyn.K:  # compare rates of change per step, not totals over unequal windows
        f = dyn.K / window
        ref.hidden = [h * f for h in ref.hidden]
        ref.ds_first = [d * f for d in ref.ds_first]
    _apply(params, nudged, ref, [eta / (beta * B) for eta in lr], active)
    return free[-1].s


def predict(params: Params, x, dyn: SpikeDynamics, rng=None, counts: Counts | None = None,
            observer=None):
    """Free phase of T steps; the output state averaged over the last ``eval_avg_steps``."""
    counts = Counts() if counts is None else counts
    xp = array_module(x)
    sizes = [x.shape[1], *(w.shape[1] for w in params.W)]
    active = active_inputs(x)
    spikes_in, traces_in = encode_input(x[:, active], dyn.T, dyn.neuron, rng)
    drive = input_drive(params, traces_in, active)
    common = dict(params=params, drive=drive, dyn=dyn, counts=counts, sizes=sizes,
                  spikes_in=spikes_in, traces_in=traces_in, rng=rng, phase="inference", observer=observer)
    n_avg = min(dyn.eval_avg_steps, dyn.T)
    state = run_phase(state=initial_state(params, x.shape[0]), start=0, steps=dyn.T - n_avg, **common)
    total = xp.zeros_like(state[-1].s)
    for t in range(dyn.T - n_avg, dyn.T):
        state = run_phase(state=state, start=t, steps=1, **common)
        total += state[-1].s
    return total / n_avg


def evaluate(params: Params, x, labels, dyn: SpikeDynamics, batch_size: int = 1000, rng=None,
             counts: Counts | None = None) -> tuple[float, float]:
    """Accuracy and mean loss 1/2 ||y - s_L||^2 of the spiking network's free phase."""
    xp = array_module(x)
    correct, loss = 0, 0.0
    for start in range(0, x.shape[0], batch_size):
        xb, yb = x[start:start + batch_size], labels[start:start + batch_size]
        out = predict(params, xb, dyn, rng, counts)
        target = onehot(yb, out.shape[1], xp, out.dtype)
        correct += int((out.argmax(axis=1) == yb).sum())
        loss += float(0.5 * ((target - out) ** 2).sum())
    return correct / x.shape[0], loss / x.shape[0]


def onehot(labels, n: int, xp: ModuleType, dtype):
    t = xp.zeros((labels.shape[0], n), dtype=dtype)
    t[xp.arange(labels.shape[0]), labels] = 1.0
    return t


def make_rng(xp: ModuleType, seed):
    """Uniform [0, 1) sampler ``rng(shape, dtype)`` for Bernoulli spikes, on the arrays' device.

    This in-simulation stream differs between NumPy and CuPy (the README says so); everything
    that must match across backends (weights, data order) is drawn on the host."""
    if xp is np:
        gen = np.random.default_rng(seed)
        return lambda shape, dtype: gen.random(shape, dtype=dtype)
    gen = xp.random.RandomState(int(np.random.default_rng(seed).integers(2**31)))
    return lambda shape, dtype: gen.random_sample(shape).astype(dtype)


def simulate_learning(params: Params, x, y_onehot, dyn: SpikeDynamics, rng=None, observer=None) -> None:
    """The phases of one learning step (free, then the nudged phase(s) from the free state), with
    ``observer`` seeing every step and the phase it belongs to, and no weight change: for
    rasters and the STDP recorder. ``observer(phase, t, spikes_in_t, spikes, old, new)``."""
    xp = array_module(x)
    sizes = [x.shape[1], *(w.shape[1] for w in params.W)]
    spikes_in, traces_in = encode_input(x, dyn.T + dyn.K, dyn.neuron, rng)
    common = dict(params=params, drive=input_drive(params, traces_in, xp.arange(x.shape[1])), dyn=dyn,
                  counts=Counts(), sizes=sizes, spikes_in=spikes_in, traces_in=traces_in, rng=rng)

    def seen_as(phase):
        return None if observer is None else (lambda *step: observer(phase, *step))

    free = run_phase(state=initial_state(params, x.shape[0]), start=0, steps=dyn.T, phase="free",
                     observer=seen_as("free"), **common)
    signs = (1.0, -1.0) if dyn.nudge == "symmetric" else (1.0,)
    for sign in signs:
        run_phase(state=free, start=dyn.T, steps=dyn.K, phase="nudged", target=y_onehot,
                  beta=sign * dyn.beta, observer=seen_as("nudged+" if sign > 0 else "nudged-"), **common)


def record_raster(params: Params, x, y_onehot, dyn: SpikeDynamics, rng=None) -> dict[str, list]:
    """Spikes of every layer through the free phase and the nudged phase(s), without learning:
    ``{"free": [...], "nudged+": [...], ...}``, each a list over steps of
    ``[input, layer1, ..., output]`` spike arrays ``(B, n)``."""
    out: dict[str, list] = {}
    simulate_learning(params, x, y_onehot, dyn, rng,
                      lambda phase, t, s_in, spikes, old, new: out.setdefault(phase, []).append([s_in, *spikes]))
    return out
