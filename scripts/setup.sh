#!/usr/bin/env bash
# Create .venv (once) and install the pinned requirements into it. Needs Python 3.11 and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r "${REQUIREMENTS:-requirements.txt}"
