"""Malformed messages on the topics the operator consumes (issue 8, bad input): garbage bytes,
empty payloads, valid Avro of another schema, a future event version, keys that name no CR.

Each goes to the dead-letter topic (reconcile-dlq, scale-dlq) with its reason, and a log line
says so; nothing crash-loops, and a valid change that comes after is acted on. The watcher,
which reads its own resource-events back at start, starts (and resumes where it was) with
garbage at the end of that topic. The whole operator runs as its own process throughout.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fmesh_events import devstack, events, pulsar_client
from fmesh_events.events import ChangeEvent, EventType
from fmesh_events.settings import Settings
from fmesh_events.watch.convert import to_event
from tests.bad_inputs import CONFIG_MAP, base
from tests.integration.watch_helpers import (
    read_messages,
    read_topic,
    running_operator,
    scale_signal,
    wait_for,
    watch_settings,
)
from tests.reliability import report

CRASH_MARKS = ("Traceback", "starting over", "reconcile crashed", "handling failed",
               "scale decision failed")


def _apply(stack: devstack.StackInfo, namespace: str, doc: dict[str, Any]) -> None:
    stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))


def _config_map(stack: devstack.StackInfo, namespace: str) -> None:
    _apply(stack, namespace, {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIG_MAP},
        "data": {"webServiceURL": "http://pulsar.invalid:8080",
                 "brokerServiceURL": "pulsar://pulsar.invalid:6650"}})


def _get(stack: devstack.StackInfo, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    got = stack.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(got.stdout) if got.returncode == 0 else None


def _is_ready(stack: devstack.StackInfo, namespace: str, name: str) -> bool:
    conditions = ((_get(stack, "function", name, namespace) or {}).get("status") or {}).get(
        "conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _log_lines(log: Path) -> list[dict[str, Any]]:
    lines = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            lines.append(entry)
    return lines


def _crashes(log: Path) -> list[str]:
    return [line[:400] for line in log.read_text(errors="replace").splitlines()
            if any(mark in line for mark in CRASH_MARKS)]


def _subscribed(settings: Settings, topic: str, subscription: str) -> Callable[[], bool]:
    admin = pulsar_client.PulsarAdmin(settings)
    path = f"/admin/v2/persistent/{settings.system_namespace}/{topic}/subscriptions"
    return lambda: subscription in (admin.request("GET", path, ok=(200, 404)) or [])


# --------------------------------------------------------------------------- the messages

def _change(obj: dict[str, Any], **changes: Any) -> ChangeEvent:
    return to_event(obj, EventType.ADDED, int(time.time() * 1000)).model_copy(update=changes)


def _reconcile_record() -> bytes:
    return events.encode_record(events.PARSED_RECONCILE_RECORD, {
        "recordVersion": 1, "key": "Function/ns/f", "triggerTopic": "resource-events",
        "triggerMessageId": "1:2:-1", "generation": 1, "outcome": "OK", "attempt": 0,
        "children": [], "statusChanged": False, "durationMs": 1.0, "error": None,
        "time": int(time.time() * 1000), "reconciler": "someone-else"})


def _malformed(obj: dict[str, Any]) -> list[tuple[str, str, bytes, str]]:
    """(case, topic, payload, what the dead-letter reason must say) for every bad message.
    ``obj`` is a real Function as the API server returns it."""
    good = events.encode(_change(obj))
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p-0", "namespace": obj["metadata"]["namespace"], "uid": "u",
                        "resourceVersion": "1"}}
    request = events.RECONCILE_REQUESTS
    return [
        ("garbage", events.RESOURCE_EVENTS, b"\xff\x00 not avro \x80", "not a ChangeEvent"),
        ("empty", events.RESOURCE_EVENTS, b"", "not a ChangeEvent (0 bytes)"),
        ("json", events.RESOURCE_EVENTS, b'{"kind": "Function", "name": "x"}',
         "not a ChangeEvent"),
        ("other-schema-record", events.RESOURCE_EVENTS, _reconcile_record(), "not a ChangeEvent"),
        ("other-schema-signal", events.RESOURCE_EVENTS,
         scale_signal("Function/ns/f"), "not a ChangeEvent"),
        ("future-version", events.RESOURCE_EVENTS,
         events.encode(_change(obj, event_version=2)) + b"\x06new", "ChangeEvent version 2"),
        ("left-over-bytes", events.RESOURCE_EVENTS, good + b"\x00\x01", "left over"),
        ("object-not-json", events.RESOURCE_EVENTS,
         events.encode(_change(obj, object="not json")), "not a ChangeEvent"),
        ("key-not-a-key", events.RESOURCE_EVENTS, events.encode(_change(obj, key="garbage")),
         "key 'garbage'"),
        ("key-of-a-secret", events.RESOURCE_EVENTS,
         events.encode(_change(obj, key="Secret/default/db", kind="Secret",
                               namespace="default", name="db")), "key 'Secret/default/db'"),
        ("pod-garbage", events.POD_EVENTS, b"\x00\x00\x00", "not a ChangeEvent"),
        ("pod-without-owner", events.POD_EVENTS,
         events.encode(to_event(pod, EventType.ADDED, 1, key="Pod/default/p-0")),
         "key 'Pod/default/p-0'"),
        ("request-not-json", request, b"reconcile please", "not a reconcile request"),
        ("request-empty", request, b"", "not a reconcile request"),
        ("request-list", request, b"[1, 2]", "a JSON list"),
        ("request-unknown-kind", request, b'{"key": "Deployment/default/web"}',
         "key 'Deployment/default/web'"),
        ("request-bad-attempt", request, b'{"key": "Function/default/x", "attempt": -1}',
         "attempt -1"),
        ("signal-garbage", events.SCALE_SIGNALS, b"\xff\xfe\xfd", "not a ScaleSignal"),
        ("signal-empty", events.SCALE_SIGNALS, b"", "not a ScaleSignal (0 bytes)"),
        ("signal-other-schema", events.SCALE_SIGNALS, good, "not a ScaleSignal"),
        ("signal-future-version", events.SCALE_SIGNALS,
         scale_signal("Function/default/x", signalVersion=2) + b"\x02", "version 2"),
        ("signal-key-not-a-key", events.SCALE_SIGNALS, scale_signal("nonsense"),
         "key 'nonsense'"),
        ("signal-key-of-a-mesh", events.SCALE_SIGNALS,
         scale_signal("FunctionMesh/default/m"), "key 'FunctionMesh/default/m'"),
        ("signal-negative-backlog", events.SCALE_SIGNALS,
         scale_signal("Function/default/x", backlog=-5), "negative"),
        ("signal-left-over-bytes", events.SCALE_SIGNALS,
         scale_signal("Function/default/x") + b"\x00", "left over"),
    ]


def _dead_letters(settings: Settings) -> dict[str, tuple[str, dict[str, str]]]:
    """partition key -> (dead-letter topic, properties) of everything dead-lettered."""
    out = {}
    for topic in (events.RECONCILE_DLQ, events.SCALE_DLQ):
        for message in read_messages(settings, topic):
            out[message.partition_key()] = (topic, message.properties())
    return out


def test_malformed_messages_are_dead_lettered_and_the_operator_goes_on(
        stack: devstack.StackInfo, settings: Settings, namespace: str, tmp_path: Path) -> None:
    ws = watch_settings(settings, namespace)
    pulsar_client.PulsarAdmin(ws).ensure_namespace(ws.system_namespace)
    _config_map(stack, namespace)
    first = base("Function", "first")
    first["spec"].update({"minReplicas": 1, "maxReplicas": 5,
                          "autoscaling": {"backlog": {"targetPerReplica": 10}}})
    _apply(stack, namespace, first)
    stored = _get(stack, "function", "first", namespace)
    assert stored is not None
    cases = _malformed(stored)
    log = tmp_path / "operator.log"

    client = pulsar_client.connect(ws)
    try:
        # Our producers open first: the operator's watcher and sampler (exclusive producers of
        # resource-events, pod-events and scale-signals) wait as standby while they are open,
        # so what is published here is all the consumers get.
        producers = {topic: client.create_producer(ws.topic(topic), batching_enabled=False)
                     for topic in (events.RESOURCE_EVENTS, events.POD_EVENTS,
                                   events.RECONCILE_REQUESTS, events.SCALE_SIGNALS)}
        with running_operator(ws, log, "watch,reconcile,scale") as process:
            wait_for("the reconciler subscribed", _subscribed(
                ws, events.RESOURCE_EVENTS, "reconcile"), 120)
            wait_for("the scaler subscribed", _subscribed(ws, events.SCALE_SIGNALS, "scale"), 120)
            for case, topic, payload, _reason in cases:
                producers[topic].send(payload, partition_key=f"malformed/{case}")
            # Then a valid change and a valid signal: both must be acted on.
            key = events.resource_key("Function", namespace, "first")
            producers[events.RESOURCE_EVENTS].send(events.encode(_change(stored)),
                                                   partition_key=key)
            producers[events.SCALE_SIGNALS].send(scale_signal(key), partition_key=key)
            # And garbage last, at the end of the topic the watcher reads back at start.
            producers[events.RESOURCE_EVENTS].send(b"\x13\x37 the end", partition_key="malformed/last")

            expected = {f"malformed/{case}": (topic, reason) for case, topic, _p, reason in cases}
            expected["malformed/last"] = (events.RESOURCE_EVENTS, "not a ChangeEvent")
            wait_for("every malformed message dead-lettered",
                     lambda: set(expected) <= set(_dead_letters(ws)), 120)
            wait_for("the valid change reconciled: StatefulSet made", lambda: _get(
                stack, "statefulset", "first-function", namespace) is not None, 120)
            wait_for("the valid signal decided: scaled to 4", lambda: (_get(
                stack, "function", "first", namespace) or {})["spec"]["replicas"] == 4, 120)

            # Let the watcher and the sampler lead: the watcher starts with garbage at the end
            # of resource-events, and a new Function goes all the way.
            for producer in producers.values():
                producer.close()
            _apply(stack, namespace, base("Function", "second"))
            wait_for("a Function applied afterwards is Ready",
                     lambda: _is_ready(stack, namespace, "second"), 120)
            wait_for("the scaled replicas reached the StatefulSet", lambda: (_get(
                stack, "statefulset", "first-function", namespace) or {})["spec"]["replicas"]
                == 4, 120)
            assert process.poll() is None, "the operator exited"
            assert not _crashes(log), "\n".join(_crashes(log))  # before it is asked to stop
    finally:
        client.close()

    dead = _dead_letters(ws)
    wrong = []
    for partition_key, (topic, reason) in expected.items():
        dlq, properties = dead[partition_key]
        wanted = events.SCALE_DLQ if topic == events.SCALE_SIGNALS else events.RECONCILE_DLQ
        if dlq != wanted or reason not in properties.get("reason", ""):
            wrong.append(f"{partition_key}: {dlq} {properties}")
        if not properties.get("origin-topic", "").endswith(topic):
            wrong.append(f"{partition_key}: origin {properties.get('origin-topic')}")
    assert not wrong, "\n".join(wrong)
    assert set(dead) == set(expected), "only the malformed messages are dead-lettered"

    # One log line per message, naming its reason.
    logged = {entry.get("message_id"): entry for entry in _log_lines(log)
              if "dead-lettered" in str(entry.get("msg"))}
    reasons = [str(e.get("reason") or e.get("error") or "") for e in logged.values()]
    assert len(logged) == len(expected), sorted(str(k) for k in logged)
    for _partition_key, (_topic, reason) in expected.items():
        assert any(reason in r for r in reasons), reason
    report("malformed messages", {
        "messages": len(expected),
        "by_topic": dict(Counter(topic for topic, _reason in expected.values())),
        "dead_lettered_with_reason": len(expected), "crashes": 0})


def test_the_watcher_starts_and_resumes_with_garbage_at_the_end_of_its_topic(
        stack: devstack.StackInfo, settings: Settings, namespace: str, tmp_path: Path) -> None:
    ws = watch_settings(settings, namespace)
    pulsar_client.PulsarAdmin(ws).ensure_namespace(ws.system_namespace)
    _config_map(stack, namespace)
    log = tmp_path / "operator.log"
    with running_operator(ws, log, "watch,reconcile"):
        _apply(stack, namespace, base("Function", "before"))
        wait_for("Function before Ready", lambda: _is_ready(stack, namespace, "before"), 120)
        assert not _crashes(log), "\n".join(_crashes(log))

    endings: list[list[tuple[bytes, dict[str, str]]]] = [
        # garbage with no properties, then garbage claiming a checkpoint that is not JSON
        [(b"\xde\xad\xbe\xef", {}), (b"\x00garbage", {"checkpoint": "{not json"})],
        # a checkpoint that is JSON but no resourceVersion, then garbage with no properties
        [(b"\x01\x02", {"checkpoint": json.dumps({"Function": "abc", "Pod": ["x"]})}),
         (b"", {})],
    ]
    for round_, ending in enumerate(endings):
        client = pulsar_client.connect(ws)
        try:
            producer = client.create_producer(ws.topic(events.RESOURCE_EVENTS),
                                              batching_enabled=False)
            for payload, properties in ending:
                producer.send(payload, properties=properties, partition_key="garbage")
        finally:
            client.close()
        published_before = len(read_messages(ws, events.RESOURCE_EVENTS))
        name = f"after-{round_}"
        with running_operator(ws, log, "watch,reconcile"):
            _apply(stack, namespace, base("Function", name))
            wait_for(f"Function {name} Ready", lambda n=name: _is_ready(  # type: ignore[misc]
                stack, namespace, n), 120)
            assert not _crashes(log), "\n".join(_crashes(log))  # before it is asked to stop

        since_restart = [event for message, event in
                         _decodable(read_messages(ws, events.RESOURCE_EVENTS)[published_before:])]
        assert any(e.name == name and e.type == EventType.ADDED for e in since_restart)
        # It resumed from the last checkpoint of its own, not from nothing: the Function that
        # did not change while it was down is not published again.
        assert not [e for e in since_restart if e.name == "before"], \
            [(e.type, e.resource_version) for e in since_restart if e.name == "before"]

    warnings = [e for e in _log_lines(log)
                if "not a change event of this watcher" in str(e.get("msg"))]
    assert len(warnings) == len(endings)
    assert len(read_topic(ws, events.POD_EVENTS)) > 0  # the pod stream ran too
    report("watcher restarted on garbage", {"restarts": len(endings),
                                            "garbage_messages": sum(map(len, endings)),
                                            "resumed_from_own_checkpoint": len(endings)})


def _decodable(messages: list[Any]) -> list[tuple[Any, ChangeEvent]]:
    out = []
    for message in messages:
        try:
            out.append((message, events.decode(message.data())))
        except Exception:  # the garbage this test put there
            continue
    return out
