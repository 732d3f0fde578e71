#!/usr/bin/env bash
# Set up and rerun the paper: `dvc repro` of every stage in dvc.yaml. Extra arguments go to dvc.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
dvc repro "$@"
