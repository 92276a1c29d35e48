"""Schemas of the Kubernetes types Function Mesh embeds in its spec, from Kubernetes' OpenAPI.

Function Mesh's spec embeds Kubernetes types whole: the ``pod`` block's affinity, tolerations,
security context, volumes, init containers and sidecars, its startup probe and HPA metrics,
and the workload's volume mounts and PVC templates. Their CRD schemas are not written by hand:
they are generated from the OpenAPI v3 that Kubernetes publishes (the API server's
``/openapi/v3``, or ``api/openapi-spec/v3`` of its source), in two pure steps:

1. :func:`extract` keeps, from the OpenAPI documents, the schemas reachable from the types
   and fields in :data:`EMBEDDED`. The result is committed as ``k8s-openapi.json`` beside this
   module (``fmesh-events crds --k8s-openapi DIR`` refreshes it), so the CRDs are generated
   the same way without the Kubernetes source at hand.
2. :func:`field_schema` turns one embedded field into a structural CRD schema the way
   controller-gen renders core types: ``$ref`` inlined, int-or-string and quantities as
   ``x-kubernetes-int-or-string`` with ``anyOf`` (and the quantity pattern), list and map
   types kept, ``metadata`` of embedded objects limited to what CRDs may hold, only explicit
   defaults kept (the zero values kube-openapi adds would rewrite what the user applied),
   ``x-kubernetes-preserve-unknown-fields`` only where Kubernetes holds free-form data.

Anything the converter does not know is an error, so a new Kubernetes version cannot slip a
construct into the CRDs that the API server would refuse.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

OPENAPI_FILE: Final = Path(__file__).with_name("k8s-openapi.json")

REF_PREFIX: Final = "#/components/schemas/"
INT_OR_STRING: Final = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY: Final = "io.k8s.apimachinery.pkg.api.resource.Quantity"
OBJECT_META: Final = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
TIME_TYPES: Final = frozenset({
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime",
})
FREE_FORM_TYPES: Final = frozenset({
    "io.k8s.apimachinery.pkg.runtime.RawExtension",
    "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON",
})

# Kubernetes' own pattern for resource.Quantity, as controller-gen writes it into CRDs.
QUANTITY_PATTERN: Final = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

# Keys of the OpenAPI that carry meaning for a CRD schema, and those that are dropped: patch
# strategies (server-side apply reads list types instead), GVK and union annotations.
_KEPT = frozenset({
    "type", "format", "description", "enum", "items", "properties", "required",
    "additionalProperties", "maximum", "minimum", "exclusiveMaximum", "exclusiveMinimum",
    "maxLength", "minLength", "pattern", "maxItems", "minItems", "maxProperties",
    "minProperties", "default", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type", "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource", "x-kubernetes-validations",
})
_DROPPED = frozenset({
    "x-kubernetes-patch-strategy", "x-kubernetes-patch-merge-key", "x-kubernetes-unions",
    "x-kubernetes-group-version-kind", "x-kubernetes-selectable-fields",
})
# Formats a CRD schema may carry; kube-openapi's "int-or-string" is said with the extension.
_FORMATS = frozenset({"int32", "int64", "double", "float", "byte", "date-time", "date",
                      "duration", "uuid", "uri", "email", "hostname", "ipv4", "ipv6", "binary",
                      "password", "cidr", "mac", "isbn", "uuid3", "uuid4", "uuid5"})
_ZERO_VALUES: tuple[Any, ...] = ({}, [], "", 0, False)


class OpenAPIError(ValueError):
    """The OpenAPI has a construct this converter does not know how to render."""


@dataclass(frozen=True)
class Embedded:
    """A spec field of Function Mesh that embeds a Kubernetes field as Kubernetes has it.

    ``owner``/``field`` name the Kubernetes field whose schema (list type included) the spec
    field takes: ``pod.volumes`` is ``PodSpec.volumes``, so it is a list keyed by name
    exactly as in a Pod."""

    owner: str
    field: str


_CORE = "io.k8s.api.core.v1."
EMBEDDED: Final[Mapping[str, Embedded]] = {
    "affinity": Embedded(_CORE + "PodSpec", "affinity"),
    "tolerations": Embedded(_CORE + "PodSpec", "tolerations"),
    "podSecurityContext": Embedded(_CORE + "PodSpec", "securityContext"),
    "volumes": Embedded(_CORE + "PodSpec", "volumes"),
    "initContainers": Embedded(_CORE + "PodSpec", "initContainers"),
    "sidecars": Embedded(_CORE + "PodSpec", "containers"),
    "startupProbe": Embedded(_CORE + "Container", "startupProbe"),
    "volumeMounts": Embedded(_CORE + "Container", "volumeMounts"),
    "volumeClaimTemplates": Embedded("io.k8s.api.apps.v1.StatefulSetSpec", "volumeClaimTemplates"),
    "autoScalingMetrics": Embedded(
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "metrics"
    ),
}
"""Name used by the models -> the Kubernetes field it embeds."""


# --------------------------------------------------------------------------- extraction


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            if not ref.startswith(REF_PREFIX):
                raise OpenAPIError(f"unsupported $ref {ref!r}")
            yield ref[len(REF_PREFIX):]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def extract(documents: Iterable[Mapping[str, Any]],
            embedded: Mapping[str, Embedded] = EMBEDDED) -> dict[str, Any]:
    """The schemas of ``documents`` (OpenAPI v3, one per group version) that the embedded
    fields need: each owner reduced to its embedded fields, and every type they reach."""
    available: dict[str, Any] = {}
    for document in documents:
        available.update(document.get("components", {}).get("schemas", {}))
    out: dict[str, Any] = {}
    pending: list[str] = []
    owners: dict[str, set[str]] = {}
    for name, spec in embedded.items():
        if spec.owner not in available:
            raise OpenAPIError(f"{name}: {spec.owner} is not in the OpenAPI documents")
        if spec.field not in available[spec.owner].get("properties", {}):
            raise OpenAPIError(f"{name}: {spec.owner} has no field {spec.field!r}")
        owners.setdefault(spec.owner, set()).add(spec.field)
    for owner, fields in owners.items():
        pending.extend(_refs([available[owner]["properties"][f] for f in fields]))
    while pending:
        name = pending.pop()
        if name in out:
            continue
        if name not in available:
            raise OpenAPIError(f"dangling reference to {name}")
        out[name] = available[name]
        pending.extend(_refs(available[name]))
    for owner, fields in owners.items():
        if owner not in out:  # only the embedded fields of an owner nothing else reaches
            schema = available[owner]
            out[owner] = {
                "properties": {f: schema["properties"][f] for f in sorted(fields)},
                "type": "object",
            }
    return dict(sorted(out.items()))


def read_documents(directory: Path) -> list[dict[str, Any]]:
    """The OpenAPI v3 documents of a directory: Kubernetes' ``api/openapi-spec/v3``, or files
    saved from a running API server (``kubectl get --raw /openapi/v3/api/v1``)."""
    files = sorted(directory.glob("*.json"))
    if not files:
        raise OpenAPIError(f"no OpenAPI documents (*.json) in {directory}")
    return [json.loads(path.read_text(encoding="utf-8")) for path in files]


def openapi_document(schemas: Mapping[str, Any], source: str) -> dict[str, Any]:
    """What ``k8s-openapi.json`` holds: where the schemas come from, and the schemas."""
    return {"source": source, "schemas": dict(schemas)}


def write_openapi(directory: Path, source: str, target: Path = OPENAPI_FILE,
                  embedded: Mapping[str, Embedded] = EMBEDDED) -> Path:
    """Refresh the committed extract from the OpenAPI documents in ``directory``."""
    schemas = extract(read_documents(directory), embedded)
    text = json.dumps(openapi_document(schemas, source), indent=1, sort_keys=True)
    target.write_text(text + "\n", encoding="utf-8")
    load_schemas.cache_clear()
    return target


@cache
def load_schemas(path: Path = OPENAPI_FILE) -> dict[str, Any]:
    """The committed schemas (see :func:`extract`)."""
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    schemas: dict[str, Any] = document["schemas"]
    return schemas


def source(path: Path = OPENAPI_FILE) -> str:
    """Where the committed schemas come from (a Kubernetes version and how they were read)."""
    return str(json.loads(path.read_text(encoding="utf-8"))["source"])


# --------------------------------------------------------------------------- conversion


def int_or_string(description: str | None = None) -> dict[str, Any]:
    """An IntOrString as controller-gen renders it."""
    out: dict[str, Any] = {"anyOf": [{"type": "integer"}, {"type": "string"}],
                           "x-kubernetes-int-or-string": True}
    if description:
        out["description"] = description
    return out


def quantity(description: str | None = None) -> dict[str, Any]:
    """A resource.Quantity as controller-gen renders it."""
    out = int_or_string(description)
    out["pattern"] = QUANTITY_PATTERN
    return out


def embedded_object_meta(description: str | None = None) -> dict[str, Any]:
    """ObjectMeta inside a spec, limited as CRDs require (controller-gen's
    generateEmbeddedObjectMeta): what a template's objects may carry."""
    string_map = {"type": "object", "additionalProperties": {"type": "string"}}
    out: dict[str, Any] = {
        "type": "object",
        "properties": {
            "annotations": copy.deepcopy(string_map),
            "finalizers": {"type": "array", "items": {"type": "string"}},
            "labels": copy.deepcopy(string_map),
            "name": {"type": "string"},
            "namespace": {"type": "string"},
        },
    }
    if description:
        out["description"] = description
    return out


@dataclass(frozen=True)
class Options:
    """How much of the OpenAPI text goes into the CRD."""

    descriptions: bool = True


def _named(name: str, schemas: Mapping[str, Any], description: str | None,
           seen: tuple[str, ...], options: Options, path: str) -> dict[str, Any]:
    if name == INT_OR_STRING:
        return int_or_string(description if options.descriptions else None)
    if name == QUANTITY:
        return quantity(description if options.descriptions else None)
    if name == OBJECT_META:
        return embedded_object_meta(description if options.descriptions else None)
    if name in TIME_TYPES:
        out = {"type": "string", "format": "date-time"}
        if description and options.descriptions:
            out["description"] = description
        return out
    if name in FREE_FORM_TYPES:
        free: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        if description and options.descriptions:
            free["description"] = description
        return free
    if name in seen:
        raise OpenAPIError(f"{path}: {name} is recursive; a CRD schema cannot inline it")
    if name not in schemas:
        raise OpenAPIError(f"{path}: {name} is not in the OpenAPI extract")
    out = convert(schemas[name], schemas, path, (*seen, name), options)
    if description and options.descriptions:
        out["description"] = description
    return out


def convert(node: Mapping[str, Any], schemas: Mapping[str, Any], path: str = "",
            seen: tuple[str, ...] = (), options: Options = Options()) -> dict[str, Any]:
    """One OpenAPI schema node as a structural CRD schema (recursively)."""
    description = node.get("description")
    if "$ref" in node or "allOf" in node:
        ref = node.get("$ref")
        if ref is None:
            parts = node["allOf"]
            if len(parts) != 1 or set(parts[0]) != {"$ref"}:
                raise OpenAPIError(f"{path}: allOf other than one $ref is not supported")
            ref = parts[0]["$ref"]
        assert isinstance(ref, str)
        target = ref.removeprefix(REF_PREFIX)
        named = _named(target, schemas, description, seen, options, path)
        default = node.get("default")
        if default is not None and default not in _ZERO_VALUES:
            named["default"] = copy.deepcopy(default)
        return named
    for unknown in set(node) - _KEPT - _DROPPED:
        if unknown in ("oneOf", "anyOf", "not"):
            raise OpenAPIError(f"{path}: {unknown} is not structural")
        raise OpenAPIError(f"{path}: unknown OpenAPI keyword {unknown!r}")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or key == "description":
            continue
        if key == "properties":
            required = set(node.get("required", []))
            out["properties"] = {
                name: _optional_enum(convert(sub, schemas, f"{path}.{name}", seen, options),
                                     name in required)
                for name, sub in sorted(value.items())
            }
        elif key == "items":
            out["items"] = convert(value, schemas, f"{path}[]", seen, options)
        elif key == "additionalProperties":
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, dict):
                out["additionalProperties"] = convert(value, schemas, f"{path}{{}}", seen, options)
        elif key == "default":
            if value not in _ZERO_VALUES:
                out["default"] = copy.deepcopy(value)
        elif key == "format":
            if value in _FORMATS:
                out["format"] = value
            elif value != "int-or-string":
                raise OpenAPIError(f"{path}: format {value!r} is not known to CRDs")
        else:
            out[key] = copy.deepcopy(value)
    if description and options.descriptions:
        out["description"] = description
    if "type" not in out and "properties" in out:
        out["type"] = "object"
    if "type" not in out and not out.get("x-kubernetes-int-or-string") \
            and not out.get("x-kubernetes-preserve-unknown-fields"):
        raise OpenAPIError(f"{path}: no type")
    _check_list_map_keys(out, path)
    return out


def _optional_enum(node: dict[str, Any], required: bool) -> dict[str, Any]:
    """An optional string field of an enum type also takes "": Go's zero value, which
    Kubernetes reads as unset (``effect: ""`` tolerates every taint effect). Only the API
    server's OpenAPI has the enums; its validation of Pods accepts "" there, so must ours."""
    enum = node.get("enum")
    if not required and node.get("type") == "string" and enum and "" not in enum:
        node["enum"] = ["", *enum]
    return node


def _check_list_map_keys(node: Mapping[str, Any], path: str) -> None:
    """A CRD's list-map keys must be required or defaulted (the API server refuses it else)."""
    if node.get("x-kubernetes-list-type") != "map":
        return
    items = node.get("items", {})
    for key in node.get("x-kubernetes-list-map-keys", []):
        prop = items.get("properties", {}).get(key)
        if prop is None:
            raise OpenAPIError(f"{path}: list-map key {key!r} is not a field of the items")
        if key not in items.get("required", []) and "default" not in prop:
            raise OpenAPIError(f"{path}: list-map key {key!r} is neither required nor defaulted")


def field_schema(name: str, schemas: Mapping[str, Any] | None = None,
                 options: Options = Options(),
                 embedded: Mapping[str, Embedded] = EMBEDDED) -> dict[str, Any]:
    """The structural CRD schema of the embedded field ``name`` (a key of ``embedded``),
    without the field's own description (the models describe the field)."""
    spec = embedded[name]
    table = load_schemas() if schemas is None else schemas
    owner = table.get(spec.owner)
    if owner is None or spec.field not in owner.get("properties", {}):
        raise OpenAPIError(f"{name}: {spec.owner}.{spec.field} is not in the OpenAPI extract")
    node = dict(owner["properties"][spec.field])
    node.pop("description", None)
    out = convert(node, table, f"{spec.owner}.{spec.field}", (), options)
    out.pop("description", None)
    return out


# --------------------------------------------------------------------------- validation

_INT_RANGES: Final = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_JSON_TYPES: Final = {"object": dict, "array": list, "string": str, "boolean": bool}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    for name, python in _JSON_TYPES.items():
        if isinstance(value, python):
            return name
    return "null"


def _type_ok(expected: str, value: Any) -> bool:
    kind = _kind(value)
    return kind == expected or (expected == "number" and kind == "integer")


def validate(value: Any, schema: Mapping[str, Any], path: str) -> list[str]:
    """What the API server would refuse in ``value`` under the structural ``schema``, each
    naming the field as the API server does (``path[0].field: Unsupported value: ...``).

    The operator parses with the models what the API server stored, so both refuse the same:
    types, formats' ranges, enums, patterns, required fields, unknown fields (kubectl's strict
    field validation refuses them) and duplicate keys of list maps."""
    errors: list[str] = []
    stack: list[tuple[Any, Mapping[str, Any], str]] = [(value, schema, path)]
    while stack:
        node, rule, where = stack.pop()
        if rule.get("x-kubernetes-int-or-string"):
            if _kind(node) not in ("integer", "string"):
                errors.append(f"{where}: Invalid value: must be an integer or a string")
            elif isinstance(node, str) and "pattern" in rule and \
                    re.search(rule["pattern"], node) is None:
                errors.append(f'{where}: Invalid value: "{node}": must be a quantity '
                              "such as 500m or 1Gi")
            continue
        expected = rule.get("type")
        if expected and not _type_ok(expected, node):
            errors.append(f"{where}: Invalid value: \"{_kind(node)}\": must be of type {expected}")
            continue
        if "enum" in rule and node not in rule["enum"]:
            supported = ", ".join(f'"{v}"' for v in rule["enum"])
            errors.append(f'{where}: Unsupported value: "{node}": supported values: {supported}')
        if isinstance(node, int) and not isinstance(node, bool) and rule.get("format") in \
                _INT_RANGES:
            low, high = _INT_RANGES[rule["format"]]
            if not low <= node <= high:
                errors.append(f"{where}: Invalid value: {node}: out of {rule['format']} range")
        if isinstance(node, str) and "pattern" in rule and re.search(rule["pattern"], node) is None:
            errors.append(f'{where}: Invalid value: "{node}": should match \'{rule["pattern"]}\'')
        if isinstance(node, dict):
            if rule.get("x-kubernetes-preserve-unknown-fields"):
                continue
            properties = rule.get("properties", {})
            errors.extend(f"{where}.{name}: Required value"
                          for name in rule.get("required", []) if name not in node)
            extra = rule.get("additionalProperties")
            for name, sub in node.items():
                if name in properties:
                    stack.append((sub, properties[name], f"{where}.{name}"))
                elif isinstance(extra, Mapping):
                    stack.append((sub, extra, f"{where}[{name}]"))
                else:
                    errors.append(f'{where}: unknown field "{where}.{name}"')
        elif isinstance(node, list):
            items = rule.get("items", {})
            errors.extend(_duplicates(node, rule, where))
            stack.extend((item, items, f"{where}[{i}]") for i, item in enumerate(node))
    return sorted(errors)


def _duplicates(items: list[Any], rule: Mapping[str, Any], where: str) -> list[str]:
    list_type = rule.get("x-kubernetes-list-type")
    if list_type not in ("map", "set"):
        return []
    props = rule.get("items", {}).get("properties", {})
    keys = rule.get("x-kubernetes-list-map-keys", [])
    seen: set[str] = set()
    errors = []
    for index, item in enumerate(items):
        if list_type == "map":
            if not isinstance(item, dict):
                continue
            identity = json.dumps([item.get(k, props.get(k, {}).get("default")) for k in keys])
        else:
            identity = json.dumps(item, sort_keys=True)
        if identity in seen:
            errors.append(f"{where}[{index}]: Duplicate value: {identity}")
        seen.add(identity)
    return errors


@cache
def crd_field_schema(name: str) -> dict[str, Any]:
    """The schema of an embedded field as the CRDs carry it (no descriptions), for checks."""
    return field_schema(name, options=Options(descriptions=False))


def check(name: str, value: Any, field: str) -> Any:
    """Refuse ``value`` for the embedded field ``name`` as the API server would: a
    ValueError naming the inner fields from ``field`` (the spec field's JSON name) on."""
    errors = validate(value, crd_field_schema(name), field)
    if errors:
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        raise ValueError("; ".join(errors[:3]) + more)
    return value


def with_defaults(value: Any, schema: Mapping[str, Any]) -> Any:
    """A copy of ``value`` with the defaults of ``schema`` filled in, as the API server stores
    it (a sidecar's port gets ``protocol: TCP``, as it would in a Pod)."""
    if isinstance(value, dict) and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out = {}
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for name, sub in value.items():
            if name in properties:
                out[name] = with_defaults(sub, properties[name])
            elif isinstance(extra, Mapping):
                out[name] = with_defaults(sub, extra)
            else:
                out[name] = copy.deepcopy(sub)
        for name, sub in properties.items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
        return out
    if isinstance(value, list):
        return [with_defaults(item, schema.get("items", {})) for item in value]
    return copy.deepcopy(value)


def field_paths(schema: Mapping[str, Any], prefix: str = "") -> set[str]:
    """Every named field path of a schema (list items and map values belong to their field),
    to compare two renderings: what one Kubernetes version has that another lacks."""
    out: set[str] = set()
    stack: list[tuple[Mapping[str, Any], str]] = [(schema, prefix)]
    while stack:
        node, path = stack.pop()
        while node.get("type") == "array" or isinstance(node.get("additionalProperties"), dict):
            node = node["items"] if node.get("type") == "array" else node["additionalProperties"]
        for name, sub in node.get("properties", {}).items():
            child = f"{path}.{name}" if path else name
            out.add(child)
            stack.append((sub, child))
    return out
