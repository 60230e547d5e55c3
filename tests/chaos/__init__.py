"""Fault tests against the real local ``tritonserver``: the harness of ``make chaos``.

Usage::

    make chaos                                   # every fault, full size: prints the table
    PYTHONPATH=tests .venv/bin/python -m chaos --short --repo model_repository

    from chaos import SHORT, kill_and_restart    # what tests/integration/test_chaos.py does
    row = kill_and_restart(served_repo, tmp_path, SHORT)
    assert row.passed, row.failed_criteria()

Each fault returns a :class:`~chaos.table.FaultRow` holding what was measured
and the criteria it is held to, so the table and the tests judge alike.
Modules: ``load`` (bounded SDK load and its tally), ``callers`` (the SDK over
gRPC, HTTP and asyncio), ``memory`` (process-group RSS and exact peaks),
``servers`` (repository variants, kill, metrics), ``faults_process`` (kill -9
and restart, SIGTERM drain), ``faults_load`` (overload, soak),
``faults_input`` (bombs and garbage), ``table`` (rows and rendering).
"""

from chaos.faults_input import bombs_and_garbage
from chaos.faults_load import overload, soak
from chaos.faults_process import kill_and_restart, sigterm_drain
from chaos.settings import FULL, SHORT, Scale
from chaos.table import FaultRow, render

__all__ = [
    "FULL",
    "SHORT",
    "FaultRow",
    "Scale",
    "bombs_and_garbage",
    "kill_and_restart",
    "overload",
    "render",
    "sigterm_drain",
    "soak",
]
