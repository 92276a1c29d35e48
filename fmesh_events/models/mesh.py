"""The FunctionMesh kind: functions, sources and sinks deployed together.

Each entry of ``functions``, ``sources`` and ``sinks`` is a full Function, Source or
Sink spec plus a required ``name`` that is unique in its list; the operator creates
one child object per entry.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, JsonValue, model_validator

from fmesh_events.models.base import API_VERSION, FreeForm, ResourceModel, Rule, SpecModel
from fmesh_events.models.function import FunctionSpec
from fmesh_events.models.sink import SinkSpec
from fmesh_events.models.source import SourceSpec
from fmesh_events.models.status import FunctionMeshStatus
from fmesh_events.models.workload import MAX_NAME_LENGTH, NAME_PATTERN, name_fits

MAX_MESH_ENTRIES = 100
"""Most entries per list; keeps the cost of the per-entry CEL rules bounded."""

ENTRY_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_ENTRY_NAME_DESCRIPTION = (
    "Name of the entry, unique in its list; the child object is named after the mesh "
    "and this name. Also the name in Pulsar unless overridden."
)
_LIST_MAP: dict[str, JsonValue] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["name"],
}


class MeshFunction(FunctionSpec):
    """A function of the mesh."""

    message_prefix = ""

    name: str = Field(
        min_length=1, max_length=63, pattern=ENTRY_NAME_PATTERN, description=_ENTRY_NAME_DESCRIPTION
    )


class MeshSource(SourceSpec):
    """A source of the mesh."""

    message_prefix = ""

    name: str = Field(
        min_length=1, max_length=63, pattern=ENTRY_NAME_PATTERN, description=_ENTRY_NAME_DESCRIPTION
    )


class MeshSink(SinkSpec):
    """A sink of the mesh."""

    message_prefix = ""

    name: str = Field(
        min_length=1, max_length=63, pattern=ENTRY_NAME_PATTERN, description=_ENTRY_NAME_DESCRIPTION
    )


class FunctionMeshSpec(SpecModel):
    """Desired state of a FunctionMesh: lists of child specs."""

    functions: list[MeshFunction] | None = Field(
        None,
        max_length=MAX_MESH_ENTRIES,
        description="Functions of the mesh (a list; each entry is a Function spec with a name).",
        json_schema_extra=_LIST_MAP,
    )
    sources: list[MeshSource] | None = Field(
        None,
        max_length=MAX_MESH_ENTRIES,
        description="Sources of the mesh (a list; each entry is a Source spec with a name).",
        json_schema_extra=_LIST_MAP,
    )
    sinks: list[MeshSink] | None = Field(
        None,
        max_length=MAX_MESH_ENTRIES,
        description="Sinks of the mesh (a list; each entry is a Sink spec with a name).",
        json_schema_extra=_LIST_MAP,
    )

    @model_validator(mode="after")
    def _unique_names(self) -> FunctionMeshSpec:
        # The API server enforces this through the list-map keys; mirrored here.
        for field, entries in (
            ("functions", self.functions),
            ("sources", self.sources),
            ("sinks", self.sinks),
        ):
            seen: set[str] = set()
            for entry in entries or ():
                if entry.name in seen:
                    raise ValueError(f"spec.{field}: duplicate entry name {entry.name!r}")
                seen.add(entry.name)
        return self


def _child_names_rule(field: str, kind: str) -> Rule:
    """Each child <mesh>-<entry> must fit the name limit of its kind."""
    most = MAX_NAME_LENGTH[kind] - 1
    return Rule(
        cel=f"!has(self.spec.{field}) || self.spec.{field}.all(e, "
        f"size(self.metadata.name) + size(e.name) <= {most})",
        message=f"spec.{field}: metadata.name and each entry name together must be at most "
        f"{most} characters (the {kind} made for an entry is named <mesh>-<entry>, at most "
        f"{most + 1})",
        check=lambda m: all(
            len(str(m.metadata.get("name") or "")) + len(e.name) <= most
            for e in getattr(m.spec, field) or ()
        ),
        field_path=f".spec.{field}",
    )


class FunctionMesh(ResourceModel):
    """Functions, sources and sinks deployed together (compute.functionmesh.io/v1alpha1)."""

    cel_rules = (
        Rule(
            cel=f"self.metadata.name.matches('{NAME_PATTERN}')",
            message="metadata.name must be a-z, 0-9 and '-', starting with a letter (it "
            "starts the names of the children, their StatefulSets and Services)",
            check=lambda m: name_fits(m.metadata.get("name"), 253),
            ),
        _child_names_rule("functions", "Function"),
        _child_names_rule("sources", "Source"),
        _child_names_rule("sinks", "Sink"),
    )

    api_version: Literal["compute.functionmesh.io/v1alpha1"] = Field(
        API_VERSION, description="compute.functionmesh.io/v1alpha1"
    )
    kind: Literal["FunctionMesh"] = Field("FunctionMesh", description="FunctionMesh")
    metadata: FreeForm = Field(default_factory=dict, description="Standard object metadata.")
    spec: FunctionMeshSpec = Field(description="Desired state of the mesh.")
    status: FunctionMeshStatus | None = Field(None, description="Observed state of the mesh.")
