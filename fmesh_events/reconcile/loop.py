"""The reconcile consumer: a Key_Shared subscription "reconcile" on resource-events,
pod-events and reconcile-requests (retries and mesh refreshes), one record per reconcile on
reconcile-log, and the dead-letter topic after the last attempt.

Why one consumer name per process on all three topics: Pulsar 4's Key_Shared dispatcher
places consumers on a consistent-hash ring by name, so the same key goes to the same process
on every topic, and one key is handled by one process at a time, in order.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pulsar
import urllib3
from kubernetes import client
from kubernetes.dynamic.exceptions import DynamicApiError
from prometheus_client import Counter, Histogram

from fmesh_events import events, models
from fmesh_events.events import ChangeEvent, EventType
from fmesh_events.pulsar_client import ClusterPool, PulsarAdminError, why_not
from fmesh_events.pulsar_identity import PulsarIdentity
from fmesh_events.reconcile import cleanup, engine
from fmesh_events.reconcile.kube import KubeWriter, resource_version_number

log = logging.getLogger("fmesh_events.reconcile")

RECONCILES = Counter("fmesh_reconcile_total", "Reconciles by outcome", ["outcome"])
DURATION = Histogram("fmesh_reconcile_duration_seconds", "Reconcile duration", ["outcome"])
DEAD_LETTERED = Counter("fmesh_reconcile_dead_lettered_total", "Keys given up on")
FOLDED = Counter("fmesh_reconcile_folded_total",
                 "Triggers served by the pass of an earlier queued trigger of the same key")
KNOWN_CONFLICTS = Counter("fmesh_reconcile_known_conflicts_total",
                          "Status refreshes redone from a read: the CR had moved since last seen")

UNAVAILABLE = Counter("fmesh_reconcile_api_unavailable_total",
                      "Reconciles paused because the API server could not be asked")

SUBSCRIPTION = "reconcile"
# Answers that mean the API server could not take the request now, whatever the object.
UNAVAILABLE_STATUSES = (429, 502, 503, 504)
OUTAGE_PAUSE_MAX_SECONDS = 10.0


def api_unavailable(failure: BaseException) -> bool:
    """Whether a failure says the API server could not be asked (down, restarting, overloaded).
    That is no fault of the object: it is waited out, never counted toward the dead-letter
    topic, and never written on the object as its failure."""
    if isinstance(failure, client.ApiException | DynamicApiError):
        return failure.status in UNAVAILABLE_STATUSES
    return isinstance(failure, urllib3.exceptions.HTTPError | ConnectionError)


class _Stopping(Exception):
    """The process stops while the API server is away: leave the message for the next one."""
CR_KINDS = ("Function", "Source", "Sink", "FunctionMesh")


def conflicted(failure: BaseException) -> bool:
    """The API server refused a write conditional on a resourceVersion that has moved on."""
    return getattr(failure, "status", None) == 409


def decode_change(data: bytes, topic: str) -> tuple[ChangeEvent, dict[str, Any] | None]:
    """A change event this reconciler can act on and its object, or events.Undecodable:
    beyond decoding, a version it knows, an object that is JSON, and a key that names a CR
    (on resource-events, the event's own object). A Pod's object is not parsed (None): the
    largest objects and most of pod-events, never read here."""
    event = events.decode(data, newest=events.EVENT_VERSION)
    pods = topic.endswith(events.POD_EVENTS)
    if pods and event.kind == "Pod":
        events.check_key(event.key, engine.WORKLOAD_KINDS)
        return event, None
    try:
        obj = event.obj()
    except ValueError as error:
        raise events.Undecodable(f"not a ChangeEvent: its object is not JSON: {error}") from error
    if not isinstance(obj, dict):
        raise events.Undecodable("not a ChangeEvent: its object is not a JSON object")
    events.check_key(event.key, engine.WORKLOAD_KINDS if pods else CR_KINDS)
    if not pods and event.key != f"{event.kind}/{event.namespace}/{event.name}":
        raise events.Undecodable(f"key {event.key!r} does not name the event's object "
                                 f"{event.kind}/{event.namespace}/{event.name}")
    return event, obj


def decode_request(data: bytes) -> tuple[str, int]:
    """(key, attempt) of a reconcile request: JSON {"key": "Kind/ns/name", "attempt": n}."""
    try:
        request = json.loads(data)
    except ValueError as error:
        raise events.Undecodable(f"not a reconcile request (JSON): {error}") from error
    if not isinstance(request, dict):
        raise events.Undecodable(f"not a reconcile request: a JSON {type(request).__name__}, "
                                 "not an object")
    attempt = request.get("attempt", 0)
    if type(attempt) is not int or attempt < 0:
        raise events.Undecodable(f"attempt {attempt!r} is not a count")
    return events.check_key(request.get("key"), CR_KINDS), attempt


@dataclass(frozen=True)
class Trigger:
    key: str
    attempt: int = 0
    children_too: bool = True
    generation: int | None = None  # of the resource event that triggered
    # A StatefulSet event's (replicas, readyReplicas): what a status refresh would write.
    observed: tuple[int, int] | None = None


def fold(triggers: list[Trigger]) -> Trigger:
    """One trigger for the queued triggers of one key: a single level-triggered pass serves
    them all. It redoes the children if any asked to, is a first attempt if any was a new
    event, and carries the newest generation; `observed` only when all were status refreshes
    (the last one's counts: the newest state of the StatefulSet)."""
    first = triggers[0]
    if len(triggers) == 1:
        return first
    events_ = [t for t in triggers if t.attempt == 0]
    generations = [t.generation for t in triggers if t.generation is not None]
    children_too = any(t.children_too for t in triggers)
    return Trigger(first.key,
                   attempt=0 if events_ else max(t.attempt for t in triggers),
                   children_too=children_too,
                   generation=max(generations) if generations else None,
                   observed=None if children_too else triggers[-1].observed)


class KeyedLane:
    """A worker's queue that hands over, with the oldest message, every message of the same
    key queued behind it: while a key waits, its later triggers join it rather than each
    running a pass of its own (client-go's workqueue folds the same way). Messages are
    acknowledged only after the pass that served them, so a process killed mid-pass leaves
    all of them to be redelivered."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.items: collections.deque[Any] = collections.deque()
        self.changed = threading.Condition()

    def put(self, item: Any) -> None:
        """Queue a message (None: stop after what is queued); waits while the lane is full."""
        with self.changed:
            while item is not None and len(self.items) >= self.maxsize:
                self.changed.wait()
            self.items.append(item)
            self.changed.notify_all()

    def get(self) -> list[Any] | None:
        """The oldest message and the later ones of its key, in order; None to stop."""
        with self.changed:
            while not self.items:
                self.changed.wait()
            first = self.items.popleft()
            if first is None:
                return None
            key = first.partition_key()
            taken, kept = [first], collections.deque[Any]()
            for item in self.items:
                (taken if item is not None and item.partition_key() == key else kept).append(item)
            self.items = kept
            self.changed.notify_all()
            return taken


class NewestStatefulSets:
    """Each key's newest StatefulSet, as far as this process knows, for status refreshes
    to use instead of a read.

    A copy read or applied is live. An event's copy is kept only when it is newer than one
    of those (resourceVersions compared as numbers, see resource_version_number): an event
    may be old (a replay, a backlog, a redelivery), and a status written from it would go
    back in time. Until this process has a live copy of a key, its refreshes read."""

    def __init__(self) -> None:
        self._newest: dict[str, tuple[int, dict[str, Any]]] = {}

    def saw(self, key: str, statefulset: dict[str, Any], live: bool) -> None:
        number = resource_version_number(statefulset)
        newest = self._newest.get(key)
        if number is None:  # not comparable: read
            self._newest.pop(key, None)
        elif (live and newest is None) or (newest is not None and number > newest[0]):
            meta = statefulset.get("metadata") or {}
            self._newest[key] = (number, {  # what a status refresh uses, no more
                "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"),
                             "resourceVersion": meta.get("resourceVersion")},
                "status": statefulset.get("status") or {}})

    def get(self, key: str) -> dict[str, Any] | None:
        newest = self._newest.get(key)
        return None if newest is None else newest[1]

    def forget(self, key: str) -> None:
        self._newest.pop(key, None)


CLEANUP_SESSION_IDLE_SECONDS = 600.0


class Reconciler:
    def __init__(self, api: client.ApiClient, pulsar_client: pulsar.Client,
                 topic: Any, name: str, max_attempts: int = 6, subscription: str = SUBSCRIPTION,
                 retry_base_seconds: float = 1.0, retry_max_seconds: float = 60.0,
                 clusters: ClusterPool | None = None,
                 finalizer_timeout_seconds: float = 120.0, workers: int = 8) -> None:
        self.writer = KubeWriter(api)
        self.client = pulsar_client
        self.topic = topic
        self.name = name
        self.subscription = subscription
        self.max_attempts = max_attempts
        self.retry_base = retry_base_seconds
        self.retry_max = retry_max_seconds
        self.topics = {name_: topic(name_) for name_ in (
            events.RESOURCE_EVENTS, events.POD_EVENTS, events.RECONCILE_REQUESTS)}
        self.consumer: Any = None
        self.log_producer: Any = None
        self.requests: Any = None
        self.dead_letters: Any = None
        self.handled = 0
        self.workers = workers
        self.options = engine.Options(
            delete_subscription=self._delete_subscription if clusters else None,
            finalizer_timeout_seconds=finalizer_timeout_seconds)
        self.clusters = clusters
        # Generation each key was last reconciled at, and keys given up on at it: a change
        # that does not move the generation (our own status writes, most metadata) needs
        # no reconcile, and must not restart a retry chain that was given up.
        self.generations: dict[str, int | None] = {}
        self.given_up: set[str] = set()
        # StatefulSet (replicas, readyReplicas) each key's status was last computed from.
        self.observed: dict[str, tuple[int, int]] = {}
        # Each key's CR as this process last read or wrote it (managedFields left out): a
        # status refresh starts from it instead of a read, and writes conditionally on it.
        self.known: dict[str, dict[str, Any]] = {}
        # Each key's newest StatefulSet: a status refresh from the known CR uses it.
        self.statefulsets = NewestStatefulSets()
        self._stop = threading.Event()
        models.allow_deep_objects()  # read back whatever the API server stores

    def open(self) -> None:
        self.consumer = self.client.subscribe(
            list(self.topics.values()), self.subscription,
            consumer_type=pulsar.ConsumerType.KeyShared,
            consumer_name=self.name,
            initial_position=pulsar.InitialPosition.Earliest,
            receiver_queue_size=200,
            negative_ack_redelivery_delay_ms=1000,
            key_shared_policy=pulsar.ConsumerKeySharedPolicy(
                key_shared_mode=pulsar.KeySharedMode.AutoSplit,
                allow_out_of_order_delivery=False),
        )
        self.log_producer = self.client.create_producer(
            self.topic(events.RECONCILE_LOG),
            schema=pulsar.schema.AvroSchema(None,
                                            schema_definition=events.RECONCILE_RECORD_SCHEMA),
            batching_enabled=True, batching_type=pulsar.BatchingType.KeyBased,
            batching_max_publish_delay_ms=5)
        # Key-based batching keeps each key on one consumer of a Key_Shared subscription.
        self.requests = self.client.create_producer(
            self.topics[events.RECONCILE_REQUESTS], batching_enabled=False)
        self.dead_letters = self.client.create_producer(
            self.topic(events.RECONCILE_DLQ), batching_enabled=False)

    def close(self) -> None:
        for closable in (self.consumer, self.log_producer, self.requests, self.dead_letters):
            if closable is not None:
                try:
                    closable.close()
                except Exception:
                    log.debug("close failed", exc_info=True)
        if self.clusters is not None:
            self.clusters.close()

    def run_until(self, stop: Any) -> None:
        """Receive, and hand each message to the worker that owns its key: keys run in
        parallel (API calls overlap), each key stays in order on one worker."""
        self._stop = stop
        lanes = [KeyedLane(maxsize=50) for _ in range(self.workers)]
        threads = [threading.Thread(target=self._work, args=(lane,), daemon=True,
                                    name=f"reconcile-{i}") for i, lane in enumerate(lanes)]
        for thread in threads:
            thread.start()
        try:
            while not stop.is_set():
                try:
                    message = self.consumer.receive(timeout_millis=500)
                except pulsar.Timeout:
                    continue
                key = message.partition_key() or ""
                lanes[zlib.crc32(key.encode()) % self.workers].put(message)
        finally:
            for lane in lanes:
                lane.put(None)
            for thread in threads:
                thread.join(30)  # finish the reconcile in hand, then ack (graceful stop)

    def _work(self, lane: KeyedLane) -> None:
        while (messages := lane.get()) is not None:
            try:
                self.handle(*messages)
            except _Stopping:
                continue  # unacked: redelivered to whoever consumes next
            except Exception as failure:  # Pulsar or the API server gone mid-handle: again later
                last = str(messages[-1].message_id())
                if api_unavailable(failure):
                    log.warning("handling failed: the API server is unavailable", extra={
                        "message_id": last, "error": str(failure)[:300]})
                else:
                    log.exception("handling failed", extra={"message_id": last})
                # Left unacked, they would wait for this consumer to go; Key_Shared holds
                # their key's later messages back meanwhile.
                for message in messages:
                    with contextlib.suppress(Exception):
                        self.consumer.negative_acknowledge(message)

    # -- one message ---------------------------------------------------------------------
    def handle(self, *messages: Any) -> None:
        """One pass for queued messages of one key (a single message, mostly); each is
        acknowledged once the pass is recorded."""
        triggered: list[tuple[Any, Trigger]] = []
        for message in messages:
            found = self._trigger(message, message.topic_name())
            if found is None:
                self.consumer.acknowledge(message)
                self.handled += 1
            else:
                triggered.append((message, found))
        if not triggered:
            return
        message = triggered[-1][0]
        topic = message.topic_name()
        trigger = fold([t for _m, t in triggered])
        if len(triggered) > 1:
            FOLDED.inc(len(triggered) - 1)
        if trigger.observed is not None and self.observed.get(trigger.key) == trigger.observed:
            # A status refresh whose StatefulSet counts are those the last pass saw: the
            # status written then still holds; nothing to read or write.
            for acked, _t in triggered:
                self.consumer.acknowledge(acked)
            self.handled += len(triggered)
            RECONCILES.labels("UNCHANGED").inc()
            return
        key, attempt, event_generation = trigger.key, trigger.attempt, trigger.generation
        started = time.monotonic()
        calls_before = self.writer.calls
        outcome, error, result = "OK", None, None
        try:
            known = None if trigger.children_too else self.known.get(key)
            result = self._reconcile(key, trigger.children_too, known,
                                     None if known is None else self.statefulsets.get(key))
            outcome = "GONE" if result.gone else "OK"
        except (engine.ReconcileError, client.ApiException, TimeoutError, OSError) as failure:
            error = _describe(failure)
            outcome = "FAILED"
        except Exception as failure:  # a bug must not stop the others: report and retry
            log.exception("reconcile crashed", extra={"key": key})
            error = f"internal error: {failure!r}"
            outcome = "FAILED"
        duration = time.monotonic() - started
        if outcome == "FAILED":
            outcome = self._fail(key, attempt, error or "unknown error", message)
            self._report_failure(key, error or "unknown error", attempt,
                                 dead=outcome == "DEAD_LETTERED")
        self._remember(key, result, outcome, event_generation, trigger.children_too)
        record_id = self._record(key, topic, message, result, outcome, attempt, error, duration)
        if result is not None and not result.gone and result.cr is not None:
            result = self._write_status(result, record_id)
        self._observe(key, result, outcome)
        self._know(key, result, outcome)
        if result is not None and result.statefulset is not None:
            self.statefulsets.saw(key, result.statefulset, live=True)
        elif result is not None and result.gone:
            self.statefulsets.forget(key)
        for acked, _t in triggered:
            self.consumer.acknowledge(acked)
        self.handled += len(triggered)
        RECONCILES.labels(outcome).inc()
        DURATION.labels(outcome).observe(duration)
        log.info("reconciled", extra={"key": key, "message_id": str(message.message_id()),
                                      "outcome": outcome, "calls": self.writer.calls - calls_before,
                                      "folded": len(triggered), "ms": round(duration * 1000, 1)})

    def _observe(self, key: str, result: engine.Result | None, outcome: str) -> None:
        """Remember the StatefulSet counts the status now speaks for; forget them when the
        status may say something else (a failure written on it, the object gone)."""
        status = result.desired_status if result is not None else None
        if outcome != "OK" or status is None or result is None or result.gone:
            self.observed.pop(key, None)
            return
        self.observed[key] = (int(status.get("replicas") or 0), int(status.get("readyReplicas") or 0))

    def _know(self, key: str, result: engine.Result | None, outcome: str) -> None:
        cr = result.cr if result is not None else None
        if outcome != "OK" or cr is None or result is None or result.gone:
            self.known.pop(key, None)
            return
        cr["metadata"].pop("managedFields", None)  # the bulk of a stored object; never used
        self.known[key] = cr

    def _reconcile(self, key: str, children_too: bool,
                   known: dict[str, Any] | None = None,
                   statefulset: dict[str, Any] | None = None) -> engine.Result:
        """engine.reconcile, with an unavailable API server waited out in place (a pause that
        doubles up to OUTAGE_PAUSE_MAX_SECONDS) rather than failed: an outage of the API
        server must not use up, or dead-letter, the retries of every object it touches.
        Waiting here keeps the key's order; the worker's other keys would fail alike.
        A `known` CR that has moved on (409) is dropped, and the CR read instead."""
        pauses = 0
        while True:
            try:
                return engine.reconcile(self.writer, key, children_too=children_too,
                                        options=self.options, known=known,
                                        statefulset=statefulset)
            except Exception as failure:
                if known is not None and conflicted(failure):
                    self.known.pop(key, None)
                    known = statefulset = None
                    continue
                if not api_unavailable(failure):
                    raise
                if self._stop.is_set():
                    raise _Stopping() from failure
                if pauses == 0:
                    log.warning("the API server is unavailable; waiting to reconcile", extra={
                        "key": key, "error": str(failure)[:300]})
                UNAVAILABLE.inc()
                self._stop.wait(min(self.retry_base * 2 ** pauses, OUTAGE_PAUSE_MAX_SECONDS))
                pauses += 1

    def _delete_subscription(self, identity: PulsarIdentity, topic: str, subscription: str) -> None:
        """Delete on the function's cluster as the identity it names; a refusal raises with
        the reason in words ("cluster X refused the token"). Sessions idle for 10 minutes
        close (deletes are rare; a burst of them shares one)."""
        assert self.clusters is not None
        session = self.clusters.session(identity)
        try:
            session.admin.request("DELETE", cleanup.subscription_path(topic, subscription),
                                  ok=(200, 204, 404))
        except (PulsarAdminError, OSError, urllib3.exceptions.HTTPError) as error:
            raise engine.ReconcileError(why_not(identity, error)) from None
        finally:
            self.clusters.close_idle(CLEANUP_SESSION_IDLE_SECONDS)

    def _remember(self, key: str, result: engine.Result | None, outcome: str,
                  event_generation: int | None, children_too: bool = True) -> None:
        generation = result.generation if result is not None else event_generation
        if not children_too and outcome != "GONE":
            # A status refresh may read a CR whose new generation's event is still queued:
            # remembering it would skip that event, and the children would never follow.
            return
        if outcome == "GONE":
            self.generations.pop(key, None)
            self.given_up.discard(key)
            return
        if generation is not None:
            self.generations[key] = generation
        if outcome == "DEAD_LETTERED":
            self.given_up.add(key)
        elif outcome == "OK":
            self.given_up.discard(key)

    def _trigger(self, message: Any, topic: str) -> Trigger | None:
        """What a message asks for; None for one to skip."""
        try:
            if topic.endswith(events.RECONCILE_REQUESTS):
                key, attempt = decode_request(message.data())
                return Trigger(key, attempt)
            event, obj = decode_change(message.data(), topic)
        except Exception as error:  # Undecodable, or a decoder surprised by what it read
            self._dead_letter(message, f"undecodable message: {error}")
            return None
        if topic.endswith(events.POD_EVENTS):
            # Readiness in status comes from the StatefulSet's readyReplicas, which moves
            # after the pods do: its events are the ones to follow.
            if event.kind != "StatefulSet" or obj is None:
                return None
            # The event's copy may be old (a replay, a backlog): it is written from only
            # when newer than a copy read or applied (NewestStatefulSets), which is kept up
            # to date even for a key given up on (nothing else to do for one). Its counts
            # say whether a refresh can be skipped: an old copy whose counts differ from the
            # last pass's costs a refresh, one whose counts match costs nothing, and the
            # newest event is always still to come.
            if event.type == EventType.DELETED:
                self.statefulsets.forget(event.key)
            else:
                self.statefulsets.saw(event.key, obj, live=False)
            if event.key in self.given_up:
                return None
            sts_status = obj.get("status") or {}
            observed = None if event.type == EventType.DELETED else (
                int(sts_status.get("replicas") or 0), int(sts_status.get("readyReplicas") or 0))
            return Trigger(event.key, children_too=False, observed=observed)
        known = event.key in self.generations
        if event.type == EventType.MODIFIED and known and \
                self.generations[event.key] == event.generation and \
                "deletionTimestamp" not in (obj or {}).get("metadata", {}):
            return None
        return Trigger(event.key, generation=event.generation)

    def _fail(self, key: str, attempt: int, error: str, message: Any) -> str:
        if attempt + 1 >= self.max_attempts:
            self._dead_letter(message, error, key=key)
            DEAD_LETTERED.inc()
            return "DEAD_LETTERED"
        delay = min(self.retry_base * 2 ** attempt, self.retry_max)
        self.requests.send(json.dumps({"key": key, "attempt": attempt + 1, "error": error}).encode(),
                           partition_key=key, deliver_after=timedelta(seconds=delay))
        return "FAILED"

    def _dead_letter(self, message: Any, reason: str, key: str | None = None) -> None:
        log.error("dead-lettered", extra={"key": key, "topic": message.topic_name(),
                                          "message_id": str(message.message_id()),
                                          "reason": reason})
        properties = {"reason": reason[:2000], "origin-topic": message.topic_name(),
                      "origin-message-id": str(message.message_id())}
        self.dead_letters.send(message.data(), properties=properties,
                               partition_key=key or message.partition_key() or "unknown")

    def _record(self, key: str, topic: str, message: Any, result: engine.Result | None,
                outcome: str, attempt: int, error: str | None, duration: float) -> str:
        record = {
            "recordVersion": 1, "key": key, "triggerTopic": topic.rsplit("/", 1)[-1],
            "triggerMessageId": str(message.message_id()),
            "generation": result.generation if result else None,
            "outcome": outcome, "attempt": attempt,
            "children": [{"kind": k, "name": n, "action": a}
                         for k, n, a in (result.children if result else [])],
            "statusChanged": bool(result and result.status_changed),
            "durationMs": round(duration * 1000, 3), "error": error,
            "time": int(time.time() * 1000), "reconciler": self.name,
        }
        message_id = self.log_producer.send(record, partition_key=key)
        return str(message_id)

    def _write_status(self, result: engine.Result, record_id: str) -> engine.Result:
        """Write the pass's status if it changed; returns the result whose `cr` is the CR as
        now stored. A status computed from a known copy is written on condition that the CR
        has not moved since; if it has, the refresh is done again from a read."""
        cr = result.cr
        assert cr is not None
        meta = cr["metadata"]
        kind, namespace, name = cr["kind"], meta["namespace"], meta["name"]
        if result.desired_status is None:
            return result
        if result.changed:
            desired = {**result.desired_status, "lastReconcileMessageId": record_id}
            patch = engine.merge_patch(cr.get("status") or {}, desired)
            try:
                stored = self.writer.patch_status(
                    kind, namespace, name, patch,
                    resource_version=meta["resourceVersion"] if result.from_known else None)
            except Exception as failure:
                if not (result.from_known and conflicted(failure)):
                    raise
                # Rare (the scaler wrote status, a label changed): the record already sent
                # names this refresh, and the status written from the read points at it.
                KNOWN_CONFLICTS.inc()
                self.known.pop(result.key, None)
                fresh = self._reconcile(result.key, children_too=False)
                if fresh.gone or fresh.cr is None:
                    return fresh
                return self._write_status(fresh, record_id)
            if stored is not None:
                result.cr = stored
            changed = [f"{a.lower()} {k} {n}" for k, n, a in result.children if a != "UNCHANGED"]
            if changed:
                self.writer.post_event(cr, "Normal", "Reconciled", "; ".join(changed))
        if result.mesh_owner:
            self.requests.send(json.dumps({"key": result.mesh_owner, "attempt": 0}).encode(),
                               partition_key=result.mesh_owner)
        return result

    def _report_failure(self, key: str, error: str, attempt: int, dead: bool) -> None:
        """Ready=False on the CR with the reason; an Event on the first failure and at the end."""
        kind, namespace, name = key.split("/", 2)
        try:
            cr = self.writer.get(kind, namespace, name)
            if cr is None:
                return
            if dead:
                message = (f"{error}. Gave up after {attempt + 1} attempts; "
                           "any change to this object retries it.")
            else:
                delay = min(self.retry_base * 2 ** attempt, self.retry_max)
                message = f"{error}. Retrying in {delay:g}s (attempt {attempt + 1} of {self.max_attempts})."
            status = engine.failure_status(cr, message, dead)
            self.writer.patch_status(kind, namespace, name,
                                     engine.merge_patch(cr.get("status") or {}, status))
            if dead or attempt == 0:
                self.writer.post_event(cr, "Warning",
                                       "ReconcileGaveUp" if dead else "ReconcileFailed", message)
        except Exception as failure:  # the API server itself may be what failed
            log.warning("could not report the failure on the object",
                        extra={"key": key, "error": str(failure)})


def _describe(error: BaseException) -> str:
    if isinstance(error, client.ApiException):
        try:
            body = json.loads(error.body or "{}")
            return f"API server refused ({error.status}): {body.get('message', error.reason)}"
        except ValueError:
            return f"API server error {error.status}: {error.reason}"
    return str(error)
