"""Energy estimates of claim C4: EqSpike on neuromorphic hardware against three GPU workloads,
each at a stated utilisation. Every constant comes from a preset with its source (conf/energy/*);
the neuromorphic counts come from our own simulation, the GPU operation counts from the config
that was run (``workloads``), never typed by hand.

GPU workloads (per example; ``workloads``). A workload is a list of kernel groups: how many
sequential kernel launches per example, and per launch the MACs and the weight bytes it reads.

    spiking_sim  EqSpike's own schedule simulated step by step, what the paper most plausibly
                 compared: every step, every layer's input from below and from above, the
                 constant input product included; inference T steps, training T + P K steps
                 plus the update (input layer once, the others s^a s^a^T - s^b s^b^T).
    rate_ep      rate-based EP as this project runs it (pipeline/models/ep.py): the input product once
                 per example (it is the same in every phase), then per step the other products;
                 its own T, K and nudging.
    mlp_bp       a backprop MLP of the same size (pipeline/models/bp.py): forward; training = forward,
                 backward (no gradient for the input) and the SGD update (one MAC per weight).

GPU energy model (``gpu_energy``). A kernel launch takes
    t = max(t_launch, 2 MACs B / peak_flops, weight_bytes / bandwidth)
and the board draws its power P during it; per example E = P sum(t) / B. At large batch this is
2 MACs P / peak (the spec-division energy per FLOP, the lower bound: ``peak`` regime); at batch 1
a small network is launch- and memory-bound, and the fixed cost is paid per launch, never spread
over MACs. P is the board's rated power (an upper bound when launch-bound). A measured preset
(``conf/energy/measured``, written by ``scripts/gpu_energy.py`` on a GPU, or a published
measurement) replaces the model for its workload, batch and task.

Neuromorphic energy (``neuromorphic_energy``; event-based model as in Davies et al. 2018):

    E_dynamic = N_synaptic_events e_synop + N_spikes e_spike + N_neuron_updates e_neuron
                + N_weight_updates e_update  [+ free state stored and restored: 2 N_state e_state]
    E_total   = E_dynamic + P_static * steps * t_step

with the input encoders charged as neurons (n_0 updates per step, input on chip).

Two conventions, each on both sides of every ratio (``CONVENTIONS``): total (the GPU's board
power; the chip's E_total) and dynamic (board minus idle power; the chip's E_dynamic). A GPU
preset without its idle power, or a chip preset without its static power and step time, is
refused when the presets are read, before any work.

Variants: the second nudged phase starts from the free state, reached by running the free phase
again (``rerun``, the default: exact for the deterministic sigma-delta neuron, its events and
steps counted twice) or stored and restored (``store``: 2 values per state variable, a snapshot
facility a chip may lack); the input layer on chip (its spikes deliver 97 % of the synaptic
events) or off chip (W_1 x computed once per example on a digital host at e_mac per MAC; the chip
sees an analog current the network was never trained with, so this is an inference-only variant:
no training estimate).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.schema import ConfigError, opt, req

# the GPU workloads of the comparison, and the four variants of the chip's side (input layer on or
# off chip, free state stored or the free phase rerun): the one list of each
WORKLOADS = ("spiking_sim", "rate_ep", "mlp_bp")
INPUT_MODES = ("input on chip", "input off chip")
STATE_MODES = ("store", "rerun")
VARIANTS = tuple(f"{i}, free state {m}" for i in INPUT_MODES for m in STATE_MODES)
# the two power conventions, each on both sides of every ratio: total (the GPU's board power, the
# chip's events plus its static power over its run time) and dynamic (board minus idle; events only)
CONVENTIONS = ("total", "dynamic")


@dataclass(frozen=True, kw_only=True)
class Sourced:
    """A published (or assumed) constant and where it comes from."""

    value: float = req(ge=0)
    source: str = req(min_len=3)


@dataclass(frozen=True, kw_only=True)
class NeuromorphicPresetCfg:
    """Energy per event of a neuromorphic technology (values with their sources in conf/energy/), in picojoules."""

    name: str = req(min_len=1)
    description: str = req(min_len=1)
    synaptic_event_pj: Sourced = req()  # a spike delivered to one synapse (read + accumulate)
    spike_pj: Sourced = req()  # generating and routing one spike
    neuron_update_pj: Sourced = req()  # one neuron's state update in one time step
    weight_update_pj: Sourced = req()  # one spike-triggered synaptic weight change (a write)
    state_access_pj: Sourced = req()  # store or restore one state value (free state, 2nd nudged phase)
    static_power_w: Sourced = req()  # drawn whatever the activity (leakage, clocks): the total convention
    step_us: Sourced = req()  # wall time of one network time step: the run time static power is charged over


@dataclass(frozen=True, kw_only=True)
class GpuPresetCfg:
    """A GPU's energy model (pipeline/analysis/energy.py): board power over the time of each kernel,
    t = max(launch latency, FLOPs / peak, weight bytes / bandwidth)."""

    name: str = req(min_len=1)
    description: str = req(min_len=1)
    peak_tflops: Sourced = req()  # at the precision of the preset
    board_power_w: Sourced = req()
    idle_power_w: Sourced = req()  # drawn with nothing running: board minus idle is the dynamic convention
    memory_bandwidth_gbs: Sourced = req()
    kernel_launch_us: Sourced = req()

    def check(self, path: str) -> None:
        for key in ("peak_tflops", "board_power_w", "memory_bandwidth_gbs", "kernel_launch_us"):
            if getattr(self, key).value <= 0:
                raise ConfigError(f"{path}.{key}.value: must be > 0")
        if self.idle_power_w.value >= self.board_power_w.value:
            raise ConfigError(f"{path}.idle_power_w.value: {self.idle_power_w.value:g} W is not under the board power "
                              f"({self.board_power_w.value:g} W)")


@dataclass(frozen=True, kw_only=True)
class MeasuredGpuCfg:
    """A measured GPU energy for one workload (scripts/gpu_energy.py, or a publication)."""

    gpu: str = req(min_len=1)
    kind: str = req(choices=("measured", "published"))
    workload: str = req(choices=WORKLOADS)
    batch: int = req(ge=1)
    # dynamic: energy above idle (what scripts/measure_gpu_energy.py integrates); total: at the wall
    convention: str = req(choices=("dynamic", "total"))
    inference_j: Sourced = req()
    training_j: Sourced | None = opt(None)


@dataclass(frozen=True, kw_only=True)
class HeadlineCfg:
    """Which row of the table is the headline, by a rule stated in ``rule``."""

    rule: str = req(min_len=3)
    gpu: str = req(min_len=1)  # a file name in <preset_dir>/gpu
    neuromorphic: str = req(min_len=1)  # a file name in <preset_dir>/neuromorphic
    workload: str = req(choices=WORKLOADS)
    regime: str = req(min_len=1)  # peak | batch <B> (B in energy.batches) | measured


@dataclass(frozen=True, kw_only=True)
class EnergyOutCfg:
    metrics: str = opt("results/flat/energy.json")  # flat numbers (MLflow); the headline is metrics/
    detail: str = opt("results/energy.json")  # everything: every pair, presets, sources, counts
    table_csv: str = opt("plots/energy.csv")
    chart_png: str = opt("plots/energy.png")


@dataclass(frozen=True, kw_only=True)
class EnergyCfg:
    """Energy estimate (claim C4): every preset file under ``preset_dir``/{neuromorphic,gpu,measured}."""

    preset_dir: str = req(min_len=1)
    batches: list[int] = req(min_len=1, ge=1)  # GPU batch sizes of the table, besides the peak regime
    variant: str = req(choices=VARIANTS)
    host_mac_pj: Sourced = req()  # a multiply-add on a digital host (the input layer off chip)
    headline: HeadlineCfg = req()
    paper_inference_ratio: float = req(gt=0)
    paper_training_ratio: float = req(gt=0)
    out: EnergyOutCfg = opt(EnergyOutCfg())

    def check(self, path: str) -> None:
        regimes = ["peak", "measured", *(f"batch {b}" for b in self.batches)]
        if self.headline.regime not in regimes:
            raise ConfigError(f"{path}.headline.regime: {self.headline.regime!r} is not one of {regimes}")



PJ = 1e-12
TASKS = ("inference", "training")
EVENT_KINDS = {
    "synaptic_events": "synaptic_event_pj",
    "spikes": "spike_pj",
    "neuron_updates": "neuron_update_pj",
    "weight_updates": "weight_update_pj",
}


class CountsMissing(ValueError):
    """The event counts needed for an estimate are not there (training has not run)."""


# --------------------------------------------------------------------------------------------
# GPU workloads: operation counts from the config
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Kernels:
    """``count`` sequential launches per example, each ``macs`` multiply-adds (per example) over
    ``weights`` weight elements read."""

    name: str
    count: int
    macs: int
    weights: int


def _layer_kernels(sizes: Sequence[int], with_input: bool) -> list[tuple[int, int]]:
    """Per layer l = 1..L of one step: (MACs, weights) of its input from below and above."""
    L = len(sizes) - 1
    out = []
    for l in range(1, L + 1):
        below = sizes[l - 1] * sizes[l] if (l > 1 or with_input) else 0
        above = sizes[l] * sizes[l + 1] if l < L else 0
        out.append((below + above, below + above))
    return out


def _ep_update(sizes: Sequence[int]) -> list[Kernels]:
    """EP's update: the input layer x^T (s^a - s^b), the others s^a s^a^T - s^b s^b^T."""
    out = []
    for l in range(1, len(sizes)):
        n = sizes[l - 1] * sizes[l]
        out.append(Kernels(f"update W{l}", 1, n if l == 1 else 2 * n, n))
    return out


def workloads(spiking: dict, rate: dict, mlp_sizes: Sequence[int]) -> dict[str, dict[str, list[Kernels]]]:
    """``{workload: {task: [Kernels]}}``. ``spiking`` / ``rate``: ``sizes``, ``T``, ``K`` and
    ``nudged_phases`` of the config run; ``mlp_sizes``: the backprop MLP."""
    out: dict[str, dict[str, list[Kernels]]] = {}
    s, T, K, P = spiking["sizes"], spiking["T"], spiking["K"], spiking["nudged_phases"]
    step = _layer_kernels(s, with_input=True)
    out["spiking_sim"] = {
        "inference": [Kernels(f"step, layer {l + 1}", T, m, w) for l, (m, w) in enumerate(step)],
        "training": [Kernels(f"step, layer {l + 1}", T + P * K, m, w) for l, (m, w) in enumerate(step)]
        + _ep_update(s),
    }
    s, T, K, P = rate["sizes"], rate["T"], rate["K"], rate["nudged_phases"]
    step = [(m, w) for m, w in _layer_kernels(s, with_input=False)]
    inp = Kernels("input product (once)", 1, s[0] * s[1], s[0] * s[1])
    out["rate_ep"] = {
        "inference": [inp] + [Kernels(f"step, layer {l + 1}", T, m, w) for l, (m, w) in enumerate(step) if m],
        "training": [inp] + [Kernels(f"step, layer {l + 1}", T + P * K, m, w) for l, (m, w) in enumerate(step) if m]
        + _ep_update(s),
    }
    m = list(mlp_sizes)
    fwd = [Kernels(f"forward W{l}", 1, m[l - 1] * m[l], m[l - 1] * m[l]) for l in range(1, len(m))]
    back = [Kernels(f"backward delta W{l}", 1, m[l - 1] * m[l], m[l - 1] * m[l]) for l in range(2, len(m))]
    grads = [Kernels(f"gradient W{l}", 1, m[l - 1] * m[l], m[l - 1] * m[l]) for l in range(1, len(m))]
    upd = [Kernels(f"SGD update W{l}", 1, m[l - 1] * m[l], m[l - 1] * m[l]) for l in range(1, len(m))]
    out["mlp_bp"] = {"inference": fwd, "training": fwd + back + grads + upd}
    return out


def total_macs(kernels: Sequence[Kernels]) -> int:
    return sum(k.count * k.macs for k in kernels)


def launches(kernels: Sequence[Kernels]) -> int:
    return sum(k.count for k in kernels)


# --------------------------------------------------------------------------------------------
# GPU energy
# --------------------------------------------------------------------------------------------

def gpu_power(preset, convention: str = "total") -> float:
    """Watts charged while a kernel runs: the board power (total) or board minus idle (dynamic)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention: {convention!r} is not one of {CONVENTIONS}")
    P = preset.board_power_w.value
    return P if convention == "total" else P - preset.idle_power_w.value


def gpu_energy(kernels: Sequence[Kernels], preset, batch: int | None, weight_bytes: int = 4,
               convention: str = "total") -> float:
    """Joules per example; ``batch`` None: the peak regime (2 MACs x P / peak_flops)."""
    P = gpu_power(preset, convention)
    peak = preset.peak_tflops.value * 1e12
    if batch is None:
        return 2.0 * total_macs(kernels) * P / peak
    bw = preset.memory_bandwidth_gbs.value * 1e9
    t_launch = preset.kernel_launch_us.value * 1e-6
    seconds = sum(k.count * max(t_launch, 2.0 * k.macs * batch / peak, k.weights * weight_bytes / bw)
                  for k in kernels)
    return P * seconds / batch


def regime_name(batch: int | None) -> str:
    return "peak" if batch is None else f"batch {batch}"


# --------------------------------------------------------------------------------------------
# Neuromorphic energy
# --------------------------------------------------------------------------------------------

def layer_totals(per_example: dict, phases: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{layer: {kind: count}}`` summed over ``phases`` of the nested counts."""
    out: dict[str, dict[str, float]] = {}
    for phase in phases:
        for layer, kinds in per_example.get(phase, {}).items():
            for kind, v in kinds.items():
                out.setdefault(layer, {}).setdefault(kind, 0.0)
                out[layer][kind] += v
    return out


def event_totals(per_example: dict, phases: Sequence[str], drop_layers: Sequence[str] = ()) -> dict[str, float]:
    """Counts per kind over layers (except ``drop_layers``) and the given phases."""
    if not any(p in per_example for p in phases):
        raise CountsMissing(f"no event counts for phases {list(phases)} (run the train_eqspike stage)")
    totals = {kind: 0.0 for kind in EVENT_KINDS}
    for layer, kinds in layer_totals(per_example, phases).items():
        if layer in drop_layers:
            continue
        for kind in EVENT_KINDS:
            totals[kind] += kinds.get(kind, 0.0)
    return totals


def state_variables(sizes: Sequence[int]) -> int:
    """Values that define the free state: per non-input neuron its state, accumulator and
    trace; per input its accumulator and trace."""
    return 2 * sizes[0] + 3 * sum(sizes[1:])


def neuromorphic_energy(counts: dict, preset, state_values: int = 0, offchip_macs: int = 0,
                        mac_pj: float = 0.0, steps: int = 0) -> dict[str, float]:
    """Joules per example, per part: ``dynamic_j`` (events, state store, off-chip work) and
    ``total_j`` (plus the static power over ``steps`` time steps of ``preset.step_us``)."""
    parts = {f"{kind}_j": counts[kind] * getattr(preset, field).value * PJ for kind, field in EVENT_KINDS.items()}
    parts["state_store_restore_j"] = 2.0 * state_values * preset.state_access_pj.value * PJ
    parts["off_chip_j"] = offchip_macs * mac_pj * PJ
    dynamic = sum(parts.values())
    static = preset.static_power_w.value * steps * preset.step_us.value * 1e-6
    return {"total_j": dynamic + static, "dynamic_j": dynamic, "static_j": static, "steps": steps, **parts}


def neuromorphic_variants(per_example: dict, sizes: Sequence[int], nudged_phases: int, preset,
                          mac_pj: float, T: int = 0, K: int = 0) -> dict[str, dict[str, dict | None]]:
    """``{variant: {task: energy parts}}`` for the four combinations of free state (store | rerun)
    and input layer (on chip | off chip). Only symmetric nudging restarts from the free state.
    On chip, the input encoders are neurons: n_0 updates per time step. Off chip is an
    inference-only variant (the chip would not run the rule the network was trained with):
    its training entry is None."""
    train = per_example["train"]
    infer = per_example["inference"]
    second = nudged_phases > 1
    out: dict[str, dict[str, dict | None]] = {}
    train_steps = T + nudged_phases * K
    for input_mode in INPUT_MODES:
        on_chip = input_mode == INPUT_MODES[0]
        drop = () if on_chip else ("input",)
        inf_counts = event_totals(infer, ("inference",), drop)
        base = event_totals(train, ("free", "nudged"), drop)
        free = event_totals(train, ("free",), drop)
        encoders = sizes[0] if on_chip else 0
        inf_counts["neuron_updates"] += encoders * T
        inference = neuromorphic_energy(inf_counts, preset, 0, 0 if on_chip else sizes[0] * sizes[1], mac_pj, T)
        for state_mode in STATE_MODES:
            name = f"{input_mode}, free state {state_mode}"
            if not on_chip:
                out[name] = {"inference": inference, "training": None}
                continue
            if state_mode == STATE_MODES[1] and second:
                counts = {k: base[k] + free[k] for k in base}
                counts["neuron_updates"] += encoders * (train_steps + T)
                tr = neuromorphic_energy(counts, preset, 0, 0, mac_pj, train_steps + T)
            else:
                counts = dict(base)
                counts["neuron_updates"] += encoders * train_steps
                tr = neuromorphic_energy(counts, preset, state_variables(sizes) if second else 0, 0, mac_pj,
                                         train_steps)
            out[name] = {"inference": inference, "training": tr}
    return out


def input_share(per_example: dict) -> dict[str, float]:
    """Share of the input layer in the synaptic events (training and inference)."""
    out = {}
    for task, phases in (("training", ("free", "nudged")), ("inference", ("inference",))):
        lt = layer_totals(per_example["train" if task == "training" else "inference"], phases)
        total = sum(k.get("synaptic_events", 0.0) for k in lt.values())
        out[task] = lt.get("input", {}).get("synaptic_events", 0.0) / total if total else math.nan
    return out


# --------------------------------------------------------------------------------------------
# The comparison
# --------------------------------------------------------------------------------------------

def ratio(gpu_j: float, neuro_j: float) -> float:
    """How many times less energy the neuromorphic estimate needs (inf when it needs none)."""
    return gpu_j / neuro_j if neuro_j > 0 else math.inf


def compare(counts: dict, rate: dict, mlp: dict, neuro: dict, gpus: dict, measured: dict, batches: Sequence[int],
            headline: dict, variant: str, mac_pj: float, paper: dict) -> dict:
    """Every GPU workload x regime x GPU preset (and measured entries) against every
    neuromorphic preset. ``counts``: the train_eqspike stage's events.json; ``rate``/``mlp``:
    the other models' configs (``sizes``, ``T``, ``K``, ``nudged_phases``); ``measured``:
    ``{name: entry}`` with ``gpu``, ``workload``, ``batch``, ``inference_j``, ``training_j``;
    ``headline``: ``gpu``, ``neuromorphic``, ``workload``, ``regime``; ``variant``: the
    neuromorphic variant of the table; ``paper``: ``inference_ratio``, ``training_ratio``."""
    spiking = {k: counts[k] for k in ("sizes", "T", "K", "nudged_phases")}
    work = workloads(spiking, rate, mlp["sizes"])
    per_example = counts["per_example"]
    neuro_e = {name: neuromorphic_variants(per_example, spiking["sizes"], spiking["nudged_phases"], p, mac_pj,
                                           spiking["T"], spiking["K"])
               for name, p in neuro.items()}
    gpu_rows = []
    for wname, tasks in work.items():
        for gname, preset in gpus.items():
            for batch in (None, *batches):
                gpu_rows.append({"workload": wname, "regime": regime_name(batch), "gpu": gname, "kind": "model",
                                 **{f"{t}{suffix(c)}_j": gpu_energy(tasks[t], preset, batch, convention=c)
                                    for t in TASKS for c in CONVENTIONS}})
        for mname, m in measured.items():
            if m["workload"] == wname:
                c = m["convention"]
                gpu_rows.append({"workload": wname, "regime": "measured", "gpu": m["gpu"], "kind": m["kind"],
                                 f"inference{suffix(c)}_j": m["inference_j"], f"training{suffix(c)}_j": m.get("training_j"),
                                 "batch": m["batch"], "entry": mname})
    pairs = []
    for row in gpu_rows:
        for nname, variants in neuro_e.items():
            for vname, ve in variants.items():
                pair = {**{k: row[k] for k in ("workload", "regime", "gpu", "kind")}, "neuromorphic": nname,
                        "variant": vname}
                for t in TASKS:
                    for c in CONVENTIONS:
                        g = row.get(f"{t}{suffix(c)}_j")
                        n = None if ve[t] is None else ve[t][f"{c}_j"]
                        pair[f"{t}_ratio{suffix(c)}"] = ratio(g, n) if g is not None and n is not None else None
                        pair[f"gpu_{t}{suffix(c)}_j"] = g
                        pair[f"neuromorphic_{t}{suffix(c)}_j"] = n
                pairs.append(pair)
    head = next((p for p in pairs if p["workload"] == headline["workload"] and p["regime"] == headline["regime"]
                 and p["gpu"] == headline["gpu"] and p["neuromorphic"] == headline["neuromorphic"]
                 and p["variant"] == variant), None)
    if head is None:
        raise ValueError(f"energy.headline: no row {headline} with variant {variant!r}")
    return {
        "workloads": {w: {t: {"macs": total_macs(k), "launches": launches(k),
                              "kernels": [vars(x) for x in k]} for t, k in tasks.items()} for w, tasks in work.items()},
        "gpu_rows": gpu_rows,
        "neuromorphic": neuro_e,
        "input_share": input_share(per_example),
        "state_variables": state_variables(spiking["sizes"]),
        "pairs": pairs,
        "variant": variant,
        "headline": head,
        "headline_range": headline_range(pairs, headline, variant, batches, paper),
        "paper": paper,
        "assumptions": assumptions(pairs, paper, variant),
    }


def suffix(convention: str) -> str:
    """The key suffix of a convention: none for total, ``_dynamic``."""
    return "" if convention == "total" else f"_{convention}"


def headline_range(pairs: Sequence[dict], headline: dict, variant: str, batches: Sequence[int], paper: dict) -> dict:
    """The headline as a range: the headline's workload, GPU and chip from batched to batch 1
    (every batch of ``energy.batches``), in both conventions, and where the paper's ratio falls."""
    regimes = [regime_name(b) for b in batches]
    rows = [p for p in pairs if p["workload"] == headline["workload"] and p["gpu"] == headline["gpu"]
            and p["neuromorphic"] == headline["neuromorphic"] and p["variant"] == variant and p["regime"] in regimes]
    out: dict = {"regimes": regimes, "workload": headline["workload"], "gpu": headline["gpu"],
                 "neuromorphic": headline["neuromorphic"], "variant": variant}
    for t in TASKS:
        for c in CONVENTIONS:
            vals = [p[f"{t}_ratio{suffix(c)}"] for p in rows if p[f"{t}_ratio{suffix(c)}"] is not None]
            if not vals:
                continue
            lo, hi = min(vals), max(vals)
            target = paper[f"{t}_ratio"]
            where = "inside" if lo <= target <= hi else ("above" if target > hi else "below")
            out[f"{t}{suffix(c)}"] = {"from": lo, "to": hi, "paper": target, "paper_is": where}
    return out


def assumptions(pairs: Sequence[dict], paper: dict, variant: str) -> dict[str, str]:
    """One sentence per claim: under which workload / regime / presets the paper's ratio holds,
    and under which it does not."""
    out = {}
    for task in TASKS:
        target = paper[f"{task}_ratio"]
        rows = [p for p in pairs if p["variant"] == variant and p[f"{task}_ratio"] is not None]
        if not rows:
            out[task] = f"No {task} estimate with variant {variant} (an inference-only variant)."
            continue
        hold = [p for p in rows if p[f"{task}_ratio"] >= target]
        best = max(rows, key=lambda p: p[f"{task}_ratio"])
        regimes = sorted({p["regime"] for p in rows})
        if not hold:
            out[task] = (f"The paper's {target:g}x for {task} holds under none of the {len(rows)} combinations "
                         f"(variant {variant}); the largest is {best[f'{task}_ratio']:.3g}x ({best['workload']} on "
                         f"{best['gpu']} at {best['regime']} vs {best['neuromorphic']}).")
            continue
        parts = []
        for w in WORKLOADS:
            hw = [p for p in hold if p["workload"] == w]
            if hw:
                regs = sorted({p["regime"] for p in hw})
                neuros = sorted({p["neuromorphic"] for p in hw})
                parts.append(f"{w} at {', '.join(regs)} (vs {', '.join(neuros)})")
        never_w = [w for w in WORKLOADS if w in {p["workload"] for p in rows} and w not in {p["workload"] for p in hold}]
        never_r = [r for r in regimes if r not in {p["regime"] for p in hold}]
        text = (f"The paper's {target:g}x for {task} holds in {len(hold)} of {len(rows)} combinations "
                f"(variant {variant}), all with the GPU running {'; '.join(parts)}")
        if never_r:
            text += f"; it never holds at {', '.join(never_r)}"
        if never_w:
            text += f", nor when the GPU runs {', '.join(never_w)}"
        out[task] = text + "."
    return out


def flat_metrics(comparison: dict) -> dict[str, float]:
    """The headline, the spread and the per-workload ratios against the headline's neuromorphic
    preset as one flat mapping."""
    h = comparison["headline"]
    out = {"inference_ratio": h["inference_ratio"], "training_ratio": h["training_ratio"],
           "inference_ratio_dynamic": h["inference_ratio_dynamic"], "training_ratio_dynamic": h["training_ratio_dynamic"],
           "neuromorphic_inference_uj": h["neuromorphic_inference_j"] * 1e6,
           "neuromorphic_training_uj": h["neuromorphic_training_j"] * 1e6,
           "gpu_inference_uj": h["gpu_inference_j"] * 1e6, "gpu_training_uj": h["gpu_training_j"] * 1e6,
           "input_share_of_synaptic_events": comparison["input_share"]["training"]}
    for key, r in comparison["headline_range"].items():
        if isinstance(r, dict):
            out[f"range.{key}.from"], out[f"range.{key}.to"] = r["from"], r["to"]
    for p in comparison["pairs"]:
        if p["neuromorphic"] == h["neuromorphic"] and p["gpu"] == h["gpu"] and p["variant"] == comparison["variant"]:
            key = f"{p['workload']}.{p['regime'].replace(' ', '')}"
            for t in TASKS:
                for c in CONVENTIONS:
                    r = p[f"{t}_ratio{suffix(c)}"]
                    if r is not None and math.isfinite(r):
                        out[f"{key}.{t}_ratio{suffix(c)}"] = r
    return out


def energy_chart(comparison: dict, path: Path) -> None:
    """GPU / neuromorphic energy ratio for each workload x regime (x the headline GPU), one
    marker per neuromorphic preset; inference left, training right; the paper's ratios marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    h, variant, paper = comparison["headline"], comparison["variant"], comparison["paper"]
    rows = [p for p in comparison["pairs"] if p["variant"] == variant and (p["gpu"] == h["gpu"] or p["regime"] == "measured")]
    labels = sorted({(p["workload"], p["regime"], p["gpu"]) for p in rows}, key=lambda x: (WORKLOADS.index(x[0]), x[1]))
    neuros = sorted({p["neuromorphic"] for p in rows})
    fig, axes = plt.subplots(1, 2, figsize=(15, 5.5), sharey=False)
    for ax, task in zip(axes, TASKS):
        for k, n in enumerate(neuros):
            xs, ys = [], []
            for i, lab in enumerate(labels):
                p = next((p for p in rows if (p["workload"], p["regime"], p["gpu"]) == lab and p["neuromorphic"] == n), None)
                if p is not None and p[f"{task}_ratio"] is not None:
                    xs.append(i + (k - len(neuros) / 2) * 0.12)
                    ys.append(p[f"{task}_ratio"])
            ax.scatter(xs, ys, label=n, color=f"C{k}", s=25)
        ax.axhline(paper[f"{task}_ratio"], color="r", ls="--", lw=1, label=f"paper ({paper[f'{task}_ratio']:g}x)")
        ax.axhline(1, color="k", lw=0.8)
        ax.set_yscale("log")
        ax.set_xticks(np.arange(len(labels)), [f"{w}\n{r}\n{g}" for w, r, g in labels], rotation=60, ha="right",
                      fontsize=7)
        ax.set_ylabel(f"GPU energy / neuromorphic energy, {task} (total on both sides)")
        ax.set_title(f"{task} ({variant})", fontsize=10)
        ax.grid(alpha=0.3, axis="y", which="both")
        ax.legend(fontsize=7)
    fig.suptitle("EqSpike energy against three GPU workloads at stated utilisation (claim C4)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
