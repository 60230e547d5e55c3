"""gRPC resolver targets (``dns:``, ``ipv4:``, ``ipv6:``) and the load-balancing policy.

No server: the targets are checked when a client is built, and the channel
options are read from what the transports hand tritonclient. The balancing
itself is proven against two real servers in
``tests/integration/test_client_balancing.py``.
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest
from client_fakes import gray, patch_cli_client

from medserve_client import TLS, AsyncClient, Client, InvalidInputError
from medserve_client._requests import grpc_channel_kwargs
from medserve_client._transport import Endpoint
from medserve_client.testing import AsyncMockTransport, MockTransport


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("dns:///triton-grpc.medserve.svc.cluster.local:8001", None),
        ("dns:///localhost", "dns:///localhost:8001"),
        ("dns:triton-grpc:9001", "dns:///triton-grpc:9001"),
        ("dns://10.96.0.10:53/triton-grpc:8001", None),
        ("dns:///[::1]:8001", None),
        ("ipv4:10.0.0.7:8001,10.0.0.8:8002", None),
        ("ipv4:10.0.0.7,10.0.0.8:9", "ipv4:10.0.0.7:8001,10.0.0.8:9"),
        (" IPV4:127.0.0.1:1 ", "ipv4:127.0.0.1:1"),
        ("ipv6:[fd00::7]:8001,[fd00::8]:8001", None),
        ("ipv6:::1", "ipv6:[::1]:8001"),
    ],
)
def test_grpc_targets_are_accepted_with_their_ports_and_balanced_round_robin(
    url: str, target: str | None
) -> None:
    for client in (Client(url), AsyncClient(url)):
        assert client.endpoint.url == (target or url.strip())
        assert client.endpoint.protocol == "grpc"
        assert client.endpoint.load_balancing == "round_robin"
        assert client.endpoint.display_url == client.endpoint.url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("dns:///", "'' is not a host name.*dns:///HOST:PORT"),
        ("dns://", "must follow a '/' after the authority"),
        ("dns://resolver:53", "must follow a '/' after the authority"),
        ("dns://bad host:53/triton:8001", "'bad host' is not a host name"),
        ("dns:/triton:8001", "three slashes"),
        ("dns:///a:8001,b:8001", "names one host; list addresses with ipv4:"),
        ("dns:///triton:http", "port 'http' is not a number"),
        ("dns:8001", "'8001' is not a host name"),
        ("ipv4:", "an address is empty.*ipv4:ADDR:PORT,ADDR:PORT"),
        ("ipv4:10.0.0.7:8001,", "an address is empty"),
        ("ipv4:10.0.0.300:8001", "'10.0.0.300' is not an IPv4 address"),
        ("ipv4:triton:8001", "'triton' is not an IPv4 address"),
        ("ipv4:10.0.0.7:70000", "port '70000' is not a number from 1 to 65535"),
        ("ipv4:10.0.0.7:0", "port '0'"),
        ("ipv6:[fd00::zz]:8001", "'fd00::zz' is not an IPv6 address"),
        ("ipv6:10.0.0.7", "is not an IPv6 address.*ipv6:\\[ADDR\\]:PORT"),
        ("consul://triton:8001", "scheme 'consul' is not supported.*dns:///HOST:PORT"),
    ],
)
def test_malformed_targets_are_refused_naming_the_expected_form(url: str, reason: str) -> None:
    with pytest.raises(InvalidInputError, match=reason):
        Client(url)


def test_a_grpc_target_over_http_is_refused_saying_http_cannot_balance() -> None:
    with pytest.raises(InvalidInputError, match="HTTP cannot balance per request"):
        Client("dns:///triton:8001", protocol="http")
    with pytest.raises(InvalidInputError, match="load_balancing is a gRPC channel setting"):
        Client("http://triton:8000", load_balancing="round_robin")


def test_the_policy_is_settable_and_validated() -> None:
    assert Client("ipv4:10.0.0.7:1,10.0.0.8:1", load_balancing="pick_first").endpoint.load_balancing
    assert Client("triton:8001").endpoint.load_balancing is None  # gRPC's own default
    # A plain host:port is resolved by DNS too: round_robin spreads over its records.
    assert Client("triton:8001", load_balancing="round_robin").endpoint.load_balancing == (
        "round_robin"
    )
    with pytest.raises(InvalidInputError, match="round_robin, pick_first, got 'roundrobin'"):
        Client("dns:///triton:8001", load_balancing="roundrobin")
    # The host of an http:// URL is a host, whatever its name.
    assert Client("http://dns:8000").endpoint.load_balancing is None


def test_the_channel_gets_the_policy_as_its_default_service_config() -> None:
    def channel_options(**kwargs: Any) -> dict[str, Any]:
        endpoint = Client(**kwargs).endpoint
        return dict(grpc_channel_kwargs(endpoint)["channel_args"])

    balanced = channel_options(url="ipv4:10.0.0.7:8001,10.0.0.8:8001")
    assert json.loads(balanced["grpc.service_config"]) == {
        "loadBalancingConfig": [{"round_robin": {}}]
    }
    first = channel_options(url="dns:///triton:8001", load_balancing="pick_first")
    assert json.loads(first["grpc.service_config"])["loadBalancingConfig"] == [{"pick_first": {}}]
    assert "grpc.service_config" not in channel_options(url="triton:8001")
    # The reconnect cap the retries rely on is kept beside it.
    assert balanced["grpc.max_reconnect_backoff_ms"] <= 1000


def test_raw_tritonclient_settings_follow_the_clients_url_rules_and_channel_options() -> None:
    import tritonclient.grpc as grpcclient

    from medserve_client.transport import grpc_client_kwargs

    target = "ipv4:10.0.0.7:8001,10.0.0.8:8001"
    settings = grpc_client_kwargs(target)
    assert settings == {"url": target, **grpc_channel_kwargs(Client(target).endpoint)}
    assert grpc_client_kwargs("grpc://triton")["url"] == "triton:8001"
    assert "grpc.service_config" not in dict(grpc_client_kwargs("triton")["channel_args"])
    grpcclient.InferenceServerClient(**settings).close()  # Every key is one it takes.
    with pytest.raises(InvalidInputError, match="implies protocol 'http'"):
        grpc_client_kwargs("https://triton")


def test_tls_to_an_address_list_needs_the_certificates_server_name() -> None:
    with pytest.raises(InvalidInputError, match=r"needs TLS\(server_name=...\)"):
        Client("ipv4:10.0.0.7:8001,10.0.0.8:8001", tls=TLS(root_certificates="ca.pem"))
    client = Client(
        "ipv4:10.0.0.7:8001,10.0.0.8:8001",
        tls=TLS(root_certificates="ca.pem", server_name="triton.medserve"),
    )
    options = dict(grpc_channel_kwargs(client.endpoint)["channel_args"])
    assert options["grpc.ssl_target_name_override"] == "triton.medserve"
    assert client.endpoint.display_url == "ipv4:10.0.0.7:8001,10.0.0.8:8001 (TLS)"
    # One address, or a DNS name, is checked against its own host: no name needed.
    assert Client("dns:///triton:8001", tls=TLS()).endpoint.ssl
    assert Client("ipv4:10.0.0.7:8001", tls=TLS()).endpoint.ssl
    with pytest.raises(InvalidInputError, match="server_name is for gRPC"):
        Client("https://triton", tls=TLS(server_name="triton"))


def test_tritonclient_takes_the_targets_as_channel_targets() -> None:
    """Both gRPC transports build their channel from the target (channels connect lazily)."""
    from medserve_client._async_transports import open_async_transport
    from medserve_client._sync_transports import open_transport

    endpoints = [
        Client(url).endpoint
        for url in ("dns:///localhost:1", "ipv4:127.0.0.1:1,127.0.0.1:2", "ipv6:[::1]:1")
    ]
    for endpoint in endpoints:
        open_transport(endpoint).close()

    async def open_and_close(endpoint: Endpoint) -> None:
        await open_async_transport(endpoint).close()

    for endpoint in endpoints:
        asyncio.run(open_and_close(endpoint))


def test_both_clients_classify_through_a_target_on_a_given_transport(
    fake: MockTransport,
) -> None:
    with Client("ipv4:10.0.0.7:8001,10.0.0.8:8001", transport=fake) as client:
        (prediction,) = client.classify(gray(10))
    assert prediction.label == "normal"

    async def run() -> str:
        async with AsyncClient("dns:///triton:8001", transport=AsyncMockTransport()) as aclient:
            (result,) = await aclient.classify(gray(240))
        return result.label

    assert asyncio.run(run()) == "lesion"


def test_cli_takes_a_grpc_target_and_a_policy(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fake: MockTransport
) -> None:
    from medserve_client import cli

    patch_cli_client(monkeypatch, fake)
    out = io.StringIO()
    url = "dns:///triton-grpc.medserve.svc.cluster.local:8001"
    assert cli.main(["--url", url, "health", "--json"], stdout=out) == 0
    assert json.loads(out.getvalue())["url"] == url
    argv = ["--url", "ipv4:10.0.0.7:8001", "--load-balancing", "pick_first", "health"]
    assert cli.main(argv, stdout=io.StringIO()) == 0
    status = cli.main(["--url", "ipv4:10.0.0.300:8001", "health"], stdout=io.StringIO())
    assert status == InvalidInputError.exit_code
    assert "is not an IPv4 address" in capsys.readouterr().err


def test_a_certificate_name_mismatch_of_an_address_list_is_a_tls_error() -> None:
    from tritonclient.utils import InferenceServerException

    from medserve_client import TLSError
    from medserve_client._transport import map_error

    endpoint = Client(
        "ipv4:10.0.0.7:8001,10.0.0.8:8001", tls=TLS(server_name="wrong.example")
    ).endpoint
    # What grpcio (1.85) answers when every address fails the name check.
    exc = InferenceServerException(
        "connections to all backends failing; last error: UNKNOWN: ipv4:10.0.0.8:8001: "
        "Custom verification check failed with error: UNAUTHENTICATED: Hostname "
        "Verification Check failed.",
        "StatusCode.UNAVAILABLE",
    )
    error = map_error(exc, endpoint=endpoint, model="medcnn", timeout_s=5.0, action="infer")
    assert isinstance(error, TLSError)
    assert "server_name" in str(error) and "(TLS)" in str(error)
