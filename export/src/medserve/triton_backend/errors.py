"""Errors of one request, and the one-line reason a client is sent.

Usage::

    raise RequestError("model medcnn: missing input 'image'")
    message = short_reason(exc)      # "InvalidArgumentError: jpeg header is corrupt"
"""

from __future__ import annotations

# Longest error text sent back to a client; TensorFlow messages can carry
# multi-line graph traces that help nobody calling the server.
MAX_ERROR_CHARS = 300
_TF_NOISE = ("Graph execution error", "Detected at node", "<stack traces unavailable>")


class RequestError(Exception):
    """One request cannot be served; its message goes back to that client."""


def short_reason(exc: BaseException) -> str:
    """The reason inside an exception message, one bounded line, with its class name.

    TensorFlow op errors wrap the reason in "Graph execution error", node
    names and stack-trace placeholders; only the reason helps a client.
    """
    text = str(getattr(exc, "message", None) or exc)
    reason = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(_TF_NOISE) or line.startswith("[[{{node"):
            continue
        reason = line.split(" [[{{node")[0].split(" [Op:")[0].strip()
        if reason:
            break
    if len(reason) > MAX_ERROR_CHARS:
        reason = reason[:MAX_ERROR_CHARS] + "..."
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
