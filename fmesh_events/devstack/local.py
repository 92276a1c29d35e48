"""The local backend: Pulsar standalone, etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and KWOK as plain processes on loopback, from what builds.py made.

Each process runs in its own session with its output in <stack>/logs, so `dev up` can
return while the stack keeps running and `dev down` can stop it from another process.

Two things are there for the security tests and cost nothing otherwise:

- the API server's audit log (<stack>/logs/kube-apiserver-audit.log) records, at Metadata
  level, the requests of the operator's ServiceAccount from deploy/ only (AUDITED_USERS);
  every other request is at level None, so the log stays empty for other traffic;
- `start_pulsar(..., auth_token_secret=...)` starts a Pulsar with token authentication and
  authorization on (HS256 JWTs, `pulsar_token()` makes them).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from fmesh_events.devstack.builds import Toolchain
from fmesh_events.devstack.node import (
    FAKE_NODE_LABEL,
    FAKE_NODE_TAINT_KEY,
    NODE_PROCESSES,
    SERVICE_CIDR,
    unmount_under,
)
from fmesh_events.devstack.progress import Progress
from fmesh_events.devstack.state import StackError, StackInfo

PROCESS_ORDER = (
    "pulsar", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok",
    *NODE_PROCESSES,
)
NODE_COUNT = 2

# The identities whose API requests the audit log records: the operator's ServiceAccount as
# deploy/rbac.yaml names it (tests/integration/test_security.py runs the operator with it).
AUDITED_USERS = ("system:serviceaccount:fmesh-system:fmesh-events",)
AUDIT_LOG = "kube-apiserver-audit.log"
# Admission plugins on top of the defaults. OwnerReferencesPermissionEnforcement (on in
# OpenShift) makes an ownerReference with blockOwnerDeletion require `update` on the owner's
# finalizers, so the operator's RBAC is checked as strictly as the strictest cluster does.
#
# PodNodeSelector and PodTolerationRestriction let a namespace send all its pods to the KWOK
# nodes (node.FAKE_NODE_NAMESPACE_ANNOTATIONS): tests and benchmarks with hundreds of pods.
EXTRA_ADMISSION_PLUGINS = (
    "OwnerReferencesPermissionEnforcement", "PodNodeSelector", "PodTolerationRestriction",
)

# Pulsar with token authentication: the role of the broker's own client and of the stack's
# admin calls, always a super-user.
PULSAR_ADMIN_ROLE = "admin"
_TOKEN_PROVIDER = "org.apache.pulsar.broker.authentication.AuthenticationProviderToken"
_TOKEN_CLIENT = "org.apache.pulsar.client.impl.auth.AuthenticationToken"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _asset(name: str) -> str:
    return (resources.files("fmesh_events.devstack") / "assets" / name).read_text()


def spawn(name: str, cmd: list[str], stack: StackInfo, cwd: Path | None = None,
          env: dict[str, str] | None = None) -> int:
    """Start one process of the stack, remembering how, so it can be restarted."""
    workdir = cwd or stack.dir
    log = (stack.dir / "logs" / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True, env={**os.environ, **(env or {})},
    )
    stack.pids[name] = proc.pid
    stack.commands[name] = [str(workdir), *cmd]
    if env:
        stack.envs[name] = env
    return proc.pid


def stop_process(stack: StackInfo, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Stop one process of the stack (fault tests); SIGKILL if it outlives the timeout."""
    pid = stack.pids[name]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + timeout
    while stack.alive(name) and time.monotonic() < deadline:
        time.sleep(0.1)
    if stack.alive(name):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def start_process(stack: StackInfo, name: str) -> None:
    """Start a stopped process again, same command, same ports, same data."""
    if name not in stack.commands:
        raise StackError(f"{name} cannot be restarted: this stack was started by an older "
                         "fmesh-events; `fmesh-events dev down` and `dev up` again")
    workdir, *cmd = stack.commands[name]
    spawn(name, cmd, stack, cwd=Path(workdir), env=stack.envs.get(name))
    stack.save()
    if name == "pulsar":
        wait_pulsar(stack)


def wait(what: str, check: Callable[[], bool], timeout: float, stack: StackInfo,
          process: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process and not stack.alive(process):
            raise StackError(f"{what} exited during start-up; see {stack.log_path(process)}:\n"
                             + stack.log_tail(process))
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.5)
    hint = f"; see {stack.log_path(process)}:\n{stack.log_tail(process)}" if process else ""
    raise StackError(f"{what} not ready after {timeout:.0f}s{hint}")


def http_ok(url: str, token: str | None = None, ca: Path | None = None,
             expect: str | None = None) -> bool:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    context = None
    if url.startswith("https"):
        context = ssl.create_default_context(cafile=str(ca)) if ca else ssl._create_unverified_context()
    with urllib.request.urlopen(request, timeout=3, context=context) as response:
        body = response.read().decode()
        return response.status == 200 and (expect is None or expect in body)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_pki(pki: Path, extra_ips: tuple[str, ...] = ()) -> None:
    """A CA, the API server's serving certificate (127.0.0.1 and `extra_ips`), service-account
    keys, and the front proxy's CA and client certificate (API aggregation: metrics-server)."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "3650", "-subj", "/CN=fmesh-events-dev-ca", cwd=pki)
    issue_certificate(
        pki, pki / "apiserver", "kube-apiserver", ips=("127.0.0.1", "10.0.0.1", *extra_ips),
        dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
    )
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "front-proxy-ca.key",
             "-out", "front-proxy-ca.crt", "-days", "3650", "-subj", "/CN=fmesh-events-front-proxy-ca",
             cwd=pki)
    issue_certificate(pki, pki / "front-proxy-client", FRONT_PROXY_CLIENT, client=True,
                      ca="front-proxy-ca")


FRONT_PROXY_CLIENT = "front-proxy-client"


def issue_certificate(pki: Path, out: Path, common_name: str, ips: tuple[str, ...] = (),
                      dns: tuple[str, ...] = (), client: bool = False, ca: str = "ca") -> None:
    """<out>.key and <out>.crt signed by <pki>/<ca>.crt: a server certificate for the names
    given, or a client certificate."""
    sans = [f"IP:{ip}" for ip in ips] + [f"DNS:{name}" for name in dns]
    ext = out.with_suffix(".ext")
    ext.write_text(
        (f"subjectAltName={','.join(sans)}\n" if sans else "")
        + f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}\n"
    )
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{out}.key", "-out", f"{out}.csr",
             "-subj", f"/CN={common_name}", cwd=pki)
    _openssl("x509", "-req", "-in", f"{out}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{out}.crt", "-days", "3650", "-extfile", str(ext), cwd=pki)


def _kubeconfig(server: str, ca: Path, token: str) -> str:
    ca_data = base64.b64encode(ca.read_bytes()).decode()
    return f"""apiVersion: v1
kind: Config
clusters:
- name: fmesh-dev
  cluster:
    server: {server}
    certificate-authority-data: {ca_data}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: fmesh-dev
  context: {{cluster: fmesh-dev, user: admin}}
current-context: fmesh-dev
"""


def _node_manifest(name: str, tainted: bool) -> str:
    # Beside a real node, the fake ones take only pods that tolerate them.
    taints = (f"spec:\n  taints: [{{key: {FAKE_NODE_TAINT_KEY}, value: \"true\", effect: NoSchedule}}]\n"
              if tainted else "")
    return f"""apiVersion: v1
kind: Node
metadata:
  name: {name}
  annotations:
    node.alpha.kubernetes.io/ttl: "0"
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/hostname: {name}
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
status:
  allocatable: {{cpu: "1000", memory: 4Ti, pods: "20000"}}
  capacity: {{cpu: "1000", memory: 4Ti, pods: "20000"}}
{taints}"""


def _java_command(tool: Toolchain, stack_dir: Path, conf: Path, bookie_port: int) -> list[str]:
    java = os.environ.get("FMESH_JAVA", "java")
    opens = [
        "java.base/java.io", "java.base/java.util.zip", "java.base/java.nio",
        "java.base/jdk.internal.misc", "java.base/sun.net", "java.management/sun.management",
        "jdk.management/com.sun.management.internal",
    ]
    return [
        java, "-Xms128m", "-Xmx768m", "-XX:MaxDirectMemorySize=512m", "-XX:+UseG1GC",
        "-Djava.net.preferIPv4Stack=true", "-Dio.netty.tryReflectionSetAccessible=true",
        *[arg for module in opens for arg in ("--add-opens", f"{module}=ALL-UNNAMED")],
        f"-Dlog4j.configurationFile={stack_dir / 'pulsar' / 'log4j2.xml'}",
        f"-Dpulsar.log.dir={stack_dir / 'logs' / 'pulsar-broker'}",
        f"-Djava.io.tmpdir={stack_dir / 'pulsar' / 'tmp'}",
        "-cp", f"{tool.pulsar_lib}/*",
        "org.apache.pulsar.PulsarStandaloneStarter",
        "--config", str(conf), "-nfw", "-nss",
        "--metadata-dir", str(stack_dir / "pulsar" / "data" / "metadata"),
        "--bookkeeper-port", str(bookie_port),
    ]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pulsar_token(secret: str, role: str) -> str:
    """An HS256 JWT {"sub": role} signed with `secret`, as `pulsar tokens create
    --secret-key` makes it (no expiry)."""
    header = _b64url(json.dumps({"alg": "HS256"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps({"sub": role}, separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def _admin_token_file(stack: StackInfo) -> Path:
    return stack.dir / "pulsar" / "admin.token"


def pulsar_admin_token(stack: StackInfo) -> str | None:
    """The super-user token of a Pulsar started with authentication on; None when it is off."""
    path = _admin_token_file(stack)
    return path.read_text().strip() if path.exists() else None


def _auth_values(secret: str, super_users: tuple[str, ...]) -> tuple[dict[str, str], str]:
    """The standalone.conf placeholders for token authentication and authorization, and the
    token of the broker's own client (role PULSAR_ADMIN_ROLE)."""
    key = secret.encode()
    if len(key) < 32:  # jjwt refuses HMAC-SHA256 keys shorter than 256 bits
        raise StackError("the Pulsar token secret key must be at least 32 bytes")
    admin_token = pulsar_token(secret, PULSAR_ADMIN_ROLE)
    roles = [PULSAR_ADMIN_ROLE, *(r for r in super_users if r != PULSAR_ADMIN_ROLE)]
    return {
        "AUTH_ENABLED": "true", "AUTH_PROVIDERS": _TOKEN_PROVIDER,
        "TOKEN_SECRET_KEY": "data:;base64," + base64.b64encode(key).decode(),
        "SUPER_USERS": ",".join(roles),
        "CLIENT_AUTH_PLUGIN": _TOKEN_CLIENT, "CLIENT_AUTH_PARAMS": f"token:{admin_token}",
    }, admin_token


def _write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)


def start_pulsar(tool: Toolchain, stack: StackInfo, auth_token_secret: str | None = None,
                 super_users: tuple[str, ...] = (), advertised_address: str | None = None) -> None:
    """Pulsar standalone with functions worker and stream storage off; data under the stack.

    With `auth_token_secret` (the HS256 secret key, at least 32 bytes), token authentication
    and authorization are on: `pulsar_token(secret, role)` makes a client's token; the roles
    PULSAR_ADMIN_ROLE and `super_users` are super-users, any other role may do only what it
    is granted. The admin token is kept in <stack>/pulsar/admin.token (`pulsar_admin_token`).

    With `advertised_address` (the real node's bridge address) the broker listens on every
    address and tells clients that one, which pods and host processes both reach; else it
    stays on loopback.
    """
    root = stack.dir / "pulsar"
    for sub in ("data", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (stack.dir / "logs" / "pulsar-broker").mkdir(parents=True, exist_ok=True)
    broker_port, web_port, bookie_port = free_port(), free_port(), free_port()
    values = {
        "BROKER_PORT": str(broker_port), "WEB_PORT": str(web_port),
        "BOOKIE_PORT": str(bookie_port), "DATA_DIR": str(root / "data"),
        "BIND_ADDRESS": "0.0.0.0" if advertised_address else "127.0.0.1",
        "ADVERTISED_ADDRESS": advertised_address or "127.0.0.1",
        "AUTH_ENABLED": "false", "AUTH_PROVIDERS": "", "TOKEN_SECRET_KEY": "",
        "SUPER_USERS": "", "CLIENT_AUTH_PLUGIN": "", "CLIENT_AUTH_PARAMS": "",
    }
    admin_token = None
    if auth_token_secret is not None:
        auth, admin_token = _auth_values(auth_token_secret, super_users)
        values.update(auth)
    conf = _asset("standalone.conf")
    for key, value in values.items():
        conf = conf.replace(f"@{key}@", value)
    # With authentication on, the file holds the secret key and the admin token.
    _write_private(root / "standalone.conf", conf)
    if admin_token is not None:
        _write_private(_admin_token_file(stack), admin_token + "\n")
    else:
        _admin_token_file(stack).unlink(missing_ok=True)
    (root / "log4j2.xml").write_text(_asset("log4j2.xml"))
    # The bookie's journal and ledgers go to ./data/standalone relative to the working dir.
    spawn(
        "pulsar", _java_command(tool, stack.dir, root / "standalone.conf", bookie_port),
        stack, cwd=root,
    )
    stack.pulsar_service_url = f"pulsar://127.0.0.1:{broker_port}"
    stack.pulsar_admin_url = f"http://127.0.0.1:{web_port}"


def wait_pulsar(stack: StackInfo, timeout: float = 180) -> None:
    token = pulsar_admin_token(stack)
    wait("Pulsar broker",
          lambda: http_ok(f"{stack.pulsar_admin_url}/admin/v2/clusters", token,
                           expect="standalone"),
          timeout, stack, "pulsar")


def audit_log_path(stack: StackInfo) -> Path:
    """The API server's audit log: AUDITED_USERS' requests, one JSON event per line."""
    return stack.dir / "logs" / AUDIT_LOG


def _audit_policy() -> str:
    """Metadata (who, verb, resource, response code; no bodies) for AUDITED_USERS, nothing
    for anyone else: the policy is evaluated per request, no event is even built for them."""
    users = json.dumps(list(AUDITED_USERS))
    return f"""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    users: {users}
  - level: None
"""


def start_kubernetes(tool: Toolchain, stack: StackInfo, progress: Progress,
                     node_ip: str | None = None) -> None:
    """etcd + kube-apiserver, then controller-manager, scheduler and KWOK with fake nodes.

    With `node_ip` (a real node comes next) the API server also listens there, so pods reach
    it through the `kubernetes` Service, and the KWOK nodes are tainted.
    """
    pki = stack.dir / "pki"
    _make_pki(pki, extra_ips=(node_ip,) if node_ip else ())
    token = secrets.token_hex(16)
    (pki / "tokens.csv").write_text(f'{token},admin,admin,"system:masters"\n')

    etcd_port, etcd_peer = free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    spawn("etcd", [
        str(tool.etcd), "--name", "fmesh-dev", "--data-dir", str(stack.dir / "etcd"),
        "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
        "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
        "--initial-cluster", f"fmesh-dev=http://127.0.0.1:{etcd_peer}",
        "--listen-metrics-urls", f"http://127.0.0.1:{free_port()}",
        "--unsafe-no-fsync", "--log-level", "warn",
    ], stack)
    wait("etcd", lambda: http_ok(f"{etcd_url}/health", expect="true"), 60, stack, "etcd")
    progress.say("etcd ready")

    api_port = free_port()
    server = f"https://127.0.0.1:{api_port}"
    (pki / "audit-policy.yaml").write_text(_audit_policy())
    spawn("kube-apiserver", [
        str(tool.kube_apiserver),
        f"--etcd-servers={etcd_url}", f"--cert-dir={pki}",
        f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--secure-port={api_port}",
        f"--bind-address={'0.0.0.0' if node_ip else '127.0.0.1'}",
        f"--advertise-address={node_ip or '127.0.0.1'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}", "--allow-privileged=true",
        f"--enable-admission-plugins={','.join(EXTRA_ADMISSION_PLUGINS)}",
        # API aggregation (metrics-server): the API server proxies with a client certificate
        # of the front proxy's CA. It reaches an APIService's Service by its cluster IP (kube-
        # proxy's rules apply to the host too) or, for an ExternalName, by that name.
        f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
        f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-username-headers=X-Remote-User",
        f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
        f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
        # logs and exec reach a kubelet by the address it registered, never a DNS lookup.
        "--kubelet-preferred-address-types=InternalIP",
        "--authorization-mode=RBAC",
        f"--audit-policy-file={pki / 'audit-policy.yaml'}",
        f"--audit-log-path={audit_log_path(stack)}", "--audit-log-maxsize=0",
        f"--token-auth-file={pki / 'tokens.csv'}",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--profiling=false", "--v=0",
    ], stack)
    stack.kubeconfig = stack.dir / "kubeconfig"
    stack.kubeconfig.write_text(_kubeconfig(server, pki / "ca.crt", token))
    wait("kube-apiserver", lambda: http_ok(f"{server}/readyz", token, pki / "ca.crt"), 120,
          stack, "kube-apiserver")
    progress.say(f"kube-apiserver ready at {server}")

    kubeconfig = str(stack.kubeconfig)
    common = [f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
              f"--authorization-kubeconfig={kubeconfig}", "--leader-elect=false",
              "--bind-address=127.0.0.1"]
    kcm_port, sched_port = free_port(), free_port()
    spawn("kube-controller-manager", [
        str(tool.kube_controller_manager), *common, f"--secure-port={kcm_port}",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}", "--use-service-account-credentials=false",
        "--controllers=*", "--concurrent-statefulset-syncs=10",
        # The default 20 requests/s would cap how fast any operator's pods appear (about 4.5
        # StatefulSets Ready per second): a test stack should measure the operator instead.
        "--kube-api-qps=200", "--kube-api-burst=400",
        # KWOK's node heartbeats can be a minute apart under load; a node that looks gone
        # would have all its pods marked NotReady, and KWOK does not mark them Ready again.
        "--node-monitor-grace-period=1h",
    ], stack)
    spawn("kube-scheduler", [
        str(tool.kube_scheduler), *common, f"--secure-port={sched_port}",
        "--kube-api-qps=200", "--kube-api-burst=400",
    ], stack)
    spawn("kwok", [
        str(tool.kwok), f"--kubeconfig={kubeconfig}",
        "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        "--cidr=10.0.0.1/16", "--node-ip=10.0.0.1",
        f"--server-address=127.0.0.1:{free_port()}",
    ], stack)
    for name, port in (("kube-controller-manager", kcm_port), ("kube-scheduler", sched_port)):
        url = f"https://127.0.0.1:{port}/healthz"
        wait(name, lambda url=url: http_ok(url), 60, stack, name)  # type: ignore[misc]
    progress.say("kube-controller-manager and kube-scheduler ready")

    nodes = "---\n".join(_node_manifest(f"kwok-node-{i}", tainted=node_ip is not None)
                         for i in range(NODE_COUNT))
    stack.kubectl("apply", "-f", "-", input=nodes)
    wait("KWOK nodes Ready", lambda: _nodes_ready(stack), 60, stack, "kwok")
    wait("default ServiceAccount", lambda: stack.kubectl(
        "get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0,
        60, stack, "kube-controller-manager")
    progress.say(f"{NODE_COUNT} KWOK nodes Ready")


def _nodes_ready(stack: StackInfo) -> bool:
    out = stack.kubectl(
        "get", "nodes", "-l", FAKE_NODE_LABEL, "-o",
        'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{" "}{end}',
    ).stdout.split()
    return len(out) == NODE_COUNT and all(s == "True" for s in out)


def stop(stack: StackInfo, timeout: float = 20) -> None:
    """SIGTERM every process (newest first), SIGKILL what is left after the timeout."""
    for name in reversed(PROCESS_ORDER):
        pid = stack.pids.get(name)
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(stack.alive(n) for n in stack.pids):
        time.sleep(0.2)
    for name, pid in stack.pids.items():
        if stack.alive(name):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def start_registry(tool: Toolchain, stack: StackInfo, cache: Path) -> int:
    """The real node's image registry on loopback; its storage is in the cache."""
    from fmesh_events.devstack.images import registry_config

    port = free_port()
    storage = cache / "registry-storage"
    storage.mkdir(parents=True, exist_ok=True)
    config = stack.dir / "registry.yaml"
    config.write_text(registry_config(storage, port))
    # distribution v3 traces with OpenTelemetry when asked: nothing is exported from here.
    spawn("registry", [str(tool.registry), "serve", str(config)], stack,
          env={"OTEL_TRACES_EXPORTER": "none", "OTEL_SDK_DISABLED": "true"})
    wait("image registry", lambda: http_ok(f"http://127.0.0.1:{port}/v2/"), 30, stack, "registry")
    return port


def wipe(stack_dir: Path) -> None:
    if stack_dir.exists():
        unmount_under(stack_dir)
        shutil.rmtree(stack_dir)
