"""A training run of any model, as a DVC stage makes it: resume from the run's checkpoint, train
to ``epochs``, write weights, metrics and curves, report to a tracker.

The run key (``run_key``) is everything that shapes the weights (the model's config without the
keys in ``NOT_IN_RUN_KEY``, seed, dtype, data size, and the code digest of the modules the model's
class imports, found by ``code_files`` from the imports themselves). Checkpoints are written every
epoch; a rerun with the same key resumes after the last finished epoch and ends with the same
weights as an uninterrupted run. The tracker is anything with ``metrics``, ``artifact`` and
``tags`` (the stages pass their MLflow run; this module knows no tracking library).
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

import numpy as np

from pipeline.core.backend import device_name
from pipeline.core.io import SeedPaths, WeightsError, atomic_write, load_params, write_json
from pipeline.core.network import Params, copy_params, init_params, save_weights
from pipeline.data.idx import Dataset
from pipeline.models.figures import learning_curves
from pipeline.models.train import fit, test

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds pipeline/


class Tracker(Protocol):
    def metrics(self, values: dict[str, float], step: int | None = None) -> None: ...
    def artifact(self, path: Path) -> None: ...
    def tags(self, values: dict[str, str]) -> None: ...


def _module_file(name: str) -> Path | None:
    base = PACKAGE_ROOT / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(tree: ast.AST):
    """Import statements of a module, function bodies included, ``if TYPE_CHECKING:`` left out."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in _imports(child))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def imported_modules(module: str, packages: tuple[str, ...] = ("pipeline",), skip: tuple[str, ...] = ()) -> list[str]:
    """The modules of ``packages`` that ``module`` imports, directly or through each other (read
    from their source with ``ast``, function-level imports included), ``module`` first; the
    modules in ``skip`` are not entered."""
    seen, todo = [], [module]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in seen or name in skip or path is None:
            continue
        seen.append(name)
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.split(".")[0] in packages:
                    todo.append(node.module)
                    # ``from pipeline.models import ep``: a module of that package
                    todo.extend(f"{node.module}.{a.name}" for a in node.names
                                if _module_file(f"{node.module}.{a.name}") is not None)
            elif isinstance(node, ast.Import):
                todo.extend(a.name for a in node.names if a.name.split(".")[0] in packages)
    return seen


def code_files(module: str, packages: tuple[str, ...] = ("pipeline",), skip: tuple[str, ...] = ()) -> list[str]:
    """Files (relative to the repository) of the modules ``module`` imports: what a model's run
    key hashes (``pipeline`` only), and what a DVC stage lists as deps (every package, the root
    config skipped: tests/test_dvc_params.py)."""
    files = {_module_file(m) for m in imported_modules(module, packages, skip)}
    return sorted(str(f.relative_to(PACKAGE_ROOT)) for f in files if f is not None)


def code_digest(files: list[str]) -> str:
    """Hash of the files (relative to the repository) that shape a model's weights: a checkpoint
    made by other code is not resumed."""
    h = hashlib.sha256()
    for rel in files:
        h.update(rel.encode())
        h.update((PACKAGE_ROOT / rel).read_bytes())
    return h.hexdigest()[:16]


# per epoch: training and validation (raw weights; the average beside them); the test figures are
# on the last row only (the test set is read once, after training)
CURVE_FIELDS = ["epoch", "train_accuracy", "val_accuracy", "val_accuracy_averaged", "val_accuracy_spike_count",
                "val_loss", "test_accuracy", "test_accuracy_averaged", "test_accuracy_spike_count",
                "test_accuracy_spike_count_averaged", "test_loss", "seconds", "eval_seconds"]


def write_csv(path, records) -> None:
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CURVE_FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(records)

    atomic_write(path, write)


# config keys that do not shape the weights: a finished run can be extended, evaluated in other
# batches, or run by another engine (same equations) and keep its key
NOT_IN_RUN_KEY = ("epochs", "out", "eval_batch_size", "engine", "input_layer")


def run_key(model, cfg, seed: int, dtype: str, n_train: int, ema_decay: float = 0.0) -> str:
    """Identity of a training run for resuming: everything that shapes the weights (config,
    seed, data size, the weight average's decay, the model's code: the modules its class
    imports) except the number of epochs."""
    relevant = {k: v for k, v in asdict(cfg).items() if k not in NOT_IN_RUN_KEY}
    relevant.update(seed=seed, dtype=dtype, n_train=n_train, code=code_digest(code_files(type(model).__module__)))
    if ema_decay:
        relevant["ema_decay"] = ema_decay
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def numeric(record: dict) -> dict:
    """The entries MLflow can log as metrics."""
    return {k: v for k, v in record.items() if k != "epoch" and isinstance(v, (int, float))}


def merge_last(history: list[dict], figures: dict) -> None:
    """Add the test figures to the last epoch's record (nested dicts, the events, merged)."""
    last = history[-1]
    for k, v in figures.items():
        last[k] = {**last[k], **v} if isinstance(v, dict) and isinstance(last.get(k), dict) else v


def snapshot_path(ckpt: Path, epoch: int) -> Path:
    """Where the raw weights after ``epoch`` wait beside the checkpoint (outside DVC's outputs, which
    DVC removes before it reruns a stage, so a resumed run still has the earlier epochs')."""
    return ckpt.parent / "snapshots" / f"{ckpt.stem}.epoch{epoch}.npz"


def train_and_write(model, model_cfg, data: Dataset, seed: int, dtype: str, run: Tracker, title: str,
                    reference: float | None, progress: bool, out: SeedPaths, ema_decay: float = 0.0,
                    after: Callable[[Params, list[dict]], dict] | None = None,
                    snapshot_epochs: Sequence[int] = ()) -> tuple[Params, list[dict]]:
    """Resume or start, train to ``model_cfg.epochs``, read the test set once, write weights (raw
    and, with ``ema_decay`` > 0, the average beside them), metrics, curves, predictions.

    ``after(params, history)`` may add entries to the metrics JSON (and write more outputs).
    Returns the raw weights and the history.
    """
    xp = model.xp
    key = run_key(model, model_cfg, seed, dtype, len(data.y_train), ema_decay)
    run.tags({"device": device_name(xp), "run_key": key, "seed": str(seed),
              "validation_sha256": data.val_sha256 or "none"})

    # ---- resume from the checkpoint when it belongs to this run ---------------------------
    ckpt = out.checkpoint(key)
    use_ema = ema_decay > 0
    start_epoch, history = 0, []
    if ckpt.is_file():
        try:
            params, extra = load_params(ckpt, xp, model_cfg.sizes)
            if extra.get("run_key") == key and int(extra["epoch"]) <= model_cfg.epochs:
                ema = load_params(ckpt, xp, model_cfg.sizes, prefix="ema_")[0] if use_ema else None
                history = json.loads(str(extra["history"]))[: int(extra["epoch"])]
                start_epoch = int(extra["epoch"])
                print(f"resuming from {ckpt} after epoch {start_epoch}")
            else:
                print(f"{ckpt} belongs to another config; starting from scratch")
        except (WeightsError, KeyError, ValueError) as exc:  # KeyError/ValueError: a broken history
            start_epoch, history = 0, []
            print(f"warning: checkpoint {ckpt} is unusable ({exc}); starting from scratch, the file is "
                  "replaced after the first epoch", file=sys.stderr)
    if start_epoch == 0:
        params = init_params(model_cfg.sizes, seed, xp, dtype)
        ema = copy_params(params) if use_ema else None
    for record in history:
        run.metrics(numeric(record), step=record["epoch"])

    # ---- train, checkpoint after every epoch ---------------------------------------------
    def on_epoch_end(epoch: int, record: dict) -> None:
        history.append(record)
        # the checkpoint first: a tracking hiccup after it never loses the epoch
        if epoch + 1 in snapshot_epochs:
            atomic_write(snapshot_path(ckpt, epoch + 1),
                         lambda p: save_weights(p, params, epoch=epoch + 1, run_key=key, contents="raw weights"))
        atomic_write(ckpt, lambda p: save_weights(p, params, ema, epoch=epoch + 1, run_key=key,
                                                  history=json.dumps(history)))
        run.metrics(numeric(record), step=record["epoch"])
        avg = f" (average {record['val_accuracy_averaged']:.4f})" if "val_accuracy_averaged" in record else ""
        val = f"  val acc {record['val_accuracy']:.4f}{avg}" if "val_accuracy" in record else ""
        print(f"{model.name} seed {seed} epoch {epoch + 1}: train acc {record['train_accuracy']:.4f}{val}  "
              f"({record['seconds']:.1f} s)", flush=True)

    fit(model, params, data, model_cfg, seed, start_epoch, ema, ema_decay, on_epoch_end, progress)

    # ---- the test set, read once --------------------------------------------------------
    figures, predictions = test(model, params, ema, data)
    merge_last(history, figures)
    last = history[-1]
    avg = f" (average {last['test_accuracy_averaged']:.4f})" if "test_accuracy_averaged" in last else ""
    print(f"{model.name} seed {seed}: test acc {last['test_accuracy']:.4f}{avg} after {len(history)} epochs",
          flush=True)

    # ---- outputs ------------------------------------------------------------------------
    seconds = [r["seconds"] for r in history]
    metrics = {
        "seed": seed,
        "epochs": len(history),
        "seconds_per_epoch": sum(seconds) / len(seconds),
        "train_seconds_total": sum(seconds),
        "n_train": len(data.y_train),
        "n_val": 0 if data.y_val is None else len(data.y_val),
        "n_test": len(data.y_test),
        "ema_decay": ema_decay,
        # the last epoch's figures (the number of epochs is fixed in the config, never chosen here)
        **{k: v for k, v in last.items() if k.split("_")[0] in ("train", "val", "test") and k != "train_error"
           and k != "test_error" and isinstance(v, (int, float))},
    }
    if after is not None:
        metrics.update(after(params, history))
    atomic_write(out.weights, lambda p: save_weights(p, params, ema, epoch=len(history), run_key=key,
                                                     ema_decay=ema_decay, contents=WEIGHTS_CONTENTS))
    atomic_write(out.predictions, lambda p: save_predictions(p, predictions, data.y_test))
    out.snapshots.mkdir(parents=True, exist_ok=True)
    for e in sorted(e for e in snapshot_epochs if e <= len(history)):
        src = snapshot_path(ckpt, e)
        if not src.is_file():  # a checkpoint from before snapshots were kept
            print(f"warning: no snapshot of epoch {e} beside {ckpt}", file=sys.stderr)
            continue
        atomic_write(out.snapshot(e), lambda p, src=src: shutil.copyfile(src, p))
    write_json(out.metrics, metrics)
    write_csv(out.curve_csv, history)
    atomic_write(out.curve_png, lambda p: learning_curves(history, p, f"{title}, seed {seed}", reference))
    run.metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=len(history))
    for path in (out.metrics, out.curve_csv, out.curve_png, out.weights, out.predictions):
        run.artifact(path)
    return params, history


WEIGHTS_CONTENTS = ("W<l>, b<l>: the raw weights, what the learning rule left in the synapses after the last "
                    "epoch; ema_W<l>, ema_b<l> (when ema_decay > 0): their moving average, decay ema_decay per update")


def save_predictions(path: Path, predictions: dict, labels) -> None:
    """``.npz`` of the test set's labels and per-example predicted classes (``predicted``: raw
    weights; ``predicted_averaged``: the average; EqSpike's ``predicted_spike_count*``)."""
    with open(path, "wb") as f:
        np.savez(f, labels=np.asarray(labels).astype(np.int8), **predictions)
