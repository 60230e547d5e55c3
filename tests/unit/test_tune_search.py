"""The tuner's search logic against a fake bench: a model of the machine, no server.

The fake's throughput is a known function of the candidate (plus seeded noise
in one test), and its clock advances by each cell's cost, so the budget is
checked in cells run, never in wall-clock time.
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from medserve_bench.tune.report import write_report
from medserve_bench.tune.search import (
    CONFIRM,
    SCREEN,
    Budget,
    Cell,
    Objective,
    Plan,
    SearchResult,
    confirmed_cells,
    search,
)
from medserve_bench.tune.space import (
    ONNXRUNTIME,
    ONNXRUNTIME_INT8,
    TENSORFLOW,
    Candidate,
    Dimension,
    dimensions,
)

START = Candidate(
    runtime=TENSORFLOW, max_batch_size=16, preferred="quarters", max_queue_delay_us=1000
)
RUNTIME_SPEED = {"tensorflow": 100.0, "onnxruntime": 130.0, "onnxruntime-int8": 200.0}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeBench:
    """Throughput from the candidate; p99 = 2x p50 unless the candidate is 'spiky'."""

    def __init__(
        self,
        clock: FakeClock,
        *,
        switch_s: float = 5.0,
        noise: float = 0.0,
        spiky: tuple[int, ...] = (),
        broken: tuple[str, ...] = (),
    ) -> None:
        self.clock, self.switch_s, self.noise = clock, switch_s, noise
        self.spiky, self.broken = spiky, broken
        self.loaded: Candidate | None = START
        self.random = random.Random(0)
        self.calls: list[tuple[Candidate, int, float]] = []

    def speed(self, c: Candidate) -> float:
        value = RUNTIME_SPEED[c.runtime.name] * (1 + 0.1 * (c.max_batch_size == 32))
        value *= (1 + 0.05 * (c.max_queue_delay_us == 2000)) * (1 + 0.2 * (c.instances == 2))
        return (
            value
            * (1 - 0.05 * (c.intra_op_threads is not None))
            * (1 - 0.05 * (c.preferred == "none"))
        )

    def estimate_s(self, candidate: Candidate, duration_s: float) -> float:
        return (0.0 if candidate == self.loaded else self.switch_s) + duration_s + 1.0

    def measure(self, candidate: Candidate, concurrency: int, duration_s: float) -> Cell:
        self.clock.now += self.estimate_s(candidate, duration_s)
        self.loaded = candidate
        self.calls.append((candidate, concurrency, duration_s))
        if candidate.runtime.name in self.broken:
            return Cell(
                candidate=candidate,
                concurrency=concurrency,
                stage=SCREEN,
                round=0,
                images_per_s=0.0,
                p50_ms=None,
                p99_ms=None,
                error="load failed",
            )
        rate = self.speed(candidate) * (1 + self.noise * self.random.uniform(-1, 1))
        p50 = 1000.0 * concurrency / rate
        p99 = p50 * (10.0 if candidate.max_batch_size in self.spiky else 2.0)
        return Cell(
            candidate=candidate,
            concurrency=concurrency,
            stage=SCREEN,
            round=0,
            images_per_s=rate,
            p50_ms=p50,
            p99_ms=p99,
            duration_s=duration_s,
        )


def _dims() -> list[Dimension]:
    runtimes = (TENSORFLOW, ONNXRUNTIME, ONNXRUNTIME_INT8)
    return dimensions(START, runtimes=runtimes, cpus=2, max_batch_size=32)


def _run(
    bench: FakeBench, clock: FakeClock, budget_s: float = 10_000.0, **plan: Any
) -> SearchResult:
    options = {"concurrency": (16,), "reserve_s": 0.0, **plan}
    return search(
        bench,
        _dims(),
        START,
        plan=Plan(**options),
        budget=Budget(budget_s, clock=clock),
        objective=Objective(p99_ratio=3.0),
    )


def test_search_finds_the_best_value_of_every_dimension_with_a_generous_budget() -> None:
    clock = FakeClock()
    result = _run(FakeBench(clock), clock)
    assert result.best == replace(
        START, runtime=ONNXRUNTIME_INT8, max_batch_size=32, max_queue_delay_us=2000, instances=2
    )
    assert not result.stopped_early
    assert result.cells_of(result.best, CONFIRM)


def test_screening_measures_each_value_of_a_dimension_from_the_best_so_far() -> None:
    clock = FakeClock()
    bench = FakeBench(clock)
    result = _run(bench, clock, confirm_rounds=0)
    screened = result.candidates()
    # Runtimes are screened from the start; batch sizes from the best runtime.
    assert {c.runtime for c in screened[:3]} == {TENSORFLOW, ONNXRUNTIME, ONNXRUNTIME_INT8}
    batch_cells = [c for c in screened if c.max_batch_size != START.max_batch_size]
    assert batch_cells and all(c.runtime == ONNXRUNTIME_INT8 for c in batch_cells)
    # No candidate is screened twice.
    assert all(len(result.cells_of(c, SCREEN)) == 1 for c in screened)


def test_every_candidate_is_measured_at_every_concurrency_level() -> None:
    clock = FakeClock()
    bench = FakeBench(clock)
    result = _run(bench, clock, concurrency=(8, 16, 32), confirm_rounds=0)
    for candidate in result.candidates():
        assert sorted(c.concurrency for c in result.cells_of(candidate)) == [8, 16, 32]


def test_the_latency_bound_beats_raw_throughput() -> None:
    # Batch 32 is 10 % faster but its p99 is 10x its p50: it must not win.
    clock = FakeClock()
    result = _run(FakeBench(clock, spiky=(32,)), clock)
    assert result.best is not None and result.best.max_batch_size != 32
    assert Objective(p99_ratio=3.0).feasible(result.cells_of(result.best)[0])


def test_a_candidate_that_fails_to_load_is_skipped_and_reported() -> None:
    clock = FakeClock()
    result = _run(FakeBench(clock, broken=("onnxruntime-int8",)), clock)
    assert result.best is not None and result.best.runtime == ONNXRUNTIME
    errors = [c for c in result.cells if c.error]
    assert errors and all(c.candidate.runtime == ONNXRUNTIME_INT8 for c in errors)
    assert all(c.runtime != ONNXRUNTIME_INT8 for c in result.finalists)


def test_a_tiny_budget_stops_early_and_still_names_the_best_measured() -> None:
    clock = FakeClock()
    bench = FakeBench(clock, switch_s=5.0)
    # Start (no switch): 4 s a cell; each other candidate 9 s. 20 s fit the
    # start and one switch (13 s); the next (9 s more) does not.
    result = _run(bench, clock, budget_s=20.0, screen_s=3.0, confirm_share=0.0)
    assert result.stopped_early and "left" in (result.stop_reason or "")
    assert len(result.cells) == 2
    assert result.best == replace(START, runtime=ONNXRUNTIME)
    assert clock.now <= 20.0


def test_the_budget_counts_the_reserve_and_never_overspends() -> None:
    clock = FakeClock()
    full = FakeBench(clock)
    _run(full, clock)
    for budget_s in (5.0, 30.0, 77.0, 300.0):
        clock = FakeClock()
        bench = FakeBench(clock)
        result = _run(bench, clock, budget_s=budget_s, reserve_s=4.0, confirm_share=0.0)
        assert clock.now <= budget_s - 4.0
        assert result.stopped_early == (len(bench.calls) < len(full.calls))
        assert bench.calls == full.calls[: len(bench.calls)]  # The same search, cut short.


def test_screening_leaves_confirmation_its_share_of_the_budget() -> None:
    clock = FakeClock()
    full = FakeBench(clock)
    _run(full, clock, confirm_rounds=0)
    screening_s = clock.now
    # Half the screening fits in the screening share; confirmation still runs.
    budget_s = screening_s / 2 / (1 - 0.4)
    clock = FakeClock()
    bench = FakeBench(clock)
    result = _run(bench, clock, budget_s=budget_s, confirm_share=0.4, confirm_s=3.0)
    screened = [c for c in result.cells if c.stage == SCREEN]
    assert 0 < len(screened) < len(full.calls)
    assert [c for c in result.cells if c.stage == CONFIRM]
    assert clock.now <= budget_s
    assert result.best is not None and result.cells_of(result.best, CONFIRM)


def test_nothing_measured_means_no_best() -> None:
    clock = FakeClock()
    result = _run(FakeBench(clock), clock, budget_s=1.0)
    assert result.best is None and result.stopped_early and not result.cells


def test_confirmation_halves_the_finalists_and_decides_on_the_median() -> None:
    clock = FakeClock()
    bench = FakeBench(clock, noise=0.3)
    result = _run(bench, clock, finalists=4, confirm_rounds=3, confirm_s=8.0)
    rounds: dict[int, set[Candidate]] = {}
    for cell in result.cells:
        if cell.stage == CONFIRM:
            rounds.setdefault(cell.round, set()).add(cell.candidate)
    assert [len(rounds[r]) for r in sorted(rounds)] == [4, 2, 2]
    assert result.best in rounds[2]
    # The winner's score is the median of its rounds, not its luckiest round.
    cells = result.cells_of(result.best, CONFIRM)
    merged = confirmed_cells(cells)
    assert len(merged) == 1 and merged[0].round == 3
    assert merged[0].images_per_s == sorted(c.images_per_s for c in cells)[1]


def test_each_confirmation_round_starts_with_the_candidate_still_served() -> None:
    clock = FakeClock()
    bench = FakeBench(clock)
    result = _run(bench, clock, finalists=3, confirm_rounds=3)
    confirm = [c for c in result.cells if c.stage == CONFIRM]
    starts = [b for a, b in itertools.pairwise(confirm) if a.round != b.round]
    assert len(starts) == 2
    checked = 0
    for a, b in itertools.pairwise(confirm):
        next_round = {c.candidate for c in confirm if c.round == b.round}
        if a.round != b.round and a.candidate in next_round:
            assert b.candidate == a.candidate  # A new round begins without a switch.
            checked += 1
    assert checked >= 1  # Rounds 1 and 2 keep the same two finalists.


def test_confirmation_cells_are_longer_than_screening_cells() -> None:
    clock = FakeClock()
    bench = FakeBench(clock)
    _run(bench, clock, screen_s=2.0, confirm_s=9.0)
    durations = {d for _, _, d in bench.calls}
    assert durations == {2.0, 9.0}


@pytest.mark.parametrize(
    ("p50", "p99", "failures", "feasible"),
    [(10.0, 30.0, 0, True), (10.0, 30.1, 0, False), (10.0, 20.0, 1, False), (None, None, 0, False)],
)
def test_objective_feasibility(
    p50: float | None, p99: float | None, failures: int, feasible: bool
) -> None:
    cell = Cell(
        candidate=START,
        concurrency=16,
        stage=SCREEN,
        round=0,
        images_per_s=10.0,
        p50_ms=p50,
        p99_ms=p99,
        failures=failures,
    )
    assert Objective(p99_ratio=3.0).feasible(cell) is feasible


def test_objective_absolute_p99_bound() -> None:
    cell = Cell(
        candidate=START,
        concurrency=16,
        stage=SCREEN,
        round=0,
        images_per_s=10.0,
        p50_ms=100.0,
        p99_ms=200.0,
    )
    assert Objective(p99_ratio=3.0, max_p99_ms=250.0).feasible(cell)
    assert not Objective(p99_ratio=3.0, max_p99_ms=150.0).feasible(cell)


def test_plan_and_budget_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        Plan(concurrency=())
    with pytest.raises(ValueError):
        Plan(screen_s=0)
    with pytest.raises(ValueError):
        Budget(0)


def test_report_has_a_row_per_cell_the_finalists_medians_and_a_plot(tmp_path: Path) -> None:
    clock = FakeClock()
    result = _run(FakeBench(clock), clock, budget_s=120.0, finalists=2, confirm_rounds=2)
    meta = {"model": "medcnn", "repo": "repo", "concurrency": [16], "budget_s": 120.0}
    paths = write_report(tmp_path, result, objective=Objective(p99_ratio=3.0), meta=meta)
    markdown = paths["markdown"].read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and "---" not in line]
    table_rows = [r for r in rows if not r.startswith("| config ")]
    confirmed = sum(len(confirmed_cells(result.cells_of(c))) for c in result.finalists)
    assert len(table_rows) == len(result.cells) + confirmed
    assert result.best is not None and f"**Best: `{result.best.label}`**" in markdown
    document = json.loads(paths["json"].read_text())
    assert document["cells_run"] == len(result.cells) == len(document["cells"])
    assert document["best"]["label"] == result.best.label
    assert document["stopped_early"] is result.stopped_early
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_says_when_nothing_was_measured(tmp_path: Path) -> None:
    clock = FakeClock()
    result = _run(FakeBench(clock), clock, budget_s=1.0)
    meta = {"model": "medcnn", "repo": "repo", "concurrency": [16], "budget_s": 1.0}
    paths = write_report(tmp_path, result, objective=Objective(), meta=meta)
    assert "No configuration could be measured" in paths["markdown"].read_text()
    assert json.loads(paths["json"].read_text())["best"] is None
