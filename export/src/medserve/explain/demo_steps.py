"""The demo's explanation steps: the quality figures, and one served explanation as a PNG.

Usage (from ``medserve.demo``)::

    print_explanation_quality(trained)           # pointing game + sanity check, reused if fresh
    explain_sample(client, lesion_png, work)     # overlay PNG through medcnn_explain; prints path

The figures are those of ``medserve evaluate`` with its defaults, computed
in-process on held-out synthetic lesions and written to ``explanation.json``
next to the model; a later demo with the same trained model reuses them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medserve.errors import UsageError
from medserve.explain.evaluation import (
    DEFAULT_LESION_IMAGES,
    DEFAULT_SEED,
    EXPLANATION_FILENAME,
    evaluate_explanations,
    read_explanation_report,
    write_explanation_report,
)
from medserve.explain.quality import DEFAULT_MARGIN_PX

# Key under which the report remembers the training run it measured.
_RUN_KEY = "training_run"


def print_explanation_quality(trained: Any) -> dict[str, Any]:
    """Measure (or reuse) the explanation figures of the demo model and print them.

    Args:
        trained: The demo's :class:`~medserve.training.TrainResult`.

    Returns:
        The report as JSON values (``explanation.json``).
    """
    from medserve.cli.evaluate import lesion_class
    from medserve.model import load_classifier

    path = trained.model_path.parent / EXPLANATION_FILENAME
    run = trained.record.get("run_fingerprint")
    try:
        existing = read_explanation_report(path)
    except UsageError:
        existing = None
    if existing is not None and run is not None and existing.get(_RUN_KEY) == run:
        figures = existing
        print(f"  reused {path} (measured for this training run)")
    else:
        report = evaluate_explanations(
            load_classifier(trained.model_path),
            lesion_images=DEFAULT_LESION_IMAGES,
            seed=DEFAULT_SEED,
            margin_px=DEFAULT_MARGIN_PX,
            target_class=lesion_class(trained.model_path.parent),
        )
        figures = write_explanation_report(report, path, extra={_RUN_KEY: run})
        print(f"  measured on {report.pointing.total} held-out lesion scans; written to {path}")
    game, sanity = figures["pointing_game"], figures["sanity_check"]
    print(
        f"  pointing game: {game['hits']}/{game['total']} = {game['accuracy']:.3f} of heatmap "
        f"peaks on the lesion (+{game['margin_px']} px; target >= {game['target']})\n"
        f"  sanity check: Spearman {sanity['spearman_median']:.3f} between trained and "
        f"randomised-top-layer heatmaps (must be < {sanity['threshold']})"
    )
    return figures


def explain_sample(client: Any, image: Path, work: Path) -> Path:
    """Explain one file through the served ``<model>_explain``; write and print its overlay."""
    explanation = client.explain(image)[0]
    out = work / "explanations" / f"{image.stem}.overlay.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    explanation.overlay.save(out, format="PNG")
    prediction = explanation.prediction
    shown = image.relative_to(work) if image.is_relative_to(work) else image
    print(
        f"  {shown} -> {prediction.label} {prediction.score:.3f}; Grad-CAM of "
        f"{explanation.label!r} from {prediction.model_name} v{prediction.model_version}\n"
        f"  overlay written to {out}\n"
        f"  {explanation.note}"
    )
    return out
