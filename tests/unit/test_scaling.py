"""The scaling policy's decisions over a simulated backlog curve, and its invariants."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from imgproc_shared.resources import Stage
from imgproc_shared.scaling import POLICIES, ScalingPolicy, local_policy

POLICY = ScalingPolicy(
    acceptable_latency_s=10,
    seconds_per_message=0.5,  # target: 20 visible messages per worker
    min_workers=1,
    max_workers=6,
    scale_out_cooldown_s=10,
    scale_in_cooldown_s=60,
    scale_out_step=3,
    scale_in_step=1,
)


def backlog_at(t: int) -> int:
    """Ramp up to 300 messages over 60 s, plateau for 60 s, drain over 60 s, then idle."""
    if t < 60:
        return t * 5
    if t < 120:
        return 300
    if t < 180:
        return (180 - t) * 5
    return 0


def simulate(
    policy: ScalingPolicy, start_workers: int, seconds: int = 600
) -> list[tuple[int, int, str]]:
    """Decide every second; returns (time, workers after the decision, reason) per second."""
    workers, last_change = start_workers, None
    timeline = []
    for t in range(seconds):
        decision = policy.decide(
            now=float(t),
            backlog=backlog_at(t),
            in_flight=min(workers * 4, backlog_at(t)),
            current_workers=workers,
            last_change=last_change,
        )
        if decision.desired != workers:
            workers, last_change = decision.desired, float(t)
        timeline.append((t, workers, decision.reason))
    return timeline


def changes(timeline: list[tuple[int, int, str]], start: int) -> list[tuple[int, int, int]]:
    """(time, before, after) of every change."""
    found, previous = [], start
    for t, workers, _ in timeline:
        if workers != previous:
            found.append((t, previous, workers))
            previous = workers
    return found


def test_target_is_latency_over_time_per_message() -> None:
    assert POLICY.target_backlog_per_worker == 20
    assert POLICY.wanted(backlog=0, in_flight=0) == 0
    assert POLICY.wanted(backlog=1, in_flight=0) == 1
    assert POLICY.wanted(backlog=41, in_flight=0) == 3
    assert POLICY.wanted(backlog=0, in_flight=3) == 1  # work still runs: keep a worker


def test_backlog_curve_scales_out_to_the_bound_and_back_to_the_minimum() -> None:
    timeline = simulate(POLICY, start_workers=1)
    moves = changes(timeline, start=1)
    counts = [workers for _, workers, _ in timeline]

    assert max(counts) == POLICY.max_workers, "the plateau needs more than the maximum"
    assert min(counts) >= POLICY.min_workers
    assert counts[-1] == POLICY.min_workers, "idle: back to the minimum"
    at_plateau = [workers for t, workers, _ in timeline if 100 <= t < 120]
    assert set(at_plateau) == {POLICY.max_workers}
    # Scale-out starts within a few seconds of the ramp; scale-in only after the drain begins.
    first_out = next(t for t, before, after in moves if after > before)
    first_in = next(t for t, before, after in moves if after < before)
    assert first_out <= 5
    assert first_in >= 150

    previous_change: int | None = None
    for t, before, after in moves:
        if previous_change is not None:
            cooldown = POLICY.scale_out_cooldown_s if after > before else POLICY.scale_in_cooldown_s
            assert t - previous_change >= cooldown, (t, before, after, previous_change)
        if after > before:
            assert after - before <= POLICY.scale_out_step
        else:
            assert before - after <= POLICY.scale_in_step
        previous_change = t


def test_scale_in_is_slower_than_scale_out() -> None:
    moves = changes(simulate(POLICY, start_workers=1), start=1)
    out = [t for t, before, after in moves if after > before]
    into = [t for t, before, after in moves if after < before]
    out_span = out[-1] - out[0]
    in_span = into[-1] - into[0]
    assert out_span < in_span


def test_bounds_are_corrected_at_once_and_clamped() -> None:
    assert POLICY.decide(0, backlog=0, in_flight=0, current_workers=0, last_change=0).desired == 1
    assert POLICY.decide(0, backlog=0, in_flight=0, current_workers=9, last_change=0).desired == 6
    huge = POLICY.decide(100, backlog=10_000, in_flight=0, current_workers=5, last_change=0)
    assert huge.desired == 6, "never above the maximum"
    assert "scale out" in huge.reason and "backlog 10000" in huge.reason


def test_cooldowns_hold_decisions() -> None:
    out = POLICY.decide(5, backlog=200, in_flight=0, current_workers=2, last_change=0)
    assert out.desired == 2 and "scale-out cooldown" in out.reason
    into = POLICY.decide(30, backlog=0, in_flight=0, current_workers=4, last_change=0)
    assert into.desired == 4 and "scale-in cooldown" in into.reason
    into_later = POLICY.decide(61, backlog=0, in_flight=0, current_workers=4, last_change=0)
    assert into_later.desired == 3, "one worker at a time"


def test_minimum_zero_scales_from_zero_without_cooldown_and_back_to_zero() -> None:
    policy = dataclasses.replace(POLICY, min_workers=0)
    assert policy.needs_scale_from_zero
    first = policy.decide(1, backlog=1, in_flight=0, current_workers=0, last_change=0.5)
    assert first.desired == 1 and "from zero" in first.reason
    timeline = simulate(policy, start_workers=0)
    assert timeline[-1][1] == 0
    assert max(w for _, w, _ in timeline) == policy.max_workers


@pytest.mark.parametrize(
    "changes_",
    [
        {"min_workers": -1},
        {"min_workers": 3, "max_workers": 2},
        {"max_workers": 0, "min_workers": 0},
        {"scale_out_cooldown_s": 60, "scale_in_cooldown_s": 60},
        {"scale_in_step": 3, "scale_out_step": 3},
        {"seconds_per_message": 0},
    ],
)
def test_invalid_policies_are_refused(changes_: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="invalid scaling policy"):
        dataclasses.replace(POLICY, **changes_)


def test_every_worker_service_has_a_policy_that_maps_onto_ecs() -> None:
    assert set(POLICIES) == set(Stage)
    for policy in POLICIES.values():
        assert policy.target_backlog_per_worker > 0
        assert 0 <= policy.min_capacity <= policy.max_capacity
        assert policy.scale_out_cooldown_s < policy.scale_in_cooldown_s
    local = local_policy(Stage.TAG)
    assert (local.min_workers, local.max_workers) == (1, 2)
    assert local.seconds_per_message == POLICIES[Stage.TAG].seconds_per_message
