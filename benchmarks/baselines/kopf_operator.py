"""Baseline for benchmarks/reconcile.py: the operator a Python team would write with kopf,
rendering the same StatefulSet and Service (fmesh_events.reconcile.render) and applying them
the same way (server-side apply), with Ready from the StatefulSet's readyReplicas.

Run: kopf run --standalone --namespace NS benchmarks/baselines/kopf_operator.py
"""

from __future__ import annotations

import copy
import logging
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes import config, dynamic

from fmesh_events import models
from fmesh_events.reconcile import render

CALLS = {"n": 0}
_client: dict[str, Any] = {}


def _dyn() -> dynamic.DynamicClient:
    if "dyn" not in _client:
        _client["dyn"] = dynamic.DynamicClient(config.new_client_from_config())
    return _client["dyn"]


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 240


@kopf.on.create("compute.functionmesh.io", "v1alpha1", "functions")
@kopf.on.update("compute.functionmesh.io", "v1alpha1", "functions")
def apply_children(body: kopf.Body, **_: Any) -> None:
    function = models.Function.model_validate(copy.deepcopy(dict(body)))
    for obj in render.render_workload(function):
        resource = _dyn().resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        CALLS["n"] += 1
        resource.server_side_apply(body=obj, name=obj["metadata"]["name"],
                                   namespace=obj["metadata"]["namespace"],
                                   field_manager="kopf-baseline", force_conflicts=True)


@kopf.on.event("apps", "v1", "statefulsets",
               labels={"compute.functionmesh.io/component": "function"})
def statefulset_changed(body: kopf.Body, namespace: str | None, **_: Any) -> None:
    owner = body["metadata"]["labels"].get("compute.functionmesh.io/name")
    status = body.get("status") or {}
    ready = int(status.get("readyReplicas") or 0)
    wanted = int(body["spec"].get("replicas") or 1)
    now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    patch = {"status": {"replicas": int(status.get("replicas") or 0), "readyReplicas": ready,
                        "conditions": [{"type": "Ready",
                                        "status": "True" if ready >= wanted else "False",
                                        "reason": "PodsReady" if ready >= wanted else "PodsNotReady",
                                        "message": f"{ready}/{wanted} pods ready",
                                        "lastTransitionTime": now}]}}
    functions = _dyn().resources.get(api_version="compute.functionmesh.io/v1alpha1",
                                     kind="Function")
    CALLS["n"] += 1
    functions.status.patch(name=owner, namespace=namespace, body=patch,
                           content_type="application/merge-patch+json")
