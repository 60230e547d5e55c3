"""``medserve serve``: run the local Triton server on a model repository until stopped.

Usage::

    medserve serve model_repository
    medserve serve model_repository --grpc-port 8001 --http-port 8000 --follow-logs

Prints the gRPC, HTTP and metrics URLs once the server and every model are
ready, then runs until SIGINT (Ctrl-C) or SIGTERM, and stops the server and its
backend processes. Exits 1 with the reason from the server log if the server
cannot start or dies while serving.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from medserve.errors import UsageError
from medserve.server_security import (
    ADMIN_HEADER,
    ADMIN_KEY_ENV,
    GrpcTls,
    ServerSecurity,
    read_admin_key,
)

log = logging.getLogger(__name__)

_CHECK_INTERVAL_S = 0.5


def add_parser(subparsers: Any) -> None:
    """Register the ``serve`` subcommand."""
    parser = subparsers.add_parser(
        "serve",
        help="serve a model repository on a local tritonserver",
        description=(
            "Run the real tritonserver on a model repository (configs/local.pbtxt), print "
            "its URLs when every model is ready, and stop it cleanly on Ctrl-C or SIGTERM."
        ),
    )
    parser.add_argument("repo", type=Path, metavar="DIR", help="the model repository")
    parser.add_argument("--http-port", type=int, help="HTTP/REST port (default: a free one)")
    parser.add_argument("--grpc-port", type=int, help="gRPC port (default: a free one)")
    parser.add_argument("--metrics-port", type=int, help="metrics port (default: a free one)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--tritonserver",
        metavar="PATH",
        help="tritonserver binary (default: $TRITONSERVER, else the nvidia-pytriton wheel's)",
    )
    parser.add_argument(
        "--config-name",
        default="local",
        help="model config to serve, configs/<name>.pbtxt (default: %(default)s)",
    )
    parser.add_argument(
        "--startup-timeout-s",
        type=float,
        default=120.0,
        help="how long to wait for the server and every model (default: %(default)s)",
    )
    parser.add_argument(
        "--exit-timeout-s",
        type=int,
        default=10,
        help="how long in-flight requests may finish when stopping (default: %(default)s)",
    )
    parser.add_argument("--log-file", type=Path, help="server log (default: a temporary file)")
    tls = parser.add_argument_group(
        "gRPC TLS", "Triton serves TLS on gRPC itself; HTTP has no TLS inside Triton"
    )
    tls.add_argument("--grpc-tls-cert", type=Path, metavar="PEM", help="server certificate")
    tls.add_argument("--grpc-tls-key", type=Path, metavar="PEM", help="server private key")
    tls.add_argument(
        "--grpc-tls-client-ca",
        type=Path,
        metavar="PEM",
        help="CA that signs client certificates: turns on mutual TLS",
    )
    admin = parser.add_argument_group(
        "admin key",
        "close the admin APIs (model repository, shared memory, statistics, trace, logging) "
        f"behind the header {ADMIN_HEADER}; the key is read from a file or an environment "
        "variable, never from these arguments (shell history)",
    )
    source = admin.add_mutually_exclusive_group()
    source.add_argument("--admin-key-file", type=Path, metavar="FILE", help="file holding the key")
    source.add_argument(
        "--admin-key-env",
        metavar="VAR",
        help=f"environment variable holding the key (e.g. {ADMIN_KEY_ENV})",
    )
    parser.add_argument(
        "--follow-logs", action="store_true", help="copy the server log to stdout while serving"
    )


class _StopRequest:
    """Turns SIGINT/SIGTERM into an event; interrupts startup, never a stop in progress."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name = ""
        self.interrupt_startup = True

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name
        self.event.set()
        if self.interrupt_startup:
            # Startup blocks in LocalTriton.start(); leave it so its cleanup runs.
            raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Serve until a signal; returns 0 after a clean stop.

    Raises:
        ServerError: The server failed to start or died while serving.
        UsageError: The repository or the binary is missing.
    """
    from medserve.local_triton import LocalTriton
    from medserve.server_log import LogFollower

    security = _security(args)
    server = LocalTriton(
        args.repo,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        tritonserver=args.tritonserver,
        config_name=args.config_name,
        host=args.host,
        startup_timeout_s=args.startup_timeout_s,
        exit_timeout_s=args.exit_timeout_s,
        log_path=args.log_file,
        extra_args=security.args(),
        admin_headers=security.admin_headers(),
    )
    stop = _StopRequest()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    follower = LogFollower(server.log_path, sys.stdout) if args.follow_logs else None
    server.check_repository()
    try:
        if follower is not None:
            follower.start()
        print(f"starting tritonserver on {args.repo} (log: {server.log_path})", flush=True)
        try:
            server.start()
        except KeyboardInterrupt:
            print(f"medserve serve: {stop.signal_name or 'interrupted'} during startup", flush=True)
            return 130
        stop.interrupt_startup = False
        print(
            f"ready: models {', '.join(sorted(server.models))}\n"
            f"  gRPC    {server.grpc_url}\n"
            f"  HTTP    {server.http_url}\n"
            f"  metrics {server.metrics_url}\n"
            f"  security {_describe(security)}\n"
            f"  pid     {server.pid}\n"
            "stop with Ctrl-C",
            flush=True,
        )
        while not stop.event.wait(_CHECK_INTERVAL_S):
            server.check_alive()  # Raises ServerError with the log's reason.
        print(f"{stop.signal_name}: stopping tritonserver", flush=True)
        return 0
    finally:
        # A second Ctrl-C must not abort the stop and orphan the server: the
        # stop itself escalates to SIGKILL after its grace period.
        stop.interrupt_startup = False
        server.stop()
        if follower is not None:
            follower.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _security(args: argparse.Namespace) -> ServerSecurity:
    """gRPC TLS and the admin key from the arguments (the key itself from a file or env)."""
    tls = None
    if args.grpc_tls_cert or args.grpc_tls_key or args.grpc_tls_client_ca:
        if not (args.grpc_tls_cert and args.grpc_tls_key):
            raise UsageError("gRPC TLS needs both --grpc-tls-cert and --grpc-tls-key")
        tls = GrpcTls(
            server_cert=args.grpc_tls_cert,
            server_key=args.grpc_tls_key,
            client_ca=args.grpc_tls_client_ca,
        )
    key = read_admin_key(env_var=args.admin_key_env, file=args.admin_key_file)
    return ServerSecurity(grpc_tls=tls, admin_key=key)


def _describe(security: ServerSecurity) -> str:
    """One line on TLS and the admin APIs (never the key)."""
    if security.grpc_tls is None:
        grpc = "gRPC plain"
    elif security.grpc_tls.client_ca is None:
        grpc = "gRPC TLS"
    else:
        grpc = "gRPC mutual TLS"
    admin = (
        f"admin APIs need the header {ADMIN_HEADER}"
        if security.admin_key is not None
        else "admin APIs open (no admin key)"
    )
    return f"{grpc}; {admin}"
