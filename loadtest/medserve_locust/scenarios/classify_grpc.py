"""Scenario: classify medical images over Triton's gRPC API, one request in flight per user.

Usage::

    locust -f loadtest/medserve_locust/scenarios/classify_grpc.py --host grpc://127.0.0.1:8001 \\
        --headless -u 16 -r 16 -t 60s --batch-size 1 --input-mode uint8
    locust -f loadtest/medserve_locust/scenarios/classify_grpc.py \\
        --host dns:///triton-grpc.medserve.svc.cluster.local:8001     # every pod, per request
    cd loadtest/medserve_locust && locust -f scenarios/classify_grpc.py,shapes/step_ramp.py \\
        --host grpc://triton:8001
    loadtest/run --protocol grpc          # local Triton, summary.json with exact percentiles

Each user takes ``--batch-size`` images from a pool loaded once per process
(``--images DIR`` or generated), sends them as a uint8 tensor to ``--model``
(or, with ``--input-mode encoded``, as JPEG/PNG bytes to ``<model>_encoded``),
checks the answer (shape, probabilities summing to 1, a known label) and fires
locust's ``request`` event with the measured latency, the response size and
the exception: a wrong answer is a failure. Tensor names, image size and class
count come from the server's model metadata.

``--host`` takes what the SDK takes (``grpc_client_kwargs`` of
``medserve_client.transport``, the same rules and channel options):
``host:port``, ``grpc://``, ``grpcs://``, or gRPC's own targets
``dns:///host:port`` (a headless Service) and ``ipv4:a:p,b:p``. A target
that names many servers is balanced ``round_robin``: each user's channel
connects to every server and spreads its requests over them one by one, not
one connection per user pinned to a pod.

gRPC runs under gevent here: ``grpc.experimental.gevent.init_gevent()`` is
called before any channel exists, so a blocking call yields to the other users
instead of freezing the whole process. The same file runs unchanged as a
locust master or worker (``--master`` / ``--worker``).
"""

# ruff: noqa: E402  (gRPC must be switched to gevent before anything opens a channel)
from __future__ import annotations

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import time
from typing import Any

import gevent
import tritonclient.grpc as grpcclient
from locust import User, constant, events, task

from medserve_client.transport import grpc_client_kwargs
from medserve_locust import users

users.install(events)


@events.init.add_listener
def _refresh_loop_clock(**_: Any) -> None:
    # init_gevent() created gevent's loop, which caches "now"; the imports after
    # it blocked for seconds, and locust's --run-time timer (armed from that
    # cached time) would fire that much early. Refresh it before timers are set.
    gevent.get_hub().loop.update_now()


def channel_settings(host: str | None) -> dict[str, Any]:
    """``InferenceServerClient`` arguments for locust's ``--host``, as the SDK dials it."""
    if not host:
        raise ValueError(
            "set --host to Triton's gRPC address, e.g. grpc://127.0.0.1:8001 or "
            "dns:///triton-grpc.medserve.svc.cluster.local:8001"
        )
    return grpc_client_kwargs(host)


class TritonGrpcUser(User):
    """A caller that sends one classification request after another over gRPC."""

    wait_time = constant(0)

    def on_start(self) -> None:
        """Open this user's channel and load the shared pool and target."""
        settings = channel_settings(self.host)
        url = settings["url"]
        self.client = grpcclient.InferenceServerClient(**settings)
        try:
            self.work = users.Workload.prepare(
                self.environment,
                url,
                lambda model: self.client.get_model_metadata(model, as_json=True),
            )
        except BaseException:
            # Locust skips on_stop when on_start fails, and an open channel
            # under gevent keeps the process from exiting.
            self.client.close()
            raise
        self.outputs = [grpcclient.InferRequestedOutput(self.work.target.output_name)]

    def on_stop(self) -> None:
        """Close the channel so no connection outlives the user."""
        self.client.close()

    def _inputs(self) -> list[Any]:
        data = self.work.next_batch()
        target = self.work.target
        tensor = grpcclient.InferInput(target.input_name, list(data.shape), target.input_datatype)
        tensor.set_data_from_numpy(data)
        return [tensor]

    @task
    def classify(self) -> None:
        """Send one batch, judge the answer, report it to locust."""
        target, batch = self.work.target, self.work.batch_size
        inputs = self._inputs()
        started_wall = time.time()
        started = time.perf_counter()
        length = 0
        exception: BaseException | None = None
        try:
            result = self.client.infer(
                target.model,
                inputs,
                outputs=self.outputs,
                client_timeout=self.work.options.request_timeout_s,
            )
            length = result.get_response().ByteSize()
            self.work.check(result.as_numpy(target.output_name))
        except Exception as exc:  # Any error, transport or answer, is this request's failure.
            exception = exc
        self.environment.events.request.fire(
            request_type="grpc",
            name=f"{target.model} infer x{batch}",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            exception=exception,
            context={"batch_size": batch},
            start_time=started_wall,
        )
