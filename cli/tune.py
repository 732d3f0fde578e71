"""The tuning protocol (conf/tuning/protocol.yaml; the rule: pipeline/analysis/selection.py):
queue one DVC experiment per candidate configuration of a model, then select the winner from
their validation accuracies (raw weights) and write its provenance.

    python -m cli.tune queue bp ep       # dvc exp run --queue -n tune-bp-0 ... (one per candidate)
    dvc queue start -j 1                 # run the queue (or: python -m cli.tune queue bp --run)
    python -m cli.tune select bp ep      # winner and provenance per model -> results/tuning.json
    python -m cli.tune list              # the candidates, without queueing anything
    python -m cli.tune queue --pipeline fashion     # the same protocol on a pipeline beside the paper's
    python -m cli.tune queue --pipeline depth       # (depth: conf/tuning/depth.yaml, its own candidates)

Every experiment trains seed ``tuning.seed`` on the training set less its last ``tuning.validation``
examples, at the model's epoch budget, and logs its figures to MLflow (tag ``dvc_exp_name``);
``select`` reads them there. A missing run stops the selection: every model gets the same budget.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline.analysis.selection import TuningProtocol, dotted, experiment_name, select
from pipeline.core.io import write_json
from pipeline.core.schema import ConfigError, parse
from runner.config import CONF, OWN_PARAMS, PARAMS_ENV, REPO, load_config

PROTOCOL = CONF / "tuning" / "protocol.yaml"
RESULTS = REPO / "results" / "tuning.json"


def protocol_path(pipeline: str | None = None) -> Path:
    """The protocol of the paper's pipeline, or of one beside it: its own file
    (conf/tuning/<pipeline>.yaml) where its candidates differ (depth: three learning rates per
    model), else the paper's (fashion: the same models, knobs, candidates and budget)."""
    own = CONF / "tuning" / f"{pipeline}.yaml"
    return own if pipeline and own.is_file() else PROTOCOL


def results_path(pipeline: str | None = None) -> Path:
    return REPO / "results" / pipeline / "tuning.json" if pipeline else RESULTS


def load_protocol(path: Path = PROTOCOL) -> TuningProtocol:
    return parse(TuningProtocol, yaml.safe_load(path.read_text()), "tuning")


def override(key: str, value) -> str:
    """``key=value`` as Hydra reads it (lists as ``[a,b]``)."""
    text = "[" + ",".join(str(v) for v in value) + "]" if isinstance(value, list) else str(value)
    return f"{key}={text}"


def queue_commands(protocol: TuningProtocol, model: str, pipeline: str | None = None) -> list[list[str]]:
    """The ``dvc exp run --queue`` argument lists of every candidate of ``model``; for a pipeline
    beside the paper's, its params file takes the overrides and its stage is the target."""
    m = protocol.models[model]
    file = f"{pipeline}/params.yaml:" if pipeline else ""
    target = f"{pipeline}/dvc.yaml:{m.stage}@{protocol.seed}" if pipeline else f"{m.stage}@{protocol.seed}"
    common = ["-S", f"{file}data.validation={protocol.validation}", "-S", f"{file}runtime.seeds=[{protocol.seed}]"]
    cmds = []
    for i, cand in enumerate(m.candidates):
        sets = [a for k, v in cand.items() for a in ("-S", file + override(k, v))]
        cmds.append(["dvc", "exp", "run", "--queue", "-n", experiment_name(model, i, pipeline), *common, *sets, target])
    return cmds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cli.tune", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("action", choices=("list", "queue", "select"))
    p.add_argument("models", nargs="*", help="models of the protocol (default: all)")
    p.add_argument("--run", action="store_true", help="queue: then run the queue, one experiment at a time")
    p.add_argument("--pipeline", choices=OWN_PARAMS, default=None,
                   help="a pipeline beside the paper's (its params file, stages and MLflow experiment)")
    args = p.parse_intermixed_args(argv)
    path = protocol_path(args.pipeline)
    try:
        protocol = load_protocol(path)
    except ConfigError as exc:
        print(f"tune: bad protocol {path}: {exc}", file=sys.stderr)
        return 2
    models = args.models or list(protocol.models)
    unknown = [m for m in models if m not in protocol.models]
    if unknown:
        print(f"tune: unknown model(s) {unknown} (the protocol has {list(protocol.models)})", file=sys.stderr)
        return 2
    if args.action in ("list", "queue"):
        for model in models:
            for cmd in queue_commands(protocol, model, args.pipeline):
                print(" ".join(cmd))
                if args.action == "queue":
                    subprocess.run(cmd, cwd=REPO, check=True)
        if args.action == "queue" and args.run:
            subprocess.run(["dvc", "queue", "start", "-j", "1"], cwd=REPO, check=True)
            subprocess.run(["dvc", "queue", "logs", "--follow", experiment_name(models[-1], protocol.budget - 1, args.pipeline)],
                           cwd=REPO, check=False)
        return 0
    from runner.tracking import connect, experiment_results

    if args.pipeline:  # the pipeline's own config: its MLflow experiment, its defaults
        os.environ[PARAMS_ENV] = f"{args.pipeline}/params.yaml"
    raw, cfg = load_config([])
    connect(cfg)
    results_file = results_path(args.pipeline)
    out = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for model in models:
        m = protocol.models[model]
        names = [experiment_name(model, i, args.pipeline) for i in range(len(m.candidates))]
        results = experiment_results(cfg.tracking.experiment, names, m.stage)
        merged = type(cfg).prepare(raw)  # the variant's keys merged over eqspike's; the rest as composed
        defaults = dotted(merged, [*m.knobs, *m.fixed])
        try:
            chosen = select(model, m, results, protocol.validation, defaults, args.pipeline)
        except ValueError as exc:
            print(f"tune: {exc}", file=sys.stderr)
            return 1
        chosen["protocol"] = {"validation": protocol.validation, "seed": protocol.seed, "budget": protocol.budget,
                              "epochs": merged[m.knobs[0].split(".")[0]]["epochs"]}
        out[model] = chosen
        print(f"{model}: {chosen['rule']}")
        for r in chosen["runs"]:
            print(f"  {r['experiment']:<24} {100 * r['val_accuracy']:.2f} %  {r['overrides'] or '(default)'}")
        if chosen["overrides"]:
            print(f"  -> set in {f'conf/experiment/{args.pipeline}.yaml' if args.pipeline else 'conf/'}: {chosen['overrides']}")
    write_json(results_file, out)
    print(f"wrote {results_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
