"""Scenario: classify medical images over Triton's HTTP API in the binary tensor format.

Usage::

    locust -f loadtest/locustfile_http.py --host http://127.0.0.1:8000 \\
        --headless -u 16 -r 16 -t 60s --batch-size 1 --input-mode uint8
    locust -f loadtest/locustfile_http.py,loadtest/shape_step_ramp.py --host https://triton.example
    loadtest/run --protocol http          # local Triton, summary.json with exact percentiles

Each user posts KServe v2 inference requests with locust's ``FastHttpUser``.
The body is Triton's binary tensor extension: a JSON header followed by the raw
tensor bytes, built by ``tritonclient.http.InferenceServerClient.
generate_request_body`` and announced with ``Inference-Header-Content-Length``
(JSON lists of 150,528 numbers per image would measure the JSON encoder, not
the server). The answer is parsed the same way and checked (shape,
probabilities summing to 1, a known label); a wrong answer is marked with
``response.failure``. Tensor names, image size and class count come from the
server's model metadata (``GET /v2/models/<model>``).
"""

from __future__ import annotations

import itertools
from typing import Any

import medload_options
import medload_samples
import medload_thresholds
import tritonclient.http as httpclient
from locust import constant, events, task
from locust.contrib.fasthttp import FastHttpUser
from medload_options import LoadOptions
from medload_pool import ImagePool
from medload_target import InferTarget
from medload_validate import ResponseValidator

medload_options.register(events)
medload_samples.install(events)
medload_thresholds.install(events)

HEADER_LENGTH = "Inference-Header-Content-Length"
_TARGETS: dict[tuple[str, str, str], InferTarget] = {}
_START = itertools.count(0, 7)  # Users start at different pool offsets.


class TritonHttpUser(FastHttpUser):
    """A caller that posts one binary-tensor inference request after another."""

    wait_time = constant(0)
    # One connection per user: concurrency in flight equals the user count.
    concurrency = 1

    def _metadata(self, model: str) -> dict[str, Any]:
        with self.client.get(
            f"/v2/models/{model}", name="metadata", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"metadata of {model}: HTTP {response.status_code}")
                raise RuntimeError(f"cannot read the metadata of model {model!r}")
            return dict(response.json())

    def on_start(self) -> None:
        """Read the target once per process and load the shared pool."""
        self.options = LoadOptions.from_environment(self.environment)
        key = (str(self.host), self.options.model, self.options.input_mode)
        if key not in _TARGETS:
            entry = None
            if self.options.input_mode == "encoded":
                entry = self._metadata(self.options.model + "_encoded")
            _TARGETS[key] = InferTarget.from_metadata(
                self._metadata(self.options.model), entry=entry
            )
        self.target = _TARGETS[key]
        self.validator = ResponseValidator.for_labels(self.options.labels, self.target.num_classes)
        self.pool = ImagePool.load(
            folder=self.options.images,
            image_size=self.target.image_size,
            count=self.options.pool_size,
        )
        self.cursor = next(_START)
        self.path = f"/v2/models/{self.target.model}/infer"
        self.outputs = [httpclient.InferRequestedOutput(self.target.output_name, binary_data=True)]

    def _body(self) -> tuple[bytes, dict[str, str]]:
        batch = self.options.batch_size
        data = self.pool.batch(self.cursor, batch, encoded=self.target.encoded)
        self.cursor += batch
        tensor = httpclient.InferInput(
            self.target.input_name, list(data.shape), self.target.input_datatype
        )
        tensor.set_data_from_numpy(data, binary_data=True)
        body, json_size = httpclient.InferenceServerClient.generate_request_body(
            [tensor], outputs=self.outputs
        )
        headers = {"Content-Type": "application/octet-stream"}
        if json_size is not None:
            headers[HEADER_LENGTH] = str(json_size)
        return body, headers

    @task
    def classify(self) -> None:
        """Post one batch, parse and judge the answer."""
        body, headers = self._body()
        batch = self.options.batch_size
        with self.client.post(
            self.path,
            data=body,  # type: ignore[arg-type]  # bytes: geventhttpclient sends them as is
            headers=headers,
            name=f"{self.target.model} infer x{batch}",
            context={"batch_size": batch},
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            try:
                length = response.headers.get(HEADER_LENGTH)
                result = httpclient.InferenceServerClient.parse_response_body(
                    response.content, header_length=int(length) if length else None
                )
                self.validator.check(result.as_numpy(self.target.output_name), batch)
            except Exception as exc:  # An unparsable body is as wrong as a wrong label.
                response.failure(f"{type(exc).__name__}: {exc}")
            else:
                response.success()
