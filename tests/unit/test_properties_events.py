"""Property-based tests (hypothesis) of the event codec (fmesh_events/events.py) and of what
each stage accepts from its topics (the reconciler's, the scaler's and the watcher's own
decoders), and of redaction before an event leaves the watcher.

- every record round-trips through its Avro schema unchanged;
- any bytes, a valid record cut short or with bytes after it, a record of another schema or
  of a newer version: the decoders answer with a value or events.Undecodable, never with
  another exception (a stage dead-letters Undecodable; anything else would be a crash);
- a value under a credential-like key never survives redaction, at any depth.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from fmesh_events import events
from fmesh_events.events import ChangeEvent, EventType
from fmesh_events.reconcile.loop import decode_change, decode_request
from fmesh_events.scale.scaler import decode_signal
from fmesh_events.watch.publisher import decode_own
from fmesh_events.watch.redact import looks_like_credential, redact
from tests.unit.test_properties_models import examples

KINDS = ("Function", "Source", "Sink", "FunctionMesh")
NAMES = st.text(string.ascii_lowercase + string.digits + "-", min_size=1, max_size=20)
TEXT = st.text(max_size=40)  # any unicode, surrogates excluded by hypothesis' default
MILLIS = st.integers(0, 253_402_300_799_999)  # up to the year 9999
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


@st.composite
def change_events(draw: st.DrawFn, pod: bool = False) -> ChangeEvent:
    kind = draw(st.sampled_from(KINDS[:3] if pod else KINDS))
    namespace, name = draw(NAMES), draw(NAMES)
    obj = {"apiVersion": "compute.functionmesh.io/v1alpha1", "kind": kind,
           "metadata": {"name": name, "namespace": namespace},
           "spec": draw(st.dictionaries(TEXT, JSON_VALUES, max_size=4))}
    return ChangeEvent(
        key=f"{kind}/{namespace}/{name}", type=draw(st.sampled_from(list(EventType))),
        kind="Pod" if pod else kind, api_version="compute.functionmesh.io/v1alpha1",
        namespace=namespace, name=name, uid=draw(TEXT), resource_version=str(draw(st.integers(0))),
        generation=draw(st.none() | st.integers(0, 2**62)), observed_time_ms=draw(MILLIS),
        object=json.dumps(obj, ensure_ascii=False), parse_error=draw(st.none() | TEXT),
        phase=draw(st.none() | st.sampled_from(["Pending", "Running"])) if pod else None,
        ready=draw(st.none() | st.booleans()) if pod else None,
        restart_count=draw(st.none() | st.integers(0, 2**31 - 1)) if pod else None,
    )


@st.composite
def scale_signals(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(KINDS[:3]))
    counts = st.integers(0, 2**31 - 1)
    return {
        "signalVersion": 1, "key": f"{kind}/{draw(NAMES)}/{draw(NAMES)}", "time": draw(MILLIS),
        "trigger": draw(st.sampled_from(["tick", "burst", "start"])),
        "currentReplicas": draw(counts), "readyReplicas": draw(counts),
        "cpuServed": draw(st.booleans()),
        "cpuUtilizations": draw(st.lists(st.floats(0, 1e6), max_size=5)),
        "cpuMissing": draw(counts), "cpuUnready": draw(counts),
        "memoryUtilizations": draw(st.lists(st.floats(0, 1e6), max_size=5)),
        "memoryMissing": draw(counts), "backlog": draw(st.none() | st.integers(0, 2**62)),
        "topics": draw(st.lists(st.fixed_dictionaries(
            {"topic": TEXT, "backlog": st.integers(0, 2**62)}), max_size=3)),
        "missing": draw(st.lists(TEXT, max_size=3)),
    }


@st.composite
def reconcile_records(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "recordVersion": 1, "key": f"Function/{draw(NAMES)}/{draw(NAMES)}",
        "triggerTopic": draw(TEXT), "triggerMessageId": draw(TEXT),
        "generation": draw(st.none() | st.integers(0, 2**62)),
        "outcome": draw(st.sampled_from(["OK", "FAILED", "GONE", "DEAD_LETTERED"])),
        "attempt": draw(st.integers(0, 100)),
        "children": draw(st.lists(st.fixed_dictionaries({
            "kind": st.sampled_from(["StatefulSet", "Service"]), "name": NAMES,
            "action": st.sampled_from(["CREATED", "UPDATED", "UNCHANGED", "DELETED",
                                       "REPLACED"])}), max_size=3)),
        "statusChanged": draw(st.booleans()), "durationMs": draw(st.floats(0, 1e9)),
        "error": draw(st.none() | TEXT), "time": draw(MILLIS), "reconciler": draw(TEXT),
    }


def _times_as_millis(record: dict[str, Any]) -> dict[str, Any]:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return {k: (v - epoch) // (datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=UTC) - epoch)
            if isinstance(v, datetime) else v for k, v in record.items()}


# ------------------------------------------------------------------ round trips
@examples(100)
@given(change_events() | change_events(pod=True))
def test_change_events_round_trip(event: ChangeEvent) -> None:
    assert events.decode(events.encode(event)) == event


@examples(100)
@given(change_events())
def test_every_stage_accepts_what_the_watcher_writes(event: ChangeEvent) -> None:
    data = events.encode(event)
    assert decode_change(data, events.RESOURCE_EVENTS)[0] == event
    assert decode_own(data) == event


@examples(100)
@given(change_events(pod=True))
def test_pod_events_are_keyed_by_their_workload(event: ChangeEvent) -> None:
    assert decode_change(events.encode(event), events.POD_EVENTS)[0] == event


@examples(100)
@given(reconcile_records())
def test_reconcile_records_round_trip(record: dict[str, Any]) -> None:
    data = events.encode_record(events.PARSED_RECONCILE_RECORD, record)
    assert _times_as_millis(events.decode_record(events.PARSED_RECONCILE_RECORD, data)) == record


@examples(100)
@given(scale_signals())
def test_scale_signals_round_trip_and_reach_the_scaler(signal: dict[str, Any]) -> None:
    data = events.encode_record(events.PARSED_SCALE_SIGNAL, signal)
    assert _times_as_millis(decode_signal(data)) == signal


# ------------------------------------------------------------------ what is not ours
DECODERS: dict[str, Callable[[bytes], object]] = {
    "reconcile: resource-events": lambda data: decode_change(data, events.RESOURCE_EVENTS),
    "reconcile: pod-events": lambda data: decode_change(data, events.POD_EVENTS),
    "reconcile: reconcile-requests": decode_request,
    "scale: scale-signals": decode_signal,
    "history: reconcile-log": lambda data: events.decode_record(events.PARSED_RECONCILE_RECORD,
                                                                data),
    "history: scale-decisions": lambda data: events.decode_record(events.PARSED_SCALE_DECISION,
                                                                  data),
    "events.decode": events.decode,
}


def _answer(name: str, data: bytes) -> str:
    """'value' or 'undecodable'; any other exception fails the test, naming the decoder."""
    try:
        DECODERS[name](data)
    except events.Undecodable:
        return "undecodable"
    return "value"


@pytest.mark.parametrize("name", list(DECODERS))
@examples(300)
@given(data=st.binary(max_size=300))
def test_any_bytes_decode_or_are_undecodable(name: str, data: bytes) -> None:
    _answer(name, data)


@examples(100)
@given(change_events(), st.data())
def test_a_change_event_cut_short_or_with_bytes_after_is_undecodable(
        event: ChangeEvent, data: st.DataObject) -> None:
    encoded = events.encode(event)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    tail = data.draw(st.binary(min_size=1, max_size=16))
    for broken in (encoded[:cut], encoded + tail):
        assert _answer("reconcile: resource-events", broken) == "undecodable"
        assert decode_own(broken) is None


@examples(100)
@given(scale_signals(), st.data())
def test_a_scale_signal_cut_short_or_with_bytes_after_is_undecodable(
        signal: dict[str, Any], data: st.DataObject) -> None:
    encoded = events.encode_record(events.PARSED_SCALE_SIGNAL, signal)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    for broken in (encoded[:cut], encoded + data.draw(st.binary(min_size=1, max_size=16))):
        assert _answer("scale: scale-signals", broken) == "undecodable"


@examples(100)
@given(reconcile_records() | scale_signals())
def test_a_record_of_another_schema_is_not_a_change_event(record: dict[str, Any]) -> None:
    schema = (events.PARSED_SCALE_SIGNAL if "signalVersion" in record
              else events.PARSED_RECONCILE_RECORD)
    data = events.encode_record(schema, record)
    assert _answer("reconcile: resource-events", data) == "undecodable"
    assert decode_own(data) is None


@examples(100)
@given(change_events(), st.integers(events.EVENT_VERSION + 1, 2**31 - 1))
def test_a_future_event_version_is_refused_by_the_stages(event: ChangeEvent, version: int) -> None:
    data = events.encode(event.model_copy(update={"event_version": version}))
    with pytest.raises(events.Undecodable, match="version"):
        decode_change(data, events.RESOURCE_EVENTS)
    assert decode_own(data) is None  # the watcher never resumes from a message not its own


@examples(100)
@given(scale_signals(), st.integers(2, 2**31 - 1))
def test_a_future_signal_version_is_refused(signal: dict[str, Any], version: int) -> None:
    data = events.encode_record(events.PARSED_SCALE_SIGNAL, {**signal, "signalVersion": version})
    with pytest.raises(events.Undecodable, match="version"):
        decode_signal(data)


@examples(100)
@given(change_events(), st.sampled_from(["", "Function", "Function/ns", "Pod/ns/x",
                                         "Function//x", "ConfigMap/ns/x"]))
def test_a_key_that_names_no_cr_is_refused(event: ChangeEvent, key: str) -> None:
    data = events.encode(event.model_copy(update={"key": key}))
    with pytest.raises(events.Undecodable, match="key"):
        decode_change(data, events.RESOURCE_EVENTS)


@examples(100)
@given(JSON_VALUES)
def test_reconcile_requests_are_objects_with_a_key_and_a_count(request_body: Any) -> None:
    data = json.dumps(request_body).encode()
    try:
        key, attempt = decode_request(data)
    except events.Undecodable:
        return
    assert isinstance(request_body, dict)
    assert key == request_body["key"] and attempt == request_body.get("attempt", 0) >= 0


# ------------------------------------------------------------------ redaction
CREDENTIAL_KEYS = st.sampled_from(["password", "Password", "api_token", "apiKey", "secretKey",
                                   "clientSecret", "credentials", "db-passwd", "accessKey"])
SECRETS = st.text(string.ascii_letters + string.digits, min_size=12, max_size=40)


@st.composite
def objects_hiding(draw: st.DrawFn, secret: str) -> dict[str, Any]:
    """A CR-shaped object with `secret` under a credential-like key somewhere inside."""
    key = draw(CREDENTIAL_KEYS)
    hidden: Any = {key: secret} if draw(st.booleans()) else {key: {"inner": [secret]}}
    if draw(st.booleans()):  # as an env entry instead
        hidden = {"env": [{"name": key.upper(), "value": secret}]}
    for _ in range(draw(st.integers(0, 6))):
        wrapper = draw(st.sampled_from(["spec", "funcConfig", "config", "list", "x"]))
        hidden = [hidden] if wrapper == "list" else {wrapper: hidden}
    noise = draw(st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=8).filter(
        lambda k: not looks_like_credential(k)), JSON_VALUES, max_size=3))
    return {"kind": "Function", "metadata": {"name": "f"}, "spec": {**noise, "hidden": hidden}}


@examples(100)
@given(st.data())
def test_no_credential_survives_redaction(data: st.DataObject) -> None:
    secret = data.draw(SECRETS)
    obj = data.draw(objects_hiding(secret))
    assume(secret not in json.dumps({k: v for k, v in obj["spec"].items() if k != "hidden"}))
    text = json.dumps(redact(obj), ensure_ascii=False)
    assert secret not in text, text


@examples(100)
@given(st.dictionaries(TEXT, JSON_VALUES, max_size=5))
def test_redaction_keeps_what_is_not_a_credential(spec: dict[str, Any]) -> None:
    obj = {"kind": "Function", "metadata": {"name": "f"}, "spec": spec}
    redacted = redact(obj)
    kept = 0
    for key, value in spec.items():
        if not (_holds_credential_key({key: value})):
            assert redacted["spec"][key] == value
            kept += 1
    assert kept or not spec or _holds_credential_key(spec)


def _holds_credential_key(value: Any) -> bool:
    """Whether redaction may change `value`: a credential-like key, an env-style entry or a
    command line somewhere inside."""
    if isinstance(value, dict):
        return any(looks_like_credential(str(k)) or _holds_credential_key(v)
                   or (k in ("command", "args") and isinstance(v, list) and bool(v))
                   for k, v in value.items()) or {"name", "value"} <= set(value)
    if isinstance(value, list):
        return any(_holds_credential_key(v) for v in value)
    return False
