"""Dedup: many copies of one indicator become claims on one canonical object, with provenance."""
