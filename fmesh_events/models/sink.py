"""The Sink kind: a Pulsar IO sink connector run as a StatefulSet."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fmesh_events.models.base import API_VERSION, FreeForm, Int32, ResourceModel, Rule
from fmesh_events.models.status import WorkloadStatus
from fmesh_events.models.workload import (
    CONSUMER_RULES,
    INPUT_RULE,
    WORKLOAD_RULES,
    ConsumerFields,
    WorkloadSpec,
    name_rule,
)

SINK_RULES: tuple[Rule, ...] = (*WORKLOAD_RULES, INPUT_RULE, *CONSUMER_RULES)


class SinkSpec(WorkloadSpec, ConsumerFields):
    """Desired state of a Sink."""

    cel_rules = SINK_RULES

    sink_type: str | None = Field(
        None, description="Type of a built-in connector (as pulsar-admin --sink-type)."
    )
    sink_config: FreeForm | None = Field(
        None, description="Configuration of the connector (any shape)."
    )
    negative_ack_redelivery_delay_ms: Int32 | None = Field(
        None, ge=0, description="Delay before a negatively acknowledged message comes back, in ms."
    )


class Sink(ResourceModel):
    """A Pulsar IO sink (compute.functionmesh.io/v1alpha1), run by fmesh-events."""

    cel_rules = (name_rule("Sink"),)

    api_version: Literal["compute.functionmesh.io/v1alpha1"] = Field(
        API_VERSION, description="compute.functionmesh.io/v1alpha1"
    )
    kind: Literal["Sink"] = Field("Sink", description="Sink")
    metadata: FreeForm = Field(default_factory=dict, description="Standard object metadata.")
    spec: SinkSpec = Field(description="Desired state of the sink.")
    status: WorkloadStatus | None = Field(None, description="Observed state of the sink.")
