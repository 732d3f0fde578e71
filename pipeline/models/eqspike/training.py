"""A training run of EqSpike (``train``): the shared run (``pipeline.models.run``: resume, fit,
weights, metrics, curves) plus what EqSpike writes besides: the event counts per example of
training and inference (``events.json``, read by the energy stage) and a spike raster of one test
example through the free and nudged phases (``raster.png``)."""

from __future__ import annotations

from dataclasses import asdict, replace

from pipeline.core import events as ev
from pipeline.core.backend import to_host
from pipeline.core.io import SeedPaths, atomic_write, write_json
from pipeline.models.eqspike.dynamics import EqSpikeConfig, make_rng, onehot
from pipeline.models.eqspike.model import EqSpikeModel
from pipeline.models.eqspike.schedule import record_raster
from pipeline.models.figures import spike_raster
from pipeline.models.run import Tracker, train_and_write


def events_record(cfg: EqSpikeConfig, history: list[dict]) -> dict:
    """The last epoch's event counts per example, with what the energy model needs to read them."""
    last = history[-1]
    per_example = last["events"]
    totals = {part: ev.totals(ev.from_json(counts), ev.PHASES) for part, counts in per_example.items()}
    return {
        "description": "event counts per example, measured in the last epoch's simulation "
                       "(train: free + nudged phases with spike-triggered updates; inference: "
                       "one free phase of the raw weights on the test set, read once after training)",
        "per_example": per_example,
        "totals_per_example": totals,
        "sizes": cfg.sizes, "T": cfg.T, "K": cfg.K, "nudge": cfg.nudge, "batch_size": cfg.batch_size,
        "nudged_phases": 2 if cfg.nudge == "symmetric" else 1,
        "neuron": asdict(cfg.neuron), "epoch": last["epoch"],
    }


def write_extras(cfg: EqSpikeConfig, params, history: list[dict], data, seed: int, paths, xp) -> dict:
    """Write ``events.json`` and ``raster.png`` of one run (``paths``: its ``SeedPaths``); returns
    the headline event figures for its metrics."""
    events = events_record(cfg, history)
    write_json(paths.events, events)
    x1 = xp.asarray(data.x_test[:1], dtype=params.W[0].dtype)
    y1 = onehot(xp.asarray(data.y_test[:1]), cfg.sizes[-1], xp, x1.dtype)
    raster = record_raster(params, x1, y1, replace(cfg, engine="array"), make_rng(xp, [seed, 2]))
    raster = {p: [[to_host(a) for a in step] for step in steps] for p, steps in raster.items()}
    atomic_write(paths.raster_png, lambda p: spike_raster(raster, p, f"EqSpike {cfg.sizes}, {cfg.neuron.model}",
                                                          int(data.y_test[0])))
    totals = events["totals_per_example"]
    return {
        "spikes_per_inference": totals["inference"]["spikes"],
        "synaptic_events_per_inference": totals["inference"]["synaptic_events"],
        "weight_updates_per_training_example": totals["train"]["weight_updates"],
    }


def title(cfg: EqSpikeConfig) -> str:
    leak = "" if cfg.neuron.leak == 1 else f", leak {cfg.neuron.leak:g}"
    return f"EqSpike {cfg.sizes} ({cfg.neuron.model}{leak}, {cfg.nudge} nudging)"


def train(cfg: EqSpikeConfig, data, runtime, xp, tracker: Tracker, paths: SeedPaths,
          reference: float | None, shared=None) -> None:
    """Train ``cfg`` (``eqspike``, or the variant's) for ``runtime.seed`` (``runtime``: seed,
    dtype, progress) on ``xp``'s device; ``reference`` is the line drawn on the learning curve;
    ``shared``: the ``train`` config (the weight average, the snapshot epochs; None: neither)."""
    seed = runtime.seed
    model = EqSpikeModel(cfg, xp, seed, cfg.eval_batch_size)

    def after(params, history) -> dict:
        figures = write_extras(cfg, params, history, data, seed, paths, xp)
        tracker.artifact(paths.events)
        tracker.artifact(paths.raster_png)
        return figures

    train_and_write(model, cfg, data, seed, runtime.dtype, tracker, title(cfg), reference, runtime.progress, paths,
                    ema_decay=shared.ema_decay if shared else 0.0, after=after,
                    snapshot_epochs=shared.snapshot_epochs if shared else ())
