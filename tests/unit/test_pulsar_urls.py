"""Host aliases for Pulsar URLs: an operator outside the cluster reaches the names a
pulsarConfig gives at the addresses FMESH_PULSAR_HOST_ALIASES says."""

from __future__ import annotations

import json

import pytest

from fmesh_events.pulsar_client import PulsarAdmin, aliased
from fmesh_events.settings import Settings

ALIASES = {"pulsar-broker.pulsar.svc.cluster.local": "10.244.0.1"}


@pytest.mark.parametrize(("url", "expected"), [
    ("pulsar://pulsar-broker.pulsar.svc.cluster.local:6650", "pulsar://10.244.0.1:6650"),
    ("http://pulsar-broker.pulsar.svc.cluster.local:8080/", "http://10.244.0.1:8080/"),
    ("https://pulsar-broker.pulsar.svc.cluster.local/admin", "https://10.244.0.1/admin"),
    ("http://user:pw@pulsar-broker.pulsar.svc.cluster.local:8080", "http://user:pw@10.244.0.1:8080"),
    # Not aliased: kept byte for byte, a longer name that merely contains the alias included.
    ("pulsar://broker.example.com:6650", "pulsar://broker.example.com:6650"),
    ("pulsar://x.pulsar-broker.pulsar.svc.cluster.local:6650",
     "pulsar://x.pulsar-broker.pulsar.svc.cluster.local:6650"),
])
def test_aliased_replaces_the_host_only(url: str, expected: str) -> None:
    assert aliased(url, ALIASES) == expected


def test_aliases_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMESH_PULSAR_HOST_ALIASES", json.dumps(ALIASES))
    monkeypatch.setenv("FMESH_PULSAR_ADMIN_URL", "http://pulsar-broker.pulsar.svc.cluster.local:8080")
    assert PulsarAdmin(Settings()).base == "http://10.244.0.1:8080"
