"""The ClusterRole in deploy/rbac.yaml grants exactly what the code uses.

A scan of fmesh_events/ (the AST, not grep) finds every Kubernetes API call site: calls of
the kubernetes client's typed API methods and of `call_api`, the dynamic client in
reconcile/kube.py, every KubeWriter method call, wrappers of `call_api`, and the
`blockOwnerDeletion: True` owner references (which need a permission of their own). CALLS
below says what each site needs, as (group, resource, verb). The test fails when

- the scan finds a call site CALLS does not know (a new API call: add what it needs),
- a CALLS entry matches no call site (the code changed: update or drop the entry),
- the ClusterRole lacks a needed permission, or grants one no call site needs.

Only the code `fmesh-events run` loads is scanned: what cli.py imports on the way to its
`run` command and, transitively, everything those modules import from fmesh_events.
Commands a person runs with their own credentials (dev, the local stack's tooling;
history, which reads Pulsar; migrate, which reads a cluster to report on it) stay out.
"""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml
from kubernetes import dynamic

from fmesh_events import models
from fmesh_events.reconcile import engine, kube, render
from fmesh_events.scale import sampler
from fmesh_events.watch import watcher
from tests.examples import example

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "fmesh_events"
DEPLOY = REPO / "deploy"

Perm = tuple[str, str, str]  # (API group, resource[/subresource], verb)

# ------------------------------------------------------------------ what the code works on
# Taken from the code where the code says it, so a new kind shows up here by itself.
CR_KINDS = tuple(r.kind for r in watcher.CR_RESOURCES)  # watched, reconciled; not BackendConfig
WORKLOADS = engine.WORKLOAD_KINDS  # Function, Source, Sink: a FunctionMesh's children
AUTOSCALED = sampler.KINDS  # what the sampler lists and the scaler scales
# What reconcile applies for a Function, Source or Sink (StatefulSet, Service), and for a mesh.
_FUNCTION = models.parse_resource(example("function.yaml", "Function"))
assert isinstance(_FUNCTION, models.Function)
WORKLOAD_CHILDREN = tuple(sorted({child["kind"] for child in render.render_workload(_FUNCTION)}))
APPLIED = WORKLOAD_CHILDREN + WORKLOADS

PLURALS = {**models.PLURALS, "StatefulSet": "statefulsets", "Service": "services",
           "ConfigMap": "configmaps", "Event": "events", "Pod": "pods", "Secret": "secrets"}


def need(kinds: tuple[str, ...], *verbs: str, sub: str = "") -> set[Perm]:
    """The permissions for `verbs` on `kinds` (their group from KubeWriter's API_VERSIONS)."""
    out = set()
    for kind in kinds:
        group = kube.API_VERSIONS.get(kind, "v1").rpartition("/")[0]
        resource = PLURALS[kind] + (f"/{sub}" if sub else "")
        out |= {(group, resource, verb) for verb in verbs}
    return out


NONE: set[Perm] = set()  # a site whose permissions are on its callers' lines, or no RBAC at all

# (file under fmesh_events/, enclosing function, call as `method(first argument)`) -> needs.
CALLS: dict[tuple[str, str, str], set[Perm]] = {
    # /version (the /readyz check): allowed to everyone (system:public-info-viewer).
    ("observe.py", "check", "get_code()"): NONE,
    # --- watch: one list+watch helper per resource; watch_objects passes watch=True.
    ("watch/kube_stream.py", "_request", "list_namespaced_pod(namespace)"):
        need(("Pod",), "list", "watch"),
    ("watch/kube_stream.py", "_request", "list_pod_for_all_namespaces()"):
        need(("Pod",), "list", "watch"),
    ("watch/kube_stream.py", "_request", "list_namespaced_stateful_set(namespace)"):
        need(("StatefulSet",), "list", "watch"),
    ("watch/kube_stream.py", "_request", "list_stateful_set_for_all_namespaces()"):
        need(("StatefulSet",), "list", "watch"),
    ("watch/kube_stream.py", "_request", "list_namespaced_custom_object(group)"):
        need(CR_KINDS, "list", "watch"),
    ("watch/kube_stream.py", "_request", "list_cluster_custom_object(group)"):
        need(CR_KINDS, "list", "watch"),
    # --- reconcile/kube.py: KubeWriter is kind-generic; its callers below say which kinds.
    # resources.get() is API discovery (/api, /apis/...): system:discovery allows it to all.
    ("reconcile/kube.py", "_resource", "get()"): NONE,
    ("reconcile/kube.py", "get", "get()"): NONE,
    ("reconcile/kube.py", "list", "get()"): NONE,
    ("reconcile/kube.py", "apply", "request('patch')"): NONE,  # server-side apply
    ("reconcile/kube.py", "delete", "delete()"): NONE,
    ("reconcile/kube.py", "wait_gone", "get(kind)"): NONE,
    ("reconcile/kube.py", "patch_metadata", "patch()"): NONE,
    ("reconcile/kube.py", "patch_status", "patch()"): NONE,
    ("reconcile/kube.py", "post_event", "create()"): need(("Event",), "create"),
    # --- reconcile/engine.py
    ("reconcile/engine.py", "reconcile", "get(kind)"): need(CR_KINDS, "get"),
    # Server-side apply is a PATCH; on an object that does not exist yet the API server also
    # checks `create` (it answers "cannot create resource" without it).
    ("reconcile/engine.py", "_apply_child", "apply(desired)"): need(APPLIED, "create", "patch"),
    ("reconcile/engine.py", "_read_then_apply", "get(desired['kind'])"): need(APPLIED, "get"),
    ("reconcile/engine.py", "_read_then_apply", "apply(desired)"): need(APPLIED, "create", "patch"),
    ("reconcile/engine.py", "_apply_mesh_child", "apply(wanted)"):
        need(("Function", "Source", "Sink"), "patch"),
    ("reconcile/engine.py", "_apply_mesh_child", "get(desired['kind'])"):
        need(("Function", "Source", "Sink"), "get"),
    ("reconcile/engine.py", "_apply_mesh_child", "apply(desired)"):
        need(("Function", "Source", "Sink"), "create", "patch"),
    ("reconcile/engine.py", "_read_then_apply", "delete('StatefulSet')"):
        need(("StatefulSet",), "delete"),
    ("reconcile/engine.py", "_read_then_apply", "wait_gone('StatefulSet')"):
        need(("StatefulSet",), "get"),
    ("reconcile/engine.py", "_instances_stopping", "get('StatefulSet')"): need(("StatefulSet",), "get"),
    ("reconcile/engine.py", "_instances_stopping", "delete('StatefulSet')"):
        need(("StatefulSet",), "delete"),
    ("reconcile/engine.py", "_config_map_exists", "get('ConfigMap')"): need(("ConfigMap",), "get"),
    ("reconcile/engine.py", "_reconcile_workload", "get('StatefulSet')"):
        need(("StatefulSet",), "get"),
    ("reconcile/engine.py", "_reconcile_mesh", "list(kind)"): need(WORKLOADS, "list"),
    ("reconcile/engine.py", "_reconcile_mesh", "delete(kind)"): need(WORKLOADS, "delete"),
    # The finalizer goes on workloads only (_ensure_finalizer runs from _reconcile_workload).
    ("reconcile/engine.py", "_ensure_finalizer", "patch_metadata(cr['kind'])"):
        need(WORKLOADS, "patch"),
    # The clean-up's cluster and identity: the ConfigMap and the Secrets spec.pulsar names.
    ("reconcile/engine.py", "_cleanup_identity", "get('ConfigMap')"): need(("ConfigMap",), "get"),
    ("reconcile/engine.py", "_cleanup_identity", "get('Secret')"): need(("Secret",), "get"),
    ("reconcile/engine.py", "_finalize", "post_event(cr)"): need(("Event",), "create"),
    ("reconcile/engine.py", "_finalize", "patch_metadata(cr['kind'])"): need(WORKLOADS, "patch"),
    # --- reconcile/loop.py
    ("reconcile/loop.py", "_write_status", "patch_status(kind)"): need(CR_KINDS, "patch", sub="status"),
    ("reconcile/loop.py", "_write_status", "post_event(cr)"): need(("Event",), "create"),
    ("reconcile/loop.py", "_report_failure", "get(kind)"): need(CR_KINDS, "get"),
    ("reconcile/loop.py", "_report_failure", "patch_status(kind)"):
        need(CR_KINDS, "patch", sub="status"),
    ("reconcile/loop.py", "_report_failure", "post_event(cr)"): need(("Event",), "create"),
    # --- reconcile/render.py: children name their owner with blockOwnerDeletion: True; with the
    # OwnerReferencesPermissionEnforcement admission plugin (OpenShift) that needs `update` on
    # the owner's finalizers. Owners: a workload (StatefulSet, Service), a mesh (its children).
    ("reconcile/render.py", "owner_reference", "blockOwnerDeletion=True"):
        need(CR_KINDS, "update", sub="finalizers"),
    # --- scale
    ("scale/sampler.py", "list_autoscaled", "list_namespaced_custom_object(models.GROUP)"):
        need(AUTOSCALED, "list"),
    ("scale/sampler.py", "list_autoscaled", "list_cluster_custom_object(models.GROUP)"):
        need(AUTOSCALED, "list"),
    # The backlog's cluster and identity: the ConfigMap and the Secrets spec.pulsar names.
    ("scale/sampler.py", "_read", "read_namespaced_config_map(name)"): need(("ConfigMap",), "get"),
    ("scale/sampler.py", "_read", "read_namespaced_secret(name)"): need(("Secret",), "get"),
    ("scale/scaler.py", "_read", "get_namespaced_custom_object(models.GROUP)"):
        need(AUTOSCALED, "get"),
    ("scale/scaler.py", "handle", "patch_namespaced_custom_object_scale(models.GROUP)"):
        need(AUTOSCALED, "patch", sub="scale"),
    ("scale/scaler.py", "_write_status", "patch_namespaced_custom_object_status(models.GROUP)"):
        need(AUTOSCALED, "patch", sub="status"),
    ("scale/usage.py", "served", "get_api_resources(self.GROUP)"): NONE,  # discovery
    ("scale/usage.py", "usage", "list_namespaced_pod(namespace)"): need(("Pod",), "list"),
    ("scale/usage.py", "usage", "list_namespaced_custom_object(self.GROUP)"):
        {("metrics.k8s.io", "pods", "list")},
}

# Modules that import kubernetes yet make no call the scan can see, and why. Any other such
# module fails the test: its calls may take a shape the scan misses.
NO_CALLS = {
    "kube_client.py": "builds the ApiClient from kubeconfig or the in-cluster config",
    "watch/watcher.py": "lists and watches through watch/kube_stream.py",
}

# ------------------------------------------------------------------ the scan
TYPED_METHODS = {
    method
    for name, api in inspect.getmembers(kubernetes.client, inspect.isclass) if name.endswith("Api")
    for method in dir(api) if re.match(r"(list|read|create|patch|replace|delete|get|connect)_", method)
}
DYNAMIC_METHODS = {"get", "create", "patch", "replace", "delete", "server_side_apply", "watch"}
assert set(dir(dynamic.DynamicClient)) >= DYNAMIC_METHODS
WRITER_METHODS = {name for name, _ in inspect.getmembers(kube.KubeWriter, inspect.isfunction)
                  if not name.startswith("_")}


@dataclass(frozen=True)
class Site:
    file: str
    function: str
    call: str
    line: int

    @property
    def key(self) -> tuple[str, str, str]:
        return self.file, self.function, self.call


def _imports(tree: ast.Module, module: str) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.startswith(module) for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module and (
                node.module.startswith(module)
                or any(f"{node.module}.{a.name}".startswith(module) for a in node.names)):
            return True
    return False


def _sites_in(rel: str, tree: ast.Module) -> list[Site]:
    uses_dynamic = _imports(tree, "kubernetes.dynamic")
    # Functions that wrap call_api: their callers hold the paths, so their calls are sites.
    wrappers = {f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
                and any(isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
                        and c.func.attr == "call_api" for c in ast.walk(f))}
    found: list[Site] = []

    def is_api_call(call: ast.Call, cls: str | None) -> bool:
        if not isinstance(call.func, ast.Attribute):
            return isinstance(call.func, ast.Name) and call.func.id in wrappers
        attr, receiver = call.func.attr, ast.unparse(call.func.value)
        return (attr in TYPED_METHODS or attr == "call_api" or attr in wrappers
                or (uses_dynamic and attr in DYNAMIC_METHODS and "resource" in receiver)
                or (uses_dynamic and attr == "request" and receiver.endswith("dynamic"))
                or (attr in WRITER_METHODS and (receiver.endswith("writer")
                                                or (cls == "KubeWriter" and receiver == "self"))))

    def visit(node: ast.AST, function: str, cls: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, child.name, cls)
                continue
            if isinstance(child, ast.ClassDef):
                visit(child, function, child.name)
                continue
            if isinstance(child, ast.Call) and is_api_call(child, cls):
                name = child.func.attr if isinstance(child.func, ast.Attribute) else ast.unparse(child.func)
                first = ast.unparse(child.args[0]) if child.args else ""
                found.append(Site(rel, function, f"{name}({first})", child.lineno))
            if isinstance(child, ast.Dict) and any(
                    isinstance(k, ast.Constant) and k.value == "blockOwnerDeletion"
                    and isinstance(v, ast.Constant) and v.value is True
                    for k, v in zip(child.keys, child.values, strict=True)):
                found.append(Site(rel, function, "blockOwnerDeletion=True", child.lineno))
            visit(child, function, cls)

    visit(tree, "<module>", None)
    return found


def _module_file(dotted: str) -> Path | None:
    """fmesh_events.a.b -> fmesh_events/a/b.py or fmesh_events/a/b/__init__.py."""
    base = REPO.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(node: ast.AST) -> set[str]:
    """The fmesh_events modules an AST imports, with their parent packages."""
    names: set[str] = set()
    for imp in ast.walk(node):
        if isinstance(imp, ast.Import):
            names |= {a.name for a in imp.names}
        elif isinstance(imp, ast.ImportFrom) and imp.module and not imp.level:
            names.add(imp.module)
            # `from package import module` names a module too.
            names |= {f"{imp.module}.{a.name}" for a in imp.names}
    out = set()
    for name in names:
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            dotted = ".".join(parts[:end])
            if dotted.startswith("fmesh_events") and _module_file(dotted):
                out.add(dotted)
    return out


# Loaded by cli.py for their click groups, run only by a person with their own credentials.
PERSONAL_TOOLS = ("fmesh_events.migrate",)

# What `fmesh-events run` executes in cli.py: the module's top level and these functions.
RUN_PATH = ("main", "_settings", "run")


def operator_modules() -> list[Path]:
    """Files `fmesh-events run` loads: what cli.py imports on that path, then what those import."""
    cli = ast.parse((PACKAGE / "cli.py").read_text(encoding="utf-8"))
    executed = [node for node in cli.body if not isinstance(node, ast.FunctionDef | ast.ClassDef)
                or (isinstance(node, ast.FunctionDef) and node.name in RUN_PATH)]
    assert {n.name for n in executed if isinstance(n, ast.FunctionDef)} == set(RUN_PATH)
    pending, seen = sorted(set().union(*map(_imported, executed))), set()
    while pending:
        dotted = pending.pop()
        if dotted in seen or dotted.startswith(PERSONAL_TOOLS):
            continue
        seen.add(dotted)
        path = _module_file(dotted)
        assert path is not None
        pending += sorted(_imported(ast.parse(path.read_text(encoding="utf-8"))) - seen)
    return sorted({p for d in seen if (p := _module_file(d)) is not None})


def scan() -> tuple[list[Site], set[str]]:
    """Every call site in the operator's modules, and those of them importing kubernetes."""
    sites: list[Site] = []
    importers: set[str] = set()
    for path in operator_modules():
        rel = path.relative_to(PACKAGE).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        if _imports(tree, "kubernetes"):
            importers.add(rel)
        sites += _sites_in(rel, tree)
    return sites, importers


SITES, KUBE_IMPORTERS = scan()
NEEDED: set[Perm] = set().union(*CALLS.values())


# ------------------------------------------------------------------ the ClusterRole
def _cluster_role() -> dict[str, Any]:
    """deploy/'s ClusterRoles as one: fmesh-events, and fmesh-events-secrets (apart so that it
    can be bound per namespace)."""
    roles = [doc for path in sorted(DEPLOY.glob("*.yaml"))
             for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
             if doc and doc.get("kind") == "ClusterRole"]
    assert [r["metadata"]["name"] for r in roles] == ["fmesh-events", "fmesh-events-secrets"]
    return {"rules": [rule for role in roles for rule in role["rules"]]}


def granted(role: dict[str, Any]) -> set[Perm]:
    out: set[Perm] = set()
    for rule in role["rules"]:
        out |= {(group, resource, verb) for group in rule["apiGroups"]
                for resource in rule["resources"] for verb in rule["verbs"]}
    return out


ROLE = _cluster_role()


# ------------------------------------------------------------------ tests
def test_scan_finds_the_known_kinds_of_call() -> None:
    """Guards the scanner itself: each way of calling the API is still recognised."""
    files = {p.relative_to(PACKAGE).as_posix() for p in operator_modules()}
    assert {"watch/kube_stream.py", "reconcile/kube.py", "scale/usage.py", "observe.py",
            "kube_client.py"} <= files
    assert not {f for f in files if f.startswith(("devstack/", "history/", "migrate/"))}, \
        "not run by the operator"
    calls = {s.call.split("(")[0] for s in SITES}
    assert {"list_pod_for_all_namespaces", "request", "apply", "list_namespaced_custom_object",
            "patch_namespaced_custom_object_scale", "blockOwnerDeletion=True"} <= calls
    assert set(APPLIED) >= {"StatefulSet", "Service", "Function", "Source", "Sink"}


def test_every_api_call_site_is_accounted_for() -> None:
    unknown = sorted({f"fmesh_events/{s.file}:{s.line} in {s.function}(): {s.call}"
                      for s in SITES if s.key not in CALLS})
    assert not unknown, ("Kubernetes API calls missing from CALLS in tests/unit/test_rbac.py "
                         "(add each with the permissions it needs, and the rule in "
                         "deploy/rbac.yaml):\n  " + "\n  ".join(unknown))


def test_every_table_entry_still_matches_the_code() -> None:
    seen = {s.key for s in SITES}
    stale = sorted(str(k) for k in CALLS if k not in seen)
    assert not stale, "CALLS entries that match no call site any more:\n  " + "\n  ".join(stale)


def test_modules_using_kubernetes_are_scanned() -> None:
    with_sites = {s.file for s in SITES}
    unexplained = sorted(KUBE_IMPORTERS - with_sites - set(NO_CALLS))
    assert not unexplained, f"modules import kubernetes but the scan sees no call: {unexplained}"
    stale = sorted(set(NO_CALLS) - (KUBE_IMPORTERS - with_sites))
    assert not stale, f"NO_CALLS entries to drop: {stale}"


def test_cluster_role_grants_every_needed_permission() -> None:
    missing = sorted(NEEDED - granted(ROLE))
    assert not missing, "deploy/rbac.yaml lacks (group, resource, verb):\n  " + "\n  ".join(
        map(str, missing))


def test_cluster_role_grants_nothing_unused() -> None:
    unused = sorted(granted(ROLE) - NEEDED)
    assert not unused, "deploy/rbac.yaml grants what no call site needs:\n  " + "\n  ".join(
        map(str, unused))


@pytest.mark.parametrize("index", range(len(ROLE["rules"])))
def test_rule_is_plain_and_explained(index: int) -> None:
    rule = ROLE["rules"][index]
    assert set(rule) == {"apiGroups", "resources", "verbs"}, "no resourceNames / nonResourceURLs"
    assert "*" not in [*rule["apiGroups"], *rule["resources"], *rule["verbs"]]
    # Each rule starts with a comment saying which code uses it.
    lines = (DEPLOY / "rbac.yaml").read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip().startswith("- apiGroups:")]
    assert len(starts) == len(ROLE["rules"])
    assert lines[starts[index] - 1].strip().startswith("#"), f"rule {index} has no comment above it"
