"""Explanations: Grad-CAM in the served graph, and how good the heatmaps are.

Usage::

    from medserve.explain.gradcam import explain_images, gradcam_parts

    probabilities, heatmaps = explain_images(gradcam_parts(model), images_uint8)

Modules: :mod:`~medserve.explain.gradcam` (the one Grad-CAM implementation),
:mod:`~medserve.explain.artifact` (the ``<name>_explain`` SavedModel),
:mod:`~medserve.explain.quality` (pointing game and randomisation sanity check).
"""
