"""Policy tests of the Triton Deployment in every overlay/component combination."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from k8s_render import (
    CONFIG_NAMES,
    GPU_OVERLAYS,
    K8S_DIR,
    ONNX_OVERLAYS,
    OVERLAYS,
    TRITON_IMAGES,
    TRITON_RELEASES,
    TRT_CACHE_DIR,
    Render,
    containers,
    found,
    pod_spec,
    triton_args,
    volume_holding,
)

pytestmark = pytest.mark.k8s

# Flags of each image's tritonserver, from Triton's own command-line parser
# (k8s/schemas/tritonserver-flags.json says which commit).
TRITON_FLAGS_FILE = K8S_DIR / "schemas" / "tritonserver-flags.json"
TF_BACKEND_CONFIG = "tensorflow,allow-soft-placement=true"
# TensorRT builds an engine per optimization profile at warm-up, before ready.
MIN_TRT_STARTUP_BUDGET_S = 900
TRITON_UID = 1000
ADMIN_APIS = {"model-repository", "shared-memory", "statistics", "trace", "logging"}
# What clients need: the client reads tensor names and labels from metadata
# and model-config, so those must stay open.
CLIENT_APIS = {"health", "metadata", "inference", "model-config"}
TRITON_PORTS = {
    "http": ("http-port", 8000),
    "grpc": ("grpc-port", 8001),
    "metrics": ("metrics-port", 8002),
}
MIN_STARTUP_BUDGET_S = 300


def triton(render: Render) -> dict[str, Any]:
    return containers(render.one("Deployment", "triton"))[0]


def one_arg(render: Render, flag: str) -> str:
    values = triton_args(render).get(flag, [])
    assert len(values) == 1, f"{render.name}: expected one --{flag}, got {values}"
    return values[0]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def test_triton_runs_the_pinned_image_of_its_backend(overlay_renders: list[Render]) -> None:
    assert set(TRITON_IMAGES) == set(CONFIG_NAMES) == set(OVERLAYS)
    for render in overlay_renders:
        assert render.overlay is not None
        assert triton(render)["image"] == TRITON_IMAGES[render.overlay], render.name


def test_every_triton_flag_exists_in_the_image_the_overlay_runs(
    overlay_renders: list[Render],
) -> None:
    releases = json.loads(TRITON_FLAGS_FILE.read_text(encoding="utf-8"))["images"]
    assert set(releases) == set(TRITON_RELEASES.values()), "one flag list per Triton release"
    for render in overlay_renders:
        release = TRITON_RELEASES[triton(render)["image"]]
        known = set(releases[release]["flags"])
        used = set(triton_args(render))
        assert used <= known, f"{render.name}: {release} has no {sorted(used - known)}"


def test_triton_args_fix_models_and_report_ready_only_when_all_are_loaded(
    overlay_renders: list[Render],
) -> None:
    for render in overlay_renders:
        if render.overlay in ONNX_OVERLAYS:
            # Explicit, to leave out the explain model (no ONNX form, no
            # TensorFlow backend in 26.09): test_onnx_overlays_load_... below.
            assert one_arg(render, "model-control-mode") == "explicit", render.name
        else:
            assert one_arg(render, "model-control-mode") == "none", render.name
            assert "load-model" not in triton_args(render), render.name
        assert one_arg(render, "strict-readiness") == "true", render.name
        assert one_arg(render, "model-repository") == "$(MODEL_REPOSITORY)", render.name
        assert one_arg(render, "log-format") == "ISO8601", render.name
        assert int(one_arg(render, "exit-timeout-secs")) > 0, render.name
        backend_configs = triton_args(render).get("backend-config", [])
        if render.overlay in ONNX_OVERLAYS:
            # The 26.09 image has no TensorFlow backend: no config for it either.
            assert not any(c.startswith("tensorflow,") for c in backend_configs), render.name
        else:
            assert TF_BACKEND_CONFIG in backend_configs, render.name


def test_onnx_overlays_load_the_classifier_and_the_encoded_path_but_not_the_explain_model(
    overlay_renders: list[Render],
) -> None:
    import dataclasses

    from medserve.spec import ModelSpec
    from medserve_client.contract import encoded_model, explain_model, preprocess_model

    # The model name the exporter uses unless told otherwise (--name).
    (name,) = [f.default for f in dataclasses.fields(ModelSpec) if f.name == "name"]
    assert isinstance(name, str)
    for render in found((r for r in overlay_renders if r.overlay in ONNX_OVERLAYS), "ONNX overlay"):
        loaded = triton_args(render)["load-model"]
        assert loaded == [name, preprocess_model(name), encoded_model(name)], render.name
        assert explain_model(name) not in loaded, render.name
        # Explicit mode opens loading through the model-repository API: only
        # with the admin key (test_admin_apis_are_restricted_behind_the_key...).
        assert "model-repository" in one_arg(render, "http-restricted-api").split(":")[0]
        assert "model-repository" in one_arg(render, "grpc-restricted-protocol").split(":")[0]


def test_grpc_connections_age_out_so_load_rebalances_across_replicas(
    overlay_renders: list[Render],
) -> None:
    for render in overlay_renders:
        age_ms = int(one_arg(render, "grpc-max-connection-age"))
        grace_ms = int(one_arg(render, "grpc-max-connection-age-grace"))
        # Milliseconds in Triton: minutes would be a typo for hours.
        assert 10_000 <= age_ms <= 600_000, render.name
        assert 0 < grace_ms <= age_ms, render.name


@pytest.mark.parametrize("flag", ["http-restricted-api", "grpc-restricted-protocol"])
def test_admin_apis_are_restricted_behind_the_key_from_a_secret(
    overlay_renders: list[Render], flag: str
) -> None:
    for render in overlay_renders:
        apis, _, key_value = one_arg(render, flag).partition(":")
        assert set(apis.split(",")) == ADMIN_APIS, render.name
        assert not CLIENT_APIS & set(apis.split(",")), render.name
        header, _, value = key_value.partition("=")
        assert header == "medserve-admin-key", render.name
        assert value == "$(TRITON_ADMIN_KEY)", f"{render.name}: the key must not be inline"
        source = env_of(triton(render))["TRITON_ADMIN_KEY"]
        assert "secretKeyRef" in source.get("valueFrom", {}), render.name


def test_every_variable_in_triton_args_is_defined_once_by_value_or_reference(
    overlay_renders: list[Render],
) -> None:
    for render in overlay_renders:
        container = triton(render)
        env = env_of(container)
        assert len(env) == len(container.get("env", [])), f"{render.name}: duplicate env names"
        for entry in env.values():
            # A patch that merges `value` into a `valueFrom` entry is invalid.
            assert ("value" in entry) != ("valueFrom" in entry), f"{render.name}: {entry}"
        for arg in container["args"]:
            for name in re.findall(r"\$\((\w+)\)", arg):
                assert name in env, f"{render.name}: $({name}) in {arg} is not in env"


def test_container_ports_equal_the_ports_in_triton_args(overlay_renders: list[Render]) -> None:
    for render in overlay_renders:
        ports = {p["name"]: p["containerPort"] for p in triton(render)["ports"]}
        assert set(ports) == set(TRITON_PORTS), render.name
        for name, (flag, default) in TRITON_PORTS.items():
            assert ports[name] == int(one_arg(render, flag)) == default, f"{render.name}: {name}"


def _port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p["name"] == port)


def test_probes_use_triton_health_endpoints_on_the_http_port(overlay_renders: list[Render]) -> None:
    expected = {
        "startupProbe": "/v2/health/ready",
        "livenessProbe": "/v2/health/live",
        "readinessProbe": "/v2/health/ready",
    }
    for render in overlay_renders:
        container = triton(render)
        http_port = int(one_arg(render, "http-port"))
        for probe_name, path in expected.items():
            probe = container[probe_name]
            assert probe["httpGet"]["path"] == path, f"{render.name}: {probe_name}"
            assert _port_number(container, probe["httpGet"]["port"]) == http_port, render.name


def test_startup_probe_covers_model_load_and_warm_up_instead_of_a_liveness_delay(
    overlay_renders: list[Render],
) -> None:
    for render in overlay_renders:
        container = triton(render)
        startup = container["startupProbe"]
        budget_s = startup["periodSeconds"] * startup["failureThreshold"]
        assert budget_s >= MIN_STARTUP_BUDGET_S, render.name
        if render.overlay == "gpu-onnx":
            assert budget_s >= MIN_TRT_STARTUP_BUDGET_S, render.name
        assert container["livenessProbe"].get("initialDelaySeconds", 0) == 0, render.name
        assert container["readinessProbe"].get("initialDelaySeconds", 0) == 0, render.name


def test_gpu_overlays_request_one_gpu_on_gpu_nodes(renders: dict[str, Render]) -> None:
    for render in found((r for r in renders.values() if r.overlay in GPU_OVERLAYS), "GPU overlay"):
        resources = triton(render)["resources"]
        assert resources["limits"]["nvidia.com/gpu"] == 1, render.name
        spec = pod_spec(render.one("Deployment", "triton"))
        assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}, render.name
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
            "tolerations"
        ], render.name


def test_cpu_overlays_have_no_gpu_request_toleration_or_node_selector(
    renders: dict[str, Render],
) -> None:
    cpu = (r for r in renders.values() if r.overlay and r.overlay not in GPU_OVERLAYS)
    for render in found(cpu, "CPU overlay"):
        spec = pod_spec(render.one("Deployment", "triton"))
        assert "nvidia.com" not in repr(spec), render.name


def test_each_overlay_serves_its_own_model_config(overlay_renders: list[Render]) -> None:
    for render in overlay_renders:
        assert render.overlay is not None
        expected = CONFIG_NAMES[render.overlay]
        names = triton_args(render).get("model-config-name", [])
        assert names == ([] if expected is None else [expected]), render.name


def test_model_config_names_match_files_the_exporter_writes() -> None:
    from medserve.model_config import CONFIG_KINDS, config_path

    model_dir = Path("medcnn")
    # The GPU overlay passes no name: Triton reads what the exporter's "gpu" kind writes.
    assert config_path(model_dir, "gpu") == model_dir / "config.pbtxt"
    for name in found((n for n in CONFIG_NAMES.values() if n is not None), "config name"):
        assert name in CONFIG_KINDS, f"the exporter writes no {name!r} config"
        assert config_path(model_dir, name) == model_dir / "configs" / f"{name}.pbtxt"
        # The laptop-only Python-backend config must never reach a cluster.
        assert name != "local"


def test_gpu_onnx_overlay_caches_tensorrt_engines_on_a_writable_pod_volume(
    renders: dict[str, Render],
) -> None:
    for render in found((r for r in renders.values() if r.overlay == "gpu-onnx"), "gpu-onnx"):
        deployment = render.one("Deployment", "triton")
        mount, volume = volume_holding(deployment, triton(render), TRT_CACHE_DIR)
        assert not mount.get("readOnly", False), render.name
        # Per pod (survives container restarts), bounded so it cannot fill the node.
        assert volume["emptyDir"]["sizeLimit"], render.name


def test_onnx_gpu_config_caches_tensorrt_engines_where_the_pods_can_write() -> None:
    from medserve.model_config import classifier_config
    from medserve.spec import ModelSpec

    config = classifier_config(ModelSpec(), "onnx-gpu")
    accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
    (trt,) = [a for a in accelerators if a.name == "tensorrt"]
    # The path the gpu-onnx overlay and KServe keep on a writable emptyDir.
    assert trt.parameters["trt_engine_cache_enable"] == "1"
    assert trt.parameters["trt_engine_cache_path"] == TRT_CACHE_DIR


def test_requests_equal_limits_for_cpu_and_memory_in_every_container(
    renders: dict[str, Render],
) -> None:
    pods = [
        (render, obj)
        for render in renders.values()
        for obj in render.objects
        if obj["kind"] in {"Deployment", "Job", "Pod"}
    ]
    for render, obj in found(pods, "workload"):
        for container in containers(obj):
            resources = container["resources"]
            for resource in ("cpu", "memory"):
                request = resources["requests"][resource]
                limit = resources["limits"][resource]
                assert request == limit, f"{render.name}: {obj['metadata']['name']} {resource}"


def test_model_repository_is_a_read_only_claim_unless_s3_is_used(
    overlay_renders: list[Render],
) -> None:
    for render in overlay_renders:
        spec = pod_spec(render.one("Deployment", "triton"))
        container = triton(render)
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        repository = env_of(container)["MODEL_REPOSITORY"]["value"]
        if "s3" in render.components:
            assert repository.startswith("s3://"), render.name
            assert not render.of_kind("PersistentVolumeClaim"), render.name
            assert "/models" not in mounts, render.name
            assert {"secretRef": {"name": "model-repository-s3-credentials"}} in container[
                "envFrom"
            ]
        else:
            assert repository == "/models", render.name
            assert mounts["/models"]["readOnly"] is True, render.name
            volume = next(v for v in spec["volumes"] if v["name"] == mounts["/models"]["name"])
            claim = volume["persistentVolumeClaim"]
            assert claim["readOnly"] is True, render.name
            render.one("PersistentVolumeClaim", claim["claimName"])


def test_dev_shm_is_a_memory_backed_empty_dir_with_a_size_limit(
    overlay_renders: list[Render],
) -> None:
    for render in overlay_renders:
        spec = pod_spec(render.one("Deployment", "triton"))
        mount = next(m for m in triton(render)["volumeMounts"] if m["mountPath"] == "/dev/shm")
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        assert volume["emptyDir"]["medium"] == "Memory", render.name
        assert volume["emptyDir"]["sizeLimit"], render.name


def test_triton_runs_as_the_images_non_root_user_with_a_locked_down_container(
    overlay_renders: list[Render],
) -> None:
    for render in overlay_renders:
        spec = pod_spec(render.one("Deployment", "triton"))
        assert spec["securityContext"]["runAsUser"] == TRITON_UID, render.name
        assert spec["securityContext"]["runAsNonRoot"] is True, render.name
        assert spec["automountServiceAccountToken"] is False, render.name
        account = render.one("ServiceAccount", spec["serviceAccountName"])
        assert account["automountServiceAccountToken"] is False, render.name


def test_graceful_shutdown_outlasts_the_prestop_pause_and_triton_exit_timeout(
    overlay_renders: list[Render],
) -> None:
    for render in overlay_renders:
        deployment = render.one("Deployment", "triton")
        pre_stop = triton(render)["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop[0] == "sleep", render.name
        pause_s = int(pre_stop[1])
        exit_timeout_s = int(one_arg(render, "exit-timeout-secs"))
        grace_s = pod_spec(deployment)["terminationGracePeriodSeconds"]
        assert pause_s > 0 and grace_s > pause_s + exit_timeout_s, render.name
        strategy = deployment["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate", render.name
        # Capacity never drops in a rollout, unless the operator chose the
        # component for clusters without a spare GPU (test_deploy_path).
        if "rollout-without-spare-gpu" not in render.components:
            assert strategy["rollingUpdate"]["maxUnavailable"] == 0, render.name


def test_triton_replicas_spread_across_nodes_and_zones(overlay_renders: list[Render]) -> None:
    for render in overlay_renders:
        deployment = render.one("Deployment", "triton")
        selector = deployment["spec"]["selector"]["matchLabels"]
        constraints = pod_spec(deployment)["topologySpreadConstraints"]
        keys = {c["topologyKey"] for c in constraints}
        assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}, render.name
        for constraint in constraints:
            assert constraint["labelSelector"]["matchLabels"] == selector, render.name


def test_tls_component_serves_grpc_over_tls_from_a_mounted_certificate_secret(
    overlay_renders: list[Render],
) -> None:
    for render in found((r for r in overlay_renders if "tls" in r.components), "tls render"):
        args = triton_args(render)
        assert args["grpc-use-ssl"] == ["true"], render.name
        spec = pod_spec(render.one("Deployment", "triton"))
        mounts = triton(render)["volumeMounts"]
        for flag in ("grpc-server-cert", "grpc-server-key"):
            path = args[flag][0]
            mount = next(m for m in mounts if path.startswith(m["mountPath"] + "/"))
            assert mount["readOnly"] is True, render.name
            volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
            assert volume["secret"]["secretName"] == "triton-grpc-tls", render.name
    for render in found((r for r in overlay_renders if "tls" not in r.components), "plain render"):
        assert "grpc-use-ssl" not in triton_args(render), render.name


def test_tls_component_routes_https_through_the_ingress_to_the_http_port(
    overlay_renders: list[Render],
) -> None:
    for render in found((r for r in overlay_renders if "tls" in r.components), "tls render"):
        ingress = render.one("Ingress", "triton")
        hosts = {host for tls in ingress["spec"]["tls"] for host in tls["hosts"]}
        for rule in ingress["spec"]["rules"]:
            assert rule["host"] in hosts, f"{render.name}: {rule['host']} has no certificate"
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                service = render.one("Service", backend["name"])
                assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
                assert backend["port"]["name"] == "http", render.name
        # The controller's traffic must pass the default-deny NetworkPolicy.
        policy = render.one("NetworkPolicy", "triton-from-ingress-controller")
        assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == [8000]


# Triton's own default for --http-max-input-size (64 MiB): the largest input a
# request may carry over HTTP. An encoded radiograph of 50 MP (the decoders'
# max_pixels) fits; a max batch of uint8 224x224 images is a few MB.
MAX_HTTP_INPUT_BYTES = 64 * 1024 * 1024


def test_http_request_size_is_bounded_by_triton_or_by_the_ingress(
    overlay_renders: list[Render], renders: dict[str, Render]
) -> None:
    releases = json.loads(TRITON_FLAGS_FILE.read_text(encoding="utf-8"))["images"]
    for render in overlay_renders:
        release = TRITON_RELEASES[triton(render)["image"]]
        if "http-max-input-size" in releases[release]["flags"]:
            assert 0 < int(one_arg(render, "http-max-input-size")) <= MAX_HTTP_INPUT_BYTES
        else:
            # 25.02 would refuse to start with it; its HTTP bound is the Ingress.
            assert "http-max-input-size" not in triton_args(render), render.name
    ingresses = [ingress for render in renders.values() for ingress in render.of_kind("Ingress")]
    assert ingresses, "no rendered combination has the tls component's Ingress"
    for ingress in ingresses:
        size = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
        assert re.fullmatch(r"\d+m", size) and int(size[:-1]) * 2**20 <= MAX_HTTP_INPUT_BYTES
