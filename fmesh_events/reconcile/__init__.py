"""reconcile: Key_Shared consumers of resource-events and pod-events that materialize each
CR into StatefulSets, Services, child CRs and status (DESIGN.md, "reconcile").

Public surface: `run_reconcile(settings, stop)` (the component `fmesh-events run` starts) and
`Reconciler` for tests and benchmarks. `render` holds the pure CR -> objects functions.
"""

from __future__ import annotations

import logging
import threading

from fmesh_events import kube_client, pulsar_client
from fmesh_events.lifecycle import process_name, supervised
from fmesh_events.reconcile.loop import Reconciler
from fmesh_events.settings import Settings

__all__ = ["Reconciler", "run_reconcile"]

log = logging.getLogger("fmesh_events.reconcile")


def run_reconcile(settings: Settings, stop: threading.Event) -> None:
    """Consume until `stop`; after a failure (Pulsar gone) start over with a growing delay."""

    def reconcile_once() -> None:
        pulsar_client.PulsarAdmin(settings).ensure_namespace(
            settings.system_namespace, settings.retention_minutes)
        client = pulsar_client.connect(settings)
        reconciler = Reconciler(kube_client.api_client(settings), client, settings.topic,
                                process_name(), max_attempts=settings.reconcile_max_attempts,
                                workers=settings.reconcile_workers,
                                clusters=pulsar_client.ClusterPool(settings))
        try:
            reconciler.open()
            reconciler.run_until(stop)
        finally:
            reconciler.close()
            client.close()

    supervised("reconciler", stop, reconcile_once, log)
