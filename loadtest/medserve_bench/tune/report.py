"""The tuner's report: ``tune.json``, ``tune.md`` (the table) and ``tune.png`` (the plot).

Usage::

    paths = write_report(out, result, objective=objective, meta=meta)
    # out/tune.json, out/tune.md, out/tune.png

Every measured cell is a row: config, stage and round, in flight, images/s,
p50, p99, images per execution (the batch the dynamic batcher formed, from
Triton's statistics) and whether it meets the latency bound. The finalists
get a second table with the median over their confirmation rounds, from which
the winner was chosen. The plot shows throughput against p99 for every cell,
the winner's cells marked.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medserve_bench.tune.search import CONFIRM, Cell, Objective, SearchResult, confirmed_cells

TABLE_HEADER = (
    "| config | stage | in flight | images/s | p50 ms | p99 ms | images/execution | bound met |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | :---: |",
)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _row(cell: Cell, objective: Objective, stage: str) -> str:
    met = "yes" if objective.feasible(cell) else ("error" if cell.error else "no")
    values = [
        cell.candidate.label,
        stage,
        str(cell.concurrency),
        _num(cell.images_per_s),
        _num(cell.p50_ms),
        _num(cell.p99_ms),
        _num(cell.images_per_execution, 2),
        met,
    ]
    return "| " + " | ".join(values) + " |"


def summary(result: SearchResult, objective: Objective) -> dict[str, Any]:
    """The winner, its scoring cell and the finalists' medians, as JSON values."""
    best_cell = None
    if result.best is not None:
        cells = result.cells_of(result.best)
        confirmed = confirmed_cells(cells)
        chosen = objective.best_cell(confirmed or cells)
        best_cell = chosen.to_dict() if chosen else None
    return {
        "best": result.best.to_dict() if result.best else None,
        "best_cell": best_cell,
        "finalists": [
            {
                "config": candidate.to_dict(),
                "confirmed": [c.to_dict() for c in confirmed_cells(result.cells_of(candidate))],
            }
            for candidate in result.finalists
        ],
        "stopped_early": result.stopped_early,
        "stop_reason": result.stop_reason,
        "cells_run": len(result.cells),
    }


def markdown(result: SearchResult, objective: Objective, meta: dict[str, Any]) -> str:
    """The report as markdown: the winner, the finalists' medians, every cell."""
    head = summary(result, objective)
    bound = f"p99 <= {objective.p99_ratio:g} x p50"
    if objective.max_p99_ms is not None:
        bound += f" and p99 <= {objective.max_p99_ms:g} ms"
    lines = [
        f"# medserve tune: {meta.get('model')} in {meta.get('repo')}",
        "",
        f"Objective: the most images/s of a cell with no failure and {bound}, over the "
        f"concurrency levels {meta.get('concurrency')}. Budget {meta.get('budget_s')} s, "
        f"used {meta.get('duration_s')} s; {head['cells_run']} cells run"
        + (f"; stopped early: {result.stop_reason}." if result.stopped_early else "."),
        "",
    ]
    if result.best is None:
        lines.append("**No configuration could be measured: nothing was written.**")
    else:
        cell = head["best_cell"] or {}
        lines += [
            f"**Best: `{result.best.label}`**: {cell.get('images_per_s')} images/s at "
            f"{cell.get('concurrency')} in flight, p50 {cell.get('p50_ms')} ms, p99 "
            f"{cell.get('p99_ms')} ms. Written as the config `tuned`: "
            + ", ".join(f"`{p}`" for p in meta.get("written", [])),
        ]
    if meta.get("note"):
        lines += ["", f"Note: {meta['note']}"]
    finalists = [(c, confirmed_cells(result.cells_of(c))) for c in result.finalists]
    if any(cells for _, cells in finalists):
        lines += ["", "## Finalists: median over confirmation rounds", "", *TABLE_HEADER]
        for _, cells in finalists:
            lines += [_row(c, objective, f"confirm x{c.round}") for c in cells]
    lines += ["", "## Every cell", "", *TABLE_HEADER]
    for cell in result.cells:
        stage = cell.stage if cell.stage != CONFIRM else f"confirm r{cell.round}"
        lines.append(_row(cell, objective, stage))
    errors = [c for c in result.cells if c.error]
    if errors:
        lines += ["", "Errors:", ""]
        lines += [f"- `{c.candidate.label}` @{c.concurrency}: {c.error}" for c in errors]
    return "\n".join(lines) + "\n"


def plot(path: Path, result: SearchResult, objective: Objective) -> None:
    """Throughput against p99 for every cell; the winner's cells and its best cell marked."""
    import matplotlib

    matplotlib.use("Agg")  # No display on a server or in CI.
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    measured = [c for c in result.cells if c.p99_ms is not None and not c.error]
    for stage, colour, marker in (("screen", "tab:grey", "o"), (CONFIRM, "tab:blue", "s")):
        cells = [c for c in measured if c.stage == stage]
        if cells:
            ax.scatter(
                [c.images_per_s for c in cells],
                [c.p99_ms or 0.0 for c in cells],
                c=colour,
                marker=marker,
                alpha=0.6,
                label=f"{stage} cells",
            )
    if result.best is not None:
        cells = [c for c in measured if c.candidate == result.best]
        ax.scatter(
            [c.images_per_s for c in cells],
            [c.p99_ms or 0.0 for c in cells],
            facecolors="none",
            edgecolors="tab:red",
            s=120,
            label="best config",
        )
        chosen = objective.best_cell(confirmed_cells(cells) or cells)
        if chosen is not None and chosen.p99_ms is not None:
            ax.scatter(
                [chosen.images_per_s],
                [chosen.p99_ms],
                marker="*",
                s=300,
                c="tab:red",
                label=f"best: {result.best.label} @{chosen.concurrency}",
            )
    ax.set_xlabel("throughput (images/s)")
    ax.set_ylabel("p99 latency (ms, log scale)")
    ax.set_yscale("log")
    ax.set_title("medserve tune: throughput against p99, one point per cell")
    ax.grid(True, which="both", alpha=0.3)
    if measured:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(
    out: Path,
    result: SearchResult,
    *,
    objective: Objective,
    meta: dict[str, Any],
    extra: Sequence[tuple[str, Any]] = (),
) -> dict[str, Path]:
    """Write ``tune.json``, ``tune.md`` and ``tune.png`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "tune.json", "markdown": out / "tune.md", "plot": out / "tune.png"}
    document = {
        "meta": meta,
        "objective": {"p99_ratio": objective.p99_ratio, "max_p99_ms": objective.max_p99_ms},
        **summary(result, objective),
        **dict(extra),
        "cells": [c.to_dict() for c in result.cells],
    }
    paths["json"].write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    paths["markdown"].write_text(markdown(result, objective, meta), encoding="utf-8")
    plot(paths["plot"], result, objective)
    return paths
