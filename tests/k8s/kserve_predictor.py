"""The predictor Pod that KServe builds from k8s/kserve/, for the offline checks.

Usage::

    pod = predictor_pod(renders["kserve"])
    container = pod["spec"]["containers"][0]   # Triton, with the merged args

KServe does not deploy the ServingRuntime's container as written: its
controller merges the InferenceService's predictor into it. The checks that
matter (strict Kubernetes schema, checkov, Triton's args on a real server,
the same security and probe settings as the gpu-onnx overlay) need that
merged Pod, so this module rebuilds it the way KServe 0.20.0 does, for the
fields medserve uses and no others:

- the runtime container named ``kserve-container`` is the base; the
  predictor model's container fields are merged over it, and its ``args`` are
  appended to the runtime's (``MergeRuntimeContainers``);
- ``runtimeVersion`` replaces the image tag (``UpdateImageTag``);
- the runtime's ``volumes`` and the predictor's pod fields make the pod spec
  (``MergePodSpec``);
- ``storageUri: pvc://NAME`` mounts that claim read-only at ``/mnt/models``
  as the volume ``kserve-pvc-source``, with no init container (the storage
  initializer injector).

Anything else in the predictor model (``env``, ``ports``, probes...) would be
merged by rules not reproduced here, so :func:`predictor_pod` refuses it
rather than guessing: extend this module first.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from k8s_render import Render

RUNTIME_CONTAINER = "kserve-container"
MODEL_MOUNT_PATH = "/mnt/models"
PVC_VOLUME = "kserve-pvc-source"
PVC_PREFIX = "pvc://"
# Predictor model fields KServe reads itself (not container fields).
MODEL_FIELDS = {"modelFormat", "runtime", "runtimeVersion", "protocolVersion", "storageUri"}
# Container fields of the predictor model whose merge is reproduced here.
MERGED_CONTAINER_FIELDS = {"args", "resources"}
# Pod fields of the predictor (PodSpec fields, merged over the runtime's).
POD_FIELDS = {
    "automountServiceAccountToken",
    "nodeSelector",
    "securityContext",
    "serviceAccountName",
    "terminationGracePeriodSeconds",
    "tolerations",
}
# Predictor fields that configure KServe itself, not the pod.
PREDICTOR_FIELDS = {"model", "minReplicas", "maxReplicas"}


def _merge_resources(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Strategic merge of two ``resources``: requests and limits merge key by key."""
    merged = copy.deepcopy(base)
    for part in ("requests", "limits"):
        if part in overlay:
            merged.setdefault(part, {}).update(overlay[part])
    return merged


def pvc_claim(storage_uri: str) -> tuple[str, str]:
    """``(claim, sub_path)`` of a ``pvc://claim[/path]`` storage URI."""
    assert storage_uri.startswith(PVC_PREFIX), f"not a pvc:// URI: {storage_uri}"
    claim, _, sub_path = storage_uri[len(PVC_PREFIX) :].partition("/")
    return claim, sub_path


def with_tag(image: str, tag: str) -> str:
    """``image`` with its tag replaced by ``tag`` (KServe's regex, digests kept)."""
    if "@sha256:" in image:
        return image
    if re.search(r":[\w.\-]*$", image):
        return re.sub(r":[\w.\-]*$", ":" + tag, image)
    return f"{image}:{tag}"


def predictor_pod(render: Render) -> dict[str, Any]:
    """The predictor Pod KServe creates from the render's ServingRuntime and InferenceService."""
    (isvc,) = render.of_kind("InferenceService")
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    runtime = render.one("ServingRuntime", model["runtime"])
    unknown = set(predictor) - PREDICTOR_FIELDS - POD_FIELDS
    assert not unknown, f"predictor fields this check does not merge: {sorted(unknown)}"
    unknown = set(model) - MODEL_FIELDS - MERGED_CONTAINER_FIELDS
    assert not unknown, f"predictor model fields this check does not merge: {sorted(unknown)}"

    (base,) = [c for c in runtime["spec"]["containers"] if c["name"] == RUNTIME_CONTAINER]
    container = copy.deepcopy(base)
    container["args"] = [*base.get("args", []), *model.get("args", [])]
    container["resources"] = _merge_resources(base.get("resources", {}), model.get("resources", {}))
    if "runtimeVersion" in model:
        container["image"] = with_tag(container["image"], model["runtimeVersion"])

    spec: dict[str, Any] = {
        key: copy.deepcopy(predictor[key]) for key in POD_FIELDS & set(predictor)
    }
    spec["volumes"] = copy.deepcopy(runtime["spec"].get("volumes", []))
    claim, sub_path = pvc_claim(model["storageUri"])
    spec["volumes"].append({"name": PVC_VOLUME, "persistentVolumeClaim": {"claimName": claim}})
    mount: dict[str, Any] = {"name": PVC_VOLUME, "mountPath": MODEL_MOUNT_PATH, "readOnly": True}
    if sub_path:
        mount["subPath"] = sub_path
    container.setdefault("volumeMounts", []).append(mount)
    spec["containers"] = [container]

    metadata = isvc["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{metadata['name']}-predictor",
            "namespace": metadata["namespace"],
            "labels": dict(metadata.get("labels", {})),
        },
        "spec": spec,
    }
