"""One row per fault, the criterion it is held to, and the table ``make chaos`` prints.

Usage::

    row = FaultRow(fault="kill -9 + restart", load="8 threads, gRPC+HTTP", made=812, lost=0,
                   hangs=0, failures="-", peak_rss_mb=912.0, outcome="outage 9.8 s",
                   criteria={"0 calls lost": True, "none hangs": True})
    print(render([row]))
    assert row.passed, row.failed_criteria()
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field


@dataclass
class FaultRow:
    """The outcome of one fault.

    Attributes:
        fault: What was done to the server.
        load: The load it was done under.
        made: Calls made.
        lost: Calls that ended without an answer (failed or hung) where the
            fault allows none; failures the fault provokes on purpose (the
            rejections of an overload, the refusals of bombs) are not "lost".
        hangs: Calls that never returned.
        failures: Failures by class (typed, or marked untyped).
        peak_rss_mb: Peak resident memory of the server's process group during the fault.
        outcome: What else was measured (drain, outage, growth...).
        criteria: Each pass criterion and whether it held.
        examples: The first message of each failure class (JSON only).
    """

    fault: str
    load: str
    made: int
    lost: int
    hangs: int
    failures: str
    peak_rss_mb: float
    outcome: str
    criteria: dict[str, bool] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Every criterion held."""
        return all(self.criteria.values())

    def failed_criteria(self) -> list[str]:
        """The criteria that did not hold (for assertion messages)."""
        return [name for name, held in self.criteria.items() if not held]


_COLUMNS = (
    "fault",
    "load",
    "calls made",
    "calls lost",
    "hangs",
    "failures (typed)",
    "peak RSS MB",
    "outcome",
    "result",
)


def render(rows: Sequence[FaultRow]) -> str:
    """The rows as a Markdown table (readable in a terminal and in the README)."""
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    for row in rows:
        verdict = "pass" if row.passed else "FAIL: " + "; ".join(row.failed_criteria())
        cells = [
            row.fault,
            row.load,
            str(row.made),
            str(row.lost),
            str(row.hangs),
            row.failures,
            f"{row.peak_rss_mb:.0f}",
            row.outcome,
            verdict,
        ]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines)


def to_json(rows: Sequence[FaultRow]) -> str:
    """The rows, criteria included, as JSON."""
    return json.dumps([asdict(row) | {"passed": row.passed} for row in rows], indent=2)
