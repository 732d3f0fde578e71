"""The report: claims verdicts, the comparison table, Markdown and offline HTML rendering."""

from __future__ import annotations

import json

import numpy as np

from pipeline.analysis import report as rp


def correct(accuracies: list[float], n: int = 10_000) -> np.ndarray:
    """(seeds, n) 0/1 with the given accuracy per seed, errors on the first examples (shared)."""
    c = np.ones((len(accuracies), n), dtype=bool)
    for i, a in enumerate(accuracies):
        c[i, : round((1 - a) * n)] = False
    return c


def aggregate(eq: list[float], ep: list[float], averaged: list[float] | None = None) -> dict:
    from pipeline.analysis import stats

    eq_s = {"test_accuracy": stats.accuracy_interval(correct(eq))}
    if averaged:
        eq_s["test_accuracy_averaged"] = stats.accuracy_interval(correct(averaged))
    ep_s = stats.accuracy_interval(correct(ep))
    gap = stats.paired_gap(correct(ep), correct(eq))
    return {"summaries": {"eqspike": eq_s, "ep": {"test_accuracy": ep_s}},
            "gaps": {"ep_minus_eqspike": gap}, "margins": {"reproduced": 0.005, "similar": 0.005},
            "verdicts": {"C1 EqSpike": stats.verdict_vs_paper(eq_s["test_accuracy"], 0.976, 0.005),
                         "C1 EqSpike, weight average (beside)": "x",
                         "C2 rate-based EP": stats.verdict_vs_paper(ep_s, 0.98, 0.005),
                         "C2 EqSpike similar to rate-based EP": stats.similar_verdict(gap, 0.005)}}


def test_claims_read_intervals_raw_weights_first():
    rows = rp.claims_rows(aggregate([0.975, 0.977, 0.976], [0.977, 0.978, 0.976], averaged=[0.98, 0.981, 0.982]),
                          None, None, paper_eqspike=0.976, paper_rate=0.98)
    c1, c1_avg, c2, gap = rows
    assert c1[0].startswith("C1 EqSpike accuracy on MNIST, raw weights (margin +-0.5 points)")
    assert c1[2].startswith("97.60 % (95 % CI") and "3 seeds +-0.25, test set +-0.3" in c1[2]
    assert c1[4].startswith("reproduced")
    assert c1_avg[2].startswith("98.10 %")
    assert c2[4].startswith("not resolved")  # 97.7 +- 0.38 reaches below 98 - 0.5
    assert gap[4].startswith("similar") and "0.10 points" in gap[2] and "paired" in gap[2]
    rows = rp.claims_rows(aggregate([0.960, 0.961, 0.962], [0.98, 0.981, 0.982]), None, None, 0.976, 0.98)
    assert rows[0][4].startswith("below the paper") and rows[2][4].startswith("not similar: behind")


def test_comparison_is_sorted_and_marks_ours():
    published = [{"method": "A", "learning": "l", "network": "n", "accuracy": 0.95, "source": "s", "recalled": True},
                 {"method": "B", "learning": "l", "network": "n", "accuracy": 0.99, "source": "s"}]
    rows = rp.comparison_rows(published, [{"method": "ours", "learning": "l", "network": "n",
                                           "accuracy": 0.97, "source": "metrics"}])
    assert [r[0] for r in rows] == ["B", "**ours**", "A"]
    assert rows[2][3] == "95.00 % (recalled)"


def test_markdown_and_self_contained_html(tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 20
    (tmp_path / "fig.png").write_bytes(png)
    blocks = [("h", 1, "Title"), ("p", "a **bold** `code` <tag>"), ("table", ["a", "b"], [["1", "x|y"]]),
              ("img", "fig.png", "caption"), ("img", "missing.png", "gone"), ("code", "x = 1")]
    md = rp.to_markdown(blocks)
    assert md.startswith("# Title\n") and "| 1 | x/y |" in md and "![caption](fig.png)" in md
    page = rp.to_html(blocks, "t", tmp_path)
    assert "<b>bold</b>" in page and "<code>code</code>" in page and "&lt;tag&gt;" in page
    assert "data:image/png;base64," in page and "missing figure: missing.png" in page
    assert "http" not in page  # nothing to fetch: works offline


def test_energy_and_stdp_rows():
    energy = {"headline": {"inference_ratio": 2000.0, "training_ratio": 50.0, "gpu": "g", "neuromorphic": "n",
                           "workload": "mlp_bp", "regime": "batch 1", "inference_ratio_dynamic": 1500.0,
                           "training_ratio_dynamic": 40.0},
              "headline_range": {"regimes": ["batch 1", "batch 1000"], "workload": "mlp_bp", "gpu": "g",
                                 "neuromorphic": "n",
                                 "inference": {"from": 3.0, "to": 2000.0, "paper": 1000.0, "paper_is": "inside"},
                                 "training": {"from": 1.0, "to": 50.0, "paper": 100.0, "paper_is": "above"}},
              "headline_rule": "the rule",
              "paper": {"inference_ratio": 1000.0, "training_ratio": 100.0},
              "assumptions": {"inference": "holds at batch 1", "training": "holds under none"}}
    iv = {"value": 1.0, "lo": 0.5, "hi": 1.5}
    win = {"verdict": "STDP-like", "lobe_pos": iv, "lobe_neg": iv, "area_ratio": iv,
           "tau_plus_ms": iv, "tau_minus_ms": iv}
    stdp = {"models": {"eqspike_variant": {"leak": 0.3, "groups": {"hidden synapses": {"trace": {"net": win}}}}}}
    rows = rp.claims_rows(None, energy, stdp, 0.976, 0.98)
    assert rows[0][1] == "1,000x" and rows[0][2].startswith("total: 3x to 2,000x (the paper's is inside)")
    assert "(mlp_bp on g from batch 1000 to batch 1 / n)" in rows[0][2] and "1,500x dynamic" in rows[0][3]
    assert rows[0][4] == "holds at batch 1" and rows[1][4] == "holds under none"
    assert rows[2][4] == "STDP-like" and "tau+ 1 [0.5, 1.5] ms" in rows[2][2]
    json.dumps(rows)


def test_the_headline_is_what_dvc_declares_as_metrics():
    """``dvc metrics show`` reads exactly the headline files, one per figure, and nothing else."""
    import yaml

    from pipeline.analysis.headline import NAMES
    from tests.conftest import REPO

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    declared = {name: [next(iter(m)) if isinstance(m, dict) else m for m in spec.get("metrics", [])]
                for name, spec in stages.items()}
    assert declared.pop("report") == [f"${{report.out.headline_dir}}/{n}.json" for n in NAMES]
    assert all(not m for m in declared.values()), declared


def test_headline_rows_from_known_details():
    from pipeline.analysis.headline import headline

    s = {"mean": 0.98, "ci_low": 0.97, "ci_high": 0.99}
    agg = {"summaries": {"eqspike": {"test_accuracy": s, "test_accuracy_averaged": s, "seconds_per_epoch": s},
                         "ep": {"test_accuracy": s, "seconds_per_epoch": s},
                         "bp": {"test_accuracy": s, "seconds_per_epoch": s}},
           "gaps": {"ep_minus_eqspike": {"mean": 0.001, "ci_low": -0.001, "ci_high": 0.003}}}
    energy = {"headline": {"variant": "v", "inference_ratio": 40.0, "training_ratio": 20.0},
              "headline_range": {"inference": {"from": 0.5, "to": 900.0}, "training": {"from": 0.25, "to": 450.0}},
              "pairs": [{"variant": "v", "inference_ratio": r, "training_ratio": r / 2} for r in (0.5, 40.0, 900.0)]
              + [{"variant": "other", "inference_ratio": 1e9, "training_ratio": 1e9}]}
    win = {"net": {"verdict": "STDP-like"}, "nudged+": {"verdict": "no window"}}
    stdp = {"models": {"m": {"groups": {"g": {"trace": win, "spike": {"net": {"verdict": "no window"}},
                                              "trace_by_post_rate": []}}}},
            "controls": {"positive control (x)": {"verdict": "STDP-like"}, "negative control": {"verdict": "no window"}}}
    h = headline(agg, energy, stdp)
    assert h["c1_eqspike_raw"] == {"value": 98.0, "from": 97.0, "to": 99.0}
    assert h["c2_gap_ep_minus_eqspike"] == {"value": 0.1, "from": -0.1, "to": 0.3}
    assert h["c4_inference_ratio"] == {"value": 40.0, "from": 0.5, "to": 900.0}
    assert h["c5_stdp_like_windows"] == {"value": 1, "from": 0, "to": 2}
    assert h["c5_positive_control"] == {"value": 1}
