"""Every ``python`` block of client/README.md runs as shown against the real server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "client" / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs_as_shown(
    index: int,
    local_triton: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MEDSERVE_URL", local_triton.grpc_url)
    exec(compile(BLOCKS[index], f"{README.name}[block {index}]", "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out.strip()  # Each example prints what it shows.
