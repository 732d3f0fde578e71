"""DVC stage ``energy``: neuromorphic vs GPU energy from measured event counts (claim C4,
shared/SPEC.md section 5; formulas in pipeline/energy.py, constants in conf/energy/).

    python -m stages.energy
    python -m stages.energy energy.paper_inference_ratio=1000

Every preset file in conf/energy/neuromorphic/ and conf/energy/gpu/ is compared with every
other; energy.neuromorphic and energy.gpu are the headline pair.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
from pathlib import Path

import yaml

from pipeline import energy as en
from pipeline.schema import Config, ConfigError, GpuPresetCfg, NeuromorphicPresetCfg, Sourced, parse
from stages.common import Run, atomic_write, repo_path, stage_main, write_json

FIELDS = ["neuromorphic", "gpu", "neuromorphic_inference_j", "gpu_inference_j", "inference_ratio",
          "neuromorphic_training_j", "gpu_training_j", "training_ratio"]


def load_presets(directory: Path, kind: str, cls) -> dict:
    """Every ``<directory>/<kind>/*.yaml``, validated; the error names the file and the key."""
    presets = {}
    files = sorted((directory / kind).glob("*.yaml"))
    if not files:
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


def worker(cfg: Config, run: Run) -> None:
    ecfg = cfg.energy
    if ecfg is None:
        raise ConfigError("energy: missing from the config (conf/config.yaml defaults: energy: default)")
    events_path = repo_path(cfg.eqspike.out.events)
    if not events_path.is_file():
        raise en.CountsMissing(f"{events_path} is missing: run the train_eqspike stage first "
                               "(dvc repro train_eqspike)")
    events = json.loads(events_path.read_text())
    preset_dir = repo_path(ecfg.preset_dir)
    neuro = load_presets(preset_dir, "neuromorphic", NeuromorphicPresetCfg)
    gpus = load_presets(preset_dir, "gpu", GpuPresetCfg)
    neuro.setdefault(ecfg.neuromorphic.name, ecfg.neuromorphic)
    gpus.setdefault(ecfg.gpu.name, ecfg.gpu)

    # ---- counts: measured spikes and events (EqSpike), operations (rate-based equivalent) ----
    per_example = events["per_example"]
    train_counts = en.event_totals(per_example["train"], ("free", "nudged"))
    infer_counts = en.event_totals(per_example["inference"], ("inference",))
    macs = en.rate_network_macs(events["sizes"], events["T"], events["K"], events["nudged_phases"])

    # ---- energies per preset, ratios per pair -------------------------------------------
    energies = {}
    for name, preset in neuro.items():
        inf, tr = en.neuromorphic_energy(infer_counts, preset), en.neuromorphic_energy(train_counts, preset)
        energies[name] = {"kind": "neuromorphic", "inference_j": inf["total_j"], "training_j": tr["total_j"],
                          "inference_breakdown_j": inf, "training_breakdown_j": tr}
    for name, preset in gpus.items():
        g = en.gpu_energy(macs, preset)
        energies[name] = {"kind": "gpu", "inference_j": g["inference_j"], "training_j": g["training_j"]}
    rows = []
    for g in gpus:
        for n in neuro:
            rows.append({
                "neuromorphic": n, "gpu": g,
                "neuromorphic_inference_j": energies[n]["inference_j"], "gpu_inference_j": energies[g]["inference_j"],
                "inference_ratio": en.ratio(energies[g]["inference_j"], energies[n]["inference_j"]),
                "neuromorphic_training_j": energies[n]["training_j"], "gpu_training_j": energies[g]["training_j"],
                "training_ratio": en.ratio(energies[g]["training_j"], energies[n]["training_j"]),
            })
    head = next(r for r in rows if r["neuromorphic"] == ecfg.neuromorphic.name and r["gpu"] == ecfg.gpu.name)
    closest_inf = min(rows, key=lambda r: en.log_distance(r["inference_ratio"], ecfg.paper_inference_ratio))
    closest_tr = min(rows, key=lambda r: en.log_distance(r["training_ratio"], ecfg.paper_training_ratio))
    finite = [r for r in rows if r["inference_ratio"] < float("inf")]
    metrics = {
        "headline": {"neuromorphic": head["neuromorphic"], "gpu": head["gpu"],
                     "inference_ratio": head["inference_ratio"], "training_ratio": head["training_ratio"],
                     "neuromorphic_inference_j": head["neuromorphic_inference_j"],
                     "neuromorphic_training_j": head["neuromorphic_training_j"],
                     "gpu_inference_j": head["gpu_inference_j"], "gpu_training_j": head["gpu_training_j"]},
        "paper": {"inference_ratio": ecfg.paper_inference_ratio, "training_ratio": ecfg.paper_training_ratio},
        "closest_to_paper": {
            "inference": {"pair": f"{closest_inf['gpu']} / {closest_inf['neuromorphic']}",
                          "ratio": closest_inf["inference_ratio"],
                          "decades_off": en.log_distance(closest_inf["inference_ratio"], ecfg.paper_inference_ratio)},
            "training": {"pair": f"{closest_tr['gpu']} / {closest_tr['neuromorphic']}",
                         "ratio": closest_tr["training_ratio"],
                         "decades_off": en.log_distance(closest_tr["training_ratio"], ecfg.paper_training_ratio)},
        },
        "spread": {"inference_ratio_min": min(r["inference_ratio"] for r in finite),
                   "inference_ratio_max": max(r["inference_ratio"] for r in finite),
                   "training_ratio_min": min(r["training_ratio"] for r in finite),
                   "training_ratio_max": max(r["training_ratio"] for r in finite)},
        "pairs": rows,
        "counts_per_example": {"inference": infer_counts, "training": train_counts},
        "rate_network_macs": macs,
        "presets": energies,
        "sources": {name: sources(p) for name, p in {**neuro, **gpus}.items()},
    }

    # ---- outputs ------------------------------------------------------------------------
    out = ecfg.out
    write_json(repo_path(out.metrics), metrics)

    def write_table(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            w.writeheader()
            w.writerows(rows)

    atomic_write(repo_path(out.table_csv), write_table)
    atomic_write(repo_path(out.chart_png), lambda p: en.energy_chart(
        rows, {k: energies[k] for k in energies}, p, ecfg.paper_inference_ratio, ecfg.paper_training_ratio))
    run.metrics({"inference_ratio": head["inference_ratio"], "training_ratio": head["training_ratio"],
                 "neuromorphic_inference_j": head["neuromorphic_inference_j"],
                 "neuromorphic_training_j": head["neuromorphic_training_j"]})
    for path in (out.metrics, out.table_csv, out.chart_png):
        run.artifact(repo_path(path))
    print(f"headline {head['gpu']} / {head['neuromorphic']}: inference {head['inference_ratio']:.3g}x, "
          f"training {head['training_ratio']:.3g}x (paper: {ecfg.paper_inference_ratio:g}x, "
          f"{ecfg.paper_training_ratio:g}x)")


main = stage_main("energy", worker)

if __name__ == "__main__":
    sys.exit(main())
