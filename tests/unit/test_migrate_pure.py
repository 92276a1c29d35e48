"""The pure parts of `fmesh-events migrate`: Pulsar configs (as the admin API v3 of Pulsar
4.0.7 returns them) to specs and findings, the worker's metadata records, and Function Mesh
objects to findings."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from fmesh_events.migrate import Finding
from fmesh_events.migrate import function_mesh as fm
from fmesh_events.migrate import pulsar_worker as pw
from fmesh_events.migrate.cli import migrate
from fmesh_events.models import parse_resource
from fmesh_events.pulsar_client import PulsarAdmin, PulsarAdminError
from fmesh_events.settings import Settings

REPO = Path(__file__).resolve().parents[2]

# GET /admin/v3/functions/public/default/exclaim of a real worker (the integration test's).
FUNCTION_CONFIG: dict[str, Any] = {
    "runtimeFlags": "-Xmx200m", "tenant": "public", "namespace": "default", "name": "exclaim",
    "className": "org.apache.pulsar.functions.api.examples.ExclamationFunction",
    "inputSpecs": {
        "persistent://public/default/in-a": {"schemaProperties": {}, "consumerProperties": {},
                                             "poolMessages": False, "regexPattern": False},
        "persistent://public/default/in-b": {"schemaProperties": {}, "consumerProperties": {},
                                             "poolMessages": False, "regexPattern": False},
    },
    "output": "persistent://public/default/out",
    "producerConfig": {"useThreadLocalProducers": False, "batchBuilder": "", "compressionType": "LZ4"},
    "logTopic": "persistent://public/default/logs", "processingGuarantees": "ATLEAST_ONCE",
    "retainOrdering": False, "retainKeyOrdering": False, "forwardSourceMessageProperty": True,
    "userConfig": {"n": 3.0, "greeting": "hi"},
    "secrets": {"pw": {"path": "my-secret", "key": "password"}}, "runtime": "JAVA",
    "autoAck": True, "maxMessageRetries": 3, "deadLetterTopic": "persistent://public/default/dlq",
    "subName": "exclaim-sub", "parallelism": 2,
    "resources": {"cpu": 0.5, "ram": 268435456, "disk": 1073741824}, "timeoutMs": 5000,
    "cleanupSubscription": True, "customRuntimeOptions": "{\"x\":1}", "subscriptionPosition": "Latest",
}
RECORD = pw.WorkerRecord(package_path="function://public/default/exclaim@0",
                         original_file_name="examples.jar", input_type="java.lang.String",
                         output_type="java.lang.String", user_config='{"n":3,"greeting":"hi"}')
SINK_CONFIG: dict[str, Any] = {
    "tenant": "public", "namespace": "default", "name": "mysink", "className": "fm.MigrateSink",
    "sourceSubscriptionPosition": "Latest", "inputs": ["persistent://public/default/sink-in"],
    "inputSpecs": {"persistent://public/default/sink-in": {
        "schemaProperties": {}, "consumerProperties": {}, "poolMessages": False, "regexPattern": False}},
    "configs": {"batch": 10, "url": "http://x"}, "parallelism": 3,
    "processingGuarantees": "ATLEAST_ONCE", "retainOrdering": False, "retainKeyOrdering": False,
    "resources": {"cpu": 1.0, "ram": 536870912, "disk": 10737418240}, "autoAck": True,
    "cleanupSubscription": True,
}
SOURCE_CONFIG: dict[str, Any] = {
    "tenant": "public", "namespace": "default", "name": "mysource", "className": "fm.MigrateSource",
    "topicName": "persistent://public/default/src-out",
    "producerConfig": {"useThreadLocalProducers": False, "batchBuilder": "", "compressionType": "LZ4"},
    "schemaType": "STRING", "configs": {"a": "b"}, "parallelism": 1,
    "processingGuarantees": "ATLEAST_ONCE",
    "resources": {"cpu": 1.0, "ram": 1073741824, "disk": 10737418240},
}


def _doc(converted: pw.Converted) -> dict[str, Any]:
    docs, findings = pw.documents([converted], mesh=None, pulsar_config="pulsar-config",
                                  web_service_url="http://p:8080", broker_service_url="pulsar://p:6650")
    assert len(docs) == 2, [f.line() for f in findings]
    return docs[1]


def _fields(findings: list[Finding]) -> dict[str, Finding]:
    return {f.field: f for f in findings}


def test_function_config_becomes_a_function_spec() -> None:
    converted = pw.convert(pw.Component("Function", copy.deepcopy(FUNCTION_CONFIG), RECORD),
                           cluster_name="standalone")
    spec = _doc(converted)["spec"]
    assert spec == {
        "tenant": "public", "namespace": "default", "name": "exclaim",
        "className": "org.apache.pulsar.functions.api.examples.ExclamationFunction",
        "replicas": 2, "processingGuarantee": "atleast_once",
        "logTopic": "persistent://public/default/logs", "runtimeFlags": "-Xmx200m",
        "clusterName": "standalone", "pulsar": {"pulsarConfig": "pulsar-config"},
        "resources": {"requests": {"cpu": "500m", "memory": "256Mi"},
                      "limits": {"cpu": "500m", "memory": "256Mi"}},
        "secretsMap": {"pw": {"path": "my-secret", "key": "password"}},
        "input": {"topics": ["persistent://public/default/in-a", "persistent://public/default/in-b"],
                  "typeClassName": "java.lang.String"},
        "output": {"topic": "persistent://public/default/out", "typeClassName": "java.lang.String"},
        "autoAck": True, "cleanupSubscription": True,
        "deadLetterTopic": "persistent://public/default/dlq", "maxMessageRetry": 3,
        "timeout": 5000, "subscriptionName": "exclaim-sub", "subscriptionPosition": "latest",
        "funcConfig": {"n": 3, "greeting": "hi"},  # the worker's record keeps 3 an integer
        "forwardSourceMessageProperty": True,
        "java": {"jar": "examples.jar", "jarLocation": "function://public/default/exclaim@0"},
    }
    findings = _fields(converted.findings)
    assert set(findings) == {"resources.disk", "customRuntimeOptions.x"}
    assert findings["customRuntimeOptions.x"].value == 1 and findings["customRuntimeOptions.x"].attention
    assert findings["resources.disk"].value == 1073741824 and not findings["resources.disk"].attention


def test_without_the_worker_record_the_admin_values_are_used_and_a_package_url_proposed() -> None:
    converted = pw.convert(pw.Component("Function", copy.deepcopy(FUNCTION_CONFIG)))
    spec = _doc(converted)["spec"]
    assert spec["funcConfig"] == {"n": 3.0, "greeting": "hi"}
    assert "typeClassName" not in spec["input"]
    assert spec["java"] == {"jar": "exclaim.jar",
                            "jarLocation": "function://public/default/exclaim@migrated"}
    package = _fields(converted.findings)["package"]
    assert "pulsar-admin functions download --tenant public --namespace default --name exclaim" \
        in package.message
    assert "pulsar-admin packages upload function://public/default/exclaim@migrated" in package.message


@pytest.mark.parametrize(("path", "location", "note"), [
    ("function://public/default/f@3", "function://public/default/f@3", None),
    ("https://repo.example/f-1.0.jar", "https://repo.example/f-1.0.jar", None),
    ("file:/opt/functions/f.jar", "function://public/default/f@migrated", "worker's disk"),
    ("/opt/functions/f.jar", "function://public/default/f@migrated", "worker's disk"),
    ("public/default/f/0a1b-f.jar", "public/default/f/0a1b-f.jar", "package storage"),
])
def test_package_locations(path: str, location: str, note: str | None) -> None:
    config = {"tenant": "public", "namespace": "default", "name": "f", "className": "F",
              "inputs": ["in"], "runtime": "JAVA"}
    converted = pw.convert(pw.Component("Function", config, pw.WorkerRecord(package_path=path)))
    assert converted.spec["java"]["jarLocation"] == location
    findings = _fields(converted.findings)
    if note is None:
        assert "package" not in findings
    else:
        assert note in findings["package"].message and findings["package"].value == path


def test_python_and_builtin_connector() -> None:
    py = pw.convert(pw.Component("Function", {
        "tenant": "t", "namespace": "n", "name": "p", "className": "m.F", "inputs": ["i"],
        "runtime": "PYTHON"}, pw.WorkerRecord(package_path="function://t/n/p@1",
                                              original_file_name="p.whl")))
    assert py.spec["python"] == {"py": "p.whl", "pyLocation": "function://t/n/p@1"}
    sink = pw.convert(pw.Component("Sink", {
        "tenant": "t", "namespace": "n", "name": "es", "className": "x.Es", "inputs": ["i"],
        "archive": "builtin://elastic_search"}))
    assert sink.spec["java"] == {"jar": "elastic_search.nar"}
    assert "built-in connector 'elastic_search'" in _fields(sink.findings)["archive"].message


def test_inputs_take_the_simplest_form_that_says_it_all() -> None:
    config = {
        "tenant": "t", "namespace": "n", "name": "f", "className": "F", "runtime": "JAVA",
        "inputs": ["plain"], "topicsPattern": "persistent://t/n/pat-.*",
        "customSerdeInputs": {"serde-in": "my.Serde"},
        "customSchemaInputs": {"schema-in": "AVRO"},
        "inputSpecs": {
            "plain": {"schemaProperties": {}, "regexPattern": False},
            "rich": {"schemaType": "JSON", "receiverQueueSize": 10, "consumerProperties": {"a": "b"},
                     "cryptoConfig": {"cryptoKeyReaderClassName": "K", "cryptoKeyReaderConfig": {"n": 1}}},
            "pooled": {"poolMessages": True},
        },
    }
    converted = pw.convert(pw.Component("Function", config))
    assert converted.spec["input"] == {
        "topics": ["plain", "pooled"],
        "topicPattern": "persistent://t/n/pat-.*",
        "customSerdeSources": {"serde-in": "my.Serde"},
        "customSchemaSources": {"schema-in": "AVRO"},
        "sourceSpecs": {"rich": {"schemaType": "JSON", "consumerProperties": {"a": "b"},
                                 "receiverQueueSize": 10,
                                 "cryptoConfig": {"cryptoKeyReaderClassName": "K",
                                                  "cryptoKeyReaderConfig": {"n": "1"}}}},
    }
    findings = _fields(converted.findings)
    assert findings["inputSpecs.pooled.poolMessages"].value is True
    assert not findings["inputSpecs.rich.cryptoConfig.cryptoKeyReaderConfig"].attention
    _doc(converted)


def test_window_runtime_options_and_unknown_keys() -> None:
    config = {
        "tenant": "t", "namespace": "n", "name": "w", "className": "x.AddWindowFunction",
        "runtime": "JAVA", "inputs": ["nums"], "output": "sums", "autoAck": False,
        "windowConfig": {"windowLengthCount": 10, "slidingIntervalCount": 5,
                         "actualWindowFunctionClassName": "x.AddWindowFunction",
                         "processingGuarantees": "ATLEAST_ONCE"},
        "customRuntimeOptions": json.dumps({
            "jobNamespace": "fns", "extraAnnotations": {"a": "1"}, "nodeSelectorLabels": {"z": "a"},
            "tolerations": [{"key": "k", "operator": "Exists"}], "maxReplicas": 4,
            "resourceRequirements": {"requests": {"cpu": "2"}}}),
        "exposePulsarAdminClientEnabled": True, "somethingNew": {"x": 1},
    }
    converted = pw.convert(pw.Component("Function", config))
    spec = _doc(converted)["spec"]
    assert spec["windowConfig"]["windowLengthCount"] == 10 and spec["autoAck"] is False
    assert spec["pod"] == {"annotations": {"a": "1"}, "nodeSelector": {"z": "a"},
                           "tolerations": [{"key": "k", "operator": "Exists"}]}
    assert spec["maxReplicas"] == 4 and spec["resources"] == {"requests": {"cpu": "2"}}
    findings = _fields(converted.findings)
    assert findings["customRuntimeOptions.jobNamespace"].value == "fns"
    assert findings["exposePulsarAdminClientEnabled"].attention
    assert findings["somethingNew"].value == {"x": 1}


def test_sink_and_source() -> None:
    sink = _doc(pw.convert(pw.Component("Sink", copy.deepcopy(SINK_CONFIG), pw.WorkerRecord(
        package_path="sink://public/default/mysink@0", original_file_name="s.jar",
        input_type="java.lang.String", sink_configs='{"url":"http://x","batch":10}'))))["spec"]
    assert sink["input"] == {"topics": ["persistent://public/default/sink-in"],
                             "typeClassName": "java.lang.String"}
    assert sink["sinkConfig"] == {"url": "http://x", "batch": 10}
    assert sink["replicas"] == 3 and sink["subscriptionPosition"] == "latest"
    assert sink["java"] == {"jar": "s.jar", "jarLocation": "sink://public/default/mysink@0"}
    source = _doc(pw.convert(pw.Component("Source", copy.deepcopy(SOURCE_CONFIG))))["spec"]
    assert source["output"] == {"topic": "persistent://public/default/src-out",
                                "sinkSchemaType": "STRING"}
    assert source["sourceConfig"] == {"a": "b"}
    assert source["java"]["jarLocation"] == "source://public/default/mysource@migrated"


def test_refused_values_are_left_out_and_reported_and_broken_specs_skipped() -> None:
    config = dict(FUNCTION_CONFIG, processingGuarantees="SOMETIMES")
    docs, findings = pw.documents([pw.convert(pw.Component("Function", config, RECORD))], mesh=None,
                                  pulsar_config="c", web_service_url="w", broker_service_url="b")
    assert "processingGuarantee" not in docs[1]["spec"]
    refused = _fields(findings)["spec.processingGuarantee"]
    assert refused.value == "sometimes" and "left out" in refused.message
    # Output topic among the inputs: a cross-field rule, so the function is left out.
    config = dict(FUNCTION_CONFIG, output="persistent://public/default/in-a")
    docs, findings = pw.documents([pw.convert(pw.Component("Function", config, RECORD))], mesh=None,
                                  pulsar_config="c", web_service_url="w", broker_service_url="b")
    assert [d["kind"] for d in docs] == ["ConfigMap"]
    assert any("not converted" in f.message for f in findings)


def test_mesh_entries_and_kubernetes_names() -> None:
    odd = dict(FUNCTION_CONFIG, name="Word_Count")
    items = [pw.convert(pw.Component("Function", odd, RECORD)),
             pw.convert(pw.Component("Sink", copy.deepcopy(SINK_CONFIG)))]
    standalone, _ = pw.documents(items, mesh=None, pulsar_config="c", web_service_url="w",
                                 broker_service_url="b")
    assert standalone[1]["metadata"]["name"] == "word-count"
    assert standalone[1]["spec"]["name"] == "Word_Count"  # the name in Pulsar is kept
    docs, findings = pw.documents(items, mesh="mig", pulsar_config="c", web_service_url="w",
                                  broker_service_url="b")
    mesh = docs[1]
    parse_resource(mesh)
    entry = mesh["spec"]["functions"][0]
    assert entry["name"] == "word-count" and entry["subscriptionName"] == "exclaim-sub"
    assert mesh["spec"]["sinks"][0]["name"] == "mysink"
    renamed = _fields(findings)["name"]
    assert renamed.value == "Word_Count" and "becomes 'word-count'" in renamed.message
    odd_no_sub = {k: v for k, v in odd.items() if k != "subName"}
    docs, _ = pw.documents([pw.convert(pw.Component("Function", odd_no_sub, RECORD))], mesh="m",
                           pulsar_config="c", web_service_url="w", broker_service_url="b")
    assert docs[1]["spec"]["functions"][0]["subscriptionName"] == "public/default/Word_Count"


def test_yaml_quotes_what_kubectl_would_read_as_booleans() -> None:
    text = pw.dump_yaml([{"funcConfig": {"n": "y", "N": 1, "on": "off", "yes": True, "x": "No"}}])
    for word in ("'n'", "'y'", "'N'", "'on'", "'off'", "'yes'", "'No'"):
        assert word in text
    assert yaml.safe_load(text) == {"funcConfig": {"n": "y", "N": 1, "on": "off", "yes": True, "x": "No"}}


def test_quantities_and_names() -> None:
    assert [pw.cpu_quantity(c) for c in (0.5, 1.0, 2, 0.25, 1.5)] == ["500m", "1", "2", "250m", "1500m"]
    assert [pw.bytes_quantity(b) for b in (2**30, 3 * 2**20, 1000, 2**40)] == ["1Gi", "3Mi", "1000", "1Ti"]
    assert pw.object_name("My__Func.v2") == "my-func-v2"
    assert pw.object_name("___") == "component"


def _varint(value: int) -> bytes:
    out = b""
    while True:
        byte, value = value & 0x7F, value >> 7
        out += bytes([byte | (0x80 if value else 0)])
        if not value:
            return out


def _field(number: int, value: int | bytes | str) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _metadata(name: str, path: str) -> bytes:
    details = (_field(1, "public") + _field(2, "default") + _field(3, name) + _field(10, 2)
               + _field(7, '{"n":3}') + _field(11, _field(5, "java.lang.Integer"))
               + _field(12, _field(3, "out") + _field(5, "java.lang.String")))
    location = _field(1, path) + _field(2, "f.jar")
    return _field(1, details) + _field(2, location) + b"\x19" + b"\0" * 8 + _field(3, 7)


def test_worker_metadata_is_replayed_in_order() -> None:
    update = _field(1, 0) + _field(2, "req") + _field(3, _metadata("a", "function://public/default/a@0"))
    update_b = _field(2, "r2") + _field(3, _metadata("b", "function://public/default/b@0"))
    delete_b = _field(1, 1) + _field(3, _metadata("b", ""))
    records = pw.replay_metadata([("", update), ("", update_b), ("", delete_b)])
    assert records == {"public/default/a": pw.WorkerRecord(
        package_path="function://public/default/a@0", original_file_name="f.jar",
        input_type="java.lang.Integer", output_type="java.lang.String", user_config='{"n":3}')}
    compacted = pw.replay_metadata([("public/default/c", _metadata("c", "x")),
                                    ("public/default/a", _metadata("a", "y")),
                                    ("public/default/a", b"")])
    assert list(compacted) == ["public/default/c"]
    with pytest.raises(ValueError):
        pw.proto_fields(b"\x0f")


def test_from_pulsar_admin_errors_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(self: PulsarAdmin, method: str, path: str, body: Any = None,
                  ok: tuple[int, ...] = (200, 204)) -> Any:
        raise PulsarAdminError(method, path, 401, "Unauthorized")

    monkeypatch.setattr(PulsarAdmin, "request", forbidden)
    result = CliRunner().invoke(migrate, ["from-pulsar", "--tenant", "t", "--namespace", "n"],
                                obj=Settings(pulsar_admin_url="http://pulsar.example:8080"))
    assert result.exit_code == 1
    assert result.output.startswith("Error: not allowed to read tenant t at http://pulsar.example:8080 "
                                    "(HTTP 401)")
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_from_pulsar_prints_yaml_and_the_report(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    answers: dict[str, Any] = {
        "/admin/v2/namespaces/public": ["public/default"],
        "/admin/v2/clusters": ["standalone"],
        "/admin/v3/functions/public/default": ["exclaim"],
        "/admin/v3/functions/public/default/exclaim": FUNCTION_CONFIG,
        "/admin/v3/sources/public/default": [], "/admin/v3/sinks/public/default": [],
        "/admin/v2/persistent/public/functions": [],
    }

    def fake(self: PulsarAdmin, method: str, path: str, body: Any = None,
             ok: tuple[int, ...] = (200, 204)) -> Any:
        return copy.deepcopy(answers[path])

    monkeypatch.setattr(PulsarAdmin, "request", fake)
    settings = Settings(pulsar_admin_url="http://p:8080", pulsar_service_url="pulsar://p:6650")
    result = CliRunner().invoke(migrate, ["from-pulsar", "--tenant", "public", "--namespace", "default"],
                                obj=settings)
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in docs] == ["ConfigMap", "Function"]
    assert docs[0]["data"] == {"webServiceURL": "http://p:8080", "brokerServiceURL": "pulsar://p:6650"}
    assert "persistent://public/functions/metadata does not exist" in result.stderr
    assert "function public/default/exclaim: customRuntimeOptions.x = 1: no equivalent" in result.stderr
    report = tmp_path / "r.json"
    result = CliRunner().invoke(migrate, ["from-pulsar", "--tenant", "public", "--namespace", "default",
                                          "--report", str(report)], obj=settings)
    assert result.exit_code == 0
    data = json.loads(report.read_text())
    assert data["components"] == [{"kind": "Function", "name": "exclaim"}]
    assert {"subject": "function public/default/exclaim", "field": "customRuntimeOptions.x",
            "message": "no equivalent: no field for it in the CRDs", "attention": True,
            "value": 1} in data["findings"]


# --------------------------------------------------------------------------- check


def _example(name: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((REPO / "examples" / name).read_text()) if d]
    obj: dict[str, Any] = next(d for d in docs if d["apiVersion"].startswith("compute.functionmesh.io"))
    obj["metadata"].update({"namespace": "apps", "uid": "u-1"})
    return obj


def test_a_plain_function_is_supported_unchanged() -> None:
    report = fm.check_object(_example("function.yaml"), hpas=[], vpas=[])
    assert report.findings == [] and not report.attention
    assert report.to_json()["status"] == "supported"


def test_function_mesh_hpa_is_found_by_owner_target_or_name() -> None:
    obj = _example("function.yaml")
    owned = {"metadata": {"name": "x", "namespace": "apps", "ownerReferences": [{"uid": "u-1"}]}}
    target = {"metadata": {"name": "y", "namespace": "apps"}, "spec": {"scaleTargetRef": {
        "apiVersion": "compute.functionmesh.io/v1alpha1", "kind": "Function", "name": "function-sample"}}}
    named = {"metadata": {"name": "function-sample-function", "namespace": "apps"}}
    elsewhere = {"metadata": {"name": "function-sample-function", "namespace": "other"}}
    report = fm.check_object(obj, hpas=[owned, target, named, elsewhere])
    messages = {f.field: f.message for f in report.findings}
    assert set(messages) == {"horizontalpodautoscaler/x", "horizontalpodautoscaler/y",
                             "horizontalpodautoscaler/function-sample-function"}
    assert "owned by it" in messages["horizontalpodautoscaler/x"]
    assert "kubectl delete hpa -n apps x" in messages["horizontalpodautoscaler/x"]
    assert "scaling it" in messages["horizontalpodautoscaler/y"]
    vpa = {"metadata": {"name": "function-sample-function", "namespace": "apps"}}
    assert fm.check_object(obj, vpas=[vpa]).findings[0].field == \
        "verticalpodautoscaler/function-sample-function"


def test_legacy_status_managed_false_and_fields_not_acted_upon() -> None:
    obj = _example("function.yaml")
    obj["status"] = {"conditions": {"Function": {"condition": "Ready", "status": "True"}}}
    obj["metadata"]["annotations"] = {"compute.functionmesh.io/managed": "false"}
    obj["spec"]["downloaderImage"] = "d:1"
    obj["spec"]["pulsar"]["cleanupAuthConfig"] = {"genericAuth": {
        "clientAuthenticationPlugin": "p", "clientAuthenticationParameters": "x"}}
    obj["spec"]["pod"] = {"vpa": {"updatePolicy": {"updateMode": "Auto"}},
                          "autoScalingMetrics": [{"type": "Pods", "pods": {
                              "metric": {"name": "packets-per-second"},
                              "target": {"type": "AverageValue", "averageValue": "1k"}}}]}
    report = fm.check_object(obj)
    findings = _fields(report.findings)
    assert not findings["status.conditions"].attention
    assert not findings["metadata.annotations[compute.functionmesh.io/managed]"].attention
    assert findings["spec.downloaderImage"].value == "d:1"
    assert findings["spec.pulsar.cleanupAuthConfig"].attention
    assert "renders no VerticalPodAutoscaler" in findings["spec.pod.vpa"].message
    assert "type 'Pods' is not supported" in findings["spec.pod"].message
    assert report.attention


def test_only_info_findings_are_still_supported() -> None:
    obj = _example("function.yaml")
    obj["status"] = {"conditions": {"Function": {"condition": "Ready", "status": "True"}}}
    report = fm.check_object(obj)
    assert len(report.findings) == 1 and not report.attention


def test_fields_the_model_refuses_are_shown_by_field() -> None:
    obj = _example("function.yaml")
    obj["spec"]["replicas"] = "2"
    obj["spec"]["input"]["topicz"] = ["x"]
    findings = _fields(fm.check_object(obj).findings)
    assert findings["spec.replicas"].value == "2"
    assert "strict" in findings["spec.input.topicz"].message
    assert findings["spec.input.topicz"].value == ["x"]


def test_mesh_entries_are_checked_with_their_path() -> None:
    mesh = _example("functionmesh.yaml")
    mesh["spec"]["sinks"] = mesh["spec"].get("sinks") or []
    first_kind = next(k for k in ("functions", "sources", "sinks") if mesh["spec"].get(k))
    mesh["spec"][first_kind][0]["cleanupImage"] = "c:1"
    findings = _fields(fm.check_object(mesh).findings)
    assert f"spec.{first_kind}[0].cleanupImage" in findings


def test_check_exit_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    good = _example("function.yaml")
    view = fm.ClusterView(objects=[good], hpas=[], vpas=[])
    monkeypatch.setattr(fm, "read_cluster", lambda settings: view)
    result = CliRunner().invoke(migrate, ["check"], obj=Settings())
    assert result.exit_code == 0, result.output
    assert "Function/apps/function-sample  supported  -" in result.stdout
    view.hpas = [{"metadata": {"name": "function-sample-function", "namespace": "apps"}}]
    result = CliRunner().invoke(migrate, ["check", "-o", "json"], obj=Settings())
    assert result.exit_code == 2
    assert json.loads(result.stdout)["objects"][0]["status"] == "attention"

    def unreachable(settings: Settings) -> fm.ClusterView:
        raise fm.CheckError("cannot reach the Kubernetes API to list them: boom")

    monkeypatch.setattr(fm, "read_cluster", unreachable)
    result = CliRunner().invoke(migrate, ["check"], obj=Settings())
    assert result.exit_code == 1 and result.output.strip() == \
        "Error: cannot reach the Kubernetes API to list them: boom"
