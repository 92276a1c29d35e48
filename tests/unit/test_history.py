from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from fmesh_events import events
from fmesh_events.events import ChangeEvent, EventType
from fmesh_events.history.output import (
    HtmlPage,
    JsonArrayWriter,
    format_table_line,
    summary_table,
    table_header,
    to_json_line,
)
from fmesh_events.history.timeline import (
    LAST_APPLIED,
    Entry,
    FieldChange,
    Source,
    SummaryBuilder,
    TimelineBuilder,
    What,
    diff_spec,
    iso_millis,
)

T0 = datetime(2025, 11, 24, 16, 0, tzinfo=UTC)
KEY = "Function/ns/f"
SECRET_A = "redacted:0123456789ab"
SECRET_B = "redacted:ba9876543210"


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _change(kind: str, name: str, event_type: EventType, obj: dict[str, Any], seconds: float,
            **fields: Any) -> ChangeEvent:
    metadata = obj.get("metadata") or {}
    return ChangeEvent.model_validate(dict(
        key=KEY, type=event_type, kind=kind, api_version="v1", namespace="ns", name=name,
        uid=metadata.get("uid", "u-1"), resource_version=str(int(seconds * 10)),
        generation=metadata.get("generation"), observed_time_ms=int(_at(seconds).timestamp() * 1000),
        object=json.dumps(obj), **fields))


def _function(event_type: EventType, seconds: float, generation: int = 1, replicas: int = 1,
              status: dict[str, Any] | None = None, **spec: Any) -> ChangeEvent:
    obj = {"apiVersion": "compute.functionmesh.io/v1alpha1", "kind": "Function",
           "metadata": {"name": "f", "namespace": "ns", "generation": generation, "uid": "u-1",
                        "resourceVersion": str(seconds)},
           "spec": {"replicas": replicas, "image": "apachepulsar/pulsar:3.3", **spec},
           "status": status or {}}
    return _change("Function", "f", event_type, obj, seconds)


def _pod(event_type: EventType, seconds: float, ready: bool, phase: str = "Running",
         restarts: int = 0, name: str = "f-function-0") -> ChangeEvent:
    return _change("Pod", name, event_type, {"kind": "Pod", "metadata": {"name": name}}, seconds,
                   phase=phase, ready=ready, restart_count=restarts)


def _statefulset(event_type: EventType, seconds: float, replicas: int, ready: int) -> ChangeEvent:
    obj = {"kind": "StatefulSet", "metadata": {"name": "f-function"}, "spec": {"replicas": replicas},
           "status": {"readyReplicas": ready, "replicas": replicas}}
    return _change("StatefulSet", "f-function", event_type, obj, seconds)


def _reconcile(outcome: str, seconds: float, children: list[tuple[str, str, str]] | None = None,
               error: str | None = None, attempt: int = 0, status_changed: bool = False,
               generation: int | None = 3, duration: float = 41.2) -> dict[str, Any]:
    """A record as the reader hands it over: through the Avro codec, so the types are real."""
    record = {"key": KEY, "triggerTopic": "resource-events", "triggerMessageId": "1:2:0",
              "generation": generation, "outcome": outcome, "attempt": attempt,
              "children": [{"kind": k, "name": n, "action": a} for k, n, a in children or []],
              "statusChanged": status_changed, "durationMs": duration, "error": error,
              "time": int(_at(seconds).timestamp() * 1000), "reconciler": "r-1"}
    data = events.encode_record(events.PARSED_RECONCILE_RECORD, record)
    return events.decode_record(events.PARSED_RECONCILE_RECORD, data)


def _scale(seconds: float, current: int, desired: int, action: str, backlog: int | None,
           applied: bool = True, reason: str = "backlog 12,400 above activation 0, target 3,100 per "
           "replica -> 4", error: str | None = None) -> dict[str, Any]:
    record = {"key": KEY, "time": int(_at(seconds).timestamp() * 1000), "signalMessageId": "5:1:0",
              "trigger": "tick", "currentReplicas": current, "recommendation": desired,
              "desiredReplicas": desired, "backlogRecommendation": desired, "backlog": backlog,
              "minReplicas": 1, "maxReplicas": 10, "action": action, "applied": applied,
              "reason": reason, "error": error, "scaler": "s-1"}
    data = events.encode_record(events.PARSED_SCALE_DECISION, record)
    return events.decode_record(events.PARSED_SCALE_DECISION, data)


# -- diff_spec ------------------------------------------------------------------------------------
def _obj(spec: dict[str, Any], labels: dict[str, str] | None = None,
         annotations: dict[str, str] | None = None, **metadata: Any) -> dict[str, Any]:
    return {"metadata": {"labels": labels, "annotations": annotations, **metadata}, "spec": spec}


def test_diff_nested_lists_added_removed() -> None:
    old = _obj({"replicas": 1, "input": {"topics": ["a", "b"]}, "cleanup": True,
                "pulsar": {"authConfig": "x"}}, labels={"app": "f"})
    new = _obj({"replicas": 3, "input": {"topics": ["a", "c", "d"]}, "pulsar": {"authConfig": "x"},
                "maxPendingAsyncRequests": 100}, labels={"app": "f", "team": "data"},
               annotations={"example.com/owner": "me"})
    changes = {c.path: c for c in diff_spec(old, new)}
    assert changes == {
        "spec.replicas": FieldChange("spec.replicas", 1, 3, "changed"),
        "spec.input.topics[1]": FieldChange("spec.input.topics[1]", "b", "c", "changed"),
        "spec.input.topics[2]": FieldChange("spec.input.topics[2]", None, "d", "added"),
        "spec.cleanup": FieldChange("spec.cleanup", True, None, "removed"),
        "spec.maxPendingAsyncRequests": FieldChange("spec.maxPendingAsyncRequests", None, 100, "added"),
        "metadata.labels.team": FieldChange("metadata.labels.team", None, "data", "added"),
        'metadata.annotations["example.com/owner"]':
            FieldChange('metadata.annotations["example.com/owner"]', None, "me", "added"),
    }
    assert changes["spec.replicas"].describe() == "spec.replicas: 1 -> 3"
    assert changes["spec.cleanup"].describe() == "spec.cleanup: true -> (absent)"


def test_diff_skips_noisy_metadata() -> None:
    old = _obj({"replicas": 1}, annotations={LAST_APPLIED: '{"a": 1}'}, resourceVersion="1",
               generation=1, managedFields=[{"manager": "kubectl"}])
    new = _obj({"replicas": 1}, annotations={LAST_APPLIED: '{"a": 2}'}, resourceVersion="2",
               generation=2, managedFields=[{"manager": "fmesh"}])
    assert diff_spec(old, new) == []


def test_diff_from_nothing_lists_what_is_there() -> None:
    assert diff_spec(None, _obj({"replicas": 2})) == [FieldChange("spec.replicas", None, 2, "added")]


def test_diff_never_shows_a_redacted_hash() -> None:
    old = _obj({"funcConfig": {"password": SECRET_A, "user": "u"},
                "env": [{"name": "TOKEN", "value": SECRET_A}]})
    new = _obj({"funcConfig": {"password": SECRET_B, "user": "u", "apiKey": SECRET_A,
                               "nested": {"token": SECRET_B, "plain": 1}},
                "env": [{"name": "TOKEN", "value": "now-plain"}]})
    changes = diff_spec(old, new)
    assert {c.path: (c.before, c.after, c.change) for c in changes} == {
        "spec.funcConfig.password": ("(redacted)", "(redacted)", "changed"),
        "spec.funcConfig.apiKey": (None, "(redacted)", "added"),
        "spec.funcConfig.nested": (None, {"token": "(redacted)", "plain": 1}, "added"),
        "spec.env[0].value": ("(redacted)", "(redacted)", "changed"),
    }
    assert "redacted:" not in repr(changes) + "".join(c.describe() for c in changes)


def test_diff_equal_redacted_hashes_are_no_change() -> None:
    old = _obj({"funcConfig": {"password": SECRET_A}})
    assert diff_spec(old, _obj({"funcConfig": {"password": SECRET_A}})) == []


# -- TimelineBuilder ---------------------------------------------------------------------------------
def test_create_update_status_delete() -> None:
    builder = TimelineBuilder()
    created = builder.add_change(_function(EventType.ADDED, 0), "m-1", events.RESOURCE_EVENTS)
    assert created is not None
    assert (created.what, created.source, created.summary) == (What.CREATED, Source.CHANGE, "created gen 1")
    assert (created.time, created.message_id, created.topic) == (T0, "m-1", "resource-events")

    updated = builder.add_change(_function(EventType.MODIFIED, 5, generation=2, replicas=3), "m-2", "t")
    assert updated is not None and updated.what == What.UPDATED
    assert updated.summary == "updated gen 2: spec.replicas"
    assert updated.changes == (FieldChange("spec.replicas", 1, 3, "changed"),)

    ready = {"conditions": [{"type": "Ready", "status": "True", "reason": "Running"}],
             "replicas": 3, "readyReplicas": 3, "observedGeneration": 2}
    status_only = _function(EventType.MODIFIED, 6, generation=2, replicas=3, status=ready)
    assert builder.add_change(status_only, "m-3", "t") is None

    two = builder.add_change(_function(EventType.MODIFIED, 7, generation=3, replicas=2, image="x:1"),
                             "m", "t")
    assert two is not None and two.summary == "updated gen 3: spec.image, spec.replicas"

    deleted = builder.add_change(_function(EventType.DELETED, 9, generation=3), "m-4", "t")
    assert deleted is not None and deleted.what == What.DELETED
    again = builder.add_change(_function(EventType.MODIFIED, 10, generation=1), "m-5", "t")
    assert again is not None and "no earlier version" in again.summary


def test_status_entries_when_asked() -> None:
    builder = TimelineBuilder(include_status=True)
    builder.add_change(_function(EventType.ADDED, 0), "m-1", "t")
    status = {"conditions": [{"type": "Ready", "status": "False", "reason": "PodsNotReady"}],
              "replicas": 1, "readyReplicas": 0, "observedGeneration": 1}
    entry = builder.add_change(_function(EventType.MODIFIED, 1, status=status), "m-2", "t")
    assert entry is not None and entry.what == What.STATUS
    assert entry.summary == "status: Ready=False (PodsNotReady), 0/1 pods ready, observed gen 1"


def test_resync_reports_only_a_difference() -> None:
    builder = TimelineBuilder()
    builder.add_change(_function(EventType.ADDED, 0), "m-1", "t")
    assert builder.add_change(_function(EventType.RESYNC, 60), "m-2", "t") is None
    entry = builder.add_change(_function(EventType.RESYNC, 120, generation=2, replicas=5), "m-3", "t")
    assert entry is not None and entry.what == What.RESYNC
    assert entry.summary == "changed while unwatched gen 2: spec.replicas"
    assert [c.describe() for c in entry.changes] == ["spec.replicas: 1 -> 5"]


def test_parse_error_is_told() -> None:
    event = _function(EventType.ADDED, 0).model_copy(update={"parse_error": "spec.x: Extra inputs"})
    entry = TimelineBuilder().add_change(event, "m", "t")
    assert entry is not None and entry.summary == "created gen 1; does not fit the CRD: spec.x: Extra inputs"


def test_pods_come_and_go() -> None:
    builder = TimelineBuilder()
    steps = [
        (_pod(EventType.ADDED, 1, False, "Pending"), What.POD_ADDED, "pod f-function-0 added (Pending)"),
        (_pod(EventType.MODIFIED, 2, False, "Running"), None, None),
        (_pod(EventType.MODIFIED, 3, True), What.POD_READY, "pod f-function-0 ready"),
        (_pod(EventType.MODIFIED, 4, True), None, None),
        (_pod(EventType.MODIFIED, 5, False, restarts=2), What.POD_NOT_READY,
         "pod f-function-0 not ready (Running, 2 restarts)"),
        (_pod(EventType.DELETED, 6, False), What.POD_GONE, "pod f-function-0 deleted"),
        (_pod(EventType.MODIFIED, 7, True, name="f-function-1"), None, None),  # first seen mid-life
    ]
    for event, what, summary in steps:
        entry = builder.add_change(event, "m", events.POD_EVENTS)
        got = (entry.what, entry.summary, entry.source) if entry else (None, None, None)
        assert got == ((what, summary, Source.POD) if what else (None, None, None))


def test_statefulset_only_when_counts_move() -> None:
    builder = TimelineBuilder()
    first = builder.add_change(_statefulset(EventType.ADDED, 1, 1, 0), "m", "t")
    assert first is not None and first.summary == "StatefulSet f-function 0/1 ready"
    assert builder.add_change(_statefulset(EventType.MODIFIED, 2, 1, 0), "m", "t") is None
    scaled = builder.add_change(_statefulset(EventType.MODIFIED, 3, 3, 1), "m", "t")
    assert scaled is not None and scaled.what == What.STATEFULSET
    assert scaled.details == {"statefulSet": "f-function", "replicas": 3, "readyReplicas": 1}


def test_builder_forgets_deleted_keys() -> None:
    builder = TimelineBuilder()
    builder.add_change(_function(EventType.ADDED, 0), "m", "t")
    builder.add_change(_pod(EventType.ADDED, 1, True), "m", "t")
    builder.add_change(_pod(EventType.DELETED, 2, True), "m", "t")
    builder.add_change(_function(EventType.DELETED, 3), "m", "t")
    assert builder._keys == {}


@pytest.mark.parametrize(("record", "what", "summary"), [
    (_reconcile("OK", 1, [("StatefulSet", "f-function", "UPDATED"),
                          ("Service", "f-function-headless", "UNCHANGED")]),
     What.RECONCILED, "reconciled gen 3 in 41 ms: updated StatefulSet f-function; "
                      "unchanged Service f-function-headless"),
    (_reconcile("OK", 1, [("StatefulSet", "f-function", "UNCHANGED")], duration=12.04),
     What.RECONCILED, "reconciled gen 3 in 12 ms: no change"),
    (_reconcile("OK", 1, [("StatefulSet", "f-function", "UNCHANGED")], status_changed=True, duration=3.25),
     What.RECONCILED, "reconciled gen 3 in 3.2 ms: status updated"),
    (_reconcile("FAILED", 1, error="statefulsets \"f\" is forbidden:\n quota", attempt=1),
     What.FAILED, "failed (attempt 2): statefulsets \"f\" is forbidden: quota"),
    (_reconcile("DEAD_LETTERED", 1, error="boom", attempt=5),
     What.DEAD_LETTERED, "dead-lettered after attempt 6: boom"),
    (_reconcile("GONE", 1, [("StatefulSet", "f-function", "DELETED")], generation=None),
     What.GONE, "gone, cleaned up in 41 ms: deleted StatefulSet f-function"),
    (_reconcile("FAILED", 1, error=f"password {SECRET_A} refused"),
     What.FAILED, "failed (attempt 1): password (redacted) refused"),
])
def test_reconcile_entries(record: dict[str, Any], what: What, summary: str) -> None:
    entry = TimelineBuilder().add_reconcile(record, "7:3:0")
    assert entry is not None
    assert (entry.what, entry.summary, entry.source, entry.topic) == (what, summary, Source.RECONCILE,
                                                                      "reconcile-log")
    assert entry.time == _at(1) and entry.message_id == "7:3:0"
    assert "redacted:" not in json.dumps(entry.to_json_dict())


@pytest.mark.parametrize(("record", "what", "summary"), [
    (_scale(1, 1, 4, "UP", 12_400), What.SCALE_UP,
     "scale 1 -> 4: backlog 12,400 above activation 0, target 3,100 per replica -> 4"),
    (_scale(1, 4, 2, "DOWN", 0, reason="backlog 0"), What.SCALE_DOWN, "scale 4 -> 2: backlog 0"),
    (_scale(1, 4, 4, "NONE", 10, reason="backlog 10"), What.HOLD, "hold at 4: backlog 10"),
    (_scale(1, 1, 4, "UP", 99, applied=False, reason="backlog 99", error="/scale refused (403): Forbidden"),
     What.SCALE_UP, "scale 1 -> 4: backlog 99 (not applied); error: /scale refused (403): Forbidden"),
])
def test_scale_entries(record: dict[str, Any], what: What, summary: str) -> None:
    entry = TimelineBuilder().add_scale(record, "9:1:0")
    assert entry is not None
    assert (entry.what, entry.summary, entry.topic) == (what, summary, "scale-decisions")
    assert entry.details["backlog"] == record["backlog"] and entry.time == _at(1)


# -- summary -----------------------------------------------------------------------------------------
def _sequence() -> list[Entry]:
    builder = TimelineBuilder()
    made = [
        builder.add_change(_function(EventType.ADDED, 0), "m", "t"),
        builder.add_reconcile(_reconcile("OK", 1, [("StatefulSet", "f-function", "CREATED")]), "r1"),
        builder.add_change(_function(EventType.MODIFIED, 5, generation=2, replicas=2), "m", "t"),
        builder.add_reconcile(_reconcile("FAILED", 6, error="quota exceeded"), "r2"),
        builder.add_reconcile(_reconcile("OK", 8, [("StatefulSet", "f-function", "UPDATED")]), "r3"),
        builder.add_scale(_scale(30, 2, 4, "UP", 12_400), "s1"),
        builder.add_scale(_scale(60, 4, 4, "NONE", 3_000, reason="backlog 3,000"), "s2"),
        builder.add_scale(_scale(90, 4, 1, "DOWN", 0, reason="backlog 0"), "s3"),
    ]
    return [e for e in made if e is not None]


def test_summary_counts() -> None:
    summary = SummaryBuilder()
    for entry in _sequence():
        summary.add(entry)
    [row] = summary.rows()
    assert (row.key, row.changes, row.reconciles, row.failures, row.scale_ups, row.scale_downs) == \
        (KEY, 2, 3, 1, 1, 1)
    assert (row.last_error, row.last_error_time, row.last_seen) == ("quota exceeded", _at(6), _at(90))
    table = summary_table(summary.rows()).splitlines()
    assert table[0].split() == ["KEY", "CHANGES", "RECONCILES", "FAILURES", "SCALE", "UPS", "SCALE", "DOWNS",
                                "LAST", "SEEN", "LAST", "ERROR"]
    assert table[1].split()[:6] == [KEY, "2", "3", "1", "1", "1"]
    assert table[1].endswith("2025-11-24T16:00:06.000Z quota exceeded")
    assert table[0].index("LAST SEEN") == table[1].index("2025-11-24T16:01:30.000Z")


# -- text and JSON -------------------------------------------------------------------------------------
def test_table_lines_are_fixed_width_with_diff_lines() -> None:
    updated = _sequence()[2]
    lines = format_table_line(updated).splitlines()
    header = table_header()
    assert lines[0].startswith("2025-11-24T16:00:05.000Z  Function/ns/f ")
    assert lines[0].index("UPDATED") == header.index("WHAT")
    assert lines[0].index("updated gen 2") == header.index("SUMMARY")
    assert lines[1:] == ["    spec.replicas: 1 -> 2"]
    reconciled = format_table_line(_sequence()[1])
    assert "\n" not in reconciled and reconciled.index("RECONCILED") == header.index("WHAT")


def test_times_are_utc_whatever_the_zone() -> None:
    assert iso_millis(datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2)))) == \
        "2025-01-02T01:04:05.678Z"


def test_json_line_is_compact_and_complete() -> None:
    line = to_json_line(_sequence()[2])
    assert "\n" not in line and ", " not in line.split('"summary"')[0]
    data = json.loads(line)
    assert data["time"] == "2025-11-24T16:00:05.000Z" and data["what"] == "UPDATED"
    assert data["source"] == "change" and data["messageId"] == "m" and data["topic"] == "t"
    assert data["details"]["changes"] == [{"path": "spec.replicas", "before": 1, "after": 2,
                                           "change": "changed"}]


def test_json_array_writer_streams_a_valid_array() -> None:
    out = io.StringIO()
    with JsonArrayWriter(out) as writer:
        for entry in _sequence():
            writer.write(entry)
    parsed = json.loads(out.getvalue())
    assert [e["what"] for e in parsed] == ["CREATED", "RECONCILED", "UPDATED", "FAILED", "RECONCILED",
                                           "SCALE_UP", "HOLD", "SCALE_DOWN"]
    empty = io.StringIO()
    with JsonArrayWriter(empty):
        pass
    assert json.loads(empty.getvalue()) == []


def test_json_array_writer_leaves_a_failed_stream_open() -> None:
    out = io.StringIO()
    with pytest.raises(RuntimeError), JsonArrayWriter(out) as writer:
        writer.write(_sequence()[0])
        raise RuntimeError("reader died")
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.getvalue())


# -- HTML -----------------------------------------------------------------------------------------------
def test_html_escapes_and_never_shows_a_hash() -> None:
    builder = TimelineBuilder()
    page = HtmlPage()
    hostile = "Function/ns/<script>alert(1)</script>"
    for event in (_function(EventType.ADDED, 0, funcConfig={"password": SECRET_A}),
                  _function(EventType.MODIFIED, 5, generation=2, funcConfig={"password": SECRET_B})):
        entry = builder.add_change(event.model_copy(update={"key": hostile}), "m", "t")
        assert entry is not None
        page.add(entry)
    record = {**_reconcile("FAILED", 6, error=f"bad {SECRET_B} <b>"), "key": hostile}
    failed = builder.add_reconcile(record, "r")
    assert failed is not None
    page.add(failed)
    html = page.render()
    assert "redacted:" not in html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "spec.funcConfig.password: (redacted) -&gt; (redacted)" in html
    assert "bad (redacted) &lt;b&gt;" in html
    assert html.count('class="mark change"') == 2 and html.count('class="mark failure"') == 1


def test_html_keeps_a_bounded_sample_with_the_peaks() -> None:
    builder = TimelineBuilder()
    page = HtmlPage(max_points=200, max_rows=50)
    for i in range(5_000):
        backlog = 1_000_000 if i == 2_345 else i % 100
        entry = builder.add_scale(_scale(i * 15, 2, 2, "NONE", backlog, reason="steady"), f"s{i}")
        assert entry is not None
        page.add(entry)
        reconciled = builder.add_reconcile(_reconcile("OK", i * 15 + 1, []), f"r{i}")
        assert reconciled is not None
        page.add(reconciled)
    html = page.render()
    points = re.search(r'class="line backlog" points="([^"]*)"', html)
    assert points is not None and 100 <= len(points.group(1).split()) <= 200
    assert ">1M</text>" in html  # the one spike still sets the backlog axis
    assert 100 <= html.count('class="mark reconcile"') <= 200
    assert html.count("<tr class=\"reconcile\">") == 50
    assert "5000 hold decisions are drawn in the chart only" in html
    assert "The table shows the last 50 of 5000 entries." in html
    assert "Dense history" in html


def test_html_without_entries() -> None:
    html = HtmlPage().render()
    assert html.startswith("<!DOCTYPE html>") and "No entries." in html
