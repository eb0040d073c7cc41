"""The README's Quick start, verbatim, in a fresh clone with a fresh virtual environment: its demo command works.

(Its other command, `python3 run.py test`, is what CI runs on a clean clone.)
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def quickstart_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Quick start"):]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "the Quick start has a sh block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_quick_start_has_exactly_the_demo_and_the_test_command() -> None:
    assert quickstart_commands() == ["python3 run.py demo", "python3 run.py test"]


@pytest.mark.skipif(not (ROOT / ".git").exists() or shutil.which("git") is None, reason="needs a git checkout")
def test_the_demo_command_works_in_a_fresh_clone(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    command = quickstart_commands()[0].split()
    assert command[:2] == ["python3", "run.py"]
    # The interpreter running the suite stands in for `python3` (same version); the clone makes its own .venv.
    done = subprocess.run([sys.executable, *command[1:], "--json"], cwd=clone, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert (clone / ".venv").is_dir()
    summary = json.loads(done.stdout)
    assert summary, "the demo printed its summary"
