"""The C4 study end to end: every preset file read and validated (``load_presets``: the error names
the file and the key, before any work), every workload x regime x preset compared (``study``,
formulas in ``pipeline.analysis.energy``), the results written (``write``)."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import yaml

from pipeline.analysis import energy as en
from pipeline.analysis.energy import EnergyCfg, GpuPresetCfg, MeasuredGpuCfg, NeuromorphicPresetCfg, Sourced
from pipeline.core.io import atomic_write, write_json
from pipeline.core.schema import ConfigError, parse

TABLE_FIELDS = ["workload", "regime", "gpu", "kind", "neuromorphic", "variant", "inference_ratio", "training_ratio",
                "inference_ratio_dynamic", "training_ratio_dynamic", "gpu_inference_j", "neuromorphic_inference_j",
                "gpu_training_j", "neuromorphic_training_j", "gpu_inference_dynamic_j", "neuromorphic_inference_dynamic_j",
                "gpu_training_dynamic_j", "neuromorphic_training_dynamic_j"]


def load_presets(directory: Path, kind: str, cls, required: bool = True) -> dict:
    """Every ``<directory>/<kind>/*.yaml``, validated; the error names the file and the key."""
    presets = {}
    files = sorted((directory / kind).glob("*.yaml"))
    if not files and required:
        raise ConfigError(f"energy.preset_dir: no {kind} presets in {directory / kind}")
    for path in files:
        try:
            raw = yaml.safe_load(path.read_text())
            presets[path.stem] = parse(cls, raw if isinstance(raw, dict) else {}, f"{path}:")
        except ConfigError as exc:
            raise ConfigError(f"preset {path}: {exc}") from exc
    return presets


def sources(preset) -> dict[str, str]:
    """``{field: source}`` of a preset's constants."""
    return {f.name: getattr(preset, f.name).source for f in dataclasses.fields(preset)
            if isinstance(getattr(preset, f.name), Sourced)}


def measured_entry(m: MeasuredGpuCfg) -> dict:
    return {"gpu": m.gpu, "kind": m.kind, "workload": m.workload, "batch": m.batch, "convention": m.convention,
            "inference_j": m.inference_j.value, "training_j": m.training_j.value if m.training_j else None}


def presets(ecfg: EnergyCfg, root: Path) -> tuple[dict, dict, dict]:
    """The neuromorphic, GPU and measured presets under ``ecfg.preset_dir``, validated, and the
    headline checked against them."""
    preset_dir = Path(root) / ecfg.preset_dir
    neuro = load_presets(preset_dir, "neuromorphic", NeuromorphicPresetCfg)
    gpus = load_presets(preset_dir, "gpu", GpuPresetCfg)
    measured = load_presets(preset_dir, "measured", MeasuredGpuCfg, required=False)
    h = ecfg.headline
    for key, names in (("gpu", gpus), ("neuromorphic", neuro)):
        if getattr(h, key) not in names:
            raise ConfigError(f"energy.headline.{key}: {getattr(h, key)!r} is not a preset in "
                              f"{preset_dir / key} (one of {sorted(names)})")
    return neuro, gpus, measured


def study(ecfg: EnergyCfg, found: tuple[dict, dict, dict], counts: dict, ep, bp_sizes) -> dict:
    """Every workload x regime x preset: EqSpike's measured event counts ``counts`` (its
    ``events.json``) against the GPU workloads of rate EP (``ep``: its config) and the MLP."""
    neuro, gpus, measured = found
    h = ecfg.headline
    rate = {"sizes": ep.sizes, "T": ep.T, "K": ep.K, "nudged_phases": 2 if ep.nudge == "symmetric" else 1}
    comparison = en.compare(counts, rate, {"sizes": bp_sizes}, neuro, gpus,
                            {k: measured_entry(m) for k, m in measured.items()}, ecfg.batches,
                            {"gpu": h.gpu, "neuromorphic": h.neuromorphic, "workload": h.workload, "regime": h.regime},
                            ecfg.variant, ecfg.host_mac_pj.value,
                            {"inference_ratio": ecfg.paper_inference_ratio, "training_ratio": ecfg.paper_training_ratio})
    comparison["headline_rule"] = h.rule
    comparison["sources"] = {name: sources(p) for name, p in {**neuro, **gpus, **measured}.items()}
    comparison["sources"]["host_mac_pj"] = {"host_mac_pj": ecfg.host_mac_pj.source}
    return comparison


def write(comparison: dict, ecfg: EnergyCfg, root: Path) -> tuple[dict, list[Path]]:
    """Write the detail, the flat metrics, the table and the chart; returns the flat metrics and
    the files to log."""
    out, root = ecfg.out, Path(root)
    write_json(root / out.detail, comparison)
    flat = en.flat_metrics(comparison)
    write_json(root / out.metrics, flat)

    def write_table(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["pair", *TABLE_FIELDS], extrasaction="ignore")
            w.writeheader()
            w.writerows({"pair": f"{p['workload']} {p['regime']} {p['gpu']} / {p['neuromorphic']}", **p}
                        for p in comparison["pairs"] if p["variant"] == ecfg.variant)

    atomic_write(root / out.table_csv, write_table)
    atomic_write(root / out.chart_png, lambda p: en.energy_chart(comparison, p))
    return flat, [root / p for p in (out.metrics, out.detail, out.table_csv, out.chart_png)]
