"""The pydantic models against the examples: parsing, round trips, refusals, coverage."""

from __future__ import annotations

import inspect
import json
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
    return "\n".join(models.describe_error(e) for e in error.errors())


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
        ({"maxReplicas": 3, "autoscaling": {}}, "cpu, memory or backlog"),
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


# --------------------------------------------------------------------------- bad input limits
# What the bad-input corpus (tests/bad_inputs.py) found the models (and so the CRDs) missing.


def _with(doc: dict[str, Any], **spec: Any) -> dict[str, Any]:
    for key, value in spec.items():
        doc["spec"][key] = value
    return doc


def _refused(doc: dict[str, Any], where: str, model: type[BaseModel] = Function) -> str:
    """The model refuses doc; returns the described errors, which must name `where`."""
    with pytest.raises(ValidationError) as info:
        model.model_validate(doc)
    described = models.describe_errors(info.value)
    assert where in described, described
    return described


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"maxReplicas": 3, "autoscaling": {"cpu": {"targetUtilizationPercent": 0}}},
         "spec.autoscaling.cpu.targetUtilizationPercent"),
        ({"maxReplicas": 3, "autoscaling": {"cpu": {"targetUtilizationPercent": 101}}},
         "spec.autoscaling.cpu.targetUtilizationPercent"),
        ({"maxReplicas": 3, "autoscaling": {"backlog": {"targetPerReplica": 0}}},
         "spec.autoscaling.backlog.targetPerReplica"),
        ({"maxReplicas": 3, "autoscaling": {"backlog": {"targetPerReplica": 1}, "behavior": {
            "scaleUp": {"policies": [{"type": "Pods", "value": 0, "periodSeconds": 1801}]}}}},
         "spec.autoscaling.behavior.scaleUp.policies[0].value"),
    ],
)
def test_required_bounded_integers_keep_their_bounds(change: dict[str, Any], where: str) -> None:
    """Field(ge=...) next to Int32's own bounds lost to them: 0 passed where 1 is the least."""
    _refused(_with(_minimal_function(), **change), where)


VALID_TOPICS = [
    "persistent://public/default/in", "non-persistent://t/ns/x", "t/ns/x", "x",
    "persistent://t/cluster/ns/legacy", "persistent://public/default/sortie-été",
    "persistent://t-1/n_s.=:2/a-partition-0",
]
INVALID_TOPICS = [
    "", "public/in", "kafka://public/default/out", "persistent://public/in",
    "persistent://public/default/", "persistent://public/default/my in",
    "persistent://públic/default/in", "a/b/c/d", "x\ny", "persistent://" + "t" * 600 + "/n/x",
]


@pytest.mark.parametrize("topic", VALID_TOPICS)
def test_pulsar_topic_names_accepted(topic: str) -> None:
    doc = _with(_minimal_function(), input={"topics": [topic]},
                output={"topic": topic + "-out"}, logTopic=topic + "-log")
    Function.model_validate(doc)


@pytest.mark.parametrize("topic", INVALID_TOPICS)
def test_invalid_topic_names_refused_in_every_topic_field(topic: str) -> None:
    if topic:
        _refused(_with(_minimal_function(), input={"topics": [topic]}), "spec.input.topics[0]")
        _refused(_with(_minimal_function(), output={"topic": topic}), "spec.output.topic")
        _refused(_with(_minimal_function(), logTopic=topic), "spec.logTopic")
        _refused(_with(_minimal_function(), input={"topicPattern": topic}),
                 "spec.input.topicPattern")
    else:  # empty is "none" where a topic is optional, and refused in a list of topics
        _refused(_with(_minimal_function(), input={"topics": [topic]}), "spec.input.topics[0]")
        Function.model_validate(_with(_minimal_function(), output={"topic": ""}, logTopic=""))
    described = _refused(_with(_minimal_function(), input={
        "topics": ["persistent://public/default/in"], "customSerdeSources": {topic: "a.Serde"}}),
        "spec.input.customSerdeSources")
    assert "Pulsar topic name" in described


def test_errors_name_fields_as_the_api_server_does() -> None:
    entry = {**_minimal_function()["spec"], "name": "ex",
             "input": {"customSchemaSources": {"kafka://x/y/z": "AVRO"}}}
    mesh = {"apiVersion": API_VERSION, "kind": "FunctionMesh", "metadata": {"name": "m"},
            "spec": {"functions": [entry]}}
    described = _refused(mesh, "spec.functions[0].input.customSchemaSources", FunctionMesh)
    assert "'kafka://x/y/z' is not a Pulsar topic name" in described


def test_free_form_objects_nest_at_most_max_nesting_levels() -> None:
    from fmesh_events.models.base import MAX_NESTING

    def nested(depth: int) -> dict[str, Any]:
        value: dict[str, Any] = {"leaf": [1]}  # the list is one more level
        for _ in range(depth - 2):
            value = {"level": value}
        return value

    Function.model_validate(_with(_minimal_function(), funcConfig=nested(MAX_NESTING)))
    described = _refused(_with(_minimal_function(), funcConfig=nested(MAX_NESTING + 1)),
                         "spec.funcConfig")
    assert f"nested more than {MAX_NESTING} levels" in described
    _refused(_with(_minimal_function(), pod={"volumes": [nested(MAX_NESTING + 1)]}),
             "spec.pod.volumes[0]")


@pytest.mark.parametrize(
    ("resources", "where"),
    [
        ({"requests": {"cpu": "-1"}}, "spec.resources.requests.cpu"),
        ({"requests": {"memory": -1}}, "spec.resources.requests.memory"),
        ({"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}}, "requests.cpu (2) is more"),
        ({"requests": {"memory": "2Gi"}, "limits": {"memory": "2000Mi"}}, "requests.memory"),
        ({"requests": {"gpus": 1}}, "'gpus' is not a resource a container can ask for"),
    ],
)
def test_resource_requirements_a_pod_would_refuse(resources: dict[str, Any], where: str) -> None:
    _refused(_with(_minimal_function(), resources=resources), where)


def test_resource_requirements_a_pod_takes() -> None:
    Function.model_validate(_with(_minimal_function(), resources={
        "requests": {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": 1,
                     "hugepages-2Mi": "64Mi", "ephemeral-storage": "1G"},
        "limits": {"cpu": 1, "memory": "1Gi", "nvidia.com/gpu": 1}}))


@pytest.mark.parametrize(
    ("pod", "where"),
    [
        ({"labels": {"app": "fünction"}}, "spec.pod.labels.app"),
        ({"labels": {"app": "x" * 64}}, "spec.pod.labels.app"),
        ({"labels": {"über/app": "x"}}, "not a valid label key"),
        ({"labels": {"bad key": "x"}}, "not a valid label key"),
        ({"nodeSelector": {"disk": "fast ssd"}}, "spec.pod.nodeSelector.disk"),
        ({"liveness": {"periodSeconds": 5, "successThreshold": 2}},
         "spec.pod.liveness.successThreshold"),
        ({"env": [{"name": "N", "valueFrom": {"fieldRef": {"apiVersion": "v2",
                                                           "fieldPath": "spec.nodeName"}}}]},
         "spec.pod.env[0].valueFrom.fieldRef.apiVersion"),
    ],
)
def test_pod_settings_a_pod_would_refuse(pod: dict[str, Any], where: str) -> None:
    _refused(_with(_minimal_function(), pod=pod), where)


def test_pod_labels_kubernetes_takes() -> None:
    Function.model_validate(_with(_minimal_function(), pod={
        "labels": {"app.kubernetes.io/name": "x", "team": "", "a": "A-b_c.9"},
        "nodeSelector": {"kubernetes.io/os": "linux"}}))


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"image": " apachepulsar/pulsar:4.0.7"}, "spec.image"),
        ({"image": "apachepulsar/pulsar:4.0.7\n"}, "spec.image"),
        ({"java": {"jar": ""}}, "spec.java.jar"),
        ({"secretsMap": {"password": {"path": "db"}}}, "spec.secretsMap.password.key"),
        ({"secretsMap": {"password": {"path": "", "key": "k"}}}, "spec.secretsMap.password.path"),
    ],
)
def test_values_that_can_never_run_are_refused(change: dict[str, Any], where: str) -> None:
    _refused(_with(_minimal_function(), **change), where)


def _source(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "Source", "metadata": {"name": "s"},
            "spec": {"className": "org.example.S", "pulsar": {"pulsarConfig": "cfg"},
                     "java": {"jar": "/s.nar"}, **spec}}


CRON = "org.apache.pulsar.io.batchdiscovery.CronTriggerer"


@pytest.mark.parametrize("config", [None, {}, {"schedule": "daily"}, {"__CRON__": "every night"},
                                    {"__CRON__": "0 0 2 * *"}, {"__CRON__": 5}])
def test_cron_triggerer_needs_a_quartz_expression(config: dict[str, Any] | None) -> None:
    batch: dict[str, Any] = {"discoveryTriggererClassName": CRON}
    if config is not None:
        batch["discoveryTriggererConfig"] = config
    where = "spec.batchSourceConfig" + (": Value error, discoveryTriggererConfig"
                                        if config is None else ".discoveryTriggererConfig")
    _refused(_source(batchSourceConfig=batch), where, Source)


def test_cron_triggerer_with_a_quartz_expression_and_other_triggerers() -> None:
    Source.model_validate(_source(batchSourceConfig={
        "discoveryTriggererClassName": CRON,
        "discoveryTriggererConfig": {"__CRON__": "0 0 2 * * ?"}}))
    Source.model_validate(_source(batchSourceConfig={
        "discoveryTriggererClassName": "org.example.Immediately"}))


@pytest.mark.parametrize(
    ("kind", "name", "ok"),
    [
        ("Function", "f" * 43, True), ("Function", "f" * 44, False),
        ("Source", "s" * 45, True), ("Source", "s" * 46, False),
        ("Sink", "k" * 47, True), ("Sink", "k" * 48, False),
        ("Function", "my.function", False), ("Function", "1st", False),
        ("Function", "ends-with-", False), ("Function", "UPPER", False),
        ("Function", "a", True), ("Function", "a-1", True),
    ],
)
def test_names_must_fit_the_children_made_from_them(kind: str, name: str, ok: bool) -> None:
    doc = {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name},
           "spec": {"className": "org.example.X", "pulsar": {"pulsarConfig": "cfg"},
                    "java": {"jar": "/x.jar"},
                    **({"input": {"topics": ["in"]}} if kind != "Source" else {})}}
    if ok:
        parse_resource(doc)
    else:
        _refused(doc, "metadata.name", MODELS_BY_KIND[kind])


def test_mesh_names_must_fit_their_children() -> None:
    entry = {**_minimal_function()["spec"], "name": "f" * 20}
    mesh: dict[str, Any] = {"apiVersion": API_VERSION, "kind": "FunctionMesh",
                            "metadata": {"name": "m" * 22},
                            "spec": {"functions": [entry]}}
    FunctionMesh.model_validate(mesh)  # m*22 + "-" + f*20: 43 characters
    mesh["metadata"]["name"] = "m" * 23
    _refused(mesh, "spec.functions", FunctionMesh)
    mesh["metadata"]["name"] = "mesh.with.dots"
    _refused(mesh, "metadata.name", FunctionMesh)


# Refused by the API server's own checks of metadata, which the models leave to it.
_METADATA_ONLY = {"type-metadata-labels-number", "huge-funcconfig-client-side", "huge-annotation"}


def test_the_models_refuse_what_the_crds_refuse_in_the_bad_input_corpus() -> None:
    """The operator parses with the models what the API server stored under the CRDs: both
    must refuse the same specs, or a refused case would be one the operator never sees and
    a stored one one it cannot read. (The corpus's Reported cases that parse are found when
    applying: a missing ConfigMap, exec limits, a child the API server refuses.)"""
    from tests.bad_inputs import CORPUS, Refused, Runs

    models.allow_deep_objects()  # one case nests 2,000 levels deep
    disagree = []
    for case in CORPUS:
        try:
            parse_resource(json.loads(case.json()))
            parses = True
        except ValueError:  # ValidationError, or not one of our kinds at all
            parses = False
        if isinstance(case.expect, Refused) and parses and case.id not in _METADATA_ONLY:
            disagree.append(f"{case.id}: parses, yet the CRD must refuse it")
        if isinstance(case.expect, Runs) and not parses:
            disagree.append(f"{case.id}: refused, yet it must run")
    assert not disagree, "\n".join(disagree)
