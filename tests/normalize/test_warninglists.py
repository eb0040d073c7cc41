"""Warninglists: the bundled MISP lists flag known false positives; list semantics; loaders and their errors."""

import importlib.machinery
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.errors import ConfigError
from exchange.normalize.values import ValueKind, canonical
from exchange.normalize.warninglists import WarningHit, Warninglists, default_warninglists

K = ValueKind
DATA = Path(__file__).parent.parent / "data" / "warninglists"
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

# List names of pymispwarninglists 1.7.0
RESOLVERS_V4 = "List of known IPv4 public DNS resolvers"
RESOLVERS_V6 = "List of known IPv6 public DNS resolvers"
RFC1918 = "List of RFC 1918 CIDR blocks"
RFC5735 = "List of RFC 5735 CIDR blocks"
RFC6761 = "List of RFC 6761 Special-Use Domain Names"
MULTICAST = "List of RFC 5771 multicast CIDR blocks"
ALEXA = "Top 1000 website from Alexa"
GOOGLE = "List of known google domains"
MAJESTIC = "Top 10000 websites from Majestic Million"
EMPTY_HASHES = "List of known hashes for empty files"
SHORTENERS = "List of known URL Shorteners domains"
CONTACTS = "Common contact e-mail addresses"
DISPOSABLE = "List of disposable email domains"


@pytest.fixture(scope="module")
def bundled() -> Warninglists:
    return default_warninglists()


def names(hits: tuple[WarningHit, ...]) -> set[str]:
    return {hit.list_name for hit in hits}


def warninglist(name: str, list_type: str, entries: list[str], *attributes: str) -> dict[str, Any]:
    return {"name": name, "type": list_type, "list": entries, "matching_attributes": list(attributes),
            "version": 1, "description": "test list"}


@pytest.mark.parametrize(("kind", "value", "expected"), [
    (K.IPV4, "8.8.8.8", RESOLVERS_V4),
    (K.IPV4, "1.1.1.1", RESOLVERS_V4),
    (K.IPV6, "2001:4860:4860::8888", RESOLVERS_V6),
    (K.IPV4, "10.1.2.3", RFC1918),
    (K.IPV4, "192.168.0.1", RFC1918),
    (K.IPV4_CIDR, "172.16.8.0/24", RFC1918),
    (K.IPV4, "203.0.113.77", RFC5735),  # the documentation range is itself listed: not a safe "miss" example
    (K.DOMAIN, "google.com", ALEXA),
    (K.DOMAIN, "www.google.com", ALEXA),  # a hostname list: every name under a listed one
    (K.DOMAIN, "www.google.com", GOOGLE),
    (K.URL, "https://www.google.com/search?q=indicator", ALEXA),  # the URL's host
    (K.URL, "https://bit.ly/3xYzAbc", SHORTENERS),
    (K.MD5, EMPTY_MD5, EMPTY_HASHES),
    (K.SHA256, EMPTY_SHA256, EMPTY_HASHES),
    (K.EMAIL, "abuse@example.org", CONTACTS),  # a regex list
    (K.EMAIL, "someone@mailinator.com", DISPOSABLE),  # a substring list
])
def test_bundled_lists_flag_known_false_positives(bundled: Warninglists, kind: ValueKind, value: str,
                                                  expected: str) -> None:
    assert canonical(kind, value) == (kind, value)
    assert expected in names(bundled.match(kind, value))


@pytest.mark.parametrize(("kind", "value"), [
    (K.IPV4, "91.214.124.143"),
    (K.IPV6, "2a01:dead:beef::77"),
    (K.IPV4_CIDR, "10.0.0.0/7"),  # wider than 10.0.0.0/8: not inside any listed block
    (K.DOMAIN, "evil-c2-domain.example"),
    (K.DOMAIN, "qzv7-c2-relay.top"),
    (K.URL, "http://qzv7-c2-relay.top/gate.php?id=Abc"),
    (K.EMAIL, "j.doe@qzv7-c2-relay.top"),
    (K.MD5, "9e107d9d372bb6826bd81d3542a419d6"),
    (K.SHA256, "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"),
])
def test_malicious_looking_values_are_on_no_list(bundled: Warninglists, kind: ValueKind, value: str) -> None:
    assert bundled.match(kind, value) == ()


def test_hits_name_each_list_once_with_its_type_in_name_order(bundled: Warninglists) -> None:
    assert bundled.match(K.IPV4, "10.1.2.3") == (WarningHit(RFC1918, "cidr"), WarningHit(RFC5735, "cidr"))
    hits = bundled.match(K.DOMAIN, "www.google.com")
    assert [hit.list_name for hit in hits] == sorted(names(hits))
    assert WarningHit(ALEXA, "hostname") in hits


def test_bundled_lists_apply_only_to_the_attribute_types_they_name(bundled: Warninglists) -> None:
    # Majestic names hostname and domain, not url; the disposable e-mail list names e-mail types and domain|ip only.
    assert MAJESTIC in names(bundled.match(K.DOMAIN, "google.com"))
    assert MAJESTIC not in names(bundled.match(K.URL, "https://google.com/"))
    assert DISPOSABLE not in names(bundled.match(K.DOMAIN, "mailinator.com"))
    assert bundled.match(K.DOMAIN, "chat.hm.qzv7-c2-relay.top") == ()  # "at.hm" is a disposable-mail substring


def test_bundled_names_leave_out_lists_that_target_no_value_kind(bundled: Warninglists) -> None:
    assert {RFC1918, ALEXA, EMPTY_HASHES, CONTACTS, DISPOSABLE} <= set(bundled.names)
    assert "Unattributed phone number." not in bundled.names  # phone-number attributes only
    assert default_warninglists() is bundled


@pytest.mark.parametrize(("kind", "value"), [
    (K.IPV4, "not an address"), (K.IPV4_CIDR, "10.0.0.0/99"), (K.IPV4_CIDR, "10.0.0.0/-1"),
    (K.IPV6, "fe80::1%eth0"), (K.IPV6, "10.1.2.3"),
])
def test_values_that_are_not_canonical_match_nothing(bundled: Warninglists, kind: ValueKind, value: str) -> None:
    assert bundled.match(kind, value) == ()


def test_from_directory_reads_flat_files() -> None:
    lists = Warninglists.from_directory(DATA)
    assert set(lists.names) == {RFC1918, RFC6761, MULTICAST, EMPTY_HASHES, SHORTENERS}
    assert names(lists.match(K.IPV4, "192.168.0.1")) == {RFC1918}
    assert names(lists.match(K.IPV4, "224.0.0.251")) == {MULTICAST}
    assert names(lists.match(K.MD5, EMPTY_MD5)) == {EMPTY_HASHES}
    assert names(lists.match(K.URL, "https://bit.ly/abc")) == {SHORTENERS}
    assert names(lists.match(K.DOMAIN, "example.com")) == {RFC6761}
    assert lists.match(K.DOMAIN, "www.example.com") == ()  # a string list: exact names only


def test_from_directory_reads_the_misp_repository_layout(tmp_path: Path) -> None:
    folder = tmp_path / "lists" / "rfc1918"
    folder.mkdir(parents=True)
    (folder / "list.json").write_bytes((DATA / "rfc1918.json").read_bytes())
    lists = Warninglists.from_directory(tmp_path / "lists")
    assert lists.names == (RFC1918,)
    assert names(lists.match(K.IPV4, "10.0.0.1")) == {RFC1918}


def test_hostname_lists_match_a_name_and_every_name_under_it() -> None:
    lists = Warninglists([warninglist("hosts", "hostname", ["Example.NET.", ".sub.example.org", "bücher.example"],
                                      "domain", "url")])
    for kind, value in [(K.DOMAIN, "example.net"), (K.DOMAIN, "a.b.example.net"), (K.DOMAIN, "sub.example.org"),
                        (K.DOMAIN, "xn--bcher-kva.example"), (K.URL, "https://user@a.example.net:8443/x")]:
        assert lists.match(kind, value) == (WarningHit("hosts", "hostname"),), value
    for kind, value in [(K.DOMAIN, "badexample.net"), (K.DOMAIN, "example.net.evil.example"),
                        (K.DOMAIN, "example.org"), (K.URL, "https://evil.example/?next=example.net"),
                        (K.EMAIL, "someone@example.net")]:  # the list names no e-mail type
        assert lists.match(kind, value) == (), value


def test_string_lists_match_exactly_and_fold_case() -> None:
    lists = Warninglists([warninglist("names", "string", ["example.net", "COM", ".example.org"], "domain")])
    assert names(lists.match(K.DOMAIN, "example.net")) == {"names"}
    assert names(lists.match(K.DOMAIN, "com")) == {"names"}
    assert lists.match(K.DOMAIN, "www.example.net") == ()
    # A leading dot means "and every name under it" (".google.ad" in the google list).
    assert names(lists.match(K.DOMAIN, "www.example.org")) == {"names"}


def test_string_lists_that_target_urls_match_whole_urls_and_hosts() -> None:
    lists = Warninglists([warninglist("urls", "string", ["HTTP://Example.net/Path", "example.com"], "url")])
    assert names(lists.match(K.URL, "http://example.net/Path")) == {"urls"}
    assert lists.match(K.URL, "http://example.net/path") == ()  # the path is case-sensitive
    assert names(lists.match(K.URL, "https://example.com/anything")) == {"urls"}
    assert lists.match(K.DOMAIN, "example.com") == ()  # the list names url only


def test_hash_lists_fold_case_and_keep_to_their_hash_types() -> None:
    lists = Warninglists([warninglist("md5 only", "string", [EMPTY_MD5.upper(), EMPTY_SHA256], "md5")])
    assert names(lists.match(K.MD5, EMPTY_MD5)) == {"md5 only"}
    assert lists.match(K.SHA256, EMPTY_SHA256) == ()


def test_cidr_lists_match_addresses_and_networks_inside_listed_blocks() -> None:
    lists = Warninglists([
        warninglist("nets", "cidr", ["192.0.2.7", "198.51.100.77/24", "2001:DB8::/32", "not a network"], "ip-src"),
    ])
    for kind, value in [(K.IPV4, "192.0.2.7"), (K.IPV4, "198.51.100.1"), (K.IPV4_CIDR, "198.51.100.128/25"),
                        (K.IPV6, "2001:db8::1"), (K.IPV6_CIDR, "2001:db8:1::/48")]:
        assert lists.match(kind, value) == (WarningHit("nets", "cidr"),), value
    for kind, value in [(K.IPV4, "192.0.2.8"), (K.IPV4_CIDR, "198.51.100.0/23"), (K.IPV6, "2001:db9::1"),
                        (K.IPV4, "0.0.0.0"), (K.IPV4, "255.255.255.255"), (K.IPV6_CIDR, "2001:db8::/31")]:
        assert lists.match(kind, value) == (), value


def test_nested_blocks_of_several_lists() -> None:
    lists = Warninglists([warninglist("wide", "cidr", ["10.0.0.0/8"], "ip-dst"),
                          warninglist("narrow", "cidr", ["10.1.0.0/16", "10.1.2.0/24"], "ip-dst")])
    assert names(lists.match(K.IPV4, "10.1.2.3")) == {"narrow", "wide"}
    assert [hit.list_name for hit in lists.match(K.IPV4, "10.1.2.3")] == ["narrow", "wide"]
    assert names(lists.match(K.IPV4, "10.2.0.1")) == {"wide"}
    assert names(lists.match(K.IPV4_CIDR, "10.0.0.0/12")) == {"wide"}
    assert names(lists.match(K.IPV4_CIDR, "10.1.0.0/20")) == {"narrow", "wide"}
    assert lists.match(K.IPV4, "11.0.0.0") == ()


def test_addresses_in_host_and_substring_lists_match_as_addresses() -> None:
    lists = Warninglists([warninglist("resolver names", "hostname", ["8.8.4.4", "dns.example"], "domain|ip"),
                          warninglist("simulator", "substring", ["52.168.52.134", "portal.example"], "ip-src")])
    assert names(lists.match(K.IPV4, "8.8.4.4")) == {"resolver names"}
    assert names(lists.match(K.IPV4, "52.168.52.134")) == {"simulator"}
    assert lists.match(K.IPV4, "152.168.52.134") == ()


def test_regex_lists_translate_php_patterns_and_skip_broken_ones() -> None:
    lists = Warninglists([warninglist("contacts", "regex", ["/^(abuse|noc)@/i", "/(unclosed/", "/x/q", "#\\.gov$#"],
                                      "email-src")])
    assert names(lists.match(K.EMAIL, "ABUSE@example.net")) == {"contacts"}
    assert names(lists.match(K.EMAIL, "jane@agency.gov")) == {"contacts"}
    assert lists.match(K.EMAIL, "abuse.team@example.net") == ()


@given(data=st.data())
def test_substring_lists_find_exactly_what_a_plain_scan_finds(data: st.DataObject) -> None:
    # The q-gram index (many entries; strides 1 to 3 as the shortest entry grows) and the plain scan (few entries,
    # long values) must both agree with `in`.
    shortest = data.draw(st.integers(1, 6))
    entries = data.draw(st.lists(st.text("ab.c", min_size=shortest, max_size=shortest + 5), min_size=1, max_size=80))
    value = data.draw(st.text("aAb.c@", max_size=40))
    half = len(entries) // 2
    lists = Warninglists([warninglist("first", "substring", entries[:half] or ["zz"], "email-src"),
                          warninglist("second", "substring", entries[half:], "email-dst")])
    expected = {name for name, part in [("first", entries[:half]), ("second", entries[half:])]
                if any(entry in value.lower() for entry in part)}
    assert names(lists.match(K.EMAIL, value)) == expected


def test_lists_without_matching_attributes_apply_to_every_kind() -> None:
    lists = Warninglists([{"name": "any", "type": "string", "list": ["example.net"]}])
    assert names(lists.match(K.DOMAIN, "example.net")) == {"any"}
    assert names(lists.match(K.URL, "https://example.net/")) == {"any"}


def test_names_keeps_the_chosen_lists() -> None:
    definitions = [warninglist("a", "string", ["example.net"], "domain"),
                   warninglist("b", "string", ["example.net"], "domain"),
                   warninglist("phones", "regex", ["/^555/"], "phone-number")]
    assert Warninglists(definitions).names == ("a", "b")  # phones targets no kind the hub holds
    assert names(Warninglists(definitions, names=["b"]).match(K.DOMAIN, "example.net")) == {"b"}
    with pytest.raises(ConfigError, match="no list named 'c'"):
        Warninglists(definitions, names=["b", "c"])


@pytest.mark.parametrize(("definitions", "message"), [
    ([warninglist("a", "string", []), warninglist("a", "cidr", [])], "two lists are named 'a'"),
    ([warninglist("a", "bloom", ["x"])], "unknown type 'bloom'"),
    ([{"name": "a", "type": "string"}], "lacks a name or a list"),
    ([["not", "a", "definition"]], "lacks a name or a list"),
])
def test_bad_definitions_are_config_errors(definitions: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Warninglists(definitions)


def test_from_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no \*\.json"):
        Warninglists.from_directory(tmp_path)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"cannot read .*broken\.json"):
        Warninglists.from_directory(tmp_path)


def test_from_package_without_the_package_or_its_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pymispwarninglists is not installed"):
        Warninglists.from_package()
    origin = tmp_path / "pymispwarninglists" / "__init__.py"
    spec = importlib.machinery.ModuleSpec("pymispwarninglists", None, origin=str(origin))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(ConfigError, match="ships no list data"):
        Warninglists.from_package()


def test_fixture_files_are_misp_warninglists() -> None:
    for file in DATA.glob("*.json"):
        definition = json.loads(file.read_text())
        assert {"name", "type", "list", "matching_attributes"} <= definition.keys(), file
