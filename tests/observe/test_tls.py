"""TLS: `exchange serve` over HTTPS with a certificate the test makes, optional and required client
certificates, and peers with a private CA and a client certificate (mutual TLS between hubs)."""

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from taxii2client.v21 import Server

from exchange.app import build_app
from exchange.config import load_settings
from exchange.errors import ConfigError
from exchange.taxii.tls import listener_context
from tests.hubs import INBOX, PASSWORDS, Hub, serve_in_thread
from tests.observe.support import Pki, config_with, make_pki
from tests.peering import (
    PEER_PASSWORD,
    health,
    hub_config,
    indicators,
    peer_account,
    peer_block,
    stored_count,
    wait_for,
)

REFUSED = (requests.exceptions.SSLError, requests.exceptions.ConnectionError)
ALICE = {"user": "alice", "password": PASSWORDS["alice"]}


@pytest.fixture(autouse=True)
def _verify_is_what_the_test_says(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets these variables override a session's `verify` (taxii2-client sets it there).
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_lines(pki: Pki, *, client_ca: bool = False, required: bool = False) -> str:
    fields = [f'cert = "{pki.hub.cert}"', f'key = "{pki.hub.key}"']
    if client_ca:
        fields.append(f'client_ca = "{pki.ca.cert}"')
    if required:
        fields.append("require_client_cert = true")
    return "tls = { " + ", ".join(fields) + " }"


@pytest.fixture
def tls_hub(tmp_path: Path, pki: Pki) -> Iterator[Hub]:
    with serve_in_thread(config_with(tmp_path, tls_lines(pki))) as hub:
        yield hub


def discovery_title(hub: Hub, pki: Pki, cert: tuple[str, str] | None = None) -> str:
    server = Server(f"{hub.base}/taxii2/", verify=str(pki.ca.cert), cert=cert, **ALICE)
    return str(server.title)


def pair(issued: object) -> tuple[str, str]:
    return str(issued.cert), str(issued.key)  # type: ignore[attr-defined]


def test_taxii_over_https_with_a_certificate_the_client_trusts(tls_hub: Hub, pki: Pki) -> None:
    assert tls_hub.base.startswith("https://127.0.0.1:")
    assert discovery_title(tls_hub, pki) == "test hub"
    server = Server(f"{tls_hub.base}/taxii2/", verify=str(pki.ca.cert), **ALICE)
    assert INBOX in {c.id for c in server.default.collections}
    alive = requests.get(f"{tls_hub.base}/healthz", verify=str(pki.ca.cert), timeout=10)
    assert alive.status_code == 200


def test_plain_http_and_unknown_cas_get_nothing(tls_hub: Hub, pki: Pki) -> None:
    with pytest.raises(REFUSED):
        requests.get(tls_hub.base.replace("https:", "http:") + "/taxii2/", auth=("alice", "alice-pw"), timeout=10)
    with pytest.raises(requests.exceptions.SSLError):  # the system CAs do not know the federation CA
        requests.get(f"{tls_hub.base}/taxii2/", auth=("alice", "alice-pw"), timeout=10)


def test_required_client_certificates(tmp_path: Path, pki: Pki) -> None:
    with serve_in_thread(config_with(tmp_path, tls_lines(pki, client_ca=True, required=True))) as hub:
        with pytest.raises(REFUSED):
            discovery_title(hub, pki)
        with pytest.raises(REFUSED):
            discovery_title(hub, pki, pair(pki.stranger))
        assert discovery_title(hub, pki, pair(pki.client)) == "test hub"
        # A certificate is no account: TAXII credentials are still required on top.
        no_account = requests.get(f"{hub.base}/taxii2/", verify=str(pki.ca.cert), cert=pair(pki.client), timeout=10)
        assert no_account.status_code == 401


def test_optional_client_certificates_are_verified_when_presented(tmp_path: Path, pki: Pki) -> None:
    with serve_in_thread(config_with(tmp_path, tls_lines(pki, client_ca=True))) as hub:
        assert discovery_title(hub, pki) == "test hub"
        assert discovery_title(hub, pki, pair(pki.client)) == "test hub"
        with pytest.raises(REFUSED):
            discovery_title(hub, pki, pair(pki.stranger))


def test_a_hub_pulls_from_a_peer_that_requires_mutual_tls(tmp_path: Path, pki: Pki) -> None:
    peer_a = config_with(tmp_path / "a", tls_lines(pki, client_ca=True, required=True),
                         peer_account("hub-b", can_read=("inbox",)))
    with serve_in_thread(peer_a) as a:
        post_all_tls(a, pki, 20)

        def puller(directory: Path, tls: dict[str, str]) -> Path:
            return hub_config(directory, peer_block(
                id="hub-a", name="CERT-A", country="DE", api_root=a.api, pull=[INBOX], pull_into="inbox",
                auth={"username": "hub-b", "password_env": "HUB_A_PASSWORD"}, poll_interval=0.2, timeout=5, tls=tls))

        env = {"HUB_A_PASSWORD": PEER_PASSWORD}
        full = {"ca_file": str(pki.ca.cert), "cert": str(pki.client.cert), "key": str(pki.client.key)}
        with serve_in_thread(puller(tmp_path / "b", full), env=env) as b:
            wait_for(lambda: stored_count(b.data_dir, INBOX) == 20, what="20 objects pulled over mutual TLS")
        # Without a client certificate the peer refuses the handshake: a transient error, retried with backoff.
        with serve_in_thread(puller(tmp_path / "c", {"ca_file": str(pki.ca.cert)}), env=env) as c:
            wait_for(lambda: health(c)[f"hub-a/{INBOX}"].last_error, what="a failed pull")
            assert health(c)[f"hub-a/{INBOX}"].state.value == "backing-off"
            assert stored_count(c.data_dir, INBOX) == 0


def post_all_tls(hub: Hub, pki: Pki, count: int) -> None:
    """POST `count` indicators to the inbox over https with a client certificate; wait until processed."""
    objects = indicators(0, count)
    resp = requests.post(hub.collection_url(INBOX) + "objects/", json={"objects": objects},
                         auth=("alice", "alice-pw"), verify=str(pki.ca.cert), cert=pair(pki.client), timeout=30,
                         headers={"Content-Type": "application/taxii+json;version=2.1",
                                  "Accept": "application/taxii+json;version=2.1"})
    assert resp.status_code == 202, resp.text
    hub.call(lambda s: s.processor.wait_idle())


def test_tls_configuration_errors_name_the_key(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(ConfigError, match=r"hub\.tls\.require_client_cert"):
        load_settings(config_with(tmp_path / "a", f'tls = {{ cert = "{pki.hub.cert}", key = "{pki.hub.key}", '
                                                  "require_client_cert = true }"))
    missing = load_settings(config_with(tmp_path / "b", 'tls = { cert = "nope.pem", key = "nope-key.pem" }'))
    assert missing.hub.tls is not None and missing.hub.tls.cert == tmp_path / "b" / "nope.pem"  # relative to file
    with pytest.raises(ConfigError, match=r"'hub\.tls\.cert': cannot load the certificate and key"):
        listener_context(missing)
    wrong_key = load_settings(config_with(tmp_path / "c", f'tls = {{ cert = "{pki.hub.cert}", '
                                                          f'key = "{pki.client.key}" }}'))
    with pytest.raises(ConfigError, match=r"hub\.tls\.cert"):
        listener_context(wrong_key)
    half = peer_block(id="p", name="P", country="FR", api_root="https://p.example/api/", tls={"cert": "c.pem"})
    with pytest.raises(ConfigError, match=r"peers\[0\]\.tls': a client certificate needs both"):
        load_settings(hub_config(tmp_path / "d", half))
    no_ca = peer_block(id="p", name="P", country="FR", api_root="https://p.example/api/", pull=[INBOX],
                       tls={"ca_file": "missing-ca.pem"})
    settings = load_settings(hub_config(tmp_path / "e", no_ca))
    with pytest.raises(ConfigError, match=r"peers\[0\]\.tls\.ca_file"):
        build_app(settings, env={})


def test_the_server_context_is_tls12_or_newer(pki: Pki, tmp_path: Path) -> None:
    settings = load_settings(config_with(tmp_path, tls_lines(pki, client_ca=True)))
    ctx = listener_context(settings)
    assert ctx is not None and ctx.minimum_version >= ssl.TLSVersion.TLSv1_2 and ctx.verify_mode == ssl.CERT_OPTIONAL
