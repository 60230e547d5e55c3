"""Error mapping at the transport boundary, and the retry policy."""

from __future__ import annotations

import random
import socket
from collections.abc import Callable

import pytest
from client_fakes import gray
from tritonclient.utils import InferenceServerException

from medserve_client import (
    Client,
    InferenceError,
    InferenceTimeoutError,
    InvalidInputError,
    MedServeError,
    ModelNotReadyError,
    PermissionDeniedError,
    RequestTooLargeError,
    Retry,
    ServerOverloadedError,
    ServerUnavailableError,
    TLSError,
)
from medserve_client._retry import Deadline, call_with_retry
from medserve_client._transport import Endpoint, map_error, mapped
from medserve_client.testing import MockTransport

ENDPOINT = Endpoint(url="triton.example:8001", protocol="grpc")


def _triton(status: str, message: str) -> InferenceServerException:
    return InferenceServerException(msg=message, status=status)


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (
            _triton("StatusCode.UNAVAILABLE", "failed to connect to all addresses"),
            ServerUnavailableError,
        ),
        (ConnectionRefusedError(111, "Connection refused"), ServerUnavailableError),
        (socket.gaierror(-2, "Name or service not known"), ServerUnavailableError),
        (_triton("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded"), InferenceTimeoutError),
        (TimeoutError("timed out"), InferenceTimeoutError),
        (TimeoutError(), InferenceTimeoutError),
        (_triton("StatusCode.UNAVAILABLE", "Exceeds maximum queue size"), ServerOverloadedError),
        (_triton("503", "Exceeds maximum queue size"), ServerOverloadedError),
        (_triton("StatusCode.UNAVAILABLE", "Request timeout expired"), ServerOverloadedError),
        (
            _triton("StatusCode.NOT_FOUND", "Request for unknown model: 'x' is not found"),
            ModelNotReadyError,
        ),
        (_triton("400", "Request for unknown model: 'x' is not found"), ModelNotReadyError),
        (
            _triton(
                "StatusCode.UNAVAILABLE",
                "Request for unknown model: 'medcnn' version 7 is not ready",
            ),
            ModelNotReadyError,
        ),
        (
            _triton("StatusCode.INVALID_ARGUMENT", "unexpected shape for input 'image'"),
            InvalidInputError,
        ),
        (_triton("400", "unexpected datatype TYPE_FP32 for input 'image'"), InvalidInputError),
        (
            _triton("StatusCode.INTERNAL", "Failed to process the request: model raised"),
            InferenceError,
        ),
        (RuntimeError("something else"), InferenceError),
        # What Triton 2.51 answers an admin call without the key (both protocols).
        (
            _triton(
                "StatusCode.UNAVAILABLE",
                "This protocol is restricted, expecting header "
                "'triton-grpc-protocol-medserve-admin-key'",
            ),
            PermissionDeniedError,
        ),
        (
            _triton("403", "This API is restricted, expecting header 'medserve-admin-key'"),
            PermissionDeniedError,
        ),
        # gRPC with a CA that did not sign the server's certificate.
        (
            _triton(
                "StatusCode.UNAVAILABLE",
                "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
                "Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:"
                "SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED",
            ),
            TLSError,
        ),
        (
            OSError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
            TLSError,
        ),
        # Triton 2.59+ --http-max-input-size, gRPC's message cap, a proxy's 413.
        (
            _triton(
                "400",
                "Raw input has a byte_size (70000000 bytes) that exceeds the maximum allowed "
                "value of 67108864 bytes. Use --http-max-input-size to increase the limit.",
            ),
            RequestTooLargeError,
        ),
        (
            _triton(
                "StatusCode.RESOURCE_EXHAUSTED",
                "Received message larger than max (70000000 vs. 67108864)",
            ),
            RequestTooLargeError,
        ),
        (_triton("413", "Request Entity Too Large"), RequestTooLargeError),
    ],
)
def test_wire_errors_map_to_the_most_specific_class(
    raised: BaseException, expected: type[MedServeError]
) -> None:
    error = map_error(raised, endpoint=ENDPOINT, model="medcnn", timeout_s=2.5, action="infer")
    assert type(error) is expected


def test_mapped_errors_chain_the_original_and_name_model_url_and_timeout() -> None:
    original = _triton("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded")
    with (
        pytest.raises(InferenceTimeoutError) as info,
        mapped(ENDPOINT, model="medcnn", timeout_s=2.5, action="infer"),
    ):
        raise original
    message = str(info.value)
    assert "'medcnn'" in message and "grpc://triton.example:8001" in message and "2.5 s" in message
    assert info.value.__cause__ is original


def test_unavailability_messages_say_what_to_check() -> None:
    error = map_error(
        ConnectionRefusedError(111, "Connection refused"),
        endpoint=Endpoint(url="h:8000", protocol="http"),
        model="medcnn",
        timeout_s=1,
        action="infer",
    )
    assert "http://h:8000" in str(error) and "is tritonserver running" in str(error)


def test_long_server_messages_are_truncated() -> None:
    error = map_error(
        _triton("StatusCode.INTERNAL", "x" * 5000),
        endpoint=ENDPOINT,
        model="m",
        timeout_s=1,
        action="infer",
    )
    assert len(str(error)) < 500


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    retry = Retry(attempts=10, backoff_s=0.1, max_backoff_s=0.5)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (9, 0.5)]:
        waits = [retry.backoff(attempt, rng) for _ in range(200)]
        assert min(waits) >= 0 and max(waits) <= ceiling
        assert max(waits) > ceiling * 0.8  # Spread over the range (jitter), not fixed.


def test_only_unavailability_and_overload_are_retried() -> None:
    for error, attempts in [
        (ServerUnavailableError("down"), 3),
        (ServerOverloadedError("queue"), 3),
        (InvalidInputError("bad"), 1),
        (ModelNotReadyError("nope"), 1),
        (InferenceTimeoutError("slow"), 1),
        (InferenceError("boom"), 1),
    ]:
        calls: list[float] = []

        def attempt(
            remaining_s: float, error: MedServeError = error, calls: list[float] = calls
        ) -> None:
            calls.append(remaining_s)
            raise error

        with pytest.raises(type(error)):
            call_with_retry(
                attempt,
                retry=Retry(attempts=3, backoff_s=0.001),
                deadline=Deadline(5.0),
                what="t",
                sleep=lambda s: None,
            )
        assert len(calls) == attempts, type(error).__name__


def test_retries_stop_at_the_deadline_and_never_sleep_past_it() -> None:
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    def attempt(remaining_s: float) -> None:
        now[0] += 0.3  # Each attempt takes 0.3 s.
        raise ServerUnavailableError("down")

    deadline = Deadline(1.0, clock=lambda: now[0])
    with pytest.raises(ServerUnavailableError):
        call_with_retry(
            attempt,
            retry=Retry(attempts=100, backoff_s=0.2, max_backoff_s=0.2),
            deadline=deadline,
            what="t",
            sleep=sleep,
            rng=random.Random(1),
        )
    assert now[0] <= 1.0 + 0.3  # The last attempt may start before, and end after, 1 s.
    assert all(s < 1.0 for s in sleeps)


def test_a_success_after_retries_returns_the_value() -> None:
    outcomes: list[BaseException | None] = [
        ServerOverloadedError("q"),
        ServerUnavailableError("d"),
        None,
    ]

    def attempt(remaining_s: float) -> str:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return "ok"

    result = call_with_retry(
        attempt,
        retry=Retry(attempts=3, backoff_s=0.001),
        deadline=Deadline(5.0),
        what="t",
        sleep=lambda s: None,
    )
    assert result == "ok"


def test_the_client_retries_an_overloaded_request_then_succeeds(fake: MockTransport) -> None:
    from tritonclient.utils import InferenceServerException as Exc

    client = Client("127.0.0.1:1", transport=fake, retries=Retry(attempts=3, backoff_s=0.001))
    client.model_info()
    fake.failures.extend([Exc("Exceeds maximum queue size", "StatusCode.UNAVAILABLE")] * 2)
    (prediction,) = client.classify(gray(0))
    assert prediction.label == "normal" and len(fake.calls) == 4
    client.close()


def test_the_client_does_not_retry_an_invalid_input(
    make_client: Callable[..., Client], fake: MockTransport
) -> None:
    client = make_client(retries=5)
    client.model_info()
    fake.failures.append(_triton("StatusCode.INVALID_ARGUMENT", "unexpected shape"))
    with pytest.raises(InvalidInputError, match="unexpected shape"):
        client.classify(gray(0))
    assert len(fake.calls) == 2


def test_retry_and_timeout_values_are_validated() -> None:
    from medserve_client import Timeout, Window

    with pytest.raises(InvalidInputError, match="attempts"):
        Retry(attempts=0)
    with pytest.raises(InvalidInputError, match="request_s"):
        Timeout(request_s=0)
    with pytest.raises(InvalidInputError, match="width"):
        Window(center=0, width=0)
    assert Retry.coerce(2).attempts == 3 and Timeout.coerce(4).request_s == 4.0


def test_neither_tls_nor_admin_refusals_are_retried() -> None:
    from medserve_client.exceptions import RETRYABLE_ERRORS

    for error_class in (TLSError, PermissionDeniedError, RequestTooLargeError):
        assert not issubclass(error_class, RETRYABLE_ERRORS)


def test_a_plaintext_channel_closed_by_the_server_suggests_tls() -> None:
    closed = _triton(
        "StatusCode.UNAVAILABLE",
        "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:1: "
        "Socket closed",
    )
    error = map_error(closed, endpoint=ENDPOINT, model="medcnn", timeout_s=1.0, action="infer")
    assert type(error) is ServerUnavailableError and "tls=TLS(" in str(error)
    secure = Endpoint(url="triton.example:8001", protocol="grpc", ssl=True)
    error = map_error(closed, endpoint=secure, model="medcnn", timeout_s=1.0, action="infer")
    assert "tls=TLS(" not in str(error)
