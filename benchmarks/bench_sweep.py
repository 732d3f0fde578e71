"""Benchmark: the same stage instances run one after the other (``dvc repro --single-item``, all
cores to each) and as a two-worker sweep (``python -m cli.launch --launcher local``, one core
to each job), on a clone of this repository's last commit that shares this repository's DVC
cache (the data is there, nothing is downloaded). Prints both wall times and their ratio.

    python benchmarks/bench_sweep.py                    # train_bp@0 train_bp@1 -S bp.lr_decay=0.89
    python benchmarks/bench_sweep.py train_ep@0 train_ep@1 -S ep.epochs=3

Run it on an idle machine. The overrides must change the items' parameters (the default does), so
that the committed dvc.lock does not let DVC skip them; the sequential side runs with --force
(no run-cache), the jobs have fresh caches and checkpoints: every item is computed on both sides.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def sh(cmd, cwd, env):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def clone(root: Path, name: str, overrides: list[str], env: dict) -> Path:
    d = root / name
    sh(["git", "clone", "--quiet", REPO, d], root, env)
    sh(["git", "remote", "remove", "origin"], d, env)  # jobs check out the clone's own commits
    sh([BIN / "dvc", "cache", "dir", "--local", REPO / ".dvc" / "cache"], d, env)
    sh([BIN / "dvc", "checkout", "--quiet", "fetch_data"], d, env)
    if overrides:
        sh([BIN / "python", "-m", "cli.compose", *overrides], d, env)
        sh(["git", "commit", "--quiet", "-am", "bench overrides"], d, env)
    return d


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("items", nargs="*", default=["train_bp@0", "train_bp@1"])
    p.add_argument("-S", dest="overrides", action="append", default=[])
    args = p.parse_args()
    args.overrides = args.overrides or ["bp.lr_decay=0.89"]
    cores = os.cpu_count() or 1
    env = dict(os.environ, DVC_NO_ANALYTICS="1", MLFLOW_DISABLE_TELEMETRY="true",
               PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    env.pop("EQSPIKE_CHECKPOINT_ROOT", None)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'bench.db'}"
        # one after the other, every core to each item
        seq = clone(root, "sequential", args.overrides, env)
        t0 = time.monotonic()
        for item in args.items:
            sh([BIN / "dvc", "repro", "--force", "--single-item", item], seq, {**env, "EQSPIKE_THREADS": str(cores)})
        sequential = time.monotonic() - t0
        # a sweep of one job per item, cores / items each (conf/launcher/local.yaml: threads 1)
        par = clone(root, "sweep", args.overrides, env)
        t0 = time.monotonic()
        out = sh([BIN / "python", "-m", "cli.launch", *args.items, "--launcher", "local", "--sweep", "bench"],
                 par, env)
        sweep = time.monotonic() - t0
        shutil.rmtree(par / ".scaleout", ignore_errors=True)
    print(out.strip().splitlines()[-1])
    print(f"items: {' '.join(args.items)}; overrides: {' '.join(args.overrides) or '(none)'}; {cores} cores")
    print(f"one after the other (dvc repro --force --single-item, {cores} threads each): {sequential:.1f} s")
    print(f"two-worker sweep (cli.launch --launcher local, 1 thread per job, checkout + push included): "
          f"{sweep:.1f} s")
    print(f"ratio: {sequential / sweep:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
