"""Turning benchmark measurements into bench.json, a markdown table and a plot.

Usage::

    cells = aggregate(rounds_of_measurements)       # one entry per cell, rounds pooled
    limit = summarize_limit(runs_by_round)          # every in-process runtime, the best
    ratios = compute_ratios(measurements, cells, limit, compare_at=16)   # ratios.py
    write_outputs(out_dir, cells=cells, ratios=ratios, limit=limit, meta=meta)
    # -> out_dir/bench.json, out_dir/bench.md, out_dir/bench.png

A measurement is one cell (say ``medserve`` at concurrency 16) in one round.
Throughput is reported as the median over rounds with the per-round values
beside it, so drift between rounds is visible; p50 and p99 come from every raw
sample of the cell, all rounds pooled. Ratios are taken within a round (cells
measured minutes apart, not hours) and the median over rounds is reported.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medserve_bench.latency import latency_summary


@dataclass
class Measurement:
    """One cell measured in one round."""

    group: str
    label: str
    concurrency: int
    round: int
    inferences_per_s: float
    latencies_ms: np.ndarray
    failures: int
    bytes_per_request: int | None = None
    server: dict[str, Any] | None = None
    first_error: str | None = None
    cpu: dict[str, float | None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Cell identity across rounds."""
        return f"{self.label}@{self.concurrency}"


def aggregate(measurements: Sequence[Measurement]) -> list[dict[str, Any]]:
    """One dictionary per cell, in first-measured order, rounds pooled."""
    by_key: dict[str, list[Measurement]] = {}
    for item in measurements:
        by_key.setdefault(item.key, []).append(item)
    cells = []
    for key, items in by_key.items():
        rates = [m.inferences_per_s for m in items]
        pooled = np.concatenate([m.latencies_ms for m in items])
        latency = latency_summary(pooled)
        ipe = [m.server["inferences_per_execution"] for m in items if m.server]
        ipe = [x for x in ipe if x is not None]
        queue = [m.server["mean_queue_ms"] for m in items if m.server]
        compute = [m.server["mean_compute_ms"] for m in items if m.server]
        inside = [m.server["mean_request_ms"] for m in items if m.server]
        inside_ms = _median([x for x in inside if x is not None])
        cpu = {
            key: _median([v for m in items if m.cpu and (v := m.cpu.get(key)) is not None])
            for key in CPU_FIELDS
        }
        cells.append(
            {
                "cell": key,
                "group": items[0].group,
                "label": items[0].label,
                "concurrency": items[0].concurrency,
                "bytes_per_request": items[0].bytes_per_request,
                "inferences_per_s": round(statistics.median(rates), 3),
                "inferences_per_s_by_round": [round(r, 3) for r in rates],
                "p50_ms": latency["p50_ms"],
                "p99_ms": latency["p99_ms"],
                "requests": latency["count"],
                "failures": sum(m.failures for m in items),
                "first_error": next((m.first_error for m in items if m.first_error), None),
                "server_inferences_per_execution": _median(ipe),
                "server_mean_queue_ms": _median([x for x in queue if x is not None]),
                "server_mean_compute_ms": _median([x for x in compute if x is not None]),
                "server_mean_request_ms": inside_ms,
                # The rest: client, serialisation and transport (mean latency
                # seen by the client minus the mean time inside Triton).
                "outside_server_ms": round(latency["mean_ms"] - inside_ms, 3)
                if inside_ms is not None and latency["mean_ms"] is not None
                else None,
                # Medians over rounds: who kept the cores busy, and CPU per image.
                **cpu,
            }
        )
    return cells


CPU_FIELDS = (
    "client_cores", "server_cores", "other_cores", "client_cpu_ms_per_image",
    "server_cpu_ms_per_image",
)  # fmt: skip


def summarize_limit(runs_by_round: Sequence[Sequence[dict[str, Any]]]) -> dict[str, Any]:
    """The in-process limit: every runtime's best per round, and the best runtime.

    Args:
        runs_by_round: For each round, the :func:`medserve_bench.inprocess.measure_limit`
            result of each runtime (TensorFlow, onnxruntime FP32, onnxruntime INT8).

    Returns:
        ``by_round`` (the best runtime's images/s in each round: the ratio's
        denominator), ``best_images_per_s`` (their median), ``best_runtime``
        and its ``best_batch_size``, ``runtimes`` (per runtime: median best
        images/s, per round, best batch size, CPU ms per image and cores),
        ``by_runtime`` (runtime -> median best images/s), ``int8_vs_fp32_by_round``
        and every raw run.
    """
    if not runs_by_round or not all(runs_by_round):
        raise ValueError("the in-process limit needs at least one run per round")
    by_round = [max(float(r["best_images_per_s"]) for r in runs) for runs in runs_by_round]
    runtimes: dict[str, dict[str, Any]] = {}
    for runs in runs_by_round:
        for run in runs:
            entry = runtimes.setdefault(str(run["runtime"]), {"runs": []})
            entry["runs"].append(run)
    for entry in runtimes.values():
        runs = entry.pop("runs")
        rates = [float(r["best_images_per_s"]) for r in runs]
        batches = [int(r["best_batch_size"]) for r in runs]
        cpu = [r["best_cpu_ms_per_image"] for r in runs if r.get("best_cpu_ms_per_image")]
        cores = [r["best_cores"] for r in runs if r.get("best_cores")]
        entry.update(
            best_images_per_s=round(statistics.median(rates), 3),
            images_per_s_by_round=rates,
            best_batch_size=max(set(batches), key=batches.count),
            cpu_ms_per_image=_median(cpu),
            cores=_median(cores),
        )
    best_runtime = max(runtimes, key=lambda name: runtimes[name]["best_images_per_s"])
    int8 = [name for name in runtimes if name.endswith(" int8")]
    fp32 = [name for name in runtimes if name.startswith("onnxruntime") and name.endswith(" fp32")]
    int8_vs_fp32 = []
    if int8 and fp32:
        pairs = zip(runtimes[int8[0]]["images_per_s_by_round"],
                    runtimes[fp32[0]]["images_per_s_by_round"], strict=False)  # fmt: skip
        int8_vs_fp32 = [a / b for a, b in pairs if b]
    return {
        "best_images_per_s": round(statistics.median(by_round), 3),
        "best_runtime": best_runtime,
        "best_batch_size": runtimes[best_runtime]["best_batch_size"],
        "by_round": by_round,
        "by_runtime": {name: entry["best_images_per_s"] for name, entry in runtimes.items()},
        "runtimes": runtimes,
        "int8_vs_fp32_by_round": int8_vs_fp32,
        "runs": [run for runs in runs_by_round for run in runs],
    }


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _slash(cell: dict[str, Any], keys: Sequence[str], digits: int) -> str:
    values = [cell.get(key) for key in keys]
    if all(v is None for v in values):
        return "-"
    return " / ".join(_fmt(v, digits) for v in values)


def _limit_lines(limit: dict[str, Any]) -> list[str]:
    """The limit's headline and one row per in-process runtime."""
    lines = [
        f"In-process limit (the best runtime at its best batch size, median of rounds): "
        f"**{_fmt(limit.get('best_images_per_s'))} images/s** with {limit.get('best_runtime')} "
        f"at batch {limit.get('best_batch_size')} (per round: "
        f"{', '.join(_fmt(x) for x in limit.get('by_round') or [])}).",
        "",
        "| in-process runtime | best images/s (median; per round) | best batch | CPU ms/image "
        "| cores |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in (limit.get("runtimes") or {}).items():
        rounds = ", ".join(_fmt(x) for x in r["images_per_s_by_round"])
        lines.append(
            f"| {name} | {_fmt(r['best_images_per_s'])} ({rounds}) | {r['best_batch_size']} "
            f"| {_fmt(r.get('cpu_ms_per_image'), 2)} | {_fmt(r.get('cores'), 2)} |"
        )
    return lines


CELL_HEADER = (
    "| cell | in flight | bytes/request | images/s (median; per round) | p50 ms | p99 ms "
    "| batch/exec | queue ms | compute ms | outside Triton ms | cores client / server / other "
    "| CPU ms/image client / server | failures |"
)


def _cell_row(c: dict[str, Any]) -> str:
    rounds = ", ".join(_fmt(r) for r in c["inferences_per_s_by_round"])
    row = [
        c["label"],
        c["concurrency"],
        _fmt(c["bytes_per_request"]),
        f"{_fmt(c['inferences_per_s'])} ({rounds})",
        _fmt(c["p50_ms"]),
        _fmt(c["p99_ms"]),
        _fmt(c["server_inferences_per_execution"], 2),
        _fmt(c["server_mean_queue_ms"]),
        _fmt(c["server_mean_compute_ms"]),
        _fmt(c["outside_server_ms"]),
        _slash(c, ("client_cores", "server_cores", "other_cores"), 2),
        _slash(c, ("client_cpu_ms_per_image", "server_cpu_ms_per_image"), 2),
        c["failures"],
    ]
    return "| " + " | ".join(str(x) for x in row) + " |"


def _ratio_lines(ratios: dict[str, dict[str, Any]]) -> list[str]:
    """The targets (met or not, with their cause), then the ratios without a target."""
    lines = [
        "| target | measured (median; per round) | target | met | why: CPU per image, cores |",
        "| --- | ---: | ---: | :---: | --- |",
    ]
    others = ["", "| other ratio | measured (median; per round) |", "| --- | ---: |"]
    for r in ratios.values():
        if r.get("value") is None:
            measured = "-"
        else:
            by_round = ", ".join(_fmt(v, 2) for v in r["by_round"])
            measured = f"{r['value']:.2f} ({by_round})"
        if "p99_ms" in r:
            measured += f"; p99 {r['p99_ms']['medserve']:.0f} vs {r['p99_ms']['peer']:.0f} ms"
        if "target" not in r:
            others.append(f"| {r['description']} | {measured} |")
            continue
        sign = "≥" if r.get("direction", "higher") == "higher" else "≤"
        met = "-" if r.get("met") is None else ("yes" if r["met"] else "**no**")
        why = r.get("cause") or r.get("note") or "-"
        lines.append(f"| {r['description']} | {measured} | {sign} {r['target']} | {met} | {why} |")
    return lines + (others if len(others) > 3 else [])


def markdown(
    cells: Sequence[dict[str, Any]], ratios: dict[str, dict[str, Any]], limit: dict[str, Any]
) -> str:
    """The benchmark's tables as markdown: limit per runtime, cells, targets.

    Queue, compute and "outside Triton" are the profile of a request: mean time
    waiting in Triton's scheduler, mean execution time of the batch it was in,
    and the client-side mean latency minus the mean time inside Triton. Cores
    are those the load generator (this process), the server (with its stubs or
    workers) and everything else kept busy over the window; CPU per image is
    each side's CPU time over the images classified.
    """
    lines = [*_limit_lines(limit), "", CELL_HEADER, "|" + " --- |" + " ---: |" * 12]
    lines += [_cell_row(c) for c in cells]
    lines += ["", *_ratio_lines(ratios)]
    return "\n".join(lines) + "\n"


def plot(path: Path, cells: Sequence[dict[str, Any]], limit: dict[str, Any]) -> None:
    """Latency (p50 and p99) against throughput, one line per served variant."""
    import matplotlib

    matplotlib.use("Agg")  # No display on a server or in CI.
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    series_colours = (
        ("medserve", "tab:blue"), ("peer", "tab:red"), ("nobatch", "tab:orange"),
        ("pytriton", "tab:green"), ("payload uint8", "tab:purple"),
    )  # fmt: skip
    for label, colour in series_colours:
        series = sorted((c for c in cells if c["label"] == label and c["p50_ms"] is not None),
                        key=lambda c: c["concurrency"])  # fmt: skip
        if not series:
            continue
        x = [c["inferences_per_s"] for c in series]
        ax.plot(x, [c["p50_ms"] for c in series], "o-", color=colour, label=f"{label} p50")
        ax.plot(
            x, [c["p99_ms"] for c in series], "^--", color=colour, alpha=0.6, label=f"{label} p99"
        )
        for c in series:
            ax.annotate(f"c={c['concurrency']}", (c["inferences_per_s"], c["p50_ms"]), fontsize=7)
    if limit.get("best_images_per_s"):
        ax.axvline(
            limit["best_images_per_s"], color="grey", linestyle=":", label="in-process limit"
        )
    ax.set_xlabel("throughput (images/s)")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_yscale("log")
    ax.set_title("medserve against its peers: latency against throughput")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(
    out: Path,
    *,
    cells: Sequence[dict[str, Any]],
    ratios: dict[str, dict[str, Any]],
    limit: dict[str, Any],
    meta: dict[str, Any],
) -> dict[str, Path]:
    """Write ``bench.json``, ``bench.md`` and ``bench.png`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "markdown": out / "bench.md", "plot": out / "bench.png"}
    document = {"meta": meta, "limit": limit, "cells": list(cells), "ratios": ratios}
    paths["json"].write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    paths["markdown"].write_text(markdown(cells, ratios, limit), encoding="utf-8")
    plot(paths["plot"], cells, limit)
    return paths
