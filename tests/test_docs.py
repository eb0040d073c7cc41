"""The docs stay true: the configuration reference matches the JSON Schema it is generated from, the README names
real commands, and docs/performance.md shows the committed benchmark report."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_reference_is_generated_from_the_schema() -> None:
    result = subprocess.run([sys.executable, "scripts/gen_config_docs.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_every_cli_command_in_the_readme_exists() -> None:
    from exchange.cli import build_parser

    readme = (ROOT / "README.md").read_text()
    parser = build_parser()
    for line in readme.splitlines():
        if line.startswith("exchange "):
            words = [w for w in line.split("#")[0].split()[1:] if not w.startswith(("-", "[", "FILE"))]
            try:
                parser.parse_args([*words[:2], "--help"])
            except SystemExit as exc:
                assert exc.code == 0, f"README command not understood by the CLI: {line}"


def test_performance_page_shows_the_committed_report() -> None:
    """docs/performance.md embeds plots that exist, and gives the command that made them."""
    import re

    page = (ROOT / "docs" / "performance.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)
    assert images, "docs/performance.md shows no plot"
    for image in images:
        assert (ROOT / "docs" / image).is_file(), f"docs/performance.md embeds a missing file: {image}"
    assert "python -m scripts.bench" in page
    results = json.loads((ROOT / "docs" / "performance" / "results.json").read_text())
    assert results["command"] in page, "the page names the command that made the committed results"
