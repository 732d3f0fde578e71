#!/usr/bin/env bash
# Set up and run the test suite (CPU). Extra arguments go to pytest.
#   bash scripts/test.sh                     # everything, as CI runs it
#   bash scripts/test.sh -x -k config        # stop at the first failure, the config tests only
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
bash scripts/setup.sh
source scripts/env.sh
python -m pytest "$@"
