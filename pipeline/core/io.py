"""Writing outputs safely and reading weights files from elsewhere: every output is written to a
temporary sibling and renamed (nothing half-written), a weights file is read without unpickling
and checked against the network before use."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.core.network import is_finite, load_weights


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class WeightsError(ValueError):
    """A weights file that cannot be used: unreadable, pickled objects, wrong shapes, NaN."""


def load_params(path: Path, xp, sizes, prefix: str = ""):
    """``network.load_weights`` with every check a file from elsewhere needs: readable without
    unpickling, one matrix per pair of layers of ``sizes`` with matching shapes, finite values."""
    try:
        params, extra = load_weights(path, xp, prefix=prefix)
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"{path}: not a readable weights file ({type(exc).__name__}: {exc})") from exc
    want_W = [(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
    got_W = [tuple(w.shape) for w in params.W]
    got_b = [tuple(b.shape) for b in params.b]
    if got_W != want_W or got_b != [(b,) for _, b in want_W]:
        raise WeightsError(f"{path}: {prefix}weights of shapes {got_W} and biases {got_b} do not fit a "
                           f"network of sizes {list(sizes)}")
    if not is_finite(params):
        raise WeightsError(f"{path}: {prefix}weights hold NaN or infinite values")
    return params, extra


def read_json(path: Path, stage: str) -> dict:
    """A stage's JSON output; a missing file names the stage that writes it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the {stage} stage first (dvc repro {stage})")
    return json.loads(path.read_text())


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))


class SeedPaths:
    """Where one seed's run of a model writes: ``<models>/seed<n>.npz`` (weights, DVC-cached),
    ``<runs>/seed<n>/`` (metrics, curves, events, raster), and its checkpoint
    ``<checkpoints>/<run key>.npz`` under ``checkpoint_root`` (not a DVC output: keyed by
    everything that shapes the weights, so two experiments never share one, and DVC's run-cache
    can restore the stage). Each path reads only its own config key (the stages declare what
    they read)."""

    def __init__(self, out, seed: int, root: Path, checkpoint_root: Path | None = None):
        self.out, self.seed, self.root = out, seed, Path(root)
        self.checkpoint_root = self.root if checkpoint_root is None else Path(checkpoint_root)

    @property
    def weights(self) -> Path:
        return self.root / f"{self.out.models}/seed{self.seed}.npz"

    def checkpoint(self, run_key: str) -> Path:
        return self.checkpoint_root / self.out.checkpoints / f"{run_key}.npz"

    @property
    def dir(self) -> Path:
        return self.root / f"{self.out.runs}/seed{self.seed}"

    metrics = property(lambda self: self.dir / "metrics.json")
    curve_csv = property(lambda self: self.dir / "curve.csv")
    curve_png = property(lambda self: self.dir / "curve.png")
    events = property(lambda self: self.dir / "events.json")
    raster_png = property(lambda self: self.dir / "raster.png")
    # the test set's per-example predictions (raw weights, and the average beside them): what
    # intervals over test examples and paired gaps between models read
    predictions = property(lambda self: self.dir / "predictions.npz")
    # the raw weights after chosen epochs (train.snapshot_epochs): learning seen along the way
    snapshots = property(lambda self: self.dir / "snapshots")

    def snapshot(self, epoch: int) -> Path:
        return self.snapshots / f"epoch{epoch}.npz"
