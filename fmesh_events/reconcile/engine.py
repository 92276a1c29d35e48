"""One reconcile of one key: read the CR as it is now (level-triggered), make its children
match a fresh render, and write status only when something differs. Idempotent: a second
run with nothing changed writes nothing."""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.dynamic.exceptions import DynamicApiError
from pydantic import ValidationError

from fmesh_events import models, pulsar_identity
from fmesh_events.models.base import describe_errors
from fmesh_events.reconcile import cleanup, render
from fmesh_events.reconcile.kube import FIELD_MANAGER, KubeWriter

MESH_LABEL = render.MESH_LABEL
WORKLOAD_KINDS = ("Function", "Source", "Sink")

# Linux limits one argument or environment string of exec() to 32 pages (MAX_ARG_STRLEN),
# the terminating NUL included, and all of them together to a quarter of the stack limit
# (ARG_MAX, 2 MiB with the usual 8 MiB). The instance command line embeds the function
# details, user configuration included: past these the pod could never start.
MAX_ARG_BYTES = 32 * 4096 - 1
MAX_EXEC_BYTES = 2 * 1024 * 1024
MAX_CONDITION_MESSAGE = 4000  # status stays small whatever the error says


class ReconcileError(Exception):
    """A reconcile that cannot succeed now; the message tells a person what to do."""


@dataclass
class Result:
    key: str
    generation: int | None = None
    gone: bool = False
    children: list[tuple[str, str, str]] = field(default_factory=list)  # kind, name, action
    status_changed: bool = False
    cr: dict[str, Any] | None = None
    desired_status: dict[str, Any] | None = None
    mesh_owner: str | None = None  # key of the FunctionMesh to refresh, if this is its child
    # The CR was the caller's copy, not read: every write from it must be conditional on
    # its resourceVersion.
    from_known: bool = False
    # The StatefulSet the status was computed from (applied, read, or the caller's newest).
    statefulset: dict[str, Any] | None = None

    @property
    def changed(self) -> bool:
        return self.status_changed or any(a != "UNCHANGED" for _k, _n, a in self.children)


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def condition(type_: str, ok: bool, reason: str, message: str, generation: int | None,
              previous: list[dict[str, Any]]) -> dict[str, Any]:
    """A standard condition; lastTransitionTime moves only when status flips."""
    status = "True" if ok else "False"
    before = next((c for c in previous if c.get("type") == type_), None)
    since = before["lastTransitionTime"] if before and before.get("status") == status \
        and before.get("lastTransitionTime") else _now()
    out = {"type": type_, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": since}
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def _comparable(status: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(status)
    out.pop("lastReconcileMessageId", None)
    for c in out.get("conditions") or []:
        c.pop("lastTransitionTime", None)
    return out


# Deletes a subscription on the function's own Pulsar cluster, as the identity its spec names
# (cleanupAuthConfig first): (identity, topic, subscription).
SubscriptionDeleter = Callable[[pulsar_identity.PulsarIdentity, str, str], None]


@dataclass
class Options:
    delete_subscription: SubscriptionDeleter | None = None
    # After this long, a cleanup that keeps failing lets go of the finalizer (reported).
    finalizer_timeout_seconds: float = 120.0
    # What this process last stored for each child: (kind, namespace, name) -> fingerprint.
    # A child found here is applied without reading it first (one call instead of two).
    stored: dict[tuple[str, str, str], str] = field(default_factory=dict)
    # pulsarConfig ConfigMaps found, (namespace, name) -> when: a thousand Functions naming one
    # ConfigMap read it once per CONFIG_MAP_TTL_SECONDS, not once each.
    config_maps_seen: dict[tuple[str, str], float] = field(default_factory=dict)


# A ConfigMap deleted after it was seen is noticed this much later at most; its Functions'
# pods then fail to start (CreateContainerConfigError) and status says so meanwhile.
CONFIG_MAP_TTL_SECONDS = 30.0


def _config_map_exists(writer: KubeWriter, options: Options, namespace: str, name: str) -> bool:
    handle = (namespace, name)
    seen = options.config_maps_seen.get(handle)
    if seen is not None and time.monotonic() - seen < CONFIG_MAP_TTL_SECONDS:
        return True
    if writer.get("ConfigMap", namespace, name) is None:
        options.config_maps_seen.pop(handle, None)
        return False
    options.config_maps_seen[handle] = time.monotonic()
    return True


def fingerprint(obj: dict[str, Any]) -> str:
    """What a user or the workload sees of a child: equal fingerprints, nothing changed."""
    meta = obj.get("metadata") or {}
    return json.dumps([meta.get("labels"), meta.get("annotations"), meta.get("ownerReferences"),
                       obj.get("spec")], sort_keys=True, default=str)


def reconcile(writer: KubeWriter, key: str, children_too: bool = True,
              options: Options | None = None, known: dict[str, Any] | None = None,
              statefulset: dict[str, Any] | None = None) -> Result:
    """Make the cluster match the CR named by `key`. `children_too=False` (pod-events)
    refreshes status only, and may start from `known`, the CR as the caller last read or
    wrote it, instead of reading it: what it writes from it is conditional on its
    resourceVersion (the finalizer patch here, the status write by the caller), so a copy
    that has moved on is refused (409), never written from. With `known`, `statefulset` is
    the newest StatefulSet the caller has seen, read, or applied, used instead of a read."""
    options = options or Options()
    kind, namespace, name = key.split("/", 2)
    result = Result(key=key)
    if known is not None and not children_too:
        cr: dict[str, Any] | None = copy.deepcopy(known)
        result.from_known = True
    else:
        cr = writer.get(kind, namespace, name)
    if cr is None or cr["metadata"].get("deletionTimestamp"):
        forget_children(options, namespace, name)
    if cr is None:
        result.gone = True
        return result
    if cr["metadata"].get("deletionTimestamp"):
        result.gone = True
        if cleanup.FINALIZER in (cr["metadata"].get("finalizers") or []):
            _finalize(writer, cr, options, result)
        return result
    result.cr = cr
    result.generation = cr["metadata"].get("generation")
    if (cr["metadata"].get("annotations") or {}).get("compute.functionmesh.io/managed") == "false":
        return result
    try:
        model = models.parse_resource(cr)
    except ValidationError as error:
        raise ReconcileError(
            f"the spec does not fit this operator's model: {describe_errors(error)}") from error
    if kind == "FunctionMesh":
        assert isinstance(model, models.FunctionMesh)
        _reconcile_mesh(writer, model, cr, result, options)
    else:
        assert isinstance(model, models.Function | models.Source | models.Sink)
        _reconcile_workload(writer, model, cr, result, children_too, options,
                            statefulset if result.from_known else None)
    return result


def _apply_child(writer: KubeWriter, desired: dict[str, Any], result: Result,
                 options: Options, first_time: bool) -> dict[str, Any]:
    """Apply one child and record CREATED / UPDATED / UNCHANGED / REPLACED.

    Apply comes first, without a read, when this process stored the child before or the CR
    has never been reconciled (its children do not exist yet): the common cases cost one
    call. Otherwise (a restart, a key that moved here, a mesh child whose /scale owns its
    replicas) the child is read first.
    """
    meta = desired["metadata"]
    handle = (desired["kind"], meta["namespace"], meta["name"])
    known = options.stored.get(handle)
    if desired["kind"] not in WORKLOAD_KINDS and (known is not None or first_time):
        try:
            stored = writer.apply(desired)
        except (client.ApiException, DynamicApiError) as error:
            if error.status != 422:  # 422: an immutable field changed; the slow path handles it
                raise
        else:
            after = fingerprint(stored)
            created = known is None and _created_by_this_apply(stored)
            action = "CREATED" if created else "UNCHANGED" if after == known else "UPDATED"
            options.stored[handle] = after
            result.children.append((desired["kind"], meta["name"], action))
            return stored
    stored = _read_then_apply(writer, desired, result)
    options.stored[handle] = fingerprint(stored)
    return stored


def _created_by_this_apply(stored: dict[str, Any]) -> bool:
    """True when our field manager's only write is the object's creation."""
    meta = stored.get("metadata") or {}
    ours = [m for m in meta.get("managedFields") or [] if m.get("manager") == FIELD_MANAGER]
    if not ours or meta.get("generation", 1) != 1:
        return False
    try:  # both are set while the create is handled; they can fall either side of a second
        gap = _timestamp(ours[0].get("time")) - _timestamp(meta.get("creationTimestamp"))
    except (TypeError, ValueError):
        return False
    return abs(gap) <= 1


def _timestamp(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def forget_children(options: Options, namespace: str, name: str) -> None:
    """A CR is gone: its children go with it, and a CR of the same name starts afresh."""
    prefix = f"{name}-"
    for handle in [h for h in list(options.stored) if h[1] == namespace and h[2].startswith(prefix)]:
        options.stored.pop(handle, None)


def _read_then_apply(writer: KubeWriter, desired: dict[str, Any],
                     result: Result) -> dict[str, Any]:
    meta = desired["metadata"]
    existing = writer.get(desired["kind"], meta["namespace"], meta["name"])
    if existing is None:
        stored = writer.apply(desired)
        result.children.append((desired["kind"], meta["name"], "CREATED"))
        return stored
    if desired["kind"] in WORKLOAD_KINDS:
        return _apply_mesh_child(writer, desired, existing, result)
    if desired["kind"] == "StatefulSet":
        immutable = render.immutable_fields_changed(existing, desired)
        if immutable:
            # An in-place update would be refused forever: orphan the pods, recreate, and
            # let the new StatefulSet adopt them.
            writer.delete("StatefulSet", meta["namespace"], meta["name"], orphan=True)
            writer.wait_gone("StatefulSet", meta["namespace"], meta["name"])
            stored = writer.apply(desired)
            result.children.append(("StatefulSet", meta["name"], "REPLACED"))
            return stored
    stored = writer.apply(desired)
    same = stored["metadata"]["resourceVersion"] == existing["metadata"]["resourceVersion"]
    result.children.append((desired["kind"], meta["name"], "UNCHANGED" if same else "UPDATED"))
    return stored


def _apply_mesh_child(writer: KubeWriter, desired: dict[str, Any], existing: dict[str, Any],
                      result: Result, attempts: int = 3) -> dict[str, Any]:
    """A mesh entry's replicas is where a child starts; after that, the child's /scale
    (kubectl scale, the scaler) owns the count and the mesh must not reset it. The apply is
    conditional on the version read, so a scale between the read and the apply is never
    overwritten with the count read before it."""
    meta = desired["metadata"]
    for attempt in range(attempts):
        wanted = copy.deepcopy(desired)
        if "replicas" in (existing.get("spec") or {}):
            wanted["spec"]["replicas"] = existing["spec"]["replicas"]
        wanted["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        try:
            stored = writer.apply(wanted)
        except (client.ApiException, DynamicApiError) as error:
            if error.status != 409 or attempt == attempts - 1:
                raise
            again = writer.get(desired["kind"], meta["namespace"], meta["name"])
            if again is None:
                stored = writer.apply(desired)
                result.children.append((desired["kind"], meta["name"], "CREATED"))
                return stored
            existing = again
            continue
        same = stored["metadata"]["resourceVersion"] == existing["metadata"]["resourceVersion"]
        result.children.append((desired["kind"], meta["name"], "UNCHANGED" if same else "UPDATED"))
        return stored
    raise AssertionError("unreachable")  # the loop returns or raises


def _reconcile_workload(writer: KubeWriter, model: Any, cr: dict[str, Any], result: Result,
                        children_too: bool, options: Options,
                        statefulset: dict[str, Any] | None = None) -> None:
    meta = cr["metadata"]
    namespace = meta["namespace"]
    config_map = model.spec.pulsar.pulsar_config
    if children_too and not _config_map_exists(writer, options, namespace, config_map):
        raise ReconcileError(
            f"ConfigMap {config_map!r} named by spec.pulsar.pulsarConfig does not exist in "
            f"namespace {namespace!r}: create it with webServiceURL and brokerServiceURL")
    _ensure_finalizer(writer, model, cr)
    first_time = not (cr.get("status") or {}).get("observedGeneration")
    if children_too:
        children = render.render_workload(model)
        for desired in children:
            check_exec_limits(cr, desired)
        for desired in children:
            try:
                stored = _apply_child(writer, desired, result, options, first_time)
            except (client.ApiException, DynamicApiError) as error:
                if error.status != 422:
                    raise
                raise ReconcileError(refused_child(error, desired, cr)) from error
            if desired["kind"] == "StatefulSet":
                statefulset = stored
    if statefulset is None:
        statefulset = writer.get("StatefulSet", namespace, render.statefulset_name(model))
    result.statefulset = statefulset
    sts_status = (statefulset or {}).get("status") or {}
    wanted = model.spec.replica_count
    ready = int(sts_status.get("readyReplicas") or 0)
    previous = (cr.get("status") or {}).get("conditions") or []
    # A status refresh only reads: it speaks for the generation last applied, not for a
    # newer one whose event is still on its way.
    generation = meta.get("generation") if children_too else \
        (cr.get("status") or {}).get("observedGeneration")
    is_ready = statefulset is not None and ready >= wanted
    status = {
        "observedGeneration": generation,
        "replicas": int(sts_status.get("replicas") or 0),
        "readyReplicas": ready,
        "selector": render.status_selector(model),
        "conditions": [
            condition("Reconciled", True, "Applied",
                      "StatefulSet and Service match the spec", generation, previous),
            condition("Ready", is_ready, "PodsReady" if is_ready else "PodsNotReady",
                      f"{ready}/{wanted} pods ready", generation, previous),
        ],
    }
    autoscaling = (cr.get("status") or {}).get("autoscaling")
    if autoscaling and model.spec.max_replicas is not None:
        # The scaler's part of status; it goes when maxReplicas goes (autoscaling off).
        status["autoscaling"] = autoscaling
    _set_status(cr, status, result)
    owner = (meta.get("labels") or {}).get(MESH_LABEL)
    if owner and result.status_changed:
        result.mesh_owner = f"FunctionMesh/{namespace}/{owner}"


def _exec_strings(container: dict[str, Any]) -> list[str]:
    """What exec() receives for a container: command, args and NAME=value environment."""
    strings = [str(s) for s in (container.get("command") or []) + (container.get("args") or [])]
    strings += [f"{e.get('name')}={e['value']}" for e in container.get("env") or []
                if isinstance(e, dict) and isinstance(e.get("value"), str)]
    return strings


def _largest_spec_field(cr: dict[str, Any]) -> tuple[str, int]:
    sizes = {key: len(json.dumps(value, ensure_ascii=False).encode())
             for key, value in (cr.get("spec") or {}).items()}
    if not sizes:
        return "spec", 0
    field_name = max(sizes, key=lambda k: sizes[k])
    return f"spec.{field_name}", sizes[field_name]


def check_exec_limits(cr: dict[str, Any], desired: dict[str, Any]) -> None:
    """Refuse a child whose containers could never be started: an argument or environment
    string over MAX_ARG_BYTES, or all of them over MAX_EXEC_BYTES (Linux's exec limits).
    The message names the largest field of the spec, where the bulk comes from."""
    pod = ((desired.get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in (pod.get("initContainers") or []) + (pod.get("containers") or []):
        strings = _exec_strings(container)
        longest = max((len(s.encode()) for s in strings), default=0)
        total = sum(len(s.encode()) + 1 for s in strings)
        if longest <= MAX_ARG_BYTES and total <= MAX_EXEC_BYTES:
            continue
        field_name, size = _largest_spec_field(cr)
        what = (f"an argument of {longest:,} bytes, more than the {MAX_ARG_BYTES:,} Linux "
                "allows for one argument" if longest > MAX_ARG_BYTES else
                f"{total:,} bytes of arguments and environment, more than the "
                f"{MAX_EXEC_BYTES:,} Linux allows")
        raise ReconcileError(
            f"{field_name} is too large ({size:,} bytes as JSON): the container "
            f"{container.get('name')!r} of {desired['kind']} {desired['metadata']['name']} "
            f"would get {what}, so its pods could never start. The instance command line "
            f"carries the function details and configuration: keep them under about 100 KiB.")


# Where the fields of a rendered StatefulSet come from in the spec of a Function, Source or
# Sink: a refused child is reported with the spec field to fix, not only the child's path.
_CHILD_FIELDS = (
    ("spec.template.spec.volumes", "spec.pod.volumes"),
    ("spec.template.spec.initContainers", "spec.pod.initContainers"),
    ("spec.template.spec.affinity", "spec.pod.affinity"),
    ("spec.template.spec.tolerations", "spec.pod.tolerations"),
    ("spec.template.spec.nodeSelector", "spec.pod.nodeSelector"),
    ("spec.template.spec.securityContext", "spec.pod.securityContext"),
    ("spec.template.spec.serviceAccountName", "spec.pod.serviceAccountName"),
    ("spec.template.spec.imagePullSecrets", "spec.pod.imagePullSecrets"),
    ("spec.template.spec.terminationGracePeriodSeconds", "spec.pod.terminationGracePeriodSeconds"),
    ("spec.template.metadata.labels", "spec.pod.labels"),
    ("spec.template.labels", "spec.pod.labels"),
    ("spec.template.metadata.annotations", "spec.pod.annotations"),
    ("spec.template.annotations", "spec.pod.annotations"),
    ("spec.volumeClaimTemplates", "spec.volumeClaimTemplates"),
    ("spec.persistentVolumeClaimRetentionPolicy", "spec.persistentVolumeClaimRetentionPolicy"),
)
_MAIN_CONTAINER_FIELDS = {
    "image": "spec.image", "imagePullPolicy": "spec.imagePullPolicy",
    "resources": "spec.resources", "volumeMounts": "spec.volumeMounts",
    "livenessProbe": "spec.pod.liveness", "startupProbe": "spec.pod.startupProbe",
    "envFrom": "spec.pulsar.pulsarConfig",
}
_FIELD_PATH = re.compile(r"\bspec\.[A-Za-z0-9_.\[\]-]+")
_CONTAINER = re.compile(r"spec\.template\.spec\.containers\[(\d+)\](?:\.(\w+)(?:\[(\d+)\])?)?")


def _spec_field(path: str, desired: dict[str, Any], cr: dict[str, Any]) -> str | None:
    """The field of the CR's spec that a path of the rendered child comes from."""
    match = _CONTAINER.match(path)
    if match:
        pod = desired["spec"]["template"]["spec"]
        containers = pod.get("containers") or []
        index, sub, item = int(match.group(1)), match.group(2), match.group(3)
        name = containers[index].get("name") if index < len(containers) else None
        if name == "filebeat":
            return "spec.filebeatImage"
        if name != f"pulsar-{str(cr.get('kind')).lower()}":  # render.container_name
            return "spec.pod.sidecars"
        if sub == "env" and item is not None:
            env = containers[index].get("env") or []
            entry = env[int(item)].get("name") if int(item) < len(env) else None
            secrets = (cr.get("spec") or {}).get("secretsMap") or {}
            return "spec.secretsMap" if entry in secrets else "spec.pod.env"
        return _MAIN_CONTAINER_FIELDS.get(sub or "", "spec")
    for prefix, spec_field in _CHILD_FIELDS:
        if path == prefix or path.startswith((prefix + ".", prefix + "[")):
            return spec_field
    return None


def refused_child(error: Any, desired: dict[str, Any], cr: dict[str, Any]) -> str:
    """The reason a child was refused (422), led by the spec fields it comes from."""
    try:
        message = str(json.loads(error.body or "{}").get("message") or error.reason)
    except (TypeError, ValueError):
        message = str(error.reason)
    fields: list[str] = []
    if desired["kind"] == "StatefulSet":
        for path in _FIELD_PATH.findall(message):
            try:
                found = _spec_field(path.rstrip("."), desired, cr)
            except (ValueError, KeyError, IndexError, TypeError):
                found = None
            if found and found not in fields:
                fields.append(found)
    where = ", ".join(fields) or "the spec"
    return (f"{where}: the {desired['kind']} {desired['metadata']['name']} made from it was "
            f"refused by the API server: {message}")


def _reconcile_mesh(writer: KubeWriter, mesh: models.FunctionMesh, cr: dict[str, Any],
                    result: Result, options: Options) -> None:
    meta = cr["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    desired = render.render_mesh_children(mesh)
    wanted = {(d["kind"], d["metadata"]["name"]) for d in desired}
    children = []
    for child in desired:
        try:
            children.append(_apply_child(writer, child, result, options, False))
        except (client.ApiException, DynamicApiError) as error:
            if error.status != 422:
                raise
            raise ReconcileError(_refused_mesh_child(error, child, mesh)) from error
    for kind in WORKLOAD_KINDS:
        for existing in writer.list(kind, namespace, f"{MESH_LABEL}={name}"):
            child_name = existing["metadata"]["name"]
            if (kind, child_name) not in wanted:
                writer.delete(kind, namespace, child_name)
                result.children.append((kind, child_name, "DELETED"))
    not_ready = []
    per_kind: dict[str, dict[str, Any]] = {"Function": {}, "Source": {}, "Sink": {}}
    for child in children:
        child_status = child.get("status") or {}
        ready = next((c for c in child_status.get("conditions") or []
                      if c.get("type") == "Ready"), None)
        is_ready = bool(ready and ready.get("status") == "True")
        per_kind[child["kind"]][child["metadata"]["name"]] = {
            "status": "Ready" if is_ready else "NotReady",
            "replicas": int(child_status.get("replicas") or 0),
            "readyReplicas": int(child_status.get("readyReplicas") or 0),
            "message": ready.get("message", "") if ready else "not reconciled yet",
        }
        if not is_ready:
            not_ready.append(f"{child['kind']} {child['metadata']['name']}")
    previous = (cr.get("status") or {}).get("conditions") or []
    generation = meta.get("generation")
    status = {
        "observedGeneration": generation,
        "conditions": [
            condition("Reconciled", True, "Applied", f"{len(children)} children match the spec",
                      generation, previous),
            condition("Ready", not not_ready, "ChildrenReady" if not not_ready else
                      "ChildrenNotReady", "all children ready" if not not_ready else
                      "not ready: " + ", ".join(not_ready), generation, previous),
        ],
    }
    for kind, field_name in (("Function", "functionConditions"), ("Source", "sourceConditions"),
                             ("Sink", "sinkConditions")):
        if per_kind[kind]:
            status[field_name] = per_kind[kind]
    _set_status(cr, status, result)


def _refused_mesh_child(error: Any, child: dict[str, Any], mesh: models.FunctionMesh) -> str:
    field_name = {"Function": "functions", "Source": "sources", "Sink": "sinks"}[child["kind"]]
    entries = getattr(mesh.spec, field_name) or []
    prefix = f"{mesh.metadata.get('name')}-"
    index = next((i for i, e in enumerate(entries)
                  if f"{prefix}{e.name}" == child["metadata"]["name"]), 0)
    try:
        message = str(json.loads(error.body or "{}").get("message") or error.reason)
    except (TypeError, ValueError):
        message = str(error.reason)
    return (f"spec.{field_name}[{index}]: the {child['kind']} {child['metadata']['name']} made "
            f"from it was refused by the API server: {message}")


def _set_status(cr: dict[str, Any], status: dict[str, Any], result: Result) -> None:
    current = cr.get("status") or {}
    result.desired_status = status
    result.status_changed = _comparable(current) != _comparable(status)


def _ensure_finalizer(writer: KubeWriter, model: Any, cr: dict[str, Any]) -> None:
    """The finalizer is there exactly while cleanupSubscription asks for it."""
    meta = cr["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    wanted = cleanup.wants_cleanup(model)
    if wanted == (cleanup.FINALIZER in finalizers):
        return
    finalizers = [*finalizers, cleanup.FINALIZER] if wanted else \
        [f for f in finalizers if f != cleanup.FINALIZER]
    stored = writer.patch_metadata(cr["kind"], meta["namespace"], meta["name"],
                                   {"finalizers": finalizers,
                                    "resourceVersion": meta["resourceVersion"]})
    meta["finalizers"] = finalizers
    meta["resourceVersion"] = stored["metadata"]["resourceVersion"]


def _finalize(writer: KubeWriter, cr: dict[str, Any], options: Options, result: Result) -> None:
    """Stop the instances, delete the input subscriptions, then let the CR go; give up on
    the subscriptions after the timeout."""
    meta = cr["metadata"]
    deleted_at = datetime.fromisoformat(meta["deletionTimestamp"].replace("Z", "+00:00"))
    try:
        model = models.parse_resource(cr)
        if not isinstance(model, models.Function | models.Sink):
            raise ReconcileError(f"{cr['kind']} has no input subscriptions to clean up")
        if _instances_stopping(writer, model, meta["namespace"], result) and \
                (datetime.now(UTC) - deleted_at).total_seconds() < options.finalizer_timeout_seconds:
            return
        identity = _cleanup_identity(writer, model, meta["namespace"])
        if options.delete_subscription is None:
            raise ReconcileError("this reconciler cannot reach Pulsar admin")
        for topic, subscription in cleanup.subscriptions(model):
            options.delete_subscription(identity, topic, subscription)
            result.children.append(("Subscription", f"{topic}:{subscription}", "DELETED"))
    except Exception as error:
        waited = (datetime.now(UTC) - deleted_at).total_seconds()
        if waited < options.finalizer_timeout_seconds:
            raise ReconcileError(f"cannot delete the input subscriptions yet: {error}") from error
        writer.post_event(cr, "Warning", "CleanupSkipped",
                          f"gave up deleting the input subscriptions after {waited:.0f}s: "
                          f"{error}; delete them by hand if they must go")
    finalizers = [f for f in meta.get("finalizers") or [] if f != cleanup.FINALIZER]
    writer.patch_metadata(cr["kind"], meta["namespace"], meta["name"],
                          {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]})


def _instances_stopping(writer: KubeWriter, model: models.Function | models.Sink,
                        namespace: str, result: Result) -> bool:
    """True while the workload's StatefulSet exists, after asking for its foreground deletion.

    A running instance re-creates a subscription deleted under it (the broker drops its
    consumer, the client subscribes again), so the subscriptions go only once the pods have
    gone. Foreground deletion keeps the StatefulSet until its pods are gone; its DELETED event
    (on pod-events) brings the key back here."""
    name = render.statefulset_name(model)
    stored = writer.get("StatefulSet", namespace, name)
    if stored is None:
        return False
    if not stored["metadata"].get("deletionTimestamp"):
        writer.delete("StatefulSet", namespace, name, propagation="Foreground")
        result.children.append(("StatefulSet", name, "DELETED"))
    return True


def _cleanup_identity(writer: KubeWriter, model: models.Function | models.Sink,
                      namespace: str) -> pulsar_identity.PulsarIdentity:
    """The cluster and credentials the clean-up uses: the ConfigMap spec.pulsar.pulsarConfig
    names, and the Secrets of cleanupAuthConfig (else authConfig, else authSecret) and of the
    TLS settings. Only Secrets the spec names are read."""
    pulsar = model.spec.pulsar
    config = writer.get("ConfigMap", namespace, pulsar.pulsar_config)
    secrets: dict[str, pulsar_identity.SecretData | None] = {}
    for name in pulsar_identity.secrets_named(pulsar, cleanup=True):
        found = writer.get("Secret", namespace, name)
        secrets[name] = None if found is None else \
            pulsar_identity.decode_secret_data(found.get("data"))
    try:
        return pulsar_identity.identity_of(
            pulsar, None if config is None else dict(config.get("data") or {}), secrets,
            namespace, cleanup=True)
    except pulsar_identity.IdentityError as error:
        raise ReconcileError(str(error)) from None


def merge_patch(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch that turns `current` into exactly `desired` (keys that go away are
    set to null; lists are replaced whole)."""
    patch: dict[str, Any] = {k: None for k in current if k not in desired}
    for key, value in desired.items():
        before = current.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            patch[key] = merge_patch(before, value)
        else:
            patch[key] = value
    return patch


def failure_status(cr: dict[str, Any], message: str, dead: bool) -> dict[str, Any]:
    """Ready=False with a message a person can act on; everything else as it was."""
    status = copy.deepcopy(cr.get("status") or {})
    previous = status.get("conditions") or []
    generation = cr["metadata"].get("generation")
    reason = "ReconcileGaveUp" if dead else "ReconcileFailed"
    if len(message) > MAX_CONDITION_MESSAGE:
        message = message[:MAX_CONDITION_MESSAGE - 20] + " ... (cut)"
    conditions = [c for c in previous if c.get("type") not in ("Ready", "Reconciled")]
    conditions += [condition("Reconciled", False, reason, message, generation, previous),
                   condition("Ready", False, reason, message, generation, previous)]
    status["conditions"] = conditions
    return status
