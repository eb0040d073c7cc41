"""Audit: an append-only, hash-chained record of every object in and out, and its verifier."""
