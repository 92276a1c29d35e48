"""Function Mesh YAML applies unchanged to our CRDs, and bad specs are refused by the API
server with a message that names the field (real kube-apiserver, real kubectl)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from fmesh_events import devstack
from fmesh_events.models import k8s_types
from fmesh_events.models.crd import render_crds
from tests.examples import documents

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
BAD = sorted((REPO / "examples" / "bad").glob("*.yaml"))
GROUP = "compute.functionmesh.io"



@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_applies_and_reads_back_unchanged(stack: devstack.StackInfo, namespace: str,
                                                  example: Path) -> None:
    stack.kubectl("apply", "-n", namespace, "-f", str(example))
    custom = [d for d in documents(example) if d["apiVersion"].startswith(GROUP)]
    assert custom, f"{example.name} holds no {GROUP} object"
    for doc in custom:
        kind, name = doc["kind"], doc["metadata"]["name"]
        stored = json.loads(stack.kubectl("get", f"{kind.lower()}.{GROUP}", name, "-n", namespace,
                                          "-o", "json").stdout)
        # Nothing pruned, and only what Kubernetes itself defaults (a container port's
        # protocol) filled in: the structural schema knows every field.
        assert stored["spec"] == _as_stored(doc)["spec"], f"{kind}/{name} changed on the way in"


def _as_stored(doc: dict[str, Any]) -> dict[str, Any]:
    schema = next(c for c in render_crds() if c["spec"]["names"]["kind"] == doc["kind"])
    stored: dict[str, Any] = k8s_types.with_defaults(
        doc, schema["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    return stored


def _expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} lacks its '# expect:' line"
    return first.removeprefix("# expect: ").strip()


@pytest.mark.parametrize("bad", BAD, ids=lambda p: p.name)
def test_bad_spec_is_refused_naming_the_field(stack: devstack.StackInfo, namespace: str,
                                              bad: Path) -> None:
    refused = stack.kubectl("apply", "-n", namespace, "-f", str(bad), check=False)
    assert refused.returncode != 0, f"{bad.name} was accepted"
    assert _expected(bad) in refused.stderr, refused.stderr
    for doc in documents(bad):
        if doc["apiVersion"].startswith(GROUP):
            got = stack.kubectl("get", f"{doc['kind'].lower()}.{GROUP}", doc["metadata"]["name"],
                                "-n", namespace, check=False)
            assert got.returncode != 0, "a refused object must not be stored"


def test_overview_mesh_with_single_objects_is_refused(stack: devstack.StackInfo,
                                                      namespace: str) -> None:
    """The overview's FunctionMesh, written with sinks/functions as objects, not lists."""
    docs = documents(REPO / "examples" / "functionmesh.yaml")
    mesh = next(d for d in docs if d["kind"] == "FunctionMesh")
    mesh["spec"]["sinks"] = mesh["spec"]["sinks"][0]
    mesh["spec"]["functions"] = mesh["spec"]["functions"][0]
    for validate in ("--validate=strict", "--validate=false"):
        refused = stack.kubectl("apply", validate, "-n", namespace, "-f", "-",
                                input=yaml.safe_dump(mesh), check=False)
        assert refused.returncode != 0
        assert "spec.sinks" in refused.stderr, refused.stderr


def test_scale_subresource_and_ready_condition(stack: devstack.StackInfo, namespace: str) -> None:
    stack.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / "function.yaml"))
    function = next(d for d in documents(REPO / "examples" / "function.yaml")
                    if d["kind"] == "Function")
    name = function["metadata"]["name"]
    stack.kubectl("scale", "-n", namespace, f"function.{GROUP}/{name}", "--replicas=3")
    replicas = stack.kubectl("get", "function", name, "-n", namespace,
                             "-o", "jsonpath={.spec.replicas}").stdout
    assert replicas == "3"
    generation = int(stack.kubectl("get", "function", name, "-n", namespace,
                                   "-o", "jsonpath={.metadata.generation}").stdout)
    # kubectl wait ignores a status older than the object's generation.
    status = {"status": {"replicas": 3, "readyReplicas": 3, "selector": "app=x",
                         "observedGeneration": generation,
                         "conditions": [{"type": "Ready", "status": "True", "reason": "AllReady",
                                         "message": "3/3 ready",
                                         "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}
    stack.kubectl("patch", "function", name, "-n", namespace, "--subresource=status",
                  "--type=merge", "-p", json.dumps(status))
    stack.kubectl("wait", "function", name, "-n", namespace, "--for=condition=Ready",
                  "--timeout=10s")
    columns = stack.kubectl("get", "function", name, "-n", namespace).stdout
    assert "READY" in columns.upper() and "3" in columns


def test_crds_install_with_plain_kubectl_apply(stack: devstack.StackInfo) -> None:
    """As a user types it: client-side apply records each CRD in a 256 KiB annotation, so
    every CRD must fit (the server dry-run checks the annotation as a real apply would)."""
    done = stack.kubectl("apply", "--dry-run=server", "-f", str(REPO / "crds"), check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("customresourcedefinition") == len(list((REPO / "crds").glob("*.yaml")))


def test_explain_shows_the_embedded_kubernetes_fields(stack: devstack.StackInfo) -> None:
    """kubectl explain reaches inside the pod block: Kubernetes' own fields, typed."""
    pod = stack.kubectl("explain", "--recursive", f"functions.{GROUP}.spec.pod").stdout
    for field in ("nodeSelectorTerms", "tolerationSeconds", "containerPort", "httpGet",
                  "volumeClaimTemplate", "seccompProfile", "averageUtilization"):
        assert field in pod, f"{field} missing from kubectl explain --recursive spec.pod"
    affinity = stack.kubectl("explain", f"functions.{GROUP}.spec.pod.affinity").stdout
    assert "nodeAffinity" in affinity and "podAntiAffinity" in affinity, affinity
    mesh = stack.kubectl("explain", f"functionmeshes.{GROUP}.spec.sinks.pod.sidecars.ports")
    assert "containerPort" in mesh.stdout and "protocol" in mesh.stdout, mesh.stdout
