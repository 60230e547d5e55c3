"""What the tuner may change in the local config, and how a candidate becomes a ``ModelConfig``.

Usage::

    base = parse_config(repo / "medcnn" / "configs" / "local.pbtxt")
    start = Candidate.from_config(base)
    dims = dimensions(start, runtimes=runtime_choices(version_dir), cpus=2, max_batch_size=64)
    config = start.apply(base)          # a new ModelConfig message; base is untouched

A :class:`Candidate` is one point of the space: runtime (TensorFlow, onnxruntime
FP32, onnxruntime INT8 when ``model_int8.onnx`` was exported), max batch size,
preferred batch sizes, max queue delay, instance count and the thread pools of
each instance (the Python backend's ``intra_op_threads`` / ``inter_op_threads``
parameters; ``None`` leaves ``model.py``'s own split of the CPUs). Candidates
are applied to the parsed local config as protobuf edits, so every other field
(tensors, labels, queue policy, warm-up inputs) stays the export's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tritonclient.grpc import model_config_pb2 as mc

from medserve.model_config import LOCAL_PREFERRED_BATCH_SIZES, RUNTIME_PARAMETER
from medserve.spec import INT8_FILENAME, ONNX_FILENAME
from medserve.triton_backend.served_config import ONNX_FILE_PARAMETER
from medserve.triton_backend.threads import INTER_OP_PARAMETER, INTRA_OP_PARAMETER

INT8_ONNX_FILE = INT8_FILENAME  # medserve export --int8
# How the dynamic batcher is told which batch sizes to aim for.
PREFERRED_POLICIES = ("none", "max", "quarters", "runtime")
QUEUE_DELAYS_US = (0, 500, 2000, 8000)
BATCH_SIZES = (8, 16, 32, 64)


@dataclass(frozen=True)
class RuntimeChoice:
    """A way to run the network: ``runtime`` parameter plus the ONNX file it loads."""

    name: str
    runtime: str
    onnx_file: str = ""


TENSORFLOW = RuntimeChoice("tensorflow", "tensorflow")
ONNXRUNTIME = RuntimeChoice("onnxruntime", "onnxruntime")
ONNXRUNTIME_INT8 = RuntimeChoice("onnxruntime-int8", "onnxruntime", INT8_ONNX_FILE)


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One configuration of the classifier on the local server.

    Attributes:
        runtime: What runs the network.
        max_batch_size: Largest batch the dynamic batcher forms.
        preferred: ``"none"`` (no preferred sizes: the batcher takes what has
            arrived), ``"max"`` (only the max batch size), ``"quarters"``
            (max/4, max/2, max: the exporter's default for the other
            configs), ``"runtime"`` (the runtime's fastest in-process batch,
            ``LOCAL_PREFERRED_BATCH_SIZES``: the local config's default).
        max_queue_delay_us: How long the batcher may hold a request to fill a batch.
        instances: Model instances (backend stub processes) on the CPU.
        intra_op_threads: Threads inside one op per instance (None: the CPUs
            split over the instances, ``model.py``'s default).
        inter_op_threads: Ops run in parallel per instance (None: 1).
    """

    runtime: RuntimeChoice
    max_batch_size: int
    preferred: str
    max_queue_delay_us: int
    instances: int = 1
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None

    def __post_init__(self) -> None:
        if self.preferred not in PREFERRED_POLICIES:
            raise ValueError(f"preferred must be one of {PREFERRED_POLICIES}: {self.preferred!r}")
        if self.max_batch_size < 1 or self.instances < 1 or self.max_queue_delay_us < 0:
            raise ValueError(f"invalid candidate {self}")

    @property
    def label(self) -> str:
        """A short unique name for tables: ``tensorflow b32 p=max d500us i1 t2/1``."""
        threads = f"{self.intra_op_threads or '-'}/{self.inter_op_threads or '-'}"
        return (
            f"{self.runtime.name} b{self.max_batch_size} p={self.preferred} "
            f"d{self.max_queue_delay_us}us i{self.instances} t{threads}"
        )

    def preferred_batch_sizes(self) -> list[int]:
        """The ``preferred_batch_size`` list this candidate writes."""
        if self.preferred == "none":
            return []
        if self.preferred == "max":
            return [self.max_batch_size]
        if self.preferred == "runtime":
            best = LOCAL_PREFERRED_BATCH_SIZES[self.runtime.runtime]  # type: ignore[index]
            return sorted({min(size, self.max_batch_size) for size in best})
        top = self.max_batch_size
        return sorted({size for size in (top // 4, top // 2) if size > 0} | {top})

    def to_dict(self) -> dict[str, Any]:
        """The candidate as plain JSON values."""
        return {
            "label": self.label,
            "runtime": self.runtime.name,
            "onnx_file": self.runtime.onnx_file or None,
            "max_batch_size": self.max_batch_size,
            "preferred_batch_sizes": self.preferred_batch_sizes(),
            "max_queue_delay_us": self.max_queue_delay_us,
            "instances": self.instances,
            "intra_op_threads": self.intra_op_threads,
            "inter_op_threads": self.inter_op_threads,
        }

    @classmethod
    def from_config(cls, config: mc.ModelConfig) -> Candidate:
        """The candidate a local config already is (the search starts there)."""
        if _parameter(config, RUNTIME_PARAMETER) == "onnxruntime":
            int8 = _parameter(config, ONNX_FILE_PARAMETER) == INT8_ONNX_FILE
            runtime = ONNXRUNTIME_INT8 if int8 else ONNXRUNTIME
        else:
            runtime = TENSORFLOW
        sizes = sorted(config.dynamic_batching.preferred_batch_size)
        top = config.max_batch_size
        # Which policy writes these sizes back ("quarters" for any other list).
        preferred = next(
            (
                policy
                for policy in PREFERRED_POLICIES
                if cls(
                    runtime=runtime, max_batch_size=top, preferred=policy, max_queue_delay_us=0
                ).preferred_batch_sizes()
                == sizes
            ),
            "quarters",
        )
        return cls(
            runtime=runtime,
            max_batch_size=top,
            preferred=preferred,
            max_queue_delay_us=int(config.dynamic_batching.max_queue_delay_microseconds),
            instances=sum(group.count or 1 for group in config.instance_group) or 1,
            intra_op_threads=_int_parameter(config, INTRA_OP_PARAMETER),
            inter_op_threads=_int_parameter(config, INTER_OP_PARAMETER),
        )

    def apply(self, base: mc.ModelConfig) -> mc.ModelConfig:
        """A copy of ``base`` (a Python-backend local config) with this candidate's settings."""
        config = copy.deepcopy(base)
        config.parameters[RUNTIME_PARAMETER].string_value = self.runtime.runtime
        _set_parameter(config, ONNX_FILE_PARAMETER, self.runtime.onnx_file or None)
        _set_parameter(config, INTRA_OP_PARAMETER, self.intra_op_threads)
        _set_parameter(config, INTER_OP_PARAMETER, self.inter_op_threads)
        config.max_batch_size = self.max_batch_size
        batching = config.dynamic_batching
        batching.max_queue_delay_microseconds = self.max_queue_delay_us
        del batching.preferred_batch_size[:]
        batching.preferred_batch_size.extend(self.preferred_batch_sizes())
        del config.instance_group[:]
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=self.instances)
        # Warm-up covers both ends of the batch range: a batch above the new
        # maximum would fail the load, a smaller maximum needs its own warm-up.
        for warmup in config.model_warmup:
            if warmup.batch_size > 1:
                warmup.batch_size = self.max_batch_size
                warmup.name = f"zeros_batch_{self.max_batch_size}"
        return config


def _parameter(config: mc.ModelConfig, key: str) -> str:
    return config.parameters[key].string_value if key in config.parameters else ""


def _int_parameter(config: mc.ModelConfig, key: str) -> int | None:
    value = _parameter(config, key)
    return int(value) if value else None


def _set_parameter(config: mc.ModelConfig, key: str, value: object | None) -> None:
    if value is None:
        if key in config.parameters:
            del config.parameters[key]
    else:
        config.parameters[key].string_value = str(value)


def runtime_choices(version_dir: Path) -> list[RuntimeChoice]:
    """The runtimes the newest version can run: its SavedModel and whichever ONNX files exist."""
    choices = [TENSORFLOW]
    if (version_dir / ONNX_FILENAME).is_file():
        choices.append(ONNXRUNTIME)
    if (version_dir / INT8_ONNX_FILE).is_file():
        choices.append(ONNXRUNTIME_INT8)
    return choices


@dataclass(frozen=True)
class Dimension:
    """One axis of the coordinate search: its name, its values, how a value is set."""

    name: str
    values: tuple[Any, ...]
    setter: Callable[[Candidate, Any], Candidate]

    def candidates(self, current: Candidate) -> list[Candidate]:
        """``current`` with each value of this axis in turn (duplicates removed, order kept)."""
        seen: list[Candidate] = []
        for value in self.values:
            candidate = self.setter(current, value)
            if candidate not in seen:
                seen.append(candidate)
        return seen


def _set_parallelism(candidate: Candidate, value: tuple[int, int | None, int | None]) -> Candidate:
    instances, intra, inter = value
    return replace(candidate, instances=instances, intra_op_threads=intra, inter_op_threads=inter)


def _set_max_batch(candidate: Candidate, value: int) -> Candidate:
    return replace(candidate, max_batch_size=value)


def parallelism_choices(cpus: int) -> tuple[tuple[int, int | None, int | None], ...]:
    """(instances, intra-op, inter-op) triples worth trying on ``cpus`` CPUs.

    One instance owning every CPU, one instance per pair and per CPU (the
    default split), two inter-op threads, and two instances each with every
    CPU (oversubscribed: it can win when each instance is often idle waiting
    for the batcher).
    """
    cpus = max(1, cpus)
    choices: list[tuple[int, int | None, int | None]] = [(1, None, None), (1, cpus, 2)]
    for instances in sorted({2, max(2, cpus // 2), min(cpus, 4)}):
        if instances <= cpus:
            choices.append((instances, None, None))
    if cpus >= 2:
        choices.append((2, cpus, 1))
    return tuple(dict.fromkeys(choices))


def dimensions(
    start: Candidate,
    *,
    runtimes: Sequence[RuntimeChoice],
    cpus: int,
    max_batch_size: int,
) -> list[Dimension]:
    """The axes of the search, most influential first (the coordinate order).

    Args:
        start: The starting candidate (its own values are always among the choices).
        runtimes: What the export can run (:func:`runtime_choices`).
        cpus: CPUs the server may use.
        max_batch_size: The spec's max batch size: no candidate goes above it,
            so the decoder and the ensemble (exported for it) stay valid.
    """
    batch_sizes = sorted(
        {size for size in BATCH_SIZES if size <= max_batch_size}
        | {start.max_batch_size, max_batch_size}
    )
    parallel = (
        (start.instances, start.intra_op_threads, start.inter_op_threads),
        *parallelism_choices(cpus),
    )
    return [
        Dimension("runtime", tuple(runtimes), lambda c, v: replace(c, runtime=v)),
        Dimension("parallelism", tuple(dict.fromkeys(parallel)), _set_parallelism),
        Dimension("max_batch_size", tuple(batch_sizes), _set_max_batch),
        Dimension(
            "max_queue_delay_us",
            tuple(sorted({*QUEUE_DELAYS_US, start.max_queue_delay_us})),
            lambda c, v: replace(c, max_queue_delay_us=v),
        ),
        Dimension("preferred", PREFERRED_POLICIES, lambda c, v: replace(c, preferred=v)),
    ]
