"""Policy tests of how the rendered objects fit together: selectors, ports, scaling, network."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import pytest
import yaml
from k8s_render import (
    K8S_DIR,
    NAMESPACE,
    REPO_ROOT,
    Render,
    containers,
    found,
    matches,
    pod_labels,
    pod_spec,
)

from medserve_client.transport import grpc_client_kwargs

pytestmark = pytest.mark.k8s

WORKLOAD_KINDS = {"Deployment", "Job", "Pod"}
CLUSTER_SCOPED = {"Namespace"}
CLIENT_LABEL = {"medserve.io/client": "true"}

LOCUST_PACKAGE = REPO_ROOT / "loadtest" / "medserve_locust"


def workloads(render: Render) -> list[dict[str, Any]]:
    return [obj for obj in render.objects if obj["kind"] in WORKLOAD_KINDS]


def every(renders: dict[str, Render], kinds: set[str]) -> list[tuple[Render, dict[str, Any]]]:
    """Each object of ``kinds`` in any render, with its render (at least one)."""
    pairs = [(r, obj) for r in renders.values() for obj in r.objects if obj["kind"] in kinds]
    return found(pairs, " or ".join(sorted(kinds)))


def selected_workloads(render: Render, selector: dict[str, str]) -> list[dict[str, Any]]:
    return [w for w in workloads(render) if matches(selector, pod_labels(w))]


def test_every_namespaced_object_lands_in_the_medserve_namespace(
    renders: dict[str, Render],
) -> None:
    for render in renders.values():
        for obj in render.objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                assert obj["metadata"].get("namespace") == NAMESPACE, f"{render.name}: {obj}"


def test_deployment_selectors_match_their_pod_template_labels(renders: dict[str, Render]) -> None:
    for render, obj in every(renders, {"Deployment"}):
        assert matches(obj["spec"]["selector"]["matchLabels"], pod_labels(obj)), render.name


def test_services_select_pods_that_expose_their_target_ports(renders: dict[str, Render]) -> None:
    for render, service in every(renders, {"Service"}):
        pods = selected_workloads(render, service["spec"]["selector"])
        assert pods, f"{render.name}: Service {service['metadata']['name']} selects nothing"
        for pod in pods:
            names = {p["name"] for c in containers(pod) for p in c.get("ports", [])}
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in names, f"{render.name}: {port}"


def test_http_service_is_cluster_ip_and_grpc_service_is_headless(
    overlay_renders: list[Render],
) -> None:
    for render in overlay_renders:
        http = render.one("Service", "triton")
        grpc = render.one("Service", "triton-grpc")
        assert http["spec"]["type"] == "ClusterIP", render.name
        assert {p["name"] for p in http["spec"]["ports"]} == {"http", "metrics"}, render.name
        assert grpc["spec"]["clusterIP"] == "None", render.name
        assert [p["name"] for p in grpc["spec"]["ports"]] == ["grpc"], render.name


def test_pod_disruption_budget_selects_the_triton_pods(overlay_renders: list[Render]) -> None:
    for render in overlay_renders:
        pdb = render.one("PodDisruptionBudget", "triton")
        selected = selected_workloads(render, pdb["spec"]["selector"]["matchLabels"])
        assert [w["metadata"]["name"] for w in selected] == ["triton"], render.name
        assert pdb["spec"]["maxUnavailable"] == 1, render.name


def test_hpa_scales_the_triton_deployment_with_stabilised_scale_down(
    overlay_renders: list[Render],
) -> None:
    for render in overlay_renders:
        hpa = render.one("HorizontalPodAutoscaler", "triton")
        target = hpa["spec"]["scaleTargetRef"]
        deployment = render.one(target["kind"], target["name"])
        # The HPA owns the replica count: a fixed one would fight it on apply.
        assert "replicas" not in deployment["spec"], render.name
        assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"], render.name
        assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300


def test_hpa_metric_is_defined_by_the_shipped_prometheus_adapter_rule(
    overlay_renders: list[Render],
) -> None:
    values = yaml.safe_load((K8S_DIR / "base" / "prometheus-adapter-values.yaml").read_text())
    rules = {rule["name"]["as"]: rule for rule in values["rules"]["custom"]}
    for render in overlay_renders:
        (metric,) = render.one("HorizontalPodAutoscaler", "triton")["spec"]["metrics"]
        assert metric["type"] == "Pods", render.name
        rule = rules[metric["pods"]["metric"]["name"]]
        query = rule["metricsQuery"]
        numerator, _, denominator = query.partition("/")
        assert "nv_inference_queue_duration_us" in numerator, query
        assert "nv_inference_request_success" in denominator, query
        assert "<<.LabelMatchers>>" in query and "<<.GroupBy>>" in query, query
        overrides = rule["resources"]["overrides"]
        assert overrides == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}


def test_service_monitor_scrapes_the_metrics_port_of_the_triton_service(
    overlay_renders: list[Render],
) -> None:
    for render in overlay_renders:
        monitor = render.one("ServiceMonitor", "triton")
        services = [
            s
            for s in render.of_kind("Service")
            if matches(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        with_metrics = [s for s in services if "metrics" in {p["name"] for p in s["spec"]["ports"]}]
        assert [s["metadata"]["name"] for s in with_metrics] == ["triton"], render.name
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"], render.name


def _policy(render: Render, name: str) -> dict[str, Any]:
    return render.one("NetworkPolicy", name)


def test_network_policy_denies_all_traffic_by_default(overlay_renders: list[Render]) -> None:
    for render in overlay_renders:
        deny = _policy(render, "default-deny")
        assert deny["spec"]["podSelector"] == {}, render.name
        assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}, render.name
        assert "ingress" not in deny["spec"] and "egress" not in deny["spec"], render.name


def test_network_policy_admits_clients_to_inference_ports_and_monitoring_to_metrics(
    overlay_renders: list[Render],
) -> None:
    for render in overlay_renders:
        policy = _policy(render, "triton")
        assert selected_workloads(render, policy["spec"]["podSelector"]["matchLabels"])
        rules = {
            frozenset(p["port"] for p in rule["ports"]): rule["from"]
            for rule in policy["spec"]["ingress"]
        }
        assert set(rules) == {frozenset({8000, 8001}), frozenset({8002})}, render.name
        clients = rules[frozenset({8000, 8001})]
        assert {"namespaceSelector": {"matchLabels": CLIENT_LABEL}} in clients, render.name
        assert {"podSelector": {"matchLabels": CLIENT_LABEL}} in clients, render.name
        monitoring = {"kubernetes.io/metadata.name": "monitoring"}
        assert rules[frozenset({8002})] == [{"namespaceSelector": {"matchLabels": monitoring}}]


def test_every_network_policy_selects_pods_of_the_deployment(renders: dict[str, Render]) -> None:
    # The smoke Job is applied beside every overlay; its pods count too.
    smoke_pods = found(workloads(renders["smoke"]), "smoke Job")
    selecting = [
        (render, policy)
        for render, policy in every(renders, {"NetworkPolicy"})
        if render.overlay and policy["spec"]["podSelector"].get("matchLabels")
    ]
    for render, policy in found(selecting, "NetworkPolicy with a pod selector"):
        selector = policy["spec"]["podSelector"]["matchLabels"]
        pods = [w for w in workloads(render) + smoke_pods if matches(selector, pod_labels(w))]
        assert pods, f"{render.name}: {policy['metadata']['name']} selects no pod"


def test_in_cluster_clients_carry_the_label_the_network_policy_admits(
    renders: dict[str, Render],
) -> None:
    smoke = renders["smoke"].one("Job", "medserve-smoke")
    assert matches(CLIENT_LABEL, pod_labels(smoke))
    worker = renders["gpu+loadtest"].one("Deployment", "locust-worker")
    assert matches(CLIENT_LABEL, pod_labels(worker))


def test_every_pod_is_non_root_read_only_without_capabilities_or_token(
    renders: dict[str, Render],
) -> None:
    for render, obj in every(renders, WORKLOAD_KINDS):
        spec = pod_spec(obj)
        where = f"{render.name}: {obj['kind']}/{obj['metadata']['name']}"
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["automountServiceAccountToken"] is False, where
        for container in containers(obj):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
        for volume in spec.get("volumes", []):
            if "emptyDir" in volume:
                assert volume["emptyDir"].get("sizeLimit"), f"{where}: {volume['name']}"


def test_no_image_uses_latest_or_an_untagged_reference(renders: dict[str, Render]) -> None:
    for render, obj in every(renders, WORKLOAD_KINDS):
        for container in containers(obj):
            image = container["image"]
            name, _, tag = image.rpartition(":")
            assert name and "/" not in tag, f"{render.name}: {image} has no tag"
            assert tag != "latest", f"{render.name}: {image}"


def test_smoke_job_checks_health_then_classifies_through_the_http_service(
    renders: dict[str, Render],
) -> None:
    from medserve_client.cli import build_parser

    job = renders["smoke"].one("Job", "medserve-smoke")
    commands = [shlex.split(part) for part in " ".join(containers(job)[0]["args"]).split("&&")]
    # Parsed by the real CLI's parser: a misplaced option fails here, not in the cluster.
    parsed = [build_parser().parse_args(argv[1:]) for argv in commands]
    assert [argv[0] for argv in commands] == ["medserve-client", "medserve-client"]
    assert [p.command for p in parsed] == ["health", "classify"]
    http = renders["gpu"].one("Service", "triton")
    port = next(p["port"] for p in http["spec"]["ports"] if p["name"] == "http")
    assert {p.url for p in parsed} == {f"http://{http['metadata']['name']}:{port}"}
    assert job["spec"]["backoffLimit"] <= 3 and job["spec"]["activeDeadlineSeconds"] > 0


def test_loadtest_component_runs_scenarios_the_client_image_installs(
    renders: dict[str, Render],
) -> None:
    render = renders["gpu+loadtest"]
    # The scenarios travel in the image, not in a ConfigMap built from files
    # outside k8s/ (which kustomize's load restrictor refuses by default):
    # the component adds no ConfigMap to the overlay's own (the dashboard).
    assert render.of_kind("ConfigMap") == renders["gpu"].of_kind("ConfigMap")
    dockerfile = (K8S_DIR / "images" / "client.Dockerfile").read_text(encoding="utf-8")
    # The image links the installed package to a fixed path (see the Dockerfile).
    (link,) = re.findall(
        r"os\.symlink\(pathlib\.Path\(medserve_locust\.__file__\)\.parent, '(/[^']+)'\)", dockerfile
    )
    for deployment in ("locust-master", "locust-worker"):
        args = containers(render.one("Deployment", deployment))[0]["args"]
        locustfile = next(a for a in args if a.startswith("--locustfile=")).split("=", 1)[1]
        assert locustfile.startswith(link + "/"), locustfile
        source = LOCUST_PACKAGE / locustfile.removeprefix(link + "/")
        assert source.is_file(), f"{deployment} runs {locustfile}, which loadtest/ does not hold"
    master_args = containers(render.one("Deployment", "locust-master"))[0]["args"]
    host = next(a for a in master_args if a.startswith("--host="))
    grpc = render.one("Service", "triton-grpc")
    # gRPC's dns: resolver over the headless Service: every pod, round-robin per request.
    assert grpc["spec"]["clusterIP"] == "None"
    fqdn = f"{grpc['metadata']['name']}.{grpc['metadata']['namespace']}.svc.cluster.local"
    assert host == f"--host=dns:///{fqdn}:{grpc['spec']['ports'][0]['port']}"
    settings = grpc_client_kwargs(host.split("=", 1)[1])  # What the scenario dials.
    service_config = json.loads(dict(settings["channel_args"])["grpc.service_config"])
    assert service_config == {"loadBalancingConfig": [{"round_robin": {}}]}
