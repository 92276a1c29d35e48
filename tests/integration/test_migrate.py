"""`fmesh-events migrate` against real systems.

from-pulsar: a second Pulsar 4.0.7 standalone, this time with its functions worker on (the
stack's runs with -nfw), started just for this module from the stack's own Maven-built
class path, on free ports with its data under tmp. A real function jar from Maven Central
(pulsar-functions-api-examples, ExclamationFunction) is registered through the admin API v3,
plus a sink and a source compiled here against pulsar-io-core; the command's YAML is then
applied to the stack's control plane and read back.

check: examples/function.yaml plus an HPA named and owned as Function Mesh makes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from click.testing import CliRunner

from fmesh_events import devstack
from fmesh_events.devstack import builds, local
from fmesh_events.devstack.progress import Progress
from fmesh_events.migrate.cli import migrate
from fmesh_events.settings import Settings

REPO = Path(__file__).resolve().parents[2]
EXAMPLES_ARTIFACT = f"org.apache.pulsar:pulsar-functions-api-examples:{builds.PULSAR_VERSION}"
EXCLAMATION = "org.apache.pulsar.functions.api.examples.ExclamationFunction"
LEADER_READY = "FunctionMetaDataManager done becoming leader"  # Pulsar 4.0.7's log line

CONNECTORS = {
    "fm/MigrateSink.java": """package fm;
import java.util.Map;
import org.apache.pulsar.functions.api.Record;
import org.apache.pulsar.io.core.Sink;
import org.apache.pulsar.io.core.SinkContext;
public class MigrateSink implements Sink<String> {
    public void open(Map<String, Object> config, SinkContext context) {}
    public void write(Record<String> record) { record.ack(); }
    public void close() {}
}
""",
    "fm/MigrateSource.java": """package fm;
import java.util.Map;
import org.apache.pulsar.functions.api.Record;
import org.apache.pulsar.io.core.Source;
import org.apache.pulsar.io.core.SourceContext;
public class MigrateSource implements Source<String> {
    public void open(Map<String, Object> config, SourceContext context) {}
    public Record<String> read() throws Exception { Thread.sleep(60000); return null; }
    public void close() {}
}
""",
}


@dataclass
class WorkerPulsar:
    admin_url: str
    service_url: str
    lib: Path
    home: Path
    started_seconds: float

    def settings(self, stack: devstack.StackInfo) -> Settings:
        return Settings(pulsar_admin_url=self.admin_url, pulsar_service_url=self.service_url,
                        kubeconfig=stack.kubeconfig)


def _worker_yaml(root: Path, web_port: int) -> str:
    # The process runtime: instances would start as separate JVMs from instances/ (absent
    # here), so they fail and are retried, away from the broker. Registration is unaffected.
    return f"""workerId: fmesh-migrate-test
workerHostname: 127.0.0.1
workerPort: {web_port}
pulsarFunctionsNamespace: public/functions
pulsarFunctionsCluster: standalone
functionMetadataTopicName: metadata
clusterCoordinationTopicName: coordinate
functionAssignmentTopicName: assignments
numFunctionPackageReplicas: 1
downloadDirectory: {root}/download
schedulerClassName: org.apache.pulsar.functions.worker.scheduler.RoundRobinScheduler
failureCheckFreqMs: 30000
rescheduleTimeoutMs: 60000
rebalanceCheckFreqSec: -1
initialBrokerReconnectMaxRetries: 60
assignmentWriteMaxRetries: 60
instanceLivenessCheckFreqMs: 30000
topicCompactionFrequencySec: 1800
functionRuntimeFactoryClassName: org.apache.pulsar.functions.runtime.process.ProcessRuntimeFactory
functionRuntimeFactoryConfigs:
  logDirectory: {root}/function-logs
  javaInstanceJarLocation: {root}/instances/java-instance.jar
  pythonInstanceLocation: {root}/instances/python-instance/python_instance_main.py
  extraFunctionDependenciesDir: {root}/instances/deps
"""


def _log_tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="module")
def worker_pulsar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerPulsar]:
    """Pulsar standalone with its functions worker, stopped (process group) at the end."""
    lib = builds.ensure_pulsar(Settings().cache_dir, Progress(prefix="migrate test"))
    home = tmp_path_factory.mktemp("worker-pulsar")
    root = home / "pulsar"
    for sub in ("data", "tmp", "download"):
        (root / sub).mkdir(parents=True)
    (home / "logs" / "pulsar-broker").mkdir(parents=True)
    broker_port, web_port, bookie_port = local.free_port(), local.free_port(), local.free_port()
    conf = local._asset("standalone.conf")
    values = {
        "BROKER_PORT": str(broker_port), "WEB_PORT": str(web_port),
        "BOOKIE_PORT": str(bookie_port), "DATA_DIR": str(root / "data"),
        "AUTH_ENABLED": "false", "AUTH_PROVIDERS": "", "TOKEN_SECRET_KEY": "",
        "SUPER_USERS": "", "CLIENT_AUTH_PLUGIN": "", "CLIENT_AUTH_PARAMS": "",
        "BIND_ADDRESS": "127.0.0.1", "ADVERTISED_ADDRESS": "127.0.0.1",
    }
    for key, value in values.items():
        conf = conf.replace(f"@{key}@", value)
    conf = conf.replace("functionsWorkerEnabled=false", "functionsWorkerEnabled=true")
    (root / "standalone.conf").write_text(conf)
    (root / "log4j2.xml").write_text(local._asset("log4j2.xml"))
    (root / "functions_worker.yml").write_text(_worker_yaml(root, web_port))
    tool = builds.Toolchain.pulsar_only(lib)
    cmd = local._java_command(tool, home, root / "standalone.conf", bookie_port)
    cmd.remove("-nfw")  # the functions worker on, this time
    cmd.insert(1, "-Dfmesh.process=migrate-test-worker-pulsar")  # tells it apart in ps
    cmd += ["--functions-worker-conf", str(root / "functions_worker.yml")]
    log_path = home / "logs" / "pulsar.log"
    started = time.monotonic()
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    admin_url = f"http://127.0.0.1:{web_port}"
    broker_log = home / "logs" / "pulsar-broker" / "pulsar.log"
    try:
        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2, read=5), retries=False)
        last = "no answer yet"
        while time.monotonic() - started < 240:
            if proc.poll() is not None:
                pytest.fail(f"Pulsar with the functions worker exited ({proc.returncode}) "
                            f"during start-up:\n{_log_tail(log_path)}\n{_log_tail(broker_log)}")
            with contextlib.suppress(urllib3.exceptions.HTTPError):
                # Ready: the functions API answers and the worker's leader is ready
                # (registrations before that get 503 "Leader not yet ready").
                response = http.request("GET", f"{admin_url}/admin/v3/functions/public/default")
                last = f"HTTP {response.status}: {response.data[:200]!r}"
                if response.status == 200:
                    last = "the functions API answers; the worker's leader is not ready yet"
                    if LEADER_READY in broker_log.read_text(errors="replace"):
                        break
            time.sleep(0.5)
        else:
            pytest.fail(f"functions worker not serving /admin/v3 after 240s ({last}):\n"
                        f"{_log_tail(broker_log)}")
        elapsed = round(time.monotonic() - started, 1)
        print(f"\nPulsar {builds.PULSAR_VERSION} with the functions worker ready in {elapsed}s")
        yield WorkerPulsar(admin_url, f"pulsar://127.0.0.1:{broker_port}", lib, home, elapsed)
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _examples_jar(work: Path) -> Path:
    """pulsar-functions-api-examples from Maven Central (cached next to the stack's Pulsar)."""
    cache = Settings().cache_dir / f"pulsar-{builds.PULSAR_VERSION}-examples"
    jar = cache / f"pulsar-functions-api-examples-{builds.PULSAR_VERSION}.jar"
    if jar.exists():
        return jar
    cache.mkdir(parents=True, exist_ok=True)
    settings_xml = work / "maven-settings.xml"
    settings_xml.write_text(local._asset("maven-settings.xml"))
    proc = subprocess.run(
        ["mvn", "-B", "-q", "-s", str(settings_xml), "dependency:copy",
         f"-Dartifact={EXAMPLES_ARTIFACT}", f"-DoutputDirectory={cache}"],
        cwd=work, capture_output=True, text=True, check=False, timeout=600,
    )
    assert proc.returncode == 0 and jar.exists(), f"mvn dependency:copy failed:\n{proc.stdout}{proc.stderr}"
    return jar


def _connectors_jar(work: Path, lib: Path) -> Path | None:
    """A jar with a trivial Sink and Source, compiled against the stack's pulsar-io-core."""
    if shutil.which("javac") is None:
        return None
    src, out = work / "src", work / "classes"
    for name, text in CONNECTORS.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    v = builds.PULSAR_VERSION
    classpath = ":".join(str(lib / f"{a}-{v}.jar") for a in (
        "pulsar-io-core", "pulsar-functions-api", "pulsar-client-api"))
    proc = subprocess.run(["javac", "-d", str(out), "-cp", classpath,
                           *(str(src / n) for n in CONNECTORS)],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    jar = work / "connectors.jar"
    with zipfile.ZipFile(jar, "w") as archive:
        for path in sorted(out.rglob("*.class")):
            archive.write(path, str(path.relative_to(out)))
    return jar


def _register(admin_url: str, plural: str, name: str, part: str, config: dict[str, Any],
              jar: Path) -> None:
    """POST /admin/v3/{plural}/public/default/{name}: multipart config JSON + package."""
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=60), retries=False)
    deadline = time.monotonic() + 60
    while True:
        response = http.request(
            "POST", f"{admin_url}/admin/v3/{plural}/public/default/{name}",
            fields={part: (None, json.dumps(config), "application/json"),  # type: ignore[dict-item]
                    "data": (jar.name, jar.read_bytes(), "application/octet-stream")},
        )
        if response.status != 503 or time.monotonic() > deadline:  # 503: worker still starting
            break
        # The refused attempt may have stored the package already: remove it, then retry.
        http.request("DELETE", f"{admin_url}/admin/v3/packages/{plural[:-1]}/public/default/{name}/0")
        time.sleep(1)
    assert response.status in (200, 204), f"register {plural}/{name}: HTTP {response.status}: " \
        f"{response.data.decode(errors='replace')[:500]}"


@pytest.fixture(scope="module")
def registered(worker_pulsar: WorkerPulsar, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bool]:
    """A function (from the real examples jar) and, when javac is here, a sink and a source."""
    work = tmp_path_factory.mktemp("migrate-packages")
    started = time.monotonic()
    _register(worker_pulsar.admin_url, "functions", "exclaim", "functionConfig", {
        "tenant": "public", "namespace": "default", "name": "exclaim", "className": EXCLAMATION,
        "inputs": ["persistent://public/default/mig-in-a", "persistent://public/default/mig-in-b"],
        "output": "persistent://public/default/mig-out", "parallelism": 2,
        "userConfig": {"greeting": "hi", "n": 3}, "runtime": "JAVA", "autoAck": True,
        "resources": {"cpu": 0.5, "ram": 268435456, "disk": 1073741824},
        "maxMessageRetries": 3, "deadLetterTopic": "persistent://public/default/mig-dlq",
        "timeoutMs": 5000, "subName": "exclaim-sub", "logTopic": "persistent://public/default/mig-logs",
        "processingGuarantees": "ATLEAST_ONCE", "secrets": {"pw": {"path": "my-secret", "key": "password"}},
        "customRuntimeOptions": json.dumps({"extraLabels": {"team": "a"}, "somethingElse": 1}),
    }, _examples_jar(work))
    connectors = _connectors_jar(work, worker_pulsar.lib)
    if connectors is not None:
        _register(worker_pulsar.admin_url, "sinks", "mig-sink", "sinkConfig", {
            "tenant": "public", "namespace": "default", "name": "mig-sink",
            "className": "fm.MigrateSink", "inputs": ["persistent://public/default/mig-sink-in"],
            "configs": {"url": "http://example", "batch": 10}, "parallelism": 3,
        }, connectors)
        _register(worker_pulsar.admin_url, "sources", "mig-source", "sourceConfig", {
            "tenant": "public", "namespace": "default", "name": "mig-source",
            "className": "fm.MigrateSource", "topicName": "persistent://public/default/mig-src-out",
            "configs": {"a": "b"}, "parallelism": 1, "schemaType": "STRING",
        }, connectors)
    print(f"\nregistered in {time.monotonic() - started:.1f}s (connectors: {connectors is not None})")
    return {"connectors": connectors is not None}


def _from_pulsar(settings: Settings, *args: str) -> Any:
    return CliRunner().invoke(migrate, ["from-pulsar", "--tenant", "public", "--namespace",
                                        "default", *args], obj=settings)


def _get(stack: devstack.StackInfo, namespace: str, kind: str, name: str) -> dict[str, Any]:
    out = stack.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout
    result: dict[str, Any] = json.loads(out)
    return result


def test_from_pulsar_applies_and_reads_back(worker_pulsar: WorkerPulsar, registered: dict[str, bool],
                                            stack: devstack.StackInfo, namespace: str,
                                            tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    started = time.monotonic()
    result = _from_pulsar(worker_pulsar.settings(stack), "--report", str(report_path))
    print(f"\nmigrate from-pulsar took {time.monotonic() - started:.1f}s")
    assert result.exit_code == 0, result.output
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    kinds = sorted(d["kind"] for d in docs)
    expected = ["ConfigMap", "Function"] + (["Sink", "Source"] if registered["connectors"] else [])
    assert kinds == expected
    stack.kubectl("apply", "-n", namespace, "-f", "-", input=result.stdout)

    fn = _get(stack, namespace, "function", "exclaim")["spec"]
    assert fn["className"] == EXCLAMATION
    assert fn["input"]["topics"] == ["persistent://public/default/mig-in-a",
                                     "persistent://public/default/mig-in-b"]
    assert fn["input"]["typeClassName"] == "java.lang.String"  # from the worker's metadata
    assert fn["replicas"] == 2
    assert fn["funcConfig"] == {"greeting": "hi", "n": 3}
    assert fn["output"]["topic"] == "persistent://public/default/mig-out"
    assert fn["java"] == {"jar": f"pulsar-functions-api-examples-{builds.PULSAR_VERSION}.jar",
                          "jarLocation": "function://public/default/exclaim@0"}
    assert fn["resources"]["requests"] == {"cpu": "500m", "memory": "256Mi"}
    assert fn["maxMessageRetry"] == 3 and fn["deadLetterTopic"].endswith("mig-dlq")
    assert fn["timeout"] == 5000 and fn["subscriptionName"] == "exclaim-sub"
    assert fn["secretsMap"] == {"pw": {"path": "my-secret", "key": "password"}}
    assert fn["pod"]["labels"] == {"team": "a"}
    assert fn["pulsar"]["pulsarConfig"] == "pulsar-config" and fn["clusterName"] == "standalone"
    config_map = _get(stack, namespace, "configmap", "pulsar-config")["data"]
    assert config_map == {"webServiceURL": worker_pulsar.admin_url,
                          "brokerServiceURL": worker_pulsar.service_url}
    if registered["connectors"]:
        sink = _get(stack, namespace, "sink", "mig-sink")["spec"]
        assert sink["className"] == "fm.MigrateSink" and sink["replicas"] == 3
        assert sink["sinkConfig"] == {"url": "http://example", "batch": 10}
        assert sink["input"]["topics"] == ["persistent://public/default/mig-sink-in"]
        assert sink["java"]["jarLocation"] == "sink://public/default/mig-sink@0"
        source = _get(stack, namespace, "source", "mig-source")["spec"]
        assert source["output"] == {"topic": "persistent://public/default/mig-src-out",
                                    "sinkSchemaType": "STRING", "typeClassName": "java.lang.String"}
        assert source["java"]["jarLocation"] == "source://public/default/mig-source@0"

    report = json.loads(report_path.read_text())
    by_field = {(f["subject"], f["field"]): f for f in report["findings"]}
    other = by_field[("function public/default/exclaim", "customRuntimeOptions.somethingElse")]
    assert other["value"] == 1 and other["attention"] and "no equivalent" in other["message"]
    disk = by_field[("function public/default/exclaim", "resources.disk")]
    assert disk["value"] == 1073741824


def test_from_pulsar_as_one_mesh_without_the_metadata_topic(
        worker_pulsar: WorkerPulsar, registered: dict[str, bool], stack: devstack.StackInfo,
        namespace: str) -> None:
    result = _from_pulsar(worker_pulsar.settings(stack), "--mesh", "migrated", "-o", "json",
                          "--worker-metadata-topic", "")
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    mesh = next(d for d in listing["items"] if d["kind"] == "FunctionMesh")
    stack.kubectl("apply", "-n", namespace, "-f", "-", input=result.stdout)
    spec = _get(stack, namespace, "functionmesh", "migrated")["spec"]
    assert spec == mesh["spec"]
    entry = spec["functions"][0]
    assert entry["name"] == "exclaim" and entry["replicas"] == 2
    # Without the worker's metadata the package location is unknown: a package URL to
    # publish to is proposed, and the report says how.
    assert entry["java"]["jarLocation"] == "function://public/default/exclaim@migrated"
    assert "pulsar-admin packages upload function://public/default/exclaim@migrated" in result.stderr


def test_from_pulsar_errors_are_one_line(worker_pulsar: WorkerPulsar, stack: devstack.StackInfo) -> None:
    settings = worker_pulsar.settings(stack)
    for args, expected in (
        (["--tenant", "nope", "--namespace", "x"], "no tenant 'nope'"),
        (["--tenant", "public", "--namespace", "nope"], "no namespace public/nope"),
    ):
        result = CliRunner().invoke(migrate, ["from-pulsar", *args], obj=settings)
        assert result.exit_code == 1, result.output
        assert expected in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1
    unreachable = Settings(pulsar_admin_url=f"http://127.0.0.1:{local.free_port()}")
    result = CliRunner().invoke(migrate, ["from-pulsar", "--tenant", "public", "--namespace",
                                          "default"], obj=unreachable)
    assert result.exit_code == 1 and "cannot reach the Pulsar admin API" in result.output
    # The stack's own Pulsar runs without a functions worker.
    no_worker = Settings(pulsar_admin_url=stack.pulsar_admin_url)
    result = CliRunner().invoke(migrate, ["from-pulsar", "--tenant", "public", "--namespace",
                                          "default"], obj=no_worker)
    assert result.exit_code == 1 and "does not serve the functions API" in result.output


LEGACY = """apiVersion: compute.functionmesh.io/v1alpha1
kind: Function
metadata:
  name: legacy
  annotations:
    compute.functionmesh.io/managed: "false"
spec:
  className: org.example.Legacy
  replicas: 1
  input: {topics: [persistent://public/default/legacy-in]}
  pulsar: {pulsarConfig: test-pulsar}
  java: {jar: /pulsar/examples/api-examples.jar}
  downloaderImage: streamnative/pulsar-functions-java-runner:4.0.7
  pod:
    vpa:
      updatePolicy: {updateMode: "Off"}
"""


def test_check_reports_function_mesh_hpa_and_unused_fields(stack: devstack.StackInfo,
                                                           namespace: str) -> None:
    stack.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / "function.yaml"))
    stack.kubectl("apply", "-n", namespace, "-f", "-", input=LEGACY)
    fn = _get(stack, namespace, "function", "function-sample")
    hpa = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "function-sample-function", "ownerReferences": [{
            "apiVersion": "compute.functionmesh.io/v1alpha1", "kind": "Function",
            "name": "function-sample", "uid": fn["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}]},
        "spec": {"scaleTargetRef": {"apiVersion": "compute.functionmesh.io/v1alpha1",
                                    "kind": "Function", "name": "function-sample"},
                 "minReplicas": 1, "maxReplicas": 1,
                 "metrics": [{"type": "Resource", "resource": {
                     "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]},
    }
    stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(hpa))
    started = time.monotonic()
    result = CliRunner().invoke(migrate, ["check", "-o", "json"],
                                obj=Settings(kubeconfig=stack.kubeconfig))
    print(f"\nmigrate check took {time.monotonic() - started:.1f}s")
    assert result.exit_code == 2, result.output
    objects = {(o["kind"], o["namespace"], o["name"]): o for o in json.loads(result.stdout)["objects"]}
    sample = objects[("Function", namespace, "function-sample")]
    assert sample["status"] == "attention"
    assert [f["field"] for f in sample["findings"]] == ["horizontalpodautoscaler/function-sample-function"]
    assert "owned by it" in sample["findings"][0]["message"]
    legacy = objects[("Function", namespace, "legacy")]
    fields = {f["field"]: f for f in legacy["findings"]}
    assert fields["spec.downloaderImage"]["attention"]
    assert fields["spec.pod.vpa"]["value"] == {"updatePolicy": {"updateMode": "Off"}}
    managed = fields["metadata.annotations[compute.functionmesh.io/managed]"]
    assert not managed["attention"]

    table = CliRunner().invoke(migrate, ["check"], obj=Settings(kubeconfig=stack.kubeconfig))
    assert table.exit_code == 2
    assert re.search(rf"^Function/{namespace}/function-sample +attention +horizontalpodautoscaler/",
                     table.stdout, re.M)
