"""Turning benchmark measurements into bench.json, a markdown table and a plot.

Usage::

    cells = aggregate(rounds_of_measurements)       # one entry per cell, rounds pooled
    ratios = compute_ratios(measurements, compare_at=16)
    write_outputs(out_dir, cells=cells, ratios=ratios, limit=limit_runs, meta=meta)
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

# Ratios the issue asks for: (key, description, target, higher is better).
TARGETS = {
    "served_vs_limit": ("medserve best / in-process limit", 0.90),
    "medserve_vs_peer": ("medserve / naive peer, throughput at {c}", 5.0),
    "batching_on_vs_off": ("dynamic batching on / off, throughput at {c}", 1.5),
}


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
            }
        )
    return cells


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _rate(
    measurements: Sequence[Measurement], label: str, concurrency: int, rnd: int
) -> float | None:
    for m in measurements:
        if m.label == label and m.concurrency == concurrency and m.round == rnd:
            return m.inferences_per_s
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def compute_ratios(
    measurements: Sequence[Measurement],
    cells: Sequence[dict[str, Any]],
    limits: Sequence[float],
    *,
    compare_at: int,
) -> dict[str, dict[str, Any]]:
    """The issue's ratios (per round, median over rounds) and payload ratios."""
    rounds = sorted({m.round for m in measurements})
    per_round: dict[str, list[float]] = {}

    def add(name: str, value: float | None) -> None:
        if value is not None:
            per_round.setdefault(name, []).append(value)

    pairs = {
        "medserve_vs_peer": ("medserve", "peer"),
        "batching_on_vs_off": ("medserve", "nobatch"),
        "uint8_vs_float32": ("payload uint8", "payload float32"),
        "encoded_vs_uint8": ("payload encoded", "payload uint8"),
    }
    for rnd in rounds:
        served = [
            m.inferences_per_s for m in measurements if m.label == "medserve" and m.round == rnd
        ]
        limit = limits[rnd] if rnd < len(limits) else None
        add("served_vs_limit", _ratio(max(served, default=None), limit))
        for name, (top, bottom) in pairs.items():
            add(
                name,
                _ratio(
                    _rate(measurements, top, compare_at, rnd),
                    _rate(measurements, bottom, compare_at, rnd),
                ),
            )
    p99 = {c["cell"]: c["p99_ms"] for c in cells}
    out: dict[str, dict[str, Any]] = {}
    for name, values in per_round.items():
        entry: dict[str, Any] = {
            "value": round(statistics.median(values), 3),
            "by_round": [round(v, 3) for v in values],
        }
        if name in TARGETS:
            text, target = TARGETS[name]
            entry.update(description=text.format(c=compare_at), target=target)
            entry["met"] = entry["value"] >= target
        out[name] = entry
    ours, peer = p99.get(f"medserve@{compare_at}"), p99.get(f"peer@{compare_at}")
    if ours is not None and peer is not None:
        out["medserve_vs_peer"]["p99_ms"] = {"medserve": ours, "peer": peer}
        out["medserve_vs_peer"]["met"] = bool(out["medserve_vs_peer"].get("met") and ours < peer)
    return out


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(
    cells: Sequence[dict[str, Any]], ratios: dict[str, dict[str, Any]], limit: dict[str, Any]
) -> str:
    """The benchmark table and the ratios, as markdown.

    Queue, compute and "outside Triton" are the profile of a request: mean time
    waiting in Triton's scheduler, mean execution time of the batch it was in,
    and the client-side mean latency minus the mean time inside Triton.
    """
    lines = [
        f"In-process limit: **{_fmt(limit.get('best_images_per_s'))} images/s** at batch "
        f"{limit.get('best_batch_size')} (per round: {limit.get('by_round')}).",
        "",
        "| cell | in flight | bytes/request | images/s (median; per round) | p50 ms | p99 ms "
        "| batch/exec | queue ms | compute ms | outside Triton ms | failures |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in cells:
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
            c["failures"],
        ]
        lines.append("| " + " | ".join(str(x) for x in row) + " |")
    lines += [
        "",
        "| ratio | measured (per round) | target | met |",
        "| --- | ---: | ---: | :---: |",
    ]
    for name, r in ratios.items():
        by_round = ", ".join(_fmt(v, 2) for v in r["by_round"])
        extra = ""
        if "p99_ms" in r:
            extra = f"; p99 {r['p99_ms']['medserve']:.0f} vs {r['p99_ms']['peer']:.0f} ms"
        target = f"≥ {r['target']}" if "target" in r else "-"
        met = "-" if "met" not in r else ("yes" if r["met"] else "**no**")
        measured = f"{r['value']:.2f} ({by_round}){extra}"
        lines.append(f"| {r.get('description', name)} | {measured} | {target} | {met} |")
    return "\n".join(lines) + "\n"


def plot(path: Path, cells: Sequence[dict[str, Any]], limit: dict[str, Any]) -> None:
    """Latency (p50 and p99) against throughput, one line per served variant."""
    import matplotlib

    matplotlib.use("Agg")  # No display on a server or in CI.
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for label, colour in (("medserve", "tab:blue"), ("peer", "tab:red"), ("nobatch", "tab:orange")):
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
    ax.set_title("medserve vs naive peer: latency against throughput")
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
