"""The README and docs/ stand on their own: every relative link points at a file that exists, every
#anchor at a heading of that page (GitHub's anchor rule), and the README fits two screens."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    body = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", body, flags=re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(page):
    body = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in LINK.findall(body):
        if re.match(r"^[a-z]+:", target):  # https:, mailto:
            continue
        path, _, frag = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif frag and dest.suffix == ".md" and frag not in anchors(dest):
            broken.append(f"{target}: no heading #{frag} in {dest.name}")
    assert broken == [], f"{page.name}: {broken}"


def test_the_anchor_rule():
    assert anchor("C4: energy against fair GPU baselines") == "c4-energy-against-fair-gpu-baselines"
    assert anchor("Tracking: the MLflow UI") == "tracking-the-mlflow-ui"
    assert anchor("`dvc repro` in one run") == "dvc-repro-in-one-run"


def test_the_readme_fits_two_screens_and_starts_with_the_two_commands():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    first = text.split("```", 2)[1]
    assert "bash scripts/repro.sh" in first and "bash scripts/test.sh" in first
    assert max(len(line) for line in text.splitlines() if line.startswith("|")) <= 300, "table cells too long"
    assert all((REPO / "docs" / name).is_file() for name in ("results.md", "model.md", "deviations.md",
                                                              "selection.md", "gpu.md", "scale-out.md", "faults.md",
                                                              "architecture.md"))
