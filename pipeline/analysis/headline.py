"""The headline figures, one small file per claim (``dvc metrics show`` prints one row each, with
the same three columns, so it fits a terminal): the value and, where there is one, its interval.

    c1_eqspike_raw, c1_eqspike_averaged, c2_rate_ep, c3_backprop   test accuracy (%), mean over seeds,
                                       from / to: its 95 % interval (seeds and test examples);
                                       raw weights except c1_eqspike_averaged (the shared average)
    c2_gap_ep_minus_eqspike            rate EP minus EqSpike, raw weights (points), 95 % interval
                                       paired by seed and test example
    c4_inference_ratio, c4_training_ratio   the headline GPU / chip energy ratio (energy.headline,
                                       total convention on both sides); from / to: the range over the
                                       defensible GPU baselines (the headline workload from batched
                                       to batch 1, energy.batches)
    c5_stdp_like_windows               STDP-like windows in the trained networks (of ``to``)
    c5_positive_control                1 when the positive control shows its STDP window
    epoch_seconds_{eqspike,rate_ep,backprop}   seconds per training epoch, mean and 95 % interval

The details stay in ``results/`` (every seed, pair, window and fit).
"""

from __future__ import annotations

NAMES = ("c1_eqspike_raw", "c1_eqspike_averaged", "c2_rate_ep", "c2_gap_ep_minus_eqspike", "c3_backprop",
         "c4_inference_ratio", "c4_training_ratio", "c5_stdp_like_windows", "c5_positive_control",
         "epoch_seconds_eqspike", "epoch_seconds_rate_ep", "epoch_seconds_backprop")


def _round(x: float) -> float:
    return float(f"{x:.5g}")


def _row(value, low=None, high=None, scale: float = 1.0) -> dict:
    row = {"value": _round(value * scale)}
    if low is not None and high is not None:
        row.update({"from": _round(low * scale), "to": _round(high * scale)})
    return row


def _summary(s: dict | None, scale: float = 1.0) -> dict | None:
    return None if s is None else _row(s["mean"], s.get("ci_low"), s.get("ci_high"), scale)


def headline(aggregate: dict, energy: dict, stdp: dict) -> dict[str, dict]:
    """``{name: {"value", "from", "to"}}`` from the aggregate, energy and STDP details (``dvc metrics
    show`` sorts the columns: from, to, value)."""
    sm = aggregate["summaries"]
    out = {
        "c1_eqspike_raw": _summary(sm["eqspike"]["test_accuracy"], 100),
        "c1_eqspike_averaged": _summary(sm["eqspike"].get("test_accuracy_averaged"), 100),
        "c2_rate_ep": _summary(sm["ep"]["test_accuracy"], 100),
        "c2_gap_ep_minus_eqspike": _summary(aggregate["gaps"]["ep_minus_eqspike"], 100),
        "c3_backprop": _summary(sm["bp"]["test_accuracy"], 100),
        "epoch_seconds_eqspike": _summary(sm["eqspike"]["seconds_per_epoch"]),
        "epoch_seconds_rate_ep": _summary(sm["ep"]["seconds_per_epoch"]),
        "epoch_seconds_backprop": _summary(sm["bp"]["seconds_per_epoch"]),
    }
    head, rng = energy["headline"], energy.get("headline_range", {})
    for part in ("inference", "training"):
        r = rng.get(part)
        out[f"c4_{part}_ratio"] = _row(head[f"{part}_ratio"], r and r["from"], r and r["to"])
    verdicts = [term[main]["verdict"] for m in stdp["models"].values() for g in m["groups"].values()
                for name, term in g.items() if name != "trace_by_post_rate"
                for main in (("net",) if "net" in term else tuple(term)[:1])]
    out["c5_stdp_like_windows"] = {"value": sum(v == "STDP-like" for v in verdicts), "from": 0, "to": len(verdicts)}
    positive = next(c for name, c in stdp["controls"].items() if name.startswith("positive"))
    out["c5_positive_control"] = {"value": int(positive["verdict"] == "STDP-like")}
    return {k: out[k] for k in NAMES if out.get(k) is not None}
