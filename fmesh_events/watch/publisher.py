"""The watcher's side of Pulsar: one exclusive producer per topic (the leader holds both),
the per-kind checkpoint carried on every message, and the read-back that resumes from it.

Why a checkpoint property rather than "the resourceVersion of the last message": each kind is
a separate watch stream, and the streams interleave. Every message carries, as property
`checkpoint`, the highest resourceVersion published so far *for each kind*, so the last
message on the topic says where each stream must resume.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import pulsar
from prometheus_client import Counter, Gauge

from fmesh_events import events
from fmesh_events.events import ChangeEvent, EventType

log = logging.getLogger("fmesh_events.watch")

PUBLISHED = Counter("fmesh_watch_events_published_total", "Change events acknowledged by Pulsar",
                    ["topic", "type"])
PUBLISH_ERRORS = Counter("fmesh_watch_publish_errors_total", "Sends that Pulsar refused", ["topic"])
LAG = Gauge("fmesh_watch_lag_seconds", "From the watcher seeing a change to Pulsar acking it",
            ["topic"])

CHECKPOINT_PROPERTY = "checkpoint"


class LeadershipLost(RuntimeError):
    """A send was refused in a way that means another watcher now holds the topic."""


@dataclass
class KnownObject:
    """What the topic last said about one object (for the diff after a relist)."""

    kind: str
    resource_version: str
    deleted: bool
    event: ChangeEvent


def object_key(kind: str, namespace: str, name: str) -> str:
    return f"{kind}/{namespace}/{name}"


def parse_checkpoint(message: Any) -> dict[str, str] | None:
    """The checkpoint a message carries, or None when it carries none that makes sense (a
    message someone else put on the topic: no property, not JSON, not kind -> version)."""
    raw = (message.properties() or {}).get(CHECKPOINT_PROPERTY)
    if raw is None:
        return None
    try:
        checkpoint = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(checkpoint, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v.isdigit()
            for k, v in checkpoint.items()):
        return None
    return checkpoint


def decode_own(data: bytes) -> ChangeEvent | None:
    """A change event as this watcher writes them, or None for anything else (bytes that do
    not decode as one, another version, a key that is not Kind/namespace/name)."""
    try:
        event = events.decode(data, newest=events.EVENT_VERSION)
    except events.Undecodable:
        return None
    if event.key.count("/") < 2:
        return None
    return event


class TopicPublisher:
    """The exclusive producer of one topic and what it has published."""

    def __init__(self, client: pulsar.Client, topic: str, producer_name: str) -> None:
        self.client = client
        self.topic = topic
        self.producer_name = producer_name
        self.producer: Any = None
        self.checkpoint: dict[str, str] = {}
        self.known: dict[str, KnownObject] | None = None
        self._lock = threading.Lock()
        self._last_sequence_id = -1
        self.failure: BaseException | None = None

    def acquire(self) -> None:
        """Block until this process is the topic's only producer (PIP-68 WaitForExclusive)."""
        self.producer = self.client.create_producer(
            self.topic,
            producer_name=self.producer_name,
            schema=pulsar.schema.AvroSchema(None, schema_definition=events.AVRO_SCHEMA),
            access_mode=pulsar.ProducerAccessMode.WaitForExclusive,
            send_timeout_millis=0,  # never give up: the broker's dedup makes resends safe
            block_if_queue_full=True,
            max_pending_messages=1000,
            batching_enabled=True,
            batching_type=pulsar.BatchingType.KeyBased,  # Key_Shared consumers need it
            batching_max_publish_delay_ms=5,
            compression_type=pulsar.CompressionType.LZ4,
        )
        self._last_sequence_id = int(self.producer.last_sequence_id())

    def read_checkpoint(self) -> dict[str, str]:
        """The checkpoint of the newest message on the topic ({} for an empty topic).

        When the newest message is not ours (garbage, another schema, no checkpoint), the
        topic is read back for the newest one that is: a foreign message must not make the
        watcher start from nothing, nor stop it from starting."""
        reader = self.client.create_reader(self.topic, pulsar.MessageId.latest,
                                           start_message_id_inclusive=True)
        try:
            if not reader.has_message_available():
                return {}
            message = reader.read_next(timeout_millis=10_000)
            checkpoint = parse_checkpoint(message) if decode_own(message.data()) else None
            if checkpoint is not None:
                return checkpoint
            log.warning("the newest message of the topic is not a change event of this "
                        "watcher; reading the topic back for the last checkpoint",
                        extra={"topic": self.topic, "message_id": str(message.message_id())})
        finally:
            reader.close()
        return self._scan_checkpoint()

    def _scan_checkpoint(self) -> dict[str, str]:
        found: dict[str, str] = {}
        reader = self.client.create_reader(self.topic, pulsar.MessageId.earliest,
                                           is_read_compacted=True)
        try:
            while reader.has_message_available():
                message = reader.read_next(timeout_millis=10_000)
                checkpoint = parse_checkpoint(message)
                if checkpoint is not None and decode_own(message.data()) is not None:
                    found = checkpoint
        finally:
            reader.close()
        return found

    def load_known(self) -> dict[str, KnownObject]:
        """Replay the topic (compacted when compaction ran) into object -> last event."""
        with self._lock:
            if self.known is not None:
                return self.known
        known: dict[str, KnownObject] = {}
        reader = self.client.create_reader(self.topic, pulsar.MessageId.earliest,
                                           is_read_compacted=True)
        try:
            while reader.has_message_available():
                message = reader.read_next(timeout_millis=10_000)
                event = decode_own(message.data())
                if event is None:  # a foreign or future message: not ours to judge here
                    continue
                self._remember(known, event)
        finally:
            reader.close()
        with self._lock:
            if self.known is None:
                self.known = known
            return self.known

    def known_snapshot(self) -> dict[str, KnownObject]:
        """A copy of load_known() to diff against: the publisher thread keeps updating the
        original while the watch threads list."""
        known = self.load_known()
        with self._lock:
            return dict(known)

    @staticmethod
    def _remember(known: dict[str, KnownObject], event: ChangeEvent) -> None:
        known[object_key(event.kind, event.namespace, event.name)] = KnownObject(
            kind=event.kind, resource_version=event.resource_version,
            deleted=event.type == EventType.DELETED, event=event,
        )

    def next_sequence_id(self, resource_version: str) -> int:
        # Derived from resourceVersion (etcd's revision) while the streams arrive in order,
        # and always above the last one, so the broker's dedup never drops a new change.
        try:
            wanted = int(resource_version)
        except ValueError:
            wanted = 0
        self._last_sequence_id = max(self._last_sequence_id + 1, wanted)
        return self._last_sequence_id

    def advance(self, checkpoint_key: str, resource_version: str) -> None:
        """Record a stream's progress; the next message carries it."""
        with self._lock:
            self.checkpoint[checkpoint_key] = _max_rv(self.checkpoint.get(checkpoint_key),
                                                      resource_version)

    def publish(self, event: ChangeEvent, checkpoint_key: str | None, seen_at: float) -> None:
        """Send asynchronously; blocks only while the client's own queue is full. The
        checkpoint of `checkpoint_key` moves to the event's version (None: it stays)."""
        if self.failure is not None:
            raise LeadershipLost(str(self.failure))
        producer = self.producer
        if producer is None:
            raise LeadershipLost(f"the producer of {self.topic} is closed")
        with self._lock:
            if checkpoint_key is not None:
                self.checkpoint[checkpoint_key] = _max_rv(self.checkpoint.get(checkpoint_key),
                                                          event.resource_version)
            if self.known is not None:
                self._remember(self.known, event)
            properties = {CHECKPOINT_PROPERTY: json.dumps(self.checkpoint, sort_keys=True)}
            sequence_id = self.next_sequence_id(event.resource_version)

        def done(result: pulsar.Result, _message_id: Any) -> None:
            if result == pulsar.Result.Ok:
                PUBLISHED.labels(self.topic, event.type.value).inc()
                LAG.labels(self.topic).set(max(0.0, time.time() - seen_at))
                return
            PUBLISH_ERRORS.labels(self.topic).inc()
            log.error("publish refused", extra={"key": event.key, "topic": self.topic,
                                                "result": str(result)})
            self.failure = RuntimeError(f"send to {self.topic} refused: {result}")

        producer.send_async(event.to_record(), done, properties=properties,
                            partition_key=event.key, sequence_id=sequence_id)

    def flush(self, timeout: float = 10) -> bool:
        """Wait up to `timeout` for Pulsar to ack what was sent; False if it did not.

        Sends never time out (see acquire), so without a bound a stop while the broker is
        away would hang. What is left unacked is not lost: the checkpoint only moves with
        persisted messages, so the next leader lists and publishes it again.
        """
        producer = self.producer
        if producer is None:
            return True
        flusher = threading.Thread(target=producer.flush, daemon=True)
        flusher.start()
        flusher.join(timeout)
        if not flusher.is_alive():
            return True
        log.warning("stopping with changes not yet acked by Pulsar; the next watcher "
                    "publishes them again from the checkpoint", extra={"topic": self.topic})
        return False

    def close(self) -> None:
        if self.producer is None:
            return
        flushed = self.flush()
        producer, self.producer = self.producer, None
        if flushed:
            with contextlib.suppress(Exception):  # after a broker loss: nothing left to save
                producer.close()


def _max_rv(current: str | None, candidate: str) -> str:
    if current is None:
        return candidate
    try:
        return candidate if int(candidate) > int(current) else current
    except ValueError:
        return candidate
