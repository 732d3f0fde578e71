"""DVC stage ``stdp``: STDP emergence in the trained EqSpike networks, the default (leaky state),
the variant (memoryless) and the stochastic model (Bernoulli spikes) (claim C5; the study in ``pipeline/analysis/stdp_study.py``, the method,
the controls and the verdict in ``pipeline/analysis/stdp.py``).

    python -m stages.stdp
    python -m stages.stdp stdp.n_examples=50 stdp.step_ms=2
"""

from __future__ import annotations

import sys

from pipeline.analysis import stdp_study
from pipeline.config import Config
from pipeline.core.backend import get_xp
from pipeline.core.io import load_params
from pipeline.data.idx import load
from runner.config import REPO, seed_paths
from runner.stage import stage_main
from runner.tracking import Run


def worker(cfg: Config, run: Run) -> None:
    models = {"eqspike": cfg.eqspike, "eqspike_variant": cfg.variant, "eqspike_stochastic": cfg.stochastic}
    paths = {name: seed_paths(m.out, cfg.runtime.seed).weights for name, m in models.items()}
    stages = {"eqspike": f"train_eqspike@{cfg.runtime.seed}", "eqspike_variant": f"train_eqspike_variant@{cfg.runtime.seed}",
              "eqspike_stochastic": "train_eqspike_stochastic"}  # the stochastic model: one seed, no matrix
    for name, path in paths.items():  # every input named before any work
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: train it first (dvc repro {stages[name]})")
    xp = get_xp(cfg.runtime.device)
    trained = {name: (m, load_params(paths[name], xp, m.sizes)[0]) for name, m in models.items()}
    snapshots = {}
    for name, m in models.items():  # the raw weights after earlier epochs (train.snapshot_epochs)
        sp = seed_paths(m.out, cfg.runtime.seed)
        snapshots[name] = {e: load_params(sp.snapshot(e), xp, m.sizes)[0] for e in cfg.train.snapshot_epochs
                           if sp.snapshot(e).is_file()}
        missing = [e for e in cfg.train.snapshot_epochs if e not in snapshots[name]]
        if missing:
            print(f"stdp: {name} has no snapshot of epoch(s) {missing} (trained before they were kept, or fewer "
                  "epochs): its windows during learning leave them out", file=sys.stderr)
    result = stdp_study.study(trained, load(cfg.data, REPO), cfg.stdp, xp, snapshots)
    files = stdp_study.write(result, cfg.stdp, REPO)
    run.metrics(result.flat)
    for path in files:
        run.artifact(path)
    for name, c in result.detail["controls"].items():
        if isinstance(c, dict):
            print(f"{name}: {c['sentence']}")


main = stage_main("stdp", worker)

if __name__ == "__main__":
    sys.exit(main())
