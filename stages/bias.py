"""DVC stage ``bias``: is EqSpike's spike-driven update an unbiased estimate of rate-based EP's
update and of the gradient? (method in pipeline/bias.py)

    python -m stages.bias
    python -m stages.bias "bias.betas=[0.5]" "bias.realisations=[1,8]"

On one training batch, at initialisation and on the trained weights of ``runtime.seed``: cosine and
relative norm per layer between EqSpike's update averaged over R spike realisations, rate EP's
update and the gradient (backpropagation through the free phase), for every beta and R.
"""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np

from pipeline import bias
from pipeline.data import load
from pipeline.network import init_params
from pipeline.schema import Config
from stages.common import REPO, Run, SeedPaths, atomic_write, load_params, repo_path, stage_main, write_json
from stages.train_eqspike import dynamics


def worker(cfg: Config, run: Run) -> None:
    bc, ec = cfg.bias, cfg.eqspike
    data = load(cfg.data, REPO)
    x = data.x_train[: bc.batch_size].astype(np.float64)
    y = np.eye(ec.sizes[-1])[data.y_train[: bc.batch_size]]
    trained, _ = load_params(SeedPaths(ec.out, cfg.runtime.seed).weights, np, ec.sizes)
    weights = {"initialisation": init_params(ec.sizes, cfg.runtime.seed, np, "float64"),
               "trained": trained}
    base = dynamics(ec, cfg.neuron, engine="array")
    results = {}
    for name, params in weights.items():
        for beta in bc.betas:
            res = bias.check(params, x, y, replace(base, beta=beta), list(ec.lr), bc.realisations, bc.seed)
            results[f"{name}, beta {beta:g}"] = res
            top = res["by_realisations"][max(bc.realisations)]["vs_rate"]
            print(f"{name}, beta {beta:g}: cosine with rate EP after {max(bc.realisations)} realisations "
                  + ", ".join(f"W{l} {c['cosine']:.3f}" for l, c in enumerate(top)))
    write_json(repo_path(bc.out.detail), {"batch_size": bc.batch_size, "seed": cfg.runtime.seed,
                                          "realisations": list(bc.realisations), "results": results})
    flat = bias.flat_metrics(results, max(bc.realisations))
    write_json(repo_path(bc.out.metrics), flat)
    atomic_write(repo_path(bc.out.figure_png), lambda p: bias.figure(results, p))
    run.metrics(flat)
    for path in (bc.out.metrics, bc.out.detail, bc.out.figure_png):
        run.artifact(repo_path(path))


main = stage_main("bias", worker)

if __name__ == "__main__":
    sys.exit(main())
