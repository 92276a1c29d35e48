"""Functions that really run: the operator (`fmesh-events run`, its own process) materializes
Function Mesh YAML, the pods start on the stack's real node (kubelet, containerd, runc, CNI)
from the images the stack built, and Pulsar function instances process real messages.

Every test here uses `real_namespace` (no KWOK defaults); the rest of the suite sends its pods
to the KWOK nodes.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulsar
import pytest

from fmesh_events import devstack, events, pulsar_client
from fmesh_events.devstack import node
from fmesh_events.settings import Settings
from tests.integration.watch_helpers import Operator, read_messages, wait_for, watch_settings

EXCLAMATION = "org.apache.pulsar.functions.api.examples.ExclamationFunction"
SAMPLE_IMAGE = "streamnative/pulsar-functions-java-sample:4.0.7"
PULSAR_CONFIG = "dev-pulsar"
# JVMs on 2 cores: small requests so several fit, a limit that keeps the heap modest.
RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}


def pulsar_config_map() -> dict[str, Any]:
    """The ConfigMap a Function names in spec.pulsar.pulsarConfig: the dev Pulsar as pods see it."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": PULSAR_CONFIG},
            "data": node.in_cluster_urls()}


def java_function(name: str, inputs: list[str], output: str | None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "image": SAMPLE_IMAGE,
        "className": EXCLAMATION,
        "replicas": 1,
        "input": {"topics": inputs, "typeClassName": "java.lang.String"},
        "pulsar": {"pulsarConfig": PULSAR_CONFIG},
        "java": {"jar": "/pulsar/examples/api-examples.jar"},
        "resources": RESOURCES,
        "autoAck": True,
    }
    if output:
        body["output"] = {"topic": output, "typeClassName": "java.lang.String"}
    body.update(spec)
    return {"apiVersion": "compute.functionmesh.io/v1alpha1", "kind": "Function",
            "metadata": {"name": name}, "spec": body}


def apply(stack: devstack.StackInfo, namespace: str, *docs: dict[str, Any]) -> None:
    stack.kubectl("apply", "-n", namespace, "-f", "-",
                  input="\n---\n".join(json.dumps(d) for d in docs))


@pytest.fixture
def operator_settings(settings: Settings, real_namespace: str) -> Settings:
    """The settings the test's operator runs with: its own topics, the test's namespace."""
    return watch_settings(settings, real_namespace)


@pytest.fixture
def operator(operator_settings: Settings, tmp_path: Path) -> Iterator[Operator]:
    with Operator(operator_settings, tmp_path / "operator.log") as running:
        yield running


def pods(stack: devstack.StackInfo, namespace: str, selector: str) -> list[dict[str, Any]]:
    out = stack.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
    items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return items


def running_on_real_node(stack: devstack.StackInfo, namespace: str, selector: str, count: int) -> bool:
    found = pods(stack, namespace, selector)
    ready = [p for p in found if p["spec"].get("nodeName") == node.NODE_NAME
             and any(c["type"] == "Ready" and c["status"] == "True"
                     for c in p.get("status", {}).get("conditions", []))]
    return len(ready) == count


def pod_logs(stack: devstack.StackInfo, namespace: str, selector: str) -> str:
    return stack.kubectl("logs", "-n", namespace, "-l", selector, "--tail=-1",
                         "--all-containers", check=False).stdout


def component_selector(name: str, kind: str = "function") -> str:
    return f"compute.functionmesh.io/name={name},compute.functionmesh.io/component={kind}"


class Topics:
    """A producer on one topic and a consumer on another, on the dev Pulsar."""

    def __init__(self, settings: Settings) -> None:
        self.client = pulsar_client.connect(settings)

    def consumer(self, topic: str) -> pulsar.Consumer:
        # String schema, as the function's own typeClassName java.lang.String registers it
        # (a bytes client first would make the broker refuse the instance's producer).
        return self.client.subscribe(topic, f"test-{secrets.token_hex(3)}",
                                     initial_position=pulsar.InitialPosition.Earliest,
                                     schema=pulsar.schema.StringSchema())

    def send(self, topic: str, values: list[str]) -> None:
        producer = self.client.create_producer(topic, schema=pulsar.schema.StringSchema())
        for value in values:
            producer.send(value)
        producer.close()

    def close(self) -> None:
        self.client.close()


def receive(consumer: pulsar.Consumer, count: int, timeout: float = 120) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        try:
            message = consumer.receive(timeout_millis=1000)
        except pulsar.Timeout:
            continue
        consumer.acknowledge(message)
        got.append(message.value())
    return got


def test_java_exclamation_function_processes_messages(stack: devstack.StackInfo, settings: Settings,
                                                     real_namespace: str, topic_prefix: str,
                                                     operator: Operator) -> None:
    inp, out = f"{topic_prefix}in", f"{topic_prefix}out"
    topics = Topics(settings)
    try:
        consumer = topics.consumer(out)
        started = time.monotonic()
        apply(stack, real_namespace, pulsar_config_map(), java_function("exclaim", [inp], out))
        wait_for("the instance Ready on the real node", lambda: running_on_real_node(
            stack, real_namespace, component_selector("exclaim"), 1), 240)
        values = [f"hello-{i}" for i in range(10)]
        topics.send(inp, values)
        got = receive(consumer, len(values))
        first_processed = time.monotonic() - started
        assert sorted(got) == sorted(v + "!" for v in values), pod_logs(
            stack, real_namespace, component_selector("exclaim"))[-3000:]
        print(f"apply to first message processed: {first_processed:.1f}s")
        logs = pod_logs(stack, real_namespace, component_selector("exclaim"))
        # What Function Mesh's CI looks for in a running instance's log.
        assert "Created producer" in logs and "Subscribed to topic" in logs
    finally:
        topics.close()


WORK_FUNCTION = "io.fmeshevents.testio.WorkFunction"
TEST_JAR = "/pulsar/connectors/fmesh-test-io.jar"


def work_function(name: str, inp: str, out: str, work_ms: int, busy: bool = False,
                  **spec: Any) -> dict[str, Any]:
    """Our test function (in the runner image): `work_ms` per message, slept or burned."""
    return java_function(name, [inp], out, className=WORK_FUNCTION, java={"jar": TEST_JAR},
                         funcConfig={"workMs": str(work_ms), "busy": str(busy).lower()}, **spec)


def scale_decisions(settings: Settings, name: str) -> list[dict[str, Any]]:
    try:
        messages = read_messages(settings, events.SCALE_DECISIONS)
    except pulsar.TopicNotFound:  # no decision yet
        return []
    return [events.decode_record(events.PARSED_SCALE_DECISION, m.data())
            for m in messages if m.partition_key().endswith(f"/{name}")]


def test_kubectl_scale_to_three_splits_the_messages(stack: devstack.StackInfo, settings: Settings,
                                                   real_namespace: str, topic_prefix: str,
                                                   operator: Operator) -> None:
    inp, out = f"{topic_prefix}in", f"{topic_prefix}out"
    topics = Topics(settings)
    try:
        consumer = topics.consumer(out)
        apply(stack, real_namespace, pulsar_config_map(), work_function("split", inp, out, work_ms=20))
        wait_for("one instance", lambda: running_on_real_node(
            stack, real_namespace, component_selector("split"), 1), 240)
        stack.kubectl("scale", "function/split", "--replicas=3", "-n", real_namespace)
        wait_for("three instances", lambda: running_on_real_node(
            stack, real_namespace, component_selector("split"), 3), 240)
        # Ready is the container running; wait until all three consume the subscription.
        admin = pulsar_client.PulsarAdmin(settings)
        subscription = "public/default/split"

        def consumers() -> int:
            path = f"/admin/v2/persistent/{inp.removeprefix('persistent://')}/stats"
            try:
                stats = admin.request("GET", path)
            except pulsar_client.PulsarAdminError:  # 404 until an instance subscribes
                return 0
            return len(stats.get("subscriptions", {}).get(subscription, {}).get("consumers", []))

        wait_for("three consumers on the function's subscription", lambda: consumers() == 3, 120)
        values = [f"m{i}" for i in range(90)]
        topics.send(inp, values)
        got = receive(consumer, len(values))
        assert sorted(v.rsplit("@", 1)[0] for v in got) == sorted(values)
        by_instance = {v.rsplit("@", 1)[1] for v in got}
        assert by_instance == {"0", "1", "2"}, f"processed by instances {by_instance}"
    finally:
        topics.close()


def test_backlog_scales_out_real_instances_drain_it_and_it_scales_back(
        stack: devstack.StackInfo, settings: Settings, real_namespace: str, topic_prefix: str,
        operator: Operator, operator_settings: Settings) -> None:
    inp, out = f"{topic_prefix}in", f"{topic_prefix}out"
    name = "drain"
    ws = operator_settings
    topics = Topics(settings)
    try:
        consumer = topics.consumer(out)
        function = work_function(
            name, inp, out, work_ms=50, minReplicas=1, maxReplicas=3,
            autoscaling={"backlog": {"targetPerReplica": 40},
                         "behavior": {"scaleDown": {"stabilizationWindowSeconds": 15}}})
        # A small receiver queue: with Pulsar's default of 1000 the first instance takes the
        # whole burst into its queue and the instances added for it find nothing to do.
        function["spec"]["input"]["sourceSpecs"] = {inp: {"receiverQueueSize": 5}}
        apply(stack, real_namespace, pulsar_config_map(), function)
        wait_for("one instance", lambda: running_on_real_node(
            stack, real_namespace, component_selector(name), 1), 240)
        values = [f"b{i}" for i in range(600)]  # 30 s of work for one instance
        topics.send(inp, values)
        wait_for("scaled out on the backlog", lambda: any(
            d["desiredReplicas"] == 3 and d["applied"] for d in scale_decisions(ws, name)), 90)
        got = receive(consumer, len(values), timeout=180)
        assert sorted(v.rsplit("@", 1)[0] for v in got) == sorted(values)
        helpers = {v.rsplit("@", 1)[1] for v in got}
        assert len(helpers) > 1, "the added instances processed none of the backlog"
        wait_for("scaled back in after the window", lambda: json.loads(stack.kubectl(
            "get", "function", name, "-n", real_namespace, "-o", "json").stdout)["spec"]["replicas"] == 1,
            180)
        decisions = scale_decisions(ws, name)
        up = next(d for d in decisions if d["desiredReplicas"] == 3 and d["applied"])
        down = next(d for d in decisions if d["applied"] and d["desiredReplicas"] == 1
                    and d["time"] > up["time"])
        assert up["backlog"] and up["backlog"] > 40 and "backlog" in up["reason"]
        assert down["backlog"] == 0
    finally:
        topics.close()


def test_cpu_scales_out_on_metrics_server_numbers(stack: devstack.StackInfo, settings: Settings,
                                                 real_namespace: str, topic_prefix: str,
                                                 operator: Operator, operator_settings: Settings) -> None:
    inp, out = f"{topic_prefix}in", f"{topic_prefix}out"
    name = "burn"
    ws = operator_settings
    topics = Topics(settings)
    try:
        apply(stack, real_namespace, pulsar_config_map(), work_function(
            name, inp, out, work_ms=15, busy=True, minReplicas=1, maxReplicas=2,
            autoscaling={"cpu": {"targetUtilizationPercent": 50}}))
        wait_for("one instance", lambda: running_on_real_node(
            stack, real_namespace, component_selector(name), 1), 240)
        producer = topics.client.create_producer(inp, schema=pulsar.schema.StringSchema())
        deadline = time.monotonic() + 150
        scaled: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not scaled:
            for i in range(20):  # about 300 ms of CPU a second for one instance: 300% of 100m
                producer.send_async(f"c{i}", None)
            time.sleep(1)
            scaled = [d for d in scale_decisions(ws, name) if d["applied"] and d["desiredReplicas"] == 2]
        producer.close()
        assert scaled, f"no CPU scale-out; decisions: {scale_decisions(ws, name)[-3:]}"
        decision = scaled[0]
        assert decision["cpuUtilization"] is not None and decision["cpuUtilization"] > 50
        assert decision["cpuRecommendation"] >= 2  # unclamped: utilization / target
        top = stack.kubectl("top", "pods", "-n", real_namespace, "--no-headers")
        assert "burn-function-0" in top.stdout
    finally:
        topics.close()
