"""Small blocking HTTP calls the launcher makes to Triton's REST API (no tritonclient needed).

Usage::

    if http_ok("http://127.0.0.1:8000/v2/health/ready"):
        index = http_json("http://127.0.0.1:8000/v2/repository/index", data=b"{}",
                          headers={"medserve-admin-key": key})
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping

from medserve.errors import ServerError

PROBE_TIMEOUT_S = 2.0


def http_ok(url: str, *, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a GET of ``url`` answers 200 (False for any error or refusal)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def http_json(
    url: str,
    *,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = PROBE_TIMEOUT_S,
) -> object:
    """The JSON answer of a GET (or a POST of ``data``) to ``url``.

    Raises:
        ServerError: No answer, an error status, or not JSON; the message names
            the URL and the reason, never the headers (they may hold a key).
    """
    method = "GET" if data is None else "POST"
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError) as exc:
        raise ServerError(f"tritonserver did not answer {method} {url}: {exc}") from exc
