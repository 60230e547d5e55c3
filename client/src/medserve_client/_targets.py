"""gRPC name-resolver targets: ``dns:///host:port`` and static ``ipv4:`` / ``ipv6:`` lists.

Usage::

    target = parse_target("dns:///triton-grpc.medserve.svc.cluster.local:8001", default_port=8001)
    target.uri         # what the gRPC channel dials, port filled in
    parse_target("ipv4:10.0.0.7:8001,10.0.0.8:8001", default_port=8001).addresses
    # ("10.0.0.7:8001", "10.0.0.8:8001")

These are gRPC's own target forms (its naming document): the channel resolves
the target to every address it names (``dns:`` asks DNS, e.g. a headless
Service; ``ipv4:``/``ipv6:`` list them) and its load-balancing policy spreads
requests over them. They are checked here, before any channel exists, so a
typo is a clear :class:`~medserve_client.exceptions.InvalidInputError` naming
the expected form, not a channel that never connects.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from medserve_client._errors import InvalidInputError

#: The resolver schemes gRPC ships (besides ``unix:``, which has one address).
RESOLVER_SCHEMES = ("dns", "ipv4", "ipv6")
#: Load-balancing policies of gRPC's channel that need no extra setup.
LB_POLICIES = ("round_robin", "pick_first")

_FORMS = {
    "dns": "dns:///HOST:PORT or dns://DNS_SERVER:PORT/HOST:PORT",
    "ipv4": "ipv4:ADDR:PORT,ADDR:PORT (e.g. ipv4:10.0.0.7:8001,10.0.0.8:8001)",
    "ipv6": "ipv6:[ADDR]:PORT,[ADDR]:PORT (e.g. ipv6:[fd00::7]:8001,[fd00::8]:8001)",
}
# Host names (a headless Service's FQDN, with or without the final dot) and IPv4 literals.
_HOST_NAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_.])?$")


@dataclass(frozen=True)
class ResolverTarget:
    """A checked gRPC target.

    Attributes:
        scheme: ``dns``, ``ipv4`` or ``ipv6``.
        uri: The target the channel dials, every port explicit.
        addresses: ``host:port`` of each entry (one name for ``dns:``).
    """

    scheme: str
    uri: str
    addresses: tuple[str, ...]


def resolver_scheme(url: str) -> str | None:
    """The resolver scheme ``url`` starts with (``dns:``, ``ipv4:``, ``ipv6:``), or None."""
    head, sep, _ = url.strip().partition(":")
    return head.lower() if sep and head.lower() in RESOLVER_SCHEMES else None


def parse_target(url: str, *, default_port: int) -> ResolverTarget:
    """Check a gRPC resolver target and fill in missing ports.

    Args:
        url: ``dns:[//AUTHORITY]/HOST[:PORT]``, ``dns:HOST[:PORT]``,
            ``ipv4:ADDR[:PORT],...`` or ``ipv6:[ADDR]:PORT,...``.
        default_port: The port of entries that name none.

    Raises:
        InvalidInputError: Not one of these forms, with the expected form named.
    """
    text = url.strip()
    scheme = resolver_scheme(text)
    if scheme is None:
        raise InvalidInputError(f"{url!r} is not a dns:, ipv4: or ipv6: target")
    rest = text.split(":", 1)[1]
    if scheme == "dns":
        return _dns(url, rest, default_port)
    entries = rest.split(",")
    if not all(entry.strip() for entry in entries):
        raise _invalid(url, scheme, "an address is empty")
    parse = _ipv4_entry if scheme == "ipv4" else _ipv6_entry
    addresses = tuple(parse(url, entry.strip(), default_port) for entry in entries)
    return ResolverTarget(scheme=scheme, uri=f"{scheme}:{','.join(addresses)}", addresses=addresses)


def check_lb_policy(policy: str) -> str:
    """Validate a load-balancing policy name (``round_robin`` or ``pick_first``)."""
    if policy not in LB_POLICIES:
        raise InvalidInputError(
            f"load_balancing must be one of {', '.join(LB_POLICIES)}, got {policy!r}"
        )
    return policy


def _dns(url: str, rest: str, default_port: int) -> ResolverTarget:
    authority = ""
    if rest.startswith("//"):
        authority, slash, rest = rest[2:].partition("/")
        if not slash:
            raise _invalid(url, "dns", "the host:port must follow a '/' after the authority")
        if authority:
            _host_port(url, "dns", authority, default_port=53)
    elif rest.startswith("/"):
        raise _invalid(url, "dns", "use three slashes (dns:///HOST:PORT) or none")
    if "," in rest:
        raise _invalid(url, "dns", "a dns: target names one host; list addresses with ipv4:")
    address = _host_port(url, "dns", rest, default_port)
    return ResolverTarget(scheme="dns", uri=f"dns://{authority}/{address}", addresses=(address,))


def _host_port(url: str, scheme: str, text: str, default_port: int) -> str:
    if text.startswith("["):  # An IPv6 literal: [addr] or [addr]:port.
        inside, _, after = text[1:].partition("]")
        _ip(url, scheme, inside, ipaddress.IPv6Address)
        port = _port(url, scheme, after[1:] if after.startswith(":") else after, default_port)
        return f"[{inside}]:{port}"
    host, _, port_text = text.partition(":")
    if not host or not _HOST_NAME.match(host) or host.isdigit():
        raise _invalid(url, scheme, f"{host!r} is not a host name")
    return f"{host}:{_port(url, scheme, port_text, default_port)}"


def _ipv4_entry(url: str, entry: str, default_port: int) -> str:
    host, _, port_text = entry.partition(":")
    _ip(url, "ipv4", host, ipaddress.IPv4Address)
    return f"{host}:{_port(url, 'ipv4', port_text, default_port)}"


def _ipv6_entry(url: str, entry: str, default_port: int) -> str:
    if not entry.startswith("["):
        # A bare address cannot carry a port (its colons are the address's).
        _ip(url, "ipv6", entry, ipaddress.IPv6Address)
        return f"[{entry}]:{default_port}"
    return _host_port(url, "ipv6", entry, default_port)


def _ip(
    url: str,
    scheme: str,
    text: str,
    kind: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address],
) -> None:
    try:
        kind(text)
    except ValueError:
        name = "IPv4" if kind is ipaddress.IPv4Address else "IPv6"
        raise _invalid(url, scheme, f"{text!r} is not an {name} address") from None


def _port(url: str, scheme: str, text: str, default: int) -> int:
    if not text:
        return default
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise _invalid(url, scheme, f"port {text!r} is not a number from 1 to 65535")
    return int(text)


def _invalid(url: str, scheme: str, why: str) -> InvalidInputError:
    return InvalidInputError(f"target {url!r} is not valid: {why}; use {_FORMS[scheme]}")
