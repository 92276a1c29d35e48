"""The Source kind: a Pulsar IO source connector run as a StatefulSet."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fmesh_events.models.base import API_VERSION, Bool, FreeForm, ResourceModel, Rule
from fmesh_events.models.common import BatchSourceConfig, OutputConf
from fmesh_events.models.status import WorkloadStatus
from fmesh_events.models.workload import WORKLOAD_RULES, WorkloadSpec, name_rule

SOURCE_RULES: tuple[Rule, ...] = (
    *WORKLOAD_RULES,
    Rule(
        cel="!has(self.autoscaling) || !has(self.autoscaling.backlog)",
        message="{p}autoscaling.backlog is not available on a Source (it has no input "
        "subscription); use autoscaling.cpu",
        check=lambda s: s.autoscaling is None or s.autoscaling.backlog is None,
    ),
)


class SourceSpec(WorkloadSpec):
    """Desired state of a Source."""

    cel_rules = SOURCE_RULES

    source_type: str | None = Field(
        None, description="Type of a built-in connector (as pulsar-admin --source-type)."
    )
    output: OutputConf | None = Field(None, description="Topic the records are written to.")
    batch_source_config: BatchSourceConfig | None = Field(
        None, description="Run the connector as a batch source."
    )
    source_config: FreeForm | None = Field(
        None, description="Configuration of the connector (any shape)."
    )
    forward_source_message_property: Bool | None = Field(
        None, description="Copy record properties to the messages written."
    )


class Source(ResourceModel):
    """A Pulsar IO source (compute.functionmesh.io/v1alpha1), run by fmesh-events."""

    cel_rules = (name_rule("Source"),)

    api_version: Literal["compute.functionmesh.io/v1alpha1"] = Field(
        API_VERSION, description="compute.functionmesh.io/v1alpha1"
    )
    kind: Literal["Source"] = Field("Source", description="Source")
    metadata: FreeForm = Field(default_factory=dict, description="Standard object metadata.")
    spec: SourceSpec = Field(description="Desired state of the source.")
    status: WorkloadStatus | None = Field(None, description="Observed state of the source.")
