"""The GDU property (Ernoult et al. 2019): for small beta and converged
phases, the EP update equals minus the gradient of L = 1/2 ||y - o*||^2 at the free fixed point.

Nudging inside rho makes the nudged fixed point stationary for Phi - beta/2 ||y - o||^2, so the
symmetric (+-beta) EP estimate matches -dL/dtheta up to O(beta^2). The gradient is computed
independently, by central finite differences of L through the converged free phase.
"""

from __future__ import annotations

import copy

import numpy as np

from pipeline.models import ep
from tests.conftest import ep_dynamics

SIZES = [5, 4, 3]
STEPS = 400


def loss(params, x, y) -> float:
    """Mean over the batch of 1/2 ||y - o*||^2 at the (converged) free fixed point."""
    dyn = ep_dynamics(T=STEPS, K=1, beta=1.0)
    o = ep.to_rate(ep.free_phase(params, x, dyn)[-1])
    return float(0.5 * ((y - o) ** 2).sum(axis=1).mean())


def test_ep_update_matches_minus_the_gradient():
    rng = np.random.default_rng(0)
    params = ep.init_params(SIZES, seed=3, dtype="float64")
    x = rng.random((3, SIZES[0]))
    labels = rng.integers(0, SIZES[-1], 3)
    y = np.eye(SIZES[-1])[labels]

    # the phases really converge: one more step moves nothing
    dyn = ep_dynamics(T=STEPS, K=STEPS, beta=1e-3, nudge="symmetric", nudge_placement="inside")
    u = ep.free_phase(params, x, dyn)
    u_next = ep.step(params, ep.offsets(params, x), u, dyn)
    assert max(np.abs(a - b).max() for a, b in zip(u, u_next)) < 1e-13

    # EP estimate: with eta = 1 the update is (1/2 beta B) sum (dPhi/dtheta(+beta) - dPhi/dtheta(-beta))
    after = copy.deepcopy(params)
    ep.train_batch(after, x, ep.centred_target(labels, SIZES[-1], np, np.float64), dyn, [1.0, 1.0])
    ep_update = np.concatenate([(a - b).ravel() for a, b in zip(after.W + after.b, params.W + params.b)])

    # independent gradient: central finite differences of the loss through the free phase
    grads = []
    eps = 1e-6
    for tensor in params.W + params.b:
        g = np.zeros_like(tensor)
        for idx in np.ndindex(tensor.shape):
            old = tensor[idx]
            tensor[idx] = old + eps
            up = loss(params, x, y)
            tensor[idx] = old - eps
            down = loss(params, x, y)
            tensor[idx] = old
            g[idx] = (up - down) / (2 * eps)
        grads.append(g.ravel())
    grad = np.concatenate(grads)

    rel = np.linalg.norm(ep_update + grad) / np.linalg.norm(grad)
    assert rel < 1e-3, rel
    assert np.linalg.norm(grad) > 1e-3  # the test is not comparing two zeros


def test_outside_nudging_is_not_the_plain_gradient():
    """Ernoult's nudge outside rho descends a differently weighted loss: its
    update is aligned with -grad L but not equal to it. Documents why the GDU test nudges inside."""
    rng = np.random.default_rng(0)
    params = ep.init_params(SIZES, seed=3, dtype="float64")
    x = rng.random((3, SIZES[0]))
    labels = rng.integers(0, SIZES[-1], 3)
    t = ep.centred_target(labels, SIZES[-1], np, np.float64)
    updates = {}
    for placement in ("inside", "outside"):
        after = copy.deepcopy(params)
        ep.train_batch(after, x, t, ep_dynamics(T=STEPS, K=STEPS, beta=1e-3, nudge_placement=placement), [1.0, 1.0])
        updates[placement] = np.concatenate([(a - b).ravel() for a, b in zip(after.W, params.W)])
    a, b = updates["inside"], updates["outside"]
    cos = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
    assert cos > 0.5
    assert np.linalg.norm(a - b) / np.linalg.norm(a) > 1e-2
