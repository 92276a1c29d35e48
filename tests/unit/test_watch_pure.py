"""Redaction and object -> event conversion (no services)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from fmesh_events.events import EventType
from fmesh_events.watch.convert import owner_key, to_event
from fmesh_events.watch.redact import LAST_APPLIED, looks_like_credential, redact

REPO = Path(__file__).resolve().parents[2]
ES_PASSWORD = "wJ757TmoXEd941kXm07Z2GW3"


def _mesh() -> dict:  # type: ignore[type-arg]
    docs = yaml.safe_load_all((REPO / "examples" / "functionmesh.yaml").read_text())
    return next(d for d in docs if d and d["kind"] == "FunctionMesh")


def test_credential_keys() -> None:
    for key in ("password", "PASSWD", "apiKey", "api_key", "token", "authToken", "clientSecret",
                "secret", "accessKey", "credentials", "privateKey"):
        assert looks_like_credential(key), key
    for key in ("username", "typeName", "keySerdeClassName", "retainKeyOrdering", "indexName",
                "elasticSearchUrl", "className"):
        assert not looks_like_credential(key), key


def test_sink_password_is_hashed_and_changes_stay_visible() -> None:
    mesh = _mesh()
    out = redact(mesh)
    sink_config = out["spec"]["sinks"][0]["sinkConfig"]
    assert sink_config["password"].startswith("redacted:")
    assert sink_config["username"] == "elastic"
    assert ES_PASSWORD not in json.dumps(out)
    assert ES_PASSWORD in json.dumps(mesh), "redact must not modify its input"
    mesh["spec"]["sinks"][0]["sinkConfig"]["password"] = "another"
    assert redact(mesh)["spec"]["sinks"][0]["sinkConfig"]["password"] != sink_config["password"]


def test_last_applied_annotation_and_env_and_secret_data() -> None:
    mesh = _mesh()
    mesh["metadata"]["annotations"] = {LAST_APPLIED: json.dumps(mesh)}
    mesh["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    pod = {"kind": "Pod", "spec": {"containers": [{"env": [
        {"name": "DB_PASSWORD", "value": "hunter2"}, {"name": "MODE", "value": "fast"}]}]}}
    secret = {"kind": "Secret", "data": {"user": "YWRtaW4="}, "stringData": {"x": "y"}}
    text = json.dumps([redact(mesh), redact(pod), redact(secret)])
    for clear in (ES_PASSWORD, "hunter2", "YWRtaW4=", '"y"'):
        assert clear not in text
    assert "fast" in text and "managedFields" not in text


def test_references_to_secrets_stay_readable() -> None:
    spec = {"secretsMap": {"DB": {"path": "db-creds", "key": "pw"}},
            "pulsar": {"authSecret": "pulsar-auth", "tlsSecret": "pulsar-tls"}}
    out = redact({"spec": spec})["spec"]
    assert out["secretsMap"]["DB"]["path"] == "db-creds"
    assert out["pulsar"]["authSecret"].startswith("redacted:") or \
        out["pulsar"]["authSecret"] == "pulsar-auth"


def test_cr_event_and_parse_error() -> None:
    mesh = _mesh()
    mesh["metadata"].update(namespace="ns", uid="u", resourceVersion="42", generation=1)
    event = to_event(mesh, EventType.ADDED, 1000)
    assert event.key == "FunctionMesh/ns/functionmesh-sample"
    assert event.parse_error is None and event.resource_version == "42"
    mesh["spec"]["fromTheFuture"] = True
    bad = to_event(mesh, EventType.MODIFIED, 1000)
    assert bad.parse_error and "fromTheFuture" in bad.parse_error
    assert json.loads(bad.object)["spec"]["fromTheFuture"] is True


def test_pod_event_carries_owner_phase_readiness_restarts() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "f-function-0", "namespace": "ns", "uid": "p",
                        "resourceVersion": "7",
                        "labels": {"compute.functionmesh.io/component": "function",
                                   "compute.functionmesh.io/name": "f"}},
           "status": {"phase": "Running",
                      "conditions": [{"type": "Ready", "status": "True"}],
                      "containerStatuses": [{"restartCount": 2}, {"restartCount": 1}]}}
    assert owner_key(pod) == "Function/ns/f"
    event = to_event(pod, EventType.MODIFIED, 1, key=owner_key(pod))
    assert (event.key, event.phase, event.ready, event.restart_count) == \
        ("Function/ns/f", "Running", True, 3)
    assert owner_key({"metadata": {"labels": {"app": "x"}}}) is None


def test_the_instance_command_line_never_carries_the_config_in_clear() -> None:
    """The rendered StatefulSet embeds funcConfig in --function_details; redaction must not
    let it through (this leaked before the command lines were redacted whole)."""
    from fmesh_events import models
    from fmesh_events.reconcile import render
    from tests.examples import example

    function = example("function.yaml", "Function")
    function["metadata"].update(name="leak", namespace="ns")
    function["spec"]["funcConfig"] = {"password": "hunter2-in-userconfig"}
    model = models.parse_resource(function)
    assert isinstance(model, models.Function)
    statefulset = next(o for o in render.render_workload(model) if o["kind"] == "StatefulSet")
    assert "hunter2-in-userconfig" in json.dumps(statefulset)  # what the watcher sees
    redacted = redact(statefulset)
    assert "hunter2-in-userconfig" not in json.dumps(redacted)
    container = redacted["spec"]["template"]["spec"]["containers"][0]
    assert str(container["command"]).startswith("redacted:")
