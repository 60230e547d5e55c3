"""Scenario: classify medical images over Triton's HTTP API in the binary tensor format.

Usage::

    locust -f loadtest/medserve_locust/scenarios/classify_http.py --host http://127.0.0.1:8000 \\
        --headless -u 16 -r 16 -t 60s --batch-size 1 --input-mode uint8
    cd loadtest/medserve_locust && locust -f scenarios/classify_http.py,shapes/step_ramp.py \\
        --host https://triton.example
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

from typing import Any

import tritonclient.http as httpclient
from locust import constant, events, task
from locust.contrib.fasthttp import FastHttpUser

from medserve_locust import users

users.install(events)

HEADER_LENGTH = "Inference-Header-Content-Length"


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
        self.work = users.Workload.prepare(self.environment, str(self.host), self._metadata)
        self.path = f"/v2/models/{self.work.target.model}/infer"
        self.outputs = [
            httpclient.InferRequestedOutput(self.work.target.output_name, binary_data=True)
        ]

    def _body(self) -> tuple[bytes, dict[str, str]]:
        data = self.work.next_batch()
        target = self.work.target
        tensor = httpclient.InferInput(target.input_name, list(data.shape), target.input_datatype)
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
        batch = self.work.batch_size
        with self.client.post(
            self.path,
            data=body,  # type: ignore[arg-type]  # bytes: geventhttpclient sends them as is
            headers=headers,
            name=f"{self.work.target.model} infer x{batch}",
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
                self.work.check(result.as_numpy(self.work.target.output_name))
            except Exception as exc:  # An unparsable body is as wrong as a wrong label.
                response.failure(f"{type(exc).__name__}: {exc}")
            else:
                response.success()
