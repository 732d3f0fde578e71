"""DVC stage ``train_ep``: train the rate-based EP baseline (claim C2, shared/SPEC.md section 1).

    python -m stages.train_ep                        # as dvc repro runs it
    python -m stages.train_ep ep.epochs=2 data.n_train=2000 runtime.device=cpu

Checkpoints every epoch to ``ep.out.checkpoint``; killed and rerun with the same config, it
resumes from the last finished epoch and ends with the same weights.
"""

from __future__ import annotations

import csv
import json
import sys

from pipeline import ep
from pipeline.backend import device_name, get_xp
from pipeline.data import load
from pipeline.plots import learning_curves
from pipeline.schema import Config
from pipeline.train import fit, load_weights, run_key, save_weights
from stages.common import REPO, Run, atomic_write, repo_path, stage_main, write_json

CURVE_FIELDS = ["epoch", "train_accuracy", "train_error", "test_accuracy", "test_error",
                "test_loss", "seconds", "eval_seconds"]
PAPER_RATE_EP_ACCURACY = 0.98  # Ernoult et al. 2019, 784-512-10 (shared/anchors.md, recalled)


def write_csv(path, records) -> None:
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CURVE_FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(records)

    atomic_write(path, write)


def worker(cfg: Config, run: Run) -> None:
    xp = get_xp(cfg.runtime.device)
    out = cfg.ep.out
    data = load(cfg.data, REPO)
    key = run_key(cfg.ep, cfg.runtime.seed, cfg.runtime.dtype, len(data.y_train))
    run.tags({"device": device_name(xp), "run_key": key})

    # ---- resume from the checkpoint when it belongs to this run ---------------------------
    ckpt = repo_path(out.checkpoint)
    start_epoch, history = 0, []
    if ckpt.is_file():
        params, extra = load_weights(ckpt, xp)
        if extra.get("run_key") == key and int(extra["epoch"]) <= cfg.ep.epochs:
            start_epoch, history = int(extra["epoch"]), json.loads(str(extra["history"]))[: int(extra["epoch"])]
            print(f"resuming from {ckpt} after epoch {start_epoch}")
        else:
            print(f"{ckpt} belongs to another config; starting from scratch")
    if start_epoch == 0:
        params = ep.init_params(cfg.ep.sizes, cfg.runtime.seed, xp, cfg.runtime.dtype)
    for record in history:
        run.metrics({k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"])

    # ---- train, checkpoint after every epoch ---------------------------------------------
    def on_epoch_end(epoch: int, record: dict) -> None:
        history.append(record)
        run.metrics({k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"])
        atomic_write(ckpt, lambda p: save_weights(p, params, epoch=epoch + 1, run_key=key,
                                                  history=json.dumps(history)))
        print(f"epoch {epoch + 1}: train acc {record['train_accuracy']:.4f}  "
              f"test acc {record['test_accuracy']:.4f}  ({record['seconds']:.1f} s)", flush=True)

    fit(params, data, cfg.ep, cfg.runtime.seed, xp, start_epoch, on_epoch_end, cfg.runtime.progress)

    # ---- outputs ------------------------------------------------------------------------
    last = history[-1]
    seconds = [r["seconds"] for r in history]
    metrics = {
        "test_accuracy": last["test_accuracy"],
        "train_accuracy": last["train_accuracy"],
        "test_loss": last["test_loss"],
        "best_test_accuracy": max(r["test_accuracy"] for r in history),
        "epochs": len(history),
        "seconds_per_epoch": sum(seconds) / len(seconds),
        "train_seconds_total": sum(seconds),
        "device": device_name(xp),
        "n_train": len(data.y_train),
        "n_test": len(data.y_test),
    }
    atomic_write(repo_path(out.weights), lambda p: save_weights(p, params, epoch=len(history), run_key=key))
    write_json(repo_path(out.metrics), metrics)
    write_csv(repo_path(out.curve_csv), history)
    atomic_write(repo_path(out.curve_png),
                 lambda p: learning_curves(history, p, f"rate-based EP {cfg.ep.sizes}", PAPER_RATE_EP_ACCURACY))
    run.metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=len(history))
    for path in (out.metrics, out.curve_csv, out.curve_png, out.weights):
        run.artifact(repo_path(path))


main = stage_main("train_ep", worker)

if __name__ == "__main__":
    sys.exit(main())
