"""The reconcile stage's Kubernetes I/O: read, server-side apply under one field manager,
status, delete, Events. Counts its API calls (the benchmark reports calls per reconcile)."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, dynamic
from kubernetes.dynamic.exceptions import NotFoundError

log = logging.getLogger("fmesh_events.reconcile")

FIELD_MANAGER = "fmesh-events"
GROUP_VERSION = "compute.functionmesh.io/v1alpha1"
API_VERSIONS = {
    "Function": GROUP_VERSION, "Source": GROUP_VERSION, "Sink": GROUP_VERSION,
    "FunctionMesh": GROUP_VERSION, "StatefulSet": "apps/v1", "Service": "v1",
    "ConfigMap": "v1", "Event": "v1", "Secret": "v1",
}


def _body(response: Any) -> dict[str, Any]:
    """The response's JSON as plain dicts. Every call passes serialize=False: the dynamic
    client's own wrapping (ResourceInstance, then to_dict) costs more than the parse."""
    parsed: dict[str, Any] = json.loads(response.data)
    return parsed


def resource_version_number(obj: dict[str, Any] | None) -> int | None:
    """An object's resourceVersion as a number, or None when it is not one.

    Kubernetes 1.35 made resourceVersions of one resource comparable (KEP-5504): a positive
    integer without leading zeros, larger for a later write; etcd-backed API servers always
    gave them so. Anything else (another storage, an aggregated API) is not comparable, and
    the caller reads instead of trusting a copy."""
    value = str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")
    if not value.isdigit() or value.startswith("0") or not value.isascii():
        return None
    return int(value)


class KubeWriter:
    def __init__(self, api: client.ApiClient) -> None:
        self.dynamic = dynamic.DynamicClient(api)
        self._resources: dict[str, Any] = {}
        self._local = threading.local()

    @property
    def calls(self) -> int:
        """API calls this thread has made (each reconcile runs on one thread)."""
        return int(getattr(self._local, "calls", 0))

    def _count(self) -> None:
        self._local.calls = self.calls + 1

    def _resource(self, kind: str) -> Any:
        if kind not in self._resources:
            self._resources[kind] = self.dynamic.resources.get(api_version=API_VERSIONS[kind],
                                                               kind=kind)
        return self._resources[kind]

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self._count()
        try:
            return _body(self._resource(kind).get(name=name, namespace=namespace,
                                                  serialize=False))
        except NotFoundError:
            return None

    def list(self, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        self._count()
        result = _body(self._resource(kind).get(namespace=namespace,
                                                label_selector=label_selector, serialize=False))
        return list(result.get("items") or [])

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply; returns the object as stored."""
        self._count()
        meta = obj["metadata"]
        path = self._resource(obj["kind"]).path(name=meta["name"], namespace=meta.get("namespace"))
        # Encoded here: the client's json.dumps writes a character outside the BMP (an emoji
        # in funcConfig) as a surrogate-pair escape, which the API server's YAML reader of
        # apply bodies refuses (400). UTF-8 as it is reads the same and is accepted.
        body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
        return _body(self.dynamic.request(
            "patch", path, body=body, content_type="application/apply-patch+yaml",
            field_manager=FIELD_MANAGER, force_conflicts=True, serialize=False))

    def delete(self, kind: str, namespace: str, name: str, orphan: bool = False,
               propagation: str = "Background") -> None:
        """Delete; `orphan` keeps the dependents, `propagation` says how else they go."""
        self._count()
        body = {"propagationPolicy": "Orphan" if orphan else propagation}
        with contextlib.suppress(NotFoundError):
            self._resource(kind).delete(name=name, namespace=namespace, body=body)

    def wait_gone(self, kind: str, namespace: str, name: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.get(kind, namespace, name) is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{kind} {namespace}/{name} still exists after {timeout:.0f}s")
            time.sleep(0.2)

    def patch_metadata(self, kind: str, namespace: str, name: str,
                       metadata: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch metadata (finalizers); include resourceVersion to make it conditional."""
        self._count()
        return _body(self._resource(kind).patch(
            name=name, namespace=namespace, body={"metadata": metadata},
            content_type="application/merge-patch+json", field_manager=FIELD_MANAGER,
            serialize=False))

    def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any],
                     resource_version: str | None = None) -> dict[str, Any] | None:
        """Merge-patch status; returns the object as stored, None when it is gone. With
        `resource_version` the write is conditional: 409 if the object moved since."""
        self._count()
        body: dict[str, Any] = {"status": status}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        # Deleted since it was read: no status to write, and its deletion has its own event.
        try:
            return _body(self._resource(kind).status.patch(
                name=name, namespace=namespace, body=body,
                content_type="application/merge-patch+json", field_manager=FIELD_MANAGER,
                serialize=False))
        except NotFoundError:
            return None

    def post_event(self, cr: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        """A Kubernetes Event on the CR, as `kubectl describe` shows them."""
        meta = cr["metadata"]
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": cr["apiVersion"], "kind": cr["kind"],
                               "name": meta["name"], "namespace": meta["namespace"],
                               "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")},
            "type": event_type, "reason": reason, "message": message[:1000],
            "source": {"component": FIELD_MANAGER}, "reportingComponent": FIELD_MANAGER,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        self._count()
        try:
            self._resource("Event").create(body=body, namespace=meta["namespace"])
        except Exception as error:  # an Event is a courtesy; never fail a reconcile for it
            log.warning("could not post Event", extra={"error": str(error)})
