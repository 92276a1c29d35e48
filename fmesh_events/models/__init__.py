"""Pydantic models of the compute.functionmesh.io/v1alpha1 kinds.

These models are the source of truth for the CRDs (``fmesh_events.models.crd``).
Parse an object read from the API server with :func:`parse_resource`, or with the
kind's model directly (``Function.model_validate(obj)``). Dump with
``model_dump(by_alias=True, exclude_unset=True)`` to get Kubernetes JSON back.
"""

from __future__ import annotations

from typing import Any

from fmesh_events.models.backendconfig import BackendConfig, BackendConfigSpec
from fmesh_events.models.base import (
    API_VERSION,
    GROUP,
    VERSION,
    Rule,
    allow_deep_objects,
    describe_error,
    describe_errors,
)
from fmesh_events.models.common import (
    AuthConfig,
    AutoscalingSpec,
    BacklogAutoscaling,
    CPUAutoscaling,
    EnvVar,
    GenericRuntime,
    GoRuntime,
    HPABehavior,
    HPAScalingPolicy,
    HPAScalingRules,
    InputConf,
    JavaRuntime,
    OutputConf,
    PodPolicy,
    PulsarMessaging,
    PythonRuntime,
    ResourceRequirements,
    WindowConfig,
)
from fmesh_events.models.function import Function, FunctionSpec
from fmesh_events.models.mesh import (
    FunctionMesh,
    FunctionMeshSpec,
    MeshFunction,
    MeshSink,
    MeshSource,
)
from fmesh_events.models.sink import Sink, SinkSpec
from fmesh_events.models.source import Source, SourceSpec
from fmesh_events.models.status import (
    BackendConfigStatus,
    ChildStatus,
    Condition,
    FunctionMeshStatus,
    WorkloadStatus,
)
from fmesh_events.models.workload import WorkloadSpec

Resource = Function | Source | Sink | FunctionMesh | BackendConfig
"""Any of the five kinds."""

MODELS_BY_KIND: dict[str, type[Resource]] = {
    "Function": Function,
    "Source": Source,
    "Sink": Sink,
    "FunctionMesh": FunctionMesh,
    "BackendConfig": BackendConfig,
}
"""The model of each kind, by ``kind``."""

PLURALS: dict[str, str] = {
    "Function": "functions",
    "Source": "sources",
    "Sink": "sinks",
    "FunctionMesh": "functionmeshes",
    "BackendConfig": "backendconfigs",
}
"""The resource (plural) name of each kind, as used in API paths."""


def parse_resource(obj: dict[str, Any]) -> Resource:
    """Parse an object of one of the five kinds, picking the model by its ``kind``.

    Raises ``ValueError`` for another apiVersion or kind, and pydantic's
    ``ValidationError`` (a ``ValueError``) when the object does not fit its model.
    """
    if obj.get("apiVersion") != API_VERSION:
        raise ValueError(f"not a {API_VERSION} object: apiVersion={obj.get('apiVersion')!r}")
    model = MODELS_BY_KIND.get(str(obj.get("kind")))
    if model is None:
        raise ValueError(
            f"unknown kind {obj.get('kind')!r}; expected one of {sorted(MODELS_BY_KIND)}"
        )
    return model.model_validate(obj)


__all__ = [
    "API_VERSION",
    "GROUP",
    "MODELS_BY_KIND",
    "PLURALS",
    "VERSION",
    "AuthConfig",
    "AutoscalingSpec",
    "BackendConfig",
    "BackendConfigSpec",
    "BackendConfigStatus",
    "BacklogAutoscaling",
    "CPUAutoscaling",
    "ChildStatus",
    "Condition",
    "EnvVar",
    "Function",
    "FunctionMesh",
    "FunctionMeshSpec",
    "FunctionMeshStatus",
    "FunctionSpec",
    "GenericRuntime",
    "GoRuntime",
    "HPABehavior",
    "HPAScalingPolicy",
    "HPAScalingRules",
    "InputConf",
    "JavaRuntime",
    "MeshFunction",
    "MeshSink",
    "MeshSource",
    "OutputConf",
    "PodPolicy",
    "PulsarMessaging",
    "PythonRuntime",
    "Resource",
    "ResourceRequirements",
    "Rule",
    "Sink",
    "SinkSpec",
    "Source",
    "SourceSpec",
    "WindowConfig",
    "WorkloadSpec",
    "WorkloadStatus",
    "allow_deep_objects",
    "describe_error",
    "describe_errors",
    "parse_resource",
]
