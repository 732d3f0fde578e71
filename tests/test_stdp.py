"""STDP measurement (claim C5): synthetic traces, fits, the recorder on the real step function."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import ep, spiking, stdp
from pipeline.neuron import NeuronModel


def synthetic_recorder(post_rises: bool):
    """One input synapse: the presynaptic neuron spikes at step 5 of the nudged phase, the
    postsynaptic neuron spikes 2 steps later; its state rises (or falls) at the pre spike."""
    rec = stdp.Recorder([(np.array([0]), np.array([0]))], beta=0.5, symmetric=False)
    zero = np.zeros((1, 1))
    T, K = 4, 10
    for t in range(T):
        rec.steps.setdefault("free", []).append((t, [(zero, zero, None, zero)]))
    for k in range(K):
        t = T + k
        pre = np.ones((1, 1)) if t == T + 5 else zero
        post = np.ones((1, 1)) if t == T + 7 else zero
        ds = np.full((1, 1), 0.1 if post_rises else -0.1) if t == T + 5 else zero
        rec.steps.setdefault("nudged+", []).append((t, [(pre, post, None, ds)]))
    return rec


@pytest.mark.parametrize("post_rises,sign", [(True, 1.0), (False, -1.0)])
def test_rising_post_potentiates_falling_post_depresses(post_rises, sign):
    (event,) = synthetic_recorder(post_rises).events(max_dt=5)
    assert event["dt"] == 2 and event["trigger"] == "pre"
    assert event["dw"] == pytest.approx(sign * 0.1 / 0.5)


def test_partner_outside_the_window_is_skipped():
    assert synthetic_recorder(True).events(max_dt=1) == []


def test_fit_recovers_known_exponentials():
    rng = np.random.default_rng(0)
    dts, dws = [], []
    for d in range(-12, 13):
        if d == 0:
            continue
        true = 0.8 * np.exp(-d / 3.0) if d > 0 else -0.5 * np.exp(d / 6.0)
        dts.extend([d] * 400)
        dws.extend(true + 0.05 * rng.standard_normal(400))
    dts, dws = np.array(dts), np.array(dws)
    window = stdp.binned_window(dts, dws, 12)
    fit = stdp.fit_window(window)
    assert fit["A_plus"] == pytest.approx(0.8, rel=0.05)
    assert fit["tau_plus_steps"] == pytest.approx(3.0, rel=0.05)
    assert fit["A_minus"] == pytest.approx(0.5, rel=0.05)
    assert fit["tau_minus_steps"] == pytest.approx(6.0, rel=0.05)
    assert 0 < fit["tau_plus_err_steps"] < 0.3
    shape = stdp.shape_metrics(dts, dws, window)
    # small tails drown in the noise at large |dt|: most, not all, updates have the sign
    assert shape["fraction_potentiation_dt_pos"] > 0.8 and shape["fraction_depression_dt_neg"] > 0.8
    # areas: 0.8 sum exp(-d/3) vs 0.5 sum exp(-d/6), d = 1..12
    expected = 0.5 * np.exp(-np.arange(1, 13) / 6).sum() / (0.8 * np.exp(-np.arange(1, 13) / 3).sum())
    assert shape["area_ratio"] == pytest.approx(expected, rel=0.05)


def test_antisymmetry_residual_extremes():
    dts = np.repeat(np.arange(-3, 4), 10)
    anti = np.sign(dts) * np.exp(-np.abs(dts))
    sym = np.exp(-np.abs(dts))
    w_anti = stdp.binned_window(dts, anti, 3)
    w_sym = stdp.binned_window(dts, sym, 3)
    assert stdp.shape_metrics(dts, anti, w_anti)["antisymmetry_residual"] == pytest.approx(0.0)
    assert stdp.shape_metrics(dts, sym, w_sym)["antisymmetry_residual"] == pytest.approx(1.0)


def test_pairing_protocol_input_synapse():
    """Input synapse, no leak: only the post state's jump right after the pre spike (dt = +1)
    potentiates strongly; the post state falling back after its own spike at dt = 0 depresses."""
    w = stdp.pairing_window([-3, 0, 1, 3], leak=1.0, tau_syn_steps=5.0, input_synapse=True)
    assert w[2] > 0.5 and w[1] < -0.5
    assert abs(w[0]) < 0.2 and abs(w[3]) < 0.2


def test_recorder_observes_the_training_step_function():
    """The recorder's events come from the same simulation as the rule: with one sampled input
    synapse, sum(dw over pre-triggered events with any partner) + unpaired = the rule's total."""
    params = ep.init_params([6, 5, 3], seed=0, dtype="float64")
    params.W[0][:] *= 6
    params.W[1][:] *= 6
    x = np.random.default_rng(0).random((2, 6))
    y = np.eye(3)[[0, 1]]
    dyn = spiking.SpikeDynamics(T=10, K=6, beta=0.5, nudge="symmetric", pre_factor="spike", activation="sigmoid",
                                eval_avg_steps=1, engine="array",
                                neuron=NeuronModel(model="sigma_delta", threshold=1.0, tau_syn_steps=2.0, leak=1.0))
    rec = stdp.Recorder(stdp.sample_synapses([6, 5, 3], 30, 0), dyn.beta, symmetric=True)
    spiking.simulate_learning(params, x, y, dyn, observer=rec)
    events = rec.events(max_dt=100)  # every spike has a partner somewhere in 16 steps, or none
    assert events, "the network should spike"
    assert {e["layer"] for e in events} == {0, 1}
    assert {"pre", "post"} <= {e["trigger"] for e in events}


def test_stage_outputs(tmp_path, mnist_like_dir, mlflow_store):
    import json

    from pipeline.network import save_weights
    from stages.stdp import main

    params = ep.init_params([784, 32, 10], seed=0)
    params.W[0][:] *= 4
    save_weights(tmp_path / "w.npz", params)
    _, data = mnist_like_dir
    out = tmp_path / "out"
    rc = main([*data, f"stdp.weights={tmp_path / 'w.npz'}", "stdp.n_examples=20", "stdp.synapses_per_layer=50",
               "eqspike.T=10", "eqspike.K=6", "eqspike.eval_avg_steps=2", "eqspike.sizes=[784,32,10]",
               f"stdp.out.metrics={out / 's.json'}", f"stdp.out.window_dir={out / 'sw'}",
               f"stdp.out.detail={out / 'sd.json'}",
               f"stdp.out.figure_png={out / 's.png'}"])
    assert rc == 0
    flat = json.loads((out / "s.json").read_text())
    assert all(isinstance(v, float) for v in flat.values()) and "input_synapses.one_nudged_phase.area_ratio" in flat
    assert len(list((out / "sw").glob("*.csv"))) == 4
    m = json.loads((out / "sd.json").read_text())
    assert set(m["groups"]) == {f"{g} synapses, {mode}" for g in ("input", "hidden")
                                for mode in ("one nudged phase", "net of both phases")}
    for g in m["groups"].values():
        assert g["events"] > 0 and "verdict" in g and "tau_plus_ms" in g
    assert (out / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_stage_without_weights_names_them(tmp_path, mlflow_store, capsys):
    from stages.stdp import main

    assert main([f"stdp.weights={tmp_path / 'none.npz'}"]) == 1
    assert "none.npz is missing" in capsys.readouterr().err


def test_verdict_needs_consistent_signs_not_just_mean_areas():
    from pipeline.stdp import verdict

    base = {"area_ratio": 1.0, "antisymmetry_residual": 0.1, "events": 100}
    clear = {**base, "area_pos": 1.0, "area_neg": -1.0, "fraction_potentiation_dt_pos": 0.8,
             "fraction_depression_dt_neg": 0.7}
    noisy = {**clear, "fraction_potentiation_dt_pos": 0.5, "fraction_depression_dt_neg": 0.5}
    flipped = {**clear, "area_pos": -1.0, "area_neg": 1.0}
    assert verdict({}, clear).startswith("STDP-like")
    assert verdict({}, noisy).startswith("not STDP-like: the mean areas have STDP's signs")
    assert verdict({}, flipped).startswith("not STDP-like in sign")
