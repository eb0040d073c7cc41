"""Typed records shared by every stage: STIX object headers, timestamps."""
