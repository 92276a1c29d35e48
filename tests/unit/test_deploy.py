"""deploy/ and the Dockerfile, read as files: the CRD copies match crds/, and the pieces
that must agree with each other and with the code do (names, port, settings, pins, user).
tests/integration/test_deploy.py sends the same objects to a real API server."""

from __future__ import annotations

import filecmp
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from fmesh_events.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
NAME = "fmesh-events"
NAMESPACE = "fmesh-system"


def _load(directory: Path) -> list[dict[str, Any]]:
    """Every object a kustomization lists, following directories (no transformers)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    objects: list[dict[str, Any]] = []
    for entry in kustomization["resources"]:
        path = directory / entry
        assert path.exists(), f"{directory.name}/kustomization.yaml lists missing {entry}"
        if path.is_dir():
            objects += _load(path)
        else:
            objects += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return objects


OBJECTS = _load(DEPLOY)


def _one(kind: str) -> dict[str, Any]:
    found = [o for o in OBJECTS if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _container() -> dict[str, Any]:
    containers = _one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


# ------------------------------------------------------------------ CRDs
def test_deploy_crds_are_an_exact_copy_of_crds() -> None:
    generated = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    copied = sorted(p.name for p in (DEPLOY / "crds").glob("*.yaml") if p.name != "kustomization.yaml")
    assert copied == generated, "deploy/crds/ is out of date: run deploy/sync-crds.sh"
    _match, differ, errors = filecmp.cmpfiles(REPO / "crds", DEPLOY / "crds", generated, shallow=False)
    assert not differ and not errors, f"deploy/crds/ differs from crds/ ({differ + errors}): " \
                                      "run deploy/sync-crds.sh"
    listed = yaml.safe_load((DEPLOY / "crds" / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == generated, "run deploy/sync-crds.sh"


def test_every_crd_is_deployed() -> None:
    crds = [o for o in OBJECTS if o["kind"] == "CustomResourceDefinition"]
    assert {c["spec"]["names"]["kind"] for c in crds} == \
        {"Function", "Source", "Sink", "FunctionMesh", "BackendConfig"}


# ------------------------------------------------------------------ names agree
def test_names_and_namespace_agree() -> None:
    assert _one("Namespace")["metadata"]["name"] == NAMESPACE
    for kind in ("ServiceAccount", "ConfigMap", "Deployment"):
        assert _one(kind)["metadata"] == {**_one(kind)["metadata"], "name": NAME, "namespace": NAMESPACE}
    roles = sorted(o["metadata"]["name"] for o in OBJECTS if o["kind"] == "ClusterRole")
    bindings = [o for o in OBJECTS if o["kind"] == "ClusterRoleBinding"]
    assert roles == [NAME, f"{NAME}-secrets"]  # Secrets apart: bound per namespace if wished
    assert sorted(b["roleRef"]["name"] for b in bindings) == roles
    for binding in bindings:
        assert binding["metadata"]["name"] == binding["roleRef"]["name"]
        assert binding["roleRef"]["kind"] == "ClusterRole"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": NAME,
                                        "namespace": NAMESPACE}]
    pod = _one("Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == NAME
    assert _container()["envFrom"] == [{"configMapRef": {"name": NAME}}]


def test_namespaced_secrets_component_swaps_the_binding_for_role_bindings() -> None:
    """The deploy option for FMESH_WATCH_NAMESPACES: the component drops the cluster-wide
    binding of fmesh-events-secrets, and the example RoleBinding binds the same ClusterRole
    in one namespace to the same ServiceAccount."""
    component = DEPLOY / "components" / "namespaced-secrets"
    kustomization = yaml.safe_load((component / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kustomization["kind"] == "Component"
    deleted = yaml.safe_load(kustomization["patches"][0]["patch"])
    binding = next(o for o in OBJECTS if o["kind"] == "ClusterRoleBinding"
                   and o["metadata"]["name"] == f"{NAME}-secrets")
    assert deleted == {"$patch": "delete", "apiVersion": binding["apiVersion"],
                       "kind": "ClusterRoleBinding", "metadata": {"name": f"{NAME}-secrets"}}
    example = yaml.safe_load((component / "rolebinding.example.yaml").read_text(encoding="utf-8"))
    assert example["kind"] == "RoleBinding" and example["metadata"]["namespace"]
    assert example["roleRef"] == binding["roleRef"] and example["subjects"] == binding["subjects"]
    role = next(o for o in OBJECTS if o["kind"] == "ClusterRole"
                and o["metadata"]["name"] == f"{NAME}-secrets")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]


def test_image_is_pinned_to_the_project_version_and_overridable() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    repository, _, tag = _container()["image"].rpartition(":")
    assert tag == version
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert kustomization["images"] == [{"name": repository, "newTag": version}]


# ------------------------------------------------------------------ settings
def test_configmap_holds_real_settings() -> None:
    """A misspelt FMESH_* key would be ignored silently by pydantic-settings."""
    data = _one("ConfigMap")["data"]
    assert {"FMESH_PULSAR_SERVICE_URL", "FMESH_PULSAR_ADMIN_URL", "FMESH_SYSTEM_NAMESPACE",
            "FMESH_LOG_LEVEL"} <= set(data)
    env = {e["name"] for e in _container()["env"]}
    for key in [*data, *env]:
        assert key.startswith("FMESH_"), key
        assert key.removeprefix("FMESH_").lower() in Settings.model_fields, f"{key} is no setting"


def test_pulsar_token_comes_from_an_optional_secret() -> None:
    token = next(e for e in _container()["env"] if e["name"] == "FMESH_PULSAR_AUTH_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "fmesh-events-pulsar", "key": "token",
                                                  "optional": True}


def test_http_port_probes_and_image_agree() -> None:
    container = _container()
    port = next(e for e in container["env"] if e["name"] == "FMESH_HTTP_PORT")["value"]
    assert container["ports"] == [{"name": "http", "containerPort": int(port), "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    observe = (REPO / "fmesh_events" / "observe.py").read_text()
    assert '"/healthz"' in observe and '"/readyz"' in observe
    assert re.search(rf"^EXPOSE {port}$", (REPO / "Dockerfile").read_text(), re.MULTILINE)


# ------------------------------------------------------------------ hardening
def test_pod_runs_restricted_as_the_image_user() -> None:
    deployment = _one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = _container()["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"USER {pod['securityContext']['runAsUser']}:" in dockerfile
    # The kubernetes client's discovery cache needs a writable tempfile.gettempdir().
    mounts = {m["mountPath"]: m["name"] for m in _container()["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert _container()["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"},
                                         "limits": {"cpu": "1", "memory": "512Mi"}}


# ------------------------------------------------------------------ image
def test_lock_pins_every_runtime_dependency() -> None:
    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    pins = {}
    for line in (DEPLOY / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"not pinned: {line}"
            pins[norm(name)] = version
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in declared:
        name = norm(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0])
        assert name in pins, f"{name} (pyproject.toml) is not in deploy/requirements.lock"
    assert "fmesh-events" not in pins


def test_dockerfile_installs_the_lock_then_the_project_without_deps() -> None:
    text = (REPO / "Dockerfile").read_text()
    lock = text.index("pip install --no-cache-dir -r deploy/requirements.lock")
    project = text.index("pip install --no-cache-dir --no-deps .")
    assert lock < project
    assert 'ENTRYPOINT ["fmesh-events"]' in text and 'CMD ["run"]' in text
    assert text.startswith("#") and "FROM python:3.11-slim-bookworm" in text
