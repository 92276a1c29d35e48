"""Security (issue 8), against the real stack:

- test_operator_under_deploy_rbac_is_never_forbidden_and_uses_every_rule: the operator runs
  as deploy/'s ServiceAccount (a real token, its own kubeconfig) through every path it has;
  the API server's audit log (on in the dev stack, for that user only) must show no 403 and
  a use of every permission of deploy/'s ClusterRole.
- test_pulsar_token_auth_lets_the_operator_in_and_keeps_others_out: a second Pulsar with
  token authentication and authorization on; the operator and `history` work with their
  token, a client without one or with another role's cannot read the audit topics.
- test_no_secret_in_any_topic: runs LAST (tests/conftest.py moves it): every message of every
  topic of the stack's Pulsar, searched for every secret value the session's tests used
  (tests/secret_values.py), raw and base64-encoded. Zero hits.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pulsar
import pytest
import urllib3
import yaml
from pydantic import SecretStr

from fmesh_events import devstack, events, pulsar_client
from fmesh_events.devstack import builds, local
from fmesh_events.devstack.progress import Progress
from fmesh_events.settings import Settings
from tests.examples import example
from tests.integration import deploy_rbac as deploy_objects
from tests.integration.watch_helpers import Operator, read_messages, read_topic, watch_settings
from tests.reliability import report
from tests.secret_values import new_secret, used_secrets

GROUP = "compute.functionmesh.io"
TOKEN_PLUGIN = "org.apache.pulsar.client.impl.auth.AuthenticationToken"
SA_NAMESPACE, SA_NAME, SA_USER = deploy_objects.NAMESPACE, deploy_objects.NAME, deploy_objects.USER

Perm = tuple[str, str, str]  # (API group, resource[/subresource], verb)


# ------------------------------------------------------------------ shared helpers
def _apply(stack: devstack.StackInfo, namespace: str, doc: dict[str, Any]) -> None:
    stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))


def _get(stack: devstack.StackInfo, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    got = stack.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(got.stdout) if got.returncode == 0 else None


def _condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == type_), {})


def _is_ready(stack: devstack.StackInfo, kind: str, name: str, namespace: str) -> bool:
    return _condition(_get(stack, kind, name, namespace), "Ready").get("status") == "True"


def _settled(stack: devstack.StackInfo, kind: str, name: str, namespace: str,
             statefulset: str | None = None) -> bool:
    """The CR's current generation reconciled and Ready, and its StatefulSet (if named) done
    rolling: nothing about it is still on its way to the operator."""
    cr = _get(stack, kind, name, namespace) or {}
    if (cr.get("status") or {}).get("observedGeneration") != cr.get("metadata", {}).get("generation") \
            or _condition(cr, "Ready").get("status") != "True":
        return False
    if statefulset is None:
        return True
    sts = _get(stack, "statefulset", statefulset, namespace) or {}
    status = sts.get("status") or {}
    return (status.get("observedGeneration") == sts.get("metadata", {}).get("generation")
            and status.get("currentRevision") == status.get("updateRevision")
            and status.get("readyReplicas") == sts.get("spec", {}).get("replicas"))


def _caught_up(settings: Settings) -> bool:
    """The reconcile subscription has nothing left to handle on any of its topics."""
    admin = pulsar_client.PulsarAdmin(settings)
    for topic in (events.RESOURCE_EVENTS, events.POD_EVENTS, events.RECONCILE_REQUESTS):
        path = "/admin/v2/persistent/" + settings.topic(topic).split("://", 1)[1] + "/stats"
        stats = admin.request("GET", path, ok=(200, 404)) or {}
        sub = (stats.get("subscriptions") or {}).get("reconcile") or {}
        if sub.get("msgBacklog") or sub.get("unackedMessages"):
            return False
    return True


def _config_map(name: str, settings: Settings) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"webServiceURL": settings.pulsar_admin_url,
                     "brokerServiceURL": settings.pulsar_service_url}}


def _function(name: str, config: str, topic: str, **spec: Any) -> dict[str, Any]:
    body = example("function.yaml", "Function")
    body["metadata"] = {"name": name}
    body["spec"]["pulsar"] = {"pulsarConfig": config}
    body["spec"]["input"] = {"topics": [topic], "typeClassName": "java.lang.String"}
    body["spec"].pop("output", None)
    for key in ("minReplicas", "maxReplicas", "autoscaling"):
        body["spec"].pop(key, None)
    body["spec"].update(spec)
    return body


# ------------------------------------------------------------------ 1. no secret in any topic
def _base64_forms(value: bytes) -> set[bytes]:
    """The part of base64(... + value + ...) that only `value` decides, for each of the three
    alignments it can have in a longer encoded string (standard and URL-safe alphabets)."""
    forms = set()
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + value)
        start, end = (pad * 8 + 5) // 6, (pad + len(value)) * 8 // 6
        inner = encoded[start:end]
        forms |= {inner, inner.replace(b"+", b"-").replace(b"/", b"_")}
    return forms


def needles(values: list[str]) -> dict[bytes, str]:
    """What to search for: each value as UTF-8 and its base64 forms -> the value."""
    out = {}
    for value in values:
        raw = value.encode()
        out[raw] = value
        out.update(dict.fromkeys(_base64_forms(raw), value))
    return out


@dataclass
class Scan:
    topics: list[str] = field(default_factory=list)
    messages: int = 0
    bytes: int = 0
    hits: list[str] = field(default_factory=list)
    per_namespace: Counter[str] = field(default_factory=Counter)


def _message_bytes(message: Any) -> bytes:
    """Everything a reader of the message sees: payload, key, ordering key, properties."""
    parts = [message.data(), message.partition_key().encode(), message.ordering_key().encode()]
    parts += [f"{k}={v}".encode() for k, v in message.properties().items()]
    return b"\x00".join(parts)


def _search(chunk: list[tuple[str, bytes]], wanted: dict[bytes, str], scan: Scan) -> None:
    """Search one chunk of (where, bytes) at once; locate the messages only when it hits."""
    blob = b"\x01".join(data for _where, data in chunk)
    found = [needle for needle in wanted if needle in blob]
    for needle in found:
        for where, data in chunk:
            if needle in data:
                form = "raw" if needle == wanted[needle].encode() else "base64"
                scan.hits.append(f"{wanted[needle]!r} ({form}) in {where}")


def scan_topics(settings: Settings, topics: list[str], values: list[str],
                scan: Scan | None = None) -> Scan:
    """Read every message of every topic from the start and search it for `values`."""
    scan = scan or Scan()
    wanted = needles(values)
    client = pulsar_client.connect(settings)
    try:
        for topic in topics:
            scan.topics.append(topic)
            reader = client.create_reader(topic, pulsar.MessageId.earliest,
                                          reader_name=f"secret-scan-{secrets.token_hex(3)}")
            try:
                chunk: list[tuple[str, bytes]] = []
                size = 0
                while reader.has_message_available():
                    message = reader.read_next(timeout_millis=30_000)
                    data = _message_bytes(message)
                    chunk.append((f"{topic} message {message.message_id()}", data))
                    size += len(data)
                    scan.messages += 1
                    scan.bytes += len(data)
                    scan.per_namespace[topic.split("://", 1)[1].rsplit("/", 1)[0]] += 1
                    if size > 32 << 20:
                        _search(chunk, wanted, scan)
                        chunk, size = [], 0
                _search(chunk, wanted, scan)
            finally:
                reader.close()
    finally:
        client.close()
    return scan


def every_topic(admin: pulsar_client.PulsarAdmin) -> list[str]:
    """Every persistent topic of every namespace of every tenant, system topics included
    (partitioned topics as their partitions, which is where the messages are)."""
    topics = []
    for tenant in admin.request("GET", "/admin/v2/tenants"):
        for namespace in admin.request("GET", f"/admin/v2/namespaces/{tenant}"):
            listed = admin.request("GET", f"/admin/v2/namespaces/{namespace}/topics"
                                          "?mode=PERSISTENT&includeSystemTopic=true")
            topics += [t for t in listed if t.startswith("persistent://")]
    return sorted(set(topics))


def example_secrets() -> list[str]:
    """The one literal credential in examples/ (functionmesh.yaml's Elasticsearch password),
    which tests apply unchanged; it must not reach a topic either."""
    mesh = example("functionmesh.yaml", "FunctionMesh")
    return [mesh["spec"]["sinks"][0]["sinkConfig"]["password"]]


def test_no_secret_in_any_topic(stack: devstack.StackInfo, settings: Settings, namespace: str,
                                topic_prefix: str, tmp_path: Path) -> None:
    """Runs last. First puts a secret of its own through a real operator run (so the scan
    always has something real to find), then reads every topic of the stack's Pulsar."""
    ws = watch_settings(settings, namespace)
    secret = new_secret("topic-scan")
    function = _function("scan-me", "pulsar", topic_prefix + "in")
    function["metadata"]["annotations"] = {"example.com/api-token": secret}
    function["spec"]["funcConfig"] = {"greeting": "hi", "password": secret,
                                      "database": {"credentials": {"user": "app", "pass": secret}}}
    function["spec"]["pod"] = {"env": [{"name": "API_TOKEN", "value": secret}]}
    key = f"Function/{namespace}/scan-me"
    with Operator(ws, tmp_path / "operator.log") as operator:
        _apply(stack, namespace, _config_map("pulsar", ws))
        _apply(stack, namespace, function)
        operator.wait("Function Ready", lambda: _is_ready(stack, "function", "scan-me", namespace))

        def published() -> list[dict[str, Any]]:
            return [json.loads(e.object) for _m, e in read_topic(ws, events.RESOURCE_EVENTS)
                    if e.key == key and e.object]
        operator.wait("the CR published", lambda: bool(published()), 60)
        operator.wait("its StatefulSet published", lambda: any(
            e.name == "scan-me-function" for _m, e in read_topic(ws, events.POD_EVENTS)), 60)
    # The secret went through the watcher, at each place, and came out as a hash.
    spec = published()[-1]["spec"]
    assert spec["funcConfig"]["password"].startswith("redacted:")
    assert spec["funcConfig"]["database"]["credentials"].startswith("redacted:")
    assert spec["pod"]["env"][0]["value"].startswith("redacted:")

    # The scanner finds what it looks for, raw, base64-encoded at any alignment, in a
    # property: a canary on a topic of its own (never registered, so never a hit below).
    canary = f"canary-{secrets.token_hex(8)}"
    canary_topic = ws.topic("secret-scan-canary")
    client = pulsar_client.connect(ws)
    try:
        producer = client.create_producer(canary_topic)
        producer.send(b'{"x": "' + canary.encode() + b'"}')
        for pad in (b"", b"a", b"ab"):
            producer.send(b"blob:" + base64.b64encode(pad + canary.encode() + b"tail"))
        producer.send(b"nothing here", properties={"note": canary})
        producer.send(b"nothing at all")
    finally:
        client.close()
    control = scan_topics(ws, [canary_topic], [canary])
    assert control.messages == 6 and len(control.hits) == 5, control.hits

    started = time.monotonic()
    values = sorted(set(used_secrets()) | set(example_secrets()))
    admin = pulsar_client.PulsarAdmin(settings)
    topics = every_topic(admin)
    result = scan_topics(settings, topics, values)
    took = time.monotonic() - started
    print(f"\nsecret scan: {result.messages} messages ({result.bytes / 1e6:.1f} MB) in "
          f"{len(result.topics)} topics of {len(result.per_namespace)} namespaces, "
          f"{len(values)} secret values ({len(needles(values))} raw and base64 forms), "
          f"{len(result.hits)} hits, {took:.1f}s")
    for name, count in result.per_namespace.most_common():
        print(f"  {name}: {count} messages")
    assert secret in values and len(values) >= 2
    assert ws.topic(events.RESOURCE_EVENTS) in topics and ws.topic(events.POD_EVENTS) in topics
    assert result.messages > 0 and result.per_namespace[ws.system_namespace] > 0
    report("secret scan", {"messages": result.messages, "megabytes": round(result.bytes / 1e6, 1),
                           "topics": len(result.topics), "namespaces": len(result.per_namespace),
                           "secret_values": len(values), "forms_searched": len(needles(values)),
                           "hits": len(result.hits)})
    assert not result.hits, "secrets found on the topics:\n  " + "\n  ".join(result.hits[:20])


# ------------------------------------------------------------------ 2. RBAC, from the audit log
# Permissions of deploy/'s ClusterRole that no request of the operator can show in the audit
# log, with why they are still needed. Keep it to what cannot be exercised as a request.
ALLOWED_UNSEEN: dict[Perm, str] = {
    (GROUP, f"{plural}/finalizers", "update"):
        "checked inside admission (OwnerReferencesPermissionEnforcement, on in the dev stack) "
        "when a child with blockOwnerDeletion is written: no request of its own; a missing "
        "rule shows as a 403 on that write"
    for plural in ("functions", "sources", "sinks", "functionmeshes")
}


def granted(objects: list[dict[str, Any]]) -> dict[Perm, int]:
    """Each (group, resource, verb) deploy/'s ClusterRoles grant -> the index of its rule
    (fmesh-events' rules, then fmesh-events-secrets')."""
    rules = [rule for o in objects if o["kind"] == "ClusterRole" for rule in o["rules"]]
    return {(g, r, v): index for index, rule in enumerate(rules)
            for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


@pytest.fixture
def deploy_rbac(stack: devstack.StackInfo) -> Iterator[list[dict[str, Any]]]:
    """deploy/'s RBAC objects applied for real; yields the whole rendered kustomization."""
    with deploy_objects.applied(stack, "test_security") as objects:
        yield objects


def _service_account_kubeconfig(stack: devstack.StackInfo, path: Path) -> Path:
    """A kubeconfig holding a real token of the ServiceAccount (TokenRequest, 2 hours)."""
    token = stack.kubectl("create", "token", SA_NAME, "-n", SA_NAMESPACE,
                          "--duration=7200s").stdout.strip()
    assert stack.kubeconfig is not None
    config = yaml.safe_load(stack.kubeconfig.read_text())
    config["users"] = [{"name": SA_NAME, "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = SA_NAME
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


class FakeMetricsServer:
    """metrics.k8s.io for KWOK's pods (which have no kubelet to measure them), served through
    the API server's aggregator as metrics-server is (an APIService, a Service of type
    ExternalName pointing at localhost): every pod uses 3 times the CPU it requests, so
    autoscaled CRs scale up. It stands in for the real node's metrics-server meanwhile."""

    APISERVICE = "v1beta1.metrics.k8s.io"
    SERVICE = "fmesh-test-fake-metrics"

    def __init__(self, stack: devstack.StackInfo) -> None:
        self.stack = stack
        self.pod_lists = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                match = re.fullmatch(r"/apis/metrics\.k8s\.io/v1beta1/namespaces/([^/]+)/pods",
                                     url.path)
                if url.path == "/apis/metrics.k8s.io/v1beta1":
                    body: dict[str, Any] = {
                        "kind": "APIResourceList", "apiVersion": "v1",
                        "groupVersion": "metrics.k8s.io/v1beta1",
                        "resources": [{"name": "pods", "singularName": "", "namespaced": True,
                                       "kind": "PodMetrics", "verbs": ["get", "list"]}]}
                elif match:
                    query = urllib.parse.parse_qs(url.query)
                    body = fake.pod_metrics(match.group(1), query.get("labelSelector", [""])[0])
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(stack.dir / "pki" / "apiserver.crt", stack.dir / "pki" / "apiserver.key")
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def pod_metrics(self, namespace: str, selector: str) -> dict[str, Any]:
        self.pod_lists += 1
        args = ["get", "pods", "-n", namespace, "-o", "json"] + (["-l", selector] if selector else [])
        pods = json.loads(self.stack.kubectl(*args).stdout)["items"]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        items = []
        for pod in pods:
            containers = []
            for container in pod["spec"]["containers"]:
                requested = ((container.get("resources") or {}).get("requests") or {}).get("cpu")
                millis = 3 * _millicores(requested) if requested else 100
                containers.append({"name": container["name"],
                                   "usage": {"cpu": f"{millis}m", "memory": "64Mi"}})
            items.append({"metadata": {"name": pod["metadata"]["name"], "namespace": namespace},
                          "timestamp": now, "window": "15s", "containers": containers})
        return {"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {}, "items": items}

    def __enter__(self) -> FakeMetricsServer:
        existing = self.stack.kubectl("get", "apiservice", self.APISERVICE, "-o", "json",
                                      check=False)
        # The real node's metrics-server serves only real pods: this test's KWOK pods need
        # the fake one for a while; the real one's APIService is put back on exit.
        self.replaced: dict[str, Any] | None = None
        if existing.returncode == 0 and self.SERVICE not in existing.stdout:
            real = json.loads(existing.stdout)
            self.replaced = {"apiVersion": real["apiVersion"], "kind": real["kind"],
                             "metadata": {"name": self.APISERVICE}, "spec": real["spec"]}
        self.thread.start()
        port = self.server.server_address[1]
        manifest = {"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": self.SERVICE, "namespace": "kube-system"},
             "spec": {"type": "ExternalName", "externalName": "localhost"}},
            {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
             "metadata": {"name": self.APISERVICE},
             "spec": {"group": "metrics.k8s.io", "version": "v1beta1",
                      "insecureSkipTLSVerify": True, "groupPriorityMinimum": 100,
                      "versionPriority": 100,
                      "service": {"namespace": "kube-system", "name": self.SERVICE,
                                  "port": port}}}]}
        self.stack.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        deadline = time.monotonic() + 90
        while self.stack.kubectl("get", "apiservice", self.APISERVICE, "-o",
                                 "jsonpath={.status.conditions[0].status}").stdout != "True":
            if time.monotonic() > deadline:
                self.__exit__()
                raise AssertionError("the fake metrics.k8s.io APIService is not Available")
            time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        # The APIService first: an unavailable aggregated API breaks every client's discovery.
        if self.replaced is not None:
            self.stack.kubectl("replace", "-f", "-", input=json.dumps(self.replaced), check=False)
        else:
            self.stack.kubectl("delete", "apiservice", self.APISERVICE, "--ignore-not-found",
                               check=False)
        self.stack.kubectl("delete", "service", self.SERVICE, "-n", "kube-system",
                           "--ignore-not-found", check=False)
        self.server.shutdown()
        self.server.server_close()


def _millicores(value: Any) -> int:
    text = str(value)
    return int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)


@dataclass
class AuditUse:
    requests: int = 0
    forbidden: list[str] = field(default_factory=list)
    codes: Counter[int] = field(default_factory=Counter)
    used: Counter[Perm] = field(default_factory=Counter)
    non_resource: Counter[str] = field(default_factory=Counter)


def read_audit(path: Path, offset: int, user: str) -> AuditUse:
    """The user's requests in the audit log after `offset`, as permissions. A patch answered
    201 Created (server-side apply of a new object) was authorized as create as well."""
    use = AuditUse()
    seen: set[str] = set()
    with path.open("rb") as log:
        log.seek(offset)
        lines = log.read().splitlines()
    for line in lines:
        if not line.strip():
            continue
        event = json.loads(line)
        if event["user"].get("username") != user or event.get("impersonatedUser"):
            continue
        code = int((event.get("responseStatus") or {}).get("code") or 0)
        if event["auditID"] in seen and event["stage"] != "ResponseComplete":
            continue
        if event["auditID"] not in seen:
            seen.add(event["auditID"])
            use.requests += 1
        if event["stage"] != "ResponseComplete":
            continue
        use.codes[code] += 1
        ref = event.get("objectRef")
        if code == 403:
            use.forbidden.append(f"{event['verb']} {event['requestURI']}")
        if not ref:
            use.non_resource[f"{event['verb']} {event['requestURI'].split('?')[0]}"] += 1
            continue
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        use.used[(ref.get("apiGroup", ""), resource, event["verb"])] += 1
        if event["verb"] == "patch" and code == 201:
            use.used[(ref.get("apiGroup", ""), resource, "create")] += 1
    return use


def _mesh(topic_prefix: str) -> dict[str, Any]:
    mesh = example("functionmesh-pipeline.yaml", "FunctionMesh")
    mesh["metadata"] = {"name": "mesh"}
    spec = mesh["spec"]
    spec["sources"][0]["output"]["topic"] = topic_prefix + "people"
    counter = spec["functions"][0]
    counter["input"]["topics"] = [topic_prefix + "people"]
    counter["output"]["topic"] = topic_prefix + "counts"
    extra = json.loads(json.dumps(counter))
    extra["name"] = "extra"
    for key in ("minReplicas", "maxReplicas", "autoscaling"):
        extra.pop(key)
    spec["functions"].append(extra)
    spec["sinks"][0]["input"]["topics"] = [topic_prefix + "counts"]
    for entries in (spec["sources"], spec["functions"], spec["sinks"]):
        for entry in entries:
            entry["pulsar"] = {"pulsarConfig": "pulsar"}
    return mesh


def _drop_finalizers(stack: devstack.StackInfo, namespace: str) -> None:
    for kind in ("function", "sink"):
        names = stack.kubectl("get", kind, "-n", namespace, "-o", "name", check=False).stdout.split()
        for name in names:
            stack.kubectl("patch", name, "-n", namespace, "--type=merge",
                          "-p", '{"metadata": {"finalizers": null}}', check=False)


def _exercise_every_path(stack: devstack.StackInfo, ws: Settings, namespace: str,
                         mesh: dict[str, Any], workloads: tuple[dict[str, Any], ...],
                         log_path: Path, env: dict[str, str]) -> int:
    """The operator, as the ServiceAccount, through create, update, kubectl scale, the
    scaler, an immutable change, a restart, mesh entries removed, cleanupSubscription and a
    dead-lettered CR. Returns how many pod metrics lists the fake metrics.k8s.io served."""
    with FakeMetricsServer(stack) as metrics, Operator(ws, log_path, env=env) as operator:
        for doc in (_config_map("pulsar", ws), *workloads, mesh):
            _apply(stack, namespace, doc)
        for kind, name in (("function", "fn"), ("source", "src"), ("sink", "snk"),
                           ("function", "cleaner"), ("functionmesh", "mesh")):
            operator.wait(f"{kind} {name} Ready",
                          lambda k=kind, n=name: _is_ready(stack, k, n, namespace))  # type: ignore[misc]
        # The failing CR: retried, then dead-lettered with a Warning Event.
        operator.wait("broken gave up", lambda: _condition(
            _get(stack, "function", "broken", namespace), "Ready").get("reason") == "ReconcileGaveUp")
        # The scaler writes /scale of each kind.
        for kind, name in (("function", "fn"), ("source", "src"), ("sink", "snk")):
            operator.wait(f"{kind} {name} scaled up", lambda k=kind, n=name: (  # type: ignore[misc]
                (_get(stack, k, n, namespace) or {}).get("spec", {}).get("replicas", 0) >= 2))
        # Each spec change below waits for the CR to settle first: a change racing a status
        # refresh of the same CR can be skipped by the reconciler (a bug of its own, reported).
        def quiet() -> bool:
            return _settled(stack, "function", "fn", namespace, "fn-function") and _caught_up(ws)
        # An update, and kubectl scale.
        operator.wait("fn settled", quiet)
        stack.kubectl("patch", "function", "fn", "-n", namespace, "--type=merge",
                      "-p", '{"spec": {"funcConfig": {"greeting": "changed"}}}')
        stack.kubectl("scale", "function", "cleaner", "-n", namespace, "--replicas=2")
        operator.wait("kubectl scale reaches the StatefulSet", lambda: (_get(
            stack, "statefulset", "cleaner-function", namespace) or {}).get("spec", {})
            .get("replicas") == 2)
        # An immutable change: the StatefulSet is replaced.
        operator.wait("fn settled after the update", quiet)
        claim = {"metadata": {"name": "state"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
        stack.kubectl("patch", "function", "fn", "-n", namespace, "--type=merge",
                      "-p", json.dumps({"spec": {"volumeClaimTemplates": [claim]}}))
        operator.wait("StatefulSet replaced", lambda: [c["metadata"]["name"] for c in (_get(
            stack, "statefulset", "fn-function", namespace) or {}).get("spec", {}).get(
            "volumeClaimTemplates", [])] == ["state"])
        # A restart: what this process stored is gone, children are read before apply.
        operator.wait("snk settled", lambda: _settled(stack, "sink", "snk", namespace,
                                                      "snk-sink") and _caught_up(ws))
        operator.stop()
        operator.start()
        stack.kubectl("patch", "sink", "snk", "-n", namespace, "--type=merge",
                      "-p", '{"spec": {"sinkConfig": {"batchSize": 300}}}')
        operator.wait("sink reconciled after the restart",
                      lambda: _settled(stack, "sink", "snk", namespace, "snk-sink"))
        # Mesh entries removed: their children are deleted (one of each kind).
        mesh["spec"]["functions"] = mesh["spec"]["functions"][:1]
        del mesh["spec"]["sources"], mesh["spec"]["sinks"]
        _apply(stack, namespace, mesh)
        for kind, name in (("function", "mesh-extra"), ("source", "mesh-people"),
                           ("sink", "mesh-counts-log")):
            operator.wait(f"{kind} {name} deleted",
                          lambda k=kind, n=name: _get(stack, k, n, namespace) is None)  # type: ignore[misc]
        # A delete with cleanupSubscription: the subscription goes, then the CR.
        stack.kubectl("delete", "function", "cleaner", "-n", namespace, "--wait=false")
        operator.wait("cleaner gone", lambda: _get(stack, "function", "cleaner", namespace) is None)
        return metrics.pod_lists


def test_operator_under_deploy_rbac_is_never_forbidden_and_uses_every_rule(
        stack: devstack.StackInfo, settings: Settings, namespace: str, topic_prefix: str,
        deploy_rbac: list[dict[str, Any]], tmp_path: Path) -> None:
    if stack.backend != "local":
        pytest.skip("the audit log is a feature of the local stack")
    audit = local.audit_log_path(stack)
    assert audit.exists(), "this stack has no audit log: `fmesh-events dev down` and `dev up`"
    plugins = " ".join(stack.commands.get("kube-apiserver", []))
    assert all(p in plugins for p in local.EXTRA_ADMISSION_PLUGINS), \
        "this stack predates OwnerReferencesPermissionEnforcement: `dev down` and `dev up`"
    assert SA_USER in local.AUDITED_USERS
    role = granted(deploy_rbac)
    started = time.monotonic()

    # The binding is in effect (asked as admin, impersonating: not in the audit log).
    def can(verb: str, resource: str) -> bool:
        return stack.kubectl("auth", "can-i", verb, resource, "-A", f"--as={SA_USER}",
                             check=False).stdout.strip() == "yes"
    deadline = time.monotonic() + 30
    while not can("watch", f"functions.{GROUP}"):
        assert time.monotonic() < deadline, "the ServiceAccount's binding never took effect"
        time.sleep(0.5)
    kubeconfig = _service_account_kubeconfig(stack, tmp_path / "operator.kubeconfig")
    ws = watch_settings(settings, namespace).model_copy(update={"kubeconfig": kubeconfig})

    # Pulsar side: an input subscription for the cleanupSubscription path.
    cleaner_topic, subscription = topic_prefix + "cleaner-in", "public/default/cleaner"
    client = pulsar_client.connect(ws)
    client.subscribe(cleaner_topic, subscription).close()
    client.close()
    admin = pulsar_client.PulsarAdmin(ws)
    subscriptions = "/admin/v2/persistent/" + cleaner_topic.split("://", 1)[1] + "/subscriptions"

    # Autoscaled with a CPU target (metrics from the fake metrics.k8s.io) and replicas below
    # minReplicas, which the scaler raises to the minimum whatever the metrics say.
    cpu = {"cpu": {"targetUtilizationPercent": 50}}
    fn = _function("fn", "pulsar", topic_prefix + "fn-in", replicas=1, minReplicas=2,
                   maxReplicas=3, autoscaling=cpu)
    src = example("source.yaml", "Source")
    src["metadata"] = {"name": "src"}
    src["spec"].update(pulsar={"pulsarConfig": "pulsar"}, replicas=1, minReplicas=2,
                       maxReplicas=3, autoscaling=cpu)
    src["spec"]["output"]["topic"] = topic_prefix + "src-out"
    snk = example("sink.yaml", "Sink")
    snk["metadata"] = {"name": "snk"}
    snk["spec"].update(pulsar={"pulsarConfig": "pulsar"}, replicas=1, minReplicas=2,
                       maxReplicas=3, autoscaling=cpu, subscriptionName="snk")
    snk["spec"]["input"] = {"topics": [topic_prefix + "snk-in"],
                            "typeClassName": "java.lang.String"}
    snk["spec"]["sinkConfig"]["password"] = new_secret("rbac-sink-password")
    # cleaner names an authSecret (a token the stack's Pulsar, without authentication,
    # ignores): the clean-up reads that Secret, by name, to delete as the function's identity.
    auth_secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cleaner-auth"},
                   "stringData": {"clientAuthenticationPlugin": TOKEN_PLUGIN,
                                  "clientAuthenticationParameters":
                                      "token:" + new_secret("rbac-cleanup-token")}}
    _apply(stack, namespace, auth_secret)
    cleaner = _function("cleaner", "pulsar", cleaner_topic, cleanupSubscription=True,
                        tenant="public", namespace="default")
    cleaner["spec"]["pulsar"]["authSecret"] = "cleaner-auth"
    broken = _function("broken", "no-such-config", topic_prefix + "broken-in")
    mesh = _mesh(topic_prefix)

    offset = audit.stat().st_size
    env = {"FMESH_RECONCILE_MAX_ATTEMPTS": "2", "FMESH_SCALE_INTERVAL_SECONDS": "2"}
    try:
        metrics_read = _exercise_every_path(stack, ws, namespace, mesh, (fn, src, snk, cleaner, broken),
                                            tmp_path / "operator.log", env)
    finally:  # a failed run must not leave the namespace stuck on cleaner's finalizer
        _drop_finalizers(stack, namespace)
    assert subscription not in admin.request("GET", subscriptions)
    dlq = read_messages(ws, events.RECONCILE_DLQ)
    assert any("no-such-config" in m.properties().get("reason", "") for m in dlq)
    warnings = stack.kubectl("get", "events", "-n", namespace, "--field-selector",
                             "involvedObject.name=broken").stdout
    assert "ReconcileGaveUp" in warnings

    use = read_audit(audit, offset, SA_USER)
    print(f"\nfake metrics.k8s.io: {metrics_read} pod metrics lists served")
    took = time.monotonic() - started
    used = set(use.used)
    unused = sorted(set(role) - used - set(ALLOWED_UNSEEN))
    print(f"\naudit: {use.requests} requests by {SA_USER}, {len(use.forbidden)} answered 403; "
          f"codes {dict(sorted(use.codes.items()))}; {len(used & set(role))} of {len(role)} "
          f"granted permissions used, {len(set(role) - used)} unseen "
          f"({len(ALLOWED_UNSEEN)} allowed: finalizers), {len(unused)} unused; {took:.0f}s")
    by_rule: dict[int, list[str]] = {}
    for perm, index in sorted(role.items(), key=lambda item: (item[1], item[0])):
        by_rule.setdefault(index, []).append(f"{perm[1]} {perm[2]}={use.used.get(perm, 0)}")
    for index, counts in by_rule.items():
        print(f"  rule {index}: {', '.join(counts)}")
    for path, count in use.non_resource.most_common():
        print(f"  non-resource {path}: {count}")
    report("rbac", {"requests": use.requests, "forbidden": len(use.forbidden),
                    "permissions_granted": len(role), "permissions_used": len(used & set(role)),
                    "unused": len(unused), "seen_only_in_admission": len(ALLOWED_UNSEEN)})
    assert use.requests > 100, "the operator made (almost) no request as the ServiceAccount"
    assert not use.forbidden, f"answered 403: {use.forbidden[:10]}"
    assert not used - set(role), f"used without a rule (and not refused?): {used - set(role)}"
    assert not unused, ("rules of deploy/rbac.yaml no request used (exercise the path or drop "
                        "the rule):\n  " + "\n  ".join(map(str, unused)))
    stale = sorted(set(ALLOWED_UNSEEN) & used)
    assert not stale, f"seen after all, drop them from ALLOWED_UNSEEN: {stale}"
    assert set(ALLOWED_UNSEEN) <= set(role), "ALLOWED_UNSEEN names a permission not granted"


# ------------------------------------------------------------------ 3. Pulsar token auth
OPERATOR_ROLE = "fmesh-operator"
OTHER_ROLE = "auditor-without-grant"


@dataclass
class AuthPulsar:
    stack: devstack.StackInfo  # the second Pulsar only
    secret_key: str

    def token(self, role: str) -> str:
        return local.pulsar_token(self.secret_key, role)

    @property
    def broker_log(self) -> Path:
        return self.stack.dir / "logs" / "pulsar-broker" / "pulsar.log"


@pytest.fixture
def auth_pulsar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthPulsar]:
    """A second Pulsar standalone from the stack's build, token authentication and
    authorization on, the operator's role a super-user; stopped at the end."""
    lib = builds.ensure_pulsar(Settings().cache_dir, Progress(prefix="security test"))
    tool = builds.Toolchain.pulsar_only(lib)
    home = tmp_path_factory.mktemp("auth-pulsar")
    pulsar_stack = devstack.StackInfo(dir=home)
    secret_key = secrets.token_hex(32)
    try:
        local.start_pulsar(tool, pulsar_stack, auth_token_secret=secret_key,
                           super_users=(OPERATOR_ROLE,))
        local.wait_pulsar(pulsar_stack, timeout=300)
        yield AuthPulsar(pulsar_stack, secret_key)
    finally:
        local.stop(pulsar_stack)


def _history(settings: Settings, token: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMESH_")}
    env.update(FMESH_PULSAR_SERVICE_URL=settings.pulsar_service_url,
               FMESH_PULSAR_ADMIN_URL=settings.pulsar_admin_url,
               FMESH_SYSTEM_NAMESPACE=settings.system_namespace)
    if token is not None:
        env["FMESH_PULSAR_AUTH_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "fmesh_events", "history", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def _read_as(settings: Settings, topic: str, token: str | None) -> list[bytes]:
    auth = {} if token is None else {"authentication": pulsar.AuthenticationToken(token)}
    client = pulsar.Client(settings.pulsar_service_url, operation_timeout_seconds=10,
                           logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error), **auth)
    try:
        reader = client.create_reader(topic, pulsar.MessageId.earliest)
        out = []
        while reader.has_message_available():
            out.append(reader.read_next(timeout_millis=10_000).data())
        return out
    finally:
        client.close()


def _admin_as(settings: Settings, path: str, token: str | None) -> tuple[int, str]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    response = urllib3.PoolManager(retries=False).request(
        "GET", settings.pulsar_admin_url + path, headers=headers, timeout=30)
    return response.status, response.data.decode(errors="replace")


def _auth_failures(log: Path) -> int:
    text = log.read_text(errors="replace") if log.exists() else ""
    return text.count("Failed to authenticate: operation=connect")


def test_pulsar_token_auth_lets_the_operator_in_and_keeps_others_out(
        stack: devstack.StackInfo, settings: Settings, namespace: str,
        auth_pulsar: AuthPulsar, tmp_path: Path) -> None:
    started = time.monotonic()
    operator_token = auth_pulsar.token(OPERATOR_ROLE)
    ps = settings.model_copy(update={
        "pulsar_service_url": auth_pulsar.stack.pulsar_service_url,
        "pulsar_admin_url": auth_pulsar.stack.pulsar_admin_url,
        "pulsar_auth_token": SecretStr(operator_token),
        "system_namespace": f"public/fmesh-auth-{secrets.token_hex(3)}",
        "watch_namespaces": [namespace],
    })
    secret = new_secret("pulsar-auth")
    function = _function("guarded", "pulsar", "persistent://public/default/guarded-in",
                         funcConfig={"password": secret})
    key = f"Function/{namespace}/guarded"
    with Operator(ps, tmp_path / "operator.log") as operator:
        _apply(stack, namespace, _config_map("pulsar", ps))
        _apply(stack, namespace, function)
        operator.wait("Function Ready", lambda: _is_ready(stack, "function", "guarded", namespace))
        operator.wait("its events on the topics", lambda: any(
            e.key == key for _m, e in read_topic(ps, events.RESOURCE_EVENTS)), 60)
        records = [events.decode_record(events.PARSED_RECONCILE_RECORD, m.data())
                   for m in read_messages(ps, events.RECONCILE_LOG)]
        assert any(r["key"] == key and r["outcome"] == "OK" for r in records), records
    operator_log = operator.log_path.read_text(errors="replace")
    for refusal in ("AuthenticationError", "AuthorizationError", "HTTP 401", "HTTP 403"):
        assert refusal not in operator_log, f"the operator was refused ({refusal}):\n{operator_log}"

    # history, with the operator's token: the story is there.
    story = _history(ps, operator_token, f"function/{namespace}/guarded", "-o", "json")
    assert story.returncode == 0, story.stderr
    whats = [e["what"] for e in json.loads(story.stdout)]
    assert "CREATED" in whats and "RECONCILED" in whats, whats
    # Nothing secret on this Pulsar's topics either.
    topics = [ps.topic(t) for t in (events.RESOURCE_EVENTS, events.POD_EVENTS,
                                    events.RECONCILE_LOG, events.SCALE_SIGNALS)]
    present = _listed(ps)
    found = scan_topics(ps, [t for t in topics if t.rsplit("/", 1)[1] in present], [secret])
    assert found.messages > 0 and not found.hits, found.hits

    audit_topics = [ps.topic(events.RESOURCE_EVENTS), ps.topic(events.RECONCILE_LOG)]
    for topic in audit_topics:
        # The operator's token reads them (the control).
        assert _read_as(ps, topic, operator_token)
        # No token: the broker refuses the connection (logged), the client gives up (Timeout).
        before = _auth_failures(auth_pulsar.broker_log)
        with pytest.raises(pulsar.Timeout):
            _read_as(ps, topic, None)
        assert _auth_failures(auth_pulsar.broker_log) > before
        # A token the broker did not sign, for the operator's role: refused the same way.
        forged = local.pulsar_token(secrets.token_hex(32), OPERATOR_ROLE)
        before = _auth_failures(auth_pulsar.broker_log)
        with pytest.raises(pulsar.Timeout):
            _read_as(ps, topic, forged)
        assert _auth_failures(auth_pulsar.broker_log) > before
        # Another role: authenticated, not authorized.
        with pytest.raises(pulsar.AuthorizationError):
            _read_as(ps, topic, auth_pulsar.token(OTHER_ROLE))
        # The admin API: peeking the first message.
        peek = "/admin/v2/persistent/" + topic.split("://", 1)[1] + \
            "/examinemessage?initialPosition=earliest&messagePosition=1"
        assert _admin_as(ps, peek, operator_token)[0] == 200
        status, body = _admin_as(ps, peek, None)
        assert status == 401 and "Authentication required" in body, (status, body[:300])
        status, body = _admin_as(ps, peek, auth_pulsar.token(OTHER_ROLE))
        assert status == 401 and "Unauthorized to validateTopicOperation" in body, (status, body)
    report("pulsar token auth", {
        "operator_refusals": 0, "audit_topics_checked": len(audit_topics),
        "refused_without_token": True, "refused_forged_token": True,
        "refused_other_role": True, "admin_api_401": True})
    print(f"\npulsar auth: operator Ready and audited with its token; no token / forged token: "
          f"connection refused (Timeout), HTTP 401; role {OTHER_ROLE}: AuthorizationError, "
          f"HTTP 401; {time.monotonic() - started:.0f}s")


def _listed(settings: Settings) -> set[str]:
    admin = pulsar_client.PulsarAdmin(settings)
    return {t.rsplit("/", 1)[1] for t in admin.request(
        "GET", f"/admin/v2/persistent/{settings.system_namespace}")}

