"""Specs of the explanation-quality figures: masks, pointing game, Spearman, sanity check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medserve.data import generate_synthetic, generate_synthetic_with_masks
from medserve.errors import UsageError
from medserve.explain.quality import dilate, pointing_game, pointing_hits, spearman

# A small reference CNN trained on 64x64 synthetic scans: measured (this
# settings, seed 0) at validation accuracy 1.0 and a pointing game of 36/40 at
# a 4-pixel margin on 40 held-out lesion scans; noise heatmaps score ~0.05.
SMALL_SIZE = (64, 64)
HELD_OUT_SEED = 99
HELD_OUT_LESIONS = 40
MARGIN_PX = 4


def test_masks_come_with_the_very_same_images_and_cover_the_bright_lesion() -> None:
    images, labels, masks = generate_synthetic_with_masks(6, (64, 64), seed=5)
    plain, plain_labels, _ = generate_synthetic(6, (64, 64), seed=5)
    np.testing.assert_array_equal(images, plain)
    np.testing.assert_array_equal(labels, plain_labels)
    assert not masks[labels == 0].any()
    for image, mask in zip(images[labels == 1], masks[labels == 1], strict=True):
        assert mask.sum() >= 9  # At least a 3x3 disc at 64x64.
        ring = dilate(mask, 6) & ~dilate(mask, 3)
        # The lesion is brighter than the tissue just around it.
        assert image[..., 0][mask].mean() > image[..., 0][ring].mean() + 40


def test_dilate_grows_a_pixel_into_a_disc_and_refuses_a_negative_margin() -> None:
    mask = np.zeros((9, 9), bool)
    mask[4, 4] = True
    assert dilate(mask, 0).sum() == 1
    assert dilate(mask, 1).sum() == 5
    assert dilate(mask, 2).sum() == 13
    with pytest.raises(UsageError, match="margin"):
        dilate(mask, -1)


def test_pointing_hits_counts_peaks_on_the_widened_mask_and_flat_maps_as_misses() -> None:
    masks = np.zeros((3, 10, 10), bool)
    masks[:, 2:4, 2:4] = True
    heatmaps = np.zeros((3, 10, 10), np.float32)
    heatmaps[0, 3, 3] = 1.0  # On the lesion.
    heatmaps[1, 6, 3] = 1.0  # Three pixels below it.
    # heatmaps[2] is flat: no peak, a miss.
    assert pointing_hits(heatmaps, masks, margin_px=0).tolist() == [True, False, False]
    assert pointing_hits(heatmaps, masks, margin_px=3).tolist() == [True, True, False]
    with pytest.raises(UsageError, match="empty lesion mask"):
        pointing_hits(heatmaps, np.zeros_like(masks), margin_px=1)


def test_spearman_is_one_for_a_monotone_map_minus_one_reversed_zero_for_a_flat_map() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((8, 8))
    assert spearman(a, a**3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, np.zeros_like(a)) == 0.0
    # Ties share their mean rank (as scipy.stats.spearmanr): [1, 2.5, 2.5, 4] vs [1, 2, 3, 4].
    assert spearman(np.array([0.0, 1, 1, 2]), np.array([0.0, 1, 2, 3])) == pytest.approx(
        0.9486833, abs=1e-6
    )


@pytest.fixture(scope="module")
def small_trained_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A small reference CNN trained on synthetic 64x64 scans (about 30 s on 2 cores)."""
    from medserve.model import load_classifier
    from medserve.training import TrainConfig, train

    result = train(
        TrainConfig(
            output=tmp_path_factory.mktemp("small_model"),
            image_size=SMALL_SIZE,
            samples_per_class=60,
            validation_split=0.2,  # 48 training images per class
            epochs=10,
            filters=(8, 16, 16),
            dense_units=32,
            learning_rate=1e-3,
            verbose=0,
        )
    )
    return load_classifier(result.model_path)


@pytest.mark.slow
def test_pointing_game_of_gradcam_on_held_out_lesions_beats_noise_heatmaps(
    small_trained_model: Any,
) -> None:
    from medserve.explain.evaluation import lesion_heatmaps

    images, labels, masks = generate_synthetic_with_masks(
        HELD_OUT_LESIONS, SMALL_SIZE, seed=HELD_OUT_SEED
    )
    images, masks = images[labels == 1], masks[labels == 1]
    _, heatmaps = lesion_heatmaps(small_trained_model, images, target_class=1)
    explained = pointing_game(heatmaps, masks, margin_px=MARGIN_PX)
    noise = np.random.default_rng(1).random(heatmaps.shape).astype(np.float32)
    guessed = pointing_game(noise, masks, margin_px=MARGIN_PX)
    # With noise in place of the heatmap this fails: a random peak lands on a
    # 64x64 image's widened lesion about 5% of the time.
    assert explained.accuracy >= 0.7, explained
    assert guessed.accuracy <= 0.25, guessed


@pytest.mark.slow
def test_sanity_check_randomising_the_top_layers_changes_the_heatmaps(
    small_trained_model: Any,
) -> None:
    import keras

    from medserve.explain.evaluation import lesion_heatmaps
    from medserve.explain.quality import randomise_top_layers

    randomised, layers = randomise_top_layers(small_trained_model, seed=3)
    assert layers == ["dense", "probabilities", "conv3"]
    before = {w.path: w.numpy() for w in small_trained_model.weights}
    changed = {w.path for w in randomised.weights if not np.array_equal(w.numpy(), before[w.path])}
    assert {path.split("/")[0] for path in changed} == set(layers)

    # The same model with its top-layer weights nudged by 1 %: the check must
    # tell "the same model" from "the top layers re-drawn".
    nudged = keras.models.clone_model(small_trained_model)
    rng = np.random.default_rng(4)
    nudged.set_weights(
        [w * (1 + 0.01 * rng.standard_normal(w.shape)) for w in small_trained_model.get_weights()]
    )
    images, labels, _ = generate_synthetic_with_masks(12, SMALL_SIZE, seed=HELD_OUT_SEED)
    lesions = images[labels == 1]
    _, trained = lesion_heatmaps(small_trained_model, lesions, target_class=1)
    _, redrawn = lesion_heatmaps(randomised, lesions, target_class=1)
    _, same = lesion_heatmaps(nudged, lesions, target_class=1)
    to_redrawn = np.median([spearman(a, b) for a, b in zip(trained, redrawn, strict=True)])
    to_same = np.median([spearman(a, b) for a, b in zip(trained, same, strict=True)])
    assert to_same > 0.9, to_same
    assert to_redrawn < to_same - 0.3, (to_redrawn, to_same)


@pytest.mark.slow
def test_cli_evaluate_writes_explanation_json_and_strict_fails_on_a_missed_target(
    small_trained_model: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medserve.cli import main

    model_path = tmp_path / "model.keras"
    small_trained_model.save(model_path)
    argv = ["evaluate", str(model_path), "--lesion-images", "8", "--seed", str(HELD_OUT_SEED)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "pointing game:" in printed and "not a diagnosis" in printed
    report = json.loads((tmp_path / "explanation.json").read_text())
    assert report["pointing_game"]["total"] == 8
    assert report["sanity_check"]["threshold"] == 0.5
    assert main([*argv[:-4], "--lesion-images", "0"]) == 2

    # An untrained network points at the lesion rarely: --strict turns the miss into 1.
    from medserve.model import build_reference_cnn

    untrained = tmp_path / "untrained" / "model.keras"
    untrained.parent.mkdir()
    build_reference_cnn((*SMALL_SIZE, 3), 2, filters=(8, 16, 16), dense_units=32).save(untrained)
    assert main(["evaluate", str(untrained), "--lesion-images", "8", "--strict"]) == 1


def test_gradcam_takes_the_logits_of_the_dense_head_behind_a_weightless_rescaling() -> None:
    import keras

    from medserve.explain.gradcam import explain_images, gradcam_parts
    from medserve.model import build_reference_cnn

    model = build_reference_cnn((32, 32, 3), 2, filters=(2, 2, 2), dense_units=4)
    # What a temperature scaling appended after the softmax looks like to Grad-CAM.
    scaled = keras.Model(model.inputs[0], keras.layers.Rescaling(1.0)(model.outputs[0]))
    parts = gradcam_parts(scaled)
    assert (parts.head.name, parts.feature_layer) == ("probabilities", "pool3")
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        explain_images(parts, images)[1], explain_images(gradcam_parts(model), images)[1]
    )
