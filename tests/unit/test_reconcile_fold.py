"""Fewer API calls per Function: folding the queued triggers of one key into one pass (what
the pass must do, the lane that hands a key's messages over together), the pulsarConfig
ConfigMap read once per TTL rather than once per reconcile, and the newest StatefulSet
copy a status refresh uses instead of a read."""

from __future__ import annotations

import functools
import threading

import pytest

from fmesh_events.reconcile import engine
from fmesh_events.reconcile.kube import resource_version_number
from fmesh_events.reconcile.loop import KeyedLane, NewestStatefulSets, Trigger, fold

KEY = "Function/ns/f"


class Message:
    def __init__(self, key: str, n: int) -> None:
        self.key, self.n = key, n

    def partition_key(self) -> str:
        return self.key


def test_one_trigger_is_itself() -> None:
    only = Trigger(KEY, children_too=False, observed=(1, 0))
    assert fold([only]) is only


def test_a_resource_event_among_refreshes_redoes_the_children_at_its_generation() -> None:
    folded = fold([Trigger(KEY, children_too=False, observed=(1, 0)),
                   Trigger(KEY, generation=3),
                   Trigger(KEY, children_too=False, observed=(1, 1))])
    assert folded.children_too and folded.generation == 3 and folded.attempt == 0
    assert folded.observed is None  # a full pass is never skipped


def test_refreshes_fold_to_the_newest_counts() -> None:
    folded = fold([Trigger(KEY, children_too=False, observed=(0, 0)),
                   Trigger(KEY, children_too=False, observed=(1, 1))])
    assert not folded.children_too and folded.observed == (1, 1)


def test_a_deleted_statefulset_among_refreshes_is_never_skipped() -> None:
    folded = fold([Trigger(KEY, children_too=False, observed=(1, 1)),
                   Trigger(KEY, children_too=False, observed=None)])
    assert folded.observed is None


def test_a_retry_folded_with_a_new_event_starts_the_attempts_again() -> None:
    assert fold([Trigger(KEY, attempt=3), Trigger(KEY, generation=4)]).attempt == 0
    assert fold([Trigger(KEY, attempt=2), Trigger(KEY, attempt=3)]).attempt == 3


def test_the_lane_hands_over_a_key_with_its_later_messages_and_keeps_the_rest_in_order() -> None:
    lane = KeyedLane(maxsize=10)
    for key, n in [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5), ("a", 6)]:
        lane.put(Message(key, n))
    lane.put(None)
    handed = []
    while (batch := lane.get()) is not None:
        handed.append([(m.key, m.n) for m in batch])
    assert handed == [[("a", 1), ("a", 3), ("a", 6)], [("b", 2), ("b", 5)], [("c", 4)]]


def test_a_full_lane_makes_the_receiver_wait_until_a_worker_takes() -> None:
    lane = KeyedLane(maxsize=2)
    lane.put(Message("a", 1))
    lane.put(Message("b", 2))
    put_done = threading.Event()

    def put_third() -> None:
        lane.put(Message("c", 3))
        put_done.set()

    thread = threading.Thread(target=put_third)
    thread.start()
    assert not put_done.wait(0.2)  # full: the third put waits
    assert [m.n for m in lane.get() or []] == [1]
    assert put_done.wait(5)
    thread.join()


class ConfigMapReader:
    """Answers get("ConfigMap") from a set of names, counting the calls."""

    def __init__(self, names: set[str]) -> None:
        self.names, self.gets = names, 0

    def get(self, kind: str, namespace: str, name: str) -> dict[str, object] | None:
        self.gets += 1
        return {"metadata": {"name": name}} if name in self.names else None


def test_a_config_map_found_is_read_again_only_after_the_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    reader, options, now = ConfigMapReader({"pulsar"}), engine.Options(), [1000.0]
    monkeypatch.setattr("fmesh_events.reconcile.engine.time.monotonic", lambda: now[0])
    exists = functools.partial(engine._config_map_exists, reader, options, "ns")  # type: ignore[arg-type]
    assert all(exists("pulsar") for _ in range(1000))
    assert reader.gets == 1
    now[0] += engine.CONFIG_MAP_TTL_SECONDS + 1
    reader.names.clear()  # deleted meanwhile: found missing at the next read
    assert not exists("pulsar") and reader.gets == 2


def test_a_missing_config_map_is_asked_for_every_time() -> None:
    reader, options = ConfigMapReader(set()), engine.Options()
    assert not engine._config_map_exists(reader, options, "ns", "later")  # type: ignore[arg-type]
    reader.names.add("later")  # created: the next reconcile finds it at once
    assert engine._config_map_exists(reader, options, "ns", "later")  # type: ignore[arg-type]
    assert reader.gets == 2


def _statefulset(resource_version: str, ready: int) -> dict[str, object]:
    return {"metadata": {"name": "f-function", "namespace": "ns",
                         "resourceVersion": resource_version, "managedFields": [{}]},
            "spec": {"replicas": 3}, "status": {"replicas": 3, "readyReplicas": ready}}


@pytest.mark.parametrize(("value", "number"), [
    ("1", 1), ("12345678901234567890", 12345678901234567890),
    ("0", None), ("012", None), ("", None), ("12a", None), ("-3", None), ("١٢", None),
])
def test_a_resource_version_is_a_number_only_as_kep_5504_writes_one(
        value: str, number: int | None) -> None:
    assert resource_version_number({"metadata": {"resourceVersion": value}}) == number


def test_an_event_copy_counts_only_once_a_live_copy_is_known() -> None:
    newest = NewestStatefulSets()
    newest.saw(KEY, _statefulset("120", ready=3), live=False)  # a replay after a restart?
    assert newest.get(KEY) is None
    newest.saw(KEY, _statefulset("100", ready=1), live=True)
    newest.saw(KEY, _statefulset("90", ready=0), live=False)  # older than the live one
    newest.saw(KEY, _statefulset("100", ready=0), live=False)  # the same version again
    assert newest.get(KEY) == {"metadata": {"name": "f-function", "namespace": "ns",
                                            "resourceVersion": "100"},
                               "status": {"replicas": 3, "readyReplicas": 1}}
    newest.saw(KEY, _statefulset("101", ready=2), live=False)  # newer: the status to write
    newest.saw(KEY, _statefulset("99", ready=0), live=True)  # never goes back
    assert (newest.get(KEY) or {})["status"]["readyReplicas"] == 2


def test_a_copy_whose_version_is_no_number_or_a_forgotten_key_means_a_read() -> None:
    newest = NewestStatefulSets()
    newest.saw(KEY, _statefulset("100", ready=1), live=True)
    newest.saw(KEY, _statefulset("opaque", ready=1), live=False)
    assert newest.get(KEY) is None
    newest.saw(KEY, _statefulset("100", ready=1), live=True)
    newest.forget(KEY)  # the StatefulSet or its CR was deleted
    newest.saw(KEY, _statefulset("101", ready=1), live=False)
    assert newest.get(KEY) is None
