"""reconcile against the real stack: watcher + reconciler in this process, each test in its
own Kubernetes namespace and Pulsar namespace."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pulsar
import pytest

from fmesh_events import devstack, events, pulsar_client
from fmesh_events.reconcile.loop import KNOWN_CONFLICTS
from fmesh_events.settings import Settings
from tests.examples import EXAMPLES, documents, example
from tests.integration.watch_helpers import (
    InProcessWatcher,
    read_messages,
    read_topic,
    reconciler,
    wait_for,
    watch_settings,
)


def _get(stack: devstack.StackInfo, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    got = stack.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(got.stdout) if got.returncode == 0 else None


def _condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def _read(settings: Settings, topic: str) -> list[dict[str, Any]]:
    return [events.decode_record(events.PARSED_RECONCILE_RECORD, message.data())
            for message in read_messages(settings, topic)]


def test_sample_mesh_reaches_ready_and_replay_writes_nothing(stack: devstack.StackInfo,
                                                             settings: Settings,
                                                             namespace: str) -> None:
    ws = watch_settings(settings, namespace)
    with InProcessWatcher(ws), reconciler(ws):
        stack.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "functionmesh.yaml"))
        # The sample's sink names ConfigMap "test-sink", which the sample does not create:
        # the sink reports it and retries.
        wait_for("sink reports the missing ConfigMap", lambda: "test-sink" in _condition(
            _get(stack, "sink", "functionmesh-sample-sink-sample", namespace), "Ready"
        ).get("message", ""), 60)
        config = next(d for d in documents(EXAMPLES / "functionmesh.yaml")
                      if d["kind"] == "ConfigMap")
        config["metadata"]["name"] = "test-sink"
        stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(config))
        wait_for("mesh Ready", lambda: _condition(
            _get(stack, "functionmesh", "functionmesh-sample", namespace), "Ready"
        ).get("status") == "True", 90)

    function_sts = _get(stack, "statefulset", "functionmesh-sample-ex1-function", namespace)
    assert function_sts is not None
    container = function_sts["spec"]["template"]["spec"]["containers"][0]
    command = " ".join(container.get("command", []) + container.get("args", []))
    assert "org.apache.pulsar.functions.instance.JavaInstanceMain" in command
    assert "ExclamationFunction" in command and "functionmesh-input-topic" in command
    labels = function_sts["metadata"]["labels"]
    assert labels["compute.functionmesh.io/name"] == "functionmesh-sample-ex1"
    assert _get(stack, "service", "functionmesh-sample-ex1-function-headless", namespace) is not None
    pods = json.loads(stack.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    assert len(pods) == 2 and all(p["status"]["phase"] == "Running" for p in pods)
    function = _get(stack, "function", "functionmesh-sample-ex1", namespace)
    assert function is not None and function["status"]["readyReplicas"] == 1
    assert function["status"]["lastReconcileMessageId"]

    # Replay every message from the start on a fresh subscription: nothing moves.
    def versions() -> dict[str, str]:
        out = {}
        for kind in ("functionmesh", "function", "sink", "statefulset", "service"):
            items = json.loads(stack.kubectl("get", kind, "-n", namespace, "-o", "json").stdout)
            for item in items["items"]:
                out[f"{kind}/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
        return out

    before = versions()
    log_before = len(_read(ws, events.RECONCILE_LOG))
    with reconciler(ws, subscription="replay") as replay:
        total = sum(1 for _ in _read_all_triggers(ws))
        wait_for("replayed", lambda: replay.handled >= total, 60)
    assert versions() == before
    replayed = _read(ws, events.RECONCILE_LOG)[log_before:]
    assert replayed and all(r["outcome"] == "OK" and not r["statusChanged"] and
                            {c["action"] for c in r["children"]} <= {"UNCHANGED"}
                            for r in replayed)


def _read_all_triggers(settings: Settings) -> Iterator[bytes]:
    for topic in (events.RESOURCE_EVENTS, events.POD_EVENTS, events.RECONCILE_REQUESTS):
        yield from (message.data() for message in read_messages(settings, topic))


def test_updates_scale_and_removed_entries_reach_the_children(stack: devstack.StackInfo,
                                                              settings: Settings,
                                                              namespace: str) -> None:
    ws = watch_settings(settings, namespace)
    mesh = example("functionmesh-pipeline.yaml", "FunctionMesh")
    with InProcessWatcher(ws), reconciler(ws):
        for doc in documents(EXAMPLES / "functionmesh-pipeline.yaml"):
            doc["metadata"].pop("namespace", None)
            stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))
        mesh_name = mesh["metadata"]["name"]
        entries = [(kind, e["name"]) for kind, field in (("function", "functions"),
                                                          ("source", "sources"), ("sink", "sinks"))
                   for e in mesh["spec"].get(field, [])]
        assert len(entries) >= 2
        for kind, entry in entries:
            def created(k: str = kind, e: str = entry) -> bool:
                return _get(stack, "statefulset", f"{mesh_name}-{e}-{k}", namespace) is not None

            wait_for(f"{kind} {entry} created", created, 60)
        kind, entry = entries[0]
        child = f"{mesh_name}-{entry}"
        before = _get(stack, "statefulset", f"{child}-{kind}", namespace)
        assert before is not None
        old_hash = before["spec"]["template"]["metadata"]["annotations"]
        # Scale the child: replicas change, the pod template does not.
        stack.kubectl("scale", kind, child, "-n", namespace, "--replicas=3")
        wait_for("StatefulSet scaled", lambda: (_get(stack, "statefulset", f"{child}-{kind}",
                                                     namespace) or {})["spec"]["replicas"] == 3)
        scaled = _get(stack, "statefulset", f"{child}-{kind}", namespace)
        assert scaled is not None
        assert scaled["spec"]["template"]["metadata"]["annotations"] == old_hash
        # Remove the last entry from the mesh: its child goes.
        last_kind, last_entry = entries[-1]
        field = {"function": "functions", "source": "sources", "sink": "sinks"}[last_kind]
        mesh["spec"][field] = [e for e in mesh["spec"][field] if e["name"] != last_entry]
        if not mesh["spec"][field]:
            del mesh["spec"][field]
        stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(mesh))
        wait_for("removed entry deleted", lambda: _get(
            stack, last_kind, f"{mesh_name}-{last_entry}", namespace) is None, 60)
        stack.kubectl("delete", "functionmesh", mesh_name, "-n", namespace)
        wait_for("children follow the mesh", lambda: _get(
            stack, kind, child, namespace) is None, 60)


def test_failure_is_retried_then_dead_lettered_with_a_readable_condition(
        stack: devstack.StackInfo, settings: Settings, namespace: str) -> None:
    ws = watch_settings(settings, namespace)
    broken = example("function.yaml", "Function")
    broken["metadata"]["name"] = "broken"
    broken["spec"]["pulsar"]["pulsarConfig"] = "no-such-config"
    healthy = example("function.yaml", "Function")
    with InProcessWatcher(ws), reconciler(ws, max_attempts=3, retry_base=0.3):
        for doc in documents(EXAMPLES / "function.yaml"):
            doc["metadata"].pop("namespace", None)
            stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))
        stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(broken))
        wait_for("broken gave up", lambda: _condition(_get(stack, "function", "broken", namespace),
                                                      "Ready").get("reason") == "ReconcileGaveUp",
                 60)
        wait_for("healthy Ready", lambda: _condition(_get(
            stack, "function", healthy["metadata"]["name"], namespace), "Ready"
        ).get("status") == "True", 60)
    message = _condition(_get(stack, "function", "broken", namespace), "Ready")["message"]
    assert "no-such-config" in message and "spec.pulsar.pulsarConfig" in message
    assert "Gave up after 3 attempts" in message
    records = [r for r in _read(ws, events.RECONCILE_LOG) if r["key"].endswith("/broken")]
    assert [r["outcome"] for r in records][-3:] == ["FAILED", "FAILED", "DEAD_LETTERED"]
    events_out = stack.kubectl("get", "events", "-n", namespace,
                               "--field-selector", "involvedObject.name=broken").stdout
    assert "ReconcileGaveUp" in events_out
    client = pulsar_client.connect(ws)
    try:
        reader = client.create_reader(ws.topic(events.RECONCILE_DLQ), pulsar.MessageId.earliest)
        assert reader.has_message_available()
        assert "no-such-config" in reader.read_next(5000).properties()["reason"]
    finally:
        client.close()


def test_three_reconcilers_share_the_work_and_survive_a_kill(stack: devstack.StackInfo,
                                                             settings: Settings, namespace: str,
                                                             tmp_path: Any) -> None:
    import itertools
    import signal

    from tests.integration.watch_helpers import spawn_watcher

    ws = watch_settings(settings, namespace)
    config = next(d for d in documents(EXAMPLES / "function.yaml") if d["kind"] == "ConfigMap")
    config["metadata"].pop("namespace", None)
    stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(config))
    workers = [spawn_watcher(ws, tmp_path / f"r{i}.log", components="reconcile")
               for i in range(3)]
    names = [f"scale-{i}" for i in range(60)]
    admin = pulsar_client.PulsarAdmin(ws)

    def consumers_on_every_topic() -> bool:
        # The operator's replicas are up before the load comes, as in a Deployment.
        counts = []
        for topic in (events.RESOURCE_EVENTS, events.POD_EVENTS, events.RECONCILE_REQUESTS):
            path = "/admin/v2/persistent/" + ws.topic(topic).split("://", 1)[1] + "/stats"
            stats = admin.request("GET", path, ok=(200, 404)) or {}
            subscription = (stats.get("subscriptions") or {}).get("reconcile") or {}
            counts.append(len(subscription.get("consumers") or []))
        return counts == [3, 3, 3]
    try:
        wait_for("3 reconcilers subscribed to all three topics", consumers_on_every_topic, 60)
        with InProcessWatcher(ws):
            for i, name in enumerate(names):
                body = example("function.yaml", "Function")
                body["metadata"]["name"] = name
                stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
                if i == 20:
                    workers[0].send_signal(signal.SIGKILL)
                    workers[0].wait()

            def all_ready() -> bool:
                items = json.loads(stack.kubectl("get", "functions", "-n", namespace,
                                                 "-o", "json").stdout)["items"]
                return len(items) == len(names) and all(
                    _condition(item, "Ready").get("status") == "True" for item in items)
            try:
                took = wait_for("all 60 Functions Ready", all_ready, 180)
            except AssertionError:
                items = json.loads(stack.kubectl("get", "functions", "-n", namespace,
                                                 "-o", "json").stdout)["items"]
                stuck = [(i["metadata"]["name"], _condition(i, "Ready")) for i in items
                         if _condition(i, "Ready").get("status") != "True"]
                raise AssertionError(f"{len(items)} Functions, not Ready: {stuck[:3]}") from None
            print(f"60 Functions Ready {took:.1f}s after the last apply, one of 3 reconcilers killed")
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    records = [r for r in _read(ws, events.RECONCILE_LOG) if r["key"].split("/")[2] in names]
    assert len({r["reconciler"] for r in records}) >= 2, "the work was not shared"
    by_key: dict[str, list[tuple[float, float, str]]] = {}
    for r in records:
        end = r["time"].timestamp() * 1000 if hasattr(r["time"], "timestamp") else r["time"]
        by_key.setdefault(r["key"], []).append((end - r["durationMs"], end, r["reconciler"]))
    overlaps = [f"{key} by {who1} and {who2}"
                for key, spans in by_key.items()
                for (_s1, e1, who1), (s2, _e2, who2) in itertools.pairwise(sorted(spans))
                if who1 != who2 and s2 < e1]
    assert not overlaps, f"key reconciled by two processes at once: {overlaps[:3]}"


def _cleanup_function(name: str, namespace: str, admin_url: str, topic: str) -> list[dict[str, Any]]:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-pulsar"},
              "data": {"webServiceURL": admin_url, "brokerServiceURL": "pulsar://unused:6650"}}
    function = example("function.yaml", "Function")
    function["metadata"]["name"] = name
    function["spec"].update(cleanupSubscription=True, tenant="public", namespace="default",
                            input={"topics": [topic], "typeClassName": "java.lang.String"})
    function["spec"]["pulsar"] = {"pulsarConfig": f"{name}-pulsar"}
    function["spec"].pop("output", None)
    return [config, function]


def test_cleanup_subscription_deletes_the_input_subscription(stack: devstack.StackInfo,
                                                             settings: Settings, namespace: str,
                                                             topic_prefix: str) -> None:
    ws = watch_settings(settings, namespace)
    topic = topic_prefix + "in"
    subscription = "public/default/cleaner"
    client = pulsar_client.connect(ws)
    client.subscribe(topic, subscription).close()
    client.close()
    admin = pulsar_client.PulsarAdmin(ws)
    path = "/admin/v2/persistent/" + topic.split("://", 1)[1] + "/subscriptions"
    assert subscription in admin.request("GET", path)
    with InProcessWatcher(ws), reconciler(ws):
        for doc in _cleanup_function("cleaner", namespace, ws.pulsar_admin_url, topic):
            stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))
        wait_for("finalizer added", lambda: "cleanup.subscription.finalizer" in (
            (_get(stack, "function", "cleaner", namespace) or {}).get("metadata", {})
            .get("finalizers") or []), 30)
        stack.kubectl("delete", "function", "cleaner", "-n", namespace, "--wait=false")
        wait_for("Function gone", lambda: _get(stack, "function", "cleaner", namespace) is None, 60)
    assert subscription not in admin.request("GET", path)
    records = [r for r in _read(ws, events.RECONCILE_LOG) if r["key"].endswith("/cleaner")]
    assert any(c["kind"] == "Subscription" and c["action"] == "DELETED"
               for r in records for c in r["children"])


def test_unreachable_pulsar_never_keeps_a_cr_on_its_finalizer(stack: devstack.StackInfo,
                                                             settings: Settings, namespace: str,
                                                             topic_prefix: str) -> None:
    ws = watch_settings(settings, namespace)
    with InProcessWatcher(ws), reconciler(ws, retry_base=0.5, finalizer_timeout=3):
        for doc in _cleanup_function("stuck", namespace, "http://127.0.0.1:9",
                                     topic_prefix + "in"):
            stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))
        wait_for("finalizer added", lambda: "cleanup.subscription.finalizer" in (
            (_get(stack, "function", "stuck", namespace) or {}).get("metadata", {})
            .get("finalizers") or []), 30)
        stack.kubectl("delete", "function", "stuck", "-n", namespace, "--wait=false")
        took = wait_for("Function let go", lambda: _get(stack, "function", "stuck",
                                                        namespace) is None, 60)
        print(f"let go of the finalizer {took:.1f}s after delete (timeout 3s)")
    events_out = stack.kubectl("get", "events", "-n", namespace,
                               "--field-selector", "involvedObject.name=stuck").stdout
    assert "CleanupSkipped" in events_out


def test_config_change_rolls_pods_and_immutable_change_replaces_the_statefulset(
        stack: devstack.StackInfo, settings: Settings, namespace: str) -> None:
    ws = watch_settings(settings, namespace)
    docs = documents(EXAMPLES / "function.yaml")
    for doc in docs:
        doc["metadata"].pop("namespace", None)
    function = next(d for d in docs if d["kind"] == "Function")
    name = function["metadata"]["name"]
    sts_name = f"{name}-function"

    def template_hash() -> str:
        sts = _get(stack, "statefulset", sts_name, namespace) or {}
        annotations = sts.get("spec", {}).get("template", {}).get("metadata", {}).get(
            "annotations", {})
        return str(annotations.get("fmesh-events.io/pod-template-hash", ""))

    with InProcessWatcher(ws), reconciler(ws):
        for doc in docs:
            stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))
        wait_for("StatefulSet", lambda: template_hash() != "", 30)
        first = template_hash()
        stack.kubectl("patch", "function", name, "-n", namespace, "--type=merge",
                      "-p", '{"spec": {"funcConfig": {"greeting": "changed"}}}')
        wait_for("config change reaches the pod template", lambda: template_hash() not in
                 ("", first), 30)
        claim = {"metadata": {"name": "state"},
                 "spec": {"accessModes": ["ReadWriteOnce"],
                          "resources": {"requests": {"storage": "1Gi"}}}}
        stack.kubectl("patch", "function", name, "-n", namespace, "--type=merge",
                      "-p", json.dumps({"spec": {"volumeClaimTemplates": [claim]}}))
        wait_for("StatefulSet replaced with the claim template", lambda: [
            c["metadata"]["name"] for c in (_get(stack, "statefulset", sts_name, namespace) or {})
            .get("spec", {}).get("volumeClaimTemplates", [])] == ["state"], 60)
    records = [r for r in _read(ws, events.RECONCILE_LOG) if r["key"].endswith(f"/{name}")]
    actions = [c["action"] for r in records for c in r["children"] if c["kind"] == "StatefulSet"]
    assert "UPDATED" in actions and "REPLACED" in actions
    assert all(r["outcome"] == "OK" for r in records), [r["error"] for r in records]


def test_status_refresh_starts_from_the_known_cr_and_never_writes_over_a_newer_one(
        stack: devstack.StackInfo, settings: Settings, namespace: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A status refresh after this process's own writes reads nothing: the CR is the copy
    it wrote, the StatefulSet the event's copy, newer than the one it applied. An old
    StatefulSet event (a replay) never takes status back. Once another writer has moved the
    CR, the refresh's conditional write is refused and it is done again from a read, so what
    the other writer put in status is not overwritten."""
    ws = watch_settings(settings, namespace)
    docs = documents(EXAMPLES / "function.yaml")
    for doc in docs:
        doc["metadata"].pop("namespace", None)
    name = next(d for d in docs if d["kind"] == "Function")["metadata"]["name"]
    sts_name = f"{name}-function"

    def status() -> dict[str, Any]:
        return dict((_get(stack, "function", name, namespace) or {}).get("status") or {})

    def scaled_to(replicas: int) -> bool:
        now = status()
        return now.get("replicas") == replicas and now.get("readyReplicas") == replicas

    pulsar_client.PulsarAdmin(ws).ensure_namespace(ws.system_namespace)  # before the watcher
    with reconciler(ws) as worker:
        function_reads: list[str] = []
        statefulset_reads: list[str] = []
        read = worker.writer.get

        def counting_get(kind: str, ns: str, object_name: str) -> dict[str, Any] | None:
            if kind == "Function":
                function_reads.append(object_name)
            if kind == "StatefulSet":
                statefulset_reads.append(object_name)
            return read(kind, ns, object_name)

        monkeypatch.setattr(worker.writer, "get", counting_get)  # counts, then reads for real
        with InProcessWatcher(ws):
            for doc in docs:
                stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))
            wait_for("Ready", lambda: _condition(_get(stack, "function", name, namespace),
                                                 "Ready").get("status") == "True", 60)
            selector = status()["selector"]

            # The StatefulSet moves; nobody else wrote the CR: refreshes read nothing.
            function_reads.clear()
            statefulset_reads.clear()
            stack.kubectl("scale", "statefulset", sts_name, "-n", namespace, "--replicas=2")
            wait_for("status follows to 2", lambda: scaled_to(2), 60)
            assert function_reads == [] and statefulset_reads == []

            # Another writer moves the CR's status, as a second reconciler does when the key
            # was handed to it for a while and it reconciled a newer generation: the next
            # refresh must speak from what it wrote, not put the older observedGeneration back.
            conflicts = KNOWN_CONFLICTS._value.get()
            newer = int(status()["observedGeneration"]) + 5
            stack.kubectl("patch", "function", name, "-n", namespace, "--subresource=status",
                          "--type=merge", "-p", json.dumps({"status": {"observedGeneration": newer}}))
            stack.kubectl("scale", "statefulset", sts_name, "-n", namespace, "--replicas=3")
            wait_for("status follows to 3", lambda: scaled_to(3), 60)
            assert status()["observedGeneration"] == newer
            assert status()["selector"] == selector
            assert KNOWN_CONFLICTS._value.get() > conflicts
            assert function_reads, "the refused refresh was done again from a read"

        # An old StatefulSet event comes again (a replay, published once the watcher has
        # stopped: it alone may publish). Its copy, at one replica, is older than the
        # newest this process has seen: status stays at three, and nothing is read.
        function_reads.clear()
        statefulset_reads.clear()
        old = next(m for m, e in read_topic(ws, events.POD_EVENTS)
                   if e.kind == "StatefulSet" and e.name == sts_name and
                   (e.obj().get("status") or {}).get("readyReplicas") == 1)
        replayer = pulsar_client.connect(ws)
        try:
            producer = replayer.create_producer(ws.topic(events.POD_EVENTS))
            replayed = str(producer.send(old.data(), partition_key=old.partition_key()))
        finally:
            replayer.close()
        wait_for("the old event handled", lambda: any(
            r["triggerMessageId"] == replayed for r in _read(ws, events.RECONCILE_LOG)), 30)
        assert scaled_to(3), status()
        assert function_reads == [] and statefulset_reads == []
