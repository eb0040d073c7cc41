"""Configuration: the example loads, defaults apply, every bad config names its key and problem, and the
`exchange config check` / `exchange serve` commands fail fast with exit code 2."""

import copy
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exchange.cli import main
from exchange.config import load_settings, parse_settings
from exchange.errors import ConfigError
from exchange.policy.credentials import verify_password
from exchange.policy.tlp import Tlp
from tests.hubs import ALERTS, CANONICAL, INBOX, SECRET, free_port, write_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "hub.toml"
Raw = dict[str, Any]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Raw:
    """The test hub's config as TOML-decoded data: alice, bob, writer (passwords) and tokenbot (token)."""
    raw: Raw = tomllib.loads(write_config(tmp_path_factory.mktemp("config")).read_text())
    return raw


def parse(raw: Raw) -> Any:
    return parse_settings(raw, base_dir=Path("/srv/hub"))


def test_the_example_config_loads() -> None:
    settings = load_settings(EXAMPLE)
    assert (settings.hub.host, settings.hub.port, settings.hub.max_content_length) == ("127.0.0.1", 9000, 10 * 2**20)
    assert settings.hub.data_dir.resolve() == ROOT / "data"  # relative to the config file, not the working directory
    [root] = settings.api_roots
    assert (root.path, root.default) == ("api", True)
    indicators = "8bfc07ea-b3e4-4f90-8e5c-0c340a092b3c"
    assert [(c.alias, c.id) for c in root.collections] == [("inbox", INBOX), ("indicators", indicators),
                                                           ("alerts", ALERTS)]
    assert settings.hub.canonical_collection == indicators
    demo, member = settings.accounts
    assert (demo.username, demo.can_read, demo.can_write) == ("demo", {INBOX, indicators, ALERTS}, {INBOX})
    assert (member.username, member.can_read, member.can_write) == ("member", {ALERTS}, frozenset())
    assert demo.password_hash and verify_password("demo", demo.password_hash)  # as the README says
    assert member.password_hash and verify_password("member", member.password_hash)


def test_a_minimal_config_gets_laptop_defaults() -> None:
    settings = parse({"api_roots": [{"path": "api", "collections": []}]})
    hub = settings.hub
    assert (hub.title, hub.host, hub.port, hub.data_dir) == ("exchange hub", "127.0.0.1", 9000, Path("/srv/hub/data"))
    assert (hub.max_content_length, hub.max_page_size, hub.default_page_size) == (10 * 2**20, 1000, 1000)
    assert settings.accounts == ()
    assert parse({"hub": {"data_dir": "/var/lib/x"}, "api_roots": [{"path": "a", "collections": []}]}) \
        .hub.data_dir == Path("/var/lib/x")


def test_grants_by_alias_resolve_to_collection_ids(base: Raw) -> None:
    raw = copy.deepcopy(base)
    raw["accounts"][1]["can_read"] = ["*"]
    raw["accounts"][1]["can_write"] = [ALERTS]
    alice, bob, writer, tokenbot, *_members = parse(raw).accounts
    assert (alice.can_read, alice.can_write) == ({INBOX, ALERTS, SECRET, CANONICAL}, {INBOX, SECRET})
    assert (bob.can_read, bob.can_write) == ({"*"}, {ALERTS})
    assert (writer.can_read, writer.can_write) == (frozenset(), {INBOX})
    assert tokenbot.password_hash is None and len(tokenbot.token_hashes) == 1


def _set(path: str, value: Any) -> Callable[[Raw], None]:
    def apply(raw: Raw) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value
    return apply


def _drop(path: str) -> Callable[[Raw], None]:
    def apply(raw: Raw) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[last]
    return apply


def _append_root(**fields: Any) -> Callable[[Raw], None]:
    return lambda raw: raw["api_roots"].append({"path": "api", "title": "x", "collections": [], **fields})


BAD: list[tuple[str, Callable[[Raw], None], str, str]] = [
    ("unknown-top-level-key", _set("colour", "red"), "(top level)", "'colour' was unexpected"),
    ("unknown-hub-key", _set("hub.colour", "red"), "hub", "'colour' was unexpected"),
    ("unknown-collection-key", _set("api_roots.0.collections.1.colour", "red"), "api_roots[0].collections[1]",
     "'colour' was unexpected"),
    ("port-wrong-type", _set("hub.port", "9000"), "hub.port", "not of type 'integer'"),
    ("port-boolean", _set("hub.port", True), "hub.port", "not of type 'integer'"),
    ("title-wrong-type", _set("hub.title", 5), "hub.title", "not of type 'string'"),
    ("grants-not-a-list", _set("accounts.0.can_read", "inbox"), "accounts[0].can_read", "not of type 'array'"),
    ("port-too-big", _set("hub.port", 70000), "hub.port", "maximum of 65535"),
    ("port-negative", _set("hub.port", -1), "hub.port", "minimum of 0"),
    ("tiny-content-length", _set("hub.max_content_length", 10), "hub.max_content_length", "minimum of 1024"),
    ("alias-twice", _set("api_roots.0.collections.1.alias", "inbox"), "api_roots[0].collections[1]",
     "'inbox' names two collections"),
    ("id-twice", _set("api_roots.0.collections.2.id", INBOX), "api_roots[0].collections[2]",
     "names two collections"),
    ("collection-id-not-uuid", _set("api_roots.0.collections.0.id", "inbox-1"), "api_roots[0].collections[0].id",
     "does not match"),
    ("unknown-read-grant", _set("accounts.1.can_read", ["alerts", "nope"]), "accounts[1].can_read",
     "no collection named 'nope'"),
    ("unknown-write-grant", _set("accounts.2.can_write", ["inbox2"]), "accounts[2].can_write",
     "no collection named 'inbox2'"),
    ("no-secret", _drop("accounts.1.password_hash"), "accounts[1]", "needs password_hash or token_hashes"),
    ("empty-token-list", _set("accounts.3.token_hashes", []), "accounts[3]", "needs password_hash or token_hashes"),
    ("plaintext-password", _set("accounts.0.password_hash", "hunter2"), "accounts[0].password_hash",
     "not a credential hash"),
    ("plaintext-token", _set("accounts.3.token_hashes", ["exh_plain"]), "accounts[3].token_hashes[0]",
     "not a credential hash"),
    ("page-sizes", _set("hub.default_page_size", 2000), "hub.default_page_size", "max_page_size"),
    ("no-api-roots", _drop("api_roots"), "(top level)", "'api_roots' is a required property"),
    ("root-path-twice", _append_root(), "api_roots[0].path", "'api' is used twice"),
    ("two-default-roots", _append_root(path="api2", default=True), "api_roots", "more than one API root"),
    ("username-twice", lambda raw: raw["accounts"].append(dict(raw["accounts"][0])), "accounts",
     "'alice' is defined twice"),
    ("view-unknown-level", _set("hub.canonical_views", {"purple": "secret"}), "hub.canonical_views",
     "'purple' is not one of"),
    ("view-unknown-collection", _set("hub.canonical_views", {"amber": "nope"}), "hub.canonical_views.amber",
     "no collection named 'nope'"),
    ("view-not-stricter", _set("hub.canonical_views", {"green": "secret"}), "hub.canonical_views.green",
     "must be stricter than hub.canonical_audience (TLP:GREEN)"),
    ("view-is-the-canonical-collection", _set("hub.canonical_views", {"amber": "canonical"}),
     "hub.canonical_views.amber", "already holds another audience's canonical indicators"),
    ("two-views-one-collection", _set("hub.canonical_views", {"amber": "secret", "red": "secret"}),
     "hub.canonical_views.red", "already holds another audience's canonical indicators"),
    ("view-without-canonical", lambda raw: (raw["hub"].pop("canonical_collection"),
                                            raw["hub"].update(canonical_views={"amber": "secret"})),
     "hub.canonical_views.amber", "needs hub.canonical_collection"),
    ("pull-into-a-view", lambda raw: (raw["hub"].update(canonical_views={"amber": "secret"}),
                                      raw.setdefault("peers", []).append(
                                          {"id": "de", "name": "DE", "country": "DE", "pull_into": "secret",
                                           "api_root": "https://de.example/api/"})),
     "peers[0].pull_into", "the canonical collections are written by the hub only"),
]


def test_canonical_views_resolve_to_collection_ids_strictest_last(base: Raw) -> None:
    raw = copy.deepcopy(base)
    raw["hub"]["canonical_views"] = {"red": "secret", "amber": "alerts"}
    assert parse(raw).hub.canonical_views == ((Tlp.AMBER, ALERTS), (Tlp.RED, SECRET))


@pytest.mark.parametrize(("change", "key", "problem"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_config_names_the_key_and_the_problem(base: Raw, change: Callable[[Raw], None], key: str,
                                                    problem: str) -> None:
    raw = copy.deepcopy(base)
    change(raw)
    with pytest.raises(ConfigError) as caught:
        parse(raw)
    message = str(caught.value)
    assert message.startswith(f"config key '{key}'"), message
    assert problem in message, message
    assert "\n" not in message


@pytest.mark.parametrize("change", [_set("accounts.0.password_hash", "hunter2-correct-horse"),
                                    _set("accounts.3.token_hashes", ["hunter2-correct-horse"])],
                         ids=["password", "token"])
def test_a_plaintext_secret_is_not_echoed_in_the_error(base: Raw, change: Callable[[Raw], None]) -> None:
    raw = copy.deepcopy(base)
    change(raw)
    with pytest.raises(ConfigError) as caught:
        parse(raw)
    assert "hunter2-correct-horse" not in str(caught.value)


def test_missing_and_malformed_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[hub]\nport = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken)


# --- the commands -----------------------------------------------------------------------------------------------


def bad_config(tmp_path: Path) -> Path:
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace("[hub]\n", "[hub]\nport = 70000\n"))
    return path


def exchange(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exchange", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(stderr: str, expected: str) -> None:
    lines = stderr.strip().splitlines()
    assert lines and lines[0] == f"exchange: {expected}", stderr
    assert all(line.startswith("hint:") for line in lines[1:]), stderr
    assert "Traceback" not in stderr


def test_config_check_command(tmp_path: Path) -> None:
    good = exchange("config", "check", str(EXAMPLE))
    assert good.returncode == 0, good.stderr
    from exchange.dedup.merge import HubIdentity

    assert good.stdout.strip().splitlines() == [
        f"{EXAMPLE}: ok (1 API root(s), 3 collection(s), 2 account(s))",
        f"hub identity: {HubIdentity('Example National CERT').id} (Example National CERT)"]
    assert good.stderr == ""

    bad = exchange("config", "check", str(bad_config(tmp_path)))
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert_one_line_error(bad.stderr, "config key 'hub.port': 70000 is greater than the maximum of 65535")


@pytest.mark.parametrize(("content", "expected"), [
    (None, "config file not found"),
    ("api_roots = [", "is not valid TOML"),
    ("[[api_roots]]\npath = 'api'\ncollections = []\n[[accounts]]\nusername = 'x'\n",
     "config key 'accounts[0]': needs password_hash or token_hashes"),
])
def test_config_check_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None,
                                 expected: str) -> None:
    path = tmp_path / "hub.toml"
    if content is not None:
        path.write_text(content)
    assert main(["config", "check", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    first = captured.err.splitlines()[0]
    assert first.startswith("exchange: ") and expected in first, captured.err


def test_serve_with_a_bad_config_exits_2_without_listening(tmp_path: Path) -> None:
    started = time.monotonic()
    result = exchange("serve", "--config", str(bad_config(tmp_path)), "--port", str(free_port()), timeout=30)
    assert result.returncode == 2
    assert time.monotonic() - started < 15
    assert_one_line_error(result.stderr, "config key 'hub.port': 70000 is greater than the maximum of 65535")
    assert "listening" not in result.stdout
    assert not (tmp_path / "data").exists()
