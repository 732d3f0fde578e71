"""Every config key a stage reads is declared by its stage in dvc.yaml (``params:``, or a
``${...}`` path in its deps and outs), so that ``dvc repro`` reruns the stage when it changes.

The stages run for real on tiny data while every field access of the parsed config is recorded.
"""

from __future__ import annotations

import dataclasses
import re
import typing

import pytest
import yaml

from pipeline.config import Config
from pipeline.core.network import init_params, save_weights
from tests.conftest import REPO

# read, but with no effect on the outputs, or with their effect tracked by a file dependency
NOT_PARAMS = {
    "runtime.progress": "progress bars only",
    "tracking": "where the MLflow run goes, not what the stage writes",
    "data": "the data files: tracked by the ${data.dir} dependency (fetch_data declares its keys)",
}
ALWAYS_PARAMS = ("data.n_train", "data.n_test")  # how much of the data a stage uses


# the pipelines: the paper's, and EqSpike as a chip would run it (dvc repro chip/dvc.yaml)
STAGE_FILES = ("dvc.yaml", "chip/dvc.yaml")


def stage_specs() -> dict:
    """Every stage of every pipeline, by name."""
    out: dict = {}
    for name in STAGE_FILES:
        out.update(yaml.safe_load((REPO / name).read_text())["stages"])
    return out


def declared(stage: str) -> set[str]:
    spec = stage_specs()[stage]
    keys = {p if isinstance(p, str) else next(iter(p)) for p in spec.get("params", [])}
    text = yaml.safe_dump({k: v for k, v in spec.items() if k != "params"})
    keys |= set(re.findall(r"\$\{([^}]+)\}", text))
    keys |= set(re.findall(r"\s([a-z_.]+)=\$\{item\.", spec["cmd"]))  # set per matrix item by the command
    return keys


def covered(path: str, keys: set[str]) -> bool:
    return any(path == k or path.startswith(k + ".") for k in keys)


def parameter_types(cls, seen=None) -> list[type]:
    """``cls`` and every dataclass its fields hold (nested, in lists and unions), with their bases."""
    seen = [] if seen is None else seen
    for c in cls.__mro__:
        if dataclasses.is_dataclass(c) and c not in seen:
            seen.append(c)
    for tp in typing.get_type_hints(cls).values():
        for t in (tp, *typing.get_args(tp), *(a for arg in typing.get_args(tp) for a in typing.get_args(arg))):
            if isinstance(t, type) and dataclasses.is_dataclass(t) and t not in seen:
                parameter_types(t, seen)
    return seen


class Recorder:
    """Patches the schema dataclasses so that reading a leaf field of the stage's config (found
    by identity from the parsed ``Config``) is recorded as its dotted path."""

    def __init__(self, monkeypatch):
        self.paths: dict[int, str] = {}
        self.read: set[str] = set()
        classes = parameter_types(Config)
        for cls in classes:
            names = {f.name for f in dataclasses.fields(cls)}
            orig = cls.__getattribute__

            def get(obj, name, _orig=orig, _names=names):
                value = _orig(obj, name)
                if name in _names:
                    path = self.paths.get(id(obj))
                    if path is not None and not dataclasses.is_dataclass(value) and not (
                            isinstance(value, list) and value and dataclasses.is_dataclass(value[0])):
                        self.read.add(f"{path}.{name}" if path else name)
                return value

            monkeypatch.setattr(cls, "__getattribute__", get)
        import runner.stage as stage

        original = stage.load_config

        def load(argv=None):
            raw, cfg = original(argv)
            self.index(cfg, "")
            return raw, cfg

        monkeypatch.setattr(stage, "load_config", load)

    def index(self, obj, path: str) -> None:
        if dataclasses.is_dataclass(obj):
            self.paths[id(obj)] = path
            for f in dataclasses.fields(obj):
                self.index(object.__getattribute__(obj, f.name), f"{path}.{f.name}" if path else f.name)
        elif isinstance(obj, list):
            for item in obj:
                self.index(item, path)


def undeclared(stage: str, read: set[str]) -> list[str]:
    keys = declared(stage)
    return sorted(p for p in read if not covered(p, keys)
                  and (p in ALWAYS_PARAMS or not covered(p, set(NOT_PARAMS))))


@pytest.fixture
def stage_env(tmp_path, mnist_like_dir, mlflow_store, monkeypatch):
    _, data = mnist_like_dir
    out = tmp_path / "out"
    return data, out


def run_stage(monkeypatch, module: str, argv: list[str]) -> set[str]:
    import importlib

    rec = Recorder(monkeypatch)
    main = importlib.import_module(f"stages.{module}").main
    assert main(argv) == 0
    return rec.read


def test_train_stages_declare_what_they_read(stage_env, monkeypatch):
    data, out = stage_env
    ep = run_stage(monkeypatch, "train_ep", [
        *data, "ep.sizes=[784,16,10]", "ep.epochs=1", f"ep.out.models={out / 'models'}", f"ep.out.checkpoints={out / 'ck'}", f"ep.out.runs={out / 'runs'}"])
    assert "ep.T" in ep and "runtime.seed" in ep, "the recorder must see the reads"
    assert undeclared("train_ep", ep) == []
    spk = run_stage(monkeypatch, "train_eqspike", [
        *data, "eqspike.sizes=[784,16,10]", "eqspike.epochs=1", "eqspike.T=6", "eqspike.K=3",
        "eqspike.eval_avg_steps=2", f"eqspike.out.models={out / 'models'}", f"eqspike.out.checkpoints={out / 'ck'}", f"eqspike.out.runs={out / 'runs'}"])
    assert "eqspike.neuron.tau_syn_steps" in spk
    assert undeclared("train_eqspike", spk) == []
    leaky = run_stage(monkeypatch, "train_eqspike_variant", [
        *data, "eqspike.sizes=[784,16,10]", "eqspike.epochs=1", "eqspike.T=6", "eqspike.K=3",
        "eqspike.eval_avg_steps=2", f"variant.out.models={out / 'lmodels'}", f"variant.out.checkpoints={out / 'lck'}",
        f"variant.out.runs={out / 'lruns'}"])
    assert "variant.neuron.leak" in leaky
    assert undeclared("train_eqspike_variant", leaky) == []
    stochastic = run_stage(monkeypatch, "train_eqspike_stochastic", [
        *data, "eqspike.sizes=[784,16,10]", "eqspike.epochs=1", "eqspike.T=6", "eqspike.K=3",
        "eqspike.eval_avg_steps=2", f"stochastic.out.models={out / 'smodels'}", f"stochastic.out.checkpoints={out / 'sck'}",
        f"stochastic.out.runs={out / 'sruns'}"])
    assert "stochastic.neuron.model" in stochastic and "runtime.seed" in stochastic
    assert undeclared("train_eqspike_stochastic", stochastic) == []
    bp = run_stage(monkeypatch, "train_bp", [
        *data, "bp.sizes=[784,16,10]", "bp.epochs=1", f"bp.out.models={out / 'bmodels'}",
        f"bp.out.checkpoints={out / 'bck'}", f"bp.out.runs={out / 'bruns'}"])
    assert "bp.lr" in bp
    assert undeclared("train_bp", bp) == []
    en = run_stage(monkeypatch, "energy", [
        f"eqspike.out.runs={out / 'runs'}", f"energy.out.metrics={out / 'e.json'}",
        f"energy.out.detail={out / 'ed.json'}",
        f"energy.out.table_csv={out / 'e.csv'}", f"energy.out.chart_png={out / 'e.png'}"])
    assert undeclared("energy", en) == []


def test_stdp_declares_what_it_reads(stage_env, monkeypatch, tmp_path):
    data, out = stage_env
    params = init_params([784, 16, 10], seed=0)
    params.W[0][:] *= 4
    for model in ("eqspike", "leaky", "bernoulli"):
        (tmp_path / model).mkdir()
        save_weights(tmp_path / model / "seed0.npz", params)
    read = run_stage(monkeypatch, "stdp", [
        *data, f"eqspike.out.models={tmp_path / 'eqspike'}", f"variant.out.models={tmp_path / 'leaky'}",
        f"stochastic.out.models={tmp_path / 'bernoulli'}",
        "stdp.n_examples=20", "stdp.synapses_per_layer=20", "stdp.bootstrap=20",
        "eqspike.T=8", "eqspike.K=4", "stdp.max_dt_steps=3", "eqspike.eval_avg_steps=2", "eqspike.sizes=[784,16,10]",
        f"stdp.out.metrics={out / 's.json'}", f"stdp.out.window_dir={out / 'sw'}",
        f"stdp.out.detail={out / 'sd.json'}",
        f"stdp.out.figure_png={out / 's.png'}"])
    assert undeclared("stdp", read) == []


def test_a_missing_declaration_is_caught():
    """The check itself: a read key absent from the stage's params is reported."""
    assert undeclared("energy", {"eqspike.T", "energy.gpu.name"}) == ["eqspike.T"]
    assert undeclared("stdp", {"data.n_train", "data.sources"}) == []
    assert undeclared("energy", {"data.n_train"}) == ["data.n_train"]


def test_code_deps_are_the_modules_each_stage_imports():
    """A stage's code deps in dvc.yaml are exactly the modules it imports (read from the imports
    themselves, the root config not followed): they cannot drift from the code."""
    from pipeline.models.run import code_files

    stages = stage_specs()
    assert {"chip_select", "chip_train", "chip_table"} <= set(stages)
    for name, spec in stages.items():
        listed = sorted(d for d in spec["deps"] if isinstance(d, str) and d.split("/")[0] in ("pipeline", "runner",
                                                                                              "stages"))
        imported = code_files(f"stages.{name}", ("pipeline", "runner", "stages"), skip=("pipeline.config",))
        assert listed == imported, (f"dvc.yaml {name}.deps: the code it imports is\n"
                                    + "\n".join(f"      - {f}" for f in imported))


def test_the_run_key_hashes_the_modules_the_model_imports():
    """The code digest of a model's run key covers the files its class imports, and those are
    deps of its training stage (a change there retrains it, and only there)."""
    from pipeline.models import bp, ep, eqspike
    from pipeline.models.run import code_files

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage, model in (("train_ep", ep.EPModel), ("train_bp", bp.BPModel), ("train_eqspike", eqspike.EqSpikeModel),
                         ("train_eqspike_variant", eqspike.EqSpikeModel)):
        files = code_files(model.__module__)
        assert model.__module__.replace(".", "/") + ".py" in files
        assert set(files) <= set(stages[stage]["deps"]), stage
    assert "pipeline/models/eqspike/compiled_engine.py" in code_files(eqspike.EqSpikeModel.__module__)
    assert not any("eqspike" in f for f in code_files(ep.EPModel.__module__))
