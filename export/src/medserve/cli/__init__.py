"""The ``medserve`` command line: train, export, verify, evaluate, card, serve.

Usage::

    medserve train --synthetic --output work/model
    medserve export work/model/model.keras --repo model_repository
    medserve verify model_repository
    medserve evaluate work/model/model.keras
    medserve card model_repository
    medserve serve model_repository

Each subcommand lives in its own module with ``add_parser(subparsers)`` and
``run(args) -> int``. Other distributions add subcommands through the
entry-point group ``medserve.commands`` (``medserve tune`` comes from
``medserve-loadtest[bench]``, beside the load generator it drives), so this
package never imports them; heavy imports (TensorFlow) happen inside ``run`` so that
``medserve --help`` is instant. A :class:`~medserve.errors.MedServeError` is
printed as one line and turned into its exit status, never a traceback
(``medserve_client.contract.run_command``: the table every medserve command shares).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from medserve.errors import MedServeError
from medserve_client.contract import run_command

# Subcommand modules, in the order `medserve --help` lists them.
SUBCOMMANDS = ("train", "export", "verify", "evaluate", "card", "serve")
# Subcommands other distributions register (name = module with add_parser and run).
PLUGIN_GROUP = "medserve.commands"

log = logging.getLogger("medserve")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, object]]:
    """Build the top-level parser; returns it and the subcommand modules by name."""
    parser = argparse.ArgumentParser(
        prog="medserve",
        description="Train, export, verify and locally serve a medical-image classifier on Triton.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules: dict[str, object] = {}
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"medserve.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"medserve.cli.{name}":
                raise
            continue  # Not built yet in this checkout.
        module.add_parser(subparsers)
        modules[name] = module
    for entry in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        if entry.name in modules:
            continue  # A plugin never shadows a built-in subcommand.
        try:
            module = entry.load()
        except ImportError as exc:
            # Registered but not importable (its extra is missing): left out of the CLI.
            log.debug("subcommand %s unavailable: %s", entry.name, exc)
            continue
        module.add_parser(subparsers)
        modules[entry.name] = module
    return parser, modules


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    module = modules[args.command]
    # The exit-status rule every medserve command shares (2: your input, 3: no server...).
    return run_command(
        lambda: int(module.run(args)),  # type: ignore[attr-defined]
        prog=f"medserve {args.command}",
        errors=(MedServeError,),
    )


if __name__ == "__main__":
    sys.exit(main())
