"""Building blocks shared by every model: base classes, scalar types and CEL rules.

The pydantic models in this package are the single source of truth for the
CustomResourceDefinitions (see :mod:`fmesh_events.models.crd`). A few conventions
make that conversion mechanical:

* Python attributes are snake_case; the JSON names are camelCase aliases
  (``alias_generator=to_camel``), with an explicit alias where Function Mesh's JSON
  name is not the plain conversion (``serdeClassname``, ``imageHasGet``...).
* Spec models forbid unknown fields, so a typo is a parse error. Status models
  accept anything extra.
* Integers and booleans are strict: ``replicas: "2"`` is refused here exactly as the
  API server refuses it.
* Kubernetes core types that Function Mesh embeds whole (Container, Volume, Affinity,
  ...) are plain dicts, rendered in the CRD as objects that keep unknown fields.
* Cross-field checks are written once as a :class:`Rule`: a CEL expression for the
  API server plus the same check in Python for the operator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Final, Literal

import annotated_types as at
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

GROUP = "compute.functionmesh.io"
VERSION = "v1alpha1"
API_VERSION: Final = "compute.functionmesh.io/v1alpha1"
assert f"{GROUP}/{VERSION}" == API_VERSION

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# The regular expression Kubernetes uses for resource.Quantity strings.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

# --------------------------------------------------------------------------- scalars

Int32 = Annotated[StrictInt, at.Ge(INT32_MIN), at.Le(INT32_MAX)]
"""A 32-bit signed integer (rendered with ``format: int32``)."""

Int64 = Annotated[StrictInt, at.Ge(INT64_MIN), at.Le(INT64_MAX)]
"""A 64-bit signed integer (rendered with ``format: int64``)."""

Bool = StrictBool

Quantity = Annotated[
    StrictInt | Annotated[str, Field(pattern=QUANTITY_PATTERN)],
    WithJsonSchema({"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN}),
]
"""A Kubernetes resource quantity: an integer or a string such as ``500m`` or ``1.5Gi``."""

FreeForm = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""An object of any shape, kept as given (user configuration, embedded core types)."""

StringMap = dict[str, str]

ImagePullPolicy = Literal["Always", "Never", "IfNotPresent"]


# --------------------------------------------------------------------------- CEL rules


@dataclass(frozen=True)
class Rule:
    """A cross-field check, enforced twice: by the API server and by the operator.

    ``cel`` is the ``x-kubernetes-validations`` rule evaluated with ``self`` bound to
    the object the rule is attached to. ``check`` is the same test in Python over the
    model instance; it returns True when the object is valid. ``message`` may contain
    ``{p}``, replaced by ``spec.`` on a top-level spec and by nothing inside a
    FunctionMesh entry (where the API server already prefixes the entry's path).
    """

    cel: str
    message: str
    check: Callable[[Any], bool]

    def render(self, prefix: str) -> str:
        return self.message.replace("{p}", prefix)


def _add_cel_rules(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    rules: tuple[Rule, ...] = getattr(cls, "cel_rules", ())
    if not rules:
        return
    prefix: str = getattr(cls, "message_prefix", "")
    schema["x-kubernetes-validations"] = [
        {"rule": rule.cel, "message": rule.render(prefix)} for rule in rules
    ]


# --------------------------------------------------------------------------- base classes


class SpecModel(BaseModel):
    """Base for everything under ``spec``: camelCase JSON, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra=_add_cel_rules,
    )

    cel_rules: ClassVar[tuple[Rule, ...]] = ()
    message_prefix: ClassVar[str] = ""

    @model_validator(mode="after")
    def _check_cel_rules(self) -> SpecModel:
        failed = [
            rule.render(self.message_prefix) for rule in self.cel_rules if not rule.check(self)
        ]
        if failed:
            raise ValueError("; ".join(failed))
        return self


class StatusModel(BaseModel):
    """Base for status blocks: camelCase JSON, extra fields kept."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class ResourceModel(BaseModel):
    """Base for a whole Kubernetes object (apiVersion, kind, metadata, spec, status).

    Fields outside those five are ignored: an object stored under Function Mesh's own
    CRD (which keeps unknown top-level fields) still parses.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def core(type_name: str, what: str) -> str:
    """Description for a field that embeds a Kubernetes core type unchanged."""
    return f"{what} Any valid Kubernetes {type_name} is accepted as is."


def is_set(value: Any) -> bool:
    """True when an optional scalar is present and not its zero value (as Go sees it)."""
    return value is not None and value != "" and value is not False and value != 0
