"""A corpus of bad (and odd) Function Mesh objects, as data, for the bad-input test.

Each case is a small valid object of one kind (the bases below) with a few changes, and
what must happen when it is applied with kubectl:

- ``Refused(field)``: the API server refuses it (OpenAPI schema, CEL rules, object meta) and
  kubectl's error names ``field``; nothing is stored.
- ``Reported(field)``: the API server stores it and the running operator sets the Ready
  condition to False with a message naming ``field``, without creating half of the children.
- ``Runs()``: odd but valid (unicode, sizes just under a limit): it is stored and becomes
  Ready, which shows that the limits above do not refuse too much.

``tests/integration/test_bad_input.py`` applies them all; ``len(CORPUS)`` is the number of
inputs tried. A change is ``"dotted.path[index].key": value``; ``DELETE`` removes the key.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

API_VERSION = "compute.functionmesh.io/v1alpha1"
CONFIG_MAP = "bad-input-pulsar"
IN = "persistent://public/default/bad-input-in"
OUT = "persistent://public/default/bad-input-out"
JAR = "/pulsar/examples/api-examples.jar"
MIB = 1024 * 1024


class _Delete:
    def __repr__(self) -> str:
        return "DELETE"


DELETE: Any = _Delete()
"""Remove the key at this path."""


@dataclass(frozen=True)
class Refused:
    """kubectl apply fails, naming ``field`` in its error."""

    field: str


@dataclass(frozen=True)
class Reported:
    """Stored; the operator reports Ready=False with a message naming ``field``."""

    field: str


@dataclass(frozen=True)
class Runs:
    """Stored and becomes Ready: valid, however odd."""


Expectation = Refused | Reported | Runs


@dataclass(frozen=True)
class Case:
    id: str
    kind: str
    changes: Mapping[str, Any]
    expect: Expectation
    server_side: bool = False  # client-side apply copies the object into an annotation
    note: str = ""

    @property
    def name(self) -> str:
        """metadata.name after the changes (the case id unless a change sets it)."""
        return str(self.document()["metadata"]["name"])

    def document(self) -> dict[str, Any]:
        """The object as a dict (a Nested value stays a placeholder)."""
        doc = base(self.kind, self.id)
        for path, value in self.changes.items():
            set_path(doc, path, value)
        return doc

    def json(self) -> str:
        """The object as JSON text, ready for ``kubectl apply -f -``."""
        text = json.dumps(self.document(), ensure_ascii=False)
        for value in self.changes.values():
            if isinstance(value, Nested):
                text = text.replace(json.dumps(_placeholder(value)), value.json(), 1)
        return text


def base(kind: str, name: str) -> dict[str, Any]:
    """A small object of `kind` that is valid and becomes Ready with ConfigMap CONFIG_MAP."""
    function_spec: dict[str, Any] = {
        "className": "org.apache.pulsar.functions.api.examples.ExclamationFunction",
        "replicas": 1,
        "input": {"topics": [IN]},
        "output": {"topic": OUT},
        "pulsar": {"pulsarConfig": CONFIG_MAP},
        "java": {"jar": JAR},
    }
    specs: dict[str, dict[str, Any]] = {
        "Function": function_spec,
        "Source": {
            "className": "org.apache.pulsar.io.datagenerator.DataGeneratorSource",
            "replicas": 1,
            "output": {"topic": OUT},
            "pulsar": {"pulsarConfig": CONFIG_MAP},
            "java": {"jar": "connectors/pulsar-io-data-generator-4.0.7.nar"},
        },
        "Sink": {
            "className": "org.apache.pulsar.io.datagenerator.DataGeneratorPrintSink",
            "replicas": 1,
            "input": {"topics": [IN]},
            "pulsar": {"pulsarConfig": CONFIG_MAP},
            "java": {"jar": "connectors/pulsar-io-data-generator-4.0.7.nar"},
        },
        "FunctionMesh": {"functions": [{"name": "ex", **copy.deepcopy(function_spec)}]},
    }
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name},
            "spec": copy.deepcopy(specs[kind])}


_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set (or with DELETE remove) ``a.b[0].c`` in doc, creating objects on the way."""
    steps: list[str | int] = [int(i) if i else k for k, i in _STEP.findall(path)]
    node: Any = doc
    for step, following in itertools.pairwise(steps):
        if isinstance(step, int):
            if step == len(node):
                node.append({} if isinstance(following, str) else [])
            node = node[step]
        else:
            if not isinstance(node.get(step), dict | list):
                node[step] = [] if isinstance(following, int) else {}
            node = node[step]
    last = steps[-1]
    if isinstance(value, Nested):
        value = _placeholder(value)
    if value is DELETE:
        del node[last]
    elif isinstance(last, int) and last == len(node):
        node.append(copy.deepcopy(value))
    else:
        node[last] = copy.deepcopy(value)


@dataclass(frozen=True)
class Nested:
    """An object nested ``depth`` levels deep; spliced in as text by ``Case.json`` (Python's
    own json and copy modules stop at about 1,000 levels)."""

    depth: int

    def json(self) -> str:
        return '{"level":' * self.depth + '"bottom"' + "}" * self.depth


def _placeholder(value: Nested) -> str:
    return f"@@nested-{value.depth}@@"


_WINDOW = "org.example.WindowFunction"

CORPUS: list[Case] = [
    # ------------------------------------------------------------------ wrong types
    Case("type-replicas-string", "Function", {"spec.replicas": "2"}, Refused("spec.replicas")),
    Case("type-replicas-float", "Function", {"spec.replicas": 1.5}, Refused("spec.replicas")),
    Case("type-replicas-bool", "Function", {"spec.replicas": True}, Refused("spec.replicas")),
    Case("type-topics-string", "Function", {"spec.input.topics": IN},
         Refused("spec.input.topics")),
    Case("type-funcconfig-string", "Function", {"spec.funcConfig": "greeting=hi"},
         Refused("spec.funcConfig")),
    Case("type-pulsar-string", "Function", {"spec.pulsar": CONFIG_MAP}, Refused("spec.pulsar")),
    Case("type-autoack-string", "Function", {"spec.autoAck": "yes"}, Refused("spec.autoAck")),
    Case("type-env-map", "Function", {"spec.pod.env": {"GREETING": "hi"}},
         Refused("spec.pod.env")),
    Case("type-java-string", "Function", {"spec.java": JAR}, Refused("spec.java")),
    Case("type-spec-list", "Function", {"spec": [1, 2]}, Refused("spec")),
    Case("type-pod-labels-number", "Function", {"spec.pod.labels": {"team": 7}},
         Refused("spec.pod.labels")),
    Case("type-quantity-object", "Function", {"spec.resources.requests": {"cpu": {"m": 100}}},
         Refused("spec.resources.requests")),
    Case("type-secretsmap-string", "Function", {"spec.secretsMap": "password"},
         Refused("spec.secretsMap")),
    Case("type-metadata-labels-number", "Function", {"metadata.labels": {"team": 7}},
         Refused("metadata.labels")),
    Case("type-mesh-functions-object", "FunctionMesh",
         {"spec.functions": {"name": "ex", "className": "a.B"}}, Refused("spec.functions")),
    Case("type-sinkconfig-list", "Sink", {"spec.sinkConfig": ["a", "b"]},
         Refused("spec.sinkConfig")),
    Case("type-sourceconfig-number", "Source", {"spec.sourceConfig": 5},
         Refused("spec.sourceConfig")),
    Case("type-window-count-string", "Function",
         {"spec.windowConfig": {"actualWindowFunctionClassName": _WINDOW,
                                "windowLengthCount": "ten"}},
         Refused("spec.windowConfig.windowLengthCount")),
    # ------------------------------------------------------------------ out of range
    Case("range-replicas-negative", "Function", {"spec.replicas": -1}, Refused("spec.replicas")),
    Case("range-min-replicas-negative", "Function", {"spec.minReplicas": -5,
                                                     "spec.maxReplicas": 3},
         Refused("spec.minReplicas")),
    Case("range-max-replicas-zero", "Function", {"spec.maxReplicas": 0},
         Refused("spec.maxReplicas")),
    Case("range-min-above-max", "Function", {"spec.minReplicas": 5, "spec.maxReplicas": 2},
         Refused("spec.minReplicas")),
    Case("range-replicas-int32-overflow", "Function", {"spec.replicas": 2**31},
         Refused("spec.replicas")),
    Case("range-replicas-1e30", "Function", {"spec.replicas": 10**30}, Refused("spec.replicas")),
    Case("range-grace-int64-overflow", "Function",
         {"spec.pod.terminationGracePeriodSeconds": 2**63},
         Refused("spec.pod.terminationGracePeriodSeconds")),
    Case("range-timeout-negative", "Function", {"spec.timeout": -1}, Refused("spec.timeout")),
    Case("range-cpu-target-zero", "Function",
         {"spec.maxReplicas": 3, "spec.autoscaling.cpu.targetUtilizationPercent": 0},
         Refused("spec.autoscaling.cpu.targetUtilizationPercent")),
    Case("range-backlog-target-zero", "Function",
         {"spec.maxReplicas": 3, "spec.autoscaling.backlog.targetPerReplica": 0},
         Refused("spec.autoscaling.backlog.targetPerReplica")),
    Case("range-window-too-long", "Function",
         {"spec.maxReplicas": 3, "spec.autoscaling.backlog.targetPerReplica": 10,
          "spec.autoscaling.behavior.scaleDown.stabilizationWindowSeconds": 3601},
         Refused("spec.autoscaling.behavior.scaleDown.stabilizationWindowSeconds")),
    Case("range-policy-period-zero", "Function",
         {"spec.maxReplicas": 3, "spec.autoscaling.backlog.targetPerReplica": 10,
          "spec.autoscaling.behavior.scaleUp.policies": [
              {"type": "Pods", "value": 1, "periodSeconds": 0}]},
         Refused("spec.autoscaling.behavior.scaleUp.policies[0].periodSeconds")),
    Case("range-pending-async-zero", "Function", {"spec.maxPendingAsyncRequests": 0},
         Refused("spec.maxPendingAsyncRequests")),
    Case("range-window-count-zero", "Function",
         {"spec.windowConfig": {"actualWindowFunctionClassName": _WINDOW,
                                "windowLengthCount": 0}},
         Refused("spec.windowConfig.windowLengthCount")),
    Case("range-grace-negative", "Function", {"spec.pod.terminationGracePeriodSeconds": -1},
         Refused("spec.pod.terminationGracePeriodSeconds")),
    Case("range-receiver-queue-negative", "Sink",
         {"spec.input.sourceSpecs": {IN: {"receiverQueueSize": -1}}},
         Refused("receiverQueueSize")),
    Case("range-liveness-success-two", "Function",
         {"spec.pod.liveness": {"periodSeconds": 10, "successThreshold": 2}},
         Refused("spec.pod.liveness.successThreshold")),
    Case("range-quantity-negative", "Function", {"spec.resources.requests.cpu": "-1"},
         Refused("spec.resources.requests")),
    Case("range-quantity-negative-int", "Function", {"spec.resources.requests.memory": -1},
         Refused("spec.resources.requests")),
    Case("range-quantity-garbage", "Function", {"spec.resources.limits.memory": "1.5.5Gi"},
         Refused("spec.resources.limits")),
    Case("range-requests-above-limits", "Function",
         {"spec.resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}}},
         Reported("spec.resources")),
    Case("range-many-topics", "Function",
         {"spec.input.topics": [f"{IN}-{i}" for i in range(501)]},
         Refused("spec.input.topics")),
    # ------------------------------------------------------------------ bad enum values
    Case("enum-processing-guarantee", "Function", {"spec.processingGuarantee": "exactly_once"},
         Refused("spec.processingGuarantee")),
    Case("enum-subscription-position", "Function", {"spec.subscriptionPosition": "middle"},
         Refused("spec.subscriptionPosition")),
    Case("enum-image-pull-policy", "Function", {"spec.imagePullPolicy": "Sometimes"},
         Refused("spec.imagePullPolicy")),
    Case("enum-log-topic-agent", "Function",
         {"spec.logTopic": f"{OUT}-logs", "spec.logTopicAgent": "daemon"},
         Refused("spec.logTopicAgent")),
    Case("enum-log-level", "Function", {"spec.java.log.level": "verbose"},
         Refused("spec.java.log.level")),
    Case("enum-compression", "Source", {"spec.output.producerConf.compressionType": "GZIP"},
         Refused("spec.output.producerConf.compressionType")),
    Case("enum-builtin-autoscaler", "Function",
         {"spec.maxReplicas": 3, "spec.pod.builtinAutoscaler": ["AverageUtilizationCPUPercent90"]},
         Refused("spec.pod.builtinAutoscaler")),
    Case("enum-select-policy", "Function",
         {"spec.maxReplicas": 3, "spec.autoscaling.cpu.targetUtilizationPercent": 80,
          "spec.autoscaling.behavior.scaleUp.selectPolicy": "Average"},
         Refused("spec.autoscaling.behavior.scaleUp.selectPolicy")),
    Case("enum-window-guarantee", "Function",
         {"spec.windowConfig": {"actualWindowFunctionClassName": _WINDOW,
                                "windowLengthCount": 10,
                                "processingGuarantees": "EXACTLY_ONCE"}},
         Refused("spec.windowConfig.processingGuarantees")),
    Case("enum-field-ref-api-version", "Function",
         {"spec.pod.env": [{"name": "NODE", "valueFrom": {
             "fieldRef": {"apiVersion": "v2", "fieldPath": "spec.nodeName"}}}]},
         Refused("spec.pod.env[0].valueFrom.fieldRef.apiVersion")),
    Case("enum-cron-missing", "Source",
         {"spec.batchSourceConfig": {
             "discoveryTriggererClassName": "org.apache.pulsar.io.batchdiscovery.CronTriggerer",
             "discoveryTriggererConfig": {"schedule": "daily"}}},
         Reported("spec.batchSourceConfig.discoveryTriggererConfig")),
    Case("enum-cron-bad", "Source",
         {"spec.batchSourceConfig": {
             "discoveryTriggererClassName": "org.apache.pulsar.io.batchdiscovery.CronTriggerer",
             "discoveryTriggererConfig": {"__CRON__": "every night"}}},
         Reported("spec.batchSourceConfig.discoveryTriggererConfig")),
    # ------------------------------------------------------------------ missing fields
    Case("missing-spec", "Function", {"spec": DELETE}, Refused("spec")),
    Case("missing-pulsar", "Function", {"spec.pulsar": DELETE}, Refused("spec.pulsar")),
    Case("missing-pulsar-config-empty", "Function", {"spec.pulsar.pulsarConfig": ""},
         Refused("spec.pulsar.pulsarConfig")),
    Case("missing-runtime", "Function", {"spec.java": DELETE}, Refused("spec.java")),
    Case("missing-jar", "Function", {"spec.java": {}}, Refused("spec.java.jar")),
    Case("missing-jar-empty", "Function", {"spec.java.jar": ""}, Refused("spec.java.jar")),
    Case("missing-classname", "Function", {"spec.className": DELETE}, Refused("spec.className")),
    Case("missing-function-input", "Function", {"spec.input": DELETE}, Refused("spec.input")),
    Case("missing-sink-input", "Sink", {"spec.input": DELETE}, Refused("spec.input")),
    Case("missing-window-class", "Function", {"spec.windowConfig": {"windowLengthCount": 5}},
         Refused("spec.windowConfig.actualWindowFunctionClassName")),
    Case("missing-mesh-entry-name", "FunctionMesh", {"spec.functions[0].name": DELETE},
         Refused("spec.functions[0].name")),
    Case("missing-env-name", "Function", {"spec.pod.env": [{"value": "x"}]},
         Refused("spec.pod.env[0].name")),
    Case("missing-oauth2-audience", "Function",
         {"spec.pulsar.authConfig.oauth2Config": {
             "issuerUrl": "https://auth.example.com", "keySecretName": "oauth",
             "keySecretKey": "auth.json"}},
         Refused("spec.pulsar.authConfig.oauth2Config.audience")),
    Case("missing-autoscaling-metric", "Function",
         {"spec.maxReplicas": 3, "spec.autoscaling": {}}, Refused("spec.autoscaling")),
    Case("missing-secret-key", "Function", {"spec.secretsMap": {"password": {"path": "db"}}},
         Refused("spec.secretsMap.password.key")),
    # ------------------------------------------------------------------ huge values
    Case("huge-funcconfig-1mib", "Function", {"spec.funcConfig": {"blob": "x" * MIB}},
         Reported("spec.funcConfig"), server_side=True),
    Case("huge-sinkconfig-1mib", "Sink", {"spec.sinkConfig": {"blob": "y" * MIB}},
         Reported("spec.sinkConfig"), server_side=True),
    Case("huge-classname-1mib", "Function", {"spec.className": "a." + "b" * MIB},
         Reported("spec.className"), server_side=True),
    Case("huge-funcconfig-client-side", "Function", {"spec.funcConfig": {"blob": "z" * MIB}},
         Refused("metadata.annotations"),
         note="client-side apply keeps a copy in an annotation, limited to 256 KiB"),
    Case("huge-funcconfig-deep", "Function", {"spec.funcConfig": Nested(2000)},
         Reported("spec.funcConfig"), server_side=True,
         note="deeper than Python's default recursion limit"),
    Case("huge-annotation", "Function",
         {"metadata.annotations": {"example.com/notes": "n" * (300 * 1024)}},
         Refused("metadata.annotations"), server_side=True),
    Case("huge-topic-name", "Function", {"spec.input.topics": [IN + "x" * 600]},
         Refused("spec.input.topics[0]")),
    Case("huge-funcconfig-100kib", "Function", {"spec.funcConfig": {"blob": "w" * 100_000}},
         Runs(), server_side=True, note="under the 128 KiB a command-line argument may hold"),
    Case("huge-max-replicas-int32", "Function", {"spec.maxReplicas": 2**31 - 1}, Runs()),
    # ------------------------------------------------------------------ unicode
    Case("unicode-name", "Function", {"metadata.name": "fünction"}, Refused("metadata.name")),
    Case("unicode-classname", "Function", {"spec.className": "org.exämple.Fünction"}, Runs()),
    Case("unicode-funcconfig", "Function",
         {"spec.funcConfig": {"greeting": "こんにちは", "ключ": "значение", "rtl": "مرحبا"}},
         Runs()),
    Case("unicode-topic-tenant", "Function", {"spec.input.topics": ["persistent://públic/default/in"]},
         Refused("spec.input.topics[0]")),
    Case("unicode-topic-local-name", "Function",
         {"spec.output.topic": "persistent://public/default/sortie-été"}, Runs(),
         note="Pulsar accepts any character but '/' in the local name"),
    Case("unicode-pod-label-value", "Function", {"spec.pod.labels": {"app": "fünction"}},
         Refused("spec.pod.labels")),
    Case("unicode-pod-annotation", "Function", {"spec.pod.annotations": {"note": "ünïcödé ✓"}},
         Runs()),
    Case("unicode-label-key", "Function", {"spec.pod.labels": {"über/app": "x"}},
         Reported("spec.pod.labels")),
    # ------------------------------------------------------------------ invalid topic names
    Case("topic-empty", "Function", {"spec.input.topics": [""]}, Refused("spec.input.topics[0]")),
    Case("topic-two-parts", "Function", {"spec.input.topics": ["public/in"]},
         Refused("spec.input.topics[0]")),
    Case("topic-bad-domain", "Function", {"spec.output.topic": "kafka://public/default/out"},
         Refused("spec.output.topic")),
    Case("topic-no-namespace", "Function", {"spec.input.topics": ["persistent://public/in"]},
         Refused("spec.input.topics[0]")),
    Case("topic-empty-local-name", "Function",
         {"spec.input.topics": ["persistent://public/default/"]},
         Refused("spec.input.topics[0]")),
    Case("topic-space", "Function", {"spec.input.topics": ["persistent://public/default/my in"]},
         Refused("spec.input.topics[0]")),
    Case("topic-bad-log-topic", "Function", {"spec.logTopic": "persistent://pub lic/default/logs"},
         Refused("spec.logTopic")),
    Case("topic-bad-dead-letter", "Function",
         {"spec.maxMessageRetry": 3, "spec.deadLetterTopic": "dlq/only-two"},
         Refused("spec.deadLetterTopic")),
    Case("topic-bad-pattern", "Function",
         {"spec.input": {"topicPattern": "http://public/default/in-.*"}},
         Refused("spec.input.topicPattern")),
    Case("topic-bad-serde-key", "Function",
         {"spec.input.customSerdeSources": {"persistent://public/default/has space": "a.Serde"}},
         Reported("spec.input.customSerdeSources")),
    Case("topic-bad-source-specs-key", "Sink",
         {"spec.input.sourceSpecs": {"persistent://public": {"schemaType": "AVRO"}}},
         Reported("spec.input.sourceSpecs")),
    Case("topic-mesh-bad-schema-key", "FunctionMesh",
         {"spec.functions[0].input.customSchemaSources": {"kafka://x/y/z": "AVRO"}},
         Reported("spec.functions[0].input.customSchemaSources")),
    Case("topic-output-is-input", "Function", {"spec.output.topic": IN},
         Refused("spec.output.topic")),
    # ------------------------------------------------------------------ unknown runtime, kind
    Case("unknown-runtime-rust", "Function", {"spec.java": DELETE, "spec.rust": {"crate": "x"}},
         Refused("spec.rust")),
    Case("unknown-runtime-extra", "Function", {"spec.nodejs": {"js": "index.js"}},
         Refused("spec.nodejs")),
    Case("unknown-runtime-two", "Function", {"spec.python": {"py": "/f.py"}},
         Refused("spec.java")),
    Case("unknown-runtime-go-stateful", "Function",
         {"spec.java": DELETE, "spec.className": DELETE, "spec.golang": {"go": "/f"},
          "spec.statefulConfig.pulsar.serviceUrl": "bk://bookie:4181"},
         Refused("spec.statefulConfig")),
    Case("unknown-field-typo", "Function", {"spec.replica": 2}, Refused("spec.replica")),
    Case("unknown-api-version", "Function", {"apiVersion": "compute.functionmesh.io/v1beta1"},
         Refused('version "compute.functionmesh.io/v1beta1"')),
    Case("unknown-api-version-core", "Function", {"apiVersion": "v1"},
         Refused('kind "Function" in version "v1"')),
    Case("unknown-kind", "Function", {"kind": "Functon"}, Refused('kind "Functon"')),
    # ------------------------------------------------------------------ names
    Case("name-too-long", "Function", {"metadata.name": "n" * 44}, Refused("metadata.name")),
    Case("name-with-dots", "Function", {"metadata.name": "my.function"},
         Refused("metadata.name")),
    Case("name-starts-with-digit", "Sink", {"metadata.name": "1st-sink"},
         Refused("metadata.name")),
    Case("name-mesh-child-too-long", "FunctionMesh",
         {"metadata.name": "mesh-" + "m" * 30, "spec.functions[0].name": "f" * 20},
         Refused("spec.functions")),
    Case("name-mesh-entry-upper", "FunctionMesh", {"spec.functions[0].name": "Ex"},
         Refused("spec.functions[0].name")),
    Case("name-mesh-duplicate-entry", "FunctionMesh",
         {"spec.functions[1]": {"name": "ex", "className": "a.B", "input": {"topics": [IN]},
                                "pulsar": {"pulsarConfig": CONFIG_MAP}, "java": {"jar": JAR}}},
         Refused("spec.functions[1]")),
    # ------------------------------------------------------------------ inside embedded types
    # The Kubernetes types of the pod block, mounts, claim templates and HPA metrics are typed
    # from Kubernetes' OpenAPI: a wrong type, a missing key, a duplicate or a typo inside them
    # is refused at apply, naming the field.
    Case("embedded-toleration-seconds-string", "Function",
         {"spec.pod.tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute",
                                    "tolerationSeconds": "soon"}]},
         Refused("spec.pod.tolerations[0].tolerationSeconds")),
    Case("embedded-affinity-typo", "Function",
         {"spec.pod.affinity": {"nodeAfinity": {}}}, Refused("spec.pod.affinity.nodeAfinity")),
    Case("embedded-sidecar-port-string", "Function",
         {"spec.pod.sidecars": [{"name": "side", "image": "busybox",
                                 "ports": [{"containerPort": "http"}]}]},
         Refused("spec.pod.sidecars[0].ports[0].containerPort")),
    Case("embedded-volume-without-name", "Function",
         {"spec.pod.volumes": [{"emptyDir": {}}]}, Refused("spec.pod.volumes[0].name")),
    Case("embedded-volume-duplicate", "Function",
         {"spec.pod.volumes": [{"name": "data", "emptyDir": {}},
                               {"name": "data", "emptyDir": {}}]},
         Refused("spec.pod.volumes[1]")),
    Case("embedded-security-context-user-string", "Sink",
         {"spec.pod.securityContext": {"runAsUser": "root"}},
         Refused("spec.pod.securityContext.runAsUser")),
    Case("embedded-init-container-env-list", "Source",
         {"spec.pod.initContainers": [{"name": "init", "image": "busybox",
                                       "env": {"A": "b"}}]},
         Refused("spec.pod.initContainers[0].env")),
    Case("embedded-probe-port-object", "Function",
         {"spec.pod.startupProbe": {"httpGet": {"path": "/", "port": {"number": 9094}}}},
         Refused("spec.pod.startupProbe.httpGet.port")),
    Case("embedded-mount-without-path", "Function",
         {"spec.volumeMounts": [{"name": "data"}]}, Refused("spec.volumeMounts[0].mountPath")),
    Case("embedded-claim-storage-garbage", "Function",
         {"spec.volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
             "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "lots"}}}}]},
         Refused("spec.volumeClaimTemplates[0].spec.resources.requests")),
    Case("embedded-metric-target-type-number", "Function",
         {"spec.maxReplicas": 3, "spec.pod.autoScalingMetrics": [
             {"type": "Resource", "resource": {"name": "cpu", "target": {"type": 80}}}]},
         Refused("spec.pod.autoScalingMetrics[0].resource.target.type")),
    # Enums come from the API server's own /openapi/v3 (its published snapshot has none).
    Case("embedded-toleration-effect", "Function",
         {"spec.pod.tolerations": [{"key": "k", "operator": "Exists", "effect": "NoRun"}]},
         Refused("spec.pod.tolerations[0].effect: Unsupported value")),
    Case("embedded-toleration-operator", "Function",
         {"spec.pod.tolerations": [{"key": "k", "operator": "Sometimes"}]},
         Refused("spec.pod.tolerations[0].operator: Unsupported value")),
    Case("embedded-affinity-operator", "Function",
         {"spec.pod.affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
             "nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "Maybe"}]}]}}}},
         Refused("spec.pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
                 ".nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value")),
    Case("embedded-sidecar-pull-policy", "Sink",
         {"spec.pod.sidecars": [{"name": "side", "image": "busybox",
                                 "imagePullPolicy": "Sometimes"}]},
         Refused("spec.pod.sidecars[0].imagePullPolicy: Unsupported value")),
    Case("embedded-toleration-empty-effect", "Function",
         {"spec.pod.tolerations": [{"key": "k", "operator": "Exists", "effect": ""}]}, Runs(),
         note="an optional enum's empty value is Go's zero value: every effect, as in a Pod"),
    Case("embedded-mesh-sidecar-without-name", "FunctionMesh",
         {"spec.functions[0].pod.sidecars": [{"image": "busybox"}]},
         Refused("spec.functions[0].pod.sidecars[0].name")),
    # ------------------------------------------------------------------ stored, then reported
    Case("status-missing-configmap", "Function", {"spec.pulsar.pulsarConfig": "no-such-config"},
         Reported("spec.pulsar.pulsarConfig")),
    Case("status-bad-volume", "Function",
         {"spec.pod.volumes": [{"name": "Bad_Volume", "emptyDir": {}}]},
         Reported("spec.pod.volumes")),
    Case("status-sidecar-without-image", "Function", {"spec.pod.sidecars": [{"name": "side"}]},
         Reported("spec.pod.sidecars")),
    Case("status-unknown-resource", "Function", {"spec.resources.requests": {"gpus": 1}},
         Reported("spec.resources.requests")),
    Case("status-bad-env-name", "Function", {"spec.pod.env": [{"name": "A=B", "value": "x"}]},
         Reported("spec.pod.env")),
    Case("status-mount-unknown-volume", "Function",
         {"spec.volumeMounts": [{"name": "nope", "mountPath": "/data"}]},
         Reported("spec.volumeMounts")),
    Case("status-bad-claim-template", "Function",
         {"spec.volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]},
         Reported("spec.volumeClaimTemplates")),
    Case("range-image-whitespace", "Function", {"spec.image": " apachepulsar/pulsar:4.0.7"},
         Refused("spec.image"), note="StatefulSets take it; their pods are then refused"),
    Case("status-bad-service-account", "Function", {"spec.pod.serviceAccountName": "Bad_SA"},
         Reported("spec.pod.serviceAccountName")),
    Case("status-bad-init-container", "Sink",
         {"spec.pod.initContainers": [{"name": "init", "image": "busybox", "ports": [
             {"containerPort": 70000}]}]},
         Reported("spec.pod.initContainers")),
]
"""Every case, in the order they are applied."""


def counts() -> dict[str, int]:
    """Cases by expectation: inputs tried, refused by the schema, reported on status, run."""
    return {
        "tried": len(CORPUS),
        "refused": sum(isinstance(c.expect, Refused) for c in CORPUS),
        "reported": sum(isinstance(c.expect, Reported) for c in CORPUS),
        "runs": sum(isinstance(c.expect, Runs) for c in CORPUS),
    }
