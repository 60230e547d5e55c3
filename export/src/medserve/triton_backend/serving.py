"""The Python-backend model behind ``model.py``: load once, run each batch in one call.

Usage (what the exported ``model.py`` does)::

    import triton_python_backend_utils as pb_utils
    from medserve.triton_backend.serving import ServedModel

    class TritonPythonModel(ServedModel):
        utils = pb_utils

How ``execute`` batches: Triton hands over every request its dynamic batcher
collected; they are concatenated along the batch axis into ONE runtime call
and the outputs are split back by each request's batch size (views, no copy).
If that call fails (typically one corrupt encoded image among good ones), each
request is run on its own so only the bad request answers with a
``TritonError``.

Logs carry model names, counts, shapes and error classes: never tensor
contents, so no pixel or patient data reaches the server log.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medserve.triton_backend.errors import RequestError, short_reason
from medserve.triton_backend.runtimes import Runner, load_runner
from medserve.triton_backend.served_config import TRITON_TO_NUMPY, ServedConfig
from medserve.triton_backend.threads import available_cpus, choose_thread_pools, instance_count

Arrays = dict[str, np.ndarray]


class ServedModel:
    """Serves one model config with Triton's Python backend.

    Attributes:
        utils: Triton's ``triton_python_backend_utils`` module, set by the
            ``model.py`` subclass (it exists only inside the stub process).
    """

    utils: ClassVar[Any] = None

    def initialize(self, args: dict[str, str]) -> None:
        """Load the model once for this instance and check it against the config.

        Args:
            args: Triton's arguments: ``model_config`` (JSON), ``model_repository``
                (this model's directory), ``model_version``, ``model_name``.

        Raises:
            ValueError: The config and the model disagree (names, dtypes), or a
                parameter is invalid; Triton reports the message as the load failure.
        """
        self.served = ServedConfig.from_json(args["model_config"], args.get("model_name"))
        self.model_name = self.served.model_name
        cpus = available_cpus()
        intra, inter = choose_thread_pools(self.served.model_config, cpus)
        self.runner: Runner | None = load_runner(
            self.served, self._version_dir(args), intra_op=intra, inter_op=inter, log=self.log
        )
        self.log(
            "info",
            f"{self.model_name}: {self.runner.description}, intra_op_threads={intra}, "
            f"inter_op_threads={inter} ({cpus} CPUs, "
            f"{instance_count(self.served.model_config)} instance(s)); loaded "
            f"{self.served.runtime} model (version {args.get('model_version')})",
        )
        if self.served.runtime == "tensorflow":
            self._install_fast_exit()

    def _version_dir(self, args: dict[str, str]) -> Path:
        model_dir = args.get("model_repository")
        version = args.get("model_version")
        if model_dir and version:
            return Path(model_dir) / str(version)
        # Outside Triton's layout: the directory of the model.py that subclassed this.
        module = sys.modules.get(type(self).__module__)
        return Path(getattr(module, "__file__", None) or ".").resolve().parent

    def _install_fast_exit(self) -> None:
        """Inside Triton's stub only: leave the process at once when it shuts down.

        Registered after TensorFlow loaded, so it runs first at interpreter
        shutdown: TensorFlow's own teardown (module and atexit cleanup) takes
        5 s and more on a busy 2-core machine, and Triton waits for it on
        every unload and server stop. The stub holds nothing that needs a
        clean exit: the parent process owns the shared memory, and the logs
        are flushed first.
        """
        if self.utils is not None:
            import atexit

            atexit.register(exit_now)

    def execute(self, requests: list[Any]) -> list[Any]:
        """Run all ``requests`` in one runtime call; isolate failures per request.

        Args:
            requests: ``pb_utils.InferenceRequest`` objects Triton batched.

        Returns:
            One ``pb_utils.InferenceResponse`` per request, in order; a failed
            request carries a ``pb_utils.TritonError`` and no outputs.
        """
        responses: list[Any] = [None] * len(requests)
        batches: list[tuple[int, Arrays]] = []
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

    def _run_together(self, batches: list[tuple[int, Arrays]]) -> list[Arrays] | None:
        """Every request in ONE call, outputs split back per request; ``None`` if it fails."""
        try:
            merged = {
                name: np.concatenate([arrays[name] for _, arrays in batches], axis=0)
                for name, _ in self.served.inputs
            }
            outputs = self._run(merged)
        except Exception as exc:
            # Some request poisons the whole batch; the caller finds which by
            # running each on its own so the good ones still succeed.
            self.log(
                "warn",
                f"{self.model_name}: batched call of {len(batches)} requests failed "
                f"({type(exc).__name__}); retrying them one by one",
            )
            return None
        parts, start = [], 0
        first_input = self.served.inputs[0][0]
        for _, arrays in batches:
            size = len(arrays[first_input])
            parts.append({name: value[start : start + size] for name, value in outputs.items()})
            start += size
        return parts

    def _run_alone(self, index: int, arrays: Arrays) -> Any:
        """One request in its own call: its outputs, or its error."""
        try:
            return self._ok_response(self._run(arrays))
        except Exception as exc:
            return self._error_response(
                index,
                f"model {self.model_name} could not process this request: {short_reason(exc)}"
                f"{self.served.hint}",
            )

    def _read_request(self, request: Any) -> Arrays:
        arrays: Arrays = {}
        size = None
        for name, data_type in self.served.inputs:
            tensor = self.utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise RequestError(f"model {self.model_name}: missing input {name!r}")
            array = tensor.as_numpy()
            expected = TRITON_TO_NUMPY[data_type]
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
            if self.served.max_batch_size > 0:
                if array.ndim == 0 or (size is not None and array.shape[0] != size):
                    raise RequestError(
                        f"model {self.model_name}: inputs disagree on the batch size"
                    )
                size = array.shape[0]
            else:  # No batch axis in the config: add one for the runtime.
                array = array[np.newaxis, ...]
            arrays[name] = array
        return arrays

    def _run(self, arrays: Arrays) -> Arrays:
        if self.runner is None:
            raise RuntimeError(f"model {self.model_name} is unloaded")
        result = self.runner.run(arrays)
        batch = len(next(iter(arrays.values())))
        outputs: Arrays = {}
        for name, data_type, dims in self.served.outputs:
            value = np.asarray(result[name], dtype=TRITON_TO_NUMPY[data_type])
            if len(value) != batch:
                raise RuntimeError(f"output {name!r} has {len(value)} rows for a batch of {batch}")
            if dims and value.ndim != len(dims) + 1:
                value = value.reshape((batch, *dims))
            outputs[name] = value
        return outputs

    def _ok_response(self, outputs: Arrays) -> Any:
        tensors = []
        for name, value in outputs.items():
            if self.served.max_batch_size <= 0:
                value = value[0]
            tensors.append(self.utils.Tensor(name, np.ascontiguousarray(value)))
        return self.utils.InferenceResponse(output_tensors=tensors)

    def _error_response(self, index: int, message: str, *, invalid_input: bool = True) -> Any:
        self.log("error", f"{self.model_name}: request {index} of the batch failed: {message}")
        # INVALID_ARG makes Triton answer 400 / INVALID_ARGUMENT, so clients
        # see "your input" rather than "the server broke" (older stubs lack codes).
        code_name = "INVALID_ARG" if invalid_input else "INTERNAL"
        code = getattr(self.utils.TritonError, code_name, None)
        error = (
            self.utils.TritonError(message)
            if code is None
            else self.utils.TritonError(message, code=code)
        )
        return self.utils.InferenceResponse(output_tensors=[], error=error)

    def finalize(self) -> None:
        """Release the model when Triton unloads this instance."""
        if getattr(self, "runner", None) is not None:
            self.runner.close()  # type: ignore[union-attr]
            self.runner = None
        self.log("info", f"{getattr(self, 'model_name', 'model')}: unloaded")

    def log(self, level: str, message: str) -> None:
        """Write to Triton's server log (through the stub), or this module's logger outside."""
        logger = getattr(self.utils, "Logger", None)
        if logger is not None:
            {"info": logger.log_info, "warn": logger.log_warn, "error": logger.log_error}[level](
                message
            )
        else:
            getattr(logging.getLogger(__name__), "warning" if level == "warn" else level)(message)


def exit_now() -> None:
    """Leave the stub process at once, skipping TensorFlow's slow teardown."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)
