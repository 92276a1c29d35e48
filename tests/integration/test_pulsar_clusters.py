"""Each function's own Pulsar cluster (issue 15), against real parts: a second Pulsar
standalone with token authentication and authorization on, started here from the stack's
build, beside the stack's own Pulsar (the operator's, without authentication).

The Functions name the second cluster through their ConfigMap (spec.pulsar.pulsarConfig) and
their credentials through authSecret (a token) or authConfig.oauth2Config (client
credentials at a small OAuth 2.0 issuer run here, which signs the broker's kind of JWT). The
watcher, reconciler, sampler and scaler run in this process as the operator's own identity;
the operator's Pulsar holds their topics only. Pods are KWOK's: the backlog is what the test
produces and drains."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pulsar
import pytest

from fmesh_events import devstack, events, pulsar_client
from fmesh_events.devstack import builds, local
from fmesh_events.devstack.progress import Progress
from fmesh_events.settings import Settings
from tests.examples import example
from tests.integration.test_security import scan_topics
from tests.integration.watch_helpers import (
    InProcessWatcher,
    drain,
    produce,
    reconciler,
    sampler_only,
    scale_decisions,
    scaler_only,
    wait_for,
    watch_settings,
)
from tests.reliability import report
from tests.secret_values import new_secret, remember_secret

TOKEN_PLUGIN = "org.apache.pulsar.client.impl.auth.AuthenticationToken"
FUNCTION_ROLE = "fn-role"  # the functions' role on the second cluster (a super-user there)
OAUTH2_ROLE = "fn-oauth"
SUBSCRIPTION = "cluster-b-sub"


@dataclass
class Issuer:
    """An OAuth 2.0 issuer: discovery and a client-credentials token endpoint."""

    url: str
    client_id: str
    client_secret: str
    tokens: list[str] = field(default_factory=list)
    refused: int = 0


@dataclass
class ClusterB:
    stack: devstack.StackInfo  # the second Pulsar only
    secret_key: str
    issuer: Issuer

    def token(self, role: str) -> str:
        return remember_secret(local.pulsar_token(self.secret_key, role))

    @property
    def admin_token(self) -> str:
        token = local.pulsar_admin_token(self.stack)
        assert token is not None
        return remember_secret(token)

    def settings(self) -> Settings:
        """The second cluster as its super-user sees it (the test's own producer and admin)."""
        from pydantic import SecretStr
        return Settings(pulsar_service_url=self.stack.pulsar_service_url,
                        pulsar_admin_url=self.stack.pulsar_admin_url,
                        pulsar_auth_token=SecretStr(self.admin_token))


def _issuer(secret_key: str) -> tuple[ThreadingHTTPServer, Issuer]:
    issuer = Issuer("", f"client-{secrets.token_hex(3)}", new_secret("oauth2-client-secret"))

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/.well-known/openid-configuration"):
                self._answer(200, {"issuer": issuer.url, "token_endpoint": f"{issuer.url}/token"})
            else:
                self._answer(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            given = (form.get("client_id", [""])[0], form.get("client_secret", [""])[0])
            if self.path != "/token" or given != (issuer.client_id, issuer.client_secret):
                issuer.refused += 1
                self._answer(401, {"error": "invalid_client"})
                return
            token = remember_secret(local.pulsar_token(secret_key, OAUTH2_ROLE))
            issuer.tokens.append(token)
            self._answer(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    issuer.url = f"http://127.0.0.1:{server.server_address[1]}"
    return server, issuer


@pytest.fixture(scope="module")
def cluster_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterB]:
    """The second Pulsar (token authentication and authorization on; the functions' roles are
    its super-users) and the OAuth 2.0 issuer; both stopped at the end."""
    lib = builds.ensure_pulsar(Settings().cache_dir, Progress(prefix="clusters test"))
    tool = builds.Toolchain.pulsar_only(lib)
    home = tmp_path_factory.mktemp("cluster-b")
    pulsar_stack = devstack.StackInfo(dir=home)
    secret_key = secrets.token_hex(32)
    server, issuer = _issuer(secret_key)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    started = time.monotonic()
    try:
        local.start_pulsar(tool, pulsar_stack, auth_token_secret=secret_key,
                           super_users=(FUNCTION_ROLE, OAUTH2_ROLE))
        local.wait_pulsar(pulsar_stack, timeout=300)
        print(f"\nsecond Pulsar (token auth) ready in {time.monotonic() - started:.1f}s")
        yield ClusterB(pulsar_stack, secret_key, issuer)
    finally:
        server.shutdown()
        local.stop(pulsar_stack)


# ------------------------------------------------------------------ helpers
def _apply(stack: devstack.StackInfo, namespace: str, *docs: dict[str, Any]) -> None:
    for doc in docs:
        stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))


def _config_map(name: str, admin_url: str, service_url: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"webServiceURL": admin_url, "brokerServiceURL": service_url}}


def _token_secret(name: str, token: str) -> dict[str, Any]:
    """An authSecret as Function Mesh defines it."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "stringData": {"clientAuthenticationPlugin": TOKEN_PLUGIN,
                           "clientAuthenticationParameters": f"token:{token}"}}


def _function(name: str, topic: str, pulsar_spec: dict[str, Any], **spec: Any) -> dict[str, Any]:
    function = example("function.yaml", "Function")
    function["metadata"] = {"name": name}
    function["spec"].update(input={"topics": [topic], "typeClassName": "java.lang.String"},
                            subscriptionName=SUBSCRIPTION, pulsar=pulsar_spec, **spec)
    function["spec"].pop("output", None)
    return function


def _autoscaled(name: str, topic: str, pulsar_spec: dict[str, Any], window: int = 5,
                replicas: int = 1) -> dict[str, Any]:
    return _function(name, topic, pulsar_spec, replicas=replicas, minReplicas=1, maxReplicas=10,
                     autoscaling={"backlog": {"targetPerReplica": 100},
                                  "behavior": {"scaleDown": {"stabilizationWindowSeconds": window}}})


def _get(stack: devstack.StackInfo, namespace: str, name: str) -> dict[str, Any]:
    got: dict[str, Any] = json.loads(
        stack.kubectl("get", "function", name, "-n", namespace, "-o", "json").stdout)
    return got


def _replicas(stack: devstack.StackInfo, namespace: str, name: str) -> int:
    return int(_get(stack, namespace, name)["spec"].get("replicas", 1))


def _subscribe(settings: Settings, topic: str) -> None:
    """The subscription a running function would have made (KWOK's pods never run one)."""
    client = pulsar_client.connect(settings)
    try:
        client.subscribe(topic, SUBSCRIPTION, initial_position=pulsar.InitialPosition.Earliest).close()
    finally:
        client.close()


def _rest(topic: str) -> str:
    return topic.replace("://", "/", 1)


def _topic_exists(settings: Settings, topic: str) -> bool:
    """Stats answer 404 for a topic the broker never had (reading them creates nothing)."""
    admin = pulsar_client.PulsarAdmin(settings)
    try:
        admin.request("GET", f"/admin/v2/{_rest(topic)}/stats")
    except pulsar_client.PulsarAdminError as error:
        if error.status == 404:
            return False
        raise
    return True


def _subscriptions(settings: Settings, topic: str) -> list[str]:
    admin = pulsar_client.PulsarAdmin(settings)
    found: list[str] = admin.request("GET", f"/admin/v2/{_rest(topic)}/subscriptions")
    return found


@pytest.fixture
def quiet_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record of the operator's code, at every level, for the secret check."""
    with caplog.at_level(logging.DEBUG, logger="fmesh_events"):
        yield caplog


def _no_secret_in(text: str, values: list[str]) -> list[str]:
    return [v[:12] + "..." for v in values if v in text]


# ------------------------------------------------------------------ tests
def test_function_on_a_token_cluster_scales_out_on_a_burst_there_and_back_in(
        stack: devstack.StackInfo, settings: Settings, namespace: str, topic_prefix: str,
        cluster_b: ClusterB, quiet_logs: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    """Backlog read and burst probe on the cluster the ConfigMap names, with the authSecret's
    token; the operator's own Pulsar never sees the topic; no token in a topic or a log."""
    ws = watch_settings(settings, namespace)
    b = cluster_b.settings()
    topic = topic_prefix + "in"
    _subscribe(b, topic)
    token = cluster_b.token(FUNCTION_ROLE)
    pulsar_spec = {"pulsarConfig": "cluster-b", "authSecret": "cluster-b-auth"}
    with InProcessWatcher(ws), reconciler(ws), scaler_only(ws), sampler_only(ws) as sampler:
        _apply(stack, namespace, _config_map("cluster-b", b.pulsar_admin_url, b.pulsar_service_url),
               _token_secret("cluster-b-auth", token), _autoscaled("burst", topic, pulsar_spec))
        wait_for("a first decision (tick)", lambda: bool(scale_decisions(ws, "burst")), 60)
        first = scale_decisions(ws, "burst")[0]
        assert first["backlog"] == 0, first["reason"]
        wait_for("the probe armed on cluster B", lambda: bool(sampler.probes), 20)
        assert {h[0] for h in sampler.probes} == set(sampler.sessions)
        assert sampler.clusters.own_key not in {h[0] for h in sampler.probes}
        burst_at = time.time()
        produce(b, topic, 450)
        took = wait_for("scaled to 5", lambda: _replicas(stack, namespace, "burst") == 5, 30)
        up = next(d for d in scale_decisions(ws, "burst") if d["applied"] and d["desiredReplicas"] == 5)
        decided_after = up["time"].timestamp() - burst_at
        assert up["trigger"] == "burst", ("the scale-up waited for a tick instead of the probe",
                                          [(d["trigger"], d["backlog"], d["reason"])
                                           for d in scale_decisions(ws, "burst")])
        assert "backlog 450" in up["reason"] and "-> 5" in up["reason"]
        assert drain(b, topic, SUBSCRIPTION) == 450
        drained_at = time.time()
        down_took = wait_for("back to minReplicas",
                             lambda: _replicas(stack, namespace, "burst") == 1, 60)
        down = next(d for d in scale_decisions(ws, "burst") if d["applied"] and d["action"] == "DOWN")
        sessions_open = len(sampler.clusters.keys())
        # The function gone: its cluster's session closes at the next tick.
        stack.kubectl("delete", "function", "burst", "-n", namespace)
        wait_for("the session on cluster B closed", lambda: not sampler.clusters.keys(), 40)
    assert decided_after < 15 and sessions_open == 1
    # The operator's own cluster: not even the topic exists there (a probe would create it).
    assert _topic_exists(b, topic) and not _topic_exists(ws, topic)
    # The token: in no topic of the operator's run, no log record, no client output.
    scan = scan_topics(ws, [ws.topic(t) for t in (events.RESOURCE_EVENTS, events.POD_EVENTS,
                                                   events.SCALE_SIGNALS, events.SCALE_DECISIONS,
                                                   events.RECONCILE_LOG)], [token])
    assert scan.messages > 0 and not scan.hits, scan.hits
    out, err = capfd.readouterr()
    assert not _no_secret_in(quiet_logs.text + out + err, [token])
    with capfd.disabled():
        print(f"\ncluster B burst of 450 -> 5 replicas: decision {decided_after:.2f}s after the "
              f"burst, seen by kubectl after {took:.1f}s; drained -> 1 replica after "
              f"{down_took:.1f}s (decision {down['time'].timestamp() - drained_at:.1f}s after "
              "the drain, 5s window)")
    report("per-cluster burst", {"decision_s": round(decided_after, 2), "kubectl_s": round(took, 1),
                                 "scale_in_s": round(down_took, 1)})


def test_a_wrong_token_gives_the_readable_decision_and_holds_while_others_scale(
        stack: devstack.StackInfo, settings: Settings, namespace: str, topic_prefix: str,
        cluster_b: ClusterB) -> None:
    ws = watch_settings(settings, namespace)
    b = cluster_b.settings()
    good_topic, bad_topic = topic_prefix + "good", topic_prefix + "bad"
    for topic in (good_topic, bad_topic):
        _subscribe(b, topic)
    wrong = remember_secret(local.pulsar_token(secrets.token_hex(32), FUNCTION_ROLE))
    config = _config_map("cluster-b", b.pulsar_admin_url, b.pulsar_service_url)
    with InProcessWatcher(ws), reconciler(ws), scaler_only(ws), sampler_only(ws, interval=3):
        _apply(stack, namespace, config, _token_secret("wrong", wrong),
               _token_secret("right", cluster_b.token(FUNCTION_ROLE)),
               _autoscaled("refused", bad_topic, {"pulsarConfig": "cluster-b", "authSecret": "wrong"},
                           replicas=2),
               _autoscaled("fine", good_topic, {"pulsarConfig": "cluster-b", "authSecret": "right"}))
        produce(b, bad_topic, 900)
        produce(b, good_topic, 300)
        wait_for("fine scaled to 3", lambda: _replicas(stack, namespace, "fine") == 3, 60)
        wait_for("a decision for refused", lambda: bool(scale_decisions(ws, "refused")), 30)
        time.sleep(4)  # a few more ticks: still held
        assert _replicas(stack, namespace, "refused") == 2
        status = wait_for("status names the cluster", lambda: "refused the token" in (
            _get(stack, namespace, "refused").get("status", {}).get("autoscaling", {})
            .get("lastDecision") or ""), 30)
    held = scale_decisions(ws, "refused")
    cluster = f"cluster {b.pulsar_admin_url} (ConfigMap cluster-b)"
    wanted = f"backlog unknown: {cluster} refused the token"
    print(f"\nrefused: {held[-1]['reason']!r} ({len(held)} decisions; status after {status:.1f}s)")
    assert all(wanted in d["reason"] and d["desiredReplicas"] == 2 and not d["applied"]
               for d in held), [d["reason"] for d in held]
    assert held[-1]["reason"] == f"no metrics ({wanted}): holding at 2"
    assert wrong not in json.dumps([d["reason"] for d in held])


def test_oauth2_client_credentials_read_the_backlog_on_their_cluster(
        stack: devstack.StackInfo, settings: Settings, namespace: str, topic_prefix: str,
        cluster_b: ClusterB, quiet_logs: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    """authConfig.oauth2Config: the key file from a Secret, an access token from the issuer,
    for the admin reads (ours) and the probe (the Pulsar client's OAuth2 plugin)."""
    ws = watch_settings(settings, namespace)
    b = cluster_b.settings()
    topic = topic_prefix + "in"
    _subscribe(b, topic)
    issuer = cluster_b.issuer
    key_file = json.dumps({"type": "client_credentials", "client_id": issuer.client_id,
                           "client_secret": issuer.client_secret, "issuer_url": issuer.url})
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "oauth2-key"},
              "stringData": {"auth.json": key_file}}
    oauth2 = {"audience": "urn:fmesh-test", "issuerUrl": issuer.url,
              "keySecretName": "oauth2-key", "keySecretKey": "auth.json"}
    pulsar_spec = {"pulsarConfig": "cluster-b", "authConfig": {"oauth2Config": oauth2}}
    tokens_before = len(issuer.tokens)
    with InProcessWatcher(ws), reconciler(ws), scaler_only(ws), sampler_only(ws, interval=3):
        _apply(stack, namespace, _config_map("cluster-b", b.pulsar_admin_url, b.pulsar_service_url),
               secret, _autoscaled("oauth", topic, pulsar_spec))
        wait_for("a first decision with backlog 0", lambda: any(
            d["backlog"] == 0 for d in scale_decisions(ws, "oauth")), 60)
        produce(b, topic, 250)
        wait_for("scaled to 3", lambda: _replicas(stack, namespace, "oauth") == 3, 60)
    assert len(issuer.tokens) > tokens_before and issuer.refused == 0
    assert not _topic_exists(ws, topic)
    out, err = capfd.readouterr()
    assert not _no_secret_in(quiet_logs.text + out + err, [issuer.client_secret, *issuer.tokens])


def test_cleanup_deletes_the_subscription_on_the_functions_cluster(
        stack: devstack.StackInfo, settings: Settings, namespace: str, topic_prefix: str,
        cluster_b: ClusterB) -> None:
    """The same topic and subscription on both clusters: the delete of a Function whose spec
    names cluster B takes it there, as the function's identity, and leaves the operator's."""
    ws = watch_settings(settings, namespace)
    b = cluster_b.settings()
    topic = topic_prefix + "in"
    _subscribe(b, topic)
    _subscribe(ws, topic)
    function = _function("cleaner", topic, {"pulsarConfig": "cluster-b", "authSecret": "cluster-b-auth"},
                         cleanupSubscription=True, replicas=1)
    with InProcessWatcher(ws), reconciler(ws):
        _apply(stack, namespace, _config_map("cluster-b", b.pulsar_admin_url, b.pulsar_service_url),
               _token_secret("cluster-b-auth", cluster_b.token(FUNCTION_ROLE)), function)
        wait_for("finalizer added", lambda: "cleanup.subscription.finalizer" in (
            _get(stack, namespace, "cleaner")["metadata"].get("finalizers") or []), 60)
        stack.kubectl("delete", "function", "cleaner", "-n", namespace, "--wait=false")
        took = wait_for("the CR gone", lambda: stack.kubectl(
            "get", "function", "cleaner", "-n", namespace, check=False).returncode != 0, 60)
    print(f"\ncleanup on cluster B: CR gone {took:.1f}s after the delete")
    assert SUBSCRIPTION not in _subscriptions(b, topic)
    assert SUBSCRIPTION in _subscriptions(ws, topic), "deleted on the operator's own cluster"
