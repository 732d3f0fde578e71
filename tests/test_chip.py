"""EqSpike as a chip would run it (pipeline/models/eqspike/chip.py, chip_kernel.py; the table:
pipeline/analysis/chip_study.py): fixed point and stochastic rounding, per-example training
against today's batch path, continual updates against deferred ones, learning at 2 bits,
determinism across threads, bad settings named before work, and the three chip stages end to end."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from pipeline.core.network import init_params
from pipeline.core.schema import ConfigError, parse
from pipeline.data.idx import Dataset
from pipeline.models.eqspike.chip import ChipCfg, Grid, Net, stream_state, train_networks
from pipeline.models.eqspike.chip_kernel import stochastic_round
from pipeline.models.eqspike.dynamics import onehot
from pipeline.models.eqspike.schedule import evaluate, train_batch
from runner.config import load_config
from tests.conftest import synthetic_arrays

SMALL = ["eqspike.sizes=[784,24,10]", "eqspike.T=16", "eqspike.K=8", "eqspike.eval_avg_steps=4",
         "eqspike.epochs=1"]


def dynamics(*overrides):
    return load_config([*SMALL, *overrides])[1].eqspike


def dataset(n_train=200, n_test=100, seed=0) -> Dataset:
    a = synthetic_arrays(n_train=n_train, n_test=n_test, side=28, seed=seed)

    def x(k):
        return a[k].reshape(len(a[k]), -1).astype(np.float32) / np.float32(255)

    return Dataset(x_train=x("train-images-idx3-ubyte"), y_train=a["train-labels-idx1-ubyte"].astype(np.int64),
                   x_test=x("t10k-images-idx3-ubyte"), y_test=a["t10k-labels-idx1-ubyte"].astype(np.int64))


def chip(**kw) -> ChipCfg:
    base = dict(update="example", weight_bits=None, weight_range=4.0, average=False, free_rerun=True, lr_scale=1.0)
    return ChipCfg(**{**base, **kw})


# ---- fixed point ---------------------------------------------------------------------------

def test_fixed_point_round_trip_and_grid():
    """Every grid value rounds to itself (no draw moves it), the grid has 2^b values from -w to +w."""
    g = Grid.of([784, 512, 10], chip(weight_bits=4))
    assert g.top == 15
    k = np.arange(16, dtype=np.float64)
    values = g.lo[0] + k * g.step[0]
    assert values[0] == pytest.approx(-4 / 28) and values[-1] == pytest.approx(4 / 28)
    again = values.copy()
    stochastic_round(again, g.lo[0], g.step[0], g.top, stream_state(0, 0))
    np.testing.assert_allclose(again, values, rtol=0, atol=1e-15)
    # out of range: clipped to the ends
    far = np.array([-1.0, 1.0])
    stochastic_round(far, g.lo[0], g.step[0], g.top, stream_state(0, 1))
    np.testing.assert_allclose(far, [values[0], values[-1]])


def test_stochastic_rounding_is_unbiased_on_a_known_case():
    """A value 30 % of the way from grid point 3 to 4 rounds up 30 % of the time: the mean of
    many roundings is the value (within 4 standard errors), and only the two neighbours occur."""
    lo, step, top = -1.0, 0.25, 8.0
    v = lo + 3.3 * step
    x = np.full(200_000, v)
    stochastic_round(x, lo, step, top, stream_state(7, 0))
    assert set(np.round((x - lo) / step).astype(int)) == {3, 4}
    up = np.mean(np.isclose(x, lo + 4 * step))
    se = np.sqrt(0.3 * 0.7 / x.size)
    assert abs(up - 0.3) < 4 * se
    assert abs(x.mean() - v) < 4 * se * step
    # and the same seed draws the same roundings
    y = np.full(200_000, v)
    stochastic_round(y, lo, step, top, stream_state(7, 0))
    np.testing.assert_array_equal(x, y)


def test_fixed_point_states_and_traces_stay_on_their_grid():
    """With ``state_bits`` the states s and traces r of a phase are multiples of 1 / (2^b - 1);
    without it they are not."""
    from pipeline.models.eqspike.chip_kernel import _base, _example_events, _phase

    dyn = dynamics()
    data = dataset(n_train=1)
    p = init_params(dyn.sizes, 0)
    W0, WT = p.W[0], (np.ascontiguousarray(p.W[1].T),)
    bias = np.concatenate(p.b)
    off = np.array([0, dyn.sizes[1], dyn.sizes[1] + dyn.sizes[2]], np.int64)
    q = data.x_train[0]
    nzi = np.flatnonzero(q > 0).astype(np.int32)
    nzq = q[nzi].astype(np.float32)
    steps = dyn.T
    ev_idx, ev_cnt, ev_n = np.empty((steps, 784), np.int32), np.empty(steps, np.int64), np.empty(steps, np.int64)
    kf = np.arange(steps + 1).astype(np.float32)
    _example_events(nzi, nzq, len(nzi), kf, steps, ev_idx, ev_cnt, ev_n)
    base = np.zeros(dyn.sizes[1], np.float32)
    _base(W0, nzi, nzq, len(nzi), base)
    N = int(off[-1])
    f32 = np.float32
    for bits in (None, 4):
        qs = 0.0 if bits is None else 1.0 / (2**bits - 1)
        s, a, r, c = (np.zeros(n, np.float32) for n in (N, N, N, dyn.sizes[1]))
        _phase(WT, bias, off, s, a, r, c, W0, base, ev_idx, ev_cnt, ev_n, f32(1), f32(0.1), f32(0.9), f32(1),
               False, f32(dyn.neuron.leak), 1, 0, steps, np.zeros(10, np.float32), 0.0, False,
               np.zeros((1, N), np.float32), np.zeros((1, N), np.float32), np.zeros(2), np.zeros(1), qs)
        off_grid = max(np.abs(x / (1 / 15) - np.round(x / (1 / 15))).max() for x in (s, r))
        if bits is None:
            assert off_grid > 1e-2
        else:
            assert off_grid < 1e-4 and s.max() <= 1 and r.min() >= 0


# ---- per example == batch path with B = 1 ---------------------------------------------------

def test_batch_1_training_equals_the_batch_path_with_one_example():
    """The chip kernel per example (float64) ends with the weights that today's ``train_batch``
    reaches on the same examples in the same order, one example per batch."""
    from pipeline.models.train import epoch_plan

    dyn = dynamics()
    data = dataset(n_train=6)
    x = data.x_train.astype(np.float64)
    p = init_params(dyn.sizes, 3, np, "float64")
    for i in epoch_plan(3, 0, 6, 1, False)[0]:
        train_batch(p, x[i:i + 1], onehot(data.y_train[i:i + 1], 10, np, np.float64), dyn, dyn.lr)
    nw, _, _, _ = train_networks(dyn, [Net(3, chip())], replace(data, x_train=x), "float64", progress=False)
    q = nw.params(0)
    for a, b in zip(p.W + p.b, q.W + q.b):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-13)
    assert max(np.abs(a - b0).max() for a, b0 in zip(p.W, init_params(dyn.sizes, 3, np, "float64").W)) > 1e-4


def test_continual_updates_approach_deferred_ones_as_the_learning_rate_goes_to_zero():
    """Applying each step's change at once (continual) differs from applying the sum at the end
    (per example) by terms of order eta^2: the relative difference of the weight changes falls
    with eta, below 1e-3 at the smallest rate (stated tolerance)."""
    dyn = dynamics()
    data = replace(dataset(n_train=4), x_train=dataset(n_train=4).x_train.astype(np.float64))
    w0 = init_params(dyn.sizes, 0, np, "float64")
    rel = []
    for eta in (1e-1, 1e-3):
        out = {}
        for update in ("example", "continual"):
            nw, _, _, _ = train_networks(dyn, [Net(0, chip(update=update, lr_scale=eta))], data, "float64",
                                         progress=False)
            out[update] = np.concatenate([(a - b).ravel() for a, b in zip(nw.params(0).W, w0.W)])
        rel.append(np.linalg.norm(out["continual"] - out["example"]) / np.linalg.norm(out["example"]))
    assert rel[1] < rel[0] / 10
    assert rel[1] < 1e-3


# ---- it learns, on the grid, deterministically -------------------------------------------------

def test_a_2_bit_run_learns_above_chance_and_stays_on_its_grid():
    # its own rates (the values it was calibrated with), not the tuned default's: 2 bits learn at these
    dyn = dynamics("eqspike.epochs=3", "eqspike.sizes=[784,64,10]", "eqspike.lr=[0.16,0.08]", "eqspike.lr_decay=0.9")
    data = dataset(n_train=300, n_test=100)
    c = chip(weight_bits=2, lr_scale=1.0)
    nw, records, _, _ = train_networks(dyn, [Net(0, c)], data, progress=False)
    params = nw.params(0)
    assert Grid.of(dyn.sizes, c).on_grid(params)
    acc = evaluate(params, data.x_test, data.y_test, dyn)["accuracy"]
    # chance is 0.1 (10 classes); 0.25 is 5 standard errors of chance above it on 100 examples
    assert acc > 0.25, f"2-bit EqSpike at {acc:.2f} on a task with 10 classes (chance 0.1)"


def test_same_seed_same_weights_whatever_the_threads():
    """Networks run side by side in threads; each is deterministic: the same networks trained in
    one thread or two end identical (fixed point: the rounding streams too)."""
    import numba

    dyn = dynamics()
    data = dataset(n_train=60)
    nets = [Net(0, chip(weight_bits=6, lr_scale=0.1)), Net(1, chip(update="continual", weight_bits=4, lr_scale=0.1))]
    runs = []
    for threads in (1, 2):
        old = numba.get_num_threads()
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        try:
            runs.append(train_networks(dyn, nets, data, progress=False)[0])
        finally:
            numba.set_num_threads(old)
    for a, b in zip(runs[0].arrays(), runs[1].arrays()):
        np.testing.assert_array_equal(a, b)


def test_the_rerun_changes_no_weight_per_example_and_the_events_are_laid_out_like_todays():
    dyn = dynamics()
    data = dataset(n_train=10)
    a = train_networks(dyn, [Net(0, chip(free_rerun=True))], data, progress=False)
    b = train_networks(dyn, [Net(0, chip(free_rerun=False))], data, progress=False)
    for x, y in zip(a[0].arrays(), b[0].arrays()):
        np.testing.assert_array_equal(x, y)
    counts = a[3][0].per_example(10)
    phases = {k.phase for k in counts}
    assert phases == {"free", "nudged"}
    assert any(k.kind == "weight_updates" and v > 0 for k, v in counts.items() if k.phase == "nudged")


# ---- bad settings, named before any work --------------------------------------------------------

@pytest.mark.parametrize("key,value,needle", [
    ("weight_bits", 0, "chip.weight_bits"),
    ("update", "sometimes", "chip.update"),
    ("weight_range", -1.0, "chip.weight_range"),
])
def test_a_bad_chip_setting_is_rejected_by_name(key, value, needle):
    raw = dict(update="example", weight_bits=8, weight_range=4.0, average=False, free_rerun=True, lr_scale=0.05)
    raw[key] = value
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        parse(ChipCfg, raw, "chip")


def test_fixed_point_in_the_batch_loop_and_unsupported_dynamics_are_named():
    with pytest.raises(ConfigError, match="weight_bits"):
        parse(ChipCfg, dict(update="batch", weight_bits=8, weight_range=4.0, average=False, free_rerun=True,
                            lr_scale=1.0), "chip")
    with pytest.raises(ConfigError, match=r"eqspike\.nudge"):
        train_networks(dynamics("eqspike.nudge=one_sided"), [Net(0, chip())], dataset(n_train=4), progress=False)
    with pytest.raises(ConfigError, match=r"eqspike\.neuron\.model"):
        train_networks(dynamics("eqspike/neuron=bernoulli"), [Net(0, chip())], dataset(n_train=4), progress=False)


def test_the_rule_picks_within_one_standard_error_and_a_diverged_candidate_loses():
    from pipeline.analysis.chip_study import choose

    out = choose([0.05, 0.1, 0.2], [0.90, 0.905, None], 2000)  # +0.5 points < 1 SE (0.67)
    assert out["lr_scale"] == 0.05 and "within one standard error" in out["why"]
    assert out["candidates"][2]["diverged"]
    out = choose([0.05, 0.1, 0.2], [0.90, 0.93, 0.91], 2000)
    assert out["lr_scale"] == 0.1 and not out["at_edge"]
    with pytest.raises(ValueError, match="default learning rate diverged"):
        choose([0.05, 0.1], [None, 0.9], 2000)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_a_diverging_network_is_marked_and_the_others_go_on():
    """A learning rate beyond float32 (inf) makes the weights non-finite: that network is marked
    diverged, its neighbour trains on."""
    dyn = dynamics()
    data = replace(dataset(n_train=40), x_val=dataset(n_train=20, seed=1).x_train,
                   y_val=dataset(n_train=20, seed=1).y_train)
    _, records, _, _ = train_networks(dyn, [Net(0, chip(lr_scale=1e40)), Net(0, chip(lr_scale=0.05))], data,
                                      progress=False)
    assert records[0][-1].get("diverged") and "val_accuracy" not in records[0][-1]
    assert not records[1][-1].get("diverged") and 0 <= records[1][-1]["val_accuracy"] <= 1


def test_a_bad_row_stops_the_stage_before_any_work(capsys):
    from stages import chip_select

    assert chip_select.main(["chip.rows.1.weight_bits=0"]) == 2
    err = capsys.readouterr().err
    assert "chip.rows" in err and "weight_bits" in err


# ---- the three stages end to end -------------------------------------------------------------

def test_the_chip_pipeline_end_to_end_declares_what_it_reads(mnist_like_dir, mlflow_store, monkeypatch, tmp_path):
    from tests.test_dvc_params import run_stage, undeclared

    _, data = mnist_like_dir
    out = tmp_path / "chip"
    common = [*data, *SMALL, "chip.epochs=1", "chip.n_train=200", "chip.selection.validation=50",
              "chip.selection.factors=[1,4]", f"chip.out.selection={out / 'sel.json'}",
              f"chip.out.rows={out / 'rows.json'}", f"chip.out.table={out / 't.json'}",
              f"chip.out.table_md={out / 't.md'}", f"chip.out.figure={out / 'f.png'}",
              f"report.out.chip_markdown={out / 'page' / 'CHIP.md'}", f"report.out.chip_html={out / 'page' / 'CHIP.html'}",
              "chip.rows=[{name: reference, update: batch, average: true, free_rerun: false, seeds: [0, 1]},"
              "{name: example_4bit, update: example, weight_bits: 4, seeds: [0, 1]},"
              "{name: continual_2bit, update: continual, weight_bits: 2, seeds: [0]}]"]
    for stage in ("chip_select", "chip_train", "chip_table"):
        read = run_stage(monkeypatch, stage, common)
        assert undeclared(stage, read) == [], stage
    sel = json.loads((out / "sel.json").read_text())
    assert set(sel["modes"]) == {"batch", "example", "continual"}, "every update mode of the rows, the reference's too"
    assert [c["lr_scale"] for c in sel["modes"]["batch"]["candidates"]] == [1.0, 4.0]
    assert [c["lr_scale"] for c in sel["modes"]["example"]["candidates"]] == [0.05, 0.2]
    tab = json.loads((out / "t.json").read_text())
    assert tab["rows"][0]["lr_scale"] == sel["modes"]["batch"]["lr_scale"]
    assert [r["name"] for r in tab["rows"]] == ["reference", "example_4bit", "continual_2bit"]
    ref, four, two = tab["rows"]
    assert ref["ci_low"] is not None and two["ci_low"] is None and two["verdict"] == "one seed"
    assert four["cost_vs_reference"]["seeds"] == [0, 1]
    assert four["memory_bits_per_synapse"] == {"weight": 4, "accumulator": 32, "average": 0, "total": 36}
    assert two["memory_bits_per_synapse"]["total"] == 2
    assert ref["energy_per_example"]["variant"].endswith("store")
    assert four["energy_per_example"]["variant"].endswith("rerun")
    assert four["energy_per_example"]["training_total_j"] > four["energy_per_example"]["training_dynamic_j"] > 0
    assert (out / "f.png").read_bytes()[:4] == b"\x89PNG"
    assert "one seed" in (out / "t.md").read_text()
    page = (out / "page" / "CHIP.md").read_text()
    assert page.startswith("# EqSpike as a chip would run it") and "](../f.png)" in page
    html_page = (out / "page" / "CHIP.html").read_text()
    assert "<table>" in html_page and "data:image/png;base64," in html_page, "the figure inlined"
