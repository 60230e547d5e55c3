"""checkov's Kubernetes checks pass on the rendered manifests, up to the justified skips.

checkov runs once, with no skips, over every distinct rendered object, plus
the Pod that KServe builds from k8s/kserve/ (checkov does not look inside a
ServingRuntime or an InferenceService). Each
finding must be covered by an entry of k8s/checkov-skips.yaml (check ID and
resource), and each entry must still cover a finding: the skip list is exact,
scoped to resources, and justified in one file.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_render import K8S_DIR, REPO_ROOT, Render, unique_objects
from kserve_predictor import predictor_pod

pytestmark = pytest.mark.k8s

CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"
SKIPS_FILE = K8S_DIR / "checkov-skips.yaml"
CHECKOV_TIMEOUT_S = 300


def load_skips() -> list[dict[str, Any]]:
    """The entries of k8s/checkov-skips.yaml."""
    return yaml.safe_load(SKIPS_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def checkov_findings(renders: dict[str, Render], k8s_work: Path) -> list[tuple[str, str]]:
    """``(check_id, resource)`` of every failed checkov check, skips not applied."""
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: run `make k8s-check` (it bootstraps .venv-checkov)")
    manifests = k8s_work / "checkov" / "manifests.yaml"
    manifests.parent.mkdir(exist_ok=True)
    objects = [obj for _, obj in unique_objects(renders).values()]
    objects.append(predictor_pod(renders["kserve"]))
    manifests.write_text(yaml.safe_dump_all(objects), encoding="utf-8")
    proc = subprocess.run(
        [
            str(CHECKOV),
            "--file",
            str(manifests),
            "--framework",
            "kubernetes",
            "--output",
            "json",
            # Offline: no guideline download, no telemetry, exit 0 on findings
            # (they are compared with the skip list below).
            "--skip-download",
            "--soft-fail",
        ],
        capture_output=True,
        text=True,
        timeout=CHECKOV_TIMEOUT_S,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
        check=False,
    )
    assert proc.returncode == 0, f"checkov failed to run:\n{proc.stderr[-4000:]}"
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    assert [r["check_type"] for r in reports] == ["kubernetes"]
    results = reports[0]["results"]
    summary = reports[0]["summary"]
    assert summary["parsing_errors"] == 0, summary
    assert summary["passed"] > 0, summary
    return [(f["check_id"], f["resource"]) for f in results["failed_checks"]]


def covering_skip(
    check_id: str, resource: str, skips: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The skip entry that accepts this finding, if any."""
    for skip in skips:
        if skip["id"] == check_id and any(
            fnmatch.fnmatchcase(resource, p) for p in skip["resources"]
        ):
            return skip
    return None


def test_every_checkov_skip_has_a_justification_and_resources() -> None:
    skips = load_skips()
    ids = [skip["id"] for skip in skips]
    assert len(ids) == len(set(ids)), "one entry per check ID"
    for skip in skips:
        assert skip["id"].startswith("CKV"), skip
        assert skip["resources"], f"{skip['id']}: list the resources it applies to"
        assert len(skip["why"].split()) >= 10, f"{skip['id']}: justify the skip"


def test_checkov_passes_on_rendered_manifests_with_only_the_listed_skips(
    checkov_findings: list[tuple[str, str]],
) -> None:
    skips = load_skips()
    unexplained = sorted(
        f"{check_id} on {resource}"
        for check_id, resource in set(checkov_findings)
        if covering_skip(check_id, resource, skips) is None
    )
    assert not unexplained, "checkov findings not in k8s/checkov-skips.yaml:\n" + "\n".join(
        unexplained
    )


def test_checkov_skip_list_has_no_stale_entries(checkov_findings: list[tuple[str, str]]) -> None:
    stale = []
    for skip in load_skips():
        for pattern in skip["resources"]:
            hit = any(
                check_id == skip["id"] and fnmatch.fnmatchcase(resource, pattern)
                for check_id, resource in checkov_findings
            )
            if not hit:
                stale.append(f"{skip['id']} on {pattern}")
    assert not stale, "skips that match no finding (remove them):\n" + "\n".join(stale)
