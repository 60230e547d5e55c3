"""The parts of ``medserve_bench.sdk_speed`` that need no server: orders, medians, ratios."""

from __future__ import annotations

import numpy as np
import pytest

from medserve_bench import sdk_speed
from medserve_bench.sdk_speed import RAW_AIO, RAW_THREADS, SDK_ASYNC, SDK_BLOCKING, VARIANTS


def test_round_orders_are_permutations_that_change_from_round_to_round() -> None:
    orders = sdk_speed.round_orders(VARIANTS, 4)
    assert all(sorted(order) == sorted(VARIANTS) for order in orders)
    assert len(set(orders)) == 4
    # Every variant leads some round, so none always runs first (or last).
    assert {order[0] for order in orders} == set(VARIANTS)


def _run(rate: float) -> sdk_speed._Run:
    return sdk_speed._Run(
        images_per_s=rate,
        cpu_ms_per_image=1.0,
        in_flight=4.0,
        probabilities=np.zeros((1, 2), np.float32),
    )


def test_rows_report_medians_and_the_median_of_per_round_ratios_to_the_right_baseline() -> None:
    rounds = [
        {RAW_THREADS: _run(100), SDK_BLOCKING: _run(90), RAW_AIO: _run(80), SDK_ASYNC: _run(80)},
        {RAW_THREADS: _run(50), SDK_BLOCKING: _run(50), RAW_AIO: _run(100), SDK_ASYNC: _run(70)},
        {RAW_THREADS: _run(200), SDK_BLOCKING: _run(100), RAW_AIO: _run(90), SDK_ASYNC: _run(90)},
    ]
    blocking = sdk_speed._row(SDK_BLOCKING, rounds)
    assert blocking.baseline == RAW_THREADS
    assert blocking.by_round == (90, 50, 100)
    assert blocking.images_per_s == 90
    # Per round 0.9, 1.0, 0.5: the median of the ratios, not the ratio of the medians.
    assert blocking.ratio == pytest.approx(0.9)
    assert blocking.vs_threads is None
    asynchronous = sdk_speed._row(SDK_ASYNC, rounds)
    assert asynchronous.baseline == RAW_AIO
    assert asynchronous.ratio == pytest.approx(1.0)  # 1.0, 0.7, 1.0
    assert asynchronous.vs_threads == pytest.approx(0.8)  # 0.8, 1.4, 0.45
    assert sdk_speed._row(RAW_THREADS, rounds).ratio is None


def test_measure_sdk_rows_refuses_bad_arguments_before_connecting() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        sdk_speed.measure_sdk_rows("127.0.0.1:1", concurrency=0)
    with pytest.raises(ValueError, match="unknown variants"):
        sdk_speed.measure_sdk_rows("127.0.0.1:1", variants=["curl"])
