"""Typed, range-checked configuration: the schema every stage validates before doing any work.

The stages compose a plain nested dict (Hydra, from ``params.yaml``) and hand it to
``parse(Config, cfg)``. A wrong type, a missing or unknown key, or an out-of-range value raises
``ConfigError`` whose message starts with the dotted key (``ep.beta: must be > 0, got -0.1``).
This module is plain Python: the science package never imports Hydra or OmegaConf.

Range rules live in each field's metadata: ``gt`` / ``ge`` / ``le`` (numbers, or every item of
a list of numbers), ``choices``, ``min_len``, ``pattern`` (regular expression for strings).
Cross-field rules live in a dataclass's ``check(path)`` method.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range. Names the key."""


def _meta(**rules: Any) -> dict:
    return {"rules": rules}


def opt(default: Any, **rules: Any) -> Any:
    """A dataclass field with a default and range rules."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=_meta(**rules))
    return field(default=default, metadata=_meta(**rules))


def req(**rules: Any) -> Any:
    """A required dataclass field (no default) with range rules."""
    return field(metadata=_meta(**rules))


# --------------------------------------------------------------------------------------------
# The schema
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RuntimeCfg:
    device: str = opt("auto", choices=("auto", "cpu", "gpu"))
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


@dataclass(frozen=True, kw_only=True)
class SourceCfg:
    kind: str = req(choices=("https", "npm", "local"))
    # https: base URL, file names are appended with ".gz"
    url: str | None = opt(None)
    # npm: package spec for `npm pack`, and the folder inside the tarball that holds the files
    package: str | None = opt(None)
    package_dir: str = opt("package/data")
    # local: a directory holding the files, plain or .gz; None means "not configured"
    path: str | None = opt(None)

    def check(self, path: str) -> None:
        needed = {"https": "url", "npm": "package"}.get(self.kind)
        if needed and not getattr(self, needed):
            raise ConfigError(f"{path}.{needed}: required for a source of kind {self.kind!r}")
        if self.kind == "https" and not str(self.url).startswith(("https://", "http://")):
            raise ConfigError(f"{path}.url: must start with https:// or http://, got {self.url!r}")


@dataclass(frozen=True, kw_only=True)
class IdxFileCfg:
    name: str = req(pattern=r"[A-Za-z0-9._-]+")
    sha256: str = req(pattern=r"[0-9a-f]{64}")
    shape: list[int] = req(min_len=1, ge=1)
    # label files only: expected count of each class, in class order
    label_counts: list[int] | None = opt(None, ge=0)


@dataclass(frozen=True, kw_only=True)
class DataCfg:
    name: str = opt("mnist", min_len=1)
    dir: str = opt("data/mnist", min_len=1)
    timeout_s: float = opt(30.0, gt=0)
    sources: list[SourceCfg] = req(min_len=1)
    train_images: IdxFileCfg = req()
    train_labels: IdxFileCfg = req()
    test_images: IdxFileCfg = req()
    test_labels: IdxFileCfg = req()
    # use only the first n examples (None: all); for smoke runs and tests
    n_train: int | None = opt(None, ge=1)
    n_test: int | None = opt(None, ge=1)
    # hold out the last n training examples as the validation split (0: train on all); every
    # choice of hyper-parameters reads validation accuracy only
    validation: int = req(ge=0)

    def files(self) -> dict[str, IdxFileCfg]:
        return {
            "train_images": self.train_images,
            "train_labels": self.train_labels,
            "test_images": self.test_images,
            "test_labels": self.test_labels,
        }

    def check(self, path: str) -> None:
        for key, f in self.files().items():
            is_labels = key.endswith("labels")
            if is_labels and f.label_counts is not None and sum(f.label_counts) != f.shape[0]:
                raise ConfigError(
                    f"{path}.{key}.label_counts: sum {sum(f.label_counts)} != shape[0] {f.shape[0]}"
                )
        for key, n, spec in (("n_train", self.n_train, self.train_images), ("n_test", self.n_test, self.test_images)):
            if n is not None and n > spec.shape[0]:
                raise ConfigError(f"{path}.{key}: {n} is more than the {spec.shape[0]} examples of {spec.name}")
        n_train = self.n_train or self.train_images.shape[0]
        if self.validation >= n_train:
            raise ConfigError(f"{path}.validation: {self.validation} validation examples leave none of the "
                              f"{n_train} training examples to train on")
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise ConfigError(f"{path}.test_images.shape: image shape differs from train_images")

    @property
    def n_pixels(self) -> int:
        n = 1
        for d in self.train_images.shape[1:]:
            n *= d
        return n

    @property
    def n_classes(self) -> int:
        counts = self.train_labels.label_counts
        return len(counts) if counts else 10


@dataclass(frozen=True, kw_only=True)
class TrainingCfg:
    """What the two EP trainers share: network, phases, learning schedule. No defaults: every
    value comes from conf/ep/*.yaml or conf/eqspike/*.yaml (one source of defaults)."""

    sizes: list[int] = req(min_len=2, ge=1)
    activation: str = req(choices=("sigmoid", "hard_sigmoid"))
    T: int = req(ge=1)  # free-phase steps
    K: int = req(ge=1)  # steps of each nudged phase
    beta: float = req(gt=0)
    nudge: str = req(choices=("symmetric", "one_sided", "random_sign"))
    lr: list[float] = req(min_len=1, gt=0)  # one per weight matrix
    batch_size: int = req(ge=1)
    epochs: int = req(ge=1)
    eval_batch_size: int = req(ge=1)
    # multiply every learning rate by this factor after each epoch (1.0: constant)
    lr_decay: float = req(gt=0, le=1)
    # evaluate (and save) an exponential moving average of the weights, factor per update
    # (0: off, use the raw weights)
    ema_decay: float = opt(0.0, ge=0, lt=1)

    def check(self, path: str) -> None:
        if len(self.lr) != len(self.sizes) - 1:
            raise ConfigError(
                f"{path}.lr: needs one learning rate per weight matrix "
                f"({len(self.sizes) - 1} for sizes {self.sizes}), got {len(self.lr)}"
            )


@dataclass(frozen=True, kw_only=True)
class ModelOutCfg:
    """Where a trained model writes, per seed n: ``<models>/seed<n>.npz`` (weights),
    ``<runs>/seed<n>/`` (metrics.json, curves; EqSpike also events.json and raster.png) and its
    checkpoint ``<checkpoints>/<run key>.npz``. The folders of each model are in its conf/ file."""

    models: str = req(min_len=1)
    checkpoints: str = req(min_len=1)
    runs: str = req(min_len=1)


@dataclass(frozen=True, kw_only=True)
class EPCfg(TrainingCfg):
    """Rate-based Equilibrium Propagation (README, "The model")."""

    # "outside": o = rho(.) + beta (y - o) (Ernoult's code); "inside": o = rho(. + beta (y - o))
    nudge_placement: str = req(choices=("outside", "inside"))
    rule: str = req(choices=("ep", "cep"))
    # how the equations are run (not what): compiled CPU kernels, array operations, or auto
    # (compiled on the CPU, array on a GPU)
    engine: str = req(choices=("auto", "array", "compiled"))
    out: ModelOutCfg = req()

    def check(self, path: str) -> None:
        super().check(path)
        if self.rule == "cep" and self.nudge == "symmetric":
            raise ConfigError(
                f"{path}.rule: cep (continual EP) updates during one nudged phase; "
                f"use {path}.nudge=one_sided or random_sign with it"
            )


@dataclass(frozen=True, kw_only=True)
class NeuronCfg:
    """Spiking neuron model of EqSpike (README, "The model")."""

    model: str = req(choices=("sigma_delta", "bernoulli"))
    # sigma-delta: spike when the accumulator reaches it; rate = s / threshold. >= 1 keeps the
    # spikes binary (at most one per step, since s <= 1)
    threshold: float = req(ge=1.0)
    # synaptic trace r += (S - r) / tau; >= 1 so that the trace stays in [0, 1]
    tau_syn_steps: float = req(ge=1.0)
    # state update s += leak (rho(.) - s); 1: no leak
    leak: float = req(gt=0, le=1)


@dataclass(frozen=True, kw_only=True)
class EqSpikeCfg(TrainingCfg):
    """EqSpike training (README, "The model"); the neuron model is the ``neuron`` group."""

    # presynaptic factor of the rule: the spike (spike-driven) or its trace (ablation)
    pre_factor: str = req(choices=("spike", "trace"))
    # prediction: output state averaged over the last n free steps
    eval_avg_steps: int = req(ge=1)
    # how the equations are run (not what): compiled CPU kernels, array operations, or auto
    # (compiled on the CPU, array on a GPU); the input layer event-driven or as dense products
    engine: str = req(choices=("auto", "array", "compiled"))
    input_layer: str = req(choices=("event", "dense"))
    out: ModelOutCfg = req()

    def check(self, path: str) -> None:
        super().check(path)
        if self.eval_avg_steps > self.T:
            raise ConfigError(f"{path}.eval_avg_steps: {self.eval_avg_steps} > T = {self.T}")


@dataclass(frozen=True, kw_only=True)
class BPCfg:
    """The backprop MLP baseline (claims C3, C4; pipeline/bp.py)."""

    sizes: list[int] = req(min_len=3, max_len=3, ge=1)
    lr: list[float] = req(min_len=2, max_len=2, gt=0)
    batch_size: int = req(ge=1)
    epochs: int = req(ge=1)
    eval_batch_size: int = req(ge=1)
    lr_decay: float = req(gt=0, le=1)
    ema_decay: float = opt(0.0, ge=0, lt=1)
    out: ModelOutCfg = req()


@dataclass(frozen=True, kw_only=True)
class VariantCfg:
    """A second EqSpike model trained beside the default (claim C5's comparison): EqSpike's config
    and neuron with these replaced."""

    leak: float = req(gt=0, le=1)  # g of the state update; 1: no memory
    pre_factor: str = req(choices=("spike", "trace"))
    out: ModelOutCfg = req()


@dataclass(frozen=True, kw_only=True)
class StdpOutCfg:
    metrics: str = opt("metrics/stdp.json")  # flat numbers (dvc metrics, dvc exp show)
    detail: str = opt("results/stdp.json")  # everything: verdicts, fits, pairing windows
    window_dir: str = opt("plots/stdp")  # one CSV per group of synapses (dvc plots)
    figure_png: str = opt("plots/stdp.png")


@dataclass(frozen=True, kw_only=True)
class StdpCfg:
    """STDP measurement (claim C5)."""

    n_examples: int = req(ge=2)
    synapses_per_layer: int = req(ge=1)
    max_dt_steps: int = req(ge=2)
    step_ms: float = req(gt=0)  # how long one time step lasts, to compare with biology
    seed: int = req(ge=0)
    control: str = req(choices=("shift", "other_example"))  # shuffle control (pipeline/stdp.py)
    bootstrap: int = req(ge=20)  # resamples of the examples for the intervals
    rate_strata: int = req(ge=1)  # post firing-rate strata (quantiles) of the net window
    pairing_weight: float = req()
    pairing_pulse: float = req(gt=0)  # injected current that makes a neuron cross threshold
    pairing_pulse_steps: int = req(ge=1)
    pairing_rest: float = req()  # resting input current (the neurons are silent at rest)
    control_tau_m: float = req(gt=0)  # the synthetic controls' post-state time constant (steps)
    out: StdpOutCfg = opt(StdpOutCfg())


@dataclass(frozen=True, kw_only=True)
class PublishedResult:
    """A published MNIST result for the comparison table (claim C3), with its source."""

    method: str = req(min_len=1)
    learning: str = req(min_len=1)
    network: str = req(min_len=1)
    accuracy: float = req(gt=0, le=1)
    source: str = req(min_len=3)
    recalled: bool = opt(False)  # not re-read in the primary source


@dataclass(frozen=True, kw_only=True)
class AggregateOutCfg:
    metrics: str = opt("metrics/aggregate.json")  # flat: mean, std, interval per model and figure
    detail: str = opt("results/aggregate.json")  # per-seed tables, intervals, verdicts


@dataclass(frozen=True, kw_only=True)
class AggregateCfg:
    """Statistics over seeds (claims C1, C2)."""

    out: AggregateOutCfg = opt(AggregateOutCfg())


@dataclass(frozen=True, kw_only=True)
class BiasOutCfg:
    metrics: str = opt("metrics/bias.json")
    detail: str = opt("results/bias.json")
    figure_png: str = opt("plots/bias.png")


@dataclass(frozen=True, kw_only=True)
class BiasCfg:
    """Bias check of the spike-driven rule against rate-based EP and the gradient."""

    batch_size: int = req(ge=1)
    betas: list[float] = req(min_len=1, gt=0)
    realisations: list[int] = req(min_len=1, ge=1)
    seed: int = req(ge=0)
    out: BiasOutCfg = opt(BiasOutCfg())


@dataclass(frozen=True, kw_only=True)
class ReportOutCfg:
    markdown: str = opt("report/REPORT.md")
    html: str = opt("report/REPORT.html")


@dataclass(frozen=True, kw_only=True)
class ReportCfg:
    paper_eqspike_accuracy: float = opt(0.976, gt=0, le=1)
    paper_rate_accuracy: float = opt(0.98, gt=0, le=1)
    published: list[PublishedResult] = opt([])
    out: ReportOutCfg = opt(ReportOutCfg())


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


@dataclass(frozen=True, kw_only=True)
class GpuPresetCfg:
    """A GPU's energy model (pipeline/energy.py): board power over the time of each kernel,
    t = max(launch latency, FLOPs / peak, weight bytes / bandwidth)."""

    name: str = req(min_len=1)
    description: str = req(min_len=1)
    peak_tflops: Sourced = req()  # at the precision of the preset
    board_power_w: Sourced = req()
    memory_bandwidth_gbs: Sourced = req()
    kernel_launch_us: Sourced = req()

    def check(self, path: str) -> None:
        for key in ("peak_tflops", "board_power_w", "memory_bandwidth_gbs", "kernel_launch_us"):
            if getattr(self, key).value <= 0:
                raise ConfigError(f"{path}.{key}.value: must be > 0")


@dataclass(frozen=True, kw_only=True)
class MeasuredGpuCfg:
    """A measured GPU energy for one workload (scripts/gpu_energy.py, or a publication)."""

    gpu: str = req(min_len=1)
    kind: str = req(choices=("measured", "published"))
    workload: str = req(choices=("spiking_sim", "rate_ep", "mlp_bp"))
    batch: int = req(ge=1)
    inference_j: Sourced = req()
    training_j: Sourced | None = opt(None)


@dataclass(frozen=True, kw_only=True)
class HeadlineCfg:
    """Which row of the table is the headline, by a rule stated in ``rule``."""

    rule: str = req(min_len=3)
    gpu: str = req(min_len=1)  # a file name in <preset_dir>/gpu
    neuromorphic: str = req(min_len=1)  # a file name in <preset_dir>/neuromorphic
    workload: str = req(choices=("spiking_sim", "rate_ep", "mlp_bp"))
    regime: str = req(min_len=1)  # peak | batch <B> (B in energy.batches) | measured


@dataclass(frozen=True, kw_only=True)
class EnergyOutCfg:
    metrics: str = opt("metrics/energy.json")  # flat numbers (dvc metrics, dvc exp show)
    detail: str = opt("results/energy.json")  # everything: every pair, presets, sources, counts
    table_csv: str = opt("plots/energy.csv")
    chart_png: str = opt("plots/energy.png")


@dataclass(frozen=True, kw_only=True)
class EnergyCfg:
    """Energy estimate (claim C4): every preset file under ``preset_dir``/{neuromorphic,gpu,measured}."""

    preset_dir: str = req(min_len=1)
    batches: list[int] = req(min_len=1, ge=1)  # GPU batch sizes of the table, besides the peak regime
    variant: str = req(choices=("input on chip, free state store", "input on chip, free state rerun",
                                "input off chip, free state store", "input off chip, free state rerun"))
    host_mac_pj: Sourced = req()  # a multiply-add on a digital host (the input layer off chip)
    headline: HeadlineCfg = req()
    paper_inference_ratio: float = req(gt=0)
    paper_training_ratio: float = req(gt=0)
    out: EnergyOutCfg = opt(EnergyOutCfg())

    def check(self, path: str) -> None:
        regimes = ["peak", "measured", *(f"batch {b}" for b in self.batches)]
        if self.headline.regime not in regimes:
            raise ConfigError(f"{path}.headline.regime: {self.headline.regime!r} is not one of {regimes}")


@dataclass(frozen=True, kw_only=True)
class Config:
    runtime: RuntimeCfg = req()
    tracking: TrackingCfg = opt(TrackingCfg())
    data: DataCfg = req()
    ep: EPCfg = req()
    neuron: NeuronCfg = req()
    eqspike: EqSpikeCfg = req()
    variant: VariantCfg = req()
    bp: BPCfg = req()
    stdp: StdpCfg = req()
    energy: EnergyCfg | None = opt(None)
    report: ReportCfg = opt(ReportCfg())
    aggregate: AggregateCfg = opt(AggregateCfg())
    bias: BiasCfg = req()

    def check(self, path: str) -> None:
        for key in ("ep", "eqspike", "bp"):
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


# --------------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------------


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _check_rules(value: Any, rules: Mapping[str, Any], path: str) -> None:
    items = value if isinstance(value, list) else [value]
    if "min_len" in rules and len(value) < rules["min_len"]:
        raise ConfigError(f"{path}: needs at least {rules['min_len']} item(s), got {value!r}")
    if "choices" in rules and value not in rules["choices"]:
        raise ConfigError(f"{path}: must be one of {list(rules['choices'])}, got {value!r}")
    if "pattern" in rules and not re.fullmatch(rules["pattern"], value):
        raise ConfigError(f"{path}: {value!r} does not match the pattern {rules['pattern']!r}")
    for v in items:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if "gt" in rules and not v > rules["gt"]:
            raise ConfigError(f"{path}: must be > {rules['gt']}, got {value!r}")
        if "ge" in rules and not v >= rules["ge"]:
            raise ConfigError(f"{path}: must be >= {rules['ge']}, got {value!r}")
        if "le" in rules and not v <= rules["le"]:
            raise ConfigError(f"{path}: must be <= {rules['le']}, got {value!r}")
        if "lt" in rules and not v < rules["lt"]:
            raise ConfigError(f"{path}: must be < {rules['lt']}, got {value!r}")


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, path)
    if value is None:
        raise ConfigError(f"{path}: must not be null (expected {_type_name(tp)})")
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return parse(tp, value, path)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (inner,) = typing.get_args(tp)
        return [_convert(inner, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    raise TypeError(f"schema type {tp!r} at {path} is not supported")  # a bug in the schema


def parse(cls: type, data: Mapping[str, Any], path: str = "") -> Any:
    """Build dataclass ``cls`` from the nested mapping ``data``, validating every value."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{_join(path, unknown[0])}: unknown key (known: {sorted(known)})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = _join(path, f.name)
        if f.name in data:
            value = _convert(hints[f.name], data[f.name], key)
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            raise ConfigError(f"{key}: missing required key")
        if value is not None:
            _check_rules(value, f.metadata.get("rules", {}), key)
        kwargs[f.name] = value
    obj = cls(**kwargs)
    if hasattr(obj, "check"):
        obj.check(path or "config")
    return obj


def to_dict(obj: Any) -> Any:
    """Plain nested dict/list form of a parsed config (for logging and hashing)."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists of scalars stay values, lists of mappings
    are indexed (``data.sources.0.kind``)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = _join(prefix, k)
        if isinstance(v, Mapping):
            out.update(flatten(v, key))
        elif isinstance(v, list) and any(isinstance(i, Mapping) for i in v):
            out.update(flatten({str(i): item for i, item in enumerate(v)}, key))
        else:
            out[key] = v
    return out
