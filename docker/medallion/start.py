"""Start medallion 3.0.0 with its login taken from the environment (medallion itself reads it only from
its JSON config, in plain text): MEDALLION_PASSWORD (required), MEDALLION_USER (default "exchange"),
MEDALLION_BASE_URL (how the hubs reach it; default http://medallion:5000), MEDALLION_HOST and
MEDALLION_PORT (where it listens; default 0.0.0.0 and 5000).
"""

import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    password = os.environ.get("MEDALLION_PASSWORD")
    if not password:
        sys.exit("medallion: set MEDALLION_PASSWORD (see docker/example.env)")
    base = os.environ.get("MEDALLION_BASE_URL", "http://medallion:5000").rstrip("/")
    workdir = Path(tempfile.mkdtemp(prefix="medallion-"))  # medallion keeps its data in memory; this is the seed
    data = workdir / "data.json"
    data.write_text((HERE / "data.json").read_text().replace("{base}", base))
    config = workdir / "config.json"
    config.write_text(json.dumps({
        "backend": {"module": "medallion.backends.memory_backend", "module_class": "MemoryBackend",
                    "filename": str(data), "session_timeout": 3600, "check_interval": 10},
        "users": {os.environ.get("MEDALLION_USER", "exchange"): password},
        "taxii": {"max_page_size": 1000},
    }))
    config.chmod(0o600)
    host, port = os.environ.get("MEDALLION_HOST", "0.0.0.0"), os.environ.get("MEDALLION_PORT", "5000")
    os.execvp(sys.executable, [sys.executable, "-m", "medallion.scripts.run", "--host", host, "--port", port,
                               str(config)])


if __name__ == "__main__":
    main()
