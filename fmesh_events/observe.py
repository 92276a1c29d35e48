"""The operator's HTTP endpoints: /metrics (Prometheus), /healthz and /readyz.

- /healthz: the process and its components' threads are alive (a kubelet restarts it if not).
- /readyz: the API server and Pulsar both answer (checked at most every few seconds).
- /metrics: every stage's counters, plus the backlog of the operator's own subscriptions
  (reconcile, scale), read from the Pulsar admin API when scraped.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from fmesh_events import events, kube_client, pulsar_client
from fmesh_events.settings import Settings

log = logging.getLogger("fmesh_events.observe")

READY_CACHE_SECONDS = 5.0
# (topic, subscription) of the operator's own consumers.
OWN_SUBSCRIPTIONS = ((events.RESOURCE_EVENTS, "reconcile"), (events.POD_EVENTS, "reconcile"),
                     (events.RECONCILE_REQUESTS, "reconcile"), (events.SCALE_SIGNALS, "scale"))


class Readiness:
    """Whether the API server and Pulsar answer, cached briefly (probes come every few s)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.checked = 0.0
        self.problems: list[str] = []
        self.lock = threading.Lock()

    def check(self) -> list[str]:
        with self.lock:
            if time.monotonic() - self.checked < READY_CACHE_SECONDS:
                return self.problems
            problems = []
            try:
                from kubernetes import client

                client.VersionApi(kube_client.api_client(self.settings)).get_code(
                    _request_timeout=3)
            except Exception as error:
                problems.append(f"Kubernetes API server: {error}")
            try:
                pulsar_client.PulsarAdmin(self.settings).clusters()
            except Exception as error:
                problems.append(f"Pulsar admin API: {error}")
            self.problems, self.checked = problems, time.monotonic()
            return problems


class OwnBacklog(Collector):
    """fmesh_subscription_backlog{topic,subscription}: work queued for the operator itself."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("fmesh_subscription_backlog",
                                   "Messages not yet acknowledged by the operator's consumers",
                                   labels=["topic", "subscription"])
        admin = pulsar_client.PulsarAdmin(self.settings)
        for topic, subscription in OWN_SUBSCRIPTIONS:
            path = pulsar_client.admin_topic_path(self.settings.topic(topic)) + "/stats"
            try:
                stats = admin.request("GET", path, ok=(200, 404)) or {}
                found = (stats.get("subscriptions") or {}).get(subscription)
            except Exception:
                continue
            if found is not None:
                family.add_metric([topic, subscription], float(found.get("msgBacklog") or 0))
        yield family


def serve(settings: Settings, alive: Callable[[], bool], stop: threading.Event) -> Any:
    """Start the endpoints on settings.http_port in a daemon thread; None when disabled or the
    port is taken (the operator runs on without them, and says so)."""
    if not settings.http_port:
        return None
    readiness = Readiness(settings)
    with contextlib.suppress(ValueError):  # already registered in this process
        REGISTRY.register(OwnBacklog(settings))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                self._answer(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif self.path.startswith("/healthz"):
                ok = alive()
                self._answer(200 if ok else 503, b"ok\n" if ok else b"a component stopped\n")
            elif self.path.startswith("/readyz"):
                problems = readiness.check()
                body = ("ready\n" if not problems else "\n".join(problems) + "\n").encode()
                self._answer(503 if problems else 200, body)
            else:
                self._answer(404, b"try /metrics, /healthz or /readyz\n")

        def _answer(self, status: int, body: bytes, kind: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # probes every few seconds: stay quiet
            return

    try:
        server = ThreadingHTTPServer((settings.http_host, settings.http_port), Handler)
    except OSError as error:
        log.warning("metrics and health endpoints not started", extra={
            "port": settings.http_port, "error": str(error)})
        return None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name="http").start()

    def shut_down_on_stop() -> None:
        stop.wait()
        server.shutdown()
    threading.Thread(target=shut_down_on_stop, daemon=True).start()
    log.info("serving /metrics, /healthz, /readyz", extra={"port": settings.http_port})
    return server
