"""DVC stage ``train_eqspike``: train EqSpike, the spiking network with the spike-driven local
rule (claim C1, shared/SPEC.md section 2).

    python -m stages.train_eqspike                   # as dvc repro runs it
    python -m stages.train_eqspike eqspike.epochs=1 neuron=bernoulli   # (neuron=... via dvc exp run -S)
    python -m stages.train_eqspike eqspike.nudge=one_sided neuron.tau_syn_steps=8

Besides the outputs of ``train_ep`` it writes the event counts per example of training and
inference (``eqspike.out.events``, read by the energy stage) and a spike raster of one test
example through the free and nudged phases.
"""

from __future__ import annotations

import sys
from dataclasses import asdict

from pipeline import spiking
from pipeline.backend import get_xp, to_host
from pipeline.data import load
from pipeline.plots import spike_raster
from pipeline.schema import Config
from pipeline.train import EqSpikeModel
from stages.common import REPO, Run, atomic_write, repo_path, stage_main, write_json
from stages.training import train_and_write

PAPER_EQSPIKE_ACCURACY = 0.976  # Martin et al. 2021 (shared/SPEC.md, claim C1)


def summarise(events: dict) -> dict:
    """Totals over layers per phase and kind, from ``{phase.layer.kind: value}``."""
    out: dict[str, float] = {}
    for key, value in events.items():
        phase, _layer, kind = key.split(".")
        out[f"{phase}.{kind}"] = out.get(f"{phase}.{kind}", 0.0) + value
    return out


def worker(cfg: Config, run: Run) -> None:
    xp = get_xp(cfg.runtime.device)
    data = load(cfg.data, REPO)
    model = EqSpikeModel(cfg.eqspike, cfg.neuron, xp, cfg.runtime.seed)
    ec = cfg.eqspike

    def after(params, history) -> dict:
        last = history[-1]
        per_example = {
            part: {k[len(f"events.{part}."):]: v for k, v in last.items() if k.startswith(f"events.{part}.")}
            for part in ("train", "inference")
        }
        events = {
            "description": "event counts per example, measured in the last epoch's simulation "
                           "(train: free + nudged phases with spike-triggered updates; inference: "
                           "one free phase of the evaluated weights on the test set)",
            "per_example": per_example,
            "totals_per_example": {part: summarise(v) for part, v in per_example.items()},
            "sizes": ec.sizes, "T": ec.T, "K": ec.K, "nudge": ec.nudge, "batch_size": ec.batch_size,
            "nudged_phases": 2 if ec.nudge == "symmetric" else 1,
            "neuron": asdict(cfg.neuron), "epoch": last["epoch"],
        }
        write_json(repo_path(ec.out.events), events)
        run.artifact(repo_path(ec.out.events))
        # raster of the first test example
        x1 = xp.asarray(data.x_test[:1], dtype=params.W[0].dtype)
        y1 = spiking.onehot(xp.asarray(data.y_test[:1]), ec.sizes[-1], xp, x1.dtype)
        raster = spiking.record_raster(params, x1, y1, model.dyn, spiking.make_rng(xp, [cfg.runtime.seed, 2]))
        raster = {p: [[to_host(a) for a in step] for step in steps] for p, steps in raster.items()}
        atomic_write(repo_path(ec.out.raster_png),
                     lambda p: spike_raster(raster, p, f"EqSpike {ec.sizes}, {cfg.neuron.model}",
                                            int(data.y_test[0])))
        run.artifact(repo_path(ec.out.raster_png))
        totals = events["totals_per_example"]
        return {
            "spikes_per_inference": totals["inference"].get("inference.spikes", 0.0),
            "synaptic_events_per_inference": totals["inference"].get("inference.synaptic_events", 0.0),
            "weight_updates_per_training_example": totals["train"].get("nudged.weight_updates", 0.0)
            + totals["train"].get("free.weight_updates", 0.0),
        }

    train_and_write(model, ec, data, cfg.runtime.seed, cfg.runtime.dtype, run,
                    f"EqSpike {ec.sizes} ({cfg.neuron.model}, {ec.nudge} nudging)",
                    PAPER_EQSPIKE_ACCURACY, cfg.runtime.progress, key_extra={"neuron": asdict(cfg.neuron)},
                    after=after)


main = stage_main("train_eqspike", worker)

if __name__ == "__main__":
    sys.exit(main())
