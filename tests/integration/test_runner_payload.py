"""The Java runner payload (devstack/runner_payload.py) runs what Function Mesh's pods run.

No Kubernetes and no image: a real Pulsar standalone, and the payload's pulsar/ tree put at
/pulsar in a private mount namespace (`unshare -m`, an overlay so the cache stays
untouched), where the command line our reconciler renders for a CR runs byte for byte with
`bash -c`, as uid 10000 gid 10001 in /pulsar like Function Mesh's pods:

- an ExclamationFunction instance turns a message on its input topic into "<message>!";
- a package uploaded through the REST API comes back byte-identical through the rendered
  `pulsar-admin packages download` and `pulsarctl packages download`, with and without
  token authentication; `functions download` asks the admin API for the right path;
- the test connectors run as a Source and a Sink: counted messages reach the sink's log;
- a batch source runs wrapped in Pulsar's BatchSourceExecutor (our rendering, and Function
  Mesh's documented hand-wrapped sourceConfig); passed directly as the source class, as
  Function Mesh renders a batchSourceConfig, Pulsar's instance refuses it;
- what a Java function logs through its Context reaches its logTopic and the console at the
  level the spec asks, and only then.

With FMESH_TEST_STACK_DIR set, the tests use that stack's broker instead of starting one
(the token-authentication tests always start their own).

Needs root (mount namespaces) and the free ports 9093 and 9094 the instance listens on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pulsar
import pytest

from fmesh_events.devstack import builds, local
from fmesh_events.devstack.progress import Progress
from fmesh_events.devstack.runner_payload import (
    CLASSPATH_GLOBS,
    EXAMPLES_JAR,
    INSTANCE_JAR,
    TEST_IO_JAR,
    build_java_payload,
    payload_size,
)
from fmesh_events.devstack.state import StackInfo
from fmesh_events.models import Function, Sink, Source, parse_resource
from fmesh_events.reconcile import command
from fmesh_events.settings import Settings
from tests.examples import example

POD_UID, POD_GID = 10000, 10001
INSTANCE_PORTS = (command.GRPC_PORT, command.METRICS_PORT)
PULSAR_MOUNT = Path("/pulsar")
TOKEN_PLUGIN = "org.apache.pulsar.client.impl.auth.AuthenticationToken"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts /pulsar in a mount namespace: needs root")


# --------------------------------------------------------------------------- fixtures


def _wait_for(what: str, check: Callable[[], bool], timeout: float, on_timeout: Callable[[], str] = str,
              interval: float = 0.5) -> None:
    """Poll `check` until it holds; fail with `what` (and `on_timeout()`) at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    pytest.fail(f"{what}: not within {timeout:.0f}s {on_timeout()}")


def _pulsar_lib(cache: Path, progress: Progress) -> Path:
    """The stack's Pulsar build; when another process is building it, wait for that build."""
    home = cache / f"pulsar-{builds.PULSAR_VERSION}"
    if home.exists() and not (home / ".complete").exists():
        progress.say(f"waiting for the Pulsar build in {home} to complete")
        _wait_for(f"the Pulsar build in {home}", lambda: (home / ".complete").exists(), 900, interval=2)
    return builds.ensure_pulsar(cache, progress)


def _start_pulsar(cache: Path, home: Path, progress: Progress, auth_secret: str | None = None) -> StackInfo:
    lib = _pulsar_lib(cache, progress)
    tool = builds.Toolchain.pulsar_only(lib)
    (home / "logs").mkdir(parents=True, exist_ok=True)
    stack = StackInfo(dir=home)
    try:
        local.start_pulsar(tool, stack, auth_token_secret=auth_secret)
        local.wait_pulsar(stack, timeout=300)
    except BaseException:
        local.stop(stack)
        raise
    return stack


@pytest.fixture(scope="module")
def progress() -> Progress:
    return Progress(prefix="runner payload test")


@pytest.fixture(scope="module")
def rootfs(progress: Progress) -> Path:
    started = time.monotonic()
    path = build_java_payload(Settings().cache_dir, progress)
    progress.say(f"payload at {path}: {payload_size(path) / 1e6:.0f} MB, {time.monotonic() - started:.1f}s")
    return path


@pytest.fixture(scope="module")
def pulsar_stack(tmp_path_factory: pytest.TempPathFactory, progress: Progress) -> Iterator[StackInfo]:
    reuse = os.environ.get("FMESH_TEST_STACK_DIR")
    if reuse:  # a running dev stack's broker: every test here uses topics of its own
        yield StackInfo.load(Path(reuse))
        return
    stack = _start_pulsar(Settings().cache_dir, tmp_path_factory.mktemp("runner-pulsar"), progress)
    try:
        yield stack
    finally:
        local.stop(stack)


@pytest.fixture(scope="module")
def mount_point() -> Iterator[Path]:
    """/pulsar must exist for the bind; made (empty) when missing and removed afterwards."""
    made = not PULSAR_MOUNT.exists()
    if made:
        PULSAR_MOUNT.mkdir(mode=0o755)
    try:
        yield PULSAR_MOUNT
    finally:
        if made:
            with contextlib.suppress(OSError):  # left in place if anything was put in it
                PULSAR_MOUNT.rmdir()


# --------------------------------------------------------------------------- the pod, without Kubernetes


@dataclasses.dataclass
class Pod:
    """One `bash -c <script>` run as a pod of the runner image would run it."""

    proc: subprocess.Popen[bytes]
    log: Path
    upper: Path  # what the process wrote under /pulsar (the overlay's upper layer)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n--- pod log (tail) ---\n" + "\n".join(self.text().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"the pod did not finish within {timeout:.0f}s{self.tail()}")

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


# Mount the payload at /pulsar under a writable overlay (the image layer and the container's
# layer) and a /tmp of its own, give the pod's user the directories the image gives it, then
# run the script as that user in /pulsar. The script is $0: it reaches bash -c unchanged.
_SANDBOX = (
    "mount -t overlay overlay -o lowerdir={lower},upperdir={upper},workdir={work} /pulsar; "
    "mount -t tmpfs -o mode=1777 tmpfs /tmp; "
    "chown {uid}:{gid} /pulsar /pulsar/conf /pulsar/logs /pulsar/tmp; cd /pulsar; "
    'exec setpriv --reuid {uid} --regid {gid} --clear-groups env -i {env} bash -c "$0"'
)
# Files a pod gets from Secret volumes under /etc (/etc/oauth2/...): laid over /etc.
_ETC_OVERLAY = "mount -t overlay overlay -o lowerdir=/etc,upperdir={upper},workdir={work} /etc; "


def start_pod(rootfs: Path, script: str, env: dict[str, str], work: Path, mount_point: Path,
              etc_files: dict[str, bytes] | None = None) -> Pod:
    assert mount_point == PULSAR_MOUNT
    upper, overlay_work = work / "upper", work / "work"
    for directory in (upper, overlay_work):
        directory.mkdir(parents=True)
    etc = ""
    if etc_files:
        etc_upper, etc_work = work / "etc-upper", work / "etc-work"
        etc_work.mkdir(parents=True)
        for rel, data in etc_files.items():
            target = etc_upper / rel
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            target.write_bytes(data)
            target.chmod(0o644)
        etc = _ETC_OVERLAY.format(upper=etc_upper, work=etc_work)
    java = shutil.which("java")
    assert java, "java is not on PATH"
    pod_env = {
        "PATH": f"{Path(java).resolve().parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/pulsar",
        **env,
    }
    sandbox = "set -e; " + etc + _SANDBOX.format(
        lower=rootfs / "pulsar", upper=upper, work=overlay_work, uid=POD_UID, gid=POD_GID,
        env=" ".join(shlex.quote(f"{k}={v}") for k, v in pod_env.items()),
    )
    log = work / "pod.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", sandbox, script],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    return Pod(proc, log, upper)


def _ports_free() -> list[int]:
    busy = []
    for port in INSTANCE_PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                busy.append(port)
    return busy


@contextlib.contextmanager
def instance_pod(rootfs: Path, cr: command.Workload, stack: StackInfo, work: Path,
                 mount_point: Path) -> Iterator[Pod]:
    """The instance container of `cr` running (its rendered command), stopped afterwards."""
    busy = _ports_free()
    if busy:
        pytest.fail(f"the instance listens on {INSTANCE_PORTS}; {busy} in use on this machine")
    shell, flag, script = command.instance_command(cr)
    assert (shell, flag) == ("bash", "-c")
    pod = start_pod(rootfs, script, pod_env(cr, stack), work, mount_point)
    try:
        yield pod
    finally:
        pod.stop()


def pod_env(cr: command.Workload, stack: StackInfo) -> dict[str, str]:
    """What the pod gets from Kubernetes: its name, and the Pulsar URLs from pulsarConfig."""
    name = str(cr.metadata["name"])
    return {
        "POD_NAME": f"{name}-0",
        "brokerServiceURL": stack.pulsar_service_url,
        "webServiceURL": stack.pulsar_admin_url,
    }


# --------------------------------------------------------------------------- Pulsar helpers


def _admin_get(stack: StackInfo, path: str, token: str | None = None) -> Any:
    request = urllib.request.Request(stack.pulsar_admin_url + path)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _subscriptions(stack: StackInfo, topic: str) -> dict[str, Any]:
    path = "/admin/v2/" + topic.replace("://", "/") + "/stats"
    try:
        stats = _admin_get(stack, path)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return {}
        raise
    subscriptions: dict[str, Any] = stats.get("subscriptions", {})
    return subscriptions


def upload_package(stack: StackInfo, url: str, data: bytes, token: str | None = None) -> None:
    """POST /admin/v3/packages/<type>/<tenant>/<namespace>/<name>/<version> (multipart)."""
    kind, rest = url.split("://", 1)
    path, version = rest.rsplit("@", 1)
    boundary = uuid.uuid4().hex
    metadata = json.dumps({"description": "fmesh-events runner payload test", "properties": {}})
    body = b"".join([
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="package"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode(), data, b"\r\n",
        f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n'
        f"Content-Type: application/json\r\n\r\n{metadata}\r\n--{boundary}--\r\n".encode(),
    ])
    request = urllib.request.Request(
        f"{stack.pulsar_admin_url}/admin/v3/packages/{kind}/{path}/{version}", data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status in (200, 204), response.status


def _client(stack: StackInfo) -> pulsar.Client:
    return pulsar.Client(stack.pulsar_service_url, operation_timeout_seconds=10,
                         logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- CRs


def _ref(name: str) -> dict[str, Any]:
    return {"name": name, "namespace": "default", "uid": f"{name}-uid"}


def exclamation_function(name: str, input_topic: str, output_topic: str) -> Function:
    """examples/function.yaml's ExclamationFunction on our topics."""
    doc = example("function.yaml", "Function")
    doc["metadata"] = _ref(name)
    doc["spec"]["input"]["topics"] = [input_topic]
    doc["spec"]["output"]["topic"] = output_topic
    doc["spec"]["logTopic"] = output_topic + "-logs"
    cr = parse_resource(doc)
    assert isinstance(cr, Function)
    return cr


def _connector_spec(class_name: str) -> dict[str, Any]:
    return {"className": class_name, "replicas": 1, "pulsar": {"pulsarConfig": "test-pulsar"},
            "java": {"jar": f"/pulsar/{TEST_IO_JAR}"}}


def counting_source(name: str, topic: str, count: int, prefix: str) -> Source:
    spec = _connector_spec("io.fmeshevents.testio.CountingSource")
    spec |= {"sourceConfig": {"count": count, "prefix": prefix},
             "output": {"topic": topic, "typeClassName": "java.lang.String"}}
    cr = parse_resource({"apiVersion": "compute.functionmesh.io/v1alpha1", "kind": "Source",
                         "metadata": _ref(name), "spec": spec})
    assert isinstance(cr, Source)
    return cr


def logging_sink(name: str, topic: str) -> Sink:
    spec = _connector_spec("io.fmeshevents.testio.LoggingSink")
    spec |= {"input": {"topics": [topic]}, "subscriptionPosition": "earliest"}
    cr = parse_resource({"apiVersion": "compute.functionmesh.io/v1alpha1", "kind": "Sink",
                         "metadata": _ref(name), "spec": spec})
    assert isinstance(cr, Sink)
    return cr


BATCH_SOURCE = "io.fmeshevents.testio.CountingBatchSource"
TRIGGERER = "io.fmeshevents.testio.IntervalTriggerer"


def counting_batch_source(name: str, topic: str, prefix: str, form: str) -> Source:
    """A Source of CountingBatchSource (2 tasks of 3 records), its discovery triggered every
    second, written in one of three forms:

    - "batchSourceConfig": the CR's batchSourceConfig, which we render wrapped in Pulsar's
      BatchSourceExecutor (as Pulsar's worker does);
    - "by hand": the wrapping written in the CR itself (className BatchSourceExecutor, the
      __BATCHSOURCE...__ keys in sourceConfig), as Function Mesh's connector docs do; both
      operators pass it through as it is;
    - "direct": no batchSourceConfig, the batch source class as the source class: what
      Function Mesh's code renders for a batchSourceConfig (it leaves that field out).
    """
    triggerer = {"discoveryTriggererClassName": TRIGGERER, "discoveryTriggererConfig": {"intervalMs": 1000}}
    configs: dict[str, Any] = {"tasks": 2, "recordsPerTask": 3, "prefix": prefix}
    spec = _connector_spec(BATCH_SOURCE)
    if form == "batchSourceConfig":
        spec["batchSourceConfig"] = triggerer
    elif form == "by hand":
        spec["className"] = command.BATCH_SOURCE_CLASS
        configs |= {command.BATCH_SOURCE_CLASS_NAME_KEY: BATCH_SOURCE,
                    command.BATCH_SOURCE_CONFIG_KEY: json.dumps(triggerer)}
    else:
        assert form == "direct", form
    spec |= {"sourceConfig": configs, "output": {"topic": topic, "typeClassName": "java.lang.String"}}
    cr = parse_resource({"apiVersion": "compute.functionmesh.io/v1alpha1", "kind": "Source",
                         "metadata": _ref(name), "spec": spec})
    assert isinstance(cr, Source)
    return cr


def logging_function(name: str, input_topic: str, output_topic: str, level: str | None) -> Function:
    """Pulsar's LoggingFunction ("<input>-log" at INFO through its Context logger, returns
    "<input>!") with a logTopic, at java.log.level `level` (None: not set)."""
    doc = example("function.yaml", "Function")
    doc["metadata"] = _ref(name)
    doc["spec"] |= {"className": "org.apache.pulsar.functions.api.examples.LoggingFunction",
                    "input": {"topics": [input_topic], "typeClassName": "java.lang.String"},
                    "output": {"topic": output_topic, "typeClassName": "java.lang.String"},
                    "logTopic": output_topic + "-logs"}
    if level is not None:
        doc["spec"]["java"]["log"] = {"level": level}
    cr = parse_resource(doc)
    assert isinstance(cr, Function)
    return cr


def with_package(name: str, location: str, destination: str, **spec: Any) -> Function:
    """A Function whose jar comes from `location`, for its rendered download command."""
    doc = example("function.yaml", "Function")
    doc["metadata"] = _ref(name)
    doc["spec"]["java"] = {"jar": destination, "jarLocation": location}
    doc["spec"].update(spec)
    cr = parse_resource(doc)
    assert isinstance(cr, Function)
    return cr


def download_script(cr: Function) -> str:
    package = command.package_location(cr)
    assert package is not None
    return command.download_command(cr, *package)


# --------------------------------------------------------------------------- (a) a function


def test_payload_layout(rootfs: Path) -> None:
    pulsar_dir = rootfs / "pulsar"
    for rel in (INSTANCE_JAR, EXAMPLES_JAR, TEST_IO_JAR, "bin/pulsar-admin", "bin/pulsarctl"):
        assert (pulsar_dir / rel).is_file(), rel
    for script in ("pulsar-admin", "pulsarctl"):
        assert os.access(pulsar_dir / "bin" / script, os.X_OK)
    for directory in ("logs", "tmp", "conf"):
        assert (pulsar_dir / directory).is_dir()
    lib = sorted(p.name for p in (pulsar_dir / "lib").iterdir())
    # Function Mesh's java -cp names these two by glob: exactly one of each.
    assert [glob for glob in CLASSPATH_GLOBS if len(list((pulsar_dir / "lib").glob(glob))) != 1] == []
    assert f"org.apache.pulsar-pulsar-functions-runtime-{builds.PULSAR_VERSION}.jar" in lib
    slf4j_bindings = ("org.apache.logging.log4j-log4j-slf4j", "org.slf4j-slf4j-simple",
                      "ch.qos.logback-logback-classic", "org.slf4j-slf4j-reload4j")
    bindings = [n for n in lib if n.startswith(slf4j_bindings)]
    assert bindings == ["org.apache.logging.log4j-log4j-slf4j2-impl-2.24.3.jar"]


def test_exclamation_function_runs_from_the_rendered_command_line(
    rootfs: Path, pulsar_stack: StackInfo, mount_point: Path, tmp_path: Path, progress: Progress,
) -> None:
    input_topic = f"persistent://public/default/{_unique('excl-in')}"
    output_topic = f"persistent://public/default/{_unique('excl-out')}"
    cr = exclamation_function("excl", input_topic, output_topic)
    started = time.monotonic()
    with instance_pod(rootfs, cr, pulsar_stack, tmp_path, mount_point) as pod:
        # The function subscribes at the latest position: send only once it is subscribed.
        _wait_for("the function's subscription on its input topic",
                  lambda: bool(_subscriptions(pulsar_stack, input_topic)) or not pod.alive(), 120, pod.tail)
        assert pod.alive(), f"the instance exited{pod.tail()}"
        progress.say(f"  function subscribed {time.monotonic() - started:.1f}s after start")
        client = _client(pulsar_stack)
        try:
            consumer = client.subscribe(output_topic, "test",
                                        initial_position=pulsar.InitialPosition.Earliest)
            producer = client.create_producer(input_topic)
            sent = [f"hello-{i}" for i in range(3)]
            for value in sent:
                producer.send(value.encode())
            received: list[str] = []
            deadline = time.monotonic() + 60
            while len(received) < len(sent) and time.monotonic() < deadline:
                with contextlib.suppress(pulsar.Timeout):
                    message = consumer.receive(timeout_millis=1000)
                    received.append(message.data().decode())
                    consumer.acknowledge(message)
            assert received == [value + "!" for value in sent], pod.tail()
        finally:
            client.close()
        log = pod.text()
        # What Function Mesh's CI looks for in an instance's log.
        for line in ("Created producer", "Subscribed to topic", "Starting Java Instance excl"):
            assert line in log, line
        # The instance wrote its log4j configuration and GC log as uid 10000.
        written = pod.upper / "conf" / "java-log" / command.JAVA_LOG_FILE_XML
        assert written.is_file() and written.stat().st_uid == POD_UID
        assert (pod.upper / "logs" / "gc.log").stat().st_uid == POD_UID


def _read_all(consumer: pulsar.Consumer, timeout_ms: int) -> list[pulsar.Message]:
    """What `consumer` receives until nothing comes for `timeout_ms`."""
    messages = []
    with contextlib.suppress(pulsar.Timeout):
        while True:
            message = consumer.receive(timeout_millis=timeout_ms)
            consumer.acknowledge(message)
            messages.append(message)
    return messages


@pytest.mark.parametrize("level", [None, "info", "warn"], ids=["unset", "info", "warn"])
def test_log_topic_and_console_follow_the_java_log_level(
    rootfs: Path, pulsar_stack: StackInfo, mount_point: Path, tmp_path: Path, level: str | None,
) -> None:
    """At INFO (the default) the function's Context logger reaches the log topic and the
    console; at WARN neither, while the output still arrives."""
    name = _unique("logging")
    input_topic = f"persistent://public/default/{name}-in"
    output_topic = f"persistent://public/default/{name}-out"
    cr = logging_function(name, input_topic, output_topic, level)
    log_topic = cr.spec.log_topic
    assert log_topic and json.loads(command.function_details_json(cr))["logTopic"] == log_topic
    sent = [f"{name}-{i}" for i in range(3)]
    client = _client(pulsar_stack)
    try:
        logs = client.subscribe(log_topic, "test", initial_position=pulsar.InitialPosition.Earliest)
        output = client.subscribe(output_topic, "test", initial_position=pulsar.InitialPosition.Earliest)
        with instance_pod(rootfs, cr, pulsar_stack, tmp_path, mount_point) as pod:
            _wait_for("the function's subscription on its input topic",
                      lambda: bool(_subscriptions(pulsar_stack, input_topic)) or not pod.alive(),
                      120, pod.tail)
            assert pod.alive(), f"the instance exited{pod.tail()}"
            producer = client.create_producer(input_topic)
            for value in sent:
                producer.send(value.encode())
            received = [m.data().decode() for m in _read_all(output, 10_000)]
            assert received == [value + "!" for value in sent], pod.tail()
            logged = [m for m in _read_all(logs, 5_000) if m.data().decode().startswith(name)]
            console = [line.split(" - ", 1)[1] for line in pod.text().splitlines()
                       if f" function-{name} - " in line]
            # The log topic's producer (the instance's appender) is there whatever the level.
            stats = _admin_get(pulsar_stack, "/admin/v2/" + log_topic.replace("://", "/") + "/stats")
            assert stats.get("publishers"), stats
        if level == "warn":
            assert logged == [] and console == [], pod.tail()
            assert " INFO " not in pod.text(), pod.tail()
        else:
            assert [m.data().decode() for m in logged] == [value + "-log" for value in sent], pod.tail()
            assert {(m.properties()["loglevel"], m.properties()["fqn"]) for m in logged} == {
                ("INFO", f"public/default/{name}")
            }
            assert console == [value + "-log" for value in sent], pod.tail()
    finally:
        client.close()


# --------------------------------------------------------------------------- (b) downloads


@pytest.mark.parametrize("pulsarctl", [False, True], ids=["pulsar-admin", "pulsarctl"])
def test_package_download_is_byte_identical(
    rootfs: Path, pulsar_stack: StackInfo, mount_point: Path, tmp_path: Path, pulsarctl: bool,
) -> None:
    name = _unique("excl")
    url = f"function://public/default/{name}@v1"
    data = (rootfs / "pulsar" / EXAMPLES_JAR).read_bytes()
    upload_package(pulsar_stack, url, data)
    cr = with_package("excl", url, "downloaded/function.jar", imageHasPulsarctl=pulsarctl)
    script = download_script(cr)
    assert ("pulsarctl --admin-service-url" in script) == pulsarctl
    pod = start_pod(rootfs, script, pod_env(cr, pulsar_stack), tmp_path, mount_point)
    assert pod.wait(120) == 0, pod.tail()
    # Relative to the working directory /pulsar, as in the pod.
    downloaded = pod.upper / "downloaded" / "function.jar"
    assert downloaded.read_bytes() == data
    assert downloaded.stat().st_uid == POD_UID


def test_missing_package_fails_with_one_line(
    rootfs: Path, pulsar_stack: StackInfo, mount_point: Path, tmp_path: Path,
) -> None:
    url = f"function://public/default/{_unique('missing')}@v1"
    cr = with_package("missing", url, "function.jar")
    pod = start_pod(rootfs, download_script(cr), pod_env(cr, pulsar_stack), tmp_path, mount_point)
    assert pod.wait(120) == 1
    assert pod.text().strip().splitlines() == [f"pulsar-admin: packages download {url}: HTTP 404 Not Found"]
    assert not (pod.upper / "function.jar").exists()  # no partial file left behind


def function_storage(body: bytes, requests: list[str]) -> type[http.server.BaseHTTPRequestHandler]:
    """A stand-in for a function worker's /admin/v3/functions/download, serving `body` for
    the path public/default/stored and recording every request path."""

    class Storage(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            parsed = urllib.parse.urlsplit(self.path)
            asked = (parsed.path, urllib.parse.parse_qs(parsed.query).get("path"))
            if asked != ("/admin/v3/functions/download", ["public/default/stored"]):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Storage


def test_functions_download_asks_the_admin_api_for_the_path(
    rootfs: Path, pulsar_stack: StackInfo, mount_point: Path, tmp_path: Path,
) -> None:
    # The dev broker runs without a function worker, whose storage `functions download`
    # reads; a stand-in for that one endpoint shows what is asked and what is written.
    body, requests = os.urandom(4096), list[str]()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), function_storage(body, requests))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cr = with_package("stored", "public/default/stored", "stored.jar")
        script = download_script(cr)
        assert " functions download --path public/default/stored --destination-file stored.jar" in script
        env = {**pod_env(cr, pulsar_stack), "webServiceURL": f"http://127.0.0.1:{server.server_port}"}
        pod = start_pod(rootfs, script, env, tmp_path / "stand-in", mount_point)
        assert pod.wait(120) == 0, pod.tail()
        assert (pod.upper / "stored.jar").read_bytes() == body
        assert requests == ["/admin/v3/functions/download?path=public%2Fdefault%2Fstored"]
    finally:
        server.shutdown()
        server.server_close()
    # The real broker has no function worker: a one-line error and a non-zero exit.
    pod = start_pod(rootfs, script, pod_env(cr, pulsar_stack), tmp_path / "broker", mount_point)
    assert pod.wait(120) == 1
    assert pod.text().strip().splitlines() == [
        "pulsar-admin: functions download public/default/stored: HTTP 409 Conflict"
    ]


def test_cli_refuses_what_it_does_not_support(rootfs: Path, tmp_path: Path) -> None:
    admin = str(rootfs / "pulsar" / "bin" / "pulsar-admin")
    pulsarctl = str(rootfs / "pulsar" / "bin" / "pulsarctl")
    cases = [
        ([admin, "--admin-url", "http://127.0.0.1:1", "topics", "list", "public/default"], 2,
         "pulsar-admin: unsupported command 'topics list public/default' "
         "(supported: packages download, functions download)"),
        ([admin, "--admin-url", "http://127.0.0.1:1", "--bogus", "packages", "download"], 2,
         "pulsar-admin: unknown flag --bogus"),
        ([admin, "packages", "download", "function://public/default/f@1", "--path", "f.jar"], 2,
         "pulsar-admin: missing --admin-url"),
        ([admin, "--admin-url", "http://127.0.0.1:1", "context", "set", "x"], 2,
         "pulsar-admin: context set is a pulsarctl command"),
        ([pulsarctl, "--admin-service-url", "http://127.0.0.1:1", "--tls-allow-insecure=maybe",
          "packages", "download", "function://public/default/f@1", "--path", "f.jar"], 2,
         "pulsarctl: --tls-allow-insecure takes true or false, not maybe"),
    ]
    for argv, code, message in cases:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert (done.returncode, done.stderr.strip()) == (code, message), argv


# --------------------------------------------------------------------------- token auth


@pytest.fixture(scope="module")
def auth_stack(tmp_path_factory: pytest.TempPathFactory,
               progress: Progress) -> Iterator[tuple[StackInfo, str]]:
    """A second Pulsar, token authentication and authorization on; yields it and its secret."""
    secret = uuid.uuid4().hex + uuid.uuid4().hex
    stack = _start_pulsar(Settings().cache_dir, tmp_path_factory.mktemp("runner-auth-pulsar"), progress,
                          auth_secret=secret)
    try:
        yield stack, secret
    finally:
        local.stop(stack)


@pytest.mark.parametrize("pulsarctl", [False, True], ids=["pulsar-admin", "pulsarctl"])
def test_package_download_with_a_token(
    rootfs: Path, auth_stack: tuple[StackInfo, str], mount_point: Path, tmp_path: Path, pulsarctl: bool,
) -> None:
    stack, secret = auth_stack
    admin_token = local.pulsar_admin_token(stack)
    assert admin_token
    url = f"function://public/default/{_unique('secured')}@v1"
    data = os.urandom(10_000)
    upload_package(stack, url, data, token=admin_token)

    def download(params: str, work: Path) -> Pod:
        auth = {"genericAuth": {"clientAuthenticationPlugin": TOKEN_PLUGIN,
                                "clientAuthenticationParameters": params}}
        cr = with_package("secured", url, "secured.jar", imageHasPulsarctl=pulsarctl,
                          pulsar={"pulsarConfig": "test-pulsar", "authConfig": auth})
        script = download_script(cr)
        assert f"--auth-plugin {TOKEN_PLUGIN}" in script
        pod = start_pod(rootfs, script, pod_env(cr, stack), work, mount_point)
        pod.wait(120)
        return pod

    pod = download(f"token:{admin_token}", tmp_path / "good")
    assert pod.proc.returncode == 0, pod.tail()
    assert (pod.upper / "secured.jar").read_bytes() == data

    wrong = local.pulsar_token(secret[::-1], local.PULSAR_ADMIN_ROLE)  # signed with another key
    pod = download(f"token:{wrong}", tmp_path / "bad")
    tool = "pulsarctl" if pulsarctl else "pulsar-admin"
    assert pod.proc.returncode == 1
    assert pod.text().strip().splitlines()[-1] == (
        f"{tool}: packages download {url}: HTTP 401 Unauthorized"
    ), pod.tail()
    assert not (pod.upper / "secured.jar").exists()


# --------------------------------------------------------------------------- (c) connectors


def test_counting_source_to_logging_sink(
    rootfs: Path, pulsar_stack: StackInfo, mount_point: Path, tmp_path: Path,
) -> None:
    topic = f"persistent://public/default/{_unique('counted')}"
    prefix = _unique("c") + "-"
    count = 7
    source = counting_source("counter", topic, count, prefix)
    details = json.loads(command.function_details_json(source))
    assert details["source"]["className"] == "io.fmeshevents.testio.CountingSource"

    def published() -> int:
        try:
            stats = _admin_get(pulsar_stack, "/admin/v2/" + topic.replace("://", "/") + "/stats")
        except urllib.error.HTTPError:
            return 0
        return int(stats.get("msgInCounter", 0))

    # The two instances take the same ports: the source runs first, the topic keeps its output.
    with instance_pod(rootfs, source, pulsar_stack, tmp_path / "source", mount_point) as pod:
        _wait_for(f"{count} messages from the source", lambda: published() >= count or not pod.alive(),
                  120, pod.tail)
        assert pod.alive(), f"the source exited{pod.tail()}"

    sink = logging_sink("logger", topic)
    expected = [f"fmesh-sink received: {prefix}{i}" for i in range(count)]

    def logged(pod: Pod) -> list[str]:
        return [line.split(" - ", 1)[1] for line in pod.text().splitlines()
                if " - fmesh-sink received: " in line]

    with instance_pod(rootfs, sink, pulsar_stack, tmp_path / "sink", mount_point) as pod:
        _wait_for("the sink's log lines", lambda: len(logged(pod)) >= count or not pod.alive(), 120, pod.tail)
        assert logged(pod) == expected, pod.tail()

        def acknowledged() -> bool:
            subscriptions = _subscriptions(pulsar_stack, topic)
            return bool(subscriptions) and all(s.get("msgBacklog") == 0 for s in subscriptions.values())

        # The sink acknowledges what it logged: its subscription's backlog drains.
        _wait_for("the sink's subscription backlog to drain", acknowledged, 60, pod.tail)


def test_connector_backed_function(
    rootfs: Path, pulsar_stack: StackInfo, mount_point: Path, tmp_path: Path,
) -> None:
    """A Function reading through a source connector: Function Mesh adds
    --connectors_directory, which Pulsar 4.0's JavaInstanceStarter does not know; our
    JavaInstanceMain leaves it out rather than fail the whole command line."""
    topic = f"persistent://public/default/{_unique('via-connector')}"
    prefix = _unique("f") + "-"
    doc = example("function.yaml", "Function")
    doc["metadata"] = _ref("via-connector")
    doc["spec"] |= {"className": "org.apache.pulsar.functions.api.utils.IdentityFunction",
                    "java": {"jar": f"/pulsar/{TEST_IO_JAR}"},
                    "sourceConfig": {"className": "io.fmeshevents.testio.CountingSource",
                                     "typeClassName": "java.lang.String",
                                     "configs": {"count": 3, "prefix": prefix}},
                    "output": {"topic": topic, "typeClassName": "java.lang.String"}}
    del doc["spec"]["input"]
    cr = parse_resource(doc)
    assert isinstance(cr, Function)
    assert "--connectors_directory /pulsar/connectors" in command.instance_command(cr)[2]
    client = _client(pulsar_stack)
    try:
        reader = client.create_reader(topic, pulsar.MessageId.earliest)
        with instance_pod(rootfs, cr, pulsar_stack, tmp_path, mount_point) as pod:
            received: list[str] = []
            deadline = time.monotonic() + 120
            while len(received) < 3 and time.monotonic() < deadline and pod.alive():
                with contextlib.suppress(pulsar.Timeout):
                    received.append(reader.read_next(timeout_millis=1000).data().decode())
            assert received == [f"{prefix}{i}" for i in range(3)], pod.tail()
    finally:
        client.close()


@pytest.mark.parametrize("form", ["batchSourceConfig", "by hand"])
def test_batch_source_runs_wrapped_in_batch_source_executor(
    rootfs: Path, pulsar_stack: StackInfo, mount_point: Path, tmp_path: Path, form: str,
) -> None:
    """Discovery (on instance 0) puts the tasks on the intermediate topic; the instance takes
    them, prepares each and writes its records to the output topic."""
    name = _unique("batch")
    topic = f"persistent://public/default/{name}-out"
    prefix = name + "-"
    cr = counting_batch_source(name, topic, prefix, form)
    source = json.loads(command.function_details_json(cr))["source"]
    assert source["className"] == command.BATCH_SOURCE_CLASS
    configs = json.loads(source["configs"])
    assert configs[command.BATCH_SOURCE_CLASS_NAME_KEY] == BATCH_SOURCE
    assert json.loads(configs[command.BATCH_SOURCE_CONFIG_KEY])["discoveryTriggererClassName"] == TRIGGERER
    expected = [f"{prefix}{task}-{i}" for task in range(2) for i in range(3)]
    client = _client(pulsar_stack)
    try:
        reader = client.create_reader(topic, pulsar.MessageId.earliest)
        with instance_pod(rootfs, cr, pulsar_stack, tmp_path, mount_point) as pod:
            received: list[str] = []
            deadline = time.monotonic() + 120
            while len(received) < len(expected) and time.monotonic() < deadline and pod.alive():
                with contextlib.suppress(pulsar.Timeout):
                    received.append(reader.read_next(timeout_millis=1000).data().decode())
            assert received == expected, pod.tail()
            # Later discoveries find nothing new: no record twice.
            time.sleep(3)
            with pytest.raises(pulsar.Timeout):
                reader.read_next(timeout_millis=1000)
            # The tasks went through the intermediate topic, and each was acknowledged once done.
            intermediate = f"persistent://public/default/{name}-intermediate"
            subscription = f"BatchSourceExecutor-public/default/{name}"

            def tasks_done() -> bool:
                stats = _subscriptions(pulsar_stack, intermediate).get(subscription)
                return stats is not None and stats.get("msgBacklog") == 0

            _wait_for("the intermediate topic's backlog to drain", tasks_done, 30, pod.tail)
            assert pod.alive(), pod.tail()
        log = pod.text()
        assert "fmesh-batch discover: 2 tasks" in log and "fmesh-batch discover: nothing new" in log
    finally:
        client.close()


# What Pulsar 4.0.7's instance says when the source class is not a Source.
NOT_A_SOURCE = "java.lang.RuntimeException: Source does not implement correct interface"


def test_batch_source_passed_directly_is_refused(
    rootfs: Path, pulsar_stack: StackInfo, mount_point: Path, tmp_path: Path,
) -> None:
    """Function Mesh's rendering of a batchSourceConfig (the batch source class as the source
    class, the triggerer left out) does not run: the instance refuses the class and exits
    (with status 0, so Kubernetes restarts the container over and over), writing nothing."""
    name = _unique("batch-direct")
    topic = f"persistent://public/default/{name}-out"
    cr = counting_batch_source(name, topic, name + "-", "direct")
    source = json.loads(command.function_details_json(cr))["source"]
    assert source["className"] == BATCH_SOURCE
    assert command.BATCH_SOURCE_CLASS_NAME_KEY not in json.loads(source["configs"])
    with instance_pod(rootfs, cr, pulsar_stack, tmp_path, mount_point) as pod:
        assert pod.wait(120) == 0, pod.tail()
    log = pod.text()
    assert NOT_A_SOURCE in log, pod.tail()
    assert f"[public/default/{name}:0] Uncaught exception in Java Instance" in log
    assert "fmesh-batch" not in log  # never opened
    stats = _admin_get(pulsar_stack, "/admin/v2/" + topic.replace("://", "/") + "/stats")
    assert stats.get("msgInCounter", 0) == 0


# --------------------------------------------------------------------------- OAuth2


def oauth2_issuer(client_id: str, client_secret: str, access_token: str,
                  requests: list[str]) -> type[http.server.BaseHTTPRequestHandler]:
    """An OAuth 2.0 issuer for the client credentials flow: discovery and the token endpoint,
    handing out `access_token` (a Pulsar JWT) to the one client it knows."""

    class Issuer(http.server.BaseHTTPRequestHandler):
        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            requests.append(f"GET {self.path}")
            if self.path != "/.well-known/openid-configuration":
                self.send_error(404)
                return
            base = f"http://{self.headers['Host']}"  # the address the client used
            self._json(200, {"issuer": base, "token_endpoint": base + "/oauth/token"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            requests.append(f"POST {self.path} {form.get('grant_type')} {form.get('audience')}")
            if (form.get("client_id"), form.get("client_secret")) != ([client_id], [client_secret]):
                self._json(401, {"error": "invalid_client"})
                return
            self._json(200, {"access_token": access_token, "token_type": "Bearer", "expires_in": 3600})

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Issuer


@pytest.mark.parametrize("pulsarctl", [True, False], ids=["pulsarctl", "pulsar-admin"])
def test_package_download_with_oauth2(
    rootfs: Path, auth_stack: tuple[StackInfo, str], mount_point: Path, tmp_path: Path, pulsarctl: bool,
) -> None:
    stack, secret = auth_stack
    admin_token = local.pulsar_admin_token(stack)
    assert admin_token
    url = f"function://public/default/{_unique('oauth')}@v1"
    data = os.urandom(10_000)
    upload_package(stack, url, data, token=admin_token)

    requests: list[str] = []
    issuer = oauth2_issuer("fmesh-test", "client-secret", local.pulsar_token(secret, local.PULSAR_ADMIN_ROLE),
                           requests)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), issuer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        issuer_url = f"http://127.0.0.1:{server.server_port}"
        oauth2 = {"audience": "urn:pulsar:test", "issuerUrl": issuer_url,
                  "keySecretName": "oauth2-key", "keySecretKey": "auth.json"}
        cr = with_package("oauth", url, "oauth.jar", imageHasPulsarctl=pulsarctl,
                          pulsar={"pulsarConfig": "test-pulsar", "authConfig": {"oauth2Config": oauth2}})
        script = download_script(cr)
        assert ("pulsarctl context set downloader" in script) == pulsarctl
        key = json.dumps({"type": "client_credentials", "client_id": "fmesh-test",
                          "client_secret": "client-secret", "issuer_url": issuer_url}).encode()
        # The Secret volume Function Mesh mounts at /etc/oauth2.
        pod = start_pod(rootfs, script, pod_env(cr, stack), tmp_path, mount_point,
                        etc_files={"oauth2/auth.json": key})
        assert pod.wait(120) == 0, pod.tail()
        assert (pod.upper / "oauth.jar").read_bytes() == data
        tokens = requests.count("POST /oauth/token ['client_credentials'] ['urn:pulsar:test']")
        if pulsarctl:
            # `oauth2 activate` fetched a token, then the download with the stored context.
            assert tokens == 2, requests
            context = (pod.upper / ".config" / "pulsar" / "fmesh-pulsarctl-context").read_text()
            assert f"issuer-endpoint={issuer_url.replace(':', chr(92) + ':')}" in context
        else:
            assert tokens == 1, requests
    finally:
        server.shutdown()
        server.server_close()
