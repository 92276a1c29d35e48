"""Moving workloads over to fmesh-events, from both places users come from.

- ``pulsar_worker``: functions, sources and sinks registered with Pulsar's functions worker,
  read through the admin API and written as Function/Source/Sink (or FunctionMesh) YAML.
- ``function_mesh``: objects already under StreamNative Function Mesh (same CRDs), checked
  for what fmesh-events would refuse, ignore or fight with (its HPAs).

Both report :class:`Finding` items instead of dropping anything silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Finding:
    """One thing a user must know about a migrated object, field by field.

    ``attention`` is False for facts that need no action (a legacy form converted on the
    next reconcile, a value kept by a different name).
    """

    subject: str
    field: str
    message: str
    value: Any = None
    attention: bool = True

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"subject": self.subject, "field": self.field,
                               "message": self.message, "attention": self.attention}
        if self.value is not None:
            out["value"] = self.value
        return out

    def line(self) -> str:
        """One line for a terminal: subject, field (= value), message."""
        value = f" = {short(self.value)}" if self.value is not None else ""
        mark = "" if self.attention else "(info) "
        field = f"{self.field}{value}: " if self.field else ""
        return f"{self.subject}: {mark}{field}{self.message}"


def short(value: Any, limit: int = 120) -> str:
    """A value as one line of bounded length, for reports."""
    import json

    try:
        text = json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["Finding", "short"]
