"""The benchmark's report logic: limits per runtime, targets, causes, CPU accounting, variants.

No server and no timing: measurements are made up here, and the functions that
turn them into bench.json and bench.md are checked for what they conclude.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from medserve_bench import repo as bench_repo
from medserve_bench.cells import Cell, cells_for
from medserve_bench.cpu import CpuReading, tree_cpu_s
from medserve_bench.ratios import TARGETS, compute_ratios
from medserve_bench.report import Measurement, aggregate, markdown, summarize_limit


def _m(
    label: str, c: int, rnd: int, rate: float, latencies: tuple[float, ...] = (10.0, 20.0, 30.0),
    server_cpu_ms: float | None = None,
) -> Measurement:  # fmt: skip
    cpu: dict[str, float | None] | None = None
    if server_cpu_ms is not None:
        cpu = {"client_cores": 0.3, "server_cores": 1.5, "other_cores": 0.1,
               "client_cpu_ms_per_image": 4.0,
               "server_cpu_ms_per_image": server_cpu_ms}  # fmt: skip
    return Measurement(
        group=label.split()[0], label=label, concurrency=c, round=rnd, inferences_per_s=rate,
        latencies_ms=np.array(latencies), failures=0, cpu=cpu,
    )  # fmt: skip


def _run(runtime: str, rate: float, batch: int = 4, cpu_ms: float = 25.0) -> dict[str, object]:
    return {"runtime": runtime, "best_images_per_s": rate, "best_batch_size": batch,
            "best_cpu_ms_per_image": cpu_ms, "best_cores": 1.9}  # fmt: skip


TF, FP32, INT8 = "tensorflow 2.21.0", "onnxruntime 1.28.0 fp32", "onnxruntime 1.28.0 int8"


def test_limit_is_the_best_runtime_of_each_round_and_every_runtime_is_kept() -> None:
    limit = summarize_limit(
        [
            [_run(TF, 60.0), _run(FP32, 70.0), _run(INT8, 120.0, batch=8, cpu_ms=15.0)],
            [_run(TF, 64.0), _run(FP32, 66.0), _run(INT8, 100.0, batch=8, cpu_ms=17.0)],
            [_run(TF, 62.0), _run(FP32, 80.0), _run(INT8, 110.0, batch=16, cpu_ms=16.0)],
        ]
    )
    assert limit["by_round"] == [120.0, 100.0, 110.0]
    assert limit["best_images_per_s"] == 110.0
    assert (limit["best_runtime"], limit["best_batch_size"]) == (INT8, 8)
    assert limit["by_runtime"] == {TF: 62.0, FP32: 70.0, INT8: 110.0}
    assert limit["runtimes"][INT8]["cpu_ms_per_image"] == 16.0
    assert limit["int8_vs_fp32_by_round"] == pytest.approx([120 / 70, 100 / 66, 110 / 80])


def test_limit_refuses_a_round_without_runs() -> None:
    with pytest.raises(ValueError, match="at least one run"):
        summarize_limit([[_run(TF, 60.0)], []])


def test_every_target_has_a_row_and_unmeasured_ones_say_why() -> None:
    items = [_m("medserve", 16, 0, 50.0), _m("nobatch", 16, 0, 25.0)]
    ratios = compute_ratios(items, aggregate(items), {"by_round": [100.0]}, compare_at=16)
    assert set(TARGETS) <= set(ratios)
    assert ratios["served_vs_limit"]["value"] == 0.5 and ratios["served_vs_limit"]["met"] is False
    assert ratios["batching_on_vs_off"]["met"] is True
    for name in ("int8_vs_fp32_served", "medserve_vs_pytriton", "sdk_async_vs_plain"):
        assert ratios[name]["value"] is None and ratios[name]["met"] is None
        assert ratios[name]["note"].startswith("not measured"), name
    table = markdown(aggregate(items), ratios, {"best_images_per_s": 100.0})
    for target in TARGETS.values():
        assert target.description.format(c=16) in table


def test_served_limit_ratio_takes_the_best_concurrency_up_to_64_per_round() -> None:
    items = [
        _m("medserve", 16, 0, 80.0), _m("medserve", 32, 0, 90.0), _m("medserve", 128, 0, 99.0),
        _m("medserve", 16, 1, 70.0), _m("medserve", 32, 1, 60.0),
    ]  # fmt: skip
    ratios = compute_ratios(items, aggregate(items), {"by_round": [100.0, 100.0]}, compare_at=16)
    assert ratios["served_vs_limit"]["by_round"] == [0.9, 0.7]
    assert ratios["served_vs_limit"]["value"] == pytest.approx(0.8)


def test_int8_is_judged_against_the_best_fp32_served_cell_at_the_same_concurrency() -> None:
    items = [
        _m("medserve", 16, 0, 50.0), _m("runtime onnxruntime", 16, 0, 60.0),
        _m("int8", 16, 0, 96.0), _m("int8", 4, 0, 500.0),
    ]  # fmt: skip
    ratios = compute_ratios(items, aggregate(items), {"by_round": [100.0]}, compare_at=16)
    assert ratios["int8_vs_fp32_served"]["value"] == pytest.approx(1.6)
    assert ratios["int8_vs_fp32_served"]["met"] is True


def test_tail_latency_target_is_met_when_p99_is_at_most_three_times_p50() -> None:
    steady = tuple(float(x) for x in range(100, 200))  # p99/p50 about 1.3
    tail = (*([10.0] * 90), *([100.0] * 10))  # p50 10 ms, p99 100 ms
    for latencies, met in ((steady, True), (tail, False)):
        items = [_m("medserve", 16, 0, 50.0, latencies)]
        ratios = compute_ratios(items, aggregate(items), {"by_round": [100.0]}, compare_at=16)
        assert ratios["p99_vs_p50"]["met"] is met
        assert ratios["p99_vs_p50"]["direction"] == "lower"


def test_pytriton_comparison_uses_each_sides_best_concurrency_and_needs_a_p99_no_worse() -> None:
    ours = (10.0, 20.0, 40.0)
    items = [
        _m("payload uint8", 16, 0, 90.0, ours), _m("payload uint8", 32, 0, 100.0, ours),
        _m("pytriton", 16, 0, 80.0, (10.0, 20.0, 40.0)), _m("pytriton", 32, 0, 70.0, (50.0,)),
    ]  # fmt: skip
    ratios = compute_ratios(items, aggregate(items), {"by_round": [200.0]}, compare_at=16)
    row = ratios["medserve_vs_pytriton"]
    assert row["value"] == pytest.approx(100.0 / 80.0)
    assert row["concurrency"] == {"medserve": 32, "peer": 16}
    assert row["met"] is True  # Equal p99 is no worse.
    slower = [*items[:2], _m("pytriton", 16, 0, 80.0, (10.0, 20.0, 30.0))]
    ratios = compute_ratios(slower, aggregate(slower), {"by_round": [200.0]}, compare_at=16)
    assert ratios["medserve_vs_pytriton"]["met"] is False


def test_sdk_rows_come_from_the_sdk_measurement_when_it_ran() -> None:
    items = [_m("medserve", 16, 0, 50.0)]
    sdk = {"sdk_blocking_vs_plain": {"by_round": [0.95, 0.85, 0.92], "cause": "client CPU"}}
    ratios = compute_ratios(items, aggregate(items), {"by_round": [100.0]}, compare_at=16, sdk=sdk)
    assert ratios["sdk_blocking_vs_plain"]["value"] == 0.92
    assert ratios["sdk_blocking_vs_plain"]["met"] is True
    assert ratios["sdk_blocking_vs_plain"]["cause"] == "client CPU"
    assert ratios["sdk_async_vs_plain"]["value"] is None


def test_causes_compare_server_cpu_per_image_with_the_limit_and_between_cells() -> None:
    items = [_m("medserve", 16, 0, 50.0, server_cpu_ms=30.0),
             _m("nobatch", 16, 0, 30.0, server_cpu_ms=45.0)]  # fmt: skip
    cells = aggregate(items)
    assert cells[0]["server_cpu_ms_per_image"] == 30.0 and cells[0]["client_cores"] == 0.3
    limit = summarize_limit([[_run(TF, 100.0, cpu_ms=19.5)]])
    ratios = compute_ratios(items, cells, limit, compare_at=16, cpus=2)
    assert "server 30.0 ms CPU/image vs 19.5 in process" in ratios["served_vs_limit"]["cause"]
    assert "of 2" in ratios["served_vs_limit"]["cause"]
    assert "server 30.0 vs 45.0 ms CPU/image" in ratios["batching_on_vs_off"]["cause"]
    table = markdown(cells, ratios, limit)
    assert "| medserve | 16 |" in table and "0.30 / 1.50 / 0.10" in table
    assert f"| {TF} | 100.0 (100.0) | 4 | 19.50 | 1.90 |" in table


def test_cpu_usage_splits_the_window_between_client_server_and_the_rest() -> None:
    start = CpuReading(at_s=10.0, client_s=1.0, server_s=5.0, machine_s=20.0)
    end = CpuReading(at_s=12.0, client_s=1.5, server_s=8.0, machine_s=24.0)
    usage = end.since(start, images=100)
    assert (usage.client_cores, usage.server_cores, usage.other_cores) == (0.25, 1.5, 0.25)
    assert usage.server_cpu_ms_per_image == pytest.approx(30.0)
    assert usage.client_cpu_ms_per_image == pytest.approx(5.0)
    assert (
        CpuReading(12.0, 1.5, None, 24.0)
        .since(start, images=0)
        .to_dict()["server_cpu_ms_per_image"]
        is None
    )


def test_tree_cpu_counts_the_children_of_a_process() -> None:
    # A parent that starts a child burning 0.3 s of CPU, then both wait to be read.
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time\\n"
        "while time.process_time() < 0.3: pass\\nprint(1, flush=True)\\ntime.sleep(60)'],"
        " stdout=subprocess.PIPE)\n"
        "child.stdout.readline(); print('ready', flush=True); time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == b"ready"
        used = tree_cpu_s(parent.pid)
        assert used is not None and used >= 0.3
    finally:
        import psutil

        for process in psutil.Process(parent.pid).children(recursive=True):
            process.kill()
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while tree_cpu_s(parent.pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)  # Reaped: psutil may still see the pid for a moment.
    assert tree_cpu_s(parent.pid) is None


def test_cells_measure_medserve_under_the_pytritons_load_at_each_peer_concurrency() -> None:
    cells = cells_for([1, 16], 16, ["uint8", "encoded"], peer=[4], pytriton=[16, 32],
                      other_runtime="onnxruntime", int8=True)  # fmt: skip
    assert cells == [
        Cell("medserve", 1), Cell("medserve", 16), Cell("nobatch", 16),
        Cell("runtime onnxruntime", 16), Cell("int8", 16), Cell("peer", 4),
        Cell("pytriton", 16), Cell("pytriton", 32), Cell("payload uint8", 16),
        Cell("payload uint8", 32), Cell("payload encoded", 16),
    ]  # fmt: skip


def _config_text(onnx_file: str, *, batching: bool = True) -> str:
    """A local Python-backend config running onnxruntime on ``onnx_file``, as a protobuf."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    config = mc.ModelConfig(name="medcnn", backend="python", max_batch_size=16)
    config.input.add(name="image", data_type=mc.TYPE_UINT8, dims=[8, 8, 3])
    config.output.add(name="probabilities", data_type=mc.TYPE_FP32, dims=[2])
    if batching:
        config.dynamic_batching.max_queue_delay_microseconds = 2500
        config.dynamic_batching.preferred_batch_size.extend([4, 8])
    config.parameters["runtime"].string_value = "onnxruntime"
    config.parameters["onnx_file"].string_value = onnx_file
    return str(text_format.MessageToString(config))


def test_bench_repo_serves_the_int8_config_as_a_renamed_copy_when_it_was_exported(
    tmp_path: Path,
) -> None:
    source = tmp_path / "repo"
    (source / "medcnn" / "configs").mkdir(parents=True)
    (source / "medcnn" / "1").mkdir()
    local = _config_text("model.onnx")
    (source / "medcnn" / "configs" / "local.pbtxt").write_text(local)
    (source / "medcnn" / "config.pbtxt").write_text(local)
    (source / "medcnn" / "configs" / "local-int8.pbtxt").write_text(_config_text("model_int8.onnx"))

    models = bench_repo.write_bench_repo(source, tmp_path / "none", model="medcnn")
    assert models.int8 is None  # No model_int8.onnx: nothing INT8 to serve.

    (source / "medcnn" / "1" / "model_int8.onnx").write_bytes(b"onnx")
    models = bench_repo.write_bench_repo(source, tmp_path / "bench", model="medcnn")
    assert models.int8 == "medcnn_int8"
    served = (tmp_path / "bench" / "medcnn_int8" / "configs" / "local.pbtxt").read_text()
    assert 'name: "medcnn_int8"' in served and "model_int8.onnx" in served
    assert (source / "medcnn" / "configs" / "local.pbtxt").read_text() == local


def test_pytriton_peer_copies_batcher_runtime_model_file_and_threads_from_the_served_config(
    tmp_path: Path,
) -> None:
    from medserve_bench.pytriton_peer import describe, settings_from_config

    config = tmp_path / "local.pbtxt"
    config.write_text(_config_text("model_int8.onnx"))
    settings = settings_from_config(config, tmp_path / "1", cpus=2)
    assert (settings.served.max_batch_size, settings.max_queue_delay_us) == (16, 2500)
    assert settings.preferred_batch_sizes == (4, 8)
    assert (settings.served.runtime, settings.artifact) == ("onnxruntime", "model_int8.onnx")
    assert (settings.intra_op, settings.inter_op, settings.instances) == (2, 1, 1)
    assert (settings.served.inputs[0][0], settings.input_dims) == ("image", (8, 8, 3))
    assert "onnxruntime on model_int8.onnx" in describe(settings)

    config.write_text(_config_text("model_int8.onnx", batching=False))
    with pytest.raises(ValueError, match="no dynamic_batching"):
        settings_from_config(config, tmp_path / "1", cpus=2)


def test_readme_block_is_replaced_between_the_markers_and_both_readmes_have_them(
    tmp_path: Path,
) -> None:
    from medserve_bench import readme_table

    start, end = readme_table.START, readme_table.END
    text = f"prose quoting `{start}`\n{start}\nold table\n{end}\nanalysis\n"
    new = readme_table.replace_block(text, "new table\n", path=tmp_path / "R.md")
    assert new == f"prose quoting `{start}`\n{start}\nnew table\n{end}\nanalysis\n"
    with pytest.raises(ValueError, match="no <!-- bench-table -->"):
        readme_table.replace_block("no markers", "x", path=tmp_path / "R.md")
    for readme in (readme_table.ROOT / "README.md", readme_table.ROOT / "loadtest" / "README.md"):
        body = readme.read_text(encoding="utf-8")
        assert body.index(readme_table.START) < body.index(readme_table.END), readme


def test_readme_summary_names_its_run_and_lists_every_cell_and_target() -> None:
    from medserve_bench import readme_table

    items = [_m("medserve", 16, 0, 50.0, server_cpu_ms=30.0), _m("peer", 16, 0, 9.0)]
    cells = aggregate(items)
    limit = summarize_limit([[_run(TF, 100.0)]])
    document = {
        "meta": {
            "command": "python -m medserve_bench.bench",
            "started": "2026-11-29T03:30:00",
            "duration_s": 1000.0,
            "rounds": 3,
            "cell_duration_s": 10.0,
            "warmup_s": 2.0,
            "cpus": 2,
            "model": "medcnn",
            "image_size": [224, 224],
        },
        "cells": cells,
        "limit": limit,
        "ratios": compute_ratios(items, cells, limit, compare_at=16),
    }
    text = readme_table.summary(document)
    assert "(python -m medserve_bench.bench) on 2026-11-29" in text and "17 minutes" in text
    assert "| medserve | 16 | 50.0 |" in text and "| peer | 16 | 9.0 |" in text
    assert f"| in-process limit, {TF}, batch 4 |" in text
    assert all(t.description.format(c=16) in text for t in TARGETS.values())
    assert readme_table.full_table(document).count("| medserve | 16 |") == 1
