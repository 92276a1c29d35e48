"""Kubernetes object + watch type -> ChangeEvent (pure)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from fmesh_events import models
from fmesh_events.events import ChangeEvent, EventType, resource_key
from fmesh_events.models.base import MAX_NESTING, describe_errors
from fmesh_events.watch.redact import redact

CUT = f"(cut by the watcher: nested more than {MAX_NESTING} levels)"

# Function Mesh's labels on the Pods and StatefulSets of a Function, Source or Sink.
COMPONENT_LABEL = "compute.functionmesh.io/component"
NAME_LABEL = "compute.functionmesh.io/name"
OWNED_SELECTOR = COMPONENT_LABEL
KIND_BY_COMPONENT = {"function": "Function", "source": "Source", "sink": "Sink"}


def owner_key(obj: dict[str, Any]) -> str | None:
    """The owning CR's key of a Pod or StatefulSet, from its Function Mesh labels."""
    metadata = obj.get("metadata", {})
    labels = metadata.get("labels") or {}
    kind = KIND_BY_COMPONENT.get(str(labels.get(COMPONENT_LABEL, "")).lower())
    name = labels.get(NAME_LABEL)
    if kind is None or not name:
        return None
    return resource_key(kind, metadata.get("namespace", ""), str(name))


def _parse_error(obj: dict[str, Any]) -> str | None:
    try:
        models.parse_resource(obj)
    except ValidationError as error:
        return describe_errors(error)
    except ValueError as error:
        return str(error)
    return None


def shallow(value: Any, room: int = MAX_NESTING + 8) -> Any:
    """``value`` with whatever nests deeper than ``room`` levels replaced by CUT.

    The API server keeps objects nested 10,000 levels deep; the models refuse them (the
    parseError says where), and the published copy is cut so that no reader of the topic
    (history, reconcile, a person's script) has to survive that depth. The margin keeps every
    object the models accept whole."""
    if isinstance(value, dict):
        return {k: shallow(v, room - 1) for k, v in value.items()} if room > 0 else CUT
    if isinstance(value, list):
        return [shallow(v, room - 1) for v in value] if room > 0 else CUT
    return value


def _pod_facts(obj: dict[str, Any]) -> tuple[str | None, bool | None, int | None]:
    status = obj.get("status") or {}
    if obj.get("kind") == "Pod":
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in status.get("conditions") or [])
        restarts = sum(int(c.get("restartCount", 0)) for c in status.get("containerStatuses") or [])
        return status.get("phase"), ready, restarts
    if obj.get("kind") == "StatefulSet":
        want = (obj.get("spec") or {}).get("replicas", 1)
        return None, status.get("readyReplicas", 0) == want, None
    return None, None, None


def to_event(obj: dict[str, Any], event_type: EventType, observed_ms: int,
             key: str | None = None) -> ChangeEvent:
    """One message for `obj`. CRs are checked against the models: a misfit is still
    published, with parseError saying why, so reconcile can report it on the CR."""
    metadata = obj.get("metadata") or {}
    kind = str(obj.get("kind", ""))
    namespace = str(metadata.get("namespace", ""))
    name = str(metadata.get("name", ""))
    is_cr = str(obj.get("apiVersion", "")).startswith(models.GROUP + "/")
    phase, ready, restarts = (None, None, None) if is_cr else _pod_facts(obj)
    return ChangeEvent(
        key=key or resource_key(kind, namespace, name),
        type=event_type,
        kind=kind,
        api_version=str(obj.get("apiVersion", "")),
        namespace=namespace,
        name=name,
        uid=str(metadata.get("uid", "")),
        resource_version=str(metadata.get("resourceVersion", "")),
        generation=metadata.get("generation"),
        observed_time_ms=observed_ms,
        object=json.dumps(redact(shallow(obj)), sort_keys=True, separators=(",", ":")),
        parse_error=_parse_error(obj) if is_cr else None,
        phase=phase,
        ready=ready,
        restart_count=restarts,
    )
