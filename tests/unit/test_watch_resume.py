"""Resuming a watch after 410 Gone from the oldest version the API server keeps (no services)."""

from __future__ import annotations

from typing import Any

from fmesh_events.events import EventType
from fmesh_events.watch.convert import to_event
from fmesh_events.watch.publisher import KnownObject, object_key
from fmesh_events.watch.resume import oldest_kept_version, plan_catch_up


def _function(name: str, rv: int, namespace: str = "ns") -> dict[str, Any]:
    return {"apiVersion": "compute.functionmesh.io/v1alpha1", "kind": "Function",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                         "resourceVersion": str(rv), "generation": 1},
            "spec": {"className": "C", "input": {"topics": ["in"]}}}


def _known(*objects: tuple[dict[str, Any], EventType]) -> dict[str, KnownObject]:
    known = {}
    for obj, event_type in objects:
        event = to_event(obj, event_type, 0)
        known[object_key("Function", event.namespace, event.name)] = KnownObject(
            kind="Function", resource_version=event.resource_version,
            deleted=event_type == EventType.DELETED, event=event)
    return known


def test_oldest_kept_version_is_read_from_the_watch_cache_message() -> None:
    assert oldest_kept_version("too old resource version: 247 (258)") == "258"
    assert oldest_kept_version("Expired: {\"message\":\"too old resource version: 1 (53)\"}") \
        == "53"
    # etcd's own message (watch cache off) names no version: the watcher relists instead
    assert oldest_kept_version("The resourceVersion for the provided watch is too old.") is None
    assert oldest_kept_version("") is None


def test_only_objects_unchanged_since_the_oldest_version_are_resynced_now() -> None:
    known = _known((_function("same", 10), EventType.ADDED),
                   (_function("changed-before", 11), EventType.ADDED),
                   (_function("changed-after", 12), EventType.ADDED))
    items = [_function("same", 10), _function("changed-before", 40),
             _function("changed-after", 60), _function("created-before", 45),
             _function("created-after", 70)]
    resync, catch_up = plan_catch_up("Function", "ns", items, "80", "50", known)
    # changed or created at or before 50: no event will come, so RESYNC now, oldest first
    assert [o["metadata"]["name"] for o in resync] == ["changed-before", "created-before"]
    assert (catch_up.since, catch_up.until) == (50, 80)
    assert catch_up.vanished == {}


def test_vanished_objects_wait_for_the_watch_to_pass_the_list() -> None:
    known = _known((_function("deleted-before", 5), EventType.ADDED),
                   (_function("deleted-in-window", 6), EventType.ADDED),
                   (_function("long-gone", 7), EventType.DELETED),
                   (_function("other-namespace", 8, namespace="elsewhere"), EventType.ADDED))
    _resync, catch_up = plan_catch_up("Function", "ns", [], "80", "50", known)
    assert set(catch_up.vanished) == {"Function/ns/deleted-before", "Function/ns/deleted-in-window"}
    catch_up.saw("Function/ns/deleted-in-window", 60)  # its DELETED event came in the window
    catch_up.saw("Function/ns/deleted-before", 81)  # past the list: a re-creation, not news
    assert set(catch_up.vanished) == {"Function/ns/deleted-before"}


def test_all_namespaces_and_kinds() -> None:
    known = _known((_function("a", 5, namespace="x"), EventType.ADDED),
                   (_function("b", 6, namespace="y"), EventType.ADDED))
    _resync, catch_up = plan_catch_up("Function", None, [], "9", "7", known)
    assert set(catch_up.vanished) == {"Function/x/a", "Function/y/b"}
    _resync, catch_up = plan_catch_up("Source", None, [], "9", "7", known)
    assert catch_up.vanished == {}


def test_an_event_the_topic_already_has_is_not_published_twice() -> None:
    # A watcher that died in a catch-up had published up to version 55 of "a"; the next one
    # catches up from 50 again and sees 52 and 55 once more, then 56 for the first time.
    known = _known((_function("a", 55), EventType.MODIFIED))
    _resync, catch_up = plan_catch_up("Function", "ns", [_function("a", 56)], "80", "50", known)
    assert catch_up.already_published("Function/ns/a", 52)
    assert catch_up.already_published("Function/ns/a", 55)
    assert not catch_up.already_published("Function/ns/a", 56)
    assert not catch_up.already_published("Function/ns/new", 57)


def test_a_list_older_than_the_oldest_version_still_ends() -> None:
    _resync, catch_up = plan_catch_up("Function", "ns", [], "40", "50", {})
    assert catch_up.until == 50
