"""CPU and memory use of a workload's pods, in percent of their requests, from the
metrics.k8s.io API (metrics-server) when the cluster serves it.

`UsageSource` is the seam: the sampler takes any source, so a test on a stack without kubelets
can hand it CPU samples of its own."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from kubernetes import client

from fmesh_events.models.base import quantity as parse_quantity

log = logging.getLogger("fmesh_events.scale")

def quantity(value: Any) -> Decimal:
    """A Kubernetes quantity ("250m", "1", "512Mi", "1500000n") as a number."""
    number = parse_quantity(value)
    if number is None:
        raise ValueError(f"not a quantity: {value!r}")
    return number


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

    GROUP, VERSION = "metrics.k8s.io", "v1beta1"

    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)
        # PodMetrics are served like custom objects: the generated API reads them, across
        # client versions (ApiClient.call_api's signature is not stable between them).
        self.custom = client.CustomObjectsApi(api)
        self._served: bool | None = None

    def served(self) -> bool:
        if self._served is None:
            try:
                self.custom.get_api_resources(self.GROUP, self.VERSION)
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
        response = self.core.list_namespaced_pod(namespace, label_selector=selector,
                                                 _preload_content=False)
        pods = json.loads(response.data)["items"]
        metrics = self.custom.list_namespaced_custom_object(
            self.GROUP, self.VERSION, namespace, "pods", label_selector=selector)["items"]
        samples: dict[str, dict[str, Decimal]] = {}
        for item in metrics:
            totals: dict[str, Decimal] = {}
            for container in item.get("containers") or []:
                for resource, value in (container.get("usage") or {}).items():
                    totals[resource] = totals.get(resource, Decimal(0)) + quantity(value)
            samples[item["metadata"]["name"]] = totals
        return utilization(pods, samples)
