"""The deploy path of k8s/README.md works as written: one client image, the adapter, the host.

Checked on real ``kubectl kustomize`` output: the client image is named in one
component that every kustomization running it includes (changing that one file
reaches the loader, the smoke Job and locust), the prometheus-adapter values
point at the Prometheus the README installs, the Ingress host comes from a
patch in an example, the rollout component needs no spare GPU, and the
README's commands and troubleshooting rows match the manifests.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_render import (
    CLIENT_IMAGE_COMPONENT,
    EXAMPLES,
    K8S_DIR,
    OVERLAYS,
    SINGLE_COMPONENTS,
    Render,
    combination_name,
    containers,
    kustomize,
)

pytestmark = pytest.mark.k8s

README = K8S_DIR / "README.md"
CLIENT_IMAGE = "medserve-client"
ROLLOUT_COMPONENT = "rollout-without-spare-gpu"
# The kustomizations that run the client image (each includes the component).
CLIENT_IMAGE_USERS = ("loader", "smoke", "components/loadtest")


def client_image_setting(component: Path = CLIENT_IMAGE_COMPONENT) -> dict[str, str]:
    """The ``images:`` entry of the client-image component."""
    document = yaml.safe_load((component / "kustomization.yaml").read_text(encoding="utf-8"))
    (entry,) = [image for image in document["images"] if image["name"] == CLIENT_IMAGE]
    return entry


def client_containers(objects: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """Containers whose image is the client image, under whatever name it was given."""
    return [
        container
        for obj in objects
        if obj["kind"] in {"Deployment", "Job", "Pod"}
        for container in containers(obj)
        if container["image"].rpartition(":")[0].rpartition("/")[2] == CLIENT_IMAGE
        or container["image"] == CLIENT_IMAGE
    ]


def test_every_rendered_client_workload_runs_the_one_configured_image(
    renders: dict[str, Render],
) -> None:
    setting = client_image_setting()
    expected = f"{setting['newName']}:{setting['newTag']}"
    assert setting["newTag"] != "latest" and "newTag" in setting
    users = set()
    for render in renders.values():
        for container in client_containers(render.objects):
            users.add(render.name)
            assert container["image"] == expected, f"{render.name}: {container['image']}"
            # A pinned, per-build tag: never re-pulled, and a locally loaded
            # image (kind, minikube) starts without a registry.
            assert container["imagePullPolicy"] == "IfNotPresent", render.name
    with_loadtest = {name for name, r in renders.items() if "loadtest" in r.components}
    assert users == {"loader", "smoke"} | with_loadtest


def test_no_manifest_but_the_component_names_a_client_image_tag_or_registry() -> None:
    for path in sorted(K8S_DIR.rglob("*.yaml")):
        for line in path.read_text(encoding="utf-8").splitlines():
            found = re.match(r"\s*(?:- )?image:\s*(\S+)", line)
            if found and CLIENT_IMAGE in found.group(1):
                assert found.group(1) == CLIENT_IMAGE, f"{path}: {line.strip()}"
    for user in CLIENT_IMAGE_USERS:
        document = yaml.safe_load((K8S_DIR / user / "kustomization.yaml").read_text())
        included = {(K8S_DIR / user / c).resolve() for c in document.get("components", [])}
        assert CLIENT_IMAGE_COMPONENT.resolve() in included, user


def test_changing_the_component_alone_moves_the_loader_smoke_and_locust_to_another_image(
    tmp_path: Path,
) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S_DIR, copy)
    component = copy / CLIENT_IMAGE_COMPONENT.relative_to(K8S_DIR) / "kustomization.yaml"
    document = yaml.safe_load(component.read_text(encoding="utf-8"))
    document["images"] = [
        {"name": CLIENT_IMAGE, "newName": "registry.example.org/imaging/medserve-client",
         "newTag": "0.1.0-3f2c1a9"},
    ]  # fmt: skip
    component.write_text(yaml.safe_dump(document), encoding="utf-8")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["../k8s/overlays/gpu"],
                "components": ["../k8s/components/loadtest"],
            }
        ),
        encoding="utf-8",
    )
    for directory, expected_count in ((copy / "loader", 1), (copy / "smoke", 1), (mine, 2)):
        objects = tuple(d for d in yaml.safe_load_all(kustomize(directory)) if d)
        images = [c["image"] for c in client_containers(objects)]
        assert images == ["registry.example.org/imaging/medserve-client:0.1.0-3f2c1a9"] * (
            expected_count
        ), directory


def test_prometheus_adapter_reads_the_prometheus_the_readme_installs(
    renders: dict[str, Render],
) -> None:
    values = yaml.safe_load((K8S_DIR / "base" / "prometheus-adapter-values.yaml").read_text())
    url = values["prometheus"]["url"]
    # The Prometheus Operator's Service in front of every Prometheus it runs.
    found = re.fullmatch(r"http://prometheus-operated\.([a-z0-9-]+)\.svc", url)
    assert found, url
    namespace = found.group(1)
    assert values["prometheus"]["port"] == 9090
    readme = README.read_text(encoding="utf-8")
    assert re.search(
        r"helm repo add prometheus-community https://prometheus-community\.github\.io/helm-charts",
        readme,
    )
    # The command with its continuation lines (ending in a backslash).
    install = re.search(r"helm upgrade --install \S+ prometheus-community/kube-prometheus-stack"
                        r"(?:[^\n]*\\\n)*[^\n]*", readme)  # fmt: skip
    assert install, "k8s/README.md must install Prometheus"
    assert f"-n {namespace}" in install.group(0)
    # The Prometheus Operator of kube-prometheus-stack only reads ServiceMonitors
    # labelled with its release unless told otherwise: ours has no such label.
    assert "serviceMonitorSelectorNilUsesHelmValues=false" in install.group(0)
    # That namespace is the one Triton's NetworkPolicy lets scrape the metrics.
    policy = renders["gpu"].one("NetworkPolicy", "triton")
    scrapers = [
        peer["namespaceSelector"]["matchLabels"]
        for rule in policy["spec"]["ingress"]
        if [p["port"] for p in rule["ports"]] == [8002]
        for peer in rule["from"]
    ]
    assert scrapers == [{"kubernetes.io/metadata.name": namespace}]
    # Merging with an adapter that already has rules is spelled out.
    assert "helm get values prometheus-adapter" in readme


def test_ingress_host_comes_from_the_examples_patch_not_the_component(
    renders: dict[str, Render],
) -> None:
    assert EXAMPLES["gpu-tls"] == ("gpu", ("tls",))
    example = yaml.safe_load((K8S_DIR / "examples" / "gpu-tls" / "kustomization.yaml").read_text())
    (patch,) = [p for p in example["patches"] if p["target"]["kind"] == "Ingress"]
    wanted = {op["value"] for op in yaml.safe_load(patch["patch"])}
    assert len(wanted) == 1
    (host,) = wanted
    ingress = renders["example-gpu-tls"].one("Ingress", "triton")
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == [host]
    assert [h for tls in ingress["spec"]["tls"] for h in tls["hosts"]] == [host]
    default = renders["gpu+tls"].one("Ingress", "triton")["spec"]["rules"][0]["host"]
    assert default != host, "the example must change the component's host"
    # Apart from the host, the example deploys exactly the gpu overlay with tls.
    assert _without_ingress(renders["example-gpu-tls"]) == _without_ingress(renders["gpu+tls"])
    assert "k8s/examples/gpu-tls" in README.read_text(encoding="utf-8")


def _without_ingress(render: Render) -> list[dict[str, Any]]:
    return sorted(
        (o for o in render.objects if o["kind"] != "Ingress"),
        key=lambda o: (o["kind"], o["metadata"]["name"]),
    )


def test_rollout_component_needs_no_spare_gpu_and_changes_nothing_else(
    renders: dict[str, Render],
) -> None:
    assert ROLLOUT_COMPONENT in SINGLE_COMPONENTS
    for overlay in OVERLAYS:
        base = renders[overlay].one("Deployment", "triton")
        assert base["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
        rolled = renders[combination_name(overlay, (ROLLOUT_COMPONENT,))]
        deployment = rolled.one("Deployment", "triton")
        # An old pod goes first and frees its GPU for the new one.
        assert deployment["spec"]["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
        }, rolled.name
        assert {**deployment["spec"], "strategy": None} == {**base["spec"], "strategy": None}
        # At most one replica down at a time, and the PodDisruptionBudget agrees.
        assert rolled.one("PodDisruptionBudget", "triton")["spec"]["maxUnavailable"] == 1
        assert rolled.one("HorizontalPodAutoscaler", "triton")["spec"]["minReplicas"] >= 2
    readme = README.read_text(encoding="utf-8")
    assert f"components/{ROLLOUT_COMPONENT}" in readme and "maxUnavailable: 0" in readme


def test_readme_gives_the_namespace_label_and_troubleshooting_the_new_user_needed(
    renders: dict[str, Render],
) -> None:
    readme = README.read_text(encoding="utf-8")
    policy = renders["gpu"].one("NetworkPolicy", "triton")
    ((key, value),) = policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"][
        "matchLabels"
    ].items()
    assert f"kubectl label namespace YOUR_NAMESPACE {key}={value}" in readme
    rows = {
        line.split("|")[1].strip(): line
        for line in readme.splitlines()
        if line.startswith("| ") and line.count("|") >= 3
    }
    assert any("ImagePullBackOff" in symptom for symptom in rows)
    assert any("<unknown>" in symptom for symptom in rows)
    # The build commands tag the image as the component names it.
    setting = client_image_setting()
    assert f"REGISTRY/medserve-client:{setting['newTag']}" in readme
    assert "components/client-image" in readme


def test_readme_merge_recipe_keeps_an_installed_adapters_rules_and_adds_ours(
    tmp_path: Path,
) -> None:
    readme = README.read_text(encoding="utf-8")
    (script,) = re.findall(r"\.venv/bin/python - <<'PY'\n(.*?)\nPY\n", readme, flags=re.DOTALL)
    (tmp_path / "k8s" / "base").mkdir(parents=True)
    shutil.copy(K8S_DIR / "base" / "prometheus-adapter-values.yaml", tmp_path / "k8s" / "base")
    theirs = {
        "seriesQuery": 'http_requests_total{namespace!="",pod!=""}',
        "resources": {"template": "<<.Resource>>"},
        "name": {"matches": "^(.*)_total$", "as": "${1}_per_second"},
        "metricsQuery": "sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)",
    }
    current = {
        "prometheus": {"url": "http://prometheus.observability.svc", "port": 9090},
        "rules": {"custom": [theirs]},
    }
    (tmp_path / "adapter-current.yaml").write_text(yaml.safe_dump(current), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-"], input=script, text=True, cwd=tmp_path, capture_output=True
    )
    assert proc.returncode == 0, proc.stderr
    merged = yaml.safe_load((tmp_path / "adapter-merged.yaml").read_text(encoding="utf-8"))
    ours = yaml.safe_load((K8S_DIR / "base" / "prometheus-adapter-values.yaml").read_text())
    assert merged["rules"]["custom"] == [theirs, *ours["rules"]["custom"]]
    # The chart's default rules stay on, and their Prometheus stays theirs.
    assert merged["rules"]["default"] is True
    assert merged["prometheus"] == current["prometheus"]


def test_readme_shows_the_example_kustomization_as_it_is() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    shown = [yaml.safe_load(b) for b in blocks if "kind: Kustomization" in b and "patches" in b]
    example = yaml.safe_load((K8S_DIR / "examples" / "gpu-tls" / "kustomization.yaml").read_text())
    assert shown == [example]
    # ...and the client-image block is the component's own images entry.
    (images,) = [yaml.safe_load(b) for b in blocks if b.startswith("images:")]
    assert images["images"][0]["name"] == CLIENT_IMAGE
    assert images["images"][0]["newTag"] == client_image_setting()["newTag"]
