"""``medserve evaluate``'s explanation figures: pointing game and sanity check on fresh lesions.

Usage::

    report = evaluate_explanations(model, lesion_images=100, seed=2027)
    report.pointing.accuracy, report.sanity_spearman_median
    write_explanation_report(report, Path("work/model") / EXPLANATION_FILENAME)

The lesion images are synthetic scans generated with a seed the training run
did not use (training uses its own seed, 0 by default), so they are held out
by construction and their lesion masks are known exactly. Every heatmap here
is computed in-process with :func:`medserve.explain.gradcam.explain_images`,
the very function the served ``<name>_explain`` graph runs (the served
heatmaps match it to 1e-4; the integration tests check that).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medserve.errors import UsageError
from medserve.explain.gradcam import explain_images, gradcam_parts
from medserve.explain.quality import (
    DEFAULT_MARGIN_PX,
    PointingGame,
    pointing_game,
    randomise_top_layers,
    spearman,
)
from medserve.repository import write_text_atomic

if TYPE_CHECKING:
    import keras

EXPLANATION_FILENAME = "explanation.json"
DEFAULT_SEED = 2027
DEFAULT_LESION_IMAGES = 100
POINTING_TARGET = 0.8
SANITY_THRESHOLD = 0.5
SUPPORTIVE_NOTE = "Explanations are supportive only, not a diagnosis."
# Heatmaps are computed in chunks: a gradient through the network holds the
# activations of the whole chunk in memory.
_CHUNK = 16


@dataclass(frozen=True)
class ExplanationReport:
    """The explanation-quality figures of one model.

    Attributes:
        pointing: Pointing game on the held-out lesion images.
        sanity_spearman: Spearman correlation, per image, between the trained
            model's heatmaps and those of the model with its top layers re-initialised.
        randomised_layers: The layers re-initialised for the sanity check.
        seed: Seed of the synthetic lesion images.
        target_class: Index of the class explained (the lesion class).
        measured_at: UTC date and time of the measurement.
    """

    pointing: PointingGame
    sanity_spearman: tuple[float, ...]
    randomised_layers: tuple[str, ...]
    seed: int
    target_class: int
    measured_at: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )

    @property
    def sanity_spearman_median(self) -> float:
        """Median Spearman correlation (the figure compared with 0.5)."""
        return float(np.median(self.sanity_spearman)) if self.sanity_spearman else float("nan")

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values, as written to ``explanation.json`` and the model card."""
        return {
            "method": "Grad-CAM (Selvaraju et al. 2017), computed in the served graph",
            "note": SUPPORTIVE_NOTE,
            "data": {
                "source": "synthetic lesion scans, held out (a seed training did not use)",
                "seed": self.seed,
                "lesion_images": self.pointing.total,
                "target_class": self.target_class,
            },
            "pointing_game": {
                "hits": self.pointing.hits,
                "total": self.pointing.total,
                "accuracy": round(self.pointing.accuracy, 4),
                "margin_px": self.pointing.margin_px,
                "target": POINTING_TARGET,
                "met": self.pointing.accuracy >= POINTING_TARGET,
            },
            "sanity_check": {
                "method": (
                    "Adebayo et al. 2018: Dense layers and the last convolution re-initialised; "
                    "Spearman rank correlation of each heatmap with the trained model's"
                ),
                "randomised_layers": list(self.randomised_layers),
                "spearman_median": round(self.sanity_spearman_median, 4),
                "spearman_mean": round(float(np.mean(self.sanity_spearman)), 4),
                "threshold": SANITY_THRESHOLD,
                "passed": self.sanity_spearman_median < SANITY_THRESHOLD,
            },
            "measured_at": self.measured_at,
        }

    def lines(self) -> list[str]:
        """Human-readable summary lines (the CLI and the demo print them)."""
        game = self.pointing
        verdict = "met" if game.accuracy >= POINTING_TARGET else "NOT met"
        sanity = "passed" if self.sanity_spearman_median < SANITY_THRESHOLD else "FAILED"
        return [
            f"pointing game: {game.hits}/{game.total} = {game.accuracy:.3f} of heatmap peaks on "
            f"the lesion (+{game.margin_px} px; target >= {POINTING_TARGET}: {verdict})",
            f"sanity check: Spearman {self.sanity_spearman_median:.3f} (median over "
            f"{len(self.sanity_spearman)} images) between trained and randomised "
            f"({', '.join(self.randomised_layers)}) heatmaps (< {SANITY_THRESHOLD}: {sanity})",
            SUPPORTIVE_NOTE,
        ]


def lesion_heatmaps(
    model: keras.Model, images: np.ndarray, target_class: int
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and heatmaps of ``target_class`` for uint8 ``images``, in chunks."""
    parts = gradcam_parts(model)
    probabilities, heatmaps = [], []
    for start in range(0, len(images), _CHUNK):
        probs, maps = explain_images(parts, images[start : start + _CHUNK], target_class)
        probabilities.append(probs)
        heatmaps.append(maps)
    return np.concatenate(probabilities), np.concatenate(heatmaps)


def evaluate_explanations(
    model: keras.Model,
    *,
    lesion_images: int = DEFAULT_LESION_IMAGES,
    seed: int = DEFAULT_SEED,
    margin_px: int = DEFAULT_MARGIN_PX,
    target_class: int = 1,
) -> ExplanationReport:
    """Pointing game and randomisation sanity check on fresh synthetic lesion scans.

    Args:
        model: The trained classifier (float32 [0, 1] images -> probabilities).
        lesion_images: How many lesion scans to score.
        seed: Seed of the scans (use one training did not use).
        margin_px: Pointing-game margin around each lesion disc.
        target_class: Index of the lesion class in the model's output.

    Raises:
        UsageError: Too few images, or a target class the model does not have.
    """
    from medserve.data.synthetic import generate_synthetic_with_masks

    if lesion_images < 1:
        raise UsageError(f"lesion images must be at least 1, got {lesion_images}")
    num_classes = int(model.outputs[0].shape[-1])
    if not 0 <= target_class < num_classes:
        raise UsageError(
            f"target class {target_class} does not exist: the model has {num_classes} classes"
        )
    shape = model.inputs[0].shape
    images, labels, masks = generate_synthetic_with_masks(
        lesion_images, (int(shape[1]), int(shape[2])), seed=seed
    )
    lesion = labels == 1
    images, masks = images[lesion], masks[lesion]
    _, trained = lesion_heatmaps(model, images, target_class)
    randomised_model, layers = randomise_top_layers(model, seed=seed)
    _, randomised = lesion_heatmaps(randomised_model, images, target_class)
    return ExplanationReport(
        pointing=pointing_game(trained, masks, margin_px=margin_px),
        sanity_spearman=tuple(spearman(a, b) for a, b in zip(trained, randomised, strict=True)),
        randomised_layers=tuple(layers),
        seed=seed,
        target_class=target_class,
    )


def write_explanation_report(
    report: ExplanationReport, path: Path, *, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write the report as JSON (atomically), e.g. next to ``model.keras``; return what was written.

    Args:
        report: The figures.
        path: Where to write.
        extra: More top-level keys (the demo records the training run measured).
    """
    figures = {**report.to_json(), **(extra or {})}
    write_text_atomic(path, json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return figures


def read_explanation_report(path: Path) -> dict[str, Any] | None:
    """The JSON written by :func:`write_explanation_report`, or ``None`` if there is none."""
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the explanation report {path}: {exc}") from exc
