"""Decoded messages of the four topics -> timeline entries, one line a person reads each.

Pure: the readers and the time-ordered merge feed `TimelineBuilder` one message at a time, so
its state is per key (the last spec, the pods, the StatefulSets), never per event.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from fmesh_events.events import RECONCILE_LOG, SCALE_DECISIONS, ChangeEvent, EventType

# Must match fmesh_events.watch.redact.REDACTED_PREFIX: stages do not import each other, and
# the watcher's redaction is the contract this stage reads.
REDACTED_PREFIX = "redacted:"
REDACTED_TEXT = "(redacted)"
# The whole object's copy: redacted by the watcher, and a diff of it repeats the spec diff.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_REDACTED_HASH = re.compile(re.escape(REDACTED_PREFIX) + r"[0-9a-fA-F]*")
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SUMMARY_PATHS = 3  # changed paths named in an UPDATED summary; the rest are counted
_MAX_TEXT = 300  # an error in a summary; details keep all of it


class Source(StrEnum):
    CHANGE = "change"
    POD = "pod"
    RECONCILE = "reconcile"
    SCALE = "scale"


class What(StrEnum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"
    RESYNC = "RESYNC"
    STATUS = "STATUS"
    POD_ADDED = "POD_ADDED"
    POD_READY = "POD_READY"
    POD_NOT_READY = "POD_NOT_READY"
    POD_GONE = "POD_GONE"
    STATEFULSET = "STATEFULSET"
    RECONCILED = "RECONCILED"
    GONE = "GONE"
    FAILED = "FAILED"
    DEAD_LETTERED = "DEAD_LETTERED"
    SCALE_UP = "SCALE_UP"
    SCALE_DOWN = "SCALE_DOWN"
    HOLD = "HOLD"


SPEC_CHANGES = frozenset({What.CREATED, What.UPDATED, What.DELETED, What.RESYNC})
FAILURES = frozenset({What.FAILED, What.DEAD_LETTERED})


def iso_millis(time: datetime) -> str:
    """UTC to the millisecond, whatever the local zone: lines of different runs compare."""
    return time.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def scrub_text(text: str) -> str:
    """Any redacted hash in free text -> "(redacted)": equal hashes tell equal secrets."""
    return _REDACTED_HASH.sub(REDACTED_TEXT, text)


def _one_line(text: str, limit: int = _MAX_TEXT) -> str:
    flat = " ".join(scrub_text(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return REDACTED_TEXT if REDACTED_PREFIX in value else value
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _show(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One changed leaf (or whole added/removed subtree), values already scrubbed."""

    path: str
    before: Any
    after: Any
    change: Literal["added", "removed", "changed"]

    def describe(self) -> str:
        before = "(absent)" if self.change == "added" else _show(self.before)
        after = "(absent)" if self.change == "removed" else _show(self.after)
        return f"{self.path}: {before} -> {after}"

    def to_json_dict(self) -> dict[str, Any]:
        return {"path": self.path, "before": self.before, "after": self.after, "change": self.change}


# What a change event becomes, before the builder stamps it with time, key and message id.
_Made = tuple[Source, What, str, dict[str, Any], tuple[FieldChange, ...]]


def _child_path(path: str, key: str) -> str:
    if _PLAIN_KEY.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def _compared(obj: dict[str, Any] | None) -> dict[str, Any]:
    """What a diff looks at: spec, labels and annotations; the rest of metadata is noise."""
    obj = obj or {}
    metadata = obj.get("metadata") or {}
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if k != LAST_APPLIED}
    return {"spec": obj.get("spec") or {},
            "metadata": {"labels": metadata.get("labels") or {}, "annotations": annotations}}


def _diff(path: str, before: Any, after: Any) -> Iterator[FieldChange]:
    if before == after:  # equal redacted hashes land here too: no change
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(before.keys() | after.keys()):
            child = _child_path(path, str(key))
            if key not in after:
                yield FieldChange(child, _scrub(before[key]), None, "removed")
            elif key not in before:
                yield FieldChange(child, None, _scrub(after[key]), "added")
            else:
                yield from _diff(child, before[key], after[key])
    elif isinstance(before, list) and isinstance(after, list):
        for index in range(max(len(before), len(after))):
            child = f"{path}[{index}]"
            if index >= len(after):
                yield FieldChange(child, _scrub(before[index]), None, "removed")
            elif index >= len(before):
                yield FieldChange(child, None, _scrub(after[index]), "added")
            else:
                yield from _diff(child, before[index], after[index])
    elif _scrub(before) != before or _scrub(after) != after:
        yield FieldChange(path, REDACTED_TEXT, REDACTED_TEXT, "changed")
    else:
        yield FieldChange(path, before, after, "changed")


def diff_spec(old: dict[str, Any] | None, new: dict[str, Any]) -> list[FieldChange]:
    """Changed spec, label and annotation fields of two versions of one object; lists compare
    index-wise. A redacted value shows as "(redacted)", never its hash."""
    return list(_diff("", _compared(old), _compared(new)))


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a key's timeline. `changes` (UPDATED, RESYNC) go in details in JSON."""

    time: datetime
    key: str
    source: Source
    what: What
    summary: str
    details: dict[str, Any]
    message_id: str
    topic: str
    changes: tuple[FieldChange, ...] = ()

    def to_json_dict(self) -> dict[str, Any]:
        details = dict(self.details)
        if self.changes:
            details["changes"] = [c.to_json_dict() for c in self.changes]
        return {"time": iso_millis(self.time), "key": self.key, "source": self.source.value,
                "what": self.what.value, "summary": self.summary, "details": details,
                "messageId": self.message_id, "topic": self.topic}


def _from_millis(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _gen(generation: int | None) -> str:
    return f" gen {generation}" if generation is not None else ""


def _ms(duration: float) -> str:
    return f"{duration:.0f} ms" if duration >= 10 else f"{duration:.1f} ms"


def _status_summary(obj: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    status = obj.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    parts: list[str] = []
    if ready is not None:
        why = ready.get("reason") or ""
        parts.append(f"Ready={ready.get('status')}" + (f" ({why})" if why else ""))
    if status.get("replicas") is not None:
        parts.append(f"{status.get('readyReplicas') or 0}/{status['replicas']} pods ready")
    if status.get("observedGeneration") is not None:
        parts.append(f"observed gen {status['observedGeneration']}")
    ready = ready or {}
    message = ready.get("message")
    details = {"ready": ready.get("status"), "reason": ready.get("reason"),
               "message": _one_line(str(message)) if message else None,
               "replicas": status.get("replicas"), "readyReplicas": status.get("readyReplicas"),
               "observedGeneration": status.get("observedGeneration")}
    return "status: " + (", ".join(parts) or "empty"), details


@dataclass(slots=True)
class _KeyState:
    """The least a key's next entry needs: its compared fields, pods and StatefulSets."""

    compared: dict[str, Any] | None = None
    pods: dict[str, bool] = field(default_factory=dict)  # name -> ready
    statefulsets: dict[str, tuple[int, int]] = field(default_factory=dict)  # replicas, ready

    def empty(self) -> bool:
        return self.compared is None and not self.pods and not self.statefulsets


class TimelineBuilder:
    """Turns each decoded message into an entry, or None when it says nothing new."""

    def __init__(self, include_status: bool = False) -> None:
        self.include_status = include_status
        self._keys: dict[str, _KeyState] = {}

    def _state(self, key: str) -> _KeyState:
        return self._keys.setdefault(key, _KeyState())

    def _forget_if_empty(self, key: str) -> None:
        state = self._keys.get(key)
        if state is not None and state.empty():
            del self._keys[key]

    # -- resource-events and pod-events -------------------------------------------------
    def add_change(self, event: ChangeEvent, message_id: str, topic: str) -> Entry | None:
        if event.kind == "Pod":
            made = self._pod(event)
        elif event.kind == "StatefulSet":
            made = self._statefulset(event)
        else:
            made = self._cr(event)
        self._forget_if_empty(event.key)
        if made is None:
            return None
        source, what, summary, details, changes = made
        return Entry(_from_millis(event.observed_time_ms), event.key, source, what,
                     _one_line(summary), details, message_id, topic, changes)

    def _cr(self, event: ChangeEvent) -> _Made | None:
        state = self._state(event.key)
        obj = event.obj()
        details: dict[str, Any] = {"kind": event.kind, "generation": event.generation, "uid": event.uid,
                                   "resourceVersion": event.resource_version}
        problem = ""
        if event.parse_error:
            details["parseError"] = _one_line(event.parse_error)
            problem = f"; does not fit the CRD: {event.parse_error}"
        if event.type == EventType.DELETED:
            state.compared = None
            return Source.CHANGE, What.DELETED, f"deleted{_gen(event.generation)}", details, ()
        before, after = state.compared, _compared(obj)
        state.compared = after
        if event.type == EventType.ADDED:
            return Source.CHANGE, What.CREATED, f"created{_gen(event.generation)}{problem}", details, ()
        what = What.RESYNC if event.type == EventType.RESYNC else What.UPDATED
        verb = "changed while unwatched" if what == What.RESYNC else "updated"
        if before is None:
            summary = f"{verb}{_gen(event.generation)} (no earlier version to compare){problem}"
            return Source.CHANGE, what, summary, details, ()
        changes = tuple(_diff("", before, after))
        if changes:  # paths only: the values follow as lines of their own in every output
            named = ", ".join(c.path for c in changes[:_SUMMARY_PATHS])
            if len(changes) > _SUMMARY_PATHS:
                named += f" (+{len(changes) - _SUMMARY_PATHS} more)"
            return Source.CHANGE, what, f"{verb}{_gen(event.generation)}: {named}{problem}", details, changes
        if not self.include_status:
            return None
        summary, status = _status_summary(obj)
        return Source.CHANGE, What.STATUS, summary, {**details, **status}, ()

    def _pod(self, event: ChangeEvent) -> _Made | None:
        pods = self._state(event.key).pods
        details: dict[str, Any] = {"pod": event.name, "phase": event.phase, "ready": event.ready,
                                   "restartCount": event.restart_count}
        name = f"pod {event.name}"
        if event.type == EventType.DELETED:
            pods.pop(event.name, None)
            return Source.POD, What.POD_GONE, f"{name} deleted", details, ()
        ready = bool(event.ready)
        known = pods.get(event.name)
        pods[event.name] = ready
        if known is None:
            if event.type == EventType.MODIFIED:
                return None  # first seen mid-life: a baseline for the next change, not news
            summary = f"{name} added ({event.phase or 'no phase'}{', ready' if ready else ''})"
            return Source.POD, What.POD_ADDED, summary, details, ()
        if ready == known:
            return None
        if ready:
            return Source.POD, What.POD_READY, f"{name} ready", details, ()
        restarts = f", {event.restart_count} restarts" if event.restart_count else ""
        summary = f"{name} not ready ({event.phase or 'no phase'}{restarts})"
        return Source.POD, What.POD_NOT_READY, summary, details, ()

    def _statefulset(self, event: ChangeEvent) -> _Made | None:
        sets = self._state(event.key).statefulsets
        name = f"StatefulSet {event.name}"
        if event.type == EventType.DELETED:
            sets.pop(event.name, None)
            return Source.POD, What.STATEFULSET, f"{name} deleted", {"statefulSet": event.name}, ()
        obj = event.obj()
        replicas = int((obj.get("spec") or {}).get("replicas", 1))
        ready = int((obj.get("status") or {}).get("readyReplicas") or 0)
        if sets.get(event.name) == (replicas, ready):
            return None
        sets[event.name] = (replicas, ready)
        details = {"statefulSet": event.name, "replicas": replicas, "readyReplicas": ready}
        return Source.POD, What.STATEFULSET, f"{name} {ready}/{replicas} ready", details, ()

    # -- reconcile-log --------------------------------------------------------------------
    def add_reconcile(self, record: dict[str, Any], message_id: str) -> Entry | None:
        outcome = str(record["outcome"])
        error = _one_line(record["error"]) if record.get("error") else None
        children = [dict(c) for c in record.get("children") or []]
        details: dict[str, Any] = {
            "outcome": outcome, "generation": record.get("generation"), "attempt": record.get("attempt", 0),
            "durationMs": record.get("durationMs"), "children": children,
            "statusChanged": bool(record.get("statusChanged")), "error": error,
            "triggerTopic": record.get("triggerTopic"), "triggerMessageId": record.get("triggerMessageId"),
            "reconciler": record.get("reconciler"),
        }
        # attempt counts from 0 on the topic; people (and the CR's messages) count from 1
        attempt = int(record.get("attempt") or 0) + 1
        if outcome == "FAILED":
            what, summary = What.FAILED, f"failed (attempt {attempt}): {error or 'no error given'}"
        elif outcome == "DEAD_LETTERED":
            what = What.DEAD_LETTERED
            summary = f"dead-lettered after attempt {attempt}: {error or 'no error given'}"
        else:
            actions = "; ".join(f"{c['action'].lower()} {c['kind']} {c['name']}" for c in children)
            changed = any(c["action"] != "UNCHANGED" for c in children)
            if details["statusChanged"]:
                actions = f"{actions}; status updated" if changed else "status updated"
            elif not changed:
                actions = "no change"
            took = _ms(float(record.get("durationMs") or 0))
            if outcome == "GONE":
                what, summary = What.GONE, f"gone, cleaned up in {took}: {actions}"
            else:
                generation = _gen(record.get("generation"))
                what, summary = What.RECONCILED, f"reconciled{generation} in {took}: {actions}"
        return Entry(_utc(record["time"]), str(record["key"]), Source.RECONCILE, what,
                     _one_line(summary), details, message_id, RECONCILE_LOG)

    # -- scale-decisions --------------------------------------------------------------------
    def add_scale(self, record: dict[str, Any], message_id: str) -> Entry | None:
        current, desired = int(record["currentReplicas"]), int(record["desiredReplicas"])
        action = str(record["action"])
        names = ("currentReplicas", "desiredReplicas", "recommendation", "cpuRecommendation",
                 "memoryRecommendation", "backlogRecommendation", "cpuUtilization", "memoryUtilization",
                 "backlog", "minReplicas", "maxReplicas", "applied", "trigger", "signalMessageId", "scaler")
        details: dict[str, Any] = {name: record.get(name) for name in names}
        details["action"] = action
        details["reason"] = _one_line(str(record.get("reason") or ""))
        details["error"] = _one_line(record["error"]) if record.get("error") else None
        if action == "NONE":
            what, summary = What.HOLD, f"hold at {current}: {record.get('reason')}"
        else:
            what = What.SCALE_UP if action == "UP" else What.SCALE_DOWN
            summary = f"scale {current} -> {desired}: {record.get('reason')}"
            if not record.get("applied"):
                summary += " (not applied)"
        if details["error"]:
            summary += f"; error: {details['error']}"
        return Entry(_utc(record["time"]), str(record["key"]), Source.SCALE, what,
                     _one_line(summary), details, message_id, SCALE_DECISIONS)


@dataclass(slots=True)
class SummaryRow:
    """One key's counts over the entries read; reconciles include the failed ones."""

    key: str
    changes: int = 0
    reconciles: int = 0
    failures: int = 0
    scale_ups: int = 0
    scale_downs: int = 0
    last_error: str | None = None
    last_error_time: datetime | None = None
    last_seen: datetime | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return {"key": self.key, "changes": self.changes, "reconciles": self.reconciles,
                "failures": self.failures, "scaleUps": self.scale_ups, "scaleDowns": self.scale_downs,
                "lastError": self.last_error,
                "lastErrorTime": iso_millis(self.last_error_time) if self.last_error_time else None,
                "lastSeen": iso_millis(self.last_seen) if self.last_seen else None}


class SummaryBuilder:
    """Per-key counts, so `history --summary` needs one row per key, not the entries."""

    def __init__(self) -> None:
        self._rows: dict[str, SummaryRow] = {}

    def add(self, entry: Entry) -> None:
        row = self._rows.setdefault(entry.key, SummaryRow(entry.key))
        if entry.what in SPEC_CHANGES:
            row.changes += 1
        elif entry.source == Source.RECONCILE:
            row.reconciles += 1
            if entry.what in FAILURES:
                row.failures += 1
        elif entry.what == What.SCALE_UP:
            row.scale_ups += 1
        elif entry.what == What.SCALE_DOWN:
            row.scale_downs += 1
        error = entry.details.get("error") or entry.details.get("parseError")
        if error and (row.last_error_time is None or entry.time >= row.last_error_time):
            row.last_error, row.last_error_time = str(error), entry.time
        if row.last_seen is None or entry.time > row.last_seen:
            row.last_seen = entry.time

    def rows(self) -> list[SummaryRow]:
        return [self._rows[key] for key in sorted(self._rows)]
