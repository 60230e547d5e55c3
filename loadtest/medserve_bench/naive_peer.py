"""The benchmark's naive peer: a Flask app that calls ``model.predict`` per request.

Usage::

    MEDLOAD_PEER_MODEL=work/model/model.keras gunicorn \\
        --workers 2 --bind 127.0.0.1:8500 'medserve_bench.naive_peer:create_app()'
    curl --data-binary @one_image.u8 -H 'X-Image-Shape: 1,224,224,3' \\
        http://127.0.0.1:8500/predict          # {"probabilities": [[...]], "labels": [...]}

    with PeerServer(Path("work/model/model.keras"), workers=2) as peer:
        peer.url                                 # "http://127.0.0.1:PORT"

This is the common way to put a Keras model behind an API, built honestly:
load the Keras model once per worker, put a small web API in front of it, run it under a
production WSGI server (gunicorn, one sync worker per core: the work is
CPU-bound, so more workers only add TensorFlow runtimes fighting for the same
cores) and call ``model.predict`` on each request as it arrives. It receives
the same uint8 pixels as medserve's uint8 path (raw bytes, shape in a header),
so the comparison is about how requests are served (per request versus
batched by Triton), not about JSON encoding. The scaling to [0, 1] is the one
the exported SavedModel does in its graph.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

MODEL_ENV = "MEDLOAD_PEER_MODEL"
LABELS_ENV = "MEDLOAD_PEER_LABELS"
SHAPE_HEADER = "X-Image-Shape"


def create_app(model_path: str | None = None) -> Any:
    """Build the Flask app; loads the Keras model (``$MEDLOAD_PEER_MODEL``) now.

    Args:
        model_path: A ``.keras`` file; defaults to the environment variable.
    """
    import keras
    from flask import Flask, jsonify, request

    path = model_path or os.environ[MODEL_ENV]
    model = keras.models.load_model(path, compile=False)
    labels = [x for x in os.environ.get(LABELS_ENV, "").split(",") if x]
    app = Flask("naive_peer")

    @app.get("/health")
    def health() -> Any:
        return jsonify({"status": "ok"})

    @app.post("/predict")
    def predict() -> Any:
        try:
            shape = tuple(int(d) for d in request.headers[SHAPE_HEADER].split(","))
            pixels = np.frombuffer(request.get_data(), dtype=np.uint8).reshape(shape)
        except (KeyError, ValueError) as exc:
            return jsonify({"error": f"bad image: {type(exc).__name__}"}), 400
        probabilities = model.predict(pixels.astype(np.float32) / 255.0, verbose=0)
        body: dict[str, Any] = {"probabilities": probabilities.tolist()}
        if labels:
            body["labels"] = [labels[i] for i in probabilities.argmax(axis=1)]
        return jsonify(body)

    return app


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (another process may take it later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PeerServer:
    """Runs the naive peer under gunicorn in a subprocess; stops it on exit."""

    def __init__(
        self,
        model_path: Path,
        *,
        workers: int = 2,
        port: int | None = None,
        labels: tuple[str, ...] = (),
        start_timeout_s: float = 120.0,
        log_path: Path | None = None,
    ) -> None:
        self.model_path = model_path.resolve()  # gunicorn runs in loadtest/ (--chdir)
        self.workers = workers
        self.port = port or free_port()
        self.labels = labels
        self.start_timeout_s = start_timeout_s
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        """Base URL of the peer."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """Pid of gunicorn's master (the root of its workers), if running."""
        return self._process.pid if self._process is not None else None

    def start(self) -> PeerServer:
        """Start gunicorn and wait until a worker answers ``/health``."""
        self.launch()
        return self.wait_ready()

    def launch(self) -> None:
        """Start gunicorn without waiting (workers load the model meanwhile)."""
        env = dict(os.environ)
        env.update({MODEL_ENV: str(self.model_path), LABELS_ENV: ",".join(self.labels)})
        # Closed in stop(): the server outlives this method.
        self._log = open(self.log_path, "wb") if self.log_path else None  # noqa: SIM115
        self._process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn",
                "--workers", str(self.workers), "--bind", f"127.0.0.1:{self.port}",
                "--timeout", "300", "--backlog", "256", "medserve_bench.naive_peer:create_app()",
            ],
            env=env, stdout=self._log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True,  # Its own process group: stop() can kill workers too.
        )  # fmt: skip

    def wait_ready(self) -> PeerServer:
        """Wait until a worker answers ``/health``; stop the server if it never does."""
        if self._process is None:
            raise RuntimeError("the naive peer is not launched")
        deadline = time.monotonic() + self.start_timeout_s
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise RuntimeError(f"naive peer exited with {self._process.returncode}")
                try:
                    with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                        if response.status == 200:
                            return self
                except (urllib.error.URLError, OSError):
                    time.sleep(0.5)
            raise TimeoutError(f"naive peer did not answer within {self.start_timeout_s} s")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop gunicorn (and so its workers); kill it if it does not go."""
        process, self._process = self._process, None
        try:
            if process is not None and process.poll() is None:
                process.terminate()  # gunicorn stops its workers on SIGTERM.
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self) -> PeerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
