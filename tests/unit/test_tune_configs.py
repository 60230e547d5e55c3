"""The tuner's config edits: candidates applied to the local config, and the ``tuned`` files.

Configs are the exporter's own builders (``medserve.model_config``); nothing
here starts a server (``tests/integration/test_tune.py`` serves the result).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from medserve.model_config import (
    classifier_config,
    ensemble_config,
    explain_config,
    parse_config,
    preprocess_config,
    to_text,
)
from medserve.spec import ModelSpec
from medserve_bench.tune.space import (
    INT8_ONNX_FILE,
    ONNXRUNTIME,
    ONNXRUNTIME_INT8,
    TENSORFLOW,
    Candidate,
    dimensions,
    parallelism_choices,
    runtime_choices,
)
from medserve_bench.tune.tuned import TUNED_CONFIG_NAME, write_tuned

SPEC = ModelSpec(name="medcnn", labels=("normal", "lesion"), image_size=(32, 32), max_batch_size=32)


def _local() -> mc.ModelConfig:
    return classifier_config(SPEC, "local")


def test_from_config_reads_the_exported_local_config() -> None:
    start = Candidate.from_config(_local())
    assert start.runtime == TENSORFLOW
    assert start.max_batch_size == 32 and start.preferred == "runtime"
    # The start writes back the exported batching: the runtime's best batch, no delay.
    config = start.apply(_local())
    assert list(config.dynamic_batching.preferred_batch_size) == [4]
    assert config.dynamic_batching.max_queue_delay_microseconds == 0
    assert start.instances == 1 and start.intra_op_threads is None


def test_apply_writes_every_field_and_reads_back_the_same_candidate() -> None:
    candidate = Candidate(
        runtime=ONNXRUNTIME_INT8,
        max_batch_size=8,
        preferred="max",
        max_queue_delay_us=2000,
        instances=2,
        intra_op_threads=1,
        inter_op_threads=2,
    )
    base = _local()
    config = candidate.apply(base)
    assert config.parameters["runtime"].string_value == "onnxruntime"
    assert config.parameters["onnx_file"].string_value == INT8_ONNX_FILE
    assert config.parameters["intra_op_threads"].string_value == "1"
    assert config.max_batch_size == 8
    assert list(config.dynamic_batching.preferred_batch_size) == [8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (mc.ModelInstanceGroup.KIND_CPU, 2)
    ]
    # No warm-up above the new maximum (Triton would refuse the config).
    assert sorted(w.batch_size for w in config.model_warmup) == [1, 8]
    # Tensors, labels and the queue policy stay the export's; base is untouched.
    assert config.input == base.input and config.output == base.output
    assert (
        config.dynamic_batching.default_queue_policy == base.dynamic_batching.default_queue_policy
    )
    assert base.max_batch_size == 32
    assert Candidate.from_config(config) == candidate
    # The printed text parses back into the same message.
    assert mc.ModelConfig.FromString(config.SerializeToString()) == config


def test_apply_removes_parameters_a_candidate_leaves_to_the_backend() -> None:
    tuned = Candidate(
        runtime=ONNXRUNTIME_INT8,
        max_batch_size=16,
        preferred="none",
        max_queue_delay_us=0,
        intra_op_threads=2,
    ).apply(_local())
    assert list(tuned.dynamic_batching.preferred_batch_size) == []
    back = replace(
        Candidate.from_config(tuned), runtime=TENSORFLOW, intra_op_threads=None, preferred="max"
    )
    config = back.apply(tuned)
    assert "onnx_file" not in config.parameters and "intra_op_threads" not in config.parameters
    assert list(config.dynamic_batching.preferred_batch_size) == [16]
    assert Candidate.from_config(config) == back


def test_preferred_policies() -> None:
    base = Candidate(
        runtime=TENSORFLOW, max_batch_size=32, preferred="quarters", max_queue_delay_us=0
    )
    assert base.preferred_batch_sizes() == [8, 16, 32]
    assert replace(base, preferred="max").preferred_batch_sizes() == [32]
    assert replace(base, preferred="none").preferred_batch_sizes() == []
    # "runtime" follows the runtime: TensorFlow's best batch 4, onnxruntime's 8.
    assert replace(base, preferred="runtime").preferred_batch_sizes() == [4]
    assert replace(base, preferred="runtime", runtime=ONNXRUNTIME).preferred_batch_sizes() == [8]
    with pytest.raises(ValueError):
        replace(base, preferred="all")


def test_runtime_choices_follow_the_exported_files(tmp_path: Path) -> None:
    assert runtime_choices(tmp_path) == [TENSORFLOW]
    (tmp_path / "model.onnx").write_bytes(b"")
    assert runtime_choices(tmp_path) == [TENSORFLOW, ONNXRUNTIME]
    (tmp_path / INT8_ONNX_FILE).write_bytes(b"")
    assert runtime_choices(tmp_path) == [TENSORFLOW, ONNXRUNTIME, ONNXRUNTIME_INT8]


def test_dimensions_stay_within_the_spec_and_include_the_start() -> None:
    start = replace(Candidate.from_config(_local()), max_queue_delay_us=1000)
    dims = {d.name: d for d in dimensions(start, runtimes=[TENSORFLOW], cpus=2, max_batch_size=32)}
    assert max(dims["max_batch_size"].values) == 32
    assert 1000 in dims["max_queue_delay_us"].values
    for dim in dims.values():
        assert start in dim.candidates(start)


def test_parallelism_never_asks_for_more_instances_than_cpus() -> None:
    assert all(instances <= 1 for instances, _, _ in parallelism_choices(1))
    assert all(instances <= 8 for instances, _, _ in parallelism_choices(8))
    assert (2, None, None) in parallelism_choices(2)


def _write(path: Path, config: mc.ModelConfig) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_text(config))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The configs an export writes (no model files: the writer reads configs only)."""
    for name, build in (
        (SPEC.name, classifier_config),
        (SPEC.explain_name, explain_config),
        (SPEC.name + "_preprocess", preprocess_config),
    ):
        _write(tmp_path / name / "config.pbtxt", build(SPEC, "gpu"))
        _write(tmp_path / name / "configs" / "local.pbtxt", build(SPEC, "local"))
    _write(tmp_path / SPEC.encoded_name / "config.pbtxt", ensemble_config(SPEC))
    return tmp_path


def test_write_tuned_gives_every_local_model_a_tuned_config(repo: Path) -> None:
    best = Candidate(
        runtime=ONNXRUNTIME, max_batch_size=8, preferred="max", max_queue_delay_us=500, instances=2
    )
    written = write_tuned(repo, SPEC.name, best)
    tuned = {p.parent.parent.name: parse_config(p) for p in written}
    assert all(p.name == f"{TUNED_CONFIG_NAME}.pbtxt" for p in written)
    assert Candidate.from_config(tuned[SPEC.name]) == best
    # The explain model follows the classifier's batching but keeps TensorFlow.
    explain = tuned[SPEC.explain_name]
    assert explain.max_batch_size == 8
    assert explain.dynamic_batching == tuned[SPEC.name].dynamic_batching
    assert [g.count for g in explain.instance_group] == [2]
    assert explain.parameters["runtime"].string_value == "tensorflow"
    # The decoder is its local config, unchanged.
    assert tuned[SPEC.name + "_preprocess"] == parse_config(
        repo / (SPEC.name + "_preprocess") / "configs" / "local.pbtxt"
    )
    # The ensemble may not batch more than the classifier it calls.
    assert tuned[SPEC.encoded_name].max_batch_size == 8
    assert tuned[SPEC.encoded_name].platform == "ensemble"


def test_write_tuned_leaves_the_ensemble_alone_when_it_fits(repo: Path) -> None:
    best = Candidate(
        runtime=TENSORFLOW, max_batch_size=32, preferred="quarters", max_queue_delay_us=1000
    )
    written = write_tuned(repo, SPEC.name, best)
    assert SPEC.encoded_name not in {p.parent.parent.name for p in written}
    assert not (repo / SPEC.encoded_name / "configs").exists()


def test_bench_serves_the_tuned_config_when_tune_wrote_one(repo: Path) -> None:
    from medserve_bench.bench import apply_presets, build_parser

    def config_name(*extra: str) -> str:
        args = build_parser().parse_args(["--repo", str(repo), "--quick", *extra])
        return str(apply_presets(args).config_name)

    assert config_name() == "local"
    write_tuned(repo, SPEC.name, Candidate.from_config(_local()))
    assert config_name() == TUNED_CONFIG_NAME
    assert config_name("--config-name", "local") == "local"


def test_local_triton_refuses_a_model_control_mode_it_does_not_support(tmp_path: Path) -> None:
    from medserve.errors import UsageError
    from medserve.local_triton import LocalTriton

    with pytest.raises(UsageError, match="model_control_mode"):
        LocalTriton(tmp_path, model_control_mode="poll")  # type: ignore[arg-type]
