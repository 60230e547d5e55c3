"""Client-side balancing across two real tritonservers behind one gRPC target.

Usage::

    .venv/bin/pytest tests/integration/test_client_balancing.py -q -s   # -s prints the split

Two wheel tritonservers serve the classifier (a classifier-only copy of the
session's exported repository, :func:`chaos.servers.classifier_repo`, so each
start costs one TensorFlow import). The SDK dials both through one static
list, ``ipv4:127.0.0.1:P1,127.0.0.1:P2``; each server's statistics API says
how many images it inferred, so the split is measured by the servers, not by
the client. Then one server is killed (``kill -9`` of its process group)
under load, and every call must still return the right answer.
``dns:///localhost:PORT`` is exercised against the session server, which also
serves the explain model.
The locust gRPC scenario (``loadtest/run``, headless) dials the same list
with one user: one channel, so only per-request balancing can give both
servers a share.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.grpc as grpcclient
from loadtest_process import run_loadtest
from PIL import Image

from chaos.load import HANG_AFTER_S, LoadRun
from chaos.servers import classifier_repo, start_server
from chaos.settings import sample_images
from medserve.local_triton import LocalTriton
from medserve.spec import ModelSpec
from medserve_client import AsyncClient, Client, contract

pytestmark = pytest.mark.integration

MODEL = "medcnn"
# Each call carries one image, so a server's inference_count counts calls.
CALLS = 48
THREADS = 4
# Round-robin alternates exactly between ready servers; the slack covers the
# first calls of a fresh channel, sent before its second connection is ready.
FAIR_SLACK = CALLS // 6
# The kill: calls that must succeed before it and after it.
FLOW_CALLS = 24
IMAGES = 8
ATOL = 1e-5
# The locust run: one user (one channel), long enough for dozens of requests.
LOCUST_RUN_TIME = "8s"
LOCUST_MIN_REQUESTS = 12


class Pair:
    """Two servers on one repository; a killed one is replaced on a new port."""

    def __init__(self, repo: Path, work: Path) -> None:
        self.repo = repo
        self.work = work
        self.servers: list[LocalTriton] = []
        self._starts = 0

    def start_missing(self) -> None:
        """Start servers until two are alive (a test may have killed one)."""
        alive = [server for server in self.servers if server.is_alive()]
        for server in self.servers:
            if server not in alive:
                server.stop()
        self.servers = alive
        while len(self.servers) < 2:
            self._starts += 1
            log = self.work / f"triton-{self._starts}.log"
            self.servers.append(start_server(self.repo, log_path=log))

    def stop(self) -> None:
        """Stop both servers."""
        for server in self.servers:
            server.stop()

    @property
    def target(self) -> str:
        """The static list of both gRPC addresses."""
        return "ipv4:" + ",".join(f"127.0.0.1:{server.grpc_port}" for server in self.servers)


@pytest.fixture(scope="module")
def pair_of_servers(served_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Two classifier-only servers for the module (stopped at its end)."""
    work = tmp_path_factory.mktemp("balancing")
    pair = Pair(classifier_repo(served_repo, work / "repo", model=MODEL), work)
    try:
        yield pair
    finally:
        pair.stop()


@pytest.fixture
def pair(pair_of_servers: Pair) -> Pair:
    """Both servers, alive."""
    pair_of_servers.start_missing()
    return pair_of_servers


@pytest.fixture(scope="module")
def images(served_spec: ModelSpec) -> list[npt.NDArray[np.uint8]]:
    """Distinct images of the served size."""
    return sample_images(served_spec.image_size, IMAGES, seed=14)


def _expected(url: str, images: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
    """The probabilities of ``images`` from one server (every server serves the same model)."""
    with Client(url, model=MODEL) as client:
        return np.stack([p.probabilities for p in client.classify(list(images))])


def _inferred(server: LocalTriton) -> int:
    """Images the server's classifier inferred so far (its statistics API)."""
    with grpcclient.InferenceServerClient(server.grpc_url) as stats:
        return contract.settled_snapshot(stats, MODEL)[MODEL].inference_count


def _split(pair: Pair, send: Any) -> list[int]:
    """Images each server inferred while ``send()`` ran."""
    before = [_inferred(server) for server in pair.servers]
    send()
    return [_inferred(server) - count for server, count in zip(pair.servers, before, strict=True)]


def _send_blocking(client: Client, images: Sequence[Any], expected: npt.NDArray[Any]) -> None:
    def one(index: int) -> None:
        (prediction,) = client.classify(images[index % len(images)])
        np.testing.assert_allclose(
            prediction.probabilities, expected[index % len(images)], atol=ATOL
        )

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(CALLS)))


def _check_fair(what: str, split: list[int]) -> None:
    """Every call counted once, and each server's share within the slack of half."""
    print(f"\n{what}: {CALLS} calls, inference_count diffs {split}")  # The closing note's figure.
    assert sum(split) == CALLS
    assert abs(split[0] - split[1]) <= FAIR_SLACK, split


def test_round_robin_over_an_ipv4_list_gives_both_servers_a_fair_share(
    pair: Pair, images: list[npt.NDArray[np.uint8]]
) -> None:
    expected = _expected(pair.servers[0].grpc_url, images)
    with Client(pair.target, model=MODEL) as client:
        assert client.endpoint.load_balancing == "round_robin"
        client.model_info()  # Connects; the statistics window starts after it.
        split = _split(pair, lambda: _send_blocking(client, images, expected))
    _check_fair(f"Client round_robin over {pair.target}", split)


def test_the_async_client_balances_the_same_target(
    pair: Pair, images: list[npt.NDArray[np.uint8]]
) -> None:
    expected = _expected(pair.servers[0].grpc_url, images)

    async def send() -> None:
        async with AsyncClient(pair.target, model=MODEL) as client:
            await client.model_info()
            before = [_inferred(server) for server in pair.servers]
            indices = range(CALLS)
            answers = await asyncio.gather(*(client.classify(images[i % IMAGES]) for i in indices))
        for index, (prediction,) in enumerate(answers):
            np.testing.assert_allclose(
                prediction.probabilities, expected[index % IMAGES], atol=ATOL
            )
        after = [_inferred(server) for server in pair.servers]
        split.extend(a - b for a, b in zip(after, before, strict=True))

    split: list[int] = []
    asyncio.run(send())
    _check_fair(f"AsyncClient round_robin over {pair.target}", split)


def test_the_locust_grpc_scenario_spreads_one_users_requests_over_an_ipv4_list(
    pair: Pair, tmp_path: Path
) -> None:
    before = [_inferred(server) for server in pair.servers]
    code, summary, log = run_loadtest(
        tmp_path, "--host", pair.target, "--users", "1", "--spawn-rate", "1",
        "--run-time", LOCUST_RUN_TIME, "--labels", "normal,lesion", timeout_s=180.0,
    )  # fmt: skip
    split = [_inferred(server) - count for server, count in zip(pair.servers, before, strict=True)]
    requests = summary["throughput"]["requests"]
    print(
        f"\nlocust classify_grpc, 1 user, {LOCUST_RUN_TIME} over {pair.target}: "
        f"{requests} requests, inference_count diffs {split}"
    )  # The closing note's figure.
    assert code == 0, log[-3000:]
    assert summary["failures"]["count"] == 0
    assert requests >= LOCUST_MIN_REQUESTS, summary["throughput"]
    # The servers count what locust counted, plus the one request in flight at the stop.
    assert requests <= sum(split) <= requests + 1, (requests, split)
    # One channel: pick_first (a connection per user) would give one server everything.
    assert abs(split[0] - split[1]) <= max(2, sum(split) // 6), split
    # One statistics client would read one of the two: the runner says so instead.
    assert "several servers" in summary["server"]


def test_pick_first_sends_every_call_to_one_server_of_the_list(
    pair: Pair, images: list[npt.NDArray[np.uint8]]
) -> None:
    # The policy is what spreads the calls: gRPC's default pins them.
    expected = _expected(pair.servers[0].grpc_url, images)
    with Client(pair.target, model=MODEL, load_balancing="pick_first") as client:
        client.model_info()
        split = _split(pair, lambda: _send_blocking(client, images, expected))
    assert sorted(split) == [0, CALLS]


def test_killing_one_server_under_load_loses_no_call(
    pair: Pair, images: list[npt.NDArray[np.uint8]]
) -> None:
    expected = _expected(pair.servers[0].grpc_url, images)
    victim, survivor = pair.servers
    with Client(pair.target, model=MODEL) as client:
        client.model_info()

        def call(worker: int) -> None:
            index = worker % IMAGES
            (prediction,) = client.classify(images[index])
            # A wrong answer counts as a lost call (an untyped failure of the load).
            np.testing.assert_allclose(prediction.probabilities, expected[index], atol=ATOL)

        survivor_before = _inferred(survivor)
        load = LoadRun(
            call,
            workers=THREADS,
            max_calls=10 * FLOW_CALLS,
            max_duration_s=240.0,
            hang_after_s=HANG_AFTER_S,
        )
        with load:
            flowing = load.wait_for_ok(FLOW_CALLS)
            assert victim.pid is not None
            os.killpg(victim.pid, signal.SIGKILL)  # The server and its stub, calls in flight.
            after_kill = load.tally().made  # Calls started so far (some after the kill).
            victim.stop()  # Reaps the group.
            resumed = load.wait_for_ok(after_kill + FLOW_CALLS)
        tally = load.stop()
    served_by_survivor = _inferred(survivor) - survivor_before
    print(
        f"\nkill -9 of one of {pair.target} after {after_kill} calls started: "
        f"{tally.made} calls, {tally.ok} ok, "
        f"lost {tally.lost} ({tally.failures()}); the survivor inferred {served_by_survivor}"
    )
    assert flowing and resumed, tally.failures()
    assert tally.lost == 0 and tally.hung == 0, (tally.failures(), tally.examples)
    assert tally.ok == tally.made
    # Every call started after the kill was answered by the survivor.
    assert served_by_survivor >= tally.made - after_kill
    assert not victim.is_alive()


def test_a_dns_target_classifies_explains_and_serves_the_cli(
    local_triton: LocalTriton, served_spec: ModelSpec, tmp_path: Path
) -> None:
    # localhost resolves to 127.0.0.1 (served) and possibly ::1 (not): round-robin
    # uses the addresses that connect.
    url = f"dns:///localhost:{local_triton.grpc_port}"
    image = np.full(served_spec.input_shape, 90, dtype=np.uint8)
    with Client(local_triton.grpc_url) as direct:
        (reference,) = direct.classify(image)
    with Client(url) as client:
        (prediction,) = client.classify(image)
        (explanation,) = client.explain(image)
    assert client.endpoint.load_balancing == "round_robin"
    np.testing.assert_allclose(prediction.probabilities, reference.probabilities, atol=ATOL)
    assert explanation.heatmap.shape == served_spec.image_size

    async def classify_async() -> Any:
        async with AsyncClient(url) as aclient:
            return (await aclient.classify(image))[0]

    asynced = asyncio.run(classify_async())
    np.testing.assert_allclose(asynced.probabilities, reference.probabilities, atol=ATOL)

    from medserve_client import cli

    path = tmp_path / "scan.png"
    Image.fromarray(image).save(path)
    out = io.StringIO()
    assert cli.main(["--url", url, "classify", str(path), "--json"], stdout=out) == 0
    assert json.loads(out.getvalue())["label"] == reference.label
