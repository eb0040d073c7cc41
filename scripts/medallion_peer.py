"""A real medallion 3.0.0 TAXII 2.1 server (memory backend) on loopback, as a subprocess.

The reference peer for benchmarks and interop runs; `python scripts/medallion_peer.py` serves one. The code
lives in exchange/demo/medallion.py (`exchange demo` runs one too); this script re-exports it.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import tempfile
import time

from exchange.demo.medallion import (
    API_ROOT,
    COLLECTION_ID,
    HOST,
    MAX_CONTENT_LENGTH,
    MAX_PAGE_SIZE,
    PASSWORD,
    READY_TIMEOUT_S,
    SESSION_TIMEOUT_S,
    STOP_GRACE_S,
    TAXII_ACCEPT,
    USER,
    MedallionPeer,
    build_config,
    build_data,
    free_port,
    run_medallion,
    stop_process_group,
    wait_until_ready,
)

__all__ = ["API_ROOT", "COLLECTION_ID", "HOST", "MAX_CONTENT_LENGTH", "MAX_PAGE_SIZE", "PASSWORD", "READY_TIMEOUT_S",
           "SESSION_TIMEOUT_S", "STOP_GRACE_S", "TAXII_ACCEPT", "USER", "MedallionPeer", "build_config", "build_data",
           "free_port", "run_medallion", "stop_process_group", "wait_until_ready"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.0, help="serve this long, then stop (0 = until ^C)")
    args = parser.parse_args(argv)
    # Turn SIGTERM into an exception so the context manager's cleanup runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="medallion-peer-") as tmp, run_medallion(tmp) as peer:
        print(f"discovery   {peer.discovery_url}")
        print(f"api root    {peer.api_root_url}")
        print(f"collection  {peer.collection_url}")
        print(f"login       {peer.user} / {peer.password}   (pid {peer.pid}, log {peer.log_path})")
        sys.stdout.flush()
        deadline = time.monotonic() + args.seconds if args.seconds > 0 else None
        with contextlib.suppress(KeyboardInterrupt):
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
