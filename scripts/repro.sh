#!/usr/bin/env bash
# Set up and rerun the paper: `dvc repro` of every stage in dvc.yaml. Extra arguments go to dvc.
#   bash scripts/repro.sh                    # the whole paper (docs/results.md: time on a stated machine)
#   bash scripts/repro.sh train_ep           # one stage and what it needs
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
bash scripts/setup.sh
source scripts/env.sh
dvc repro "$@"
