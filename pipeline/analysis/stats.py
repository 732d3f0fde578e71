"""Statistics over seeds and test examples, and the verdicts of claims C1 and C2, read against
margins declared before the numbers (``aggregate.margins``, conf/aggregate/default.yaml).

Intervals (95 %) combine the two sources of error of an accuracy measured on a shared test set:

    seeds      the spread of the per-seed figures: Student t (n - 1 degrees of freedom) * s / sqrt(n)
    test set   the sampling error of the N test examples, which more seeds cannot remove:
               z * sqrt(var(mu_i) / N), mu_i = the example's expected figure over seeds
               (correct 0/1 for an accuracy; correct_A - correct_B for a gap), estimated from
               the examples' means over the seeds less their seed-to-seed part

and add the two half-widths in quadrature (``accuracy_interval``). A gap between two models is
paired: the same seeds (initial weights, data order) and the same test examples on both sides
(``paired_gap``).

Verdicts (``equivalence``), with the declared margin delta:

    reproduced           the whole interval inside [paper - delta, paper + delta]
    at least the paper   the interval above paper - delta, its top above paper + delta
    above the paper      the whole interval above paper + delta
    below the paper      the whole interval below paper - delta
    not resolved         the interval reaches below paper - delta without lying below it

Every passing verdict needs the interval's low end at or above paper - delta, so a noisier run
(a wider interval around the same mean) never passes more easily than a precise one. "Similar"
(C2) is the same test on the gap, against 0 +- its own margin. A verdict is given only for runs
comparable to the paper (MNIST, the full training set, the paper's network); other runs get their
numbers and the reason no verdict applies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.core.schema import opt, req


@dataclass(frozen=True, kw_only=True)
class AggregateOutCfg:
    metrics: str = opt("results/flat/aggregate.json")  # flat numbers (MLflow); the headline is metrics/
    detail: str = opt("results/aggregate.json")  # per-seed tables, intervals, verdicts


@dataclass(frozen=True, kw_only=True)
class Margins:
    """The margins of the verdicts, declared before the numbers they judge (fractions: 0.005 is
    half a point of accuracy)."""

    reproduced: float = req(gt=0, lt=1)  # C1: our interval inside the paper's value +- this
    similar: float = req(gt=0, lt=1)  # C2: the paired gap's interval inside 0 +- this


@dataclass(frozen=True, kw_only=True)
class AggregateCfg:
    """Statistics over seeds and test examples, and the verdicts (claims C1, C2)."""

    margins: Margins = req()
    # the models summarised (the paper's four; a pipeline beside it may train fewer, e.g. depth/)
    models: list[str] = opt(["ep", "eqspike", "eqspike_variant", "bp"], min_len=1,
                            choices=("ep", "eqspike", "eqspike_variant", "bp"))
    out: AggregateOutCfg = opt(AggregateOutCfg())


CONFIDENCE = 0.95


def _t_quantile(dof: float) -> float:
    """Student t's two-sided CONFIDENCE quantile. scipy.stats is imported here, not at the top:
    every stage imports this module through the root config, and only the summaries need it."""
    from scipy import stats as st

    return float(st.t.ppf(0.5 + CONFIDENCE / 2, dof))


def summary(values: Sequence[float]) -> dict:
    """n, mean, std, and the 95 % Student-t interval of the mean (None with one value)."""
    n = len(values)
    if n == 0:
        raise ValueError("no values to summarise")
    mean = sum(values) / n
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "ci_low": None, "ci_high": None, "half_width": None}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = _t_quantile(n - 1) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "half_width": half}


def difference(a: Sequence[float], b: Sequence[float]) -> dict:
    """mean(a) - mean(b) with Welch's 95 % interval (None when either side has one value)."""
    sa, sb = summary(a), summary(b)
    diff = sa["mean"] - sb["mean"]
    if sa["std"] is None or sb["std"] is None:
        return {"mean": diff, "ci_low": None, "ci_high": None}
    va, vb = sa["std"] ** 2 / sa["n"], sb["std"] ** 2 / sb["n"]
    se = math.sqrt(va + vb)
    if se == 0:
        return {"mean": diff, "ci_low": diff, "ci_high": diff}
    dof = (va + vb) ** 2 / (va**2 / (sa["n"] - 1) + vb**2 / (sb["n"] - 1))
    half = _t_quantile(dof) * se
    return {"mean": diff, "ci_low": diff - half, "ci_high": diff + half}


def _z_quantile() -> float:
    from scipy import stats as st

    return float(st.norm.ppf(0.5 + CONFIDENCE / 2))


def _combined(values: np.ndarray) -> dict:
    """Mean over seeds (rows) of the mean over test examples (columns) of ``values``, with the
    combined interval. The test-set term is the spread of the examples' own means, var(mu_i),
    estimated as var_i(c_i) minus the seed-to-seed part of it, mean_i(var_s(c_si)) / n, which the
    seeds' term already holds (a two-way decomposition: nothing counted twice)."""
    n, N = values.shape
    per_seed = values.mean(axis=1)
    mean = float(per_seed.mean())
    seed_half = _t_quantile(n - 1) * float(per_seed.std(ddof=1)) / math.sqrt(n) if n > 1 else None
    test_half = 0.0
    if N > 1:
        between = float(values.mean(axis=0).var(ddof=1))
        within = float(values.var(axis=0, ddof=1).mean()) / n if n > 1 else 0.0
        test_half = _z_quantile() * math.sqrt(max(between - within, 0.0) / N)
    out = {"n_seeds": n, "n_test": N, "mean": mean, "std": float(per_seed.std(ddof=1)) if n > 1 else None,
           "seed_half_width": seed_half, "test_half_width": test_half}
    if seed_half is None:
        out.update(ci_low=None, ci_high=None, half_width=None)
    else:
        half = math.hypot(seed_half, test_half)
        out.update(ci_low=mean - half, ci_high=mean + half, half_width=half)
    return out


def accuracy_interval(correct) -> dict:
    """``correct``: (seeds, test examples) 0/1; the mean accuracy over seeds with its interval
    combining the seeds' spread and the test set's sampling error (module docstring)."""
    c = np.asarray(correct, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] == 0:
        raise ValueError(f"correct: needs (seeds, test examples), got shape {c.shape}")
    return _combined(c)


def paired_gap(correct_a, correct_b) -> dict:
    """accuracy(a) - accuracy(b), paired by seed (row) and test example (column), with the
    combined interval; also the seeds-only interval (``seed_ci``) and, for reference, Welch's."""
    a, b = np.asarray(correct_a, dtype=np.float64), np.asarray(correct_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired gap: the two models need the same seeds and test examples, got {a.shape} "
                         f"and {b.shape}")
    out = _combined(a - b)
    if out["seed_half_width"] is not None:
        out["seed_ci"] = [out["mean"] - out["seed_half_width"], out["mean"] + out["seed_half_width"]]
    out["welch"] = difference(list(a.mean(axis=1)), list(b.mean(axis=1)))
    return out


VERDICTS = ("reproduced", "at least the paper", "above the paper", "below the paper", "not resolved")


def equivalence(iv: dict, target: float, margin: float) -> str:
    """The verdict of an interval against ``target`` +- ``margin`` (module docstring); "one
    seed" when there is no interval."""
    lo, hi = iv.get("ci_low"), iv.get("ci_high")
    if lo is None or hi is None:
        return "one seed"
    low_edge, high_edge = target - margin, target + margin
    if hi < low_edge:
        return "below the paper"
    if lo < low_edge:
        return "not resolved"
    if lo > high_edge:
        return "above the paper"
    if hi > high_edge:
        return "at least the paper"
    return "reproduced"


def passes(verdict: str) -> bool:
    """C1 holds: the interval is equivalent to the paper's value or not below it by the margin."""
    return verdict in ("reproduced", "at least the paper", "above the paper")


def verdict_vs_paper(iv: dict, paper: float, margin: float) -> str:
    """C1 in words: the verdict, the interval and the declared band."""
    v = equivalence(iv, paper, margin)
    band = f"[{100 * (paper - margin):.2f}, {100 * (paper + margin):.2f}] %"
    if v == "one seed":
        return f"one seed, no interval: {100 * iv['mean']:.2f} % as a single run (band {band})"
    where = f"interval {100 * iv['ci_low']:.2f} to {100 * iv['ci_high']:.2f} %, the paper's {100 * paper:.1f} % +- " \
            f"{100 * margin:.1f} points is {band}"
    return f"{v} ({where})"


def similar_verdict(gap: dict, margin: float) -> str:
    """C2 in words: the paired gap against 0 +- ``margin``."""
    lo, hi = gap.get("ci_low"), gap.get("ci_high")
    if lo is None or hi is None:
        return "one seed, no interval"
    where = f"gap {100 * gap['mean']:.2f} points, interval {100 * lo:.2f} to {100 * hi:.2f}, margin +-{100 * margin:.1f}"
    if -margin <= lo and hi <= margin:
        return f"similar ({where})"
    if lo > margin:
        return f"not similar: behind by more than the margin ({where})"
    if hi < -margin:
        return f"not similar: ahead by more than the margin ({where})"
    resolved = "; the gap is resolved (the interval excludes 0)" if lo > 0 or hi < 0 else ""
    return f"not resolved: the interval crosses the margin ({where}){resolved}"


def comparable(dataset: str, n_train: int, n_train_full: int, sizes: Sequence[int],
               paper_sizes: Sequence[int] = (784, 512, 10)) -> str | None:
    """None when a run can be compared with the paper; else the reason no verdict applies."""
    if dataset.lower() != "mnist":
        return f"no verdict: the paper's claims are about MNIST, this run is on {dataset}"
    if n_train != n_train_full:
        return f"no verdict: trained on {n_train} of the {n_train_full} training examples"
    if list(sizes) != list(paper_sizes):
        return f"no verdict: network {list(sizes)}, the paper's is {list(paper_sizes)}"
    return None
