"""Shape: a step ramp of users, to find where latency bends as load grows.

Usage (add it after a scenario; locust then ignores -u, -r and -t)::

    locust -f loadtest/locustfile_grpc.py,loadtest/shape_step_ramp.py \\
        --host grpc://127.0.0.1:8001 --headless --step-users 4 --step-time-s 30 --max-users 32
    loadtest/run --shape step --step-users 4 --step-time-s 30 --max-users 32

Users grow by ``--step-users`` every ``--step-time-s`` seconds up to
``--max-users``, hold there for one more step, and the test stops: each step
is a plateau long enough to read its throughput and latency in locust's
history CSV.
"""

from __future__ import annotations

from typing import Any

from locust import LoadTestShape, events

_REGISTERED: list[bool] = []


def _add_options(parser: Any) -> None:
    group = parser.add_argument_group("step ramp", "The users of shape_step_ramp.py")
    group.add_argument("--step-users", type=int, default=4, help="Users added per step")
    group.add_argument("--step-time-s", type=float, default=30.0, help="Seconds per step")
    group.add_argument("--max-users", type=int, default=32, help="Users of the last step")


if not _REGISTERED:
    _REGISTERED.append(True)
    events.init_command_line_parser.add_listener(_add_options)


def step_users(
    run_time_s: float, *, step_users: int, step_time_s: float, max_users: int
) -> int | None:
    """Users at ``run_time_s`` of the ramp, or ``None`` once the ramp is over.

    Args:
        run_time_s: Seconds since the test started.
        step_users: Users added per step (also the first step's users).
        step_time_s: Length of one step.
        max_users: Ceiling; the ramp holds it for one step, then ends.
    """
    if step_users < 1 or step_time_s <= 0 or max_users < 1:
        raise ValueError("step users, step time and max users must be positive")
    steps_to_max = -(-max_users // step_users)  # ceil
    step = int(run_time_s // step_time_s)
    if step > steps_to_max:
        return None
    return min(max_users, (step + 1) * step_users)


class StepRamp(LoadTestShape):
    """Adds users in equal steps, holds the top step, then stops."""

    def tick(self) -> tuple[int, float] | None:
        """Return ``(users, spawn rate)`` for now, or ``None`` to stop."""
        options = self.runner.environment.parsed_options if self.runner else None
        step = int(getattr(options, "step_users", 4) or 4)
        users = step_users(
            self.get_run_time(),
            step_users=step,
            step_time_s=float(getattr(options, "step_time_s", 30.0) or 30.0),
            max_users=int(getattr(options, "max_users", 32) or 32),
        )
        if users is None:
            return None
        # Spawn a whole step within one second so each plateau is flat.
        return users, float(step)
