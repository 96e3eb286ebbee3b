"""How many workers a service wants, from its queue: one policy for ECS and for the local scaler.

Each worker service scales on its backlog per worker (visible messages / running workers)
toward a target of `acceptable latency ÷ time per message`: a message that joins a backlog of
that size per worker waits about the acceptable latency. That is AWS's recommendation for queue
workers, and what `infra/` renders into Application Auto Scaling (target tracking on that metric,
min/max capacity, scale-out and scale-in cooldowns, plus a 0 → 1 step policy where the minimum
is 0, because target tracking cannot scale out from zero tasks). The local scaler in `imgproc up`
calls `ScalingPolicy.decide` with the same numbers, reading the queue directly.

Scale-out is fast (short cooldown, big steps); scale-in is cautious (long cooldown, one worker at
a time), so a burst does not make workers flap.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from imgproc_shared.resources import Stage


@dataclass(frozen=True)
class Decision:
    """What the policy wants: a worker count and the reason, for the decision log."""

    desired: int
    reason: str


@dataclass(frozen=True)
class ScalingPolicy:
    """The scaling rule of one worker service; fields map 1:1 onto ECS service autoscaling."""

    # A message joining the backlog should wait at most about this long.
    acceptable_latency_s: float
    # One worker's time per message at its concurrency (1 / messages per second per worker).
    seconds_per_message: float
    min_workers: int
    max_workers: int
    # After any change, wait this long before adding workers / before removing workers.
    scale_out_cooldown_s: float
    scale_in_cooldown_s: float
    # Most workers added / removed by one decision.
    scale_out_step: int = 4
    scale_in_step: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.acceptable_latency_s <= 0 or self.seconds_per_message <= 0:
            problems.append("latency and time per message must be positive")
        if self.min_workers < 0 or self.max_workers < max(self.min_workers, 1):
            problems.append(
                f"bounds {self.min_workers}..{self.max_workers}: need 0 <= min <= max, max >= 1"
            )
        if not 0 <= self.scale_out_cooldown_s < self.scale_in_cooldown_s:
            problems.append("the scale-out cooldown must be shorter than the scale-in cooldown")
        if not 1 <= self.scale_in_step < self.scale_out_step:
            problems.append("the scale-in step must be smaller than the scale-out step")
        if problems:
            raise ValueError("invalid scaling policy: " + "; ".join(problems))

    # -- What infra renders (ECS target tracking on backlog per task) --------------------------

    @property
    def target_backlog_per_worker(self) -> float:
        """The target value: visible messages per running worker."""
        return self.acceptable_latency_s / self.seconds_per_message

    @property
    def min_capacity(self) -> int:
        return self.min_workers

    @property
    def max_capacity(self) -> int:
        return self.max_workers

    @property
    def needs_scale_from_zero(self) -> bool:
        """Target tracking cannot leave 0 tasks: a step policy must add the first one."""
        return self.min_workers == 0

    def with_bounds(self, min_workers: int, max_workers: int) -> ScalingPolicy:
        return dataclasses.replace(self, min_workers=min_workers, max_workers=max_workers)

    # -- The rule --------------------------------------------------------------------------------

    def wanted(self, backlog: int, in_flight: int) -> int:
        """Workers for this load, before bounds, steps and cooldowns."""
        wanted = math.ceil(max(backlog, 0) / self.target_backlog_per_worker)
        if backlog > 0 or in_flight > 0:
            wanted = max(wanted, 1)  # never zero workers while work waits or runs
        return wanted

    def decide(
        self,
        now: float,
        backlog: int,
        in_flight: int,
        current_workers: int,
        last_change: float | None,
    ) -> Decision:
        """Desired workers now, given the queue and the time (seconds) of the last change.

        Pure: the caller applies the decision and records `now` as the last change when the
        count moved.
        """
        wanted = self.wanted(backlog, in_flight)
        bounded = min(max(wanted, self.min_workers), self.max_workers)
        per_worker = backlog / current_workers if current_workers else float(backlog)
        load = (
            f"backlog {backlog} ({per_worker:.1f}/worker, target "
            f"{self.target_backlog_per_worker:g}), in flight {in_flight}"
        )
        since = math.inf if last_change is None else now - last_change

        # Outside the bounds (a fresh start, or bounds changed): correct at once.
        if current_workers < self.min_workers:
            return Decision(self.min_workers, f"below minimum {self.min_workers}; {load}")
        if current_workers > self.max_workers:
            return Decision(self.max_workers, f"above maximum {self.max_workers}; {load}")

        if bounded > current_workers:
            if current_workers == 0:
                # The 0 → 1 step: messages wait and nobody takes them; no cooldown applies.
                return Decision(1, f"scale out from zero: {load}")
            if since < self.scale_out_cooldown_s:
                return Decision(current_workers, f"hold (scale-out cooldown): {load}")
            desired = min(bounded, current_workers + self.scale_out_step)
            return Decision(desired, f"scale out: {load}")
        if bounded < current_workers:
            if since < self.scale_in_cooldown_s:
                return Decision(current_workers, f"hold (scale-in cooldown): {load}")
            desired = max(bounded, current_workers - self.scale_in_step)
            return Decision(desired, f"scale in: {load}")
        return Decision(current_workers, f"steady: {load}")


@dataclass(frozen=True)
class ColdStart:
    """The worst case on AWS from a message reaching a worker queue whose service has no task
    to a task receiving it: the 0 → 1 path (the from-zero alarm, then ECS starts a task).

    Step Functions starts a callback task's heartbeat clock when it sends the message, so this
    wait counts against `task_heartbeat_s` (see `heartbeat_covers_scale_from_zero`).
    """

    # The message arrives just after SQS's one-minute sample of the queue.
    metric_sample_s: float = 60
    # SQS's queue metrics reach CloudWatch up to about a minute after the sample.
    metric_delay_s: float = 60
    # The from-zero alarm evaluates one one-minute period, then fires the step policy.
    alarm_evaluation_s: float = 60
    # Application Auto Scaling sets the desired count; ECS places the task, attaches its ENI.
    task_placement_s: float = 30
    # Pulling the largest worker image (the tagger's: ONNX Runtime and both models, a few
    # hundred MB) from ECR; the others pull faster.
    image_pull_s: float = 90
    # Python imports, the models' load, the first long poll.
    container_start_s: float = 15

    @property
    def worst_case_s(self) -> float:
        return float(sum(dataclasses.astuple(self)))


COLD_START = ColdStart()


def longest_unanswered_s(
    policy: ScalingPolicy, heartbeat_interval_s: float, cold_start: ColdStart = COLD_START
) -> float:
    """The longest a message of `policy`'s service may go without a task-token heartbeat
    when nothing is wrong: a cold start where the minimum is 0, then the acceptable queue
    wait, then the first heartbeat (the worker sends one every `heartbeat_interval_s`)."""
    start = cold_start.worst_case_s if policy.needs_scale_from_zero else 0.0
    return start + policy.acceptable_latency_s + heartbeat_interval_s


def heartbeat_covers_scale_from_zero(
    policy: ScalingPolicy,
    task_heartbeat_s: float,
    heartbeat_interval_s: float,
    cold_start: ColdStart = COLD_START,
) -> bool:
    """Whether a task can wait out a cold start without timing out (and being sent again
    while the first copy is still worked on)."""
    return task_heartbeat_s >= longest_unanswered_s(policy, heartbeat_interval_s, cold_start)


# Per-service defaults, in one place. On AWS: 60 s metric periods, so minute-scale cooldowns;
# time per message from `imgproc loadtest`. Tagging may scale to zero (it waits on Rekognition
# and starts quickly); extraction keeps one task so an upload starts at once.
POLICIES: dict[Stage, ScalingPolicy] = {
    Stage.EXTRACT: ScalingPolicy(
        acceptable_latency_s=30,
        seconds_per_message=0.05,
        min_workers=1,
        max_workers=10,
        scale_out_cooldown_s=60,
        scale_in_cooldown_s=300,
    ),
    Stage.TAG: ScalingPolicy(
        acceptable_latency_s=30,
        seconds_per_message=0.25,
        min_workers=0,
        max_workers=10,
        scale_out_cooldown_s=60,
        scale_in_cooldown_s=300,
    ),
    Stage.THUMBNAIL: ScalingPolicy(
        acceptable_latency_s=30,
        seconds_per_message=0.1,
        min_workers=1,
        max_workers=10,
        scale_out_cooldown_s=60,
        scale_in_cooldown_s=300,
    ),
}


def local_policy(
    stage: Stage,
    *,
    min_workers: int = 1,
    max_workers: int = 2,
    acceptable_latency_s: float = 5.0,
    scale_out_cooldown_s: float = 5.0,
    scale_in_cooldown_s: float = 30.0,
) -> ScalingPolicy:
    """The policy of `stage` for one machine: the same rule and time per message, with bounds
    that fit a laptop and shorter cooldowns (the local scaler reads the queue every ~1.5 s
    instead of a 60 s CloudWatch period), and a latency a person watching the page expects."""
    return dataclasses.replace(
        POLICIES[stage],
        min_workers=min_workers,
        max_workers=max_workers,
        acceptable_latency_s=acceptable_latency_s,
        scale_out_cooldown_s=scale_out_cooldown_s,
        scale_in_cooldown_s=scale_in_cooldown_s,
    )
