"""The Docker backend, for users who have a Docker engine: testcontainers' K3s module and the
apachepulsar/pulsar image running `bin/pulsar standalone`. Same StackInfo as the local one.

The containers outlive `dev up` (the Ryuk reaper is off for them) and `dev down` removes them
by id, so both commands behave as with the local backend.
"""

from __future__ import annotations

import contextlib
import os
import time
import urllib.request
from typing import Any

from fmesh_events.devstack.builds import KUBERNETES_VERSION, PULSAR_VERSION
from fmesh_events.devstack.progress import Progress
from fmesh_events.devstack.state import StackError, StackInfo

K3S_IMAGE = f"rancher/k3s:v{KUBERNETES_VERSION}-k3s1"
PULSAR_IMAGE = f"apachepulsar/pulsar:{PULSAR_VERSION}"


def docker_available() -> bool:
    """True when a Docker engine answers (a docker CLI alone is not enough)."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:
        return False


def up(stack: StackInfo, progress: Progress) -> None:
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    from testcontainers.core.container import DockerContainer
    try:
        from testcontainers.community.k3s import K3SContainer
    except ImportError:  # testcontainers < 4.10
        from testcontainers.k3s import K3SContainer

    progress.say(f"starting {PULSAR_IMAGE} (testcontainers)")
    pulsar: Any = (
        DockerContainer(PULSAR_IMAGE)
        .with_exposed_ports(6650, 8080)
        .with_env("PULSAR_PREFIX_brokerDeduplicationEnabled", "true")
        .with_env("PULSAR_PREFIX_delayedDeliveryTickTimeMillis", "100")
        .with_command(
            "sh -c 'bin/apply-config-from-env.py conf/standalone.conf && "
            "exec bin/pulsar standalone -nfw -nss'"
        )
    )
    pulsar.start()
    stack.containers["pulsar"] = pulsar.get_wrapped_container().id
    host = pulsar.get_container_host_ip()
    stack.pulsar_service_url = f"pulsar://{host}:{pulsar.get_exposed_port(6650)}"
    stack.pulsar_admin_url = f"http://{host}:{pulsar.get_exposed_port(8080)}"

    progress.say(f"starting {K3S_IMAGE} (testcontainers)")
    k3s: Any = K3SContainer(image=K3S_IMAGE)
    k3s.start()
    stack.containers["k3s"] = k3s.get_wrapped_container().id
    stack.kubeconfig = stack.dir / "kubeconfig"
    stack.kubeconfig.write_text(k3s.config_yaml())

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{stack.pulsar_admin_url}/admin/v2/clusters", timeout=3) as r:
                if b"standalone" in r.read():
                    return
        except Exception:
            time.sleep(1)
    raise StackError(f"{PULSAR_IMAGE} did not answer on {stack.pulsar_admin_url} within 180s")


def down(stack: StackInfo) -> None:
    import docker

    client = docker.from_env()
    for container_id in stack.containers.values():
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(container_id).remove(force=True)
