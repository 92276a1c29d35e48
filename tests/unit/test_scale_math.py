"""The scale stage's replica math against the HPA's rules (no services)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from fmesh_events import models
from fmesh_events.scale.hpa import (
    DEFAULT_BEHAVIOR,
    Behavior,
    Inputs,
    ScalingPolicy,
    ScalingRules,
    backlog_replicas,
    behavior_from,
    decide,
    rate_limit,
    ratio_replicas,
    stabilize,
    utilization_replicas,
)
from fmesh_events.scale.spec import ScaleSpec, scale_spec
from tests.examples import example

NOW = 10_000.0
BACKLOG = ScaleSpec(
    enabled=True, min_replicas=1, max_replicas=10, cpu_target=None, memory_target=None,
    backlog_target=1_000, activation=0, behavior=DEFAULT_BEHAVIOR,
)
FAST_UP = replace(
    DEFAULT_BEHAVIOR.scale_up, policies=(ScalingPolicy("Percent", 1000, 15),)
)


def _behavior(**up_down: ScalingRules) -> Behavior:
    return replace(DEFAULT_BEHAVIOR, **up_down)


# --------------------------------------------------------------------------- ratio rule


def test_documented_examples_double_halve_and_hold() -> None:
    # kubernetes.io, "Horizontal Pod Autoscaling", algorithm details.
    assert ratio_replicas(3, 200, 100) == 6  # 200m vs 100m: doubled
    assert ratio_replicas(4, 50, 100) == 2  # 50m vs 100m: halved
    assert ratio_replicas(4, 105, 100) == 4  # within the 0.1 tolerance
    assert ratio_replicas(50, 90, 75) == 60  # the 1.33 tolerance blog: 50 x 90/75


@pytest.mark.parametrize(
    ("value", "expected"), [(90, 10), (110, 10), (89, 9), (111, 12), (100, 10)]
)
def test_tolerance_edges(value: float, expected: int) -> None:
    assert ratio_replicas(10, value, 100) == expected


def test_tolerance_per_direction() -> None:
    assert ratio_replicas(20, 95, 100, (0.01, 0.5)) == 19  # 5% down is outside a 1% tolerance
    assert ratio_replicas(20, 140, 100, (0.01, 0.5)) == 20  # 40% up is inside a 50% tolerance


# --------------------------------------------------------------------------- backlog


def test_backlog_external_average_value() -> None:
    assert backlog_replicas(4, 12_400, 1_000) == 13  # ratio 3.1 -> ceil(12,400 / 1,000)
    assert backlog_replicas(4, 4_300, 1_000) == 4  # ratio 1.075: within tolerance
    assert backlog_replicas(4, 4_300, 1_000, tolerance=(0.1, 0.05)) == 5
    assert backlog_replicas(2, 0, 1_000) == 0  # empty backlog proposes zero
    assert backlog_replicas(10, 2_000, 1_000) == 2


def test_backlog_activation() -> None:
    assert backlog_replicas(0, 100, 1_000, activation=100) == 0  # not above: stays at 0
    assert backlog_replicas(0, 101, 1_000, activation=100) == 1  # above: at least one
    assert backlog_replicas(0, 2_500, 1_000) == 3
    assert backlog_replicas(0, 0, 1_000) == 0
    # At minReplicas an inactive backlog does not scale up; above it the ratio rules.
    assert backlog_replicas(1, 3_000, 1_000, activation=5_000, min_replicas=1) == 1
    assert backlog_replicas(1, 3_000, 1_000, activation=5_000, min_replicas=0) == 3


# --------------------------------------------------------------------------- utilization


def test_utilization_plain() -> None:
    assert utilization_replicas(4, [40, 40, 40, 40], 80) == 2
    assert utilization_replicas(4, [85, 85, 85, 85], 80) == 4  # within tolerance
    assert utilization_replicas(3, [], 80, missing=3) is None  # no sample at all
    # The average is truncated to a whole percent first: 80.9 -> 80, 80 / 73 is within 10%.
    assert utilization_replicas(2, [80.9, 80.9], 73) == 2


def test_missing_pods_slow_a_scale_down() -> None:
    # Counted at 100%: (3 x 40 + 100) / 4 = 55 vs 50 is within tolerance: hold.
    assert utilization_replicas(4, [40, 40, 40], 50, missing=1) == 4
    assert utilization_replicas(4, [40, 40, 40], 50) == 3
    # (4 x 10 + 100) / 5 = 28 -> ceil(0.56 x 5) = 3 instead of ceil(0.2 x 4) = 1.
    assert utilization_replicas(5, [10, 10, 10, 10], 50, missing=1) == 3


def test_missing_pods_slow_a_scale_up() -> None:
    # Counted at 0%: 200 / 4 = 50 vs 50: hold, where the two samples alone say 4.
    assert utilization_replicas(4, [100, 100], 50, missing=2) == 4
    assert utilization_replicas(2, [100, 100], 50) == 4
    # 150 / 4 = 37%: the direction flips, hold.
    assert utilization_replicas(4, [150], 100, missing=3) == 4


def test_unready_pods_count_as_idle_on_scale_up_only() -> None:
    # One ready pod at 120% alone would say ceil(1.2) = 2, below 3; with the two unready pods
    # at 0% the ratio flips to 0.4: hold.
    assert utilization_replicas(3, [120], 100, unready=2) == 3
    assert utilization_replicas(3, [20], 100, unready=2) == 1  # scale-down ignores them
    assert utilization_replicas(2, [200], 50, unready=1) == 4


# --------------------------------------------------------------------------- stabilization


def test_scale_down_held_until_higher_recommendations_leave_the_window() -> None:
    history = [(0.0, 5), (100.0, 4)]
    assert stabilize(history, 200.0, 2, 5, DEFAULT_BEHAVIOR) == 5
    assert stabilize(history, 301.0, 2, 5, DEFAULT_BEHAVIOR) == 4
    assert stabilize(history, 401.0, 2, 5, DEFAULT_BEHAVIOR) == 2
    assert stabilize([(0.0, 5)], 300.0, 2, 5, DEFAULT_BEHAVIOR) == 2  # exactly 300s old: out


def test_scale_up_window() -> None:
    assert stabilize([(NOW, 2)], NOW, 6, 2, DEFAULT_BEHAVIOR) == 6  # 0s window: no effect
    slow = _behavior(scale_up=replace(DEFAULT_BEHAVIOR.scale_up, stabilization_window_seconds=60))
    assert stabilize([(0.0, 2), (20.0, 4)], 30.0, 6, 2, slow) == 2
    assert stabilize([(0.0, 2), (20.0, 4)], 61.0, 6, 2, slow) == 4
    assert stabilize([(0.0, 2), (20.0, 4)], 81.0, 6, 2, slow) == 6


# --------------------------------------------------------------------------- rate policies


def test_default_scale_up_rate() -> None:
    # 1 -> 100 recommended: +4 pods (5) beats +100% (2) under selectPolicy Max.
    assert rate_limit(1, 100, [], 0.0, DEFAULT_BEHAVIOR) == (5, "scaleUp policy Pods 4 per 15s")
    # Within the same 15s the 4 pods added count: no further step.
    assert rate_limit(5, 100, [(0.0, 4)], 10.0, DEFAULT_BEHAVIOR) == (5, "scaleUp policy Pods 4 per 15s")
    # Once they leave the period, +100% (10) beats +4 (9).
    later = rate_limit(5, 100, [(0.0, 4)], 16.0, DEFAULT_BEHAVIOR)
    assert later == (10, "scaleUp policy Percent 100 per 15s")
    assert rate_limit(5, 7, [], 0.0, DEFAULT_BEHAVIOR) == (7, None)
    # A recent scale-down raises the start of the period: 3 + 2 removed = 5, + 100% = 10.
    assert rate_limit(3, 20, [(NOW - 5, -2)], NOW, DEFAULT_BEHAVIOR)[0] == 10


def test_scale_down_policies() -> None:
    assert rate_limit(10, 1, [], 0.0, DEFAULT_BEHAVIOR) == (1, None)  # 100% per 15s: anything
    rules = ScalingRules(300, "Max", (ScalingPolicy("Pods", 2, 60), ScalingPolicy("Percent", 10, 60)))
    assert rate_limit(10, 1, [], 0.0, _behavior(scale_down=rules)) == (8, "scaleDown policy Pods 2 per 60s")
    least = _behavior(scale_down=replace(rules, select_policy="Min"))
    assert rate_limit(10, 1, [], 0.0, least) == (9, "scaleDown policy Percent 10 per 60s")
    # 2 removed 30s ago use up the Pods policy's 60s budget.
    assert rate_limit(8, 1, [(NOW - 30, -2)], NOW, _behavior(scale_down=rules))[0] == 8
    half = ScalingRules(300, "Max", (ScalingPolicy("Percent", 50, 15),))
    assert rate_limit(3, 0, [], 0.0, _behavior(scale_down=half))[0] == 1  # 3 x 0.5 truncated


def test_select_policy_min_and_disabled() -> None:
    least = _behavior(scale_up=replace(DEFAULT_BEHAVIOR.scale_up, select_policy="Min"))
    assert rate_limit(1, 100, [], 0.0, least) == (2, "scaleUp policy Percent 100 per 15s")
    frozen = Behavior(
        scale_up=replace(DEFAULT_BEHAVIOR.scale_up, select_policy="Disabled"),
        scale_down=replace(DEFAULT_BEHAVIOR.scale_down, select_policy="Disabled"),
    )
    assert rate_limit(3, 10, [], 0.0, frozen) == (3, "scaleUp selectPolicy Disabled")
    assert rate_limit(3, 1, [], 0.0, frozen) == (3, "scaleDown selectPolicy Disabled")


# --------------------------------------------------------------------------- decide


def test_issue_example_capped_at_max() -> None:
    spec = replace(BACKLOG, behavior=_behavior(scale_up=FAST_UP))
    decision = decide(spec, Inputs(current=4, now=NOW, backlog=12_400), [], [])
    assert decision.reason == "backlog 12,400 over target 1,000 x 4 replicas -> 13, capped at maxReplicas 10"
    assert (decision.backlog, decision.recommendation, decision.desired) == (13, 10, 10)
    assert decision.action == "UP"
    # With the default rate, the same step is limited to 8 (4 + 4, or 4 + 100%).
    limited = decide(BACKLOG, Inputs(current=4, now=NOW, backlog=12_400), [], [])
    assert (limited.recommendation, limited.desired) == (10, 8)
    assert limited.reason.endswith(
        "capped at maxReplicas 10; limited to 8 by the scaleUp policy Pods 4 per 15s"
    )


def test_largest_metric_wins() -> None:
    spec = replace(BACKLOG, cpu_target=80.0, memory_target=80.0)
    inputs = Inputs(current=2, now=NOW, cpu_utilizations=(160.0, 160.0),
                    memory_utilizations=(10.0, 10.0), backlog=5_000)
    decision = decide(spec, inputs, [], [])
    assert (decision.cpu, decision.memory, decision.backlog, decision.desired) == (4, 1, 5, 5)
    assert decision.reason == (
        "cpu 160% of requests vs target 80% -> 4; memory 10% of requests vs target 80% -> 1; "
        "backlog 5,000 over target 1,000 x 2 replicas -> 5"
    )


def test_scale_down_held_by_window_reason() -> None:
    spec = replace(BACKLOG, cpu_target=80.0)
    inputs = Inputs(current=4, now=NOW, cpu_utilizations=(40.0,) * 4, backlog=0)
    decision = decide(spec, inputs, [(NOW - 100, 4)], [])
    assert decision.reason == (
        "cpu 40% of requests vs target 80% -> 2; backlog 0 -> 0; "
        "scale-down held at 4 by the 300s stabilization window"
    )
    assert (decision.recommendation, decision.desired, decision.action) == (2, 4, "NONE")
    later = decide(spec, inputs, [(NOW - 100, 4)], [])
    assert later == decision  # pure: same inputs, same decision
    after = decide(spec, replace(inputs, now=NOW + 201), [(NOW - 100, 4), (NOW, 2)], [])
    assert (after.desired, after.action) == (2, "DOWN")


def test_no_metrics_holds() -> None:
    spec = replace(BACKLOG, backlog_target=None, cpu_target=80.0)
    decision = decide(spec, Inputs(current=3, now=NOW, cpu_available=False), [], [])
    assert decision.reason == "no metrics (metrics.k8s.io not served): holding at 3"
    assert (decision.desired, decision.action, decision.cpu) == (3, "NONE", None)
    no_samples = decide(spec, Inputs(current=3, now=NOW, cpu_missing=3), [], [])
    assert no_samples.reason == "no metrics (no cpu samples): holding at 3"


def test_missing_metric_blocks_scale_down_only() -> None:
    spec = replace(BACKLOG, cpu_target=80.0)
    down = decide(spec, Inputs(current=4, now=NOW, cpu_utilizations=(20.0,) * 4), [], [])
    assert down.reason == (
        "cpu 20% of requests vs target 80% -> 1; backlog unknown; scale-down held at 4 (missing data)"
    )
    assert (down.desired, down.recommendation, down.cpu, down.backlog) == (4, 4, 1, None)
    up = decide(spec, Inputs(current=2, now=NOW, cpu_utilizations=(160.0, 160.0)), [], [])
    assert (up.desired, up.action) == (4, "UP")
    no_cpu = decide(spec, Inputs(current=2, now=NOW, backlog=6_000, cpu_available=False), [], [])
    assert no_cpu.desired == 6
    assert no_cpu.reason.startswith("cpu: metrics.k8s.io not served; backlog 6,000 over target")


def test_scale_from_zero_with_activation() -> None:
    spec = replace(BACKLOG, min_replicas=0, activation=500)
    idle = decide(spec, Inputs(current=0, now=NOW, backlog=500), [], [])
    assert (idle.desired, idle.action) == (0, "NONE")
    assert idle.reason == "backlog 500 not above activation 500 -> 0"
    woken = decide(spec, Inputs(current=0, now=NOW, backlog=501), [], [])
    assert (woken.desired, woken.action) == (1, "UP")
    assert woken.reason == "backlog 501 above activation 500, target 1,000 per replica -> 1"
    flood = decide(spec, Inputs(current=0, now=NOW, backlog=12_000), [], [])
    assert (flood.recommendation, flood.desired) == (10, 4)  # +4 pods from 0 (100% of 0 is 0)


def test_scale_to_zero_through_the_down_window() -> None:
    spec = replace(BACKLOG, min_replicas=0)
    history = [(NOW, 3)]
    held = decide(spec, Inputs(current=3, now=NOW + 100, backlog=0), history, [])
    assert (held.recommendation, held.desired) == (0, 3)
    history.append((NOW + 100, held.recommendation))
    gone = decide(spec, Inputs(current=3, now=NOW + 301, backlog=0), history, [])
    assert (gone.desired, gone.action) == (0, "DOWN")
    assert gone.reason == "backlog 0 -> 0"


def test_bounds_and_off() -> None:
    above = decide(BACKLOG, Inputs(current=12, now=NOW, backlog=0), [], [])
    assert (above.desired, above.reason) == (10, "replicas 12 above maxReplicas 10 -> 10")
    below = decide(replace(BACKLOG, min_replicas=2), Inputs(current=1, now=NOW, backlog=0), [], [])
    assert (below.desired, below.action) == (2, "UP")
    stopped = decide(BACKLOG, Inputs(current=0, now=NOW, backlog=50_000), [], [])
    assert (stopped.desired, stopped.action) == (0, "NONE")
    off = decide(replace(BACKLOG, enabled=False), Inputs(current=3, now=NOW, backlog=50_000), [], [])
    assert off.reason == "autoscaling is off (maxReplicas unset): holding at 3"
    none = replace(BACKLOG, backlog_target=None, unsupported=("pod.autoScalingMetrics[0]: ...",))
    assert decide(none, Inputs(current=3, now=NOW), [], []).reason == (
        "no supported metric configured: holding at 3"
    )


def test_disabled_scale_down_in_decide() -> None:
    frozen = _behavior(scale_down=replace(DEFAULT_BEHAVIOR.scale_down, select_policy="Disabled"))
    decision = decide(replace(BACKLOG, behavior=frozen), Inputs(current=4, now=NOW, backlog=1_000), [], [])
    assert decision.desired == 4
    assert decision.reason.endswith("; limited to 4 by the scaleDown selectPolicy Disabled")


def test_per_direction_tolerance_in_decide() -> None:
    eager = _behavior(scale_up=replace(DEFAULT_BEHAVIOR.scale_up, tolerance=0.05))
    inputs = Inputs(current=4, now=NOW, backlog=4_300)
    assert decide(BACKLOG, inputs, [], []).desired == 4
    assert decide(replace(BACKLOG, behavior=eager), inputs, [], []).desired == 5


# --------------------------------------------------------------------------- behavior_from


def test_behavior_defaults_and_partial() -> None:
    assert behavior_from(None) == DEFAULT_BEHAVIOR
    assert DEFAULT_BEHAVIOR.scale_up == ScalingRules(
        0, "Max", (ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15)), 0.1
    )
    assert DEFAULT_BEHAVIOR.scale_down == ScalingRules(300, "Max", (ScalingPolicy("Percent", 100, 15),), 0.1)
    partial = behavior_from(
        models.HPABehavior.model_validate({"scaleDown": {"stabilizationWindowSeconds": 60}})
    )
    assert partial.scale_up == DEFAULT_BEHAVIOR.scale_up
    assert partial.scale_down == replace(DEFAULT_BEHAVIOR.scale_down, stabilization_window_seconds=60)
    custom = behavior_from(models.HPABehavior.model_validate({
        "scaleUp": {"selectPolicy": "Min", "tolerance": "50m",
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
        "scaleDown": {"tolerance": "0.2", "policies": []},
    }))
    assert custom.scale_up == ScalingRules(0, "Min", (ScalingPolicy("Pods", 1, 60),), 0.05)
    assert custom.scale_down == replace(DEFAULT_BEHAVIOR.scale_down, tolerance=0.2)
    whole = behavior_from(models.HPABehavior.model_validate({"scaleUp": {"tolerance": 1}}))
    assert whole.scale_up.tolerance == 1.0


# --------------------------------------------------------------------------- scale_spec


def _function(**spec: Any) -> Any:
    doc = example("function.yaml", "Function")
    doc["metadata"]["namespace"] = "default"
    for key, value in spec.items():
        if value is None:
            doc["spec"].pop(key, None)
        else:
            doc["spec"][key] = value
    return models.parse_resource(doc)


def test_scale_spec_of_the_example() -> None:
    wanted = scale_spec(_function())
    assert wanted == ScaleSpec(
        enabled=True, min_replicas=1, max_replicas=5, cpu_target=None, memory_target=None,
        backlog_target=1_000, activation=0, behavior=DEFAULT_BEHAVIOR,
    )


def test_scale_spec_defaults() -> None:
    off = scale_spec(_function(autoscaling=None, maxReplicas=None, minReplicas=None))
    assert (off.enabled, off.min_replicas, off.max_replicas, off.cpu_target) == (False, 1, 1, None)
    default_cpu = scale_spec(_function(autoscaling=None))
    assert (default_cpu.enabled, default_cpu.cpu_target, default_cpu.memory_target) == (True, 80.0, None)
    to_zero = scale_spec(_function(minReplicas=0, autoscaling={
        "backlog": {"targetPerReplica": 500, "activationThreshold": 50}}))
    assert (to_zero.min_replicas, to_zero.backlog_target, to_zero.activation) == (0, 500, 50)


def test_scale_spec_builtin_autoscaler() -> None:
    wanted = scale_spec(_function(autoscaling=None, pod={
        "builtinAutoscaler": ["AverageUtilizationCPUPercent50", "AverageUtilizationMemoryPercent20"]}))
    assert (wanted.cpu_target, wanted.memory_target, wanted.unsupported) == (50.0, 20.0, ())


def _resource_metric(name: str, target: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Resource", "resource": {"name": name, "target": target}}


def test_scale_spec_auto_scaling_metrics() -> None:
    metrics = [
        _resource_metric("cpu", {"type": "Utilization", "averageUtilization": 60}),
        _resource_metric("memory", {"type": "Utilization", "averageUtilization": 70}),
        _resource_metric("memory", {"type": "AverageValue", "averageValue": "1Gi"}),
        {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value"}}},
        _resource_metric("cpu", {"type": "Utilization", "averageUtilization": 40}),
    ]
    wanted = scale_spec(_function(autoscaling=None, pod={"autoScalingMetrics": metrics}))
    assert (wanted.cpu_target, wanted.memory_target) == (40.0, 70.0)  # the lower of two cpu targets
    assert len(wanted.unsupported) == 2
    assert wanted.unsupported[0].startswith("pod.autoScalingMetrics[2]: memory target")
    assert wanted.unsupported[1].startswith("pod.autoScalingMetrics[3]: type 'External' is not supported")
    only_external = scale_spec(_function(autoscaling=None, pod={"autoScalingMetrics": metrics[3:4]}))
    assert only_external.cpu_target is None  # a metric is configured: no default CPU 80
    assert len(only_external.unsupported) == 1


def test_scale_spec_precedence() -> None:
    wanted = scale_spec(_function(
        autoscaling={"cpu": {"targetUtilizationPercent": 70},
                     "behavior": {"scaleUp": {"stabilizationWindowSeconds": 30}}},
        pod={"builtinAutoscaler": ["AverageUtilizationCPUPercent50", "AverageUtilizationMemoryPercent80"],
             "autoScalingMetrics": [{"type": "Pods"}],
             "autoScalingBehavior": {"scaleUp": {"stabilizationWindowSeconds": 90},
                                     "scaleDown": {"stabilizationWindowSeconds": 60}}},
    ))
    assert (wanted.cpu_target, wanted.memory_target, wanted.backlog_target) == (70.0, 80.0, None)
    assert wanted.behavior.scale_up.stabilization_window_seconds == 30  # ours
    assert wanted.behavior.scale_down.stabilization_window_seconds == 60  # pod's
    assert wanted.unsupported == (
        "pod.autoScalingMetrics is ignored: pod.builtinAutoscaler is set (as in Function Mesh)",
    )


def test_autoscaling_memory_target() -> None:
    """autoscaling.memory: a Resource Utilization target, as pod.builtinAutoscaler's memory
    rules (which it replaces); alone, it turns off the default CPU 80%."""
    alone = scale_spec(_function(autoscaling={"memory": {"targetUtilizationPercent": 60}}))
    assert (alone.cpu_target, alone.memory_target, alone.backlog_target) == (None, 60.0, None)
    ours = scale_spec(_function(autoscaling={"memory": {"targetUtilizationPercent": 60}},
                                pod={"builtinAutoscaler": ["AverageUtilizationMemoryPercent20"]}))
    assert ours.memory_target == 60.0
    both = scale_spec(_function(autoscaling={"cpu": {"targetUtilizationPercent": 70},
                                             "memory": {"targetUtilizationPercent": 50}}))
    assert (both.cpu_target, both.memory_target) == (70.0, 50.0)
    with pytest.raises(ValueError, match="at least one of cpu, memory or backlog"):
        _function(autoscaling={"behavior": {}})


def test_memory_target_decides_as_the_hpa() -> None:
    """The HPA's Resource Utilization math: ceil(pods x used / target), 0.1 tolerance, pods
    without samples counted as 100% on a scale-down and 0% on a scale-up."""
    wanted = scale_spec(_function(minReplicas=1, maxReplicas=10,
                                  autoscaling={"memory": {"targetUtilizationPercent": 50}}))
    up = decide(wanted, Inputs(current=2, now=0.0, memory_utilizations=(90.0, 110.0)), [], [])
    assert (up.memory, up.desired) == (4, 4)
    assert up.reason == "memory 100% of requests vs target 50% -> 4"
    within = decide(wanted, Inputs(current=2, now=0.0, memory_utilizations=(52.0, 54.0)), [], [])
    assert within.desired == 2
    # One pod without a sample: counted as 100% when the others say scale down.
    down = decide(wanted, Inputs(current=3, now=0.0, memory_utilizations=(10.0, 10.0),
                                 memory_missing=1), [], [])
    assert down.memory == 3 and down.desired == 3
    unserved = decide(wanted, Inputs(current=3, now=0.0, memory_available=False), [], [])
    assert unserved.desired == 3 and "metrics.k8s.io not served" in unserved.reason
