"""DVC stage ``fetch_data``: download MNIST's IDX files and verify them (README, "Outputs": the pinned hashes are in conf/data/mnist.yaml).

    python -m stages.fetch_data                      # as dvc repro runs it
    python -m stages.fetch_data data.timeout_s=5 data.sources.3.path=/my/mnist
"""

from __future__ import annotations

import sys

from pipeline.fetch import fetch
from pipeline.schema import Config
from stages.common import Run, repo_path, stage_main


def worker(cfg: Config, run: Run) -> None:
    out_dir = repo_path(cfg.data.dir)
    report = fetch(cfg.data, out_dir, progress=cfg.runtime.progress)
    run.artifact(out_dir / "verification.json")
    run.tags({f"source.{k}": v["source"] for k, v in report["files"].items()})
    run.metrics({"fetch_seconds": report.get("seconds", 0.0),
                 "bytes": sum(v["bytes"] for v in report["files"].values())})


main = stage_main("fetch_data", worker)

if __name__ == "__main__":
    sys.exit(main())
