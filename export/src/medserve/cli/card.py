"""``medserve card``: render the clinical model card ``model_card.md`` next to the JSON.

Usage::

    medserve card model_repository
    medserve card model_repository --name medcnn --version 2

Reads ``<repo>/<name>/<version>/model_card.json`` (default: the newest
version) and writes ``model_card.md`` beside it: intended use, training data,
validation metrics with bootstrap intervals, calibration, explanation quality,
provenance and known limitations. ``medserve export`` writes it too; run this
again after a step that adds figures to the JSON card.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from medserve.errors import UsageError


def add_parser(subparsers: Any) -> None:
    """Register ``card`` and its flags."""
    parser = subparsers.add_parser(
        "card",
        help="render model_card.md (the clinical model card) from model_card.json",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("repo", type=Path, metavar="DIR", help="model repository directory")
    parser.add_argument("--name", default="medcnn", help="classifier model name (default: medcnn)")
    parser.add_argument("--version", type=int, help="version to render (default: newest)")


def run(args: argparse.Namespace) -> int:
    """Render the card and print where it went."""
    from medserve.model_card_render import write_card_markdown
    from medserve.repository import existing_versions

    model_dir = args.repo / args.name
    versions = existing_versions(model_dir)
    if not versions:
        raise UsageError(
            f"{model_dir} has no exported version; run `medserve export` first "
            "(or pass the right --name)"
        )
    version = versions[-1] if args.version is None else args.version
    if version not in versions:
        raise UsageError(f"{model_dir} has no version {version} (found {versions})")
    path = write_card_markdown(model_dir / str(version))
    print(f"wrote {path}")
    return 0
