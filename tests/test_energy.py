"""Energy estimates (claim C4): operation counts against hand counts, hand-computed energies in
both GPU regimes, every preset valid and sourced, bad presets stopped before any work."""

from __future__ import annotations

import json

import pytest
import yaml

from pipeline.analysis import energy as en
from pipeline.analysis.energy import GpuPresetCfg, MeasuredGpuCfg, NeuromorphicPresetCfg
from pipeline.analysis.energy_study import load_presets, sources
from pipeline.core.schema import ConfigError, parse
from stages.energy import main
from tests.conftest import REPO

PRESETS = REPO / "conf" / "energy"
TINY = {"sizes": [3, 2, 1], "T": 4, "K": 2, "nudged_phases": 2}


def neuro(**values) -> NeuromorphicPresetCfg:
    raw = {"name": "x", "description": "test"}
    for field in ("synaptic_event_pj", "spike_pj", "neuron_update_pj", "weight_update_pj", "state_access_pj",
                  "static_power_w"):
        raw[field] = {"value": values.get(field, 0.0), "source": "hand"}
    raw["step_us"] = {"value": values.get("step_us", 1.0), "source": "hand"}
    return parse(NeuromorphicPresetCfg, raw)


def gpu(tflops=1.0, watts=100.0, gbs=10.0, launch_us=1.0, idle=20.0) -> GpuPresetCfg:
    return parse(GpuPresetCfg, {"name": "g", "description": "d",
                                "peak_tflops": {"value": tflops, "source": "hand"},
                                "board_power_w": {"value": watts, "source": "hand"},
                                "idle_power_w": {"value": idle, "source": "hand"},
                                "memory_bandwidth_gbs": {"value": gbs, "source": "hand"},
                                "kernel_launch_us": {"value": launch_us, "source": "hand"}})


def test_workload_counts_on_a_tiny_network_match_hand_counts():
    w = en.workloads(TINY, TINY, [3, 2, 1])
    macs = {name: {t: en.total_macs(k) for t, k in tasks.items()} for name, tasks in w.items()}
    # (a) every step: layer 1 from below 3*2 and above 2*1, layer 2 from below 2*1 -> 10 MACs
    #     inference 4 steps; training 4 + 2*2 steps and the update 3*2 + 2*(2*1)
    assert macs["spiking_sim"] == {"inference": 40, "training": 8 * 10 + 6 + 4}
    # (b) the input product once (6), then per step 2*1 (layer 1 from above) + 2*1 (layer 2) = 4
    assert macs["rate_ep"] == {"inference": 6 + 4 * 4, "training": 6 + 8 * 4 + 6 + 4}
    # (c) forward 6 + 2 = 8; training forward 8, backward delta 2 and gradients 8, update 8
    assert macs["mlp_bp"] == {"inference": 8, "training": 8 + 2 + 8 + 8}
    launches = {name: {t: en.launches(k) for t, k in tasks.items()} for name, tasks in w.items()}
    assert launches["spiking_sim"] == {"inference": 8, "training": 16 + 2}
    assert launches["rate_ep"] == {"inference": 1 + 8, "training": 1 + 16 + 2}
    assert launches["mlp_bp"] == {"inference": 2, "training": 2 + 1 + 2 + 2}


def test_the_papers_network_counts_quoted_in_the_spec():
    big = {"sizes": [784, 512, 10], "T": 60, "K": 30, "nudged_phases": 2}
    rate = {"sizes": [784, 512, 10], "T": 30, "K": 10, "nudged_phases": 2}
    w = en.workloads(big, rate, [784, 512, 10])
    assert en.total_macs(w["spiking_sim"]["inference"]) == 24_698_880
    assert en.total_macs(w["spiking_sim"]["training"]) == 49_809_408
    assert en.total_macs(w["rate_ep"]["inference"]) == 708_608
    assert en.total_macs(w["rate_ep"]["training"]) == 1_325_056


def test_gpu_energy_peak_and_batch_regimes_by_hand():
    k = [en.Kernels("k", 3, 1000, 500)]  # 3 launches of 1000 MACs over 500 weights
    g = gpu(tflops=1.0, watts=100.0, gbs=10.0, launch_us=1.0)
    # peak: 2 * 3000 FLOPs * 100 W / 1e12 FLOP/s
    assert en.gpu_energy(k, g, None) == pytest.approx(6000 * 100 / 1e12)
    # batch 1: each launch max(1 us, 2e3 / 1e12 s, 2000 B / 1e10 B/s = 0.2 us) = 1 us
    assert en.gpu_energy(k, g, 1) == pytest.approx(100 * 3e-6)
    # batch 1e4: compute-bound, 2e7 FLOPs / 1e12 = 20 us per launch, shared by 1e4 examples
    assert en.gpu_energy(k, g, 10_000) == pytest.approx(100 * 3 * 20e-6 / 10_000)
    # the fixed cost is per launch, not per MAC: ten times the MACs at batch 1 costs the same
    assert en.gpu_energy([en.Kernels("k", 3, 10_000, 500)], g, 1) == pytest.approx(en.gpu_energy(k, g, 1))
    # the dynamic convention charges board minus idle (100 - 20 W) over the same time
    assert en.gpu_energy(k, g, 1, convention="dynamic") == pytest.approx(80 * 3e-6)
    assert en.gpu_energy(k, g, None, convention="dynamic") == pytest.approx(6000 * 80 / 1e12)


def test_neuromorphic_energy_by_hand_with_state_and_off_chip_parts():
    counts = {"synaptic_events": 1000.0, "spikes": 10.0, "neuron_updates": 100.0, "weight_updates": 50.0}
    preset = neuro(synaptic_event_pj=2.0, spike_pj=1.0, neuron_update_pj=0.5, weight_update_pj=10.0,
                   state_access_pj=3.0)
    e = en.neuromorphic_energy(counts, preset, state_values=7, offchip_macs=4, mac_pj=5.0)
    assert e["state_store_restore_j"] == pytest.approx(2 * 7 * 3e-12)
    assert e["off_chip_j"] == pytest.approx(20e-12)
    assert e["total_j"] == e["dynamic_j"] == pytest.approx((2000 + 10 + 50 + 500 + 42 + 20) * 1e-12)
    # static power over the run time: 2 mW x 30 steps x 5 us = 0.3 uJ, in the total convention only
    hot = neuro(synaptic_event_pj=2.0, static_power_w=2e-3, step_us=5.0)
    e = en.neuromorphic_energy(counts, hot, steps=30)
    assert e["static_j"] == pytest.approx(2e-3 * 30 * 5e-6)
    assert e["total_j"] - e["dynamic_j"] == pytest.approx(e["static_j"]) and e["dynamic_j"] == pytest.approx(2e-9)


def test_variants_input_off_chip_and_free_state():
    """Hand counts on the 3-2-1 network, T 4, K 2, symmetric nudging (2 phases): the input
    encoders are 3 neurons updated every step; the rerun counts the free phase twice; the
    store charges the state; off chip is inference only."""
    per_example = {
        "train": {"free": {"input": {"synaptic_events": 100.0}, "layer1": {"synaptic_events": 10.0}},
                  "nudged": {"input": {"synaptic_events": 200.0, "weight_updates": 200.0},
                             "layer1": {"synaptic_events": 20.0, "weight_updates": 20.0}}},
        "inference": {"inference": {"input": {"synaptic_events": 100.0}, "layer1": {"synaptic_events": 10.0}}}}
    preset = neuro(synaptic_event_pj=1.0, weight_update_pj=1.0, state_access_pj=1.0, neuron_update_pj=1.0,
                   static_power_w=1e-6, step_us=1.0)
    v = en.neuromorphic_variants(per_example, [3, 2, 1], 2, preset, mac_pj=1.0, T=4, K=2)
    pj, static = 1e-12, 1e-6 * 1e-6  # 1 uW over 1 us: 1 pJ per step
    on = v["input on chip, free state store"]
    assert on["inference"]["dynamic_j"] == pytest.approx((110 + 3 * 4) * pj)  # events + 3 encoders x 4 steps
    assert on["inference"]["static_j"] == pytest.approx(4 * static)
    store = (330 + 220 + 3 * 8 + 2 * en.state_variables([3, 2, 1])) * pj  # 8 steps = T + 2 K
    assert on["training"]["dynamic_j"] == pytest.approx(store)
    rerun = v["input on chip, free state rerun"]["training"]
    assert rerun["dynamic_j"] == pytest.approx((330 + 110 + 220 + 3 * 12) * pj)  # the free phase twice: 12 steps
    assert rerun["total_j"] == pytest.approx(rerun["dynamic_j"] + 12 * static)
    # off chip: the input layer's events go, W_1 x (6 MACs) charged per MAC; no training estimate
    off = v["input off chip, free state store"]
    assert off["inference"]["dynamic_j"] == pytest.approx((10 + 6) * pj) and off["training"] is None
    assert en.input_share(per_example)["training"] == pytest.approx(300 / 330)
    assert en.state_variables([3, 2, 1]) == 2 * 3 + 3 * 3


def test_assumption_sentences_name_where_the_ratio_holds():
    pairs = [{"workload": "mlp_bp", "regime": "batch 1", "gpu": "g", "neuromorphic": "n", "variant": "v",
              "inference_ratio": 2000.0, "training_ratio": 50.0},
             {"workload": "mlp_bp", "regime": "peak", "gpu": "g", "neuromorphic": "n", "variant": "v",
              "inference_ratio": 0.2, "training_ratio": 0.1}]
    s = en.assumptions(pairs, {"inference_ratio": 1000.0, "training_ratio": 100.0}, "v")
    assert "holds in 1 of 2" in s["inference"] and "mlp_bp at batch 1" in s["inference"]
    assert "never holds at peak" in s["inference"]
    assert s["training"].startswith("The paper's 100x for training holds under none")


def test_every_preset_composes_with_a_source_for_each_value():
    neuro_presets = load_presets(PRESETS, "neuromorphic", NeuromorphicPresetCfg)
    gpu_presets = load_presets(PRESETS, "gpu", GpuPresetCfg)
    measured = load_presets(PRESETS, "measured", MeasuredGpuCfg)
    assert {"loihi", "truenorth", "cmos_rram", "cmos_pcm"} <= set(neuro_presets)
    assert {"v100_fp32", "a100_fp32", "h100_fp32", "h100_bf16"} <= set(gpu_presets)
    assert "blouw2019_k4000" in measured
    for name, preset in {**neuro_presets, **gpu_presets}.items():
        assert preset.name == name
        src = sources(preset)
        assert src and all(len(s) > 10 for s in src.values()), name


@pytest.mark.parametrize("kind,cls,mutate,needle", [
    ("neuromorphic", NeuromorphicPresetCfg, lambda d: d.pop("weight_update_pj"), "weight_update_pj: missing"),
    ("neuromorphic", NeuromorphicPresetCfg, lambda d: d["spike_pj"].update(value=-1.0), "spike_pj.value: must be >= 0"),
    ("neuromorphic", NeuromorphicPresetCfg, lambda d: d["spike_pj"].pop("source"), "spike_pj.source: missing"),
    ("gpu", GpuPresetCfg, lambda d: d.pop("kernel_launch_us"), "kernel_launch_us: missing"),
    ("gpu", GpuPresetCfg, lambda d: d["board_power_w"].update(value=0.0), "board_power_w.value: must be > 0"),
    ("gpu", GpuPresetCfg, lambda d: d["peak_tflops"].pop("source"), "peak_tflops.source: missing"),
    ("measured", MeasuredGpuCfg, lambda d: d.update(workload="resnet"), "workload"),
    # one convention on both sides: a GPU without its idle power, a chip without its static power
    # (or its step time), a measurement without its convention are refused, by name
    ("gpu", GpuPresetCfg, lambda d: d.pop("idle_power_w"), "idle_power_w: missing"),
    ("gpu", GpuPresetCfg, lambda d: d["idle_power_w"].update(value=400.0), "idle_power_w.value: 400 W is not under"),
    ("neuromorphic", NeuromorphicPresetCfg, lambda d: d.pop("static_power_w"), "static_power_w: missing"),
    ("neuromorphic", NeuromorphicPresetCfg, lambda d: d.pop("step_us"), "step_us: missing"),
    ("measured", MeasuredGpuCfg, lambda d: d.pop("convention"), "convention: missing"),
])
def test_bad_preset_is_named(tmp_path, kind, cls, mutate, needle):
    src = {"neuromorphic": "neuromorphic/loihi.yaml", "gpu": "gpu/v100_fp32.yaml",
           "measured": "measured/blouw2019_k4000.yaml"}[kind]
    raw = yaml.safe_load((PRESETS / src).read_text())
    mutate(raw)
    (tmp_path / kind).mkdir()
    (tmp_path / kind / "bad.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_presets(tmp_path, kind, cls)
    assert "bad.yaml" in str(err.value) and needle in str(err.value)


def _counts(tmp_path):
    events = {"per_example": {"train": {"free": {"layer1": {"spikes": 100.0}},
                                        "nudged": {"layer1": {"synaptic_events": 1e4},
                                                   "input": {"weight_updates": 1e3}}},
                              "inference": {"inference": {"layer1": {"spikes": 50.0, "synaptic_events": 5e3}}}},
              "sizes": [784, 512, 10], "T": 40, "K": 20, "nudged_phases": 2}
    path = tmp_path / "runs" / "seed0" / "events.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(events))
    return [f"energy.out.metrics={tmp_path / 'e.json'}", f"energy.out.table_csv={tmp_path / 'e.csv'}",
            f"energy.out.chart_png={tmp_path / 'e.png'}", f"eqspike.out.runs={tmp_path / 'runs'}",
            f"energy.out.detail={tmp_path / 'ed.json'}"]


@pytest.mark.parametrize("override,needle", [
    ("energy.headline.workload=resnet", "energy.headline.workload"),
    ("energy.headline.gpu=tpu", "energy.headline.gpu"),
    ("energy.headline.regime=batch 7", "energy.headline.regime"),
])
def test_bad_headline_stops_before_any_work(tmp_path, mlflow_store, capsys, override, needle):
    out = _counts(tmp_path)
    assert main([*out, override]) in (1, 2)
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "ed.json").exists()


def test_bad_preset_file_stops_the_stage_before_any_work(tmp_path, mlflow_store, capsys):
    presets = tmp_path / "presets"
    for kind in ("neuromorphic", "gpu", "measured"):
        (presets / kind).mkdir(parents=True)
        for f in (PRESETS / kind).glob("*.yaml"):
            (presets / kind / f.name).write_text(f.read_text())
    raw = yaml.safe_load((PRESETS / "gpu" / "v100_fp32.yaml").read_text())
    raw["memory_bandwidth_gbs"]["value"] = -900.0
    (presets / "gpu" / "v100_fp32.yaml").write_text(yaml.safe_dump(raw))
    out = _counts(tmp_path)
    assert main([*out, f"energy.preset_dir={presets}"]) == 1
    assert "memory_bandwidth_gbs" in capsys.readouterr().err
    assert not (tmp_path / "ed.json").exists()


def test_stage_without_counts_stops_naming_them(tmp_path, mlflow_store, capsys):
    missing = tmp_path / "runs" / "seed0" / "events.json"
    assert main([f"eqspike.out.runs={tmp_path / 'runs'}"]) == 1
    assert str(missing) in capsys.readouterr().err


def test_stage_end_to_end_on_given_counts(tmp_path, mlflow_store):
    out = _counts(tmp_path)
    assert main(out) == 0
    flat = json.loads((tmp_path / "e.json").read_text())
    assert all(isinstance(v, float) for v in flat.values())
    m = json.loads((tmp_path / "ed.json").read_text())
    h = m["headline"]
    assert (h["workload"], h["regime"], h["gpu"], h["neuromorphic"]) == ("mlp_bp", "batch 1", "v100_fp32", "loihi")
    assert flat["inference_ratio"] == pytest.approx(h["inference_ratio"])
    # Loihi: the events, 784 input encoders x 40 steps of neuron updates, and (total) 0.1 W
    # static over 40 steps of 10 us
    loihi_dynamic = 5e3 * 23.6e-12 + 50 * 1.7e-12 + 784 * 40 * 81e-12
    loihi_total = loihi_dynamic + 0.1 * 40 * 10e-6
    assert h["neuromorphic_inference_dynamic_j"] == pytest.approx(loihi_dynamic)
    assert h["neuromorphic_inference_j"] == pytest.approx(loihi_total)
    # V100 at batch 1: two launch-bound kernels of 5 us at 300 W (total), 300 - 40 W (dynamic)
    assert h["gpu_inference_j"] == pytest.approx(300 * 2 * 5e-6)
    assert h["inference_ratio"] == pytest.approx(300 * 2 * 5e-6 / loihi_total)
    assert h["inference_ratio_dynamic"] == pytest.approx(260 * 2 * 5e-6 / loihi_dynamic)
    # the headline is a range: the backprop MLP from batch 1000 to batch 1, both conventions
    r = m["headline_range"]
    assert r["regimes"] == ["batch 1", "batch 1000"] and r["inference"]["to"] == pytest.approx(h["inference_ratio"])
    assert r["inference"]["from"] < r["inference"]["to"] and "inference_dynamic" in r
    assert set(m["assumptions"]) == {"inference", "training"}
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"


def test_measured_preset_written_by_the_nvml_script_is_a_valid_preset(tmp_path):
    """The NVML script's writer (run on a GPU) produces what the energy stage reads."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mge", REPO / "scripts" / "measure_gpu_energy.py")
    mge = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mge)
    entry = mge.preset("NVIDIA H200", "mlp_bp", 1, 2e-3, 5e-3, "measured here, by hand")
    path = mge.write_preset(tmp_path / "measured", "nvidia_h200", entry)
    (name, m), = load_presets(tmp_path, "measured", MeasuredGpuCfg).items()
    assert path.stem == name == "nvidia_h200_mlp_bp_b1"
    assert (m.kind, m.workload, m.batch, m.training_j.value) == ("measured", "mlp_bp", 1, 5e-3)


def test_the_nvml_scripts_workloads_run_the_models_the_stages_train():
    """Its three workloads are built from today's models and configs (run here with NumPy on a
    batch of 2; on a GPU the same code gets CuPy): a renamed model or config fails here."""
    import importlib.util

    import numpy as np

    from runner.config import load_config

    spec = importlib.util.spec_from_file_location("mge", REPO / "scripts" / "measure_gpu_energy.py")
    mge = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mge)
    _, cfg = load_config(["eqspike.T=4", "eqspike.K=2", "eqspike.eval_avg_steps=2", "ep.T=4", "ep.K=2"])
    work = mge.workloads(cfg, np, 2)
    assert set(work) == {"spiking_sim", "rate_ep", "mlp_bp"}
    for infer, train in work.values():
        assert infer() == 2 and train() == 2
