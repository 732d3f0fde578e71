"""DVC stage ``energy``: neuromorphic vs GPU energy from measured event counts (claim C4;
formulas and the comparison in pipeline/energy.py, constants in conf/energy/).

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
from stages.common import Run, SeedPaths, atomic_write, repo_path, stage_main, write_json


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
    events_path = SeedPaths(cfg.eqspike.out, cfg.runtime.seed).events
    if not events_path.is_file():
        raise en.CountsMissing(f"{events_path} is missing: run the train_eqspike stage first "
                               "(dvc repro train_eqspike)")
    events = json.loads(events_path.read_text())
    preset_dir = repo_path(ecfg.preset_dir)
    neuro = load_presets(preset_dir, "neuromorphic", NeuromorphicPresetCfg)
    gpus = load_presets(preset_dir, "gpu", GpuPresetCfg)
    neuro.setdefault(ecfg.neuromorphic.name, ecfg.neuromorphic)
    gpus.setdefault(ecfg.gpu.name, ecfg.gpu)

    # ---- energies per preset, ratios per pair, headline (pipeline/energy.py) -------------------
    metrics = en.compare(events, neuro, gpus, ecfg.neuromorphic.name, ecfg.gpu.name,
                         ecfg.paper_inference_ratio, ecfg.paper_training_ratio)
    metrics["sources"] = {name: sources(p) for name, p in {**neuro, **gpus}.items()}
    rows, energies, head = metrics["pairs"], metrics["presets"], metrics["headline"]

    # ---- outputs ------------------------------------------------------------------------
    out = ecfg.out
    write_json(repo_path(out.detail), metrics)
    write_json(repo_path(out.metrics), en.flat_metrics(metrics))

    def write_table(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["pair", *en.PAIR_FIELDS])
            w.writeheader()
            w.writerows({"pair": f"{r['gpu']} / {r['neuromorphic']}", **r} for r in rows)

    atomic_write(repo_path(out.table_csv), write_table)
    atomic_write(repo_path(out.chart_png), lambda p: en.energy_chart(
        rows, {k: energies[k] for k in energies}, p, ecfg.paper_inference_ratio, ecfg.paper_training_ratio))
    run.metrics({"inference_ratio": head["inference_ratio"], "training_ratio": head["training_ratio"],
                 "neuromorphic_inference_j": head["neuromorphic_inference_j"],
                 "neuromorphic_training_j": head["neuromorphic_training_j"]})
    for path in (out.metrics, out.detail, out.table_csv, out.chart_png):
        run.artifact(repo_path(path))
    print(f"headline {head['gpu']} / {head['neuromorphic']}: inference {head['inference_ratio']:.3g}x, "
          f"training {head['training_ratio']:.3g}x (paper: {ecfg.paper_inference_ratio:g}x, "
          f"{ecfg.paper_training_ratio:g}x)")


main = stage_main("energy", worker)

if __name__ == "__main__":
    sys.exit(main())
