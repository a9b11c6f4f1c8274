"""The fixtures live in tests/support/fixtures.py; tests in tests/peers/ are marked `peer`
here, so `pytest -m "not peer"` runs the engine and driver tests alone."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.support.guard", "tests.support.fixtures", "pytester"]

_PEERS = Path(__file__).parent / "peers"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _PEERS in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.peer)
