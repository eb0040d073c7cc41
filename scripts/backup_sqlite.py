"""Back up a hub's data directory while it runs: every SQLite file through SQLite's online backup API, plus
cursor.key. Standard library only, so it can be piped into the hub's container (docs/deploy.md):

    python scripts/backup_sqlite.py DATA_DIR DEST_DIR
    docker compose -f docker/compose.yaml exec -T cert-de python - /data /data/backup < scripts/backup_sqlite.py

Copying the files with cp while the hub writes can tear a WAL database; the backup API copies a consistent
snapshot of each file. The files are snapshotted one after another, in an order that is safe to restore:
the journal and the push cursors before the store, so nothing they mark as done is missing from the store
snapshot (the journal replays the rest, idempotently; a push may repeat, which peers count as duplicates),
and the audit log last, so it may hold more than the rest but never less.
"""

import shutil
import sqlite3
import sys
from pathlib import Path

ORDER = {"journal.db": 0, "outbound.db": 1, "store.db": 3, "audit.db": 4}  # unknown files in between


def backup(data_dir: Path, dest: Path) -> list[str]:
    dest.mkdir(parents=True, exist_ok=True)
    done = []
    for db in sorted(data_dir.glob("*.db"), key=lambda p: (ORDER.get(p.name, 2), p.name)):
        source = sqlite3.connect(db)
        target = sqlite3.connect(dest / db.name)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
        done.append(db.name)
    key = data_dir / "cursor.key"
    if key.exists():
        shutil.copy2(key, dest / key.name)
        done.append(key.name)
    return done


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    for name in backup(Path(argv[0]), Path(argv[1])):
        print(f"{argv[1]}/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
