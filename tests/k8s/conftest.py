"""Fixtures of the Kubernetes manifest checks: render once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from k8s_render import Render, found, render_all


@pytest.fixture(scope="session")
def k8s_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Scratch folder for the generated kustomizations and the rendered YAML."""
    return tmp_path_factory.mktemp("k8s")


@pytest.fixture(scope="session")
def renders(k8s_work: Path) -> dict[str, Render]:
    """Every overlay/component combination and standalone kustomization, rendered."""
    return render_all(k8s_work)


@pytest.fixture(scope="session")
def overlay_renders(renders: dict[str, Render]) -> list[Render]:
    """The renders that deploy Triton (every overlay/component combination)."""
    return found((r for r in renders.values() if r.overlay is not None), "overlay render")
