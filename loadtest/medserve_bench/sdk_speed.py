"""The SDK at wire speed: ``classify_many`` against plain tritonclient loops, in the same run.

Usage::

    from medserve_bench.sdk_speed import measure_sdk_rows

    report = measure_sdk_rows("127.0.0.1:8001", "medcnn", concurrency=16, images=480, rounds=3)
    for row in report.rows:   # one per variant: median images/s, per round, ratio to its baseline
        print(row.variant, row.images_per_s, row.ratio)

    python -m medserve_bench.sdk_speed --url 127.0.0.1:8001 --concurrency 16 --images 480
    python -m medserve_bench.sdk_speed --repo model_repository   # starts a local Triton

Four variants classify the same ``images`` uint8 images (at the model's input
size) with ``concurrency`` requests in flight, one image per request, against
the same server:

- ``tritonclient threads``: ``concurrency`` threads sharing one
  ``tritonclient.grpc`` client, each looping ``InferInput`` /
  ``set_data_from_numpy`` / ``infer`` / ``as_numpy``; the blocking baseline.
- ``Client.classify_many``: the SDK, blocking, the same images as numpy arrays.
- ``tritonclient aio``: ``concurrency`` asyncio tasks sharing one
  ``tritonclient.grpc.aio`` client; the asyncio baseline.
- ``AsyncClient.classify_many``: the SDK, asyncio.

Why the async SDK is compared with the aio loop: both run every request on
one event loop in one thread, so their ratio is what the SDK itself costs.
Against the thread loop it would also measure grpc.aio against threaded gRPC,
which no SDK change can move; that ratio is reported too (``vs_threads``),
labelled as such.

Why arrays and not files: the plain loop sends ready tensors, so the SDK gets
the same tensors (its pixel pipeline still checks and passes them through).
Decoding costs are :mod:`client/benchmarks/preprocess_bench`'s subject.

Each round runs every variant once, in an order rotated from round to round
so drift on a shared machine favours none;
rows report medians over rounds and the ratio is the median of the per-round
ratios (variant / baseline of the same round). Two figures explain a ratio
whatever the machine's load: the client process's CPU time per image (the
load generator shares the machine's cores with the server, so client CPU is
taken from the server), and the mean number of requests on the wire (the sum
of the requests' round trips over the wall time; a variant that leaves
requests unsent shows it there). Every variant's answers are compared with the
baseline's (same probabilities within :data:`ATOL`); a mismatch raises
:class:`~medserve_locust.validate.WrongAnswerError`, since a fast wrong answer
measures nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medserve_client import AsyncClient, Client, ModelInfo, Prediction
from medserve_locust.pool import ImagePool
from medserve_locust.validate import WrongAnswerError

log = logging.getLogger("loadtest.sdk_speed")

RAW_THREADS = "tritonclient threads"
SDK_BLOCKING = "Client.classify_many"
RAW_AIO = "tritonclient aio"
SDK_ASYNC = "AsyncClient.classify_many"
VARIANTS = (RAW_THREADS, SDK_BLOCKING, RAW_AIO, SDK_ASYNC)
#: The baseline each variant's ratio is taken against (baselines have none).
BASELINE = {SDK_BLOCKING: RAW_THREADS, SDK_ASYNC: RAW_AIO}
#: Probabilities of the same image may differ this much between variants
#: (a different dynamic batch may round differently).
ATOL = 1e-4
_DEADLINE_S = 120.0

Probabilities = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SdkRow:
    """One variant over all rounds.

    Attributes:
        variant: One of :data:`VARIANTS`.
        baseline: The variant of :data:`BASELINE` its ratio uses (None for a baseline).
        images_per_s: Median over rounds.
        by_round: Images per second of each round, in round order.
        ratio: Median over rounds of (this / baseline of the same round); None for a baseline.
        vs_threads: The same against the thread loop (asyncio variants only).
        cpu_ms_per_image: Median CPU time of the client process per image.
        in_flight: Median of the mean requests on the wire: the sum of every
            request's round trip over the pass's wall time. Below
            ``concurrency`` when the variant leaves requests unsent.
    """

    variant: str
    baseline: str | None
    images_per_s: float
    by_round: tuple[float, ...]
    ratio: float | None
    vs_threads: float | None
    cpu_ms_per_image: float
    in_flight: float


@dataclass(frozen=True)
class SdkSpeedReport:
    """What :func:`measure_sdk_rows` measured, with how."""

    url: str
    model: str
    concurrency: int
    images: int
    rounds: int
    orders: tuple[tuple[str, ...], ...]
    rows: tuple[SdkRow, ...]

    def row(self, variant: str) -> SdkRow:
        """The row of ``variant``."""
        return next(r for r in self.rows if r.variant == variant)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    def markdown(self) -> str:
        """A table: variant, median images/s, per round, ratio, client CPU, requests in flight."""
        lines = [
            f"SDK vs plain tritonclient: {self.model} at {self.url}, {self.concurrency} in "
            f"flight, {self.images} images, {self.rounds} rounds (medians)",
            "",
            "| variant | images/s | by round | ratio | vs thread loop | client CPU ms/image "
            "| mean in flight |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
        ]
        for r in self.rows:
            ratio = f"{r.ratio:.2f} of {r.baseline}" if r.ratio is not None else "baseline"
            versus = f"{r.vs_threads:.2f}" if r.vs_threads is not None else ""
            rounds = ", ".join(f"{x:.1f}" for x in r.by_round)
            lines.append(
                f"| {r.variant} | {r.images_per_s:.1f} | {rounds} | {ratio} | {versus} "
                f"| {r.cpu_ms_per_image:.2f} | {r.in_flight:.1f} |"
            )
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _Run:
    images_per_s: float
    cpu_ms_per_image: float
    in_flight: float
    probabilities: Probabilities


@dataclass(frozen=True)
class _Answers:
    """One pass's probabilities (in input order) and the sum of its requests' round trips."""

    probabilities: Probabilities
    wire_s: float


def round_orders(variants: Sequence[str], rounds: int) -> list[tuple[str, ...]]:
    """Each round's order: the variants rotated by the round number (each leads in turn)."""
    orders = []
    for rnd in range(rounds):
        shift = rnd % len(variants)
        orders.append(tuple(variants[shift:]) + tuple(variants[:shift]))
    return orders


class _Variants:
    """The clients of every variant, opened once and reused by every round."""

    def __init__(self, url: str, model: str, info: ModelInfo, concurrency: int) -> None:
        import tritonclient.grpc as grpcclient

        self.model, self.info, self.concurrency = model, info, concurrency
        self._grpc = grpcclient
        self._raw = grpcclient.InferenceServerClient(url)
        self._sdk = Client(url, model=model, protocol="grpc", timeout_s=_DEADLINE_S)
        self._sdk.model_info()  # Metadata, config and labels are read before the clock starts.
        self._loop = asyncio.new_event_loop()
        self._aio: Any = None
        self._async_sdk = AsyncClient(url, model=model, protocol="grpc", timeout_s=_DEADLINE_S)

        async def open_async() -> None:
            import tritonclient.grpc.aio as aio

            self._aio = aio.InferenceServerClient(url)
            await self._async_sdk.model_info()

        self._loop.run_until_complete(open_async())

    def close(self) -> None:
        """Close every client and the event loop."""
        try:
            self._sdk.close()
            self._raw.close()

            async def close_async() -> None:
                await self._async_sdk.close()
                if self._aio is not None:
                    await self._aio.close()

            self._loop.run_until_complete(close_async())
        finally:
            self._loop.close()

    def run(self, variant: str, images: Sequence[npt.NDArray[np.uint8]]) -> _Run:
        """Classify ``images`` with ``variant``; time and CPU of the whole pass."""
        calls: dict[str, Callable[[Sequence[npt.NDArray[np.uint8]]], _Answers]] = {
            RAW_THREADS: self._raw_threads,
            SDK_BLOCKING: self._sdk_blocking,
            RAW_AIO: lambda batch: self._loop.run_until_complete(self._raw_aio(batch)),
            SDK_ASYNC: lambda batch: self._loop.run_until_complete(self._sdk_async(batch)),
        }
        cpu, wall = time.process_time(), time.perf_counter()
        answers = calls[variant](images)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return _Run(
            images_per_s=len(images) / wall,
            cpu_ms_per_image=1000.0 * cpu / len(images),
            in_flight=answers.wire_s / wall,
            probabilities=answers.probabilities,
        )

    def _request(self, image: npt.NDArray[np.uint8], module: Any) -> tuple[list[Any], list[Any]]:
        # What a user of tritonclient writes for one image: one input, one output.
        batched = image[np.newaxis] if self.info.max_batch_size > 0 else image
        infer_input = module.InferInput(self.info.input_name, list(batched.shape), "UINT8")
        infer_input.set_data_from_numpy(batched)
        return [infer_input], [module.InferRequestedOutput(self.info.output_name)]

    def _raw_threads(self, images: Sequence[npt.NDArray[np.uint8]]) -> _Answers:
        out = np.empty((len(images), self.info.num_classes), dtype=np.float32)
        claim, wire_s = _Counter(len(images)), [0.0] * self.concurrency

        def worker(number: int) -> None:
            for index in claim:
                inputs, outputs = self._request(images[index], self._grpc)
                started = time.perf_counter()
                result = self._raw.infer(self.model, inputs, outputs=outputs)
                wire_s[number] += time.perf_counter() - started
                out[index] = result.as_numpy(self.info.output_name).reshape(-1)

        _run_threads(worker, self.concurrency)
        return _Answers(out, sum(wire_s))

    def _sdk_blocking(self, images: Sequence[npt.NDArray[np.uint8]]) -> _Answers:
        return _sdk_answers(list(self._sdk.classify_many(images, concurrency=self.concurrency)))

    async def _raw_aio(self, images: Sequence[npt.NDArray[np.uint8]]) -> _Answers:
        out = np.empty((len(images), self.info.num_classes), dtype=np.float32)
        claim, wire_s = _Counter(len(images)), [0.0] * self.concurrency

        async def worker(number: int) -> None:
            for index in claim:
                inputs, outputs = self._request(images[index], self._grpc)
                started = time.perf_counter()
                result = await self._aio.infer(self.model, inputs, outputs=outputs)
                wire_s[number] += time.perf_counter() - started
                out[index] = result.as_numpy(self.info.output_name).reshape(-1)

        await asyncio.gather(*(worker(number) for number in range(self.concurrency)))
        return _Answers(out, sum(wire_s))

    async def _sdk_async(self, images: Sequence[npt.NDArray[np.uint8]]) -> _Answers:
        stream = self._async_sdk.classify_many(images, concurrency=self.concurrency)
        return _sdk_answers([p async for p in stream])


def _sdk_answers(predictions: list[Prediction]) -> _Answers:
    # latency_ms is each request's round trip, timed around the transport call.
    probabilities = np.stack([p.probabilities for p in predictions]).astype(np.float32)
    return _Answers(probabilities, sum(p.latency_ms for p in predictions) / 1000.0)


class _Counter:
    """Hands out ``0 .. n-1`` once each to whichever worker asks (threads or tasks)."""

    def __init__(self, n: int) -> None:
        self._n, self._next, self._lock = n, 0, threading.Lock()

    def __iter__(self) -> Iterator[int]:
        while True:
            with self._lock:
                index, self._next = self._next, self._next + 1
            if index >= self._n:
                return
            yield index


def _run_threads(worker: Callable[[int], None], count: int) -> None:
    errors: list[BaseException] = []

    def guarded(number: int) -> None:
        try:
            worker(number)
        except BaseException as exc:  # Re-raised in the caller's thread below.
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,), name=f"raw-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _check_same(variant: str, got: Probabilities, expected: Probabilities) -> None:
    if got.shape != expected.shape or not np.allclose(got, expected, atol=ATOL, rtol=0.0):
        worst = float(np.abs(got - expected).max()) if got.shape == expected.shape else None
        raise WrongAnswerError(
            f"{variant} and {RAW_THREADS} answered differently "
            f"(shape {got.shape} vs {expected.shape}, largest difference {worst})"
        )


def _workload(info: ModelInfo, images: int, pool_size: int) -> list[npt.NDArray[np.uint8]]:
    pool = ImagePool.generated(min(images, pool_size), info.image_size).pixels_all
    return [pool[index % len(pool)] for index in range(images)]


def measure_sdk_rows(
    url: str,
    model: str = "medcnn",
    *,
    concurrency: int = 16,
    images: int = 480,
    rounds: int = 3,
    warmup_images: int | None = None,
    pool_size: int = 64,
    variants: Sequence[str] = VARIANTS,
    expected: Callable[[npt.NDArray[np.uint8]], npt.NDArray[Any]] | None = None,
) -> SdkSpeedReport:
    """Measure the SDK's ``classify_many`` against plain tritonclient loops on a running server.

    Args:
        url: gRPC ``host:port`` of the server.
        model: The classifier's Triton model name.
        concurrency: Requests in flight (one image each) in every variant.
        images: Images classified by each variant in each round.
        rounds: Rounds; the order of variants changes from round to round.
        warmup_images: Images each variant classifies once before the rounds
            (connections, the batcher settling); default ``2 * concurrency``.
        pool_size: Distinct generated images, cycled through.
        variants: A subset of :data:`VARIANTS`; each one's baseline is added if missing.
        expected: Probabilities the model must give for uint8 images ``[n, H, W, 3]``
            (e.g. the model called in process): the thread loop's answers are
            checked against them once, after the warm-up.

    Returns:
        A report with one :class:`SdkRow` per variant.

    Raises:
        ValueError: Bad arguments or an unknown variant.
        WrongAnswerError: A variant's probabilities differ from the thread loop's,
            or the thread loop's from ``expected``.
        medserve_client.exceptions.MedServeError: The server cannot be reached or refuses.
    """
    if concurrency < 1 or images < 1 or rounds < 1:
        raise ValueError("concurrency, images and rounds must be at least 1")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    # The thread loop is every check's reference; each variant's baseline runs too.
    wanted = {RAW_THREADS, *variants, *(BASELINE[v] for v in variants if v in BASELINE)}
    chosen = [v for v in VARIANTS if v in wanted]
    variant_set = _Variants(url, model, _model_info(url, model), concurrency)
    try:
        work = _workload(variant_set.info, images, pool_size)
        warm = work[: warmup_images if warmup_images is not None else 2 * concurrency]
        for variant in chosen:
            if warm:
                variant_set.run(variant, warm)
        if expected is not None:
            reference = np.asarray(expected(np.stack(work)), dtype=np.float32)
            _check_same(
                "the model itself", reference, variant_set.run(RAW_THREADS, work).probabilities
            )
        orders = round_orders(chosen, rounds)
        runs: list[dict[str, _Run]] = []
        for rnd, order in enumerate(orders):
            done = {variant: variant_set.run(variant, work) for variant in order}
            for variant in order:
                _check_same(variant, done[variant].probabilities, done[RAW_THREADS].probabilities)
                run_ = done[variant]
                log.info(
                    "round %d %-26s %8.1f images/s  %.2f CPU ms/image  %.1f in flight",
                    rnd, variant, run_.images_per_s, run_.cpu_ms_per_image, run_.in_flight,
                )  # fmt: skip
            runs.append(done)
    finally:
        variant_set.close()
    rows = tuple(_row(variant, runs) for variant in chosen)
    return SdkSpeedReport(url, model, concurrency, images, rounds, tuple(orders), rows)


def _model_info(url: str, model: str) -> ModelInfo:
    with Client(url, model=model, protocol="grpc", timeout_s=_DEADLINE_S) as client:
        return client.model_info()


def _row(variant: str, runs: list[dict[str, _Run]]) -> SdkRow:
    by_round = tuple(r[variant].images_per_s for r in runs)
    baseline = BASELINE.get(variant)

    def ratio_to(other: str | None) -> float | None:
        if other is None or other == variant:
            return None
        return statistics.median(r[variant].images_per_s / r[other].images_per_s for r in runs)

    return SdkRow(
        variant=variant,
        baseline=baseline,
        images_per_s=statistics.median(by_round),
        by_round=by_round,
        ratio=ratio_to(baseline),
        vs_threads=ratio_to(RAW_THREADS) if variant in (RAW_AIO, SDK_ASYNC) else None,
        cpu_ms_per_image=statistics.median(r[variant].cpu_ms_per_image for r in runs),
        in_flight=statistics.median(r[variant].in_flight for r in runs),
    )


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m medserve_bench.sdk_speed``."""
    p = argparse.ArgumentParser(
        prog="python -m medserve_bench.sdk_speed", description=__doc__.splitlines()[0]
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="gRPC host:port of a running server")
    where.add_argument("--repo", type=Path, help="start a local Triton on this repository")
    p.add_argument("--model", default="medcnn")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--images", type=int, default=480, help="images per variant per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")
    return p


def run(args: argparse.Namespace) -> SdkSpeedReport:
    """Measure as ``args`` say, starting a local Triton on ``--repo`` if given."""
    with contextlib.ExitStack() as stack:
        url = args.url
        if url is None:
            from medserve.local_triton import LocalTriton

            url = stack.enter_context(LocalTriton(args.repo)).grpc_url
        report = measure_sdk_rows(
            url, args.model, concurrency=args.concurrency, images=args.images, rounds=args.rounds
        )
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    """Entry point: prints the table."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.stdout.write(run(build_parser().parse_args(argv)).markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
