"""k8s/kserve/: the repository served by KServe 0.20 on Triton 26.09.

The ServingRuntime and InferenceService validate against KServe's own CRD
schemas (test_render_and_schema); here: the runtime is the one the service
names, pinned and speaking KServe v2 on both ports; and the Pod KServe builds
from the two (kserve_predictor) runs Triton exactly as the gpu-onnx overlay
does, so every policy test of that overlay holds for KServe too. What no
offline test can show: KServe's controller accepting them (no cluster here).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from k8s_render import (
    CONFIG_NAMES,
    K8S_DIR,
    ONNX_IMAGE,
    TRT_CACHE_DIR,
    Render,
    containers,
    parse_triton_args,
    pod_spec,
    volume_holding,
)
from k8s_schemas import crd_validator, schema_errors
from kserve_predictor import MODEL_MOUNT_PATH, predictor_pod, pvc_claim

pytestmark = pytest.mark.k8s

ISVC_KEY = ("serving.kserve.io/v1beta1", "InferenceService")
RUNTIME_KEY = ("serving.kserve.io/v1alpha1", "ServingRuntime")
# The overlay KServe's predictor must equal (same image, config and device).
TWIN_OVERLAY = "gpu-onnx"


@pytest.fixture(scope="module")
def kserve(renders: dict[str, Render]) -> Render:
    return renders["kserve"]


@pytest.fixture(scope="module")
def isvc(kserve: Render) -> dict[str, Any]:
    (service,) = kserve.of_kind("InferenceService")
    return service


@pytest.fixture(scope="module")
def runtime(kserve: Render, isvc: dict[str, Any]) -> dict[str, Any]:
    return kserve.one("ServingRuntime", isvc["spec"]["predictor"]["model"]["runtime"])


@pytest.fixture(scope="module")
def pod(kserve: Render) -> dict[str, Any]:
    return predictor_pod(kserve)


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = containers(pod)
    return container


def test_kserve_renders_exactly_one_runtime_and_one_inference_service(kserve: Render) -> None:
    kinds = sorted(obj["kind"] for obj in kserve.objects)
    assert kinds == ["InferenceService", "ServingRuntime"]


def test_inference_service_names_its_pinned_runtime_and_version_explicitly(
    isvc: dict[str, Any], runtime: dict[str, Any], pod: dict[str, Any]
) -> None:
    model = isvc["spec"]["predictor"]["model"]
    # KServe's default Triton runtime is image 23.05 and `tensorflow` would
    # auto-select TF Serving: the runtime is named, its format is not auto-selected.
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] != "tensorflow"
    (fmt,) = runtime["spec"]["supportedModelFormats"]
    assert {k: fmt[k] for k in ("name", "version")} == model["modelFormat"]
    assert fmt["autoSelect"] is False
    (runtime_container,) = runtime["spec"]["containers"]
    assert runtime_container["image"] == ONNX_IMAGE
    assert model["runtimeVersion"] == ONNX_IMAGE.rsplit(":", 1)[1]
    assert _container(pod)["image"] == ONNX_IMAGE


def test_kserve_speaks_v2_over_http_and_grpc_on_the_ports_triton_listens_on(
    isvc: dict[str, Any], runtime: dict[str, Any], pod: dict[str, Any]
) -> None:
    assert isvc["spec"]["predictor"]["model"]["protocolVersion"] == "v2"
    assert {"v2", "grpc-v2"} <= set(runtime["spec"]["protocolVersions"])
    container = _container(pod)
    args = parse_triton_args(container, "kserve")
    ports = [(p["name"], p["containerPort"]) for p in container["ports"]]
    # KServe routes its Service's port 80 to the first port: HTTP. A port name
    # containing "grpc" gets the h2c appProtocol.
    assert ports == [("http", int(args["http-port"][0])), ("grpc", int(args["grpc-port"][0]))]
    # Two ports need a raw Deployment: Knative serves one.
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    metrics = runtime["spec"]["annotations"]
    assert metrics["prometheus.kserve.io/port"] == args["metrics-port"][0]
    assert metrics["prometheus.kserve.io/path"] == "/metrics"


def test_storage_uri_is_the_claim_the_loader_fills_mounted_read_only(
    isvc: dict[str, Any], renders: dict[str, Render], pod: dict[str, Any]
) -> None:
    claim, sub_path = pvc_claim(isvc["spec"]["predictor"]["model"]["storageUri"])
    pvc = yaml.safe_load((K8S_DIR / "base" / "pvc.yaml").read_text(encoding="utf-8"))
    assert (claim, sub_path) == (pvc["metadata"]["name"], "")
    loader_volumes = pod_spec(renders["loader"].one("Pod", "model-repository-loader"))["volumes"]
    assert {"claimName": claim} in [v.get("persistentVolumeClaim") for v in loader_volumes]
    container = _container(pod)
    assert parse_triton_args(container, "kserve")["model-repository"] == [MODEL_MOUNT_PATH]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == MODEL_MOUNT_PATH)
    assert mount["readOnly"] is True


def test_kserve_predictor_pod_validates_strictly_against_kubernetes(pod: dict[str, Any]) -> None:
    assert schema_errors(pod) == []


def _without(args: dict[str, list[str]], flag: str) -> dict[str, list[str]]:
    return {k: v for k, v in args.items() if k != flag}


def _probe(container: dict[str, Any], name: str) -> dict[str, Any]:
    """A probe with a named port resolved to its number."""
    probe = copy.deepcopy(container[name])
    port = probe["httpGet"]["port"]
    if isinstance(port, str):
        probe["httpGet"]["port"] = next(
            p["containerPort"] for p in container["ports"] if p["name"] == port
        )
    return probe


def _volume_sources(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """``{mountPath: volume source}`` of a container (volume names differ between the two)."""
    volumes = {v["name"]: {k: v[k] for k in v if k != "name"} for v in pod_spec(pod)["volumes"]}
    return {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}


def test_kserve_predictor_runs_triton_as_the_gpu_onnx_overlay_does(
    pod: dict[str, Any], renders: dict[str, Render]
) -> None:
    deployment = renders[TWIN_OVERLAY].one("Deployment", "triton")
    twin = containers(deployment)[0]
    container = _container(pod)
    # Same args but where the repository is: every arg policy of the overlay holds.
    args = parse_triton_args(container, "kserve")
    twin_args = parse_triton_args(twin, TWIN_OVERLAY)
    assert _without(args, "model-repository") == _without(twin_args, "model-repository")
    assert args["model-config-name"] == [CONFIG_NAMES[TWIN_OVERLAY]]
    # Same environment, but MODEL_REPOSITORY (the overlay's way to the PVC or S3).
    env = {e["name"]: e for e in container["env"]}
    twin_env = {e["name"]: e for e in twin["env"] if e["name"] != "MODEL_REPOSITORY"}
    assert env == twin_env
    for field in ("image", "resources", "securityContext", "lifecycle", "imagePullPolicy"):
        assert container[field] == twin[field], field
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert _probe(container, probe) == _probe(twin, probe), probe
    spec, twin_spec = pod_spec(pod), pod_spec(deployment)
    for field in (
        "securityContext",
        "nodeSelector",
        "tolerations",
        "automountServiceAccountToken",
        "terminationGracePeriodSeconds",
    ):
        assert spec[field] == twin_spec[field], field
    # Scratch (with the TensorRT engine cache) and shared memory: the same emptyDirs.
    sources = _volume_sources(pod, container)
    twin_sources = _volume_sources(deployment, twin)
    for path in ("/dev/shm", "/tmp"):
        assert sources[path] == twin_sources[path], path
    mount, volume = volume_holding(pod, container, TRT_CACHE_DIR)
    assert not mount.get("readOnly", False) and "emptyDir" in volume


def test_vendored_kserve_schemas_reject_typos_and_wrong_types(
    isvc: dict[str, Any], runtime: dict[str, Any]
) -> None:
    isvc_schema, runtime_schema = crd_validator(ISVC_KEY), crd_validator(RUNTIME_KEY)
    assert isvc_schema.is_valid(isvc) and runtime_schema.is_valid(runtime)
    typo = copy.deepcopy(isvc)
    typo["spec"]["predictor"]["model"]["storageURI"] = typo["spec"]["predictor"]["model"].pop(
        "storageUri"
    )
    assert not isvc_schema.is_valid(typo)
    wrong_type = copy.deepcopy(isvc)
    wrong_type["spec"]["predictor"]["minReplicas"] = "2"
    assert not isvc_schema.is_valid(wrong_type)
    no_predictor = copy.deepcopy(isvc)
    del no_predictor["spec"]["predictor"]
    assert not isvc_schema.is_valid(no_predictor)
    probe_typo = copy.deepcopy(runtime)
    probe_typo["spec"]["containers"][0]["readinesProbe"] = {}
    assert not runtime_schema.is_valid(probe_typo)
    no_containers = copy.deepcopy(runtime)
    del no_containers["spec"]["containers"]
    assert not runtime_schema.is_valid(no_containers)
