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
  ...) are plain dicts here; their CRD schemas are generated from Kubernetes' OpenAPI
  (:mod:`fmesh_events.models.k8s_types`), so the API server checks them field by field.
* Cross-field checks are written once as a :class:`Rule`: a CEL expression for the
  API server plus the same check in Python for the operator.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar, Final, Literal

import annotated_types as at
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

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

# The same without a sign: resource requests and limits cannot be negative.
NON_NEGATIVE_QUANTITY_PATTERN = QUANTITY_PATTERN.replace(r"^(\+|-)?", r"^\+?", 1)

# Pulsar's topic names (TopicName.java): `persistent://tenant/namespace/local`, the legacy
# `persistent://tenant/cluster/namespace/local`, or the short `tenant/namespace/local` and
# `local`. Tenant, cluster and namespace names are [-=:.\w]+ (NamedEntity.checkName); the
# local name is anything but '/', spaces and control characters. Written with explicit
# ASCII classes so Go's RE2 (the API server) and Rust's regex (pydantic) agree.
_PULSAR_NAME = r"[-=:.A-Za-z0-9_]+"
_LOCAL_NAME = r"[^/\x00-\x20\x7f]+"
TOPIC_PATTERN = (
    rf"^(?:(?:persistent|non-persistent)://{_PULSAR_NAME}/{_PULSAR_NAME}/"
    rf"(?:{_PULSAR_NAME}/)?{_LOCAL_NAME}"
    rf"|{_PULSAR_NAME}/{_PULSAR_NAME}/{_LOCAL_NAME}"
    rf"|{_LOCAL_NAME})$"
)
TOPIC_HINT = (
    "a Pulsar topic name: persistent://tenant/namespace/topic, non-persistent://..., "
    "tenant/namespace/topic or topic, without spaces"
)
_TOPIC = re.compile(TOPIC_PATTERN)

# Kubernetes label values (and the name part of label keys): at most 63 characters.
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

MAX_NESTING = 100
"""Deepest nesting accepted inside a free-form object (funcConfig, sinkConfig, volumes...).

The API server stores objects nested up to 10,000 levels; a configuration that deep is a
mistake or an attack, and every program that reads it back (this operator, the history
command, the function instance) has to survive it."""

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

NonNegativeQuantity = Annotated[
    Annotated[StrictInt, at.Ge(0)] | Annotated[str, Field(pattern=NON_NEGATIVE_QUANTITY_PATTERN)],
    WithJsonSchema(
        {"x-kubernetes-int-or-string": True, "pattern": NON_NEGATIVE_QUANTITY_PATTERN,
         "minimum": 0}
    ),
]
"""A quantity that cannot be negative (resource requests and limits)."""


def nesting_depth(value: Any) -> int:
    """How deep objects and lists nest in ``value`` (0 for a scalar). Iterative, so any
    depth is measured without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable[Any] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth + 1)
        if depth + 1 > MAX_NESTING:
            return deepest  # enough to refuse it; no need to walk the rest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _shallow(value: dict[str, Any]) -> dict[str, Any]:
    if nesting_depth(value) > MAX_NESTING:
        raise ValueError(f"nested more than {MAX_NESTING} levels deep")
    return value


FreeForm = Annotated[
    dict[str, Any],
    AfterValidator(_shallow),
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""An object of any shape, kept as given (user configuration, embedded core types), at
most MAX_NESTING levels deep (checked by the operator: a CRD schema cannot say it)."""

K8S_FIELD_KEY: Final = "x-fmesh-k8s-field"
"""Marks, in a model's JSON schema, a field whose CRD schema is a Kubernetes field's, generated
from Kubernetes' OpenAPI by :mod:`fmesh_events.models.k8s_types` (the key names it)."""


def k8s_field(name: str) -> WithJsonSchema:
    """The JSON schema marker of an embedded Kubernetes field ``name`` (a key of
    ``k8s_types.EMBEDDED``); ``crd.py`` puts Kubernetes' own schema in its place."""
    from fmesh_events.models.k8s_types import EMBEDDED

    if name not in EMBEDDED:
        raise KeyError(f"{name} is not a Kubernetes field in k8s_types.EMBEDDED")
    return WithJsonSchema({"type": "object", K8S_FIELD_KEY: name})


def k8s_checked(name: str, field: str) -> AfterValidator:
    """Checks a value of the embedded field ``name`` against the schema the CRD carries, so
    the models refuse what the API server refuses (the operator reads what it stored)."""
    from fmesh_events.models import k8s_types

    return AfterValidator(lambda value: k8s_types.check(name, value, field))


_Shallow = Annotated[dict[str, Any], AfterValidator(_shallow)]

# Kubernetes types embedded whole, kept in Python as the dicts they are (the renderer copies
# them into the StatefulSet); their CRD schemas are Kubernetes' own, and so are their checks.
Affinity = Annotated[_Shallow, k8s_field("affinity"), k8s_checked("affinity", "affinity")]
Tolerations = Annotated[list[_Shallow], k8s_field("tolerations"),
                        k8s_checked("tolerations", "tolerations")]
PodSecurityContext = Annotated[_Shallow, k8s_field("podSecurityContext"),
                               k8s_checked("podSecurityContext", "securityContext")]
Volumes = Annotated[list[_Shallow], k8s_field("volumes"), k8s_checked("volumes", "volumes")]
InitContainers = Annotated[list[_Shallow], k8s_field("initContainers"),
                           k8s_checked("initContainers", "initContainers")]
Sidecars = Annotated[list[_Shallow], k8s_field("sidecars"), k8s_checked("sidecars", "sidecars")]
Probe = Annotated[_Shallow, k8s_field("startupProbe"), k8s_checked("startupProbe", "startupProbe")]
VolumeMounts = Annotated[list[_Shallow], k8s_field("volumeMounts"),
                         k8s_checked("volumeMounts", "volumeMounts")]
VolumeClaimTemplates = Annotated[list[_Shallow], k8s_field("volumeClaimTemplates"),
                                 k8s_checked("volumeClaimTemplates", "volumeClaimTemplates")]
MetricSpecs = Annotated[list[_Shallow], k8s_field("autoScalingMetrics"),
                        k8s_checked("autoScalingMetrics", "autoScalingMetrics")]


StringMap = dict[str, str]

TopicName = Annotated[str, Field(min_length=1, max_length=512, pattern=TOPIC_PATTERN)]
"""A Pulsar topic name (or, for topicPattern, a topic regular expression)."""

OptionalTopicName = Annotated[
    str, Field(max_length=512, pattern=TOPIC_PATTERN.replace("^(?:", "^(?:|", 1))
]
"""A topic name, or empty for "none" (as Go's omitempty leaves it out)."""

ImageName = Annotated[
    str, Field(max_length=4096, pattern=r"^([^\x00-\x20](.*[^\x00-\x20])?)?$")
]
"""A container image reference, or empty for the default. Pods refuse an image with spaces
around it, but StatefulSets do not check: without this the StatefulSet is made and its pods
never are, which nothing reports."""

LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]

LabelMap = dict[str, LabelValue]
"""Kubernetes labels: values are checked by the schema, keys by ``check_label_keys``."""

ImagePullPolicy = Literal["Always", "Never", "IfNotPresent"]


def is_topic_name(value: str) -> bool:
    return len(value) <= 512 and _TOPIC.match(value) is not None


def check_topic_keys(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """The keys of a topic -> setting map are topic names (the schema cannot check map keys)."""
    for key in value or {}:
        if not is_topic_name(key):
            raise ValueError(f"{key!r} is not {TOPIC_HINT}")
    return value


def check_label_keys(value: dict[str, str] | None) -> dict[str, str] | None:
    """Label keys: an optional DNS subdomain prefix and '/', then a name of at most 63
    characters (alphanumerics, '-', '_', '.'), as Kubernetes validates them."""
    for key in value or {}:
        prefix, _, name = key.rpartition("/")
        if (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix))) or \
                len(name) > 63 or not _LABEL_NAME.match(name):
            raise ValueError(
                f"{key!r} is not a valid label key: an optional DNS subdomain prefix and '/', "
                "then at most 63 characters of A-Z, a-z, 0-9, '-', '_' and '.', starting and "
                "ending with an alphanumeric")
    return value


_SUFFIXES: dict[str, Decimal] = {
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
}  # fmt: skip
_QUANTITY = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?$")


def quantity(value: object) -> Decimal | None:
    """The number a Kubernetes quantity (``500m``, ``1.5Gi``, ``2``, ``1e3``) stands for, or
    None for what is not one. The one parser of quantities (models, renderer, scaler)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    match = _QUANTITY.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    try:
        if suffix[:1] in ("e", "E"):
            return Decimal(number + suffix)
        return Decimal(number) * _SUFFIXES[suffix]
    except InvalidOperation:
        return None


def allow_deep_objects() -> None:
    """Let this process read every object the API server can store.

    Go's JSON decoder (the API server's) accepts 10,000 levels of nesting; Python's json
    module counts each level against the recursion limit (1,000 by default), so one deeply
    nested CR would make every read of it fail, a watch stream included. The models then
    refuse it (MAX_NESTING), naming the field, which is what the user needs to hear."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 25_000))


def error_path(loc: Iterable[int | str]) -> str:
    """A pydantic error location as the API server writes field paths: ``spec.a[0].b``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe_error(error: ErrorDetails) -> str:
    """One problem, naming its field. The checks of embedded Kubernetes types name the inner
    field from the spec field on (``tolerations[0].effect: ...``): that is joined to the
    location, so the whole path reads as the API server writes it."""
    path = error_path(error["loc"])
    if not path:
        return error["msg"]
    message = error["msg"].removeprefix("Value error, ")
    head, _, last = path.rpartition(".")
    parts = message.split("; ")
    if all(p.startswith(last) and p[len(last):len(last) + 1] in ("[", ".", ":") for p in parts):
        return "; ".join(f"{head}.{p}" if head else p for p in parts)
    return f"{path}: {error['msg']}"


def describe_errors(error: ValidationError, limit: int = 5) -> str:
    """The first few problems of a validation error, each naming its field."""
    errors = error.errors(include_url=False)
    problems = [describe_error(e) for e in errors[:limit]]
    more = len(errors) - len(problems)
    return "; ".join(problems) + (f" (+{more} more)" if more > 0 else "")


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
    field_path: str | None = None  # where the API server reports it (e.g. .spec.functions)

    def render(self, prefix: str) -> str:
        return self.message.replace("{p}", prefix)


def _add_cel_rules(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    rules: tuple[Rule, ...] = getattr(cls, "cel_rules", ())
    if not rules:
        return
    prefix: str = getattr(cls, "message_prefix", "")
    schema["x-kubernetes-validations"] = [
        {"rule": rule.cel, "message": rule.render(prefix)}
        | ({"fieldPath": rule.field_path} if rule.field_path else {})
        for rule in rules
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
    CRD (which keeps unknown top-level fields) still parses. ``cel_rules`` here are
    attached to the root, where CEL sees ``self.metadata.name``.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        json_schema_extra=_add_cel_rules,
    )

    cel_rules: ClassVar[tuple[Rule, ...]] = ()
    message_prefix: ClassVar[str] = ""

    @model_validator(mode="after")
    def _check_cel_rules(self) -> ResourceModel:
        failed = [
            rule.render(self.message_prefix) for rule in self.cel_rules if not rule.check(self)
        ]
        if failed:
            raise ValueError("; ".join(failed))
        return self


def core(type_name: str, what: str) -> str:
    """Description for a field that embeds a Kubernetes core type unchanged."""
    return f"{what} A Kubernetes {type_name}: its fields and types as the Kubernetes API has them."


def is_set(value: Any) -> bool:
    """True when an optional scalar is present and not its zero value (as Go sees it)."""
    return value is not None and value != "" and value is not False and value != 0
