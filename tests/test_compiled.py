"""The compiled engines (Numba) against the array engines they must reproduce: same spikes, same
event counts, same weight change, on a fixed batch and fixed weights."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.compiled import fast_tanh_array
from pipeline.core.events import Counts
from pipeline.core.network import copy_params, init_params
from pipeline.core.neuron import NeuronModel
from pipeline.models import ep, eqspike
from tests.conftest import ep_dynamics, spike_dynamics


def mnist_like(B: int, n: int, seed: int, dtype) -> np.ndarray:
    """Silent pixels, rates in (0, 0.5] and (0.5, 1), and pixels at exactly 1 (the complemented
    branch of the event-driven input layer), as MNIST has."""
    rng = np.random.default_rng(seed)
    x = rng.random((B, n))
    x[x < 0.4] = 0.0
    x[x > 0.9] = 1.0
    x[:, : n // 8] = 0.0  # pixels silent in the whole batch
    return x.astype(dtype)


def run(engine, dtype, model="sigma_delta", nudge="symmetric", pre_factor="spike", input_layer="event",
        activation="sigmoid", seed=0):
    x = mnist_like(6, 40, seed, dtype)
    y = np.eye(5, dtype=dtype)[[0, 1, 2, 3, 4, 0]]
    params = init_params([40, 24, 5], seed=1, dtype=dtype)
    params.W[0][:] *= 3  # hidden neurons spike in a short run
    params.W[1][:] *= 3
    dyn = spike_dynamics(T=14, K=8, beta=0.5, nudge=nudge, pre_factor=pre_factor, activation=activation,
                                eval_avg_steps=4, engine=engine, input_layer=input_layer,
                                neuron=NeuronModel(model=model, threshold=1.0, tau_syn_steps=3.0, leak=1.0))
    before = copy_params(params)
    counts = Counts()
    # the windows the rule reads (spikes and state changes of every step) are the spikes to compare
    windows = []
    real_rule = eqspike.spike_rule

    def spy(p, plus, minus, *a, **k):
        windows.append([np.concatenate([np.asarray(w) for w in win.pre], axis=-1) for win in (plus, minus)])
        return real_rule(p, plus, minus, *a, **k)

    out = eqspike.train_batch(params, x, y, dyn, [0.2, 0.1], 1.0, eqspike.make_rng(np, 7), counts, rule=spy)
    pred = eqspike.predict(before, x, dyn, eqspike.make_rng(np, 8), counts)
    delta = [a - b for a, b in zip(params.W + params.b, before.W + before.b)]
    return delta, counts.host(), windows[0], np.asarray(out), np.asarray(pred)


def rel(a, b):
    return max(float(np.linalg.norm(u - v) / max(np.linalg.norm(v), 1e-30)) for u, v in zip(a, b))


@pytest.mark.parametrize("input_layer", ["event", "dense"])
@pytest.mark.parametrize("pre_factor", ["spike", "trace"])
@pytest.mark.parametrize("nudge", ["symmetric", "one_sided"])
@pytest.mark.parametrize("model", ["sigma_delta", "bernoulli"])
def test_float64_same_spikes_counts_and_update(model, nudge, pre_factor, input_layer):
    d_a, c_a, w_a, o_a, p_a = run("array", "float64", model, nudge, pre_factor, input_layer)
    d_c, c_c, w_c, o_c, p_c = run("compiled", "float64", model, nudge, pre_factor, input_layer)
    assert sum(float(w.sum()) for w in w_a) > 0, "the test needs spikes"
    for a, c in zip(w_a, w_c):
        np.testing.assert_array_equal(a, c) if pre_factor == "spike" else np.testing.assert_allclose(a, c, atol=1e-12)
    assert c_a == c_c
    assert rel(d_c, d_a) < 1e-10
    np.testing.assert_allclose(o_c, o_a, atol=1e-12)
    np.testing.assert_allclose(p_c, p_a, atol=1e-12)


@pytest.mark.parametrize("activation", ["sigmoid", "hard_sigmoid"])
@pytest.mark.parametrize("nudge", ["symmetric", "one_sided"])
def test_float32_same_spikes_and_update_within_1e5(nudge, activation):
    d_a, c_a, w_a, _, p_a = run("array", "float32", nudge=nudge, activation=activation)
    d_c, c_c, w_c, _, p_c = run("compiled", "float32", nudge=nudge, activation=activation)
    for a, c in zip(w_a, w_c):
        np.testing.assert_array_equal(a, c)
    assert c_a == c_c
    assert rel(d_c, d_a) < 1e-5
    np.testing.assert_allclose(p_c, p_a, atol=1e-5)


def test_engines_fail_clearly():
    with pytest.raises(ValueError, match="eqspike.engine"):
        spike_dynamics(T=2, K=1, beta=0.1, nudge="symmetric", pre_factor="spike", activation="sigmoid",
                              eval_avg_steps=1, engine="fast", neuron=NeuronModel(model="sigma_delta", threshold=1.0, tau_syn_steps=2.0, leak=1.0))
    with pytest.raises(ValueError, match="neuron.model"):
        NeuronModel(model="izhikevich", threshold=1.0, tau_syn_steps=2.0, leak=1.0)


def test_fast_tanh_error_bound():
    z = np.linspace(-12, 12, 400_001).astype(np.float32)
    out = np.empty_like(z)
    fast_tanh_array(z, out)
    err = np.abs(out.astype(np.float64) - np.tanh(z.astype(np.float64)))
    assert err.max() < 7e-7
    # near saturation the approximation wiggles within its error bound
    assert np.all(np.abs(out) <= 1.0 + 7e-7)
    assert np.all(np.diff(out) >= -5e-7)


@pytest.mark.parametrize("kw", [{}, {"nudge_placement": "inside"}, {"nudge": "one_sided"}, {"activation": "hard_sigmoid"}])
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-5)])
def test_rate_ep_compiled_matches_array(kw, dtype, tol):
    x = mnist_like(8, 40, 3, dtype)
    target = ep.centred_target(np.arange(8) % 5, 5, np, dtype)
    results = []
    for engine in ("array", "compiled"):
        params = init_params([40, 24, 5], seed=2, dtype=dtype)
        before = copy_params(params)
        dyn = ep_dynamics(T=12, K=5, beta=0.3, engine=engine, **kw)
        out = ep.train_batch(params, x, target, dyn, [0.1, 0.05])
        results.append(([a - b for a, b in zip(params.W + params.b, before.W + before.b)], out))
    (d_a, o_a), (d_c, o_c) = results
    assert rel(d_c, d_a) < tol
    np.testing.assert_allclose(o_c, o_a, atol=tol)


def test_both_engines_agree_on_the_reset_of_the_sigma_delta_accumulator():
    """eqspike.neuron.reset: the array engine (neuron.SigmaDelta) and the compiled kernel give the
    same update and the same event counts; the zero reset makes fewer input spikes than subtracting."""
    rng = np.random.default_rng(0)
    x = rng.random((6, 40))
    x[x < 0.3] = 0
    y = np.eye(5)[[0, 1, 2, 3, 4, 0]]
    spikes_in = {}
    for reset in ("subtract", "zero"):
        out = {}
        for engine in ("compiled", "array"):
            params = init_params([40, 24, 5], 1, dtype="float64")
            params.W[0][:] *= 3
            params.W[1][:] *= 3
            dyn = spike_dynamics(T=14, K=8, beta=0.5, nudge="symmetric", pre_factor="spike", activation="sigmoid",
                                 eval_avg_steps=4, engine=engine,
                                 neuron=NeuronModel(model="sigma_delta", threshold=1.0, tau_syn_steps=3.0, leak=0.3,
                                                    reset=reset))
            counts = Counts()
            eqspike.train_batch(params, x, y, dyn, [0.2, 0.1], 1.0, None, counts)
            out[engine] = (params, counts.host())
        (pc, cc), (pa, ca) = out["compiled"], out["array"]
        assert cc == ca, reset
        assert rel(pc.W, pa.W) < 1e-12, reset
        spikes_in[reset] = ca[("free", "input", "spikes")]
    assert 0 < spikes_in["zero"] < spikes_in["subtract"]
