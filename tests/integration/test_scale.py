"""scale against the real stack: a real backlog on a real topic, the sampler and scaler in this
process (watcher and reconciler too), replicas written through the real /scale subresource.

The Functions' pods are KWOK's fake pods: they never consume, so the backlog is whatever the
test produces and drains itself with a consumer on the function's subscription."""

from __future__ import annotations

import json
import time
from typing import Any

import pulsar
from kubernetes import client

from fmesh_events import devstack, events, kube_client, pulsar_client
from fmesh_events.settings import Settings
from tests.examples import EXAMPLES, documents, example
from tests.integration.watch_helpers import (
    InProcessWatcher,
    drain,
    produce,
    read_messages,
    reconciler,
    sampler_only,
    scale_decisions,
    scale_signal,
    scaler_only,
    wait_for,
    watch_settings,
)

SUBSCRIPTION = "scale-test-sub"


def _function(settings: Settings, name: str, topic: str, **spec: Any) -> list[dict[str, Any]]:
    """The example Function and its ConfigMap, which names the stack's Pulsar: the sampler
    reads the backlog on the cluster the ConfigMap names (here, the operator's own)."""
    config = next(d for d in documents(EXAMPLES / "function.yaml") if d["kind"] == "ConfigMap")
    config["metadata"].pop("namespace", None)
    config["data"] = {"webServiceURL": settings.pulsar_admin_url,
                      "brokerServiceURL": settings.pulsar_service_url}
    function = example("function.yaml", "Function")
    function["metadata"] = {"name": name}
    function["spec"].update(input={"topics": [topic], "typeClassName": "java.lang.String"},
                            subscriptionName=SUBSCRIPTION, replicas=1, **spec)
    function["spec"].pop("output", None)
    return [config, function]


def _replicas(stack: devstack.StackInfo, namespace: str, name: str) -> int:
    got = json.loads(stack.kubectl("get", "function", name, "-n", namespace, "-o", "json").stdout)
    return int(got["spec"].get("replicas", 1))


def _subscribe(settings: Settings, topic: str) -> None:
    """The subscription a running function would have made (KWOK's pods never run one)."""
    client = pulsar_client.connect(settings)
    client.subscribe(topic, SUBSCRIPTION, initial_position=pulsar.InitialPosition.Earliest).close()
    client.close()


def _apply(stack: devstack.StackInfo, namespace: str, docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))


def test_backlog_burst_scales_up_within_one_sample_and_drains_down(
        stack: devstack.StackInfo, settings: Settings, namespace: str, topic_prefix: str) -> None:
    ws = watch_settings(settings, namespace)
    topic = topic_prefix + "in"
    _subscribe(ws, topic)
    autoscaling = {"backlog": {"targetPerReplica": 100},
                   "behavior": {"scaleDown": {"stabilizationWindowSeconds": 5}}}
    with InProcessWatcher(ws), reconciler(ws), scaler_only(ws), sampler_only(ws):
        _apply(stack, namespace, _function(ws, "burst", topic, minReplicas=1, maxReplicas=10,
                                           autoscaling=autoscaling))
        wait_for("a first decision (tick)", lambda: bool(scale_decisions(ws, "burst")), 60)
        time.sleep(2)  # the probe is armed once the tick has listed the Function
        burst_at = time.time()
        produce(ws, topic, 450)
        took = wait_for("scaled to 5", lambda: _replicas(stack, namespace, "burst") == 5, 30)
        up = next(d for d in scale_decisions(ws, "burst") if d["applied"] and d["desiredReplicas"] == 5)
        decided_after = up["time"].timestamp() - burst_at
        print(f"burst of 450 -> 5 replicas: decision {decided_after:.2f}s after the burst began, "
              f"seen by kubectl after {took:.1f}s, trigger {up['trigger']}")
        assert decided_after < 15, "the scale-up waited for a tick instead of the burst probe"
        assert up["trigger"] == "burst"
        assert "backlog 450" in up["reason"] and "-> 5" in up["reason"]
        cr = json.loads(stack.kubectl("get", "function", "burst", "-n", namespace,
                                      "-o", "json").stdout)
        assert cr["status"]["autoscaling"]["writer"] == "fmesh-events scaler"
        assert drain(ws, topic, SUBSCRIPTION) == 450
        wait_for("scaled back down to minReplicas", lambda: _replicas(stack, namespace, "burst") == 1,
                 60)
        # Autoscaling off (no maxReplicas): its status goes, and kubectl scale is the writer.
        _config, function = _function(ws, "burst", topic)
        for field in ("replicas", "minReplicas", "maxReplicas", "autoscaling"):
            function["spec"].pop(field, None)
        stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(function))
        wait_for("status.autoscaling removed", lambda: "autoscaling" not in json.loads(
            stack.kubectl("get", "function", "burst", "-n", namespace, "-o", "json").stdout)
            .get("status", {}), 30)
        stack.kubectl("scale", "function", "burst", "-n", namespace, "--replicas=2")
        produce(ws, topic, 900)  # would mean 9 replicas if the scaler still wrote
        wait_for("StatefulSet follows kubectl scale", lambda: json.loads(stack.kubectl(
            "get", "statefulset", "burst-function", "-n", namespace, "-o", "json").stdout)
            ["spec"]["replicas"] == 2, 30)
        time.sleep(3)
        assert _replicas(stack, namespace, "burst") == 2
    decisions = scale_decisions(ws, "burst")
    assert min(d["desiredReplicas"] for d in decisions) >= 1, "went below minReplicas"
    down = next(d for d in decisions if d["applied"] and d["action"] == "DOWN")
    assert down["time"].timestamp() - up["time"].timestamp() >= 5, "the down window was not kept"


def test_scale_to_zero_and_back_on_activation(stack: devstack.StackInfo, settings: Settings,
                                              namespace: str, topic_prefix: str) -> None:
    ws = watch_settings(settings, namespace)
    topic = topic_prefix + "in"
    _subscribe(ws, topic)
    autoscaling = {"backlog": {"targetPerReplica": 100, "activationThreshold": 10},
                   "behavior": {"scaleDown": {"stabilizationWindowSeconds": 3}}}
    with InProcessWatcher(ws), reconciler(ws), scaler_only(ws), sampler_only(ws, interval=3):
        _apply(stack, namespace, _function(ws, "idle", topic, minReplicas=0, maxReplicas=5,
                                           autoscaling=autoscaling))
        wait_for("scaled to zero", lambda: _replicas(stack, namespace, "idle") == 0, 60)
        produce(ws, topic, 5)  # at or below the activation threshold: stays at zero
        time.sleep(7)
        assert _replicas(stack, namespace, "idle") == 0
        produce(ws, topic, 20)  # 25 > 10: activates
        wait_for("back from zero", lambda: _replicas(stack, namespace, "idle") == 1, 30)
    reasons = [d["reason"] for d in scale_decisions(ws, "idle")]
    assert any("activation" in r for r in reasons), reasons


def test_restarted_scaler_keeps_the_window(stack: devstack.StackInfo, settings: Settings,
                                           namespace: str, topic_prefix: str) -> None:
    ws = watch_settings(settings, namespace)
    topic = topic_prefix + "in"
    _subscribe(ws, topic)
    autoscaling = {"backlog": {"targetPerReplica": 100},
                   "behavior": {"scaleDown": {"stabilizationWindowSeconds": 120}}}
    with InProcessWatcher(ws), reconciler(ws), sampler_only(ws, interval=2):
        with scaler_only(ws, "scaler-a"):
            _apply(stack, namespace, _function(ws, "steady", topic, minReplicas=1, maxReplicas=10,
                                               autoscaling=autoscaling))
            produce(ws, topic, 400)
            wait_for("scaled to 4", lambda: _replicas(stack, namespace, "steady") == 4, 60)
            drain(ws, topic, SUBSCRIPTION)
            wait_for("a hold inside the window", lambda: any(
                d["backlog"] == 0 for d in scale_decisions(ws, "steady")), 30)
        # scaler-a is gone mid-window; scaler-b rebuilds the window from scale-decisions
        with scaler_only(ws, "scaler-b"):
            wait_for("scaler-b decided twice", lambda: sum(
                d["scaler"] == "scaler-b" for d in scale_decisions(ws, "steady")) >= 2, 30)
            assert _replicas(stack, namespace, "steady") == 4, "scaler-b forgot the window"
    held = [d for d in scale_decisions(ws, "steady") if d["scaler"] == "scaler-b"]
    assert all(d["desiredReplicas"] == 4 and not d["applied"] for d in held)
    assert all("window" in d["reason"] for d in held), [d["reason"] for d in held]


def test_a_garbage_signal_goes_to_the_dead_letter_topic_and_the_scaler_goes_on(
        settings: Settings, namespace: str, stack: devstack.StackInfo) -> None:
    ws = watch_settings(settings, namespace)
    pulsar_client.PulsarAdmin(ws).ensure_namespace(ws.system_namespace)
    with scaler_only(ws) as scaler:
        client = pulsar_client.connect(ws)
        try:
            producer = client.create_producer(ws.topic(events.SCALE_SIGNALS))
            producer.send(b"\xff\x00 not avro", partition_key="Function/x/garbage")
            producer.send(b"\x01\x02", partition_key="Function/x/short")
        finally:
            client.close()
        wait_for("both dead-lettered", lambda: len(read_messages(ws, events.SCALE_DLQ)) == 2, 30)
        assert scaler.handled == 0
    reasons = [m.properties()["reason"] for m in read_messages(ws, events.SCALE_DLQ)]
    assert all(reasons), reasons


def test_a_write_between_read_and_scale_is_decided_again_not_dropped(
        settings: Settings, namespace: str, stack: devstack.StackInfo, topic_prefix: str) -> None:
    """The reconciler writes status while the scaler decides: its /scale write, conditional on
    the version it read, is refused with 409 by the real API server. The scaler reads again and
    decides again; the signal is not lost (before, one signal lost this way stayed lost until the
    next tick), and status.autoscaling is written despite a write right after /scale too."""
    ws = watch_settings(settings, namespace)
    pulsar_client.PulsarAdmin(ws).ensure_namespace(ws.system_namespace)
    _apply(stack, namespace, _function(ws, "raced", topic_prefix + "in", minReplicas=1, maxReplicas=5,
                                       autoscaling={"backlog": {"targetPerReplica": 10}}))
    other = client.CustomObjectsApi(kube_client.api_client(ws))
    writes = 0

    def concurrent_status_write() -> None:  # what a reconciler does, on the real API server
        nonlocal writes
        writes += 1
        other.patch_namespaced_custom_object_status(
            "compute.functionmesh.io", "v1alpha1", namespace, "functions", "raced",
            {"status": {"lastReconcileMessageId": f"concurrent-{writes}"}})

    with scaler_only(ws) as scaler:
        read, scale = (scaler.custom.get_namespaced_custom_object,
                       scaler.custom.patch_namespaced_custom_object_scale)

        def read_then_race(*args: Any, **kwargs: Any) -> Any:
            got = read(*args, **kwargs)
            if writes < 2:  # the first two reads are stale by the time /scale is written
                concurrent_status_write()
            return got

        def scale_then_race(*args: Any, **kwargs: Any) -> Any:
            got = scale(*args, **kwargs)
            concurrent_status_write()  # and the version /scale answered is stale for status
            return got

        scaler.custom.get_namespaced_custom_object = read_then_race
        scaler.custom.patch_namespaced_custom_object_scale = scale_then_race
        client_ = pulsar_client.connect(ws)
        try:
            key = events.resource_key("Function", namespace, "raced")
            client_.create_producer(ws.topic(events.SCALE_SIGNALS)).send(
                scale_signal(key, backlog=40), partition_key=key)
        finally:
            client_.close()
        wait_for("one decision", lambda: bool(scale_decisions(ws, "raced")), 30)
    decision, = scale_decisions(ws, "raced")
    assert decision["applied"] and decision["error"] is None, decision
    assert scaler.conflicts == 2, scaler.conflicts
    assert decision["desiredReplicas"] == 4 and _replicas(stack, namespace, "raced") == 4
    cr = json.loads(stack.kubectl("get", "function", "raced", "-n", namespace, "-o", "json").stdout)
    assert cr["status"]["autoscaling"]["desiredReplicas"] == 4, cr["status"]
    assert cr["status"]["lastReconcileMessageId"] == "concurrent-3"
