"""DVC stage ``aggregate``: the training runs of every seed, summarised (claims C1 and C2 read
intervals; statistics and verdicts in pipeline/stats.py).

    python -m stages.aggregate
    python -m stages.aggregate "runtime.seeds=[0,1]"

Reads ``<runs>/seed<n>/metrics.json`` of the four models (rate EP, EqSpike, the EqSpike variant, the backprop MLP) for every seed in ``runtime.seeds``; writes
flat numbers to ``aggregate.out.metrics`` and the per-seed tables, intervals and verdicts to
``aggregate.out.detail`` (read by the report).
"""

from __future__ import annotations

import json
import sys

from pipeline import stats
from pipeline.schema import Config
from stages.common import Run, SeedPaths, repo_path, stage_main, write_json

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


def worker(cfg: Config, run: Run) -> None:
    seeds = list(cfg.runtime.seeds)
    per_seed: dict[str, list[dict]] = {}
    for model, out in (("ep", cfg.ep.out), ("eqspike", cfg.eqspike.out), ("eqspike_variant", cfg.variant.out),
                       ("bp", cfg.bp.out)):
        rows = []
        for seed in seeds:
            path = SeedPaths(out, seed).metrics
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: run train_{model} for seed {seed} first "
                                        f"(dvc repro train_{model}@{seed})")
            rows.append(json.loads(path.read_text()))
        per_seed[model] = rows
    summaries = {model: {f: stats.summary([r[f] for r in rows]) for f in FIGURES[model] if all(f in r for r in rows)}
                 for model, rows in per_seed.items()}
    n_full = cfg.data.train_images.shape[0]
    sizes = {"ep": cfg.ep.sizes, "eqspike": cfg.eqspike.sizes, "eqspike_variant": cfg.eqspike.sizes, "bp": cfg.bp.sizes}
    guards = {model: stats.comparable(cfg.data.name, per_seed[model][0]["n_train"], n_full, sizes[model])
              for model in per_seed}
    rc = cfg.report
    eq, ep = summaries["eqspike"], summaries["ep"]
    verdicts = {
        "C1 EqSpike (averaged weights)": guards["eqspike"] or stats.verdict_vs_paper(eq["test_accuracy"],
                                                                                     rc.paper_eqspike_accuracy),
        "C1 EqSpike (raw weights)": guards["eqspike"] or (stats.verdict_vs_paper(eq["test_accuracy_raw"],
                                                                                 rc.paper_eqspike_accuracy)
                                                          if "test_accuracy_raw" in eq else "no raw weights"),
        "C1 EqSpike variant (averaged weights)": guards["eqspike_variant"] or stats.verdict_vs_paper(
            summaries["eqspike_variant"]["test_accuracy"], rc.paper_eqspike_accuracy),
        "C1 EqSpike variant (raw weights)": guards["eqspike_variant"] or stats.verdict_vs_paper(
            summaries["eqspike_variant"]["test_accuracy_raw"], rc.paper_eqspike_accuracy),
        "C2 rate-based EP": guards["ep"] or stats.verdict_vs_paper(ep["test_accuracy"], rc.paper_rate_accuracy),
    }
    gap = stats.difference([r["test_accuracy"] for r in per_seed["ep"]], [r["test_accuracy"] for r in per_seed["eqspike"]])
    variant_gap = stats.difference([r["test_accuracy_raw"] for r in per_seed["eqspike"]],
                                 [r["test_accuracy_raw"] for r in per_seed["eqspike_variant"]])
    detail = {"seeds": seeds, "confidence": stats.CONFIDENCE, "per_seed": per_seed, "summaries": summaries,
              "gap_ep_minus_eqspike": gap, "gap_eqspike_minus_variant_raw": variant_gap, "verdicts": verdicts,
              "paper": {"eqspike": rc.paper_eqspike_accuracy, "rate_ep": rc.paper_rate_accuracy}}
    write_json(repo_path(cfg.aggregate.out.detail), detail)
    flat = {}
    for model, figs in summaries.items():
        for f, s in figs.items():
            for k in ("mean", "std", "ci_low", "ci_high"):
                if s[k] is not None:
                    flat[f"{model}.{f}.{k}"] = s[k]
    flat["gap_ep_minus_eqspike.mean"] = gap["mean"]
    flat["gap_eqspike_minus_variant_raw.mean"] = variant_gap["mean"]
    flat["n_seeds"] = len(seeds)
    write_json(repo_path(cfg.aggregate.out.metrics), flat)
    run.metrics({k: v for k, v in flat.items() if isinstance(v, (int, float))})
    for path in (cfg.aggregate.out.metrics, cfg.aggregate.out.detail):
        run.artifact(repo_path(path))
    for name, v in verdicts.items():
        print(f"{name}: {v}")


main = stage_main("aggregate", worker)

if __name__ == "__main__":
    sys.exit(main())
