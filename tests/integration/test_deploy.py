"""deploy/ against a real API server: the whole kustomization passes a server-side dry run,
and the ServiceAccount's RBAC, applied for real, allows each permission the ClusterRole lists
(tests/unit/test_rbac.py proves that list is what the code uses) and nothing from a sample
of what the operator must not do."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from fmesh_events import devstack
from tests.integration import deploy_rbac

DEPLOY, NAMESPACE, NAME, USER = (deploy_rbac.DEPLOY, deploy_rbac.NAMESPACE, deploy_rbac.NAME,
                                 deploy_rbac.USER)
# The groups a real ServiceAccount token carries, so bindings to those groups count too.
GROUPS = ["system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}", "system:authenticated"]

Perm = tuple[str, str, str]  # (group, resource[/subresource], verb)

# Things the operator must not be able to do (a sample; none is in the ClusterRole).
FORBIDDEN: list[Perm] = [
    ("", "namespaces", "delete"), ("", "namespaces", "create"),
    ("", "secrets", "list"), ("", "secrets", "watch"),
    ("", "pods", "create"), ("", "pods", "delete"), ("", "pods", "get"), ("", "pods/exec", "create"),
    ("", "configmaps", "patch"), ("", "configmaps", "create"), ("", "configmaps", "list"),
    ("", "services", "delete"), ("", "serviceaccounts/token", "create"),
    ("apps", "statefulsets", "update"), ("apps", "deployments", "create"),
    ("compute.functionmesh.io", "functionmeshes", "delete"),
    ("compute.functionmesh.io", "functionmeshes", "patch"),
    ("compute.functionmesh.io", "backendconfigs", "get"),
    ("compute.functionmesh.io", "functions", "update"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "create"),
    ("rbac.authorization.k8s.io", "clusterroles", "escalate"),
    ("rbac.authorization.k8s.io", "clusterrolebindings", "create"),
    ("", "users", "impersonate"), ("", "nodes", "list"),
    ("coordination.k8s.io", "leases", "create"),
]


def _granted(objects: list[dict[str, Any]]) -> list[Perm]:
    role = next(o for o in objects if o["kind"] == "ClusterRole")
    return sorted({(g, r, v) for rule in role["rules"] for g in rule["apiGroups"]
                   for r in rule["resources"] for v in rule["verbs"]})


@pytest.fixture(scope="module")
def rbac(stack: devstack.StackInfo) -> Iterator[list[dict[str, Any]]]:
    """deploy/'s RBAC objects applied for real; yields the whole rendered kustomization."""
    with deploy_rbac.applied(stack, "test_deploy") as objects:
        yield objects


def _dry_run_ok(stack: devstack.StackInfo, *flags: str) -> str:
    done = stack.kubectl("apply", *flags, "--dry-run=server", "-k", str(DEPLOY), check=False)
    assert done.returncode == 0, done.stderr
    # The namespace enforces (and warns about) the restricted Pod Security Standard.
    assert "PodSecurity" not in done.stderr, done.stderr
    return done.stdout


@pytest.mark.parametrize("mode", ["client-side", "server-side"])
def test_kustomization_passes_a_server_dry_run(stack: devstack.StackInfo,
                                               rbac: list[dict[str, Any]], mode: str) -> None:
    """Every object is accepted by the API server's validation and admission (the namespace
    must exist for that, hence the rbac fixture). Both apply modes: docs/deploy.md says
    --server-side (the CRDs are large), plain `kubectl apply -k` must work too."""
    out = _dry_run_ok(stack, *(["--server-side"] if mode == "server-side" else []))
    for obj in rbac:
        assert f"/{obj['metadata']['name']} " in out, f"{obj['kind']} missing from:\n{out}"
    assert "deployment.apps/fmesh-events" in out and "configmap/fmesh-events" in out


def _can_i(stack: devstack.StackInfo, perm: Perm) -> str:
    """`kubectl auth can-i` as the operator's ServiceAccount, in every namespace: yes or no."""
    group, resource, verb = perm
    name, _, sub = resource.partition("/")
    args = ["auth", "can-i", verb, f"{name}.{group}" if group else name, "--all-namespaces",
            f"--as={USER}", *(f"--as-group={g}" for g in GROUPS)]
    if sub:
        args.append(f"--subresource={sub}")
    done = stack.kubectl(*args, check=False)  # exit code 1 means "no"
    if "the server doesn't have a resource type" in done.stderr:
        # A group the stack does not serve (metrics.k8s.io: no metrics-server): can-i then
        # asks about resource "pods.metrics.k8s.io" in the core group, a question RBAC never
        # allows. Ask the authorizer directly with the group spelt out.
        return _access_review(stack, group, name, sub, verb)
    answer = done.stdout.strip()
    return answer.split()[0] if answer else "?"


def _access_review(stack: devstack.StackInfo, group: str, resource: str, sub: str,
                   verb: str) -> str:
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": USER, "groups": GROUPS, "resourceAttributes": {
                  "group": group, "resource": resource, "subresource": sub, "verb": verb}}}
    done = stack.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(review))
    return "yes" if json.loads(done.stdout)["status"].get("allowed") else "no"


def test_service_account_can_do_what_the_operator_needs(stack: devstack.StackInfo,
                                                        rbac: list[dict[str, Any]]) -> None:
    needed = _granted(rbac)
    assert len(needed) > 20, needed
    # The API server's RBAC caches follow the new binding within moments; wait for the first.
    deadline = time.monotonic() + 15
    while _can_i(stack, needed[0]) != "yes" and time.monotonic() < deadline:
        time.sleep(0.5)
    with ThreadPoolExecutor(8) as pool:
        answers = dict(zip(needed, pool.map(lambda p: _can_i(stack, p), needed), strict=True))
    refused = [p for p, answer in answers.items() if answer != "yes"]
    assert not refused, f"{NAME} may not (group, resource, verb): {refused}"


def test_service_account_cannot_do_more(stack: devstack.StackInfo,
                                        rbac: list[dict[str, Any]]) -> None:
    assert not set(FORBIDDEN) & set(_granted(rbac)), "the sample must be outside the role"
    assert _can_i(stack, _granted(rbac)[0]) == "yes", "the identity must be in effect"
    with ThreadPoolExecutor(8) as pool:
        answers = dict(zip(FORBIDDEN, pool.map(lambda p: _can_i(stack, p), FORBIDDEN), strict=True))
    allowed = [p for p, answer in answers.items() if answer != "no"]
    assert not allowed, f"{NAME} must not be allowed (group, resource, verb): {allowed}"
