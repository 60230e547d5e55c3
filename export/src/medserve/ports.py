"""Free and busy TCP ports for the local Triton server.

Usage::

    port = free_port()                      # the OS picks an unused port
    if port_in_use(8001):
        raise ServerError("port 8001 is already in use")

``free_port`` binds port 0 and releases it, so another process could take the
port before Triton binds it; the launcher reports that case from the server
log as "already in use" too.
"""

from __future__ import annotations

import socket

# Triton listens on all interfaces unless told otherwise; probing the same
# address finds a conflict with any listener on that port.
PROBE_HOST = "0.0.0.0"


def free_port(host: str = PROBE_HOST) -> int:
    """Return a TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = PROBE_HOST) -> bool:
    """Whether something already listens on (or holds) ``port``.

    SO_REUSEADDR is set like a server sets it, so a port that only has
    connections in TIME_WAIT from an earlier server counts as free.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_ports(count: int, host: str = PROBE_HOST) -> list[int]:
    """Return ``count`` distinct free ports (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
