"""Commands that are not DVC stages: the cluster launcher, params.yaml composition, MLflow store set-up."""
