"""Interim C4 under the new conventions (issue 22), from the committed run's event totals: the
events.json of that run is a DVC output this checkout lacks, so its totals per phase and layer
group are reconstructed from results/energy.json's Loihi parts (joules / Loihi's per-event
energies). Superseded by the energy stage once `dvc repro` retrains EqSpike.

    python scripts/c4_interim.py
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="example:  python scripts/c4_interim.py   # prints the ranges and Loihi's energies").parse_args()
from pipeline.analysis import energy_study  # noqa: E402  (after the path)
from runner.config import REPO, load_config  # noqa: E402

_, cfg = load_config([])
e = json.loads((REPO / "results/energy.json").read_text())["neuromorphic"]["loihi"]
pj = {"synaptic_events": 23.6, "spikes": 1.7, "neuron_updates": 81.0, "weight_updates": 120.0}
def counts(parts):
    return {k: parts[f"{k}_j"] / (v * 1e-12) for k, v in pj.items()}
on_i = counts(e["input on chip, free state store"]["inference"])
off_i = counts(e["input off chip, free state store"]["inference"])
on_s = counts(e["input on chip, free state store"]["training"])
on_r = counts(e["input on chip, free state rerun"]["training"])
off_s = counts(e["input off chip, free state store"]["training"])
off_r = counts(e["input off chip, free state rerun"]["training"])
def split(on, off):
    return {"input": {k: on[k] - off[k] for k in on}, "layer1": dict(off)}
free_on = {k: on_r[k] - on_s[k] for k in on_s}
free_off = {k: off_r[k] - off_s[k] for k in off_s}
nudged_on = {k: on_s[k] - free_on[k] for k in on_s}
nudged_off = {k: off_s[k] - free_off[k] for k in off_s}
# the input encoders' updates were not counted then: zero here, the study adds them (784 per step)
per = {"train": {"free": split(free_on, free_off), "nudged": split(nudged_on, nudged_off)},
       "inference": {"inference": split(on_i, off_i)}}
for ph in per["train"].values():
    ph["input"]["neuron_updates"] = 0.0
per["inference"]["inference"]["input"]["neuron_updates"] = 0.0
ec = cfg.eqspike
events = {"per_example": per, "sizes": ec.sizes, "T": ec.T, "K": ec.K, "nudged_phases": 2}
found = energy_study.presets(cfg.energy, REPO)
comp = energy_study.study(cfg.energy, found, events, cfg.ep, cfg.bp.sizes)
h = comp["headline"]
print("point", {k: round(h[k], 1) for k in ("inference_ratio", "training_ratio", "inference_ratio_dynamic", "training_ratio_dynamic")})
for k, r in comp["headline_range"].items():
    if isinstance(r, dict):
        print(k, round(r["from"], 2), round(r["to"], 1), "paper", r["paper"], r["paper_is"])
lo = comp["neuromorphic"]["loihi"]["input on chip, free state rerun"]
print("loihi uJ", {t: (round(lo[t]["dynamic_j"] * 1e6, 1), round(lo[t]["total_j"] * 1e6, 1)) for t in ("inference", "training")})
for t in ("inference", "training"):
    print(comp["assumptions"][t])
