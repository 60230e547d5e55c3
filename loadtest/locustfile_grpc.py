"""Scenario: classify medical images over Triton's gRPC API, one request in flight per user.

Usage::

    locust -f loadtest/locustfile_grpc.py --host grpc://127.0.0.1:8001 \\
        --headless -u 16 -r 16 -t 60s --batch-size 1 --input-mode uint8
    locust -f loadtest/locustfile_grpc.py,loadtest/shape_step_ramp.py --host grpc://triton:8001
    loadtest/run --protocol grpc          # local Triton, summary.json with exact percentiles

Each user takes ``--batch-size`` images from a pool loaded once per process
(``--images DIR`` or generated), sends them as a uint8 tensor to ``--model``
(or, with ``--input-mode encoded``, as JPEG/PNG bytes to ``<model>_encoded``),
checks the answer (shape, probabilities summing to 1, a known label) and fires
locust's ``request`` event with the measured latency, the response size and
the exception: a wrong answer is a failure. Tensor names, image size and class
count come from the server's model metadata.

gRPC runs under gevent here: ``grpc.experimental.gevent.init_gevent()`` is
called before any channel exists, so a blocking call yields to the other users
instead of freezing the whole process. The same file runs unchanged as a
locust master or worker (``--master`` / ``--worker``).
"""

# ruff: noqa: E402  (gRPC must be switched to gevent before anything opens a channel)
from __future__ import annotations

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import itertools
import time
from typing import Any

import gevent
import medload_options
import medload_samples
import medload_thresholds
import tritonclient.grpc as grpcclient
from locust import User, constant, events, task
from medload_options import LoadOptions
from medload_pool import ImagePool
from medload_target import InferTarget
from medload_validate import ResponseValidator

medload_options.register(events)
medload_samples.install(events)
medload_thresholds.install(events)


@events.init.add_listener
def _refresh_loop_clock(**_: Any) -> None:
    # init_gevent() created gevent's loop, which caches "now"; the imports after
    # it blocked for seconds, and locust's --run-time timer (armed from that
    # cached time) would fire that much early. Refresh it before timers are set.
    gevent.get_hub().loop.update_now()


# Model metadata is fetched once per process and shared by its users.
_TARGETS: dict[tuple[str, str, str], InferTarget] = {}
_START = itertools.count(0, 7)  # Users start at different pool offsets.


def grpc_url(host: str | None) -> str:
    """``host:port`` for tritonclient from locust's ``--host`` (scheme optional)."""
    if not host:
        raise ValueError("set --host to Triton's gRPC address, e.g. grpc://127.0.0.1:8001")
    return host.split("://", 1)[-1].rstrip("/")


def resolve_target(client: Any, options: LoadOptions, url: str) -> InferTarget:
    """Read (once per process) what to call from the server's model metadata."""
    key = (url, options.model, options.input_mode)
    if key not in _TARGETS:
        classifier = client.get_model_metadata(options.model, as_json=True)
        entry = None
        if options.input_mode == "encoded":
            entry = client.get_model_metadata(options.model + "_encoded", as_json=True)
        _TARGETS[key] = InferTarget.from_metadata(classifier, entry=entry)
    return _TARGETS[key]


class TritonGrpcUser(User):
    """A caller that sends one classification request after another over gRPC."""

    wait_time = constant(0)

    def on_start(self) -> None:
        """Open this user's channel and load the shared pool and target."""
        self.options = LoadOptions.from_environment(self.environment)
        url = grpc_url(self.host)
        self.client = grpcclient.InferenceServerClient(url=url)
        try:
            self.target = resolve_target(self.client, self.options, url)
            self.validator = ResponseValidator.for_labels(
                self.options.labels, self.target.num_classes
            )
            self.pool = ImagePool.load(
                folder=self.options.images,
                image_size=self.target.image_size,
                count=self.options.pool_size,
            )
        except BaseException:
            # Locust skips on_stop when on_start fails, and an open channel
            # under gevent keeps the process from exiting.
            self.client.close()
            raise
        self.cursor = next(_START)
        self.outputs = [grpcclient.InferRequestedOutput(self.target.output_name)]

    def on_stop(self) -> None:
        """Close the channel so no connection outlives the user."""
        self.client.close()

    def _inputs(self) -> list[Any]:
        batch = self.options.batch_size
        data = self.pool.batch(self.cursor, batch, encoded=self.target.encoded)
        self.cursor += batch
        tensor = grpcclient.InferInput(
            self.target.input_name, list(data.shape), self.target.input_datatype
        )
        tensor.set_data_from_numpy(data)
        return [tensor]

    @task
    def classify(self) -> None:
        """Send one batch, judge the answer, report it to locust."""
        inputs = self._inputs()
        started_wall = time.time()
        started = time.perf_counter()
        length = 0
        exception: BaseException | None = None
        try:
            result = self.client.infer(
                self.target.model,
                inputs,
                outputs=self.outputs,
                client_timeout=self.options.request_timeout_s,
            )
            length = result.get_response().ByteSize()
            self.validator.check(result.as_numpy(self.target.output_name), self.options.batch_size)
        except Exception as exc:  # Any error, transport or answer, is this request's failure.
            exception = exc
        self.environment.events.request.fire(
            request_type="grpc",
            name=f"{self.target.model} infer x{self.options.batch_size}",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            exception=exception,
            context={"batch_size": self.options.batch_size},
            start_time=started_wall,
        )
