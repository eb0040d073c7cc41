"""Normalize stage, formats in: STIX 2.1/2.0, STIX 1.x, MISP, CSV and text IOC lists to STIX 2.1 objects.

Pure and blocking (stix2-elevator, misp-stix, stix2-validator load on first use of their format): callers run
`read` in worker threads.
"""

from exchange.normalize.formats.detect import Format, detect, read
from exchange.normalize.formats.result import ReadResult, Reject

__all__ = ["Format", "ReadResult", "Reject", "detect", "read"]
