#!/usr/bin/env bash
# Check the system, create .venv (once) and install the locked requirements (exact versions with
# hashes, requirements.lock) and this package (editable, no further dependencies) into it.
#   LOCK=requirements-gpu.lock bash scripts/setup.sh     # with the GPU extra (CuPy, NVML)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
PY=${PYTHON:-python3}
"$PY" scripts/check_system.py
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q --require-hashes -r "${LOCK:-requirements.lock}"
.venv/bin/python -m pip install -q --no-deps -e .
