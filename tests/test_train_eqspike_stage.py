"""The train_eqspike stage end to end on a tiny config: outputs, counters, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.core import events as ev
from pipeline.core.network import load_weights
from stages.train_eqspike import main


def tiny(tmp_path, mnist_like_dir, epochs, *extra):
    _, data = mnist_like_dir
    out = tmp_path / "out"
    return [
        *data, "eqspike.sizes=[784,16,10]", f"eqspike.epochs={epochs}", "eqspike.T=8", "eqspike.K=4",
        "eqspike.eval_avg_steps=2", "eqspike.batch_size=20", "eqspike.eval_batch_size=50",
        "eqspike.lr=[0.2,0.1]", "train.ema_decay=0.9",
        f"eqspike.out.models={out / 'models'}", f"eqspike.out.checkpoints={tmp_path / 'ck'}", f"eqspike.out.runs={out / 'runs'}", *extra,
    ]


def test_outputs_counters_and_raster(tmp_path, mnist_like_dir, mlflow_store):
    assert main(tiny(tmp_path, mnist_like_dir, 2)) == 0
    out = tmp_path / "out"
    metrics = json.loads((out / "runs" / "seed0" / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and "test_accuracy_averaged" in metrics
    assert "test_accuracy_spike_count_averaged" in metrics and 0 <= metrics["test_spike_count_tie_rate"] <= 1
    with np.load(out / "runs" / "seed0" / "predictions.npz", allow_pickle=False) as z:
        assert (z["predicted_spike_count"] == z["labels"]).mean() == metrics["test_accuracy_spike_count"]
    events = json.loads((out / "runs" / "seed0" / "events.json").read_text())
    train = {".".join(k): v for k, v in ev.from_json(events["per_example"]["train"]).items()}
    infer = {".".join(k): v for k, v in ev.from_json(events["per_example"]["inference"]).items()}
    # per example: T free steps; symmetric nudging: two nudged phases of K steps each
    assert train["free.all.time_steps"] == pytest.approx(8 / 20)  # steps are per batch of 20
    assert train["nudged.all.time_steps"] == pytest.approx(2 * 4 / 20)
    assert train["nudged.layer1.neuron_updates"] == pytest.approx(2 * 4 * 16)
    assert infer["inference.layer1.neuron_updates"] == pytest.approx(8 * 16)
    assert infer["inference.input.synaptic_events"] == pytest.approx(16 * infer["inference.input.spikes"])
    assert train["nudged.input.weight_updates"] > 0 and "free.input.weight_updates" not in train
    assert metrics["spikes_per_inference"] > 0
    for name in ("curve.png", "raster.png"):
        assert (out / "runs" / "seed0" / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("neuron", ["sigma_delta", "bernoulli"])
def test_resume_gives_the_same_weights(tmp_path, mnist_like_dir, mlflow_store, neuron):
    n = [f"eqspike.neuron.model={neuron}"]
    assert main(tiny(tmp_path / "full", mnist_like_dir, 2, *n)) == 0
    assert main(tiny(tmp_path / "part", mnist_like_dir, 1, *n)) == 0
    assert main(tiny(tmp_path / "part", mnist_like_dir, 2, *n)) == 0
    a, _ = load_weights(tmp_path / "full" / "out" / "models" / "seed0.npz")
    b, _ = load_weights(tmp_path / "part" / "out" / "models" / "seed0.npz")
    for x, y in zip(a.W + a.b, b.W + b.b):
        np.testing.assert_array_equal(x, y)


def test_one_sided_counts_free_phase_updates(tmp_path, mnist_like_dir, mlflow_store):
    assert main(tiny(tmp_path, mnist_like_dir, 1, "eqspike.nudge=one_sided", "eqspike.pre_factor=trace")) == 0
    events = json.loads((tmp_path / "out" / "runs" / "seed0" / "events.json").read_text())
    assert events["per_example"]["train"]["free"]["input"]["weight_updates"] > 0
    assert events["nudged_phases"] == 1


@pytest.mark.parametrize(
    "override,key",
    [
        ("eqspike.neuron.model=izhikevich", "eqspike.neuron.model"),
        ("eqspike.neuron.tau_syn_steps=0", "eqspike.neuron.tau_syn_steps"),
        ("eqspike.neuron.threshold=0.5", "eqspike.neuron.threshold"),
        ("eqspike.neuron.leak=0", "eqspike.neuron.leak"),
        ("eqspike.neuron.leak=1.5", "eqspike.neuron.leak"),
        ("train.ema_decay=1.0", "train.ema_decay"),
        ("eqspike.eval_avg_steps=100", "eqspike.eval_avg_steps"),
        ("eqspike.beta=0", "eqspike.beta"),
        ("eqspike.pre_factor=rate", "eqspike.pre_factor"),
        ("eqspike.sizes=[784,512,3]", "eqspike.sizes"),
    ],
)
def test_bad_values_rejected_before_work(override, key, tmp_path, monkeypatch, capsys):
    db = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    assert main([override]) == 2
    assert capsys.readouterr().err.startswith(f"train_eqspike: bad config: {key}")
    assert not db.exists()
