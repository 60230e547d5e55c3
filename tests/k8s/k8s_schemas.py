"""The schemas the rendered objects are validated against, offline.

Usage::

    assert not schema_errors(obj)   # built-in kinds: Kubernetes 1.35, strict; CRDs: vendored
    crd_validator(("serving.kserve.io/v1beta1", "InferenceService")).is_valid(obj)
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema
from k8s_render import K8S_DIR

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
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring.coreos.com-v1.json",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): (
        "servingruntime-serving.kserve.io-v1alpha1.json"
    ),
    ("serving.kserve.io/v1beta1", "InferenceService"): (
        "inferenceservice-serving.kserve.io-v1beta1.json"
    ),
}


@functools.cache
def crd_validator(key: tuple[str, str]) -> jsonschema.Draft7Validator:
    """A validator for the vendored schema of a CRD kind (loaded once)."""
    schema = json.loads((K8S_DIR / "schemas" / CRD_SCHEMAS[key]).read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(obj: dict[str, Any]) -> list[str]:
    """Why ``obj`` fails its schema (empty when valid).

    Built-in kinds go through ``kubernetes-validate --strict`` for
    :data:`KUBERNETES_VERSION`; CRD kinds through their vendored schema. A kind
    with neither is an error: vendor its schema rather than skip it.
    """
    import kubernetes_validate

    key = (obj["apiVersion"], obj["kind"])
    if key in CRD_SCHEMAS:
        return [error.message for error in crd_validator(key).iter_errors(obj)]
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [str(exc)]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {key}: vendor one into k8s/schemas/"]
    return []
