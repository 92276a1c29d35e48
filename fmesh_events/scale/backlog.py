"""Backlog of a function's subscription on its input topics, from the Pulsar admin API, as
KEDA's Pulsar scaler reads it (subscriptions[sub].msgBacklog), partitioned topics summed over
their partitions and topic patterns resolved against the namespace's topics."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import urllib3

from fmesh_events.pulsar_client import PulsarAdmin, PulsarAdminError, admin_topic_path, why_not

METADATA_TTL_SECONDS = 300.0  # partition counts and pattern matches change rarely
# A cluster that refused (401/403) or did not answer is not asked again for this long: one
# sentence for every function on it, and no thread waits on it again and again.
REFUSED_SECONDS = 10.0
PARTITION_SUFFIX = re.compile(r"-partition-\d+$")


@dataclass(frozen=True)
class TopicBacklog:
    topic: str
    backlog: int | None  # None: unknown, see `missing`
    missing: str | None = None


class ClusterRefused(RuntimeError):
    """The cluster refused the credentials or did not answer; the message says so in words."""


class BacklogReader:
    """Reads backlogs on one cluster with one admin call per topic, caching what rarely
    changes. Counts its admin calls (the benchmark reports calls per minute)."""

    def __init__(self, admin: PulsarAdmin) -> None:
        self.admin = admin
        self.calls = 0
        self._partitions: dict[str, tuple[float, int]] = {}
        self._namespaces: dict[str, tuple[float, list[str]]] = {}
        self._refused: tuple[float, str] | None = None
        self._lock = threading.Lock()

    def refused(self) -> str | None:
        """Why this cluster is not being asked right now, or None."""
        refused = self._refused
        if refused is not None and time.monotonic() < refused[0]:
            return refused[1]
        return None

    def _get(self, path: str) -> Any:
        why = self.refused()
        if why is not None:
            raise ClusterRefused(why)
        with self._lock:
            self.calls += 1
        try:
            answer = self.admin.request("GET", path, ok=(200, 404))
        except (PulsarAdminError, OSError, ValueError, urllib3.exceptions.HTTPError) as error:
            status = getattr(error, "status", None)
            if status is None or status in (0, 401, 403):  # the cluster, not this topic
                why = why_not(self.admin.identity, error)
                self._refused = (time.monotonic() + REFUSED_SECONDS, why)
                raise ClusterRefused(why) from None
            raise
        self._refused = None
        return answer

    def partitions(self, topic: str) -> int:
        cached = self._partitions.get(topic)
        if cached and time.monotonic() - cached[0] < METADATA_TTL_SECONDS:
            return cached[1]
        answer = self._get(f"{admin_topic_path(topic)}/partitions")
        count = int((answer or {}).get("partitions", 0)) if isinstance(answer, dict) else 0
        self._partitions[topic] = (time.monotonic(), count)
        return count

    def backlog(self, topic: str, subscription: str) -> TopicBacklog:
        """msgBacklog of `subscription` on `topic`, summed over partitions."""
        try:
            partitioned = self.partitions(topic) > 0
            suffix = "partitioned-stats" if partitioned else "stats"
            stats = self._get(f"{admin_topic_path(topic)}/{suffix}")
        except ClusterRefused as refused:
            return TopicBacklog(topic, None, str(refused))
        except (PulsarAdminError, OSError) as error:
            return TopicBacklog(topic, None, f"stats of {topic} could not be read: {error}")
        if not isinstance(stats, dict) or "subscriptions" not in stats:
            return TopicBacklog(topic, None, f"topic {topic} does not exist")
        found = (stats.get("subscriptions") or {}).get(subscription)
        if found is None:
            return TopicBacklog(topic, None, f"subscription {subscription!r} does not exist on "
                                             f"{topic} yet")
        return TopicBacklog(topic, int(found.get("msgBacklog") or 0))

    def resolve(self, pattern: str) -> list[str]:
        """Topics of the pattern's namespace whose name matches it (partitions folded)."""
        scheme, tenant, namespace = admin_topic_path(pattern).split("/")[3:6]
        ns_key = f"{scheme}/{tenant}/{namespace}"
        cached = self._namespaces.get(ns_key)
        if cached and time.monotonic() - cached[0] < METADATA_TTL_SECONDS / 5:
            names = cached[1]
        else:
            try:
                answer = self._get(f"/admin/v2/{ns_key}")
            except (PulsarAdminError, OSError, ClusterRefused):
                answer = []
            names = sorted({PARTITION_SUFFIX.sub("", t) for t in answer or []}) \
                if isinstance(answer, list) else []
            self._namespaces[ns_key] = (time.monotonic(), names)
        try:
            regex = re.compile(pattern)
        except re.error:
            return []
        return [name for name in names if regex.fullmatch(name)]
