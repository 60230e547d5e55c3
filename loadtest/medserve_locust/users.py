"""What every scenario's users share: locust hooks, the target, the pool and the validator.

Usage (in a scenario file)::

    from locust import events
    from medserve_locust import users

    users.install(events)                      # options, samples, thresholds

    class MyUser(User):
        def on_start(self) -> None:
            self.work = users.Workload.prepare(self.environment, key, read_metadata)
            batch = self.work.next_batch()      # the tensor to send

Metadata is read once per process and shared by its users; the image pool is
loaded once per process too. Each user starts at a different pool offset so
that concurrent users do not send the same image at the same moment.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medserve_client import contract
from medserve_locust import options, samples, thresholds
from medserve_locust.options import LoadOptions
from medserve_locust.pool import ImagePool
from medserve_locust.validate import ResponseValidator

_TARGETS: dict[tuple[str, str, str], contract.ImageTarget] = {}
_START = itertools.count(0, 7)


def install(events: Any) -> None:
    """Register the medserve options, the sample recorder and the thresholds."""
    options.register(events, options.LOAD_OPTIONS)
    samples.install(events)
    thresholds.install(events)


def resolve_target(
    load: LoadOptions, server: str, metadata: Callable[[str], Mapping[str, Any]]
) -> contract.ImageTarget:
    """What to call, read once per process from the server's model metadata.

    Args:
        load: The parsed options (model and input mode).
        server: The server's address (part of the cache key).
        metadata: Reads one model's KServe v2 metadata (JSON form).
    """
    key = (server, load.model, load.input_mode)
    if key not in _TARGETS:
        encoded = load.input_mode == "encoded"
        entry = metadata(contract.encoded_model(load.model)) if encoded else None
        _TARGETS[key] = contract.image_target_from(metadata(load.model), entry=entry)
    return _TARGETS[key]


@dataclass
class Workload:
    """One user's view of the load: options, target, validator, pool and cursor."""

    options: LoadOptions
    target: contract.ImageTarget
    validator: ResponseValidator
    pool: ImagePool
    cursor: int = field(default_factory=lambda: next(_START))

    @classmethod
    def prepare(
        cls, environment: Any, server: str, metadata: Callable[[str], Mapping[str, Any]]
    ) -> Workload:
        """Read the options, resolve the target and load the pool for one user."""
        load = LoadOptions.from_environment(environment)
        target = resolve_target(load, server, metadata)
        return cls(
            options=load,
            target=target,
            validator=ResponseValidator.for_labels(load.labels, target.num_classes),
            pool=ImagePool.load(
                folder=load.images, image_size=target.image_size, count=load.pool_size
            ),
        )

    @property
    def batch_size(self) -> int:
        """Images per request."""
        return self.options.batch_size

    def next_batch(self) -> np.ndarray:
        """The next ``batch_size`` images as the target's input (pixels or encoded bytes)."""
        data = self.pool.batch(self.cursor, self.batch_size, encoded=self.target.encoded)
        self.cursor += self.batch_size
        return data

    def check(self, probabilities: np.ndarray | None) -> list[str]:
        """Judge one answer (raises ``WrongAnswerError``)."""
        return self.validator.check(probabilities, self.batch_size)
