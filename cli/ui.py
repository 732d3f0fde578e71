"""Open the project's runs in the MLflow UI: prepare the store (the experiment, its saved runs
view), print the address that opens straight on the runs table, then serve the UI on the
project's store (SQLite ``mlflow.db`` at the repository root, or ``tracking.uri`` /
``$MLFLOW_TRACKING_URI``). Against a tracking server (``http://...``) it prints that server's
address and serves nothing.

    python -m cli.ui                     # http://127.0.0.1:5000/#/experiments/<id>/runs?viewStateShareKey=...
    python -m cli.ui --port 5050 --host 0.0.0.0
    bash scripts/ui.sh                   # the same, after the set-up
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from runner.tracking import prepared_store, runs_url, tracking_root, tracking_uri


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cli.ui", description=__doc__.split("\n\n")[0],
                                epilog="Config overrides (key=value) go after the options, e.g. "
                                       "tracking.experiment=eqspike.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="interface to serve on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    p.add_argument("--print-only", action="store_true", help="print the address, serve nothing")
    p.add_argument("overrides", nargs="*", help="config overrides, key=value")
    args = p.parse_args(argv)
    prepared = prepared_store("ui", args.overrides)
    if isinstance(prepared, int):
        return prepared
    cfg, experiment_id = prepared
    uri = tracking_uri(cfg)
    if uri.startswith(("http://", "https://")):
        print(f"runs on the tracking server: {runs_url(uri, experiment_id)}")
        return 0
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"MLflow UI on {uri}\nopen: {runs_url(f'http://{shown}:{args.port}', experiment_id)}", flush=True)
    if args.print_only:
        return 0
    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    if mlflow_bin is None:
        print("ui: the mlflow command is not installed (bash scripts/setup.sh)", file=sys.stderr)
        return 3
    cmd = [mlflow_bin, "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port)]
    if uri.startswith("sqlite:"):
        cmd += ["--default-artifact-root", (tracking_root() / cfg.tracking.artifact_dir).resolve().as_uri()]
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.execv(mlflow_bin, cmd)  # an argument list, no shell
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
