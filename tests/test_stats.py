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


def iv(lo, hi):
    return {"mean": (lo + hi) / 2, "ci_low": lo, "ci_high": hi}


@pytest.mark.parametrize("interval,verdict", [
    (iv(0.973, 0.979), "reproduced"),            # inside 97.6 +- 0.5
    (iv(0.977, 0.983), "at least the paper"),    # above the low edge, its top beyond the high edge
    (iv(0.982, 0.984), "above the paper"),
    (iv(0.965, 0.970), "below the paper"),
    (iv(0.969, 0.978), "not resolved"),          # reaches below 97.1 without lying below it
    (iv(0.974, 0.976), "reproduced"),            # a mean under the paper's value can be equivalent
])
def test_equivalence_verdicts_with_known_answers(interval, verdict):
    assert stats.equivalence(interval, 0.976, 0.005) == verdict


def test_a_noisy_run_never_passes_more_easily_than_a_precise_one():
    """Widen the interval around the same mean: a passing verdict can only be lost, never gained
    (today's rule without a margin did the opposite: paper <= top of the interval)."""
    for mean in np.linspace(0.965, 0.99, 101):
        passed = [stats.passes(stats.equivalence(iv(mean - h, mean + h), 0.976, 0.005))
                  for h in np.linspace(0.0005, 0.02, 40)]
        assert all(a or not b for a, b in zip(passed, passed[1:])), mean  # once False, never True again
    # the case the audit named: a mean below 97.6 % whose wide interval reaches it does not pass
    assert not stats.passes(stats.equivalence(iv(0.966, 0.980), 0.976, 0.005))


def test_similar_reads_the_gap_against_its_margin():
    assert stats.similar_verdict(iv(-0.002, 0.004), 0.005).startswith("similar")
    assert stats.similar_verdict(iv(0.006, 0.009), 0.005).startswith("not similar: behind")
    assert stats.similar_verdict(iv(-0.009, -0.006), 0.005).startswith("not similar: ahead")
    crossing = stats.similar_verdict(iv(0.0008, 0.0043 + 0.002), 0.005)
    assert crossing.startswith("not resolved") and "resolved (the interval excludes 0)" in crossing


def population(rng, n_examples):
    """Per-example probability of an error, as trained networks have them: most examples always
    right, 1.5 % always wrong, 1.5 % flaky (wrong for some seeds, right for others)."""
    kind = rng.random(n_examples)
    return np.where(kind < 0.015, 1.0, np.where(kind < 0.03, rng.uniform(0.2, 0.8, n_examples), 0.0))


def draw(rng, p, n_seeds, n_test, seed_sd):
    """A test set drawn from the population, n_seeds models, each with its own accuracy offset."""
    idx = rng.integers(0, len(p), n_test)
    offsets = rng.normal(0, seed_sd, (n_seeds, 1))
    return rng.random((n_seeds, n_test)) < np.clip(1 - p[idx][None] + offsets, 0, 1), idx


def test_combined_interval_covers_the_population_accuracy_and_seeds_alone_do_not():
    """Positive control: a population of examples with known accuracy; 300 experiments (a fresh
    test set of 2000 examples each, 5 seeds); the combined interval covers the population's
    accuracy about 95 % of the time. Negative control: the seeds-only interval, the one the old
    rule used, misses it far more often (the test set's sampling error is not in it)."""
    rng = np.random.default_rng(1)
    p = population(rng, 200_000)
    truth = float((1 - p).mean())
    combined = seeds_only = 0
    runs = 300
    for _ in range(runs):
        c, _ = draw(rng, p, 5, 2000, 0.001)
        got = stats.accuracy_interval(c)
        combined += got["ci_low"] <= truth <= got["ci_high"]
        s = stats.summary(list(c.mean(axis=1)))
        seeds_only += s["ci_low"] <= truth <= s["ci_high"]
    assert 0.9 <= combined / runs <= 0.99
    assert seeds_only / runs < 0.6


def test_paired_gap_resolves_what_unpaired_intervals_cannot():
    """Two models that share most errors (the same hard examples) and differ by 0.3 points:
    pairing by example removes the shared part; the interval holds the true gap."""
    rng = np.random.default_rng(2)
    n_seeds, n = 5, 10_000
    hard = rng.random(n) < 0.02
    extra = (~hard) & (rng.random(n) < 0.003)  # B also misses these
    a = np.stack([~hard & (rng.random(n) > 0.002) for _ in range(n_seeds)])
    b = np.stack([~hard & ~extra & (rng.random(n) > 0.002) for _ in range(n_seeds)])
    gap = stats.paired_gap(a, b)
    true_gap = extra.mean() * 0.998
    assert gap["ci_low"] <= true_gap <= gap["ci_high"] and gap["ci_low"] > 0
    assert gap["test_half_width"] < stats.accuracy_interval(a)["test_half_width"]  # pairing helps
    same = stats.paired_gap(a, np.stack([~hard & (rng.random(n) > 0.002) for _ in range(n_seeds)]))
    assert same["ci_low"] < 0 < same["ci_high"]  # negative control: no gap
    with pytest.raises(ValueError, match="same seeds and test examples"):
        stats.paired_gap(a, b[:4])


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
    n_test = 10_000
    labels = np.zeros(n_test, dtype=np.int8)

    def guesses(accuracy):  # the first (1 - accuracy) N examples wrong: errors shared across seeds
        p = labels.copy()
        p[: round((1 - accuracy) * n_test)] = 1
        return p

    for model, values in acc.items():
        for seed, a in enumerate(values):
            d = tmp_path / "runs" / model / f"seed{seed}"
            d.mkdir(parents=True)
            m = {"seed": seed, "n_train": 60000, "test_accuracy": a, "seconds_per_epoch": 1.0, "epochs": 15,
                 "ema_decay": 0.999}
            preds = {"labels": labels, "predicted": guesses(a), "predicted_averaged": guesses(a + 0.002)}
            if model.startswith("eqspike"):
                preds.update(predicted_spike_count=guesses(a - 0.001), predicted_spike_count_averaged=guesses(a))
            (d / "metrics.json").write_text(json.dumps(m))
            np.savez(d / "predictions.npz", **preds)
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
    eq = detail["summaries"]["eqspike"]
    # the interval holds both error sources: the seeds' (t with 2 dof) and the test set's
    assert eq["test_accuracy"]["seed_half_width"] == pytest.approx(4.302653 * 0.001 / math.sqrt(3), rel=1e-4)
    assert eq["test_accuracy"]["test_half_width"] > 0.002
    assert eq["test_accuracy_averaged"]["mean"] == pytest.approx(0.979)
    assert detail["verdicts"]["C1 EqSpike"].startswith("reproduced")  # inside 97.6 +- 0.5
    assert detail["verdicts"]["C1 EqSpike, weight average (beside)"].startswith("at least the paper")  # 97.9 +- 0.37
    assert detail["gaps"]["ep_minus_eqspike"]["mean"] == pytest.approx(0.004)
    assert detail["gaps"]["eqspike_minus_variant"]["mean"] == pytest.approx(-0.001)
    assert flat["bp.test_accuracy.mean"] == pytest.approx(0.982)
    assert detail["verdicts"]["C1 EqSpike variant"].startswith("at least the paper")  # 97.8 +- 0.38
    assert detail["like_for_like"]["same"] and flat["like_for_like"] == 1
    assert detail["ranking_raw"] == ["bp", "ep", "eqspike_variant", "eqspike"]
