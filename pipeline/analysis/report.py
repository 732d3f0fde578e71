"""The paper side by side: claims table, comparison table, rendered to Markdown and to a
self-contained HTML page (images inlined as base64, no network needed to view it).

A report is a list of blocks, rendered twice from the same content:
``("h", level, text)``, ``("p", text)``, ``("table", header, rows)``, ``("img", path, caption)``,
``("code", text)``.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.schema import opt, req


@dataclass(frozen=True, kw_only=True)
class PublishedResult:
    """A published MNIST result for the comparison table (claim C3), with its source."""

    method: str = req(min_len=1)
    learning: str = req(min_len=1)
    network: str = req(min_len=1)
    accuracy: float = req(gt=0, le=1)
    source: str = req(min_len=3)
    recalled: bool = opt(False)  # not re-read in the primary source


@dataclass(frozen=True, kw_only=True)
class ReportOutCfg:
    markdown: str = opt("report/REPORT.md")
    html: str = opt("report/REPORT.html")
    headline_dir: str = opt("metrics")  # one file per headline figure (pipeline/analysis/headline.py)
    # "As a chip would run it": its own page, written by the chip pipeline's chip_table stage
    chip_markdown: str = opt("report/CHIP.md")
    chip_html: str = opt("report/CHIP.html")


@dataclass(frozen=True, kw_only=True)
class ReportCfg:
    """The report; the paper's values (claims C1, C2) are written once, in conf/report/."""

    paper_eqspike_accuracy: float = req(gt=0, le=1)
    paper_rate_accuracy: float = req(gt=0, le=1)
    published: list[PublishedResult] = req()
    # the tuning protocol's selections (python -m cli.tune select): each model's provenance table
    tuning: str = opt("results/tuning.json")
    out: ReportOutCfg = opt(ReportOutCfg())



Block = tuple
# the model whose accuracy goes beside each GPU workload of the energy table
WORKLOAD_MODEL = {"spiking_sim": "eqspike", "rate_ep": "ep", "mlp_bp": "bp"}


def pct(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f} %"


def times(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:,.0f}x" if x >= 10 else f"{x:.2g}x"


def interval(summary: dict | None) -> str:
    """``97.82 % (95 % CI 97.50-98.14 %: 5 seeds +-0.19, test set +-0.27)`` for a combined
    interval, ``97.82 % +- 0.05 (95 % CI ..., 5 seeds)`` for a spread over seeds, or one seed."""
    if not summary:
        return "n/a"
    if summary.get("ci_low") is None:
        return f"{pct(summary['mean'])} (one seed)"
    if "test_half_width" in summary:
        return (f"{pct(summary['mean'])} (95 % CI {100 * summary['ci_low']:.2f}-{100 * summary['ci_high']:.2f} %: "
                f"{summary['n_seeds']} seeds +-{100 * summary['seed_half_width']:.2f}, test set "
                f"+-{100 * summary['test_half_width']:.2f})")
    return (f"{pct(summary['mean'])} +- {100 * summary['std']:.2f} (95 % CI {100 * summary['ci_low']:.2f}-"
            f"{100 * summary['ci_high']:.2f} %, {summary['n']} seeds)")


def gap_text(gap: dict) -> str:
    """``0.25 points (95 % CI -0.02 to 0.52, paired; seeds only 0.08 to 0.43)``."""
    text = f"{100 * gap['mean']:.2f} points"
    if gap.get("ci_low") is not None:
        text += f" (95 % CI {100 * gap['ci_low']:.2f} to {100 * gap['ci_high']:.2f}, paired by seed and test example"
        if gap.get("seed_ci"):
            text += f"; seeds only {100 * gap['seed_ci'][0]:.2f} to {100 * gap['seed_ci'][1]:.2f}"
        text += ")"
    return text


def claims_rows(agg: dict | None, energy: dict | None, stdp: dict | None,
                paper_eqspike: float, paper_rate: float) -> list[list[str]]:
    """C1-C5: claim, paper, ours, difference, verdict (plain words). C1 and C2 read the intervals
    over seeds and test examples against the declared margins (``agg``: the aggregate stage's
    detail); the raw weights are the headline, the shared weight average is beside them."""
    rows = []
    if agg:
        sm, v, m = agg["summaries"], agg["verdicts"], agg["margins"]

        def c1(label, model, figure, paper, verdict):
            if figure in sm[model]:
                rows.append([label, pct(paper, 1), interval(sm[model][figure]),
                             f"{100 * (sm[model][figure]['mean'] - paper):+.2f} points (mean)", v[verdict]])

        c1(f"C1 EqSpike accuracy on MNIST, raw weights (margin +-{100 * m['reproduced']:.1f} points)", "eqspike",
           "test_accuracy", paper_eqspike, "C1 EqSpike")
        c1("C1 EqSpike, weight average (the same aid for every model, beside)", "eqspike", "test_accuracy_averaged",
           paper_eqspike, "C1 EqSpike, weight average (beside)")
        c1("C2 rate-based EP on the same network, raw weights", "ep", "test_accuracy", paper_rate, "C2 rate-based EP")
        for name, label, verdict in (
                ("ep_minus_eqspike", "C2 EqSpike similar to rate-based EP, raw weights", "C2 EqSpike similar to rate-based EP"),
                ("ep_minus_eqspike_averaged", "C2 similar, weight averages (beside)", "C2 similar, weight averages (beside)")):
            if name in agg["gaps"] and verdict in v:
                rows.append([f"{label} (margin +-{100 * m['similar']:.1f} points)", "gap about 0.4 points",
                             f"gap rate EP - EqSpike {gap_text(agg['gaps'][name])}", "", v[verdict]])
    if energy:
        h, claims, rng = energy["headline"], energy["assumptions"], energy.get("headline_range", {})
        for task in ("inference", "training"):
            spans = []
            for key, label in ((task, "total"), (f"{task}_dynamic", "dynamic")):
                if key in rng:
                    r = rng[key]
                    spans.append(f"{label}: {times(r['from'])} to {times(r['to'])} (the paper's is {r['paper_is']})")
            where = (f"{rng.get('workload')} on {rng.get('gpu')} from {' to '.join(reversed(rng.get('regimes', [])))} / "
                     f"{rng.get('neuromorphic')}")
            rows.append([f"C4 energy, {task} (neuromorphic vs GPU), a range over the defensible GPU baselines",
                         times(energy["paper"][f"{task}_ratio"]), f"{'; '.join(spans)} ({where})",
                         f"point at {h['regime']}: {times(h[f'{task}_ratio'])} total, "
                         f"{times(h[f'{task}_ratio_dynamic'])} dynamic", claims[task]])
    if agg and "eqspike_variant" in agg["summaries"]:
        lk, v = agg["summaries"]["eqspike_variant"], agg["verdicts"]
        rows.append(["C1, the EqSpike variant (raw weights)", pct(paper_eqspike, 1),
                     interval(lk.get("test_accuracy")),
                     f"{100 * (lk['test_accuracy']['mean'] - paper_eqspike):+.2f} points (mean)",
                     v["C1 EqSpike variant"]])
    if stdp:
        for model, m in stdp["models"].items():
            w = m["groups"]["hidden synapses"]["trace"]
            main = w.get("net") or w["nudged+"]
            rows.append([f"C5 STDP window, {model} ({m.get('neuron', 'sigma_delta')}, g {m['leak']:g}), hidden synapses, "
                         "pre->post trace term",
                         "STDP-like window (tau+ 16.8 ms, tau- 33.7 ms)", stdp_taus(main),
                         f"area ratio {fmt_iv(main['area_ratio'], '.2f')} (theory 1)", main["verdict"]])
        controls = {n: c for n, c in stdp.get("controls", {}).items() if isinstance(c, dict)}
        if controls:
            rows.append(["C5 controls (synthetic post neuron, same recorder)", "positive: STDP-like; negative: flat",
                         "; ".join(f"{n}: {c['verdict']} (expected {c['expected']['verdict']})"
                                   + (f", {c['theory']['sentence']}" if "theory" in c else "")
                                   for n, c in controls.items()), "",
                         "the measurement can tell" if all(c["verdict"] == c["expected"]["verdict"]
                                                           for c in controls.values())
                         else "a control failed: the network's verdicts are not evidence"])
        for model, p in stdp.get("pairing", {}).items():
            f, ms = p["terms"]["trace"]["fit_steps"], stdp["step_ms"]
            both = all(math.isfinite(f.get(f"onset_{side}_steps", math.nan)) for side in ("plus", "minus"))
            rows.append([f"C5 pairing protocol, {model} neuron, pre->post trace term", "STDP-like window",
                         f"dt > 0: {pairing_lobe(f, 'plus', ms, ' ms')}; dt < 0: {pairing_lobe(f, 'minus', ms, ' ms')}",
                         "isolated pairs, spikes from threshold crossings",
                         "both lobes (shifted by the spike latency)" if both else "one lobe only"])
    return rows


def fmt_iv(iv: dict, spec: str = ".3g", scale: float = 1.0) -> str:
    """``value [lo, hi]``."""
    def f(x):
        return "n/a" if x is None or not math.isfinite(x) else format(x * scale, spec)
    return f"{f(iv['value'])} [{f(iv['lo'])}, {f(iv['hi'])}]"


def stdp_taus(w: dict) -> str:
    """Fitted time constants of the lobes that exist (significant, with STDP's sign)."""
    if "tau_plus_ms" not in w:
        return "n/a"
    parts = []
    for name, key, lobe, sign in (("tau+", "tau_plus_ms", "lobe_pos", 1), ("tau-", "tau_minus_ms", "lobe_neg", -1)):
        iv = w[lobe]
        ok = math.isfinite(iv["lo"]) and ((iv["lo"] > 0) if sign > 0 else (iv["hi"] < 0))
        steps = w.get("fit", {}).get(key[: -len("_ms")], {}).get("value", 0.0)
        if ok and steps >= 900:  # the fit's upper bound is 1000 steps: no decay to fit
            parts.append(f"{name}: lobe, no exponential fit (at its bound)")
        else:
            parts.append(f"{name} {fmt_iv(w[key], '.3g')} ms" if ok else f"{name}: no lobe")
    return ", ".join(parts)


def stdp_rows(stdp: dict) -> list[list[str]]:
    """Every model x synapse group x term: net window's lobes, fitted time constants, verdict."""
    rows = []
    for model, m in stdp["models"].items():
        for group, terms in m["groups"].items():
            for term in ("spike", "trace", "applied"):
                w = terms[term].get("net") or terms[term]["nudged+"]
                rows.append([f"{model} ({m.get('neuron', 'sigma_delta')}, g {m['leak']:g})", group, term, fmt_iv(w["lobe_pos"]), fmt_iv(w["lobe_neg"]),
                             stdp_taus(w), fmt_iv(w["area_ratio"], ".2f"), w["verdict"]])
    for name, c in stdp["controls"].items():
        if isinstance(c, dict) and "lobe_pos" in c:
            rows.append(["synthetic", name, "trace", fmt_iv(c["lobe_pos"]), fmt_iv(c["lobe_neg"]), stdp_taus(c),
                         fmt_iv(c["area_ratio"], ".2f"), f"{c['verdict']} (expected: {c['expected']['verdict']})"
                         + (f"; {c['theory']['sentence']}" if "theory" in c else "")])
    return rows


def stdp_phase_rows(stdp: dict) -> list[list[str]]:
    """+beta and -beta phases separately (no sign flip) and the post-rate strata."""
    rows = []
    for model, m in stdp["models"].items():
        for group, terms in m["groups"].items():
            for ph in ("nudged+", "nudged-"):
                if ph in terms["trace"]:
                    w = terms["trace"][ph]
                    rows.append([f"{model}", group, f"{ph} phase", fmt_iv(w["lobe_pos"]), fmt_iv(w["lobe_neg"]),
                                 w["verdict"]])
            for st in terms["trace_by_post_rate"]:
                lo, hi = st["post_rate_hz"]
                rows.append([f"{model}", group, f"net, post rate {lo:.0f}-{hi:.0f} Hz", fmt_iv(st["lobe_pos"]),
                             fmt_iv(st["lobe_neg"]), st["verdict"]])
    return rows


def pairing_lobe(fit: dict, side: str, ms: float, unit: str = "") -> str:
    """``from <onset>, tau <tau>`` of one side of a pairing window's fit (``plus`` | ``minus``)."""
    onset, tau = fit.get(f"onset_{side}_steps", math.nan), fit[f"tau_{side}_steps"]
    if not math.isfinite(onset):
        return "no lobe"
    start = f"from {onset * ms:g}{unit}"
    return f"{start}, tau {tau * ms:.3g}{unit}" if math.isfinite(tau) else start


def pairing_rows(stdp: dict) -> list[list[str]]:
    ms = stdp["step_ms"]
    rows = []
    for model, p in stdp["pairing"].items():
        for term, t in p["terms"].items():
            f = t["fit_steps"]
            peak = max(t["dw"], key=abs) if t["dw"] else float("nan")
            rows.append([model, term, f"{len(t['dt_steps'])}", f"{peak:.3g}", pairing_lobe(f, "plus", ms),
                         pairing_lobe(f, "minus", ms)])
    return rows


def energy_rows(energy: dict) -> list[list[str]]:
    """One row per GPU workload x regime x GPU; per neuromorphic preset the inference and
    training ratios (the table's variant)."""
    neuros = sorted(energy["neuromorphic"])
    keys = []
    for p in energy["pairs"]:
        k = (p["workload"], p["regime"], p["gpu"])
        if k not in keys:
            keys.append(k)
    rows = []
    for k in keys:
        cells = []
        for n in neuros:
            p = next((p for p in energy["pairs"] if (p["workload"], p["regime"], p["gpu"]) == k
                      and p["neuromorphic"] == n and p["variant"] == energy["variant"]), None)
            cells.append("n/a" if p is None else f"{times(p['inference_ratio'])} / {times(p['training_ratio'])} "
                         f"(dynamic {times(p['inference_ratio_dynamic'])} / {times(p['training_ratio_dynamic'])})")
        rows.append([*k, *cells])
    return rows


def comparison_rows(published: Sequence[dict], ours: Sequence[dict]) -> list[list[str]]:
    """The C3 table: published results and ours, sorted by accuracy, each with its source."""
    rows = [{**r, "ours": False} for r in published] + [{**r, "ours": True} for r in ours]
    rows.sort(key=lambda r: -r["accuracy"])
    return [[("**" + r["method"] + "**") if r["ours"] else r["method"], r["learning"], r["network"],
             pct(r["accuracy"]) + (" (recalled)" if r.get("recalled") else ""), r["source"]] for r in rows]


def markdown_table(text: str) -> tuple[list[str], list[list[str]]]:
    """A Markdown table (header, separator, rows) back to its header and rows of cells."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip().startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    if len(cells) < 2:
        raise ValueError("not a Markdown table: needs a header and a separator line")
    return cells[0], cells[2:]


def chip_blocks(tab: dict, table_md: str, figure: str) -> list[Block]:
    """The page "As a chip would run it" (``chip_table`` writes it): the scale, the rule, the
    learning rates chosen per update mode, the table (``table_md``) and the figure."""
    header, rows = markdown_table(table_md)
    sel = tab.get("selection", {})
    chosen = "; ".join(f"{mode}: lr_scale {m['lr_scale']} ({m['why']}{', at the edge of the values tried' if m.get('at_edge') else ''})"
                       for mode, m in sel.get("modes", {}).items())
    return [
        ("h", 1, "EqSpike as a chip would run it"),
        ("p", f"Scale: {tab['n_train']:,} training examples, {tab['epochs']} epochs, {tab['n_test']:,} test "
              "examples, the paper's network. Accuracy of the raw weights; intervals (95 %) over seeds and test "
              f"examples; verdict against the paper's {100 * tab['paper']:.1f} % +- {100 * tab['margin']:.1f} points "
              "(the C1 rule); cost = reference minus the row, paired by seed, in points. Energy per example with "
              f"the C4 chip preset {tab['preset']} in both conventions (total: events plus static power over the run "
              "time; dynamic: events only), from each row's own event counts; memory per synapse: weight + "
              "accumulator + average bits."),
        ("p", "Learning rates chosen on the validation split (eqspike.lr x lr_scale; "
              f"{sel.get('n_val', 0):,} held-out examples, seed {sel.get('seed')}, the rule of every model): {chosen}."),
        ("table", header, rows),
        ("img", figure, "test accuracy (raw weights) against weight bits, one line per update mode; bars: 95 % "
                        "intervals of the five-seed rows"),
    ]


def to_markdown(blocks: Sequence[Block]) -> str:
    out = []
    for b in blocks:
        kind = b[0]
        if kind == "h":
            out.append("#" * b[1] + " " + b[2])
        elif kind == "p":
            out.append(b[1])
        elif kind == "table":
            header, rows = b[1], b[2]
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "|".join("---" for _ in header) + "|")
            out.extend("| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows)
        elif kind == "img":
            out.append(f"![{b[2]}]({b[1]})")
        elif kind == "code":
            out.append("```\n" + b[1].rstrip() + "\n```")
        out.append("")
    return "\n".join(out)


def _inline(text: str) -> str:
    """Escape, then the two Markdown marks we use in table cells: **bold** and `code`."""
    parts = html.escape(text).split("**")
    text = "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
    parts = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def to_html(blocks: Sequence[Block], title: str, base: Path) -> str:
    """A self-contained page: images read from ``base / path`` and inlined."""
    body = []
    for b in blocks:
        kind = b[0]
        if kind == "h":
            body.append(f"<h{b[1]}>{_inline(b[2])}</h{b[1]}>")
        elif kind == "p":
            body.append(f"<p>{_inline(b[1])}</p>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in b[1])
            rows = "".join("<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in row) + "</tr>" for row in b[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            path = base / b[1]
            if path.is_file():
                data = base64.b64encode(path.read_bytes()).decode()
                body.append(f'<figure><img alt="{html.escape(b[2])}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{_inline(b[2])}</figcaption></figure>")
            else:
                body.append(f"<p><i>missing figure: {html.escape(b[1])}</i></p>")
        elif kind == "code":
            body.append(f"<pre>{html.escape(b[1])}</pre>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;"
             "font-size:90%;vertical-align:top}th{background:#eee}img{max-width:100%}"
             "pre{background:#f6f6f6;padding:8px;overflow-x:auto}figcaption{font-size:85%;color:#555}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def facts(cfg, read: dict, figures: dict, runs: dict, commit: str, experiment: str, overrides: list) -> dict:
    """What ``build`` reads besides the four result files: sizes, the paper's values, the
    published table, the aggregate and bias results, the figures (relative paths), the runs."""
    import dataclasses

    return {
        "sizes": {"ep": cfg.ep.sizes, "eqspike": cfg.eqspike.sizes, "bp": cfg.bp.sizes},
        "paper_eqspike_accuracy": cfg.report.paper_eqspike_accuracy,
        "paper_rate_accuracy": cfg.report.paper_rate_accuracy,
        "published": [dataclasses.asdict(r) for r in cfg.report.published],
        "aggregate": read["aggregate"], "bias": read["bias"], "figures": figures, "runs": runs, "commit": commit,
        "dvc_experiment": experiment, "overrides": overrides, "tuning": read.get("tuning") or {},
    }


def provenance_blocks(tuning: dict, models: Sequence[str]) -> list[tuple]:
    """Per model: the protocol's runs (validation accuracy of the raw weights) and the provenance
    of every knob; a model the protocol has not run yet says so."""
    blocks: list[tuple] = []
    for model in models:
        t = tuning.get(model)
        if not t:
            blocks.append(("p", f"**{model}**: not yet tuned by the protocol (conf/tuning/protocol.yaml); its "
                                "knobs are the earlier choices of docs/selection.md, some of which read the test set."))
            continue
        p = t["protocol"]
        blocks.append(("p", f"**{model}**: {len(t['runs'])} configurations, seed {p['seed']}, validation on the last "
                            f"{p['validation']} training examples, {p['epochs']} epochs; {t['rule']}."))
        blocks.append(("table", ["experiment", "overrides", "validation, raw weights", "validation, average"],
                       [[r["experiment"], ", ".join(f"{k}={v}" for k, v in r["overrides"].items()) or "(default)",
                         pct(r["val_accuracy"]), pct(r.get("val_accuracy_averaged"))] for r in t["runs"]]))
        blocks.append(("table", ["knob", "value", "chosen by", "its validation accuracy", "values tried"],
                       [[r["knob"], str(r["value"]) + (" (at the edge of the values tried)" if r.get("at_edge") else ""),
                         r["chosen_by"], pct(r["val_accuracy"]) if r["val_accuracy"] is not None else "",
                         ", ".join(r["tried"])]
                        for r in t["provenance"]]))
    return blocks


BIAS_COMPARISONS = ("spikes_vs_same_dynamics_rate", "spikes_vs_rate_ep", "spikes_vs_gradient",
                    "same_dynamics_rate_vs_gradient", "rate_ep_vs_gradient")


def interval_cos(s: dict) -> str:
    """``0.912 [0.901, 0.923]`` (mean over batches and its 95 % interval)."""
    if s.get("ci_low") is None:
        return f"{s['mean']:.3f}"
    return f"{s['mean']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]"


def pairing_sweep_rows(stdp: dict) -> list[list[str]]:
    """Per model, the trained rule's term first, then the trace-factor ablation: one row per pulse."""
    rows = []
    for model, sw in stdp.get("pairing_sweep", {}).items():
        for term in (sw["trained_term"], *[t for t in ("trace",) if t != sw["trained_term"]]):
            label = f"{term} (the trained rule)" if term == sw["trained_term"] else f"{term} (ablation)"
            for r in sw["rows"]:
                rows.append([model, label, f"{r['pulse']:g} for {r['pulse_steps']} steps" + (" (default)" if r["default"] else ""),
                             f"`{r[term]['pattern']}`", ", ".join(f"{c:+g}" for c in r[term]["sign_changes"]) or "none"])
    return rows


def like_for_like_text(agg: dict) -> str:
    """One sentence when the models did not get the same aids and epoch budget."""
    lfl = agg.get("like_for_like")
    if not lfl or lfl["same"]:
        return ""
    return (f" NOT LIKE FOR LIKE in this run: weight-average decays {lfl['ema_decay']}, epochs {lfl['epochs']}; "
            "every verdict says so.")


def build(ep: dict, eqs: dict, stdp: dict, energy: dict, facts: dict) -> list[tuple]:
    """The report as blocks (``to_markdown``, ``to_html``) from the stages' metrics and ``facts``:
    ``sizes`` (per model), ``paper_eqspike_accuracy``, ``paper_rate_accuracy``, ``published``
    (rows), ``figures`` (paths relative to the report), ``runs`` (per stage: run_id, seconds),
    ``commit``, ``dvc_experiment`` and ``overrides`` (rows: key, default, this run)."""
    runs, fig = facts["runs"], facts["figures"]
    agg = facts["aggregate"]
    sums = agg["summaries"]
    ours = [
        {"method": "EqSpike, this reproduction", "learning": "local, spike-driven EP, symmetric nudging",
         "network": "-".join(map(str, facts["sizes"]["eqspike"])), "accuracy": sums["eqspike"]["test_accuracy"]["mean"],
         "source": f"mean of {len(agg['seeds'])} seeds, raw weights, {eqs['epochs']} epochs"},
        {"method": "rate-based EP, this reproduction", "learning": "local EP, rate-based",
         "network": "-".join(map(str, facts["sizes"]["ep"])), "accuracy": sums["ep"]["test_accuracy"]["mean"],
         "source": f"mean of {len(agg['seeds'])} seeds, raw weights, {ep['epochs']} epochs"},
    ]
    if "eqspike_variant" in sums:
        ours.append({"method": "EqSpike variant (memoryless neuron), this reproduction",
                     "learning": "local, spike-driven EP, symmetric nudging",
                     "network": "-".join(map(str, facts["sizes"]["eqspike"])),
                     "accuracy": sums["eqspike_variant"]["test_accuracy"]["mean"],
                     "source": f"mean of {len(agg['seeds'])} seeds, raw weights, {eqs['epochs']} epochs"})
    if "bp" in sums:
        ours.append({"method": "backprop MLP (SGD), this reproduction", "learning": "backprop",
                     "network": "-".join(map(str, facts["sizes"]["bp"])),
                     "accuracy": sums["bp"]["test_accuracy"]["mean"],
                     "source": f"mean of {len(agg['seeds'])} seeds, raw weights (train_bp stage)"})
    published = facts["published"]
    total = sum(r["seconds"] or 0.0 for r in runs.values())
    # a training stage that resumed from a finished checkpoint runs in seconds: show the
    # training time recorded epoch by epoch as well
    trained = {"train_ep": ep, "train_eqspike": eqs}
    blocks: list[tuple] = [
        ("h", 1, "EqSpike reproduction: the paper side by side"),
        ("p", "Martin et al., *EqSpike: spike-driven equilibrium propagation for neuromorphic "
              "implementations*, iScience 24(3):102222, 2021 (arXiv 2010.07859). Every number below "
              "comes from this run; the command that reproduces it is `dvc repro`."),
        ("h", 2, "Claims"),
        ("table", ["claim", "paper", "this run", "difference", "verdict"],
         claims_rows(agg, energy, stdp, facts["paper_eqspike_accuracy"], facts["paper_rate_accuracy"])),
        ("h", 2, "C1, C2: every seed"),
        ("p", "Test accuracy of every seed, read once after training (every config was chosen on the "
              "validation split by the same protocol for every model, docs/selection.md; the epoch budget "
              "is the same for all). The raw weights (what the learning rule leaves in the synapses) are the "
              "headline; the weight average, one decay for every model (train.ema_decay), is beside them. "
              "EqSpike has two read-outs: the output state averaged over the last free steps (analog) and the "
              "output spike counts over the free phase (ties go to the lower class; their rate is shown)."
              + like_for_like_text(agg)),
        ("table", ["model", "seed", "test, raw weights", "test, weight average", "spike-count read-out",
                   "spike-count, average", "spike-count ties", "s per epoch"],
         [[model, str(r["seed"]), pct(r["test_accuracy"]), pct(r.get("test_accuracy_averaged")),
           pct(r.get("test_accuracy_spike_count")), pct(r.get("test_accuracy_spike_count_averaged")),
           pct(r.get("test_spike_count_tie_rate")), f"{r['seconds_per_epoch']:.1f}"]
          for model in ("eqspike", "eqspike_variant", "ep", "bp") if model in agg["per_seed"] for r in agg["per_seed"][model]]),
        ("h", 3, "Every model, raw and averaged, with the paired gaps"),
        ("table", ["model", "raw weights", "weight average", "validation (raw)"],
         [[model, interval(sums[model].get("test_accuracy")), interval(sums[model].get("test_accuracy_averaged")),
           interval(sums[model].get("val_accuracy"))] for model in agg.get("ranking_raw", sums)]),
        ("table", ["gap", "paired interval"], [[name.replace("_", " "), gap_text(g)]
                                               for name, g in agg.get("gaps", {}).items()]),
        ("h", 2, "Is the spike-driven update unbiased?"),
        ("p", f"On {facts['bias']['n_batches']} training batches of {facts['bias']['batch_size']} at EqSpike's beta, "
              "with the trained raw weights and at initialisation: the cosine per layer between EqSpike's weight "
              "change as it is trained (sigma-delta accumulators starting at zero), the same dynamics (leak, "
              "synaptic trace, phases, rule) with every spike replaced by its rate (what the spikes add, and "
              "nothing else), prototypical rate-based EP (no leak, no trace) and minus the gradient of "
              "1/2 ||y - s_L||^2 (backpropagation through the free phase). Mean over batches with its 95 % "
              "interval. Beside it, on the first batch: the update averaged over R realisations with random "
              "initial accumulator phases (which training never uses)."),
        ("img", fig["bias"], "headline cosines; cosine against the number of random-phase realisations"),
        ("table", ["weights", "layer", *[c.replace("_", " ") for c in BIAS_COMPARISONS]],
         [[name, f"W{l}", *[interval_cos(h[c][l]) for c in BIAS_COMPARISONS]]
          for name, h in facts["bias"]["results"]["headline"].items() for l in range(len(h[BIAS_COMPARISONS[0]]))]),
        ("table", ["random phases: weights, beta", "layer", "one realisation vs rate EP",
                   f"{max(facts['bias']['realisations'])} realisations vs rate EP",
                   "... vs same dynamics in rates", "... vs the gradient", "same-step term (relative)"],
         [[name, f"W{l}", f"{res['single_realisation_vs_rate'][l]['cosine']:.3f}",
           f"{res['by_realisations'][str(max(facts['bias']['realisations']))]['vs_rate'][l]['cosine']:.3f}",
           f"{res['by_realisations'][str(max(facts['bias']['realisations']))]['vs_same_dynamics_rate'][l]['cosine']:.3f}",
           f"{res['by_realisations'][str(max(facts['bias']['realisations']))]['vs_gradient'][l]['cosine']:.3f}",
           f"{res['same_step_term_relative'][l]:.2f}"]
          for name, res in facts["bias"]["results"]["random_phases"].items()
          for l in range(len(res["rate_vs_gradient"]))]),
        ("h", 2, "Tuning: the same protocol for every model"),
        ("p", "Every model compared gets the same number of configurations over its own main knobs, one seed, "
              "the validation split, the same epoch budget and the same rule (conf/tuning/protocol.yaml, "
              "docs/selection.md): the highest validation accuracy of the raw weights wins unless it beats the "
              "default by no more than one standard error. The test set is read once, after training."),
        *provenance_blocks(facts.get("tuning", {}), ("eqspike", "eqspike_variant", "ep", "bp")),
        ("h", 2, "C3: MNIST results of spiking networks and of rate-based EP"),
        ("table", ["method", "learning", "network", "MNIST test accuracy", "source"],
         comparison_rows(published, ours)),
        ("h", 2, "Learning curves"),
        ("img", fig["ep_curve"], "rate-based EP"),
        ("img", fig["eqspike_curve"], "EqSpike"),
        ("p", f"Seed {eqs['seed']} (the curves above): rate-based EP {pct(ep['test_accuracy'])} test accuracy "
              f"after {ep['epochs']} epochs ({ep['seconds_per_epoch']:.1f} s per epoch); EqSpike "
              f"{pct(eqs['test_accuracy'])} with the raw weights, {pct(eqs.get('test_accuracy_averaged'))} with "
              f"the weight average, after {eqs['epochs']} epochs ({eqs['seconds_per_epoch']:.1f} s per epoch). "
              "The curves show training and validation; the test set is the single marker."),
        ("h", 2, "Spikes"),
        ("img", fig["raster"], "spike raster of one test example"),
        ("p", f"Per inference: {eqs['spikes_per_inference']:,.0f} spikes, "
              f"{eqs['synaptic_events_per_inference']:,.0f} synaptic events; per training example "
              f"{eqs['weight_updates_per_training_example']:,.0f} spike-triggered weight updates."),
        ("h", 2, "C5: STDP"),
        ("p", "In each trained network (the default, with a state leak g; the variant, memoryless; the stochastic "
              "model, the default with Bernoulli spikes), during the learning phases of "
              f"{stdp['n_examples']} training examples: every pre/post spike pair within "
              f"+-{stdp['max_dt_steps']} steps of a spike-triggered update, per-bin mean dw minus a shuffle "
              f"control ({stdp.get('control', 'other_example')}: partners from another example of the batch, or "
              "circularly shifted; a shift by a multiple of a firing period returns the same periodic train), 95 % "
              f"bootstrap intervals over examples ({stdp['bootstrap']} resamples). Terms: the pre->post term with "
              "the spike as factor, with the presynaptic trace as factor (a spike opens an eligibility window), and "
              "the rule the network applies. Lobes: sums of the bins dt = 1..W and -W..-1. STDP-like only when the "
              "dt > 0 lobe is positive and the dt < 0 lobe negative, both intervals excluding zero. The "
              "synthetic controls use the same recorder and analysis: a post neuron whose state jumps at its "
              "own spikes (the window theory predicts must come out) and one whose spikes are unrelated to its "
              "state (flat)."),
        ("img", fig["stdp"], "weight change vs spike timing, controls, pairing protocol"),
        ("table", ["model", "synapses", "term", "dt > 0 lobe [95 % CI]", "dt < 0 lobe", "fitted time constants",
                   "area ratio", "verdict"], stdp_rows(stdp)),
        ("h", 3, "Phases and firing rates"),
        ("table", ["model", "synapses", "window", "dt > 0 lobe", "dt < 0 lobe", "verdict"], stdp_phase_rows(stdp)),
        ("h", 3, "During learning: the trained rule's window after earlier epochs"),
        ("table", ["model", "after epoch", "synapses", "term", "dt > 0 lobe", "dt < 0 lobe", "verdict"],
         [[model, e, group, w["term"], fmt_iv(w["lobe_pos"]), fmt_iv(w["lobe_neg"]), w["verdict"]]
          for model, m in stdp["models"].items() for e, groups in m.get("during_learning", {}).items()
          for group, w in groups.items()] or [["(no snapshots: runs trained before they were kept)", "", "", "", "", "",
                                               ""]]),
        ("h", 3, "Pairing protocol: the trained rule first, under every pulse of the sweep"),
        ("p", "The rule each model is trained with (the spike as presynaptic factor, both terms: "
              "S_j ds_i + S_i ds_j, 'applied'), then the trace-factor term as an ablation (not the trained rule). "
              f"One character per dt from -{stdp['max_dt_steps']} to +{stdp['max_dt_steps']} steps: + or - "
              "(dw above 1e-3 of the largest), 0 (below), . (no isolated pair). The protocol's pulse (amplitude, "
              "width) is swept: a feature that moves with it belongs to the protocol, one that stays to the rule."),
        ("table", ["model", "term", "pulse", "sign of dw by dt", "sign changes at dt"], pairing_sweep_rows(stdp)),
        ("h", 3, "Pairing protocol at the default pulse"),
        ("p", "Two leaky sigma-delta neurons at rest (silent), each made to spike by its own threshold crossing "
              "under an injected current pulse; one synapse; dt is the measured difference of the two spike "
              "times; dw summed until the traces have decayed, minus the same run without the presynaptic "
              "pulse. Isolated pairs only (one spike each)."
              + "".join(f" {model}: {why}." for model, why in stdp.get("pairing_skipped", {}).items())),
        ("table", ["model", "term", "pairs", "largest |dw|", "dt > 0 lobe: onset, tau+ (ms)",
                   "dt < 0 lobe: onset, tau- (ms)"], pairing_rows(stdp)),
        ("p", f"One time step is taken as {stdp['step_ms']:g} ms. Bi & Poo (1998, fit of 2001): "
              "tau+ 16.8 ms, tau- 33.7 ms; the theory (Bengio et al. 2015-2017) predicts an antisymmetric "
              "window with equal areas (area ratio 1)."),
        ("h", 2, "C4: energy"),
        ("p", "EqSpike's measured event counts on neuromorphic presets against three GPU workloads, each "
              "with its operation count derived from the config that was run: the same spiking network "
              "simulated step by step (spiking_sim, what the paper most plausibly compared), rate-based EP as "
              "this project runs it (rate_ep: input product once per example) and a backprop MLP of the same "
              "size (mlp_bp, trained by the train_bp stage). GPU energy: power over the time of each "
              "kernel launch, t = max(launch latency, FLOPs / peak, weight bytes / bandwidth), per example; "
              "peak = the spec-division energy per FLOP; batch 1 = launch-bound; measured = a measurement "
              "(marked published when it is someone else's, of another network). One convention on both sides "
              "of every ratio: total (the GPU's board power; the chip's events plus its static power over its "
              "run time, time steps x step time) and dynamic (board minus idle power; the chip's events only); "
              "the input encoders are charged as neurons. Neuromorphic variant of the table: "
              f"{energy['variant']}. Input-layer events are {100 * energy['input_share']['training']:.1f} % of "
              "the synaptic events of training."),
        ("img", fig["energy"], "GPU / neuromorphic energy ratio per workload and regime"),
        ("table", ["GPU workload", "MACs per inference", "MACs per training example", "launches (inference)",
                   "launches (training)", "test accuracy of the model (mean over seeds)"],
         [[w, f"{t['inference']['macs']:,}", f"{t['training']['macs']:,}", str(t["inference"]["launches"]),
           str(t["training"]["launches"]),
           pct(sums.get(WORKLOAD_MODEL[w], {}).get("test_accuracy", {}).get("mean"))]
          for w, t in energy["workloads"].items()]),
        ("table", ["GPU workload", "regime", "GPU", *[f"{n} inf. / train." for n in sorted(energy["neuromorphic"])]],
         energy_rows(energy)),
        ("table", ["neuromorphic preset", "variant", "inference, total (uJ)", "... dynamic", "training, total (uJ)",
                   "... dynamic"],
         [[n, v, *[("inference-only variant" if e[t] is None else f"{e[t][f'{c}_j'] * 1e6:.3g}")
                   for t in ("inference", "training") for c in ("total", "dynamic")]]
          for n, vs in sorted(energy["neuromorphic"].items()) for v, e in vs.items()]),
        ("p", "Headline rule (energy.headline.rule): " + energy.get("headline_rule", "")),
        ("p", energy["assumptions"]["inference"]),
        ("p", energy["assumptions"]["training"]),
        ("h", 2, "As a chip would run it"),
        ("p", "What EqSpike reaches under a chip's constraints (updates per example or continual, no weight "
              "average, b-bit fixed-point weights with stochastic rounding, the free phase rerun) and what each "
              "costs in accuracy, energy and memory per synapse is its own pipeline, beside this one: "
              "dvc repro chip/dvc.yaml (docs/chip.md). Its table and figure (accuracy against weight bits per "
              "update mode) are the page CHIP.md / CHIP.html beside this report, written by that pipeline; the "
              "paper's dvc repro, which made this report, does not train it."),
        ("h", 2, "Run"),
        ("table", ["item", "value"], [
            ["git commit", facts["commit"]],
            ["DVC experiment", facts["dvc_experiment"]],
            ["total stage time", f"{total / 60:.1f} min"],
        ] + [[f"stage {s}", f"{(r['seconds'] or 0):.1f} s this run"
              + (f" (training: {trained[s]['train_seconds_total']:.0f} s over {trained[s]['epochs']} epochs"
                 " plus evaluation)" if s in trained else "")
              + f", MLflow run {r['run_id']}"] for s, r in runs.items()]),
        ("h", 3, "Config: overrides against the defaults of conf/"),
        ("table", ["key", "default", "this run"], facts["overrides"] or [["(none)", "", ""]]),
    ]
    return blocks
