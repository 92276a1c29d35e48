"""deploy/'s RBAC objects applied for real on the test stack, for the tests that need the
operator's ServiceAccount (test_deploy.py, test_security.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from fmesh_events import devstack

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NAMESPACE, NAME = "fmesh-system", "fmesh-events"
USER = f"system:serviceaccount:{NAMESPACE}:{NAME}"
RBAC_KINDS = ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding")
# Marks objects a test created, so it never deletes an operator really deployed on the stack
# and does clean up after an earlier run that was killed before its teardown.
MARK = "fmesh-events.test/created-by"


def rendered(stack: devstack.StackInfo) -> list[dict[str, Any]]:
    """deploy/ as kubectl's built-in kustomize builds it."""
    out = stack.kubectl("kustomize", str(DEPLOY)).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _existing(stack: devstack.StackInfo, obj: dict[str, Any]) -> dict[str, Any] | None:
    args = ["get", obj["kind"].lower(), obj["metadata"]["name"], "-o", "yaml"]
    if "namespace" in obj["metadata"]:
        args += ["-n", obj["metadata"]["namespace"]]
    got = stack.kubectl(*args, check=False)
    return yaml.safe_load(got.stdout) if got.returncode == 0 else None


@contextmanager
def applied(stack: devstack.StackInfo, by: str) -> Iterator[list[dict[str, Any]]]:
    """The Namespace, ServiceAccount, ClusterRole and binding of deploy/, applied (marked as
    made by test `by`) and deleted afterwards; yields the whole rendered kustomization. Skips
    when a deployment that is no test's owns them."""
    objects = rendered(stack)
    mine = [o for o in objects if o["kind"] in RBAC_KINDS]
    assert {o["kind"] for o in mine} == set(RBAC_KINDS)
    for obj in mine:
        existing = _existing(stack, obj)
        if existing is not None and MARK not in (existing["metadata"].get("labels") or {}):
            pytest.skip(f"{obj['kind']} {obj['metadata']['name']} already exists on this stack "
                        "and is not a test's: not touching a real deployment")
        if existing is not None and (existing.get("status") or {}).get("phase") == "Terminating":
            stack.kubectl("wait", "--for=delete", f"namespace/{NAMESPACE}", "--timeout=120s")
        obj["metadata"].setdefault("labels", {})[MARK] = by
    manifest = yaml.safe_dump_all(mine)
    stack.kubectl("apply", "-f", "-", input=manifest)
    try:
        yield objects
    finally:
        stack.kubectl("delete", "-f", "-", "--ignore-not-found", "--wait=true", "--timeout=120s",
                      input=manifest, check=False, timeout=180)
