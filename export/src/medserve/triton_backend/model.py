"""Triton Python-backend model that runs a TensorFlow SavedModel or ``model.onnx``, batched.

Usage (the exporter copies this file next to the SavedModel)::

    <repo>/medcnn/1/model.py             # this file
    <repo>/medcnn/1/model.savedmodel/    # signature "serving_default"
    <repo>/medcnn/1/model.onnx           # the same model for onnxruntime
    <repo>/medcnn/configs/local.pbtxt    # backend: "python", dynamic_batching,
                                         # parameters runtime: "onnxruntime"

    # locate the template from exporter code:
    from importlib.resources import files
    template = files("medserve.triton_backend") / "model.py"

Triton imports this file inside its Python-backend stub process (one process
per model instance), where ``triton_python_backend_utils`` exists. It does not
import ``medserve``: a model repository must be self-contained.

Tensor names and data types come from the model config (never hard-coded), so
the same file serves the classifier (``image`` UINT8 -> ``probabilities`` FP32)
and the preprocessing model (``image_bytes`` STRING -> ``image`` UINT8).

The config parameter ``runtime`` chooses what runs: ``"tensorflow"`` (the
default) loads ``model.savedmodel``; ``"onnxruntime"`` loads ``model.onnx`` in
an onnxruntime session on the CPU provider with the same thread pools. Both
are checked against the config's tensor names and data types at load. The
parameter ``onnx_file`` names another ONNX file of the version directory for
``"onnxruntime"`` (``model_int8.onnx`` under ``configs/local-int8.pbtxt``).

How ``execute`` batches: Triton hands over every request its dynamic batcher
collected; they are concatenated along the batch axis into ONE TensorFlow call
and the outputs are split back by each request's batch size. If that call fails
(typically one corrupt encoded image among good ones), each request is run on
its own so only the bad request answers with a ``TritonError``.

How the thread pools are chosen (see :func:`choose_thread_pools`): every
instance is its own process sharing the CPUs this process may use (its CPU
affinity, capped by a cgroup CPU quota, e.g. a Kubernetes CPU limit). Each
instance gets ``max(1, cpus // instances)`` intra-op threads (the threads one
convolution or matmul is split over) so instances do not oversubscribe the
cores, and 1 inter-op thread because the CNN is a chain of ops with no
independent branches to run side by side; more inter-op threads would only
compete for the same cores. Override per model with config ``parameters``
``intra_op_threads`` / ``inter_op_threads`` (string values, e.g. "2").

Logs carry model names, counts, shapes and error classes: never tensor
contents, so no pixel or patient data reaches the server log.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

try:  # Only exists inside Triton's Python-backend stub.
    import triton_python_backend_utils as pb_utils
except ImportError:  # pragma: no cover - imported outside Triton (docs, unit tests)
    pb_utils = None

SAVEDMODEL_DIRNAME = "model.savedmodel"
ONNX_FILENAME = "model.onnx"
SIGNATURE_NAME = "serving_default"
RUNTIME_PARAMETER = "runtime"
ONNX_FILE_PARAMETER = "onnx_file"
RUNTIMES = ("tensorflow", "onnxruntime")
# onnxruntime's tensor(...) type names -> numpy dtype names.
_ORT_TO_NUMPY = {"tensor(uint8)": "uint8", "tensor(float)": "float32", "tensor(string)": "string"}
INTRA_OP_PARAMETER = "intra_op_threads"
INTER_OP_PARAMETER = "inter_op_threads"
# Longest error text sent back to a client; TensorFlow messages can carry
# multi-line graph traces that help nobody calling the server.
_MAX_ERROR_CHARS = 300
_TF_NOISE = ("Graph execution error", "Detected at node", "<stack traces unavailable>")

# Triton config data types -> numpy dtypes (TensorFlow names match numpy's, but
# strings are tf.string and numpy objects).
_TRITON_TO_NUMPY = {
    "TYPE_BOOL": np.bool_,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_STRING": np.object_,
}


class RequestError(Exception):
    """One request cannot be served; its message goes back to that client."""


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # No cgroup v2 quota visible: the affinity is the limit.
    return max(1, cpus)


def instance_count(model_config: dict[str, Any]) -> int:
    """Total instances (stub processes) of this model across its instance groups."""
    groups = model_config.get("instance_group") or [{}]
    return max(1, sum(int(group.get("count", 1) or 1) for group in groups))


def _int_parameter(model_config: dict[str, Any], key: str) -> int | None:
    raw = (model_config.get("parameters") or {}).get(key, {}).get("string_value")
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"config parameter {key!r} must be an integer, got {raw!r}") from exc
    if value < 1:
        raise ValueError(f"config parameter {key!r} must be at least 1, got {value}")
    return value


def choose_thread_pools(model_config: dict[str, Any], cpus: int) -> tuple[int, int]:
    """Pick ``(intra_op, inter_op)`` thread counts for one instance.

    Args:
        model_config: The model config as Triton passes it (parsed JSON).
        cpus: CPUs the server process may use.

    Returns:
        Config ``parameters`` win; otherwise the CPUs are split evenly over the
        instances for intra-op work and one inter-op thread runs the op chain.
    """
    intra = _int_parameter(model_config, INTRA_OP_PARAMETER)
    inter = _int_parameter(model_config, INTER_OP_PARAMETER)
    if intra is None:
        intra = max(1, cpus // instance_count(model_config))
    if inter is None:
        inter = 1
    return intra, inter


def _short(exc: BaseException) -> str:
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
    if len(reason) > _MAX_ERROR_CHARS:
        reason = reason[:_MAX_ERROR_CHARS] + "..."
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__


def _fit_rank(array: np.ndarray, rank: int | None) -> np.ndarray:
    """Drop or add trailing size-1 axes so ``array`` has the signature's rank.

    A STRING input declared with dims ``[1]`` arrives as ``[batch, 1]`` while a
    decode signature usually takes ``[batch]``; the reverse also happens.
    """
    if rank is None or array.ndim == rank:
        return array
    if array.ndim == rank + 1 and array.shape[-1] == 1:
        return array.reshape(array.shape[:-1])
    if array.ndim + 1 == rank:
        return array.reshape((*array.shape, 1))
    return array


class TritonPythonModel:
    """Serves one SavedModel signature with Triton's Python backend."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the SavedModel once for this instance and check it against the config.

        Args:
            args: Triton's arguments: ``model_config`` (JSON), ``model_repository``
                (this model's directory), ``model_version``, ``model_name``.

        Raises:
            ValueError: The config and the SavedModel disagree (names, dtypes),
                or a thread-pool parameter is invalid; Triton reports the
                message as the load failure.
        """
        self._read_config(args)
        cpus = available_cpus()
        intra, inter = choose_thread_pools(self.model_config, cpus)
        self._session: Any = None
        if self.runtime == "onnxruntime":
            self._load_onnx(args, intra, inter, cpus)
        else:
            self._load_savedmodel(args, intra, inter, cpus)
            self._install_fast_exit()

    def _read_config(self, args: dict[str, str]) -> None:
        """The config's tensors, batching and runtime (Triton passes the config as JSON)."""
        self.model_config: dict[str, Any] = json.loads(args["model_config"])
        self.model_name = args.get("model_name", self.model_config.get("name", "model"))
        self.max_batch_size = int(self.model_config.get("max_batch_size", 0))
        self.inputs = [
            (item["name"], item["data_type"]) for item in self.model_config.get("input", [])
        ]
        self.outputs = [
            (item["name"], item["data_type"], [int(d) for d in item.get("dims", [])])
            for item in self.model_config.get("output", [])
        ]
        if not self.inputs or not self.outputs:
            raise ValueError(f"model {self.model_name}: config declares no inputs or no outputs")
        # A failure on encoded bytes is almost always a file that is not an image.
        encoded = [name for name, data_type in self.inputs if data_type == "TYPE_STRING"]
        self._hint = (
            f"; input {encoded[0]!r} must hold the bytes of a PNG or JPEG file" if encoded else ""
        )
        runtime = (self.model_config.get("parameters") or {}).get(RUNTIME_PARAMETER, {})
        self.runtime = runtime.get("string_value") or "tensorflow"
        if self.runtime not in RUNTIMES:
            raise ValueError(
                f"model {self.model_name}: config parameter {RUNTIME_PARAMETER!r} must be one "
                f"of {', '.join(RUNTIMES)}, got {self.runtime!r}"
            )
        onnx_file = (self.model_config.get("parameters") or {}).get(ONNX_FILE_PARAMETER, {})
        self.onnx_file = onnx_file.get("string_value") or ONNX_FILENAME
        # A file name of this version directory, never a path to elsewhere.
        if Path(self.onnx_file).name != self.onnx_file or not self.onnx_file.endswith(".onnx"):
            raise ValueError(
                f"model {self.model_name}: config parameter {ONNX_FILE_PARAMETER!r} must be the "
                f"name of an .onnx file in the version directory, got {self.onnx_file!r}"
            )

    def _load_savedmodel(self, args: dict[str, str], intra: int, inter: int, cpus: int) -> None:
        """Load ``model.savedmodel`` in TensorFlow and match its signature to the config."""
        # Checked before importing TensorFlow (seconds) so a broken repository fails fast.
        path = self._artifact_path(args, SAVEDMODEL_DIRNAME)
        if not (path / "saved_model.pb").is_file():
            raise ValueError(
                f"model {self.model_name}: no SavedModel at {path} (saved_model.pb is "
                "missing); export the model again with medserve export"
            )

        # Imported here, not at module import, so the stub starts fast and the
        # thread pools are set before TensorFlow creates its runtime context.
        import tensorflow as tf

        self._tf = tf
        try:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
            tf.config.threading.set_inter_op_parallelism_threads(inter)
        except RuntimeError as exc:  # Context already initialised in this process.
            _log("warn", f"{self.model_name}: thread pools left as they were ({_short(exc)})")
        _log(
            "info",
            f"{self.model_name}: TensorFlow {tf.__version__}, intra_op_threads={intra}, "
            f"inter_op_threads={inter} ({cpus} CPUs, {instance_count(self.model_config)} "
            "instance(s))",
        )

        self._loaded = tf.saved_model.load(str(path))
        if SIGNATURE_NAME not in self._loaded.signatures:
            raise ValueError(
                f"model {self.model_name}: SavedModel {path} has no {SIGNATURE_NAME!r} "
                f"signature (has {sorted(self._loaded.signatures)})"
            )
        self._fn = self._loaded.signatures[SIGNATURE_NAME]
        self._input_ranks = self._check_signature()
        _log("info", f"{self.model_name}: loaded {path.name} (version {args.get('model_version')})")

    def _install_fast_exit(self) -> None:
        """Inside Triton's stub only: leave the process at once when it shuts down.

        Registered after TensorFlow loaded, so it runs first at interpreter
        shutdown: TensorFlow's own teardown (module and atexit cleanup) takes
        5 s and more on a busy 2-core machine, and Triton waits for it on
        every unload and server stop. The stub holds nothing that needs a
        clean exit: the parent process owns the shared memory, and the logs
        are flushed first.
        """
        if pb_utils is not None:
            atexit.register(_exit_now)

    def _artifact_path(self, args: dict[str, str], name: str) -> Path:
        model_dir = args.get("model_repository")
        version = args.get("model_version")
        if model_dir and version:
            return Path(model_dir) / str(version) / name
        return Path(__file__).resolve().parent / name

    def _load_onnx(self, args: dict[str, str], intra: int, inter: int, cpus: int) -> None:
        """Open ``self.onnx_file`` in onnxruntime and match its tensors to the config."""
        path = self._artifact_path(args, self.onnx_file)
        if not path.is_file():
            how = "--int8" if self.onnx_file != ONNX_FILENAME else "--formats savedmodel,onnx"
            raise ValueError(
                f"model {self.model_name}: no {self.onnx_file} at {path}; export it with "
                f"medserve export {how} or set parameter runtime to tensorflow"
            )
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra
        options.inter_op_num_threads = inter
        # Idle pool threads sleep instead of spinning: they share the CPUs with
        # Triton, other instances and the clients.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        declared = {t.name: t.type for t in (*session.get_inputs(), *session.get_outputs())}
        for role, tensors in (("input", self.inputs), ("output", self.outputs)):
            for name, data_type, *_ in tensors:
                if name not in declared:
                    raise ValueError(
                        f"model {self.model_name}: config {role} {name!r} is not a tensor of "
                        f"{path.name} (it has {sorted(declared)})"
                    )
                self._check_dtype(role, name, data_type, _ORT_TO_NUMPY.get(declared[name], ""))
        self._session = session
        _log(
            "info",
            f"{self.model_name}: onnxruntime {ort.__version__}, intra_op_threads={intra}, "
            f"inter_op_threads={inter} ({cpus} CPUs, {instance_count(self.model_config)} "
            f"instance(s)); loaded {path.name} (version {args.get('model_version')})",
        )

    def _check_signature(self) -> dict[str, int | None]:
        """Match config tensors to signature tensors by name and dtype."""
        specs = self._fn.structured_input_signature[1]
        out_specs = self._fn.structured_outputs
        ranks: dict[str, int | None] = {}
        for name, data_type in self.inputs:
            if name not in specs:
                raise ValueError(
                    f"model {self.model_name}: config input {name!r} is not an input of the "
                    f"SavedModel signature (inputs: {sorted(specs)})"
                )
            self._check_dtype("input", name, data_type, specs[name].dtype.name)
            ranks[name] = specs[name].shape.rank
        for name, data_type, _dims in self.outputs:
            if name not in out_specs:
                raise ValueError(
                    f"model {self.model_name}: config output {name!r} is not an output of the "
                    f"SavedModel signature (outputs: {sorted(out_specs)})"
                )
            self._check_dtype("output", name, data_type, out_specs[name].dtype.name)
        return ranks

    def _check_dtype(self, kind: str, name: str, data_type: str, tf_dtype: str) -> None:
        numpy_type = _TRITON_TO_NUMPY.get(data_type)
        expected = "string" if numpy_type is np.object_ else None
        if numpy_type is not None and expected is None:
            expected = np.dtype(numpy_type).name
        if expected != tf_dtype:
            raise ValueError(
                f"model {self.model_name}: config {kind} {name!r} is {data_type} but the "
                f"{self.runtime} model has {tf_dtype or 'another type'}"
            )

    def execute(self, requests: list[Any]) -> list[Any]:
        """Run all ``requests`` in one TensorFlow call; isolate failures per request.

        Args:
            requests: ``pb_utils.InferenceRequest`` objects Triton batched.

        Returns:
            One ``pb_utils.InferenceResponse`` per request, in order; a failed
            request carries a ``pb_utils.TritonError`` and no outputs.
        """
        responses: list[Any] = [None] * len(requests)
        batches: list[tuple[int, dict[str, np.ndarray]]] = []
        for index, request in enumerate(requests):
            try:
                batches.append((index, self._read_request(request)))
            except RequestError as exc:
                responses[index] = self._error_response(index, str(exc))
        together = self._run_together(batches) if len(batches) > 1 else None
        for position, (index, arrays) in enumerate(batches):
            if together is not None:
                responses[index] = self._ok_response(together[position])
            else:
                responses[index] = self._run_alone(index, arrays)
        return responses

    def _run_together(
        self, batches: list[tuple[int, dict[str, np.ndarray]]]
    ) -> list[dict[str, np.ndarray]] | None:
        """Every request in ONE call, outputs split back per request; ``None`` if it fails."""
        try:
            merged = {
                name: np.concatenate([arrays[name] for _, arrays in batches], axis=0)
                for name, _ in self.inputs
            }
            outputs = self._run(merged)
        except Exception as exc:
            # Some request poisons the whole batch; the caller finds which by
            # running each on its own so the good ones still succeed.
            _log(
                "warn",
                f"{self.model_name}: batched call of {len(batches)} requests failed "
                f"({type(exc).__name__}); retrying them one by one",
            )
            return None
        parts, start = [], 0
        for _, arrays in batches:
            size = len(arrays[self.inputs[0][0]])
            parts.append({name: value[start : start + size] for name, value in outputs.items()})
            start += size
        return parts

    def _run_alone(self, index: int, arrays: dict[str, np.ndarray]) -> Any:
        """One request in its own call: its outputs, or its error."""
        try:
            return self._ok_response(self._run(arrays))
        except Exception as exc:
            return self._error_response(
                index,
                f"model {self.model_name} could not process this request: {_short(exc)}"
                f"{self._hint}",
            )

    def _read_request(self, request: Any) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {}
        size = None
        for name, data_type in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise RequestError(f"model {self.model_name}: missing input {name!r}")
            array = tensor.as_numpy()
            expected = _TRITON_TO_NUMPY[data_type]
            if expected is np.object_:
                if array.dtype != np.object_ and array.dtype.kind not in "SU":
                    raise RequestError(
                        f"model {self.model_name}: input {name!r} must be BYTES, got {array.dtype}"
                    )
                array = array.astype(np.object_)
            elif array.dtype != expected:
                raise RequestError(
                    f"model {self.model_name}: input {name!r} must be "
                    f"{np.dtype(expected).name}, got {array.dtype}"
                )
            if self.max_batch_size > 0:
                if array.ndim == 0 or (size is not None and array.shape[0] != size):
                    raise RequestError(
                        f"model {self.model_name}: inputs disagree on the batch size"
                    )
                size = array.shape[0]
            else:  # No batch axis in the config: add one for TensorFlow.
                array = array[np.newaxis, ...]
            arrays[name] = array
        return arrays

    def _run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [name for name, _, _ in self.outputs]
        if self._session is not None:
            result = dict(zip(names, self._session.run(names, arrays), strict=True))
        else:
            tf = self._tf
            feeds = {
                name: tf.constant(_fit_rank(array, self._input_ranks.get(name)))
                for name, array in arrays.items()
            }
            result = {name: value.numpy() for name, value in self._fn(**feeds).items()}
        batch = len(next(iter(arrays.values())))
        outputs: dict[str, np.ndarray] = {}
        for name, data_type, dims in self.outputs:
            value = np.asarray(result[name], dtype=_TRITON_TO_NUMPY[data_type])
            if len(value) != batch:
                raise RuntimeError(f"output {name!r} has {len(value)} rows for a batch of {batch}")
            if dims and value.ndim != len(dims) + 1:
                value = value.reshape((batch, *dims))
            outputs[name] = value
        return outputs

    def _ok_response(self, outputs: dict[str, np.ndarray]) -> Any:
        tensors = []
        for name, value in outputs.items():
            if self.max_batch_size <= 0:
                value = value[0]
            tensors.append(pb_utils.Tensor(name, np.ascontiguousarray(value)))
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def _error_response(self, index: int, message: str, *, invalid_input: bool = True) -> Any:
        _log("error", f"{self.model_name}: request {index} of the batch failed: {message}")
        # INVALID_ARG makes Triton answer 400 / INVALID_ARGUMENT, so clients
        # see "your input" rather than "the server broke" (older stubs lack codes).
        code_name = "INVALID_ARG" if invalid_input else "INTERNAL"
        code = getattr(pb_utils.TritonError, code_name, None)
        error = (
            pb_utils.TritonError(message)
            if code is None
            else pb_utils.TritonError(message, code=code)
        )
        return pb_utils.InferenceResponse(output_tensors=[], error=error)

    def finalize(self) -> None:
        """Release the SavedModel or the onnxruntime session when Triton unloads this instance."""
        self._fn = None
        self._loaded = None
        self._session = None
        _log("info", f"{getattr(self, 'model_name', 'model')}: unloaded")


def _exit_now() -> None:
    """Leave the stub process at once, skipping TensorFlow's slow teardown."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


def _log(level: str, message: str) -> None:
    """Write to Triton's server log (through the stub), or stderr outside Triton."""
    logger = getattr(pb_utils, "Logger", None)
    if logger is not None:
        {"info": logger.log_info, "warn": logger.log_warn, "error": logger.log_error}[level](
            message
        )
    else:  # pragma: no cover - outside Triton
        import logging

        getattr(logging.getLogger(__name__), "warning" if level == "warn" else level)(message)
