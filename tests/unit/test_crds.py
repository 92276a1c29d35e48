"""The generated CRDs: no drift from the models, structural, subresources, columns, rules.

The CEL rules are also evaluated here (with cel-python, when installed) against the
examples, through a small validator that reports errors the way the API server words
them; the real API server is exercised by the integration tests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fmesh_events.models import API_VERSION, k8s_types
from fmesh_events.models.crd import (
    ANNOTATION_LIMIT,
    EMBEDDED_OPTIONS,
    KINDS,
    MESH_ENTRY_LISTS,
    REGENERATE_COMMAND,
    SIZE_BUDGET,
    Coverage,
    crd_files,
    dump_crds_yaml,
    json_size,
    main,
    render_crds,
    spec_coverage,
)
from tests.examples import documents

REPO = Path(__file__).resolve().parents[2]
CRDS_DIR = REPO / "crds"
EXAMPLES = REPO / "examples"

CRDS = {crd["spec"]["names"]["kind"]: crd for crd in render_crds()}


def _schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


# --------------------------------------------------------------------------- drift


def test_committed_crds_match_the_models() -> None:
    expected = crd_files()
    present = {p.name for p in CRDS_DIR.glob("*.yaml")}
    assert present == set(expected), (
        f"crds/ should hold exactly {sorted(expected)}; run: {REGENERATE_COMMAND}"
    )
    stale = [
        name
        for name, text in expected.items()
        if (CRDS_DIR / name).read_text(encoding="utf-8") != text
    ]
    assert not stale, (
        f"crds/ is out of date with the models ({', '.join(stale)}); run: {REGENERATE_COMMAND}"
    )


def test_committed_crds_parse_to_the_rendered_objects() -> None:
    for info in KINDS:
        committed = yaml.safe_load((CRDS_DIR / info.file_name).read_text(encoding="utf-8"))
        assert committed == CRDS[info.kind]


def test_generation_is_deterministic() -> None:
    assert dump_crds_yaml() == dump_crds_yaml()
    docs = list(yaml.safe_load_all(dump_crds_yaml()))
    assert [d["metadata"]["name"] for d in docs] == [i.crd_name for i in KINDS]


def test_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check", str(tmp_path)]) == 1
    assert main(["--write", str(tmp_path)]) == 0
    assert main(["--check", str(tmp_path)]) == 0
    capsys.readouterr()


# --------------------------------------------------------------------------- structure


def _walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_schema_is_structural(kind: str) -> None:
    problems = []
    for path, node in _walk(_schema(kind), kind):
        for key in ("$ref", "$defs", "oneOf", "allOf", "not", "nullable", "title", "const"):
            if key in node:
                problems.append(f"{path}: has {key}")
        # anyOf only as controller-gen writes int-or-string (IntOrString, Quantity).
        if "anyOf" in node and not (
            node.get("x-kubernetes-int-or-string")
            and node["anyOf"] == [{"type": "integer"}, {"type": "string"}]
        ):
            problems.append(f"{path}: anyOf other than int-or-string")
        # Defaults only where Kubernetes declares one (protocol: TCP...), never a zero value
        # that would rewrite what the user applied.
        if "default" in node and node["default"] in ({}, [], "", 0):
            problems.append(f"{path}: zero-value default {node['default']!r}")
        if not (
            "type" in node
            or node.get("x-kubernetes-int-or-string")
            or node.get("x-kubernetes-preserve-unknown-fields")
        ):
            problems.append(f"{path}: no type")
        if node.get("x-kubernetes-int-or-string") and "type" in node:
            problems.append(f"{path}: int-or-string must not have a type")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: both properties and additionalProperties")
        if node.get("additionalProperties") is not None and not isinstance(
            node["additionalProperties"], dict
        ):
            problems.append(f"{path}: additionalProperties must be a schema")
        if node.get("type") == "array" and "items" not in node:
            problems.append(f"{path}: array without items")
        for required in node.get("required", []):
            if required not in node.get("properties", {}):
                problems.append(f"{path}: required {required} is not a property")
        if node.get("x-kubernetes-list-type") == "map":
            for key in node.get("x-kubernetes-list-map-keys", []):
                item = node["items"]
                if key not in item.get("required", []) and \
                        "default" not in item["properties"].get(key, {}):
                    problems.append(f"{path}: list map key {key} is neither required nor defaulted")
    assert not problems, "\n".join(problems)


EMBEDDED_SCHEMAS = {
    name: k8s_types.field_schema(name, options=EMBEDDED_OPTIONS) for name in k8s_types.EMBEDDED
}


def _embedded_name(node: dict[str, Any]) -> str | None:
    """Which embedded Kubernetes field ``node`` renders, if any."""
    bare = {k: v for k, v in node.items() if k != "description"}
    return next((name for name, schema in EMBEDDED_SCHEMAS.items() if schema == bare), None)


def _own_nodes(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """_walk, without descending into embedded Kubernetes types."""
    yield path, node
    if _embedded_name(node) is not None:
        return
    for name, sub in node.get("properties", {}).items():
        yield from _own_nodes(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _own_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _own_nodes(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_every_property_is_described(kind: str) -> None:
    """Our own fields are described; embedded Kubernetes types carry Kubernetes' field names
    and types only (descriptions would pass the size budget); a FunctionMesh's entries are
    the Function, Source and Sink specs, described in those kinds' CRDs."""
    spec = _schema(kind)["properties"]["spec"]
    missing = [
        path
        for path, node in _own_nodes(spec, f"{kind}.spec")
        if not path.endswith(("[]", "{}")) and not node.get("description")
        and not (kind == "FunctionMesh" and path.count(".") > 2)
    ]
    assert not missing, missing
    if kind == "FunctionMesh":
        for entries in MESH_ENTRY_LISTS:
            assert spec["properties"][entries]["description"]
            assert "description" not in json.dumps(spec["properties"][entries]["items"])


def test_crd_names_and_scope() -> None:
    expected = {
        "Function": ("functions", "function"),
        "Source": ("sources", "source"),
        "Sink": ("sinks", "sink"),
        "FunctionMesh": ("functionmeshes", "functionmesh"),
        "BackendConfig": ("backendconfigs", "backendconfig"),
    }
    for kind, (plural, singular) in expected.items():
        crd = CRDS[kind]
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
        assert crd["metadata"]["name"] == f"{plural}.compute.functionmesh.io"
        spec = crd["spec"]
        assert spec["group"] == "compute.functionmesh.io"
        assert spec["scope"] == "Namespaced"
        assert spec["names"] == {
            "kind": kind,
            "listKind": f"{kind}List",
            "plural": plural,
            "singular": singular,
        }
        (version,) = spec["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
        assert "status" in version["subresources"]


@pytest.mark.parametrize("kind", ["Function", "Source", "Sink"])
def test_scale_subresource(kind: str) -> None:
    version = CRDS[kind]["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    props = _schema(kind)["properties"]
    assert props["spec"]["properties"]["replicas"]["type"] == "integer"
    assert props["spec"]["properties"]["replicas"]["minimum"] == 0
    assert props["status"]["properties"]["replicas"]["type"] == "integer"
    assert props["status"]["properties"]["selector"]["type"] == "string"


@pytest.mark.parametrize("kind", ["FunctionMesh", "BackendConfig"])
def test_no_scale_subresource(kind: str) -> None:
    assert "scale" not in CRDS[kind]["spec"]["versions"][0]["subresources"]


@pytest.mark.parametrize("kind", ["Function", "Source", "Sink"])
def test_printer_columns(kind: str) -> None:
    columns = CRDS[kind]["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [(c["name"], c["type"], c["jsonPath"]) for c in columns] == [
        ("Replicas", "integer", ".spec.replicas"),
        ("Ready Replicas", "integer", ".status.readyReplicas"),
        ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]


def test_mesh_printer_columns() -> None:
    columns = CRDS["FunctionMesh"]["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == ["Ready", "Age"]


def test_conditions_are_a_list_keyed_by_type() -> None:
    for kind in CRDS:
        conditions = _schema(kind)["properties"]["status"]["properties"]["conditions"]
        assert conditions["type"] == "array"
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]
        assert set(conditions["items"]["required"]) == {"type", "status"}


def test_status_keeps_unknown_fields_and_spec_does_not() -> None:
    for kind in CRDS:
        props = _schema(kind)["properties"]
        assert props["status"].get("x-kubernetes-preserve-unknown-fields") is True
        assert "x-kubernetes-preserve-unknown-fields" not in props["spec"]


def test_mesh_lists() -> None:
    props = _schema("FunctionMesh")["properties"]["spec"]["properties"]
    for name in ("functions", "sources", "sinks"):
        node = props[name]
        assert node["type"] == "array"
        assert node["x-kubernetes-list-type"] == "map"
        assert node["x-kubernetes-list-map-keys"] == ["name"]
        assert "name" in node["items"]["required"]
        assert node["maxItems"] > 0


def test_enums_and_quantities() -> None:
    spec = _schema("Function")["properties"]["spec"]["properties"]
    assert spec["processingGuarantee"]["enum"] == [
        "atleast_once",
        "atmost_once",
        "effectively_once",
        "manual",
    ]
    assert spec["subscriptionPosition"]["enum"] == ["latest", "earliest"]
    assert spec["imagePullPolicy"]["enum"] == ["Always", "Never", "IfNotPresent"]
    assert spec["logTopicAgent"]["enum"] == ["runtime", "sidecar"]
    limits = spec["resources"]["properties"]["limits"]
    assert limits["type"] == "object"
    assert limits["additionalProperties"]["x-kubernetes-int-or-string"] is True
    assert spec["funcConfig"] == {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "description": spec["funcConfig"]["description"],
    }


# --------------------------------------------------------------------------- embedded types

# Where Function Mesh's spec embeds a Kubernetes field, relative to a workload spec.
EMBEDDED_AT = {
    "pod.affinity": "affinity",
    "pod.tolerations": "tolerations",
    "pod.securityContext": "podSecurityContext",
    "pod.volumes": "volumes",
    "pod.initContainers": "initContainers",
    "pod.sidecars": "sidecars",
    "pod.startupProbe": "startupProbe",
    "pod.autoScalingMetrics": "autoScalingMetrics",
    "volumeMounts": "volumeMounts",
}


def _at(node: dict[str, Any], dotted: str) -> dict[str, Any]:
    for part in dotted.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def _workload_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("Function", "Source", "Sink"):
        yield kind, _schema(kind)["properties"]["spec"]
    mesh = _schema("FunctionMesh")["properties"]["spec"]["properties"]
    for entries in MESH_ENTRY_LISTS:
        yield f"FunctionMesh.{entries}[]", mesh[entries]["items"]
    yield "BackendConfig", _schema("BackendConfig")["properties"]["spec"]


@pytest.mark.parametrize(("where", "spec"), list(_workload_specs()),
                         ids=[w for w, _ in _workload_specs()])
def test_embedded_fields_are_kubernetes_own_schemas(where: str, spec: dict[str, Any]) -> None:
    at = dict(EMBEDDED_AT)
    if where == "BackendConfig":  # a BackendConfig has the pod block only
        at = {k: v for k, v in at.items() if k.startswith("pod.")}
    if where in ("Function", "FunctionMesh.functions[]"):
        at["volumeClaimTemplates"] = "volumeClaimTemplates"
    for dotted, name in at.items():
        bare = {k: v for k, v in _at(spec, dotted).items() if k != "description"}
        assert bare == EMBEDDED_SCHEMAS[name], f"{where}.{dotted} is not Kubernetes' {name}"


def test_embedded_types_are_typed_as_kubernetes_has_them() -> None:
    pod = _at(_schema("Function")["properties"]["spec"], "pod")
    affinity = _at(pod, "affinity")
    assert set(affinity["properties"]) == {"nodeAffinity", "podAffinity", "podAntiAffinity"}
    toleration = _at(pod, "tolerations.[]")
    assert {"key", "operator", "value", "effect", "tolerationSeconds"} <= set(
        toleration["properties"])
    assert toleration["properties"]["tolerationSeconds"]["format"] == "int64"
    # List semantics as in a Pod: volumes and containers keyed by name, mounts by path.
    for dotted, keys in (("volumes", ["name"]), ("initContainers", ["name"]),
                         ("sidecars", ["name"]), ("sidecars.[].ports", ["containerPort", "protocol"]),
                         ("sidecars.[].env", ["name"])):
        node = _at(pod, dotted)
        assert (node["x-kubernetes-list-type"], node["x-kubernetes-list-map-keys"]) == \
            ("map", keys), dotted
    assert _at(pod, "tolerations")["x-kubernetes-list-type"] == "atomic"
    # A list-map key that is not required is defaulted, as Kubernetes declares it.
    assert _at(pod, "sidecars.[].ports.[].protocol")["default"] == "TCP"
    # int-or-string and quantities as controller-gen writes them.
    port = _at(pod, "startupProbe.httpGet.port")
    assert port == {"anyOf": [{"type": "integer"}, {"type": "string"}],
                    "x-kubernetes-int-or-string": True}
    limit = _at(pod, "sidecars.[].resources.limits")["additionalProperties"]
    assert limit["x-kubernetes-int-or-string"] is True
    assert limit["pattern"] == k8s_types.QUANTITY_PATTERN
    assert re.fullmatch(limit["pattern"], "1.5Gi") and not re.fullmatch(limit["pattern"], "1.5GB")
    # Maps Kubernetes keeps atomic stay atomic.
    assert _at(pod, "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
               )["x-kubernetes-map-type"] == "atomic"


def test_claim_templates_metadata_is_limited_as_crds_require() -> None:
    templates = _at(_schema("Function")["properties"]["spec"], "volumeClaimTemplates")
    assert templates["type"] == "array"
    metadata = templates["items"]["properties"]["metadata"]
    assert set(metadata["properties"]) == {"annotations", "finalizers", "labels", "name",
                                           "namespace"}
    assert metadata["properties"]["labels"]["additionalProperties"] == {"type": "string"}
    ephemeral = _at(_schema("Function")["properties"]["spec"],
                    "pod.volumes.[].ephemeral.volumeClaimTemplate.metadata")
    assert ephemeral == {k: v for k, v in metadata.items() if k != "description"}


def _free_form_paths(node: dict[str, Any], path: str) -> Iterator[str]:
    for sub_path, sub in _walk(node, path):
        if sub.get("x-kubernetes-preserve-unknown-fields"):
            yield sub_path


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_free_form_only_where_the_data_is_free_form(kind: str) -> None:
    """Under spec, only user configuration (funcConfig, connector configs, ...) and the VPA
    policies (autoscaling.k8s.io, not part of Kubernetes' OpenAPI) keep unknown fields."""
    leaves = {p.rsplit(".", 1)[-1] for p in _free_form_paths(_schema(kind)["properties"]["spec"],
                                                              "spec")}
    assert leaves <= {"funcConfig", "sinkConfig", "sourceConfig", "configs", "config",
                      "discoveryTriggererConfig", "updatePolicy", "resourcePolicy"}, leaves


def test_crds_fit_client_side_apply() -> None:
    """Client-side kubectl apply records the object in a 256 KiB annotation."""
    for crd in CRDS.values():
        assert json_size(crd) <= SIZE_BUDGET < ANNOTATION_LIMIT, crd["metadata"]["name"]


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_spec_coverage_counts(kind: str) -> None:
    coverage = spec_coverage(_schema(kind))
    assert coverage.typed > 10 * coverage.free_form
    assert coverage.free_form == len({p.removesuffix("[]") for p in _free_form_paths(
        _schema(kind)["properties"]["spec"], "spec")})


def test_spec_coverage_on_a_small_schema() -> None:
    free = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    schema = {"properties": {"spec": {"type": "object", "properties": {
        "a": {"type": "string"},
        "b": {"type": "array", "items": {"type": "object", "properties": {
            "c": {"type": "integer"}, "d": free}}},
        "e": {"type": "array", "items": free},
        "f": {"type": "object", "additionalProperties": {"type": "object", "properties": {
            "g": {"type": "string"}}}},
        "h": {"type": "object", "properties": {"inside": free}},
    }}}}
    # typed: a, b, c, f, g, h; free-form: d, e, inside
    assert spec_coverage(schema) == Coverage(typed=6, free_form=3)


def test_cel_rules_name_fields() -> None:
    for kind in ("Function", "Source", "Sink"):
        rules = {
            r["message"]: r["rule"]
            for r in _schema(kind)["properties"]["spec"]["x-kubernetes-validations"]
        }
        messages = " | ".join(rules)
        for text in (
            "spec.minReplicas",
            "spec.java",
            "spec.python",
            "spec.golang",
            "spec.genericRuntime",
            "spec.className",
        ):
            assert text in messages, (kind, text)
    mesh_items = _schema("FunctionMesh")["properties"]["spec"]["properties"]["functions"]["items"]
    assert all("spec." not in r["message"] for r in mesh_items["x-kubernetes-validations"])


def test_cel_iterated_lists_and_strings_are_bounded() -> None:
    """Rules iterate builtinAutoscaler and input.topics: both need maxItems (and maxLength)."""
    spec = _schema("Function")["properties"]["spec"]["properties"]
    topics = spec["input"]["properties"]["topics"]
    assert topics["maxItems"] and topics["items"]["maxLength"]
    rules = spec["pod"]["properties"]["builtinAutoscaler"]
    assert rules["maxItems"] and rules["items"]["maxLength"]


# --------------------------------------------------------------------------- rule evaluation


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _schema_errors(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    """Type, enum and required checks, worded like the API server's."""
    kind = _json_kind(value)
    if schema.get("x-kubernetes-int-or-string"):
        return (
            []
            if kind in ("integer", "string")
            else [
                f'{path}: Invalid value: "{kind}": {path} in body must be of type '
                f'integer,string: "{kind}"'
            ]
        )
    expected = schema.get("type")
    if expected and expected != kind:
        return [
            f'{path}: Invalid value: "{kind}": {path} in body must be of type {expected}: "{kind}"'
        ]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(f'"{v}"' for v in schema["enum"])
        errors.append(f'{path}: Unsupported value: "{value}": supported values: {supported}')
    if kind == "object":
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{path}.{name}: Required value")
        for name, sub in value.items():
            if name in schema.get("properties", {}):
                errors += _schema_errors(schema["properties"][name], sub, f"{path}.{name}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += _schema_errors(schema["additionalProperties"], sub, f"{path}[{name}]")
    elif kind == "array":
        for index, item in enumerate(value):
            errors += _schema_errors(schema["items"], item, f"{path}[{index}]")
    return errors


def _cel_errors(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    celpy = pytest.importorskip("celpy", reason="cel-python evaluates the CRD's CEL rules")
    errors = []
    env = celpy.Environment()
    for rule in schema.get("x-kubernetes-validations", []):
        program = env.program(env.compile(rule["rule"]))
        if not program.evaluate({"self": celpy.json_to_cel(value)}):
            errors.append(f'{path}: Invalid value: "{_json_kind(value)}": {rule["message"]}')
    if isinstance(value, dict):
        for name, sub in value.items():
            if name in schema.get("properties", {}):
                errors += _cel_errors(schema["properties"][name], sub, f"{path}.{name}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += _cel_errors(schema["additionalProperties"], sub, f"{path}[{name}]")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            errors += _cel_errors(schema["items"], item, f"{path}[{index}]")
    return errors


def _api_errors(doc: dict[str, Any]) -> list[str]:
    schema = _schema(doc["kind"])
    spec_schema = schema["properties"]["spec"]
    errors = _schema_errors(spec_schema, doc.get("spec"), "spec")
    if errors:  # the API server skips CEL rules when the schema check fails
        return errors
    return _cel_errors(spec_schema, doc["spec"], "spec")



GOOD = [
    (f"{p.name}:{d['metadata']['name']}", d)
    for p in sorted(EXAMPLES.glob("*.yaml"))
    for d in documents(p)
    if d.get("apiVersion") == API_VERSION
]
BAD = sorted((EXAMPLES / "bad").glob("*.yaml"))


@pytest.mark.parametrize("doc", [d for _, d in GOOD], ids=[n for n, _ in GOOD])
def test_examples_pass_the_crd_schema_and_rules(doc: dict[str, Any]) -> None:
    assert _api_errors(doc) == []


@pytest.mark.parametrize("path", BAD, ids=[p.name for p in BAD])
def test_bad_examples_fail_the_crd_with_the_expected_text(path: Path) -> None:
    expect = path.read_text(encoding="utf-8").splitlines()[0].removeprefix("# expect:").strip()
    (doc,) = documents(path)
    errors = _api_errors(doc)
    assert errors, "the CRD should refuse this example"
    assert any(expect in e for e in errors), errors


def _function(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "className": "org.example.F",
        "input": {"topics": ["persistent://public/default/in"]},
        "pulsar": {"pulsarConfig": "cfg"},
        "java": {"jar": "/f.jar"},
    }
    base.update(spec)
    return {
        "apiVersion": API_VERSION,
        "kind": "Function",
        "metadata": {"name": "f"},
        "spec": {k: v for k, v in base.items() if v is not None},
    }


RULE_CASES = [
    ("valid", _function(), True),
    ("min-above-max", _function(minReplicas=4, maxReplicas=3), False),
    ("min-equals-max", _function(minReplicas=3, maxReplicas=3), True),
    ("no-runtime", _function(java=None), False),
    ("two-runtimes", _function(golang={"go": "/f"}), False),
    ("go-without-classname", _function(java=None, className=None, golang={"go": "/f"}), True),
    ("java-empty-classname", _function(className=""), False),
    ("stateful-go", _function(java=None, golang={"go": "/f"}, statefulConfig={}), False),
    ("autoscaling-no-max", _function(autoscaling={"cpu": {"targetUtilizationPercent": 50}}), False),
    ("autoscaling-empty", _function(maxReplicas=2, autoscaling={}), False),
    ("no-input", _function(input=None), False),
    ("empty-input", _function(input={"topics": []}), False),
    ("pattern-input", _function(input={"topicPattern": "persistent://public/default/a-.*"}), True),
    ("connector-input", _function(input=None, sourceConfig={"builtin": "kafka"}), True),
    ("retain-both", _function(retainOrdering=True, retainKeyOrdering=True), False),
    ("retain-one", _function(retainOrdering=True, retainKeyOrdering=False), True),
    ("eo-timeout", _function(processingGuarantee="effectively_once", timeout=10), False),
    ("eo-zero-timeout", _function(processingGuarantee="effectively_once", timeout=0), True),
    ("eo-retry", _function(processingGuarantee="effectively_once", maxMessageRetry=2), False),
    ("dlq-no-retry", _function(deadLetterTopic="persistent://public/default/dlq"), False),
    (
        "dlq-retry",
        _function(deadLetterTopic="persistent://public/default/dlq", maxMessageRetry=1),
        True,
    ),
    ("output-is-input", _function(output={"topic": "persistent://public/default/in"}), False),
    (
        "window-both",
        _function(
            windowConfig={
                "actualWindowFunctionClassName": "W",
                "windowLengthCount": 1,
                "windowLengthDurationMs": 1,
            }
        ),
        False,
    ),
    ("window-none", _function(windowConfig={"actualWindowFunctionClassName": "W"}), False),
    (
        "hpa-two-cpu",
        _function(
            pod={
                "builtinAutoscaler": [
                    "AverageUtilizationCPUPercent80",
                    "AverageUtilizationCPUPercent50",
                ]
            }
        ),
        False,
    ),
    (
        "hpa-cpu-mem",
        _function(
            pod={
                "builtinAutoscaler": [
                    "AverageUtilizationCPUPercent80",
                    "AverageUtilizationMemoryPercent50",
                ]
            }
        ),
        True,
    ),
]


@pytest.mark.parametrize(
    ("doc", "valid"), [(d, v) for _, d, v in RULE_CASES], ids=[n for n, _, _ in RULE_CASES]
)
def test_cel_rules_agree_with_the_python_checks(doc: dict[str, Any], valid: bool) -> None:
    """Each rule is written twice (CEL and Python); both must give the same verdict."""
    from pydantic import ValidationError

    from fmesh_events.models import Function

    try:
        Function.model_validate(doc)
        python_valid = True
    except ValidationError:
        python_valid = False
    assert python_valid is valid
    assert (_api_errors(doc) == []) is valid, _api_errors(doc)


# --------------------------------------------------------------------------- bad input limits


def test_required_bounded_integers_keep_their_bounds_in_the_crd() -> None:
    spec = _schema("Function")["properties"]["spec"]["properties"]
    autoscaling = spec["autoscaling"]["properties"]
    cpu = autoscaling["cpu"]["properties"]["targetUtilizationPercent"]
    assert (cpu["minimum"], cpu["maximum"]) == (1, 100)
    assert autoscaling["backlog"]["properties"]["targetPerReplica"]["minimum"] == 1
    policy = autoscaling["behavior"]["properties"]["scaleUp"]["properties"]["policies"]["items"]
    assert policy["properties"]["value"]["minimum"] == 1
    period = policy["properties"]["periodSeconds"]
    assert (period["minimum"], period["maximum"]) == (1, 1800)


def test_topic_image_label_and_quantity_fields_carry_their_patterns() -> None:
    from fmesh_events.models.base import (
        LABEL_VALUE_PATTERN,
        NON_NEGATIVE_QUANTITY_PATTERN,
        TOPIC_PATTERN,
    )

    spec = _schema("Function")["properties"]["spec"]["properties"]
    assert spec["input"]["properties"]["topics"]["items"]["pattern"] == TOPIC_PATTERN
    assert spec["input"]["properties"]["topicPattern"]["pattern"] == TOPIC_PATTERN
    for optional in (spec["output"]["properties"]["topic"], spec["logTopic"],
                     spec["deadLetterTopic"]):
        assert re.fullmatch(optional["pattern"], "")  # empty: no topic
        assert not re.fullmatch(optional["pattern"], "persistent://public/in")
    assert not re.fullmatch(spec["image"]["pattern"], " apachepulsar/pulsar:4.0.7")
    assert spec["pod"]["properties"]["labels"]["additionalProperties"]["pattern"] == \
        LABEL_VALUE_PATTERN
    requests = spec["resources"]["properties"]["requests"]["additionalProperties"]
    assert requests["pattern"] == NON_NEGATIVE_QUANTITY_PATTERN and requests["minimum"] == 0
    assert not re.fullmatch(NON_NEGATIVE_QUANTITY_PATTERN, "-1")
    assert re.fullmatch(NON_NEGATIVE_QUANTITY_PATTERN, "1.5Gi")


def _workload(kind: str, name: str) -> dict[str, Any]:
    doc = _function()
    doc["kind"], doc["metadata"]["name"] = kind, name
    if kind == "Source":
        del doc["spec"]["input"]
    return doc


def _mesh(name: str, entry: str) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "FunctionMesh", "metadata": {"name": name},
            "spec": {"sinks": [{**_function()["spec"], "name": entry}]}}


ROOT_CASES = [
    ("function-43", _workload("Function", "f" * 43), True),
    ("function-44", _workload("Function", "f" * 44), False),
    ("source-45", _workload("Source", "s" * 45), True),
    ("source-46", _workload("Source", "s" * 46), False),
    ("sink-47", _workload("Sink", "k" * 47), True),
    ("sink-48", _workload("Sink", "k" * 48), False),
    ("dotted", _workload("Function", "my.function"), False),
    ("digit-first", _workload("Sink", "1st-sink"), False),
    ("mesh-fits", _mesh("m" * 20, "k" * 26), True),
    ("mesh-child-too-long", _mesh("m" * 20, "k" * 27), False),
    ("mesh-dotted", _mesh("my.mesh", "k"), False),
]


@pytest.mark.parametrize(
    ("doc", "valid"), [(d, v) for _, d, v in ROOT_CASES], ids=[n for n, _, _ in ROOT_CASES]
)
def test_root_rules_on_names_agree_with_the_python_checks(doc: dict[str, Any],
                                                          valid: bool) -> None:
    """Rules at the root see metadata.name: the names of the children must fit Kubernetes."""
    from pydantic import ValidationError

    from fmesh_events.models import parse_resource

    try:
        parse_resource(doc)
        python_valid = True
    except ValidationError:
        python_valid = False
    assert python_valid is valid
    root = _schema(doc["kind"])
    errors = []
    for rule in root.get("x-kubernetes-validations", []):
        celpy = pytest.importorskip("celpy", reason="cel-python evaluates the CRD's CEL rules")
        env = celpy.Environment()
        if not env.program(env.compile(rule["rule"])).evaluate(
                {"self": celpy.json_to_cel(doc)}):
            errors.append(rule["message"])
    assert (errors == []) is valid, errors
    assert all("metadata.name" in e or "spec.sinks" in e for e in errors)
