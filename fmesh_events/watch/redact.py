"""Redaction, before anything leaves the watcher: the audit trail must be safe to hand to
anyone who may read the topic.

- Secret objects lose data and stringData.
- Any map value whose key looks like a credential is replaced by `redacted:<hash>`: a short
  SHA-256 prefix, so a change of the value stays visible and the value does not.
- Env-style lists ({name, value}) are treated the same, by the entry's name.
- Container command lines (`command`, `args` lists) are redacted whole: the instance's command
  line embeds the function's config (userConfig, secrets of connectors) as JSON in a string.
- kubectl's last-applied-configuration annotation (a JSON copy of the whole object) is
  redacted the same way; managedFields (names only, no values, and noisy) are dropped.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import Any

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
REDACTED_PREFIX = "redacted:"

# Normalized key (lower case, no separators) that names a credential. "key" counts only as a
# whole word at the end (accessKey, privateKey), so keySerdeClassName or keyValue do not.
_CREDENTIAL = re.compile(r"(password|passwd|pwd|token|secret|apikey|credential)|(^|[a-z])key$")


_SEPARATORS = re.compile(r"[^a-z0-9]")


# Keys repeat from object to object (a few hundred names in all Kubernetes kinds), so their
# verdicts are remembered: the watcher's redaction was a fifth of its CPU before.
@functools.lru_cache(maxsize=4096)
def _normalized(key: str) -> str:
    return _SEPARATORS.sub("", key.lower())


@functools.lru_cache(maxsize=4096)
def looks_like_credential(key: str) -> bool:
    return bool(_CREDENTIAL.search(_normalized(key)))


def redact_value(value: Any) -> str:
    digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]
    return f"{REDACTED_PREFIX}{digest}"


def _is_scalar(value: Any) -> bool:
    # Booleans are flags (retainKeyOrdering), never credentials.
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            secret_looking = looks_like_credential(str(key))
            # A whole block under a credential-like key (credentials: {...}) goes too,
            # unless it is a block of references to Secrets.
            command_line = key in _COMMAND_LINES and isinstance(value, list) and bool(value)
            if command_line or (secret_looking and (_is_scalar(value) or (
                    isinstance(value, dict | list) and not _is_reference_block(str(key))))):
                out[key] = redact_value(value)
            else:
                out[key] = _walk(value)
        if isinstance(out.get("name"), str) and "value" in out and _is_scalar(out["value"]) \
                and looks_like_credential(out["name"]):
            out["value"] = redact_value(out["value"])
        return out
    if isinstance(node, list):
        return [_walk(item) for item in node]
    return node


_COMMAND_LINES = {"command", "args"}

# Spec blocks whose names contain "secret" but hold references (Secret names and keys), not
# secret values: keeping them readable keeps the audit useful. Their scalar leaves are still
# checked one by one.
_REFERENCE_BLOCKS = {"secretsmap", "authsecret", "tlssecret", "secretref", "secretkeyref",
                     "imagepullsecrets", "secret"}


def _is_reference_block(key: str) -> bool:
    return _normalized(key) in _REFERENCE_BLOCKS


def redact(obj: dict[str, Any]) -> dict[str, Any]:
    """A redacted deep copy of a Kubernetes object."""
    metadata = obj.get("metadata")
    if isinstance(metadata, dict) and "managedFields" in metadata:
        # Dropped before the walk: the largest part of most objects, and nothing to keep.
        obj = {**obj, "metadata": {k: v for k, v in metadata.items() if k != "managedFields"}}
    result: dict[str, Any] = _walk(obj)
    if result.get("kind") == "Secret":
        for field in ("data", "stringData"):
            if field in result:
                result[field] = {k: redact_value(v) for k, v in result[field].items()}
    metadata = result.get("metadata")
    if isinstance(metadata, dict):
        annotations = metadata.get("annotations")
        if isinstance(annotations, dict) and LAST_APPLIED in annotations:
            try:
                applied = json.loads(annotations[LAST_APPLIED])
                annotations[LAST_APPLIED] = json.dumps(redact(applied), sort_keys=True)
            except ValueError:
                annotations[LAST_APPLIED] = redact_value(annotations[LAST_APPLIED])
    return result
