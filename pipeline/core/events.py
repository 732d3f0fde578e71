"""Event counters of a spiking simulation (the counts the energy estimate of claim C4 is built from).

A count has a typed key ``EventKey(phase, layer, kind)``:

    phase  free | nudged | inference
    layer  input | layer1 .. layerL | all
    kind   spikes | synaptic_events | weight_updates | neuron_updates | time_steps

A synaptic event is a spike delivered to one synapse (spikes x fan-out); a weight update is one
spike-triggered change of a synapse by the learning rule. Counts are host floats summed over
examples; ``per_example`` divides by the number of examples. On disk (``to_json``) they are
nested ``{phase: {layer: {kind: value}}}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

PHASES = ("free", "nudged", "inference")
KINDS = ("spikes", "synaptic_events", "weight_updates", "neuron_updates", "time_steps")


class EventKey(NamedTuple):
    phase: str
    layer: str
    kind: str


class Counts:
    """Totals per ``EventKey``. Values may be device scalars until ``host()`` is called."""

    def __init__(self) -> None:
        self.values: dict[EventKey, object] = {}

    def add(self, phase: str, layer: str, kind: str, value) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r} (one of {KINDS})")
        key = EventKey(phase, layer, kind)
        self.values[key] = self.values.get(key, 0.0) + value

    def host(self) -> dict[EventKey, float]:
        """Totals as Python floats (one device sync per value on a GPU)."""
        return {k: float(v) for k, v in sorted(self.values.items())}

    def per_example(self, n: int) -> dict[EventKey, float]:
        return {k: v / max(n, 1) for k, v in self.host().items()}


def to_json(counts: Mapping[EventKey, float]) -> dict:
    """``{phase: {layer: {kind: value}}}``."""
    out: dict = {}
    for key, value in counts.items():
        out.setdefault(key.phase, {}).setdefault(key.layer, {})[key.kind] = value
    return out


def from_json(nested: Mapping) -> dict[EventKey, float]:
    return {EventKey(p, l, k): float(v) for p, layers in nested.items()
            for l, kinds in layers.items() for k, v in kinds.items()}


def totals(counts: Mapping[EventKey, float], phases: Iterable[str]) -> dict[str, float]:
    """Sum over layers and the given phases, per kind (every kind present, 0 when absent)."""
    phases = set(phases)
    out = dict.fromkeys(KINDS, 0.0)
    for key, value in counts.items():
        if key.phase in phases:
            out[key.kind] += value
    return out


def by_layer(counts: Mapping[EventKey, float], phases: Iterable[str], kind: str) -> dict[str, float]:
    """``{layer: count}`` of one kind over the given phases."""
    phases = set(phases)
    out: dict[str, float] = {}
    for key, value in counts.items():
        if key.phase in phases and key.kind == kind:
            out[key.layer] = out.get(key.layer, 0.0) + value
    return out
