"""Render the CustomResourceDefinitions from the pydantic models.

The JSON schema pydantic produces is turned into a Kubernetes *structural* schema:
``$ref`` inlined, ``anyOf [X, null]`` reduced to X, titles and defaults dropped,
``additionalProperties: true`` turned into ``x-kubernetes-preserve-unknown-fields``,
32/64-bit integer bounds turned into ``format``. Anything that cannot be expressed
structurally is an error, so a model change cannot silently produce a CRD the API
server would refuse.

Regenerate the committed files with::

    python -m fmesh_events.models.crd --write crds/

and check them with ``--check crds/``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from fmesh_events.models import k8s_types
from fmesh_events.models.backendconfig import BackendConfig
from fmesh_events.models.base import (
    GROUP,
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    INT64_MIN,
    K8S_FIELD_KEY,
    VERSION,
)
from fmesh_events.models.function import Function
from fmesh_events.models.mesh import FunctionMesh
from fmesh_events.models.sink import Sink
from fmesh_events.models.source import Source

REGENERATE_COMMAND = "python -m fmesh_events.models.crd --write crds/"

EMBEDDED_OPTIONS = k8s_types.Options(descriptions=False)
"""Kubernetes' descriptions of the embedded types are left out, as controller-gen's
maxDescLen=0 does for Function Mesh's own CRDs: with them a Function's CRD alone would pass
the 256 KiB that client-side ``kubectl apply`` can record (see docs/crds.md)."""


@dataclass(frozen=True)
class KindInfo:
    """How one kind is exposed by the API server."""

    model: type[BaseModel]
    kind: str
    plural: str
    singular: str
    scalable: bool

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def file_name(self) -> str:
        return f"{GROUP}_{self.plural}.yaml"


KINDS: tuple[KindInfo, ...] = (
    KindInfo(Function, "Function", "functions", "function", scalable=True),
    KindInfo(Source, "Source", "sources", "source", scalable=True),
    KindInfo(Sink, "Sink", "sinks", "sink", scalable=True),
    KindInfo(FunctionMesh, "FunctionMesh", "functionmeshes", "functionmesh", scalable=False),
    KindInfo(BackendConfig, "BackendConfig", "backendconfigs", "backendconfig", scalable=False),
)

_READY_COLUMN = {
    "name": "Ready",
    "type": "string",
    "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    "description": "Status of the Ready condition.",
}
_AGE_COLUMN = {
    "name": "Age",
    "type": "date",
    "jsonPath": ".metadata.creationTimestamp",
}


def printer_columns(info: KindInfo) -> list[dict[str, str]]:
    """The columns ``kubectl get`` shows for a kind."""
    if info.scalable:
        return [
            {
                "name": "Replicas",
                "type": "integer",
                "jsonPath": ".spec.replicas",
                "description": "Desired number of pods.",
            },
            {
                "name": "Ready Replicas",
                "type": "integer",
                "jsonPath": ".status.readyReplicas",
                "description": "Pods that are ready.",
            },
            dict(_READY_COLUMN),
            dict(_AGE_COLUMN),
        ]
    if info.kind == "FunctionMesh":
        return [dict(_READY_COLUMN), dict(_AGE_COLUMN)]
    return [
        {
            "name": "Auto Update",
            "type": "boolean",
            "jsonPath": ".spec.autoUpdate",
            "description": "Changes roll out to existing workloads.",
        },
        dict(_AGE_COLUMN),
    ]


# --------------------------------------------------------------------------- schema conversion

_DROPPED_KEYS = frozenset({"title", "default", "$defs", "examples"})
_NULL = {"type": "null"}


class SchemaError(ValueError):
    """The model's JSON schema has a construct a structural schema cannot express."""


def _resolve_ref(ref: str, defs: dict[str, Any]) -> dict[str, Any]:
    prefix = "#/$defs/"
    if not ref.startswith(prefix):
        raise SchemaError(f"unsupported $ref {ref!r}")
    target = defs.get(ref[len(prefix) :])
    if target is None:
        raise SchemaError(f"dangling $ref {ref!r}")
    result: dict[str, Any] = target
    return result


def _structural(
    node: dict[str, Any], defs: dict[str, Any], path: str, seen: tuple[str, ...]
) -> dict[str, Any]:
    """Convert one JSON-schema node (recursively) into its structural form."""
    siblings = {k: v for k, v in node.items() if k not in ("$ref", "anyOf")}
    if K8S_FIELD_KEY in node:
        embedded = k8s_types.field_schema(node[K8S_FIELD_KEY], options=EMBEDDED_OPTIONS)
        if node.get("description"):
            embedded["description"] = node["description"]
        return embedded
    if "$ref" in node:
        ref = node["$ref"]
        if ref in seen:
            raise SchemaError(f"{path}: recursive model {ref!r} cannot be inlined")
        base = _structural(_resolve_ref(ref, defs), defs, path, (*seen, ref))
        return _overlay(base, _structural(siblings, defs, path, seen))
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o != _NULL]
        if len(options) != 1:
            raise SchemaError(f"{path}: a union of {len(options)} types is not structural")
        base = _structural(options[0], defs, path, seen)
        return _overlay(base, _structural(siblings, defs, path, seen))
    for forbidden in ("oneOf", "allOf", "not"):
        if forbidden in node:
            raise SchemaError(f"{path}: {forbidden} is not supported")

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "properties":
            out["properties"] = {
                name: _structural(sub, defs, f"{path}.{name}", seen) for name, sub in value.items()
            }
        elif key == "items":
            out["items"] = _structural(value, defs, f"{path}[]", seen)
        elif key == "additionalProperties":
            if value is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, dict):
                out["additionalProperties"] = _structural(value, defs, f"{path}{{}}", seen)
            # additionalProperties: false is the default of a structural schema: dropped.
        elif key == "const":
            out["enum"] = [value]
        elif key == "uniqueItems":
            raise SchemaError(f"{path}: uniqueItems is not allowed in a CRD")
        else:
            out[key] = copy.deepcopy(value)
    _integer_format(out)
    if "enum" in out and all(isinstance(v, str) for v in out["enum"]):
        out.setdefault("type", "string")
        out.setdefault("maxLength", max(len(v) for v in out["enum"]))
    return out


def _overlay(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    merged.update(extra)
    return merged


def _integer_format(node: dict[str, Any]) -> None:
    if node.get("type") != "integer":
        return
    for low, high, fmt in ((INT32_MIN, INT32_MAX, "int32"), (INT64_MIN, INT64_MAX, "int64")):
        if node.get("minimum") == low or node.get("maximum") == high:
            if node.get("minimum") == low:
                del node["minimum"]
            if node.get("maximum") == high:
                del node["maximum"]
            node["format"] = fmt
            return


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The openAPIV3Schema of a root model (apiVersion, kind, metadata, spec, status)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema = _structural(raw, defs, model.__name__, ())
    props = schema["properties"]
    props["apiVersion"] = {
        "type": "string",
        "description": "Versioned schema of this representation of the object.",
    }
    props["kind"] = {"type": "string", "description": "Kind of REST resource this object is."}
    props["metadata"] = {"type": "object"}
    schema["type"] = "object"
    return schema


ANNOTATION_LIMIT = 256 * 1024
"""Bytes all annotations of an object may hold together. Client-side ``kubectl apply`` copies
the whole object, as compact JSON, into its last-applied-configuration annotation, so a CRD
over this cannot be installed with a plain ``kubectl apply -f``."""

SIZE_BUDGET = 240 * 1024
"""What a CRD may weigh as compact JSON: the annotation limit less room for growth."""

MESH_ENTRY_LISTS = ("functions", "sources", "sinks")


def strip_descriptions(node: Any) -> Any:
    """A copy of a schema without any description (property names stay)."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "description":
                continue
            if key == "properties":
                out[key] = {name: strip_descriptions(sub) for name, sub in value.items()}
            else:
                out[key] = strip_descriptions(value)
        return out
    if isinstance(node, list):
        return [strip_descriptions(item) for item in node]
    return node


def json_size(doc: Any) -> int:
    """Bytes of ``doc`` as compact JSON, the form kubectl records in its annotation."""
    return len(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _fit_mesh(schema: dict[str, Any]) -> None:
    """A FunctionMesh holds the Function, Source and Sink specs once each: inside its entries
    the fields go without descriptions (``kubectl explain function.spec`` has them all), so
    the CRD stays under SIZE_BUDGET with Kubernetes' enums in the embedded types."""
    spec = schema["properties"]["spec"]["properties"]
    for name in MESH_ENTRY_LISTS:
        spec[name]["items"] = strip_descriptions(spec[name]["items"])


@dataclass(frozen=True)
class Coverage:
    """Field paths under ``spec``: typed (the API server knows their shape) or free-form
    (``x-kubernetes-preserve-unknown-fields``: any content is kept as given)."""

    typed: int
    free_form: int


def _free(node: dict[str, Any]) -> bool:
    while node.get("type") == "array" or isinstance(node.get("additionalProperties"), dict):
        node = node["items"] if node.get("type") == "array" else node["additionalProperties"]
    return bool(node.get("x-kubernetes-preserve-unknown-fields"))


def spec_coverage(schema: dict[str, Any]) -> Coverage:
    """Count the field paths of a CRD schema's spec: every named property at any depth (list
    items and map values are their field's own), typed or free-form; nothing is counted
    below a free-form field."""
    typed = free = 0
    stack = [schema["properties"]["spec"]]
    while stack:
        node = stack.pop()
        while node.get("type") == "array" or isinstance(node.get("additionalProperties"), dict):
            node = node["items"] if node.get("type") == "array" else node["additionalProperties"]
        for sub in node.get("properties", {}).values():
            if _free(sub):
                free += 1
            else:
                typed += 1
                stack.append(sub)
    return Coverage(typed=typed, free_form=free)


def render_crd(info: KindInfo) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    subresources: dict[str, Any] = {"status": {}}
    if info.scalable:
        subresources["scale"] = {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }
    schema = structural_schema(info.model)
    if info.kind == "FunctionMesh":
        _fit_mesh(schema)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": info.crd_name,
            "labels": {"app.kubernetes.io/part-of": "fmesh-events"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": subresources,
                    "additionalPrinterColumns": printer_columns(info),
                }
            ],
        },
    }


def render_crds() -> list[dict[str, Any]]:
    """The CRDs of Function, Source, Sink, FunctionMesh and BackendConfig, in that order."""
    crds = [render_crd(info) for info in KINDS]
    for crd in crds:
        size = json_size(crd)
        if size > SIZE_BUDGET:
            raise SchemaError(
                f"{crd['metadata']['name']} is {size} bytes as JSON, over the {SIZE_BUDGET} "
                f"budget that keeps it installable with client-side kubectl apply")
    return crds


def _dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=True, default_flow_style=False, width=100)


def dump_crds_yaml() -> str:
    """All CRDs as one multi-document YAML stream (keys sorted, so output is stable)."""
    return "".join(f"---\n{_dump(crd)}" for crd in render_crds())


def crd_files() -> dict[str, str]:
    """File name -> content for the ``crds/`` directory, one file per kind."""
    header = (
        f"# Generated from fmesh_events.models; do not edit. Regenerate: {REGENERATE_COMMAND}\n"
    )
    return {info.file_name: header + _dump(crd) for info, crd in zip(KINDS, render_crds(), strict=True)}


def write_crds(directory: str | Path) -> list[Path]:
    """Write one YAML file per kind into ``directory``; returns the paths written."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in crd_files().items():
        path = target / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def check_crds(directory: str | Path) -> list[str]:
    """Names of the files in ``directory`` that differ from what the models render."""
    target = Path(directory)
    stale = []
    for name, text in crd_files().items():
        path = target / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fmesh_events.models.crd",
        description="Render the fmesh-events CRDs from the pydantic models.",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="DIR", help="write one file per kind into DIR")
    group.add_argument("--check", metavar="DIR", help="fail if the files in DIR are out of date")
    args = parser.parse_args(argv)
    if args.write:
        for path in write_crds(args.write):
            print(path)
        return 0
    if args.check:
        stale = check_crds(args.check)
        for name in stale:
            print(f"out of date: {name} (run: {REGENERATE_COMMAND})", file=sys.stderr)
        return 1 if stale else 0
    sys.stdout.write(dump_crds_yaml())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
