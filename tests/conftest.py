"""Shared fixtures. Integration tests use the real platform: the session brings it up if it is
not already running, and takes it down again at the end only if it started it."""

from __future__ import annotations

import pytest

from infra.topology import Topology, load_topology


def pytest_collection_modifyitems(config, items):
    # Tests marked `last` (e.g. `make down`) run after everything else.
    items.sort(key=lambda item: 1 if item.get_closest_marker("last") else 0)


def pytest_configure(config):
    config.addinivalue_line("markers", "last: run after every other test")


@pytest.fixture(scope="session")
def topo() -> Topology:
    return load_topology()
