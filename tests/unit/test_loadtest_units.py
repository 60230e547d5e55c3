"""The load test's pure pieces, no server: validation, percentiles, ramp, options, report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medserve_bench import repo as bench_repo
from medserve_bench import report as bench_report
from medserve_bench.latency import latency_summary, throughput
from medserve_bench.ratios import compute_ratios
from medserve_client.preprocessing import to_model_input
from medserve_locust.options import LoadOptions
from medserve_locust.pool import ImagePool
from medserve_locust.samples import SampleRecorder, read_samples
from medserve_locust.thresholds import Thresholds
from medserve_locust.validate import ResponseValidator, WrongAnswerError

VALIDATOR = ResponseValidator(num_classes=2, labels=("normal", "lesion"))


def test_validator_returns_the_label_of_each_row_for_a_valid_answer() -> None:
    answer = np.array([[0.2, 0.8], [0.9, 0.1]], dtype=np.float32)
    assert VALIDATOR.check(answer, 2) == ["lesion", "normal"]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (np.array([[0.2, 0.8]], dtype=np.float32), "shape"),  # one row for a batch of 2
        (np.array([[0.5, 0.6], [0.5, 0.5]], dtype=np.float32), "sum"),
        (np.array([[np.nan, 1.0], [0.5, 0.5]], dtype=np.float32), "NaN"),
        (np.array([[1.5, -0.5], [0.5, 0.5]], dtype=np.float32), "outside"),
        (np.array([[0, 1], [1, 0]], dtype=np.int32), "dtype"),
        (None, "no probability"),
    ],
)
def test_validator_raises_wrong_answer_naming_what_is_wrong(
    answer: np.ndarray | None, message: str
) -> None:
    with pytest.raises(WrongAnswerError, match=message):
        VALIDATOR.check(answer, 2)


def test_validator_for_labels_prefers_given_labels_over_the_served_class_count() -> None:
    validator = ResponseValidator.for_labels(("a", "b", "c"), served_classes=2)
    with pytest.raises(WrongAnswerError, match=r"expected \(1, 3\)"):
        validator.check(np.array([[0.5, 0.5]], dtype=np.float32), 1)
    assert ResponseValidator.for_labels((), served_classes=2).check(
        np.array([[0.3, 0.7]], dtype=np.float32), 1
    ) == ["class 1"]


def test_latency_summary_is_exact_over_raw_samples_and_none_without_samples() -> None:
    summary = latency_summary(np.arange(1, 101, dtype=float))
    assert summary["count"] == 100
    assert summary["p50_ms"] == pytest.approx(50.5)
    assert summary["p99_ms"] == pytest.approx(99.01)
    assert latency_summary([])["p99_ms"] is None


def test_samples_round_trip_and_throughput_counts_batch_size_of_successes(tmp_path: Path) -> None:
    recorder = SampleRecorder()
    recorder.on_request("grpc", "x", 500.0, 10, None, {"batch_size": 4}, start_time=100.0)
    recorder.on_request("grpc", "x", 500.0, 10, None, {"batch_size": 4}, start_time=101.5)
    recorder.on_request("grpc", "x", 10.0, 0, ValueError("bad"), {"batch_size": 4}, 101.0)
    recorder.write(tmp_path / "samples.csv")
    samples = read_samples(tmp_path / "samples.csv", tmp_path / "missing.csv")
    rate = throughput(samples)
    assert (rate["requests"], rate["failures"], rate["inferences"]) == (2, 1, 8)
    assert rate["window_s"] == pytest.approx(2.0)
    assert rate["inferences_per_s"] == pytest.approx(4.0)


def test_step_ramp_adds_users_per_step_holds_the_top_and_then_stops() -> None:
    # Importing locust monkey-patches this process for gevent: ask another one.
    code = (
        "from medserve_locust.shapes.step_ramp import step_users as s; "
        "r = dict(step_users=4, step_time_s=10.0, max_users=10); "
        "print([s(t, **r) for t in (0, 9.9, 10, 25, 35, 40)])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[4, 4, 8, 10, 10, None]"


def test_thresholds_name_each_crossed_limit() -> None:
    limits = Thresholds(max_failure_ratio=0.01, max_p95_ms=200)
    assert limits.violations(requests=100, fail_ratio=0.0, p95_ms=150) == []
    found = limits.violations(requests=100, fail_ratio=0.05, p95_ms=250)
    assert len(found) == 2 and "failure ratio" in found[0] and "p95" in found[1]
    assert Thresholds().violations(requests=0, fail_ratio=0.0, p95_ms=0) == ["no request was made"]


def test_options_parse_labels_and_reject_a_bad_batch_size() -> None:
    class Parsed:
        labels = " normal, lesion ,"
        batch_size = 4

    class Environment:
        parsed_options = Parsed()

    options = LoadOptions.from_environment(Environment())
    assert (options.labels, options.batch_size, options.model) == (
        ("normal", "lesion"),
        4,
        "medcnn",
    )
    with pytest.raises(ValueError, match="batch-size"):
        LoadOptions(batch_size=0)


def test_generated_pool_wraps_around_and_encodes_each_image_as_jpeg() -> None:
    pool = ImagePool.generated(3, (16, 24), seed=1)
    assert pool.pixels(2, 4).shape == (4, 16, 24, 3)
    assert np.array_equal(pool.pixels(2, 2)[1], pool.pixels_all[0])
    blobs = pool.encoded(0, 2)
    assert blobs.shape == (2, 1) and blobs[0, 0][:2] == b"\xff\xd8"


def test_folder_pool_resizes_to_the_model_and_sends_the_original_files_when_encoded(
    tmp_path: Path,
) -> None:
    from PIL import Image

    (tmp_path / "lesion").mkdir()
    Image.new("L", (40, 30), color=200).save(tmp_path / "lesion" / "a.png")
    Image.new("RGB", (20, 20), color=(10, 20, 30)).save(tmp_path / "b.jpg")
    (tmp_path / "notes.txt").write_text("not an image")

    pool = ImagePool.from_folder(tmp_path, (16, 16))

    assert len(pool) == 2 and pool.pixels_all.shape == (2, 16, 16, 3)
    assert pool.encoded_all[1] == (tmp_path / "lesion" / "a.png").read_bytes()  # sorted by path
    assert int(pool.pixels_all[1].mean()) == 200  # grey became RGB
    # The pixels the client's pipeline (and training) would make of the file.
    jpeg = to_model_input(tmp_path / "b.jpg", (16, 16))
    np.testing.assert_array_equal(pool.pixels_all[0], jpeg)
    with pytest.raises(ValueError, match="no PNG or JPEG"):
        ImagePool.from_folder(tmp_path / "lesion" / "missing", (16, 16))


def _measurement(label: str, concurrency: int, rnd: int, rate: float) -> bench_report.Measurement:
    return bench_report.Measurement(
        group=label, label=label, concurrency=concurrency, round=rnd, inferences_per_s=rate,
        latencies_ms=np.array([10.0, 20.0, 30.0]), failures=0,
    )  # fmt: skip


def test_bench_ratios_are_taken_per_round_and_judged_against_targets() -> None:
    items = [
        _measurement("medserve", 16, 0, 90.0), _measurement("peer", 16, 0, 10.0),
        _measurement("nobatch", 16, 0, 45.0), _measurement("medserve", 16, 1, 80.0),
        _measurement("peer", 16, 1, 20.0), _measurement("nobatch", 16, 1, 80.0),
    ]  # fmt: skip
    cells = bench_report.aggregate(items)
    assert [c["cell"] for c in cells] == ["medserve@16", "peer@16", "nobatch@16"]
    assert cells[0]["inferences_per_s_by_round"] == [90.0, 80.0]
    limit = {"by_round": [100.0, 100.0], "best_images_per_s": 100.0}
    ratios = compute_ratios(items, cells, limit, compare_at=16)
    assert ratios["served_vs_limit"]["by_round"] == [0.9, 0.8]
    assert ratios["medserve_vs_peer"]["by_round"] == [9.0, 4.0]
    assert ratios["batching_on_vs_off"]["value"] == pytest.approx(1.5)
    # Equal p99 is not lower: the peer comparison is not met on latency.
    assert ratios["medserve_vs_peer"]["met"] is False
    assert "| medserve | 16 |" in bench_report.markdown(cells, ratios, {"best_images_per_s": 100.0})


LOCAL_CONFIG = """
name: "medcnn"
backend: "python"
max_batch_size: 16
input { name: "image" data_type: TYPE_UINT8 dims: [8, 8, 3] }
output { name: "probabilities" data_type: TYPE_FP32 dims: [2] }
dynamic_batching { max_queue_delay_microseconds: 1000 }
model_warmup {
  name: "zeros" batch_size: 1
  inputs { key: "image" value { data_type: TYPE_UINT8 dims: [8, 8, 3] zero_data: true } }
}
"""


def test_bench_repo_removes_dynamic_batching_from_a_renamed_copy_and_leaves_the_source(
    tmp_path: Path,
) -> None:
    source = tmp_path / "repo"
    (source / "medcnn" / "configs").mkdir(parents=True)
    (source / "medcnn" / "1").mkdir()
    (source / "medcnn" / "configs" / "local.pbtxt").write_text(LOCAL_CONFIG)
    (source / "medcnn" / "config.pbtxt").write_text(LOCAL_CONFIG)
    (source / "medcnn" / "1" / "weights.bin").write_bytes(b"x")

    models = bench_repo.write_bench_repo(source, tmp_path / "bench", model="medcnn")

    assert (models.batching, models.no_batching, models.float32) == (
        "medcnn",
        "medcnn_nobatch",
        None,
    )
    for name in ("config.pbtxt", "configs/local.pbtxt"):
        nobatch = (tmp_path / "bench" / "medcnn_nobatch" / name).read_text()
        assert 'name: "medcnn_nobatch"' in nobatch and "dynamic_batching" not in nobatch
        assert "dynamic_batching" in (tmp_path / "bench" / "medcnn" / name).read_text()
        assert (source / "medcnn" / name).read_text() == LOCAL_CONFIG  # hard links not edited
    assert (tmp_path / "bench" / "medcnn_nobatch" / "1" / "weights.bin").read_bytes() == b"x"


def test_float32_edit_declares_the_image_input_and_its_warm_up_fp32() -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse(LOCAL_CONFIG, model_config_pb2.ModelConfig())
    bench_repo.as_float32("medcnn_fp32")(config)
    assert config.name == "medcnn_fp32"
    assert config.input[0].data_type == model_config_pb2.TYPE_FP32
    assert config.model_warmup[0].inputs["image"].data_type == model_config_pb2.TYPE_FP32
    assert config.output[0].data_type == model_config_pb2.TYPE_FP32
    assert config.HasField("dynamic_batching")  # only the payload changes


def test_float32_edit_runs_tensorflow_when_the_served_config_names_onnx_int8() -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse(LOCAL_CONFIG, model_config_pb2.ModelConfig())
    config.backend = "python"
    config.parameters["runtime"].string_value = "onnxruntime"
    config.parameters["onnx_file"].string_value = "model_int8.onnx"
    bench_repo.as_float32("medcnn_fp32")(config)
    # The float32 SavedModel is the only artifact that takes float pixels.
    assert config.parameters["runtime"].string_value == "tensorflow"
    assert "onnx_file" not in config.parameters


def test_runner_forwards_every_declared_option_to_locust_once(tmp_path: Path) -> None:
    from medserve_bench import runner
    from medserve_locust import options

    args = runner.build_parser().parse_args(
        ["--protocol", "http", "--batch-size", "4", "--shape", "step_ramp", "--max-users", "8"]
    )
    command = runner.locust_command(args, "http://127.0.0.1:8000", tmp_path, "a,b")
    flags = [item.split("=", 1)[0] for item in command if item.startswith("--")]
    for option in (*options.LOAD_OPTIONS, *options.RAMP_OPTIONS):
        assert flags.count(option.flag) == 1, option.flag
    assert "--batch-size=4" in command and "--labels=a,b" in command
    assert "--max-users=8" in command and not any(f.startswith("--users") for f in flags)
    files = command[command.index("-f") + 1].split(",")
    assert [Path(f).name for f in files] == ["classify_http.py", "step_ramp.py"]
    assert all(Path(f).is_file() for f in files)


def test_runner_refuses_a_host_the_sdk_refuses_with_exit_2_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from medserve_bench import runner

    # main() installs a SIGTERM handler; not in pytest's own process.
    monkeypatch.setattr(runner.signal, "signal", lambda *_: None)
    assert runner.main(["--host", "dns:///a:1,b:1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "list addresses with ipv4:" in err and "Traceback" not in err
