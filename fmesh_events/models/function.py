"""The Function kind: a Pulsar Function run as a StatefulSet."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fmesh_events.models.base import (
    API_VERSION,
    Bool,
    FreeForm,
    Int32,
    ResourceModel,
    Rule,
    SpecModel,
    VolumeClaimTemplates,
    core,
)
from fmesh_events.models.common import (
    BatchSourceConfig,
    OutputConf,
    PVCRetentionPolicy,
    WindowConfig,
)
from fmesh_events.models.status import WorkloadStatus
from fmesh_events.models.workload import (
    CONSUMER_RULES,
    FUNCTION_INPUT_RULE,
    WORKLOAD_RULES,
    ConsumerFields,
    WorkloadSpec,
    name_rule,
)


class FunctionSourceConnector(SpecModel):
    """A source connector that replaces the function's input (connector-backed function)."""

    archive: str | None = Field(
        None, description="NAR archive of the connector; builtin://NAME names a built-in one."
    )
    builtin: str | None = Field(None, description="Name of the built-in source connector.")
    source_type: str | None = Field(None, description="Type of the built-in source connector.")
    class_name: str | None = Field(None, description="Class implementing the source.")
    type_class_name: str | None = Field(None, description="Java type of the records produced.")
    configs: FreeForm | None = Field(None, description="Configuration of the connector.")
    batch_source_config: BatchSourceConfig | None = Field(
        None, description="Run the connector as a batch source."
    )


class FunctionSinkConnector(SpecModel):
    """A sink connector that replaces the function's output (connector-backed function)."""

    archive: str | None = Field(
        None, description="NAR archive of the connector; builtin://NAME names a built-in one."
    )
    builtin: str | None = Field(None, description="Name of the built-in sink connector.")
    sink_type: str | None = Field(None, description="Type of the built-in sink connector.")
    class_name: str | None = Field(None, description="Class implementing the sink.")
    type_class_name: str | None = Field(None, description="Java type of the records consumed.")
    configs: FreeForm | None = Field(None, description="Configuration of the connector.")


FUNCTION_RULES: tuple[Rule, ...] = (
    *WORKLOAD_RULES,
    FUNCTION_INPUT_RULE,
    *CONSUMER_RULES,
    Rule(
        cel="!has(self.output) || !has(self.output.topic) || !has(self.input) || "
        "!has(self.input.topics) || !(self.output.topic in self.input.topics)",
        message="{p}output.topic must not also be an input topic",
        check=lambda s: (
            s.output is None
            or s.output.topic is None
            or s.input is None
            or s.output.topic not in (s.input.topics or ())
        ),
    ),
)


class FunctionSpec(WorkloadSpec, ConsumerFields):
    """Desired state of a Function."""

    cel_rules = FUNCTION_RULES

    output: OutputConf | None = Field(None, description="Output topic.")
    func_config: FreeForm | None = Field(
        None, description="User configuration handed to the function (any shape)."
    )
    source_config: FunctionSourceConnector | None = Field(
        None, description="Read through a source connector instead of input topics."
    )
    sink_config: FunctionSinkConnector | None = Field(
        None, description="Write through a sink connector instead of the output topic."
    )
    forward_source_message_property: Bool | None = Field(
        None, description="Copy input message properties to output messages (default: true)."
    )
    max_pending_async_requests: Int32 | None = Field(
        None, ge=1, description="Most asynchronous requests in flight (default: 1000)."
    )
    skip_to_latest: Bool | None = Field(
        None, description="On restart, skip to the latest message of the input."
    )
    window_config: WindowConfig | None = Field(
        None, description="Run the function over windows of messages."
    )
    volume_claim_templates: VolumeClaimTemplates | None = Field(
        None,
        description=core(
            "PersistentVolumeClaim", "Claims created for every pod of the StatefulSet."
        ),
    )
    persistent_volume_claim_retention_policy: PVCRetentionPolicy | None = Field(
        None, description="Whether claims of volumeClaimTemplates outlive the pods."
    )


class Function(ResourceModel):
    """A Pulsar Function (compute.functionmesh.io/v1alpha1), run by fmesh-events."""

    cel_rules = (name_rule("Function"),)

    api_version: Literal["compute.functionmesh.io/v1alpha1"] = Field(
        API_VERSION, description="compute.functionmesh.io/v1alpha1"
    )
    kind: Literal["Function"] = Field("Function", description="Function")
    metadata: FreeForm = Field(default_factory=dict, description="Standard object metadata.")
    spec: FunctionSpec = Field(description="Desired state of the function.")
    status: WorkloadStatus | None = Field(None, description="Observed state of the function.")
