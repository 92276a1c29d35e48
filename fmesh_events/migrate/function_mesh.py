"""From Function Mesh: what changes for objects already in the cluster when fmesh-events
takes over from Function Mesh's controller (same CRDs, same group and version).

:func:`check_object` is pure (one object and the autoscalers around it in, findings out);
:func:`read_cluster` lists what it needs through the Kubernetes API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from pydantic import ValidationError

from fmesh_events.migrate import Finding
from fmesh_events.models import GROUP, PLURALS, VERSION, parse_resource

KINDS = ("Function", "Source", "Sink", "FunctionMesh")
MANAGED_ANNOTATION = "compute.functionmesh.io/managed"

# Fields our models accept (Function Mesh YAML applies unchanged) that nothing in
# fmesh_events/reconcile or fmesh_events/scale reads; path within a workload spec -> why.
NOT_ACTED_UPON: dict[str, str] = {
    "downloaderImage": "packages are downloaded by the workload's own container (pulsarctl, "
    "pulsar-admin or wget in its image), not by a separate downloader image",
    "cleanupImage": "fmesh-events deletes the subscription itself (cleanupSubscription) "
    "without a Job, so no cleanup image runs",
    "pulsar.cleanupAuthConfig": "the subscription clean-up runs in the operator with its own "
    "Pulsar credentials",
    "pod.vpa": "fmesh-events renders no VerticalPodAutoscaler",
}
KIND_NOT_ACTED_UPON: dict[str, dict[str, str]] = {
    "Source": {"sourceType": "the connector comes from java.jar/jarLocation (or the image); "
               "sourceType is not used to pick it"},
    "Sink": {"sinkType": "the connector comes from java.jar/jarLocation (or the image); "
             "sinkType is not used to pick it"},
}


@dataclass
class ObjectReport:
    """The findings for one Function, Source, Sink or FunctionMesh."""

    kind: str
    namespace: str
    name: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @property
    def attention(self) -> bool:
        return any(f.attention for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name,
                "status": "attention" if self.attention else "supported",
                "findings": [f.to_json() for f in self.findings]}


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _get(spec: dict[str, Any], path: str) -> Any:
    node: Any = spec
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _targets(autoscaler: dict[str, Any], kind: str, name: str, uid: str | None) -> str | None:
    """How an HPA/VPA belongs to the object: owned by it, scaling it, or named like Function
    Mesh names its own (``<name>-<kind>``); None when unrelated."""
    meta = autoscaler.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if (uid and ref.get("uid") == uid) or (ref.get("kind") == kind and ref.get("name") == name):
            return "owned by it"
    spec = autoscaler.get("spec") or {}
    target = spec.get("scaleTargetRef") or spec.get("targetRef") or {}
    if target.get("kind") == kind and target.get("name") == name and str(
            target.get("apiVersion", "")).startswith(GROUP):
        return "scaling it"
    if meta.get("name") == f"{name}-{kind.lower()}":
        return "named like Function Mesh's"
    return None


def _workload_findings(subject: str, kind: str, spec_model: Any, raw: dict[str, Any],
                       prefix: str) -> list[Finding]:
    """Accepted fields nothing acts upon, and autoscaling we cannot follow."""
    from fmesh_events.scale.spec import scale_spec

    out: list[Finding] = []
    for path, why in {**NOT_ACTED_UPON, **KIND_NOT_ACTED_UPON.get(kind, {})}.items():
        value = _get(raw, path)
        if value is not None:
            out.append(Finding(subject, f"{prefix}{path}", f"accepted but not acted upon: {why}",
                               value))
    for problem in scale_spec(SimpleNamespace(spec=spec_model)).unsupported:
        out.append(Finding(subject, f"{prefix}pod", f"autoscaling not followed: {problem}"))
    return out


def check_object(obj: dict[str, Any], hpas: list[dict[str, Any]] | None = None,
                 vpas: list[dict[str, Any]] | None = None) -> ObjectReport:
    """Everything that differs for one object under fmesh-events (none: supported unchanged).

    ``hpas`` and ``vpas`` are the autoscalers of the object's namespace (or more).
    """
    meta = obj.get("metadata") or {}
    kind, namespace, name = str(obj.get("kind")), str(meta.get("namespace") or ""), str(meta.get("name"))
    report = ObjectReport(kind, namespace, name)
    subject = report.key
    add = report.findings.append
    try:
        model = parse_resource(obj)
    except ValidationError as error:
        for problem in error.errors():
            loc = tuple(problem["loc"])
            where = _location(loc) or "spec"
            hint = (" (spec fields are strict: remove it or fix its spelling)"
                    if problem["type"] == "extra_forbidden" else "")
            value = problem.get("input") if problem["type"] != "missing" else None
            add(Finding(subject, where, f"refused by fmesh-events' model: {problem['msg']}{hint}",
                        value if not isinstance(value, dict) or len(str(value)) < 300 else None))
        model = None
    except ValueError as error:
        add(Finding(subject, "", f"refused by fmesh-events' model: {error}"))
        model = None
    raw_spec = obj.get("spec") or {}
    if model is not None and kind in ("Function", "Source", "Sink"):
        report.findings += _workload_findings(subject, kind, model.spec, raw_spec, "spec.")
    elif model is not None and kind == "FunctionMesh":
        for plural, child_kind in (("functions", "Function"), ("sources", "Source"),
                                   ("sinks", "Sink")):
            entries = getattr(model.spec, plural) or []
            raws = raw_spec.get(plural) or []
            for index, entry in enumerate(entries):
                raw = raws[index] if index < len(raws) and isinstance(raws[index], dict) else {}
                report.findings += _workload_findings(subject, child_kind, entry, raw,
                                                      f"spec.{plural}[{index}].")
    uid = meta.get("uid")
    for hpa in hpas or []:
        hmeta = hpa.get("metadata") or {}
        if hmeta.get("namespace", namespace) != namespace:
            continue
        how = _targets(hpa, kind, name, uid)
        if how:
            hpa_name = hmeta.get("name")
            add(Finding(subject, f"horizontalpodautoscaler/{hpa_name}",
                        f"a HorizontalPodAutoscaler {how} (Function Mesh's): delete it, or it "
                        "fights fmesh-events' scaler over spec.replicas: "
                        f"kubectl delete hpa -n {namespace} {hpa_name}"))
    for vpa in vpas or []:
        vmeta = vpa.get("metadata") or {}
        if vmeta.get("namespace", namespace) != namespace:
            continue
        how = _targets(vpa, kind, name, uid)
        if how:
            add(Finding(subject, f"verticalpodautoscaler/{vmeta.get('name')}",
                        f"a VerticalPodAutoscaler {how} (Function Mesh's): fmesh-events neither "
                        "updates nor deletes it; delete it unless you want it to keep resizing "
                        f"the pods: kubectl delete vpa -n {namespace} {vmeta.get('name')}"))
    status = obj.get("status") or {}
    if isinstance(status, dict) and isinstance(status.get("conditions"), dict):
        add(Finding(subject, "status.conditions", "Function Mesh's map of conditions: converted "
                    "to a list of conditions on the next reconcile", attention=False))
    if (meta.get("annotations") or {}).get(MANAGED_ANNOTATION) == "false":
        add(Finding(subject, f"metadata.annotations[{MANAGED_ANNOTATION}]", "\"false\": left "
                    "alone: fmesh-events does not reconcile this object until the annotation "
                    "is removed", attention=False))
    return report


@dataclass
class ClusterView:
    """The objects to check and the autoscalers that may belong to them."""

    objects: list[dict[str, Any]]
    hpas: list[dict[str, Any]]
    vpas: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)


class CheckError(RuntimeError):
    """The cluster could not be read; the message is one line for the user."""


def _api_error(error: Exception, what: str) -> CheckError:
    status = getattr(error, "status", None)
    if status in (401, 403):
        return CheckError(f"not allowed to {what} (HTTP {status}): the kubeconfig's user needs "
                          "list on functions, sources, sinks, functionmeshes and "
                          "horizontalpodautoscalers in all namespaces")
    if status is not None:
        reason = str(getattr(error, "reason", "") or "").splitlines()[0][:200]
        return CheckError(f"could not {what}: HTTP {status} {reason}")
    return CheckError(f"cannot reach the Kubernetes API to {what}: {type(error).__name__}: "
                      f"{str(error).splitlines()[0][:300] if str(error) else ''}")


def read_cluster(settings: Any) -> ClusterView:
    """All four kinds in all namespaces, and every HPA and VPA (when that API exists)."""
    from kubernetes import client
    from kubernetes.config.config_exception import ConfigException

    try:
        from fmesh_events.kube_client import api_client

        api = api_client(settings)
    except (ConfigException, OSError) as error:
        raise CheckError(f"no Kubernetes configuration: {error}") from None
    custom = client.CustomObjectsApi(api)
    view = ClusterView([], [], [])
    try:
        for kind in KINDS:
            try:
                listed = custom.list_cluster_custom_object(GROUP, VERSION, PLURALS[kind])
            except client.ApiException as error:
                if error.status == 404:
                    view.notes.append(f"no {PLURALS[kind]}.{GROUP} in this cluster (CRD not installed)")
                    continue
                raise
            for item in listed.get("items") or []:
                item.setdefault("kind", kind)
                item.setdefault("apiVersion", f"{GROUP}/{VERSION}")
                view.objects.append(item)
        hpas = client.AutoscalingV2Api(api).list_horizontal_pod_autoscaler_for_all_namespaces()
        view.hpas = [api.sanitize_for_serialization(h) for h in hpas.items]
        try:
            vpas = custom.list_cluster_custom_object("autoscaling.k8s.io", "v1",
                                                     "verticalpodautoscalers")
            view.vpas = list(vpas.get("items") or [])
        except client.ApiException as error:
            if error.status != 404:
                raise
    except client.ApiException as error:
        raise _api_error(error, "list them") from None
    except Exception as error:  # urllib3's connection errors and the like
        raise _api_error(error, "list them") from None
    finally:
        api.close()
    return view


def check(view: ClusterView) -> list[ObjectReport]:
    """One report per object, in a stable order."""
    objects = sorted(view.objects, key=lambda o: (KINDS.index(str(o.get("kind"))),
                                                  o["metadata"].get("namespace", ""),
                                                  o["metadata"].get("name", "")))
    return [check_object(o, view.hpas, view.vpas) for o in objects]
