"""Functions that really run: the operator, as its image in deploy/'s two-replica Deployment
on the real node, materializes Function Mesh YAML; the pods start on the same node (kubelet,
containerd, runc, CNI) from the images the stack built, and Pulsar function instances process
real messages.

One Deployment serves the whole module: it watches one namespace per test, made before it
starts (`real_namespace` here hands each test its own). The rest of the suite runs the operator
as a host process and sends its pods to the KWOK nodes; one test here runs it on the host too,
as `scripts/dev` does, to show the host reaches the cluster's Pulsar names.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulsar
import pytest
import yaml

from fmesh_events import devstack, events, pulsar_client
from fmesh_events.devstack import node
from fmesh_events.settings import Settings
from tests.integration.watch_helpers import (
    Operator,
    read_messages,
    scale_decisions,
    wait_for,
    watch_settings,
)
from tests.secret_values import new_secret

REPO = Path(__file__).resolve().parents[2]
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


@dataclass
class DeployedOperator:
    """deploy/ applied as a user would, watching `namespaces` (test node id -> namespace)."""

    settings: Settings  # the host's view: the stack's Pulsar, the Deployment's topics
    manifest: str
    namespaces: dict[str, str]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-")


@pytest.fixture(scope="module")
def deployed(stack: devstack.StackInfo, request: pytest.FixtureRequest) -> Iterator[DeployedOperator]:
    """The operator's image built from this checkout, pushed to the node's registry, deploy/
    applied with its two replicas; one namespace per test of this module that wants one."""
    from fmesh_events.devstack import images
    from fmesh_events.devstack.progress import Progress

    if not stack.real_node:
        pytest.fail("these tests need the stack's real node (FMESH_REAL_NODE is off)")
    wanted = [item for item in request.session.items
              if getattr(item, "module", None) is request.module
              and "real_namespace" in getattr(item, "fixturenames", ())]
    namespaces = {item.nodeid: f"r-{_slug(item.name)}-{secrets.token_hex(2)}"[:63].rstrip("-")
                  for item in wanted}
    for name in namespaces.values():
        devstack.create_namespace(stack, name, fake_nodes=False)
    base = Settings(kubeconfig=stack.kubeconfig, pulsar_service_url=stack.pulsar_service_url,
                    pulsar_admin_url=stack.pulsar_admin_url,
                    system_namespace=f"public/deployed-{secrets.token_hex(3)}",
                    watch_namespaces=sorted(namespaces.values()))
    tag = "0.1.0"  # deploy/'s own tag: the manifests are used as they are
    local_tag = images.build_operator_image(REPO, tag, base.cache_dir, Progress())
    images.push_images(f"127.0.0.1:{stack.registry_port}",
                       {local_tag: [(images.OPERATOR_IMAGE_REPOSITORY, tag)]}, Progress())
    manifest = "\n---\n".join(json.dumps(d) for d in _deploy_documents(stack, base))
    stack.kubectl("apply", "--server-side", "-f", "-", input=manifest)
    try:
        stack.kubectl("rollout", "restart", "deployment/fmesh-events", "-n", "fmesh-system")
        stack.kubectl("rollout", "status", "deployment/fmesh-events", "-n", "fmesh-system",
                      "--timeout=240s", timeout=260)
        wait_for("one leading watcher", lambda: _leader(stack) is not None, 120)
        yield DeployedOperator(base, manifest, namespaces)
    finally:
        stack.kubectl("delete", "-f", "-", "--wait=false", "--ignore-not-found", input=manifest,
                      check=False)
        for name in namespaces.values():
            stack.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def real_namespace(deployed: DeployedOperator, stack: devstack.StackInfo,
                   request: pytest.FixtureRequest) -> Iterator[str]:
    """This test's namespace, one the Deployment watches; emptied when the test ends."""
    name = deployed.namespaces[request.node.nodeid]
    yield name
    stack.kubectl("delete", "functionmeshes,functions,sources,sinks,pods", "--all", "-n", name,
                  "--wait=false", check=False)


@pytest.fixture
def operator_settings(deployed: DeployedOperator) -> Settings:
    """Where the deployed operator keeps its topics (scale-decisions, events), from the host."""
    return deployed.settings


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
                                                     real_namespace: str, topic_prefix: str) -> None:
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


def test_kubectl_scale_to_three_splits_the_messages(stack: devstack.StackInfo, settings: Settings,
                                                   real_namespace: str, topic_prefix: str) -> None:
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
        operator_settings: Settings) -> None:
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
                                                 operator_settings: Settings) -> None:
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


def test_functionmesh_source_function_sink_carries_messages(
        stack: devstack.StackInfo, real_namespace: str, topic_prefix: str) -> None:
    """Our CountingSource -> ExclamationFunction -> our LoggingSink, as one FunctionMesh."""
    raw, shouted = f"{topic_prefix}raw", f"{topic_prefix}shouted"
    connector = {"image": SAMPLE_IMAGE, "replicas": 1, "pulsar": {"pulsarConfig": PULSAR_CONFIG},
                 "java": {"jar": TEST_JAR}, "resources": RESOURCES}
    mesh = {"apiVersion": "compute.functionmesh.io/v1alpha1", "kind": "FunctionMesh",
            "metadata": {"name": "flow"}, "spec": {
                "sources": [{**connector, "name": "count",
                             "className": "io.fmeshevents.testio.CountingSource",
                             "output": {"topic": raw, "typeClassName": "java.lang.String"},
                             "sourceConfig": {"count": "5", "prefix": "item-", "intervalMs": "200"}}],
                "functions": [{**java_function("shout", [raw], shouted)["spec"], "name": "shout"}],
                "sinks": [{**connector, "name": "log", "className": "io.fmeshevents.testio.LoggingSink",
                           "input": {"topics": [shouted], "typeClassName": "java.lang.String"}}],
            }}
    apply(stack, real_namespace, pulsar_config_map(), mesh)
    sink = component_selector("flow-log", "sink")
    wait_for("the sink logs what went through the function", lambda: all(
        f"fmesh-sink received: item-{i}!" in pod_logs(stack, real_namespace, sink) for i in range(5)), 300)


def test_batch_source_delivers_every_task_record(
        stack: devstack.StackInfo, settings: Settings, real_namespace: str, topic_prefix: str) -> None:
    """A Source with batchSourceConfig (our CountingBatchSource, our IntervalTriggerer), wrapped
    in Pulsar's BatchSourceExecutor as we render it: each task's records come out, once."""
    out = f"{topic_prefix}batch"
    source = {"apiVersion": "compute.functionmesh.io/v1alpha1", "kind": "Source",
              "metadata": {"name": "batch"}, "spec": {
                  "image": SAMPLE_IMAGE, "replicas": 1, "pulsar": {"pulsarConfig": PULSAR_CONFIG},
                  "java": {"jar": TEST_JAR}, "resources": RESOURCES,
                  "className": "io.fmeshevents.testio.CountingBatchSource",
                  "output": {"topic": out, "typeClassName": "java.lang.String"},
                  "sourceConfig": {"tasks": 2, "recordsPerTask": 3, "prefix": "rec-"},
                  "batchSourceConfig": {
                      "discoveryTriggererClassName": "io.fmeshevents.testio.IntervalTriggerer",
                      "discoveryTriggererConfig": {"intervalMs": 1000}}}}
    expected = sorted(f"rec-{task}-{i}" for task in range(2) for i in range(3))
    topics = Topics(settings)
    try:
        consumer = topics.consumer(out)
        apply(stack, real_namespace, pulsar_config_map(), source)
        got = receive(consumer, len(expected), timeout=240)
        assert sorted(got) == expected
        time.sleep(3)  # later discoveries find nothing new
        assert receive(consumer, 1, timeout=2) == []
    finally:
        topics.close()


def test_log_topic_carries_what_the_function_logs_at_its_level(
        stack: devstack.StackInfo, settings: Settings, real_namespace: str, topic_prefix: str) -> None:
    """Pulsar's LoggingFunction logs "<input>-log" at INFO through its Context: with logTopic and
    java.log.level info the line reaches the log topic and the console; at warn, neither."""
    logging_class = "org.apache.pulsar.functions.api.examples.LoggingFunction"
    topics = Topics(settings)
    try:
        consumers: dict[str, tuple[pulsar.Consumer, pulsar.Consumer]] = {}
        for level in ("info", "warn"):
            inp, out, logs = (f"{topic_prefix}{level}-{t}" for t in ("in", "out", "logs"))
            consumers[level] = (topics.consumer(out), topics.client.subscribe(
                logs, "test", initial_position=pulsar.InitialPosition.Earliest))
            apply(stack, real_namespace, pulsar_config_map(), java_function(
                f"log-{level}", [inp], out, className=logging_class, logTopic=logs,
                java={"jar": "/pulsar/examples/api-examples.jar", "log": {"level": level}}))
        for level in ("info", "warn"):
            wait_for(f"the {level} instance Ready", functools.partial(
                running_on_real_node, stack, real_namespace, component_selector(f"log-{level}"), 1),
                240)
            topics.send(f"{topic_prefix}{level}-in", [f"x{level}"])
        for level in ("info", "warn"):
            output, log_topic = consumers[level]
            assert receive(output, 1) == [f"x{level}!"]
            lines: list[str] = []
            with contextlib.suppress(pulsar.Timeout):
                while True:  # the instance's own log lines too: keep the function's
                    lines.append(log_topic.receive(timeout_millis=5000).data().decode())
            console = pod_logs(stack, real_namespace, component_selector(f"log-{level}"))
            if level == "info":
                assert any(f"x{level}-log" in line for line in lines), lines
                assert f"x{level}-log" in console
            else:
                assert not any(f"x{level}-log" in line for line in lines), lines
                assert f"x{level}-log" not in console
    finally:
        topics.close()


def upload_package(stack: devstack.StackInfo, url: str, data: bytes) -> None:
    from tests.integration.test_runner_payload import upload_package as upload

    upload(stack, url, data)


@pytest.mark.parametrize("image", [SAMPLE_IMAGE, "streamnative/pulsar-functions-pulsarctl-java-runner:4.0.7"])
def test_function_package_downloaded_through_package_management(
        stack: devstack.StackInfo, settings: Settings, real_namespace: str, topic_prefix: str,
        image: str, tmp_path: Path) -> None:
    """jarLocation function://...: the pod fetches it with pulsar-admin (Java runner) or
    pulsarctl (the -pulsarctl- runner), as Function Mesh's command line says."""
    examples = subprocess.run(  # the examples jar out of the image itself: the package to upload
        ["docker", "run", "--rm", "--entrypoint", "cat", "fmesh-events/java-runner:4.0.7",
         "/pulsar/examples/api-examples.jar"], capture_output=True, check=True).stdout
    package = f"function://public/default/excl-{secrets.token_hex(3)}@v1"
    upload_package(stack, package, examples)
    inp, out = f"{topic_prefix}in", f"{topic_prefix}out"
    tool = "pulsarctl" if "pulsarctl" in image else "pulsar-admin"
    name = f"pkg-{tool}"
    function = java_function(name, [inp], out, image=image,
                             java={"jar": "fetched.jar", "jarLocation": package})
    topics = Topics(settings)
    try:
        consumer = topics.consumer(out)
        apply(stack, real_namespace, pulsar_config_map(), function)
        wait_for("the instance Ready", lambda: running_on_real_node(
            stack, real_namespace, component_selector(name), 1), 240)
        command = json.loads(stack.kubectl("get", "statefulset", f"{name}-function", "-n", real_namespace,
                                           "-o", "json").stdout)["spec"]["template"]["spec"]["containers"][0]
        expected = "pulsarctl" if tool == "pulsarctl" else "/pulsar/bin/pulsar-admin"
        assert f"{expected} " in " ".join(command["command"])
        topics.send(inp, ["pkg"])
        assert receive(consumer, 1) == ["pkg!"]
    finally:
        topics.close()


def test_secrets_map_reaches_the_instance_and_no_topic(
        stack: devstack.StackInfo, settings: Settings, real_namespace: str, topic_prefix: str,
        operator_settings: Settings) -> None:
    """secretsMap: the instance reads the Secret through EnvironmentBasedSecretsProvider."""
    value = new_secret("real-node")  # also scanned for in every topic at the end of the run
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "fn-secret"},
              "stringData": {"password": value}}
    inp, out = f"{topic_prefix}in", f"{topic_prefix}out"
    function = work_function("secretive", inp, out, work_ms=0,
                             secretsMap={"dbPassword": {"path": "fn-secret", "key": "password"}})
    apply(stack, real_namespace, pulsar_config_map(), secret, function)
    wait_for("the instance Ready", lambda: running_on_real_node(
        stack, real_namespace, component_selector("secretive"), 1), 240)
    pod = pods(stack, real_namespace, component_selector("secretive"))[0]["metadata"]["name"]
    env = stack.kubectl("exec", "-n", real_namespace, pod, "--", "printenv", "dbPassword").stdout.strip()
    assert env == value
    for topic in (events.RESOURCE_EVENTS, events.POD_EVENTS):
        for message in read_messages(operator_settings, topic):
            assert value.encode() not in message.data()


def _deploy_documents(stack: devstack.StackInfo, settings: Settings) -> list[dict[str, Any]]:
    """deploy/ as `kubectl apply -k` renders it, less the CRDs the stack already serves, the
    operator told to watch only this module's namespaces (a cluster-wide one would reconcile
    the other tests' objects too) and to keep its topics in a namespace of its own."""
    rendered = stack.kubectl("kustomize", str(REPO / "deploy")).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] != "CustomResourceDefinition"]
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    config["data"].update({"FMESH_SYSTEM_NAMESPACE": settings.system_namespace,
                           "FMESH_WATCH_NAMESPACES": json.dumps(settings.watch_namespaces)})
    return docs


def _operator_pods(stack: devstack.StackInfo) -> list[dict[str, Any]]:
    return [p for p in pods(stack, "fmesh-system", "app.kubernetes.io/name=fmesh-events")
            if not p["metadata"].get("deletionTimestamp")]


def _leader(stack: devstack.StackInfo) -> str | None:
    leaders = [p["metadata"]["name"] for p in _operator_pods(stack)
               if "now the active watcher" in stack.kubectl(
                   "logs", "-n", "fmesh-system", p["metadata"]["name"], check=False).stdout]
    return leaders[0] if len(leaders) == 1 else None


def test_the_deployed_operator_fails_over_and_keeps_reconciling(
        stack: devstack.StackInfo, settings: Settings, real_namespace: str, topic_prefix: str) -> None:
    """Both replicas run on the real node, one watcher leads; its pod killed, the standby takes
    over and what is changed afterwards still happens."""
    assert {p["spec"]["nodeName"] for p in _operator_pods(stack)} == {node.NODE_NAME}
    assert len(_operator_pods(stack)) == 2
    leader = _leader(stack)
    inp, out = f"{topic_prefix}in", f"{topic_prefix}out"
    topics = Topics(settings)
    try:
        consumer = topics.consumer(out)
        apply(stack, real_namespace, pulsar_config_map(), java_function("deployed", [inp], out))
        wait_for("the function running", lambda: running_on_real_node(
            stack, real_namespace, component_selector("deployed"), 1), 240)
        topics.send(inp, ["one"])
        assert receive(consumer, 1) == ["one!"]

        stack.kubectl("delete", "pod", "-n", "fmesh-system", str(leader), "--grace-period=0", "--force")
        took = wait_for("the standby leads", lambda: _leader(stack) not in (None, leader), 120)
        print(f"standby took over {took:.1f}s after the leader's pod was killed")
        stack.kubectl("scale", "function/deployed", "--replicas=2", "-n", real_namespace)
        wait_for("scaled by the operator that took over", lambda: running_on_real_node(
            stack, real_namespace, component_selector("deployed"), 2), 240)
    finally:
        topics.close()


def subscription_exists(settings: Settings, topic: str, subscription: str) -> bool:
    admin = pulsar_client.PulsarAdmin(settings)
    try:
        found = admin.request("GET", f"/admin/v2/persistent/{topic.removeprefix('persistent://')}"
                                     "/subscriptions")
    except pulsar_client.PulsarAdminError:  # no topic yet
        return False
    return subscription in found


def delete_removes_the_subscription(stack: devstack.StackInfo, settings: Settings, namespace: str,
                                    topic_prefix: str) -> None:
    """A Function with cleanupSubscription, deleted: its instance's subscription goes, on the
    cluster its pulsarConfig names, and then the Function itself (the finalizer lifted)."""
    inp, out = f"{topic_prefix}in", f"{topic_prefix}out"
    name = "tidy"
    subscription = f"public/default/{name}"
    apply(stack, namespace, pulsar_config_map(),
          java_function(name, [inp], out, cleanupSubscription=True))
    wait_for("the instance subscribed", lambda: subscription_exists(settings, inp, subscription), 240)
    stack.kubectl("delete", "function", name, "-n", namespace, "--wait=false")
    wait_for("the Function gone", lambda: not stack.kubectl(
        "get", "function", name, "-n", namespace, "--ignore-not-found", "-o", "name").stdout.strip(), 120)
    assert not subscription_exists(settings, inp, subscription)


def test_delete_with_cleanup_subscription_removes_the_subscription(
        stack: devstack.StackInfo, settings: Settings, real_namespace: str, topic_prefix: str) -> None:
    delete_removes_the_subscription(stack, settings, real_namespace, topic_prefix)


def test_an_operator_on_the_host_cleans_up_through_the_host_aliases(
        stack: devstack.StackInfo, settings: Settings, topic_prefix: str, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    """`fmesh-events run` on the host, as scripts/dev starts it with `dev env`'s exports: the
    pulsarConfig's cluster-domain name does not resolve there; FMESH_PULSAR_HOST_ALIASES maps
    it to the Service's cluster IP."""
    namespace = f"h-{_slug(request.node.name)}-{secrets.token_hex(2)}"[:63].rstrip("-")
    devstack.create_namespace(stack, namespace, fake_nodes=False)
    aliases = json.dumps(node.host_aliases(stack))
    try:
        with Operator(watch_settings(settings, namespace), tmp_path / "operator.log",
                      env={"FMESH_PULSAR_HOST_ALIASES": aliases}):
            delete_removes_the_subscription(stack, settings, namespace, topic_prefix)
    finally:
        stack.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_pods_resolve_the_cluster_only_and_pull_from_the_local_registry(
        stack: devstack.StackInfo, real_namespace: str) -> None:
    """imagePullPolicy Always pulls from the node's loopback registry; cluster names resolve,
    outside names do not (CoreDNS forwards nowhere); the pod network's FORWARD guard is on."""
    script = ("getent hosts pulsar-broker.pulsar.svc.cluster.local && "
              "getent hosts kubernetes.default.svc.cluster.local && "
              "if getent hosts deb.debian.org; then echo OUTSIDE-RESOLVED; else echo OUTSIDE-REFUSED; fi")
    stack.kubectl("run", "probe", "-n", real_namespace, "--restart=Never",
                  "--image=streamnative/pulsar-functions-java-runner:2.10.0.0-rc10",
                  "--image-pull-policy=Always", "--command", "--", "sh", "-c", script)
    wait_for("the probe pod done", lambda: stack.kubectl(
        "get", "pod", "probe", "-n", real_namespace, "-o", "jsonpath={.status.phase}").stdout
        in ("Succeeded", "Failed"), 180)
    out = stack.kubectl("logs", "probe", "-n", real_namespace).stdout
    assert "pulsar-broker.pulsar.svc.cluster.local" in out, out
    assert "kubernetes.default.svc.cluster.local" in out, out
    assert "OUTSIDE-REFUSED" in out, out
    rules = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True).stdout
    assert f"-A FORWARD -s {node.POD_CIDR} ! -d {node.POD_CIDR} -j REJECT" in rules, rules


def test_a_spec_change_rolls_the_instances_and_processing_goes_on(
        stack: devstack.StackInfo, settings: Settings, real_namespace: str, topic_prefix: str) -> None:
    """A new class and jar reach the running pods: the next message meets the new code."""
    inp, out = f"{topic_prefix}in", f"{topic_prefix}out"
    name = "roll"
    topics = Topics(settings)
    try:
        consumer = topics.consumer(out)
        apply(stack, real_namespace, pulsar_config_map(), work_function(name, inp, out, work_ms=0))
        wait_for("the instance Ready", lambda: running_on_real_node(
            stack, real_namespace, component_selector(name), 1), 240)
        topics.send(inp, ["before"])
        assert receive(consumer, 1) == ["before@0"]
        first_uid = pods(stack, real_namespace, component_selector(name))[0]["metadata"]["uid"]
        apply(stack, real_namespace, java_function(name, [inp], out))  # now ExclamationFunction
        wait_for("a new pod with the new spec", lambda: any(
            p["metadata"]["uid"] != first_uid for p in pods(stack, real_namespace, component_selector(name)))
            and running_on_real_node(stack, real_namespace, component_selector(name), 1), 240)
        topics.send(inp, ["after"])
        assert receive(consumer, 1) == ["after!"]
    finally:
        topics.close()
