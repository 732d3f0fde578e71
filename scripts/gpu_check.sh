#!/usr/bin/env bash
# One-shot GPU check, for a person (or a lent machine) with a CUDA GPU; CI never runs it.
#   bash scripts/gpu_check.sh [OUT_DIR]          # default OUT_DIR: $OUT, else gpu_check/
# In under 10 minutes from a fresh clone: installs the GPU extra into .venv, runs the gpu-marked
# tests (CPU vs GPU agreement on a fixed batch), the benchmark on the GPU (EqSpike and rate-EP
# epoch times, synaptic events per second), one EqSpike epoch through the real train_eqspike
# stage (on 10k training examples, outputs in OUT_DIR), and the NVML energy measurement; every
# figure goes into OUT_DIR/gpu_check.json (and the logs beside it). Commit that file.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
OUT_DIR=${1:-${OUT:-gpu_check}}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
LOCK=requirements-gpu.lock bash scripts/setup.sh > "$OUT_DIR/setup.log" 2>&1 || { tail -20 "$OUT_DIR/setup.log"; exit 1; }
source scripts/env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT_DIR/nvidia_smi.csv" 2>&1
[ -d data/mnist ] || dvc repro fetch_data > "$OUT_DIR/fetch.log" 2>&1

status=0
step() {  # step NAME TIMEOUT_S CMD...: run, log, record the exit status and seconds
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  timeout "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
  local rc=$?
  echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $(( $(date +%s) - t0 ))}" >> "$OUT_DIR/steps.jsonl"
  [ $rc -eq 0 ] || status=1
  tail -3 "$OUT_DIR/$name.log"
}
: > "$OUT_DIR/steps.jsonl"
step gpu_tests 180 python -m pytest -m gpu -q -rs tests/test_gpu.py
step bench 240 python benchmarks/bench.py --device gpu --examples 6000 --test 1000 --json "$OUT_DIR/bench.json"
step stage_epoch 240 python -m stages.train_eqspike runtime.device=gpu runtime.progress=false data.n_train=10000 \
  eqspike.epochs=1 "eqspike.out.models=$OUT_DIR/models" "eqspike.out.checkpoints=$OUT_DIR/checkpoints" \
  "eqspike.out.runs=$OUT_DIR/runs"
step energy 120 python scripts/measure_gpu_energy.py --seconds 10 --idle-seconds 3 --out-dir "$OUT_DIR"

python - "$OUT_DIR" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def read(name):
    p = out / name
    return json.loads(p.read_text()) if p.is_file() else None
figures = {
    "gpu": (out / "nvidia_smi.csv").read_text().strip().splitlines()[-1] if (out / "nvidia_smi.csv").is_file() else None,
    "steps": [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines() if line.strip()],
    "bench": read("bench.json"),
    "stage_epoch": read("runs/seed0/metrics.json"),
    "energy_presets": {p.name: p.read_text() for p in out.glob("measured_*.yaml")},
}
(out / "gpu_check.json").write_text(json.dumps(figures, indent=2))
print(f"wrote {out / 'gpu_check.json'}")
PY
exit $status
