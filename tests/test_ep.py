"""Rate-based EP dynamics and learning rule (docs/model.md), checked by hand."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from pipeline.models import ep
from tests.conftest import ep_dynamics


def one_one_one(activation="hard_sigmoid"):
    """x -> h -> o with scalar weights: W1 = 0.5, W2 = 0.4, b = (0.1, 0.2)."""
    params = ep.Params([np.array([[0.5]]), np.array([[0.4]])], [np.array([0.1]), np.array([0.2])])
    return params, np.array([[1.0]])


def rates(u):
    return [float(ep.to_rate(v)[0, 0]) for v in u]


def test_hand_computed_free_trajectory():
    # h[t+1] = clip(0.5 x + 0.1 + 0.4 o[t]),  o[t+1] = clip(0.4 h[t] + 0.2), from h = o = 0
    params, x = one_one_one()
    dyn = ep_dynamics(T=3, K=1, beta=0.5, activation="hard_sigmoid")
    c = ep.offsets(params, x)
    u = ep.initial_state(params, 1)
    expected = [(0.6, 0.2), (0.68, 0.44), (0.776, 0.472)]
    for h, o in expected:
        u = ep.step(params, c, u, dyn)
        assert rates(u) == pytest.approx([h, o], abs=1e-12)


@pytest.mark.parametrize("placement,o_expected", [("outside", 1.5664), ("inside", 1.0)])
def test_hand_computed_nudged_step(placement, o_expected):
    # from (h, o) = (0.776, 0.472), y = 1, beta = 2:
    #   outside: o = clip(0.4*0.776 + 0.2) + 2 (1 - 0.472) = 0.5104 + 1.056
    #   inside:  o = clip(0.5104 + 1.056) = 1
    params, x = one_one_one()
    dyn = ep_dynamics(T=3, K=1, beta=2.0, activation="hard_sigmoid", nudge_placement=placement)
    u = ep.free_phase(params, x, dyn)
    u = ep.step(params, ep.offsets(params, x), u, dyn, target=np.array([[1.0]]), beta=2.0)
    assert rates(u) == pytest.approx([0.6 + 0.4 * 0.472, o_expected], abs=1e-12)


def test_sigmoid_step_matches_the_formula():
    params, x = one_one_one()
    dyn = ep_dynamics(T=1, K=1, beta=0.1, activation="sigmoid")
    u = ep.free_phase(params, x, dyn, steps=2)
    sig = lambda v: 1.0 / (1.0 + np.exp(-4.0 * (v - 0.5)))
    h1, o1 = sig(0.6), sig(0.2)
    assert rates(u) == pytest.approx([sig(0.6 + 0.4 * o1), sig(0.4 * h1 + 0.2)], abs=1e-12)


def naive_phase(params, x, steps, s=None, y=None, beta=0.0, inside=False, activation="sigmoid"):
    """The rate form of docs/model.md, written plainly."""
    W, b = params
    L = len(W)
    s = [np.zeros((x.shape[0], w.shape[1])) for w in W] if s is None else s
    for _ in range(steps):
        new = []
        for l in range(L):
            v = (x if l == 0 else s[l - 1]) @ W[l] + b[l]
            if l < L - 1:
                v = v + s[l + 1] @ W[l + 1].T
            if l == L - 1 and beta:
                new.append(ep.rho(v + beta * (y - s[l]), activation) if inside
                           else ep.rho(v, activation) + beta * (y - s[l]))
            else:
                new.append(ep.rho(v, activation))
        s = new
    return s


@pytest.mark.parametrize("activation", ["sigmoid", "hard_sigmoid"])
@pytest.mark.parametrize("placement", ["outside", "inside"])
def test_centred_dynamics_equal_the_rate_form(activation, placement):
    rng = np.random.default_rng(3)
    params = ep.init_params([7, 6, 5, 3], seed=1, dtype="float64")
    x = rng.random((4, 7))
    y = np.eye(3)[rng.integers(0, 3, 4)]
    dyn = ep_dynamics(T=6, K=4, beta=0.3, activation=activation, nudge_placement=placement)
    s_free = naive_phase(params, x, 6, activation=activation)
    u_free = ep.free_phase(params, x, dyn)
    for a, b in zip(u_free, s_free):
        np.testing.assert_allclose(ep.to_rate(a), b, atol=1e-13)
    s_nudged = naive_phase(params, x, 4, s_free, y, -0.3, placement == "inside", activation)
    u_nudged = ep.run_phase(params, ep.offsets(params, x), u_free, 4, dyn, 2 * y - 1, -0.3)
    for a, b in zip(u_nudged, s_nudged):
        np.testing.assert_allclose(ep.to_rate(a), b, atol=1e-13)


def test_update_is_the_per_synapse_formula():
    """dW_ij = eta/(beta B) sum_b (s_i^b s_j^b - s_i* s_j*), element by element."""
    rng = np.random.default_rng(0)
    sizes = [4, 3, 2]
    params = ep.init_params(sizes, seed=2, dtype="float64")
    x = rng.random((5, 4))
    y = rng.integers(0, 2, 5)
    dyn = ep_dynamics(T=8, K=5, beta=0.4, nudge="one_sided")
    lr = [0.3, 0.2]
    free = naive_phase(params, x, 8)
    nudged = naive_phase(params, x, 5, free, np.eye(2)[y], 0.4)
    before = copy.deepcopy(params)
    ep.train_batch(params, x, ep.centred_target(y, 2, np, np.float64), dyn, lr)
    layers_free, layers_nudged = [x, *free], [x, *nudged]
    for l in range(2):
        expected = np.zeros_like(before.W[l])
        for i in range(expected.shape[0]):
            for j in range(expected.shape[1]):
                for b in range(5):
                    expected[i, j] += (layers_nudged[l][b, i] * layers_nudged[l + 1][b, j]
                                       - layers_free[l][b, i] * layers_free[l + 1][b, j])
        expected *= lr[l] / (0.4 * 5)
        np.testing.assert_allclose(params.W[l] - before.W[l], expected, atol=1e-13)
        np.testing.assert_allclose(params.b[l] - before.b[l],
                                   lr[l] / 2.0 * (nudged[l] - free[l]).sum(0), atol=1e-13)


def test_symmetric_update_is_the_difference_of_the_two_nudged_phases():
    rng = np.random.default_rng(1)
    params = ep.init_params([4, 3, 2], seed=2, dtype="float64")
    x, y = rng.random((3, 4)), rng.integers(0, 2, 3)
    free = naive_phase(params, x, 8)
    pos = naive_phase(params, x, 5, free, np.eye(2)[y], 0.4)
    neg = naive_phase(params, x, 5, free, np.eye(2)[y], -0.4)
    before = copy.deepcopy(params)
    ep.train_batch(params, x, ep.centred_target(y, 2, np, np.float64),
                   ep_dynamics(T=8, K=5, beta=0.4, nudge="symmetric"), [1.0, 1.0])
    expected = (pos[0].T @ pos[1] - neg[0].T @ neg[1]) / (2 * 0.4 * 3)
    np.testing.assert_allclose(params.W[1] - before.W[1], expected, atol=1e-13)


def test_cep_sums_to_the_ep_update_for_small_rates():
    """C-EP's per-step updates telescope to the end-of-phase update (docs/model.md)."""
    rng = np.random.default_rng(2)
    x, y = rng.random((4, 6)), rng.integers(0, 3, 4)
    t = ep.centred_target(y, 3, np, np.float64)
    deltas = {}
    for rule in ("ep", "cep"):
        params = ep.init_params([6, 5, 3], seed=0, dtype="float64")
        before = copy.deepcopy(params)
        ep.train_batch(params, x, t, ep_dynamics(T=20, K=8, beta=0.2, nudge="one_sided", rule=rule),
                       [1e-7, 1e-7])
        deltas[rule] = [(a - b) / 1e-7 for a, b in zip(params.W, before.W)]
    for a, b in zip(deltas["cep"], deltas["ep"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-9)


def test_random_sign_flips_beta():
    rng = np.random.default_rng(4)
    x, y = rng.random((3, 6)), rng.integers(0, 3, 3)
    t = ep.centred_target(y, 3, np, np.float64)
    out = []
    for beta, sign in ((0.3, -1.0), (-0.3, 1.0)):
        params = ep.init_params([6, 5, 3], seed=0, dtype="float64")
        dyn = ep_dynamics(T=10, K=4, beta=0.3, nudge="random_sign")
        object.__setattr__(dyn, "beta", beta)  # a negative beta is no config value: set past the check
        ep.train_batch(params, x, t, dyn, [0.1, 0.1], sign)
        out.append(params.W[0])
    np.testing.assert_array_equal(out[0], out[1])


def test_same_seed_same_result():
    rng = np.random.default_rng(5)
    x, y = rng.random((8, 6)).astype(np.float32), rng.integers(0, 3, 8)
    results = []
    for _ in range(2):
        params = ep.init_params([6, 5, 3], seed=7)
        for _ in range(3):
            ep.train_batch(params, x, ep.centred_target(y, 3, np, np.float32),
                           ep_dynamics(T=10, K=4, beta=0.2), [0.1, 0.05])
        results.append(params)
    for a, b in zip(results[0].W + results[0].b, results[1].W + results[1].b):
        np.testing.assert_array_equal(a, b)


def test_init_is_pytorch_uniform():
    params = ep.init_params([784, 512, 10], seed=0)
    assert params.W[0].shape == (784, 512) and params.W[0].dtype == np.float32
    assert np.abs(params.W[0]).max() <= 1 / np.sqrt(784)
    assert np.abs(params.b[1]).max() <= 1 / np.sqrt(512)
    assert np.abs(params.W[1]).max() > 0.9 / np.sqrt(512)
