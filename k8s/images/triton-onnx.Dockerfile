# syntax=docker/dockerfile:1
# Triton 26.09 for the ONNX overlays and k8s/kserve: NVIDIA's image plus
# Pillow, which medcnn_preprocess's Python-backend decoder (decode_pillow.py,
# configs/onnx-*.pbtxt) imports. NVIDIA's image gives the Python backend numpy
# only (its build.py installs numpy and virtualenv), so the stock image fails
# that model's load with "No module named 'PIL'" (server issue #6621), and with
# --strict-readiness the pod never becomes ready.
#
# Nothing of the repository is copied in, so any folder is a build context:
#   docker build -f k8s/images/triton-onnx.Dockerfile -t medserve-triton-onnx:26.09-py3 k8s/images
# The tag is the Triton release it is built from.

# Pinned release, never `latest`.
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:26.09-py3
FROM ${TRITON_IMAGE}
# Pinned, within the exporter's own requirement (export/pyproject.toml); the
# decoder's tests ran with 13.0.0 on 2026-11-28. NVIDIA's image sets
# PIP_BREAK_SYSTEM_PACKAGES, as its own build does for numpy.
RUN pip3 install --no-cache-dir "pillow==13.0.0" \
    && python3 -c "from PIL import Image, PngImagePlugin, JpegImagePlugin"
