from __future__ import annotations

import json

import pytest

from fmesh_events import events
from fmesh_events.events import ChangeEvent, EventType


def _event(**overrides: object) -> ChangeEvent:
    data: dict[str, object] = dict(
        key="Function/ns/f", type=EventType.MODIFIED, kind="Function",
        api_version="compute.functionmesh.io/v1alpha1", namespace="ns", name="f", uid="u-1",
        resource_version="1234", generation=3, observed_time_ms=1_764_000_000_123,
        object=json.dumps({"spec": {"replicas": 2}}),
    )
    data.update(overrides)
    return ChangeEvent.model_validate(data)


@pytest.mark.parametrize("event", [
    _event(),
    _event(type=EventType.DELETED, generation=None, parse_error="spec.x: Extra inputs"),
    _event(kind="Pod", key="Function/ns/f", phase="Running", ready=True, restart_count=2),
])
def test_codec_round_trip(event: ChangeEvent) -> None:
    assert events.decode(events.encode(event)) == event


def test_record_uses_wire_names() -> None:
    record = _event().to_record()
    assert record["resourceVersion"] == "1234" and record["apiVersion"].startswith("compute")
    assert record["type"] == "MODIFIED" and record["eventVersion"] == events.EVENT_VERSION


def test_garbage_does_not_decode() -> None:
    with pytest.raises(events.Undecodable, match="ChangeEvent"):
        events.decode(b"\x00\x01garbage")


def test_schema_lists_every_contract_field() -> None:
    names = {f["name"] for f in events.AVRO_SCHEMA["fields"]}
    assert {"kind", "apiVersion", "namespace", "name", "uid", "resourceVersion", "generation",
            "type", "observedTime", "object", "phase", "ready", "restartCount"} <= names
