"""Correlate: threats spreading across peers and countries become alerts, one per threat, everywhere."""
