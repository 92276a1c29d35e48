"""The dev stack: a real Pulsar broker and a real Kubernetes control plane for the operator
and its tests, brought up from package registries (local backend) or containers (docker).

Public surface: `up`, `down`, `status`, `StackInfo`, `StackError`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from fmesh_events.devstack import builds, docker, local
from fmesh_events.devstack.progress import Progress
from fmesh_events.devstack.state import StackError, StackInfo

__all__ = ["StackError", "StackInfo", "apply_crds", "choose_backend", "down", "status", "up"]


def choose_backend(requested: str) -> str:
    """`local` or `docker`; `auto` picks docker only when a Docker engine answers."""
    if requested in ("local", "docker"):
        return requested
    if requested != "auto":
        raise StackError(f"unknown stack backend {requested!r}: use local, docker or auto")
    return "docker" if docker.docker_available() else "local"


def up(stack_dir: Path, cache_dir: Path, backend: str = "auto",
       progress: Progress | None = None, crds: list[Path] | None = None) -> StackInfo:
    """Start the stack in `stack_dir` (which must not hold a running stack) and apply CRDs."""
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
            tool = builds.ensure_toolchain(cache_dir, progress)
            stack.kubectl_path = str(tool.kubectl)
            stack.versions = tool.versions
            local.start_pulsar(tool, stack)
            stack.save()
            local.start_kubernetes(tool, stack, progress)
            stack.save()
            local.wait_pulsar(stack)
            progress.say(f"Pulsar ready at {stack.pulsar_service_url} (admin {stack.pulsar_admin_url})")
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
