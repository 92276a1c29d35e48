"""The local stack is real: a Pulsar broker that carries messages, a Kubernetes API server
that stores our CRDs, and a control plane that runs StatefulSet pods to Ready (KWOK)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from fmesh_events import devstack
from fmesh_events.pulsar_client import PulsarAdmin, connect
from fmesh_events.settings import Settings

if TYPE_CHECKING:
    import pulsar


def test_pulsar_publishes_and_consumes(settings: Settings, topic_prefix: str) -> None:
    topic = topic_prefix + "roundtrip"
    client = connect(settings)
    try:
        consumer = client.subscribe(topic, "roundtrip")
        producer = client.create_producer(topic)
        sent = [f"message-{i}".encode() for i in range(10)]
        for body in sent:
            producer.send(body, partition_key="Function/default/f")
        received = []
        for _ in sent:
            message = consumer.receive(timeout_millis=10_000)
            received.append(message.data())
            consumer.acknowledge(message)
        assert received == sent
    finally:
        client.close()


def test_system_namespace_has_dedup_and_retention(settings: Settings) -> None:
    admin = PulsarAdmin(settings)
    assert admin.ensure_namespace(settings.system_namespace, retention_minutes=60) is True
    # Second call: already there, policies re-applied, nothing created.
    assert admin.ensure_namespace(settings.system_namespace, retention_minutes=60) is False
    ns = settings.system_namespace
    assert admin.request("GET", f"/admin/v2/namespaces/{ns}/deduplication") is True
    retention = admin.request("GET", f"/admin/v2/namespaces/{ns}/retention")
    assert retention["retentionTimeInMinutes"] == 60


def test_broker_deduplicates_by_sequence_id(settings: Settings, topic_prefix: str) -> None:
    """The watch stage relies on broker-side dedup: a resend with an old sequence id is dropped."""
    topic = topic_prefix + "dedup"
    client = connect(settings)
    try:
        producer = client.create_producer(topic, producer_name=f"dedup-{topic[-12:]}",
                                          batching_enabled=False)
        reader = client.create_reader(topic, _earliest())
        producer.send(b"a", sequence_id=10)
        producer.send(b"b", sequence_id=11)
        producer.close()
        again = client.create_producer(topic, producer_name=f"dedup-{topic[-12:]}",
                                       batching_enabled=False)
        assert again.last_sequence_id() == 11
        again.send(b"b-duplicate", sequence_id=11)
        again.send(b"c", sequence_id=12)
        seen = []
        while reader.has_message_available():
            seen.append(reader.read_next(timeout_millis=5000).data())
        assert seen == [b"a", b"b", b"c"]
    finally:
        client.close()


def _earliest() -> pulsar.MessageId:
    import pulsar

    return pulsar.MessageId.earliest


def test_crds_are_established_and_explained(stack: devstack.StackInfo) -> None:
    names = stack.kubectl("get", "crd", "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
    for plural in ("functions", "sources", "sinks", "functionmeshes", "backendconfigs"):
        assert f"{plural}.compute.functionmesh.io" in names
    explained = stack.kubectl("explain", "function.spec.input").stdout
    assert "topics" in explained and "DESCRIPTION" in explained


def test_statefulset_pods_become_ready_on_kwok_nodes(stack: devstack.StackInfo,
                                                     namespace: str) -> None:
    manifest = {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "probe", "namespace": namespace},
        "spec": {
            "replicas": 2, "serviceName": "probe", "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "probe"}},
            "template": {"metadata": {"labels": {"app": "probe"}},
                         "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
        },
    }
    stack.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    deadline = time.monotonic() + 90
    ready = ""
    while time.monotonic() < deadline:
        ready = stack.kubectl("get", "statefulset", "probe", "-n", namespace,
                              "-o", "jsonpath={.status.readyReplicas}").stdout
        if ready == "2":
            break
        time.sleep(1)
    assert ready == "2", stack.kubectl("get", "pods", "-n", namespace, "-o", "wide").stdout
