"""DVC stage ``train_eqspike``: train EqSpike, the spiking network with the spike-driven local
rule (claim C1; equations: README, "The model").

    python -m stages.train_eqspike                   # as dvc repro runs it
    python -m stages.train_eqspike eqspike.epochs=1 neuron=bernoulli   # (neuron=... via dvc exp run -S)
    python -m stages.train_eqspike eqspike.nudge=one_sided neuron.tau_syn_steps=8

Besides the outputs of ``train_ep`` it writes the event counts per example of training and
inference (``events.json`` in the run's folder, read by the energy stage) and a spike raster of one test
example through the free and nudged phases.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, replace

from pipeline import events as ev
from pipeline import spiking
from pipeline.backend import get_xp, to_host
from pipeline.data import load
from pipeline.neuron import NeuronModel
from pipeline.plots import spike_raster
from pipeline.schema import Config, EqSpikeCfg, NeuronCfg
from stages.common import REPO, Run, SeedPaths, atomic_write, stage_main, write_json
from stages.training import train_and_write

PAPER_EQSPIKE_ACCURACY = 0.976  # Martin et al. 2021 (claim C1)


def dynamics(c: EqSpikeCfg, n: NeuronCfg, engine: str | None = None) -> spiking.SpikeDynamics:
    """The plain dynamics object the library takes, from the validated config."""
    return spiking.SpikeDynamics(
        T=c.T, K=c.K, beta=c.beta, nudge=c.nudge, pre_factor=c.pre_factor, activation=c.activation,
        eval_avg_steps=c.eval_avg_steps, engine=engine or c.engine, input_layer=c.input_layer,
        neuron=NeuronModel(model=n.model, threshold=n.threshold, tau_syn_steps=n.tau_syn_steps, leak=n.leak))


def variant_config(cfg: Config) -> Config:
    """The config of the variant: ``eqspike`` and ``neuron`` with ``variant``'s leak,
    presynaptic factor and output folders (the same network, schedule and learning rates)."""
    lc = cfg.variant
    eq = replace(cfg.eqspike, pre_factor=lc.pre_factor, out=lc.out)
    return replace(cfg, eqspike=eq, neuron=replace(cfg.neuron, leak=lc.leak))


MODELS = {"eqspike": lambda cfg: cfg, "eqspike_variant": variant_config}  # model name -> its config


def worker(cfg: Config, run: Run) -> None:
    xp = get_xp(cfg.runtime.device)
    data = load(cfg.data, REPO)
    ec = cfg.eqspike
    model = spiking.EqSpikeModel(dynamics(ec, cfg.neuron), xp, cfg.runtime.seed, ec.eval_batch_size)

    def after(params, history) -> dict:
        last = history[-1]
        per_example = last["events"]
        totals = {part: ev.totals(ev.from_json(counts), ev.PHASES) for part, counts in per_example.items()}
        events = {
            "description": "event counts per example, measured in the last epoch's simulation "
                           "(train: free + nudged phases with spike-triggered updates; inference: "
                           "one free phase of the evaluated weights on the test set)",
            "per_example": per_example,
            "totals_per_example": totals,
            "sizes": ec.sizes, "T": ec.T, "K": ec.K, "nudge": ec.nudge, "batch_size": ec.batch_size,
            "nudged_phases": 2 if ec.nudge == "symmetric" else 1,
            "neuron": asdict(cfg.neuron), "epoch": last["epoch"],
        }
        paths = SeedPaths(ec.out, cfg.runtime.seed)
        write_json(paths.events, events)
        run.artifact(paths.events)
        # raster of the first test example
        x1 = xp.asarray(data.x_test[:1], dtype=params.W[0].dtype)
        y1 = spiking.onehot(xp.asarray(data.y_test[:1]), ec.sizes[-1], xp, x1.dtype)
        raster = spiking.record_raster(params, x1, y1, dynamics(ec, cfg.neuron, engine="array"),
                                       spiking.make_rng(xp, [cfg.runtime.seed, 2]))
        raster = {p: [[to_host(a) for a in step] for step in steps] for p, steps in raster.items()}
        atomic_write(paths.raster_png,
                     lambda p: spike_raster(raster, p, f"EqSpike {ec.sizes}, {cfg.neuron.model}",
                                            int(data.y_test[0])))
        run.artifact(paths.raster_png)
        return {
            "spikes_per_inference": totals["inference"]["spikes"],
            "synaptic_events_per_inference": totals["inference"]["synaptic_events"],
            "weight_updates_per_training_example": totals["train"]["weight_updates"],
        }

    leak = "" if cfg.neuron.leak == 1 else f", leak {cfg.neuron.leak:g}"
    train_and_write(model, ec, data, cfg.runtime.seed, cfg.runtime.dtype, run,
                    f"EqSpike {ec.sizes} ({cfg.neuron.model}{leak}, {ec.nudge} nudging)",
                    PAPER_EQSPIKE_ACCURACY, cfg.runtime.progress, key_extra={"neuron": asdict(cfg.neuron)},
                    after=after)


main = stage_main("train_eqspike", worker)

if __name__ == "__main__":
    sys.exit(main())
