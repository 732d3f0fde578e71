"""Five seeds of EqSpike training as a chip would run it (batch 1, 8-bit weights, the free phase
rerun: the full chip setting, every seed side by side in one compiled run) or as today (batch
20, float32, one seed after another, as ``dvc repro`` trains them); prints the wall time and the
examples per second. Time the pair as whole processes with farm-bench (docs/chip.md):

    farm-bench -n 3 --timeout 900 --vs "python benchmarks/bench_chip.py --mode batch" \\
        -- python benchmarks/bench_chip.py --mode chip

The target (issue 23): five seeds in chip mode take at most 2x the wall time of five seeds of
today's training on the same machine. Needs the fetched MNIST (``dvc repro fetch_data``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("chip", "batch"), required=True)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--bits", type=int, default=8)
    ap.add_argument("--update", choices=("example", "continual"), default="example")
    args = ap.parse_args(argv)

    from dataclasses import replace

    import numpy as np

    from pipeline.data.idx import load
    from pipeline.models.eqspike.chip import ChipCfg, Net, train_networks
    from pipeline.models.eqspike.model import EqSpikeModel
    from pipeline.models.train import fit
    from runner.config import REPO, load_config

    _, cfg = load_config([f"data.n_train={args.n_train}", "data.n_test=100", "runtime.progress=false"])
    data = load(cfg.data, REPO)
    dyn = replace(cfg.eqspike, epochs=args.epochs)
    t0 = time.perf_counter()
    if args.mode == "chip":
        chip = ChipCfg(update=args.update, weight_bits=args.bits, weight_range=cfg.chip.weight_range, average=False,
                       free_rerun=True, lr_scale=0.05)
        train_networks(dyn, [Net(s, chip) for s in range(args.seeds)], data, progress=False)
    else:
        from pipeline.core.network import init_params

        for seed in range(args.seeds):
            model = EqSpikeModel(dyn, np, seed, dyn.eval_batch_size)
            fit(model, init_params(dyn.sizes, seed), data, dyn, seed, progress=False)
    wall = time.perf_counter() - t0
    n = args.seeds * args.epochs * len(data.y_train)
    print(f"{args.mode}: {args.seeds} seeds x {args.epochs} epoch(s) x {len(data.y_train)} examples in {wall:.2f} s "
          f"({n / wall:.0f} example-updates/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
