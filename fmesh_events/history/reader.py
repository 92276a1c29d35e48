"""Reading the operator's topics back for history: one Reader per topic, positioned by publish
time (a `--since 1h` query seeks, it does not scan the topic's older messages), filtered by
key, and merged into one stream ordered by publish time. Streams, never loads a topic whole.
"""

from __future__ import annotations

import contextlib
import heapq
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pulsar

from fmesh_events import events


class HistoryError(Exception):
    """Something a person must fix (a topic that cannot be read, a bad argument)."""


@dataclass(frozen=True)
class Message:
    publish_ms: int
    topic: str  # short name, e.g. "reconcile-log"
    key: str
    message_id: str
    data: bytes


SOURCES = {  # --type value -> topics
    "change": (events.RESOURCE_EVENTS, events.POD_EVENTS),
    "reconcile": (events.RECONCILE_LOG,),
    "scale": (events.SCALE_DECISIONS,),
}

KeyFilter = Callable[[str], bool]


class TopicStream:
    """The messages of one topic from `since_ms`, in publish order, up to `until_ms`."""

    def __init__(self, client: pulsar.Client, full_topic: str, short: str, since_ms: int | None,
                 until_ms: int | None, wanted: KeyFilter) -> None:
        self.short = short
        self.until_ms = until_ms
        self.wanted = wanted
        self.read = 0
        self.past_until = False
        try:
            self.reader = client.create_reader(full_topic, pulsar.MessageId.earliest,
                                               receiver_queue_size=2000)
            if since_ms is not None:
                self.reader.seek(since_ms)
        except Exception as error:
            raise HistoryError(f"cannot read topic {full_topic}: {error}") from error

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.reader.close()

    def _next(self, timeout_ms: int) -> Message | bool | None:
        """A wanted message; None for one to skip; False when nothing came in time."""
        try:
            message = self.reader.read_next(timeout_millis=timeout_ms)
        except pulsar.Timeout:
            return False
        self.read += 1
        publish = message.publish_timestamp()
        if self.until_ms is not None and publish > self.until_ms:
            self.past_until = True
            return False
        key = message.partition_key()
        if not self.wanted(key):
            return None
        return Message(publish, self.short, key, str(message.message_id()), message.data())

    def backlog(self) -> Iterator[Message]:
        """What the topic holds now (from `since`); ends when caught up or past `until`.
        Reads until a short wait comes back empty, and only then asks whether more is there:
        asking before every message cost as much as decoding it."""
        while self.reader.has_message_available():
            while (got := self._next(100)) is not False:
                if isinstance(got, Message):
                    yield got
            if self.until_ms is not None and self.past_until:
                return

    def poll(self, timeout_ms: int) -> Message | None:
        got = self._next(timeout_ms)
        return got if isinstance(got, Message) else None


class History:
    """Merged, time-ordered messages of the chosen topics for the chosen keys."""

    def __init__(self, client: pulsar.Client, topic: Callable[[str], str], types: list[str],
                 since_ms: int | None, until_ms: int | None, wanted: KeyFilter) -> None:
        names = [name for t in types for name in SOURCES[t]]
        self.streams: list[TopicStream] = []
        try:
            for name in names:
                self.streams.append(TopicStream(client, topic(name), name, since_ms, until_ms,
                                                wanted))
        except HistoryError:
            self.close()
            raise

    @property
    def read(self) -> int:
        return sum(s.read for s in self.streams)

    def close(self) -> None:
        for stream in self.streams:
            stream.close()

    def messages(self) -> Iterator[Message]:
        """Everything up to now, merged by publish time (each topic is in publish order)."""
        return heapq.merge(*(s.backlog() for s in self.streams), key=lambda m: m.publish_ms)

    def follow(self, stop: threading.Event, poll_ms: int = 200) -> Iterator[Message]:
        """New messages as they come, after `messages()` was drained (like `kubectl logs -f`).
        Within one poll round they are ordered by publish time."""
        while not stop.is_set():
            batch = [m for s in self.streams if (m := s.poll(poll_ms // len(self.streams) or 1))]
            yield from sorted(batch, key=lambda m: m.publish_ms)
            if not batch:
                time.sleep(0.01)


def key_filter(key: str | None, namespace: str | None) -> KeyFilter:
    if key is not None:
        return lambda k: k == key
    if namespace is not None:
        return lambda k: k.split("/", 2)[1:2] == [namespace]
    return lambda _k: True


def decode(message: Message) -> Any:
    """The decoded payload: a ChangeEvent, or a reconcile / scale record as a dict."""
    if message.topic in (events.RESOURCE_EVENTS, events.POD_EVENTS):
        return events.decode(message.data)
    if message.topic == events.RECONCILE_LOG:
        return events.decode_record(events.PARSED_RECONCILE_RECORD, message.data)
    return events.decode_record(events.PARSED_SCALE_DECISION, message.data)
