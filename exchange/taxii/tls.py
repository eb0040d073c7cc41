"""TLS contexts for the HTTP layer: the hub's HTTPS listener and the client side towards each peer.

Built once at startup from the config; a file that cannot be read is a ConfigError naming the key.
"""

import ssl
from collections.abc import Callable
from pathlib import Path

from exchange.config import Settings, TlsSettings
from exchange.config_peers import PeerSettings, PeerTls
from exchange.errors import ConfigError


def _load(key: str, action: str, load: Callable[..., object], *paths: Path) -> None:
    try:
        load(*paths)
    except (OSError, ssl.SSLError) as exc:
        shown = " and ".join(str(p) for p in paths)
        raise ConfigError(f"config key '{key}': cannot {action} {shown}: {exc}") from None


def server_context(tls: TlsSettings) -> ssl.SSLContext:
    """HTTPS for `exchange serve`: TLS 1.2 or newer, Python's secure defaults for ciphers."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load("hub.tls.cert", "load the certificate and key", ctx.load_cert_chain, tls.cert, tls.key)
    if tls.client_ca is not None:
        _load("hub.tls.client_ca", "load client CA certificates from", ctx.load_verify_locations, tls.client_ca)
        # OPTIONAL still refuses a certificate that does not verify; it only lets clients without one through.
        ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def listener_context(settings: Settings) -> ssl.SSLContext | None:
    """The hub's listener: HTTPS when hub.tls is configured, else plain HTTP (None)."""
    return server_context(settings.hub.tls) if settings.hub.tls is not None else None


def client_context(tls: PeerTls, key: str = "peers[].tls") -> ssl.SSLContext | None:
    """The context for requests to one peer; None leaves aiohttp's default (system CAs, no client cert)."""
    if tls == PeerTls():
        return None
    if tls.ca_file is not None:
        # Only the given CA, not the system store as well: a private federation CA stays the one trust anchor.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate and the host name
        _load(f"{key}.ca_file", "load CA certificates from", ctx.load_verify_locations, tls.ca_file)
    else:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert is not None and tls.key is not None:
        _load(f"{key}.cert", "load the client certificate and key", ctx.load_cert_chain, tls.cert, tls.key)
    return ctx


def peer_contexts(peers: tuple[PeerSettings, ...]) -> dict[str, ssl.SSLContext | None]:
    """Per peer id, at startup, so a missing CA file stops the hub before anything runs."""
    return {p.id: client_context(p.tls, f"peers[{i}].tls") for i, p in enumerate(peers)}
