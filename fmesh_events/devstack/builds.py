"""Fetch and build the dev stack's parts from package registries, cached outside the work tree.

- Apache Pulsar standalone: Maven Central, via `mvn dependency:copy-dependencies`.
- kube-apiserver, kube-controller-manager, kube-scheduler, kubectl: `go build` through a
  wrapper module (k8s.io/kubernetes replaces its staging modules with local paths, so it
  cannot be `go install`ed directly).
- etcd: `go build` through a wrapper module (same reason).
- KWOK: `go build` of its module with one patch (pod deletes by UID; see KWOK_PATCH).
- For the real node: kubelet and kube-proxy (same wrapper as the control plane), the image
  registry (distribution), CoreDNS with only the plugins a cluster domain needs, and
  metrics-server, each through a small wrapper module.

Every build lands in a versioned directory with a `.complete` marker, so a second start
finds it and does nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

from fmesh_events.devstack.progress import Progress

PULSAR_VERSION = "4.0.7"  # 4.0.8 lacks jetcd-core-shaded on Maven Central
KUBERNETES_VERSION = "1.34.4"
ETCD_VERSION = "3.6.16"
KWOK_VERSION = "0.7.0"
# The real node's parts beside the kubelet, each from the Go module proxy.
REGISTRY_VERSION = "3.1.2"  # github.com/distribution/distribution/v3: the image registry
COREDNS_VERSION = "1.15.0"
METRICS_SERVER_VERSION = "0.8.0"

KUBE_COMMANDS = (
    "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl",
    "kubelet", "kube-proxy",  # the real node
)


class BuildError(RuntimeError):
    """A part of the stack could not be fetched or built; the message says which and why."""


@dataclass(frozen=True)
class Toolchain:
    """Binaries and class path of one built stack."""

    pulsar_lib: Path
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    kwok: Path
    kubelet: Path
    kube_proxy: Path
    registry: Path
    coredns: Path
    metrics_server: Path

    @classmethod
    def pulsar_only(cls, pulsar_lib: Path) -> Toolchain:
        """A toolchain for starting a Pulsar alone (a second broker in a test)."""
        return cls(pulsar_lib, *(Path() for f in fields(cls) if f.name != "pulsar_lib"))

    @property
    def versions(self) -> dict[str, str]:
        return {
            "pulsar": PULSAR_VERSION,
            "kubernetes": KUBERNETES_VERSION,
            "etcd": ETCD_VERSION,
            "kwok": KWOK_VERSION,
            "registry": REGISTRY_VERSION,
            "coredns": COREDNS_VERSION,
            "metrics-server": METRICS_SERVER_VERSION,
        }


def _asset(name: str) -> str:
    return (resources.files("fmesh_events.devstack") / "assets" / name).read_text()


def _run(cmd: Sequence[str], cwd: Path, progress: Progress, what: str,
         env: dict[str, str] | None = None) -> None:
    """Run one build step, printing a heartbeat so a long cold build shows it is alive."""
    log_path = cwd / f"{what.replace(' ', '-')}.log"
    started = time.monotonic()
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(30):
            progress.say(f"  ... {what}: {int(time.monotonic() - started)}s so far")

    ticker = threading.Thread(target=heartbeat, daemon=True)
    ticker.start()
    try:
        with log_path.open("w") as log:
            proc = subprocess.run(
                list(cmd), cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})}, check=False,
            )
    finally:
        done.set()
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
        raise BuildError(f"{what} failed (exit {proc.returncode}); last lines of {log_path}:\n{tail}")
    progress.say(f"  {what}: done in {int(time.monotonic() - started)}s")


def _complete(directory: Path) -> bool:
    return (directory / ".complete").exists()


def _mark_complete(directory: Path, info: dict[str, str]) -> None:
    (directory / ".complete").write_text(json.dumps(info) + "\n")


def ensure_pulsar(cache: Path, progress: Progress) -> Path:
    """Resolve pulsar-broker and a log4j2 binding into <cache>/pulsar-<v>/lib."""
    home = cache / f"pulsar-{PULSAR_VERSION}"
    lib = home / "lib"
    if _complete(home):
        return lib
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise BuildError(
            "Pulsar needs `java` (17+) and `mvn` on PATH: apt-get install maven openjdk-17-jre-headless"
        )
    progress.say(f"fetching Apache Pulsar {PULSAR_VERSION} from Maven Central (first time only)")
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(_asset("pom.xml").replace("@PULSAR_VERSION@", PULSAR_VERSION))
    (home / "settings.xml").write_text(_asset("maven-settings.xml"))
    if lib.exists():
        shutil.rmtree(lib)
    _run(["mvn", "-B", "-q", "-s", "settings.xml", "-f", "pom.xml",
          "dependency:copy-dependencies", f"-DoutputDirectory={lib}", "-DincludeScope=runtime"],
         home, progress, "maven resolve pulsar")
    _mark_complete(home, {"pulsar": PULSAR_VERSION})
    return lib


def _go_env() -> dict[str, str]:
    # GOFLAGS=-mod=mod lets the wrapper module add what it needs without a tidy that would
    # also fetch every test-only dependency of Kubernetes.
    return {"GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}


def _kube_wrapper_gomod() -> str:
    """go.mod that builds k8s.io/kubernetes with each staging module taken from the proxy."""
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    info = subprocess.run(
        ["go", "mod", "download", "-json", f"k8s.io/kubernetes@v{KUBERNETES_VERSION}"],
        capture_output=True, text=True, check=False, env=env, cwd="/",
    )
    if info.returncode != 0:
        raise BuildError(
            f"go mod download k8s.io/kubernetes@v{KUBERNETES_VERSION}: {info.stdout}{info.stderr}"
        )
    upstream = Path(json.loads(info.stdout)["GoMod"]).read_text()
    staging = sorted(
        line.split("=>")[0].strip()
        for line in upstream.splitlines()
        if "=> ./staging/src/" in line
    )
    if not staging:
        raise BuildError("found no staging modules in k8s.io/kubernetes' go.mod")
    minor = KUBERNETES_VERSION.split(".", 1)[1]
    replaces = "\n".join(f"\t{m} => {m} v0.{minor}" for m in staging)
    return (
        "module fmesh-events/kube-build\n\ngo 1.24.0\n\n"
        f"require k8s.io/kubernetes v{KUBERNETES_VERSION}\n\nreplace (\n{replaces}\n)\n"
    )


def ensure_kubernetes(cache: Path, progress: Progress) -> dict[str, Path]:
    home = cache / f"kubernetes-{KUBERNETES_VERSION}"
    bins = {name: home / "bin" / name for name in KUBE_COMMANDS}
    # A cache from before the real node has no kubelet: build what is missing.
    if _complete(home) and all(path.exists() for path in bins.values()):
        return bins
    _require_go()
    progress.say(
        f"building Kubernetes {KUBERNETES_VERSION} ({', '.join(KUBE_COMMANDS)}) from the Go "
        "module proxy; a cold build takes 15-30 min on 2 cores"
    )
    src = home / "src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "go.mod").write_text(_kube_wrapper_gomod())
    (src / "tools.go").write_text(
        "//go:build tools\n\npackage tools\n\nimport (\n"
        + "".join(f'\t_ "k8s.io/kubernetes/cmd/{c}"\n' for c in KUBE_COMMANDS)
        + ")\n"
    )
    major, minor, _ = KUBERNETES_VERSION.split(".")
    stamp = {
        "gitVersion": f"v{KUBERNETES_VERSION}",
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
    }
    ldflags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        ldflags += [f"-X {pkg}.{k}={v}" for k, v in stamp.items()]
    # One `go build` for all four shares the compile work between them.
    (home / "bin").mkdir(parents=True, exist_ok=True)
    _run(["go", "build", "-trimpath", "-ldflags", " ".join(ldflags), "-o", str(home / "bin") + "/",
          *(f"k8s.io/kubernetes/cmd/{c}" for c in KUBE_COMMANDS)],
         src, progress, "go build kubernetes", _go_env())
    _mark_complete(home, {"kubernetes": KUBERNETES_VERSION})
    return bins


def ensure_etcd(cache: Path, progress: Progress) -> Path:
    home = cache / f"etcd-{ETCD_VERSION}"
    binary = home / "bin" / "etcd"
    if _complete(home):
        return binary
    _require_go()
    progress.say(f"building etcd {ETCD_VERSION} from the Go module proxy")
    src = home / "src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "go.mod").write_text(
        "module fmesh-events/etcd-build\n\ngo 1.24.0\n\n"
        f"require go.etcd.io/etcd/server/v3 v{ETCD_VERSION}\n"
    )
    (src / "tools.go").write_text(
        '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n'
    )
    _run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(binary),
          "go.etcd.io/etcd/server/v3"], src, progress, "go build etcd", _go_env())
    _mark_complete(home, {"etcd": ETCD_VERSION})
    return binary


# KWOK finishes a pod's deletion by name, with no UID precondition: when its informer is
# behind (a busy control plane), the stale copy of a deleted pod kills the new pod of the
# same name, which a StatefulSet makes at once; under load that loops for minutes. A kubelet
# deletes with the pod's UID as precondition; so does our build (a stale delete gets 409).
KWOK_PATCH = (
    "err := c.typedClient.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, deleteOpt)",
    "opt := deleteOpt\n\topt.Preconditions = metav1.NewUIDPreconditions(string(pod.UID))\n"
    "\terr := c.typedClient.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, opt)",
)
KWOK_PATCHED_FILE = "pkg/kwok/controllers/pod_controller.go"


def ensure_kwok(cache: Path, progress: Progress) -> Path:
    home = cache / f"kwok-{KWOK_VERSION}-uid"
    binary = home / "bin" / "kwok"
    if _complete(home):
        return binary
    _require_go()
    progress.say(f"building KWOK {KWOK_VERSION} from the Go module proxy (pod deletes by UID)")
    home.mkdir(parents=True, exist_ok=True)
    info = subprocess.run(["go", "mod", "download", "-json", f"sigs.k8s.io/kwok@v{KWOK_VERSION}"],
                          capture_output=True, text=True, check=False, cwd="/",
                          env={**os.environ, "GOFLAGS": "-mod=mod"})
    if info.returncode != 0:
        raise BuildError(f"go mod download sigs.k8s.io/kwok@v{KWOK_VERSION}: {info.stderr.strip()}")
    src = home / "src"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(json.loads(info.stdout)["Dir"], src)
    for path in src.rglob("*"):  # the module cache is read-only
        path.chmod(0o755 if path.is_dir() else 0o644)
    target = src / KWOK_PATCHED_FILE
    text = target.read_text()
    if KWOK_PATCH[0] not in text:
        raise BuildError(f"KWOK {KWOK_VERSION}: {KWOK_PATCHED_FILE} no longer has the pod delete "
                         "to patch; look again at KWOK_PATCH in fmesh_events/devstack/builds.py")
    target.write_text(text.replace(KWOK_PATCH[0], KWOK_PATCH[1], 1))
    env = {**_go_env(), "GOFLAGS": "-mod=readonly"}
    _run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(binary), "./cmd/kwok"],
         src, progress, "go build kwok", env)
    _mark_complete(home, {"kwok": KWOK_VERSION, "patch": "pod deletes with a UID precondition"})
    return binary


def _wrapper_build(cache: Path, progress: Progress, name: str, version: str, require: str,
                   package: str, main_go: str | None = None) -> Path:
    """`go build` one program of a module from the Go module proxy through a wrapper module.

    A wrapper (rather than `go install`) keeps the build reproducible in our cache and lets a
    program be assembled from a module's packages (CoreDNS with a chosen plugin list).
    """
    home = cache / f"{name}-{version}"
    binary = home / "bin" / name
    if _complete(home) and binary.exists():
        return binary
    _require_go()
    progress.say(f"building {name} {version} from the Go module proxy")
    src = home / "src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    (src / "go.mod").write_text(
        f"module fmesh-events/{name}-build\n\ngo 1.24.0\n\nrequire {require}\n"
    )
    if main_go is None:
        (src / "tools.go").write_text(f'//go:build tools\n\npackage tools\n\nimport _ "{package}"\n')
        target = package
    else:
        (src / "main.go").write_text(main_go)
        target = "."
    _run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(binary), target],
         src, progress, f"go build {name}", _go_env())
    _mark_complete(home, {name: version})
    return binary


def ensure_registry(cache: Path, progress: Progress) -> Path:
    """distribution's registry: the node's image source, on loopback (no outside registry)."""
    return _wrapper_build(
        cache, progress, "registry", REGISTRY_VERSION,
        f"github.com/distribution/distribution/v3 v{REGISTRY_VERSION}",
        "github.com/distribution/distribution/v3/cmd/registry",
    )


# CoreDNS's own main imports every plugin (cloud DNS providers among them); a cluster domain
# needs these. The order is the directive order: it decides which plugin sees a query first.
COREDNS_PLUGINS = ("reload", "bind", "ready", "health", "errors", "log", "cache", "kubernetes", "loop")


def _short_hash(parts: Sequence[str]) -> str:
    """A cache directory's suffix naming a variant of a build (here, a plugin list)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


def ensure_coredns(cache: Path, progress: Progress) -> Path:
    imports = "".join(f'\t_ "github.com/coredns/coredns/plugin/{p}"\n' for p in COREDNS_PLUGINS)
    directives = ", ".join(f'"{p}"' for p in COREDNS_PLUGINS)
    main_go = (
        "package main\n\nimport (\n"
        '\t"github.com/coredns/coredns/core/dnsserver"\n'
        '\t"github.com/coredns/coredns/coremain"\n'
        f"{imports})\n\n"
        f"func init() {{ dnsserver.Directives = []string{{{directives}}} }}\n\n"
        "func main() { coremain.Run() }\n"
    )
    return _wrapper_build(
        cache, progress, "coredns", f"{COREDNS_VERSION}-{_short_hash(COREDNS_PLUGINS)}",
        f"github.com/coredns/coredns v{COREDNS_VERSION}", "", main_go,
    )


def ensure_metrics_server(cache: Path, progress: Progress) -> Path:
    return _wrapper_build(
        cache, progress, "metrics-server", METRICS_SERVER_VERSION,
        f"sigs.k8s.io/metrics-server v{METRICS_SERVER_VERSION}",
        "sigs.k8s.io/metrics-server/cmd/metrics-server",
    )


def _require_go() -> None:
    if shutil.which("go") is None:
        raise BuildError("the dev stack builds Kubernetes, etcd and KWOK with Go 1.24+: `go` is not on PATH")


def ensure_toolchain(cache: Path, progress: Progress) -> Toolchain:
    """Everything the local backend runs; fetched and built once, then reused."""
    cache.mkdir(parents=True, exist_ok=True)
    lib = ensure_pulsar(cache, progress)
    etcd = ensure_etcd(cache, progress)
    kwok = ensure_kwok(cache, progress)
    kube = ensure_kubernetes(cache, progress)
    registry = ensure_registry(cache, progress)
    coredns = ensure_coredns(cache, progress)
    metrics_server = ensure_metrics_server(cache, progress)
    return Toolchain(
        pulsar_lib=lib,
        etcd=etcd,
        kube_apiserver=kube["kube-apiserver"],
        kube_controller_manager=kube["kube-controller-manager"],
        kube_scheduler=kube["kube-scheduler"],
        kubectl=kube["kubectl"],
        kwok=kwok,
        kubelet=kube["kubelet"],
        kube_proxy=kube["kube-proxy"],
        registry=registry,
        coredns=coredns,
        metrics_server=metrics_server,
    )
