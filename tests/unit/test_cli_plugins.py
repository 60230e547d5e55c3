"""``medserve`` subcommands from other distributions (entry-point group ``medserve.commands``).

The group is replaced by fakes here, so the test does not depend on what the
virtualenv happens to have installed; ``tests/integration/test_tune.py`` runs
the real ``tune`` subcommand's code.
"""

from __future__ import annotations

import argparse
from importlib.metadata import EntryPoint
from typing import Any

import pytest

import medserve.cli as cli


class _Plugin:
    """A subcommand module as a plugin provides one."""

    def __init__(self, name: str) -> None:
        self.name = name

    def add_parser(self, subparsers: Any) -> None:
        parser = subparsers.add_parser(self.name, help=f"plugin {self.name}")
        parser.add_argument("--level", type=int, default=1)

    def run(self, args: argparse.Namespace) -> int:
        return int(args.level)


def _entries(monkeypatch: pytest.MonkeyPatch, plugins: dict[str, Any]) -> None:
    entries = [EntryPoint(name, f"fake_{name}", cli.PLUGIN_GROUP) for name in plugins]

    def load(entry: EntryPoint) -> Any:
        found = plugins[entry.name]
        if isinstance(found, Exception):
            raise found
        return found

    monkeypatch.setattr(EntryPoint, "load", load)
    monkeypatch.setattr(
        cli, "entry_points", lambda group: entries if group == cli.PLUGIN_GROUP else []
    )


def test_a_registered_subcommand_is_parsed_and_run(monkeypatch: pytest.MonkeyPatch) -> None:
    _entries(monkeypatch, {"tune": _Plugin("tune")})
    assert cli.main(["tune", "--level", "3"]) == 3
    _, modules = cli.build_parser()
    assert "tune" in modules and set(cli.SUBCOMMANDS) <= set(modules)


def test_a_plugin_never_shadows_a_built_in_subcommand(monkeypatch: pytest.MonkeyPatch) -> None:
    _entries(monkeypatch, {"serve": _Plugin("serve")})
    _, modules = cli.build_parser()
    assert not isinstance(modules["serve"], _Plugin)


def test_a_plugin_whose_extra_is_missing_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    _entries(monkeypatch, {"tune": ModuleNotFoundError("No module named 'medserve_bench'")})
    _, modules = cli.build_parser()
    assert "tune" not in modules
    with pytest.raises(SystemExit):
        cli.main(["tune"])
