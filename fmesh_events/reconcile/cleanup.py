"""cleanupSubscription: when a Function or Sink with `cleanupSubscription: true` is deleted,
its input subscriptions are deleted in Pulsar before the finalizer lets the CR go (as Function
Mesh's cleanup Job does, without a Job)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fmesh_events.reconcile import command

FINALIZER = "cleanup.subscription.finalizer"  # Function Mesh's name, so its CRs carry over


def wants_cleanup(cr: Any) -> bool:
    return bool(getattr(cr.spec, "cleanup_subscription", False)) and cr.kind in ("Function", "Sink")


def subscriptions(cr: Any) -> list[tuple[str, str]]:
    """(topic, subscription) pairs the function consumes: its input topics (plain, with
    SerDe or schema, or from sourceSpecs) under its subscription name."""
    spec = cr.spec
    name = spec.subscription_name or \
        f"{command.tenant(cr)}/{command.pulsar_namespace(cr)}/{command.pulsar_name(cr)}"
    inputs = spec.input
    topics: list[str] = []
    if inputs is not None:
        topics += list(inputs.topics or [])
        topics += list((inputs.custom_serde_sources or {}).keys())
        topics += list((inputs.custom_schema_sources or {}).keys())
        topics += [t for t, conf in (inputs.source_specs or {}).items()
                   if not getattr(conf, "is_regex_pattern", False)]
    return [(topic, name) for topic in sorted(set(topics))]


def subscription_path(topic: str, subscription: str) -> str:
    """Admin REST v2 path of one subscription (non-partitioned or partitioned topic)."""
    scheme, _, rest = topic.partition("://")
    if not rest:  # short name: public/default/<topic>
        scheme, rest = "persistent", f"public/default/{topic}"
    return (f"/admin/v2/{scheme}/{rest}/subscription/{quote(subscription, safe='')}"
            "?force=true")
