"""The operator's image, built here by `fmesh-events dev image` (Docker, with no registry to
pull from: a local base made with debootstrap), run outside the cluster with testcontainers
against the dev stack, as a user whose Docker can pull would run the published one."""

from __future__ import annotations

import contextlib
import json
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fmesh_events import devstack
from fmesh_events.devstack import images
from fmesh_events.devstack.local import free_port
from fmesh_events.devstack.progress import Progress
from fmesh_events.settings import Settings
from tests.examples import EXAMPLES, documents, example
from tests.integration.watch_helpers import http_get, wait_for, watch_settings

REPO = Path(__file__).resolve().parents[2]
# testcontainers' reaper container (testcontainers/ryuk) cannot be pulled here; each test
# stops what it started.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


@pytest.fixture(scope="session")
def operator_image(stack: devstack.StackInfo) -> str:
    return images.build_operator_image(REPO, "test", Settings().cache_dir, Progress())


@pytest.fixture
def container(operator_image: str, stack: devstack.StackInfo, settings: Settings,
              namespace: str) -> Iterator[tuple[Any, int]]:
    from testcontainers.core.container import DockerContainer

    ws = watch_settings(settings, namespace)
    port = free_port()
    assert stack.kubeconfig is not None
    running = (
        DockerContainer(operator_image)
        .with_command("run")
        # The stack listens on loopback: the container shares the host's network.
        .with_kwargs(network_mode="host", read_only=True, stop_signal="SIGTERM")
        .with_tmpfs_mount("/tmp", "size=64m")  # as deploy/ mounts an emptyDir: a read-only root
        .with_volume_mapping(str(stack.kubeconfig), "/etc/fmesh/kubeconfig", "ro")
        .with_env("FMESH_KUBECONFIG", "/etc/fmesh/kubeconfig")
        .with_env("FMESH_PULSAR_SERVICE_URL", ws.pulsar_service_url)
        .with_env("FMESH_PULSAR_ADMIN_URL", ws.pulsar_admin_url)
        .with_env("FMESH_SYSTEM_NAMESPACE", ws.system_namespace)
        .with_env("FMESH_WATCH_NAMESPACES", json.dumps(ws.watch_namespaces))
        .with_env("FMESH_HTTP_PORT", str(port))
        .with_env("FMESH_LOG_LEVEL", "INFO")
    )
    running.start()
    try:
        yield running, port
    finally:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):  # the test may have removed it
            running.get_wrapped_container().remove(force=True)


def test_image_reconciles_the_dev_stack_and_stops_gracefully(
        container: tuple[Any, int], stack: devstack.StackInfo, namespace: str) -> None:
    running, port = container
    wrapped = running.get_wrapped_container()
    wait_for("/readyz answers 200 from the container", lambda: http_get(port, "/readyz")[0] == 200, 90)
    wrapped.reload()
    assert wrapped.attrs["Config"]["User"] == "10001:10001"
    config = next(d for d in documents(EXAMPLES / "function.yaml") if d["kind"] == "ConfigMap")
    config["metadata"].pop("namespace", None)
    function = example("function.yaml", "Function")
    function["metadata"] = {"name": "from-image"}
    for doc in (config, function):
        stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))
    wait_for("the StatefulSet made by the containerized operator", lambda: stack.kubectl(
        "get", "statefulset", "from-image-function", "-n", namespace, check=False).returncode == 0, 90)
    started = time.monotonic()
    wrapped.stop(timeout=30)  # SIGTERM, then SIGKILL after 30 s
    wrapped.reload()
    stopped_in = time.monotonic() - started
    assert wrapped.attrs["State"]["ExitCode"] == 0, wrapped.logs().decode()[-3000:]
    assert stopped_in < 30, f"stopped only by SIGKILL after {stopped_in:.1f}s"
    wrapped.remove()


def test_image_keeps_no_build_machine_ca(operator_image: str, tmp_path: Path) -> None:
    """The build trusted this machine's CA bundle (a BuildKit secret); no layer holds it."""
    import docker

    host_bundle = images.CA_BUNDLE.read_bytes()
    archive = tmp_path / "image.tar"
    with archive.open("wb") as out:
        for chunk in docker.from_env().images.get(operator_image).save():
            out.write(chunk)
    files = 0
    with tarfile.open(archive) as image:
        for member in image.getmembers():
            if not member.name.endswith("layer.tar"):
                continue
            layer_file = image.extractfile(member)
            assert layer_file is not None
            with tarfile.open(fileobj=layer_file) as layer:
                for entry in layer.getmembers():
                    if entry.isfile() and entry.size == len(host_bundle):
                        content = layer.extractfile(entry)
                        assert content is None or content.read() != host_bundle, entry.name
                    files += 1
    assert files > 1000  # the layers were read: Python and the operator are in there
