"""reconcile: Key_Shared consumers of resource-events and pod-events that materialize each
CR into StatefulSets, Services, child CRs and status (DESIGN.md, "reconcile").

Public surface: `run_reconcile(settings, stop)` (the component `fmesh-events run` starts) and
`Reconciler` for tests and benchmarks. `render` holds the pure CR -> objects functions.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from fmesh_events import kube_client, pulsar_client
from fmesh_events.reconcile.loop import Reconciler
from fmesh_events.settings import Settings

__all__ = ["Reconciler", "run_reconcile"]

log = logging.getLogger("fmesh_events.reconcile")


def consumer_name() -> str:
    """Unique per process and stable for its life (the pod name inside Kubernetes)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def run_reconcile(settings: Settings, stop: threading.Event) -> None:
    """Consume until `stop`; after a failure (Pulsar gone) start over with a growing delay."""
    backoff = 1.0
    while not stop.is_set():
        started = time.monotonic()
        client = None
        reconciler = None
        try:
            pulsar_client.PulsarAdmin(settings).ensure_namespace(
                settings.system_namespace, settings.retention_minutes)
            client = pulsar_client.connect(settings)
            reconciler = Reconciler(kube_client.api_client(settings), client, settings.topic,
                                    consumer_name(), max_attempts=settings.reconcile_max_attempts,
                                    workers=settings.reconcile_workers,
                                    admin=lambda url: pulsar_client.PulsarAdmin(
                                        settings.model_copy(update={"pulsar_admin_url": url})))
            reconciler.open()
            reconciler.run_until(stop)
        except Exception as error:
            log.error("reconciler stopped; starting over", extra={"error": str(error),
                                                                  "retry_in": backoff})
        finally:
            if reconciler is not None:
                reconciler.close()
            if client is not None:
                client.close()
        if time.monotonic() - started > 60:
            backoff = 1.0
        stop.wait(backoff)
        backoff = min(backoff * 2, 60)
