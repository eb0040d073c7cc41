#!/usr/bin/env python3
"""Bootstrap: make .venv with everything the project needs, then run the hub or the test suite.

    python3 run.py serve   # the hub on examples/hub.toml (http://127.0.0.1:9000/taxii2/, demo/demo)
    python3 run.py test    # the whole test suite
Only Python >= 3.11 and pip are needed; dependencies install into .venv on first use and again
whenever pyproject.toml changes. Extra arguments go to the command (`run.py test -k taxii`).
"""

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


def ensure_env() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - run.py may be started by an older python3
        sys.exit(f"exchange needs Python >= 3.11 (this is {sys.version.split()[0]})")
    if not (BIN / "python").exists():
        print(f"run.py: creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    print("run.py: installing exchange and its dependencies into .venv", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(wanted)


def main() -> int:
    command, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("help", [])
    if command not in ("serve", "test"):
        print(__doc__)
        return 2
    ensure_env()
    os.chdir(ROOT)
    if command == "serve":
        argv = [str(BIN / "exchange"), "serve", "--config", "examples/hub.toml", *args]
    else:
        # pytest exits 5 when it collects nothing; that is a failure here, never a silent pass.
        argv = [str(BIN / "python"), "-m", "pytest", *args]
    return subprocess.call(argv)


if __name__ == "__main__":
    sys.exit(main())
