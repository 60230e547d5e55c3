"""The PrometheusRule's alerts: promtool accepts them, and unit tests fire and clear each one.

The rule is taken from the rendered overlays (what `kubectl apply -k` sends),
its ``spec.groups`` written to a rule file in the test's tmp dir, and checked
by Debian's promtool (``make`` installs it). The unit tests live in
prometheus_rule_tests.yaml beside this module.
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_render import Render, found
from k8s_schemas import crd_validator
from monitoring_manifests import alerting_rules, hpa_target_average_value, write_rule_file
from prometheus_tools import promtool

pytestmark = pytest.mark.k8s

RULE_TESTS = Path(__file__).with_name("prometheus_rule_tests.yaml")
SEVERITIES = {"critical", "warning"}
RUNBOOK_MAX_CHARS = 300


@pytest.fixture(scope="module")
def prometheus_rule(overlay_renders: list[Render]) -> dict[str, Any]:
    """The PrometheusRule every overlay renders (the same object in each)."""
    rules = [render.one("PrometheusRule", "triton") for render in overlay_renders]
    for render, rule in zip(overlay_renders, rules, strict=True):
        assert rule == rules[0], f"{render.name}: a different PrometheusRule"
    return rules[0]


def _run_rule_tests(rule: dict[str, Any], work: Path) -> tuple[int, str]:
    """Run prometheus_rule_tests.yaml against ``rule``; (exit status, output)."""
    work.mkdir(parents=True, exist_ok=True)
    write_rule_file(rule, work / "rules.yaml")
    tests = shutil.copy(RULE_TESTS, work / RULE_TESTS.name)
    proc = promtool("test", "rules", str(tests), cwd=work)
    return proc.returncode, proc.stdout + proc.stderr


def test_promtool_check_rules_accepts_the_rendered_prometheus_rule(
    prometheus_rule: dict[str, Any], tmp_path: Path
) -> None:
    rules_file = write_rule_file(prometheus_rule, tmp_path / "rules.yaml")
    proc = promtool("check", "rules", str(rules_file))
    count = sum(len(group["rules"]) for group in prometheus_rule["spec"]["groups"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {count} rules found" in proc.stdout


def test_every_alert_has_a_severity_a_summary_and_a_one_line_runbook(
    prometheus_rule: dict[str, Any],
) -> None:
    alerts = alerting_rules(prometheus_rule)
    names = [alert["alert"] for alert in alerts]
    assert len(names) == len(set(names)), names
    groups = [group["name"] for group in prometheus_rule["spec"]["groups"]]
    assert len(groups) == len(set(groups)), "groups are a list map keyed by name"
    for alert in alerts:
        assert alert["labels"]["severity"] in SEVERITIES, alert["alert"]
        assert alert["annotations"]["summary"].strip(), alert["alert"]
        runbook = alert["annotations"]["runbook"]
        assert runbook.strip() and "\n" not in runbook, alert["alert"]
        assert len(runbook) <= RUNBOOK_MAX_CHARS, f"{alert['alert']}: keep the runbook short"


def test_alerts_cover_what_on_call_needs(prometheus_rule: dict[str, Any]) -> None:
    exprs = {alert["alert"]: alert["expr"] for alert in alerting_rules(prometheus_rule)}
    needs = {
        "server down": r"\bup\{",
        "not ready": r"kube_pod_status_ready\{",
        "queue time": r"nv_inference_queue_duration_us\{",
        "failure ratio": r"nv_inference_request_failure\{.*/",
        "no success while requests arrive": (
            r"unless\s+sum by \([^)]*\) \(rate\(nv_inference_request_success"
        ),
        "GPU memory": r"nv_gpu_memory_used_bytes\{",
        "GPU utilisation": r"nv_gpu_utilization\{",
        "pod memory": r"container_memory_working_set_bytes\{.*kube_pod_container_resource_limits",
    }
    missing = [
        need
        for need, pattern in needs.items()
        if not any(re.search(pattern, expr, re.DOTALL) for expr in exprs.values())
    ]
    assert not missing, f"no alert for: {missing}"


def test_queue_time_alert_is_above_the_hpa_target(prometheus_rule: dict[str, Any]) -> None:
    # Below the target, scaling out is the HPA's job; the alert is for when it cannot.
    (alert,) = [a for a in alerting_rules(prometheus_rule) if a["alert"] == "TritonQueueTimeHigh"]
    (threshold,) = re.findall(r">\s*(\d+(?:\.\d+)?)\s*$", alert["expr"])
    assert float(threshold) > hpa_target_average_value()


def test_promtool_unit_tests_fire_and_clear_every_alert(
    prometheus_rule: dict[str, Any], tmp_path: Path
) -> None:
    status, output = _run_rule_tests(prometheus_rule, tmp_path)
    # Each alert is tested firing, and cleared at a later time of the same test group.
    suite = yaml.safe_load(RULE_TESTS.read_text())
    assert suite["rule_files"] == ["rules.yaml"]
    fired_and_cleared: dict[str, list[str]] = {}
    for group in suite["tests"]:
        by_alert: dict[str, list[tuple[int, bool]]] = {}
        for case in group["alert_rule_test"]:
            by_alert.setdefault(case["alertname"], []).append(
                (_minutes(case["eval_time"]), bool(case["exp_alerts"]))
            )
        for name, cases in by_alert.items():
            assert cases == sorted(cases), f"{group['name']}: eval times out of order"
            fires = [t for t, firing in cases if firing]
            clears = [t for t, firing in cases if not firing and fires and t > fires[0]]
            if fires and clears:
                quiet = [f"quiet at {t}m, " for t, firing in cases if not firing and t < fires[0]]
                fired_and_cleared.setdefault(name, []).append(
                    f"{''.join(quiet[:1])}firing at {fires[0]}m, cleared at {clears[0]}m"
                    f" ({group['name']})"
                )
    # The closing note quotes this (pytest -s).
    print(f"promtool test rules {RULE_TESTS.name}:\n{output}")
    for name, seen in sorted(fired_and_cleared.items()):
        print(f"  {name}: " + "; ".join(seen))
    assert status == 0 and "SUCCESS" in output, output
    names = {alert["alert"] for alert in alerting_rules(prometheus_rule)}
    missing = names - set(fired_and_cleared)
    assert not missing, f"not seen firing then cleared: {missing}"


def _minutes(duration: str) -> int:
    match = re.fullmatch(r"(\d+)m", duration)
    assert match, f"eval_time {duration!r}: use whole minutes"
    return int(match.group(1))


def test_promtool_unit_tests_fail_for_every_alert_that_never_fires(
    prometheus_rule: dict[str, Any], tmp_path: Path
) -> None:
    # The unit tests can fail: with every alert's expression made empty, each
    # alert's firing case must be reported.
    silenced = copy.deepcopy(prometheus_rule)
    for alert in alerting_rules(silenced):
        alert["expr"] = "vector(1) == 0"
    status, output = _run_rule_tests(silenced, tmp_path)
    assert status != 0
    for alert in found(alerting_rules(prometheus_rule), "alerting rule"):
        assert f"alertname: {alert['alert']}," in output, alert["alert"]


def test_vendored_prometheus_rule_schema_rejects_typos_and_bad_durations(
    prometheus_rule: dict[str, Any],
) -> None:
    validator = crd_validator(("monitoring.coreos.com/v1", "PrometheusRule"))
    assert validator.is_valid(prometheus_rule)
    typo = copy.deepcopy(prometheus_rule)
    typo["spec"]["groups"][0]["rules"][0]["annotation"] = {"runbook": "x"}
    assert not validator.is_valid(typo)
    bad_for = copy.deepcopy(prometheus_rule)
    bad_for["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes"
    assert not validator.is_valid(bad_for)
    no_expr = copy.deepcopy(prometheus_rule)
    del no_expr["spec"]["groups"][0]["rules"][0]["expr"]
    assert not validator.is_valid(no_expr)
