"""The operator as a platform team runs it: one `fmesh-events run` process with every
component, its /metrics, /healthz and /readyz, and a graceful stop on SIGTERM."""

from __future__ import annotations

import json
import signal
from typing import Any

from fmesh_events import devstack
from fmesh_events.devstack.local import free_port
from fmesh_events.settings import Settings
from tests.examples import EXAMPLES, documents, example
from tests.integration.watch_helpers import http_get, spawn_watcher, wait_for, watch_settings


def test_run_serves_metrics_health_and_readiness_and_stops_gracefully(
        stack: devstack.StackInfo, settings: Settings, namespace: str, tmp_path: Any) -> None:
    ws = watch_settings(settings, namespace)
    port = free_port()
    operator = spawn_watcher(ws, tmp_path / "operator.log", components="watch,reconcile,scale",
                             http_port=port)
    try:
        wait_for("/readyz answers 200", lambda: http_get(port, "/readyz")[0] == 200, 60)
        assert http_get(port, "/healthz") == (200, "ok\n")
        config = next(d for d in documents(EXAMPLES / "function.yaml") if d["kind"] == "ConfigMap")
        config["metadata"].pop("namespace", None)
        function = example("function.yaml", "Function")
        function["metadata"] = {"name": "observed"}
        for doc in (config, function):
            stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))
        wait_for("a reconcile counted", lambda: 'fmesh_reconcile_total{outcome="OK"}' in
                 http_get(port, "/metrics")[1], 60)
        metrics = http_get(port, "/metrics")[1]
        for name in ("fmesh_watch_events_published_total", "fmesh_watch_lag_seconds",
                     "fmesh_reconcile_duration_seconds_bucket", "fmesh_subscription_backlog",
                     "fmesh_reconcile_dead_lettered_total"):
            assert name in metrics, name
        assert 'fmesh_subscription_backlog{subscription="reconcile",topic="resource-events"}' \
            in metrics
        assert http_get(port, "/nothing")[0] == 404
        operator.send_signal(signal.SIGTERM)
        assert operator.wait(30) == 0, "SIGTERM did not stop the operator cleanly"
    finally:
        if operator.poll() is None:
            operator.kill()
            operator.wait()


def test_readyz_names_what_is_unreachable(stack: devstack.StackInfo, settings: Settings,
                                          namespace: str, tmp_path: Any) -> None:
    ws = watch_settings(settings, namespace).model_copy(
        update={"pulsar_admin_url": "http://127.0.0.1:9"})
    port = free_port()
    operator = spawn_watcher(ws, tmp_path / "operator.log", components="reconcile",
                             http_port=port)
    try:
        wait_for("/readyz answers", lambda: http_get(port, "/readyz")[0] != 0, 30)
        status, body = http_get(port, "/readyz")
        assert status == 503 and "Pulsar admin API" in body
        assert "Kubernetes" not in body
    finally:
        operator.kill()
        operator.wait()
