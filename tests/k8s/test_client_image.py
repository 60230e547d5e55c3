"""The client/loadtest image the smoke Job, the loader and locust run."""

from __future__ import annotations

import re
import tomllib

import pytest
from k8s_render import K8S_DIR, REPO_ROOT, Render, containers, pod_spec

pytestmark = pytest.mark.k8s

DOCKERFILE = K8S_DIR / "images" / "client.Dockerfile"
CLIENT_IMAGE = "medserve-client"


def client_pods(renders: dict[str, Render]) -> list[tuple[str, dict]]:
    return [
        (render.name, obj)
        for render in renders.values()
        for obj in render.objects
        if obj["kind"] in {"Deployment", "Job", "Pod"}
        and containers(obj)[0]["image"].startswith(CLIENT_IMAGE + ":")
    ]


def test_client_image_builds_from_a_pinned_python_base() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    (base,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, flags=re.MULTILINE)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base), base
    stages = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    assert stages and set(stages) == {"${PYTHON_IMAGE}"}, "every stage starts from the pinned base"
    # BuildKit reads the Dockerfile-specific ignore file beside it.
    assert (K8S_DIR / "images" / "client.Dockerfile.dockerignore").is_file()


def test_client_image_installs_the_client_and_the_load_tests() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "COPY client/" in text and "/src/client[dicom]" in text
    # The load-test distribution brings locust and gevent (declared once, in
    # loadtest/pyproject.toml); the scenarios come from its installed package.
    assert "COPY loadtest/" in text and re.search(r"pip install .*/src/loadtest\b", text)
    loadtest = tomllib.loads((REPO_ROOT / "loadtest" / "pyproject.toml").read_text())
    needs = {re.split(r"[<>=\[ ]", d, maxsplit=1)[0] for d in loadtest["project"]["dependencies"]}
    assert {"locust", "gevent", "medserve-client"} <= needs
    assert "/opt/medserve/smoke.png" in text


def test_client_pods_run_as_the_images_uid_and_its_version_tag(
    renders: dict[str, Render],
) -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    (uid,) = re.findall(r"^USER (\d+):\d+$", text, flags=re.MULTILINE)
    pyproject = tomllib.loads((REPO_ROOT / "client" / "pyproject.toml").read_text())
    version = pyproject["project"]["version"]
    pods = client_pods(renders)
    assert {name for name, _ in pods} >= {"smoke", "loader", "gpu+loadtest"}
    for name, obj in pods:
        assert containers(obj)[0]["image"] == f"{CLIENT_IMAGE}:{version}", name
        assert pod_spec(obj)["securityContext"]["runAsUser"] == int(uid), name
