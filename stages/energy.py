"""DVC stage ``energy``: EqSpike on neuromorphic presets against three GPU workloads at stated
utilisation (claim C4; formulas and the comparison in pipeline/energy.py, constants in conf/energy/).

    python -m stages.energy
    python -m stages.energy "energy.headline.regime=peak" energy.headline.workload=spiking_sim

Every preset file in conf/energy/{neuromorphic,gpu,measured}/ is read and validated before any
work; ``energy.headline`` picks the headline row by the rule it states.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
from pathlib import Path

import yaml

from pipeline import energy as en
from pipeline.schema import (
    Config,
    ConfigError,
    GpuPresetCfg,
    MeasuredGpuCfg,
    NeuromorphicPresetCfg,
    Sourced,
    parse,
)
from stages.common import Run, SeedPaths, atomic_write, repo_path, stage_main, write_json

TABLE_FIELDS = ["workload", "regime", "gpu", "kind", "neuromorphic", "variant", "inference_ratio", "training_ratio",
                "gpu_inference_j", "neuromorphic_inference_j", "gpu_training_j", "neuromorphic_training_j"]


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
    return {"gpu": m.gpu, "kind": m.kind, "workload": m.workload, "batch": m.batch,
            "inference_j": m.inference_j.value, "training_j": m.training_j.value if m.training_j else None}


def worker(cfg: Config, run: Run) -> None:
    ecfg = cfg.energy
    if ecfg is None:
        raise ConfigError("energy: missing from the config (conf/config.yaml defaults: energy: default)")
    # ---- presets first: a bad one stops the stage before any work ---------------------------
    preset_dir = repo_path(ecfg.preset_dir)
    neuro = load_presets(preset_dir, "neuromorphic", NeuromorphicPresetCfg)
    gpus = load_presets(preset_dir, "gpu", GpuPresetCfg)
    measured = load_presets(preset_dir, "measured", MeasuredGpuCfg, required=False)
    h = ecfg.headline
    for key, names in (("gpu", gpus), ("neuromorphic", neuro)):
        if getattr(h, key) not in names:
            raise ConfigError(f"energy.headline.{key}: {getattr(h, key)!r} is not a preset in "
                              f"{preset_dir / key} (one of {sorted(names)})")
    events_path = SeedPaths(cfg.eqspike.out, cfg.runtime.seed).events
    if not events_path.is_file():
        raise en.CountsMissing(f"{events_path} is missing: run the train_eqspike stage first "
                               "(dvc repro train_eqspike)")
    counts = json.loads(events_path.read_text())

    # ---- every workload x regime x preset (pipeline/energy.py) -------------------------------
    ep = cfg.ep
    rate = {"sizes": ep.sizes, "T": ep.T, "K": ep.K, "nudged_phases": 2 if ep.nudge == "symmetric" else 1}
    comparison = en.compare(counts, rate, {"sizes": cfg.bp.sizes}, neuro, gpus,
                            {k: measured_entry(m) for k, m in measured.items()}, ecfg.batches,
                            {"gpu": h.gpu, "neuromorphic": h.neuromorphic, "workload": h.workload, "regime": h.regime},
                            ecfg.variant, ecfg.host_mac_pj.value,
                            {"inference_ratio": ecfg.paper_inference_ratio, "training_ratio": ecfg.paper_training_ratio})
    comparison["headline_rule"] = h.rule
    comparison["sources"] = {name: sources(p) for name, p in {**neuro, **gpus, **measured}.items()}
    comparison["sources"]["host_mac_pj"] = {"host_mac_pj": ecfg.host_mac_pj.source}

    # ---- outputs ------------------------------------------------------------------------
    out = ecfg.out
    write_json(repo_path(out.detail), comparison)
    flat = en.flat_metrics(comparison)
    write_json(repo_path(out.metrics), flat)

    def write_table(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["pair", *TABLE_FIELDS], extrasaction="ignore")
            w.writeheader()
            w.writerows({"pair": f"{p['workload']} {p['regime']} {p['gpu']} / {p['neuromorphic']}", **p}
                        for p in comparison["pairs"] if p["variant"] == ecfg.variant)

    atomic_write(repo_path(out.table_csv), write_table)
    atomic_write(repo_path(out.chart_png), lambda p: en.energy_chart(comparison, p))
    head = comparison["headline"]
    run.metrics({k: v for k, v in flat.items() if isinstance(v, float)})
    for path in (out.metrics, out.detail, out.table_csv, out.chart_png):
        run.artifact(repo_path(path))
    print(f"headline ({h.rule}): {head['workload']} on {head['gpu']} at {head['regime']} / {head['neuromorphic']}: "
          f"inference {head['inference_ratio']:.3g}x, training {head['training_ratio']:.3g}x "
          f"(paper: {ecfg.paper_inference_ratio:g}x, {ecfg.paper_training_ratio:g}x)")
    for sentence in comparison["assumptions"].values():
        print(sentence)


main = stage_main("energy", worker)

if __name__ == "__main__":
    sys.exit(main())
