"""exchange: a cross-border threat alert exchange hub (TAXII 2.1) for national CERTs."""

__version__ = "0.1.0"
