"""DVC stage ``bias``: is EqSpike's spike-driven update an unbiased estimate of rate-based EP's
update and of the gradient? (method in ``pipeline/analysis/bias.py``)

    python -m stages.bias
    python -m stages.bias "bias.betas=[0.5]" "bias.realisations=[1,8]"

At initialisation and on the trained raw weights of ``runtime.seed``: the cosine per layer
between EqSpike's update as trained (accumulators from zero), the same dynamics with rates in
place of spikes, rate-based EP's update and the gradient (backpropagation through the free phase),
over ``bias.n_batches`` batches with their spread; on the first batch, the update averaged over R
random-phase realisations for every beta and R.
"""

from __future__ import annotations

import sys

import numpy as np

from pipeline.analysis import bias
from pipeline.config import Config
from pipeline.core.io import atomic_write, load_params, write_json
from pipeline.data.idx import load
from runner.config import REPO, seed_paths
from runner.stage import stage_main
from runner.tracking import Run


def worker(cfg: Config, run: Run) -> None:
    bc, ec = cfg.bias, cfg.eqspike
    trained, _ = load_params(seed_paths(ec.out, cfg.runtime.seed).weights, np, ec.sizes)
    results = bias.study(ec, bc, load(cfg.data, REPO), trained, cfg.runtime.seed)
    write_json(REPO / bc.out.detail, {"batch_size": bc.batch_size, "n_batches": bc.n_batches, "seed": cfg.runtime.seed,
                                      "beta": ec.beta, "weights": "raw (W*, b* of the weights file)",
                                      "realisations": list(bc.realisations), "results": results})
    flat = bias.flat_metrics(results, max(bc.realisations))
    write_json(REPO / bc.out.metrics, flat)
    atomic_write(REPO / bc.out.figure_png, lambda p: bias.figure(results, p))
    run.metrics(flat)
    for path in (bc.out.metrics, bc.out.detail, bc.out.figure_png):
        run.artifact(REPO / path)


main = stage_main("bias", worker)

if __name__ == "__main__":
    sys.exit(main())
