"""The tuning protocol, the same for every model compared (docs/selection.md): the same number of
configurations over each model's own main knobs, one seed, the validation split, the same epoch
budget, and one selection rule:

    the highest validation accuracy of the raw weights wins, unless it beats the default (the
    first configuration) by no more than one standard error of the default's validation
    estimate, sqrt(a (1 - a) / n_val): then the default stays.

``ModelProtocol`` and ``TuningProtocol`` are the schema of conf/tuning/protocol.yaml;
``select`` applies the rule to the runs' figures and returns the winner and the provenance of
every knob. The runs themselves are queued DVC experiments (``cli/tune.py``); this module only
judges them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.core.schema import Checked, ConfigError, opt, req


@dataclass(frozen=True, kw_only=True)
class ModelProtocol(Checked):
    """One model's share of the protocol: the stage that trains it, its knobs, its candidates
    (``{key: value}`` overrides of the defaults; the first is ``{}``, the default itself)."""

    config_path = "tuning.models.<model>"

    stage: str = req(min_len=1)
    knobs: list[str] = req(min_len=1)
    candidates: list[dict[str, Any]] = req(min_len=2)
    # the hyperparameters the protocol does not tune, each with where its value comes from
    fixed: dict[str, str] = opt({})

    def check(self, path: str) -> None:
        if self.candidates[0]:
            raise ConfigError(f"{path}.candidates: the first candidate must be the default ({{}}), got "
                              f"{self.candidates[0]}")
        seen = []
        for i, cand in enumerate(self.candidates):
            for key in cand:
                if key.lstrip("+") not in self.knobs:
                    raise ConfigError(f"{path}.candidates[{i}]: {key} is not one of this model's knobs {self.knobs}")
            if cand in seen:
                raise ConfigError(f"{path}.candidates[{i}]: the same configuration twice ({cand})")
            seen.append(cand)


@dataclass(frozen=True, kw_only=True)
class TuningProtocol(Checked):
    """conf/tuning/protocol.yaml."""

    config_path = "tuning"

    validation: int = req(ge=1000)  # the last n training examples, held out
    seed: int = req(ge=0)
    budget: int = req(ge=2)  # configurations per model, the default included
    models: dict[str, ModelProtocol] = req(min_len=1)

    def check(self, path: str) -> None:
        for name, m in self.models.items():
            if len(m.candidates) != self.budget:
                raise ConfigError(f"{path}.models.{name}.candidates: {len(m.candidates)} configurations, the protocol "
                                  f"gives every model {self.budget}")


def experiment_name(model: str, index: int, pipeline: str | None = None) -> str:
    """The queued DVC experiment of candidate ``index`` of ``model`` (of a pipeline beside the
    paper's: ``tune-fashion-eqspike-0``)."""
    return f"tune-{pipeline + '-' if pipeline else ''}{model}-{index}"


def standard_error(accuracy: float, n: int) -> float:
    return math.sqrt(max(accuracy * (1.0 - accuracy), 0.0) / n)


def rule(accuracies: Sequence[float | None], n_val: int) -> tuple[int, int, float]:
    """The selection rule of every model (the default first; None: a candidate that diverged,
    which never wins): the highest validation accuracy wins unless it beats the default by no
    more than one standard error of the default's estimate. Returns (winner, best, standard error)."""
    if accuracies[0] is None:
        raise ValueError("the default candidate has no validation accuracy (it diverged)")
    best = max((i for i, a in enumerate(accuracies) if a is not None), key=lambda i: accuracies[i])
    se = standard_error(accuracies[0], n_val)
    return (best if accuracies[best] - accuracies[0] > se else 0), best, se


def select(model: str, protocol: ModelProtocol, results: Mapping[str, Mapping[str, float]], n_val: int,
           defaults: Mapping[str, Any], pipeline: str | None = None) -> dict:
    """Apply the rule to ``results`` (experiment name -> ``{"val_accuracy": ...}``, raw weights,
    and ``params``: the run's own flattened config, as logged, when there) for every candidate of
    ``model``; ``defaults``: the dotted knobs' default values, used where a run's own are missing
    (the runs' record wins: the defaults may have moved since, to the winner).

    Returns the ranking, the winner, why, and one provenance row per knob (its final value, the
    experiment that chose it and its validation accuracy). Raises when a candidate has no result:
    the budget is the same for every model, so a missing run is not skipped."""
    names = [experiment_name(model, i, pipeline) for i in range(len(protocol.candidates))]
    missing = [n for n in names if n not in results or "val_accuracy" not in results[n]]
    if missing:
        where = f" --pipeline {pipeline}" if pipeline else ""
        raise ValueError(f"{model}: no validation result for {missing}: run them (python -m cli.tune queue{where} "
                         f"{model}; dvc queue start -j 1) before selecting")
    rows = [{"experiment": n, "overrides": dict(c), "val_accuracy": float(results[n]["val_accuracy"]),
             **({"run_id": results[n]["run_id"]} if "run_id" in results[n] else {}),
             **({"val_accuracy_averaged": float(results[n]["val_accuracy_averaged"])}
                if "val_accuracy_averaged" in results[n] else {})}
            for n, c in zip(names, protocol.candidates)]
    default = rows[0]
    win, top, se = rule([r["val_accuracy"] for r in rows], n_val)
    winner, best = rows[win], rows[top]
    if win == 0:
        why = (f"the default stays: the best challenger is within one standard error "
               f"({100 * se:.2f} points) of it" if top != 0 else "the default is best")
    else:
        why = (f"{best['experiment']} beats the default by "
               f"{100 * (best['val_accuracy'] - default['val_accuracy']):.2f} points "
               f"(> one standard error, {100 * se:.2f})")
    def value(row, k):
        logged = results[row["experiment"]].get("params", {}).get(k)
        if logged is not None:
            return yaml_value(logged)
        given = {key.lstrip("+"): v for key, v in row["overrides"].items()}  # +key adds, ++key forces
        return given.get(k, defaults.get(k))

    final = {k: value(winner, k) for k in protocol.knobs}
    provenance = []
    for k in protocol.knobs:
        tried = [value(r, k) for r in rows]
        provenance.append({"knob": k, "value": final[k], "chosen_by": winner["experiment"],
                           "val_accuracy": winner["val_accuracy"], "tried": sorted({str(v) for v in tried}),
                           "at_edge": at_edge(final[k], tried)})
    for k, reason in protocol.fixed.items():
        provenance.append({"knob": k, "value": defaults.get(k), "chosen_by": f"not tuned: {reason}", "val_accuracy": None,
                           "tried": [], "at_edge": False})
    ranking = sorted(rows, key=lambda r: -r["val_accuracy"])
    return {"model": model, "n_val": n_val, "standard_error": se, "rule": why, "winner": winner["experiment"],
            "overrides": winner["overrides"], "final": final, "provenance": provenance, "runs": ranking}


def yaml_value(text: str):
    """A logged parameter (MLflow keeps strings: ``[0.1, 0.1]``, ``0.9``) back to its value."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _magnitude(v) -> float | None:
    """A number to order a knob's values by (a list by its first entry); None when not numeric."""
    v = v[0] if isinstance(v, list) and v else v
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def at_edge(value, tried: Sequence) -> bool:
    """Whether ``value`` is the smallest or largest of the values tried (more than two of them):
    a winner at the edge of the grid says the grid may be too narrow."""
    mags = sorted({m for m in (_magnitude(t) for t in tried) if m is not None})
    m = _magnitude(value)
    return len(mags) > 2 and m is not None and m in (mags[0], mags[-1])


def dotted(d: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The values of dotted ``keys`` in the nested dict ``d`` (``None`` where absent)."""
    out = {}
    for key in keys:
        node: Any = d
        for part in key.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        out[key] = node
    return out
