"""What a Function, Source or Sink asks of the autoscaler, read once from its parsed spec.

Function Mesh's fields keep their meaning (controllers/spec/hpa.go): maxReplicas turns
autoscaling on, pod.builtinAutoscaler rules replace pod.autoScalingMetrics, and with no metric
at all the HPA scales on CPU at 80%. Our ``autoscaling`` block wins where it sets the same
thing. Only what we can measure is kept; the rest is listed in ``unsupported``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fmesh_events.scale.hpa import DEFAULT_BEHAVIOR, Behavior, ScalingRules, scaling_rules_from

DEFAULT_CPU_TARGET = 80.0
"""Function Mesh's default HPA: average CPU at 80% of the request."""

BUILTIN_RULES: dict[str, tuple[str, float]] = {
    f"AverageUtilization{kind}Percent{percent}": (resource, float(percent))
    for kind, resource in (("CPU", "cpu"), ("Memory", "memory"))
    for percent in (80, 50, 20)
}
"""pod.builtinAutoscaler rule name -> (resource, target percent)."""


@dataclass(frozen=True)
class ScaleSpec:
    """The autoscaling a workload asks for, with every default applied.

    When autoscaling is off, ``max_replicas`` equals ``min_replicas`` and nothing is decided.
    """

    enabled: bool
    min_replicas: int
    max_replicas: int
    cpu_target: float | None
    memory_target: float | None
    backlog_target: int | None
    activation: int
    behavior: Behavior
    unsupported: tuple[str, ...] = ()


def _metric_target(index: int, metric: dict[str, Any]) -> tuple[str, float] | str:
    """(resource, percent) of an autoscaling/v2 MetricSpec we can follow, or why we cannot."""
    where = f"pod.autoScalingMetrics[{index}]"
    only = "only Resource cpu or memory with a Utilization target is supported"
    if metric.get("type") != "Resource":
        return f"{where}: type {metric.get('type')!r} is not supported; {only}"
    resource = metric.get("resource") or {}
    name, target = resource.get("name"), resource.get("target") or {}
    if name not in ("cpu", "memory"):
        return f"{where}: resource {name!r} is not supported; {only}"
    percent = target.get("averageUtilization")
    if target.get("type") != "Utilization" or type(percent) is not int or percent < 1:
        return f"{where}: {name} target {target!r} is not supported; {only}"
    return name, float(percent)


def _pod_targets(pod: Any, unsupported: list[str]) -> dict[str, float]:
    """Resource -> target percent from pod.builtinAutoscaler, else pod.autoScalingMetrics.

    Several targets for one resource keep the lowest: the HPA follows the largest proposal.
    """
    if pod is None:
        return {}
    targets: dict[str, float] = {}
    if pod.builtin_autoscaler:
        for rule in pod.builtin_autoscaler:
            resource, percent = BUILTIN_RULES[rule]
            targets.setdefault(resource, percent)  # Function Mesh keeps the first rule of a kind
        if pod.auto_scaling_metrics:
            unsupported.append(
                "pod.autoScalingMetrics is ignored: pod.builtinAutoscaler is set (as in Function Mesh)"
            )
        return targets
    for index, metric in enumerate(pod.auto_scaling_metrics or []):
        found = _metric_target(index, metric)
        if isinstance(found, str):
            unsupported.append(found)
        else:
            resource, percent = found
            targets[resource] = min(percent, targets.get(resource, percent))
    return targets


def _rules(model: Any, direction: str, default: ScalingRules) -> ScalingRules:
    """One direction's rules: ours (autoscaling.behavior), else pod.autoScalingBehavior."""
    spec = model.spec
    for behavior in (
        spec.autoscaling.behavior if spec.autoscaling else None,
        spec.pod.auto_scaling_behavior if spec.pod else None,
    ):
        rules = getattr(behavior, direction) if behavior is not None else None
        if rules is not None:
            return scaling_rules_from(rules, default)
    return default


def scale_spec(model: Any) -> ScaleSpec:
    """The ScaleSpec of a parsed Function, Source or Sink (fmesh_events.models)."""
    spec = model.spec
    ours = spec.autoscaling
    unsupported: list[str] = []
    targets = _pod_targets(spec.pod, unsupported)
    cpu = float(ours.cpu.target_utilization_percent) if ours and ours.cpu else targets.get("cpu")
    memory = float(ours.memory.target_utilization_percent) if ours and ours.memory \
        else targets.get("memory")
    backlog = ours.backlog if ours else None
    enabled = spec.max_replicas is not None
    has_metric = cpu is not None or memory is not None or backlog is not None or bool(
        spec.pod and spec.pod.auto_scaling_metrics
    )
    if enabled and not has_metric:
        cpu = DEFAULT_CPU_TARGET
    low = spec.min_replicas if spec.min_replicas is not None else 1
    return ScaleSpec(
        enabled=enabled,
        min_replicas=low,
        max_replicas=spec.max_replicas if enabled else low,
        cpu_target=cpu,
        memory_target=memory,
        backlog_target=backlog.target_per_replica if backlog else None,
        activation=(backlog.activation_threshold or 0) if backlog else 0,
        behavior=Behavior(
            scale_up=_rules(model, "scale_up", DEFAULT_BEHAVIOR.scale_up),
            scale_down=_rules(model, "scale_down", DEFAULT_BEHAVIOR.scale_down),
        ),
        unsupported=tuple(unsupported),
    )
