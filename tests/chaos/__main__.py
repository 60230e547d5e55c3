"""``make chaos``: every fault against a real local tritonserver, then the table.

Usage::

    PYTHONPATH=tests .venv/bin/python -m chaos [--short] [--repo DIR] [--json PATH]

Without ``--repo`` a tiny reference CNN is exported into a temporary
repository (the served models and their decoders are the production ones;
only the network is small). Exits 1 when any fault misses a criterion.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from chaos.faults_input import bombs_and_garbage
from chaos.faults_load import overload, soak
from chaos.faults_process import kill_and_restart, sigterm_drain
from chaos.servers import start_server
from chaos.settings import FULL, SHORT, Scale
from chaos.table import FaultRow, render, to_json

FAULTS = ("kill", "sigterm", "overload", "bombs", "soak")


def _tiny_repository(target: Path) -> Path:
    """Export a small reference CNN (32x32, 2 labels) with every served model."""
    from medserve.exporter import export_model
    from medserve.model import build_reference_cnn
    from medserve.spec import ModelSpec

    spec = ModelSpec(name="medcnn", labels=("normal", "lesion"), image_size=(32, 32))
    model = build_reference_cnn(
        spec.input_shape, spec.num_classes, filters=(4, 8, 8), dense_units=8, seed=0
    )
    export_model(model, target, spec)
    return target


def _guarded(fault: str, run: Callable[[], FaultRow]) -> FaultRow:
    """Run one fault; an exception becomes a failed row, so the table is always printed."""
    started = time.monotonic()
    try:
        row = run()
    except Exception as exc:
        row = FaultRow(
            fault=fault,
            load="-",
            made=0,
            lost=0,
            hangs=0,
            failures="-",
            peak_rss_mb=0.0,
            outcome=f"harness error: {type(exc).__name__}: {exc}"[:300],
            criteria={"ran": False},
        )
    print(
        f"  {fault}: {'pass' if row.passed else 'FAIL'} ({time.monotonic() - started:.0f} s)",
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    """Run the faults and print the table; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="the short form of make test")
    parser.add_argument("--repo", type=Path, help="model repository (default: a tiny export)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument(
        "--only", default="", help="comma-separated subset: kill,sigterm,overload,bombs,soak"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    scale: Scale = SHORT if args.short else FULL
    with tempfile.TemporaryDirectory(prefix="medserve-chaos-") as tmp:
        work = Path(tmp)
        print(f"make chaos ({scale.name}): work in {work}", flush=True)
        repo = args.repo or _tiny_repository(work / "model_repository")
        wanted = set(args.only.split(",")) if args.only else set(FAULTS)
        rows = []
        if "kill" in wanted:
            rows.append(
                _guarded("kill -9 + restart", lambda: kill_and_restart(repo, work / "kill", scale))
            )
        if "sigterm" in wanted:
            rows.append(
                _guarded("SIGTERM drain", lambda: sigterm_drain(repo, work / "sigterm", scale))
            )
        if "overload" in wanted:
            rows.append(_guarded("overload", lambda: overload(repo, work / "overload", scale)))
        if wanted & {"bombs", "soak"}:
            server = start_server(repo, log_path=work / "full" / "triton.log")
            try:
                if "bombs" in wanted:
                    rows.append(
                        _guarded("bombs and garbage", lambda: bombs_and_garbage(server, scale))
                    )
                if "soak" in wanted:
                    rows.append(_guarded("soak", lambda: soak(server, scale)))
            finally:
                server.stop()
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    print(f"\nmake chaos ({scale.name} form, {today}, repository: {args.repo or 'tiny export'})\n")
    print(render(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(to_json(rows))
    return 0 if all(row.passed for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
