"""TAXII 2.1 media types and content negotiation (TAXII 2.1 section 1.6.8)."""

from exchange.errors import NotAcceptable, UnsupportedMediaType

TAXII_JSON = "application/taxii+json;version=2.1"
STIX_JSON = "application/stix+json;version=2.1"
# Collections take STIX 2.1 and 2.0 objects as posted, and serve each as its own spec version.
COLLECTION_MEDIA_TYPES = (STIX_JSON, "application/stix+json;version=2.0")


def _ranges(header: str) -> list[tuple[str, dict[str, str]]]:
    out = []
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        if not fields[0]:
            continue
        params = {}
        for f in fields[1:]:
            key, _, value = f.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        out.append((fields[0].lower(), params))
    return out


def _is_taxii21(mime: str, params: dict[str, str]) -> bool:
    # A bare application/taxii+json means "the current version" and must be served (reference servers refuse it).
    return mime == "application/taxii+json" and params.get("version", "2.1") == "2.1"


def check_accept(header: str | None) -> None:
    if not header:
        return
    for mime, params in _ranges(header):
        if params.get("q") in ("0", "0.0", "0.00", "0.000"):
            continue
        if mime in ("*/*", "application/*") or _is_taxii21(mime, params):
            return
    raise NotAcceptable(f"cannot produce any of Accept: {header!r}; this server produces {TAXII_JSON}")


def check_content_type(header: str | None) -> None:
    ranges = _ranges(header or "")
    if not header:
        raise UnsupportedMediaType(f"the request has no Content-Type; send {TAXII_JSON}")
    if not ranges or not _is_taxii21(*ranges[0]):
        raise UnsupportedMediaType(f"cannot take Content-Type {header!r}; send {TAXII_JSON}")
