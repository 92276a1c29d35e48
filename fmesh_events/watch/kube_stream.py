"""List and watch the watched resources as plain dicts, through the kubernetes client
(connection setup, auth and TLS stay the client's), with resourceVersion and bookmarks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kubernetes import client


class Gone(Exception):
    """410: the resourceVersion is older than the API server keeps; relist."""


@dataclass(frozen=True)
class Resource:
    """A watched resource: API path, kind, and an optional label selector."""

    kind: str
    api_version: str
    plural: str
    label_selector: str = ""



def _request(api: client.ApiClient, resource: Resource, namespace: str | None,
             timeout: tuple[float, float], **query: Any) -> Any:
    """One list or watch call through the client's typed API, left unparsed
    (_preload_content=False) so objects stay plain dicts and the stream can be read line
    by line. These calls look the same across kubernetes client versions."""
    options = {k: v for k, v in query.items() if v is not None}
    options.update(_preload_content=False, _request_timeout=timeout)
    if resource.api_version == "v1" and resource.plural == "pods":
        core = client.CoreV1Api(api)
        if namespace:
            return core.list_namespaced_pod(namespace, **options)
        return core.list_pod_for_all_namespaces(**options)
    if resource.api_version == "apps/v1" and resource.plural == "statefulsets":
        apps = client.AppsV1Api(api)
        if namespace:
            return apps.list_namespaced_stateful_set(namespace, **options)
        return apps.list_stateful_set_for_all_namespaces(**options)
    group, version = resource.api_version.split("/", 1)
    custom = client.CustomObjectsApi(api)
    if namespace:
        return custom.list_namespaced_custom_object(group, version, namespace, resource.plural,
                                                    **options)
    return custom.list_cluster_custom_object(group, version, resource.plural, **options)


def list_objects(api: client.ApiClient, resource: Resource, namespace: str | None,
                 page_size: int = 500) -> tuple[list[dict[str, Any]], str]:
    """Every object (paged), each with kind/apiVersion set, and the list's resourceVersion."""
    items: list[dict[str, Any]] = []
    token = ""
    while True:
        response = _request(api, resource, namespace, (10, 60), limit=page_size,
                            label_selector=resource.label_selector or None,
                            _continue=token or None)
        body = json.loads(response.data)
        for item in body.get("items", []):
            item.setdefault("kind", resource.kind)
            item.setdefault("apiVersion", resource.api_version)
            items.append(item)
        token = body.get("metadata", {}).get("continue", "")
        if not token:
            return items, str(body["metadata"]["resourceVersion"])


def watch_objects(api: client.ApiClient, resource: Resource, namespace: str | None,
                  resource_version: str, timeout_seconds: int = 240
                  ) -> Iterator[tuple[str, dict[str, Any]]]:
    """(type, object) pairs from resource_version on, BOOKMARK included; ends when the
    server closes the stream. Raises Gone on 410."""
    try:
        response = _request(api, resource, namespace, (10, timeout_seconds + 30), watch=True,
                            resource_version=resource_version, allow_watch_bookmarks=True,
                            timeout_seconds=timeout_seconds,
                            label_selector=resource.label_selector or None)
    except client.ApiException as error:
        if error.status == 410:  # the message (with the oldest version kept) is in the body
            raise Gone(f"{error.reason}: {error.body}") from error
        raise
    try:
        pending = b""
        for chunk in response.stream(amt=65536, decode_content=True):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(str(obj.get("message")))
                    raise client.ApiException(status=obj.get("code"), reason=obj.get("message"))
                obj.setdefault("kind", resource.kind)
                obj.setdefault("apiVersion", resource.api_version)
                yield event["type"], obj
    finally:
        response.release_conn()
