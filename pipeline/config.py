"""The root config: one field per config group, each the library's own parameter type (the type
that the code using it takes), so a parameter is declared once, with its range rules and choices.

    runtime, tracking   here                              (how and where a stage runs)
    data                pipeline.data.spec.DataCfg
    train               pipeline.models.train.TrainCfg    (the aids shared by every model)
    ep                  pipeline.models.ep.EPConfig       (Dynamics + Schedule)
    eqspike             pipeline.models.eqspike.EqSpikeConfig   (SpikeDynamics + Schedule;
                        eqspike.neuron: pipeline.core.neuron.NeuronModel)
    variant             the same type: a set of overrides deep-merged over ``eqspike``
    bp                  pipeline.models.bp.BPConfig
    stdp, bias, energy, report, aggregate   pipeline.analysis.*
    chip                pipeline.analysis.chip_study.ChipStudyCfg  (the chip table, chip/dvc.yaml;
                        each row a pipeline.models.eqspike.chip.ChipCfg)

The stages compose a plain nested dict (Hydra, from ``params.yaml``) and call
``parse(Config, raw)`` (``pipeline.core.schema``): a wrong type, a missing or unknown key, or an
out-of-range value raises ``ConfigError`` whose message starts with the dotted key, before any
work. Plain Python: the library never imports Hydra, DVC or MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.analysis.beside import BesideCfg
from pipeline.analysis.bias import BiasCfg
from pipeline.analysis.chip_study import ChipStudyCfg
from pipeline.analysis.energy import EnergyCfg
from pipeline.analysis.report import ReportCfg
from pipeline.analysis.stats import AggregateCfg
from pipeline.analysis.stdp import StdpCfg
from pipeline.core.backend import DEVICES
from pipeline.core.schema import ConfigError, deep_merge, opt, req
from pipeline.data.spec import DataCfg
from pipeline.models.bp import BPConfig
from pipeline.models.ep import EPConfig
from pipeline.models.eqspike import EqSpikeConfig
from pipeline.models.train import TrainCfg


@dataclass(frozen=True, kw_only=True)
class RuntimeCfg:
    device: str = opt("auto", choices=DEVICES)
    seed: int = opt(0, ge=0)  # the run a single stage makes; stdp, energy and the figures use it
    seeds: list[int] = req(min_len=1, ge=0)  # dvc repro trains every model once per seed
    dtype: str = opt("float32", choices=("float32", "float64"))
    progress: bool = opt(True)


@dataclass(frozen=True, kw_only=True)
class TrackingCfg:
    # None: SQLite store mlflow.db at the repository root (absolute path); the environment
    # variable MLFLOW_TRACKING_URI overrides both.
    uri: str | None = opt(None)
    experiment: str = opt("eqspike", min_len=1)
    artifact_dir: str = opt("mlartifacts", min_len=1)


# the config groups that are sets of overrides deep-merged over ``eqspike``
MERGED_OVER_EQSPIKE = ("variant", "stochastic")

# each trained model's name (its stage is ``train_<name>``, its summaries' key) and its config key
MODEL_KEYS = {"ep": "ep", "eqspike": "eqspike", "eqspike_variant": "variant", "bp": "bp",
              "eqspike_stochastic": "stochastic"}


@dataclass(frozen=True, kw_only=True)
class Config:
    runtime: RuntimeCfg = req()
    tracking: TrackingCfg = opt(TrackingCfg())
    data: DataCfg = req()
    train: TrainCfg = req()  # the aids every model's training loop shares
    ep: EPConfig = req()
    eqspike: EqSpikeConfig = req()
    # the second EqSpike model (claim C5's comparison): ``eqspike`` with the keys of conf/variant/
    # replaced (any key, nested: ``variant.neuron.leak``, ``+variant.T=80``); its own ``out``
    variant: EqSpikeConfig = req()
    # the stochastic EqSpike (claim C5's Bernoulli windows): ``eqspike`` with the keys of
    # conf/stochastic/ merged over it, as the variant; trained for one seed, its own ``out``
    stochastic: EqSpikeConfig = req()
    bp: BPConfig = req()
    stdp: StdpCfg = req()
    energy: EnergyCfg | None = opt(None)
    report: ReportCfg = req()
    aggregate: AggregateCfg = req()
    bias: BiasCfg = req()
    # EqSpike as a chip would run it (chip/dvc.yaml): the constraints' table
    chip: ChipStudyCfg = req()
    # a pipeline beside the paper's (fashion/, depth/): its page; set by its experiment file
    beside: BesideCfg = opt(BesideCfg())

    @classmethod
    def prepare(cls, data: Mapping[str, Any]) -> Mapping[str, Any]:
        """``variant`` and ``stochastic`` are sets of overrides of ``eqspike``: each is merged over
        ``eqspike`` before parsing."""
        for key in MERGED_OVER_EQSPIKE:
            if isinstance(data.get(key), Mapping) and isinstance(data.get("eqspike"), Mapping):
                data = {**data, key: deep_merge(data["eqspike"], data[key])}
        return data

    def model(self, name: str):
        """The config of the model ``name`` (a key of ``MODEL_KEYS``: ``eqspike_variant`` -> ``variant``)."""
        return getattr(self, MODEL_KEYS[name])

    def check(self, path: str) -> None:
        if self.variant.out == self.eqspike.out:
            raise ConfigError("variant.out: the variant needs folders of its own (it has eqspike's)")
        if self.stochastic.out in (self.eqspike.out, self.variant.out):
            raise ConfigError("stochastic.out: the stochastic model needs folders of its own (it has eqspike's or "
                              "the variant's)")
        for key in ("ep", "eqspike", "variant", "stochastic", "bp"):
            sizes = getattr(self, key).sizes
            if sizes[0] != self.data.n_pixels:
                raise ConfigError(
                    f"{key}.sizes: input layer {sizes[0]} does not match the data "
                    f"({self.data.n_pixels} pixels per image)"
                )
            if sizes[-1] != self.data.n_classes:
                raise ConfigError(
                    f"{key}.sizes: output layer {sizes[-1]} does not match the data "
                    f"({self.data.n_classes} classes)"
                )
