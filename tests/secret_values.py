"""Every secret value a test puts into the cluster, so the last test of the run can scan
every message of every internal topic for them (issue 8: "secrets found: 0")."""

from __future__ import annotations

import secrets

_USED: list[str] = []


def new_secret(label: str = "secret") -> str:
    """A fresh, recognizable secret value, remembered for the final topic scan."""
    value = f"s3cret-{label}-{secrets.token_hex(8)}"
    _USED.append(value)
    return value


def used_secrets() -> list[str]:
    return list(_USED)


def remember_secret(value: str) -> str:
    """A secret made elsewhere (a Pulsar JWT, an OAuth2 access token), remembered for the
    final topic scan like new_secret's."""
    _USED.append(value)
    return value
