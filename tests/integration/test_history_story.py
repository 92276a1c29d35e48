"""history and replay against the real stack: a Function is created, updated, scaled by a
backlog burst, broken, fixed and deleted; `fmesh-events history` (the real CLI, reading only
Pulsar) must tell that story in order, in every output format, and never show a secret."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from typing import Any

from fmesh_events import devstack, events
from fmesh_events.settings import Settings
from tests.examples import EXAMPLES, documents, example
from tests.integration.watch_helpers import (
    InProcessWatcher,
    read_messages,
    reconciler,
    sampler_only,
    scaler_only,
    wait_for,
    watch_settings,
)
from tests.secret_values import new_secret

SUBSCRIPTION = "history-sub"


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FMESH_PULSAR_SERVICE_URL": settings.pulsar_service_url,
           "FMESH_PULSAR_ADMIN_URL": settings.pulsar_admin_url,
           "FMESH_SYSTEM_NAMESPACE": settings.system_namespace}
    env.pop("FMESH_KUBECONFIG", None)  # history needs no Kubernetes access
    return subprocess.run([sys.executable, "-m", "fmesh_events", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def _apply(stack: devstack.StackInfo, namespace: str, doc: dict[str, Any]) -> None:
    stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))


def _ready(stack: devstack.StackInfo, namespace: str, name: str) -> bool:
    got = stack.kubectl("get", "function", name, "-n", namespace, "-o", "json", check=False)
    if got.returncode:
        return False
    conditions = (json.loads(got.stdout).get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_history_tells_the_story_in_order_and_never_shows_a_secret(
        stack: devstack.StackInfo, settings: Settings, namespace: str, topic_prefix: str,
        tmp_path: Any) -> None:
    import pulsar

    from fmesh_events import pulsar_client

    ws = watch_settings(settings, namespace)
    topic = topic_prefix + "in"
    first_secret, second_secret = new_secret("history-first"), new_secret("history-second")
    client = pulsar_client.connect(ws)
    client.subscribe(topic, SUBSCRIPTION, initial_position=pulsar.InitialPosition.Earliest).close()
    config = next(d for d in documents(EXAMPLES / "function.yaml") if d["kind"] == "ConfigMap")
    config["metadata"].pop("namespace", None)
    # The stack's Pulsar: the sampler reads the backlog on the cluster the ConfigMap names.
    config["data"] = {"webServiceURL": ws.pulsar_admin_url,
                      "brokerServiceURL": ws.pulsar_service_url}
    function = example("function.yaml", "Function")
    function["metadata"] = {"name": "story"}
    function["spec"].update(input={"topics": [topic], "typeClassName": "java.lang.String"},
                            subscriptionName=SUBSCRIPTION, replicas=1, minReplicas=1,
                            maxReplicas=6, autoscaling={"backlog": {"targetPerReplica": 100}},
                            funcConfig={"greeting": "hello", "password": first_secret})
    function["spec"].pop("output", None)
    with InProcessWatcher(ws), reconciler(ws, max_attempts=2, retry_base=0.2), \
            scaler_only(ws), sampler_only(ws, interval=2):
        _apply(stack, namespace, config)
        _apply(stack, namespace, function)                                      # create
        wait_for("Ready", lambda: _ready(stack, namespace, "story"), 60)
        function["spec"]["funcConfig"] = {"greeting": "hi", "password": second_secret}
        _apply(stack, namespace, function)                                      # update
        producer = client.create_producer(topic, batching_enabled=False)
        for i in range(300):
            producer.send_async(f"m{i}".encode(), None)
        producer.flush()
        wait_for("scaled by the backlog", lambda: json.loads(stack.kubectl(         # scale
            "get", "function", "story", "-n", namespace, "-o", "json").stdout)["spec"]
            .get("replicas") == 3, 60)
        function["spec"]["replicas"] = 3
        function["spec"]["pulsar"] = {"pulsarConfig": "no-such-config"}
        _apply(stack, namespace, function)                                      # failure
        wait_for("dead-lettered", lambda: any(
            events.decode_record(events.PARSED_RECONCILE_RECORD, m.data())["outcome"] ==
            "DEAD_LETTERED" for m in read_messages(ws, events.RECONCILE_LOG)), 60)
        stack.kubectl("delete", "function", "story", "-n", namespace)           # delete
        wait_for("gone", lambda: stack.kubectl("get", "function", "story", "-n", namespace,
                                               check=False).returncode != 0, 60)
    client.close()
    key = f"function/{namespace}/story"

    table = cli(ws, "history", key)
    assert table.returncode == 0, table.stderr
    as_json = cli(ws, "history", key, "-o", "json")
    entries = json.loads(as_json.stdout)
    whats = [e["what"] for e in entries]
    story = ["CREATED", "RECONCILED", "UPDATED", "SCALE_UP", "DEAD_LETTERED", "DELETED"]
    positions = [whats.index(w) for w in story]
    assert positions == sorted(positions), whats
    assert "FAILED" in whats and "GONE" in whats
    update = next(e for e in entries if e["what"] == "UPDATED")
    changes = {c["path"]: c for c in update["details"]["changes"]}
    assert changes["spec.funcConfig.greeting"]["before"] == "hello"
    assert changes["spec.funcConfig.greeting"]["after"] == "hi"
    assert changes["spec.funcConfig.password"]["after"] == "(redacted)"
    assert "spec.funcConfig.greeting: hello -> hi" in table.stdout
    scale_up = next(e for e in entries if e["what"] == "SCALE_UP")
    assert "backlog 300" in scale_up["summary"] and "-> 3" in scale_up["summary"]
    failed = next(e for e in entries if e["what"] == "DEAD_LETTERED")
    assert "no-such-config" in failed["summary"]
    times = [e["time"] for e in entries if e["source"] in ("change", "reconcile")]
    assert times[0] <= times[-1]

    jsonl = cli(ws, "history", key, "-o", "jsonl")
    summary = cli(ws, "history", "--summary", "--namespace", namespace)
    page = tmp_path / "story.html"
    html = cli(ws, "history", key, "--html", str(page))
    assert html.returncode == 0, html.stderr
    assert f"Function/{namespace}/story" in summary.stdout
    outputs = [table.stdout, as_json.stdout, jsonl.stdout, summary.stdout, page.read_text()]
    for text in outputs:
        assert first_secret not in text and second_secret not in text
        assert "redacted:" not in text  # not even the hash of a secret
    raw = b"".join(m.data() for name in ("resource-events", "pod-events", "reconcile-log",
                                          "scale-decisions") for m in read_messages(ws, name))
    assert first_secret.encode() not in raw and second_secret.encode() not in raw


def test_history_bad_input_is_a_clear_message_and_a_non_zero_exit(settings: Settings,
                                                                  stack: devstack.StackInfo) -> None:
    ws = settings.model_copy(update={"system_namespace": f"public/nothing-{secrets.token_hex(3)}"})
    cases = {
        ("history", "function/ns"): "KIND/NAMESPACE/NAME",
        ("history", "pod/ns/x"): "unknown kind",
        ("history", "--since", "2999-01-01T00:00:00Z"): "in the future",
        ("history", "--since", "yesterday"): "neither a duration",
        ("history", "--type", "audit"): "unknown --type",
        ("history", "function/ns/x"): "does not exist",
        ("replay", "--since", "1h", "function/ns/x"): "does not exist",
    }
    for args, message in cases.items():
        got = cli(ws, *args)
        assert got.returncode != 0, args
        assert message in got.stderr, (args, got.stderr)
        assert "Traceback" not in got.stderr, (args, got.stderr)


def test_replay_on_a_healthy_cluster_writes_nothing(stack: devstack.StackInfo, settings: Settings,
                                                   namespace: str) -> None:
    ws = watch_settings(settings, namespace)
    config = next(d for d in documents(EXAMPLES / "function.yaml") if d["kind"] == "ConfigMap")
    config["metadata"].pop("namespace", None)
    function = example("function.yaml", "Function")
    function["metadata"] = {"name": "healthy"}
    with InProcessWatcher(ws), reconciler(ws):
        _apply(stack, namespace, config)
        _apply(stack, namespace, function)
        wait_for("Ready", lambda: _ready(stack, namespace, "healthy"), 60)
        unknown = cli(ws, "replay", "--since", "10m", f"function/{namespace}/nope")
        assert unknown.returncode != 0 and "no change of" in unknown.stderr
        no_history = cli(ws, "history", f"function/{namespace}/nope")
        assert no_history.returncode == 1 and "no history for" in no_history.stderr
        got = cli(ws, "replay", "--since", "10m", "-o", "json")
    assert got.returncode == 0, got.stderr
    results = json.loads(got.stdout)
    assert [r["key"] for r in results] == [f"Function/{namespace}/healthy"]
    assert results[0]["outcome"] == "OK" and results[0]["writes"] == []
    assert "0 write(s) (the cluster already matched)" in got.stderr
