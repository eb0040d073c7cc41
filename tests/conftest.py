"""Shared fixtures: a real hub per test on 127.0.0.1, port 0, with its own SQLite files."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hubs import Hub, thread_hub


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    with thread_hub(tmp_path) as running:
        yield running
