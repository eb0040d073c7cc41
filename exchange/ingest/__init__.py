"""Ingest: getting bytes in (TAXII pushes now; the peer poller and feed files later) via the journal."""
