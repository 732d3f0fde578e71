"""The recipe of docs/architecture.md, "Add a neuron model", stays true: a model registered from
outside the library validates through the config, trains through the public API and the DVC
stage's own path, and the compiled engine refuses it by name instead of running another model."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import Config
from pipeline.core import neuron
from pipeline.core.events import Counts
from pipeline.core.network import copy_params, init_params
from pipeline.core.schema import ConfigError, parse
from pipeline.models import eqspike
from runner.config import load_config


@pytest.fixture
def half_threshold():
    """A throwaway neuron model: spike at every step the state is at least 0.1 (deterministic)."""

    @neuron.register("half_threshold")
    class HalfThreshold:
        @staticmethod
        def emit(s, a, nm, xp, rng=None):
            return (s >= 0.1).astype(s.dtype), a

        @staticmethod
        def encode(x, steps, nm, xp, rng=None):
            return xp.stack([(x >= 0.5).astype(x.dtype)] * steps)

    yield HalfThreshold
    del neuron.MODELS["half_threshold"]


def test_a_registered_neuron_model_trains_one_batch(half_threshold):
    raw, _ = load_config(["eqspike.neuron.model=half_threshold", "eqspike.T=8", "eqspike.K=4",
                          "eqspike.eval_avg_steps=2", "eqspike.sizes=[784,16,10]"])
    cfg = parse(Config, raw).eqspike
    assert cfg.neuron.kind is half_threshold
    model = eqspike.EqSpikeModel(cfg, np, seed=0, eval_batch_size=10)  # engine auto: the array engine
    assert not model.compiled
    rng = np.random.default_rng(0)
    x = (rng.random((4, 784)) > 0.7).astype(np.float32)
    params = init_params(cfg.sizes, 0)
    before = copy_params(params)
    model.train_batch(params, x, np.array([0, 1, 2, 3]), list(cfg.lr), 1.0)
    assert any(not np.array_equal(a, b) for a, b in zip(params.W, before.W)), "the rule changed no weight"
    assert model.train_counts.host()[("free", "input", "spikes")] == float(x.sum() * cfg.T)
    figures = model.evaluate(params, x, np.array([0, 1, 2, 3]))
    assert 0.0 <= figures["accuracy"] <= 1.0


def test_the_compiled_engine_refuses_a_model_it_has_no_kernel_for(half_threshold):
    dyn = eqspike.SpikeDynamics(T=4, K=2, beta=0.5, nudge="symmetric", pre_factor="spike", activation="sigmoid",
                                eval_avg_steps=2, engine="compiled", input_layer="event",
                                neuron=neuron.NeuronModel(model="half_threshold", threshold=1.0, tau_syn_steps=2.0,
                                                          leak=1.0))
    x = np.ones((2, 6), np.float32)
    with pytest.raises(ValueError, match="half_threshold"):
        eqspike.train_batch(init_params([6, 3, 2], 0), x, np.eye(2, dtype=np.float32), dyn, [0.1, 0.1], 1.0,
                            None, Counts())


def test_an_unknown_kernel_code_raises_instead_of_running_another_model():
    from pipeline.models.eqspike.compiled_engine import CompiledEngine

    @neuron.register("mislabelled")
    class Mislabelled(neuron.SigmaDelta):
        kernel_code = 7

    try:
        dyn = eqspike.SpikeDynamics(T=4, K=2, beta=0.5, nudge="symmetric", pre_factor="spike", activation="sigmoid",
                                    eval_avg_steps=2, engine="compiled", input_layer="event",
                                    neuron=neuron.NeuronModel(model="mislabelled", threshold=1.0, tau_syn_steps=2.0,
                                                              leak=1.0))
        with pytest.raises(ValueError, match="kernel_code 7"):
            CompiledEngine(init_params([6, 3, 2], 0), np.ones((2, 6), np.float32), 6, dyn)
    finally:
        del neuron.MODELS["mislabelled"]


def test_an_unregistered_model_is_named_with_the_registered_ones():
    raw, _ = load_config()
    raw["eqspike"]["neuron"]["model"] = "lif"
    with pytest.raises(ConfigError, match=r"eqspike\.neuron\.model: unknown neuron model 'lif' \(registered: "):
        parse(Config, raw)
