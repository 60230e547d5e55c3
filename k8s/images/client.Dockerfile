# syntax=docker/dockerfile:1
# medserve client and load-test image: the `medserve-client` CLI (smoke Job,
# repository loader) and locust with the scenarios of loadtest/medserve_locust
# (loadtest component). Triton itself runs the stock NVIDIA image.
#
# Build from the repository root (the build context must hold client/ and
# loadtest/); BuildKit reads client.Dockerfile.dockerignore beside this file:
#   docker build -f k8s/images/client.Dockerfile -t medserve-client:0.1.0 .
# The tag follows the version in client/pyproject.toml.

# Pinned patch release, never `latest`: the image must rebuild identically.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY client/ /src/client/
COPY loadtest/ /src/loadtest/
# No TensorFlow here: the client distribution is light on purpose, and the
# load-test distribution without its [bench] extra needs only locust, gevent
# and the client (loadtest/pyproject.toml declares them).
RUN /opt/venv/bin/pip install "/src/client[dicom]" /src/loadtest

FROM ${PYTHON_IMAGE}
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The locust pods run the installed scenarios through a fixed path
# (/opt/medserve/locust/scenarios/<name>.py) that does not depend on the
# Python minor version inside site-packages.
RUN mkdir -p /opt/medserve && python -c "import medserve_locust, os, pathlib; \
    os.symlink(pathlib.Path(medserve_locust.__file__).parent, '/opt/medserve/locust')"
# A sample image for the smoke Job: a real PNG the server must decode and
# classify, written at build time because the pods' root filesystem is
# read-only.
RUN python -c "from PIL import Image; Image.new('RGB', (256, 256), (96, 96, 96)).save('/opt/medserve/smoke.png')"
# A high, unprivileged uid that clashes with no host user; the manifests run
# the pods as this uid with a read-only root filesystem.
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin medserve
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT []
CMD ["medserve-client", "--help"]
