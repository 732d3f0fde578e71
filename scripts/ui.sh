#!/usr/bin/env bash
# Set up (once) and open the project's runs in the MLflow UI: prints the address that opens straight
# on the runs table (a saved view with the accuracies and epoch times), then serves the UI on the
# project's store until Ctrl-C. Options and overrides go to python -m cli.ui.
#   bash scripts/ui.sh [--port 5000] [--host 127.0.0.1] [--print-only] [key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
bash scripts/setup.sh
source scripts/env.sh
exec python -m cli.ui "$@"
