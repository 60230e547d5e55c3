"""Every command exits by one table: 2 for the user's input, 3 when no server answers.

The client commands call a real socket on which nothing listens (a free port:
connection refused, over real gRPC and HTTP clients), so "unavailable" is the
real failure, not a fake one; the model-side commands get input that does not
exist. No server is started.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from medserve.errors import MedServeError, ServerError, UsageError, VerificationError
from medserve.ports import free_ports
from medserve_client import exceptions
from medserve_client.contract import ExitStatus, exit_status_of, run_command
from medserve_client.testing import MockTransport

CLIENT_COMMANDS = (
    ["health"],
    ["info"],
    ["classify", "scan.png"],
    ["explain", "scan.png"],
)


def _client(argv: list[str]) -> int:
    from medserve_client import cli

    return cli.main(argv, stdout=io.StringIO())


@pytest.fixture(scope="module")
def nothing_listens() -> str:
    """``host:port`` of a port that was free a moment ago: connections are refused."""
    (port,) = free_ports(1)
    return f"127.0.0.1:{port}"


@pytest.mark.parametrize("command", CLIENT_COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_every_client_command_exits_3_when_no_server_answers(
    command: list[str], scheme: str, nothing_listens: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"{scheme}://{nothing_listens}"
    # A short deadline: the calls retry an unavailable server until it passes.
    assert _client(["--url", url, "--timeout-s", "1", *command]) == ExitStatus.UNAVAILABLE
    err = capsys.readouterr().err
    assert err.startswith("medserve-client: error: ") and "unavailable" in err
    assert "Traceback" not in err


def test_health_says_not_ready_on_stdout_and_why_on_stderr(
    nothing_listens: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _client(["--url", nothing_listens, "health"]) == 3
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "is tritonserver running" in captured.err


@pytest.mark.parametrize("command", CLIENT_COMMANDS, ids=lambda c: c[0])
def test_every_client_command_exits_2_on_a_bad_url_or_flag(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _client(["--url", "ftp://triton:8001", *command]) == ExitStatus.USAGE
    assert capsys.readouterr().err.startswith("medserve-client: error: ")
    with pytest.raises(SystemExit) as exited:  # argparse's own usage error
        _client([*command, "--no-such-flag"])
    assert exited.value.code == ExitStatus.USAGE


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--data", "{missing}", "--output", "{tmp}/model"],
        ["export", "{missing}/model.keras", "--repo", "{tmp}/repo", "--labels", "a,b"],
        ["verify", "{missing}"],
        ["evaluate", "{missing}/model.keras"],
        ["card", "{missing}"],
        ["serve", "{missing}"],
        ["tune", "{missing}", "--out", "{tmp}/tune"],
    ],
    ids=lambda argv: argv[0],
)
def test_every_medserve_subcommand_exits_2_on_input_that_does_not_exist(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medserve.cli import main

    filled = [a.format(missing=tmp_path / "missing", tmp=tmp_path) for a in argv]
    assert main(filled) == ExitStatus.USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"medserve {argv[0]}: error: ") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exited:
        main([argv[0], "--no-such-flag"])
    assert exited.value.code == ExitStatus.USAGE


def test_loadtest_run_exits_3_before_locust_when_no_server_answers(
    nothing_listens: str, tmp_path: Path
) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "medserve_bench.runner", "--out", str(tmp_path),
         "--host", f"grpc://{nothing_listens}", "--run-time", "30s"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == ExitStatus.UNAVAILABLE, done.stderr[-2000:]
    assert done.stderr.splitlines()[-1].startswith("loadtest/run: error: no Triton answers at")
    assert not (tmp_path / "summary.json").exists(), "locust must not have run"


def test_the_user_error_cases_cover_every_medserve_subcommand() -> None:
    import argparse

    from medserve.cli import build_parser

    parser, _ = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    marks = test_every_medserve_subcommand_exits_2_on_input_that_does_not_exist.pytestmark  # type: ignore[attr-defined]
    covered = {argv[0] for mark in marks if mark.name == "parametrize" for argv in mark.args[1]}
    assert covered == set(commands.choices)


def test_both_error_trees_take_their_statuses_from_the_one_table() -> None:
    assert {cls: int(cls.exit_code) for cls in (UsageError, VerificationError, ServerError)} == {
        UsageError: ExitStatus.USAGE,
        VerificationError: ExitStatus.FAILURE,
        ServerError: ExitStatus.FAILURE,
    }
    client = {
        exceptions.InvalidInputError: ExitStatus.USAGE,
        exceptions.ServerUnavailableError: ExitStatus.UNAVAILABLE,
        exceptions.ModelNotReadyError: ExitStatus.MODEL_NOT_READY,
        exceptions.InferenceTimeoutError: ExitStatus.TIMEOUT,
        exceptions.ServerOverloadedError: ExitStatus.OVERLOADED,
        exceptions.TLSError: ExitStatus.TLS,
        exceptions.PermissionDeniedError: ExitStatus.PERMISSION_DENIED,
        exceptions.InferenceError: ExitStatus.FAILURE,
    }
    assert {cls: exit_status_of(cls("x")) for cls in client} == client
    assert exit_status_of(ValueError("not ours")) == ExitStatus.FAILURE


def test_run_command_reports_both_trees_in_one_line_and_lets_bugs_through() -> None:
    err = io.StringIO()

    def raises(exc: BaseException) -> int:
        raise exc

    unavailable = exceptions.ServerUnavailableError("no server at grpc://x:1")
    assert run_command(lambda: raises(unavailable), prog="demo", stderr=err) == 3
    usage = UsageError("no such file")
    assert run_command(lambda: raises(usage), prog="demo", errors=(MedServeError,), stderr=err) == 2
    assert run_command(lambda: raises(KeyboardInterrupt()), prog="demo", stderr=err) == 130
    assert err.getvalue().splitlines() == [
        "demo: error: no server at grpc://x:1",
        "demo: error: no such file",
        "demo: interrupted",
    ]
    with pytest.raises(ZeroDivisionError):
        run_command(lambda: 1 // 0, prog="demo", stderr=err)


def test_the_demos_closing_command_serves_where_the_clients_defaults_call() -> None:
    import shlex

    from medserve.cli import build_parser
    from medserve.demo import serve_command
    from medserve_client._core import parse_url
    from medserve_client.cli import DEFAULT_URL
    from medserve_client.cli import build_parser as client_parser

    argv = shlex.split(serve_command(Path("model_repository")))
    assert Path(argv[0]).name == "medserve" and Path(argv[0]).is_file(), argv[0]
    args = build_parser()[0].parse_args(argv[1:])
    assert args.command == "serve" and args.repo == Path("model_repository")
    # The CLI's default URL (without $MEDSERVE_URL) is the SDK's gRPC default.
    assert client_parser().get_default("url") in (DEFAULT_URL, *filter(None, [_env_url()]))
    address, protocol, ssl = parse_url(DEFAULT_URL, None)
    host, port = address.rsplit(":", 1)
    assert (protocol, ssl) == ("grpc", False)
    assert (args.host, args.grpc_port) == (host, int(port))
    assert args.http_port == int(parse_url(f"http://{host}", None)[0].rsplit(":", 1)[1])


def _env_url() -> str | None:
    import os

    return os.environ.get("MEDSERVE_URL")


class _LoadingServer(MockTransport):
    """A fake server that answers but is not ready yet (models loading)."""

    def server_ready(self, *, timeout_s: float) -> bool:
        return False


def test_check_ready_says_which_is_missing_in_both_clients() -> None:
    import asyncio

    from medserve_client import AsyncClient, Client
    from medserve_client.testing import AsyncMockTransport

    with Client("127.0.0.1:8001", transport=MockTransport()) as client:
        client.check_ready()
    with Client("127.0.0.1:8001", model="nope", transport=MockTransport()) as client:
        with pytest.raises(exceptions.ModelNotReadyError, match="'nope' is not ready"):
            client.check_ready()
        assert client.ready() is False
    loading = Client("127.0.0.1:8001", transport=_LoadingServer())
    with loading, pytest.raises(exceptions.ServerUnavailableError, match="not ready"):
        loading.check_ready()

    async def probe(model: str, transport: Any) -> None:
        async with AsyncClient("127.0.0.1:8001", model=model, transport=transport) as client:
            await client.check_ready()

    asyncio.run(probe("medcnn", AsyncMockTransport()))
    with pytest.raises(exceptions.ModelNotReadyError):
        asyncio.run(probe("nope", AsyncMockTransport()))
    with pytest.raises(exceptions.ServerUnavailableError):
        asyncio.run(probe("medcnn", AsyncMockTransport(_LoadingServer())))


def test_health_of_a_server_still_loading_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from medserve_client import cli

    real = cli.Client
    monkeypatch.setattr(cli, "Client", lambda *a, **k: real(*a, transport=_LoadingServer(), **k))
    out = io.StringIO()
    assert cli.main(["health", "--json"], stdout=out) == ExitStatus.UNAVAILABLE
    assert '"ready": false' in out.getvalue()
    assert "still loading" in capsys.readouterr().err
