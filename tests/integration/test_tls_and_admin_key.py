"""gRPC TLS (mutual) and admin keys on a real tritonserver started by ``medserve serve``.

Usage::

    .venv/bin/pytest tests/integration/test_server_security.py

One server for the module, started through the CLI the way a user would:
``--grpc-tls-cert/--grpc-tls-key/--grpc-tls-client-ca`` with certificates this
test's own CA signed (``tests/tls_certs.py``), and the admin key from an
environment variable. The SDK then calls it with the right, a wrong and no
TLS settings, and with and without the key.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from cli_process import stop_cli
from tls_certs import Pki, make_pki
from tritonclient.utils import InferenceServerException

from medserve.local_triton import LocalTriton
from medserve.server_security import GrpcTls, ServerSecurity
from medserve.spec import ModelSpec
from medserve_client import (
    TLS,
    Client,
    MedServeError,
    PermissionDeniedError,
    ServerUnavailableError,
    TLSError,
)

pytestmark = pytest.mark.integration

READY_TIMEOUT_S = 240.0
ADMIN_KEY = "Zm9yLXRlc3RzLW9ubHktbm90LWEtc2VjcmV0"  # 36 base64 characters
KEY_ENV = "MEDSERVE_TEST_ADMIN_KEY"


@dataclass(frozen=True)
class SecureServer:
    """The CLI's server: its addresses, what the CLI printed, and the server log."""

    grpc: str
    http: str
    printed: list[str]
    log: Path
    pki: Pki


@pytest.fixture(scope="module")
def secure_server(
    served_repo: Path, served_spec: ModelSpec, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureServer]:
    """``medserve serve`` with mutual gRPC TLS and the admin APIs behind a key."""
    root = tmp_path_factory.mktemp("secure_server")
    repo = root / "repo"
    shutil.copytree(served_repo / served_spec.name, repo / served_spec.name)
    pki = make_pki(root / "pki")
    log = root / "tritonserver.log"
    command = [
        str(Path(sys.executable).with_name("medserve")),
        "serve",
        str(repo),
        "--startup-timeout-s",
        str(READY_TIMEOUT_S),
        "--log-file",
        str(log),
        "--grpc-tls-cert",
        str(pki.server_cert),
        "--grpc-tls-key",
        str(pki.server_key),
        "--grpc-tls-client-ca",
        str(pki.ca_cert),
        "--admin-key-env",
        KEY_ENV,
    ]
    env = {**os.environ, KEY_ENV: ADMIN_KEY}
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        printed: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:  # Ends if the CLI exits; the fixture then fails below.
            printed.append(line.rstrip("\n"))
            if "stop with Ctrl-C" in line:
                break
        fields = dict(line.split(None, 1) for line in printed if line.startswith("  "))
        assert "gRPC" in fields, f"medserve serve did not start: {printed}"
        yield SecureServer(
            grpc=fields["gRPC"], http=fields["HTTP"], printed=printed, log=log, pki=pki
        )
    finally:
        stop_cli(proc)


def _image(spec: ModelSpec) -> np.ndarray:
    return np.full(spec.input_shape, 90, dtype=np.uint8)


def _mutual(pki: Pki) -> TLS:
    return TLS(
        root_certificates=pki.ca_cert,
        private_key=pki.client_key,
        certificate_chain=pki.client_cert,
    )


def test_the_cli_reports_mutual_tls_and_closed_admin_apis_without_printing_the_key(
    secure_server: SecureServer,
) -> None:
    assert any("gRPC mutual TLS" in line for line in secure_server.printed)
    assert any(
        "admin APIs need the header medserve-admin-key" in line for line in secure_server.printed
    )
    assert all(ADMIN_KEY not in line for line in secure_server.printed)
    assert ADMIN_KEY not in secure_server.log.read_text(errors="replace")


def test_a_client_with_the_ca_and_its_certificate_classifies_through_mutual_tls(
    secure_server: SecureServer, served_spec: ModelSpec
) -> None:
    with Client(secure_server.grpc, tls=_mutual(secure_server.pki)) as client:
        (prediction,) = client.classify(_image(served_spec))
    assert prediction.label in served_spec.labels
    assert client.endpoint.display_url.startswith("grpcs://")


def test_a_client_trusting_another_ca_gets_a_tls_error(
    secure_server: SecureServer, served_spec: ModelSpec
) -> None:
    wrong = TLS(
        root_certificates=secure_server.pki.other_ca_cert,
        private_key=secure_server.pki.client_key,
        certificate_chain=secure_server.pki.client_cert,
    )
    client = Client(secure_server.grpc, tls=wrong, timeout_s=20.0)
    with client, pytest.raises(TLSError, match=r"TLS handshake failed.*root_certificates"):
        client.classify(_image(served_spec))


def test_a_plaintext_client_gets_server_unavailable_suggesting_tls(
    secure_server: SecureServer, served_spec: ModelSpec
) -> None:
    client = Client(secure_server.grpc, retries=0, timeout_s=20.0)
    with client, pytest.raises(ServerUnavailableError, match=r"tls=TLS\("):
        client.classify(_image(served_spec))


def test_a_client_without_a_certificate_is_refused_by_mutual_tls(
    secure_server: SecureServer, served_spec: ModelSpec
) -> None:
    tls = TLS(root_certificates=secure_server.pki.ca_cert)
    client = Client(secure_server.grpc, tls=tls, retries=0, timeout_s=20.0)
    with client, pytest.raises(MedServeError):
        client.classify(_image(served_spec))


def test_statistics_need_the_admin_key_over_both_protocols(
    secure_server: SecureServer, served_spec: ModelSpec
) -> None:
    tls = secure_server.pki
    grpc = grpcclient.InferenceServerClient(
        secure_server.grpc.removeprefix("grpc://"),
        ssl=True,
        root_certificates=str(tls.ca_cert),
        private_key=str(tls.client_key),
        certificate_chain=str(tls.client_cert),
    )
    http = httpclient.InferenceServerClient(secure_server.http.removeprefix("http://"))
    grpc_key = {"triton-grpc-protocol-medserve-admin-key": ADMIN_KEY}
    http_key = {"medserve-admin-key": ADMIN_KEY}
    try:
        with pytest.raises(InferenceServerException, match="restricted"):
            grpc.get_inference_statistics(served_spec.name)
        with pytest.raises(InferenceServerException, match="restricted"):
            http.get_inference_statistics(served_spec.name)
        with pytest.raises(InferenceServerException, match="restricted"):
            http.get_inference_statistics(served_spec.name, headers={"medserve-admin-key": "x"})
        assert grpc.get_inference_statistics(served_spec.name, headers=grpc_key).model_stats
        stats = http.get_inference_statistics(served_spec.name, headers=http_key)
        assert stats["model_stats"][0]["name"] == served_spec.name
    finally:
        grpc.close()
        http.close()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_the_sdk_sends_the_key_for_shared_memory_and_inference_needs_none(
    secure_server: SecureServer, served_spec: ModelSpec, protocol: str
) -> None:
    url = secure_server.grpc if protocol == "grpc" else secure_server.http
    tls = _mutual(secure_server.pki) if protocol == "grpc" else None
    with Client(url, tls=tls, timeout_s=20.0) as client:
        (plain,) = client.classify(_image(served_spec))  # Inference needs no key.
    assert plain.label in served_spec.labels
    no_key = Client(url, tls=tls, shared_memory=True, timeout_s=20.0)
    with no_key, pytest.raises(PermissionDeniedError, match="admin_key="):
        no_key.classify(_image(served_spec))
    with Client(url, tls=tls, shared_memory=True, admin_key=ADMIN_KEY, timeout_s=20.0) as client:
        (shared,) = client.classify(_image(served_spec))
    np.testing.assert_allclose(shared.probabilities, plain.probabilities, rtol=0, atol=1e-6)


def test_server_tls_without_client_certificates_serves_any_client_that_trusts_the_ca(
    served_repo: Path,
    served_spec: ModelSpec,
    tmp_path: Path,
    start_server: Callable[..., LocalTriton],
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(served_repo / served_spec.name, repo / served_spec.name)
    pki = make_pki(tmp_path / "pki")
    tls = GrpcTls(server_cert=pki.server_cert, server_key=pki.server_key)
    server = start_server(repo, extra_args=ServerSecurity(grpc_tls=tls).args())

    with Client(server.grpc_url, tls=TLS(root_certificates=pki.ca_cert)) as client:
        (prediction,) = client.classify(_image(served_spec))
    assert prediction.label in served_spec.labels
    wrong = Client(server.grpc_url, tls=TLS(root_certificates=pki.other_ca_cert), timeout_s=20.0)
    with wrong, pytest.raises(TLSError):
        wrong.classify(_image(served_spec))


def test_grpc_targets_work_with_mutual_tls_and_the_admin_key(
    secure_server: SecureServer, served_spec: ModelSpec
) -> None:
    port = secure_server.grpc.rsplit(":", 1)[1]
    tls = _mutual(secure_server.pki)
    # dns:/// checks the certificate against its host, as grpcs://localhost would.
    with Client(f"dns:///localhost:{port}", tls=tls, timeout_s=20.0) as client:
        (plain,) = client.classify(_image(served_spec))
    # An address list names no host: the certificate's name is given instead
    # (the same server twice stands in for two replicas).
    addresses = f"ipv4:127.0.0.1:{port},127.0.0.1:{port}"
    named = TLS(
        root_certificates=tls.root_certificates,
        private_key=tls.private_key,
        certificate_chain=tls.certificate_chain,
        server_name="localhost",
    )
    with Client(
        addresses, tls=named, shared_memory=True, admin_key=ADMIN_KEY, timeout_s=20.0
    ) as client:
        (shared,) = client.classify(_image(served_spec))
    np.testing.assert_allclose(shared.probabilities, plain.probabilities, rtol=0, atol=1e-6)
    wrong_name = TLS(root_certificates=tls.root_certificates, server_name="not-the-server")
    client = Client(addresses, tls=wrong_name, retries=0, timeout_s=20.0)
    with client, pytest.raises(TLSError, match=r"server_name"):
        client.classify(_image(served_spec))
