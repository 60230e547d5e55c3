"""Public home of the exception tree (defined in ``_errors``; see its docstring).

Usage::

    from medserve_client import exceptions

    try:
        client.classify(path)
    except exceptions.InvalidInputError as exc:
        log.warning("skipped %s: %s", path, exc)
"""

from medserve_client._errors import (
    RETRYABLE_ERRORS,
    InferenceError,
    InferenceTimeoutError,
    InvalidInputError,
    MedServeError,
    ModelNotReadyError,
    PermissionDeniedError,
    RequestTooLargeError,
    ServerOverloadedError,
    ServerUnavailableError,
    TLSError,
)
from medserve_client._errors import __doc__ as _tree_doc

__doc__ = (__doc__ or "") + "\n" + (_tree_doc or "")

__all__ = [
    "RETRYABLE_ERRORS",
    "InferenceError",
    "InferenceTimeoutError",
    "InvalidInputError",
    "MedServeError",
    "ModelNotReadyError",
    "PermissionDeniedError",
    "RequestTooLargeError",
    "ServerOverloadedError",
    "ServerUnavailableError",
    "TLSError",
]
