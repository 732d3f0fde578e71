"""Statistics over seeds and the verdicts that read them, on data with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.analysis import stats


def test_summary_matches_the_textbook_interval():
    # n = 5, mean 0.976, std 0.001: t(0.975, 4) = 2.7764451
    values = [0.975, 0.9765, 0.976, 0.9775, 0.9750]
    s = stats.summary(values)
    assert s["n"] == 5 and s["mean"] == pytest.approx(np.mean(values))
    assert s["std"] == pytest.approx(np.std(values, ddof=1))
    assert s["half_width"] == pytest.approx(2.7764451 * s["std"] / math.sqrt(5), rel=1e-6)


def test_interval_covers_the_mean_at_its_nominal_rate():
    """Positive control: 2000 experiments of 5 draws from N(0.976, 0.002); the 95 % interval
    contains the true mean about 95 % of the time."""
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(2000):
        s = stats.summary(list(rng.normal(0.976, 0.002, 5)))
        covered += s["ci_low"] <= 0.976 <= s["ci_high"]
    assert 0.93 < covered / 2000 < 0.97


@pytest.mark.parametrize("values,verdict", [
    ([0.975, 0.976, 0.977], "reproduced (the paper's 97.6 % is inside"),   # paper inside
    ([0.980, 0.981, 0.982], "reproduced (the paper's 97.6 % is below"),    # paper below the interval
    ([0.970, 0.971, 0.972], "below the paper (the whole interval"),        # whole interval under
    ([0.977], "one seed, no interval: at or above"),
])
def test_verdict_reads_the_interval(values, verdict):
    assert stats.verdict_vs_paper(stats.summary(values), 0.976).startswith(verdict)


def test_difference_is_welch():
    a, b = [0.981, 0.982, 0.980, 0.983], [0.976, 0.975, 0.977]
    d = stats.difference(a, b)
    assert d["mean"] == pytest.approx(np.mean(a) - np.mean(b))
    assert d["ci_low"] < d["mean"] < d["ci_high"] and d["ci_low"] > 0  # clearly different
    same = stats.difference([0.976, 0.977, 0.975], [0.977, 0.975, 0.976])
    assert same["ci_low"] < 0 < same["ci_high"]  # negative control: no difference


@pytest.mark.parametrize("dataset,n,sizes,reason", [
    ("mnist", 60000, [784, 512, 10], None),
    ("fashion-mnist", 60000, [784, 512, 10], "no verdict: the paper's claims are about MNIST"),
    ("mnist", 2000, [784, 512, 10], "no verdict: trained on 2000 of the 60000"),
    ("mnist", 50000, [784, 512, 10], "no verdict: trained on 50000"),
    ("mnist", 60000, [784, 16, 10], "no verdict: network [784, 16, 10]"),
])
def test_verdicts_only_for_runs_comparable_to_the_paper(dataset, n, sizes, reason):
    got = stats.comparable(dataset, n, 60000, sizes)
    assert got == reason if reason is None else got.startswith(reason)


def test_aggregate_stage_reads_every_seed_and_declares_what_it_reads(tmp_path, mlflow_store, monkeypatch):
    """The aggregate stage on per-seed metrics with a known answer; every config key it reads
    is declared in dvc.yaml (the recorder of tests/test_dvc_params.py)."""
    import json

    from tests.test_dvc_params import run_stage, undeclared

    acc = {"ep": [0.981, 0.982, 0.980], "eqspike": [0.977, 0.978, 0.976], "eqspike_variant": [0.978, 0.979, 0.977],
           "bp": [0.982, 0.983, 0.981]}
    for model, values in acc.items():
        for seed, a in enumerate(values):
            d = tmp_path / "runs" / model / f"seed{seed}"
            d.mkdir(parents=True)
            m = {"seed": seed, "n_train": 60000, "test_accuracy": a, "seconds_per_epoch": 1.0}
            if model.startswith("eqspike"):
                m.update(test_accuracy_raw=a - 0.002, test_accuracy_spike_count=a - 0.001,
                         test_accuracy_spike_count_raw=a - 0.003)
            (d / "metrics.json").write_text(json.dumps(m))
    read = run_stage(monkeypatch, "aggregate", [
        "runtime.seeds=[0,1,2]", f"ep.out.runs={tmp_path / 'runs' / 'ep'}",
        f"eqspike.out.runs={tmp_path / 'runs' / 'eqspike'}", f"variant.out.runs={tmp_path / 'runs' / 'eqspike_variant'}",
        f"bp.out.runs={tmp_path / 'runs' / 'bp'}", f"aggregate.out.metrics={tmp_path / 'a.json'}",
        f"aggregate.out.detail={tmp_path / 'ad.json'}"])
    assert undeclared("aggregate", read) == []
    flat = json.loads((tmp_path / "a.json").read_text())
    assert flat["eqspike.test_accuracy.mean"] == pytest.approx(0.977)
    assert flat["ep.test_accuracy.std"] == pytest.approx(0.001)
    detail = json.loads((tmp_path / "ad.json").read_text())
    assert detail["verdicts"]["C1 EqSpike (averaged weights)"].startswith("reproduced")
    assert detail["verdicts"]["C1 EqSpike (raw weights)"].startswith("reproduced")
    assert detail["gap_ep_minus_eqspike"]["mean"] == pytest.approx(0.004)
    assert detail["gap_eqspike_minus_variant_raw"]["mean"] == pytest.approx(-0.001)
    assert flat["bp.test_accuracy.mean"] == pytest.approx(0.982)
    assert detail["verdicts"]["C1 EqSpike variant (raw weights)"].startswith("reproduced")
