"""The history command's arguments: times and keys, parsed or refused with a clear reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fmesh_events.history import HistoryError, parse_key, parse_time
from fmesh_events.history.reader import key_filter

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "back"), [
    ("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)),
    ("1h30m", timedelta(hours=1, minutes=30)), ("2d", timedelta(days=2)),
])
def test_durations_count_back_from_now(text: str, back: timedelta) -> None:
    assert parse_time(text, NOW) == NOW - back


def test_times_are_rfc3339_and_utc_when_naive() -> None:
    assert parse_time("2026-11-25T10:00:00Z", NOW) == datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert parse_time("2026-11-25T10:00:00", NOW) == datetime(2026, 11, 25, 10, tzinfo=UTC)


@pytest.mark.parametrize(("text", "says"), [
    ("yesterday", "neither a duration"), ("", "neither a duration"), ("5x", "neither a duration"),
    ("2026-11-26T00:00:00Z", "in the future"),
])
def test_bad_times_are_refused_with_the_reason(text: str, says: str) -> None:
    with pytest.raises(HistoryError, match=says):
        parse_time(text, NOW)


@pytest.mark.parametrize(("text", "key"), [
    ("function/ns/a", "Function/ns/a"), ("Functions/ns/a", "Function/ns/a"),
    ("sink/ns/b", "Sink/ns/b"), ("FunctionMesh/ns/m", "FunctionMesh/ns/m"),
    ("functionmeshes/ns/m", "FunctionMesh/ns/m"),
])
def test_keys_take_any_case_and_plurals(text: str, key: str) -> None:
    assert parse_key(text) == key


@pytest.mark.parametrize(("text", "says"), [
    ("function/ns", "KIND/NAMESPACE/NAME"), ("function//a", "KIND/NAMESPACE/NAME"),
    ("pod/ns/a", "unknown kind"),
])
def test_bad_keys_are_refused_with_the_reason(text: str, says: str) -> None:
    with pytest.raises(HistoryError, match=says):
        parse_key(text)


def test_key_filters() -> None:
    assert key_filter("Function/a/x", None)("Function/a/x")
    assert not key_filter("Function/a/x", None)("Function/a/xy")
    assert key_filter(None, "a")("Sink/a/z") and not key_filter(None, "a")("Sink/ab/z")
    assert key_filter(None, None)("anything")
