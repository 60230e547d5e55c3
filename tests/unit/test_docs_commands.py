"""The READMEs' shell commands run as written: venv tools by path, and flags the CLIs take.

Nothing is on ``PATH`` unless the venv is activated, and the READMEs say they
call the tools as ``.venv/bin/<tool>``: a bare ``medserve`` in a command block
would fail for a reader who follows them. Each ``medserve`` and
``medserve-client`` command is parsed by the real argument parser, so a
renamed or misspelt flag fails here rather than for the reader.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "client/README.md", "loadtest/README.md", "k8s/README.md")
SHELL_FENCES = {"bash", "sh", "shell", "console"}
# Console scripts and interpreters that live in .venv/bin.
VENV_TOOLS = {"medserve", "medserve-client", "locust", "pytest", "python", "pip", "ruff", "mypy"}


def shell_commands(doc: str) -> list[tuple[int, str]]:
    """``(line number, command)`` of every command in the doc's shell blocks, joined over ``\\``."""
    commands: list[tuple[int, str]] = []
    fence: str | None = None
    pending = ""
    start = 0
    for number, line in enumerate((REPO / doc).read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            fence = None if fence is not None else (line.strip()[3:] or "text")
            continue
        if fence not in SHELL_FENCES:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        commands.append((start, pending + line))
        pending = ""
    return commands


@pytest.mark.parametrize("doc", DOCS)
def test_shell_blocks_call_venv_tools_by_their_path(doc: str) -> None:
    bare = [
        f"{doc}:{number}: {command.strip()}"
        for number, command in shell_commands(doc)
        if command.split() and command.split()[0] in VENV_TOOLS
    ]
    assert not bare, "call these as .venv/bin/<tool>:\n" + "\n".join(bare)
    scripts = Path(sys.executable).parent
    for number, command in shell_commands(doc):
        for word in command.split():
            if word.startswith(".venv/bin/"):
                tool = word.removeprefix(".venv/bin/")
                assert (scripts / tool).exists(), f"{doc}:{number}: no {tool} in {scripts}"


@pytest.mark.parametrize("doc", DOCS)
def test_medserve_commands_in_the_docs_parse_with_the_real_clis(doc: str) -> None:
    from medserve.cli import build_parser as medserve_parser
    from medserve_client.cli import build_parser as client_parser

    parsers = {"medserve": lambda: medserve_parser()[0], "medserve-client": client_parser}
    checked = 0
    for number, command in shell_commands(doc):
        argv = shlex.split(command, comments=True)
        if not argv or not argv[0].startswith(".venv/bin/medserve"):
            continue
        tool = argv[0].removeprefix(".venv/bin/")
        try:
            parsers[tool]().parse_args(argv[1:])
        except SystemExit as exc:
            pytest.fail(f"{doc}:{number}: {command.strip()} does not parse (exit {exc.code})")
        checked += 1
    if doc in ("README.md", "client/README.md"):
        assert checked, f"{doc} shows no medserve command"
