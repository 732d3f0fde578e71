"""DVC stage ``fetch_data``: download the dataset's IDX files and verify them (``pipeline/data/fetch.py``;
the pinned hashes and the sources, in order, are in conf/data/mnist.yaml).

    python -m stages.fetch_data                      # as dvc repro runs it
    python -m stages.fetch_data data.timeout_s=5 data.sources.3.path=/my/mnist
"""

from __future__ import annotations

import sys

from pipeline.config import Config
from pipeline.data.fetch import fetch
from runner.config import REPO
from runner.stage import stage_main
from runner.tracking import Run


def worker(cfg: Config, run: Run) -> None:
    out_dir = REPO / cfg.data.dir
    report = fetch(cfg.data, out_dir, progress=cfg.runtime.progress)
    run.artifact(out_dir / "verification.json")
    run.tags({f"source.{k}": v["source"] for k, v in report["files"].items()})
    run.metrics({"fetch_seconds": report.get("seconds", 0.0),
                 "bytes": sum(v["bytes"] for v in report["files"].values())})


main = stage_main("fetch_data", worker)

if __name__ == "__main__":
    sys.exit(main())
