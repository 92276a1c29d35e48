"""The children a CR should have, as plain dicts ready for server-side apply.

Pure functions, no I/O. A Function, Source or Sink becomes a StatefulSet
``<name>-function|-source|-sink`` and a headless Service ``<name>-headless`` named,
labelled and shaped as Function Mesh makes them (controllers/spec in
streamnative/function-mesh), so dashboards and selectors written for Function Mesh keep
working. A FunctionMesh becomes one Function, Source or Sink per entry.

Every rendered object is deterministic (same input, same dicts) and holds no ``None``:
server-side apply would otherwise fight over nulls. The pod template carries a short
hash of itself (``fmesh-events.io/pod-template-hash``) so that any change of spec or
configuration rolls the pods, while scaling (``spec.replicas`` only) does not.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any

from fmesh_events.models import API_VERSION, Function, FunctionMesh, Sink, Source
from fmesh_events.models.base import quantity
from fmesh_events.models.common import CryptoConfig, RuntimeLogConfig, TLSConfig
from fmesh_events.reconcile import command as cmd
from fmesh_events.reconcile.command import Workload

POD_TEMPLATE_HASH = "fmesh-events.io/pod-template-hash"
MESH_LABEL = "compute.functionmesh.io/mesh"
FILEBEAT_VOLUME = "filebeat-logs"
FILEBEAT_MOUNT = "/pulsar/logs/functions"
FILEBEAT_CONFIG = "/usr/share/filebeat/config/filebeat.yaml"
RUNNER_UID = 10000
RUNNER_GID = 10001

_COMPONENT = {"Function": "function", "Source": "source", "Sink": "sink"}

# --------------------------------------------------------------------------- names and labels


def component(cr: Workload) -> str:
    """function, source or sink."""
    return _COMPONENT[cr.kind]


def statefulset_name(cr: Workload) -> str:
    return f"{cmd.object_name(cr)}-{component(cr)}"


def service_name(cr: Workload) -> str:
    return f"{statefulset_name(cr)}-headless"


def container_name(cr: Workload) -> str:
    return f"pulsar-{component(cr)}"


def selector_labels(cr: Workload) -> dict[str, str]:
    """The labels Function Mesh puts on everything it makes for ``cr``; also the selector.

    They depend only on kind, name and namespace, so the selector never changes.
    """
    job = statefulset_name(cr)
    name, namespace, comp = cmd.object_name(cr), cmd.object_namespace(cr), component(cr)
    labels = {
        "app.kubernetes.io/name": job,
        "app.kubernetes.io/instance": job,
    }
    if isinstance(cr, Function):
        labels["compute.functionmesh.io/app"] = "function-mesh"
    labels |= {
        "compute.functionmesh.io/component": comp,
        "compute.functionmesh.io/name": name,
        "compute.functionmesh.io/namespace": namespace,
    }
    # Function Mesh's older labels, still set for selectors written against them.
    if isinstance(cr, Function):
        labels["app"] = "function-mesh"
    labels |= {"component": comp, "name": name, "namespace": namespace}
    return labels


def status_selector(cr: Workload) -> str:
    """The label selector for status.selector (the scale subresource): ``a=b,c=d``, sorted."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(cr).items()))


def owner_reference(owner: Workload | FunctionMesh) -> dict[str, Any]:
    """A controller reference to ``owner`` (deleting the owner deletes the child)."""
    ref: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": owner.kind,
        "name": str(owner.metadata.get("name") or ""),
    }
    uid = owner.metadata.get("uid")
    if uid:
        ref["uid"] = str(uid)
    ref |= {"controller": True, "blockOwnerDeletion": True}
    return ref


# --------------------------------------------------------------------------- generic helpers


def prune(value: Any) -> Any:
    """A deep copy of ``value`` without None anywhere (dict values and list items)."""
    if isinstance(value, dict):
        return {str(k): prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [prune(v) for v in value if v is not None]
    return copy.deepcopy(value)


def _pruned(obj: dict[str, Any]) -> dict[str, Any]:
    """prune() for a dict, typed."""
    out: dict[str, Any] = prune(obj)
    return out


def _dedupe(items: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Keep the first item for each value of ``key`` (apply refuses duplicate list-map keys)."""
    seen: set[Any] = set()
    out = []
    for item in items:
        k = item.get(key)
        if k in seen:
            continue
        seen.add(k)
        out.append(item)
    return out


_INVALID_DNS1123 = re.compile(r"[^-a-z0-9]+")


def volume_name(*parts: str) -> str:
    """A valid DNS-1123 label from ``parts`` joined by '-' (as Function Mesh names volumes)."""
    name = _INVALID_DNS1123.sub("-", "-".join(parts).lower())[:63]
    return name.strip("-")


def pod_template_hash(template: dict[str, Any]) -> str:
    """A short SHA-256 of the pod template (sorted JSON), the hash annotation excluded."""
    clean = copy.deepcopy(template)
    (clean.get("metadata") or {}).get("annotations", {}).pop(POD_TEMPLATE_HASH, None)
    text = json.dumps(clean, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _dump(model: Any) -> Any:
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


# --------------------------------------------------------------------------- volumes


def _secret_volume(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "secret": {"secretName": secret, "items": [{"key": key, "path": key}]}}


def _add_volume(volumes: list[dict[str, Any]], volume: dict[str, Any]) -> str:
    """Add ``volume`` (unless the very same is there) and return the name to mount it by.

    Two different volumes can boil down to one name (Secret ``a`` key ``b.c`` and Secret
    ``a-b`` key ``c`` both make ``a-b-c``): the later one then takes a short hash of itself
    as a suffix, so that each mount sees the Secret it asked for.
    """
    taken = next((v for v in volumes if v.get("name") == volume["name"]), None)
    if taken == volume:
        return str(volume["name"])
    if taken is not None:
        digest = hashlib.sha256(json.dumps(volume, sort_keys=True).encode()).hexdigest()[:8]
        volume = {**volume, "name": f"{volume['name'][:54].rstrip('-')}-{digest}"}
    volumes.append(volume)
    return str(volume["name"])


def _tls_volume(tls: TLSConfig) -> dict[str, Any]:
    assert tls.cert_secret_name and tls.cert_secret_key
    return _secret_volume(
        volume_name(tls.cert_secret_name, tls.cert_secret_key),
        tls.cert_secret_name,
        tls.cert_secret_key,
    )


def _crypto_configs(cr: Workload) -> list[CryptoConfig]:
    """Producer crypto first, then each input topic's (sorted), as Function Mesh orders them."""
    configs: list[CryptoConfig] = []
    if isinstance(cr, Function | Source):
        out = cr.spec.output
        if out is not None and out.producer_conf is not None and out.producer_conf.crypto_config:
            configs.append(out.producer_conf.crypto_config)
    if isinstance(cr, Function | Sink) and cr.spec.input is not None:
        for _topic, conf in sorted((cr.spec.input.source_specs or {}).items()):
            if conf.crypto_config is not None:
                configs.append(conf.crypto_config)
    return configs


def _runtime_logs(cr: Workload) -> list[tuple[str, RuntimeLogConfig, str, str]]:
    """(runtime, log settings, mount dir, file name) for each user-provided log config file."""
    out = []
    java, python = cr.spec.java, cr.spec.python
    if java is not None and java.log is not None and java.log.log_config is not None:
        yaml = java.log.java_log4_j_config_file_type == "yaml"
        out.append(
            ("java", java.log, cmd.JAVA_LOG_DIR, cmd.JAVA_LOG_FILE_YAML if yaml else cmd.JAVA_LOG_FILE_XML)
        )
    if python is not None and python.log is not None and python.log.log_config is not None:
        out.append(("python", python.log, cmd.PYTHON_LOG_DIR, cmd.PYTHON_LOG_FILE))
    return out


def _volumes_and_mounts(cr: Workload) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pod's volumes and the workload container's mounts, in Function Mesh's order."""
    spec = cr.spec
    pod = spec.pod
    volumes: list[dict[str, Any]] = [prune(v) for v in (pod.volumes if pod else None) or []]
    mounts: list[dict[str, Any]] = [prune(m) for m in spec.volume_mounts or []]
    if cmd.uses_filebeat(cr):
        volumes.append({"name": FILEBEAT_VOLUME, "emptyDir": {}})
        mounts.append({"name": FILEBEAT_VOLUME, "mountPath": FILEBEAT_MOUNT})
    tls = spec.pulsar.tls_config
    if cmd.tls_has_secret_volume(tls):
        assert tls is not None
        name = _add_volume(volumes, _tls_volume(tls))
        mounts.append({"name": name, "mountPath": cmd.TLS_MOUNT_PATH})
    auth = spec.pulsar.auth_config
    if auth is not None and auth.oauth2_config is not None:
        o = auth.oauth2_config
        volume = _secret_volume(
            volume_name(o.key_secret_name, o.key_secret_key), o.key_secret_name, o.key_secret_key
        )
        mounts.append({"name": _add_volume(volumes, volume), "mountPath": cmd.OAUTH2_MOUNT_PATH})
    for crypto in _crypto_configs(cr):
        for secret in crypto.crypto_secrets or []:
            volume = _secret_volume(
                volume_name(secret.secret_name, secret.secret_key), secret.secret_name, secret.secret_key
            )
            name = _add_volume(volumes, volume)
            if secret.as_volume:
                mounts.append({"name": name, "mountPath": secret.as_volume})
    for runtime, log, directory, file_name in _runtime_logs(cr):
        assert log.log_config is not None
        volume = {
            "name": volume_name(log.log_config.name, runtime, "log-conf"),
            "configMap": {
                "name": log.log_config.name,
                "items": [{"key": log.log_config.key, "path": file_name}],
            },
        }
        mounts.append({"name": _add_volume(volumes, volume), "mountPath": directory})
    package = spec.pulsar_package_service
    if package is not None:
        if cmd.tls_has_secret_volume(package.tls_config):
            assert package.tls_config is not None
            name = _add_volume(volumes, _tls_volume(package.tls_config))
            mounts.append({"name": name, "mountPath": cmd.PACKAGE_TLS_MOUNT_PATH})
        if package.auth_config is not None and package.auth_config.oauth2_config is not None:
            o = package.auth_config.oauth2_config
            volume = _secret_volume(
                volume_name(o.key_secret_name, o.key_secret_key), o.key_secret_name, o.key_secret_key
            )
            name = _add_volume(volumes, volume)
            mounts.append({"name": name, "mountPath": cmd.PACKAGE_OAUTH2_MOUNT_PATH})
    return _dedupe(volumes, "name"), _dedupe(mounts, "mountPath")


# --------------------------------------------------------------------------- containers


def _env_from(cr: Workload) -> list[dict[str, Any]]:
    """The Pulsar ConfigMap (brokerServiceURL, webServiceURL) and the auth/TLS Secrets as env."""

    def sources(config: str, auth: str | None, tls: str | None, prefix: str) -> list[dict[str, Any]]:
        extra = {"prefix": prefix} if prefix else {}
        out = [{**extra, "configMapRef": {"name": config}}]
        out += [{**extra, "secretRef": {"name": secret}} for secret in (auth, tls) if secret]
        return out

    pulsar = cr.spec.pulsar
    env_from = sources(pulsar.pulsar_config, pulsar.auth_secret, pulsar.tls_secret, "")
    package = cr.spec.pulsar_package_service
    if package is not None:
        env_from += sources(
            package.pulsar_config, package.auth_secret, package.tls_secret, cmd.PACKAGE_ENV_PREFIX
        )
    return env_from


def _user_env(cr: Workload) -> list[dict[str, Any]]:
    pod = cr.spec.pod
    return [_dump(e) for e in (pod.env if pod else None) or []]


def _env(cr: Workload) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    ]
    for name, ref in sorted((cr.spec.secrets_map or {}).items()):
        env.append({"name": name, "valueFrom": {"secretKeyRef": prune({"name": ref.path, "key": ref.key})}})
    env += _user_env(cr)
    level = cmd.go_log_level(cr)
    if level is not None:
        env.append({"name": cmd.GO_LOG_LEVEL_ENV, "value": level})
    return _dedupe(env, "name")


def _liveness_probe(cr: Workload) -> dict[str, Any] | None:
    pod = cr.spec.pod
    liveness = pod.liveness if pod else None
    if liveness is None or not liveness.period_seconds or liveness.period_seconds <= 0:
        return None
    probe: dict[str, Any] = {
        "httpGet": {"path": "/", "port": cmd.METRICS_PORT, "scheme": "HTTP"},
        "initialDelaySeconds": liveness.initial_delay_seconds,
        "timeoutSeconds": liveness.period_seconds,
        "periodSeconds": liveness.period_seconds,
        "successThreshold": liveness.success_threshold,
        "failureThreshold": liveness.failure_threshold,
    }
    # Zero means "API default" for these fields, as Go's omitempty leaves them out.
    return {k: v for k, v in probe.items() if v not in (None, 0)}


def _restricted_security_context() -> dict[str, Any]:
    return {"capabilities": {"drop": ["ALL"]}, "allowPrivilegeEscalation": False}


def _workload_container(cr: Workload, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    spec = cr.spec
    pod = spec.pod
    container: dict[str, Any] = {
        "name": container_name(cr),
        "image": cmd.runner_image(cr),
        "imagePullPolicy": spec.image_pull_policy or "IfNotPresent",
        "command": cmd.instance_command(cr),
        "ports": [
            {"name": "tcp-grpc", "containerPort": cmd.GRPC_PORT, "protocol": "TCP"},
            {"name": "http-metrics", "containerPort": cmd.METRICS_PORT, "protocol": "TCP"},
        ],
        "env": _env(cr),
        "envFrom": _env_from(cr),
    }
    if spec.resources is not None:
        resources = _dump(spec.resources)
        if resources:
            container["resources"] = resources
    if mounts:
        container["volumeMounts"] = mounts
    liveness = _liveness_probe(cr)
    if liveness is not None:
        container["livenessProbe"] = liveness
    if pod is not None and pod.startup_probe is not None:
        container["startupProbe"] = prune(pod.startup_probe)
    container["securityContext"] = _restricted_security_context()
    return container


def _filebeat_config() -> str:
    return (
        "filebeat.inputs:\n"
        "- type: log\n"
        "  paths:\n"
        f"  - {FILEBEAT_MOUNT}/*.log\n"
        "output.pulsar:\n"
        "  url: ${brokerServiceURL}\n"
        "  topic: ${logTopic}\n"
        "  name: ${POD_NAME}\n"
        '  token: ${clientAuthenticationParameters:""}\n'
        "  oauth2:\n"
        "    enabled: ${oauth2Enabled:false}\n"
        '    issuerUrl: ${oauth2IssuerUrl:""}\n'
        '    privateKey: ${oauth2PrivateKey:""}\n'
        '    audience: ${oauth2Audience:""}\n'
        '    scope: ${oauth2Scope:""}\n'
        "logging.level: info\n"
    )


def _filebeat_container(cr: Workload) -> dict[str, Any]:
    """The sidecar that ships the instance's log files to logTopic (logTopicAgent: sidecar)."""
    spec = cr.spec
    env = [
        *_user_env(cr),
        {"name": "logTopic", "value": spec.log_topic},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    auth = spec.pulsar.auth_config
    if auth is not None and auth.generic_auth is not None:
        g = auth.generic_auth
        if g.client_authentication_plugin == cmd.TOKEN_PLUGIN:
            env.append(
                {"name": "clientAuthenticationParameters", "value": g.client_authentication_parameters}
            )
        elif g.client_authentication_plugin == cmd.OAUTH2_PLUGIN:
            try:
                params = json.loads(g.client_authentication_parameters)
            except ValueError:
                params = {}
            params = params if isinstance(params, dict) else {}
            env += [
                {"name": "oauth2Enabled", "value": "true"},
                {"name": "oauth2IssuerUrl", "value": str(params.get("issuerUrl", ""))},
                {"name": "oauth2Audience", "value": str(params.get("audience", ""))},
                {"name": "oauth2PrivateKey", "value": str(params.get("privateKey", ""))},
            ]
            if params.get("scope"):
                env.append({"name": "oauth2Scope", "value": str(params["scope"])})
    elif auth is not None and auth.oauth2_config is not None:
        o = auth.oauth2_config
        env += [
            {"name": "oauth2Enabled", "value": "true"},
            {"name": "oauth2IssuerUrl", "value": o.issuer_url},
            {"name": "oauth2Audience", "value": o.audience},
            {"name": "oauth2PrivateKey", "value": f"{cmd.OAUTH2_MOUNT_PATH}/{o.key_secret_key}"},
        ]
        if o.scope:
            env.append({"name": "oauth2Scope", "value": o.scope})
    mounts = [prune(m) for m in spec.volume_mounts or []]
    mounts.append({"name": FILEBEAT_VOLUME, "mountPath": FILEBEAT_MOUNT})
    # The same volumes as the workload container's, by the names it mounts them by.
    mounted = {m["mountPath"]: m["name"] for m in _volumes_and_mounts(cr)[1]}
    if cmd.tls_has_secret_volume(spec.pulsar.tls_config):
        mounts.append({"name": mounted[cmd.TLS_MOUNT_PATH], "mountPath": cmd.TLS_MOUNT_PATH})
    if auth is not None and auth.oauth2_config is not None:
        mounts.append({"name": mounted[cmd.OAUTH2_MOUNT_PATH], "mountPath": cmd.OAUTH2_MOUNT_PATH})
    pulsar = spec.pulsar
    env_from = [{"configMapRef": {"name": pulsar.pulsar_config}}]
    env_from += [{"secretRef": {"name": s}} for s in (pulsar.auth_secret, pulsar.tls_secret) if s]
    start = (
        f"echo {cmd.sq(_filebeat_config())} > {FILEBEAT_CONFIG} && "
        f"/usr/share/filebeat/filebeat -e -c {FILEBEAT_CONFIG}"
    )
    return {
        "name": "filebeat",
        "image": spec.filebeat_image or cmd.DEFAULT_FILEBEAT_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh", "-c", "--", start],
        "env": _dedupe(env, "name"),
        "envFrom": env_from,
        "volumeMounts": _dedupe(mounts, "mountPath"),
        "securityContext": {**_restricted_security_context(), "runAsUser": 1000},
    }


# --------------------------------------------------------------------------- pod template


def _affinity(cr: Workload) -> dict[str, Any] | None:
    """The user's affinity plus a preference to spread replicas over nodes (unless disabled)."""
    pod = cr.spec.pod
    affinity = prune(pod.affinity) if pod is not None and pod.affinity is not None else None
    if pod is not None and pod.disable_default_affinity:
        return affinity
    affinity = affinity or {}
    anti = affinity.setdefault("podAntiAffinity", {})
    preferred = anti.setdefault("preferredDuringSchedulingIgnoredDuringExecution", [])
    preferred.append(
        {
            "weight": 100,
            "podAffinityTerm": {
                "labelSelector": {"matchLabels": selector_labels(cr)},
                "topologyKey": "kubernetes.io/hostname",
            },
        }
    )
    return affinity


def _pod_security_context(cr: Workload) -> dict[str, Any]:
    pod = cr.spec.pod
    if pod is not None and pod.security_context is not None:
        return _pruned(pod.security_context)
    return {
        "runAsUser": RUNNER_UID,
        "runAsGroup": RUNNER_GID,
        "runAsNonRoot": False,
        "fsGroup": RUNNER_GID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def render_pod_template(cr: Workload) -> dict[str, Any]:
    """The StatefulSet's pod template, without the hash annotation."""
    spec = cr.spec
    pod = spec.pod
    volumes, mounts = _volumes_and_mounts(cr)
    main = _workload_container(cr, mounts)
    sidecars = [prune(c) for c in (pod.sidecars if pod else None) or []]
    containers = [c for c in sidecars if c.get("name") not in (main["name"], "filebeat")]
    containers.append(main)
    if cmd.uses_filebeat(cr):
        containers.append(_filebeat_container(cr))
    labels = dict((pod.labels if pod else None) or {})
    labels |= selector_labels(cr)  # the selector must always match
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(cmd.METRICS_PORT)}
    annotations |= (pod.annotations if pod else None) or {}
    pod_spec: dict[str, Any] = {}
    if pod is not None and pod.init_containers:
        pod_spec["initContainers"] = _dedupe([prune(c) for c in pod.init_containers], "name")
    pod_spec["containers"] = containers
    if pod is not None and pod.termination_grace_period_seconds is not None:
        pod_spec["terminationGracePeriodSeconds"] = pod.termination_grace_period_seconds
    if volumes:
        pod_spec["volumes"] = volumes
    if pod is not None and pod.node_selector:
        pod_spec["nodeSelector"] = dict(pod.node_selector)
    affinity = _affinity(cr)
    if affinity:
        pod_spec["affinity"] = affinity
    if pod is not None and pod.tolerations:
        pod_spec["tolerations"] = [prune(t) for t in pod.tolerations]
    pod_spec["securityContext"] = _pod_security_context(cr)
    if pod is not None and pod.image_pull_secrets:
        pod_spec["imagePullSecrets"] = _dedupe([_dump(s) for s in pod.image_pull_secrets], "name")
    if pod is not None and pod.service_account_name:
        pod_spec["serviceAccountName"] = pod.service_account_name
    return _pruned({"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec})


# --------------------------------------------------------------------------- objects


def _metadata(cr: Workload, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": cmd.object_namespace(cr),
        "labels": selector_labels(cr),
        "ownerReferences": [owner_reference(cr)],
    }


def render_statefulset(cr: Workload) -> dict[str, Any]:
    template = render_pod_template(cr)
    digest = pod_template_hash(template)
    template["metadata"]["annotations"][POD_TEMPLATE_HASH] = digest
    metadata = _metadata(cr, statefulset_name(cr))
    metadata["annotations"] = {POD_TEMPLATE_HASH: digest}
    spec: dict[str, Any] = {
        "replicas": cr.spec.replica_count,
        "selector": {"matchLabels": selector_labels(cr)},
        "template": template,
        "podManagementPolicy": "Parallel",
        # Function Mesh's RollingUpdate, with its partition said: without a rollingUpdate
        # block, a pod deleted in a rollout comes back at the old revision while the status
        # lags, to be rolled again (two restarts per pod; under load, many).
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        "serviceName": service_name(cr),
    }
    if isinstance(cr, Function):
        if cr.spec.volume_claim_templates:
            spec["volumeClaimTemplates"] = [prune(t) for t in cr.spec.volume_claim_templates]
        policy = cr.spec.persistent_volume_claim_retention_policy
        if policy is not None and _dump(policy):
            spec["persistentVolumeClaimRetentionPolicy"] = _dump(policy)
    return _pruned({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": metadata, "spec": spec})


def render_service(cr: Workload) -> dict[str, Any]:
    ports = [
        {"name": "tcp-grpc", "port": cmd.GRPC_PORT, "targetPort": cmd.GRPC_PORT, "protocol": "TCP"},
        {
            "name": "http-metrics",
            "port": cmd.METRICS_PORT,
            "targetPort": cmd.METRICS_PORT,
            "protocol": "TCP",
        },
    ]
    return _pruned(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _metadata(cr, service_name(cr)),
            "spec": {"clusterIP": "None", "selector": selector_labels(cr), "ports": ports},
        }
    )


def render_workload(cr: Workload) -> list[dict[str, Any]]:
    """The desired children of a Function, Source or Sink: its StatefulSet and headless Service."""
    return [render_statefulset(cr), render_service(cr)]


def render_mesh_children(mesh: FunctionMesh) -> list[dict[str, Any]]:
    """One Function, Source or Sink per mesh entry, named ``<mesh>-<entry>``.

    The child's spec is the entry as written. Its ``name`` stays in the spec: it is the
    name in Pulsar, as in Function Mesh, so the function and its default subscription
    (tenant/namespace/name) keep their names when a user moves over.
    """
    mesh_name = str(mesh.metadata.get("name") or "")
    namespace = str(mesh.metadata.get("namespace") or "default")
    children: list[dict[str, Any]] = []
    for kind, entries in (
        ("Function", mesh.spec.functions),
        ("Source", mesh.spec.sources),
        ("Sink", mesh.spec.sinks),
    ):
        for entry in entries or []:
            child = _pruned(
                {
                    "apiVersion": API_VERSION,
                    "kind": kind,
                    "metadata": {
                        "name": f"{mesh_name}-{entry.name}",
                        "namespace": namespace,
                        "labels": {MESH_LABEL: mesh_name},
                        "ownerReferences": [owner_reference(mesh)],
                    },
                }
            )
            # Fields set to null are left out, but not the nulls inside free-form values
            # (funcConfig, sinkConfig...): those are the user's data, as in a standalone CR.
            child["spec"] = entry.model_dump(
                by_alias=True, exclude_unset=True, exclude_none=True, mode="json"
            )
            children.append(child)
    return children


# --------------------------------------------------------------------------- immutable fields


def _same_scalar(desired: Any, existing: Any) -> bool:
    if desired == existing:
        return True
    # 1 and "1", "1Gi" and "1073741824": the API server may print a quantity differently.
    a, b = quantity(desired), quantity(existing)
    return a is not None and a == b


# Fields the API server fills into a volume claim template when the user leaves them out.
_SERVER_DEFAULTED = {"volumeMode": "Filesystem"}


def _covers(desired: Any, existing: Any) -> bool:
    """True when ``existing`` equals ``desired`` up to fields the server added by default."""
    if isinstance(desired, dict):
        if not isinstance(existing, dict):
            return False
        for key, value in existing.items():
            if key not in desired and value not in ({}, [], None, _SERVER_DEFAULTED.get(key)):
                return False
        return all(_covers(v, existing.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(existing, list)
            and len(desired) == len(existing)
            and all(_covers(d, e) for d, e in zip(desired, existing, strict=True))
        )
    return _same_scalar(desired, existing)


def _selector(sts: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    selector = (sts.get("spec") or {}).get("selector") or {}
    return dict(selector.get("matchLabels") or {}), list(selector.get("matchExpressions") or [])


def _claim_templates(sts: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    templates = (sts.get("spec") or {}).get("volumeClaimTemplates") or []
    return [(str((t.get("metadata") or {}).get("name") or ""), t.get("spec") or {}) for t in templates]


def immutable_fields_changed(existing_sts: dict[str, Any], desired_sts: dict[str, Any]) -> list[str]:
    """StatefulSet fields that differ but cannot be updated in place.

    An apply that changes any of them is refused; the reconciler must replace the
    StatefulSet (orphaning its pods) instead. Compared: spec.selector, spec.serviceName,
    spec.podManagementPolicy and spec.volumeClaimTemplates (each template's metadata.name
    and spec, ignoring what the API server filled in). Replicas, the pod template and the
    update strategy are mutable and never reported.
    """
    changed = []
    existing_spec = existing_sts.get("spec") or {}
    desired_spec = desired_sts.get("spec") or {}
    if _selector(existing_sts) != _selector(desired_sts):
        changed.append("spec.selector")
    if (existing_spec.get("serviceName") or "") != (desired_spec.get("serviceName") or ""):
        changed.append("spec.serviceName")
    default_policy = "OrderedReady"
    if (existing_spec.get("podManagementPolicy") or default_policy) != (
        desired_spec.get("podManagementPolicy") or default_policy
    ):
        changed.append("spec.podManagementPolicy")
    old, new = _claim_templates(existing_sts), _claim_templates(desired_sts)
    if len(old) != len(new) or any(
        o_name != n_name or not _covers(n_spec, o_spec)
        for (o_name, o_spec), (n_name, n_spec) in zip(old, new, strict=True)
    ):
        changed.append("spec.volumeClaimTemplates")
    return changed
