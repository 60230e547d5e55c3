"""The chaos harness's own logic, no server: how calls are tallied, how rows are judged."""

from __future__ import annotations

import threading

from chaos.load import LoadRun
from chaos.table import FaultRow, render
from medserve_client import ServerOverloadedError, ServerUnavailableError


def test_the_load_tallies_answers_typed_and_untyped_failures_and_stops_at_max_calls() -> None:
    endings = iter(
        [None, ServerUnavailableError("down"), KeyError("bug"), ServerOverloadedError("q")] * 5
    )
    lock = threading.Lock()

    def call(worker: int) -> None:
        with lock:
            ending = next(endings)
        if ending is not None:
            raise ending

    with LoadRun(call, workers=3, max_calls=20, max_duration_s=60.0, hang_after_s=30.0) as load:
        assert not load.wait_for_ok(6)  # Only 5 of the 20 calls answer: it reports, not waits.
    tally = load.stop()
    assert (tally.made, tally.ok, tally.hung) == (20, 5, 0)
    assert tally.typed == {"ServerUnavailableError": 5, "ServerOverloadedError": 5}
    assert tally.untyped == {"KeyError": 5}
    assert tally.lost == 15
    assert tally.failures() == (
        "ServerOverloadedError x5, ServerUnavailableError x5, untyped KeyError x5"
    )


def test_a_call_still_running_after_the_hang_bound_counts_as_a_hang() -> None:
    release = threading.Event()
    started = threading.Event()

    def call(worker: int) -> None:
        started.set()
        release.wait()

    load = LoadRun(call, workers=1, max_calls=1, max_duration_s=60.0, hang_after_s=0.0)
    load.start()
    started.wait()
    try:
        tally = load.stop()
    finally:
        release.set()  # Let the abandoned thread end.
    assert tally.hung == 1 and tally.lost == 1


def test_a_row_fails_when_any_criterion_fails_and_the_table_names_it() -> None:
    row = FaultRow(
        fault="kill -9",
        load="8 threads",
        made=10,
        lost=1,
        hangs=0,
        failures="ServerUnavailableError x1",
        peak_rss_mb=600.4,
        outcome="outage 12.0 s",
        criteria={"0 calls lost": False, "none hangs": True},
    )
    assert not row.passed and row.failed_criteria() == ["0 calls lost"]
    table = render([row])
    assert "| kill -9 | 8 threads | 10 | 1 | 0 |" in table
    assert table.rstrip().endswith("FAIL: 0 calls lost |")
