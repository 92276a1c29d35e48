"""The generator of the embedded Kubernetes types' CRD schemas (fmesh_events.models.k8s_types):
extraction from OpenAPI documents and conversion to structural schemas, on small inputs made
here, then on the committed extract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fmesh_events.models import k8s_types as k
from fmesh_events.models.k8s_types import Embedded, OpenAPIError, Options

REF = k.REF_PREFIX


def _ref(name: str, **siblings: Any) -> dict[str, Any]:
    return {"allOf": [{"$ref": REF + name}], **siblings}


SCHEMAS: dict[str, Any] = {
    "t.Owner": {"type": "object", "properties": {
        "things": {"type": "array", "items": _ref("t.Thing", default={}),
                   "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                   "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "name",
                   "description": "Things."},
        "unrelated": _ref("t.Unrelated"),
    }},
    "t.Thing": {"type": "object", "description": "A thing.", "required": ["name"], "properties": {
        "name": {"type": "string", "default": "", "description": "Its name."},
        "port": {"$ref": REF + k.INT_OR_STRING, "description": "A port."},
        "size": {"$ref": REF + k.QUANTITY},
        "meta": _ref(k.OBJECT_META, default={}),
        "when": {"$ref": REF + "io.k8s.apimachinery.pkg.apis.meta.v1.Time"},
        "protocol": {"type": "string", "default": "TCP"},
        "count": {"type": "integer", "format": "int32", "default": 0},
        "labels": {"type": "object", "additionalProperties": {"type": "string", "default": ""},
                   "x-kubernetes-map-type": "atomic"},
    }},
    "t.Unrelated": {"type": "object", "properties": {"x": {"type": "string"}}},
    k.INT_OR_STRING: {"type": "string", "format": "int-or-string"},
    k.QUANTITY: {"type": "string"},
    k.OBJECT_META: {"type": "object", "properties": {"name": {"type": "string"}}},
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time": {"type": "string", "format": "date-time"},
}
EMBEDDED = {"things": Embedded("t.Owner", "things")}


def _document(schemas: dict[str, Any]) -> dict[str, Any]:
    return {"openapi": "3.0.0", "components": {"schemas": schemas}}


def test_extract_keeps_what_the_embedded_fields_reach() -> None:
    got = k.extract([_document(SCHEMAS)], EMBEDDED)
    assert set(got) == {"t.Owner", "t.Thing", k.INT_OR_STRING, k.QUANTITY, k.OBJECT_META,
                        "io.k8s.apimachinery.pkg.apis.meta.v1.Time"}
    # The owner is only needed for its embedded field: the rest of it is left out.
    assert set(got["t.Owner"]["properties"]) == {"things"}
    assert "t.Unrelated" not in got


def test_extract_keeps_an_owner_whole_when_another_field_reaches_it() -> None:
    schemas = {**SCHEMAS, "t.Other": {"type": "object", "properties": {
        "owner": _ref("t.Owner")}}}
    got = k.extract([_document(schemas)], {**EMBEDDED, "other": Embedded("t.Other", "owner")})
    assert set(got["t.Owner"]["properties"]) == {"things", "unrelated"}
    assert "t.Unrelated" in got


def test_extract_merges_documents_and_refuses_what_is_missing() -> None:
    first = {n: s for n, s in SCHEMAS.items() if n != "t.Thing"}
    got = k.extract([_document(first), _document({"t.Thing": SCHEMAS["t.Thing"]})], EMBEDDED)
    assert "t.Thing" in got
    with pytest.raises(OpenAPIError, match=r"dangling reference to t\.Thing"):
        k.extract([_document(first)], EMBEDDED)
    with pytest.raises(OpenAPIError, match="no field 'nothing'"):
        k.extract([_document(SCHEMAS)], {"x": Embedded("t.Owner", "nothing")})
    with pytest.raises(OpenAPIError, match=r"t\.Missing is not in"):
        k.extract([_document(SCHEMAS)], {"x": Embedded("t.Missing", "a")})


def test_conversion_as_controller_gen_renders_core_types() -> None:
    got = k.field_schema("things", k.extract([_document(SCHEMAS)], EMBEDDED), embedded=EMBEDDED)
    assert got["type"] == "array"
    assert (got["x-kubernetes-list-type"], got["x-kubernetes-list-map-keys"]) == ("map", ["name"])
    assert "x-kubernetes-patch-strategy" not in got and "description" not in got
    item = got["items"]
    assert item["description"] == "A thing."
    assert "default" not in item  # {} is the Go zero value, not a Kubernetes default
    props = item["properties"]
    assert props["port"] == {"anyOf": [{"type": "integer"}, {"type": "string"}],
                             "x-kubernetes-int-or-string": True, "description": "A port."}
    assert props["size"]["pattern"] == k.QUANTITY_PATTERN
    assert props["size"]["x-kubernetes-int-or-string"] is True
    assert set(props["meta"]["properties"]) == {"annotations", "finalizers", "labels", "name",
                                                "namespace"}
    assert props["when"] == {"type": "string", "format": "date-time"}
    assert props["protocol"]["default"] == "TCP"  # a real default stays
    assert "default" not in props["name"] and "default" not in props["count"]
    assert props["count"]["format"] == "int32"
    assert props["labels"] == {"type": "object", "additionalProperties": {"type": "string"},
                               "x-kubernetes-map-type": "atomic"}


def test_descriptions_can_be_left_out() -> None:
    got = k.field_schema("things", SCHEMAS, Options(descriptions=False), EMBEDDED)
    assert "description" not in json.dumps(got)


@pytest.mark.parametrize(("node", "message"), [
    ({"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}},
      "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["a"]},
     "neither required nor defaulted"),
    ({"type": "array", "items": {"type": "object", "properties": {}},
      "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["a"]},
     "not a field of the items"),
    ({"type": "string", "x-new-extension": True}, "unknown OpenAPI keyword"),
    ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "not structural"),
    ({"type": "string", "format": "int-or-something"}, "not known to CRDs"),
    ({"description": "no type at all"}, "no type"),
    ({"allOf": [{"$ref": REF + "a"}, {"$ref": REF + "b"}]}, "allOf other than one"),
])
def test_what_a_crd_cannot_hold_is_an_error(node: dict[str, Any], message: str) -> None:
    with pytest.raises(OpenAPIError, match=message):
        k.convert(node, {})


def test_recursive_types_are_refused() -> None:
    schemas = {"t.Node": {"type": "object", "properties": {"next": _ref("t.Node")}}}
    with pytest.raises(OpenAPIError, match="recursive"):
        k.convert(_ref("t.Node"), schemas)


def test_free_form_only_where_kubernetes_has_it() -> None:
    raw = {"type": "object", "properties": {
        "raw": _ref("io.k8s.apimachinery.pkg.runtime.RawExtension"),
        "any": {"type": "object", "additionalProperties": True}}}
    got = k.convert(raw, {})
    assert got["properties"]["raw"]["x-kubernetes-preserve-unknown-fields"] is True
    assert got["properties"]["any"]["x-kubernetes-preserve-unknown-fields"] is True


def test_write_openapi_round_trip(tmp_path: Path) -> None:
    source_dir = tmp_path / "openapi"
    source_dir.mkdir()
    (source_dir / "api__v1_openapi.json").write_text(json.dumps(_document(SCHEMAS)))
    target = tmp_path / "extract.json"
    k.write_openapi(source_dir, "test", target, EMBEDDED)
    assert k.source(target) == "test"
    assert k.load_schemas(target) == k.extract([_document(SCHEMAS)], EMBEDDED)
    with pytest.raises(OpenAPIError, match="no OpenAPI documents"):
        k.read_documents(tmp_path / "nothing-here")


# --------------------------------------------------------------------------- the committed extract


def test_committed_extract_is_closed_and_renders() -> None:
    schemas = k.load_schemas()
    for name, schema in schemas.items():
        for ref in k._refs(schema):
            assert ref in schemas, f"{name} refers to {ref}, missing from the extract"
    for name in k.EMBEDDED:
        assert k.field_schema(name)["type"] == "array" or name in (
            "affinity", "podSecurityContext", "startupProbe")
    assert "1.34" in k.source()


def test_committed_extract_matches_the_published_spec_when_at_hand() -> None:
    """The extract equals what the generator makes from Kubernetes' own spec files, apart
    from what only a running API server adds (enums and their descriptions)."""
    published = Path.home() / "go/pkg/mod/k8s.io/kubernetes@v1.34.4/api/openapi-spec/v3"
    if not published.is_dir():
        pytest.skip("Kubernetes v1.34.4's source is not in the Go module cache")
    files = [published / n for n in ("api__v1_openapi.json", "apis__apps__v1_openapi.json",
                                     "apis__autoscaling__v2_openapi.json")]
    fresh = k.extract([json.loads(p.read_text()) for p in files])
    assert _without_enums(fresh) == _without_enums(k.load_schemas())


def _without_enums(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: (value.split("\n\nPossible enum values:")[0] if key == "description"
                      and isinstance(value, str) else _without_enums(value))
                for key, value in node.items() if key != "enum"}
    if isinstance(node, list):
        return [_without_enums(v) for v in node]
    return node


# --------------------------------------------------------------------------- validation

THING_LIST = k.field_schema("things", SCHEMAS, Options(descriptions=False), EMBEDDED)


@pytest.mark.parametrize(("value", "error"), [
    ([{"name": "a", "port": 80, "size": "1Gi", "protocol": "UDP"}], None),
    ([{"name": "a", "port": "http"}], None),
    ([{"port": 80}], "things[0].name: Required value"),
    ([{"name": "a", "port": 1.5}], "things[0].port: Invalid value: must be an integer or a string"),
    ([{"name": "a", "size": "1GB"}], 'things[0].size: Invalid value: "1GB": must be a quantity'),
    ([{"name": "a", "count": 2**31}], "things[0].count: Invalid value: 2147483648: out of int32"),
    ([{"name": "a", "count": True}], 'things[0].count: Invalid value: "boolean": must be of type'),
    ([{"name": "a", "colour": "red"}], 'things[0]: unknown field "things[0].colour"'),
    ([{"name": "a"}, {"name": "a"}], 'things[1]: Duplicate value: ["a"]'),
    ([{"name": "a", "labels": {"x": 1}}], "things[0].labels[x]: Invalid value"),
    ({"name": "a"}, 'things: Invalid value: "object": must be of type array'),
])
def test_validate_refuses_as_the_api_server_does(value: Any, error: str | None) -> None:
    errors = k.validate(value, THING_LIST, "things")
    if error is None:
        assert errors == []
    else:
        assert any(e.startswith(error) for e in errors), errors


def test_validate_enums_and_list_map_defaults() -> None:
    schema = {"type": "array", "x-kubernetes-list-type": "map",
              "x-kubernetes-list-map-keys": ["port", "protocol"],
              "items": {"type": "object", "required": ["port"], "properties": {
                  "port": {"type": "integer"},
                  "protocol": {"type": "string", "default": "TCP", "enum": ["TCP", "UDP"]}}}}
    assert k.validate([{"port": 1}, {"port": 1, "protocol": "UDP"}], schema, "p") == []
    # A missing key takes its default: {"port": 1} and {"port": 1, "protocol": "TCP"} clash.
    assert k.validate([{"port": 1}, {"port": 1, "protocol": "TCP"}], schema, "p") == [
        'p[1]: Duplicate value: [1, "TCP"]']
    assert k.validate([{"port": 1, "protocol": "ICMP"}], schema, "p") == [
        'p[0].protocol: Unsupported value: "ICMP": supported values: "TCP", "UDP"']


def test_check_raises_naming_the_inner_field() -> None:
    assert k.check("tolerations", [{"key": "k", "operator": "Exists"}], "tolerations")
    with pytest.raises(ValueError, match=r"tolerations\[0\]\.tolerationSeconds"):
        k.check("tolerations", [{"tolerationSeconds": "soon"}], "tolerations")


def test_with_defaults_fills_what_the_api_server_fills() -> None:
    got = k.with_defaults([{"name": "a", "labels": {"x": "y"}}], THING_LIST)
    assert got == [{"name": "a", "labels": {"x": "y"}, "protocol": "TCP"}]
    free = {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
            "properties": {"a": {"type": "string", "default": "z"}}}
    assert k.with_defaults({}, free) == {}


def test_optional_enums_take_the_empty_zero_value() -> None:
    schemas = {"t.T": {"type": "object", "required": ["op"], "properties": {
        "op": {"type": "string", "enum": ["In", "NotIn"]},
        "effect": {"type": "string", "enum": ["NoSchedule", "NoExecute"]}}}}
    got = k.convert(_ref("t.T"), schemas)["properties"]
    assert got["op"]["enum"] == ["In", "NotIn"]  # required: "" is refused, as Kubernetes does
    assert got["effect"]["enum"] == ["", "NoSchedule", "NoExecute"]


def test_committed_extract_has_the_api_servers_enums() -> None:
    toleration = k.crd_field_schema("tolerations")["items"]["properties"]
    assert toleration["effect"]["enum"] == ["", "NoExecute", "NoSchedule", "PreferNoSchedule"]
    assert "kube-apiserver" in k.source()


def test_field_paths() -> None:
    assert k.field_paths(THING_LIST, "things") >= {"things.name", "things.meta.labels",
                                                    "things.labels", "things.port"}
    assert "things.meta.labels" in k.field_paths(THING_LIST, "things")


# The field paths of the embedded types in Kubernetes 1.29.4's OpenAPI (Function Mesh builds
# against k8s.io/api v0.29.4), rendered as ours are; written by `python -m
# tests.unit.test_k8s_types` from the Go module cache, and committed so the test needs no
# download: a path there and not in ours is a field a Function Mesh YAML may set that we lose.
FUNCTION_MESH_PATHS = Path(__file__).parent / "data" / "function-mesh-k8s-1.29.4-paths.json"
FUNCTION_MESH_KUBERNETES = Path.home() / "go/pkg/mod/k8s.io/kubernetes@v1.29.4/api/openapi-spec/v3"


def function_mesh_paths() -> dict[str, list[str]]:
    files = [FUNCTION_MESH_KUBERNETES / n for n in (
        "api__v1_openapi.json", "apis__apps__v1_openapi.json",
        "apis__autoscaling__v2_openapi.json")]
    theirs = k.extract([json.loads(p.read_text()) for p in files])
    return {name: sorted(k.field_paths(k.field_schema(name, theirs, Options(descriptions=False)),
                                       name)) for name in k.EMBEDDED}


def test_nothing_function_mesh_embeds_is_missing() -> None:
    """Function Mesh compiles against k8s.io/api v0.29.4: every field path its CRDs have in
    the embedded types (controller-gen renders them from those Go types) is in ours."""
    theirs = json.loads(FUNCTION_MESH_PATHS.read_text())
    assert set(theirs) == set(k.EMBEDDED)
    for name in k.EMBEDDED:
        old = set(theirs[name])
        new = k.field_paths(k.crd_field_schema(name), name)
        assert old, f"{name}: no paths recorded"
        assert old <= new, f"{name}: missing {sorted(old - new)[:10]}"
        assert len(new) >= len(old)


if __name__ == "__main__":  # GOFLAGS=-mod=mod go mod download k8s.io/kubernetes@v1.29.4 first
    FUNCTION_MESH_PATHS.write_text(json.dumps(function_mesh_paths(), indent=1) + "\n")
