"""Fixtures of the client unit tests: the fake transport and clients built on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from medserve_client.testing import MockTransport


@pytest.fixture
def fake() -> MockTransport:
    """A fresh fake transport."""
    return MockTransport()


@pytest.fixture
def make_client(fake: MockTransport) -> Iterator[Callable[..., Any]]:
    """Build Clients on the fake transport; closes them after the test."""
    from medserve_client import Client

    clients: list[Client] = []

    def build(**kwargs: Any) -> Client:
        kwargs.setdefault("retries", 0)
        client = Client("127.0.0.1:8001", transport=kwargs.pop("transport", fake), **kwargs)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()
