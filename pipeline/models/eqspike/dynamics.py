"""EqSpike's parameters and the state it carries: ``SpikeDynamics`` (the ``eqspike`` config,
validated by ``pipeline.core.schema``), the per-layer state, what a phase returns and what the
rule reads, and the input layer's spike trains (``encode_input``: emission and trace of the pixels).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import NamedTuple

import numpy as np

from pipeline.core.backend import ENGINES, array_module
from pipeline.core.network import Params
from pipeline.core.neuron import ACTIVATIONS, NeuronModel
from pipeline.core.schema import Checked, ConfigError, req
from pipeline.models.train import ModelOut, Phases, Schedule

PRE_FACTORS = ("spike", "trace")
INPUT_LAYERS = ("event", "dense")


@dataclass(frozen=True, kw_only=True)
class SpikeDynamics(Phases, Checked):
    """Everything that shapes a simulation (part of the ``eqspike`` config; values in conf/eqspike/)."""

    config_path = "eqspike"

    neuron: NeuronModel = req()  # the ``eqspike/neuron`` group
    # presynaptic factor of the rule: the spike (spike-driven) or its trace (ablation)
    pre_factor: str = req(choices=PRE_FACTORS)
    activation: str = req(choices=ACTIVATIONS)
    # prediction: output state averaged over the last n free steps
    eval_avg_steps: int = req(ge=1)
    # how the equations are run (not what): compiled CPU kernels, array operations, or auto
    # (compiled on the CPU, array on a GPU); the input layer event-driven or as dense products
    engine: str = req(choices=ENGINES)
    input_layer: str = req(choices=INPUT_LAYERS)

    def check(self, path: str) -> None:
        if self.eval_avg_steps > self.T:
            raise ConfigError(f"{path}.eval_avg_steps: {self.eval_avg_steps} > T = {self.T}")


@dataclass(frozen=True, kw_only=True)
class EqSpikeConfig(Schedule, SpikeDynamics):
    """The ``eqspike`` config (and the ``variant``'s, merged over it): network, dynamics, schedule,
    where it writes."""

    sizes: list[int] = req(min_len=2, ge=1)
    out: ModelOut = req()

    def check(self, path: str) -> None:
        SpikeDynamics.check(self, path)
        self.check_lr(path, self.sizes)


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



def onehot(labels, n: int, xp: ModuleType, dtype):
    t = xp.zeros((labels.shape[0], n), dtype=dtype)
    t[xp.arange(labels.shape[0]), labels] = 1.0
    return t


def make_rng(xp: ModuleType, seed):
    """Uniform [0, 1) sampler ``rng(shape, dtype)`` for Bernoulli spikes, on the arrays' device.

    This in-simulation stream differs between NumPy and CuPy (docs/gpu.md says so); everything
    that must match across backends (weights, data order) is drawn on the host."""
    if xp is np:
        gen = np.random.default_rng(seed)
        return lambda shape, dtype: gen.random(shape, dtype=dtype)
    gen = xp.random.RandomState(int(np.random.default_rng(seed).integers(2**31)))
    return lambda shape, dtype: gen.random_sample(shape).astype(dtype)



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

