"""The pydantic models against the examples: parsing, round trips, refusals, coverage."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

import fmesh_events.models as models
from fmesh_events.models import (
    API_VERSION,
    MODELS_BY_KIND,
    Function,
    FunctionMesh,
    FunctionSpec,
    MeshFunction,
    MeshSink,
    MeshSource,
    Sink,
    SinkSpec,
    Source,
    SourceSpec,
    WorkloadStatus,
    parse_resource,
)
from fmesh_events.models.base import SpecModel
from tests.examples import documents

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
BAD_EXAMPLES = EXAMPLES / "bad"



def _resources() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in documents(path):
            if doc.get("apiVersion") == API_VERSION:
                yield f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc


RESOURCES = dict(_resources())


def test_examples_exist() -> None:
    kinds = {doc["kind"] for doc in RESOURCES.values()}
    assert kinds == set(MODELS_BY_KIND), f"examples miss kinds {set(MODELS_BY_KIND) - kinds}"


@pytest.mark.parametrize("name", sorted(RESOURCES))
def test_example_parses_into_its_model(name: str) -> None:
    doc = RESOURCES[name]
    obj = parse_resource(doc)
    assert isinstance(obj, MODELS_BY_KIND[doc["kind"]])


@pytest.mark.parametrize("name", sorted(RESOURCES))
def test_example_round_trips(name: str) -> None:
    doc = RESOURCES[name]
    obj = parse_resource(doc)
    assert obj.model_dump(by_alias=True, exclude_unset=True) == doc


def test_mesh_entries_are_child_specs() -> None:
    mesh = FunctionMesh.model_validate(
        RESOURCES["functionmesh.yaml:FunctionMesh/functionmesh-sample"]
    )
    assert mesh.spec.functions and mesh.spec.sinks
    function = mesh.spec.functions[0]
    sink = mesh.spec.sinks[0]
    assert isinstance(function, FunctionSpec) and isinstance(function, MeshFunction)
    assert isinstance(sink, SinkSpec) and isinstance(sink, MeshSink)
    assert function.name == "ex1" and function.class_name.endswith("ExclamationFunction")  # type: ignore[union-attr]
    assert (
        function.java is not None
        and function.java.jar_location == "public/default/nlu-test-functionmesh-ex1"
    )
    assert sink.sink_config is not None and sink.sink_config["indexName"] == "my_index"
    assert sink.resources is not None and sink.resources.limits == {"cpu": "0.2", "memory": "1.1G"}
    # An entry parses as a standalone spec too (what the operator creates for it).
    child = FunctionSpec.model_validate(function.model_dump(by_alias=True, exclude_unset=True))
    assert child.name == "ex1"

    pipeline = FunctionMesh.model_validate(
        RESOURCES["functionmesh-pipeline.yaml:FunctionMesh/people-pipeline"]
    )
    assert pipeline.spec.sources and isinstance(pipeline.spec.sources[0], MeshSource)
    assert isinstance(pipeline.spec.sources[0], SourceSpec)


def _minimal_function() -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Function",
        "metadata": {"name": "f"},
        "spec": {
            "className": "org.example.F",
            "input": {"topics": ["persistent://public/default/in"]},
            "pulsar": {"pulsarConfig": "cfg"},
            "java": {"jar": "/f.jar"},
        },
    }


@pytest.mark.parametrize(
    ("where", "path"),
    [
        (("spec",), "spec.replicaCount"),
        (("spec", "java"), "spec.java.jarPath"),
        (("spec", "input"), "spec.input.topic"),
        (("spec", "pulsar"), "spec.pulsar.authSecrets"),
    ],
)
def test_unknown_field_is_an_error_naming_it(where: tuple[str, ...], path: str) -> None:
    doc = _minimal_function()
    node = doc
    for key in where:
        node = node[key]
    node[path.rsplit(".", 1)[1]] = 1
    with pytest.raises(ValidationError) as info:
        Function.model_validate(doc)
    errors = info.value.errors()
    assert [e["type"] for e in errors] == ["extra_forbidden"]
    assert ".".join(str(p) for p in errors[0]["loc"]) == path


def test_minimal_function_parses_and_snake_case_names_work() -> None:
    fn = Function.model_validate(_minimal_function())
    assert fn.spec.class_name == "org.example.F"
    assert fn.spec.pulsar.pulsar_config == "cfg"
    # populate_by_name: the Python names are accepted too.
    spec = FunctionSpec(
        class_name="org.example.F",
        input={"topics": ["persistent://public/default/in"]},
        pulsar={"pulsar_config": "cfg"},
        java={"jar": "/f.jar"},
    )
    assert spec.model_dump(by_alias=True, exclude_none=True)["className"] == "org.example.F"


def test_strict_scalars() -> None:
    doc = _minimal_function()
    doc["spec"]["replicas"] = "2"
    with pytest.raises(ValidationError, match="replicas"):
        Function.model_validate(doc)
    doc = _minimal_function()
    doc["spec"]["autoAck"] = "true"
    with pytest.raises(ValidationError, match="autoAck"):
        Function.model_validate(doc)


@pytest.mark.parametrize("value", ["500m", "1.5Gi", "1G", 2, "0.1", "+1e3"])
def test_quantities_accepted(value: object) -> None:
    doc = _minimal_function()
    doc["spec"]["resources"] = {"limits": {"cpu": value}}
    Function.model_validate(doc)


@pytest.mark.parametrize("value", ["lots", "1 Gi", 0.5, True])
def test_bad_quantities_refused(value: object) -> None:
    doc = _minimal_function()
    doc["spec"]["resources"] = {"limits": {"cpu": value}}
    with pytest.raises(ValidationError, match="resources"):
        Function.model_validate(doc)


def test_status_accepts_extra_fields_and_function_mesh_conditions() -> None:
    status = WorkloadStatus.model_validate(
        {
            "replicas": 1,
            "selector": "app=x",
            "somethingNew": {"a": 1},
            "conditions": {
                "StatefulSet": {
                    "condition": "StatefulSetReady",
                    "status": "True",
                    "action": "NoAction",
                },
                "Service": {"condition": "ServiceReady", "status": "False", "action": "Create"},
            },
        }
    )
    assert status.conditions is not None
    assert [(c.type, c.status, c.reason) for c in status.conditions] == [
        ("ServiceReady", "False", "Create"),
        ("StatefulSetReady", "True", "NoAction"),
    ]
    assert status.model_dump(by_alias=True)["somethingNew"] == {"a": 1}


def test_status_conditions_list() -> None:
    doc = _minimal_function()
    doc["status"] = {
        "observedGeneration": 3,
        "replicas": 2,
        "readyReplicas": 1,
        "selector": "compute.functionmesh.io/name=f",
        "lastReconcileMessageId": "(12,5,-1,-1)",
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "PodsNotReady",
                "message": "1 of 2 pods ready",
                "lastTransitionTime": "2024-05-01T10:00:00Z",
                "observedGeneration": 3,
            }
        ],
    }
    fn = Function.model_validate(doc)
    assert fn.status is not None and fn.status.conditions is not None
    assert fn.status.conditions[0].type == "Ready"
    assert fn.model_dump(by_alias=True, exclude_unset=True) == doc


def test_parse_resource_rejects_other_objects() -> None:
    with pytest.raises(ValueError, match="apiVersion"):
        parse_resource({"apiVersion": "v1", "kind": "ConfigMap"})
    with pytest.raises(ValueError, match="unknown kind"):
        parse_resource({"apiVersion": API_VERSION, "kind": "MeshConfig"})


# --------------------------------------------------------------------------- rules


def _k8s_error_text(error: ValidationError) -> str:
    """The errors with locations written the way the API server writes them."""
    lines = []
    for e in error.errors():
        path = ""
        for part in e["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        lines.append(f"{path}: {e['msg']}")
    return "\n".join(lines)


BAD = sorted(BAD_EXAMPLES.glob("*.yaml"))


def _expectation(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    match = re.fullmatch(r"# expect: (\S.*)", first)
    assert match, f"{path.name}: first line must be '# expect: <text>'"
    return match.group(1).strip()


def test_bad_examples_exist() -> None:
    names = {p.stem for p in BAD}
    for needed in (
        "replicas-not-an-integer",
        "min-replicas-above-max",
        "two-runtimes",
        "java-without-classname",
        "functionmesh-sinks-not-a-list",
    ):
        assert needed in names


@pytest.mark.parametrize("path", BAD, ids=[p.name for p in BAD])
def test_bad_example_is_refused_naming_the_field(path: Path) -> None:
    expect = _expectation(path)
    docs = documents(path)
    assert len(docs) == 1, "one spec per bad example"
    with pytest.raises(ValidationError) as info:
        parse_resource(docs[0])
    text = _k8s_error_text(info.value)
    assert expect in text, text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"retainOrdering": True, "retainKeyOrdering": True}, "cannot both be true"),
        ({"processingGuarantee": "effectively_once", "timeout": 100}, "effectively_once"),
        ({"deadLetterTopic": "persistent://public/default/dlq"}, "maxMessageRetry"),
        ({"input": {"typeClassName": "java.lang.String"}}, "at least one topic"),
        ({"output": {"topic": "persistent://public/default/in"}}, "output.topic"),
        (
            {
                "golang": {"go": "/f"},
                "java": None,
                "statefulConfig": {"pulsar": {"serviceUrl": "bk://x:4181"}},
            },
            "statefulConfig",
        ),
        ({"windowConfig": {"actualWindowFunctionClassName": "W"}}, "windowLength"),
        ({"maxReplicas": 3, "autoscaling": {}}, "cpu or backlog"),
        (
            {
                "pod": {
                    "builtinAutoscaler": [
                        "AverageUtilizationCPUPercent80",
                        "AverageUtilizationCPUPercent20",
                    ]
                }
            },
            "builtinAutoscaler",
        ),
    ],
)
def test_function_rules(change: dict[str, Any], message: str) -> None:
    doc = _minimal_function()
    for key, value in change.items():
        if value is None:
            doc["spec"].pop(key, None)
        else:
            doc["spec"][key] = value
    with pytest.raises(ValidationError, match=re.escape(message)):
        Function.model_validate(doc)


def test_source_cannot_scale_on_backlog() -> None:
    doc: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "Source",
        "metadata": {"name": "s"},
        "spec": {
            "className": "org.example.S",
            "maxReplicas": 2,
            "pulsar": {"pulsarConfig": "cfg"},
            "java": {"jar": "/s.nar"},
            "autoscaling": {"backlog": {"targetPerReplica": 10}},
        },
    }
    with pytest.raises(ValidationError, match=r"autoscaling\.backlog"):
        Source.model_validate(doc)
    doc["spec"]["autoscaling"] = {"cpu": {"targetUtilizationPercent": 50}}
    Source.model_validate(doc)


def test_function_with_source_connector_needs_no_input_topic() -> None:
    doc = _minimal_function()
    del doc["spec"]["input"]
    with pytest.raises(ValidationError, match="input"):
        Function.model_validate(doc)
    doc["spec"]["sourceConfig"] = {"builtin": "kafka", "configs": {"topic": "t"}}
    Function.model_validate(doc)


def test_sink_needs_input() -> None:
    doc = {
        "apiVersion": API_VERSION,
        "kind": "Sink",
        "metadata": {"name": "k"},
        "spec": {
            "className": "org.example.K",
            "pulsar": {"pulsarConfig": "c"},
            "java": {"jar": "/k.nar"},
        },
    }
    with pytest.raises(ValidationError, match=r"spec\.input"):
        Sink.model_validate(doc)


def test_mesh_entry_names_are_required_valid_and_unique() -> None:
    def mesh(*entries: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": "FunctionMesh",
            "metadata": {"name": "m"},
            "spec": {"functions": list(entries)},
        }

    entry = dict(_minimal_function()["spec"])
    with pytest.raises(ValidationError, match="name"):
        FunctionMesh.model_validate(mesh(entry))
    with pytest.raises(ValidationError, match="pattern"):
        FunctionMesh.model_validate(mesh({**entry, "name": "Not_A_DNS_Label"}))
    with pytest.raises(ValidationError, match="duplicate entry name 'f1'"):
        FunctionMesh.model_validate(mesh({**entry, "name": "f1"}, {**entry, "name": "f1"}))
    FunctionMesh.model_validate(mesh({**entry, "name": "f1"}, {**entry, "name": "f2"}))


# --------------------------------------------------------------------------- coverage


def _spec_model_classes() -> list[type[SpecModel]]:
    found: list[type[SpecModel]] = []
    stack: list[type[SpecModel]] = [SpecModel]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("fmesh_events.models") and sub not in found:
                found.append(sub)
                stack.append(sub)
    return found


def _declared_fields(cls: type[BaseModel]) -> set[str]:
    own = inspect.get_annotations(cls)
    return {name for name in own if name in cls.model_fields}


def _declaring_class(cls: type[BaseModel], field: str) -> type[BaseModel]:
    for klass in cls.__mro__:
        if (
            isinstance(klass, type)
            and issubclass(klass, BaseModel)
            and field in _declared_fields(klass)
        ):
            return klass
    raise AssertionError(f"{cls.__name__}.{field} has no declaring class")


def _collect(value: Any, used: set[tuple[type[BaseModel], str]]) -> None:
    if isinstance(value, BaseModel):
        for field in value.model_fields_set:
            used.add((_declaring_class(type(value), field), field))
            _collect(getattr(value, field), used)
    elif isinstance(value, list):
        for item in value:
            _collect(item, used)
    elif isinstance(value, dict):
        for item in value.values():
            _collect(item, used)


def test_examples_use_every_spec_field() -> None:
    """Proof that the examples exercise every field the models accept.

    A field counts as used when some example sets it on any model that has it (a field
    of the shared workload spec counts once, whichever kind sets it).
    """
    used: set[tuple[type[BaseModel], str]] = set()
    for doc in RESOURCES.values():
        _collect(parse_resource(doc).spec, used)
    missing = []
    for cls in _spec_model_classes():
        for field in sorted(_declared_fields(cls)):
            if (cls, field) not in used:
                info = cls.model_fields[field]
                missing.append(f"{cls.__name__}.{info.alias or field}")
    assert not missing, "fields no example sets: " + ", ".join(sorted(missing))


def test_every_spec_field_has_a_description() -> None:
    undocumented = [
        f"{cls.__name__}.{name}"
        for cls in _spec_model_classes()
        for name, info in cls.model_fields.items()
        if not info.description
    ]
    assert not undocumented


def test_public_names() -> None:
    for name in models.__all__:
        assert hasattr(models, name), name
