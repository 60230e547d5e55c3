"""The load test's command-line options, declared once for locust and for the runner.

Usage::

    from locust import events
    from medserve_locust import options

    options.register(events, options.LOAD_OPTIONS)     # once, at locustfile import
    parsed = options.LoadOptions.from_environment(environment)

    parser = argparse.ArgumentParser()                 # the runner (no locust import)
    options.add_arguments(parser, options.LOAD_OPTIONS)
    argv = options.forward(parser.parse_args(), options.LOAD_OPTIONS)  # ["--model=medcnn", ...]

Every option is also an environment variable with locust's ``LOCUST_`` prefix
(``--batch-size`` is ``LOCUST_BATCH_SIZE``), and locust sends the master's
values to its workers, so a distributed run needs the options on the master only.
This module imports nothing of locust: the runner declares its command line
from the same table without pulling in locust's gevent monkey-patching.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

INPUT_MODES = ("uint8", "encoded")


@dataclass(frozen=True)
class Option:
    """One command-line option.

    Attributes:
        flag: The option as typed (``--batch-size``).
        type: Converts the text to the value.
        default: Value when the option is not given.
        help: One line for ``--help``.
        choices: Allowed values, if restricted.
    """

    flag: str
    type: Callable[[str], Any]
    default: Any
    help: str
    choices: tuple[str, ...] | None = None

    @property
    def dest(self) -> str:
        """The attribute name argparse gives the option (``batch_size``)."""
        return self.flag.lstrip("-").replace("-", "_")


LOAD_OPTIONS: tuple[Option, ...] = (
    Option("--model", str, "medcnn", "Triton model name of the classifier"),
    Option("--batch-size", int, 1, "Images per request (throughput counts them)"),
    Option(
        "--input-mode",
        str,
        "uint8",
        "uint8: a decoded tensor to MODEL; encoded: JPEG/PNG bytes to MODEL_encoded",
        choices=INPUT_MODES,
    ),
    Option("--images", str, "", "Folder of PNG/JPEG images to send (default: a generated pool)"),
    Option("--pool-size", int, 32, "Images in a generated pool"),
    Option(
        "--labels",
        str,
        "",
        "Comma-separated expected labels; the class count comes from the server if unset",
    ),
    Option("--samples-file", str, "", "Write every request's latency here (CSV)"),
    Option("--request-timeout-s", float, 60.0, "Client timeout of one request"),
    Option(
        "--max-failure-ratio",
        float,
        0.0,
        "Exit 1 when the failure ratio is above this (default: any failure)",
    ),
    Option(
        "--max-p95-ms", float, 0.0, "Exit 1 when the 95th percentile latency is above this (0: off)"
    ),
)
"""What to send to Triton and how to judge it (every scenario)."""

RAMP_OPTIONS: tuple[Option, ...] = (
    Option("--step-users", int, 4, "Users added per step"),
    Option("--step-time-s", float, 30.0, "Seconds per step"),
    Option("--max-users", int, 32, "Users of the last step"),
)
"""The step ramp's shape (``shapes/step_ramp.py``)."""

_GROUPS = {LOAD_OPTIONS: "medserve", RAMP_OPTIONS: "step ramp"}
_REGISTERED: set[str] = set()


def add_arguments(parser: Any, table: Sequence[Option], *, skip: Sequence[str] = ()) -> None:
    """Add the options of ``table`` (but not those in ``skip``) to an argparse parser.

    Args:
        parser: An ``argparse.ArgumentParser`` or locust's parser.
        table: ``LOAD_OPTIONS`` or ``RAMP_OPTIONS``.
        skip: Flags the caller sets itself.
    """
    group = parser.add_argument_group(_GROUPS.get(tuple(table), "options"))
    for option in table:
        if option.flag in skip:
            continue
        group.add_argument(
            option.flag,
            type=option.type,
            default=option.default,
            help=option.help,
            choices=option.choices,
        )


def register(events: Any, table: Sequence[Option]) -> None:
    """Add ``table`` to locust's parser (idempotent across scenario and shape files)."""
    name = _GROUPS.get(tuple(table), "options")
    if name in _REGISTERED:
        return
    _REGISTERED.add(name)
    events.init_command_line_parser.add_listener(lambda parser: add_arguments(parser, table))


def forward(namespace: argparse.Namespace, table: Sequence[Option]) -> list[str]:
    """``--flag=value`` for every option of ``table`` that ``namespace`` holds."""
    return [
        f"{option.flag}={getattr(namespace, option.dest)}"
        for option in table
        if hasattr(namespace, option.dest)
    ]


def parsed_value(environment: Any, option: Option) -> Any:
    """The value of ``option`` in a locust ``environment`` (its default if absent)."""
    value = getattr(getattr(environment, "parsed_options", None), option.dest, None)
    return option.default if value is None else option.type(value)


_DEFAULTS = {option.dest: option.default for option in LOAD_OPTIONS}


@dataclass(frozen=True, kw_only=True)
class LoadOptions:
    """The parsed ``LOAD_OPTIONS`` of one locust process."""

    model: str = _DEFAULTS["model"]
    batch_size: int = _DEFAULTS["batch_size"]
    input_mode: str = _DEFAULTS["input_mode"]
    images: str = _DEFAULTS["images"]
    pool_size: int = _DEFAULTS["pool_size"]
    labels: tuple[str, ...] = ()
    samples_file: str = _DEFAULTS["samples_file"]
    request_timeout_s: float = _DEFAULTS["request_timeout_s"]
    max_failure_ratio: float = _DEFAULTS["max_failure_ratio"]
    max_p95_ms: float = _DEFAULTS["max_p95_ms"]

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
        values = {option.dest: parsed_value(environment, option) for option in LOAD_OPTIONS}
        labels = (item.strip() for item in str(values.pop("labels")).split(","))
        return cls(**values, labels=tuple(label for label in labels if label))
