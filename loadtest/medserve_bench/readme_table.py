"""Put a benchmark run's tables into the READMEs, dated and with the command that made them.

Usage::

    python -m medserve_bench.readme_table                        # print both blocks
    python -m medserve_bench.readme_table loadtest/results/bench/bench.json \\
        --write README.md loadtest/README.md                     # make bench-readme

Each README holds one generated block between ``<!-- bench-table -->`` and
``<!-- /bench-table -->``; everything outside the markers (the analysis a
person writes) is left alone. The top-level README gets the summary (limit per
runtime, throughput and latency per cell, every target with its cause);
``loadtest/README.md`` gets the whole ``bench.md`` table. Both open with the
run's date, length, machine and command from ``bench.json``, so a figure in a
README always names the run that produced it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from medserve_bench.report import markdown

START, END = "<!-- bench-table -->", "<!-- /bench-table -->"
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_JSON = ROOT / "loadtest" / "results" / "bench" / "bench.json"


def provenance(meta: dict[str, Any]) -> str:
    """The sentence that says which run produced the figures."""
    minutes = round(float(meta.get("duration_s") or 0) / 60)
    return (
        f"`make bench` ({meta.get('command', '?')}) on {meta.get('started', '?')[:10]}: "
        f"{meta.get('rounds')} rounds of {meta.get('cell_duration_s')} s cells after "
        f"{meta.get('warmup_s')} s of warm-up, order rotated each round, {minutes} minutes "
        f"wall; {meta.get('cpus')} CPUs shared by the load generator and the servers; model "
        f"{meta.get('model')} {'x'.join(str(d) for d in meta.get('image_size') or [])}."
        + (f" {meta['pytriton']}." if meta.get("pytriton") else "")
    )


def _f(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summary(document: dict[str, Any]) -> str:
    """The top-level README's block: limits, one line per cell, and the targets."""
    cells, ratios, limit = document["cells"], document["ratios"], document["limit"]
    lines = [provenance(document["meta"]), "", "| variant | in flight | images/s | p50 ms "
             "| p99 ms | batch/exec | cores client / server / other |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for name, r in (limit.get("runtimes") or {}).items():
        lines.append(
            f"| in-process limit, {name}, batch {r['best_batch_size']} | - "
            f"| {_f(r['best_images_per_s'])} | - | - | {r['best_batch_size']} "
            f"| {_f(r.get('cores'), 2)} in process |"
        )
    for c in cells:
        cores = " / ".join(_f(c.get(k), 2) for k in ("client_cores", "server_cores", "other_cores"))
        lines.append(
            f"| {c['label']} | {c['concurrency']} | {_f(c['inferences_per_s'])} "
            f"| {_f(c['p50_ms'])} | {_f(c['p99_ms'])} "
            f"| {_f(c['server_inferences_per_execution'], 2)} | {cores} |"
        )
    full = markdown(cells, ratios, limit)
    targets = full[full.index("| target |") :]
    return "\n".join(lines) + "\n\n" + targets


def full_table(document: dict[str, Any]) -> str:
    """``loadtest/README.md``'s block: the whole bench.md, with its provenance."""
    table = markdown(document["cells"], document["ratios"], document["limit"])
    return provenance(document["meta"]) + "\n\n" + table


def _marker_line(text: str, marker: str) -> int:
    """Offset of the line that is exactly ``marker`` (prose may quote it), or -1."""
    lines = text.splitlines(keepends=True)
    offset = 0
    for line in lines:
        if line.strip() == marker:
            return offset
        offset += len(line)
    return -1


def replace_block(text: str, block: str, *, path: Path) -> str:
    """``text`` with the generated block between the marker lines replaced by ``block``.

    Raises:
        ValueError: The file lacks the marker lines (or has them out of order).
    """
    start, end = _marker_line(text, START), _marker_line(text, END)
    if start < 0 or end < start:
        raise ValueError(f"{path} has no {START} ... {END} block to replace; add the two markers")
    return text[: start + len(START)] + "\n" + block.rstrip("\n") + "\n" + text[end:]


def main(argv: list[str] | None = None) -> int:
    """Print both blocks, or write them into the given READMEs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_json", type=Path, nargs="?", default=DEFAULT_JSON)
    parser.add_argument(
        "--write", type=Path, nargs="*", default=None,
        help="READMEs to update: one named README.md at the repository root gets the summary, "
        "any other the full table",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not args.bench_json.is_file():
        sys.stderr.write(f"no {args.bench_json}: run make bench first\n")
        return 2
    document = json.loads(args.bench_json.read_text(encoding="utf-8"))
    if args.write is None:
        sys.stdout.write(summary(document) + "\n" + full_table(document))
        return 0
    for path in args.write:
        block = summary(document) if path.resolve() == ROOT / "README.md" else full_table(document)
        try:
            path.write_text(replace_block(path.read_text(encoding="utf-8"), block, path=path))
        except ValueError as exc:
            sys.stderr.write(f"{exc}\n")
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
