"""Specs of the local server's batching defaults (``configs/local.pbtxt``), as protobuf."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tiny_export import TINY_MAX_BATCH, ExportedRepo
from tritonclient.grpc import model_config_pb2 as mc

from medserve.errors import UsageError
from medserve.model_config import (
    LOCAL_PREFERRED_BATCH_SIZES,
    ServingOptions,
    classifier_config,
    to_text,
)
from medserve.spec import ModelSpec

SPEC = ModelSpec(name="medcnn", labels=("normal", "lesion"), image_size=(224, 224))


def _batching(
    kind: str, options: ServingOptions | None = None, spec: ModelSpec = SPEC
) -> mc.ModelDynamicBatching:
    text = to_text(classifier_config(spec, kind, options))  # type: ignore[arg-type]
    return text_format.Parse(text, mc.ModelConfig()).dynamic_batching


@pytest.mark.parametrize(("runtime", "preferred"), [("tensorflow", [4]), ("onnxruntime", [8])])
def test_local_config_batches_at_the_runtimes_best_size_with_no_queue_delay(
    runtime: str, preferred: list[int]
) -> None:
    batching = _batching("local", ServingOptions(local_runtime=runtime))  # type: ignore[arg-type]
    assert list(batching.preferred_batch_size) == preferred
    assert list(LOCAL_PREFERRED_BATCH_SIZES[runtime]) == preferred  # type: ignore[index]
    # Zero delay: the batcher takes min(queued, preferred) when the instance is
    # free; with any delay, requests past it are sent all at once.
    assert batching.max_queue_delay_microseconds == 0


@pytest.mark.parametrize("kind", ["gpu", "cpu", "onnx-gpu", "onnx-cpu"])
def test_other_configs_keep_their_batching_options(kind: str) -> None:
    batching = _batching(kind, ServingOptions(max_queue_delay_us=250))
    assert list(batching.preferred_batch_size) == [16, 32, 64]
    assert batching.max_queue_delay_microseconds == 250


def test_local_preferred_size_is_capped_by_a_smaller_max_batch_size() -> None:
    spec = ModelSpec(labels=("a", "b"), image_size=(32, 32), max_batch_size=2)
    batching = _batching("local", ServingOptions(local_runtime="onnxruntime"), spec)
    assert list(batching.preferred_batch_size) == [2]


def test_explicit_local_batching_options_win_and_are_checked() -> None:
    options = ServingOptions(local_preferred_batch_sizes=(8, 2), local_max_queue_delay_us=300)
    batching = _batching("local", options)
    assert (list(batching.preferred_batch_size), batching.max_queue_delay_microseconds) == (
        [2, 8],
        300,
    )
    with pytest.raises(UsageError, match="exceed max_batch_size"):
        classifier_config(SPEC, "local", ServingOptions(local_preferred_batch_sizes=(128,)))


@pytest.mark.parametrize(
    "kwargs", [{"local_max_queue_delay_us": -1}, {"local_preferred_batch_sizes": (0,)}]
)
def test_bad_local_batching_options_are_usage_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        ServingOptions(**kwargs)  # type: ignore[arg-type]


def test_exported_local_config_on_disk_carries_the_defaults(exported_repo: ExportedRepo) -> None:
    path = exported_repo.repo / "medcnn" / "configs" / "local.pbtxt"
    config = text_format.Parse(path.read_text(), mc.ModelConfig())
    runtime = config.parameters["runtime"].string_value
    best = LOCAL_PREFERRED_BATCH_SIZES[runtime]
    expected = sorted({min(size, TINY_MAX_BATCH) for size in best})
    assert list(config.dynamic_batching.preferred_batch_size) == expected
    assert config.dynamic_batching.max_queue_delay_microseconds == 0
