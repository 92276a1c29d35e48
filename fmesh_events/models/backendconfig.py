"""The BackendConfig kind: defaults applied to every workload of a namespace or cluster."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fmesh_events.models.base import (
    API_VERSION,
    Bool,
    FreeForm,
    ResourceModel,
    SpecModel,
    StringMap,
)
from fmesh_events.models.common import PodPolicy
from fmesh_events.models.status import BackendConfigStatus


class BackendConfigSpec(SpecModel):
    """Defaults for the Functions, Sources and Sinks a BackendConfig applies to.

    One in the operator's own namespace applies cluster-wide; one in another
    namespace applies there and wins over the cluster-wide one.
    """

    name: str | None = Field(None, description="Name of this set of defaults.")
    env: StringMap | None = Field(
        None, description="Environment variables added to every workload container."
    )
    pod: PodPolicy | None = Field(None, description="Pod settings merged into every workload.")
    auto_update: Bool | None = Field(
        None, description="Roll out to existing workloads when this object changes."
    )


class BackendConfig(ResourceModel):
    """Shared defaults for workloads (compute.functionmesh.io/v1alpha1)."""

    api_version: Literal["compute.functionmesh.io/v1alpha1"] = Field(
        API_VERSION, description="compute.functionmesh.io/v1alpha1"
    )
    kind: Literal["BackendConfig"] = Field("BackendConfig", description="BackendConfig")
    metadata: FreeForm = Field(default_factory=dict, description="Standard object metadata.")
    spec: BackendConfigSpec = Field(description="The defaults.")
    status: BackendConfigStatus | None = Field(
        None, description="Observed state of the BackendConfig."
    )
