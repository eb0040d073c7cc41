"""TAXII 2.1 over HTTP: the aiohttp server (and later the peer client); no business rules."""
