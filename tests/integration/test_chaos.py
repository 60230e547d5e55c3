"""Faults done to a real tritonserver under SDK load: the short form of ``make chaos``.

Usage::

    .venv/bin/pytest tests/integration/test_chaos.py      # ~2 minutes on 2 shared cores
    make chaos                                            # the same faults, full size, a table

Each test runs one fault of :mod:`chaos` (tests/chaos) at the short scale and
asserts every criterion of its row: the harness measures, the row judges, so
the table of ``make chaos`` and these tests cannot disagree. The process faults
and the overload get private classifier-only servers; bombs and the soak go
to the session server, which serves every model of the export.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos import (
    SHORT,
    FaultRow,
    bombs_and_garbage,
    kill_and_restart,
    overload,
    sigterm_drain,
    soak,
)
from medserve.local_triton import LocalTriton

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


def _check(row: FaultRow) -> None:
    assert row.passed, (
        f"{row.fault}: failed {row.failed_criteria()}; {row.outcome}; {row.failures}; "
        f"{row.examples}"
    )


def test_kill_9_and_restart_under_load_loses_no_call_with_default_settings(
    served_repo: Path, tmp_path: Path
) -> None:
    row = kill_and_restart(served_repo, tmp_path, SHORT)
    _check(row)
    assert row.lost == 0 and row.hangs == 0


def test_sigterm_answers_every_request_already_in_flight(served_repo: Path, tmp_path: Path) -> None:
    row = sigterm_drain(served_repo, tmp_path, SHORT)
    _check(row)
    assert row.made == SHORT.held_requests and row.lost == 0


def test_overload_far_past_the_queue_is_rejected_fast_and_typed_and_the_server_stays_correct(
    served_repo: Path, tmp_path: Path
) -> None:
    _check(overload(served_repo, tmp_path, SHORT))


def test_bombs_and_garbage_to_every_model_are_refused_and_memory_stays_bounded(
    local_triton: LocalTriton,
) -> None:
    row = bombs_and_garbage(local_triton, SHORT)
    _check(row)
    assert "medcnn_encoded" in row.fault and "medcnn_preprocess" in row.fault


def test_a_soak_under_steady_load_keeps_resident_memory_flat(local_triton: LocalTriton) -> None:
    _check(soak(local_triton, SHORT))
