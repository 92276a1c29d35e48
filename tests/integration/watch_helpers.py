"""Shared pieces of the integration tests and benchmarks: start a watcher or a reconciler (in
this process or as `fmesh-events run`), read a topic back, wait for a condition."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pulsar

from fmesh_events import events, kube_client, pulsar_client
from fmesh_events.events import ChangeEvent
from fmesh_events.reconcile import Reconciler
from fmesh_events.scale import Sampler, Scaler
from fmesh_events.scale.usage import MetricsApiSource, UsageSource
from fmesh_events.settings import Settings
from fmesh_events.watch import Watcher, WatchOptions


def watch_settings(settings: Settings, namespace: str) -> Settings:
    """The test's own Pulsar namespace for the topics, and only its Kubernetes namespace."""
    return settings.model_copy(update={
        "system_namespace": f"public/w-{secrets.token_hex(4)}",
        "watch_namespaces": [namespace],
    })


class InProcessWatcher:
    def __init__(self, settings: Settings) -> None:
        pulsar_client.PulsarAdmin(settings).ensure_namespace(settings.system_namespace)
        self.client = pulsar_client.connect(settings)
        self.watcher = Watcher(kube_client.api_client(settings), self.client, settings.topic,
                               WatchOptions(namespaces=settings.watch_namespaces))
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.watcher.run()
        except BaseException as error:
            self.error = error

    def __enter__(self) -> InProcessWatcher:
        self.thread.start()
        assert self.watcher.synced.wait(60), "watcher did not sync within 60 s"
        return self

    def __exit__(self, *exc: object) -> None:
        self.watcher.stop.set()
        self.thread.join(30)
        self.watcher.close()
        self.client.close()


def operator_env(settings: Settings, http_port: int = 0,
                 extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of `fmesh-events run` for a test, told everything by FMESH_* variables
    as a Deployment would (none of the caller's own FMESH_* leak in); its HTTP endpoints off
    unless a port is given, so several run side by side."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMESH_")}
    env.update({
        "FMESH_HTTP_PORT": str(http_port),
        "FMESH_KUBECONFIG": str(settings.kubeconfig),
        "FMESH_PULSAR_SERVICE_URL": settings.pulsar_service_url,
        "FMESH_PULSAR_ADMIN_URL": settings.pulsar_admin_url,
        "FMESH_SYSTEM_NAMESPACE": settings.system_namespace,
        "FMESH_WATCH_NAMESPACES": json.dumps(settings.watch_namespaces),
        "FMESH_LOG_LEVEL": "INFO",
        **(extra or {}),
    })
    if settings.pulsar_auth_token is not None:
        env["FMESH_PULSAR_AUTH_TOKEN"] = settings.pulsar_auth_token.get_secret_value()
    return env


def spawn_watcher(settings: Settings, log_path: Path, components: str = "watch",
                  http_port: int = 0) -> subprocess.Popen[bytes]:
    """`fmesh-events run --components <components>` as its own process, logging to log_path."""
    log = log_path.open("ab")
    return subprocess.Popen([sys.executable, "-m", "fmesh_events", "run", "--components", components],
                            env=operator_env(settings, http_port), stdout=log,
                            stderr=subprocess.STDOUT)


@contextmanager
def running_operator(settings: Settings, log_path: Path,
                     components: str = "watch,reconcile,scale") -> Iterator[subprocess.Popen[bytes]]:
    """spawn_watcher for the length of a `with`, stopped with SIGTERM (then SIGKILL) after."""
    process = spawn_watcher(settings, log_path, components=components)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class Operator:
    """`fmesh-events run` (every component) as a child process that can be stopped, killed and
    started again; `with` starts and stops it. `env` adds FMESH_* settings."""

    def __init__(self, settings: Settings, log_path: Path, max_attempts: int = 4,
                 env: dict[str, str] | None = None) -> None:
        self.env = operator_env(settings, extra={
            "FMESH_RECONCILE_MAX_ATTEMPTS": str(max_attempts), "FMESH_LOG_FORMAT": "json",
            **(env or {})})
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.started_at: list[float] = []  # wall times

    def start(self) -> Operator:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "fmesh_events", "run"],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        self.started_at.append(time.time())
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a node dies."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 90) -> int | None:
        """SIGTERM, as Kubernetes stops a pod (SIGKILL after `timeout`); the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        return self.proc.returncode

    def __enter__(self) -> Operator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def rss_bytes(self) -> int:
        """Resident memory of the process, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tracebacks(self) -> int:
        return self.log_text().count("Traceback")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(no log)"

    def wait(self, what: str, condition: Callable[[], bool], timeout: float = 180) -> float:
        """Seconds until condition() holds; fails with the operator's log after timeout, or
        at once when the operator exits."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"the operator exited ({self.proc.returncode}) while "
                                     f"waiting for {what}:\n{self.tail()}")
            if condition():
                return time.monotonic() - started
            time.sleep(0.5)
        raise AssertionError(f"{what}: not within {timeout:.0f}s; operator log:\n{self.tail()}")


def read_messages(settings: Settings, name: str) -> list[Any]:
    """Every message of one of the operator's topics, in order, undecoded."""
    client = pulsar_client.connect(settings)
    try:
        reader = client.create_reader(settings.topic(name), pulsar.MessageId.earliest)
        out = []
        while reader.has_message_available():
            out.append(reader.read_next(timeout_millis=10_000))
        return out
    finally:
        client.close()


def read_topic(settings: Settings, name: str) -> list[tuple[Any, ChangeEvent]]:
    """Every change event of resource-events or pod-events, decoded, in order."""
    return [(message, events.decode(message.data())) for message in read_messages(settings, name)]


def scale_signal(key: str, backlog: int = 40, **changes: Any) -> bytes:
    """An encoded tick signal for ``key``: one ready replica, no CPU figures, ``backlog``."""
    return events.encode_record(events.PARSED_SCALE_SIGNAL, {
        "signalVersion": 1, "key": key, "time": int(time.time() * 1000), "trigger": "tick",
        "currentReplicas": 1, "readyReplicas": 1, "cpuServed": False, "cpuUtilizations": [],
        "cpuMissing": 0, "cpuUnready": 0, "memoryUtilizations": [], "memoryMissing": 0,
        "backlog": backlog, "topics": [], "missing": [], **changes})


def wait_for(what: str, condition: Callable[[], bool], timeout: float = 60) -> float:
    """Seconds it took for condition() to hold; fails the test after timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


@contextmanager
def reconciler(settings: Settings, subscription: str = "reconcile", max_attempts: int = 6,
               retry_base: float = 1.0, finalizer_timeout: float = 120) -> Iterator[Reconciler]:
    client = pulsar_client.connect(settings)
    worker = Reconciler(kube_client.api_client(settings), client, settings.topic,
                        f"test-{secrets.token_hex(3)}", max_attempts=max_attempts,
                        subscription=subscription, retry_base_seconds=retry_base,
                        clusters=pulsar_client.ClusterPool(settings),
                        finalizer_timeout_seconds=finalizer_timeout)
    worker.open()
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_until, args=(stop,), daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        stop.set()
        thread.join(10)
        worker.close()
        client.close()


@contextmanager
def scaler_only(settings: Settings, name: str = "scaler-a") -> Iterator[Scaler]:
    client = pulsar_client.connect(settings)
    scaler = Scaler(kube_client.api_client(settings), client, settings.topic, name)
    scaler.open()
    stop = threading.Event()
    thread = threading.Thread(target=scaler.run_until, args=(stop,), daemon=True)
    thread.start()
    try:
        yield scaler
    finally:
        stop.set()
        thread.join(10)
        scaler.close()
        client.close()


@contextmanager
def sampler_only(settings: Settings, usage: UsageSource | None = None, interval: float = 15.0,
                 rearm: float = 1.0) -> Iterator[Sampler]:
    client = pulsar_client.connect(settings)
    api = kube_client.api_client(settings)
    clusters = pulsar_client.ClusterPool(settings, own_client=client)
    sampler = Sampler(api, client, settings.topic, clusters,
                      usage or MetricsApiSource(api), settings.watch_namespaces, interval, rearm)
    sampler.lead()
    stop = threading.Event()
    thread = threading.Thread(target=sampler.run_until, args=(stop,), daemon=True)
    thread.start()
    try:
        yield sampler
    finally:
        stop.set()
        thread.join(10)
        clusters.close()
        client.close()


def http_get(port: int, path: str) -> tuple[int, str]:
    """(status, body) of a GET on a local port; (0, "") when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def produce(settings: Settings, topic: str, count: int) -> None:
    """`count` messages m0.. on `topic`, unbatched (a batch would be one backlog entry)."""
    client = pulsar_client.connect(settings)
    try:
        producer = client.create_producer(topic, batching_enabled=False)
        for i in range(count):
            producer.send_async(f"m{i}".encode(), None)
        producer.flush()
    finally:
        client.close()


def drain(settings: Settings, topic: str, subscription: str) -> int:
    """Acknowledge what `subscription` has on `topic` until 2 s pass with nothing; how many."""
    client = pulsar_client.connect(settings)
    drained = 0
    try:
        consumer = client.subscribe(topic, subscription, consumer_type=pulsar.ConsumerType.Shared)
        while True:
            try:
                consumer.acknowledge(consumer.receive(timeout_millis=2000))
                drained += 1
            except pulsar.Timeout:
                return drained
    finally:
        client.close()


def scale_decisions(settings: Settings, name: str) -> list[dict[str, Any]]:
    """The scaler's decisions for the CR called `name`, oldest first; none before the first."""
    try:
        messages = read_messages(settings, events.SCALE_DECISIONS)
    except pulsar.TopicNotFound:  # no decision yet
        return []
    return [events.decode_record(events.PARSED_SCALE_DECISION, m.data())
            for m in messages if m.partition_key().endswith(f"/{name}")]
