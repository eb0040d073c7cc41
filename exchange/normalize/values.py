"""Normalize stage: one canonical text per indicator value (IP, CIDR, domain, URL, e-mail, hash).

Pure functions; a value that cannot be canonicalized raises InvalidObject with the reason.
"""

import ipaddress
import re
import socket
from collections.abc import Callable
from enum import StrEnum
from functools import partial

import idna

from exchange.errors import InvalidObject


class ValueKind(StrEnum):
    IPV4 = "ipv4"
    IPV6 = "ipv6"
    IPV4_CIDR = "ipv4-cidr"
    IPV6_CIDR = "ipv6-cidr"
    DOMAIN = "domain"
    URL = "url"
    EMAIL = "email"
    MD5 = "md5"
    SHA1 = "sha1"
    SHA256 = "sha256"
    SHA512 = "sha512"


# The STIX 2.1 hash-algorithm-ov spellings (section 10.7); the -224/-384 lengths are not in the vocabulary but are
# spelled the same way so that a peer's "sha384" and "SHA-384" still meet.
HASH_NAMES: dict[ValueKind, str] = {
    ValueKind.MD5: "MD5",
    ValueKind.SHA1: "SHA-1",
    ValueKind.SHA256: "SHA-256",
    ValueKind.SHA512: "SHA-512",
}
_HEX_HASH_LENGTHS = {
    "MD5": 32, "SHA-1": 40, "SHA-224": 56, "SHA-256": 64, "SHA-384": 96, "SHA-512": 128,
    "SHA3-224": 56, "SHA3-256": 64, "SHA3-384": 96, "SHA3-512": 128,
}  # fmt: skip
_HASH_NAME_BY_SQUASHED = {
    name.replace("-", ""): name for name in (*_HEX_HASH_LENGTHS, "SSDEEP", "TLSH")
}
_HASH_KIND_BY_NAME = {name: kind for kind, name in HASH_NAMES.items()}
_HASH_KIND_BY_LENGTH = {_HEX_HASH_LENGTHS[name]: kind for kind, name in HASH_NAMES.items()}
_IP_KINDS = {4: (ValueKind.IPV4, ValueKind.IPV4_CIDR), 6: (ValueKind.IPV6, ValueKind.IPV6_CIDR)}
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_HEX = re.compile(r"[0-9a-f]+")

# LDH labels plus "_": underscores are not valid in host names but are common in real DNS names (_dmarc, SRV
# records) and in malicious domains, so rejecting them would drop real indicators. RFC 1035 section 2.3.4 limits.
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NAME = re.compile(rf"{_LABEL.pattern}(?:\.{_LABEL.pattern})*")  # every label a _LABEL: the common case, at once
# Dotted quads exactly as ipaddress prints them (0-255, no leading zeros): such text is already canonical.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_TEXT = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_DOTTED_DIGITS = re.compile(r"[0-9.]+")  # all that IPv4Address can read: anything else is not an IPv4 address
_MAX_DOMAIN = 253
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_AUTHORITY_END = re.compile(r"[/?#]")
# Default ports of the WHATWG URL standard's special schemes (section 4.1); file has no port.
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}
_PUBLIC_TLD = re.compile(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}")

# Last labels that, in an untyped IOC list, are file names rather than domains. Nearly all are not delegated TLDs,
# so a real domain is never lost; "zip" and "mov" ARE gTLDs, listed anyway because "invoice.zip" in a text feed
# is overwhelmingly a file. Typed inputs (STIX, MISP, CSV with a type column) never go through this guess.
_FILE_EXTENSIONS = frozenset({
    "apk", "asp", "aspx", "bat", "bmp", "chm", "class", "cmd", "cpl", "csv", "dat", "dll", "dmg", "doc", "docm",
    "docx", "dotm", "drv", "dylib", "elf", "eml", "exe", "gif", "gz", "hta", "htm", "html", "img", "ini", "iso",
    "jar", "jpeg", "jpg", "js", "jse", "jsp", "lnk", "log", "mov", "msg", "msi", "ocx", "ods", "odt", "pdf", "php",
    "png", "ppt", "pptm", "pptx", "rar", "rtf", "scr", "svg", "sys", "tar", "tgz", "tmp", "txt", "vbe", "vbs",
    "vhd", "vhdx", "wsf", "xls", "xlsb", "xlsm", "xlsx", "xml", "xz", "zip",
})  # fmt: skip


def quoted(text: str, limit: int = 80) -> str:
    """repr() of `text`, cut to its first `limit` characters and '…' when longer: rejects quote what they refuse,
    and a value can be a whole multi-megabyte line of a feed."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "…"


def normalize_value(kind: ValueKind, raw: str) -> str:
    """The canonical text of `raw` read as `kind`; a /32 or /128 CIDR comes back as the bare host."""
    return canonical(kind, raw)[1]


def canonical(kind: ValueKind, raw: str) -> tuple[ValueKind, str]:
    """The canonical (kind, text) of `raw`: the kind changes when a CIDR is a single host, or an IP is a network."""
    value = raw.strip()
    if not value:
        raise InvalidObject(f"empty {kind} value")
    match kind:
        case ValueKind.IPV4 | ValueKind.IPV4_CIDR:
            return _canonical_ip(value, 4)
        case ValueKind.IPV6 | ValueKind.IPV6_CIDR:
            return _canonical_ip(value, 6)
        case ValueKind.DOMAIN:
            return kind, normalize_domain(value)
        case ValueKind.URL:
            return kind, _normalize_url(value)
        case ValueKind.EMAIL:
            return kind, _normalize_email(value)
    return kind, normalize_hash(HASH_NAMES[kind], value)


def canonical_hash_name(name: str) -> str:
    """The STIX spelling of a hash algorithm name ('sha256', 'SHA256', 'sha-256' -> 'SHA-256'); unknown names
    (custom hashes are allowed by STIX 2.1 section 2.7) are kept as given."""
    squashed = name.upper().replace("-", "").replace("_", "")
    return _HASH_NAME_BY_SQUASHED.get(squashed, name)


def hash_kind(name: str) -> ValueKind | None:
    """The ValueKind of a hash algorithm name in any spelling, if it is one of the four the hub types."""
    return _HASH_KIND_BY_NAME.get(canonical_hash_name(name))


def normalize_hash(name: str, raw: str) -> str:
    """Hex digests lower-case and length-checked; fuzzy hashes (SSDEEP, TLSH) and custom hashes untouched."""
    return _hash_text(canonical_hash_name(name), raw)


def value_normalizer(kind: ValueKind) -> Callable[[str], str]:
    """normalize_value(kind, ·) as one function: the common spellings of each kind in a single call, everything
    else (CIDRs, errors, IDNs) through normalize_value itself, so the two never differ."""
    return _NORMALIZERS.get(kind) or partial(normalize_value, kind)


def hash_normalizer(name: str) -> Callable[[str], str]:
    """normalize_hash(name, ·) for a name canonical_hash_name has already spelled."""
    return partial(_hash_text, name)


def _ipv4_text(raw: str) -> str:
    value = raw.strip().removesuffix("/32")
    return value if _IPV4_TEXT.fullmatch(value) else normalize_value(ValueKind.IPV4, raw)


def _ipv6_text(raw: str) -> str:
    text = _ipv6_host_text(raw.strip().removesuffix("/128"))
    return text if text is not None else normalize_value(ValueKind.IPV6, raw)


def _domain_text(raw: str) -> str:
    value = raw.strip()  # before normalize_domain, as canonical() does: its messages quote the stripped value
    return normalize_domain(value) if value else normalize_value(ValueKind.DOMAIN, raw)


def _url_text(raw: str) -> str:
    value = raw.strip()
    return _normalize_url(value) if value else normalize_value(ValueKind.URL, raw)


_NORMALIZERS: dict[ValueKind, Callable[[str], str]] = {
    ValueKind.IPV4: _ipv4_text, ValueKind.IPV6: _ipv6_text, ValueKind.DOMAIN: _domain_text, ValueKind.URL: _url_text,
}


def _hash_text(name: str, raw: str) -> str:
    length = _HEX_HASH_LENGTHS.get(name)
    value = raw.strip()
    if length is None:
        return value
    digest = value.lower()
    if not _HEX.fullmatch(digest):
        raise InvalidObject(f"{name} hash {quoted(raw)} is not hexadecimal")
    if len(digest) != length:
        raise InvalidObject(f"{name} hash must have {length} hex digits, {quoted(raw)} has {len(digest)}")
    return digest


def _canonical_ip(value: str, version: int) -> tuple[ValueKind, str]:
    if version == 4 and _IPV4_TEXT.fullmatch(value.removesuffix("/32")):
        return ValueKind.IPV4, value.removesuffix("/32")  # the common case, without ipaddress objects
    if version == 6 and (text := _ipv6_host_text(value.removesuffix("/128"))) is not None:
        return ValueKind.IPV6, text
    host_kind, net_kind = _IP_KINDS[version]
    try:
        net, addr = _parse_ip(value)
    except ValueError as exc:
        raise InvalidObject(f"{quoted(value)} is not an IPv{version} address or CIDR: {exc}") from None
    if addr.version != version:
        raise InvalidObject(f"{quoted(value)} is an IPv{addr.version} value, not IPv{version}")
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id is not None:
        raise InvalidObject(f"{quoted(value)} carries an IPv6 zone id, which means nothing outside one host")
    if net is None or net.prefixlen == net.max_prefixlen:
        return host_kind, _address_text(addr)
    # strict=False masked the host bits: 10.1.2.3/8 names the network 10.0.0.0/8 (STIX 2.1 section 6.4.1).
    return net_kind, f"{_address_text(addr)}/{net.prefixlen}"


def _ipv6_host_text(value: str) -> str | None:
    """RFC 5952 text of a plain IPv6 address through the C library, ~10x cheaper than ipaddress; None for what
    ipaddress must judge. inet_ntop spells the first longest run of two or more zero groups as "::", lower-case,
    without leading zeros, exactly as ipaddress does, except for addresses whose first 80 bits are zero, which it
    writes with an embedded IPv4 part (::ffff:1.2.3.4, ::1.2.3.4): those take the ipaddress route, and a test
    holds the two routes to the same text."""
    try:
        packed = socket.inet_pton(socket.AF_INET6, value)
    except (OSError, ValueError):  # zone ids, CIDRs, junk: ipaddress parses them or says what is wrong
        return None
    if packed.startswith(_TEN_ZERO_BYTES):
        return None
    return socket.inet_ntop(socket.AF_INET6, packed)


_TEN_ZERO_BYTES = bytes(10)


def _parse_ip(value: str) -> tuple[_IPNetwork | None, _IPAddress]:
    if ":" in value:  # never IPv4: what ip_network and ip_address return, without their failed IPv4 attempt
        try:
            net6 = ipaddress.IPv6Network(value, strict=False) if "/" in value else None
            return net6, net6.network_address if net6 is not None else ipaddress.IPv6Address(value)
        except ValueError:
            pass  # the generic functions' message says what is wrong
    net = ipaddress.ip_network(value, strict=False) if "/" in value else None
    return net, net.network_address if net is not None else ipaddress.ip_address(value)


def _address_text(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    # RFC 5952 text. Python < 3.13 prints IPv4-mapped addresses as ::ffff:102:304 and 3.13 as ::ffff:1.2.3.4
    # (RFC 5952 section 5); ids hash this text, so it is spelled out here rather than left to the runtime.
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return f"::ffff:{addr.ipv4_mapped}"
    return str(addr)


def normalize_domain(raw: str) -> str:
    """Lower-case A-labels, one trailing dot dropped, every label checked (RFC 1035 lengths, LDH plus '_')."""
    name = raw.strip()
    if name.isascii():
        name = name.lower()
        fast = name.removesuffix(".")
        if _NAME.fullmatch(fast) and len(fast) <= _MAX_DOMAIN and not fast.rpartition(".")[2].isdigit():
            return fast  # what the label-by-label checks below return for it, checked in one regex
    else:
        try:  # UTS 46 mapping: case folding, NFC, full-width dots (IDNA 2008 as browsers apply it)
            name = idna.uts46_remap(name, std3_rules=False, transitional=False)
        except idna.IDNAError as exc:
            raise InvalidObject(f"domain {quoted(raw)}: {exc}") from None
    name = name.removesuffix(".")
    labels = [_a_label(label, raw) for label in name.split(".")]
    name = ".".join(labels)
    if len(name) > _MAX_DOMAIN:
        raise InvalidObject(f"domain {quoted(raw)} is longer than {_MAX_DOMAIN} characters")
    if labels[-1].isdigit():
        # RFC 3696 section 2: a top-level label is never all-numeric; such a "domain" is an IP address or junk.
        raise InvalidObject(f"domain {quoted(raw)} has an all-numeric top-level label")
    return name


def _a_label(label: str, raw: str) -> str:
    if not label.isascii():
        try:
            label = idna.alabel(label).decode("ascii")
        except idna.IDNAError:
            # IDNA 2008 refuses symbols such as emoji that IDNA 2003 allowed and that live on in registered names
            # (xn--ls8h.la); Python's own codec implements IDNA 2003 and is the fallback for those.
            try:
                label = label.encode("idna").decode("ascii").lower()
            except UnicodeError as exc:
                raise InvalidObject(f"domain {quoted(raw)}: label {quoted(label)} is not a valid IDN label: "
                                    f"{exc}") from None
    if not label:
        raise InvalidObject(f"domain {quoted(raw)} has an empty label")
    if not _LABEL.fullmatch(label):
        raise InvalidObject(f"domain {quoted(raw)}: label {quoted(label)} must be 1-63 letters, digits, '-' or '_', "
                            "not starting or ending with '-'")
    return label


def _normalize_url(raw: str) -> str:
    """scheme://[userinfo@]host[:port] canonicalized; everything from the path on is kept byte for byte, because
    percent-encoding and path segments are significant to the server that serves them."""
    match = _SCHEME.match(raw)
    if match is None:
        raise InvalidObject(f"URL {quoted(raw)} does not start with scheme:// (STIX 2.1 section 6.13 needs RFC 3986 "
                            "URLs)")
    scheme = match.group(1).lower()
    rest = raw[match.end():]
    end = found.start() if (found := _AUTHORITY_END.search(rest)) else len(rest)
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hostport = authority.rpartition("@")
    host, port = _split_port(hostport, raw)
    if not host and scheme != "file":
        raise InvalidObject(f"URL {quoted(raw)} has no host")
    host = _url_host(host, raw) if host else ""
    if port is not None and port == _DEFAULT_PORTS.get(scheme):
        port = None
    if scheme in _DEFAULT_PORTS and not tail.startswith("/"):
        # RFC 3986 section 6.2.3: for http(s) and the other special schemes an empty path and "/" are the same
        # resource (http://example.com == http://example.com/); other schemes keep what they were given.
        tail = "/" + tail
    port_text = "" if port is None else f":{port}"
    return f"{scheme}://{userinfo}{at}{host}{port_text}{tail}"


def _split_port(hostport: str, raw: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        close = hostport.find("]")
        host, after = hostport[: close + 1], hostport[close + 1 :]
        if close < 0 or (after and not after.startswith(":")):
            raise InvalidObject(f"URL {quoted(raw)} has a malformed [IPv6] host")
        port_text = after[1:] if after else ""
    else:
        host, _, port_text = hostport.partition(":")
    if not port_text:
        return host, None  # "host:" with an empty port means the default port (RFC 3986 section 3.2.3)
    if not port_text.isdigit() or not port_text.isascii() or int(port_text) > 65535:
        raise InvalidObject(f"URL {quoted(raw)} has an invalid port {quoted(port_text)}")
    return host, int(port_text)


def _url_host(host: str, raw: str) -> str:
    if host.startswith("["):
        return f"[{_canonical_ip(host[1:-1], 6)[1]}]"
    if _IPV4_TEXT.fullmatch(host):
        return host
    if not _DOTTED_DIGITS.fullmatch(host):
        return normalize_domain(host)  # what the IPv4Address attempt below falls back to, without its exception
    try:
        addr = ipaddress.IPv4Address(host)
    except ValueError:
        return normalize_domain(host)
    return str(addr)


def _normalize_email(raw: str) -> str:
    # The local part is case-sensitive by RFC 5321 section 2.4, so only the domain is folded.
    local, at, domain = raw.rpartition("@")
    if not at or not local or not domain:
        raise InvalidObject(f"e-mail address {quoted(raw)} needs local@domain")
    if any(c.isspace() for c in local):
        raise InvalidObject(f"e-mail address {quoted(raw)} has white space in its local part")
    return f"{local}@{normalize_domain(domain)}"


def infer_kind(raw: str) -> ValueKind | None:
    """Guess the kind of an untyped value from a CSV or text list by its shape; None when nothing fits."""
    value = raw.strip()
    if not value or any(c.isspace() for c in value):
        return None
    if _SCHEME.match(value):
        return ValueKind.URL
    if "/" in value:
        return _ip_kind(value, network=True)
    if (kind := _ip_kind(value, network=False)) is not None:
        return kind
    if _HEX.fullmatch(value.lower()):
        return _HASH_KIND_BY_LENGTH.get(len(value))
    if "@" in value:
        local, _, domain = value.rpartition("@")
        return ValueKind.EMAIL if local and _looks_like_domain(domain) else None
    return ValueKind.DOMAIN if _looks_like_domain(value) else None


def _ip_kind(value: str, *, network: bool) -> ValueKind | None:
    try:
        if network:
            net = ipaddress.ip_network(value, strict=False)
            return ValueKind.IPV4_CIDR if net.version == 4 else ValueKind.IPV6_CIDR
        addr = ipaddress.ip_address(value)
    except ValueError:
        return None
    return ValueKind.IPV4 if addr.version == 4 else ValueKind.IPV6


def _looks_like_domain(value: str) -> bool:
    # At least two labels and a TLD that could be delegated (letters, or an IDN A-label), not a file extension.
    if "." not in value.rstrip("."):
        return False
    try:
        name = normalize_domain(value)
    except InvalidObject:
        return False
    tld = name.rpartition(".")[2]
    return tld not in _FILE_EXTENSIONS and _PUBLIC_TLD.fullmatch(tld) is not None
