"""Normalize stage: pure functions from what peers send to canonical STIX 2.1 (values, patterns, ids, formats).

No I/O anywhere in this package; import the submodules directly.
"""
