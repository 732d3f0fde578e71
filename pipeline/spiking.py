"""EqSpike: Equilibrium Propagation in a network of spiking neurons with a spike-driven local rule
(our reconstruction of Martin et al. 2021; the equations with their reasons: README, "The model").

Where each equation lives (one hop each):

    emission, leak, trace     ``pipeline/neuron.py``   (sigma_delta, bernoulli; rho)
    network step              ``step`` below:  v_l = rho(sum_j W r_j + b) (+ nudge), s = relax(s, v)
    nudge (outputs)           ``step``:  v_L += beta (y - s_L)      (outside rho)
    learning rule             ``spike_rule`` below
    phase schedule            ``train_batch`` below (free phase, then +beta and -beta phases)
    event counts              ``count_phase`` below, keys in ``pipeline/events.py``

Neurons talk only through binary spikes S; each neuron i keeps an analog EP state s_i, its spike
rate encodes s_i, and its neighbours receive the spikes filtered by a synaptic trace r:

    S_l[t]    = emit(s_l[t])                           (input pixels: the same model, rate x)
    r_l[t]    = r_l[t-1] + (S_l[t] - r_l[t-1]) / tau_syn
    v_l[t]    = rho(r_{l-1}[t] W_l + b_l + r_{l+1}[t] W_{l+1}^T)      (+ beta (y - s_L[t]), outputs)
    s_l[t+1]  = (1 - g) s_l[t] + g v_l[t]

Learning rule (``spike_rule``): a synapse changes when one of its neurons spikes, by the spike
times the other neuron's own state change ds = s[t+1] - s[t], accumulated over a nudged phase:

    dW_ij = eta / beta sum_t (S_j[t] ds_i[t] + S_i[t] ds_j[t])        (input synapses: first term)
    db_i  = eta / beta sum_t ds_i[t]

Spike noise makes ds nonzero without any nudge; ``nudge`` removes that bias: ``symmetric`` runs a
+beta and a -beta phase from the same free state and takes (rule(+) - rule(-)) / 2 beta, where the
noise terms cancel; ``one_sided`` and ``random_sign`` subtract the same rule measured over the
last K steps of the free phase. ``pre_factor: trace`` uses r_j instead of S_j (an ablation).

Two engines run the same equations (``SpikeDynamics.engine``):

- ``array``: NumPy or CuPy array operations over the batch, one call per layer and step. It is
  the reference, the GPU path, and the only one that takes an ``observer`` (rasters, STDP).
- ``compiled`` (CPU, ``pipeline/spike_kernels.py``, Numba): one kernel runs a whole phase, every
  example in parallel; the input layer is event-driven (an input spike adds its row of W_1 to the
  hidden current; the input rule adds ds_1 into the rows of the pixels that spiked).
  ``auto`` picks it for NumPy arrays. ``input_layer: dense`` computes the input current and the
  input rule as batched matrix products instead (both engines).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import NamedTuple

import numpy as np

from pipeline.backend import array_module
from pipeline.events import Counts, to_json
from pipeline.network import Params, sizes_of
from pipeline.neuron import NeuronModel, check_activation, emit, relax, rho

NUDGES = ("symmetric", "one_sided", "random_sign")
PRE_FACTORS = ("spike", "trace")
ENGINES = ("auto", "array", "compiled")
INPUT_LAYERS = ("event", "dense")


@dataclass(frozen=True)
class SpikeDynamics:
    """Everything that shapes a simulation (defaults live in ``conf/``)."""

    T: int
    K: int
    beta: float
    neuron: NeuronModel
    nudge: str  # symmetric | one_sided | random_sign
    pre_factor: str  # spike | trace
    activation: str  # sigmoid | hard_sigmoid
    eval_avg_steps: int  # prediction: output state averaged over the last n free steps
    engine: str = "auto"  # auto | array | compiled: how, not what (same equations)
    input_layer: str = "event"  # event | dense: how the compiled engine does the input layer

    def __post_init__(self):
        for name, value, choices in (("nudge", self.nudge, NUDGES), ("pre_factor", self.pre_factor, PRE_FACTORS),
                                     ("engine", self.engine, ENGINES),
                                     ("input_layer", self.input_layer, INPUT_LAYERS)):
            if value not in choices:
                raise ValueError(f"eqspike.{name}: {value!r} is not one of {choices}")
        check_activation(self.activation)


class Layer(NamedTuple):
    """State of one layer, all ``(B, n)``: EP state s, sigma-delta accumulator a, trace r."""

    s: object
    a: object
    r: object


class PhaseResult(NamedTuple):
    """What ``run_phase`` returns: the new state, the rule's ``Window`` (when recording), the input
    and per-layer spike totals, and in prediction (``avg_from`` given) the sum of the output state
    over the steps t >= avg_from and the output spike counts ``(B, n_L)`` over the whole phase."""

    state: object
    window: object
    input_spikes: object
    layer_spikes: list
    out_sum: object = None
    out_spikes: object = None


class Window(NamedTuple):
    """What the rule reads over one window of steps starting at ``start``, stacked over the
    steps: pre factors ``pre[l]`` and state changes ``ds[l]`` of layers 1..L, ``(k, B, n_l)``;
    the input layer's pre factor either dense ``pre_in`` ``(k, B, n_active)`` or, in the compiled
    engine, ``in_events``, whose ``apply_input_rule(W_0, start, post)`` adds ``post[k, b]`` to the
    rows of the pixels that spiked at step start + k in example b."""

    start: int
    pre_in: object
    pre: list
    ds: list
    in_events: object = None


# --------------------------------------------------------------------------------------------
# The learning rule
# --------------------------------------------------------------------------------------------


def spike_rule(params: Params, plus: Window, minus: Window, scale: Sequence[float], active,
               minus_weight: float = 1.0) -> None:
    """The spike-driven rule, applied as ``rule(plus) - minus_weight * rule(minus)``:

        dW_l = scale_l sum_t sum_batch (P_{l-1}[t]^T ds_l[t] + ds_{l-1}[t]^T P_l[t])
        db_l = scale_l sum_t sum_batch ds_l[t]

    P is the pre factor (the spike S, or the trace r), ds = s[t+1] - s[t]; the input layer has
    no ds, so its synapses take the first term only, ``W_0 += scale_0 sum_t P_in^T ds_1``.
    ``scale_l`` = eta_l / (2 beta B) for symmetric nudging, eta_l / (beta B) otherwise.
    Pixels silent in the whole batch (outside ``active``) have no pre factor: left out.
    """
    W, b = params
    xp = array_module(W[0])
    w = minus_weight
    same_input = plus.start == minus.start  # symmetric: both phases see the same input spikes
    # ---- input synapses ---------------------------------------------------------------------
    if same_input:
        posts = [(plus, scale[0] * (plus.ds[0] - w * minus.ds[0]))]
    else:
        posts = [(plus, scale[0] * plus.ds[0]), (minus, (-scale[0] * w) * minus.ds[0])]
    for win, post in posts:
        if win.in_events is not None:
            win.in_events.apply_input_rule(W[0], win.start, post)
        else:
            k, B, n_in = win.pre_in.shape
            W[0][active] += win.pre_in.reshape(k * B, n_in).T @ post.reshape(k * B, -1)
    # ---- synapses between spiking layers, biases -----------------------------------------
    def stacked(a):
        return a.reshape(-1, a.shape[-1])

    for l in range(1, len(W)):
        delta = xp.zeros_like(W[l])
        for win, sign in ((plus, 1.0), (minus, -w)):
            term = stacked(win.pre[l - 1]).T @ stacked(win.ds[l]) + stacked(win.ds[l - 1]).T @ stacked(win.pre[l])
            delta += sign * term
        W[l] += scale[l] * delta
    for l in range(len(b)):
        diff = plus.ds[l].sum(axis=(0, 1)) - w * minus.ds[l].sum(axis=(0, 1))
        b[l] += scale[l] * diff


# --------------------------------------------------------------------------------------------
# Event counts
# --------------------------------------------------------------------------------------------


def count_phase(counts: Counts, phase: str, sizes: Sequence[int], steps: int, batch: int,
                input_spikes, layer_spikes: Sequence, plastic: bool) -> None:
    """Events of ``steps`` steps of ``batch`` examples, from the spike totals of the phase.

    Fan-out of a spike: every neuron of the adjacent layers it projects to (the input projects to
    layer 1 only). Spike-triggered updates (when ``plastic``): an input spike updates its n_1
    synapses; a spike of layer l its synapses to both neighbours (the rule's two terms)."""
    counts.add(phase, "input", "spikes", input_spikes)
    counts.add(phase, "input", "synaptic_events", input_spikes * sizes[1])
    if plastic:
        counts.add(phase, "input", "weight_updates", input_spikes * sizes[1])
    L = len(layer_spikes)
    for l, n in enumerate(layer_spikes):
        name = f"layer{l + 1}"
        fanout = (sizes[l] if l > 0 else 0) + (sizes[l + 2] if l + 1 < L else 0)
        counts.add(phase, name, "spikes", n)
        counts.add(phase, name, "synaptic_events", n * fanout)
        counts.add(phase, name, "neuron_updates", float(steps * batch * sizes[l + 1]))
        if plastic:
            counts.add(phase, name, "weight_updates", n * fanout)
    counts.add(phase, "all", "time_steps", float(steps))


# --------------------------------------------------------------------------------------------
# The array engine (NumPy / CuPy): the reference
# --------------------------------------------------------------------------------------------


def encode_input(x, steps: int, neuron: NeuronModel, rng=None):
    """Spike trains and traces of the input pixels (rate x / threshold), ``(steps, B, n)``.

    The input does not depend on the network, so whole trains are computed up front; the trace
    r += (S - r) / tau is a causal filter over time, applied as one small matrix product."""
    xp = array_module(x)
    spikes = neuron.kind.encode(x, steps, neuron, xp, rng)
    alpha = neuron.alpha
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
    alpha = nm.alpha
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
        rho(v, dyn.activation, out=v)
        s_old = state[l].s
        if l + 1 == L and beta != 0.0:
            v += beta * (target - s_old)
        v = relax(s_old, v, nm)
        new.append(Layer(v, accs[l], traces[l]))
    return spikes, new


class ArrayEngine:
    """``prepare`` once per batch, then ``run_phase`` per phase (see ``train_batch``)."""

    def __init__(self, params: Params, x, steps: int, dyn: SpikeDynamics, rng=None, all_pixels: bool = False):
        """``all_pixels``: keep the pixels silent in the whole batch too (observers see them)."""
        self.params, self.dyn, self.rng = params, dyn, rng
        self.active = array_module(x).arange(x.shape[1]) if all_pixels else active_inputs(x)
        self.spikes_in, self.traces_in = encode_input(x[:, self.active], steps, dyn.neuron, rng)
        self.drive = input_drive(params, self.traces_in, self.active)
        self.B = x.shape[0]

    def initial_state(self):
        return initial_state(self.params, self.B)

    @staticmethod
    def output(state):
        return state[-1].s

    def run_phase(self, state, start: int, steps: int, target=None, beta: float = 0.0, record: bool = False,
                  observer=None, avg_from: int | None = None):
        """``steps`` steps from time ``start``; returns a ``PhaseResult``.
        ``observer(t, spikes_in_t, spikes, old, new)`` sees every step; it observes, it does not
        change the simulation."""
        xp = array_module(self.drive)
        pre, ds = [], []
        layer_spikes = [0.0] * len(state)
        out_sum = out_spikes = None
        for k in range(steps):
            t = start + k
            spikes, new = step(self.params, state, self.drive[t], self.dyn, target, beta, self.rng)
            for l, S in enumerate(spikes):
                layer_spikes[l] = layer_spikes[l] + S.sum()
            if observer is not None:
                observer(t, self.spikes_in[t], spikes, state, new)
            if record:
                pre.append(spikes if self.dyn.pre_factor == "spike" else [layer.r for layer in new])
                ds.append([n.s - o.s for n, o in zip(new, state)])
            state = new
            if avg_from is not None:
                out_spikes = spikes[-1].copy() if out_spikes is None else out_spikes + spikes[-1]
                if t >= avg_from:
                    out_sum = state[-1].s.copy() if out_sum is None else out_sum + state[-1].s
        window = None
        if record:
            pre_in = (self.spikes_in if self.dyn.pre_factor == "spike" else self.traces_in)[start:start + steps]
            window = Window(start, pre_in, [xp.stack([p[l] for p in pre]) for l in range(len(state))],
                            [xp.stack([d[l] for d in ds]) for l in range(len(state))])
        input_spikes = self.spikes_in[start:start + steps].sum()
        return PhaseResult(state, window, input_spikes, layer_spikes, out_sum, out_spikes)


def make_engine(params: Params, x, steps: int, dyn: SpikeDynamics, rng=None):
    """The engine ``dyn.engine`` names (``auto``: compiled for NumPy arrays, array for CuPy)."""
    xp = array_module(x)
    engine = dyn.engine
    if engine == "auto":
        engine = "compiled" if xp is np else "array"
    if engine == "compiled":
        if xp is not np:
            raise ValueError("eqspike.engine=compiled runs on the CPU (NumPy arrays); use array or auto on a GPU")
        from pipeline import spike_kernels

        return spike_kernels.CompiledEngine(params, x, steps, dyn, rng)
    return ArrayEngine(params, x, steps, dyn, rng)


# --------------------------------------------------------------------------------------------
# The phase schedule
# --------------------------------------------------------------------------------------------


def train_batch(params: Params, x, y_onehot, dyn: SpikeDynamics, lr: Sequence[float], sign: float = 1.0,
                rng=None, counts: Counts | None = None, engine=None, rule=None):
    """One EqSpike learning step on a batch; returns the output state after the free phase.

    Symmetric: T free steps, then K steps at +beta and K steps at -beta from the same free state,
    ``spike_rule(+, -)`` with scale eta / (2 beta B). One-sided: the rule over the K nudged steps
    minus the rule over the last K free steps, scale eta / (beta B). ``engine`` (a factory like
    ``make_engine``) and ``rule`` (like ``spike_rule``) replace the defaults for analyses
    (``pipeline/bias.py``)."""
    counts = Counts() if counts is None else counts
    rule = spike_rule if rule is None else rule
    B = x.shape[0]
    sizes = sizes_of(params)
    eng = (make_engine if engine is None else engine)(params, x, dyn.T + dyn.K, dyn, rng)
    beta = dyn.beta * sign

    def phase(name, state, start, steps, **kw):
        r = eng.run_phase(state, start, steps, **kw)
        count_phase(counts, name, sizes, steps, B, r.input_spikes, r.layer_spikes, kw.get("record", False))
        return r.state, r.window

    state = eng.initial_state()
    if dyn.nudge == "symmetric":
        free, _ = phase("free", state, 0, dyn.T)
        _, pos = phase("nudged", free, dyn.T, dyn.K, target=y_onehot, beta=beta, record=True)
        _, neg = phase("nudged", free, dyn.T, dyn.K, target=y_onehot, beta=-beta, record=True)
        rule(params, pos, neg, [eta / (2.0 * beta * B) for eta in lr], eng.active)
        return eng.output(free)
    # one-sided: subtract the rule measured over the last K free steps (same rate of change)
    window = min(dyn.K, dyn.T)
    state, _ = phase("free", state, 0, dyn.T - window)
    free, ref = phase("free", state, dyn.T - window, window, record=True)
    _, nudged = phase("nudged", free, dyn.T, dyn.K, target=y_onehot, beta=beta, record=True)
    rule(params, nudged, ref, [eta / (beta * B) for eta in lr], eng.active, minus_weight=dyn.K / window)
    return eng.output(free)


def read_out(params: Params, x, dyn: SpikeDynamics, rng=None, counts: Counts | None = None, observer=None):
    """Free phase of T steps; returns the two read-outs: the output state averaged over the last
    ``eval_avg_steps`` (analog, what the prediction uses) and the output spike counts over the
    whole phase (what a spiking chip would read), both ``(B, n_L)``."""
    counts = Counts() if counts is None else counts
    eng = make_engine(params, x, dyn.T, dyn, rng)
    n_avg = min(dyn.eval_avg_steps, dyn.T)
    kw = {} if observer is None else {"observer": observer}
    r = eng.run_phase(eng.initial_state(), 0, dyn.T, avg_from=dyn.T - n_avg, **kw)
    count_phase(counts, "inference", sizes_of(params), dyn.T, x.shape[0], r.input_spikes, r.layer_spikes, False)
    return r.out_sum / n_avg, r.out_spikes


def predict(params: Params, x, dyn: SpikeDynamics, rng=None, counts: Counts | None = None, observer=None):
    """Free phase of T steps; the output state averaged over the last ``eval_avg_steps``."""
    return read_out(params, x, dyn, rng, counts, observer)[0]


def evaluate(params: Params, x, labels, dyn: SpikeDynamics, batch_size: int = 1000, rng=None,
             counts: Counts | None = None) -> dict:
    """Accuracy and mean loss 1/2 ||y - s_L||^2 of the spiking network's free phase (analog
    read-out), and the accuracy of the output spike counts (ties go to the lower class)."""
    xp = array_module(x)
    correct, correct_spikes, loss = 0, 0, 0.0
    for start in range(0, x.shape[0], batch_size):
        xb, yb = x[start:start + batch_size], labels[start:start + batch_size]
        out, spikes = read_out(params, xb, dyn, rng, counts)
        target = onehot(yb, out.shape[1], xp, out.dtype)
        correct += int((out.argmax(axis=1) == yb).sum())
        correct_spikes += int((spikes.argmax(axis=1) == yb).sum())
        loss += float(0.5 * ((target - out) ** 2).sum())
    n = x.shape[0]
    return {"accuracy": correct / n, "loss": loss / n, "accuracy_spike_count": correct_spikes / n}


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
    rasters and the STDP recorder (array engine). ``observer(phase, t, spikes_in_t, spikes, old, new)``."""
    eng = ArrayEngine(params, x, dyn.T + dyn.K, dyn, rng, all_pixels=True)

    def seen_as(phase):
        return None if observer is None else (lambda *step: observer(phase, *step))

    free = eng.run_phase(eng.initial_state(), 0, dyn.T, observer=seen_as("free")).state
    signs = (1.0, -1.0) if dyn.nudge == "symmetric" else (1.0,)
    for sign in signs:
        eng.run_phase(free, dyn.T, dyn.K, target=y_onehot, beta=sign * dyn.beta,
                      observer=seen_as("nudged+" if sign > 0 else "nudged-"))


def record_raster(params: Params, x, y_onehot, dyn: SpikeDynamics, rng=None) -> dict[str, list]:
    """Spikes of every layer through the free phase and the nudged phase(s), without learning:
    ``{"free": [...], "nudged+": [...], ...}``, each a list over steps of
    ``[input, layer1, ..., output]`` spike arrays ``(B, n)``."""
    out: dict[str, list] = {}
    simulate_learning(params, x, y_onehot, dyn, rng,
                      lambda phase, t, s_in, spikes, old, new: out.setdefault(phase, []).append([s_in, *spikes]))
    return out


class EqSpikeModel:
    """EqSpike as seen by ``pipeline.train.fit``; counts the events of training and inference."""

    name = "eqspike"
    code_files = tuple(f"{__file__.rsplit('/', 1)[0]}/{m}.py"
                       for m in ("spiking", "spike_kernels", "compiled", "network", "neuron", "events", "train"))

    def __init__(self, dyn: SpikeDynamics, xp: ModuleType, seed: int, eval_batch_size: int):
        self.dyn, self.xp, self.seed, self.eval_batch_size = dyn, xp, seed, eval_batch_size
        self.compiled = dyn.engine == "compiled" or (dyn.engine == "auto" and xp is np)
        self.rng = make_rng(xp, [seed, 1, 0])
        self._reset()

    def start_epoch(self, epoch: int) -> None:
        # Bernoulli spikes: one stream per epoch, so a resumed run draws what an uninterrupted
        # one would have drawn
        self.rng = make_rng(self.xp, [self.seed, 1, epoch])

    def _reset(self) -> None:
        self.train_counts, self.test_counts = Counts(), Counts()
        self.n_train = self.n_test = 0

    def train_batch(self, params, x, labels, lr, sign: float):
        self.n_train += x.shape[0]
        target = onehot(labels, params.W[-1].shape[1], self.xp, x.dtype)
        return train_batch(params, x, target, self.dyn, lr, sign, self.rng, self.train_counts)

    def evaluate(self, params, x, labels, count: bool = True) -> dict:
        """``count``: add this evaluation's events to the inference counts (the evaluated
        weights only, not the raw weights evaluated beside a moving average)."""
        if count:
            self.n_test += x.shape[0]
        return evaluate(params, x, labels, self.dyn, self.eval_batch_size, self.rng,
                        self.test_counts if count else None)

    def epoch_extras(self) -> dict:
        """Event counts per example of this epoch, ``{"events": {"train": ..., "inference": ...}}``
        nested as ``pipeline.events.to_json``: training (free + nudged phases, updates) and
        inference (one free phase of the evaluated weights)."""
        out = {"events": {"train": to_json(self.train_counts.per_example(self.n_train)),
                          "inference": to_json(self.test_counts.per_example(self.n_test))}}
        self._reset()
        return out
