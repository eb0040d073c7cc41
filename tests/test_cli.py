"""The `exchange` command's own tools: credential helpers, version, usage errors (run in-process)."""

import io
import subprocess
import sys
from pathlib import Path

import pytest

from exchange import __version__
from exchange.cli import main
from exchange.policy.credentials import is_credential_hash, verify_password, verify_token
from tests.hubs import write_config

ROOT = Path(__file__).resolve().parent.parent


def test_hash_password_from_stdin_prints_a_verifiable_hash(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret pass\n"))
    assert main(["account", "hash-password", "--stdin"]) == 0
    printed = capsys.readouterr().out.strip()
    assert is_credential_hash(printed) and "s3cret" not in printed
    assert verify_password("s3cret pass", printed)
    assert not verify_password("s3cret pass\n", printed)


def test_an_empty_password_is_refused(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["account", "hash-password", "--stdin"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "empty password" in captured.err


def test_new_token_prints_the_token_and_its_hash(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["account", "new-token"]) == 0
    token_line, hash_line = capsys.readouterr().out.strip().splitlines()
    token, encoded = token_line.rsplit(" ", 1)[1], hash_line.rsplit(" ", 1)[1]
    assert token.startswith("exh_") and encoded.startswith("sha256$")
    assert verify_token(token, encoded)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"exchange {__version__}"


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["config"], ["audit"], ["serve", "--port", "not-a-number"],
                                  ["serve", "--log-level", "loud"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage: exchange" in capsys.readouterr().err


def test_serve_with_an_out_of_range_port_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "exchange", "serve", "--config", str(write_config(tmp_path)),
                             "--port", "70000", "--data-dir", str(tmp_path / "data")],
                            cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr


def test_errors_are_one_line_and_a_hint_for_the_command_that_failed(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    assert main(["demo", "--dir", str(tmp_path / "busy")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("exchange: --dir") and "new or empty directory" in lines[1]
    assert main(["peers", "--config", str(tmp_path / "missing.toml")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"exchange: config file not found: {tmp_path / 'missing.toml'}",
                     "hint: `exchange config check FILE` validates a config; see docs/configuration.md"]
