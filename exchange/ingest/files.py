"""Feed files into a running hub: convert each file to STIX 2.1, post it in envelopes, await the statuses."""

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from exchange.normalize.formats.detect import Format, read_file
from exchange.taxii.client import Credentials, TaxiiClient, api_root_of

MAX_OBJECTS = 500  # per envelope
ENVELOPE_OVERHEAD = 64


@dataclass
class IngestReport:
    posted: int = 0
    envelopes: int = 0
    succeeded: int = 0
    failed: int = 0
    rejects: list[tuple[str, str]] = field(default_factory=list)  # conversion rejects: (where, message)
    notes: list[tuple[str, str]] = field(default_factory=list)  # converted with a caveat: (where, message)
    failures: list[tuple[str, str]] = field(default_factory=list)  # hub failures: (object id, message)


def envelopes(objects: list[dict[str, Any]], max_bytes: int) -> list[list[dict[str, Any]]]:
    """Split into envelopes of at most MAX_OBJECTS objects and max_bytes bytes of JSON."""
    out: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = ENVELOPE_OVERHEAD
    for obj in objects:
        length = len(orjson.dumps(obj)) + 1
        if current and (len(current) >= MAX_OBJECTS or size + length > max_bytes):
            out.append(current)
            current, size = [], ENVELOPE_OVERHEAD
        current.append(obj)
        size += length
    if current:
        out.append(current)
    return out


async def ingest_files(paths: list[Path], collection_url: str, credentials: Credentials, *,
                       fmt: Format = Format.AUTO) -> IngestReport:
    report = IngestReport()
    root = api_root_of(collection_url)
    async with aiohttp.ClientSession() as session:
        client = TaxiiClient(session, credentials)
        limit = int((await client.api_root(root)).get("max_content_length", 10 * 2**20))
        for path in paths:
            result = await asyncio.to_thread(read_file, str(path), fmt)  # dated by the file: see read_file
            report.rejects += [(r.where, r.message) for r in result.rejects]
            report.notes += [(r.where, r.message) for r in result.notes]
            for batch in envelopes(result.objects, limit):
                status = await client.add_objects(collection_url, batch)
                final = await client.wait_complete(root, status["id"])
                report.posted += len(batch)
                report.envelopes += 1
                report.succeeded += int(final.get("success_count", 0))
                report.failed += int(final.get("failure_count", 0))
                report.failures += [(f.get("id", ""), f.get("message", "")) for f in final.get("failures", [])]
    return report
