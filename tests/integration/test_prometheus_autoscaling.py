"""The autoscaling signal, the alerts and the dashboard on a real Prometheus scraping a real Triton.

A Prometheus server (Debian's, installed by ``make``) scrapes the metrics port
of a tritonserver that serves the session's exported classifier with the
metrics flags of k8s/base/deployment.yaml, under the labels the
ServiceMonitor's scrape adds in a cluster (job, namespace, pod). The HPA's
metric is evaluated with the prometheus-adapter rule read from
k8s/base/prometheus-adapter-values.yaml, its two placeholders filled in as the
adapter fills them for one pod (monitoring_manifests.adapter_metrics_query),
and compared with the target read from k8s/base/hpa.yaml.

The values seen are printed and written to ``autoscaling_signal.json`` in the
test's tmp dir::

    .venv/bin/pytest tests/integration/test_prometheus_autoscaling.py -s -k burst
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from monitoring_manifests import (
    PROMETHEUS_RULE_FILE,
    adapter_metrics_query,
    adapter_rule_for,
    dashboard_expressions,
    grafana_expr,
    hpa_metric_name,
    hpa_target_average_value,
    load_dashboard,
    selector_metric_names,
    write_rule_file,
)
from prometheus_tools import (
    PrometheusServer,
    Samples,
    ScrapeTarget,
    exported_names,
    poll_until,
    values,
)

from medserve.local_triton import LocalTriton
from medserve.spec import ModelSpec

pytestmark = pytest.mark.integration

DEPLOYMENT_FILE = Path(__file__).resolve().parents[2] / "k8s" / "base" / "deployment.yaml"
STARTUP_TIMEOUT_S = 240.0
# What a ServiceMonitor scrape of one replica labels its series with.
JOB, NAMESPACE, POD = "triton", "medserve", "triton-5d8c9b7f6-local"
# Enough concurrent requests that most wait in the queue behind several
# running batches (max_batch_size 16), even where a batch takes only a few ms.
BURST_CONCURRENCY = 128
# The burst goes on until this many polls in a row see the metric above target.
ABOVE_POLLS = 5
# Deadlines, not sleeps: the burst runs until the metric crosses the target;
# after it, the rule's rate window (1m) must slide past the last request.
SCRAPED_TIMEOUT_S = 60.0
CROSS_TIMEOUT_S = 120.0
FALL_TIMEOUT_S = 180.0
# Triton exports nv_gpu_* only where it sees a GPU (not on this CPU machine);
# `up` is Prometheus's own. Names from Triton's metrics documentation.
NOT_FROM_A_CPU_TRITON = {
    "nv_gpu_utilization",
    "nv_gpu_memory_used_bytes",
    "nv_gpu_memory_total_bytes",
}
NOT_FROM_TRITON = {"up"}
DASHBOARD_VARIABLES = {"namespace": NAMESPACE, "model": "medcnn"}


def deployment_metrics_flags() -> list[str]:
    """The ``--metrics-config`` args of the Triton container in k8s/base/deployment.yaml."""
    deployment = yaml.safe_load(DEPLOYMENT_FILE.read_text(encoding="utf-8"))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return [arg for arg in container["args"] if arg.startswith("--metrics-config=")]


@dataclass
class Monitored:
    """A tritonserver and the Prometheus that scrapes it."""

    triton: LocalTriton
    prometheus: PrometheusServer
    spec: ModelSpec


@pytest.fixture(scope="module")
def monitored(
    served_repo: Path, served_spec: ModelSpec, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Monitored]:
    """The classifier alone on its own server (no other test's traffic), scraped every second."""
    root = tmp_path_factory.mktemp("prometheus_autoscaling")
    repo = root / "model_repository"
    shutil.copytree(served_repo / served_spec.name, repo / served_spec.name)
    rule = yaml.safe_load(PROMETHEUS_RULE_FILE.read_text(encoding="utf-8"))
    rules_file = write_rule_file(rule, root / "rules.yaml")
    triton = LocalTriton(
        repo,
        startup_timeout_s=STARTUP_TIMEOUT_S,
        log_path=root / "tritonserver.log",
        extra_args=deployment_metrics_flags(),
    )
    triton.start()
    try:
        address = triton.metrics_url.removeprefix("http://").removesuffix("/metrics")
        target = ScrapeTarget(JOB, address, {"namespace": NAMESPACE, "pod": POD})
        with PrometheusServer(root / "prometheus", [target], rule_files=[rules_file]) as prom:
            yield Monitored(triton, prom, served_spec)
    finally:
        triton.stop()


@dataclass
class Burst:
    """Concurrent single-image requests from a background thread until stopped."""

    grpc_url: str
    spec: ModelSpec
    concurrency: int
    sent: int = 0
    failed: int = 0
    first_error: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Burst:
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=60)

    async def _run(self) -> None:
        import tritonclient.grpc.aio as aio
        from tritonclient.grpc import InferInput

        height, width = self.spec.image_size
        image = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
        async with aio.InferenceServerClient(self.grpc_url) as client:

            async def worker() -> None:
                while not self._stop.is_set():
                    request = InferInput(self.spec.input_name, list(image.shape), "UINT8")
                    request.set_data_from_numpy(image)
                    self.sent += 1
                    try:
                        await client.infer(self.spec.name, [request])
                    except Exception as exc:  # Counted and reported by the test.
                        self.failed += 1
                        self.first_error = self.first_error or str(exc)[:300]

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))


def _one_value(samples: Samples) -> float | None:
    found = values(samples)
    assert len(found) <= 1, f"one pod, one value: {samples}"
    return found[0] if found else None


def _value(samples: Samples) -> float:
    value = _one_value(samples)
    assert value is not None, samples
    return value


def test_hpa_metric_crosses_its_target_under_a_burst_and_falls_back_when_idle(
    monitored: Monitored, tmp_path: Path
) -> None:
    prometheus = monitored.prometheus
    metric = hpa_metric_name()
    rule = adapter_rule_for(metric)
    target = hpa_target_average_value()
    # The adapter discovers the metric: its seriesQuery finds Triton's series,
    # named as the rule's `name.matches` expects, with the labels it maps to pods.
    prometheus.wait_for(f"count({rule['seriesQuery']})", bool, timeout_s=SCRAPED_TIMEOUT_S)
    series = prometheus.api("series", **{"match[]": rule["seriesQuery"]})
    assert series, f"seriesQuery {rule['seriesQuery']!r} found nothing"
    for labels in series:
        assert re.search(rule["name"]["matches"], labels["__name__"]), labels
        assert set(rule["resources"]["overrides"]) <= set(labels), labels
    query = adapter_metrics_query(
        rule["metricsQuery"], [f'namespace="{NAMESPACE}"', f'pod=~"{POD}"'], ["pod"]
    )
    seen: list[tuple[str, float, float | None]] = []
    started = time.monotonic()

    def record(phase: str) -> Any:
        return lambda samples: seen.append(
            (phase, round(time.monotonic() - started, 1), _one_value(samples))
        )

    def below(samples: Samples) -> bool:
        value = _one_value(samples)
        return value is not None and value < target

    polls_above: list[float] = []

    def sustained_above(samples: Samples) -> bool:
        value = _one_value(samples)
        if value is None or value <= target:
            polls_above.clear()
        else:
            polls_above.append(value)
        return len(polls_above) >= ABOVE_POLLS

    baseline = _value(
        prometheus.wait_for(query, below, timeout_s=SCRAPED_TIMEOUT_S, on_poll=record("before"))
    )
    burst_started = time.monotonic()
    with Burst(monitored.triton.grpc_url, monitored.spec, BURST_CONCURRENCY) as burst:
        prometheus.wait_for(
            query, sustained_above, timeout_s=CROSS_TIMEOUT_S, on_poll=record("burst")
        )
        burst_s = time.monotonic() - burst_started
    burst_stopped = time.monotonic()
    fallen = _value(
        prometheus.wait_for(query, below, timeout_s=FALL_TIMEOUT_S, on_poll=record("after"))
    )
    fall_s = time.monotonic() - burst_stopped
    assert burst.sent > burst.failed, burst.first_error
    report = {
        "metric": metric,
        "query": query,
        "hpa_target": target,
        "value_before_burst": baseline,
        "values_above_target_in_a_row": polls_above,
        "max_value_during_burst": max(v for p, _, v in seen if p == "burst" and v is not None),
        "burst_s": round(burst_s, 1),
        "burst_concurrency": BURST_CONCURRENCY,
        "burst_requests_sent": burst.sent,
        "burst_requests_failed": burst.failed,
        "burst_first_error": burst.first_error,
        "max_value_after_burst": max(v for p, _, v in seen if p == "after" and v is not None),
        "value_when_fallen_back": fallen,
        "fell_back_s_after_burst": round(fall_s, 1),
        "polled": [{"phase": p, "t_s": t, "value": v} for p, t, v in seen],
    }
    (tmp_path / "autoscaling_signal.json").write_text(json.dumps(report, indent=2))
    summary = {k: v for k, v in report.items() if k != "polled"}
    print(f"autoscaling signal ({tmp_path / 'autoscaling_signal.json'}):")
    print(json.dumps(summary, indent=2))
    assert baseline < target < min(polls_above)
    assert fallen < target


def test_prometheus_rule_evaluates_cleanly_on_real_triton_metrics(monitored: Monitored) -> None:
    prometheus = monitored.prometheus
    prometheus.wait_for(f'up{{job="{JOB}"}} == 1', bool, timeout_s=SCRAPED_TIMEOUT_S)

    def all_evaluated() -> list[dict[str, Any]] | None:
        rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
        return rules if all(not r["lastEvaluation"].startswith("0001-") for r in rules) else None

    rules = poll_until(all_evaluated, timeout_s=SCRAPED_TIMEOUT_S, what="every rule evaluated")
    source = yaml.safe_load(PROMETHEUS_RULE_FILE.read_text(encoding="utf-8"))
    assert {r["name"] for r in rules} == {
        r["alert"] for g in source["spec"]["groups"] for r in g["rules"]
    }
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
    states = {r["name"]: r["state"] for r in rules}
    # A healthy, scraped server: neither down alert is even pending.
    assert states["TritonNoReplicaUp"] == states["TritonTargetDown"] == "inactive", states


def test_dashboard_reads_only_metrics_triton_exports_and_every_query_answers(
    monitored: Monitored,
) -> None:
    import tritonclient.grpc as grpcclient

    spec = monitored.spec
    height, width = spec.image_size
    with grpcclient.InferenceServerClient(monitored.triton.grpc_url) as client:
        # Some traffic, so the latency summaries have observations to report.
        for _ in range(3):
            request = grpcclient.InferInput(spec.input_name, [1, height, width, 3], "UINT8")
            request.set_data_from_numpy(np.zeros((1, height, width, 3), dtype=np.uint8))
            client.infer(spec.name, [request])
    with urllib.request.urlopen(monitored.triton.metrics_url, timeout=10) as response:
        exported = exported_names(response.read().decode())
    exprs = dashboard_expressions(load_dashboard())
    used = set().union(*(selector_metric_names(expr) for expr in exprs.values()))
    unknown = used - exported - NOT_FROM_A_CPU_TRITON - NOT_FROM_TRITON
    assert not unknown, f"the dashboard reads metrics Triton 2.51 does not export: {unknown}"
    for key, expr in exprs.items():
        query = grafana_expr(expr, DASHBOARD_VARIABLES)
        if selector_metric_names(expr) & NOT_FROM_A_CPU_TRITON:
            assert monitored.prometheus.query(query) == [], key  # Parses and evaluates.
            continue
        monitored.prometheus.wait_for(query, bool, timeout_s=SCRAPED_TIMEOUT_S)
