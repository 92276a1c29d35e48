"""What to publish when a watch resumes after 410 Gone (pure: no I/O).

A plain relist (what client-go's reflector does) loses every change made and undone between
the API server coming back and the list: a CR created and deleted meanwhile never reaches the
topic. The API server says in its 410 which version it still has ("too old resource version:
247 (258)"), so the watcher resumes from there and gets the real events; only what happened
before that version, which the API server no longer records, is inferred from a list:

- an object whose resourceVersion is at most that version had no change since, so no event
  will come for it: it is published RESYNC now when it differs from the topic;
- an object the topic has but the list lacks was deleted, before that version (no event will
  come: a DELETED is inferred) or after it (its DELETED event is on its way). Which one is
  known only once the watch has passed the list's version, so these wait until then.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fmesh_events.watch.publisher import KnownObject, object_key

_OLDEST = re.compile(r"too old resource version: \d+ \((\d+)\)")


def oldest_kept_version(message: str) -> str | None:
    """The version a 410 says the API server still serves a watch from (its watch cache's
    oldest), or None when the message does not say (etcd's own "too old" says nothing)."""
    found = _OLDEST.search(message or "")
    return found.group(1) if found else None


@dataclass
class CatchUp:
    """A watch resumed from `since`, still short of the list's version `until`."""

    since: int
    until: int
    # object key -> what the topic last said, for objects the list no longer has
    vanished: dict[str, KnownObject] = field(default_factory=dict)
    # object key -> the newest version of it the topic has
    published: dict[str, int] = field(default_factory=dict)

    def already_published(self, okey: str, resource_version: int) -> bool:
        """True for an event the topic has already (versions only grow per object): a catch-up
        again after a watcher died in one does not publish twice."""
        return resource_version <= self.published.get(okey, -1)

    def saw(self, okey: str, resource_version: int) -> None:
        """An event in the window: from here on the watch tells this object's story."""
        if resource_version <= self.until:
            self.vanished.pop(okey, None)


def plan_catch_up(kind: str, namespace: str | None, items: list[dict[str, Any]],
                  list_version: str, since: str, known: Mapping[str, KnownObject]
                  ) -> tuple[list[dict[str, Any]], CatchUp]:
    """(objects to publish RESYNC now, in version order; the catch-up to follow) for a watch
    resumed from `since` after a list at `list_version`. With `since` the list's own version
    it is a plain relist's diff: everything differing is published now, and what vanished
    is deleted at once."""
    oldest = int(since)
    resync: list[dict[str, Any]] = []
    present: set[str] = set()
    for obj in items:
        meta = obj["metadata"]
        okey = object_key(kind, meta.get("namespace", ""), meta["name"])
        present.add(okey)
        if int(meta["resourceVersion"]) > oldest:
            continue  # changed since: its events are on the way
        last = known.get(okey)
        if last is None or last.deleted or last.resource_version != meta["resourceVersion"]:
            resync.append(obj)
    resync.sort(key=lambda o: int(o["metadata"]["resourceVersion"]))
    vanished = {okey: last for okey, last in known.items()
                if last.kind == kind and not last.deleted and okey not in present
                and (namespace is None or last.event.namespace == namespace)}
    published = {okey: int(last.resource_version) for okey, last in known.items()
                 if last.kind == kind and last.resource_version.isdigit()}
    return resync, CatchUp(since=oldest, until=max(int(list_version), oldest),
                           vanished=vanished, published=published)
