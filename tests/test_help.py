"""Every entry point answers --help (exit 0) with what it does and an example: each DVC stage
(with its config groups and the keys it reads), the commands of cli/, the scripts and benchmarks."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import yaml

from runner.stage import PIPELINES
from tests.conftest import REPO

STAGES = sorted({s for f in PIPELINES for s in yaml.safe_load((REPO / f).read_text())["stages"]})
CLI = ["launch", "compose", "tracking_init", "ui", "tune"]
SCRIPTS = ["scripts/check_outputs.py", "scripts/check_system.py", "scripts/measure_gpu_energy.py", "scripts/c4_interim.py",
           "benchmarks/bench.py", "benchmarks/bench_sweep.py", "benchmarks/bench_chip.py"]
SHELL = ["scripts/setup.sh", "scripts/test.sh", "scripts/repro.sh", "scripts/gpu_check.sh", "scripts/ui.sh"]


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_answers_help(stage, capsys):
    main = importlib.import_module(f"stages.{stage}").main
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m stages.{stage}")
    assert f"python -m stages.{stage}" in out.split("\n", 1)[1], "an example"
    assert "eqspike/neuron" in out and "bernoulli, sigma_delta" in out, "the config groups and their options"
    assert "Keys this stage reads" in out and "--cfg job" in out


def test_cfg_job_prints_the_composed_config_and_runs_nothing(capsys):
    main = importlib.import_module("stages.train_ep").main
    assert main(["--cfg", "job", "ep.epochs=3"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["ep"]["epochs"] == 3 and cfg["eqspike"]["neuron"]["model"] == "sigma_delta"


def test_an_unknown_group_option_is_named_with_the_options(capsys):
    main = importlib.import_module("stages.train_eqspike").main
    for override in ("eqspike/neuron=lif", "neuron=lif"):
        assert main([override]) == 2
        err = capsys.readouterr().err
        assert "eqspike/neuron" in err and "lif" in err and "options: bernoulli, sigma_delta" in err, err


def test_a_group_selection_applies_on_the_command_line(capsys):
    from runner.config import load_config

    _, cfg = load_config(["eqspike/neuron=bernoulli", "eqspike.epochs=2"])
    assert cfg.eqspike.neuron.model == "bernoulli" and cfg.eqspike.epochs == 2
    _, cfg = load_config(["neuron=bernoulli"])
    assert cfg.eqspike.neuron.model == "bernoulli"


@pytest.mark.parametrize("name", CLI)
def test_every_command_answers_help(name, capsys):
    main = importlib.import_module(f"cli.{name}").main
    try:
        code = main(["--help"])
    except SystemExit as exc:  # argparse
        code = exc.code
    assert code == 0
    out = capsys.readouterr().out
    assert "usage:" in out and f"cli.{name}" in out


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_python_script_answers_help(script):
    out = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout and len(out.stdout.splitlines()) > 3


@pytest.mark.parametrize("script", SHELL)
def test_every_shell_script_answers_help_without_doing_anything(script):
    out = subprocess.run(["bash", script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "bash scripts/" in out.stdout, "an example"
