"""watch: turns the Kubernetes list/watch streams of CRs and Pods into messages on
resource-events and pod-events (DESIGN.md, "watch").

Public surface: `run_watch(settings, stop)` (the component `fmesh-events run` starts) and
`Watcher` for tests and benchmarks. The pure parts are `redact` and `convert`.
"""

from __future__ import annotations

import logging
import threading

from fmesh_events import kube_client, models, pulsar_client
from fmesh_events.lifecycle import supervised
from fmesh_events.settings import Settings
from fmesh_events.watch.watcher import Watcher, WatchOptions

__all__ = ["WatchOptions", "Watcher", "run_watch"]

log = logging.getLogger("fmesh_events.watch")


def run_watch(settings: Settings, stop: threading.Event) -> None:
    """Be the active watcher, or its standby, until `stop` is set; after a failure (Pulsar
    gone, leadership lost) start over with a growing delay instead of exiting."""
    models.allow_deep_objects()  # a CR nested 10,000 levels deep must not stop a stream

    def watch_once() -> None:
        try:
            pulsar_client.PulsarAdmin(settings).ensure_namespace(
                settings.system_namespace, settings.retention_minutes)
        except Exception as error:  # Pulsar not there yet: wait for it, do not exit
            log.error("cannot prepare the system namespace; retrying",
                      extra={"namespace": settings.system_namespace, "error": str(error)})
            return
        client = pulsar_client.connect(settings)
        watcher = Watcher(kube_client.api_client(settings), client, settings.topic,
                          WatchOptions(namespaces=settings.watch_namespaces))
        relay = threading.Thread(target=_relay_stop, args=(stop, watcher), daemon=True)
        relay.start()
        try:
            watcher.run()
        finally:
            watcher.close()
            client.close()
            relay.join()

    supervised("watcher", stop, watch_once, log)


def _relay_stop(stop: threading.Event, watcher: Watcher) -> None:
    """Pass the process's stop to one watcher; ends with that watcher."""
    while not stop.wait(0.2):
        if watcher.stop.is_set():
            return
    watcher.stop.set()
