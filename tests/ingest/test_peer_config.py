"""Peers in the config (#4): typed settings with defaults, clear errors, secrets only from the environment,
and `exchange peers` showing health read from the journal on disk."""

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from exchange.app import build_app
from exchange.cli import main
from exchange.config import load_settings, parse_settings
from exchange.errors import ConfigError
from exchange.policy.tlp import Tlp
from tests.hubs import ALERTS, CANONICAL, INBOX, write_config
from tests.peering import (
    PEER_PASSWORD,
    config_hub,
    hub_config,
    indicators,
    peer_account,
    peer_block,
    post_all,
    puller_config,
    stored_count,
    wait_for,
)

Raw = dict[str, Any]
PEER = {"id": "cert-fr", "name": "CERT-FR", "country": "FR", "api_root": "https://taxii.cert.example/api/",
        "pull": ["c1"]}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Raw:
    raw: Raw = tomllib.loads(write_config(tmp_path_factory.mktemp("config")).read_text())
    return raw


def with_peer(base: Raw, **fields: Any) -> Raw:
    return base | {"peers": [PEER | fields]}


def parse(raw: Raw) -> Any:
    return parse_settings(raw, base_dir=Path("/srv/hub"))


def test_a_peer_gets_typed_settings_and_defaults(base: Raw) -> None:
    [peer] = parse(with_peer(base)).peers
    assert (peer.id, peer.country, peer.pull, peer.push, peer.account) == ("cert-fr", "FR", ("c1",), (), "peer:cert-fr")
    assert (peer.trust, peer.poll_interval, peer.page_size, peer.timeout) == (0.5, 60.0, 1000, 30.0)
    assert peer.pull_into == INBOX  # the first collection that is not the canonical one
    assert (peer.agreement.max_tlp, peer.agreement.readable_collections, peer.agreement.amber_constituents) == \
        (Tlp.GREEN, frozenset(), False)
    [full] = parse(with_peer(base, pull_into="alerts", push=["inbox"], trust=0.9,
                             auth={"username": "hub", "password_env": "FR_PASSWORD"},
                             agreement={"max_tlp": "amber+strict", "readable_collections": ["canonical", ALERTS],
                                        "amber_constituents": True})).peers
    assert (full.pull_into, full.push, full.trust, full.auth.password_env) == (ALERTS, ("inbox",), 0.9, "FR_PASSWORD")
    assert full.agreement.max_tlp is Tlp.AMBER_STRICT
    assert full.agreement.readable_collections == {CANONICAL, ALERTS}


@pytest.mark.parametrize(("fields", "message"), [
    ({"country": "fr"}, "config key 'peers[0].country'"),
    ({"api_root": "https://taxii.cert.example/api"}, "config key 'peers[0].api_root'"),
    ({"api_root": None}, "config key 'peers[0]'"),  # neither api_root nor discovery
    ({"colour": "blue"}, "'colour' was unexpected"),
    ({"trust": 1.5}, "config key 'peers[0].trust'"),
    ({"poll_interval": 0}, "config key 'peers[0].poll_interval'"),
    ({"pull_into": "canonical"}, "the canonical collections are written by the hub only"),
    ({"pull_into": "nowhere"}, "'peers[0].pull_into': no collection named 'nowhere'"),
    ({"auth": {"username": "hub"}}, "HTTP Basic needs both username and password_env"),
    ({"auth": {"username": "u", "password_env": "P", "token_env": "T"}}, "not both"),
    ({"auth": {"password": "in-the-file"}}, "config key 'peers[0].auth'"),
    ({"agreement": {"readable_collections": ["nope"]}}, "readable_collections': no collection named 'nope'"),
    ({"agreement": {"max_tlp": "white"}}, "config key 'peers[0].agreement.max_tlp'"),
])
def test_a_bad_peer_names_the_key_and_the_problem(base: Raw, fields: Raw, message: str) -> None:
    peer = {k: v for k, v in (PEER | fields).items() if v is not None}
    with pytest.raises(ConfigError, match=message.replace("[", "\\[").replace("]", "\\]").replace("(", "\\(")):
        parse(base | {"peers": [peer]})


def test_a_peer_defined_twice_is_an_error(base: Raw) -> None:
    with pytest.raises(ConfigError, match="peer 'cert-fr' is defined twice"):
        parse(base | {"peers": [PEER, PEER]})


def test_a_missing_secret_stops_serve_and_is_a_warning_in_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    config = hub_config(tmp_path, peer_block(**PEER, auth={"username": "hub", "password_env": "CERT_FR_PASSWORD"}))
    monkeypatch.delenv("CERT_FR_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="peer 'cert-fr': environment variable CERT_FR_PASSWORD"):
        build_app(load_settings(config), env={})
    assert main(["serve", "--config", str(config), "--port", "0"]) == 2
    assert "peer 'cert-fr': environment variable CERT_FR_PASSWORD (its auth secret) is not set" in \
        capsys.readouterr().err
    assert main(["config", "check", str(config)]) == 0
    out = capsys.readouterr()
    assert "1 peer(s)" in out.out and "needs the environment variable CERT_FR_PASSWORD" in out.err
    monkeypatch.setenv("CERT_FR_PASSWORD", "set")
    assert main(["config", "check", str(config)]) == 0
    assert "warning" not in capsys.readouterr().err
    build_app(load_settings(config))  # the process environment by default


def test_exchange_peers_prints_health_from_disk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with config_hub(hub_config(tmp_path / "a", peer_account("hub-b", can_read=("inbox",)))) as a:
        config = puller_config(tmp_path / "b", a)
        assert main(["peers", "--config", str(config)]) == 0  # before the hub ever ran
        assert f"hub-a/{INBOX}  CERT-A (DE)  state=new" in capsys.readouterr().out
        post_all(a, indicators(0, 20))
        with config_hub(config, env={"HUB_A_PASSWORD": PEER_PASSWORD}) as b:
            wait_for(lambda: stored_count(b.data_dir, INBOX) == 20, what="20 objects pulled")
            assert main(["peers", "--config", str(config)]) == 0  # while it runs
            out = capsys.readouterr().out
            assert "state=ok" in out and "objects pulled: 20" in out
    assert main(["peers", "--config", str(config), "--json"]) == 0  # after it stopped
    [row] = json.loads(capsys.readouterr().out)
    assert (row["peer"], row["state"], row["objects_pulled"], row["error_count"]) == ("hub-a", "ok", 20, 0)
    assert row["cursor"].endswith("Z") and row["last_success"] > 0


def test_the_commented_example_peer_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "hub.toml"
    text = example.read_text()
    block = text[text.index("# [[peers]]"):]
    uncommented = "\n".join(line.removeprefix("# ").split("  #")[0] for line in block.splitlines())
    settings = parse_settings(tomllib.loads(text + "\n" + uncommented), base_dir=example.parent)
    [peer] = settings.peers
    assert (peer.id, peer.country, peer.auth.password_env, peer.agreement.max_tlp) == \
        ("cert-fr", "FR", "CERT_FR_PASSWORD", Tlp.GREEN)
    assert peer.pull_into == INBOX
