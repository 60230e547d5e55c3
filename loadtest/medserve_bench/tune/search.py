"""The tuner's search: coordinate screening, then successive halving, inside a hard budget.

Usage::

    result = search(bench, dims, start, plan=Plan(concurrency=(16, 32)),
                    budget=Budget(420.0), objective=Objective(p99_ratio=3.0))
    result.best, result.cells, result.stopped_early

Pure logic: ``bench`` is anything with ``estimate_s(candidate, duration_s)``
and ``measure(candidate, concurrency, duration_s) -> Cell`` (the real one
drives the local Triton; the unit tests pass a fake). Two stages:

1. **Screening** (coarse): coordinate descent over the dimensions in order
   (runtime, parallelism, max batch size, queue delay, preferred sizes). Each
   value of a dimension is measured with the others at the best found so far,
   in short cells at every concurrency level; the best value is kept and the
   next dimension is screened from there.
2. **Confirmation** (fine): the best ``finalists`` distinct candidates are
   measured again in longer cells, in rounds whose order rotates (slow drift
   must not favour one); after each round the worse half is dropped (never
   fewer than two) and the winner is decided on the median over its rounds,
   because one short cell on a shared machine is noise.

The budget is hard: before a cell starts, its estimated cost (a config switch
when the candidate is not the loaded one, warm-up, the measured seconds) must
fit in what is left, else the search stops and reports what it has. Screening
leaves ``confirm_share`` of the budget (35 %) to confirmation: when a
screening cell would eat into it, the dimensions not yet screened are skipped
and the finalists are confirmed (the report says where it stopped).

Objective: a cell is *feasible* when no request failed and its p99 is at most
``p99_ratio`` times its p50 (the issue's bound: p99 <= 3x p50), and at most
``max_p99_ms`` when given. A candidate scores its best feasible throughput over
the concurrency levels; candidates without a feasible cell rank after all
those with one (by throughput among themselves).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from medserve_bench.tune.space import Candidate, Dimension

log = logging.getLogger(__name__)

SCREEN = "screen"
CONFIRM = "confirm"


@dataclass(frozen=True, kw_only=True)
class Cell:
    """One candidate measured at one concurrency for one stretch of time.

    Attributes:
        candidate: What was served.
        concurrency: Requests in flight.
        stage: ``"screen"`` or ``"confirm"``.
        round: Confirmation round (0 when screening).
        images_per_s: Throughput over the window.
        p50_ms: Median latency (None without a successful request).
        p99_ms: 99th percentile latency.
        failures: Failed requests in the window.
        images_per_execution: Mean batch the dynamic batcher formed (Triton's statistics).
        duration_s: Measured seconds.
        error: Why the candidate could not be measured (a failed load), else None.
    """

    candidate: Candidate
    concurrency: int
    stage: str
    round: int
    images_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    failures: int = 0
    images_per_execution: float | None = None
    duration_s: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The cell as plain JSON values."""
        return {
            "config": self.candidate.label,
            "concurrency": self.concurrency,
            "stage": self.stage,
            "round": self.round,
            "images_per_s": round(self.images_per_s, 2),
            "p50_ms": _rounded(self.p50_ms),
            "p99_ms": _rounded(self.p99_ms),
            "failures": self.failures,
            "images_per_execution": _rounded(self.images_per_execution, 2),
            "duration_s": self.duration_s,
            "error": self.error,
        }


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


class Bench(Protocol):
    """What the search needs from a measuring harness."""

    def estimate_s(self, candidate: Candidate, duration_s: float) -> float:
        """Seconds one cell of ``candidate`` would take from now (switch included)."""
        ...

    def measure(self, candidate: Candidate, concurrency: int, duration_s: float) -> Cell:
        """Serve ``candidate`` and measure it at ``concurrency`` for ``duration_s``."""
        ...


class Budget:
    """A hard wall-clock budget, started at construction."""

    def __init__(self, total_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Start the budget.

        Args:
            total_s: Seconds available in all.
            clock: Monotonic seconds (a fake in tests).
        """
        if total_s <= 0:
            raise ValueError(f"the budget must be positive, got {total_s}")
        self.total_s = total_s
        self._clock = clock
        self._start = clock()

    def elapsed_s(self) -> float:
        """Seconds spent so far."""
        return self._clock() - self._start

    def remaining_s(self) -> float:
        """Seconds left (negative when overspent)."""
        return self.total_s - self.elapsed_s()

    def fits(self, cost_s: float) -> bool:
        """Whether ``cost_s`` more seconds stay within the budget."""
        return cost_s <= self.remaining_s()


@dataclass(frozen=True, kw_only=True)
class Objective:
    """Best throughput under a latency bound (see the module docstring)."""

    p99_ratio: float = 3.0
    max_p99_ms: float | None = None

    def feasible(self, cell: Cell) -> bool:
        """Whether ``cell`` meets the latency bound with no failure."""
        if cell.error or cell.failures or cell.p50_ms is None or cell.p99_ms is None:
            return False
        if cell.p99_ms > self.p99_ratio * cell.p50_ms:
            return False
        return self.max_p99_ms is None or cell.p99_ms <= self.max_p99_ms

    def rank_key(self, cells: Sequence[Cell]) -> tuple[int, float, float]:
        """Sort key of one candidate's cells, larger is better: (feasible, images/s, -p99)."""
        usable = [c for c in cells if not c.error]
        if not usable:
            return (0, -1.0, 0.0)
        feasible = [c for c in usable if self.feasible(c)]
        pool = feasible or usable
        best = max(pool, key=lambda c: (c.images_per_s, -(c.p99_ms or 0.0)))
        return (1 if feasible else 0, best.images_per_s, -(best.p99_ms or 0.0))

    def best_cell(self, cells: Sequence[Cell]) -> Cell | None:
        """The cell that gives a candidate its score."""
        usable = [c for c in cells if not c.error]
        pool = [c for c in usable if self.feasible(c)] or usable
        return max(pool, key=lambda c: (c.images_per_s, -(c.p99_ms or 0.0)), default=None)


@dataclass(frozen=True, kw_only=True)
class Plan:
    """How much to measure.

    Attributes:
        concurrency: Levels each candidate is measured at.
        screen_s: Measured seconds of a screening cell.
        confirm_s: Measured seconds of a confirmation cell.
        finalists: Candidates taken into confirmation.
        confirm_rounds: Confirmation rounds at most.
        reserve_s: Seconds kept back for writing the results and stopping the server.
        confirm_share: Share of the budget screening leaves to confirmation:
            when screening would eat into it, the remaining dimensions are
            skipped (the report says so) and the finalists are confirmed.
    """

    concurrency: tuple[int, ...] = (16, 32)
    screen_s: float = 3.0
    confirm_s: float = 8.0
    finalists: int = 3
    confirm_rounds: int = 3
    reserve_s: float = 15.0
    confirm_share: float = 0.35

    def __post_init__(self) -> None:
        if not self.concurrency or min(self.concurrency) < 1:
            raise ValueError(f"concurrency levels must be positive: {self.concurrency}")
        if self.screen_s <= 0 or self.confirm_s <= 0 or self.finalists < 1:
            raise ValueError("durations and finalists must be positive")
        if self.confirm_rounds < 0 or self.reserve_s < 0:
            raise ValueError("confirm_rounds and reserve_s must not be negative")
        if not 0 <= self.confirm_share < 1:
            raise ValueError(f"confirm_share must be in [0, 1), got {self.confirm_share}")


@dataclass
class SearchResult:
    """Everything the search measured and what it chose."""

    cells: list[Cell] = field(default_factory=list)
    best: Candidate | None = None
    finalists: list[Candidate] = field(default_factory=list)
    stopped_early: bool = False
    stop_reason: str | None = None

    def cells_of(self, candidate: Candidate, stage: str | None = None) -> list[Cell]:
        """The cells of one candidate (of one stage)."""
        return [c for c in self.cells if c.candidate == candidate and stage in (None, c.stage)]

    def candidates(self) -> list[Candidate]:
        """Every candidate measured, in first-measured order."""
        return list(dict.fromkeys(c.candidate for c in self.cells))


def confirmed_cells(cells: Sequence[Cell]) -> list[Cell]:
    """Per concurrency, the median over confirmation rounds (images/s, p50, p99)."""
    by_level: dict[int, list[Cell]] = {}
    for cell in cells:
        if cell.stage == CONFIRM and not cell.error:
            by_level.setdefault(cell.concurrency, []).append(cell)
    merged = []
    for level, group in sorted(by_level.items()):
        p50 = [c.p50_ms for c in group if c.p50_ms is not None]
        p99 = [c.p99_ms for c in group if c.p99_ms is not None]
        batch = [c.images_per_execution for c in group if c.images_per_execution is not None]
        merged.append(
            Cell(
                candidate=group[0].candidate,
                concurrency=level,
                stage=CONFIRM,
                round=len(group),
                images_per_s=statistics.median(c.images_per_s for c in group),
                p50_ms=statistics.median(p50) if p50 else None,
                p99_ms=statistics.median(p99) if p99 else None,
                failures=sum(c.failures for c in group),
                images_per_execution=statistics.median(batch) if batch else None,
                duration_s=sum(c.duration_s for c in group),
            )
        )
    return merged


class _BudgetSpentError(Exception):
    """The budget cannot fit the next cell."""


class _Search:
    def __init__(self, bench: Bench, plan: Plan, budget: Budget, objective: Objective) -> None:
        self.bench, self.plan, self.budget, self.objective = bench, plan, budget, objective
        self.result = SearchResult()

    def run_candidate(
        self, candidate: Candidate, stage: str, rnd: int, *, keep_s: float = 0.0
    ) -> None:
        """Measure ``candidate`` at every level; _BudgetSpentError when a cell cannot fit.

        ``keep_s`` more seconds must stay left after the cell (screening keeps
        confirmation's share).
        """
        duration = self.plan.screen_s if stage == SCREEN else self.plan.confirm_s
        for level in self.plan.concurrency:
            cost = self.bench.estimate_s(candidate, duration)
            if not self.budget.fits(cost + self.plan.reserve_s + keep_s):
                kept = f" and {keep_s:.0f} s kept for confirmation" if keep_s else ""
                raise _BudgetSpentError(
                    f"{stage}: {self.budget.remaining_s():.0f} s left, the next cell needs about "
                    f"{cost:.0f} s plus {self.plan.reserve_s:.0f} s reserve{kept}"
                )
            cell = self.bench.measure(candidate, level, duration)
            cell = replace(cell, stage=stage, round=rnd)
            self.result.cells.append(cell)
            log.info(
                "%s r%d %-60s @%-3d %7.1f images/s p50 %s p99 %s%s",
                stage,
                rnd,
                candidate.label,
                level,
                cell.images_per_s,
                cell.p50_ms,
                cell.p99_ms,
                f" ({cell.error})" if cell.error else "",
            )
            if cell.error:
                return  # It did not load: the other levels would fail alike.

    def key(self, candidate: Candidate, stage: str) -> tuple[int, float, float]:
        cells = self.result.cells_of(candidate, stage)
        return self.objective.rank_key(confirmed_cells(cells) if stage == CONFIRM else cells)

    def screen(self, dims: Sequence[Dimension], start: Candidate) -> None:
        keep_s = self.plan.confirm_share * self.budget.total_s if self.plan.confirm_rounds else 0.0
        current = start
        for dim in dims:
            # The current value first: on a tie it stays (max keeps the first).
            tried = [current, *(c for c in dim.candidates(current) if c != current)]
            for candidate in tried:
                if not self.result.cells_of(candidate, SCREEN):
                    self.run_candidate(candidate, SCREEN, 0, keep_s=keep_s)
            current = max(tried, key=lambda c: self.key(c, SCREEN))
            log.info("screened %s: best %s", dim.name, current.label)

    def confirm(self) -> None:
        ranked = sorted(self.result.candidates(), key=lambda c: self.key(c, SCREEN), reverse=True)
        alive = [c for c in ranked if not any(x.error for x in self.result.cells_of(c))]
        alive = alive[: self.plan.finalists]
        self.result.finalists = list(alive)
        if not alive:
            return
        for rnd in range(self.plan.confirm_rounds):
            shift = rnd % len(alive)
            order = alive[shift:] + alive[:shift]
            # The one still served goes first (no switch); the rest rotate.
            cheapest = min(order, key=lambda c: self.bench.estimate_s(c, self.plan.confirm_s))
            order.remove(cheapest)
            for candidate in [cheapest, *order]:
                self.run_candidate(candidate, CONFIRM, rnd)
            alive.sort(key=lambda c: self.key(c, CONFIRM), reverse=True)
            alive = alive[: max(2, -(-len(alive) // 2))]

    def until_spent(self, step: Callable[[], None]) -> None:
        """Run ``step`` until it ends or the budget stops it (recorded in the result)."""
        try:
            step()
        except _BudgetSpentError as stop:
            self.result.stopped_early = True
            self.result.stop_reason = str(stop)
            log.warning("budget: stopping early (%s)", stop)

    def choose(self) -> Candidate | None:
        confirmed = [c for c in self.result.candidates() if self.result.cells_of(c, CONFIRM)]
        stage = CONFIRM if confirmed else SCREEN
        pool = confirmed or self.result.candidates()
        usable = [c for c in pool if self.key(c, stage)[1] >= 0]
        return max(usable, key=lambda c: self.key(c, stage), default=None)


def search(
    bench: Bench,
    dims: Sequence[Dimension],
    start: Candidate,
    *,
    plan: Plan,
    budget: Budget,
    objective: Objective,
) -> SearchResult:
    """Screen the dimensions from ``start``, confirm the finalists, pick the best.

    Stops starting cells when the budget cannot fit the next one and returns
    what it has (``stopped_early`` and ``stop_reason`` say so); ``best`` is
    None only when no candidate was measured successfully.
    """
    run = _Search(bench, plan, budget, objective)
    # Screening cut short by confirmation's share still leaves the finalists
    # their rounds; the reason of the last stop is reported.
    run.until_spent(lambda: run.screen(dims, start))
    run.until_spent(run.confirm)
    run.result.best = run.choose()
    return run.result
