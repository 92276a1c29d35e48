"""The dev stack: a real Pulsar broker and a real Kubernetes control plane for the operator
and its tests, brought up from package registries (local backend) or containers (docker).

Public surface: `up`, `down`, `status`, `StackInfo`, `StackError`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fmesh_events.devstack import builds, docker, images, local, node
from fmesh_events.devstack.progress import Progress
from fmesh_events.devstack.state import StackError, StackInfo

__all__ = [
    "StackError", "StackInfo", "apply_crds", "choose_backend", "create_namespace", "down", "status", "up",
]


def choose_backend(requested: str) -> str:
    """`local` or `docker`; `auto` picks local when Go can build it, else docker when an
    engine answers (the real node builds its images with a Docker engine that cannot pull,
    so an engine alone does not mean testcontainers' images can be had)."""
    if requested in ("local", "docker"):
        return requested
    if requested != "auto":
        raise StackError(f"unknown stack backend {requested!r}: use local, docker or auto")
    if shutil.which("go") is None and docker.docker_available():
        return "docker"
    return "local"


def up(stack_dir: Path, cache_dir: Path, backend: str = "auto",
       progress: Progress | None = None, crds: list[Path] | None = None,
       real_node: bool = True) -> StackInfo:
    """Start the stack in `stack_dir` (which must not hold a running stack) and apply CRDs.

    With `real_node` (local backend) a kubelet node runs beside the KWOK nodes; see node.py.
    """
    progress = progress or Progress()
    started = time.monotonic()
    existing = _running(stack_dir)
    if existing:
        raise StackError(f"a dev stack already runs in {stack_dir}; `fmesh-events dev down` first")
    local.wipe(stack_dir)
    (stack_dir / "logs").mkdir(parents=True)
    stack = StackInfo(dir=stack_dir, backend=choose_backend(backend))
    progress.say(f"backend: {stack.backend}; state in {stack_dir}")
    try:
        if stack.backend == "docker":
            docker.up(stack, progress)
        else:
            # The images (Maven, debootstrap, Docker: mostly downloads) are made while Go
            # builds the stack's binaries (mostly CPU).
            with ThreadPoolExecutor(1) as pool:
                images_built = pool.submit(images.build_images, cache_dir, progress) \
                    if real_node else None
                tool = builds.ensure_toolchain(cache_dir, progress)
                built = images_built.result() if images_built is not None else {}
            stack.kubectl_path = str(tool.kubectl)
            stack.versions = tool.versions
            node_ip = None
            if real_node:
                node.claim(stack)
                stack.real_node = True
                node.setup_network()
                node_ip = node.NODE_IP
            local.start_pulsar(tool, stack, advertised_address=node_ip)
            stack.save()
            if real_node:
                # The registry's storage outlives the stack in the cache: pushes are quick.
                registry_port = stack.registry_port = local.start_registry(tool, stack, cache_dir)
                images.push_images(f"127.0.0.1:{registry_port}", built, progress)
            local.start_kubernetes(tool, stack, progress, node_ip=node_ip)
            stack.save()
            local.wait_pulsar(stack)
            progress.say(f"Pulsar ready at {stack.pulsar_service_url} (admin {stack.pulsar_admin_url})")
            if real_node:
                node.start(tool, stack, progress, registry_port)
                stack.save()
        if crds:
            apply_crds(stack, crds)
            progress.say(f"applied {len(crds)} CRD file(s)")
    except BaseException:
        down(stack)
        raise
    stack.started_seconds = round(time.monotonic() - started, 1)
    stack.save()
    return stack


def apply_crds(stack: StackInfo, crds: list[Path], timeout: float = 60) -> None:
    """Server-side apply the CRD files and wait until the API server serves each kind."""
    for crd in crds:
        stack.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    deadline = time.monotonic() + timeout
    for crd in crds:
        # Right after apply, .status.conditions may not exist yet and `kubectl wait` errors.
        while True:
            done = stack.kubectl("wait", "--for=condition=Established", "--timeout=10s",
                                 "-f", str(crd), check=False)
            if done.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise StackError(f"CRD {crd.name} not Established: {done.stderr.strip()}")
            time.sleep(0.5)


def create_namespace(stack: StackInfo, name: str, fake_nodes: bool = True) -> None:
    """A namespace whose pods all go to the KWOK nodes (`fake_nodes`: tests and benchmarks
    with many pods, whose instances need not run), or a plain one, whose pods go wherever
    the scheduler puts them: the real node, beside a tainted KWOK pair."""
    annotations = node.FAKE_NODE_NAMESPACE_ANNOTATIONS if fake_nodes else {}
    manifest = {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "annotations": annotations}}
    stack.kubectl("create", "-f", "-", input=json.dumps(manifest))


def _running(stack_dir: Path) -> StackInfo | None:
    try:
        stack = StackInfo.load(stack_dir)
    except StackError:
        return None
    if stack.backend == "local" and not any(stack.alive(n) for n in stack.pids):
        return None
    return stack


def down(stack: StackInfo) -> None:
    """Stop the stack, and the operator `scripts/dev` started beside it."""
    operator_pid = stack.dir / "operator.pid"
    if operator_pid.exists():
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            os.kill(int(operator_pid.read_text().strip()), signal.SIGTERM)
        operator_pid.unlink()
    if stack.backend == "docker":
        docker.down(stack)
    else:
        if stack.real_node:
            node.stop(stack)
        local.stop(stack)
    # Keep the pids: `dev status` then reports each process as stopped.
    stack.containers.clear()
    if stack.dir.exists():
        stack.save()


def status(stack_dir: Path) -> dict[str, object]:
    """What runs, for `dev status`: each process alive or not, and the URLs."""
    stack = StackInfo.load(stack_dir)
    processes = {name: ("running" if stack.alive(name) else "stopped") for name in stack.pids}
    return {
        "backend": stack.backend,
        "dir": str(stack.dir),
        "kubeconfig": str(stack.kubeconfig) if stack.kubeconfig else None,
        "pulsar_service_url": stack.pulsar_service_url,
        "pulsar_admin_url": stack.pulsar_admin_url,
        "processes": processes,
        "containers": stack.containers,
        "versions": stack.versions,
        "started_seconds": stack.started_seconds,
    }
