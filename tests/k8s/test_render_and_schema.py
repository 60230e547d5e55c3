"""Every combination renders with kustomize and validates against Kubernetes' schemas."""

from __future__ import annotations

import copy

import pytest
from k8s_render import (
    COMPONENTS,
    OVERLAYS,
    Render,
    combinations,
    render_names,
    unique_objects,
)
from k8s_schemas import CRD_SCHEMAS, KUBERNETES_VERSION, crd_validator, schema_errors

pytestmark = pytest.mark.k8s


def test_every_overlay_and_component_combination_renders(renders: dict[str, Render]) -> None:
    assert set(renders) == render_names()
    assert len(combinations()) == len(OVERLAYS) * 2 ** len(COMPONENTS)
    for render in renders.values():
        assert render.objects, f"{render.name} rendered no objects"


def test_every_rendered_object_validates_strictly_against_the_pinned_kubernetes(
    renders: dict[str, Render],
) -> None:
    failures: list[str] = []
    for render_name, obj in unique_objects(renders).values():
        where = f"{render_name}: {obj['kind']}/{obj['metadata']['name']}"
        failures += [f"{where}: {error}" for error in schema_errors(obj)]
    assert not failures, "\n".join(failures)
    # Every vendored schema is used: a stale one would suggest a check that never runs.
    crd_kinds = {(o["apiVersion"], o["kind"]) for _, o in unique_objects(renders).values()}
    assert set(CRD_SCHEMAS) <= crd_kinds


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
