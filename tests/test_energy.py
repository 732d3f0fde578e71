"""Energy estimates (claim C4): hand-computed energies, every preset valid and sourced."""

from __future__ import annotations

import json

import pytest
import yaml

from pipeline import energy as en
from pipeline.schema import ConfigError, GpuPresetCfg, NeuromorphicPresetCfg, parse
from stages.energy import load_presets, main, sources
from tests.conftest import REPO

PRESETS = REPO / "conf" / "energy"


def neuro(**values) -> NeuromorphicPresetCfg:
    raw = {"name": "x", "description": "test"}
    for field in ("synaptic_event_pj", "spike_pj", "neuron_update_pj", "weight_update_pj"):
        raw[field] = {"value": values.get(field, 0.0), "source": "hand"}
    return parse(NeuromorphicPresetCfg, raw)


def test_hand_built_counts_give_hand_computed_energy():
    counts = {"synaptic_events": 1000.0, "spikes": 10.0, "neuron_updates": 100.0, "weight_updates": 50.0}
    preset = neuro(synaptic_event_pj=2.0, spike_pj=1.0, neuron_update_pj=0.5, weight_update_pj=10.0)
    e = en.neuromorphic_energy(counts, preset)
    assert e["total_j"] == pytest.approx((2000 + 10 + 50 + 500) * 1e-12)
    assert e["weight_updates_j"] == pytest.approx(500e-12)


def test_event_totals_sum_layers_and_phases():
    per_example = {"free": {"input": {"spikes": 3.0}, "layer1": {"spikes": 2.0}, "all": {"time_steps": 40.0}},
                   "nudged": {"layer1": {"spikes": 1.0, "weight_updates": 7.0}}}
    t = en.event_totals(per_example, ("free", "nudged"))
    assert t["spikes"] == 6.0 and t["weight_updates"] == 7.0 and t["synaptic_events"] == 0.0
    with pytest.raises(en.CountsMissing):
        en.event_totals(per_example, ("inference",))


def test_rate_network_macs_by_hand():
    m = en.rate_network_macs([784, 512, 10], T=40, K=20, nudged_phases=2)
    step = 784 * 512 + 512 * 10 + 512 * 10
    assert m["macs_per_step"] == step
    assert m["inference_macs"] == 40 * step
    assert m["training_macs"] == 80 * step + 784 * 512 + 2 * 512 * 10
    gpu = parse(GpuPresetCfg, {"name": "g", "description": "d", "flop_pj": {"value": 10.0, "source": "by hand"}})
    assert en.gpu_energy(m, gpu)["inference_j"] == pytest.approx(2 * 40 * step * 10e-12)


def test_every_preset_composes_with_a_source_for_each_value():
    neuro_presets = load_presets(PRESETS, "neuromorphic", NeuromorphicPresetCfg)
    gpu_presets = load_presets(PRESETS, "gpu", GpuPresetCfg)
    assert {"loihi", "truenorth", "cmos_rram", "cmos_pcm"} <= set(neuro_presets)
    assert {"v100_fp32", "h100_fp32", "h100_bf16", "k4000_batch1_measured"} <= set(gpu_presets)
    for name, preset in {**neuro_presets, **gpu_presets}.items():
        assert preset.name == name
        src = sources(preset)
        assert src and all(len(s) > 10 for s in src.values()), name


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d.pop("weight_update_pj"), "weight_update_pj: missing"),
    (lambda d: d["spike_pj"].update(value=-1.0), "spike_pj.value: must be >= 0"),
    (lambda d: d["spike_pj"].pop("source"), "spike_pj.source: missing"),
])
def test_bad_preset_is_named(tmp_path, mutate, needle):
    raw = yaml.safe_load((PRESETS / "neuromorphic" / "loihi.yaml").read_text())
    mutate(raw)
    (tmp_path / "neuromorphic").mkdir()
    (tmp_path / "neuromorphic" / "bad.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_presets(tmp_path, "neuromorphic", NeuromorphicPresetCfg)
    assert "bad.yaml" in str(err.value) and needle in str(err.value)


def test_gpu_preset_needs_an_energy():
    with pytest.raises(ConfigError, match="flop_pj: missing"):
        parse(GpuPresetCfg, {"name": "g", "description": "d"}, "gpu")


def test_stage_without_counts_stops_naming_them(tmp_path, mlflow_store, capsys):
    missing = tmp_path / "runs" / "seed0" / "events.json"
    assert main([f"eqspike.out.runs={tmp_path / 'runs'}"]) == 1
    assert str(missing) in capsys.readouterr().err


def test_stage_end_to_end_on_given_counts(tmp_path, mlflow_store):
    events = {"per_example": {"train": {"free": {"layer1": {"spikes": 100.0}},
                                        "nudged": {"layer1": {"synaptic_events": 1e4},
                                                   "input": {"weight_updates": 1e3}}},
                              "inference": {"inference": {"layer1": {"spikes": 50.0, "synaptic_events": 5e3}}}},
              "sizes": [784, 512, 10], "T": 40, "K": 20, "nudged_phases": 2}
    path = tmp_path / "runs" / "seed0" / "events.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(events))
    out = [f"energy.out.metrics={tmp_path / 'e.json'}", f"energy.out.table_csv={tmp_path / 'e.csv'}",
           f"energy.out.chart_png={tmp_path / 'e.png'}", f"eqspike.out.runs={tmp_path / 'runs'}",
           f"energy.out.detail={tmp_path / 'ed.json'}"]
    assert main(out) == 0
    flat = json.loads((tmp_path / "e.json").read_text())
    assert all(isinstance(v, float) for v in flat.values())
    m = json.loads((tmp_path / "ed.json").read_text())
    assert flat["inference_ratio"] == pytest.approx(m["headline"]["inference_ratio"])
    loihi = 5e3 * 23.6e-12 + 50 * 1.7e-12
    assert m["presets"]["loihi"]["inference_j"] == pytest.approx(loihi)
    assert m["headline"]["inference_ratio"] == pytest.approx(m["presets"]["v100_fp32"]["inference_j"] / loihi)
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"
    assert len((tmp_path / "e.csv").read_text().splitlines()) == 1 + 4 * 5
