"""Shape: a step ramp of users, to find where latency bends as load grows.

Usage (add it after a scenario; locust then ignores -u, -r and -t)::

    cd loadtest/medserve_locust
    locust -f scenarios/classify_grpc.py,shapes/step_ramp.py --host grpc://127.0.0.1:8001 \\
        --headless --step-users 4 --step-time-s 30 --max-users 32
    loadtest/run --shape step_ramp --step-users 4 --step-time-s 30 --max-users 32

Users grow by ``--step-users`` every ``--step-time-s`` seconds up to
``--max-users``, hold there for one more step, and the test stops: each step
is a plateau long enough to read its throughput and latency in locust's
history CSV.
"""

from __future__ import annotations

from locust import LoadTestShape, events

from medserve_locust import options

options.register(events, options.RAMP_OPTIONS)
_STEP_USERS, _STEP_TIME_S, _MAX_USERS = options.RAMP_OPTIONS


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
        environment = self.runner.environment if self.runner else None
        step = options.parsed_value(environment, _STEP_USERS)
        users = step_users(
            self.get_run_time(),
            step_users=step,
            step_time_s=options.parsed_value(environment, _STEP_TIME_S),
            max_users=options.parsed_value(environment, _MAX_USERS),
        )
        if users is None:
            return None
        # Spawn a whole step within one second so each plateau is flat.
        return users, float(step)
