"""``medserve serve``'s TLS and admin-key flags, built and checked without a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from medserve.errors import UsageError
from medserve.server_security import (
    RESTRICTED_APIS,
    GrpcTls,
    ServerSecurity,
    read_admin_key,
)

KEY = "c2VjcmV0LWFkbWluLWtleS0wMDAx"


def _files(tmp_path: Path, *names: str) -> list[Path]:
    paths = [tmp_path / name for name in names]
    for path in paths:
        path.write_text("PEM")
    return paths


def test_tls_args_switch_to_mutual_tls_with_a_client_ca(tmp_path: Path) -> None:
    cert, key, ca = _files(tmp_path, "server.pem", "server.key", "ca.pem")
    assert GrpcTls(server_cert=cert, server_key=key).args() == [
        "--grpc-use-ssl=true",
        f"--grpc-server-cert={cert}",
        f"--grpc-server-key={key}",
    ]
    mutual = GrpcTls(server_cert=cert, server_key=key, client_ca=ca).args()
    assert mutual[0] == "--grpc-use-ssl-mutual=true" and f"--grpc-root-cert={ca}" in mutual


def test_a_missing_certificate_file_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    (cert,) = _files(tmp_path, "server.pem")
    with pytest.raises(UsageError, match=r"server key .*missing\.key"):
        GrpcTls(server_cert=cert, server_key=tmp_path / "missing.key")


def test_the_admin_key_restricts_the_admin_apis_of_both_protocols_like_the_manifests() -> None:
    security = ServerSecurity(admin_key=KEY)
    restriction = f"{','.join(RESTRICTED_APIS)}:medserve-admin-key={KEY}"
    assert security.args() == [
        f"--http-restricted-api={restriction}",
        f"--grpc-restricted-protocol={restriction}",
    ]
    assert security.admin_headers() == {"medserve-admin-key": KEY}
    assert KEY not in repr(security)
    manifest = (Path(__file__).parents[2] / "k8s" / "base" / "deployment.yaml").read_text()
    assert f"--http-restricted-api={','.join(RESTRICTED_APIS)}:medserve-admin-key=" in manifest


def test_no_key_leaves_the_admin_apis_open() -> None:
    assert ServerSecurity().args() == [] and ServerSecurity().admin_headers() == {}


@pytest.mark.parametrize("key", ["short", "has:colon-1234567890", "has space 1234567890", ""])
def test_keys_triton_would_cut_or_that_are_too_short_are_refused(key: str) -> None:
    with pytest.raises(UsageError, match="openssl rand"):
        ServerSecurity(admin_key=key)


def test_the_key_comes_from_a_file_or_an_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "admin.key"
    path.write_text(KEY + "\n")
    assert read_admin_key(file=path) == KEY
    monkeypatch.setenv("TEST_ADMIN_KEY", KEY)
    assert read_admin_key(env_var="TEST_ADMIN_KEY") == KEY
    assert read_admin_key() is None
    monkeypatch.delenv("TEST_ADMIN_KEY")
    with pytest.raises(UsageError, match=r"TEST_ADMIN_KEY .*unset"):
        read_admin_key(env_var="TEST_ADMIN_KEY")
    with pytest.raises(UsageError, match="cannot read"):
        read_admin_key(file=tmp_path / "absent.key")


def test_serve_takes_no_key_on_its_command_line() -> None:
    import argparse

    from medserve.cli import serve

    parser = argparse.ArgumentParser()
    serve.add_parser(parser.add_subparsers())
    args = parser.parse_args(["serve", "repo", "--admin-key-file", "k", "--grpc-tls-cert", "c"])
    assert (args.admin_key_file, args.grpc_tls_cert) == (Path("k"), Path("c"))
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "repo", "--admin-key", KEY])
