"""Render the kustomize overlays and components the way an operator would.

Usage::

    renders = render_all(tmp_dir)
    gpu = renders["gpu"]                 # overlay alone
    combo = renders["cpu-onnx+s3+tls"]   # overlay with components
    triton = gpu.one("Deployment", "triton")

Every overlay is rendered alone and with every subset of the components, by
writing a small kustomization next to nothing but relative paths (kustomize
refuses absolute ones) and running the real ``kubectl kustomize``. The
separate kustomizations (smoke Job, repository loader) are rendered as they
are. Each render is also written to ``<out>/<name>.yaml`` for checkov.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = REPO_ROOT / "k8s"
# TensorFlow backend on Triton 25.02, then onnxruntime on Triton 26.09.
OVERLAYS = ("gpu", "cpu", "gpu-onnx", "cpu-onnx")
GPU_OVERLAYS = ("gpu", "gpu-onnx")
ONNX_OVERLAYS = ("gpu-onnx", "cpu-onnx")
# 25.02 is the last image with the TensorFlow backend (SavedModel configs);
# the ONNX overlays run the current release, plus Pillow for the decoder model
# (k8s/images/triton-onnx.Dockerfile). All pinned, never `latest`.
TF_IMAGE = "nvcr.io/nvidia/tritonserver:25.02-py3"
ONNX_IMAGE = "medserve-triton-onnx:26.09-py3"
ONNX_BASE_IMAGE = "nvcr.io/nvidia/tritonserver:26.09-py3"
# The NVIDIA release inside each image the manifests run.
TRITON_RELEASES = {TF_IMAGE: TF_IMAGE, ONNX_IMAGE: ONNX_BASE_IMAGE}
# Flags the overlays pass that the nvidia-pytriton wheel's tritonserver (2.51,
# which runs the manifests' args in these tests) does not have yet, with the
# release that added them. test_policy_triton checks each against the release
# its image is built on; the wheel runs the args without them.
NEWER_THAN_THE_WHEEL = {"http-max-input-size": "2.59 (triton-inference-server/server PR #8174)"}
TRITON_IMAGES = {o: ONNX_IMAGE if o in ONNX_OVERLAYS else TF_IMAGE for o in OVERLAYS}
# The config each overlay serves (None: the model's config.pbtxt).
CONFIG_NAMES = {"gpu": None, "cpu": "cpu", "gpu-onnx": "onnx-gpu", "cpu-onnx": "onnx-cpu"}
# Where configs/onnx-gpu.pbtxt caches TensorRT engines (trt_engine_cache_path,
# medserve.model_config's default): it must lie on a writable pod volume.
TRT_CACHE_DIR = "/tmp/tensorrt-cache"
COMPONENTS = ("s3", "tls", "loadtest")
# Rendered with each overlay alone, not in every subset: it changes only the
# Deployment's rollout strategy, which no other component touches.
SINGLE_COMPONENTS = ("rollout-without-spare-gpu",)
STANDALONE = ("smoke", "loader", "kserve")
# k8s/examples/<name>: an operator's own kustomization, with the overlay and
# components it builds on; checked like the combinations (render name
# ``example-<name>``).
EXAMPLES = {"gpu-tls": ("gpu", ("tls",))}
# The kustomize component that names the client image for every user of it.
CLIENT_IMAGE_COMPONENT = K8S_DIR / "components" / "client-image"
NAMESPACE = "medserve"
RENDER_TIMEOUT_S = 60
RENDER_WORKERS = 4

T = TypeVar("T")


@dataclass(frozen=True)
class Render:
    """The objects one kustomization renders to."""

    name: str
    overlay: str | None
    components: tuple[str, ...]
    objects: tuple[dict[str, Any], ...]
    path: Path

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """All objects of ``kind``."""
        return [obj for obj in self.objects if obj["kind"] == kind]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        """The single object of ``kind`` named ``name`` (AssertionError if absent)."""
        found = [obj for obj in self.of_kind(kind) if obj["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: expected one {kind}/{name}, found {len(found)}"
        return found[0]


def kubectl() -> str:
    """Path of ``kubectl``; fails loudly rather than skipping the checks."""
    path = shutil.which("kubectl")
    if path is None:
        raise RuntimeError("kubectl (with kustomize) is needed to render k8s/: install kubectl")
    return path


def kustomize(directory: Path) -> str:
    """``kubectl kustomize DIRECTORY`` (stdout); RuntimeError with kustomize's message.

    Rendered with kustomize's default load restrictor: no kustomization may
    read a file outside its own root.
    """
    command = [kubectl(), "kustomize", str(directory)]
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=RENDER_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed:\n{proc.stderr}")
    return proc.stdout


def combination_name(overlay: str, components: tuple[str, ...]) -> str:
    """``gpu``, ``gpu+s3``, ``cpu+s3+tls+loadtest``..."""
    return "+".join((overlay, *components))


def combinations() -> list[tuple[str, tuple[str, ...]]]:
    """Every overlay with every subset of the components (4 x 8 = 32)."""
    subsets = [
        combo
        for size in range(len(COMPONENTS) + 1)
        for combo in itertools.combinations(COMPONENTS, size)
    ]
    return [(overlay, combo) for overlay in OVERLAYS for combo in subsets]


def single_component_combinations() -> list[tuple[str, tuple[str, ...]]]:
    """Every overlay with each of :data:`SINGLE_COMPONENTS` alone."""
    return [(overlay, (component,)) for component in SINGLE_COMPONENTS for overlay in OVERLAYS]


def render_names() -> set[str]:
    """The name of every render :func:`render_all` makes."""
    combos = combinations() + single_component_combinations()
    return (
        {combination_name(o, c) for o, c in combos}
        | set(STANDALONE)
        | {f"example-{name}" for name in EXAMPLES}
    )


def _combination_dir(work: Path, overlay: str, components: tuple[str, ...]) -> Path:
    directory = work / "kustomizations" / combination_name(overlay, components)
    directory.mkdir(parents=True, exist_ok=True)

    def rel(target: Path) -> str:
        return os.path.relpath(target, directory)

    document = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [rel(K8S_DIR / "overlays" / overlay)],
    }
    if components:
        document["components"] = [rel(K8S_DIR / "components" / c) for c in components]
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    return directory


def _load(text: str) -> tuple[dict[str, Any], ...]:
    return tuple(doc for doc in yaml.safe_load_all(text) if doc)


def render_all(work: Path) -> dict[str, Render]:
    """Render every combination and standalone kustomization under ``work``."""
    out = work / "rendered"
    out.mkdir(parents=True, exist_ok=True)
    renders: dict[str, Render] = {}
    jobs: list[tuple[str, str | None, tuple[str, ...], Path]] = [
        (combination_name(o, c), o, c, _combination_dir(work, o, c))
        for o, c in combinations() + single_component_combinations()
    ]
    jobs += [(name, None, (), K8S_DIR / name) for name in STANDALONE]
    jobs += [
        (f"example-{name}", overlay, components, K8S_DIR / "examples" / name)
        for name, (overlay, components) in EXAMPLES.items()
    ]
    # kubectl is a separate process per render: a few in parallel halve the wall time.
    with ThreadPoolExecutor(max_workers=RENDER_WORKERS) as pool:
        texts = pool.map(lambda job: kustomize(job[3]), jobs)
        for (name, overlay, components, _), text in zip(jobs, texts, strict=True):
            path = out / f"{name}.yaml"
            path.write_text(text, encoding="utf-8")
            renders[name] = Render(name, overlay, components, _load(text), path)
    return renders


def found(items: Iterable[T], what: str) -> list[T]:
    """``items`` as a list, asserting that there is at least one.

    Policy tests loop over what a filter selects (the ONNX overlays, the
    renders with tls, every workload); if a renamed kind, object, label or
    overlay made the filter select nothing, the loop would check nothing and
    pass.
    """
    chosen = list(items)
    assert chosen, f"no {what} was rendered: was a kind, name, label or overlay renamed?"
    return chosen


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Containers of a Pod, or of the pod template of a workload."""
    return pod_spec(obj).get("containers", [])


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a Pod, Deployment or Job."""
    if obj["kind"] == "Pod":
        return obj["spec"]
    return obj["spec"]["template"]["spec"]


def volume_holding(
    obj: dict[str, Any], container: dict[str, Any], path: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``(volumeMount, volume)`` that ``path`` lies on (AssertionError: the root FS)."""
    holding = [
        m
        for m in container.get("volumeMounts", [])
        if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")
    ]
    assert holding, f"{path} is on no volume of {container['name']} (the root filesystem)"
    mount = max(holding, key=lambda m: len(m["mountPath"]))
    volume = next(v for v in pod_spec(obj)["volumes"] if v["name"] == mount["name"])
    return mount, volume


def pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    """Labels the pods of a workload carry."""
    if obj["kind"] == "Pod":
        return obj["metadata"].get("labels", {})
    return obj["spec"]["template"]["metadata"].get("labels", {})


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether a ``matchLabels`` selector selects ``labels``."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def triton_args(render: Render) -> dict[str, list[str]]:
    """Triton's ``--flag=value`` args of the render's Deployment as ``{flag: [values...]}``."""
    return parse_triton_args(containers(render.one("Deployment", "triton"))[0], render.name)


def parse_triton_args(container: dict[str, Any], where: str) -> dict[str, list[str]]:
    """A Triton container's ``--flag=value`` args as ``{flag: [values...]}``."""
    assert "command" not in container, f"{where}: keep the image's entrypoint"
    program, *flags = container["args"]
    assert program == "tritonserver", where
    parsed: dict[str, list[str]] = {}
    for arg in flags:
        assert arg.startswith("--") and "=" in arg, f"{where}: arg {arg!r} is not --flag=value"
        flag, value = arg[2:].split("=", 1)
        parsed.setdefault(flag, []).append(value)
    return parsed


def unique_objects(renders: dict[str, Render]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Distinct objects across renders, keyed by canonical JSON, with a render that has each.

    Most objects are identical in all 32 combinations; checking each distinct
    object once keeps schema validation and checkov fast without skipping any
    variant (a Deployment patched by a component is a distinct object).
    """
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    for render in renders.values():
        for obj in render.objects:
            seen.setdefault(json.dumps(obj, sort_keys=True), (render.name, obj))
    return seen
