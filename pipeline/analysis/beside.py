"""The tables of the pipelines beside the paper's (fashion/, depth/: issue 25): each model's test
accuracy (raw weights, the headline; the weight average beside) with its interval over seeds and
test examples, the paired gaps, the verdict the aggregate gives (none: another dataset, another
network), the published figures beside ours, and for depth the bias check per layer (does the
spike-driven update of every layer still point where rate EP's does?).

The numbers come from the pipeline's own ``aggregate`` (and ``bias``) outputs; this module only
lays them out (``report`` renders the page).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.analysis.aggregate import LABELS
from pipeline.analysis.report import Block, gap_text, to_markdown
from pipeline.core.schema import opt, req


@dataclass(frozen=True, kw_only=True)
class PublishedFigure:
    """A published result shown beside ours (no verdict reads it)."""

    work: str = req(min_len=1)
    task: str = req(min_len=1)
    result: str = req(min_len=1)
    source: str = req(min_len=3)


@dataclass(frozen=True, kw_only=True)
class BesideOutCfg:
    table_md: str | None = opt(None)  # the table alone (docs, README)
    page_md: str | None = opt(None)   # the page: scale, provenance, tables
    page_html: str | None = opt(None)


@dataclass(frozen=True, kw_only=True)
class BesideCfg:
    """conf/beside/: what a pipeline beside the paper's says about itself (its experiment file
    sets it; the paper's pipeline has none)."""

    title: str = opt("")
    # where each model's hyperparameters come from (shown above the table)
    provenance: str = opt("")
    published: list[PublishedFigure] = opt([])
    out: BesideOutCfg = opt(BesideOutCfg())


def cell(summary: Mapping | None) -> str:
    """``88.52 [88.10, 88.94]`` (%), or the one seed's value."""
    if not summary:
        return "n/a"
    if summary.get("ci_low") is None:
        return f"{100 * summary['mean']:.2f} (one seed)"
    return f"{100 * summary['mean']:.2f} [{100 * summary['ci_low']:.2f}, {100 * summary['ci_high']:.2f}]"


def model_rows(agg: Mapping, sizes: Mapping[str, Sequence[int]]) -> list[list[str]]:
    """One row per model of the aggregate, in its ranking by raw test accuracy."""
    rows = []
    verdict_of = {"eqspike": "C1 EqSpike", "eqspike_variant": "C1 EqSpike variant", "ep": "C2 rate-based EP"}
    for model in agg["ranking_raw"]:
        s, runs = agg["summaries"][model], agg["per_seed"][model]
        epochs = sorted({r.get("epochs") for r in runs}, key=str)
        sec = s.get("seconds_per_epoch")
        rows.append([LABELS[model], "-".join(str(n) for n in sizes[model]), str(len(runs)),
                     "/".join(str(e) for e in epochs), cell(s.get("test_accuracy")),
                     cell(s.get("test_accuracy_averaged")), cell(s.get("val_accuracy")),
                     f"{sec['mean']:.0f}" if sec else "n/a",
                     agg["verdicts"].get(verdict_of.get(model, ""), "no claim of the paper")])
    return rows


MODEL_HEADER = ["model", "network", "seeds", "epochs", "test accuracy, raw weights, % [95 %]",
                "weight average, %", "validation (raw), %", "s / epoch", "verdict"]


def gap_rows(agg: Mapping) -> list[list[str]]:
    return [[name.replace("_minus_", " minus ").replace("_", " "), gap_text(g)] for name, g in agg["gaps"].items()]


BIAS = (("spikes_vs_same_dynamics_rate", "spikes vs the same dynamics in rates"),
        ("spikes_vs_rate_ep", "spikes vs rate EP"),
        ("same_dynamics_rate_vs_rate_ep", "same dynamics in rates vs rate EP"),
        ("rate_ep_vs_gradient", "rate EP vs the gradient (BPTT)"))


def bias_rows(bias: Mapping) -> list[list[str]]:
    """Per weights (initialisation, trained) and layer: the cosines over batches, mean [95 %]."""
    rows = []
    for weights, head in bias["results"]["headline"].items():
        n_layers = len(next(iter(head.values())))
        for layer in range(n_layers):
            cells = []
            for key, _ in BIAS:
                c = head[key][layer]
                cells.append(f"{c['mean']:.3f}" + (f" [{c['ci_low']:.3f}, {c['ci_high']:.3f}]"
                                                   if c.get("ci_low") is not None else ""))
            rows.append([weights, f"W{layer} ({'input' if layer == 0 else 'hidden ' + str(layer)} -> "
                                  f"{'output' if layer == n_layers - 1 else 'hidden ' + str(layer + 1)})", *cells])
    return rows


def blocks(cfg: BesideCfg, agg: Mapping, sizes: Mapping[str, Sequence[int]], scale: str,
           bias: Mapping | None = None) -> list[Block]:
    """The page of a pipeline beside the paper's."""
    out: list[Block] = [
        ("h", 1, cfg.title or "Beside the paper"),
        ("p", scale + " Accuracy of the raw weights (every model's headline); the weight average beside it. "
              "Intervals (95 %) combine the seeds' spread and the test set's sampling error; gaps are paired "
              "by seed and test example. The verdict column is the aggregate stage's own: the paper's claims "
              "are about one hidden layer on MNIST, so none is judged here."),
    ]
    if cfg.provenance:
        out.append(("p", "Hyperparameters: " + cfg.provenance))
    out += [("table", MODEL_HEADER, model_rows(agg, sizes))]
    if agg["gaps"]:
        out += [("h", 2, "Gaps between models"), ("table", ["gap", "value"], gap_rows(agg))]
    if cfg.published:
        out += [("h", 2, "Published figures beside ours (no verdict reads them)"),
                ("table", ["work", "task / network", "result", "source"],
                 [[p.work, p.task, p.result, p.source] for p in cfg.published])]
    if bias is not None:
        n = len(next(iter(bias["results"]["headline"].values()))["spikes_vs_same_dynamics_rate"][0]["per_batch"])
        out += [("h", 2, "The bias check per layer"),
                ("p", f"Cosine between the updates of each layer on {n} training batches of {bias['batch_size']} "
                      "(mean [95 % interval over batches]): EqSpike's spike-driven update as trained (accumulators "
                      "from zero), the same dynamics with rates in place of spikes, prototypical rate EP and the "
                      "gradient; at initialisation and with the trained raw weights of seed 0."),
                ("table", ["weights", "layer", *(label for _, label in BIAS)], bias_rows(bias))]
    return out


def markdown_table(agg: Mapping, sizes: Mapping[str, Sequence[int]]) -> str:
    """The model table alone, as Markdown (the page's own table block)."""
    return to_markdown([("table", MODEL_HEADER, model_rows(agg, sizes))])
