"""Claims C1 and C2 over seeds and test examples: the four models' figures summarised, the test
accuracies with intervals that combine the seeds' spread and the test set's sampling error, the
gaps between models paired by seed and test example, and the verdicts against the margins
declared in ``aggregate.margins`` (``pipeline.analysis.stats``).

Like for like: the raw weights are every model's headline; the shared weight average
(``train.ema_decay``) is reported beside them. ``like_for_like`` records the aids and the epoch
budget of every model; when they differ, every verdict says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from pipeline.analysis import stats

MODELS = ("ep", "eqspike", "eqspike_variant", "bp")
LABELS = {"ep": "rate-based EP", "eqspike": "EqSpike", "eqspike_variant": "EqSpike variant", "bp": "backprop MLP"}
# scalar figures summarised over seeds (mean, spread, Student-t interval), where a model has them
SCALARS = ("val_accuracy", "val_accuracy_averaged", "train_accuracy", "seconds_per_epoch",
           "test_spike_count_tie_rate")
# test accuracies with the combined interval: figure -> the prediction array it is read from
READOUTS = {"test_accuracy": "predicted", "test_accuracy_averaged": "predicted_averaged",
            "test_accuracy_spike_count": "predicted_spike_count",
            "test_accuracy_spike_count_averaged": "predicted_spike_count_averaged"}
# the paired gaps: name -> (model a, model b, read-out); a - b
GAPS = {"ep_minus_eqspike": ("ep", "eqspike", "predicted"),
        "ep_minus_eqspike_averaged": ("ep", "eqspike", "predicted_averaged"),
        "eqspike_minus_variant": ("eqspike", "eqspike_variant", "predicted"),
        "bp_minus_eqspike": ("bp", "eqspike", "predicted"),
        "bp_minus_ep": ("bp", "ep", "predicted")}


def correct_matrix(predictions: Sequence[Mapping[str, np.ndarray]], key: str) -> np.ndarray | None:
    """(seeds, test examples) 0/1 of one read-out; None when a seed lacks it."""
    if not all(key in p for p in predictions):
        return None
    return np.stack([np.asarray(p[key]) == np.asarray(p["labels"]) for p in predictions])


def like_for_like(per_seed: Mapping[str, list[dict]]) -> dict:
    """The aids and epoch budget of every model, and whether they are the same for all."""
    def values(field):
        return {m: sorted({r.get(field) for r in rows}, key=str) for m, rows in per_seed.items()}

    ema, epochs = values("ema_decay"), values("epochs")
    same = len({tuple(v) for v in ema.values()}) == 1 and len({tuple(v) for v in epochs.values()}) == 1
    return {"ema_decay": ema, "epochs": epochs, "same": same}


def aggregate(per_seed: dict[str, list[dict]], predictions: dict[str, list[dict]], seeds: Sequence[int],
              sizes: dict[str, Sequence[int]], dataset: str, n_train_full: int, paper_eqspike: float,
              paper_rate: float, margins) -> tuple[dict, dict]:
    """``per_seed[model]``: the metrics.json of every seed; ``predictions[model]``: the
    predictions.npz of every seed (arrays); ``margins``: ``stats.Margins``. Returns the detail
    (per-seed tables, intervals, paired gaps, verdicts) and the flat numbers. A subset of
    ``MODELS`` gives the gaps and verdicts its models allow."""
    first = next(iter(predictions))
    for model, preds in predictions.items():
        for seed, p in zip(seeds, preds):
            if not np.array_equal(p["labels"], predictions[first][0]["labels"]):
                raise ValueError(f"{model} seed {seed}: its predictions are of another test set than "
                                 f"{first} seed {seeds[0]}'s: the gaps cannot be paired")
    summaries: dict[str, dict] = {}
    correct: dict[tuple[str, str], np.ndarray | None] = {}  # (model, read-out) -> (seeds, examples) 0/1, built once
    for model, rows in per_seed.items():
        figs = {f: stats.summary([r[f] for r in rows]) for f in SCALARS if all(f in r for r in rows)}
        for figure, key in READOUTS.items():
            c = correct[(model, key)] = correct_matrix(predictions[model], key)
            if c is not None:
                figs[figure] = stats.accuracy_interval(c)
        summaries[model] = figs
    gaps = {}
    for name, (a, b, key) in GAPS.items():
        if a not in predictions or b not in predictions:
            continue
        ca, cb = (correct[(m, key)] if (m, key) in correct else correct_matrix(predictions[m], key) for m in (a, b))
        if ca is not None and cb is not None:
            gaps[name] = stats.paired_gap(ca, cb)
    aids = like_for_like(per_seed)
    unlike = "" if aids["same"] else ("not like for like (the models' weight average or epoch budget differ: "
                                      f"ema_decay {aids['ema_decay']}, epochs {aids['epochs']}): ")
    guards = {model: stats.comparable(dataset, per_seed[model][0]["n_train"], n_train_full, sizes[model])
              for model in per_seed}

    def c1(model, figure, paper):
        return guards[model] or unlike + stats.verdict_vs_paper(summaries[model][figure], paper, margins.reproduced)

    verdicts = {}
    for name, model, paper in (("C1 EqSpike", "eqspike", paper_eqspike),
                               ("C1 EqSpike variant", "eqspike_variant", paper_eqspike),
                               ("C2 rate-based EP", "ep", paper_rate)):
        if model in summaries:
            verdicts[name] = c1(model, "test_accuracy", paper)
    if "ep_minus_eqspike" in gaps:
        verdicts["C2 EqSpike similar to rate-based EP"] = (guards["eqspike"] or guards["ep"] or unlike + stats.similar_verdict(
            gaps["ep_minus_eqspike"], margins.similar))
    if "test_accuracy_averaged" in summaries.get("eqspike", {}) and "ep_minus_eqspike_averaged" in gaps:
        verdicts["C1 EqSpike, weight average (beside)"] = c1("eqspike", "test_accuracy_averaged", paper_eqspike)
        verdicts["C2 similar, weight averages (beside)"] = (
            guards["eqspike"] or unlike + stats.similar_verdict(gaps["ep_minus_eqspike_averaged"], margins.similar))
    ranking = sorted(((summaries[m]["test_accuracy"]["mean"], m) for m in per_seed), reverse=True)
    detail = {"seeds": list(seeds), "confidence": stats.CONFIDENCE, "per_seed": per_seed, "summaries": summaries,
              "gaps": gaps, "verdicts": verdicts, "like_for_like": aids,
              "margins": {"reproduced": margins.reproduced, "similar": margins.similar},
              "ranking_raw": [m for _, m in ranking],
              "paper": {"eqspike": paper_eqspike, "rate_ep": paper_rate}}
    flat = {}
    for model, figs in summaries.items():
        for f, s in figs.items():
            for k in ("mean", "std", "ci_low", "ci_high"):
                if s.get(k) is not None:
                    flat[f"{model}.{f}.{k}"] = s[k]
    for name, g in gaps.items():
        for k in ("mean", "ci_low", "ci_high"):
            if g.get(k) is not None:
                flat[f"gap.{name}.{k}"] = g[k]
    flat["n_seeds"] = len(seeds)
    flat["like_for_like"] = int(aids["same"])
    return detail, flat
