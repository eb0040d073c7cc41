"""Tests of the dedup stage: claims read from peers' objects, and the canonical indicator merged from them."""
