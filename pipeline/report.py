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
from pathlib import Path

Block = tuple


def pct(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f} %"


def times(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:,.0f}x" if x >= 10 else f"{x:.2g}x"


def claims_rows(ep: dict | None, eqs: dict | None, energy: dict | None, stdp: dict | None,
                paper_eqspike: float, paper_rate: float) -> list[list[str]]:
    """C1-C5: claim, paper, ours, difference, verdict (plain words)."""
    rows = []
    if eqs:
        acc = eqs["test_accuracy"]
        gap = acc - paper_eqspike
        verdict = ("reproduced" if gap >= 0 else "close, below the paper" if gap > -0.005
                   else "not reproduced (below the paper)")
        rows.append(["C1 EqSpike accuracy on MNIST", pct(paper_eqspike, 1), pct(acc),
                     f"{100 * gap:+.2f} points", verdict])
    if eqs and ep:
        gap = ep["test_accuracy"] - eqs["test_accuracy"]
        rows.append(["C2 similar to rate-based EP (same network)",
                     f"rate EP about {pct(paper_rate, 1)}, EqSpike {pct(paper_eqspike, 1)}",
                     f"rate EP {pct(ep['test_accuracy'])}, EqSpike {pct(eqs['test_accuracy'])}",
                     f"gap {100 * gap:.2f} points",
                     "similar (gap < 1 point)" if gap < 0.01 else "gap larger than the paper's"])
    if energy:
        h, close = energy["headline"], energy["closest_to_paper"]
        rows.append(["C4 energy, inference (neuromorphic vs GPU)", times(energy["paper"]["inference_ratio"]),
                     f"{times(h['inference_ratio'])} ({h['gpu']} / {h['neuromorphic']})",
                     f"closest pair {close['inference']['pair']}: {times(close['inference']['ratio'])}",
                     "depends on the presets: see the energy table"])
        rows.append(["C4 energy, training", times(energy["paper"]["training_ratio"]),
                     f"{times(h['training_ratio'])} ({h['gpu']} / {h['neuromorphic']})",
                     f"closest pair {close['training']['pair']}: {times(close['training']['ratio'])}",
                     "depends on the presets: see the energy table"])
    if stdp:
        for name, g in stdp["groups"].items():
            rows.append([f"C5 updates look like STDP ({name})", "STDP-like window",
                         f"tau+ {g['tau_plus_ms']:.3g} ms, tau- {g['tau_minus_ms']:.3g} ms, "
                         f"area ratio {g['area_ratio']:.2f}",
                         "Bi & Poo: tau+ 16.8 ms, tau- 33.7 ms", g["verdict"]])
    return rows


def comparison_rows(published: Sequence[dict], ours: Sequence[dict]) -> list[list[str]]:
    """The C3 table: published results and ours, sorted by accuracy, each with its source."""
    rows = [{**r, "ours": False} for r in published] + [{**r, "ours": True} for r in ours]
    rows.sort(key=lambda r: -r["accuracy"])
    return [[("**" + r["method"] + "**") if r["ours"] else r["method"], r["learning"], r["network"],
             pct(r["accuracy"]) + (" (recalled)" if r.get("recalled") else ""), r["source"]] for r in rows]


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
