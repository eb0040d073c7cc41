#!/usr/bin/env python3
"""Bootstrap: make .venv with everything the project needs, then run the demo, the hub or the test suite.

    python3 run.py demo    # a live cross-border federation on 127.0.0.1 replaying a worm campaign (`exchange demo`)
    python3 run.py serve   # the hub on examples/hub.toml (http://127.0.0.1:9000/taxii2/, demo/demo)
    python3 run.py test    # the whole test suite
Only Python >= 3.11 and pip are needed; dependencies install into .venv on first use and again
whenever pyproject.toml changes or a command needs an extra not installed yet. Extra arguments go to
the command (`run.py demo --keep-running`, `run.py test -k taxii`).
"""

from __future__ import annotations  # run.py may be started by an older python3: see ensure_env

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed-from"


# The optional dependencies (pyproject.toml) each command needs; the test suite runs the demo too.
EXTRAS = {"demo": {"demo"}, "serve": set(), "test": {"dev", "demo"}}


def ensure_env(extras: set[str]) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - run.py may be started by an older python3
        sys.exit(f"exchange needs Python >= 3.11 (this is {sys.version.split()[0]})")
    if not (BIN / "python").exists():
        print(f"run.py: creating {VENV}", file=sys.stderr, flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    # The stamp: the pyproject hash, then the extras installed (a stamp of one line predates extras: dev).
    stamp = STAMP.read_text().splitlines() if STAMP.exists() else []
    installed = set(stamp[1].split(",")) - {""} if len(stamp) > 1 else ({"dev"} if stamp else set())
    if stamp and stamp[0] == wanted and extras <= installed:
        return
    extras = extras | installed  # never uninstall what another command needs
    # The bootstrap talks on stderr only: `run.py demo --json` keeps a stdout that is nothing but the JSON.
    print("run.py: installing exchange and its dependencies into .venv", file=sys.stderr, flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True, stdout=sys.stderr)
    target = f"{ROOT}[{','.join(sorted(extras))}]" if extras else str(ROOT)
    subprocess.run([*pip, "install", "-e", target], check=True, stdout=sys.stderr)
    STAMP.write_text(f"{wanted}\n{','.join(sorted(extras))}\n")


def main() -> int:
    command, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("help", [])
    if command not in EXTRAS:
        print(__doc__)
        return 2
    ensure_env(EXTRAS[command])
    os.chdir(ROOT)
    if command == "demo":
        argv = [str(BIN / "exchange"), "demo", *args]
    elif command == "serve":
        argv = [str(BIN / "exchange"), "serve", "--config", "examples/hub.toml", *args]
    else:
        # pytest exits 5 when it collects nothing; that is a failure here, never a silent pass.
        argv = [str(BIN / "python"), "-m", "pytest", *args]
    return subprocess.call(argv)


if __name__ == "__main__":
    sys.exit(main())
