"""The embedded SQLite backend: one writer thread with group commit, a pool of reader threads."""
