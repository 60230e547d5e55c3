"""The Triton image of the ONNX overlays and KServe: NVIDIA's 26.09 plus Pillow."""

from __future__ import annotations

import re
import tomllib

import pytest
from k8s_render import K8S_DIR, ONNX_BASE_IMAGE, ONNX_IMAGE, REPO_ROOT, TRITON_RELEASES
from packaging.requirements import Requirement

pytestmark = pytest.mark.k8s

DOCKERFILE = K8S_DIR / "images" / "triton-onnx.Dockerfile"


def test_onnx_triton_image_builds_from_the_pinned_26_09_release() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    (base,) = re.findall(r"^ARG TRITON_IMAGE=(\S+)$", text, flags=re.MULTILINE)
    assert base == ONNX_BASE_IMAGE == TRITON_RELEASES[ONNX_IMAGE]
    assert re.findall(r"^FROM (\S+)$", text, flags=re.MULTILINE) == ["${TRITON_IMAGE}"]
    # The tag names the release inside, so `runtimeVersion` and the overlays agree.
    assert ONNX_IMAGE.rsplit(":", 1)[1] == base.rsplit(":", 1)[1]


def test_onnx_triton_image_pins_a_pillow_the_exporter_accepts() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    (pin,) = re.findall(r'"pillow==([\d.]+)"', text)
    pyproject = tomllib.loads((REPO_ROOT / "export" / "pyproject.toml").read_text())
    (needed,) = [
        Requirement(r)
        for r in pyproject["project"]["dependencies"]
        if Requirement(r).name.lower() == "pillow"
    ]
    assert needed.specifier.contains(pin), f"pillow {pin} is outside the exporter's {needed}"
    # The build fails rather than ship an image whose decoder cannot import.
    assert "python3 -c" in text and "from PIL import" in text
