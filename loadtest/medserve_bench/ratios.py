"""The benchmark's ratios, each judged against its issue-13 target and given its cause.

Usage::

    ratios = compute_ratios(measurements, cells, limit, compare_at=16, sdk=sdk_rows)
    ratios["served_vs_limit"]  # {"value": 0.83, "by_round": [...], "target": 0.9, "met": False,
                               #  "description": ..., "cause": "medserve@32: server 27.0 ms ..."}

Every target of issue 13 is a row, measured or not: a row whose cells were not
measured (no ``model_int8.onnx`` exported, no SDK measurement) says why in
``note`` and has ``value`` and ``met`` None, so a missing figure is visible
rather than silently dropped. Ratios are taken within a round (cells measured
minutes apart) and the median over rounds is reported. The cause comes from the
CPU accounting of each cell (:mod:`medserve_bench.cpu`) and Triton's statistics:
CPU per image of the server and of the load generator, and the cores each kept
busy, against the same figures of the other side of the ratio.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from medserve_bench.report import Measurement

MAX_BEST_CONCURRENCY = 64  # The issue: served at its best concurrency up to 64 in flight.


@dataclass(frozen=True)
class Target:
    """One target of the issue: ``value >= target`` (or ``<=`` when lower is better)."""

    description: str
    target: float
    higher_is_better: bool = True

    def met(self, value: float) -> bool:
        """Whether ``value`` reaches the target."""
        return value >= self.target if self.higher_is_better else value <= self.target

    @property
    def text(self) -> str:
        """``≥ 0.9`` or ``≤ 3.0``."""
        return f"{'≥' if self.higher_is_better else '≤'} {self.target}"


TARGETS: dict[str, Target] = {
    "served_vs_limit": Target(
        f"medserve at its best concurrency (≤ {MAX_BEST_CONCURRENCY}) / best in-process limit", 0.90
    ),
    "batching_on_vs_off": Target("dynamic batching on / off, throughput at {c}", 1.5),
    "int8_vs_fp32_served": Target("INT8 served / best FP32 served, throughput at {c}", 1.5),
    "p99_vs_p50": Target("medserve p99 / p50 at {c} in flight", 3.0, higher_is_better=False),
    "medserve_vs_peer": Target("medserve / naive peer, throughput at {c}, lower p99", 5.0),
    "sdk_blocking_vs_plain": Target("SDK Client.classify_many / plain tritonclient loop", 0.9),
    "sdk_async_vs_plain": Target("SDK AsyncClient.classify_many / plain tritonclient loop", 0.9),
    "medserve_vs_pytriton": Target(
        "medserve / PyTriton, best concurrency of each, same raw gRPC load, p99 no worse", 1.0
    ),
}
# Measured and shown, no target.
INFORMATIONAL = {
    "limit_int8_vs_fp32": "in process: onnxruntime INT8 / onnxruntime FP32 (best batch each)",
    "uint8_vs_float32": "payload uint8 / float32 tensor, throughput at {c}",
    "encoded_vs_uint8": "payload encoded JPEG / uint8 tensor, throughput at {c}",
}
SDK_RATIOS = ("sdk_blocking_vs_plain", "sdk_async_vs_plain")


def _rate(items: Sequence[Measurement], label: str, concurrency: int, rnd: int) -> float | None:
    for m in items:
        if m.label == label and m.concurrency == concurrency and m.round == rnd:
            return m.inferences_per_s
    return None


def _best(
    items: Sequence[Measurement], label: str, rnd: int, limit: int = MAX_BEST_CONCURRENCY
) -> float | None:
    rates = [
        m.inferences_per_s
        for m in items
        if m.label == label and m.round == rnd and m.concurrency <= limit
    ]
    return max(rates, default=None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _best_cell(cells: Sequence[dict[str, Any]], label: str) -> dict[str, Any] | None:
    """The cell of ``label`` with the highest median throughput (≤ 64 in flight)."""
    found = [c for c in cells if c["label"] == label and c["concurrency"] <= MAX_BEST_CONCURRENCY]
    return max(found, key=lambda c: c["inferences_per_s"], default=None)


def _ms(value: Any) -> str:
    """Milliseconds with two decimals below 10 (a tiny test model's CPU per image)."""
    if value is None:
        return "-"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _cpu_pair(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    """Server and client CPU per image of two cells, and the cores each side kept busy."""
    if a is None or b is None:
        return "-"
    return (
        f"server {_ms(a.get('server_cpu_ms_per_image'))} vs "
        f"{_ms(b.get('server_cpu_ms_per_image'))} ms CPU/image, client "
        f"{_ms(a.get('client_cpu_ms_per_image'))} vs {_ms(b.get('client_cpu_ms_per_image'))}; "
        f"cores client+server+other {_cores(a)} vs {_cores(b)}"
    )


def _cores(cell: dict[str, Any]) -> str:
    parts = [cell.get(k) for k in ("client_cores", "server_cores", "other_cores")]
    return "+".join("-" if p is None else f"{p:.2f}" for p in parts)


def _cell(cells: Sequence[dict[str, Any]], label: str, concurrency: int) -> dict[str, Any] | None:
    return next((c for c in cells if c["label"] == label and c["concurrency"] == concurrency), None)


def _is_fp32_served(label: str) -> bool:
    """medserve's own cell and the other local runtime's: both serve FP32 models."""
    return label == "medserve" or label.startswith("runtime ")


def _causes(
    cells: Sequence[dict[str, Any]], limit: Mapping[str, Any], compare_at: int, cpus: int | None
) -> dict[str, str]:
    """One line per ratio saying where the time or the CPU went."""
    c = compare_at
    causes: dict[str, str] = {}
    best = _best_cell(cells, "medserve")
    runtime = (limit.get("runtimes") or {}).get(limit.get("best_runtime") or "", {})
    if best is not None:
        causes["served_vs_limit"] = (
            f"medserve@{best['concurrency']}: server {_ms(best.get('server_cpu_ms_per_image'))} "
            f"ms CPU/image vs {_ms(runtime.get('cpu_ms_per_image'))} in process "
            f"({limit.get('best_runtime')}, batch {limit.get('best_batch_size')}, "
            f"{_ms(runtime.get('cores'))} cores); cores client+server+other {_cores(best)} "
            f"of {cpus or '?'}"
        )
    on, off = _cell(cells, "medserve", c), _cell(cells, "nobatch", c)
    if on is not None and off is not None:
        causes["batching_on_vs_off"] = (
            f"{_cpu_pair(on, off)}; batch/exec {_ms(on.get('server_inferences_per_execution'))}"
        )
    int8 = _cell(cells, "int8", c)
    fp32 = [x for x in cells if _is_fp32_served(x["label"]) and x["concurrency"] == c]
    if int8 is not None and fp32:
        causes["int8_vs_fp32_served"] = _cpu_pair(
            int8, max(fp32, key=lambda x: x["inferences_per_s"])
        )
    if on is not None:
        causes["p99_vs_p50"] = (
            f"mean queue {_ms(on.get('server_mean_queue_ms'))} ms + compute "
            f"{_ms(on.get('server_mean_compute_ms'))} ms per request, batch/exec "
            f"{_ms(on.get('server_inferences_per_execution'))}"
        )
    peer = _cell(cells, "peer", c)
    if on is not None and peer is not None:
        causes["medserve_vs_peer"] = _cpu_pair(on, peer)
    ours, theirs = _best_cell(cells, "payload uint8"), _best_cell(cells, "pytriton")
    if ours is not None and theirs is not None:
        causes["medserve_vs_pytriton"] = (
            f"@{ours['concurrency']} vs @{theirs['concurrency']}: {_cpu_pair(ours, theirs)}"
        )
    return causes


def compute_ratios(
    measurements: Sequence[Measurement],
    cells: Sequence[dict[str, Any]],
    limit: Mapping[str, Any],
    *,
    compare_at: int,
    sdk: Mapping[str, Mapping[str, Any]] | None = None,
    cpus: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Every target's ratio (per round, median over rounds) and the informational ones.

    Args:
        measurements: Every cell of every round.
        cells: :func:`medserve_bench.report.aggregate` of them.
        limit: :func:`medserve_bench.report.summarize_limit` (``by_round``:
            the best in-process runtime of each round).
        compare_at: The concurrency of the at-N ratios.
        sdk: ``{"sdk_blocking_vs_plain": {"by_round": [...], "cause": ...}, ...}``
            from the SDK speed measurement, if it ran.
        cpus: CPUs of the machine, for the causes.
    """
    items = list(measurements)
    rounds = sorted({m.round for m in items})
    limits = list(limit.get("by_round") or [])
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
    c = compare_at
    for rnd in rounds:
        add("served_vs_limit", _ratio(_best(items, "medserve", rnd), _at(limits, rnd)))
        for name, (top, bottom) in pairs.items():
            add(name, _ratio(_rate(items, top, c, rnd), _rate(items, bottom, c, rnd)))
        fp32 = [m.inferences_per_s for m in items
                if _is_fp32_served(m.label) and m.concurrency == c and m.round == rnd]  # fmt: skip
        best_fp32 = max(fp32, default=None)
        add("int8_vs_fp32_served", _ratio(_rate(items, "int8", c, rnd), best_fp32))
        add("p99_vs_p50", _tail_ratio(items, "medserve", c, rnd))
        add(
            "medserve_vs_pytriton",
            _ratio(_best(items, "payload uint8", rnd), _best(items, "pytriton", rnd)),
        )
    for rnd_limits in limit.get("int8_vs_fp32_by_round") or []:
        add("limit_int8_vs_fp32", rnd_limits)
    for name, row in (sdk or {}).items():
        for value in row.get("by_round") or []:
            add(name, value)

    causes = _causes(cells, limit, compare_at, cpus)
    for name, row in (sdk or {}).items():
        if row.get("cause"):
            causes[name] = str(row["cause"])
    out: dict[str, dict[str, Any]] = {}
    for name, target in TARGETS.items():
        entry = _entry(per_round.get(name), causes.get(name))
        entry.update(description=target.description.format(c=c), target=target.target,
                     direction="higher" if target.higher_is_better else "lower")  # fmt: skip
        entry["met"] = None if entry["value"] is None else target.met(entry["value"])
        if entry["value"] is None:
            entry["note"] = _why_missing(name, sdk)
        out[name] = entry
    _judge_p99(out, cells, "medserve_vs_peer", _cell(cells, "medserve", c), _cell(cells, "peer", c),
               strictly_lower=True)  # fmt: skip
    _judge_p99(out, cells, "medserve_vs_pytriton", _best_cell(cells, "payload uint8"),
               _best_cell(cells, "pytriton"), strictly_lower=False)  # fmt: skip
    for name, text in INFORMATIONAL.items():
        if name in per_round:
            out[name] = {**_entry(per_round[name], causes.get(name)),
                         "description": text.format(c=c)}  # fmt: skip
    return out


def _at(values: Sequence[float], index: int) -> float | None:
    return values[index] if index < len(values) else None


def _tail_ratio(
    items: Sequence[Measurement], label: str, concurrency: int, rnd: int
) -> float | None:
    for m in items:
        if m.label == label and m.concurrency == concurrency and m.round == rnd:
            if m.latencies_ms.size == 0:
                return None
            p50, p99 = np.percentile(m.latencies_ms, [50, 99])
            return float(p99 / p50) if p50 > 0 else None
    return None


def _entry(values: Sequence[float] | None, cause: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "value": round(statistics.median(values), 3) if values else None,
        "by_round": [round(v, 3) for v in values or []],
    }
    if cause:
        entry["cause"] = cause
    return entry


def _judge_p99(
    out: dict[str, dict[str, Any]],
    cells: Sequence[dict[str, Any]],
    name: str,
    ours: dict[str, Any] | None,
    theirs: dict[str, Any] | None,
    *,
    strictly_lower: bool,
) -> None:
    """Add both p99s to a peer ratio; it is met only if ours is lower (or no worse)."""
    if ours is None or theirs is None or ours["p99_ms"] is None or theirs["p99_ms"] is None:
        return
    entry = out[name]
    entry["p99_ms"] = {"medserve": ours["p99_ms"], "peer": theirs["p99_ms"]}
    entry["concurrency"] = {"medserve": ours["concurrency"], "peer": theirs["concurrency"]}
    better = (
        ours["p99_ms"] < theirs["p99_ms"] if strictly_lower else ours["p99_ms"] <= theirs["p99_ms"]
    )
    if entry["met"] is not None:
        entry["met"] = bool(entry["met"] and better)


def _why_missing(name: str, sdk: Mapping[str, Mapping[str, Any]] | None) -> str:
    if name in SDK_RATIOS:
        row = (sdk or {}).get(name) or {}
        return str(row.get("note") or "not measured: the SDK speed measurement did not run")
    return {
        "int8_vs_fp32_served": "not measured: no served INT8 variant (configs/local-int8.pbtxt "
        "and model_int8.onnx, written by medserve export --int8)",
        "medserve_vs_pytriton": "not measured: the PyTriton peer was left out "
        "(--pytriton-concurrency '')",
    }.get(name, "not measured in this run")
