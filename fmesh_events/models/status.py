"""Status blocks written by the operator.

Conditions are a list of metav1.Condition-like entries keyed by ``type``, so
``kubectl wait --for=condition=Ready function/NAME`` works. Function Mesh kept a map
keyed by component instead; an object still carrying that form parses too (each
entry becomes a condition).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, JsonValue, field_validator

from fmesh_events.models.base import Int32, Int64, StatusModel

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(StatusModel):
    """One aspect of the object's state, as in metav1.Condition."""

    type: str = Field(description="What the condition is about, e.g. Ready.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str | None = Field(None, description="One CamelCase word saying why.")
    message: str | None = Field(None, description="Explanation for a person.")
    last_transition_time: str | None = Field(
        None,
        description="When status last changed (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )
    observed_generation: Int64 | None = Field(
        None, description="metadata.generation the condition was computed from."
    )


def _conditions_from_legacy(value: Any) -> Any:
    """Turn Function Mesh's ``{component: {condition, status, action}}`` map into a list."""
    if not isinstance(value, dict):
        return value
    out: list[dict[str, Any]] = []
    for component, entry in sorted(value.items()):
        entry = entry if isinstance(entry, dict) else {}
        status = entry.get("status")
        out.append(
            {
                "type": str(entry.get("condition") or f"{component}Ready"),
                "status": status if status in ("True", "False") else "Unknown",
                "reason": str(entry.get("action") or "FunctionMesh"),
                "message": f"carried over from Function Mesh status of {component}",
            }
        )
    return out


_CONDITIONS_SCHEMA: dict[str, JsonValue] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


class AutoscalingStatus(StatusModel):
    """What the fmesh-events scaler last decided; present while autoscaling is on."""

    writer: str | None = Field(
        None, description="Who writes spec.replicas while autoscaling is on (the scaler)."
    )
    desired_replicas: Int32 | None = Field(None, description="Replicas the scaler wants now.")
    last_decision: str | None = Field(None, description="The last decision's reason, in words.")
    last_decision_time: str | None = Field(None, description="When it was taken (RFC 3339).")
    last_scale_time: str | None = Field(None, description="When replicas last changed.")
    last_decision_message_id: str | None = Field(
        None, description="Id of its record on the scale-decisions topic."
    )
    backlog: Int64 | None = Field(None, description="Input backlog at the last decision.")
    cpu_utilization_percent: Int32 | None = Field(
        None, description="Average CPU use of the pods at the last decision, percent of requests."
    )


class WorkloadStatus(StatusModel):
    """Observed state of a Function, Source or Sink."""

    observed_generation: Int64 | None = Field(
        None, description="metadata.generation the operator last acted on."
    )
    replicas: Int32 | None = Field(None, description="Pods that currently exist.")
    ready_replicas: Int32 | None = Field(None, description="Pods that are ready.")
    selector: str | None = Field(
        None, description="Label selector of the pods (used by the scale subresource)."
    )
    conditions: list[Condition] | None = Field(
        None,
        description="Current conditions; Ready says whether the workload runs.",
        json_schema_extra=_CONDITIONS_SCHEMA,
    )
    last_reconcile_message_id: str | None = Field(
        None, description="Id of the Pulsar message that triggered the last reconcile."
    )
    global_backend_config_revision: str | None = Field(
        None, description="Revision of the cluster-wide BackendConfig applied."
    )
    namespaced_backend_config_revision: str | None = Field(
        None, description="Revision of the namespace's BackendConfig applied."
    )
    pending_change: str | None = Field(
        None, description="A change that is waiting to be rolled out."
    )
    autoscaling: AutoscalingStatus | None = Field(
        None, description="The autoscaler's view, written by the fmesh-events scaler."
    )

    @field_validator("conditions", mode="before")
    @classmethod
    def _legacy_conditions(cls, value: Any) -> Any:
        return _conditions_from_legacy(value)


class ChildStatus(StatusModel):
    """Summary of one child of a FunctionMesh."""

    status: str | None = Field(None, description="Ready, NotReady, Pending or Orphaned.")
    hash: str | None = Field(None, description="Hash of the child spec last applied.")
    replicas: Int32 | None = Field(None, description="Pods of the child that exist.")
    ready_replicas: Int32 | None = Field(None, description="Pods of the child that are ready.")
    message: str | None = Field(None, description="Why the child is not ready, if it is not.")


class FunctionMeshStatus(StatusModel):
    """Observed state of a FunctionMesh."""

    observed_generation: Int64 | None = Field(
        None, description="metadata.generation the operator last acted on."
    )
    conditions: list[Condition] | None = Field(
        None,
        description="Current conditions; Ready is True when every child is.",
        json_schema_extra=_CONDITIONS_SCHEMA,
    )
    function_conditions: dict[str, ChildStatus] | None = Field(
        None, description="Each function of the mesh, by name."
    )
    source_conditions: dict[str, ChildStatus] | None = Field(
        None, description="Each source of the mesh, by name."
    )
    sink_conditions: dict[str, ChildStatus] | None = Field(
        None, description="Each sink of the mesh, by name."
    )
    last_reconcile_message_id: str | None = Field(
        None, description="Id of the Pulsar message that triggered the last reconcile."
    )


class BackendConfigStatus(StatusModel):
    """Observed state of a BackendConfig."""

    observed_generation: Int64 | None = Field(
        None, description="metadata.generation the operator last acted on."
    )
    conditions: list[Condition] | None = Field(
        None, description="Current conditions.", json_schema_extra=_CONDITIONS_SCHEMA
    )
