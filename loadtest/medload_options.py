"""Command-line options shared by the medserve locustfiles, and their parsed form.

Usage::

    from locust import events
    import medload_options

    medload_options.register(events)                  # once, at locustfile import
    options = medload_options.LoadOptions.from_environment(environment)

Every option is also an environment variable with locust's ``LOCUST_`` prefix
(``--batch-size`` is ``LOCUST_BATCH_SIZE``), and locust sends the master's
values to its workers, so a distributed run needs the options on the master only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

INPUT_MODES = ("uint8", "encoded")
_REGISTERED: list[bool] = []


def _add_options(parser: Any) -> None:
    group = parser.add_argument_group("medserve", "What to send to Triton and how to judge it")
    group.add_argument("--model", default="medcnn", help="Triton model name of the classifier")
    group.add_argument(
        "--batch-size", type=int, default=1, help="Images per request (throughput counts them)"
    )
    group.add_argument(
        "--input-mode",
        choices=INPUT_MODES,
        default="uint8",
        help="uint8: a decoded tensor to MODEL; encoded: JPEG/PNG bytes to MODEL_encoded",
    )
    group.add_argument(
        "--images",
        default="",
        help="Folder of PNG/JPEG images to send (default: a generated pool)",
    )
    group.add_argument("--pool-size", type=int, default=32, help="Images in a generated pool")
    group.add_argument(
        "--labels",
        default="",
        help="Comma-separated expected labels; the class count comes from the server if unset",
    )
    group.add_argument(
        "--samples-file",
        default="",
        help="Write every request's latency here (CSV) for exact percentiles",
    )
    group.add_argument(
        "--request-timeout-s", type=float, default=60.0, help="Client timeout of one request"
    )
    group.add_argument(
        "--max-failure-ratio",
        type=float,
        default=0.0,
        help="Exit 1 when the failure ratio is above this (default: any failure)",
    )
    group.add_argument(
        "--max-p95-ms",
        type=float,
        default=0.0,
        help="Exit 1 when the 95th percentile latency is above this (0: no limit)",
    )


def register(events: Any) -> None:
    """Add the medserve options to locust's parser (idempotent across locustfiles)."""
    if _REGISTERED:
        return
    _REGISTERED.append(True)
    events.init_command_line_parser.add_listener(_add_options)


@dataclass(frozen=True, kw_only=True)
class LoadOptions:
    """The parsed medserve options of one locust process."""

    model: str = "medcnn"
    batch_size: int = 1
    input_mode: str = "uint8"
    images: str = ""
    pool_size: int = 32
    labels: tuple[str, ...] = ()
    samples_file: str = ""
    request_timeout_s: float = 60.0
    max_failure_ratio: float = 0.0
    max_p95_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.input_mode not in INPUT_MODES:
            raise ValueError(f"--input-mode must be one of {INPUT_MODES}, got {self.input_mode!r}")
        if self.pool_size < 1:
            raise ValueError(f"--pool-size must be at least 1, got {self.pool_size}")

    @classmethod
    def from_environment(cls, environment: Any) -> LoadOptions:
        """Read the options from ``environment.parsed_options`` (defaults if absent)."""
        parsed = getattr(environment, "parsed_options", None)

        def get(name: str, default: Any) -> Any:
            value = getattr(parsed, name, None)
            return default if value is None else value

        labels = tuple(item.strip() for item in str(get("labels", "")).split(",") if item.strip())
        return cls(
            model=str(get("model", "medcnn")),
            batch_size=int(get("batch_size", 1)),
            input_mode=str(get("input_mode", "uint8")),
            images=str(get("images", "")),
            pool_size=int(get("pool_size", 32)),
            labels=labels,
            samples_file=str(get("samples_file", "")),
            request_timeout_s=float(get("request_timeout_s", 60.0)),
            max_failure_ratio=float(get("max_failure_ratio", 0.0)),
            max_p95_ms=float(get("max_p95_ms", 0.0)),
        )
