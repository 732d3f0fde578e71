"""Statistics over seeds, and the verdicts of claims C1 and C2 that read intervals, not points.

    mean, sample standard deviation (ddof 1), 95 % confidence interval of the mean with Student's t
    (n - 1 degrees of freedom); the difference of two means with Welch's interval.

C1 ("reaches the paper's accuracy"): ``reproduced`` when the paper's value lies inside the interval
or below it; ``below the paper`` when the whole interval is under it. A verdict is given only for
runs comparable to the paper (MNIST, the full training set, the paper's network); other runs get
their numbers and the reason no verdict applies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.core.schema import opt


@dataclass(frozen=True, kw_only=True)
class AggregateOutCfg:
    metrics: str = opt("results/flat/aggregate.json")  # flat numbers (MLflow); the headline is metrics/
    detail: str = opt("results/aggregate.json")  # per-seed tables, intervals, verdicts


@dataclass(frozen=True, kw_only=True)
class AggregateCfg:
    """Statistics over seeds (claims C1, C2)."""

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


def verdict_vs_paper(s: dict, paper: float) -> str:
    """Read the interval: reproduced (the paper's value inside the interval or below it) or below."""
    if s["ci_high"] is None:
        return ("one seed, no interval: " + ("at or above the paper" if s["mean"] >= paper else "below the paper")
                + " as a single run")
    if paper <= s["ci_high"]:
        where = "inside the interval" if paper >= s["ci_low"] else "below the interval"
        return f"reproduced (the paper's {100 * paper:.1f} % is {where})"
    return f"below the paper (the whole interval is under {100 * paper:.1f} %)"


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
