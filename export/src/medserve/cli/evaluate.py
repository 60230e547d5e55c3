"""``medserve evaluate``: how good the model's explanations are, on held-out synthetic lesions.

Usage::

    medserve evaluate work/model/model.keras
    medserve evaluate work/model/model.keras --lesion-images 200 --margin-px 4 --json

Prints the pointing game (share of Grad-CAM peaks on the lesion, within a
margin) and the Adebayo et al. 2018 sanity check (Spearman correlation between
the trained model's heatmaps and those with the top layers re-initialised),
and writes them to ``explanation.json`` next to the model, where the model
card picks them up. Exit status 0 even when a target is missed: the figures
are the result; ``--strict`` turns a missed target into exit status 1.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medserve.errors import UsageError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``medserve evaluate``."""
    from medserve.explain.evaluation import DEFAULT_LESION_IMAGES, DEFAULT_SEED
    from medserve.explain.quality import DEFAULT_MARGIN_PX

    parser = subparsers.add_parser(
        "evaluate",
        help="explanation quality: pointing game and sanity check on synthetic lesions",
        description=(
            "Score the model's Grad-CAM heatmaps on freshly generated synthetic lesion scans "
            "(held out: a seed training did not use) and write explanation.json next to the model."
        ),
    )
    parser.add_argument("model", type=Path, help="the trained .keras model")
    parser.add_argument(
        "--lesion-images",
        type=int,
        default=DEFAULT_LESION_IMAGES,
        help=f"lesion scans to score (default {DEFAULT_LESION_IMAGES})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"seed of the scans (default {DEFAULT_SEED}; training uses 0)",
    )
    parser.add_argument(
        "--margin-px",
        type=int,
        default=DEFAULT_MARGIN_PX,
        help=f"pointing-game margin around each lesion, pixels (default {DEFAULT_MARGIN_PX})",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="where to write the report (default: explanation.json next to the model)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")


def run(args: argparse.Namespace) -> int:
    """Run ``medserve evaluate``; returns 0, or 1 with ``--strict`` and a missed target."""
    from medserve.explain.evaluation import (
        EXPLANATION_FILENAME,
        evaluate_explanations,
        write_explanation_report,
    )
    from medserve.model import load_classifier
    from medserve.tf_logging import quiet_tensorflow

    if args.lesion_images < 1:
        raise UsageError(f"--lesion-images must be at least 1, got {args.lesion_images}")
    if args.margin_px < 0:
        raise UsageError(f"--margin-px must be 0 or more, got {args.margin_px}")
    quiet_tensorflow()
    model = load_classifier(args.model)
    report = evaluate_explanations(
        model,
        lesion_images=args.lesion_images,
        seed=args.seed,
        margin_px=args.margin_px,
        target_class=lesion_class(args.model.parent),
    )
    output = args.output or args.model.parent / EXPLANATION_FILENAME
    write_explanation_report(report, output)
    if args.json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        for line in report.lines():
            print(line)
        print(f"written to {output}")
    figures = report.to_json()
    missed = not (figures["pointing_game"]["met"] and figures["sanity_check"]["passed"])
    return 1 if args.strict and missed else 0


def lesion_class(model_dir: Path) -> int:
    """Index of the ``lesion`` label in the run's ``training.json`` (1 when unknown)."""
    try:
        record = json.loads((model_dir / "training.json").read_text(encoding="utf-8"))
        labels = list(record.get("labels") or [])
    except (OSError, ValueError, AttributeError):
        return 1
    return labels.index("lesion") if "lesion" in labels else 1
