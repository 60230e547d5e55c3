"""gRPC TLS and admin keys for a local ``tritonserver``: the flags, checked before it starts.

Usage::

    security = ServerSecurity(
        grpc_tls=GrpcTls(server_cert=Path("tls.crt"), server_key=Path("tls.key")),
        admin_key=read_admin_key(env_var="MEDSERVE_ADMIN_KEY"),
    )
    server = LocalTriton(repo, extra_args=security.args(), admin_headers=security.admin_headers())

TLS: Triton serves TLS on gRPC itself (``--grpc-use-ssl``; with a client CA,
``--grpc-use-ssl-mutual`` and ``--grpc-root-cert`` make it ask every client for
a certificate that CA signed). HTTP has no TLS inside Triton: put it behind a
TLS-terminating proxy or Ingress (``k8s/components/tls``).

Admin keys: the same flags as the Kubernetes manifests,
``--http-restricted-api`` and ``--grpc-restricted-protocol`` over
:data:`RESTRICTED_APIS`, with the header :data:`ADMIN_HEADER` (gRPC clients send
it as metadata ``triton-grpc-protocol-medserve-admin-key``). Inference, health,
metadata and model config stay open. Triton takes the key only on its command
line (``<apis>:<header>=<key>``), so it is visible in ``tritonserver``'s own
process arguments to the same user and to root; ``medserve serve`` therefore
reads it from an environment variable or a file (:func:`read_admin_key`), never
from its own arguments, which would land in shell history too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from medserve.errors import UsageError
from medserve_client.contract import ADMIN_KEY_HEADER

#: Header that carries the admin key (the k8s manifests use the same one).
ADMIN_HEADER = ADMIN_KEY_HEADER
#: Environment variable ``medserve serve`` reads the key from by default.
ADMIN_KEY_ENV = "MEDSERVE_ADMIN_KEY"
#: The admin APIs closed behind the key, as Triton names them.
RESTRICTED_APIS = ("model-repository", "shared-memory", "statistics", "trace", "logging")
# Triton parses "<apis>:<header>=<key>": a key with ':' ',' '=' or spaces would
# be cut or rejected; base64 and hex tokens (openssl rand -base64 32) fit.
_KEY = re.compile(r"^[A-Za-z0-9._~+/-]{16,256}$")


@dataclass(frozen=True, kw_only=True)
class GrpcTls:
    """Certificates of Triton's gRPC endpoint.

    Attributes:
        server_cert: PEM certificate (chain) of the server.
        server_key: PEM private key of the server.
        client_ca: PEM CA certificate; when set, clients must present a
            certificate this CA signed (mutual TLS).
    """

    server_cert: Path
    server_key: Path
    client_ca: Path | None = None

    def __post_init__(self) -> None:
        for what, path in (
            ("server certificate", self.server_cert),
            ("server key", self.server_key),
            ("client CA", self.client_ca),
        ):
            if path is not None and not Path(path).is_file():
                raise UsageError(f"gRPC TLS: the {what} {path} is not a readable file")

    def args(self) -> list[str]:
        """The ``tritonserver`` flags."""
        mode = "--grpc-use-ssl-mutual=true" if self.client_ca else "--grpc-use-ssl=true"
        args = [
            mode,
            f"--grpc-server-cert={Path(self.server_cert).resolve()}",
            f"--grpc-server-key={Path(self.server_key).resolve()}",
        ]
        if self.client_ca is not None:
            args.append(f"--grpc-root-cert={Path(self.client_ca).resolve()}")
        return args


@dataclass(frozen=True, kw_only=True)
class ServerSecurity:
    """What ``medserve serve`` adds to the server: gRPC TLS, admin key, or neither.

    Attributes:
        grpc_tls: Certificates for gRPC TLS; None serves plain gRPC.
        admin_key: The key that opens the admin APIs; None leaves them open.
    """

    grpc_tls: GrpcTls | None = None
    admin_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.admin_key is not None and not _KEY.match(self.admin_key):
            raise UsageError(
                "the admin key must be 16 to 256 characters of letters, digits and . _ ~ + / - "
                "(e.g. the output of: openssl rand -base64 32)"
            )

    def args(self) -> list[str]:
        """The ``tritonserver`` flags (they hold the key: never log them)."""
        args = self.grpc_tls.args() if self.grpc_tls else []
        if self.admin_key is not None:
            restriction = f"{','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}={self.admin_key}"
            args += [
                f"--http-restricted-api={restriction}",
                f"--grpc-restricted-protocol={restriction}",
            ]
        return args

    def admin_headers(self) -> dict[str, str]:
        """HTTP headers that open the admin APIs (empty when they are open anyway)."""
        return {ADMIN_HEADER: self.admin_key} if self.admin_key is not None else {}


def read_admin_key(*, env_var: str | None = None, file: Path | None = None) -> str | None:
    """The admin key from a file or an environment variable; None when neither is given.

    Args:
        env_var: Name of an environment variable holding the key.
        file: A file holding the key (one line; surrounding whitespace ignored).

    Raises:
        UsageError: Both or an empty source were given, or the file cannot be read.
    """
    if env_var and file:
        raise UsageError("give the admin key either in a file or in an environment variable")
    if file is not None:
        try:
            key = Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"cannot read the admin key file {file}: {exc.strerror}") from exc
        if not key:
            raise UsageError(f"the admin key file {file} is empty")
        return key
    if env_var:
        key = os.environ.get(env_var, "").strip()
        if not key:
            raise UsageError(f"the environment variable {env_var} holding the admin key is unset")
        return key
    return None
