"""Normalize stage: pure functions from what peers send to canonical STIX 2.1 (values, patterns, ids).

No I/O here; import the submodules (values, patterns, ids) directly.
"""
