"""Replica math of the HorizontalPodAutoscaler, and of KEDA's Pulsar scaler on top of it.

Pure functions: the scaler feeds them samples and its own history, so a decision here is the
one a Kubernetes HPA (kubernetes pkg/controller/podautoscaler: replica_calculator.go,
horizontal.go; pkg/apis/autoscaling/v2/defaults.go) would take with the same numbers, and
users can read Kubernetes' documentation to predict it.

History contract of :func:`decide`: the caller keeps two lists per workload and persists them.
After each decision it appends ``(inputs.now, decision.recommendation)`` to the
recommendations, and when it applies a change, ``(inputs.now, desired - current)`` to the
scale events. Entries older than the longest stabilization window or policy period no longer
count and may be dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from fmesh_events import models
    from fmesh_events.scale.spec import ScaleSpec

Tolerance = float | tuple[float, float]
"""A tolerance for both directions, or (scale-down, scale-up) tolerances (Kubernetes 1.33+)."""

DEFAULT_TOLERANCE = 0.1
"""kube-controller-manager's --horizontal-pod-autoscaler-tolerance."""


@dataclass(frozen=True)
class ScalingPolicy:
    """At most ``value`` pods (Pods) or percent (Percent) of change per ``period_seconds``."""

    type: Literal["Pods", "Percent"]
    value: int
    period_seconds: int

    def __str__(self) -> str:
        return f"{self.type} {self.value} per {self.period_seconds}s"


@dataclass(frozen=True)
class ScalingRules:
    """HPAScalingRules for one direction, with every default filled in."""

    stabilization_window_seconds: int
    select_policy: Literal["Max", "Min", "Disabled"]
    policies: tuple[ScalingPolicy, ...]
    tolerance: float = DEFAULT_TOLERANCE


@dataclass(frozen=True)
class Behavior:
    """HorizontalPodAutoscalerBehavior with every default filled in."""

    scale_up: ScalingRules
    scale_down: ScalingRules


DEFAULT_BEHAVIOR = Behavior(
    scale_up=ScalingRules(
        stabilization_window_seconds=0,
        select_policy="Max",
        policies=(ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15)),
    ),
    scale_down=ScalingRules(
        stabilization_window_seconds=300,
        select_policy="Max",
        policies=(ScalingPolicy("Percent", 100, 15),),
    ),
)
"""What autoscaling/v2 defaulting and the controller's 300s downscale window give."""

_QUANTITY_SUFFIXES: tuple[tuple[str, Decimal], ...] = (
    *((s, Decimal(1024) ** (i + 1)) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))),
    *((s, Decimal(10) ** e) for s, e in (("n", -9), ("u", -6), ("m", -3), ("k", 3), ("M", 6),
                                          ("G", 9), ("T", 12), ("P", 15), ("E", 18))),
)


def _quantity(value: int | str) -> float:
    """The number a Kubernetes quantity stands for ("0.1", "50m", 1); tolerances are quantities.

    Total over what the CRD's pattern admits, a fractional exponent ("1e2.5") included; an
    exponent too large for any number reads as infinity (or 0 when negative).
    """
    text = str(value).strip()
    for suffix, factor in _QUANTITY_SUFFIXES:
        if text.endswith(suffix):
            return float(Decimal(text[: -len(suffix)]) * factor)
    number, _, exponent = text.lower().partition("e")
    try:
        return float(Decimal(number) * Decimal(10) ** Decimal(exponent or 0))
    except ArithmeticError:
        return 0.0 if exponent.startswith("-") else math.inf


def scaling_rules_from(rules: models.HPAScalingRules | None, default: ScalingRules) -> ScalingRules:
    """The rules with what they leave out taken from ``default``, field by field (defaults.go).

    An empty policy list counts as unset: the API server refuses it on a real HPA.
    """
    if rules is None:
        return default
    return ScalingRules(
        stabilization_window_seconds=(
            rules.stabilization_window_seconds
            if rules.stabilization_window_seconds is not None
            else default.stabilization_window_seconds
        ),
        select_policy=rules.select_policy or default.select_policy,
        policies=(
            tuple(ScalingPolicy(p.type, p.value, p.period_seconds) for p in rules.policies)
            if rules.policies
            else default.policies
        ),
        tolerance=_quantity(rules.tolerance) if rules.tolerance is not None else default.tolerance,
    )


def behavior_from(spec: models.HPABehavior | None) -> Behavior:
    """A CR's behavior block with the HPA defaults for whatever it leaves out."""
    if spec is None:
        return DEFAULT_BEHAVIOR
    return Behavior(
        scale_up=scaling_rules_from(spec.scale_up, DEFAULT_BEHAVIOR.scale_up),
        scale_down=scaling_rules_from(spec.scale_down, DEFAULT_BEHAVIOR.scale_down),
    )


# --------------------------------------------------------------------------- per metric


def _within(ratio: float, tolerance: Tolerance) -> bool:
    """Tolerances.isWithin: the ratio is too close to 1 to act on."""
    down, up = tolerance if isinstance(tolerance, tuple) else (tolerance, tolerance)
    return 1.0 - down <= ratio <= 1.0 + up


def ratio_replicas(
    current: int, value: float, target: float, tolerance: Tolerance = DEFAULT_TOLERANCE
) -> int:
    """ceil(current * value / target), or current when the ratio is within tolerance."""
    ratio = value / target
    if _within(ratio, tolerance):
        return current
    return math.ceil(ratio * current)


def backlog_replicas(
    current: int,
    backlog: int,
    target_per_replica: int,
    activation: int = 0,
    min_replicas: int = 0,
    tolerance: Tolerance = DEFAULT_TOLERANCE,
) -> int:
    """Replicas for a backlog, as KEDA's msgBacklog (an External AverageValue metric) gets them.

    At 0 replicas KEDA's activation decides: only a backlog above ``activation`` starts pods.
    At or below minReplicas an inactive backlog does not scale up either.
    """
    if current == 0:
        return 0 if backlog <= activation else max(1, -(-backlog // target_per_replica))
    proposal = current
    if not _within(backlog / (target_per_replica * current), tolerance):
        proposal = -(-backlog // target_per_replica)
    if current <= min_replicas and backlog <= activation:
        return min(proposal, current)
    return proposal


def _percent(total: float, count: int) -> int:
    """Average utilization in whole percent, truncated as GetResourceUtilizationRatio does.

    Rounded to 6 places first so float noise (79.9999999) does not lose a percent.
    """
    return math.floor(round(total / count, 6))


def utilization_replicas(
    current: int,
    ready_utilizations: Sequence[float],
    target_percent: float,
    missing: int = 0,
    unready: int = 0,
    tolerance: Tolerance = DEFAULT_TOLERANCE,
) -> int | None:
    """Replicas for a Resource Utilization target (GetResourceReplicas), None without samples.

    ``ready_utilizations`` are percents of the request of ready pods that have a sample;
    ``missing`` pods have none, ``unready`` pods are not ready yet (their samples set aside).
    Missing pods count as using max(100%, target) when scaling down and 0% when scaling up,
    unready ones as 0% when scaling up; a ratio that then flips direction changes nothing.
    """
    if not ready_utilizations:
        return None
    count = len(ready_utilizations)
    total = float(sum(ready_utilizations))
    ratio = _percent(total, count) / target_percent
    with_unready = unready > 0 and ratio > 1.0
    if not with_unready and missing == 0:
        return current if _within(ratio, tolerance) else math.ceil(ratio * count)
    if missing and ratio != 1.0:
        if ratio < 1.0:
            total += missing * max(100.0, target_percent)
        count += missing
    if with_unready:
        count += unready
    new_ratio = _percent(total, count) / target_percent
    if _within(new_ratio, tolerance) or (ratio < 1.0 < new_ratio) or (new_ratio < 1.0 < ratio):
        return current
    replicas = math.ceil(new_ratio * count)
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return current
    return replicas


# --------------------------------------------------------------------------- over time


def stabilize(
    history: Sequence[tuple[float, int]], now: float, recommendation: int, current: int, behavior: Behavior
) -> int:
    """stabilizeRecommendationWithBehaviors: the most conservative recommendation of each window.

    Scaling up goes no higher than the lowest recommendation of the scale-up window, scaling
    down no lower than the highest of the scale-down window (both include ``recommendation``).
    """
    up_cutoff = now - behavior.scale_up.stabilization_window_seconds
    down_cutoff = now - behavior.scale_down.stabilization_window_seconds
    up = min([recommendation, *(r for t, r in history if t > up_cutoff)])
    down = max([recommendation, *(r for t, r in history if t > down_cutoff)])
    return min(max(current, up), down)


def _limit(
    current: int, events: Sequence[tuple[float, int]], now: float, rules: ScalingRules, up: bool
) -> tuple[int, str] | None:
    """The furthest replicas the rules allow from current, and the policy that allows it.

    Pods changed within a policy's period count against it, in either direction (the period
    starts at current minus the net change). None when no policy limits this direction.
    """
    direction = "scaleUp" if up else "scaleDown"
    if rules.select_policy == "Disabled":
        return current, f"{direction} selectPolicy Disabled"
    proposals: list[tuple[int, ScalingPolicy]] = []
    for policy in rules.policies:
        start = current - sum(change for t, change in events if t > now - policy.period_seconds)
        if policy.type == "Pods":
            proposed = start + policy.value if up else start - policy.value
        elif up:  # rounded up, or a small Percent would never add a pod
            proposed = math.ceil(start * (1 + policy.value / 100))
        else:
            proposed = int(start * (1 - policy.value / 100))
        proposals.append((proposed, policy))
    if not proposals:
        return None
    # Max picks the largest change: the highest count up, the lowest down; Min the opposite.
    pick = max if (rules.select_policy == "Max") == up else min
    value = pick(p for p, _ in proposals)
    policy = next(pol for p, pol in proposals if p == value)
    return value, f"{direction} policy {policy}"


def rate_limit(
    current: int, desired: int, scale_events: Sequence[tuple[float, int]], now: float, behavior: Behavior
) -> tuple[int, str | None]:
    """convertDesiredReplicasWithBehaviorRate without min/max: desired within the policies' rate.

    ``scale_events`` are (time, signed replica change) of the changes applied. Returns the
    limited count and the limit that applied (e.g. "scaleUp policy Pods 4 per 15s"), or None.
    """
    if desired == current:
        return desired, None
    up = desired > current
    found = _limit(current, scale_events, now, behavior.scale_up if up else behavior.scale_down, up)
    if found is None:
        return desired, None
    limit, which = found
    if up and desired > max(limit, current):
        return max(limit, current), which
    if not up and desired < min(limit, current):
        return min(limit, current), which
    return desired, None


# --------------------------------------------------------------------------- the decision


@dataclass(frozen=True)
class Inputs:
    """One sample of a workload: its replicas and metrics (``*_available`` False: not served)."""

    current: int
    now: float
    cpu_utilizations: tuple[float, ...] = ()
    cpu_missing: int = 0
    cpu_unready: int = 0
    memory_utilizations: tuple[float, ...] = ()
    memory_missing: int = 0
    backlog: int | None = None
    cpu_available: bool = True
    memory_available: bool = True
    backlog_missing: str | None = None
    """Why the backlog is unknown, in words ("backlog unknown: cluster X refused the token")."""


@dataclass(frozen=True)
class Decision:
    """What to scale to and why; ``recommendation`` is the clamped value before stabilization.

    When the decision holds for want of data, ``recommendation`` is the current count: recorded,
    it keeps a scale-down waiting until the data has been back for a whole window.
    """

    current: int
    recommendation: int
    desired: int
    cpu: int | None
    memory: int | None
    backlog: int | None
    action: Literal["UP", "DOWN", "NONE"]
    reason: str


_PerMetric = tuple[int | None, int | None, int | None]
"""The cpu, memory and backlog proposals."""


def _hold(current: int, reason: str, target: int | None = None,
          per_metric: _PerMetric = (None, None, None)) -> Decision:
    """A decision taken without stabilization or rate limits: hold, or go straight to a bound."""
    desired = current if target is None else target
    return Decision(current, desired, desired, *per_metric, _action(current, desired), reason)


def _action(current: int, desired: int) -> Literal["UP", "DOWN", "NONE"]:
    return "UP" if desired > current else "DOWN" if desired < current else "NONE"


def _number(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,g}"


def _pods(count: int, what: str) -> str:
    return f"{count} pod{'s' if count != 1 else ''} {what}"


@dataclass(frozen=True)
class _Metric:
    """One metric's proposal (None: no data), how to say it, and why data is missing."""

    proposal: int | None
    text: str
    missing: str | None = None


def _resource(
    name: str,
    available: bool,
    samples: tuple[float, ...],
    missing: int,
    unready: int,
    target: float,
    current: int,
    tolerance: Tolerance,
) -> _Metric:
    if not available:
        return _Metric(None, f"{name}: metrics.k8s.io not served", "metrics.k8s.io not served")
    proposal = utilization_replicas(current, samples, target, missing, unready, tolerance)
    if proposal is None:
        return _Metric(None, f"{name}: no samples", f"no {name} samples")
    extra = [_pods(missing, "without samples")] if missing else []
    extra += [_pods(unready, "not ready")] if unready else []
    aside = f" ({', '.join(extra)})" if extra else ""
    used = _percent(sum(samples), len(samples))
    return _Metric(proposal, f"{name} {used}% of requests vs target {_number(target)}%{aside} -> {proposal}")


def _backlog(
    backlog: int | None, target: int, activation: int, low: int, current: int, tolerance: Tolerance,
    why: str | None = None,
) -> _Metric:
    if backlog is None:
        text = why or "backlog unknown"
        return _Metric(None, text, text)
    proposal = backlog_replicas(current, backlog, target, activation, low, tolerance)
    if activation and backlog <= activation and current <= low:
        return _Metric(proposal, f"backlog {backlog:,} not above activation {activation:,} -> {proposal}")
    if backlog == 0:
        return _Metric(proposal, f"backlog 0 -> {proposal}")
    if current == 0:
        text = f"backlog {backlog:,} above activation {activation:,}, target {target:,} per replica"
        return _Metric(proposal, f"{text} -> {proposal}")
    return _Metric(proposal, f"backlog {backlog:,} over target {target:,} x {current} replicas -> {proposal}")


def decide(
    spec: ScaleSpec,
    inputs: Inputs,
    recommendations: Sequence[tuple[float, int]],
    scale_events: Sequence[tuple[float, int]],
) -> Decision:
    """The replicas an HPA with this spec would set now, and one sentence saying why.

    Each configured metric proposes a count and the largest wins; with data missing, no
    scale-down. The result is clamped to [minReplicas, maxReplicas], stabilized over
    ``recommendations`` and rate-limited by ``scale_events`` (see the module's history contract).
    Like the HPA controller, a count outside [minReplicas, maxReplicas] goes straight to the
    bound, and 0 replicas with minReplicas above 0 means the workload is stopped: left alone.
    """
    current, low, high = inputs.current, spec.min_replicas, spec.max_replicas
    if not spec.enabled:
        return _hold(current, f"autoscaling is off (maxReplicas unset): holding at {current}")
    if current == 0 and low > 0:
        return _hold(current, f"replicas is 0 (stopped) and minReplicas {low}: not autoscaling")
    if current > high:
        return _hold(current, f"replicas {current} above maxReplicas {high} -> {high}", high)
    if current < low:
        return _hold(current, f"replicas {current} below minReplicas {low} -> {low}", low)
    tolerance = (spec.behavior.scale_down.tolerance, spec.behavior.scale_up.tolerance)
    configured: dict[str, _Metric] = {}
    if spec.cpu_target is not None:
        configured["cpu"] = _resource(
            "cpu", inputs.cpu_available, inputs.cpu_utilizations, inputs.cpu_missing,
            inputs.cpu_unready, spec.cpu_target, current, tolerance,
        )
    if spec.memory_target is not None:
        configured["memory"] = _resource(
            "memory", inputs.memory_available, inputs.memory_utilizations, inputs.memory_missing,
            0, spec.memory_target, current, tolerance,
        )
    if spec.backlog_target is not None:
        configured["backlog"] = _backlog(
            inputs.backlog, spec.backlog_target, spec.activation, low, current, tolerance,
            inputs.backlog_missing,
        )
    if not configured:
        return _hold(current, f"no supported metric configured: holding at {current}")
    cpu, memory, backlog = (configured[m].proposal if m in configured else None
                            for m in ("cpu", "memory", "backlog"))
    per_metric: _PerMetric = (cpu, memory, backlog)
    proposals = [m.proposal for m in configured.values() if m.proposal is not None]
    causes = list(dict.fromkeys(m.missing for m in configured.values() if m.missing))
    if not proposals:
        return _hold(current, f"no metrics ({'; '.join(causes)}): holding at {current}", None, per_metric)
    reason = "; ".join(m.text for m in configured.values())
    raw = max(proposals)
    if causes and raw < current:
        return _hold(current, f"{reason}; scale-down held at {current} (missing data)", None, per_metric)

    recommendation = min(max(raw, low), high)
    if raw > high:
        reason += f", capped at maxReplicas {high}"
    elif raw < low:
        reason += f", raised to minReplicas {low}"
    stabilized = stabilize(recommendations, inputs.now, recommendation, current, spec.behavior)
    if stabilized > recommendation:
        window = spec.behavior.scale_down.stabilization_window_seconds
        reason += f"; scale-down held at {stabilized} by the {window}s stabilization window"
    elif stabilized < recommendation:
        window = spec.behavior.scale_up.stabilization_window_seconds
        reason += f"; scale-up held at {stabilized} by the {window}s stabilization window"
    limited, which = rate_limit(current, stabilized, scale_events, inputs.now, spec.behavior)
    if which:
        reason += f"; limited to {limited} by the {which}"
    desired = min(max(limited, low), high)
    return Decision(current, recommendation, desired, *per_metric, _action(current, desired), reason)
