"""What one benchmark call does, for each thing the benchmark measures.

Usage::

    target = ClientTarget("127.0.0.1:8001", "medcnn", pool, validator)
    result = run_closed_loop(target.make_call, concurrency=16, duration_s=20)
    target.close()

- :class:`ClientTarget`: medserve as a user calls it, through ``medserve_client``
  (gRPC), one uint8 image per call.
- :class:`PayloadTarget`: raw ``tritonclient.grpc`` with a chosen payload:
  ``uint8`` tensor, ``float32`` tensor (to the ``_fp32`` variant) or
  ``encoded`` JPEG bytes (to the ``_encoded`` ensemble). The three differ only
  in what travels, so their bytes and throughput compare payloads.
- :class:`PeerTarget`: the naive peer's ``POST /predict`` over a keep-alive
  HTTP connection, same uint8 pixels.

Every call validates its answer (:class:`~validate.ResponseValidator`)
and raises on a wrong one; each caller has its own connection.
"""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from medserve_bench.driver import Call
from medserve_locust.pool import ImagePool
from medserve_locust.validate import ResponseValidator, WrongAnswerError

PAYLOADS = ("uint8", "float32", "encoded")
_STRIDE = 7  # Callers start at different images of the pool.


class ClientTarget:
    """medserve through its client SDK: ``Client.classify(image)``."""

    def __init__(self, url: str, model: str, pool: ImagePool, validator: ResponseValidator) -> None:
        self.url, self.model, self.pool, self.validator = url, model, pool, validator
        self.bytes_per_request = int(pool.pixels_all[0].nbytes)
        self._clients: list[Any] = []

    def make_call(self, index: int) -> Call:
        """A call with its own client (and so its own gRPC channel)."""
        from medserve_client import Client

        client = Client(self.url, model=self.model, protocol="grpc", timeout_s=120.0)
        self._clients.append(client)
        client.model_info()  # Metadata and config are read before the clock starts.
        images = self.pool.pixels_all
        position = [index * _STRIDE]

        def call() -> int:
            image = images[position[0] % len(images)]
            position[0] += 1
            predictions = client.classify(image)
            if len(predictions) != 1:
                raise WrongAnswerError(f"{len(predictions)} predictions for one image")
            probabilities = np.asarray(predictions[0].probabilities)[np.newaxis, :]
            expected = self.validator.check(probabilities, 1)[0]
            if self.validator.labels and predictions[0].label != expected:
                raise WrongAnswerError(f"label {predictions[0].label!r}, argmax says {expected!r}")
            return 1

        return call

    def close(self) -> None:
        """Close every client's channel."""
        for client in self._clients:
            client.close()
        self._clients.clear()


class PayloadTarget:
    """Raw tritonclient gRPC calls carrying a uint8, float32 or encoded payload."""

    def __init__(
        self,
        url: str,
        model: str,
        payload: str,
        pool: ImagePool,
        validator: ResponseValidator,
        *,
        input_name: str,
        output_name: str,
    ) -> None:
        if payload not in PAYLOADS:
            raise ValueError(f"payload must be one of {PAYLOADS}, got {payload!r}")
        self.url, self.model, self.payload = url, model, payload
        self.pool, self.validator = pool, validator
        self.input_name, self.output_name = input_name, output_name
        if payload == "encoded":
            self._data = [pool.encoded(i, 1) for i in range(len(pool))]
            self._datatype = "BYTES"
            self.bytes_per_request = int(np.mean([len(b) for b in pool.encoded_all]))
        else:
            dtype = np.float32 if payload == "float32" else np.uint8
            scale = 255.0 if payload == "float32" else 1.0
            self._data = [
                (pool.pixels(i, 1) / scale).astype(dtype) if scale != 1.0 else pool.pixels(i, 1)
                for i in range(len(pool))
            ]
            self._datatype = "FP32" if payload == "float32" else "UINT8"
            self.bytes_per_request = int(self._data[0].nbytes)
        self._clients: list[Any] = []

    def make_call(self, index: int) -> Call:
        """A call with its own ``tritonclient.grpc`` channel."""
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(self.url)
        self._clients.append(client)
        outputs = [grpcclient.InferRequestedOutput(self.output_name)]
        position = [index * _STRIDE]

        def call() -> int:
            data = self._data[position[0] % len(self._data)]
            position[0] += 1
            tensor = grpcclient.InferInput(self.input_name, list(data.shape), self._datatype)
            tensor.set_data_from_numpy(data)
            result = client.infer(self.model, [tensor], outputs=outputs, client_timeout=120.0)
            self.validator.check(result.as_numpy(self.output_name), len(data))
            return len(data)

        return call

    def close(self) -> None:
        """Close every channel."""
        for client in self._clients:
            client.close()
        self._clients.clear()


class PeerTarget:
    """The naive peer: ``POST /predict`` with raw uint8 pixels, JSON back."""

    def __init__(self, url: str, pool: ImagePool, validator: ResponseValidator) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.pool, self.validator = pool, validator
        self.bytes_per_request = int(pool.pixels_all[0].nbytes)
        self._connections: list[http.client.HTTPConnection] = []

    def make_call(self, index: int) -> Call:
        """A call with its own keep-alive connection."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=300)
        self._connections.append(connection)
        images = self.pool.pixels_all
        position = [index * _STRIDE]

        def call() -> int:
            image = images[position[0] % len(images)]
            position[0] += 1
            shape = ",".join(str(d) for d in (1, *image.shape))
            connection.request(
                "POST",
                "/predict",
                body=image.tobytes(),
                headers={"Content-Type": "application/octet-stream", "X-Image-Shape": shape},
            )
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise WrongAnswerError(f"HTTP {response.status}: {body[:200]!r}")
            answer = json.loads(body)
            probabilities = np.asarray(answer["probabilities"], dtype=np.float32)
            self.validator.check(probabilities, 1)
            return 1

        return call

    def close(self) -> None:
        """Close every connection."""
        for connection in self._connections:
            connection.close()
        self._connections.clear()
