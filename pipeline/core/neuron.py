"""Neuron models and rho, the activation of the whole project (docs: docs/model.md).

rho, written once here (rate-based EP, EqSpike, the STDP pairing protocol all call it):

    rho(v) = 1 / (1 + exp(-4 (v - 0.5))) = (1 + tanh(2 v - 1)) / 2       ``sigmoid`` (default)
    rho(v) = clip(v, 0, 1)                                                 ``hard_sigmoid``
    centred form (rate-based EP runs on u = 2 s - 1, z = 2 v - 1):  u = tanh(z) | clip(z, -1, 1)

A spiking neuron keeps an analog EP state s, turns it into binary spikes S, and relaxes s towards
rho of its input with a leak g (a neuron model chooses ``emit``; ``relax`` and the trace are
the same for every model):

    emit    sigma_delta   a += s;  S = [a >= theta];  a -= theta S     (deterministic, rate = s)
            bernoulli     S ~ Bernoulli(s)                              (stochastic, mean = s)
    relax   s[t+1] = (1 - g) s[t] + g v,   v = rho(input) (+ nudge)     (g = 1: no memory)
    trace   r += (S - r) / tau_syn                                     (what the neighbours see)

A new model is one class with ``emit`` and ``encode`` (the input pixels' trains), registered
with ``@register("name")`` (here or in your own module); ``relax`` and the trace are shared by
every model. The compiled engine (``pipeline/models/eqspike/compiled_engine.py``) runs the models
whose ``kernel_code`` it knows (0 sigma-delta, 1 Bernoulli); ``engine: auto`` runs any other model
on the array engine, ``engine: compiled`` refuses it (docs/architecture.md, "Add a neuron model").
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from pipeline.core.backend import array_module
from pipeline.core.schema import Checked, ConfigError, opt, req

ACTIVATIONS = ("sigmoid", "hard_sigmoid")  # the one list of activations (every model's config)


def check_activation(name: str) -> str:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: unknown activation {name!r} (one of {ACTIVATIONS})")
    return name


def rho(v, name: str = "sigmoid", out=None):
    """rho(v) in the rate form; ``out=v`` computes it in place."""
    xp = array_module(v)
    check_activation(name)
    if name == "hard_sigmoid":
        return xp.clip(v, 0.0, 1.0, out=out)
    if out is None:
        return (xp.tanh(2.0 * v - 1.0) + 1.0) * 0.5
    z = xp.multiply(v, 2.0, out=out)
    z -= 1.0
    xp.tanh(z, out=z)
    z += 1.0
    z *= 0.5
    return z


def rho_centred(z, name: str = "sigmoid"):
    """u = 2 rho(v) - 1 as a function of z = 2 v - 1, in place."""
    xp = array_module(z)
    check_activation(name)
    if name == "hard_sigmoid":
        return xp.clip(z, -1.0, 1.0, out=z)
    return xp.tanh(z, out=z)


# --------------------------------------------------------------------------------------------
# Spiking neuron models
# --------------------------------------------------------------------------------------------

MODELS: dict[str, type] = {}


def register(name: str):
    def add(cls):
        cls.name = name
        MODELS[name] = cls
        return cls

    return add


@dataclass(frozen=True, kw_only=True)
class NeuronModel(Checked):
    """Parameters of a spiking neuron: the ``eqspike.neuron`` config (``conf/eqspike/neuron/``; the
    values live there, not here). ``model`` names a class of ``MODELS`` (``@register``)."""

    config_path = "eqspike.neuron"

    model: str = req(min_len=1)  # a registered model: sigma_delta | bernoulli | rate (no spikes) | ...
    # sigma-delta: spike when the accumulator reaches it; rate = s / threshold. >= 1 keeps the
    # spikes binary (at most one per step, since s <= 1)
    threshold: float = req(ge=1.0)
    # sigma-delta after a spike: subtract the threshold (the rate is s / threshold) or reset the
    # accumulator to zero (rate 1 / ceil(threshold / s): integrate-and-fire)
    reset: str = opt("subtract", choices=("subtract", "zero"))
    # synaptic trace r += (S - r) / tau; >= 1 so that the trace stays in [0, 1]
    tau_syn_steps: float = req(ge=1.0)
    # state update s += leak (rho(.) - s); 1: no leak, the state has no memory of its past
    leak: float = req(gt=0, le=1)

    def check(self, path: str) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"{path}.model: unknown neuron model {self.model!r} (registered: {sorted(MODELS)})")

    @property
    def kind(self):
        try:
            return MODELS[self.model]
        except KeyError:
            raise ValueError(f"neuron.model: unknown neuron model {self.model!r} (registered: {sorted(MODELS)})") from None

    @property
    def alpha(self) -> float:
        """Trace factor 1 / tau_syn."""
        return 1.0 / self.tau_syn_steps


@register("sigma_delta")
class SigmaDelta:
    """Integrate the state, spike at threshold, subtract: the spike count after n steps is
    floor(sum s / theta), so the rate encodes s with no noise beyond the rounding."""

    kernel_code = 0

    @staticmethod
    def emit(s, a, neuron: NeuronModel, xp: ModuleType, rng=None):
        a = a + s
        spikes = (a >= neuron.threshold).astype(s.dtype)
        if neuron.reset == "zero":
            a *= 1 - spikes
        else:
            a -= neuron.threshold * spikes
        return spikes, a

    @staticmethod
    def rate(x, neuron: NeuronModel, xp: ModuleType):
        """Spikes per step of a constant input x: x / threshold, or with the zero reset one spike
        every ceil(threshold / x) steps."""
        q = x / x.dtype.type(neuron.threshold)
        if neuron.reset == "zero":
            q = xp.where(q > 0, 1 / xp.ceil(1 / xp.maximum(q, xp.finfo(x.dtype).tiny)), 0).astype(x.dtype)
        return q

    @staticmethod
    def encode(x, steps: int, neuron: NeuronModel, xp: ModuleType, rng=None):
        """Spike train of a constant input x, ``(steps, B, n)``: the count after t + 1 steps is
        floor((t + 1) x / theta) (no drift of a float32 accumulator)."""
        k = xp.arange(steps + 1, dtype=x.dtype).reshape(-1, 1, 1)
        counts = xp.floor(k * SigmaDelta.rate(x, neuron, xp))
        return counts[1:] - counts[:-1]


@register("bernoulli")
class Bernoulli:
    """S ~ Bernoulli(s): the rate encodes s, with binomial noise."""

    kernel_code = 1
    stochastic = True  # its spikes are random draws (a model without this attribute is deterministic)

    @staticmethod
    def emit(s, a, neuron: NeuronModel, xp: ModuleType, rng=None):
        return (rng(s.shape, s.dtype) < s).astype(s.dtype), a

    @staticmethod
    def encode(x, steps: int, neuron: NeuronModel, xp: ModuleType, rng=None):
        return xp.stack([Bernoulli.emit(x, None, neuron, xp, rng)[0] for _ in range(steps)])


@register("rate")
class Rate:
    """No spikes: every neuron sends its rate s / threshold (a real number) where a spiking one
    sends its spikes, through the same trace, leak and rule. The reference of the bias check
    (``pipeline/analysis/bias.py``): what the spikes add to the same dynamics. Not a chip's neuron."""

    @staticmethod
    def emit(s, a, neuron: NeuronModel, xp: ModuleType, rng=None):
        return s / s.dtype.type(neuron.threshold), a

    @staticmethod
    def encode(x, steps: int, neuron: NeuronModel, xp: ModuleType, rng=None):
        return xp.broadcast_to(x / x.dtype.type(neuron.threshold), (steps, *x.shape)).copy()


def emit(s, a, neuron: NeuronModel, xp: ModuleType, rng=None):
    """Spikes from the states (and the new accumulators) under ``neuron``'s model."""
    return neuron.kind.emit(s, a, neuron, xp, rng)


def relax(s_old, v, neuron: NeuronModel):
    """s[t+1] = (1 - g) s[t] + g v (in place on ``v``; g = 1 returns ``v``)."""
    g = neuron.leak
    if g == 1.0:
        return v
    v -= s_old
    v *= g
    v += s_old
    return v
