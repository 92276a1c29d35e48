"""The real node: a kubelet with containerd, runc and CNI beside the KWOK nodes, so the
workloads the operator renders really start Pulsar function instances.

What it adds to the local stack, all as processes under the stack's directory:

- `registry`: distribution's registry on loopback, storage in the cache (images survive the
  stack); containerd uses it as the mirror *and* the upstream of every registry name a spec
  may use (`MIRRORED_REGISTRIES`), so no pull leaves the machine;
- `containerd` (Debian's, with runc and its CRI plugin) on its own socket and root;
- `kubelet` and `kube-proxy` (built with the control plane), the node `NODE_NAME` on the
  bridge `BRIDGE` (`NODE_IP`, pods in `POD_CIDR`);
- `coredns` answering `cluster.local` only (it forwards nowhere), on `NODE_IP`:53, the
  pods' nameserver;
- `metrics-server`, registered as the metrics.k8s.io APIService, so `kubectl top` and the
  scaler's CPU path read real numbers.

Pods reach the dev Pulsar as `pulsar-broker.pulsar` (and Function Mesh's samples'
`test-pulsar-broker.default`): Services with manual Endpoints to the broker on `NODE_IP`.
Pod traffic is kept on the machine: no masquerade, and a FORWARD rule rejects anything from
the pod network that is not for it. One real node per machine (the bridge, iptables and port
53 are the host's): `claim()` takes a lock and names the stack that holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from fmesh_events.devstack.builds import Toolchain
from fmesh_events.devstack.progress import Progress
from fmesh_events.devstack.state import StackError, StackInfo

NODE_NAME = "fmesh-node"
BRIDGE = "fmesh0"
NODE_IP = "10.244.0.1"
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.0.0.0/24"  # the API server's --service-cluster-ip-range
CLUSTER_DOMAIN = "cluster.local"
# The taint and label of the KWOK nodes: only pods that tolerate the taint go there (tests
# and benchmarks with hundreds of pods do, through their namespace's defaults).
FAKE_NODE_TAINT_KEY = "fmesh-events.io/fake-node"
FAKE_NODE_LABEL = "type=kwok"
# Namespace annotations that the PodNodeSelector and PodTolerationRestriction admission
# plugins read: every pod of such a namespace goes to a KWOK node.
FAKE_NODE_NAMESPACE_ANNOTATIONS = {
    "scheduler.alpha.kubernetes.io/node-selector": FAKE_NODE_LABEL,
    "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps(
        [{"key": FAKE_NODE_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]
    ),
}
# Registry names a spec may use; each is served by the loopback registry, none reached.
MIRRORED_REGISTRIES = (
    "docker.io", "registry-1.docker.io", "registry.k8s.io", "k8s.gcr.io", "gcr.io", "quay.io",
    "ghcr.io", "public.ecr.aws", "mcr.microsoft.com",
)
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
# In-cluster names of the dev Pulsar: ours, deploy/'s default ConfigMap, Function Mesh's samples.
PULSAR_SERVICES = (("pulsar", "pulsar-broker"), ("default", "test-pulsar-broker"))
PULSAR_PORTS = (("pulsar", 6650), ("http", 8080))
LOCK_FILE = Path("/run/fmesh-events-node.lock")
NODE_PROCESSES = ("registry", "containerd", "kubelet", "kube-proxy", "coredns", "metrics-server")


def node_dir(stack: StackInfo) -> Path:
    return stack.dir / "node"


# --------------------------------------------------------------------------- one per machine

def _holder() -> Path | None:
    """The directory of the stack whose real node still runs, if any."""
    try:
        named = LOCK_FILE.read_text().strip()
    except OSError:
        return None
    if not named:
        return None
    try:
        other = StackInfo.load(Path(named))
    except StackError:
        return None
    return other.dir if any(other.alive(n) for n in NODE_PROCESSES) else None


def claim(stack: StackInfo) -> None:
    """Take the machine's real node for this stack, or say which stack has it. A claim left
    by a stack that died without `dev down` is taken over, its leftovers cleaned first."""
    with LOCK_FILE.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # one claim at a time; released on close
        holder = _holder()
        if holder is not None and holder != stack.dir:
            raise StackError(
                f"the real node is in use by the stack in {holder}: stop it (`fmesh-events dev down`)"
                " or start this stack without one (FMESH_REAL_NODE=false)"
            )
        _cleanup_host()
        handle.seek(0)
        handle.truncate()
        handle.write(str(stack.dir))


def _release(stack: StackInfo) -> None:
    with LOCK_FILE.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        if handle.read().strip() == str(stack.dir):
            handle.seek(0)
            handle.truncate()


# --------------------------------------------------------------------------- host network


def _sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise StackError(f"{' '.join(cmd)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


# The pod network may talk to itself and to this machine's own addresses (INPUT, not FORWARD);
# anything it would route elsewhere is refused here, whatever Docker or kube-proxy add.
_ISOLATION_RULE = ("FORWARD", "-s", POD_CIDR, "!", "-d", POD_CIDR, "-j", "REJECT")
# A cluster IP that kube-proxy has not mapped yet would be routed off the machine, and the
# API server keeps the connection it got there (its aggregator once held one to whatever
# answered 404 outside, and metrics.k8s.io never became Available). kube-proxy's DNAT comes
# first (nat OUTPUT), so this refuses only what no Service rule took.
_SERVICE_RULE = ("OUTPUT", "-d", SERVICE_CIDR, "-j", "REJECT")


def setup_network() -> None:
    """The pods' bridge with the node's address, made before anything binds to it."""
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            raise StackError(f"the real node needs `{tool}`: apt-get install iproute2 iptables")
    if _sh("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        _sh("ip", "link", "add", BRIDGE, "type", "bridge")
    if NODE_IP not in _sh("ip", "-4", "addr", "show", "dev", BRIDGE).stdout:
        _sh("ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE)
    _sh("ip", "link", "set", BRIDGE, "up")
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    for rule in (_ISOLATION_RULE, _SERVICE_RULE):
        if _sh("iptables", "-C", *rule, check=False).returncode != 0:
            _sh("iptables", "-I", *rule)


def _cleanup_host() -> None:
    """What a real node leaves on the host: kube-proxy's rules, the bridge, pod namespaces."""
    for rule in (_ISOLATION_RULE, _SERVICE_RULE):
        _sh("iptables", "-D", *rule, check=False)
    for netns in _sh("ip", "netns", "list", check=False).stdout.split("\n"):
        name = netns.split(" ", 1)[0]
        if name.startswith("cni-"):
            _sh("ip", "netns", "delete", name, check=False)
    _sh("ip", "link", "delete", BRIDGE, check=False)


# --------------------------------------------------------------------------- configuration


def _containerd_config(base: Path, registry: str) -> str:
    return f"""version = 2
root = "{base}/containerd/root"
state = "{base}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{base}/containerd/containerd.sock"
[ttrpc]
  address = "{base}/containerd/containerd.sock.ttrpc"
[debug]
  level = "warn"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # This machine's root lacks CAP_SYS_RESOURCE: lowering a process's oom_score_adj fails,
  # so runc would fail every sandbox ("can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{base}/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    # One hosts.toml per registry name: {registry} is both mirror and upstream.
    config_path = "{base}/containerd/certs.d"
"""


def _hosts_toml(registry: str) -> str:
    return (f'server = "http://{registry}"\n\n[host."http://{registry}"]\n'
            '  capabilities = ["pull", "resolve"]\n')


def _cni_conflist(base: Path) -> str:
    return json.dumps({
        "cniVersion": "0.4.0",
        "name": "fmesh-pods",
        "plugins": [
            {
                "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local", "dataDir": str(base / "cni" / "ipam"),
                    "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": False},
            {"type": "loopback"},
        ],
    }, indent=2)


def _kubelet_config(base: Path, port: int, healthz_port: int) -> str:
    return f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {NODE_IP}
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz_port}
tlsCertFile: {base}/pki/kubelet.crt
tlsPrivateKeyFile: {base}/pki/kubelet.key
# Dev only: anyone who reaches {NODE_IP}:{port} may use the kubelet API (logs, exec, stats);
# the address is on a bridge of this machine only.
authentication:
  anonymous: {{enabled: true}}
  webhook: {{enabled: false}}
authorization: {{mode: AlwaysAllow}}
containerRuntimeEndpoint: unix://{base}/containerd/containerd.sock
cgroupDriver: cgroupfs
# This machine has cgroup v1 and no systemd; per-QoS cgroups and node allocatable
# enforcement need cgroup writes it does not allow.
cgroupsPerQOS: false
enforceNodeAllocatable: []
failCgroupV1: false
failSwapOn: false
evictionHard: {{}}
imageGCHighThresholdPercent: 100
clusterDomain: {CLUSTER_DOMAIN}
clusterDNS: [{NODE_IP}]
resolvConf: {base}/resolv.conf
serializeImagePulls: false
podCIDR: {POD_CIDR}
maxPods: 110
registerNode: true
"""


def _kube_proxy_config(kubeconfig: Path, metrics_port: int, healthz_port: int) -> str:
    return f"""apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
hostnameOverride: {NODE_NAME}
mode: iptables
clusterCIDR: {POD_CIDR}
bindAddress: {NODE_IP}
metricsBindAddress: 127.0.0.1:{metrics_port}
healthzBindAddress: 127.0.0.1:{healthz_port}
# Leave the host's conntrack table sizes and timeouts as they are (no sysctl writes).
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"""


def _corefile(kubeconfig: Path) -> str:
    # The cluster domain and reverse lookups of the pod and service ranges, nothing else:
    # a name outside them gets REFUSED, never a lookup on the host's resolvers.
    return f"""{CLUSTER_DOMAIN}:53 in-addr.arpa:53 {{
    bind {NODE_IP}
    errors
    ready 127.0.0.1:{{$READY_PORT}}
    health 127.0.0.1:{{$HEALTH_PORT}}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa {{
        kubeconfig {kubeconfig} fmesh-dev
        pods insecure
    }}
    cache 5
    loop
}}
"""


# --------------------------------------------------------------------------- processes


def _spawn(name: str, cmd: list[str], stack: StackInfo, env: dict[str, str] | None = None) -> None:
    from fmesh_events.devstack import local

    local.spawn(name, cmd, stack, env=env)


def start(tool: Toolchain, stack: StackInfo, progress: Progress, registry_port: int) -> None:
    """Start containerd, kubelet, kube-proxy, CoreDNS and metrics-server, and wait for the node.

    The registry already runs (images are pushed before the node starts).
    """
    from fmesh_events.devstack import local

    base = node_dir(stack)
    for sub in ("containerd", "cni/net.d", "cni/ipam", "kubelet", "pki", "metrics-server"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    registry = f"127.0.0.1:{registry_port}"
    (base / "containerd" / "config.toml").write_text(_containerd_config(base, registry))
    for name in MIRRORED_REGISTRIES:
        hosts = base / "containerd" / "certs.d" / name
        hosts.mkdir(parents=True, exist_ok=True)
        (hosts / "hosts.toml").write_text(_hosts_toml(registry))
    (base / "cni" / "net.d" / "10-fmesh.conflist").write_text(_cni_conflist(base))
    (base / "resolv.conf").write_text("")  # pods get the cluster DNS only, no host search paths
    pki = stack.dir / "pki"
    local.issue_certificate(pki, base / "pki" / "kubelet", NODE_NAME, ips=(NODE_IP, "127.0.0.1"))

    _spawn("containerd", ["containerd", "--config", str(base / "containerd" / "config.toml")], stack)
    sock = base / "containerd" / "containerd.sock"
    local.wait("containerd", sock.exists, 30, stack, "containerd")

    port, healthz = local.free_port(), local.free_port()
    (base / "kubelet" / "config.yaml").write_text(_kubelet_config(base, port, healthz))
    assert stack.kubeconfig is not None
    _spawn("kubelet", [
        str(tool.kubelet), f"--config={base / 'kubelet' / 'config.yaml'}",
        f"--kubeconfig={stack.kubeconfig}", f"--root-dir={base / 'kubelet' / 'root'}",
        f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}",
        "--node-labels=type=real,fmesh-events.io/node=real",
        # cAdvisor (pod CPU and memory for metrics-server) finds containers through
        # containerd's socket, which is ours rather than the default /run/containerd/.
        f"--containerd={base / 'containerd' / 'containerd.sock'}",
        "--v=1",
    ], stack)
    local.wait("the real node Ready", lambda: _node_ready(stack), 120, stack, "kubelet")
    progress.say(f"real node {NODE_NAME} Ready ({NODE_IP}, pods in {POD_CIDR})")

    proxy_conf = base / "kube-proxy.yaml"
    proxy_conf.write_text(_kube_proxy_config(stack.kubeconfig, local.free_port(), local.free_port()))
    _spawn("kube-proxy", [str(tool.kube_proxy), f"--config={proxy_conf}", "--v=1"], stack)

    ready, health = local.free_port(), local.free_port()
    corefile = base / "Corefile"
    corefile.write_text(_corefile(stack.kubeconfig))
    _spawn("coredns", [str(tool.coredns), "-conf", str(corefile)], stack,
           env={"READY_PORT": str(ready), "HEALTH_PORT": str(health)})
    local.wait("CoreDNS", lambda: local.http_ok(f"http://127.0.0.1:{ready}/ready"), 60, stack, "coredns")

    _start_metrics_server(tool, stack)
    _pulsar_services(stack)
    progress.say(f"cluster DNS ({CLUSTER_DOMAIN}) and metrics-server ready; "
                 "Pulsar in the cluster at pulsar-broker.pulsar:6650")


def _node_ready(stack: StackInfo) -> bool:
    out = stack.kubectl(
        "get", "node", NODE_NAME, "-o",
        'jsonpath={.status.conditions[?(@.type=="Ready")].status}', check=False,
    ).stdout
    return out.strip() == "True"


def _start_metrics_server(tool: Toolchain, stack: StackInfo) -> None:
    from fmesh_events.devstack import local

    port = local.free_port()
    kubeconfig = str(stack.kubeconfig)
    _spawn("metrics-server", [
        str(tool.metrics_server), f"--secure-port={port}", f"--bind-address={NODE_IP}",
        f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--cert-dir={node_dir(stack) / 'metrics-server'}",
        "--kubelet-preferred-address-types=InternalIP", "--kubelet-use-node-status-port",
        # The kubelet's certificate is the stack's own; only real nodes are scraped (the
        # KWOK nodes' addresses belong to no one).
        "--kubelet-insecure-tls", f"--node-selector={FAKE_NODE_LABEL.replace('=', '!=')}",
        "--metric-resolution=15s",
    ], stack)
    manifest = f"""apiVersion: v1
kind: Service
metadata: {{name: metrics-server, namespace: kube-system}}
spec:
  ports: [{{name: https, port: 443, targetPort: {port}}}]
---
apiVersion: v1
kind: Endpoints
metadata: {{name: metrics-server, namespace: kube-system}}
subsets:
  - addresses: [{{ip: {NODE_IP}}}]
    ports: [{{name: https, port: {port}}}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {{name: v1beta1.metrics.k8s.io}}
spec:
  group: metrics.k8s.io
  version: v1beta1
  service: {{name: metrics-server, namespace: kube-system, port: 443}}
  insecureSkipTLSVerify: true
  groupPriorityMinimum: 100
  versionPriority: 100
"""
    service, api_service = manifest.rsplit("---\n", 1)
    stack.kubectl("apply", "-f", "-", input=service)
    cluster_ip = stack.kubectl("get", "service", "metrics-server", "-n", "kube-system",
                               "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
    # The APIService only once kube-proxy maps the cluster IP to metrics-server: what the API
    # server's aggregator connects to first, it keeps.
    local.wait(f"kube-proxy's rule for metrics-server's cluster IP {cluster_ip}",
               lambda: _tcp_open(cluster_ip, 443), 60, stack, "kube-proxy")
    stack.kubectl("apply", "-f", "-", input=api_service)
    local.wait("metrics.k8s.io APIService Available", lambda: stack.kubectl(
        "get", "apiservice", "v1beta1.metrics.k8s.io", "-o",
        'jsonpath={.status.conditions[?(@.type=="Available")].status}', check=False,
    ).stdout.strip() == "True", 90, stack, "metrics-server")


def _tcp_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=2):
        return True
    return False


def pulsar_ports(stack: StackInfo) -> dict[str, int]:
    return {
        "pulsar": int(stack.pulsar_service_url.rsplit(":", 1)[1]),
        "http": int(stack.pulsar_admin_url.rsplit(":", 1)[1]),
    }


def _pulsar_services(stack: StackInfo) -> None:
    """The dev Pulsar under in-cluster names: a Service with manual Endpoints per name."""
    ports = pulsar_ports(stack)
    docs = []
    for namespace, name in PULSAR_SERVICES:
        service_ports = ", ".join(
            f"{{name: {p}, port: {number}, targetPort: {ports[p]}}}" for p, number in PULSAR_PORTS
        )
        endpoint_ports = ", ".join(f"{{name: {p}, port: {ports[p]}}}" for p, _ in PULSAR_PORTS)
        docs.append(f"""apiVersion: v1
kind: Namespace
metadata: {{name: {namespace}}}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  ports: [{service_ports}]
---
apiVersion: v1
kind: Endpoints
metadata: {{name: {name}, namespace: {namespace}}}
subsets:
  - addresses: [{{ip: {NODE_IP}}}]
    ports: [{endpoint_ports}]
""")
    stack.kubectl("apply", "-f", "-", input="---\n".join(docs))


def in_cluster_urls() -> dict[str, str]:
    """The Pulsar URLs a pod uses (`fmesh-events dev env`, the examples' ConfigMaps)."""
    namespace, name = PULSAR_SERVICES[0]
    host = f"{name}.{namespace}.svc.{CLUSTER_DOMAIN}"
    return {"brokerServiceURL": f"pulsar://{host}:6650", "webServiceURL": f"http://{host}:8080"}


def host_aliases(stack: StackInfo) -> dict[str, str]:
    """The in-cluster Pulsar names, each mapped to its Service's cluster IP, which the host
    reaches through kube-proxy as pods do (FMESH_PULSAR_HOST_ALIASES): an operator run on the
    host then deletes subscriptions on the cluster a pulsarConfig names."""
    aliases: dict[str, str] = {}
    for namespace, name in PULSAR_SERVICES:
        cluster_ip = stack.kubectl("get", "service", name, "-n", namespace,
                                   "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
        for suffix in ("", ".svc", f".svc.{CLUSTER_DOMAIN}"):
            aliases[f"{name}.{namespace}{suffix}"] = cluster_ip
    return aliases


# --------------------------------------------------------------------------- teardown


def stop(stack: StackInfo, timeout: float = 20) -> None:
    """Stop the node's pods and processes and leave the host as it was."""
    from fmesh_events.devstack import local

    base = node_dir(stack)
    for name in ("kubelet", "kube-proxy", "metrics-server", "coredns"):
        local.stop_process(stack, name, timeout=timeout) if stack.alive(name) else None
    sock = base / "containerd" / "containerd.sock"
    if stack.alive("containerd") and sock.exists():
        _kill_containers(sock)
    for name in ("containerd", "registry"):
        local.stop_process(stack, name, timeout=timeout) if stack.alive(name) else None
    _kill_shims(base)
    unmount_under(base)
    if (base / "kube-proxy.yaml").exists():
        kube_proxy = stack.commands.get("kube-proxy", ["", ""])[1]
        if kube_proxy:
            subprocess.run([kube_proxy, "--cleanup"], capture_output=True, check=False, timeout=60)
    _cleanup_host()
    _release(stack)


def _kill_containers(sock: Path) -> None:
    ctr = ["ctr", "--address", str(sock), "--namespace", "k8s.io"]
    tasks = subprocess.run([*ctr, "tasks", "list", "-q"], capture_output=True, text=True, check=False)
    for task in tasks.stdout.split():
        subprocess.run([*ctr, "tasks", "kill", "-s", "SIGKILL", task], capture_output=True, check=False)


def _kill_shims(base: Path) -> None:
    """containerd's shims outlive containerd (they are their own sessions): end ours."""
    marker = str(base / "containerd")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "containerd-shim" in cmdline and marker in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(proc.name), signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(proc.name), signal.SIGKILL)
    time.sleep(0.5)


def unmount_under(base: Path) -> None:
    """Volumes, rootfs overlays and netns files mounted below the node's directory."""
    prefix = str(base.resolve())
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for target in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)
