"""Helpers of the client unit tests: images, and the CLI on a fake transport.

The transport is the public :class:`medserve_client.testing.MockTransport`
(16x16 UINT8 input, labels ("normal", "lesion"), ``max_batch_size`` 4, an
``_encoded`` twin), the same one users put in their own tests.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from medserve_client.testing import MockTransport

LABELS = ("normal", "lesion")
SIZE = 16


def png_bytes(array: np.ndarray, **save: Any) -> bytes:
    """Encode an array as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", **save)
    return buffer.getvalue()


def gray(value: int, size: int = SIZE, channels: int = 3) -> np.ndarray:
    """A flat uint8 image of one brightness."""
    return np.full((size, size, channels), value, dtype=np.uint8)


def patch_cli_client(monkeypatch: pytest.MonkeyPatch, fake: MockTransport) -> None:
    """Make the ``medserve-client`` CLI build its clients on ``fake``."""
    from medserve_client import Client, cli

    real = cli.Client

    def build(*args: Any, **kwargs: Any) -> Client:
        return real(*args, transport=fake, **kwargs)

    monkeypatch.setattr(cli, "Client", build)
