"""A container health probe: `python -m exchange.observe.probe [URL [CERT KEY]]` exits 0 when URL answers 200.

For Docker's HEALTHCHECK (docker/Dockerfile), which needs a command, not a URL. Standard library only, so it
starts fast. Over https it does not verify the certificate: it runs next to the hub on loopback and asks
whether this process answers, not who it is (the certificate names the public host, not 127.0.0.1).
CERT and KEY: a client certificate, for a hub with hub.tls.require_client_cert.
"""

import ssl
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:9000/healthz"
TIMEOUT = 5.0


def probe(url: str, cert: str | None = None, key: str | None = None) -> int:
    context = ssl._create_unverified_context() if url.startswith("https:") else None  # loopback: see above
    try:
        if context is not None and cert is not None:
            context.load_cert_chain(cert, key)
        with urllib.request.urlopen(url, timeout=TIMEOUT, context=context) as resp:
            return 0 if resp.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(probe(*(sys.argv[1:4] or [DEFAULT_URL])))
