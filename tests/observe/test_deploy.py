"""The deployment files stay true: docker/compose.yaml, its hub configs and secrets agree, the Dockerfile is
slim, non-root and health-checked, and the compose deployment itself runs (as local processes, no Docker)."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from exchange.cli import main as exchange_main
from exchange.config import load_settings
from scripts.make_certs import make_ca, make_leaf
from tests.hubs import INBOX, free_port, thread_hub
from tests.observe.support import scrape, total
from tests.taxii.helpers import collection, indicator, post

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
TAXII = "application/taxii+json;version=2.1"
HUBS = ("cert-de", "cert-fr")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return loaded


def example_env() -> dict[str, str]:
    lines = (DOCKER / "example.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def mounted_config(service: dict[str, Any]) -> Path:
    """The host file the service mounts at the path its command gives to --config."""
    command = service["command"]
    target = command[command.index("--config") + 1]
    for volume in service["volumes"]:
        source, _, rest = volume.partition(":")
        if rest.split(":")[0] == target:
            return DOCKER / source
    raise AssertionError(f"nothing is mounted at {target}")


def test_compose_has_two_hubs_and_a_medallion_peer_whose_configs_check(capsys: pytest.CaptureFixture[str]) -> None:
    doc = compose()
    services = doc["services"]
    assert set(services) == {*HUBS, "medallion"}
    for name in HUBS:
        service = services[name]
        config = mounted_config(service)
        assert exchange_main(["config", "check", str(config)]) == 0, capsys.readouterr().err
        settings = load_settings(config)
        # The data volume is where the config (and the image's --data-dir) keeps the SQLite files.
        assert settings.hub.data_dir == Path("/data")
        assert any(v.split(":")[1] == "/data" and v.split(":")[0] in doc["volumes"] for v in service["volumes"])
        # Every secret a peer needs is given to the container, from the environment (never a literal).
        for peer in settings.peers:
            for variable in filter(None, (peer.auth.password_env, peer.auth.token_env)):
                assert service["environment"][variable].startswith(f"${{{variable}:?"), (name, variable)
                assert variable in example_env()
            host = re.match(r"https?://([^:/]+)", peer.api_root or "")
            assert host and host.group(1) in {s.get("hostname") for s in services.values()}, peer.api_root
        # TLS material comes from the read-only /certs mount; the healthcheck speaks https then.
        assert settings.hub.tls is not None and str(settings.hub.tls.cert).startswith("/certs/")
        assert "./certs:/certs:ro" in service["volumes"]
        assert service["healthcheck"]["test"][-1] == "https://127.0.0.1:9000/healthz"
    assert services["medallion"]["environment"]["MEDALLION_PASSWORD"].startswith("${MEDALLION_PASSWORD:?")


def test_the_dockerfile_is_slim_non_root_and_health_checked() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.MULTILINE)
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert "exchange.observe.probe" in text and "/healthz" in text
    probe = subprocess.run([sys.executable, "-m", "exchange.observe.probe", f"http://127.0.0.1:{free_port()}/healthz"],
                           capture_output=True, timeout=30)
    assert probe.returncode == 1  # nothing listens: unhealthy, not a crash


@pytest.mark.slow
def test_the_compose_deployment_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docker/compose.yaml rehearsed without Docker: the same configs, certificates made by scripts/make_certs.py,
    the example secrets and docker/medallion/start.py; only host names, ports and paths are local."""
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # they would override the session's `verify`
        monkeypatch.delenv(variable, raising=False)
    certs = tmp_path / "certs"
    ca = make_ca(certs)
    for name in HUBS:
        make_leaf(certs, ca, name)
    ports = {name: free_port() for name in (*HUBS, "medallion")}
    urls = {name: f"https://127.0.0.1:{ports[name]}" for name in HUBS}
    urls["medallion"] = f"http://127.0.0.1:{ports['medallion']}"
    env = {**os.environ, **example_env()}
    with Processes(tmp_path) as running:
        running.start("medallion", [sys.executable, str(DOCKER / "medallion" / "start.py")],
                      env | {"MEDALLION_HOST": "127.0.0.1", "MEDALLION_PORT": str(ports["medallion"]),
                             "MEDALLION_BASE_URL": urls["medallion"]})
        for name in HUBS:
            config = _local_config(name, tmp_path, certs, urls)
            running.start(name, [sys.executable, "-m", "exchange", "serve", "--config", str(config),
                                 "--port", str(ports[name]), "--log-level", "warning"], env)
        session = requests.Session()
        session.verify = str(ca.cert)
        for name in HUBS:
            running.wait(lambda n=name: session.get(f"{urls[n]}/readyz", timeout=5).status_code == 200,
                         f"{name} ready")
        resp = session.post(f"{urls['cert-de']}/api/collections/inbox/objects/", timeout=10,
                            auth=("analyst", "analyst-de-example"), headers={"Content-Type": TAXII, "Accept": TAXII},
                            json={"objects": [_indicator("worm-spreader.example")]})
        assert resp.status_code == 202, resp.text
        # CERT-DE's canonical indicator reaches CERT-FR over mutual TLS; CERT-NL's seed reaches both.
        fr_inbox = f"{urls['cert-fr']}/api/collections/inbox/objects/"
        running.wait(lambda: "worm-spreader.example" in session.get(
            fr_inbox, auth=("analyst", "analyst-fr-example"), headers={"Accept": TAXII}, timeout=10).text,
            "CERT-DE's indicator at CERT-FR")
        token = {"Authorization": f"Bearer {example_env()['METRICS_TOKEN']}"}
        for name in HUBS:
            running.wait(lambda n=name: total(scrape(urls[n], session=session, headers=token),
                                              "exchange_objects_in_total", source="peer:cert-nl", outcome="stored"),
                         f"medallion's seed at {name}")
        assert session.get(f"{urls['cert-de']}/metrics", timeout=10).status_code == 401


def _local_config(name: str, tmp_path: Path, certs: Path, urls: dict[str, str]) -> Path:
    """The compose config of a hub with local paths and addresses (and quick polls)."""
    text = (DOCKER / f"{name}.toml").read_text()
    text = text.replace('data_dir = "/data"', f'data_dir = "{tmp_path / name / "data"}"')
    text = text.replace('"/certs/', f'"{certs}/')
    for host, url in urls.items():
        text = text.replace(f"http://{host}:5000" if host == "medallion" else f"https://{host}:9000", url)
    text = re.sub(r"poll_interval = \d+", "poll_interval = 0.3", text)
    path = tmp_path / name / "hub.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    local = load_settings(path)
    assert all((p.api_root or "").startswith(tuple(urls.values())) for p in local.peers)
    assert local.hub.tls is not None and local.hub.tls.cert.is_relative_to(certs)
    return path


def _indicator(domain: str) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": "indicator--1f0e2d3c-4b5a-4978-8695-a4b3c2d1e0f9",
            "created": "2026-02-01T10:00:00.000Z", "modified": "2026-02-01T10:00:00.000Z",
            "pattern": f"[domain-name:value = '{domain}']", "pattern_type": "stix",
            "valid_from": "2026-02-01T10:00:00Z"}


class Processes:
    """Subprocesses of one test, each in its own process group, logs in tmp_path/<name>/output.log; all stopped
    (SIGTERM, then SIGKILL) on exit. `wait` fails at once, with the log, when one of them has died."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp = tmp_path
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> "Processes":
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self._procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self._procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

    def _log(self, name: str) -> Path:
        return self._tmp / name / "output.log"

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self._log(name).parent.mkdir(parents=True, exist_ok=True)
        with self._log(name).open("wb") as log:
            self._procs[name] = subprocess.Popen(argv, cwd=self._log(name).parent, env=env, stdout=log,
                                                 stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, check: Callable[[], object], what: str, within: float = 45.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    tail = self._log(name).read_text(errors="replace")[-3000:]
                    raise AssertionError(f"{name} exited with {proc.returncode} while waiting for {what}:\n{tail}")
            try:
                if check():
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")


def test_an_online_backup_restores_into_a_working_hub(tmp_path: Path) -> None:
    """scripts/backup_sqlite.py piped into python as docs/deploy.md shows, while the hub runs."""
    (tmp_path / "live").mkdir()
    with thread_hub(tmp_path / "live") as hub:
        post(collection(hub), [indicator(n) for n in range(5)])
        with (ROOT / "scripts" / "backup_sqlite.py").open("rb") as script:
            done = subprocess.run([sys.executable, "-", str(hub.data_dir), str(tmp_path / "backup")], stdin=script,
                                  capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert [Path(line).name for line in done.stdout.split()] == ["journal.db", "store.db", "audit.db",
                                                                      "cursor.key"]
    config = tmp_path / "live" / "hub.toml"
    assert exchange_main(["audit", "verify", "--config", str(config), "--data-dir", str(tmp_path / "backup")]) == 0
    restored = tmp_path / "restored"
    shutil.copytree(tmp_path / "backup", restored / "data")
    with thread_hub(restored) as hub:
        assert len(collection(hub, collection_id=INBOX).get_objects()["objects"]) == 5
