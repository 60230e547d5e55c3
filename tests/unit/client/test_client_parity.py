"""Client and AsyncClient behave the same: one parametrized test per behaviour, both clients."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from client_fakes import gray

from medserve_client import AsyncClient, Client, InvalidInputError
from medserve_client.testing import AsyncMockTransport, MockTransport

KINDS = ("blocking", "async")


class Driver:
    """Runs the same calls on a Client or an AsyncClient over one MockTransport."""

    def __init__(self, kind: str, mock: MockTransport) -> None:
        self.kind = kind
        self.mock = mock
        if kind == "blocking":
            self.client: Any = Client("triton:8001", transport=mock, retries=0)
        else:
            self.client = AsyncClient("triton:8001", transport=AsyncMockTransport(mock), retries=0)

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.client, method)(*args, **kwargs)
        if self.kind == "async":
            return asyncio.run(result) if asyncio.iscoroutine(result) else result
        return result

    def attempt(self, method: str, *args: Any) -> BaseException:
        """The exception ``method`` raises (fails the test if it raises none)."""
        with pytest.raises(Exception) as caught:
            self(method, *args)
        return caught.value


@pytest.fixture(params=KINDS)
def driver(request: pytest.FixtureRequest) -> Callable[..., Driver]:
    def build(**mock: Any) -> Driver:
        return Driver(request.param, MockTransport(**mock))

    return build


def test_both_clients_warn_and_name_classes_by_index_without_a_label_file(
    driver: Callable[..., Driver], caplog: pytest.LogCaptureFixture
) -> None:
    run = driver(label_file=False)
    with caplog.at_level(logging.WARNING, logger="medserve_client"):
        info = run("model_info")
    assert info.labels == ("0", "1")
    assert any("no label_filename" in r.getMessage() for r in caplog.records)
    # No classification probe was sent: the server could not have named the labels.
    assert run.mock.calls == []
    assert run("classify", gray(250))[0].label == "1"
    run("close")


@pytest.mark.parametrize("method", ["classify", "model_info", "ready"])
def test_both_clients_raise_the_same_error_once_closed(
    driver: Callable[..., Driver], method: str
) -> None:
    run = driver()
    run("classify", gray(10))  # Caches the model facts first.
    run("close")
    args = (gray(10),) if method == "classify" else ()
    error = run.attempt(method, *args)
    assert isinstance(error, InvalidInputError), error
    assert str(error).startswith("the client is closed; create a new ")
    assert run.mock.closed


def test_both_clients_send_the_same_requests(driver: Callable[..., Driver]) -> None:
    run = driver()
    run("classify", [gray(v) for v in range(0, 250, 50)], top_k=2)
    run("close")
    calls = [(c.model, c.version, c.input_name, c.datatype) for c in run.mock.calls]
    shapes = [c.array.shape if c.array is not None else None for c in run.mock.calls]
    # The label probe, then 5 images in chunks of at most max_batch_size (4).
    # The chunks go out concurrently, so their order on the wire is the
    # scheduler's: compare them as a multiset.
    assert calls == [("medcnn", "", "image", "UINT8")] * 3
    assert shapes[0] == (1, 16, 16, 3)
    assert sorted(shapes[1:], key=str) == [(1, 16, 16, 3), (4, 16, 16, 3)]
