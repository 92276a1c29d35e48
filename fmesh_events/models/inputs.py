"""Where a Function or Sink reads from, in Pulsar's terms: its fully qualified name, its
subscription, its input topics and topic patterns. Reconcile (command line, cleanup) and scale
(backlog) both need these, so they live with the models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_TENANT = "public"
DEFAULT_PULSAR_NAMESPACE = "default"


def pulsar_name(cr: Any) -> str:
    """The name in Pulsar: spec.name, else the object's name."""
    return str(cr.spec.name or cr.metadata.get("name") or "")


def tenant(cr: Any) -> str:
    return str(cr.spec.tenant or DEFAULT_TENANT)


def pulsar_namespace(cr: Any) -> str:
    return str(cr.spec.namespace or DEFAULT_PULSAR_NAMESPACE)


def subscription_name(cr: Any) -> str:
    """spec.subscriptionName, else Pulsar's default: the fully qualified function name."""
    return str(getattr(cr.spec, "subscription_name", None) or
               f"{tenant(cr)}/{pulsar_namespace(cr)}/{pulsar_name(cr)}")


def full_topic(topic: str) -> str:
    """persistent://tenant/namespace/topic for a short name, as Pulsar resolves it."""
    if "://" in topic:
        return topic
    parts = topic.split("/")
    if len(parts) == 1:
        return f"persistent://public/default/{topic}"
    return f"persistent://{topic}"


@dataclass(frozen=True)
class Inputs:
    subscription: str
    topics: tuple[str, ...]  # fully qualified
    patterns: tuple[str, ...]  # regular expressions over fully qualified names


def inputs(cr: Any) -> Inputs:
    """The input topics (plain, with SerDe or schema, from sourceSpecs) and patterns."""
    conf = getattr(cr.spec, "input", None)
    topics: list[str] = []
    patterns: list[str] = []
    if conf is not None:
        topics += list(conf.topics or [])
        topics += list((conf.custom_serde_sources or {}).keys())
        topics += list((conf.custom_schema_sources or {}).keys())
        for topic, consumer in (conf.source_specs or {}).items():
            (patterns if getattr(consumer, "is_regex_pattern", False) else topics).append(topic)
        if conf.topic_pattern:
            patterns.append(conf.topic_pattern)
    return Inputs(subscription_name(cr), tuple(sorted({full_topic(t) for t in topics})),
                  tuple(sorted({full_topic(p) for p in patterns})))
