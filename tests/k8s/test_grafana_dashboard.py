"""The Grafana dashboard: shipped in a ConfigMap, well formed, and every query parses.

That every metric it reads is one Triton exports, and that every query
answers on a real Prometheus scraping a real Triton, is checked in
tests/integration/test_prometheus_autoscaling.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from k8s_render import Render, found, triton_args
from monitoring_manifests import (
    DASHBOARD_FILE,
    adapter_metrics_query,
    adapter_rule_for,
    dashboard_expressions,
    grafana_expr,
    hpa_metric_name,
    hpa_target_average_value,
    load_dashboard,
    selector_metric_names,
)
from prometheus_tools import check_expressions

pytestmark = pytest.mark.k8s

DASHBOARD_CONFIGMAP = "medserve-grafana-dashboard"
# The label Grafana's dashboard sidecar looks for (kube-prometheus-stack's default).
DASHBOARD_LABEL = "grafana_dashboard"
TEST_VARIABLES = {"namespace": "medserve", "model": "medcnn", "datasource": "prometheus"}
# What the issue asks the dashboard to show, by the Triton metric that shows it.
REQUIRED_METRICS = {
    "throughput": "nv_inference_count",
    "p50/p99 latency": "nv_inference_request_summary_us",
    "queue time": "nv_inference_queue_duration_us",
    "compute time": "nv_inference_compute_infer_duration_us",
    "batch size": "nv_inference_exec_count",
    "failures": "nv_inference_request_failure",
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def test_every_overlay_ships_the_dashboard_in_a_labelled_configmap(
    overlay_renders: list[Render],
) -> None:
    for render in overlay_renders:
        configmap = render.one("ConfigMap", DASHBOARD_CONFIGMAP)
        assert configmap["metadata"]["labels"].get(DASHBOARD_LABEL) == "1", render.name
        assert set(configmap["data"]) == {DASHBOARD_FILE.name}, render.name
        shipped = json.loads(configmap["data"][DASHBOARD_FILE.name])
        assert shipped == load_dashboard(), render.name


def test_dashboard_is_well_formed(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = dashboard["panels"]
    assert panels
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        where = f"panel {panel['id']} {panel.get('title')!r}"
        assert panel["title"] and panel["type"] in {"timeseries", "stat"}, where
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}, where
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, where
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), where
        assert all(target["expr"].strip() for target in panel["targets"]), where


def test_every_dashboard_query_parses_with_promtool(
    dashboard: dict[str, Any], tmp_path: Path
) -> None:
    exprs = {
        key: grafana_expr(expr, TEST_VARIABLES)
        for key, expr in dashboard_expressions(dashboard).items()
    }
    variables = [v for v in dashboard["templating"]["list"] if v["type"] == "query"]
    for variable in found(variables, "query variable ($namespace)"):
        # label_values(selector, label) is Grafana's, not PromQL: its selector must parse.
        inner = variable["query"]["query"].removeprefix("label_values(").rsplit(",", 1)[0]
        exprs[f"variable_{variable['name']}"] = grafana_expr(inner, TEST_VARIABLES)
    proc = check_expressions(exprs, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in proc.stdout


def test_dashboard_shows_what_the_issue_asks_for(dashboard: dict[str, Any]) -> None:
    exprs = dashboard_expressions(dashboard)
    used = set().union(*(selector_metric_names(expr) for expr in exprs.values()))
    missing = {need: name for need, name in REQUIRED_METRICS.items() if name not in used}
    assert not missing, missing
    quantiles = " ".join(exprs.values())
    assert 'quantile="0.5"' in quantiles and 'quantile="0.99"' in quantiles


def test_every_triton_metric_of_the_dashboard_is_read_through_a_selector(
    dashboard: dict[str, Any],
) -> None:
    # selector_metric_names only sees name{...}: a bare name would escape the
    # exported-metrics check of the integration test.
    for key, expr in dashboard_expressions(dashboard).items():
        bare = {word for word in expr.replace("{", " { ").split() if word.startswith("nv_")}
        assert bare <= selector_metric_names(expr), f"{key}: {bare}"


def test_dashboard_autoscaling_panel_plots_the_adapter_rule_itself(
    dashboard: dict[str, Any],
) -> None:
    rule = adapter_rule_for(hpa_metric_name())
    expected = adapter_metrics_query(
        rule["metricsQuery"], ['job="triton"', 'namespace="$namespace"'], ["pod"]
    )
    (panel,) = [
        panel
        for panel in dashboard["panels"]
        if any(target["expr"] == expected for target in panel["targets"])
    ]
    # Its red threshold line is the HPA's target.
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [step["value"] for step in steps if step["color"] == "red"] == [
        hpa_target_average_value()
    ]


def test_latency_summaries_are_enabled_wherever_triton_runs(
    overlay_renders: list[Render], renders: dict[str, Render]
) -> None:
    # nv_inference_*_summary_us (the p50/p99 panels) exist only with this flag.
    for render in overlay_renders:
        assert "summary_latencies=true" in triton_args(render)["metrics-config"], render.name
    (runtime,) = renders["kserve"].of_kind("ServingRuntime")
    assert "--metrics-config=summary_latencies=true" in runtime["spec"]["containers"][0]["args"]
