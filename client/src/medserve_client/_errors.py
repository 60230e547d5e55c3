"""The exceptions medserve-client raises: one tree, mapped at one boundary.

Usage::

    from medserve_client import Client, exceptions

    try:
        with Client("127.0.0.1:8001") as client:
            client.classify("scan.png")
    except exceptions.ServerOverloadedError:
        ...  # back off harder than the built-in retries did
    except exceptions.MedServeError as exc:
        print(exc)  # one line: what was wrong and what to do

Exception tree::

    MedServeError                      exit 1 (CLI)
    ├── ServerUnavailableError         exit 3: no connection, server down or not live   (retried)
    ├── ModelNotReadyError             exit 4: unknown model, version not loaded, not ready
    ├── InvalidInputError              exit 2: bad input, caught client-side or the server's 400
    │   └── RequestTooLargeError       exit 2: larger than a size limit of the server or a proxy
    ├── InferenceTimeoutError          exit 5: the call's deadline passed
    ├── ServerOverloadedError          exit 6: the queue policy rejected the request   (retried)
    ├── TLSError                       exit 7: the TLS handshake failed (CA, certificate, host name)
    ├── PermissionDeniedError          exit 8: an admin API needs the admin key (or a proxy refused)
    └── InferenceError                 exit 1: any other failure of the server or the model

Exit statuses are :class:`~medserve_client.contract.ExitStatus`, shared by every
medserve command. tritonclient and gRPC errors become these classes only in ``_transport`` (and
its asyncio twin) with ``raise ... from exc``, so the original is kept as
``__cause__`` for debugging. Messages name the model, the URL and the timeout
where they matter; they never carry pixel data or DICOM patient attributes.
"""

from __future__ import annotations

from medserve_client._exit_status import ExitStatus


class MedServeError(Exception):
    """Base class of every error medserve-client raises on purpose."""

    #: Exit status of the ``medserve-client`` command for this error.
    exit_code: int = ExitStatus.FAILURE


class ServerUnavailableError(MedServeError):
    """The server cannot be reached or is not live (connection refused, DNS, TLS)."""

    exit_code = ExitStatus.UNAVAILABLE


class ModelNotReadyError(MedServeError):
    """The server is up but the model (or that version) is unknown or not ready."""

    exit_code = ExitStatus.MODEL_NOT_READY


class InvalidInputError(MedServeError, ValueError):
    """The input is wrong: caught while preprocessing, or rejected by the server (400)."""

    exit_code = ExitStatus.USAGE


class RequestTooLargeError(InvalidInputError):
    """The request is larger than the server (or a proxy in front of it) accepts."""


class TLSError(MedServeError):
    """The TLS handshake failed: wrong CA, missing client certificate, or wrong host name.

    Not retried: the same certificates fail the same way until the settings change.
    """

    exit_code = ExitStatus.TLS


class PermissionDeniedError(MedServeError):
    """The server (or a proxy) refused the call: an admin API without the right admin key."""

    exit_code = ExitStatus.PERMISSION_DENIED


class InferenceTimeoutError(MedServeError, TimeoutError):
    """The call did not finish before its deadline (``timeout_s``)."""

    exit_code = ExitStatus.TIMEOUT


class ServerOverloadedError(MedServeError):
    """The dynamic batcher's queue policy rejected the request (queue full or waited too long)."""

    exit_code = ExitStatus.OVERLOADED


class InferenceError(MedServeError):
    """Any other failure reported by the server or the model."""


#: Errors worth another attempt: the condition is usually transient.
RETRYABLE_ERRORS: tuple[type[MedServeError], ...] = (ServerUnavailableError, ServerOverloadedError)
