"""scale: backlog- and CPU-driven autoscaling through Pulsar (DESIGN.md, "scale").

The sampler (leader only) publishes metrics to scale-signals; the scaler (any number of
processes, Key_Shared) decides as the HPA does and writes /scale, recording each decision on
scale-decisions. Public surface: `run_scale(settings, stop)`, `Sampler`, `Scaler`; the math
is in `hpa` and `spec` (pure).
"""

from __future__ import annotations

import logging
import threading

from fmesh_events import kube_client, pulsar_client
from fmesh_events.lifecycle import process_name, supervised
from fmesh_events.scale.sampler import Sampler
from fmesh_events.scale.scaler import Scaler
from fmesh_events.scale.usage import MetricsApiSource, UsageSource
from fmesh_events.settings import Settings

__all__ = ["Sampler", "Scaler", "run_scale"]

log = logging.getLogger("fmesh_events.scale")


def run_scale(settings: Settings, stop: threading.Event, usage: UsageSource | None = None) -> None:
    """The sampler (when this process leads) and a scaler, until `stop`."""

    def sampling() -> None:
        pulsar_client.PulsarAdmin(settings).ensure_namespace(settings.system_namespace,
                                                             settings.retention_minutes)
        client = pulsar_client.connect(settings)
        api = kube_client.api_client(settings)
        clusters = pulsar_client.ClusterPool(settings, own_client=client)
        sampler = Sampler(api, client, settings.topic, clusters,
                          usage or MetricsApiSource(api), settings.watch_namespaces,
                          settings.scale_interval_seconds, settings.scale_probe_rearm_seconds)
        closer = threading.Thread(target=lambda: (stop.wait(), client.close()), daemon=True)
        closer.start()  # a standby blocked waiting for leadership must still stop
        try:
            sampler.lead()
            sampler.run_until(stop)
        finally:
            clusters.close()
            client.close()

    def scaling() -> None:
        client = pulsar_client.connect(settings)
        scaler = Scaler(kube_client.api_client(settings), client, settings.topic, process_name())
        try:
            scaler.open()
            scaler.run_until(stop)
        finally:
            scaler.close()
            client.close()

    threads = [threading.Thread(target=supervised, args=(what, stop, body, log), daemon=True,
                                name=what) for what, body in (("sampler", sampling),
                                                              ("scaler", scaling))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
