"""The blocking client: classify images, DICOM and arrays on a medserve model in Triton.

Usage::

    from medserve_client import Client

    with Client("127.0.0.1:8001", model="medcnn") as client:
        client.wait_until_ready(timeout_s=30)
        for prediction in client.classify(["chest.png", "ct.dcm"], top_k=2):
            print(prediction.label, prediction.score)
        for prediction in client.classify_many(paths, concurrency=16):
            ...

Thread safety: one :class:`Client` may be shared by threads. Over gRPC every
thread uses the same channel (tritonclient's unary gRPC calls are
thread-safe); over HTTP each thread gets its own tritonclient HTTP client,
because that one is not thread-safe. Inputs larger than the model's
``max_batch_size`` are split into requests sent concurrently from a pool of
``max_concurrency`` threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np

from medserve_client import _core, contract
from medserve_client._base import BaseClient
from medserve_client._errors import (
    ModelNotReadyError,
    ServerUnavailableError,
)
from medserve_client._inputs import prepare_all
from medserve_client._models import Explanation, ModelInfo, Prediction
from medserve_client._pipeline import check_concurrency, ordered_map
from medserve_client._retry import Deadline, call_with_retry
from medserve_client._shm import ShmPool, pool_for, shm_request
from medserve_client._transport import InferCall, Transport

log = logging.getLogger("medserve_client")


class Client(BaseClient[Transport]):
    """A blocking medserve client over gRPC (default) or HTTP.

    Args:
        url: ``host:port``, or with a scheme: ``grpc://``, ``grpcs://`` (TLS),
            ``http://``, ``https://``. The default port follows the protocol.
            Or a gRPC target that names many servers, balanced per request:
            ``dns:///host:port`` (every address DNS returns, e.g. a headless
            Service), ``ipv4:addr:port,addr:port``, ``ipv6:[addr]:port,...``.
        model: Triton model name of the classifier.
        version: Pin a model version (default: the server's choice).
        protocol: ``"grpc"`` or ``"http"`` when the URL has no scheme.
        timeout_s: Deadline of each public call in seconds, retries included,
            or a :class:`Timeout`.
        retries: Retries of unavailability and overload: None (default)
            retries until the call's deadline; an int allows at most that many
            extra attempts; a :class:`Retry` sets the backoff too.
        tls: Certificates for gRPC TLS or HTTPS (turns TLS on).
        headers: Sent with every request (e.g. for an auth proxy).
        bearer_token: Sent as ``authorization: Bearer <token>``; never logged.
        admin_key: The server's admin key (``medserve serve --admin-key-file``,
            the k8s Secret ``triton-admin``), sent only with admin calls
            (shared-memory registration); never logged.
        send_encoded: Send the encoded file bytes to ``<model>_encoded`` and
            let the server decode and resize them.
        shared_memory: Pass tensors through system shared memory (client and
            server on the same host).
        max_concurrency: Requests in flight when one call is split.
        max_pixels: Larger images are refused as decompression bombs.
        load_balancing: gRPC's policy over the servers the target resolves to:
            ``"round_robin"`` (the default for ``dns:``, ``ipv4:`` and ``ipv6:``
            targets: each request goes to the next ready server) or
            ``"pick_first"`` (gRPC's default for ``host:port``: one server at a
            time). Not for HTTP.
        transport: A ready :class:`~medserve_client._transport.Transport`
            (tests pass a fake one); by default one is opened on first use.
    """

    def _init_state(self) -> None:
        # Threads share a Client: the lock guards the caches, the pool and closing.
        self._lock = threading.RLock()
        self._executor: ThreadPoolExecutor | None = None

    # -- lifecycle -----------------------------------------------------------------

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Unregister and unlink shared memory, stop the threads, close connections."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            shm, self._shm = self._shm, None
            executor, self._executor = self._executor, None
            transport = self._transport
        try:
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)
            if shm is not None:
                # A shm region exists only after the transport registered it.
                assert transport is not None
                timeout_s = self.endpoint.timeout.connect_s
                shm.close(lambda name: transport.unregister_shm(name, timeout_s=timeout_s))
        finally:
            if transport is not None:
                transport.close()

    def _wire(self) -> Transport:
        with self._lock:
            if self._closed:
                raise self._closed_error()
            if self._transport is None:
                from medserve_client._sync_transports import open_transport

                self._transport = open_transport(self.endpoint)
            return self._transport

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self.max_concurrency, thread_name_prefix="medserve-client"
                )
            return self._executor

    def _call(
        self, what: str, attempt: Callable[[float], Any], deadline: Deadline | None = None
    ) -> Any:
        deadline = deadline or Deadline(self.endpoint.timeout.request_s)
        return call_with_retry(attempt, retry=self.retry, deadline=deadline, what=what)

    # -- health and metadata -------------------------------------------------------

    def ready(self) -> bool:
        """True when the server is reachable and the model is ready; never raises for that."""
        try:
            self.check_ready()
        except (ServerUnavailableError, ModelNotReadyError) as exc:
            log.debug("not ready: %s", exc)
            return False
        return True

    def check_ready(self) -> None:
        """Probe once (within the connect timeout); return if ready, else raise why not.

        Raises:
            ServerUnavailableError: No server answers, or it answers that it is
                not ready yet (still loading models).
            ModelNotReadyError: The server is ready but the model (or the
                pinned version) is unknown or not ready.
        """
        wire = self._wire()
        timeout_s = self.endpoint.timeout.connect_s
        server_ready = wire.server_ready(timeout_s=timeout_s)
        if not server_ready or not wire.model_ready(
            self.model, self.version or "", timeout_s=timeout_s
        ):
            raise self._readiness_error(server_ready=server_ready)

    def wait_until_ready(self, timeout_s: float = 60.0, *, poll_s: float = 0.25) -> None:
        """Block until :meth:`ready`, polling.

        Raises:
            ServerUnavailableError: The server did not answer within ``timeout_s``.
            ModelNotReadyError: The server answered but the model was not ready in time.
        """
        deadline = Deadline(timeout_s)
        wire = self._wire()
        server_seen = False
        while True:
            probe_s = max(0.05, min(self.endpoint.timeout.connect_s, deadline.remaining_s()))
            try:
                if wire.server_ready(timeout_s=probe_s):
                    server_seen = True
                    if wire.model_ready(self.model, self.version or "", timeout_s=probe_s):
                        return
            except (ServerUnavailableError, ModelNotReadyError):
                pass
            if deadline.remaining_s() <= poll_s:
                break
            time.sleep(poll_s)
        raise self._not_ready_error(server_seen=server_seen, timeout_s=timeout_s)

    def model_info(self) -> ModelInfo:
        """Input name, dtype and shape, labels, max batch size and version, from the server.

        Read once (metadata, config and one classification request for the
        labels) and cached for the life of the client.
        """
        with self._lock:
            if self._closed:
                raise self._closed_error()
            if self._info is not None:
                return self._info
        wire, version = self._wire(), self.version or ""

        def fetch(remaining_s: float) -> ModelInfo:
            metadata = wire.model_metadata(self.model, version, timeout_s=remaining_s)
            config = wire.model_config(self.model, version, timeout_s=remaining_s)
            info, labelled = self._info_without_labels(metadata, config)
            if not labelled:
                return info
            reply = wire.infer(
                _core.label_call(info, model=self.model, version=version, timeout_s=remaining_s)
            )
            return self._info_with_labels(metadata, config, info, reply.outputs[info.output_name])

        info = self._check_medserve_model(self._call(f"model info of {self.model!r}", fetch))
        with self._lock:
            self._info = info
        return info

    def _encoded_entry(self) -> contract.EncodedEntry:
        with self._lock:
            if self._encoded is not None:
                return self._encoded
        name, wire = contract.encoded_model(self.model), self._wire()

        def fetch(remaining_s: float) -> contract.EncodedEntry:
            metadata = wire.model_metadata(name, "", timeout_s=remaining_s)
            config = wire.model_config(name, "", timeout_s=remaining_s)
            return contract.encoded_entry_from(metadata, config)

        entry: contract.EncodedEntry = self._call(f"model info of {name!r}", fetch)
        with self._lock:
            self._encoded = entry
        return entry

    # -- explanation -------------------------------------------------------------------

    def explain(
        self, inputs: Any, *, class_index: int | str | None = None, timeout_s: float | None = None
    ) -> list[Explanation]:
        """Grad-CAM explanations of one input or many, from ``<model>_explain``; in order.

        Supportive only, not a diagnosis. Inputs are read and preprocessed as
        in :meth:`classify` (DICOM windowed, resized here); more inputs than
        the explain model's ``max_batch_size`` are split into concurrent requests.

        Args:
            inputs: What :meth:`classify` accepts.
            class_index: The class to explain, by index or label, for every
                input; ``None`` (or ``-1``) explains each input's predicted class.
            timeout_s: Deadline of this call (default: the client's ``request_s``).

        Raises:
            InvalidInputError: An input cannot be read, or the class does not exist.
            MedServeError: Any other failure, as its most specific subclass.
        """
        from medserve_client._explain_calls import explain_blocking

        return explain_blocking(self, inputs, class_index=class_index, timeout_s=timeout_s)

    # -- classification --------------------------------------------------------------

    def classify(
        self, inputs: Any, *, top_k: int = 1, timeout_s: float | None = None
    ) -> list[Prediction]:
        """Classify one input or many; returns one :class:`Prediction` per input, in order.

        Args:
            inputs: A path, bytes, PIL image, numpy array (HWC uint8 or float in
                [0, 1]; a 4-D array is a batch), pydicom dataset, DICOM path,
                :class:`DicomSource`, or a list mixing them.
            top_k: How many ``(label, score)`` pairs each prediction lists.
            timeout_s: Deadline of this call (default: the client's ``request_s``).

        Raises:
            InvalidInputError: An input cannot be read (named by path or position).
            MedServeError: Any other failure, as its most specific subclass.
        """
        _core.check_top_k(top_k)
        items, _single = _core.as_list(inputs)
        if not items:
            return []
        self.model_info()  # Cached; outside the deadline of this call.
        deadline = Deadline(timeout_s or self.endpoint.timeout.request_s)
        return self._classify_items(items, top_k=top_k, deadline=deadline, parallel=True)

    def classify_many(
        self, inputs: Iterable[Any], *, concurrency: int = 8, top_k: int = 1
    ) -> Iterator[Prediction]:
        """Classify a stream of inputs, one request each, ``concurrency`` in flight.

        Results come in input order. ``concurrency`` requests are in flight,
        and at most ``2 * concurrency`` inputs are read ahead of the results
        handed out (backpressure: a slow server or a slow consumer slows the
        reading of ``inputs``). Concurrent single-image requests are what lets
        Triton's dynamic batcher form batches. Closing the iterator early
        stops the reading and waits for the requests already sent.
        """
        _core.check_top_k(top_k)
        check_concurrency(concurrency)
        self.model_info()  # Fail fast (and once) if the model is missing.

        def one(item: Any, index: int) -> Prediction:
            deadline = Deadline(self.endpoint.timeout.request_s)
            return self._classify_items([item], top_k=top_k, deadline=deadline, first=index)[0]

        return ordered_map(one, inputs, concurrency=concurrency)

    def _classify_items(
        self,
        items: Sequence[Any],
        *,
        top_k: int,
        deadline: Deadline,
        parallel: bool = False,
        first: int = 0,
    ) -> list[Prediction]:
        info = self.model_info()
        prepared = prepare_all(
            items,
            encoded=self.send_encoded,
            target_hw=info.image_size,
            max_pixels=self.max_pixels,
            first=first,
        )
        batch_limit = (
            self._encoded_entry().max_batch_size if self.send_encoded else info.max_batch_size
        )
        chunks = _core.split_batches(prepared, max(1, batch_limit))
        if len(chunks) == 1 or not parallel:
            results = [self._send(chunk, info, top_k, deadline) for chunk in chunks]
        else:
            futures = [self._pool().submit(self._send, c, info, top_k, deadline) for c in chunks]
            results = [future.result() for future in futures]
        return [prediction for chunk_result in results for prediction in chunk_result]

    def _send(
        self, chunk: Sequence[Any], info: ModelInfo, top_k: int, deadline: Deadline
    ) -> list[Prediction]:
        wire = self._wire()
        if self.send_encoded:
            call = _core.encoded_call(self._encoded_entry(), chunk)
            return self._infer(wire, call, info, top_k, deadline, call.outputs[0].name)
        call = _core.tensor_call(info, model=self.model, version=self.version or "", chunk=chunk)
        if self.shared_memory:
            return self._infer_shm(wire, call, info, top_k, deadline)
        return self._infer(wire, call, info, top_k, deadline, info.output_name)

    def _infer(
        self,
        wire: Transport,
        call: InferCall,
        info: ModelInfo,
        top_k: int,
        deadline: Deadline,
        output_name: str,
    ) -> list[Prediction]:
        def attempt(remaining_s: float) -> list[Prediction]:
            started = time.perf_counter()
            reply = wire.infer(replace(call, timeout_s=remaining_s))
            latency_ms = (time.perf_counter() - started) * 1000.0
            return _core.to_predictions(
                reply.outputs[output_name],
                info=info,
                top_k=top_k,
                model_version=reply.model_version,
                latency_ms=latency_ms,
                model_name=call.model,
            )

        return list(self._call(f"infer on {call.model!r}", attempt, deadline))

    def _infer_shm(
        self, wire: Transport, call: InferCall, info: ModelInfo, top_k: int, deadline: Deadline
    ) -> list[Prediction]:
        pool = self._shm_pool(info)
        slot, is_new = pool.acquire()
        try:
            if is_new:
                self._call(
                    "register shared memory",
                    lambda remaining_s: wire.register_shm(
                        slot.name, slot.key, slot.byte_size, timeout_s=remaining_s
                    ),
                    deadline,
                )
                slot.registered = True
            request, out_shape = shm_request(slot, call, info)

            def attempt(remaining_s: float) -> list[Prediction]:
                started = time.perf_counter()
                reply = wire.infer(replace(request, timeout_s=remaining_s))
                latency_ms = (time.perf_counter() - started) * 1000.0
                return _core.to_predictions(
                    slot.read_output(np.float32, out_shape),
                    info=info,
                    top_k=top_k,
                    model_version=reply.model_version,
                    latency_ms=latency_ms,
                )

            return list(self._call(f"infer on {call.model!r} (shared memory)", attempt, deadline))
        finally:
            pool.release(slot)

    def _shm_pool(self, info: ModelInfo) -> ShmPool:
        with self._lock:
            if self._closed:
                raise self._closed_error()
            if self._shm is None:
                self._shm = pool_for(info)
            return self._shm
