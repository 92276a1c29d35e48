"""history: audit any CR's life from the topics alone, and repair by replay.

`query()` merges resource-events, pod-events, reconcile-log and scale-decisions into one
timeline (timeline.py turns messages into entries, output.py prints them); it needs read access
to the topics and nothing else, no Kubernetes. `replay()` asks the running reconcilers to
reconcile keys again through reconcile-requests and reports what their reconcile-log records
say they wrote.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import pulsar

from fmesh_events import events, pulsar_client
from fmesh_events.history import output, reader
from fmesh_events.history.reader import HistoryError
from fmesh_events.history.timeline import Entry, SummaryBuilder, TimelineBuilder
from fmesh_events.settings import Settings

__all__ = ["HistoryError", "Query", "parse_key", "parse_time", "query", "replay"]

KINDS = {"function": "Function", "source": "Source", "sink": "Sink", "functionmesh": "FunctionMesh"}
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """A duration back from now ("90s", "15m", "1h30m", "2d") or an RFC 3339 time."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(text.strip())
    if match and any(match.groups()):
        days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
        return now - timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise HistoryError(f"{text!r} is neither a duration (90s, 15m, 1h30m, 2d) nor a time "
                           "(2026-11-25T10:00:00Z)") from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if when > now + timedelta(seconds=5):
        raise HistoryError(f"{text!r} is in the future")
    return when


def parse_key(text: str) -> str:
    """KIND/NAMESPACE/NAME, the kind in any case (function/ns/name works too)."""
    parts = text.split("/")
    if len(parts) != 3 or not all(parts):
        raise HistoryError(f"{text!r} is not KIND/NAMESPACE/NAME (e.g. function/default/my-fn)")
    kind = KINDS.get(parts[0].lower().rstrip("s").replace("functionmeshe", "functionmesh"))
    if kind is None:
        raise HistoryError(f"unknown kind {parts[0]!r}: one of Function, Source, Sink, FunctionMesh")
    return f"{kind}/{parts[1]}/{parts[2]}"


@dataclass
class Query:
    key: str | None = None
    namespace: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    types: list[str] = field(default_factory=lambda: list(reader.SOURCES))
    follow: bool = False
    include_status: bool = False


def _ms(when: datetime | None) -> int | None:
    return int(when.timestamp() * 1000) if when else None


def _check_topics(settings: Settings, types: list[str]) -> list[str]:
    """The chosen types whose topics exist. Asks the admin API when it may; an auditor with
    only topic read rights skips this check."""
    admin = pulsar_client.PulsarAdmin(settings)
    tenant_ns = settings.system_namespace
    try:
        listed = admin.request("GET", f"/admin/v2/persistent/{tenant_ns}", ok=(200, 401, 403, 404))
    except Exception as error:
        raise HistoryError(f"cannot reach Pulsar at {settings.pulsar_admin_url}: {error}") from error
    if isinstance(listed, dict) and "Namespace does not exist" in str(listed.get("reason", "")):
        raise HistoryError(f"Pulsar namespace {tenant_ns} does not exist: set --system-namespace "
                           "(FMESH_SYSTEM_NAMESPACE) to the operator's")
    if not isinstance(listed, list):
        return types
    present = {name.rsplit("/", 1)[-1] for name in listed}
    kept = [t for t in types if any(topic in present for topic in reader.SOURCES[t])]
    if not kept:
        wanted = ", ".join(t for ty in types for t in reader.SOURCES[ty])
        raise HistoryError(f"none of the topics {wanted} exists in {tenant_ns}: has the operator "
                           "run against this Pulsar namespace?")
    for missing in sorted(set(types) - set(kept)):
        print(f"note: no {missing} topic yet in {tenant_ns}; skipped", file=sys.stderr)
    return kept


class _Progress:
    """One updating line on stderr while a long read runs (only when stderr is a terminal)."""

    def __init__(self, history: reader.History, out: TextIO) -> None:
        self.history, self.out = history, out
        self.enabled = out.isatty()
        self.started = self.last = time.monotonic()

    def tick(self, shown: int) -> None:
        now = time.monotonic()
        if self.enabled and now - self.last > 1:
            self.last = now
            read = self.history.read
            print(f"\rread {read:,} messages ({read / (now - self.started):,.0f}/s), "
                  f"{shown:,} entries", end="", file=self.out, flush=True)

    def done(self) -> None:
        if self.enabled and self.last != self.started:
            print(file=self.out)


def entries(client: pulsar.Client, settings: Settings, q: Query,
            stop: threading.Event | None = None) -> Iterator[Entry]:
    """The timeline: merged messages turned into entries, then, with follow, new ones."""
    history = reader.History(client, settings.topic, q.types, _ms(q.since), _ms(q.until),
                             reader.key_filter(q.key, q.namespace))
    builder = TimelineBuilder(include_status=q.include_status)
    progress = _Progress(history, sys.stderr)
    shown = 0
    try:
        for message in history.messages():
            entry = _entry(builder, message)
            if entry is not None:
                shown += 1
                yield entry
            progress.tick(shown)
        progress.done()
        if q.follow:
            for message in history.follow(stop or threading.Event()):
                entry = _entry(builder, message)
                if entry is not None:
                    yield entry
    finally:
        history.close()


def _entry(builder: TimelineBuilder, message: reader.Message) -> Entry | None:
    try:
        payload = reader.decode(message)
    except Exception:
        return None  # not ours to judge here: the reconciler dead-letters undecodable input
    if message.topic in (events.RESOURCE_EVENTS, events.POD_EVENTS):
        return builder.add_change(payload, message.message_id, message.topic)
    if message.topic == events.RECONCILE_LOG:
        return builder.add_reconcile(payload, message.message_id)
    return builder.add_scale(payload, message.message_id)


def query(settings: Settings, q: Query, out: TextIO, fmt: str = "table", summary: bool = False,
          html_path: str | None = None) -> int:
    """Print the timeline (or the summary, or write the page); the number of entries."""
    q.types = _check_topics(settings, q.types)
    client = pulsar_client.connect(settings)
    count = 0
    summarized = SummaryBuilder()
    page = output.HtmlPage() if html_path else None
    writer = output.JsonArrayWriter(out) if fmt == "json" and not summary and not page else None
    if fmt == "table" and not summary and not page:
        print(output.table_header(), file=out)
    try:
        for entry in entries(client, settings, q):
            count += 1
            if summary:
                summarized.add(entry)
            elif page is not None:
                page.add(entry)
            elif writer is not None:
                writer.write(entry)
            elif fmt == "jsonl":
                print(output.to_json_line(entry), file=out)
            else:
                print(output.format_table_line(entry), file=out)
            if q.follow:
                out.flush()
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
        if writer is not None:
            writer.close()
    if summary:
        rows = summarized.rows()
        if fmt == "table":
            print(output.summary_table(rows), file=out)
        else:
            print(json.dumps([r.to_json_dict() for r in rows], indent=None if fmt == "jsonl" else 1),
                  file=out)
    if page is not None and html_path:
        with open(html_path, "w", encoding="utf-8") as handle:
            handle.write(page.render())
        print(f"wrote {html_path} ({count:,} entries)", file=sys.stderr)
    return count


# -- replay -----------------------------------------------------------------------------------
@dataclass
class Replayed:
    key: str
    outcome: str = "NO ANSWER"
    writes: list[str] = field(default_factory=list)
    error: str | None = None


def replay(settings: Settings, since: datetime, keys: list[str], timeout: float = 120.0
           ) -> list[Replayed]:
    """Ask the reconcilers to reconcile again every key seen since `since` (or just `keys`),
    and collect what they did from reconcile-log."""
    _check_topics(settings, ["change"])
    client = pulsar_client.connect(settings)
    try:
        seen = _keys_since(client, settings, since)
        unknown = [k for k in keys if k not in seen]
        if unknown:
            raise HistoryError(f"no change of {', '.join(unknown)} on resource-events since "
                               f"{since:%Y-%m-%dT%H:%M:%SZ}: check the key or an earlier --since")
        wanted = keys or sorted(seen)
        if not wanted:
            return []
        log_reader = client.create_reader(settings.topic(events.RECONCILE_LOG),
                                          pulsar.MessageId.latest)
        requests = client.create_producer(settings.topic(events.RECONCILE_REQUESTS),
                                          batching_enabled=False)
        asked: dict[str, Replayed] = {}
        for key in wanted:
            message_id = requests.send(json.dumps({"key": key, "attempt": 0, "replay": True})
                                       .encode(), partition_key=key)
            asked[str(message_id)] = Replayed(key)
        requests.close()
        deadline = time.monotonic() + timeout
        pending = set(asked)
        while pending and time.monotonic() < deadline:
            try:
                message = log_reader.read_next(timeout_millis=500)
            except pulsar.Timeout:
                continue
            record = events.decode_record(events.PARSED_RECONCILE_RECORD, message.data())
            answered = asked.get(record["triggerMessageId"])
            if answered is None or record["triggerMessageId"] not in pending:
                continue
            pending.discard(record["triggerMessageId"])
            answered.outcome = record["outcome"]
            answered.error = record["error"]
            answered.writes = [f"{c['action'].lower()} {c['kind']} {c['name']}"
                               for c in record["children"] if c["action"] != "UNCHANGED"]
            if record["statusChanged"]:
                answered.writes.append("status")
        return list(asked.values())
    finally:
        client.close()


def _keys_since(client: pulsar.Client, settings: Settings, since: datetime) -> set[str]:
    history = reader.History(client, settings.topic, ["change"], _ms(since), None,
                             lambda _k: True)
    try:
        return {m.key for m in history.messages() if m.topic == events.RESOURCE_EVENTS}
    finally:
        history.close()


def replay_exit_code(results: list[Any]) -> int:
    return 0 if all(r.outcome in ("OK", "GONE") for r in results) else 1
