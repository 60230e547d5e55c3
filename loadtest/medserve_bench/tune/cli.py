"""``medserve tune REPO`` (and ``python -m medserve_bench.tune``): the command line of the tuner.

Usage::

    medserve tune model_repository                       # 450 s budget, writes configs/tuned.pbtxt
    medserve tune model_repository --budget-s 120 --concurrency 8,16,32 --out work/tune
    medserve serve model_repository --config-name tuned

Registered into the ``medserve`` CLI through the entry-point group
``medserve.commands`` by this distribution (see :mod:`medserve_bench.tune`), so
``medserve`` itself never imports the load tests. Exits 0 when a configuration
was chosen and written (also after an early stop at the budget, the report
says so), 1 when nothing could be measured.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("medserve.tune")

DEFAULT_BUDGET_S = 450.0
DIMENSION_NAMES = ("runtime", "parallelism", "max_batch_size", "max_queue_delay_us", "preferred")


def _levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from exc
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"concurrency levels must be positive: {text!r}")
    return levels


def _dimension_names(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    unknown = sorted(set(names) - set(DIMENSION_NAMES))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown dimensions {unknown}: choose from {', '.join(DIMENSION_NAMES)}"
        )
    return names


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the tuner's arguments to ``parser``."""
    parser.add_argument("repo", type=Path, metavar="REPO", help="the exported model repository")
    parser.add_argument("--model", default="medcnn", help="the classifier (default: %(default)s)")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=DEFAULT_BUDGET_S,
        help="hard limit in seconds, the server's start included (default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, default=Path("work") / "tune", help="report folder")
    parser.add_argument(
        "--concurrency",
        type=_levels,
        default=(16, 32),
        help="requests in flight each config is measured at (default: 16,32)",
    )
    parser.add_argument("--screen-s", type=float, default=3.0, help="seconds per screening cell")
    parser.add_argument("--confirm-s", type=float, default=8.0, help="seconds per confirming cell")
    parser.add_argument("--warmup-s", type=float, default=1.0, help="unmeasured seconds per cell")
    parser.add_argument("--finalists", type=int, default=3, help="configs confirmed")
    parser.add_argument("--confirm-rounds", type=int, default=3, help="confirmation rounds")
    parser.add_argument(
        "--p99-ratio", type=float, default=3.0, help="latency bound: p99 <= RATIO x p50"
    )
    parser.add_argument("--max-p99-ms", type=float, default=None, help="and p99 <= this")
    parser.add_argument(
        "--dimensions",
        type=_dimension_names,
        default=DIMENSION_NAMES,
        help=f"what to sweep, in order (default: {','.join(DIMENSION_NAMES)})",
    )
    parser.add_argument(
        "--client",
        choices=("sdk", "raw"),
        default="sdk",
        help="load through medserve_client (as make bench) or raw tritonclient",
    )
    parser.add_argument(
        "--cpus",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="CPUs the thread and instance choices assume (default: this machine's)",
    )
    parser.add_argument("--note", default="", help="a line for the report (e.g. 'under load')")


def add_parser(subparsers: Any) -> None:
    """Register ``tune`` as a ``medserve`` subcommand."""
    parser = subparsers.add_parser(
        "tune",
        help="sweep the local config on a real local Triton, write configs/tuned.pbtxt",
        description=(
            "Measure configurations of the local server (runtime, batching, queue delay, "
            "instances, threads) under load within a time budget; write the best as the "
            "config 'tuned' and a report (tune.json, tune.md, tune.png)."
        ),
    )
    configure(parser)


def _newest_version(model_dir: Path) -> Path:
    versions = sorted(
        (p for p in model_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
    )
    if not versions:
        from medserve.errors import UsageError

        raise UsageError(f"{model_dir} has no version: run medserve export first")
    return versions[-1]


def run(args: argparse.Namespace) -> int:
    """Tune as ``args`` say; returns the exit status."""
    from medserve.errors import UsageError
    from medserve_bench.tune.report import write_report
    from medserve_bench.tune.search import Budget, Objective, Plan, search
    from medserve_bench.tune.session import TuningSession
    from medserve_bench.tune.space import Candidate, dimensions, runtime_choices
    from medserve_bench.tune.tuned import write_tuned

    model_dir = args.repo / args.model
    if not (model_dir / "configs" / "local.pbtxt").is_file():
        raise UsageError(
            f"{model_dir}/configs/local.pbtxt not found: tune needs a repository written by "
            "medserve export (make export)"
        )
    try:
        plan = Plan(
            concurrency=args.concurrency,
            screen_s=args.screen_s,
            confirm_s=args.confirm_s,
            finalists=args.finalists,
            confirm_rounds=args.confirm_rounds,
        )
        budget = Budget(args.budget_s)  # Starts now: the server's start counts.
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    objective = Objective(p99_ratio=args.p99_ratio, max_p99_ms=args.max_p99_ms)
    runtimes = runtime_choices(_newest_version(model_dir))
    started = time.time()
    server_dir = args.out / "server"
    with TuningSession(
        args.repo, args.model, server_dir, client=args.client, warmup_s=args.warmup_s
    ) as session:
        start = Candidate.from_config(session.base)
        dims = dimensions(
            start, runtimes=runtimes, cpus=args.cpus, max_batch_size=session.spec.max_batch_size
        )
        dims = [d for name in args.dimensions for d in dims if d.name == name]
        result = search(session, dims, start, plan=plan, budget=budget, objective=objective)
        switches = session.switches_s
    shutil.rmtree(server_dir / "repo", ignore_errors=True)  # Hard links; the log stays.
    written = write_tuned(args.repo, args.model, result.best) if result.best else []
    meta = {
        "command": " ".join(sys.argv),
        "repo": str(args.repo),
        "model": args.model,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "budget_s": args.budget_s,
        "concurrency": list(args.concurrency),
        "client": args.client,
        "cpus": args.cpus,
        "host": platform.node(),
        "python": platform.python_version(),
        "dimensions": {d.name: [str(v) for v in d.values] for d in dims},
        "written": [str(p) for p in written],
        "note": args.note,
    }
    extra = [("switches_s", [round(s, 2) for s in switches])]
    paths = write_report(args.out, result, objective=objective, meta=meta, extra=extra)
    sys.stdout.write(paths["markdown"].read_text(encoding="utf-8"))
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return 0 if result.best is not None else 1


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m medserve_bench.tune``."""
    from medserve.errors import MedServeError

    parser = argparse.ArgumentParser(prog="python -m medserve_bench.tune", description=__doc__)
    configure(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # SIGTERM unwinds like Ctrl-C, so the tuning server is stopped, not orphaned.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return run(args)
    except MedServeError as exc:
        print(f"medserve tune: error: {exc}", file=sys.stderr)
        return exc.exit_code
