"""The pure render functions: CR -> StatefulSet, Service, mesh children; immutable fields."""

from __future__ import annotations

import copy
import json
import shlex
from typing import Any

import pytest

from fmesh_events.models import API_VERSION, Function, FunctionMesh, Sink, Source, parse_resource
from fmesh_events.reconcile import command, render
from fmesh_events.reconcile.render import (
    POD_TEMPLATE_HASH,
    immutable_fields_changed,
    render_mesh_children,
    render_workload,
    selector_labels,
    status_selector,
)
from tests.examples import EXAMPLES, documents, example

NAMESPACE = "team-a"
Workload = Function | Source | Sink


# --------------------------------------------------------------------------- helpers


def _with_identity(doc: dict[str, Any], uid: str = "0f6c1f4e-uid") -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["metadata"]["namespace"] = NAMESPACE
    doc["metadata"]["uid"] = uid
    return doc


def _named(file: str, name: str) -> dict[str, Any]:
    doc = next(d for d in documents(EXAMPLES / file) if d["metadata"]["name"] == name)
    return _with_identity(doc)


def _workload(doc: dict[str, Any]) -> Workload:
    model = parse_resource(doc)
    assert isinstance(model, Function | Source | Sink)
    return model


def _mesh(file: str) -> FunctionMesh:
    mesh = parse_resource(_with_identity(example(file, "FunctionMesh"), "mesh-uid"))
    assert isinstance(mesh, FunctionMesh)
    return mesh


def _mesh_child(file: str, name: str) -> Workload:
    child = next(c for c in render_mesh_children(_mesh(file)) if c["metadata"]["name"] == name)
    child["metadata"]["uid"] = "child-uid"
    return _workload(child)


def _all_workloads() -> dict[str, Workload]:
    """Every Function, Source and Sink of examples/, mesh entries included."""
    out: dict[str, Workload] = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in documents(path):
            if doc.get("apiVersion") != API_VERSION:
                continue
            doc = _with_identity(doc)
            if doc["kind"] == "FunctionMesh":
                mesh = parse_resource(doc)
                assert isinstance(mesh, FunctionMesh)
                for child in render_mesh_children(mesh):
                    child["metadata"]["uid"] = "child-uid"
                    out[f"{path.name}:{child['kind']}/{child['metadata']['name']}"] = _workload(child)
            elif doc["kind"] in ("Function", "Source", "Sink"):
                out[f"{path.name}:{doc['kind']}/{doc['metadata']['name']}"] = _workload(doc)
    return out


WORKLOADS = _all_workloads()


def _objects(cr: Workload) -> tuple[dict[str, Any], dict[str, Any]]:
    objects = render_workload(cr)
    sts = next(o for o in objects if o["kind"] == "StatefulSet")
    svc = next(o for o in objects if o["kind"] == "Service")
    return sts, svc


def _container(cr: Workload, name: str | None = None) -> dict[str, Any]:
    sts, _ = _objects(cr)
    wanted = name or render.container_name(cr)
    return next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == wanted)


def _script(cr: Workload) -> str:
    cmd = _container(cr)["command"]
    assert cmd[:2] in (["bash", "-c"], ["sh", "-c"]) and len(cmd) == 3
    return str(cmd[2])


def _tokens(cr: Workload) -> list[str]:
    """The command line split as a POSIX shell would (no expansion)."""
    return shlex.split(_script(cr))


def _arg(tokens: list[str], flag: str) -> str:
    return tokens[tokens.index(flag) + 1]


def _details(cr: Workload) -> dict[str, Any]:
    details = json.loads(_arg(_tokens(cr), "--function_details"))
    assert isinstance(details, dict)
    return details


def _pod_hash(cr: Workload) -> str:
    sts, _ = _objects(cr)
    value = sts["spec"]["template"]["metadata"]["annotations"][POD_TEMPLATE_HASH]
    assert value == sts["metadata"]["annotations"][POD_TEMPLATE_HASH]
    return str(value)


def _nones(value: Any, path: str = "") -> list[str]:
    if value is None:
        return [path or "<root>"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nones(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nones(v, f"{path}[{i}]")]
    return []


# --------------------------------------------------------------------------- every example


def test_examples_cover_all_kinds_and_runtimes() -> None:
    kinds = {cr.kind for cr in WORKLOADS.values()}
    runtimes = {command.runtime_kind(cr) for cr in WORKLOADS.values()}
    assert kinds == {"Function", "Source", "Sink"}
    assert runtimes == {"java", "python", "golang", "generic"}


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_example_renders_deterministically_without_nulls(name: str) -> None:
    cr = WORKLOADS[name]
    first = render_workload(cr)
    assert [o["kind"] for o in first] == ["StatefulSet", "Service"]
    assert _nones(first) == []
    again = render_workload(_workload(copy.deepcopy(cr.model_dump(by_alias=True, exclude_unset=True))))
    assert again == first
    assert json.dumps(again, sort_keys=False) == json.dumps(first, sort_keys=False)
    sts, svc = first
    for obj in first:
        meta = obj["metadata"]
        assert meta["namespace"] == NAMESPACE
        assert meta["ownerReferences"] == [
            {
                "apiVersion": API_VERSION,
                "kind": cr.kind,
                "name": cr.metadata["name"],
                "uid": cr.metadata["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    # The selector matches the pods and the Service selects the same pods.
    selector = sts["spec"]["selector"]["matchLabels"]
    assert selector == selector_labels(cr) == svc["spec"]["selector"]
    assert selector.items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    details = _details(cr) if command.runtime_kind(cr) != "golang" else None
    if details is not None:
        assert details["componentType"] == cr.kind.upper()


def test_mesh_children_are_deterministic_without_nulls() -> None:
    for file in ("functionmesh.yaml", "functionmesh-pipeline.yaml"):
        children = render_mesh_children(_mesh(file))
        assert children == render_mesh_children(_mesh(file))
        assert _nones(children) == []


# --------------------------------------------------------------------------- names and labels


def test_function_objects_named_and_labelled_as_function_mesh() -> None:
    cr = _workload(_with_identity(example("function.yaml", "Function")))
    sts, svc = _objects(cr)
    labels = {
        "app.kubernetes.io/name": "function-sample-function",
        "app.kubernetes.io/instance": "function-sample-function",
        "compute.functionmesh.io/app": "function-mesh",
        "compute.functionmesh.io/component": "function",
        "compute.functionmesh.io/name": "function-sample",
        "compute.functionmesh.io/namespace": NAMESPACE,
        "app": "function-mesh",
        "component": "function",
        "name": "function-sample",
        "namespace": NAMESPACE,
    }
    assert sts["apiVersion"] == "apps/v1" and svc["apiVersion"] == "v1"
    assert sts["metadata"]["name"] == "function-sample-function"
    assert svc["metadata"]["name"] == "function-sample-function-headless"
    assert sts["metadata"]["labels"] == labels == svc["metadata"]["labels"]
    assert selector_labels(cr) == labels
    assert status_selector(cr) == ",".join(f"{k}={v}" for k, v in sorted(labels.items()))

    spec = sts["spec"]
    assert spec["replicas"] == 1
    assert spec["selector"] == {"matchLabels": labels}
    assert spec["serviceName"] == "function-sample-function-headless"
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}

    template = spec["template"]
    assert template["metadata"]["labels"] == labels
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9094"
    pod = template["spec"]
    assert pod["securityContext"] == {
        "runAsUser": 10000,
        "runAsGroup": 10001,
        "runAsNonRoot": False,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] == [
        {
            "weight": 100,
            "podAffinityTerm": {
                "labelSelector": {"matchLabels": labels},
                "topologyKey": "kubernetes.io/hostname",
            },
        }
    ]
    [main] = pod["containers"]
    assert main["name"] == "pulsar-function"
    assert main["image"] == "apachepulsar/pulsar:4.0.7"
    assert main["imagePullPolicy"] == "IfNotPresent"
    assert main["ports"] == [
        {"name": "tcp-grpc", "containerPort": 9093, "protocol": "TCP"},
        {"name": "http-metrics", "containerPort": 9094, "protocol": "TCP"},
    ]
    assert main["securityContext"] == {
        "capabilities": {"drop": ["ALL"]},
        "allowPrivilegeEscalation": False,
    }
    assert main["envFrom"] == [{"configMapRef": {"name": "test-pulsar"}}]
    assert main["env"][0] == {
        "name": "POD_NAME",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
    }
    assert main["resources"] == {
        "limits": {"cpu": "500m", "memory": "1Gi"},
        "requests": {"cpu": "100m", "memory": "512Mi"},
    }
    assert svc["spec"] == {
        "clusterIP": "None",
        "selector": labels,
        "ports": [
            {"name": "tcp-grpc", "port": 9093, "targetPort": 9093, "protocol": "TCP"},
            {"name": "http-metrics", "port": 9094, "targetPort": 9094, "protocol": "TCP"},
        ],
    }


@pytest.mark.parametrize(
    ("file", "kind", "component"),
    [("source.yaml", "Source", "source"), ("sink.yaml", "Sink", "sink")],
)
def test_connector_objects_named_and_labelled_as_function_mesh(file: str, kind: str, component: str) -> None:
    cr = _workload(_with_identity(example(file, kind)))
    name = cr.metadata["name"]
    sts, svc = _objects(cr)
    assert sts["metadata"]["name"] == f"{name}-{component}"
    assert svc["metadata"]["name"] == f"{name}-{component}-headless"
    assert sts["metadata"]["labels"] == {
        "app.kubernetes.io/name": f"{name}-{component}",
        "app.kubernetes.io/instance": f"{name}-{component}",
        "compute.functionmesh.io/component": component,
        "compute.functionmesh.io/name": name,
        "compute.functionmesh.io/namespace": NAMESPACE,
        "component": component,
        "name": name,
        "namespace": NAMESPACE,
    }
    assert _container(cr)["name"] == f"pulsar-{component}"
    details = _details(cr)
    assert details["className"] == "org.apache.pulsar.functions.api.utils.IdentityFunction"


def test_pod_policy_reaches_the_pod() -> None:
    cr = _workload(_named("function-full.yaml", "order-window"))
    sts, _ = _objects(cr)
    template = sts["spec"]["template"]
    pod = template["spec"]
    assert template["metadata"]["labels"]["team"] == "checkout"
    assert template["metadata"]["annotations"]["example.com/owner"] == "checkout"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["value"] == "streaming"
    assert pod["terminationGracePeriodSeconds"] == 60
    assert pod["serviceAccountName"] == "order-window"
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert [c["name"] for c in pod["initContainers"]] == ["wait-for-db"]
    assert [c["name"] for c in pod["containers"]] == ["metrics-proxy", "pulsar-function", "filebeat"]
    # disableDefaultAffinity: only the user's affinity.
    assert set(pod["affinity"]) == {"nodeAffinity"}
    assert {v["name"] for v in pod["volumes"]} >= {"scratch", "filebeat-logs", "pulsar-ca-ca-crt"}
    main = _container(cr)
    assert main["livenessProbe"] == {
        "httpGet": {"path": "/", "port": 9094, "scheme": "HTTP"},
        "initialDelaySeconds": 30,
        "timeoutSeconds": 10,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    assert main["startupProbe"]["tcpSocket"] == {"port": 9093}
    assert {"name": "scratch", "mountPath": "/scratch"} in main["volumeMounts"]
    # The user's POD_NAME does not duplicate the operator's (apply refuses duplicate keys).
    names = [e["name"] for e in main["env"]]
    assert names.count("POD_NAME") == 1 and names[0] == "POD_NAME"
    # Volume claim templates and their retention policy.
    assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == ["window-cache"]
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Delete",
        "whenScaled": "Retain",
    }
    assert sts["spec"]["replicas"] == 2


def test_pod_labels_cannot_break_the_selector() -> None:
    doc = _with_identity(example("function.yaml", "Function"))
    doc["spec"]["pod"] = {"labels": {"component": "mine", "tier": "x"}}
    cr = _workload(doc)
    labels = _objects(cr)[0]["spec"]["template"]["metadata"]["labels"]
    assert labels["component"] == "function" and labels["tier"] == "x"


# --------------------------------------------------------------------------- Java command


def test_exclamation_function_java_command_line() -> None:
    cr = _mesh_child("functionmesh.yaml", "functionmesh-sample-ex1")
    assert _container(cr)["command"][:2] == ["bash", "-c"]
    script = _script(cr)
    tokens = shlex.split(script)
    assert "SHARD_ID=${POD_NAME##*-}" in tokens
    assert "org.apache.pulsar.functions.instance.JavaInstanceMain" in tokens
    exec_at = tokens.index("exec")
    assert tokens[exec_at + 1] == "java"
    assert tokens.index("exec") < tokens.index("org.apache.pulsar.functions.instance.JavaInstanceMain")
    assert _arg(tokens, "--jar") == "pulsar-functions-api-examples.jar"
    assert _arg(tokens, "--pulsar_serviceurl") == "$brokerServiceURL"
    assert _arg(tokens, "--port") == "9093"
    assert _arg(tokens, "--metrics_port") == "9094"
    assert _arg(tokens, "--instance_id") == "${SHARD_ID}"
    assert _arg(tokens, "--function_id") == "${SHARD_ID}-child-uid"
    assert _arg(tokens, "--cluster_name") == "test-pulsar"
    assert _arg(tokens, "--max_buffered_tuples") == "100"
    assert _arg(tokens, "--expected_healthcheck_interval") == "0"
    assert _arg(tokens, "--use_tls") == "false"
    assert _arg(tokens, "--pending_async_requests") == "1000"
    # limits.memory 1.1G: a fifth is direct memory.
    assert "-XX:MaxDirectMemorySize=220M" in tokens
    assert "-XX:MaxRAMPercentage=70" in tokens
    assert "-Dlog4j.configurationFile=/pulsar/conf/java-log/java_instance_log4j.xml" in tokens

    details = json.loads(_arg(tokens, "--function_details"))
    assert details["className"] == "org.apache.pulsar.functions.api.examples.ExclamationFunction"
    assert details["tenant"] == "public" and details["namespace"] == "default"
    assert details["name"] == "ex1"
    assert list(details["source"]["inputSpecs"]) == ["persistent://public/default/functionmesh-input-topic"]
    assert details["source"]["typeClassName"] == "java.lang.String"
    assert details["sink"]["topic"] == "persistent://public/default/mid-topic"
    assert details["sink"]["forwardSourceMessageProperty"] is True
    assert details["logTopic"] == "persistent://public/default/logging-function-log"
    assert details["autoAck"] is True
    assert details["parallelism"] == 1
    assert details["componentType"] == "FUNCTION"
    assert details["resources"] == {"cpu": 0.1, "ram": "1000000000"}
    assert "processingGuarantees" not in details  # ATLEAST_ONCE is proto3's default
    assert "runtime" not in details  # JAVA likewise

    # jarLocation is a path in Pulsar: fetched with `functions download` before the start.
    download, _, rest = script.partition(" && ")
    assert shlex.split(download) == [
        "/pulsar/bin/pulsar-admin",
        "--admin-url",
        "$webServiceURL",
        "functions",
        "download",
        "--path",
        "public/default/nlu-test-functionmesh-ex1",
        "--destination-file",
        "pulsar-functions-api-examples.jar",
    ]
    assert rest.startswith("SHARD_ID=")
    assert _container(cr)["envFrom"] == [{"configMapRef": {"name": "mesh-test-pulsar"}}]


def test_function_details_follow_the_spec() -> None:
    cr = _workload(_named("function-full.yaml", "order-window"))
    details = _details(cr)
    assert details["tenant"] == "shop" and details["namespace"] == "orders"
    # A windowed function runs Pulsar's window executor with the window in userConfig.
    assert details["className"] == "org.apache.pulsar.functions.windowing.WindowFunctionExecutor"
    user_config = json.loads(details["userConfig"])
    assert user_config["currency"] == "EUR"
    assert user_config["__WINDOWCONFIGS__"]["windowLengthDurationMs"] == 60000
    assert (
        user_config["__WINDOWCONFIGS__"]["actualWindowFunctionClassName"]
        == "com.example.orders.OrderTotalsWindow"
    )
    source = details["source"]
    assert source["subscriptionType"] == "FAILOVER"  # retainOrdering
    assert source["subscriptionName"] == "order-window"
    assert source["subscriptionPosition"] == "EARLIEST"
    assert source["timeoutMs"] == "30000"
    assert source["inputSpecs"]["persistent://shop/orders/orders-region-.*"] == {"isRegexPattern": True}
    assert source["inputSpecs"]["persistent://shop/orders/orders-eu"]["receiverQueueSize"] == {"value": 500}
    assert details["retryDetails"] == {
        "maxMessageRetries": 3,
        "deadLetterTopic": "persistent://shop/orders/order-window-dlq",
    }
    assert details["retainOrdering"] is True
    assert details["sink"]["producerSpec"]["batchBuilder"] == "KEY_BASED"
    # logTopicAgent: sidecar -> the runtime does not publish logs, filebeat does.
    assert "logTopic" not in details
    assert json.loads(details["secretsMap"]) == {"dbPassword": {"path": "orders-db", "key": "password"}}

    fraud = _details(_workload(_named("function-full.yaml", "fraud-score")))
    assert fraud["source"]["subscriptionType"] == "KEY_SHARED"  # retainKeyOrdering


def test_auth_tls_and_state_arguments() -> None:
    cr = _workload(_named("function-full.yaml", "order-window"))
    tokens = _tokens(cr)
    assert (
        _arg(tokens, "--client_auth_plugin")
        == "org.apache.pulsar.client.impl.auth.oauth2.AuthenticationOAuth2"
    )
    params = json.loads(_arg(tokens, "--client_auth_params"))
    assert params["privateKey"] == "/etc/oauth2/auth.json"
    assert params["issuerUrl"] == "https://auth.example.com/"
    assert params["audience"] == "urn:sn:pulsar:shop:prod"
    assert _arg(tokens, "--use_tls") == "true"
    assert _arg(tokens, "--tls_allow_insecure") == "false"
    assert _arg(tokens, "--hostname_verification_enabled") == "true"
    assert _arg(tokens, "--tls_trust_cert_path") == "/etc/tls/pulsar-functions/ca.crt"
    assert _arg(tokens, "--state_storage_serviceurl") == "bk://pulsar-bookie.pulsar.svc.cluster.local:4181"
    assert (
        _arg(tokens, "--state_storage_impl_class")
        == "org.apache.pulsar.functions.instance.state.BKStateStoreProviderImpl"
    )
    assert ":$(echo /pulsar/lib/org.yaml-snakeyaml-*.jar):/pulsar/functions/deps/* " in _script(cr)
    mounts = {m["mountPath"]: m["name"] for m in _container(cr)["volumeMounts"]}
    assert mounts["/etc/tls/pulsar-functions"] == "pulsar-ca-ca-crt"
    assert mounts["/etc/oauth2"] == "order-window-oauth2-auth-json"
    assert mounts["/etc/order-keys"] == "order-keys-orders-eu-pem"
    # A log4j file from a ConfigMap replaces the generated one.
    assert mounts["/pulsar/conf/java-log/"] == "order-window-log4j-java-log-conf"
    assert "mkdir -p /pulsar/conf/java-log/" not in _script(cr)

    # Secret-based auth and TLS (the older form) come from the Secrets' env.
    legacy = _workload(_named("function-full.yaml", "fraud-score"))
    tokens = _tokens(legacy)
    assert _arg(tokens, "--client_auth_plugin") == "$clientAuthenticationPlugin"
    assert _arg(tokens, "--client_auth_params") == "$clientAuthenticationParameters"
    assert _arg(tokens, "--tls_trust_cert_path") == "$tlsTrustCertsFilePath"
    assert _container(legacy)["envFrom"] == [
        {"configMapRef": {"name": "pulsar-cluster"}},
        {"secretRef": {"name": "fraud-score-pulsar-auth"}},
        {"secretRef": {"name": "fraud-score-pulsar-tls"}},
    ]


def test_generic_auth_params_are_quoted_for_the_shell() -> None:
    doc = _with_identity(example("function.yaml", "Function"))
    doc["spec"]["pulsar"]["authConfig"] = {
        "genericAuth": {
            "clientAuthenticationPlugin": "org.apache.pulsar.client.impl.auth.AuthenticationToken",
            "clientAuthenticationParameters": "token:it's $secret",
        }
    }
    tokens = _tokens(_workload(doc))
    assert _arg(tokens, "--client_auth_params") == "token:it's $secret"


# --------------------------------------------------------------------------- downloads


@pytest.mark.parametrize(
    ("spec_change", "expected"),
    [
        (
            {"java": {"jar": "/pulsar/f.jar", "jarLocation": "function://public/default/f@1"}},
            "/pulsar/bin/pulsar-admin --admin-url $webServiceURL packages download "
            "function://public/default/f@1 --path /pulsar/f.jar",
        ),
        (
            {"java": {"jar": "f.jar", "jarLocation": "https://example.com/f.jar"}, "imageHasGet": True},
            "wget https://example.com/f.jar -O f.jar",
        ),
        (
            {"java": {"jar": "f.jar", "jarLocation": "public/default/f"}},
            "/pulsar/bin/pulsar-admin --admin-url $webServiceURL functions download "
            "--path public/default/f --destination-file f.jar",
        ),
        (
            {
                "java": {"jar": "f.jar", "jarLocation": "sink://public/default/s@2"},
                "imageHasPulsarctl": True,
            },
            "export PATH=$PATH:/pulsar/bin && pulsarctl --admin-service-url $webServiceURL "
            "packages download sink://public/default/s@2 --path f.jar",
        ),
    ],
)
def test_package_download(spec_change: dict[str, Any], expected: str) -> None:
    doc = _with_identity(example("function.yaml", "Function"))
    doc["spec"].update(spec_change)
    script = _script(_workload(doc))
    assert script.startswith(expected + " && SHARD_ID=")


def test_no_download_without_a_location() -> None:
    script = _script(_workload(_with_identity(example("function.yaml", "Function"))))
    assert script.startswith("SHARD_ID=${POD_NAME##*-} && echo shardId=${SHARD_ID} && ")


# --------------------------------------------------------------------------- other runtimes


def test_python_runtime() -> None:
    cr = _workload(_named("function-full.yaml", "fraud-score"))
    tokens = _tokens(cr)
    at = tokens.index("exec")
    assert tokens[at : at + 5] == [
        "exec",
        "python",
        "/pulsar/instances/python-instance/python_instance_main.py",
        "--py",
        "/pulsar/functions/fraud_score.py",
    ]
    assert _arg(tokens, "--logging_file") == "fraud-score-${SHARD_ID}.log"
    assert _arg(tokens, "--logging_config_file") == "/pulsar/conf/python-log/python_instance_logging.ini"
    assert _arg(tokens, "--install_usercode_dependencies") == "true"
    assert _arg(tokens, "--pulsar_serviceurl") == "$brokerServiceURL"
    details = _details(cr)
    assert details["runtime"] == "PYTHON"
    assert json.loads(details["userConfig"])["__WINDOWCONFIGS__"]["windowLengthCount"] == 100
    # The logging file is written before the start, with the level asked for.
    ini = tokens[tokens.index("/pulsar/conf/python-log/python_instance_logging.ini") - 2]
    assert ini.startswith("[loggers]")
    assert "level=DEBUG" in ini and "52428800" in ini  # log.level debug, SizedPolicyWith50MB
    assert "--pending_async_requests" not in tokens  # Java only


def _go_conf(tokens: list[str], shard: str = "0", broker: str = "pulsar://b:6650") -> Any:
    raw = next(t for t in tokens if t.startswith("GO_FUNCTION_CONF=")).removeprefix("GO_FUNCTION_CONF=")
    # shlex keeps the backslash of \$ and \` inside double quotes; bash drops it.
    raw = raw.replace("\\$", "$").replace("\\`", "`")
    return json.loads(raw.replace("${SHARD_ID}", shard).replace("${brokerServiceURL}", broker))


def test_go_runtime() -> None:
    cr = _workload(_named("function-full.yaml", "geo-enrich"))
    container = _container(cr)
    assert container["image"] == "streamnative/pulsar-functions-go-runner:4.0.0.6"
    assert {"name": "LOGGING_LEVEL", "value": "warn"} in container["env"]
    script = _script(cr)
    assert script.startswith(
        "/pulsar/bin/pulsar-admin --admin-url $webServiceURL packages download "
        "function://shop/orders/geo-enrich@0.9.2 --path /pulsar/functions/geo-enrich && "
    )
    tokens = shlex.split(script)
    assert tokens[-4:] == ["exec", "/pulsar/functions/geo-enrich", "-instance-conf", "${GO_FUNCTION_CONF}"]
    conf = _go_conf(tokens, "2", "pulsar://broker:6650")
    assert conf["instanceID"] == 2
    assert conf["funcID"] == "2-0f6c1f4e-uid"
    assert conf["pulsarServiceURL"] == "pulsar://broker:6650"
    assert conf["runtime"] == 3
    assert conf["sourceSpecsTopic"] == "persistent://shop/orders/addresses"
    assert conf["sinkSpecsTopic"] == "persistent://shop/orders/geo-addresses"
    assert conf["port"] == 9093 and conf["metricsPort"] == 9094
    assert conf["parallelism"] == 1


def test_go_config_survives_awkward_user_config() -> None:
    doc = _named("function-full.yaml", "geo-enrich")
    doc["spec"]["funcConfig"] = {"note": 'it\'s "quoted" $HOME `cmd` \\ done'}
    conf = _go_conf(_tokens(_workload(doc)))
    assert json.loads(conf["userConfig"]) == doc["spec"]["funcConfig"]


def test_generic_runtime() -> None:
    cr = _workload(_named("function-full.yaml", "label-printer"))
    cmd = _container(cr)["command"]
    assert cmd[:2] == ["sh", "-c"]
    tokens = shlex.split(cmd[2])
    assert tokens[:4] == [
        "wget",
        "https://artifacts.example.com/functions/label-printer-1.0.0.js",
        "-O",
        "/pulsar/functions/label-printer.js",
    ]
    assert _arg(tokens, "exec") == "pulsar_rust_instance"
    assert _arg(tokens, "--language") == "nodejs"


def test_connector_backed_function() -> None:
    cr = _workload(_named("function-full.yaml", "catalog-sync"))
    tokens = _tokens(cr)
    assert _arg(tokens, "--connectors_directory") == "/pulsar/connectors"
    details = _details(cr)
    assert details["source"]["builtin"] == "batch-data-generator"
    assert details["source"]["className"] == "org.apache.pulsar.functions.source.batch.BatchSourceExecutor"
    assert details["sink"]["builtin"] == "elastic_search"
    assert json.loads(details["sink"]["configs"])["indexName"] == "products"


def test_source_and_sink_details() -> None:
    batch = _workload(_named("source.yaml", "nightly-import"))
    details = _details(batch)
    assert details["componentType"] == "SOURCE"
    assert details["processingGuarantees"] == "ATMOST_ONCE"
    assert details["source"]["className"] == "org.apache.pulsar.functions.source.batch.BatchSourceExecutor"
    configs = json.loads(details["source"]["configs"])
    assert configs["__BATCHSOURCECLASSNAME__"] == (
        "org.apache.pulsar.io.batchdatagenerator.BatchDataGeneratorSource"
    )
    assert json.loads(configs["__BATCHSOURCECONFIGS__"])["discoveryTriggererConfig"] == {
        "__CRON__": "0 0 2 * * ?"
    }
    assert details["sink"]["topic"] == "persistent://warehouse/ingest/people"
    assert details["parallelism"] == 1 and batch.spec.show_precise_parallelism
    assert "--pending_async_requests" not in _tokens(batch)

    sink = _workload(_with_identity(example("sink.yaml", "Sink")))
    details = _details(sink)
    assert details["componentType"] == "SINK"
    assert details["sink"]["className"] == "org.apache.pulsar.io.jdbc.PostgresJdbcAutoSchemaSink"
    assert json.loads(details["sink"]["configs"])["tableName"] == "orders"
    assert details["source"]["negativeAckRedeliveryDelayMs"] == "10000"
    assert details["source"]["inputSpecs"]["persistent://public/default/orders"]["schemaType"] == "AVRO"


def test_batch_source_forms() -> None:
    """A batchSourceConfig is wrapped in BatchSourceExecutor (Pulsar's instance refuses a
    BatchSource as the source class: tests/integration/test_runner_payload.py runs both);
    the wrapping written by hand, as Function Mesh's connector docs do, passes unchanged."""
    doc = _named("source.yaml", "nightly-import")
    triggerer = {"discoveryTriggererClassName": "org.example.Trigger",
                 "discoveryTriggererConfig": {"every": 5}}
    doc["spec"] |= {"className": "org.example.Batch", "sourceConfig": {"table": "t"},
                    "batchSourceConfig": triggerer}
    source = _details(_workload(doc))["source"]
    assert source["className"] == command.BATCH_SOURCE_CLASS
    assert json.loads(source["configs"]) == {
        "__BATCHSOURCECLASSNAME__": "org.example.Batch",
        "__BATCHSOURCECONFIGS__": json.dumps(triggerer, separators=(",", ":"), sort_keys=True),
        "table": "t",
    }

    del doc["spec"]["batchSourceConfig"]
    doc["spec"] |= {"className": command.BATCH_SOURCE_CLASS,
                    "sourceConfig": {"table": "t", "__BATCHSOURCECLASSNAME__": "org.example.Batch",
                                     "__BATCHSOURCECONFIGS__": json.dumps(triggerer)}}
    source = _details(_workload(doc))["source"]
    assert source["className"] == command.BATCH_SOURCE_CLASS
    assert json.loads(source["configs"]) == doc["spec"]["sourceConfig"]


def test_log_topic_sidecar_for_connectors() -> None:
    doc = _with_identity(example("sink.yaml", "Sink"))
    assert "filebeat" not in [
        c["name"] for c in _objects(_workload(doc))[0]["spec"]["template"]["spec"]["containers"]
    ]
    doc["spec"]["logTopic"] = "persistent://public/default/sink-logs"
    cr = _workload(doc)
    pod = _objects(cr)[0]["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["pulsar-sink", "filebeat"]
    filebeat = _container(cr, "filebeat")
    assert {"name": "logTopic", "value": "persistent://public/default/sink-logs"} in filebeat["env"]
    assert {"name": "filebeat-logs", "mountPath": "/pulsar/logs/functions"} in filebeat["volumeMounts"]
    assert {"name": "filebeat-logs", "emptyDir": {}} in pod["volumes"]
    # The runtime writes a rolling file for filebeat and does not publish logs itself.
    assert "RollingFile" in _script(cr)
    assert "logTopic" not in _details(cr)


# --------------------------------------------------------------------------- secrets


def test_secrets_map_becomes_secret_env_and_the_provider_argument() -> None:
    cr = _workload(_with_identity(example("sink.yaml", "Sink")))
    env = _container(cr)["env"]
    assert env[1:3] == [
        {
            "name": "password",
            "valueFrom": {"secretKeyRef": {"name": "postgres-credentials", "key": "password"}},
        },
        {
            "name": "userName",
            "valueFrom": {"secretKeyRef": {"name": "postgres-credentials", "key": "username"}},
        },
    ]
    tokens = _tokens(cr)
    assert (
        _arg(tokens, "--secrets_provider")
        == "org.apache.pulsar.functions.secretsprovider.EnvironmentBasedSecretsProvider"
    )
    python = _named("function-full.yaml", "fraud-score")
    python["spec"]["secretsMap"] = {"apiKey": {"path": "fraud", "key": "api-key"}}
    assert _arg(_tokens(_workload(python)), "--secrets_provider") == (
        "secretsprovider.EnvironmentBasedSecretsProvider"
    )
    plain = _workload(_with_identity(example("function.yaml", "Function")))
    assert "--secrets_provider" not in _tokens(plain)


# --------------------------------------------------------------------------- the pod-template hash


def test_scaling_changes_replicas_but_not_the_pod_template() -> None:
    doc = _with_identity(example("function.yaml", "Function"))
    before_sts, _ = _objects(_workload(doc))
    doc["spec"]["replicas"] = 4
    after_sts, _ = _objects(_workload(doc))
    assert before_sts["spec"]["replicas"] == 1 and after_sts["spec"]["replicas"] == 4
    assert after_sts["spec"]["template"] == before_sts["spec"]["template"]
    assert _pod_hash(_workload(doc)) == before_sts["metadata"]["annotations"][POD_TEMPLATE_HASH]
    assert immutable_fields_changed(before_sts, after_sts) == []


def test_replicas_default_to_one() -> None:
    doc = _with_identity(example("function.yaml", "Function"))
    del doc["spec"]["replicas"]
    assert _objects(_workload(doc))[0]["spec"]["replicas"] == 1


def test_precise_parallelism_puts_replicas_in_the_details() -> None:
    doc = _with_identity(example("function.yaml", "Function"))
    doc["spec"]["showPreciseParallelism"] = True
    doc["spec"]["replicas"] = 3
    cr = _workload(doc)
    assert _details(cr)["parallelism"] == 3
    doc["spec"]["replicas"] = 4
    assert _pod_hash(_workload(doc)) != _pod_hash(cr)


@pytest.mark.parametrize(
    "change",
    [
        lambda spec: spec.update(funcConfig={"greeting": "hi"}),
        lambda spec: spec["output"].update(topic="persistent://public/default/other"),
        lambda spec: spec.update(image="apachepulsar/pulsar:4.0.8"),
        lambda spec: spec["resources"]["limits"].update(memory="2Gi"),
        lambda spec: spec.update(pod={"env": [{"name": "X", "value": "1"}]}),
        lambda spec: spec["pulsar"].update(pulsarConfig="another-cluster"),
    ],
)
def test_spec_and_config_changes_change_the_pod_template_hash(change: Any) -> None:
    doc = _with_identity(example("function.yaml", "Function"))
    before = _pod_hash(_workload(doc))
    change(doc["spec"])
    after = _pod_hash(_workload(doc))
    assert after != before
    assert len(after) == 16 and int(after, 16) >= 0


def test_hash_is_of_the_template_without_itself() -> None:
    cr = _workload(_with_identity(example("function.yaml", "Function")))
    sts, _ = _objects(cr)
    template = sts["spec"]["template"]
    assert render.pod_template_hash(template) == template["metadata"]["annotations"][POD_TEMPLATE_HASH]
    assert render.pod_template_hash(template) == render.pod_template_hash(render.render_pod_template(cr))


# --------------------------------------------------------------------------- FunctionMesh


def test_mesh_children_named_after_mesh_and_entry_with_owner_references() -> None:
    mesh = _mesh("functionmesh-pipeline.yaml")
    children = render_mesh_children(mesh)
    assert [(c["kind"], c["metadata"]["name"]) for c in children] == [
        ("Function", "people-pipeline-count-people"),
        ("Source", "people-pipeline-people"),
        ("Sink", "people-pipeline-counts-log"),
    ]
    for child in children:
        assert child["apiVersion"] == API_VERSION
        assert child["metadata"]["namespace"] == NAMESPACE
        assert child["metadata"]["labels"] == {"compute.functionmesh.io/mesh": "people-pipeline"}
        assert child["metadata"]["ownerReferences"] == [
            {
                "apiVersion": API_VERSION,
                "kind": "FunctionMesh",
                "name": "people-pipeline",
                "uid": "mesh-uid",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        # A valid object of its kind, whose spec is the entry.
        model = parse_resource(child)
        assert model.kind == child["kind"]
    function = children[0]["spec"]
    entry = mesh.spec.functions[0] if mesh.spec.functions else None
    assert entry is not None
    assert function == entry.model_dump(by_alias=True, exclude_unset=True, mode="json")
    # The entry name stays the name in Pulsar, as with Function Mesh.
    assert function["name"] == "count-people"
    assert function["maxReplicas"] == 4


def test_mesh_child_renders_under_its_own_name() -> None:
    cr = _mesh_child("functionmesh.yaml", "functionmesh-sample-sink-sample")
    sts, svc = _objects(cr)
    assert sts["metadata"]["name"] == "functionmesh-sample-sink-sample-sink"
    assert svc["metadata"]["name"] == "functionmesh-sample-sink-sample-sink-headless"
    assert sts["metadata"]["labels"]["compute.functionmesh.io/name"] == "functionmesh-sample-sink-sample"
    assert _details(cr)["name"] == "sink-sample"


# --------------------------------------------------------------------------- immutable fields


def _as_stored(sts: dict[str, Any]) -> dict[str, Any]:
    """The StatefulSet as the API server returns it: defaults filled in, status added."""
    stored = copy.deepcopy(sts)
    spec = stored["spec"]
    spec["revisionHistoryLimit"] = 10
    spec["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    for template in spec.get("volumeClaimTemplates", []):
        template["apiVersion"] = "v1"
        template["kind"] = "PersistentVolumeClaim"
        template["spec"]["volumeMode"] = "Filesystem"
        template["status"] = {"phase": "Pending"}
    stored["metadata"]["resourceVersion"] = "42"
    stored["status"] = {"replicas": 1}
    return stored


def test_immutable_fields_unchanged_ignores_server_defaults_and_mutable_fields() -> None:
    doc = _named("function-full.yaml", "order-window")
    existing = _as_stored(_objects(_workload(doc))[0])
    doc["spec"]["replicas"] = 7
    doc["spec"]["image"] = "apachepulsar/pulsar:4.0.8"
    desired = _objects(_workload(doc))[0]
    assert immutable_fields_changed(existing, desired) == []


def test_immutable_field_changes_are_reported() -> None:
    doc = _named("function-full.yaml", "order-window")
    desired = _objects(_workload(doc))[0]
    existing = _as_stored(desired)

    other = copy.deepcopy(existing)
    other["spec"]["serviceName"] = "order-window-old"
    assert immutable_fields_changed(other, desired) == ["spec.serviceName"]

    other = copy.deepcopy(existing)
    other["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] = "old"
    assert immutable_fields_changed(other, desired) == ["spec.selector"]

    other = copy.deepcopy(existing)
    del other["spec"]["podManagementPolicy"]  # OrderedReady, the API default
    assert immutable_fields_changed(other, desired) == ["spec.podManagementPolicy"]

    bigger = copy.deepcopy(doc)
    bigger["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = "5Gi"
    assert immutable_fields_changed(existing, _objects(_workload(bigger))[0]) == ["spec.volumeClaimTemplates"]

    renamed = copy.deepcopy(doc)
    renamed["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] = "cache"
    renamed["spec"]["volumeMounts"][0]["name"] = "cache"
    assert immutable_fields_changed(existing, _objects(_workload(renamed))[0]) == [
        "spec.volumeClaimTemplates"
    ]

    dropped = copy.deepcopy(doc)
    dropped["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] = "fast"
    assert immutable_fields_changed(existing, _objects(_workload(dropped))[0]) == [
        "spec.volumeClaimTemplates"
    ]
    # ... and removing a field the user had set is a change too.
    assert immutable_fields_changed(_as_stored(_objects(_workload(dropped))[0]), desired) == [
        "spec.volumeClaimTemplates"
    ]

    none = copy.deepcopy(doc)
    del none["spec"]["volumeClaimTemplates"]
    assert immutable_fields_changed(existing, _objects(_workload(none))[0]) == ["spec.volumeClaimTemplates"]


def test_equal_quantities_in_another_spelling_are_not_a_change() -> None:
    doc = _named("function-full.yaml", "order-window")
    desired = _objects(_workload(doc))[0]
    existing = _as_stored(desired)
    existing["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = "1024Mi"
    assert immutable_fields_changed(existing, desired) == []


# --------------------------------------------------------------------------- helpers of command


@pytest.mark.parametrize(
    ("quantity", "value"),
    [("1Gi", 1073741824), ("1.1G", 1100000000), ("500m", 1), ("2", 2), (3, 3), ("1e3", 1000)],
)
def test_quantity_values(quantity: object, value: int) -> None:
    assert command.quantity_value(quantity) == value


@pytest.mark.parametrize(("value", "text"), [(0, "0"), (220000000, "220M"), (429496729, "429496729")])
def test_decimal_si(value: int, text: str) -> None:
    assert command.decimal_si(value) == text
