"""How the tests fill in the prometheus-adapter rule's placeholders (adapter_metrics_query).

The integration test evaluates the HPA's metric with exactly the rule text of
k8s/base/prometheus-adapter-values.yaml; only ``<<.LabelMatchers>>`` and
``<<.GroupBy>>`` are replaced, as the adapter replaces them for a Pods metric.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from monitoring_manifests import adapter_metrics_query, adapter_rule_for, hpa_metric_name
from prometheus_tools import check_expressions

pytestmark = pytest.mark.k8s

MATCHERS = ['namespace="medserve"', 'pod=~"triton-a|triton-b"']


def test_only_the_two_placeholders_change_and_the_rest_is_the_rule_text() -> None:
    template = adapter_rule_for(hpa_metric_name())["metricsQuery"]
    query = adapter_metrics_query(template, MATCHERS, ["pod"])
    assert "<<" not in query and ">>" not in query
    expected = template.replace("<<.LabelMatchers>>", ",".join(MATCHERS)).replace(
        "<<.GroupBy>>", "pod"
    )
    assert query == expected
    assert query.count('pod=~"triton-a|triton-b"') == template.count("<<.LabelMatchers>>")


def test_filled_in_rule_is_valid_promql(tmp_path: Path) -> None:
    template = adapter_rule_for(hpa_metric_name())["metricsQuery"]
    proc = check_expressions(
        {"hpa_metric": adapter_metrics_query(template, MATCHERS, ["pod"])}, tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "template",
    [
        "sum(rate(x{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>) / <<.Series>>",
        "sum(rate(x[1m]))",
    ],
)
def test_a_placeholder_it_does_not_fill_in_is_an_error(template: str) -> None:
    with pytest.raises(ValueError, match="placeholders"):
        adapter_metrics_query(template, MATCHERS, ["pod"])
