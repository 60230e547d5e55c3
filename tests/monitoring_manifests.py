"""What the monitoring manifests of k8s/ say, read from the files the cluster gets.

Usage::

    rule = adapter_rule_for(hpa_metric_name())          # prometheus-adapter-values.yaml
    query = adapter_metrics_query(rule["metricsQuery"], ['pod=~"p-0"'], ["pod"])
    target = hpa_target_average_value()                 # hpa.yaml, e.g. 10000.0
    write_rule_file(prometheus_rule, tmp_path / "rules.yaml")
    exprs = dashboard_expressions(load_dashboard())     # {"panel_3_A": "sum by ..."}
    parseable = grafana_expr(exprs["panel_3_A"], {"namespace": "medserve", "model": "medcnn"})

Nothing here copies a query or a threshold: each is read from k8s/ when asked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
K8S_BASE = REPO_ROOT / "k8s" / "base"
ADAPTER_VALUES = K8S_BASE / "prometheus-adapter-values.yaml"
HPA_FILE = K8S_BASE / "hpa.yaml"
PROMETHEUS_RULE_FILE = K8S_BASE / "prometheusrule.yaml"
DASHBOARD_FILE = K8S_BASE / "dashboards" / "medserve-triton.json"
# The prometheus-adapter fills these into a rule's metricsQuery (Go template
# syntax with << >> delimiters); adapter_metrics_query fills in the same two.
_ADAPTER_PLACEHOLDER = re.compile(r"<<\s*\.(\w+)\s*>>")
# Grafana's variables in a panel's expr: $name or ${name}.
_GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
# Grafana replaces $__rate_interval with max(4 x scrape interval, the step);
# for a parse or a test evaluation any valid range does.
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "1m"}
# A metric name used in a selector (name{...}); PromQL functions take (...).
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{")


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def hpa_metric_name() -> str:
    """The Pods metric the HPA of k8s/base/hpa.yaml scales on."""
    (metric,) = _load_yaml(HPA_FILE)["spec"]["metrics"]
    return str(metric["pods"]["metric"]["name"])


def hpa_target_average_value() -> float:
    """The HPA's per-pod target (``target.averageValue``) as a number.

    Raises:
        ValueError: The target is not a plain number (a quantity like ``10k``
            or ``500m`` would need Kubernetes' quantity rules).
    """
    (metric,) = _load_yaml(HPA_FILE)["spec"]["metrics"]
    target = metric["pods"]["target"]
    if target["type"] != "AverageValue":
        raise ValueError(f"HPA target type {target['type']!r}: expected AverageValue")
    text = str(target["averageValue"])
    if not re.fullmatch(r"\d+(\.\d+)?", text):
        raise ValueError(f"HPA averageValue {text!r} is not a plain number")
    return float(text)


def adapter_rule_for(metric_name: str) -> dict[str, Any]:
    """The prometheus-adapter rule whose ``name.as`` is ``metric_name``.

    Raises:
        LookupError: No custom rule (or more than one) defines the metric.
    """
    rules = _load_yaml(ADAPTER_VALUES)["rules"]["custom"]
    found = [rule for rule in rules if rule["name"].get("as") == metric_name]
    if len(found) != 1:
        raise LookupError(f"{len(found)} adapter rules define {metric_name} in {ADAPTER_VALUES}")
    return dict(found[0])


def adapter_metrics_query(
    template: str, label_matchers: Sequence[str], group_by: Sequence[str]
) -> str:
    """A prometheus-adapter ``metricsQuery`` as the adapter sends it for a Pods metric.

    The adapter replaces ``<<.LabelMatchers>>`` by the matchers of the object
    the HPA asks about (for pods: ``namespace="ns",pod=~"a|b"``) and
    ``<<.GroupBy>>`` by the label that names it (``pod``). Everything else of
    the rule's text is kept byte for byte.

    Raises:
        ValueError: The template uses a placeholder other than these two (the
            adapter's ``<<.Series>>`` and others are not filled in here), or
            no placeholder at all.
    """
    values = {"LabelMatchers": ",".join(label_matchers), "GroupBy": ",".join(group_by)}
    used = set(_ADAPTER_PLACEHOLDER.findall(template))
    unknown = used - set(values)
    if unknown or not used:
        raise ValueError(
            f"metricsQuery placeholders {sorted(used)}: only <<.LabelMatchers>> and "
            "<<.GroupBy>> are filled in"
        )
    return _ADAPTER_PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def write_rule_file(prometheus_rule: Mapping[str, Any], path: Path) -> Path:
    """Write a PrometheusRule's ``spec.groups`` as a Prometheus rule file at ``path``."""
    path.write_text(yaml.safe_dump({"groups": prometheus_rule["spec"]["groups"]}))
    return path


def alerting_rules(prometheus_rule: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every alerting rule of a PrometheusRule, across its groups."""
    return [
        rule
        for group in prometheus_rule["spec"]["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def load_dashboard() -> dict[str, Any]:
    """The Grafana dashboard JSON that k8s/base ships in a ConfigMap."""
    return dict(json.loads(DASHBOARD_FILE.read_text(encoding="utf-8")))


def dashboard_expressions(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """Every panel query's PromQL, keyed ``panel_<id>_<refId>``."""
    return {
        f"panel_{panel['id']}_{target['refId']}": target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }


def grafana_expr(expr: str, variables: Mapping[str, str]) -> str:
    """``expr`` with Grafana's variables replaced, as Grafana sends it to Prometheus.

    Raises:
        KeyError: A variable is neither in ``variables`` nor a known builtin.
    """
    known = {**GRAFANA_BUILTINS, **variables}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in known:
            raise KeyError(f"Grafana variable ${name} in {expr!r} has no value")
        return known[name]

    return _GRAFANA_VARIABLE.sub(replace, expr)


def selector_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (``name{...}``)."""
    return set(_SELECTOR.findall(expr))
