"""The redesign kept every behaviour: on fixed batches and fixed weights, today's code gives the
same spikes, weight changes, outputs and event counts, bit for bit, as the code before it
(commit 9a1365d; ``tests/fixtures/make_behaviour.py`` made ``behaviour.npz`` there)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.events import Counts, to_json
from pipeline.core.network import init_params
from pipeline.core.neuron import NeuronModel
from pipeline.models import bp, ep, eqspike
from tests.conftest import ep_dynamics

FIXTURE = np.load(Path(__file__).with_name("fixtures") / "behaviour.npz")
SIZES, B = [30, 12, 4], 6
EQ_CASES = {
    "leaky_symmetric_compiled": dict(model="sigma_delta", leak=0.3, nudge="symmetric", pre="spike", engine="compiled",
                                     input_layer="event"),
    "leaky_symmetric_array": dict(model="sigma_delta", leak=0.3, nudge="symmetric", pre="spike", engine="array",
                                  input_layer="event"),
    "memoryless_onesided_compiled": dict(model="sigma_delta", leak=1.0, nudge="one_sided", pre="spike",
                                         engine="compiled", input_layer="event"),
    "trace_dense_compiled": dict(model="sigma_delta", leak=0.3, nudge="symmetric", pre="trace", engine="compiled",
                                 input_layer="dense"),
    "bernoulli_random_sign_array": dict(model="bernoulli", leak=1.0, nudge="random_sign", pre="spike",
                                        engine="array", input_layer="event"),
}


def batch():
    rng = np.random.default_rng(7)
    x = rng.random((B, SIZES[0])).astype(np.float32)
    x[:, :8] = 0.0
    x[x < 0.2] = 0.0
    return x, rng.integers(0, SIZES[-1], B)


def same(name: str, value) -> None:
    want = FIXTURE[name]
    assert value.dtype == want.dtype and value.shape == want.shape, name
    assert np.array_equal(value, want), f"{name}: differs from the code before the redesign"


def check_params(prefix: str, params) -> None:
    for i, (w, b) in enumerate(zip(params.W, params.b)):
        same(f"{prefix}.W{i}", w)
        same(f"{prefix}.b{i}", b)


@pytest.mark.parametrize("name", list(EQ_CASES))
def test_eqspike_is_bit_identical_to_the_code_before_the_redesign(name):
    c = EQ_CASES[name]
    dyn = eqspike.SpikeDynamics(T=14, K=8, beta=0.5, nudge=c["nudge"], pre_factor=c["pre"], activation="sigmoid",
                                eval_avg_steps=4, engine=c["engine"], input_layer=c["input_layer"],
                                neuron=NeuronModel(model=c["model"], threshold=1.0, tau_syn_steps=10.0, leak=c["leak"]))
    x, y = batch()
    params = init_params(SIZES, 3)
    target = eqspike.onehot(y, SIZES[-1], np, np.float32)
    counts = Counts()
    out = eqspike.train_batch(params, x, target, dyn, [0.2, 0.1], -1.0 if "random" in name else 1.0,
                              eqspike.make_rng(np, [5, 1]), counts)
    same(f"{name}.out", out)
    check_params(name, params)
    rc = Counts()
    avg, spikes = eqspike.read_out(params, x, dyn, eqspike.make_rng(np, [5, 2]), rc)
    same(f"{name}.read_avg", avg)
    same(f"{name}.read_spikes", spikes)
    want = json.loads(str(FIXTURE["counts_json"]))[name]
    assert {"train": to_json(counts.per_example(B)), "inference": to_json(rc.per_example(B))} == want
    if c["engine"] == "array":
        raster = eqspike.record_raster(params, x[:2], target[:2], dyn, eqspike.make_rng(np, [5, 3]))
        for phase, steps in raster.items():
            same(f"{name}.raster.{phase}", np.stack([np.concatenate([a.ravel() for a in s]) for s in steps]))


@pytest.mark.parametrize("name,kw", [("ep_symmetric_compiled", dict(engine="compiled")),
                                     ("ep_symmetric_array", dict(engine="array")),
                                     ("ep_cep_inside_array", dict(engine="array", nudge="one_sided", rule="cep",
                                                                  nudge_placement="inside"))])
def test_rate_ep_is_bit_identical_to_the_code_before_the_redesign(name, kw):
    x, y = batch()
    params = init_params(SIZES, 4)
    out = ep.train_batch(params, x, ep.centred_target(y, SIZES[-1], np, np.float32),
                         ep_dynamics(T=12, K=5, beta=0.3, **kw), [0.1, 0.05])
    same(f"{name}.out", out)
    check_params(name, params)


def test_backprop_is_bit_identical_to_the_code_before_the_redesign():
    x, y = batch()
    params = init_params(SIZES, 5)
    same("bp.out", bp.BPModel(np, 100).train_batch(params, x, y, [0.1, 0.05], 1.0))
    check_params("bp", params)


def test_the_fixture_comparison_can_fail():
    """A one-ulp change of one weight is seen (the comparison is exact, not approximate)."""
    x, y = batch()
    params = init_params(SIZES, 5)
    bp.BPModel(np, 100).train_batch(params, x, y, [0.1, 0.05], 1.0)
    params.W[0][0, 0] = np.nextafter(params.W[0][0, 0], np.float32(1))
    with pytest.raises(AssertionError, match="differs"):
        check_params("bp", params)
