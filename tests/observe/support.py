"""Helpers of the observability tests: configs with extra [hub] keys, Prometheus scrapes, test certificates."""

from dataclasses import dataclass
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from scripts.make_certs import Issued, make_ca, make_leaf
from tests.hubs import write_config

Sample = tuple[str, tuple[tuple[str, str], ...]]  # (sample name, sorted labels)


def config_with(directory: Path, hub_lines: str = "", extra: str = "") -> Path:
    """The standard test hub config (tests/hubs.py) with lines added to [hub] and TOML appended."""
    directory.mkdir(parents=True, exist_ok=True)
    path = write_config(directory)
    text = path.read_text()
    assert text.count("[hub]\n") == 1
    path.write_text(text.replace("[hub]\n", "[hub]\n" + hub_lines.strip() + "\n", 1) + extra)
    return path


def scrape(base: str, *, session: requests.Session | None = None, **kwargs: object) -> dict[Sample, float]:
    """Every sample of /metrics, by (name, labels)."""
    resp = (session or requests).get(f"{base}/metrics", timeout=10, **kwargs)  # type: ignore[arg-type]
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    out: dict[Sample, float] = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict[Sample, float], name: str, **labels: str) -> float:
    """One sample's value; 0 when it is absent (a counter that has not moved)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: dict[Sample, float], name: str, **labels: str) -> float:
    """The sum over every sample of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


@dataclass(frozen=True, slots=True)
class Pki:
    """A federation CA with a hub certificate and a member's client certificate, plus a stranger's CA."""

    ca: Issued
    hub: Issued
    client: Issued
    stranger_ca: Issued
    stranger: Issued  # a client certificate signed by the stranger's CA


def make_pki(directory: Path) -> Pki:
    ca = make_ca(directory, "federation CA")
    other = make_ca(directory / "other", "stranger CA")
    return Pki(ca=ca, hub=make_leaf(directory, ca, "hub"), client=make_leaf(directory, ca, "member-client"),
               stranger_ca=other, stranger=make_leaf(directory / "other", other, "stranger"))
