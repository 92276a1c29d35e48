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

from fmesh_events import devstack, pulsar_client
from fmesh_events.devstack import node
from fmesh_events.settings import Settings
from tests.integration.watch_helpers import Operator, wait_for, watch_settings

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
def operator(settings: Settings, real_namespace: str, tmp_path: Path) -> Iterator[Operator]:
    with Operator(watch_settings(settings, real_namespace), tmp_path / "operator.log") as running:
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
