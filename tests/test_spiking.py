"""EqSpike's spiking network and spike-driven rule (docs/model.md), checked by hand."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from pipeline.core.events import Counts
from pipeline.core.neuron import NeuronModel, emit
from pipeline.models import ep
from pipeline.models import eqspike as sp
from tests.conftest import spike_dynamics

SD = NeuronModel(model="sigma_delta", threshold=1.0, tau_syn_steps=2.0, leak=1.0)


def make_dyn(T, K, beta, neuron=SD, nudge="symmetric", pre_factor="spike", activation="sigmoid",
             eval_avg_steps=1, engine="array", input_layer="event"):
    return spike_dynamics(T=T, K=K, beta=beta, neuron=neuron, nudge=nudge, pre_factor=pre_factor,
                            activation=activation, eval_avg_steps=eval_avg_steps, engine=engine,
                            input_layer=input_layer)


def flat(counts):
    return {".".join(k): v for k, v in counts.host().items()}


def hard(T=3, K=2, beta=0.5, **kw):
    return make_dyn(T=T, K=K, beta=beta, neuron=SD, activation="hard_sigmoid", **kw)


def test_sigma_delta_input_train_counts():
    x = np.array([[0.0, 0.3, 0.5, 1.0, 0.77]], dtype=np.float32)
    spikes, traces = sp.encode_input(x, 20, SD)
    assert set(np.unique(spikes)) <= {0.0, 1.0}
    counts = spikes.cumsum(axis=0)[:, 0, :]
    for t in range(20):
        np.testing.assert_array_equal(counts[t], np.floor((t + 1) * x[0].astype(np.float64) + 1e-9))
    # trace r += (S - r) / 2, computed step by step
    r = np.zeros_like(x)
    for t in range(20):
        r += (spikes[t] - r) / 2.0
        np.testing.assert_allclose(traces[t], r, atol=1e-6)


def test_iterative_sigma_delta_emit_matches_the_rate():
    s = np.array([[0.25, 0.625]])  # exact in binary: no rounding drift
    a = np.zeros_like(s)
    total = np.zeros_like(s)
    for _ in range(40):
        S, a = emit(s, a, SD, np)
        total += S
    np.testing.assert_array_equal(total, [[10, 25]])


def test_hand_computed_spiking_trajectory():
    """x -> h -> o, scalar weights W1 = 0.5, W2 = 0.4, b = (0.1, 0.2), hard sigmoid, no leak,
    tau = 2 (r += (S - r) / 2), x = 1 (a spike every step: r_x = 0.5, 0.75, 0.875)."""
    params = ep.Params([np.array([[0.5]]), np.array([[0.4]])], [np.array([0.1]), np.array([0.2])])
    x = np.array([[1.0]])
    dyn = hard()
    spikes_in, traces_in = sp.encode_input(x, 3, SD)
    np.testing.assert_allclose(traces_in[:, 0, 0], [0.5, 0.75, 0.875])
    drive = sp.input_drive(params, traces_in, np.arange(1))
    state = sp.initial_state(params, 1)
    # step 0: nobody spikes (s = 0). h = 0.5*0.5 + 0.1 = 0.35, o = clip(0.4*0 + 0.2) = 0.2
    S, state = sp.step(params, state, drive[0], dyn)
    assert [float(v[0, 0]) for v in S] == [0.0, 0.0]
    assert [float(l.s[0, 0]) for l in state] == pytest.approx([0.35, 0.2])
    # step 1: a_h = 0.35, a_o = 0.2: no spikes; h = 0.5*0.75 + 0.1 = 0.475, o = 0.2
    S, state = sp.step(params, state, drive[1], dyn)
    assert [float(l.s[0, 0]) for l in state] == pytest.approx([0.475, 0.2])
    # step 2: a_h = 0.825, a_o = 0.4: no spikes; h = 0.5*0.875 + 0.1 = 0.5375
    S, state = sp.step(params, state, drive[2], dyn)
    assert [float(l.s[0, 0]) for l in state] == pytest.approx([0.5375, 0.2])
    # step 3 (drive 0.5*0.9375 + 0.1): a_h = 1.3625 -> spike, r_h = 0.5 -> o = 0.4*0.5 + 0.2 = 0.4
    drive3 = np.array([[0.5 * 0.9375 + 0.1]])
    S, state = sp.step(params, state, drive3, dyn)
    assert [float(v[0, 0]) for v in S] == [1.0, 0.0]
    assert float(state[0].a[0, 0]) == pytest.approx(0.3625)
    assert [float(l.s[0, 0]) for l in state] == pytest.approx([0.5 * 0.9375 + 0.1, 0.4])
    # nudged step, y = 1, beta = 0.5, outside rho: o = clip(0.4 r_h + 0.2) + 0.5 (1 - 0.4)
    S, nudged = sp.step(params, state, drive3, dyn, target=np.array([[1.0]]), beta=0.5)
    r_h = 0.5 + (float(S[0][0, 0]) - 0.5) / 2
    assert float(nudged[1].s[0, 0]) == pytest.approx(0.4 * r_h + 0.2 + 0.5 * 0.6)


def test_neurons_see_spikes_not_states():
    """Two states that differ only in the output's analog value (same accumulators, traces and
    no spike either way) give the hidden layer the same update."""
    params = ep.init_params([4, 3, 2], seed=0, dtype="float64")
    drive = np.ones((1, 3)) * 0.2
    base = sp.initial_state(params, 1)
    a = [base[0], sp.Layer(np.full((1, 2), 0.30), np.zeros((1, 2)), np.full((1, 2), 0.1))]
    b = [base[0], sp.Layer(np.full((1, 2), 0.35), np.zeros((1, 2)), np.full((1, 2), 0.1))]
    dyn = make_dyn(T=1, K=1, beta=0.1, neuron=SD)
    _, na = sp.step(params, a, drive, dyn)
    _, nb = sp.step(params, b, drive, dyn)
    np.testing.assert_array_equal(na[0].s, nb[0].s)


def simulate(params, x, dyn, y, beta):
    """Free phase then a nudged phase, step by step with ``sp.step``; returns per nudged step
    (input spikes, spikes, states before, states after)."""
    spikes_in, _ = sp.encode_input(x, dyn.T + dyn.K, dyn.neuron)
    _, traces_in = sp.encode_input(x, dyn.T + dyn.K, dyn.neuron)
    drive = sp.input_drive(params, traces_in, np.arange(x.shape[1]))
    state = sp.initial_state(params, x.shape[0])
    for t in range(dyn.T):
        _, state = sp.step(params, state, drive[t], dyn)
    record = []
    for t in range(dyn.T, dyn.T + dyn.K):
        S, new = sp.step(params, state, drive[t], dyn, y, beta)
        record.append((spikes_in[t], S, state, new))
        state = new
    return record


@pytest.mark.parametrize("engine", ["array", "compiled"])
def test_accumulated_update_is_the_per_synapse_formula(engine):
    """dW_ij = eta / (2 beta B) sum_b sum_t [S_j ds_i + S_i ds_j](+beta) - [...](-beta),
    element by element; input synapses: the presynaptic term only."""
    rng = np.random.default_rng(0)
    sizes = [5, 4, 3]
    params = ep.init_params(sizes, seed=1, dtype="float64")
    params.W[0][:] *= 6  # strong enough weights that hidden and output neurons spike
    params.W[1][:] *= 6
    x = rng.random((2, 5)) * (rng.random((2, 5)) > 0.2)
    y = np.eye(3)[[0, 2]]
    dyn = make_dyn(T=12, K=8, beta=0.4, neuron=SD, engine=engine)
    lr = [0.3, 0.2]
    plus, minus = simulate(params, x, dyn, y, 0.4), simulate(params, x, dyn, y, -0.4)
    assert sum(float(S[0].sum() + S[1].sum()) for _, S, _, _ in plus) > 5, "test needs spikes"
    expected = [np.zeros_like(w) for w in params.W]
    for sign, record in ((1.0, plus), (-1.0, minus)):
        for S_in, S, old, new in record:
            pre = [S_in, *S]
            ds = [np.zeros_like(x)] + [n.s - o.s for n, o in zip(new, old)]
            for l in range(2):
                for b in range(2):
                    for i in range(sizes[l]):
                        for j in range(sizes[l + 1]):
                            term = pre[l][b, i] * ds[l + 1][b, j]
                            if l > 0:
                                term += pre[l + 1][b, j] * ds[l][b, i]
                            expected[l][i, j] += sign * term
    before = copy.deepcopy(params)
    sp.train_batch(params, x, y, dyn, lr)
    for l in range(2):
        np.testing.assert_allclose(params.W[l] - before.W[l], lr[l] / (2 * 0.4 * 2) * expected[l], atol=1e-12)
    db = [(plus[-1][3][l].s - minus[-1][3][l].s).sum(0) for l in range(2)]
    for l in range(2):
        np.testing.assert_allclose(params.b[l] - before.b[l], lr[l] / (2 * 0.4 * 2) * db[l], atol=1e-12)


@pytest.mark.parametrize("engine", ["array", "compiled"])
def test_one_sided_subtracts_the_free_phase_rule(engine):
    """With beta nudging nothing (target equal to the free output is not exact, so use a
    one-step check): one-sided update = (rule over K nudged steps - rule over last K free) / beta."""
    rng = np.random.default_rng(1)
    params = ep.init_params([5, 4, 3], seed=1, dtype="float64")
    params.W[0][:] *= 6
    x = rng.random((2, 5))
    y = np.eye(3)[[1, 2]]
    dyn = make_dyn(T=10, K=4, beta=0.3, nudge="one_sided", neuron=SD, engine=engine)
    before = copy.deepcopy(params)
    sp.train_batch(params, x, y, dyn, [1.0, 1.0])
    # the reference: input-layer rule over steps 6..9 (free) and 10..13 (nudged)
    spikes_in, traces_in = sp.encode_input(x, 14, SD)
    drive = sp.input_drive(before, traces_in, np.arange(5))
    state = sp.initial_state(before, 2)
    free_acc = nudged_acc = 0.0
    for t in range(14):
        nudge = t >= 10
        _, new = sp.step(before, state, drive[t], dyn, y if nudge else None, 0.3 if nudge else 0.0)
        term = spikes_in[t].T @ (new[0].s - state[0].s)
        if nudge:
            nudged_acc = nudged_acc + term
        elif t >= 6:
            free_acc = free_acc + term
        state = new
    np.testing.assert_allclose(params.W[0] - before.W[0], (nudged_acc - free_acc) / (0.3 * 2), atol=1e-12)


def test_counters_match_the_raster():
    params = ep.init_params([6, 5, 3], seed=2, dtype="float64")
    params.W[0][:] *= 5
    x = np.random.default_rng(2).random((3, 6))
    dyn = make_dyn(T=6, K=1, beta=0.1, neuron=SD)
    counts, raster = Counts(), []
    sp.predict(params, x, dyn, counts=counts,
               observer=lambda t, s_in, spikes, old, new: raster.append([s_in, *spikes]))
    c = flat(counts)
    n_in = sum(float(s[0].sum()) for s in raster)
    n_h = sum(float(s[1].sum()) for s in raster)
    n_o = sum(float(s[2].sum()) for s in raster)
    assert c["inference.input.spikes"] == n_in
    assert c["inference.input.synaptic_events"] == n_in * 5
    assert c["inference.layer1.spikes"] == n_h and c["inference.layer1.synaptic_events"] == n_h * 3
    assert c["inference.layer2.spikes"] == n_o and c["inference.layer2.synaptic_events"] == n_o * 5
    assert c["inference.layer1.neuron_updates"] == 6 * 3 * 5
    assert c["inference.all.time_steps"] == 6
    assert n_h > 0


def test_silent_pixels_are_left_out_exactly():
    """Leaving out pixels that are zero in the whole batch changes nothing."""
    rng = np.random.default_rng(3)
    x = rng.random((2, 6))
    x[:, [1, 4]] = 0.0
    out = []
    for active in (np.arange(6), sp.active_inputs(x)):
        params = ep.init_params([6, 4, 3], seed=0, dtype="float64")
        _, traces = sp.encode_input(x[:, active], 5, SD)
        out.append(sp.input_drive(params, traces, active))
    np.testing.assert_allclose(out[0], out[1], atol=1e-12)
    assert list(sp.active_inputs(x)) == [0, 2, 3, 5]


@pytest.mark.parametrize("engine", ["array", "compiled"])
@pytest.mark.parametrize("model", ["sigma_delta", "bernoulli"])
def test_learning_improves_a_toy_problem(model, engine):
    from tests.conftest import synthetic_arrays

    arrays = synthetic_arrays(n_train=200, n_test=100, side=4)
    x = arrays["train-images-idx3-ubyte"].reshape(200, -1) / 255.0
    y = arrays["train-labels-idx1-ubyte"].astype(int)
    params = ep.init_params([16, 32, 10], seed=0, dtype="float64")
    dyn = make_dyn(T=20, K=10, beta=0.5, eval_avg_steps=5, engine=engine,
                           neuron=NeuronModel(model=model, threshold=1.0, tau_syn_steps=3.0, leak=1.0))
    rng = sp.make_rng(np, 0)
    acc0 = sp.evaluate(params, x, y, dyn, rng=rng)["accuracy"]
    for _ in range(15):
        for i in range(0, 200, 10):
            sp.train_batch(params, x[i:i + 10], np.eye(10)[y[i:i + 10]], dyn, [0.3, 0.15], rng=rng)
    acc1 = sp.evaluate(params, x, y, dyn, rng=rng)["accuracy"]
    assert acc1 > max(0.6, acc0 + 0.3), (acc0, acc1)
