"""cleanupSubscription: when a Function or Sink with `cleanupSubscription: true` is deleted,
its input subscriptions are deleted in Pulsar before the finalizer lets the CR go (as Function
Mesh's cleanup Job does, without a Job)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fmesh_events.models import inputs

FINALIZER = "cleanup.subscription.finalizer"  # Function Mesh's name, so its CRs carry over


def wants_cleanup(cr: Any) -> bool:
    return bool(getattr(cr.spec, "cleanup_subscription", False)) and cr.kind in ("Function", "Sink")


def subscriptions(cr: Any) -> list[tuple[str, str]]:
    """(topic, subscription) pairs the function consumes: its input topics (plain, with
    SerDe or schema, or from sourceSpecs) under its subscription name."""
    wanted = inputs.inputs(cr)
    return [(topic, wanted.subscription) for topic in wanted.topics]


def subscription_path(topic: str, subscription: str) -> str:
    """Admin REST v2 path of one subscription (non-partitioned or partitioned topic)."""
    scheme, _, rest = topic.partition("://")
    if not rest:  # short name: public/default/<topic>
        scheme, rest = "persistent", f"public/default/{topic}"
    return (f"/admin/v2/{scheme}/{rest}/subscription/{quote(subscription, safe='')}"
            "?force=true")
