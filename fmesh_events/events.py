"""The change events on resource-events and pod-events: one Avro schema, registered in Pulsar's
schema registry by the watcher's producers, and the codec every stage decodes with.

A key is always the owning CR: `Kind/namespace/name`.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import fastavro
from pydantic import BaseModel, ConfigDict, Field

EVENT_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RESOURCE_EVENTS = "resource-events"
POD_EVENTS = "pod-events"


class EventType(StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    RESYNC = "RESYNC"


AVRO_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "ChangeEvent",
    "namespace": "io.fmesh.events",
    "doc": "One observed change of a Kubernetes object, as the fmesh-events watcher saw it.",
    "fields": [
        {"name": "eventVersion", "type": "int", "default": EVENT_VERSION},
        {"name": "key", "type": "string", "doc": "Owning CR as Kind/namespace/name."},
        {"name": "type", "type": {"type": "enum", "name": "EventType",
                                  "symbols": [t.value for t in EventType]}},
        {"name": "kind", "type": "string"},
        {"name": "apiVersion", "type": "string"},
        {"name": "namespace", "type": "string"},
        {"name": "name", "type": "string"},
        {"name": "uid", "type": "string"},
        {"name": "resourceVersion", "type": "string"},
        {"name": "generation", "type": ["null", "long"], "default": None},
        {"name": "observedTime", "type": {"type": "long", "logicalType": "timestamp-millis"},
         "doc": "When the watcher received the change."},
        {"name": "object", "type": "string", "doc": "The object as JSON, secrets redacted."},
        {"name": "parseError", "type": ["null", "string"], "default": None,
         "doc": "Why the object does not fit the CRD model, when it does not."},
        {"name": "phase", "type": ["null", "string"], "default": None, "doc": "Pods only."},
        {"name": "ready", "type": ["null", "boolean"], "default": None, "doc": "Pods only."},
        {"name": "restartCount", "type": ["null", "int"], "default": None, "doc": "Pods only."},
    ],
}
PARSED_SCHEMA = fastavro.parse_schema(AVRO_SCHEMA)


class ChangeEvent(BaseModel):
    """The Python face of one message; `to_record` / `from_record` map to the Avro record."""

    model_config = ConfigDict(populate_by_name=True, frozen=True)

    key: str
    type: EventType
    kind: str
    api_version: str = Field(alias="apiVersion")
    namespace: str
    name: str
    uid: str
    resource_version: str = Field(alias="resourceVersion")
    generation: int | None = None
    observed_time_ms: int = Field(alias="observedTime")
    object: str
    parse_error: str | None = Field(default=None, alias="parseError")
    phase: str | None = None
    ready: bool | None = None
    restart_count: int | None = Field(default=None, alias="restartCount")
    event_version: int = Field(default=EVENT_VERSION, alias="eventVersion")

    def to_record(self) -> dict[str, Any]:
        record = self.model_dump(by_alias=True)
        record["type"] = self.type.value
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ChangeEvent:
        data = dict(record)
        observed = data.get("observedTime")
        if isinstance(observed, datetime):  # fastavro decodes timestamp-millis as datetime
            # In integers: a float timestamp can lose the last millisecond.
            data["observedTime"] = (observed - _EPOCH) // timedelta(milliseconds=1)
        return cls.model_validate(data)

    def obj(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.object)
        return parsed


def encode(event: ChangeEvent) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, PARSED_SCHEMA, event.to_record())
    return buffer.getvalue()


class Undecodable(ValueError):
    """Bytes that are not a record of the schema asked for (or of a version not known here);
    the message says what was wrong, for the dead-letter topic and the log."""


def decode_record(schema: Any, data: bytes, newest: int | None = None) -> dict[str, Any]:
    """The record of `schema` that `data` holds, or Undecodable.

    Stricter than the Avro decoder alone: the bytes of another schema often decode into
    nonsense rather than fail, and then leave bytes over, which this refuses. With `newest`,
    the record's version field (each of our schemas has one, ``<what>Version``) must be 1 to
    `newest`; it is checked first, since a newer version is longer, not garbage."""
    name = str(schema.get("name", "record")).rsplit(".", 1)[-1]
    buffer = io.BytesIO(data)
    try:
        record = fastavro.schemaless_reader(buffer, schema, schema)
    except Exception as error:  # the decoder's own words can be empty (EOFError())
        raise Undecodable(f"not a {name} ({len(data)} bytes): {error!r}") from error
    if not isinstance(record, dict):
        raise Undecodable(f"not a {name} ({len(data)} bytes)")
    if newest is not None:
        field = next(f["name"] for f in schema["fields"] if f["name"].endswith("Version"))
        version = record.get(field)
        if type(version) is not int or not 1 <= version <= newest:
            raise Undecodable(f"{name} version {version!r} is not one this operator "
                              f"understands (1 to {newest})")
    if buffer.tell() != len(data):
        raise Undecodable(f"not a {name}: {len(data) - buffer.tell()} of {len(data)} bytes left "
                          "over after decoding (a message of another schema?)")
    return record


def check_key(key: object, kinds: tuple[str, ...]) -> str:
    """A message key must be Kind/namespace/name with one of `kinds`."""
    parts = key.split("/", 2) if isinstance(key, str) else []
    if len(parts) != 3 or not all(parts) or parts[0] not in kinds:
        raise Undecodable(f"key {key!r} is not Kind/namespace/name with Kind one of "
                          f"{', '.join(kinds)}")
    assert isinstance(key, str)
    return key


def decode(data: bytes, newest: int | None = None) -> ChangeEvent:
    """The change event `data` holds, or Undecodable (see decode_record for `newest`)."""
    record = decode_record(PARSED_SCHEMA, data, newest)
    try:
        return ChangeEvent.from_record(record)
    except ValueError as error:
        raise Undecodable(f"not a ChangeEvent: {error}") from error


def resource_key(kind: str, namespace: str, name: str) -> str:
    return f"{kind}/{namespace}/{name}"


# -- reconcile-log: one record per reconcile ------------------------------------------------
RECONCILE_LOG = "reconcile-log"
RECONCILE_REQUESTS = "reconcile-requests"
RECONCILE_DLQ = "reconcile-dlq"

RECONCILE_RECORD_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "ReconcileRecord",
    "namespace": "io.fmesh.events",
    "doc": "What one reconcile of one CR did.",
    "fields": [
        {"name": "recordVersion", "type": "int", "default": 1},
        {"name": "key", "type": "string"},
        {"name": "triggerTopic", "type": "string"},
        {"name": "triggerMessageId", "type": "string"},
        {"name": "generation", "type": ["null", "long"], "default": None},
        {"name": "outcome", "type": {"type": "enum", "name": "Outcome",
                                     "symbols": ["OK", "FAILED", "GONE", "DEAD_LETTERED"]}},
        {"name": "attempt", "type": "int", "default": 0},
        {"name": "children", "type": {"type": "array", "items": {
            "type": "record", "name": "ChildAction", "fields": [
                {"name": "kind", "type": "string"},
                {"name": "name", "type": "string"},
                {"name": "action", "type": {"type": "enum", "name": "Action", "symbols": [
                    "CREATED", "UPDATED", "UNCHANGED", "DELETED", "REPLACED"]}},
            ]}}},
        {"name": "statusChanged", "type": "boolean", "default": False},
        {"name": "durationMs", "type": "double"},
        {"name": "error", "type": ["null", "string"], "default": None},
        {"name": "time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "reconciler", "type": "string", "doc": "Consumer name of the process."},
    ],
}
PARSED_RECONCILE_RECORD = fastavro.parse_schema(RECONCILE_RECORD_SCHEMA)


def encode_record(schema: Any, record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, record)
    return buffer.getvalue()


# -- scale-signals and scale-decisions --------------------------------------------------------
SCALE_SIGNALS = "scale-signals"
SCALE_DECISIONS = "scale-decisions"
SCALE_DLQ = "scale-dlq"

_TOPIC_BACKLOG = {"type": "record", "name": "TopicBacklog", "fields": [
    {"name": "topic", "type": "string"},
    {"name": "backlog", "type": "long", "doc": "msgBacklog, summed over partitions."},
]}

SCALE_SIGNAL_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "ScaleSignal",
    "namespace": "io.fmesh.events",
    "doc": "The metrics of one autoscaled CR at one moment, as the sampler read them.",
    "fields": [
        {"name": "signalVersion", "type": "int", "default": 1},
        {"name": "key", "type": "string"},
        {"name": "time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "trigger", "type": "string", "doc": "tick, burst (a probe saw new input) or start."},
        {"name": "currentReplicas", "type": "int", "doc": "spec.replicas when sampled."},
        {"name": "readyReplicas", "type": "int", "default": 0},
        {"name": "cpuServed", "type": "boolean", "default": False,
         "doc": "metrics.k8s.io answered for this sample."},
        {"name": "cpuUtilizations", "type": {"type": "array", "items": "double"}, "default": [],
         "doc": "CPU use of each ready pod with a sample, percent of its requests."},
        {"name": "cpuMissing", "type": "int", "default": 0, "doc": "Ready pods without a sample."},
        {"name": "cpuUnready", "type": "int", "default": 0, "doc": "Pods not ready."},
        {"name": "memoryUtilizations", "type": {"type": "array", "items": "double"},
         "default": []},
        {"name": "memoryMissing", "type": "int", "default": 0},
        {"name": "backlog", "type": ["null", "long"], "default": None,
         "doc": "Total msgBacklog of the function's subscription over its input topics."},
        {"name": "topics", "type": {"type": "array", "items": _TOPIC_BACKLOG}, "default": []},
        {"name": "missing", "type": {"type": "array", "items": "string"}, "default": [],
         "doc": "Why a metric is missing, one line per metric."},
    ],
}
PARSED_SCALE_SIGNAL = fastavro.parse_schema(SCALE_SIGNAL_SCHEMA)

SCALE_DECISION_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "ScaleDecision",
    "namespace": "io.fmesh.events",
    "doc": "One decision of the scaler for one CR, with its inputs and reason.",
    "fields": [
        {"name": "decisionVersion", "type": "int", "default": 1},
        {"name": "key", "type": "string"},
        {"name": "time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "signalMessageId", "type": "string"},
        {"name": "trigger", "type": "string"},
        {"name": "currentReplicas", "type": "int"},
        {"name": "recommendation", "type": "int",
         "doc": "Before stabilization and rate limits (the window keeps these)."},
        {"name": "desiredReplicas", "type": "int", "doc": "What the scaler wants now."},
        {"name": "cpuRecommendation", "type": ["null", "int"], "default": None},
        {"name": "memoryRecommendation", "type": ["null", "int"], "default": None},
        {"name": "backlogRecommendation", "type": ["null", "int"], "default": None},
        {"name": "cpuUtilization", "type": ["null", "double"], "default": None},
        {"name": "memoryUtilization", "type": ["null", "double"], "default": None},
        {"name": "backlog", "type": ["null", "long"], "default": None},
        {"name": "minReplicas", "type": "int"},
        {"name": "maxReplicas", "type": "int"},
        {"name": "action", "type": {"type": "enum", "name": "ScaleAction",
                                    "symbols": ["UP", "DOWN", "NONE"]}},
        {"name": "applied", "type": "boolean", "doc": "The /scale write happened."},
        {"name": "reason", "type": "string", "doc": "Why, in words."},
        {"name": "error", "type": ["null", "string"], "default": None},
        {"name": "scaler", "type": "string", "doc": "Consumer name of the process."},
    ],
}
PARSED_SCALE_DECISION = fastavro.parse_schema(SCALE_DECISION_SCHEMA)
