# Sourced by the other scripts: no telemetry, a git identity for `dvc exp run`.
export DVC_NO_ANALYTICS=1
export MLFLOW_DISABLE_TELEMETRY=true
export GIT_AUTHOR_NAME="${GIT_AUTHOR_NAME:-eqspike}" GIT_AUTHOR_EMAIL="${GIT_AUTHOR_EMAIL:-eqspike@localhost}"
export GIT_COMMITTER_NAME="${GIT_COMMITTER_NAME:-eqspike}" GIT_COMMITTER_EMAIL="${GIT_COMMITTER_EMAIL:-eqspike@localhost}"
export PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv/bin:$PATH"
