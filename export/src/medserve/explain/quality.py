"""How good the heatmaps are, as numbers: the pointing game and a randomisation sanity check.

Usage::

    hits = pointing_hits(heatmaps, masks, margin_px=4)            # bool per image
    result = pointing_game(heatmaps, masks, margin_px=4)          # PointingGame(hits, total, ...)
    rho = spearman(map_a, map_b)
    randomised = randomise_top_layers(model, seed=0)              # Adebayo et al. 2018

The pointing game (Zhang et al. 2016) counts an explanation as a hit when the
heatmap's peak lies on the object, here the synthetic lesion disc, widened by
``margin_px`` pixels (the heatmap comes from a coarse feature grid, so its peak
can sit a few pixels off a small disc). The sanity check of Adebayo et al.
2018 ("Sanity Checks for Saliency Maps") re-initialises the weights of the
model's top layers (every Dense layer and the last convolution) and compares
the heatmaps with the trained model's by Spearman rank correlation: an
explanation that does not depend on what the model learned would barely change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from medserve.errors import UsageError

if TYPE_CHECKING:
    import keras

DEFAULT_MARGIN_PX = 4


@dataclass(frozen=True)
class PointingGame:
    """Result of the pointing game on a set of images with known lesions.

    Attributes:
        hits: Images whose heatmap peak lies on the lesion (within the margin).
        total: Images scored.
        margin_px: How far off the disc a peak may lie and still count.
    """

    hits: int
    total: int
    margin_px: int

    @property
    def accuracy(self) -> float:
        """Fraction of hits (``nan`` for no images)."""
        return self.hits / self.total if self.total else float("nan")


def dilate(mask: np.ndarray, margin_px: int) -> np.ndarray:
    """``mask`` widened by a disc of radius ``margin_px`` (no SciPy needed).

    Args:
        mask: ``bool (H, W)``.
        margin_px: Radius in pixels (0: unchanged).
    """
    if margin_px < 0:
        raise UsageError(f"margin must be >= 0 pixels, got {margin_px}")
    grown = mask.copy()
    height, width = mask.shape
    for dy in range(-margin_px, margin_px + 1):
        for dx in range(-margin_px, margin_px + 1):
            if dy * dy + dx * dx > margin_px * margin_px:
                continue
            src = mask[max(0, -dy) : height - max(0, dy), max(0, -dx) : width - max(0, dx)]
            grown[max(0, dy) : height - max(0, -dy), max(0, dx) : width - max(0, -dx)] |= src
    return grown


def pointing_hits(heatmaps: np.ndarray, masks: np.ndarray, *, margin_px: int) -> np.ndarray:
    """Whether each heatmap's peak lies on its (widened) mask.

    Args:
        heatmaps: ``float (N, H, W)``.
        masks: ``bool (N, H, W)``, each with at least one True pixel.
        margin_px: Widening of each mask, in pixels.

    Returns:
        ``bool (N,)``. A flat heatmap (no peak: all equal) is a miss.
    """
    if heatmaps.shape != masks.shape:
        raise UsageError(f"heatmaps {heatmaps.shape} and masks {masks.shape} differ in shape")
    hits = np.zeros(len(heatmaps), dtype=bool)
    for row, (heatmap, mask) in enumerate(zip(heatmaps, masks, strict=True)):
        if not mask.any():
            raise UsageError(f"image {row} has an empty lesion mask; score lesion images only")
        if not np.ptp(heatmap) > 0:
            continue
        peak = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
        hits[row] = bool(dilate(mask, margin_px)[peak])
    return hits


def pointing_game(heatmaps: np.ndarray, masks: np.ndarray, *, margin_px: int) -> PointingGame:
    """:func:`pointing_hits` summed up."""
    hits = pointing_hits(heatmaps, masks, margin_px=margin_px)
    return PointingGame(hits=int(hits.sum()), total=len(hits), margin_px=margin_px)


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions), as Spearman's rho needs."""
    flat = values.ravel()
    order = np.argsort(flat, kind="stable")
    ordered = flat[order]
    # Start of each run of equal values, and the mean rank over that run.
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(flat)]
    mean_rank = (starts + ends - 1) / 2.0
    ranks = np.empty(len(flat), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps; 0 when either is constant (no ranking)."""
    ra, rb = _ranks(np.asarray(a)), _ranks(np.asarray(b))
    ra -= ra.mean()
    rb -= rb.mean()
    denominator = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denominator) if denominator > 0 else 0.0


def randomise_top_layers(model: keras.Model, *, seed: int) -> tuple[keras.Model, list[str]]:
    """A copy of ``model`` with every Dense layer and the last convolution re-initialised.

    The copy's weights elsewhere are the trained ones. Fresh values come from
    each layer's own initialisers, seeded, so the check is reproducible.

    Returns:
        ``(randomised copy, names of the re-initialised layers)``.
    """
    import keras

    from medserve.explain.gradcam import last_conv_layer

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    targets = [layer for layer in copy.layers if isinstance(layer, keras.layers.Dense)]
    targets.append(copy.get_layer(last_conv_layer(model).name))
    for offset, layer in enumerate(targets):
        for weight_index, variable in enumerate(layer.weights):
            draw_seed = seed * 1000 + offset * 10 + weight_index
            initializer = _initializer_for(layer, variable, seed=draw_seed)
            variable.assign(initializer(variable.shape, dtype=variable.dtype))
    return copy, [layer.name for layer in targets]


def _initializer_for(layer: Any, variable: Any, *, seed: int) -> Any:
    """The layer's kernel initialiser for kernels; biases get small random values.

    A zero bias (Keras' default) would leave the randomised network's logits
    unbiased and the check weaker; Adebayo et al. re-draw every parameter.
    """
    import keras

    if "bias" in variable.path.split("/")[-1]:
        return keras.initializers.RandomNormal(stddev=0.05, seed=seed)
    kernel = getattr(layer, "kernel_initializer", None) or keras.initializers.GlorotUniform()
    config = keras.initializers.serialize(kernel)
    if isinstance(config.get("config"), dict) and "seed" in config["config"]:
        config["config"]["seed"] = seed  # Same distribution, reproducible draw.
    return keras.initializers.deserialize(config)
