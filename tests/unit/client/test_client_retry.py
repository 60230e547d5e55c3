"""Retries until the deadline: the default policy, the count limit, both clients.

The outages here are played by the fake transport (no socket); the same
policy against a real server killed and restarted under load is in
``tests/integration/test_chaos.py``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest
from client_fakes import gray
from tritonclient.utils import InferenceServerException

from medserve_client import (
    AsyncClient,
    Client,
    InvalidInputError,
    Retry,
    ServerOverloadedError,
    ServerUnavailableError,
)
from medserve_client._retry import Deadline, call_with_retry, call_with_retry_async
from medserve_client.testing import AsyncMockTransport, MockTransport


class FakeClock:
    """Monotonic time that only moves when the code under test sleeps or an attempt runs."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


def _outage(clock: FakeClock, until_s: float, attempt_s: float = 0.01) -> Callable[[float], str]:
    """An attempt that fails as unavailable until ``until_s``, then answers."""
    calls: list[float] = []

    def attempt(remaining_s: float) -> str:
        calls.append(remaining_s)
        clock.now += attempt_s
        if clock.now < until_s:
            raise ServerUnavailableError("connection refused")
        return f"ok after {len(calls)} attempts"

    return attempt


def _refused() -> InferenceServerException:
    return InferenceServerException("failed to connect to all addresses", "StatusCode.UNAVAILABLE")


def test_the_default_policy_has_no_count_limit_only_the_deadline() -> None:
    retry = Retry()
    assert retry.attempts is None and Retry.coerce(None) == retry
    assert all(retry.allows_another(n) for n in (1, 10, 10_000))


def test_an_outage_shorter_than_the_deadline_costs_no_call_with_the_default_policy() -> None:
    clock = FakeClock()
    result = call_with_retry(
        _outage(clock, until_s=25.0),
        retry=Retry(),
        deadline=Deadline(30.0, clock=clock),
        what="infer",
        sleep=clock.sleep,
        rng=random.Random(3),
    )
    # Far more attempts than any fixed default count would have allowed.
    assert int(result.split()[2]) > 10
    assert 25.0 <= clock.now < 30.0
    assert max(clock.sleeps) <= Retry().max_backoff_s


def test_an_outage_longer_than_the_deadline_ends_with_the_typed_error_before_the_deadline() -> None:
    clock = FakeClock()
    with pytest.raises(ServerUnavailableError, match="connection refused"):
        call_with_retry(
            _outage(clock, until_s=1000.0),
            retry=Retry(),
            deadline=Deadline(30.0, clock=clock),
            what="infer",
            sleep=clock.sleep,
            rng=random.Random(4),
        )
    assert clock.now <= 30.0


def test_a_backoff_that_overshoots_the_deadline_still_ends_with_the_typed_error() -> None:
    # A busy machine wakes the sleeper late, past the deadline: the caller must
    # learn the cause (no server: exit 3), not a timeout (exit 5).
    clock = FakeClock()

    def late_sleep(seconds: float) -> None:
        clock.sleep(seconds + 30.0)

    async def late_async_sleep(seconds: float) -> None:
        late_sleep(seconds)

    with pytest.raises(ServerUnavailableError, match="connection refused"):
        call_with_retry(
            _outage(clock, until_s=1000.0),
            retry=Retry(),
            deadline=Deadline(30.0, clock=clock),
            what="infer",
            sleep=late_sleep,
            rng=random.Random(4),
        )
    sync_attempt = _outage(clock, until_s=1000.0)

    async def attempt(remaining_s: float) -> str:
        return sync_attempt(remaining_s)

    with pytest.raises(ServerUnavailableError, match="connection refused"):
        asyncio.run(
            call_with_retry_async(
                attempt,
                retry=Retry(),
                deadline=Deadline(30.0, clock=clock),
                what="infer",
                sleep=late_async_sleep,
                rng=random.Random(4),
            )
        )


def test_the_count_limit_stays_available_as_an_option() -> None:
    for retry, attempts in [(Retry(attempts=4), 4), (Retry.coerce(2), 3), (Retry.coerce(0), 1)]:
        clock = FakeClock()
        calls: list[float] = []

        def attempt(remaining_s: float, calls: list[float] = calls) -> None:
            calls.append(remaining_s)
            raise ServerOverloadedError("queue full")

        with pytest.raises(ServerOverloadedError):
            call_with_retry(
                attempt,
                retry=retry,
                deadline=Deadline(30.0, clock=clock),
                what="infer",
                sleep=clock.sleep,
            )
        assert len(calls) == attempts


def test_backoff_stays_capped_after_thousands_of_attempts() -> None:
    retry = Retry(backoff_s=0.05, max_backoff_s=1.0)
    rng = random.Random(5)
    waits = [retry.backoff(attempt, rng) for attempt in (64, 1_000, 100_000)]
    assert all(0.0 <= wait <= 1.0 for wait in waits)


def test_a_count_limit_below_one_is_refused_with_the_field_named() -> None:
    with pytest.raises(InvalidInputError, match=r"Retry.attempts .*None: until the deadline"):
        Retry(attempts=0)


def test_the_async_policy_retries_until_the_deadline_too() -> None:
    clock = FakeClock()
    sync_attempt = _outage(clock, until_s=12.0)

    async def attempt(remaining_s: float) -> str:
        return sync_attempt(remaining_s)

    result = asyncio.run(
        call_with_retry_async(
            attempt,
            retry=Retry(),
            deadline=Deadline(30.0, clock=clock),
            what="infer",
            sleep=clock.async_sleep,
            rng=random.Random(6),
        )
    )
    assert result.startswith("ok") and 12.0 <= clock.now < 30.0


def test_the_default_client_rides_out_more_failures_than_a_fixed_count_allowed(
    fake: MockTransport,
) -> None:
    # Five refusals in a row: more than the three attempts of the old default.
    client = Client("127.0.0.1:1", transport=fake, timeout_s=30.0)
    try:
        client.model_info()  # Asks the server for the labels: one call of its own.
        before = len(fake.calls)
        fake.failures.extend([_refused()] * 5)
        (prediction,) = client.classify(gray(250))
    finally:
        client.close()
    assert prediction.label == "lesion" and len(fake.calls) - before == 6


def test_a_client_with_a_count_limit_gives_up_with_the_typed_error(
    make_client: Callable[..., Client], fake: MockTransport
) -> None:
    client = make_client(retries=Retry(attempts=2, backoff_s=0.001))
    client.model_info()
    before = len(fake.calls)
    fake.failures.extend([_refused()] * 5)
    with pytest.raises(ServerUnavailableError, match="is tritonserver running") as info:
        client.classify(gray(0))
    assert len(fake.calls) - before == 2 and info.value.__cause__ is not None


def test_the_default_async_client_rides_out_an_outage_too(fake: MockTransport) -> None:
    async def run() -> Any:
        async with AsyncClient("x:1", transport=AsyncMockTransport(fake), timeout_s=30.0) as client:
            await client.model_info()
            before = len(fake.calls)
            fake.failures.extend([_refused()] * 4 + [_overloaded()])
            return await client.classify(gray(0)), len(fake.calls) - before

    (prediction,), calls = asyncio.run(run())
    assert prediction.label == "normal" and calls == 6


def _overloaded() -> InferenceServerException:
    return InferenceServerException("Exceeds maximum queue size", "StatusCode.UNAVAILABLE")


def test_grpc_channels_reconnect_within_a_second_and_keep_tritonclients_defaults() -> None:
    from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE

    from medserve_client._requests import grpc_channel_args, grpc_channel_kwargs
    from medserve_client._sync_transports import open_transport
    from medserve_client._transport import Endpoint

    args = dict(grpc_channel_args())
    # A capped reconnection backoff: the retries reach a restarted server.
    assert args["grpc.max_reconnect_backoff_ms"] <= 1000
    assert args["grpc.max_send_message_length"] == MAX_GRPC_MESSAGE_SIZE
    assert args["grpc.max_receive_message_length"] == MAX_GRPC_MESSAGE_SIZE
    endpoint = Endpoint(url="127.0.0.1:1")
    assert dict(grpc_channel_kwargs(endpoint)["channel_args"]) == args
    open_transport(endpoint).close()  # tritonclient accepts them (channels connect lazily).


def test_a_connection_the_server_closed_mid_request_is_unavailability_and_retried() -> None:
    # What the HTTP clients raise when the server dies with the request in flight.
    from aiohttp import ServerDisconnectedError
    from geventhttpclient.response import HTTPConnectionClosed

    from medserve_client._transport import Endpoint, map_error

    endpoint = Endpoint(url="127.0.0.1:8000", protocol="http")
    for exc in (HTTPConnectionClosed("connection closed."), ServerDisconnectedError()):
        error = map_error(exc, endpoint=endpoint, model="medcnn", timeout_s=30.0, action="infer")
        assert isinstance(error, ServerUnavailableError), (type(exc).__name__, error)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (
            "StatusCode.INTERNAL",
            "Failed to process the request(s) for model instance "
            "'medcnn_0_0', message: Stub process 'medcnn_0_0' is not healthy.",
        ),
        ("StatusCode.UNKNOWN", "Stream removed"),
        ("StatusCode.INTERNAL", "Received RST_STREAM with error code 2"),
        ("", "Response payload is not completed"),
    ],
)
def test_a_request_lost_with_a_dying_server_or_stub_is_unavailability_and_retried(
    status: str, message: str
) -> None:
    from medserve_client._transport import Endpoint, map_error

    raised = InferenceServerException(msg=message, status=status or None)
    error = map_error(
        raised,
        endpoint=Endpoint(url="127.0.0.1:8001"),
        model="medcnn",
        timeout_s=30.0,
        action="infer",
    )
    assert isinstance(error, ServerUnavailableError), error
