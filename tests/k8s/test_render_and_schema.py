"""Every combination renders with kustomize and validates against Kubernetes' schemas."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest
from k8s_render import (
    COMPONENTS,
    K8S_DIR,
    OVERLAYS,
    STANDALONE,
    Render,
    combinations,
    unique_objects,
)

pytestmark = pytest.mark.k8s

# The Kubernetes release the manifests are validated against: a current,
# supported minor (kubernetes-validate bundles its schemas, so this works
# offline). Should a kubernetes-validate upgrade stop bundling it,
# test_pinned_kubernetes_version_is_bundled_by_kubernetes_validate says so.
KUBERNETES_VERSION = "1.35.0"

# Objects of CustomResourceDefinitions, whose schemas kubernetes-validate does
# not bundle: checked against a schema vendored from the CRD's openAPIV3Schema
# (k8s/schemas/, its $comment says which release and how deep).
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring.coreos.com-v1.json",
}


def crd_validator(key: tuple[str, str]) -> jsonschema.Draft7Validator:
    """A validator for the vendored schema of a CRD kind."""
    schema = json.loads((K8S_DIR / "schemas" / CRD_SCHEMAS[key]).read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_every_overlay_and_component_combination_renders(renders: dict[str, Render]) -> None:
    expected = {"+".join((o, *c)) for o, c in combinations()} | set(STANDALONE)
    assert set(renders) == expected
    assert len(combinations()) == len(OVERLAYS) * 2 ** len(COMPONENTS)
    for render in renders.values():
        assert render.objects, f"{render.name} rendered no objects"


def test_every_rendered_object_validates_strictly_against_the_pinned_kubernetes(
    renders: dict[str, Render],
) -> None:
    import kubernetes_validate

    failures: list[str] = []
    crd_kinds: set[tuple[str, str]] = set()
    for render_name, obj in unique_objects(renders).values():
        key = (obj["apiVersion"], obj["kind"])
        where = f"{render_name}: {obj['kind']}/{obj['metadata']['name']}"
        if key in CRD_SCHEMAS:
            crd_kinds.add(key)
            failures += [f"{where}: {e.message}" for e in crd_validator(key).iter_errors(obj)]
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{where}: {exc}")
        except kubernetes_validate.SchemaNotFoundError:
            failures.append(f"{where}: no schema for {key}: vendor one into k8s/schemas/")
    assert not failures, "\n".join(failures)
    # Every vendored schema is used: a stale one would suggest a check that never runs.
    assert crd_kinds == set(CRD_SCHEMAS)


def test_vendored_service_monitor_schema_rejects_unknown_fields_and_bad_durations(
    renders: dict[str, Render],
) -> None:
    validator = crd_validator(("monitoring.coreos.com/v1", "ServiceMonitor"))
    monitor = renders["gpu"].one("ServiceMonitor", "triton")
    assert validator.is_valid(monitor)
    typo = copy.deepcopy(monitor)
    typo["spec"]["endpoints"][0]["scrapeTimout"] = "10s"
    assert not validator.is_valid(typo)
    bad_interval = copy.deepcopy(monitor)
    bad_interval["spec"]["endpoints"][0]["interval"] = "15 seconds"
    assert not validator.is_valid(bad_interval)
    no_selector = copy.deepcopy(monitor)
    del no_selector["spec"]["selector"]
    assert not validator.is_valid(no_selector)


def test_pinned_kubernetes_version_is_bundled_by_kubernetes_validate() -> None:
    from kubernetes_validate.utils import all_versions

    assert KUBERNETES_VERSION in all_versions()
