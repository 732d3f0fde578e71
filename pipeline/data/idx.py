"""IDX files (LeCun's MNIST format): parse, verify against the spec, load as arrays.

IDX layout: 2 zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions, then
one big-endian uint32 per dimension, then the data. Images are magic 2051 (0x00000803, three
dimensions), labels 2049 (0x00000801, one dimension). Parsing reads raw bytes with
``np.frombuffer``: nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.spec import DataCfg, IdxFileCfg

MAGIC_UBYTE = 0x08
VERIFICATION_FILE = "verification.json"


class DataError(ValueError):
    """A data file does not match its specification."""


@dataclass(frozen=True)
class Dataset:
    """MNIST-like split: ``x_*: (n, pixels)`` float32 in [0, 1], ``y_*: (n,)`` int64. With a
    validation split, ``x_val`` / ``y_val`` are the last examples of the training file (not
    trained on) and ``val_sha256`` the hash of their indices."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    val_sha256: str | None = None


def hold_out(data: Dataset, n_val: int) -> Dataset:
    """The last ``n_val`` training examples become the validation split (fixed: the same
    examples for every seed and config; what chooses hyper-parameters reads only them)."""
    if n_val <= 0:
        return data
    n = len(data.y_train)
    if n_val >= n:
        raise DataError(f"data.validation: {n_val} validation examples leave none to train on ({n} in all)")
    idx = np.arange(n - n_val, n, dtype=np.int64)
    digest = hashlib.sha256(idx.tobytes()).hexdigest()
    return Dataset(x_train=data.x_train[: n - n_val], y_train=data.y_train[: n - n_val], x_test=data.x_test,
                   y_test=data.y_test, x_val=data.x_train[idx], y_val=data.y_train[idx], val_sha256=digest)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_idx(data: bytes, what: str = "IDX file") -> np.ndarray:
    """Array of uint8 from the bytes of an unsigned-byte IDX file; shape from its header."""
    if len(data) < 4:
        raise DataError(f"{what}: {len(data)} bytes, too short for an IDX header")
    if data[0] != 0 or data[1] != 0 or data[2] != MAGIC_UBYTE:
        raise DataError(f"{what}: bad magic number {data[:4].hex()} (expected 000008nn)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{what}: truncated header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape)) if shape else 0
    if len(data) != header + size:
        raise DataError(
            f"{what}: {len(data) - header} data bytes for shape {shape}, expected {size} "
            "(truncated or padded file)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def encode_idx(array: np.ndarray) -> bytes:
    """Bytes of an unsigned-byte IDX file holding ``array`` (used to build test fixtures)."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, MAGIC_UBYTE, a.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in a.shape
    )
    return header + a.tobytes()


def verify_idx(data: bytes, spec: IdxFileCfg) -> dict:
    """Check hash, magic number, shape and (labels) class counts; return a report entry.

    Raises ``DataError`` naming the first mismatch.
    """
    digest = sha256_hex(data)
    if digest != spec.sha256:
        raise DataError(f"{spec.name}: sha256 {digest} != expected {spec.sha256}")
    array = parse_idx(data, spec.name)
    expected_ndim = len(spec.shape)
    magic = int.from_bytes(data[:4], "big")
    if array.ndim != expected_ndim:
        raise DataError(f"{spec.name}: magic {magic:#010x} gives {array.ndim} dims, expected {expected_ndim}")
    if list(array.shape) != list(spec.shape):
        raise DataError(f"{spec.name}: shape {list(array.shape)} != expected {list(spec.shape)}")
    report = {"file": spec.name, "sha256": digest, "bytes": len(data), "magic": magic, "shape": list(array.shape)}
    if spec.label_counts is not None:
        counts = np.bincount(array, minlength=len(spec.label_counts)).tolist()
        if counts != list(spec.label_counts):
            raise DataError(f"{spec.name}: label counts {counts} != expected {list(spec.label_counts)}")
        report["label_counts"] = counts
    return report


def verified_report(directory: Path, cfg: DataCfg) -> dict | None:
    """The verification report of ``directory`` if every file in it still verifies, else None."""
    report_path = directory / VERIFICATION_FILE
    if not report_path.is_file():
        return None
    try:
        for spec in cfg.files().values():
            verify_idx((directory / spec.name).read_bytes(), spec)
        return json.loads(report_path.read_text())
    except (OSError, DataError, ValueError):
        return None


def load(cfg: DataCfg, root: Path | str = ".") -> Dataset:
    """Load the fetched dataset (``cfg.dir`` relative to ``root``), scaled to [0, 1].

    ``cfg.n_train`` / ``cfg.n_test`` keep only the first examples (smoke runs); then
    ``cfg.validation`` > 0 holds out the last examples of the training set (``hold_out``). The hashes were
    checked by the fetch stage; here shapes are checked again because they are cheap.
    """
    directory = Path(root) / cfg.dir
    arrays = {}
    for key, spec in cfg.files().items():
        path = directory / spec.name
        if not path.is_file():
            raise DataError(f"{path}: missing; run the fetch stage first (dvc repro fetch_data)")
        arrays[key] = parse_idx(path.read_bytes(), str(path))
        if list(arrays[key].shape) != list(spec.shape):
            raise DataError(f"{path}: shape {list(arrays[key].shape)} != expected {spec.shape}")

    def images(a: np.ndarray, n: int | None) -> np.ndarray:
        a = a[:n] if n else a
        return a.reshape(len(a), -1).astype(np.float32) / np.float32(255.0)

    def labels(a: np.ndarray, n: int | None) -> np.ndarray:
        return (a[:n] if n else a).astype(np.int64)

    full = Dataset(
        x_train=images(arrays["train_images"], cfg.n_train),
        y_train=labels(arrays["train_labels"], cfg.n_train),
        x_test=images(arrays["test_images"], cfg.n_test),
        y_test=labels(arrays["test_labels"], cfg.n_test),
    )
    return hold_out(full, cfg.validation)
