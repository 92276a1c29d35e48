"""Property-based tests (hypothesis) of the replica math (fmesh_events/scale/hpa.py) and of
what a CR asks of it (fmesh_events/scale/spec.py): bounds, the tolerance band, monotonicity in
the metrics, and stabilization windows and rate policies that are never overstepped."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from fmesh_events.models import HPAScalingRules, parse_resource
from fmesh_events.models.base import QUANTITY_PATTERN
from fmesh_events.models.base import quantity as parse_quantity
from fmesh_events.scale.hpa import (
    DEFAULT_BEHAVIOR,
    Behavior,
    Decision,
    Inputs,
    ScalingPolicy,
    ScalingRules,
    backlog_replicas,
    decide,
    ratio_replicas,
    scaling_rules_from,
    utilization_replicas,
)
from fmesh_events.scale.spec import DEFAULT_CPU_TARGET, ScaleSpec, scale_spec
from tests.unit.test_properties_models import examples, workload_docs

NOW = 100_000.0

TOLERANCES = st.one_of(st.just(0.1), st.floats(0, 1),
                       st.tuples(st.floats(0, 1), st.floats(0, 1)))
POLICIES = st.lists(
    st.builds(ScalingPolicy, st.sampled_from(["Pods", "Percent"]), st.integers(1, 1000),
              st.integers(1, 1800)),
    min_size=1, max_size=3,
).map(tuple)
RULES = st.builds(
    ScalingRules,
    stabilization_window_seconds=st.integers(0, 3600),
    select_policy=st.sampled_from(["Max", "Min", "Disabled"]),
    policies=POLICIES,
    tolerance=st.one_of(st.just(0.1), st.floats(0, 1)),
)
BEHAVIORS = st.one_of(st.just(DEFAULT_BEHAVIOR), st.builds(Behavior, RULES, RULES))


@st.composite
def scale_specs(draw: st.DrawFn, behavior: st.SearchStrategy[Behavior] = BEHAVIORS) -> ScaleSpec:
    low = draw(st.integers(0, 30))
    high = draw(st.integers(max(1, low), 60))
    return ScaleSpec(
        enabled=True, min_replicas=low, max_replicas=high,
        cpu_target=draw(st.none() | st.integers(1, 100).map(float)),
        memory_target=draw(st.none() | st.integers(1, 100).map(float)),
        backlog_target=draw(st.none() | st.integers(1, 10**6)),
        activation=draw(st.integers(0, 10**4)),
        behavior=draw(behavior),
    )


UTILIZATION = st.floats(0, 1000)


@st.composite
def inputs(draw: st.DrawFn, spec: ScaleSpec, in_bounds: bool = False) -> Inputs:
    """A sample: the pods of the workload split into sampled, missing and not ready."""
    current = draw(st.integers(spec.min_replicas, spec.max_replicas) if in_bounds else st.integers(0, 80))
    samples = draw(st.integers(0, current))
    missing = draw(st.integers(0, current - samples))
    return Inputs(
        current=current, now=NOW,
        cpu_utilizations=tuple(draw(st.lists(UTILIZATION, min_size=samples, max_size=samples))),
        cpu_missing=missing, cpu_unready=current - samples - missing,
        memory_utilizations=tuple(draw(st.lists(UTILIZATION, min_size=samples, max_size=samples))),
        memory_missing=draw(st.integers(0, current - samples)),
        backlog=draw(st.none() | st.integers(0, 10**9)),
        cpu_available=draw(st.booleans()), memory_available=draw(st.booleans()),
    )


def history(spec: ScaleSpec, wide: bool = False) -> st.SearchStrategy[list[tuple[float, int]]]:
    """Past recommendations from up to an hour and a bit ago, many of them right at the edge
    of a stabilization window; within [min, max] unless ``wide`` (the bounds changed since)."""
    windows = [spec.behavior.scale_up.stabilization_window_seconds,
               spec.behavior.scale_down.stabilization_window_seconds]
    at_edge = st.builds(lambda w, d: NOW - w + d, st.sampled_from(windows),
                        st.sampled_from([0.0, -0.001, 0.001]) | st.floats(-20, 20))
    count = (st.integers(0, spec.max_replicas + 10) if wide
             else st.integers(spec.min_replicas, spec.max_replicas))
    return st.lists(st.tuples(st.floats(NOW - 4000, NOW) | at_edge, count), max_size=6)


SCALE_EVENTS = st.lists(st.tuples(st.floats(NOW - 2000, NOW), st.integers(-20, 20)), max_size=4)


# --------------------------------------------------------------------------- one metric


@examples(300)
@given(st.integers(0, 1000), st.floats(0, 1e6), st.floats(0, 1e6), st.floats(1e-3, 1e4), TOLERANCES)
def test_ratio_rule_band_direction_and_monotonicity(
    current: int, a: float, b: float, target: float, tolerance: Any
) -> None:
    low, high = min(a, b), max(a, b)
    r_low, r_high = (ratio_replicas(current, v, target, tolerance) for v in (low, high))
    assert 0 <= r_low <= r_high  # more load never means fewer replicas
    down, up = tolerance if isinstance(tolerance, tuple) else (tolerance, tolerance)
    for value, result in ((low, r_low), (high, r_high)):
        ratio = value / target
        if 1 - down <= ratio <= 1 + up:
            assert result == current  # inside the band nothing changes
        elif ratio > 1:
            assert result >= current
        else:
            assert result <= current


@examples(300)
@given(st.integers(0, 1000), st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1),
       st.integers(1, 2**63 - 1), st.integers(0, 10**6), st.integers(0, 100), TOLERANCES)
def test_backlog_rule_is_monotonic_and_respects_activation(
    current: int, a: int, b: int, target: int, activation: int, min_replicas: int, tolerance: Any
) -> None:
    low, high = min(a, b), max(a, b)
    r_low, r_high = (backlog_replicas(current, v, target, activation, min_replicas, tolerance)
                     for v in (low, high))
    assert 0 <= r_low <= r_high
    if current == 0:  # KEDA's activation: only a backlog above the threshold starts pods
        assert (r_low == 0) == (low <= activation)
    down, up = tolerance if isinstance(tolerance, tuple) else (tolerance, tolerance)
    if current > 0 and 1 - down <= low / (target * current) <= 1 + up:
        assert r_low == current
    if current > min_replicas or low > activation:
        assert r_low == current or r_low == -(-low // target)  # the ratio, rounded up


@examples(300)
@given(st.integers(1, 60), st.data(), st.floats(1, 200), TOLERANCES)
def test_utilization_rule_is_monotonic_with_every_pod_sampled(
    current: int, data: st.DataObject, target: float, tolerance: Any
) -> None:
    samples = data.draw(st.lists(UTILIZATION, min_size=current, max_size=current))
    more = [u + data.draw(st.floats(0, 500)) for u in samples]
    before = utilization_replicas(current, samples, target, tolerance=tolerance)
    after = utilization_replicas(current, more, target, tolerance=tolerance)
    assert before is not None and after is not None
    assert before <= after
    down, up = tolerance if isinstance(tolerance, tuple) else (tolerance, tolerance)
    ratio = math.floor(round(sum(samples) / current, 6)) / target  # whole percents, as the HPA
    if 1 - down <= ratio <= 1 + up:
        assert before == current


@examples(300)
@given(st.integers(0, 60), st.data(), st.floats(1, 200), TOLERANCES)
def test_missing_and_unready_pods_never_reverse_the_direction(
    current: int, data: st.DataObject, target: float, tolerance: Any
) -> None:
    sampled = data.draw(st.integers(0, current))
    missing = data.draw(st.integers(0, current - sampled))
    samples = data.draw(st.lists(UTILIZATION, min_size=sampled, max_size=sampled))
    result = utilization_replicas(current, samples, target, missing, current - sampled - missing, tolerance)
    if not samples:
        assert result is None
        return
    assert result is not None and result >= 0
    ratio = math.floor(round(sum(samples) / len(samples), 6)) / target
    if ratio < 1:
        assert result <= current
    elif ratio > 1:
        assert result >= current
    else:
        assert result == current


@examples(300)
@given(st.integers(1, 60), st.data(), st.floats(1, 200), TOLERANCES)
def test_pods_without_samples_only_slow_scaling_down_or_up(
    current: int, data: st.DataObject, target: float, tolerance: Any
) -> None:
    """Pods without a sample count at max(100%, target) on the way down and 0% on the way up,
    unready pods at 0% on the way up: the answer lies between current and what the sampled
    pods alone would say. (The sampled pods all use the same whole percent, so that the HPA's
    truncation of the average to a whole percent cannot blur the comparison.)"""
    sampled = data.draw(st.integers(1, current))
    missing = data.draw(st.integers(0, current - sampled))
    samples = [float(data.draw(st.integers(0, 1000)))] * sampled
    alone = utilization_replicas(current, samples, target, tolerance=tolerance)
    result = utilization_replicas(current, samples, target, missing, current - sampled - missing, tolerance)
    assert alone is not None and result is not None
    assert min(alone, current) <= result <= max(alone, current)


# --------------------------------------------------------------------------- the decision


@st.composite
def decisions(draw: st.DrawFn, in_bounds: bool = False) -> tuple[ScaleSpec, Inputs, list[Any], list[Any]]:
    """A spec, a sample, and history. Out of bounds (``in_bounds`` False) the current count
    and past recommendations may lie outside [min, max], as after the bounds changed."""
    spec = draw(scale_specs())
    return spec, draw(inputs(spec, in_bounds)), draw(history(spec, not in_bounds)), draw(SCALE_EVENTS)


def _decide(case: tuple[ScaleSpec, Inputs, list[Any], list[Any]]) -> Decision:
    spec, sample, recommendations, events = case
    return decide(spec, sample, recommendations, events)


@examples(300)
@given(decisions())
def test_desired_replicas_stay_within_min_and_max(
    case: tuple[ScaleSpec, Inputs, list[Any], list[Any]]
) -> None:
    spec, sample, _, _ = case
    decision = _decide(case)
    assert decision.current == sample.current
    assert decision.action == ("UP" if decision.desired > sample.current else
                               "DOWN" if decision.desired < sample.current else "NONE")
    assert decision.reason
    if sample.current == 0 and spec.min_replicas > 0:
        assert decision.desired == 0  # stopped by the user: left alone
    else:
        assert spec.min_replicas <= decision.desired <= spec.max_replicas
        if spec.min_replicas <= sample.current <= spec.max_replicas:
            assert spec.min_replicas <= decision.recommendation <= spec.max_replicas
    off = replace(spec, enabled=False, max_replicas=spec.min_replicas)
    assert decide(off, sample, case[2], case[3]).desired == sample.current


@examples(200)
@given(scale_specs(), st.data())
def test_inside_the_tolerance_band_nothing_changes(spec: ScaleSpec, data: st.DataObject) -> None:
    current = data.draw(st.integers(max(1, spec.min_replicas), max(1, spec.max_replicas)))
    assume(current <= spec.max_replicas)
    down, up = spec.behavior.scale_down.tolerance, spec.behavior.scale_up.tolerance
    cpu = spec.cpu_target or 50.0
    memory = spec.memory_target or 50.0
    target = spec.backlog_target or 1000
    # Every configured metric sits inside its band, at the same (whole) percent on every pod.
    cpu_use = float(math.floor(cpu * data.draw(st.floats(1 - down, 1 + up))))
    memory_use = float(math.floor(memory * data.draw(st.floats(1 - down, 1 + up))))
    backlog = math.floor(target * current * data.draw(st.floats(1 - down, 1 + up)))
    assume(1 - down <= cpu_use / cpu <= 1 + up and 1 - down <= memory_use / memory <= 1 + up)
    assume(1 - down <= backlog / (target * current) <= 1 + up)
    sample = Inputs(current=current, now=NOW, cpu_utilizations=(cpu_use,) * current,
                    memory_utilizations=(memory_use,) * current, backlog=backlog)
    decision = decide(replace(spec, cpu_target=cpu, memory_target=memory, backlog_target=target),
                      sample, [], [])
    assert (decision.desired, decision.action) == (current, "NONE"), decision.reason


@examples(300)
@given(decisions(in_bounds=True), st.integers(0, 10**9), st.floats(0, 500))
def test_more_load_never_means_fewer_replicas(
    case: tuple[ScaleSpec, Inputs, list[Any], list[Any]], extra_backlog: int, extra_cpu: float
) -> None:
    spec, sample, recommendations, events = case
    busier = replace(
        sample,
        backlog=None if sample.backlog is None else sample.backlog + extra_backlog,
        cpu_utilizations=tuple(u + extra_cpu for u in sample.cpu_utilizations),
    )
    before, after = _decide(case), decide(spec, busier, recommendations, events)
    assert before.desired <= after.desired, (before.reason, after.reason)


@examples(300)
@given(decisions(in_bounds=True))
def test_stabilization_windows_hold_the_most_conservative_recommendation(
    case: tuple[ScaleSpec, Inputs, list[Any], list[Any]]
) -> None:
    spec, sample, recommendations, _ = case
    decision = _decide(case)
    behavior = spec.behavior
    if decision.desired < sample.current:
        window = behavior.scale_down.stabilization_window_seconds
        recent = [r for t, r in recommendations if t > NOW - window]
        assert decision.desired >= max([decision.recommendation, *recent])
    elif decision.desired > sample.current:
        window = behavior.scale_up.stabilization_window_seconds
        recent = [r for t, r in recommendations if t > NOW - window]
        assert decision.desired <= min([decision.recommendation, *recent])


def _allowed(rules: ScalingRules, current: int, up: bool) -> int:
    """How many pods the rules let one decision add (or remove) with no recent scaling,
    as the HPA documentation states it."""
    if rules.select_policy == "Disabled":
        return 0
    steps = []
    for policy in rules.policies:
        if policy.type == "Pods":
            steps.append(policy.value)
        elif up:
            steps.append(math.ceil(current * (1 + policy.value / 100)) - current)
        else:
            steps.append(current - int(current * (1 - policy.value / 100)))
    return max(steps) if rules.select_policy == "Max" else min(steps)


@examples(300)
@given(decisions(in_bounds=True))
def test_one_decision_moves_as_far_as_the_policies_allow_and_no_further(
    case: tuple[ScaleSpec, Inputs, list[Any], list[Any]]
) -> None:
    spec, sample, _, _ = case
    decision = decide(spec, sample, [], [])  # no history: only the rate policies hold it back
    current, wanted = sample.current, decision.recommendation
    if wanted > current:
        expected = min(wanted, current + _allowed(spec.behavior.scale_up, current, True))
    else:
        expected = max(wanted, current - _allowed(spec.behavior.scale_down, current, False))
    assert decision.desired == min(max(expected, spec.min_replicas), spec.max_replicas), decision.reason


@examples(60)
@given(st.integers(1, 10), st.integers(1, 120), st.integers(1, 10), st.integers(1, 120),
       st.sampled_from(["Pods", "Percent"]), st.integers(0, 5), st.integers(5, 40),
       st.lists(st.tuples(st.integers(1, 40), st.integers(0, 60_000)), min_size=1, max_size=25))
def test_over_time_the_net_change_in_a_period_stays_within_the_policy(
    up_value: int, up_period: int, down_value: int, down_period: int, down_type: str,
    low: int, high: int, steps: list[tuple[int, int]],
) -> None:
    """Follow decide's history contract over a run of signals: within every policy period
    ending at a decision, the net change never exceeds what the policy allows."""
    assume(low <= high)
    behavior = Behavior(
        scale_up=ScalingRules(0, "Max", (ScalingPolicy("Pods", up_value, up_period),)),
        scale_down=ScalingRules(0, "Max", (ScalingPolicy(down_type, down_value, down_period),)),  # type: ignore[arg-type]
    )
    spec = ScaleSpec(enabled=True, min_replicas=low, max_replicas=high, cpu_target=None,
                     memory_target=None, backlog_target=100, activation=0, behavior=behavior)
    current, now = max(low, 1), NOW
    recommendations: list[tuple[float, int]] = []
    events: list[tuple[float, int]] = []
    for gap, backlog in steps:
        now += gap
        decision = decide(spec, Inputs(current=current, now=now, backlog=backlog), recommendations, events)
        recommendations.append((now, decision.recommendation))
        if decision.desired != current:
            events.append((now, decision.desired - current))
            current = decision.desired
        assert low <= current <= high
        if decision.action == "UP":  # net pods added within the period ending now
            assert sum(c for t, c in events if t > now - up_period) <= up_value
        elif decision.action == "DOWN":  # replicas at the start of the period ending now
            start = current - sum(c for t, c in events if t > now - down_period)
            if down_type == "Pods":
                assert start - current <= down_value
            else:
                assert current >= int(start * (1 - down_value / 100))


# --------------------------------------------------------------------------- from a CR


@examples(60)
@given(workload_docs(), st.data())
def test_every_valid_cr_yields_a_consistent_scale_spec(doc: dict[str, Any], data: st.DataObject) -> None:
    model = parse_resource(doc)
    wanted = scale_spec(model)
    spec = doc["spec"]
    assert wanted.enabled == ("maxReplicas" in spec)
    assert wanted.min_replicas == spec.get("minReplicas", 1)
    if wanted.enabled:
        assert wanted.min_replicas <= wanted.max_replicas == spec["maxReplicas"]
        metrics = (wanted.cpu_target, wanted.memory_target, wanted.backlog_target)
        if all(m is None for m in metrics):
            assert (spec.get("pod") or {}).get("autoScalingMetrics")
        autoscaling = spec.get("autoscaling") or {}
        if "cpu" in autoscaling:
            assert wanted.cpu_target == autoscaling["cpu"]["targetUtilizationPercent"]
        elif not (spec.get("pod") or {}).get("builtinAutoscaler") and "backlog" not in autoscaling:
            assert wanted.cpu_target == DEFAULT_CPU_TARGET
        if "backlog" in autoscaling:
            assert wanted.backlog_target == autoscaling["backlog"]["targetPerReplica"]
    else:
        assert wanted.max_replicas == wanted.min_replicas
    for rules in (wanted.behavior.scale_up, wanted.behavior.scale_down):
        assert rules.policies and rules.tolerance >= 0
    # And the decision for it, on any sample, is within its bounds.
    sample = data.draw(inputs(wanted))
    decision = decide(wanted, sample, [], [])
    if wanted.enabled and not (sample.current == 0 and wanted.min_replicas > 0):
        assert wanted.min_replicas <= decision.desired <= wanted.max_replicas


@examples(200)
@given(st.one_of(st.from_regex(QUANTITY_PATTERN, fullmatch=True), st.integers(0, 10**6)))
def test_every_tolerance_the_model_accepts_is_read(tolerance: Any) -> None:
    try:
        rules = HPAScalingRules.model_validate({"tolerance": tolerance})
    except ValidationError:
        return
    read = scaling_rules_from(rules, DEFAULT_BEHAVIOR.scale_up).tolerance
    assert not math.isnan(read)
    assert read >= 0 or str(tolerance).startswith("-")
    exact = parse_quantity(tolerance)
    if exact is not None:
        assert math.isclose(read, float(exact), rel_tol=1e-12)
