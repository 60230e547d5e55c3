"""``model_card.md``: the clinical model card, rendered from ``model_card.json``.

Usage::

    path = write_card_markdown(repo / "medcnn" / "3")     # -> .../3/model_card.md
    text = render_card_markdown(read_model_card(version_dir))

The Markdown is a pure function of the JSON card (no clock, no file system
besides the card), so ``medserve verify`` can tell a stale rendering from a
current one, and ``medserve card`` can re-render after a later step (such as
``medserve evaluate``) adds figures to the JSON. A section whose figures the
card does not hold says "not measured"; nothing is filled in.

Sections: intended use and what the model is not for; training data;
validation metrics with bootstrap 95 % intervals at the recorded operating
threshold; calibration; explanation quality; provenance; known limitations.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medserve.model_card import read_model_card
from medserve.repository import write_text_atomic
from medserve.spec import MODEL_CARD_MARKDOWN_FILENAME

NOT_MEASURED = "not measured"
NOT_RECORDED = "not recorded"
SUPPORTIVE = (
    "Outputs (probabilities and heatmaps) are supportive information for a qualified "
    "clinician, never a diagnosis."
)
_METRIC_NAMES = {
    "roc_auc": "ROC AUC",
    "roc_auc_any_finding": "ROC AUC (any finding vs first label)",
    "accuracy": "accuracy (top-1)",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
}
# The card's key for `medserve evaluate`'s report (explanation.json).
EXPLANATION_KEY = "explanation_quality"


def write_card_markdown(version_dir: Path) -> Path:
    """Render the ``model_card.json`` of ``version_dir`` into ``model_card.md`` beside it.

    Raises:
        VerificationError: The JSON card is missing or unreadable.
    """
    path = version_dir / MODEL_CARD_MARKDOWN_FILENAME
    write_text_atomic(path, render_card_markdown(read_model_card(version_dir)))
    return path


def render_card_markdown(card: Mapping[str, Any]) -> str:
    """The whole card as Markdown."""
    sections = [
        _header(card),
        _intended_use(card),
        _training_data(card),
        _validation(card),
        _calibration(card),
        _int8(card),
        _explanations(card),
        _provenance(card),
        _limitations(card),
    ]
    return "\n\n".join(s.strip("\n") for s in sections if s) + "\n"


def _header(card: Mapping[str, Any]) -> str:
    labels = ", ".join(f"`{label}`" for label in card.get("labels", []))
    return (
        f"# Model card: {card.get('model')} version {card.get('version')}\n\n"
        f"An image classifier served on NVIDIA Triton. Input `{card['input']['name']}` "
        f"({card['input']['dtype']} {card['input']['shape'][1:]}), output "
        f"`{card['output']['name']}` over the labels {labels}.\n\n"
        f"> {SUPPORTIVE}"
    )


def _intended_use(card: Mapping[str, Any]) -> str:
    labels = list(card.get("labels", []))
    source = ((card.get("training_data") or {}).get("source") or {}).get("kind")
    lines = ["## Intended use", ""]
    if source == "synthetic":
        lines += [
            "- Demonstrating and testing the serving stack: classifying medserve's synthetic "
            f'"scans" into {", ".join(labels)} (a bright round lesion present or not).',
            "- Engineering work: throughput, calibration and explanation measurements on data "
            "whose ground truth is known.",
        ]
    else:
        lines += [
            f"- Supporting a qualified reader by ranking images of the kind it was trained on "
            f"by the probability of {', '.join(labels[1:]) or 'a finding'}.",
        ]
    lines += [
        "",
        "## Not intended for",
        "",
        "- Diagnosis, triage or any decision without a clinician reviewing the image.",
        "- Images from another modality, body region, scanner or population than the "
        "training data below.",
    ]
    if source == "synthetic":
        lines.append(
            "- Any real patient image: the model has only seen synthetic images. Real CT or MR "
            "slices are out of distribution and its scores on them mean nothing."
        )
    return "\n".join(lines)


def _training_data(card: Mapping[str, Any]) -> str:
    data = card.get("training_data")
    lines = ["## Training data", ""]
    if not data:
        return "\n".join(
            [
                *lines,
                f"{NOT_MEASURED}: the model was exported without a "
                "`training.json` from `medserve train`.",
            ]
        )
    source = data.get("source") or {}
    if source.get("kind") == "synthetic":
        lines.append(
            f"- Source: medserve's seeded synthetic generator (version "
            f"{source.get('generator_version')}), {source.get('samples_per_class')} images "
            "per class."
        )
    elif source.get("path"):
        lines.append(f"- Source: image folder `{source['path']}`.")
    else:
        lines.append(f"- Source: {NOT_RECORDED}.")
    if source.get("base_model"):
        lines.append(f"- Fine-tuned from `{source['base_model']}`.")
    counts = data.get("class_counts") or {}
    for split in ("train", "validation"):
        if counts.get(split):
            listed = ", ".join(f"{k} {v}" for k, v in counts[split].items())
            lines.append(f"- {split.capitalize()} split: {listed}.")
    size = data.get("image_size")
    if size:
        lines.append(f"- Image size {size[0]}x{size[1]}.")
    if data.get("skipped_files") is not None:
        lines.append(f"- Unreadable files skipped: {data['skipped_files']}.")
    if data.get("epochs_run") is not None:
        lines.append(
            f"- Epochs run {data['epochs_run']} (best by validation loss: "
            f"{data.get('best_epoch')})."
        )
    if data.get("data_fingerprint"):
        lines.append(f"- Data fingerprint `{data['data_fingerprint']}`.")
    return "\n".join(lines)


def _validation(card: Mapping[str, Any]) -> str:
    report = card.get("validation_report")
    lines = ["## Validation metrics", ""]
    if not report:
        return "\n".join([*lines, f"{NOT_MEASURED}."])
    boot = report.get("bootstrap", {})
    counts = ", ".join(f"{k} {v}" for k, v in (report.get("class_counts") or {}).items())
    lines += [
        f"On the {report.get('samples')} images of the validation split ({counts}), "
        "with the served (calibrated) probabilities. Operating point: "
        f"{report.get('operating_point')} (threshold {report.get('threshold')}). "
        f"Intervals: {boot.get('method')} bootstrap, {boot.get('resamples')} resamples "
        f"(seed {boot.get('seed')}), {_pct(boot.get('confidence'))}.",
        "",
        "| metric | value | 95 % interval |",
        "| --- | ---: | ---: |",
    ]
    metrics = report.get("metrics") or {}
    # The card's order first (training.json stores its keys sorted).
    for key in sorted(
        metrics, key=lambda k: list(_METRIC_NAMES).index(k) if k in _METRIC_NAMES else 99
    ):
        result = metrics[key]
        low, high = (result.get("ci95") or [None, None])[:2]
        lines.append(
            f"| {_METRIC_NAMES.get(key, key)} | {_num(result.get('value'))} | "
            f"{_num(low)} to {_num(high)} |"
        )
    return "\n".join(lines)


def _calibration(card: Mapping[str, Any]) -> str:
    section = card.get("calibration")
    lines = ["## Calibration", ""]
    if not section:
        return "\n".join([*lines, f"{NOT_MEASURED}."])
    lines.append(
        f"Temperature in the served graph: **T = {_num(section.get('temperature'))}** "
        f"({section.get('note')})."
    )
    before, after = section.get("before"), section.get("after")
    if before and after:
        lines += [
            "",
            f"Measured on the {section.get('samples')} validation images the temperature "
            f"was fitted on; ECE with {section.get('ece_bins')} equal-width bins of the top-1 "
            "confidence, Brier score summed over classes.",
            "",
            "| | ECE | Brier | NLL |",
            "| --- | ---: | ---: | ---: |",
            f"| before | {_num(before.get('ece'))} | {_num(before.get('brier'))} | "
            f"{_num(before.get('nll'))} |",
            f"| after | {_num(after.get('ece'))} | {_num(after.get('brier'))} | "
            f"{_num(after.get('nll'))} |",
        ]
    diagram = section.get("reliability_diagram")
    if diagram and diagram in (card.get("files") or {}):
        lines += ["", f"![Reliability diagram]({diagram})"]
    return "\n".join(lines)


def _int8(card: Mapping[str, Any]) -> str:
    """The INT8 model's gate figures; nothing for a version exported without --int8."""
    section = card.get("int8")
    if not section:
        return ""
    figures, gate = section.get("agreement") or {}, section.get("gate") or {}
    quantization = section.get("quantization") or {}
    return "\n".join(
        [
            "## INT8 model",
            "",
            f"`{section.get('file')}` (configs `local-int8`, `onnx-cpu-int8`): "
            f"{quantization.get('format')}, weights {quantization.get('weights')}, activations "
            f"{quantization.get('activations')}; quantized ops "
            f"{', '.join(quantization.get('quantized_ops') or [])}; calibrated "
            f"({quantization.get('calibration_method')}) on "
            f"{quantization.get('calibration_images')} images: "
            f"{quantization.get('calibration_source')}.",
            "",
            f"On {figures.get('validation_images')} validation images:",
            "",
            "| | FP32 | INT8 | gate |",
            "| --- | ---: | ---: | --- |",
            f"| ROC AUC | {_num(figures.get('fp32_roc_auc'))} | "
            f"{_num(figures.get('int8_roc_auc'))} | drop {_num(figures.get('roc_auc_drop'))} "
            f"<= {gate.get('max_roc_auc_drop')} |",
            f"| top-1 agreement with FP32 | | {_num(figures.get('top1_agreement'))} | "
            f">= {gate.get('min_top1_agreement')} |",
            "",
            "Largest probability difference from FP32: "
            f"{_num(figures.get('max_abs_probability_diff'))}.",
        ]
    )


def _explanations(card: Mapping[str, Any]) -> str:
    section = card.get(EXPLANATION_KEY) or {}
    data = section.get("data") or {}
    lines = [
        "## Explanation quality",
        "",
        "Grad-CAM heatmaps are served beside the probabilities (`<model>_explain`); they are "
        "supportive only. Measured with `medserve evaluate` on synthetic lesion scans whose "
        "lesion masks are known"
        + (
            f" ({data.get('lesion_images')} held-out scans, seed {data.get('seed')}, "
            f"measured {section.get('measured_at')}):"
            if data
            else ":"
        ),
        "",
    ]
    game = section.get("pointing_game")
    if isinstance(game, Mapping) and game.get("total"):
        lines.append(
            f"- Pointing game: {game.get('hits')}/{game.get('total')} = "
            f"{_num(game.get('accuracy'))} of heatmap peaks inside the lesion (margin "
            f"{game.get('margin_px')} px); target >= {game.get('target')}: "
            f"{'met' if game.get('met') else 'NOT met'}."
        )
    else:
        lines.append(f"- Pointing game: {NOT_MEASURED}.")
    sanity = section.get("sanity_check")
    if isinstance(sanity, Mapping) and sanity.get("spearman_median") is not None:
        layers = ", ".join(sanity.get("randomised_layers") or [])
        lines.append(
            f"- Sanity check (Adebayo et al. 2018): median Spearman correlation "
            f"{_num(sanity.get('spearman_median'))} between the trained model's heatmaps and "
            f"those with {layers or 'the top layers'} re-initialised; must be < "
            f"{sanity.get('threshold')}: {'passed' if sanity.get('passed') else 'FAILED'}."
        )
    else:
        lines.append(f"- Sanity check: {NOT_MEASURED}.")
    return "\n".join(lines)


def _provenance(card: Mapping[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in (card.get("versions") or {}).items())
    data = card.get("training_data") or {}
    lines = [
        "## Provenance",
        "",
        f"- Exported {card.get('exported_at')} from source commit "
        f"`{card.get('source_commit') or 'unknown (not a git checkout)'}`.",
        f"- Export software: {versions}.",
        f"- Training run fingerprint: {_code(card.get('training_run'))}; "
        f"Keras model file sha256: {_code(data.get('model_sha256'))}.",
        "- sha256 of every file of this version (checked by `medserve verify`):",
        "",
        "| file | sha256 |",
        "| --- | --- |",
    ]
    lines += [f"| `{name}` | `{digest}` |" for name, digest in (card.get("files") or {}).items()]
    return "\n".join(lines)


def _limitations(card: Mapping[str, Any]) -> str:
    lines = ["## Known limitations", ""]
    source = ((card.get("training_data") or {}).get("source") or {}).get("kind")
    if source == "synthetic":
        lines.append(
            "- Trained and validated on synthetic images only; no clinical validation of any kind."
        )
    report = card.get("validation_report") or {}
    if report.get("samples"):
        lines.append(
            f"- The validation split is small ({report['samples']} images): see the width of "
            "the intervals. There is no separate test set in this card."
        )
    if (card.get("calibration") or {}).get("before"):
        lines.append(
            "- Calibration is fitted and reported on the same validation split, so the "
            '"after" figures are optimistic; calibration can drift on new scanners or sites.'
        )
    lines += [
        f"- The operating threshold ({report.get('threshold', NOT_MEASURED)}) is fixed, not "
        "tuned for a clinical sensitivity target.",
        "- Grad-CAM shows where the network's evidence lies on its last convolution's grid; "
        "it is coarse, and not a segmentation.",
        "- Inputs are resized to the model's input size; findings smaller than a few pixels "
        "after resizing can be lost.",
    ]
    return "\n".join(lines)


def _code(value: Any) -> str:
    return f"`{value}`" if value else NOT_RECORDED


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return NOT_MEASURED if value is None else str(value)
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _pct(value: Any) -> str:
    return f"{value * 100:g} %" if isinstance(value, int | float) else NOT_MEASURED
