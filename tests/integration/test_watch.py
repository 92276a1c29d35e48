"""watch against the real stack: every change of every kind lands on its topic, in order,
once; redacted; across SIGKILL, a second watcher and a Pulsar restart."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from fmesh_events import devstack, kube_client
from fmesh_events.devstack import local
from fmesh_events.events import POD_EVENTS, RESOURCE_EVENTS, EventType
from fmesh_events.settings import Settings
from tests.examples import documents, example
from tests.integration.watch_helpers import (
    InProcessWatcher,
    read_topic,
    spawn_watcher,
    wait_for,
    watch_settings,
)
from tests.secret_values import new_secret

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "compute.functionmesh.io", "v1alpha1"


def _function(name: str) -> dict[str, Any]:
    body = example("function.yaml", "Function")
    body["metadata"] = {"name": name}
    return body


def _keys_sequence(items: list[Any]) -> dict[str, list[str]]:
    seq: dict[str, list[str]] = defaultdict(list)
    for _message, event in items:
        seq[event.key].append(event.type.value)
    return seq


def test_each_kind_create_update_scale_delete_in_order(stack: devstack.StackInfo,
                                                      settings: Settings, namespace: str) -> None:
    ws = watch_settings(settings, namespace)
    objects = [example("function.yaml", "Function"), example("source.yaml", "Source"),
               example("sink.yaml", "Sink"), example("functionmesh.yaml", "FunctionMesh")]
    with InProcessWatcher(ws):
        for obj in objects:
            kind, name = obj["kind"].lower(), obj["metadata"]["name"]
            stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))
            change = {"metadata": {"labels": {"rev": "2"}}} if obj["kind"] == "FunctionMesh" \
                else {"spec": {"clusterName": "changed"}}
            stack.kubectl("patch", kind, name, "-n", namespace, "--type=merge",
                          "-p", json.dumps(change))
            if obj["kind"] != "FunctionMesh":
                stack.kubectl("scale", kind, name, "-n", namespace, "--replicas=4")
            stack.kubectl("delete", kind, name, "-n", namespace)
        expected = {
            f"{o['kind']}/{namespace}/{o['metadata']['name']}":
                ["ADDED", "MODIFIED", "DELETED"] if o["kind"] == "FunctionMesh"
                else ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]
            for o in objects
        }
        wait_for("every change published",
                 lambda: _keys_sequence(read_topic(ws, RESOURCE_EVENTS)) == expected, 30)
    items = read_topic(ws, RESOURCE_EVENTS)
    for key in expected:
        versions = [int(e.resource_version) for _m, e in items if e.key == key]
        assert versions == sorted(versions), f"{key} out of order"
        updated = json.loads(next(e.object for _m, e in items
                                  if e.key == key and e.type == EventType.MODIFIED))
        if key.startswith("FunctionMesh/"):
            assert updated["metadata"]["labels"]["rev"] == "2"
        else:
            assert updated["spec"]["clusterName"] == "changed"
        assert all(e.parse_error is None and e.uid for _m, e in items if e.key == key)


def test_redaction_keeps_the_sink_password_off_the_topic(stack: devstack.StackInfo,
                                                        settings: Settings, namespace: str) -> None:
    ws = watch_settings(settings, namespace)
    # The sample mesh, with a password of its own (the final topic scan looks for it too).
    password = new_secret("es-password")
    docs = documents(REPO / "examples" / "functionmesh.yaml")
    for doc in docs:
        if doc["kind"] == "FunctionMesh":
            doc["spec"]["sinks"][0]["sinkConfig"]["password"] = password
    with InProcessWatcher(ws):
        for doc in docs:
            stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))
        key = f"FunctionMesh/{namespace}/functionmesh-sample"
        wait_for("mesh published", lambda: any(e.key == key for _m, e in
                                               read_topic(ws, RESOURCE_EVENTS)), 30)
    items = read_topic(ws, RESOURCE_EVENTS)
    for message, _event in items:
        assert password.encode() not in message.data()
    mesh = next(json.loads(e.object) for _m, e in items if e.key == key)
    assert mesh["spec"]["sinks"][0]["sinkConfig"]["password"].startswith("redacted:")
    # kubectl apply stored a copy of the whole object in an annotation: redacted too.
    assert "last-applied-configuration" in json.dumps(mesh["metadata"])


def test_object_from_a_newer_crd_is_published_with_parse_error(stack: devstack.StackInfo,
                                                               settings: Settings,
                                                               namespace: str) -> None:
    """A field our models do not know (as if the CRD were newer than the operator)."""
    path = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/futureField"
    stack.kubectl("patch", "crd", f"functions.{GROUP}", "--type=json", "-p",
                  json.dumps([{"op": "add", "path": path, "value": {"type": "string"}}]))
    try:
        ws = watch_settings(settings, namespace)
        body = _function("from-the-future")
        body["spec"]["futureField"] = "hello"
        with InProcessWatcher(ws):
            wait_for("CRD accepts futureField", lambda: stack.kubectl(
                "apply", "-n", namespace, "-f", "-", input=json.dumps(body),
                check=False).returncode == 0, 20)
            stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_function("ok")))
            wait_for("both published", lambda: len(read_topic(ws, RESOURCE_EVENTS)) >= 2, 30)
        by_key = {e.key: e for _m, e in read_topic(ws, RESOURCE_EVENTS)}
        bad = by_key[f"Function/{namespace}/from-the-future"]
        assert bad.parse_error is not None and "futureField" in bad.parse_error
        assert json.loads(bad.object)["spec"]["futureField"] == "hello"
        assert by_key[f"Function/{namespace}/ok"].parse_error is None
    finally:
        stack.kubectl("delete", "function", "from-the-future", "-n", namespace, check=False)
        stack.kubectl("patch", "crd", f"functions.{GROUP}", "--type=json", "-p",
                      json.dumps([{"op": "remove", "path": path}]), check=False)


def test_pods_and_statefulsets_go_to_pod_events_keyed_by_owner(stack: devstack.StackInfo,
                                                               settings: Settings,
                                                               namespace: str) -> None:
    labels = {"compute.functionmesh.io/component": "function",
              "compute.functionmesh.io/name": "fx"}
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet",
           "metadata": {"name": "fx-function", "labels": labels},
           "spec": {"replicas": 2, "serviceName": "fx-headless", "podManagementPolicy": "Parallel",
                    "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels},
                                 "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    ws = watch_settings(settings, namespace)
    with InProcessWatcher(ws):
        stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(sts))

        def two_ready_pods() -> bool:
            latest = {e.name: e for _m, e in read_topic(ws, POD_EVENTS) if e.kind == "Pod"}
            return len(latest) == 2 and all(e.ready and e.phase == "Running"
                                            for e in latest.values())
        wait_for("two Running, Ready pods published", two_ready_pods, 90)
    items = read_topic(ws, POD_EVENTS)
    assert {e.key for _m, e in items} == {f"Function/{namespace}/fx"}
    assert {e.kind for _m, e in items} == {"Pod", "StatefulSet"}
    assert all(e.restart_count == 0 for _m, e in items if e.kind == "Pod")


def test_sigkill_during_a_burst_loses_nothing_and_duplicates_nothing(
        stack: devstack.StackInfo, settings: Settings, namespace: str, tmp_path: Path) -> None:
    ws = watch_settings(settings, namespace)
    api = k8s.CustomObjectsApi(kube_client.api_client(ws))
    log = tmp_path / "watcher.log"
    watcher = spawn_watcher(ws, log)
    try:
        wait_for("watcher active", lambda: "now the active watcher" in log.read_text(), 60)
        written: list[tuple[str, str]] = []  # (key, resourceVersion) the API server answered
        names = [f"burst-{i}" for i in range(50)]
        for name in names:
            created = api.create_namespaced_custom_object(GROUP, VERSION, namespace, "functions",
                                                          _function(name))
            written.append((f"Function/{namespace}/{name}", created["metadata"]["resourceVersion"]))
        for round_ in range(9):
            for name in names:
                patched = api.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, "functions", name,
                    {"metadata": {"labels": {"round": str(round_)}}})
                written.append((f"Function/{namespace}/{name}",
                                patched["metadata"]["resourceVersion"]))
                if len(written) == 170:
                    watcher.send_signal(signal.SIGKILL)
                    watcher.wait()
        assert len(written) == 500
        watcher = spawn_watcher(ws, log)

        def published() -> list[tuple[str, str]]:
            return [(e.key, e.resource_version) for _m, e in read_topic(ws, RESOURCE_EVENTS)]
        wait_for("all 500 changes published", lambda: set(written) <= set(published()), 90)
        counts = Counter(published())
        assert [pair for pair, n in counts.items() if n > 1] == [], "a change published twice"
        assert set(counts) == set(written)
    finally:
        watcher.kill()
        watcher.wait()


def test_restart_without_changes_publishes_nothing(stack: devstack.StackInfo,
                                                   settings: Settings, namespace: str) -> None:
    ws = watch_settings(settings, namespace)
    stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_function("steady")))
    with InProcessWatcher(ws):
        wait_for("first publish", lambda: len(read_topic(ws, RESOURCE_EVENTS)) == 1, 30)
    with InProcessWatcher(ws):
        time.sleep(3)
    assert len(read_topic(ws, RESOURCE_EVENTS)) == 1


def test_second_watcher_stands_by_then_takes_over(stack: devstack.StackInfo, settings: Settings,
                                                 namespace: str, tmp_path: Path) -> None:
    ws = watch_settings(settings, namespace)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    first = spawn_watcher(ws, logs[0])
    second = None
    try:
        wait_for("first watcher active", lambda: "now the active watcher" in logs[0].read_text(), 60)
        second = spawn_watcher(ws, logs[1])
        time.sleep(3)
        for i in range(5):
            stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_function(f"a{i}")))
        wait_for("5 published", lambda: len(read_topic(ws, RESOURCE_EVENTS)) == 5, 30)
        assert "now the active watcher" not in logs[1].read_text(), "the standby published"
        first.send_signal(signal.SIGKILL)
        first.wait()
        takeover = wait_for("standby takes over",
                            lambda: "now the active watcher" in logs[1].read_text(), 60)
        print(f"takeover after SIGKILL of the leader: {takeover:.1f}s")
        for i in range(5):
            stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_function(f"b{i}")))
        wait_for("10 published", lambda: len(read_topic(ws, RESOURCE_EVENTS)) == 10, 30)
        time.sleep(2)
        keys = Counter(e.key for _m, e in read_topic(ws, RESOURCE_EVENTS))
        assert len(keys) == 10 and set(keys.values()) == {1}
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.kill()
                proc.wait()


def test_pulsar_stopped_and_restarted_mid_stream(stack: devstack.StackInfo, settings: Settings,
                                                 namespace: str) -> None:
    if stack.backend != "local":
        pytest.skip("stopping the broker is done through the local backend's processes")
    ws = watch_settings(settings, namespace)
    with InProcessWatcher(ws) as running:
        for i in range(10):
            stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_function(f"p{i}")))
        wait_for("first 10 published", lambda: len(read_topic(ws, RESOURCE_EVENTS)) == 10, 30)
        local.stop_process(stack, "pulsar")
        try:
            for i in range(10, 20):
                stack.kubectl("apply", "-n", namespace, "-f", "-",
                              input=json.dumps(_function(f"p{i}")))
            time.sleep(2)
            assert running.error is None
        finally:
            local.start_process(stack, "pulsar")
        wait_for("all 20 published after the broker came back",
                 lambda: len(read_topic(ws, RESOURCE_EVENTS)) >= 20, 120)
        assert running.error is None
    keys = Counter(e.key for _m, e in read_topic(ws, RESOURCE_EVENTS))
    assert len(keys) == 20 and set(keys.values()) == {1}


def test_expired_checkpoint_catches_up_with_events_resync_and_deleted(
        stack: devstack.StackInfo, settings: Settings, namespace: str) -> None:
    """410 Gone on resume: what changed while away comes as its own event when the API server
    still has it, else as RESYNC; what vanished as DELETED; what is unchanged, not at all."""
    from fmesh_events import pulsar_client
    from fmesh_events.watch.publisher import CHECKPOINT_PROPERTY

    ws = watch_settings(settings, namespace)
    for name in ("kept", "changed", "removed"):
        stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_function(name)))
    with InProcessWatcher(ws):
        wait_for("3 published", lambda: len(read_topic(ws, RESOURCE_EVENTS)) == 3, 30)
    stack.kubectl("patch", "function", "changed", "-n", namespace, "--type=merge",
                  "-p", '{"spec": {"clusterName": "while-away"}}')
    stack.kubectl("delete", "function", "removed", "-n", namespace)
    stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_function("added")))
    # Make the last message claim a checkpoint the API server no longer has (rv 1): the
    # watcher's resume then gets 410 Gone, as after a long absence.
    last_message, last_event = read_topic(ws, RESOURCE_EVENTS)[-1]
    expired = {k: "1" for k in json.loads(last_message.properties()[CHECKPOINT_PROPERTY])}
    client = pulsar_client.connect(ws)
    try:
        producer = client.create_producer(ws.topic(RESOURCE_EVENTS))
        producer.send(last_message.data(), properties={CHECKPOINT_PROPERTY: json.dumps(expired)},
                      partition_key=last_event.key)
        producer.close()
    finally:
        client.close()
    with InProcessWatcher(ws):
        wait_for("the changes while away published",
                 lambda: len(read_topic(ws, RESOURCE_EVENTS)) >= 7, 30)
        time.sleep(2)
    after = [e for _m, e in read_topic(ws, RESOURCE_EVENTS)[4:]]
    types = {e.name: e.type for e in after}
    assert sorted(e.name for e in after) == ["added", "changed", "removed"], after
    assert types["changed"] in (EventType.MODIFIED, EventType.RESYNC)
    assert types["added"] in (EventType.ADDED, EventType.RESYNC)
    assert types["removed"] == EventType.DELETED
    changed = next(json.loads(e.object) for e in after if e.name == "changed")
    assert changed["spec"]["clusterName"] == "while-away"


def test_api_server_restart_loses_no_change_made_and_undone_before_the_watcher_is_back(
        stack: devstack.StackInfo, settings: Settings, namespace: str, tmp_path: Path) -> None:
    """A CR created and deleted between the API server's restart and the watcher's return
    reaches the topic: the watcher resumes from the oldest version the restarted API server
    keeps instead of relisting (a relist never sees the CR)."""
    if stack.backend != "local":
        pytest.skip("restarting the API server is done through the local backend's processes")
    ws = watch_settings(settings, namespace)
    log = tmp_path / "watcher.log"
    stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_function("before")))
    watcher = spawn_watcher(ws, log)
    try:
        wait_for("watcher active", lambda: "now the active watcher" in log.read_text(), 60)
        wait_for("first publish", lambda: len(read_topic(ws, RESOURCE_EVENTS)) == 1, 60)
        watcher.send_signal(signal.SIGSTOP)  # the watcher is "away" across the restart
        try:
            local.stop_process(stack, "kube-apiserver")
            local.start_process(stack, "kube-apiserver")
            wait_for("API server ready again", lambda: stack.kubectl(
                "get", "--raw", "/readyz", check=False).returncode == 0, 120)
            stack.kubectl("apply", "-n", namespace, "-f", "-",
                          input=json.dumps(_function("fleeting")))
            stack.kubectl("delete", "function", "fleeting", "-n", namespace)
            stack.kubectl("delete", "function", "before", "-n", namespace)
        finally:
            watcher.send_signal(signal.SIGCONT)
        wait_for("the changes made while away published",
                 lambda: len(read_topic(ws, RESOURCE_EVENTS)) >= 4, 90)
        time.sleep(2)
        story = [(e.name, e.type) for _m, e in read_topic(ws, RESOURCE_EVENTS)]
        assert story == [("before", EventType.ADDED), ("fleeting", EventType.ADDED),
                         ("fleeting", EventType.DELETED), ("before", EventType.DELETED)], story
        assert "resuming from the oldest version kept" in log.read_text()
    finally:
        watcher.kill()
        watcher.wait()
