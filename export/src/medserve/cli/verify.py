"""``medserve verify``: check an exported model repository, one line per check.

Usage::

    medserve verify model_repository
    medserve verify model_repository --name medcnn --version 2

Exit status 0 when every check passes; 1 with a message naming the file and
the problem at the first failure; 2 when the repository, the model name or the
version given does not exist (a user error, as in every medserve command).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from medserve.tf_logging import quiet_tensorflow


def add_parser(subparsers: Any) -> None:
    """Register ``verify`` and its flags."""
    parser = subparsers.add_parser(
        "verify",
        help="check configs, checksums and SavedModels of a model repository",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("repo", type=Path, metavar="DIR", help="model repository directory")
    parser.add_argument("--name", default="medcnn", help="classifier model name (default: medcnn)")
    parser.add_argument("--version", type=int, help="version to verify (default: newest)")


def run(args: argparse.Namespace) -> int:
    """Verify and print each check as it passes."""
    quiet_tensorflow()
    from medserve.verify import verify_repository

    report = verify_repository(
        args.repo,
        model_name=args.name,
        version=args.version,
        progress=lambda check: print(check.line(), flush=True),
    )
    print(
        f"verified {report.model_name} version {report.version} in {report.repo}: "
        f"{len(report.checks)} checks passed"
    )
    return 0
