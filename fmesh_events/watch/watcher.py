"""The watch loop: wait to lead, resume each stream from the topic's checkpoint, and turn
every change into a message, through a bounded queue that never drops.

Threads: one per watched resource (list+watch), one publisher that drains the queue in
order. A watch thread blocks when the queue is full (the API server then sees a slow
client), never skips.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from prometheus_client import Gauge

from fmesh_events import events, models
from fmesh_events.events import EventType
from fmesh_events.watch import kube_stream
from fmesh_events.watch.convert import OWNED_SELECTOR, owner_key, to_event
from fmesh_events.watch.kube_stream import Gone, Resource
from fmesh_events.watch.publisher import (
    KnownObject,
    LeadershipLost,
    TopicPublisher,
    object_key,
)
from fmesh_events.watch.resume import CatchUp, oldest_kept_version, plan_catch_up

log = logging.getLogger("fmesh_events.watch")

QUEUE_DEPTH = Gauge("fmesh_watch_queue_depth", "Changes seen but not yet handed to Pulsar")
BEHIND = Gauge("fmesh_watch_behind", "1 while the queue is over 80% full")
IS_LEADER = Gauge("fmesh_watch_leader", "1 while this process is the active watcher")
CATCH_UP_WATCH_SECONDS = 5
# The publisher polls the queue this often while changes come, for this long after the
# last one (see _publish_loop).
PUBLISH_PAUSE_SECONDS = 0.01
PUBLISH_POLL_SECONDS = 1.0

CR_RESOURCES = tuple(
    Resource(kind=kind, api_version=models.API_VERSION, plural=plural)
    for kind, plural in models.PLURALS.items() if kind != "BackendConfig"
)
OWNED_RESOURCES = (
    Resource(kind="Pod", api_version="v1", plural="pods", label_selector=OWNED_SELECTOR),
    Resource(kind="StatefulSet", api_version="apps/v1", plural="statefulsets",
             label_selector=OWNED_SELECTOR),
)


@dataclass
class _Item:
    """One change to publish, or (event None) a stream's progress with nothing to publish:
    it moves the checkpoint in queue order, so no message claims progress past a change that
    is still queued."""

    publisher: TopicPublisher
    event: events.ChangeEvent | None
    checkpoint_key: str | None  # None: the change does not move its stream's checkpoint
    seen_at: float
    resource_version: str = ""


@dataclass
class WatchOptions:
    namespaces: list[str] = field(default_factory=list)
    queue_size: int = 10_000
    watch_timeout_seconds: int = 240


class Watcher:
    """One watcher process. `run()` blocks until `stop` is set."""

    def __init__(self, api: client.ApiClient, pulsar_client: Any, topic: Callable[[str], str],
                 options: WatchOptions | None = None, identity: str = "fmesh-watch") -> None:
        self.api = api
        self.options = options or WatchOptions()
        self.queue: queue.Queue[_Item] = queue.Queue(maxsize=self.options.queue_size)
        self.resource_events = TopicPublisher(pulsar_client, topic(events.RESOURCE_EVENTS),
                                              f"{identity}-{events.RESOURCE_EVENTS}")
        self.pod_events = TopicPublisher(pulsar_client, topic(events.POD_EVENTS),
                                         f"{identity}-{events.POD_EVENTS}")
        self.stop = threading.Event()
        self.leading = threading.Event()
        self.synced = threading.Event()  # every stream listed or resumed once
        self._failure: BaseException | None = None

    # -- leadership -------------------------------------------------------------------
    def run(self) -> None:
        log.info("standby: waiting to lead")
        # Resource events first, then pod events: two watchers never split the pair.
        self.resource_events.acquire()
        self.pod_events.acquire()
        self.leading.set()
        IS_LEADER.set(1)
        log.warning("now the active watcher", extra={"topics": [self.resource_events.topic,
                                                         self.pod_events.topic]})
        threads = [threading.Thread(target=self._publish_loop, name="publisher", daemon=True)]
        targets = [(r, self.resource_events) for r in CR_RESOURCES] + \
                  [(r, self.pod_events) for r in OWNED_RESOURCES]
        checkpoints = {id(p): p.read_checkpoint() for p in (self.resource_events, self.pod_events)}
        pending = threading.Semaphore(0)
        namespaces: list[str | None] = list(self.options.namespaces) or [None]
        streams = [(r, p, ns) for r, p in targets for ns in namespaces]
        for resource, publisher, namespace in streams:
            threads.append(threading.Thread(
                target=self._stream_loop, name=f"watch-{resource.kind}",
                args=(resource, publisher, namespace, checkpoints[id(publisher)], pending),
                daemon=True))
        for thread in threads:
            thread.start()
        remaining = len(streams)
        while not self.stop.is_set():
            if remaining and pending.acquire(timeout=0.5):
                remaining -= 1
                if not remaining:
                    self.synced.set()
            elif not remaining:
                self.stop.wait(0.5)
        if self._failure is not None:
            raise self._failure
        self._drain()

    def _fail(self, error: BaseException) -> None:
        self._failure = error
        self.stop.set()

    def close(self) -> None:
        self.stop.set()
        self.resource_events.close()
        self.pod_events.close()
        IS_LEADER.set(0)

    # -- one stream -------------------------------------------------------------------
    def _stream_loop(self, resource: Resource, publisher: TopicPublisher, namespace: str | None,
                     checkpoint: dict[str, str], synced: threading.Semaphore) -> None:
        key = resource.kind if namespace is None else f"{resource.kind}/{namespace}"
        resource_version = checkpoint.get(key)
        catch_up: CatchUp | None = None
        first = True
        backoff = 0.5
        while not self.stop.is_set():
            try:
                if resource_version is None:
                    # Fresh (ADDED, nothing to compare with) only for the very first list of
                    # a topic; a relist after 410 Gone compares with what the topic says, so
                    # what vanished meanwhile is published DELETED.
                    resource_version = self._relist(resource, publisher, namespace, key,
                                                    fresh=first and not checkpoint)
                if first:
                    synced.release()
                    first = False
                # While catching up, short watches: the API server sends a bookmark (with
                # its current version) 2 s before a watch's timeout, which ends the catch-up
                # when no event does.
                timeout = (CATCH_UP_WATCH_SECONDS if catch_up is not None
                           else self.options.watch_timeout_seconds)
                for event_type, obj in kube_stream.watch_objects(
                        self.api, resource, namespace, resource_version, timeout):
                    meta = obj.get("metadata", {})
                    resource_version = meta.get("resourceVersion", resource_version)
                    version = int(resource_version) if resource_version.isdigit() else 0
                    if catch_up is not None and version > catch_up.until:
                        self._end_catch_up(resource, publisher, key, catch_up)
                        catch_up = None
                    if catch_up is None:
                        if event_type == "BOOKMARK":
                            self._put(_Item(publisher, None, key, time.time(), resource_version))
                        else:
                            self._enqueue(resource, publisher, obj, EventType(event_type), key)
                    elif event_type != "BOOKMARK":
                        okey = object_key(resource.kind, meta.get("namespace", ""),
                                          meta.get("name", ""))
                        catch_up.saw(okey, version)
                        if not catch_up.already_published(okey, version):
                            # The checkpoint stays behind until the catch-up ends: a watcher
                            # that dies in it catches up again, instead of resuming past the
                            # DELETED it still owed.
                            self._enqueue(resource, publisher, obj, EventType(event_type), None)
                    if catch_up is not None and version >= catch_up.until:
                        self._end_catch_up(resource, publisher, key, catch_up)
                        catch_up = None
                    if self.stop.is_set():
                        return
                backoff = 0.5
            except Gone as gone:
                since = oldest_kept_version(str(gone))
                if since is not None and catch_up is None:
                    log.info("watch expired; resuming from the oldest version kept",
                             extra={"kind": resource.kind, "from": resource_version,
                                    "resume_at": since})
                    catch_up = self._begin_catch_up(resource, publisher, namespace, key, since)
                    resource_version = since
                else:  # nothing kept to resume from (or it slid away meanwhile): relist
                    log.info("watch expired; relisting", extra={"kind": resource.kind})
                    catch_up = None
                    resource_version = None
            except Exception as error:  # API server away or a broken stream: retry
                if self.stop.is_set():
                    return
                log.warning("watch failed; retrying", extra={"kind": resource.kind,
                                                              "error": str(error),
                                                              "retry_in": backoff})
                self.stop.wait(backoff + random.random() * backoff / 2)
                backoff = min(backoff * 2, 30)

    def _begin_catch_up(self, resource: Resource, publisher: TopicPublisher,
                        namespace: str | None, checkpoint_key: str, since: str) -> CatchUp:
        """List, publish RESYNC for what changed before `since` (no event will come for it),
        and return what the watch from `since` must settle (see resume.py)."""
        items, list_rv = kube_stream.list_objects(self.api, resource, namespace)
        resync, catch_up = plan_catch_up(resource.kind, namespace, items, list_rv, since,
                                         publisher.known_snapshot())
        for obj in resync:  # the checkpoint stays behind, as in the catch-up's events
            self._enqueue(resource, publisher, obj, EventType.RESYNC, None)
        log.info("listed for the catch-up", extra={
            "kind": resource.kind, "objects": len(items), "published": len(resync),
            "until": list_rv, "maybe_deleted_before": len(catch_up.vanished)})
        return catch_up

    def _end_catch_up(self, resource: Resource, publisher: TopicPublisher, checkpoint_key: str,
                      catch_up: CatchUp) -> None:
        """The watch passed the list's version: what vanished without an event in the window
        was deleted before it; say so, at the list's version (see _relist)."""
        for last in catch_up.vanished.values():
            self._put_deleted(publisher, last, str(catch_up.until), checkpoint_key)
        self._put(_Item(publisher, None, checkpoint_key, time.time(), str(catch_up.until)))
        log.info("caught up", extra={"kind": resource.kind, "until": catch_up.until,
                                     "deleted_before": len(catch_up.vanished)})

    def _relist(self, resource: Resource, publisher: TopicPublisher, namespace: str | None,
                checkpoint_key: str, fresh: bool) -> str:
        """List, and publish what differs from what the topic last said (RESYNC for changed or
        new objects, DELETED for vanished ones); ADDED when the topic is new."""
        items, list_rv = kube_stream.list_objects(self.api, resource, namespace)
        known = {} if fresh else publisher.known_snapshot()
        # A relist is a catch-up from the list's own version: every object is settled now.
        changed, settled = plan_catch_up(resource.kind, namespace, items, list_rv, list_rv,
                                         known)
        for obj in changed:
            self._enqueue(resource, publisher, obj,
                          EventType.ADDED if fresh else EventType.RESYNC, checkpoint_key)
        for last in settled.vanished.values():
            self._put_deleted(publisher, last, list_rv, checkpoint_key)
        self._put(_Item(publisher, None, checkpoint_key, time.time(), list_rv))
        log.info("listed", extra={"kind": resource.kind, "objects": len(items),
                                  "published": len(changed)})
        return list_rv

    def _put_deleted(self, publisher: TopicPublisher, last: KnownObject, list_rv: str,
                     checkpoint_key: str) -> None:
        """DELETED for an object a list no longer has. The deletion's own version is not
        known: the list's says "gone by then" and keeps each object's versions growing."""
        gone = last.event.model_copy(update={
            "type": EventType.DELETED, "observed_time_ms": int(time.time() * 1000),
            "resource_version": list_rv})
        self._put(_Item(publisher, gone, checkpoint_key, time.time()))

    def _enqueue(self, resource: Resource, publisher: TopicPublisher, obj: dict[str, Any],
                 event_type: EventType, checkpoint_key: str | None) -> None:
        key = None
        if resource.label_selector:
            key = owner_key(obj)
            if key is None:
                return  # labelled by someone else's convention: not ours
        event = to_event(obj, event_type, int(time.time() * 1000), key=key)
        if event.parse_error:
            log.warning("object does not fit its CRD; published with parseError",
                        extra={"key": event.key, "error": event.parse_error})
        self._put(_Item(publisher, event, checkpoint_key, time.time()))

    def _put(self, item: _Item) -> None:
        while True:
            try:
                self.queue.put(item, timeout=5)
                break
            except queue.Full:
                BEHIND.set(1)
                log.warning("behind: Pulsar is not keeping up; holding the watch",
                            extra={"queue_depth": self.queue.qsize()})
                if self.stop.is_set():
                    return
        depth = self.queue.qsize()
        QUEUE_DEPTH.set(depth)
        BEHIND.set(1 if depth > 0.8 * self.options.queue_size else 0)

    # -- publishing -------------------------------------------------------------------
    def _publish_loop(self) -> None:
        # Blocked on an empty queue, this thread is woken by every put: a futex wake per
        # event, which on two busy cores costs the watch thread a context switch with the
        # GIL held (17% of the watcher's samples at 1,000 Functions). So while changes keep
        # coming it polls, and a put finds nobody to wake; after a quiet second it blocks.
        quiet = 0.0  # seconds the queue has been found empty in a row
        try:
            while True:
                polling = quiet < PUBLISH_POLL_SECONDS
                try:
                    item = self.queue.get_nowait() if polling else self.queue.get(timeout=0.5)
                except queue.Empty:
                    if self.stop.is_set():
                        return
                    if polling:
                        time.sleep(PUBLISH_PAUSE_SECONDS)
                        quiet += PUBLISH_PAUSE_SECONDS
                    continue
                quiet = 0.0
                self._publish(item)
                QUEUE_DEPTH.set(self.queue.qsize())
        except LeadershipLost as error:
            if not self.stop.is_set():
                self._fail(error)
        except Exception as error:
            if self.stop.is_set():  # closing: the producer went away under us
                return
            log.exception("publisher failed")
            self._fail(error)

    @staticmethod
    def _publish(item: _Item) -> None:
        if item.event is None:
            if item.checkpoint_key is not None:
                item.publisher.advance(item.checkpoint_key, item.resource_version)
        else:
            item.publisher.publish(item.event, item.checkpoint_key, item.seen_at)

    def _drain(self) -> None:
        """On a clean stop: hand what is queued to Pulsar and wait for the acks."""
        deadline = time.monotonic() + 20
        while not self.queue.empty() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.resource_events.flush()
        self.pod_events.flush()
