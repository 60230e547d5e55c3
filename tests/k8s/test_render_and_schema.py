"""Every combination renders with kustomize and validates against Kubernetes' schemas."""

from __future__ import annotations

import pytest
from k8s_render import COMPONENTS, OVERLAYS, STANDALONE, Render, combinations, unique_objects

pytestmark = pytest.mark.k8s

# The Kubernetes release the manifests are validated against: a current,
# supported minor (kubernetes-validate bundles its schemas, so this works
# offline). Raise it together with the kubernetes-validate pin in
# requirements-dev.txt.
KUBERNETES_VERSION = "1.35.0"

# Objects of CustomResourceDefinitions, whose schemas kubernetes-validate does
# not bundle. Checked by the policy tests instead (selector, port name);
# a vendored CRD schema would have to track prometheus-operator releases.
SKIPPED_CRDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "prometheus-operator CRD, schema not bundled",
}


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
    skipped: set[tuple[str, str]] = set()
    for render_name, obj in unique_objects(renders).values():
        key = (obj["apiVersion"], obj["kind"])
        if key in SKIPPED_CRDS:
            skipped.add(key)
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{render_name}: {obj['kind']}/{obj['metadata']['name']}: {exc}")
        except kubernetes_validate.SchemaNotFoundError:
            failures.append(f"{render_name}: no schema for {key}: add it to SKIPPED_CRDS")
    assert not failures, "\n".join(failures)
    # A stale skip would hide nothing but mislead: every listed CRD is rendered.
    assert skipped == set(SKIPPED_CRDS)


def test_pinned_kubernetes_version_is_bundled_by_kubernetes_validate() -> None:
    from kubernetes_validate.utils import all_versions

    assert KUBERNETES_VERSION in all_versions()
