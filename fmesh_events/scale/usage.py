"""CPU and memory use of a workload's pods, in percent of their requests, from the
metrics.k8s.io API (metrics-server) when the cluster serves it.

`UsageSource` is the seam: the sampler takes any source, so a test on a stack without kubelets
can hand it CPU samples of its own."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from kubernetes import client

log = logging.getLogger("fmesh_events.scale")

METRICS_PATH = "/apis/metrics.k8s.io/v1beta1"
_SUFFIXES = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
             "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
             "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
             "Ti": Decimal(2) ** 40}


def quantity(value: Any) -> Decimal:
    """A Kubernetes quantity ("250m", "1", "512Mi", "1500000n") as a number."""
    text = str(value).strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            try:
                return Decimal(text[: -len(suffix)]) * _SUFFIXES[suffix]
            except InvalidOperation:
                break
    try:
        return Decimal(text)
    except InvalidOperation as error:
        raise ValueError(f"not a quantity: {value!r}") from error


@dataclass
class PodUsage:
    """One workload's pods: per ready pod with a sample, use in percent of requests."""

    served: bool
    cpu: list[float] = field(default_factory=list)
    cpu_missing: int = 0
    memory: list[float] = field(default_factory=list)
    memory_missing: int = 0
    unready: int = 0
    missing_reason: str | None = None


class UsageSource(Protocol):
    def usage(self, namespace: str, selector: str) -> PodUsage: ...


def _ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _requests(pod: dict[str, Any], resource: str) -> Decimal:
    total = Decimal(0)
    for container in (pod.get("spec") or {}).get("containers") or []:
        wanted = ((container.get("resources") or {}).get("requests") or {}).get(resource)
        if wanted is not None:
            total += quantity(wanted)
    return total


def utilization(pods: list[dict[str, Any]], samples: dict[str, dict[str, Decimal]]) -> PodUsage:
    """Percent of requests per ready pod; pods without a sample or a request are missing.
    Pure, so the HPA's treatment of unready and missing pods can be tested alone."""
    out = PodUsage(served=True)
    for pod in pods:
        name = pod["metadata"]["name"]
        if not _ready(pod):
            out.unready += 1
            continue
        sample = samples.get(name)
        for resource, values, attr in (("cpu", out.cpu, "cpu_missing"),
                                       ("memory", out.memory, "memory_missing")):
            requested = _requests(pod, resource)
            if sample is None or resource not in sample or requested <= 0:
                setattr(out, attr, getattr(out, attr) + 1)
            else:
                values.append(float(sample[resource] / requested * 100))
    return out


class MetricsApiSource:
    """metrics.k8s.io PodMetrics plus the pods' requests: two calls per workload."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self._served: bool | None = None

    def _call(self, path: str, query: list[tuple[str, str]] | None = None) -> Any:
        response = self.api.call_api(path, "GET", query_params=query or [],
                                     header_params={"Accept": "application/json"},
                                     auth_settings=["BearerToken"], _preload_content=False)
        return json.loads(response[0].data)

    def served(self) -> bool:
        if self._served is None:
            try:
                self._call(METRICS_PATH)
                self._served = True
            except client.ApiException as error:
                self._served = False
                log.warning("metrics.k8s.io is not served (install metrics-server); CPU and "
                            "memory targets hold replicas until it is", extra={
                                "status": error.status})
        return self._served

    def usage(self, namespace: str, selector: str) -> PodUsage:
        if not self.served():
            return PodUsage(served=False, missing_reason="metrics.k8s.io is not served")
        pods = self._call(f"/api/v1/namespaces/{namespace}/pods",
                          [("labelSelector", selector)])["items"]
        metrics = self._call(f"{METRICS_PATH}/namespaces/{namespace}/pods",
                             [("labelSelector", selector)])["items"]
        samples: dict[str, dict[str, Decimal]] = {}
        for item in metrics:
            totals: dict[str, Decimal] = {}
            for container in item.get("containers") or []:
                for resource, value in (container.get("usage") or {}).items():
                    totals[resource] = totals.get(resource, Decimal(0)) + quantity(value)
            samples[item["metadata"]["name"]] = totals
        return utilization(pods, samples)
