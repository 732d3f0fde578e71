"""Claims C1 and C2 over seeds: per-seed figures of the four models summarised (mean, spread,
interval: ``pipeline.analysis.stats``), the gaps between models, and the verdicts against the
paper's values."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.analysis import stats

MODELS = ("ep", "eqspike", "eqspike_variant", "bp")
# the figures summarised over seeds, per model (EqSpike: the averaged and the raw weights, and
# both read-outs; names as the training stages write them)
FIGURES = {
    "ep": ["test_accuracy", "val_accuracy", "seconds_per_epoch"],
    "bp": ["test_accuracy", "val_accuracy", "seconds_per_epoch"],
    "eqspike_variant": ["test_accuracy", "test_accuracy_raw", "test_accuracy_spike_count", "val_accuracy",
                      "val_accuracy_raw", "seconds_per_epoch"],
    "eqspike": ["test_accuracy", "test_accuracy_raw", "test_accuracy_spike_count", "test_accuracy_spike_count_raw",
                "val_accuracy", "val_accuracy_raw", "seconds_per_epoch"],
}


def aggregate(per_seed: dict[str, list[dict]], seeds: Sequence[int], sizes: dict[str, Sequence[int]], dataset: str,
              n_train_full: int, paper_eqspike: float, paper_rate: float) -> tuple[dict, dict]:
    """``per_seed[model]``: the metrics.json of every seed; returns the detail (per-seed tables,
    summaries, gaps, verdicts) and the flat numbers (dvc metrics)."""
    summaries = {model: {f: stats.summary([r[f] for r in rows]) for f in FIGURES[model] if all(f in r for r in rows)}
                 for model, rows in per_seed.items()}
    guards = {model: stats.comparable(dataset, per_seed[model][0]["n_train"], n_train_full, sizes[model])
              for model in per_seed}
    eq, ep = summaries["eqspike"], summaries["ep"]
    verdicts = {
        "C1 EqSpike (averaged weights)": guards["eqspike"] or stats.verdict_vs_paper(eq["test_accuracy"],
                                                                                     paper_eqspike),
        "C1 EqSpike (raw weights)": guards["eqspike"] or (stats.verdict_vs_paper(eq["test_accuracy_raw"],
                                                                                 paper_eqspike)
                                                          if "test_accuracy_raw" in eq else "no raw weights"),
        "C1 EqSpike variant (averaged weights)": guards["eqspike_variant"] or stats.verdict_vs_paper(
            summaries["eqspike_variant"]["test_accuracy"], paper_eqspike),
        "C1 EqSpike variant (raw weights)": guards["eqspike_variant"] or stats.verdict_vs_paper(
            summaries["eqspike_variant"]["test_accuracy_raw"], paper_eqspike),
        "C2 rate-based EP": guards["ep"] or stats.verdict_vs_paper(ep["test_accuracy"], paper_rate),
    }
    gap = stats.difference([r["test_accuracy"] for r in per_seed["ep"]], [r["test_accuracy"] for r in per_seed["eqspike"]])
    variant_gap = stats.difference([r["test_accuracy_raw"] for r in per_seed["eqspike"]],
                                 [r["test_accuracy_raw"] for r in per_seed["eqspike_variant"]])
    detail = {"seeds": list(seeds), "confidence": stats.CONFIDENCE, "per_seed": per_seed, "summaries": summaries,
              "gap_ep_minus_eqspike": gap, "gap_eqspike_minus_variant_raw": variant_gap, "verdicts": verdicts,
              "paper": {"eqspike": paper_eqspike, "rate_ep": paper_rate}}
    flat = {}
    for model, figs in summaries.items():
        for f, s in figs.items():
            for k in ("mean", "std", "ci_low", "ci_high"):
                if s[k] is not None:
                    flat[f"{model}.{f}.{k}"] = s[k]
    flat["gap_ep_minus_eqspike.mean"] = gap["mean"]
    flat["gap_eqspike_minus_variant_raw.mean"] = variant_gap["mean"]
    flat["n_seeds"] = len(seeds)
    return detail, flat
