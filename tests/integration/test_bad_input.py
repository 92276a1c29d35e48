"""Bad input (issue 8): the corpus of tests/bad_inputs.py applied with kubectl to a real API
server while the whole operator runs as its own process.

Every case is refused by the CRD naming the field, or stored and then reported on the CR's
Ready condition naming the field (with none of its children half made), or, for the odd but
valid ones, runs. Nothing crashes: the operator process stays up, its log holds no traceback
and no restarted component, and a valid Function applied after the corpus becomes Ready.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from fmesh_events import devstack
from fmesh_events.settings import Settings
from tests.bad_inputs import CONFIG_MAP, CORPUS, Case, Refused, Reported, Runs, base, counts
from tests.integration.watch_helpers import running_operator, wait_for, watch_settings
from tests.reliability import report

KINDS = ("function", "source", "sink", "functionmesh")
COMPONENT = {"Function": "function", "Source": "source", "Sink": "sink"}
# What in the operator's log means a component crashed or restarted.
CRASH_MARKS = ("Traceback", "starting over", "reconcile crashed", "handling failed")


@pytest.fixture
def operator(stack: devstack.StackInfo, settings: Settings, namespace: str,
             tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """The whole operator (watch, reconcile, scale) as `fmesh-events run`, on this namespace."""
    log = tmp_path / "operator.log"
    with running_operator(watch_settings(settings, namespace), log) as process:
        yield process, log


def _apply(stack: devstack.StackInfo, namespace: str,
           case: Case) -> tuple[Case, subprocess.CompletedProcess[str]]:
    args = ["apply", "-n", namespace, "-f", "-"]
    if case.server_side:
        args.append("--server-side")
    return case, stack.kubectl(*args, input=case.json(), check=False)


def _stored(stack: devstack.StackInfo, namespace: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) -> object, for every CR of the namespace (one kubectl call)."""
    # The corpus holds an object nested 2,000 levels deep: Python's json needs room for it.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 25_000))
    listed = stack.kubectl("get", ",".join(KINDS), "-n", namespace, "-o", "json", timeout=300)
    return {(o["kind"], o["metadata"]["name"]): o for o in json.loads(listed.stdout)["items"]}


def _ready(obj: dict[str, Any] | None) -> dict[str, Any]:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), {})


def _unmet(stack: devstack.StackInfo, namespace: str, cases: list[Case]) -> list[str]:
    """The stored cases whose status does not say what it must yet."""
    stored = _stored(stack, namespace)
    unmet = []
    for case in cases:
        ready = _ready(stored.get((case.kind, case.name)))
        if isinstance(case.expect, Reported):
            if ready.get("status") != "False" or case.expect.field not in ready.get("message", ""):
                unmet.append(f"{case.id}: Ready={ready.get('status')} {ready.get('message')!r}")
        elif ready.get("status") != "True":
            unmet.append(f"{case.id}: Ready={ready.get('status')} {ready.get('message')!r}")
    return unmet


def _children(stack: devstack.StackInfo, namespace: str) -> set[str]:
    listed = stack.kubectl("get", "statefulsets,services,functions", "-n", namespace,
                           "-o", "json", timeout=300)
    return {f"{o['kind']}/{o['metadata']['name']}" for o in json.loads(listed.stdout)["items"]}


def _config_map(stack: devstack.StackInfo, namespace: str) -> None:
    stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIG_MAP},
        "data": {"webServiceURL": "http://pulsar.invalid:8080",
                 "brokerServiceURL": "pulsar://pulsar.invalid:6650"}}))


def test_bad_inputs_are_refused_or_reported_and_crash_nothing(
        stack: devstack.StackInfo, namespace: str,
        operator: tuple[subprocess.Popen[bytes], Path]) -> None:
    process, log = operator
    _config_map(stack, namespace)
    with ThreadPoolExecutor(4) as pool:
        applied = list(pool.map(lambda case: _apply(stack, namespace, case), CORPUS))
    assert len(applied) == counts()["tried"] > 100

    wrong = []
    for case, result in applied:
        refused = result.returncode != 0
        if isinstance(case.expect, Refused):
            if not refused:
                wrong.append(f"{case.id}: accepted, expected refused naming {case.expect.field}")
            elif case.expect.field not in result.stderr:
                wrong.append(f"{case.id}: refused without naming {case.expect.field}: "
                             f"{result.stderr.strip()[:500]}")
        elif refused:
            wrong.append(f"{case.id}: refused, expected stored: {result.stderr.strip()[:500]}")
    assert not wrong, "\n".join(wrong)

    stored = _stored(stack, namespace)
    refused_names = {(c.kind, c.name) for c in CORPUS if isinstance(c.expect, Refused)}
    assert not refused_names & set(stored), "a refused object was stored anyway"

    later = [c for c in CORPUS if not isinstance(c.expect, Refused)]
    assert {(c.kind, c.name) for c in later} <= set(stored)
    unmet: list[str] = []

    def settled() -> bool:
        unmet[:] = _unmet(stack, namespace, later)
        return not unmet

    try:
        wait_for("every stored case reported or Ready", settled, 240)
    except AssertionError as error:
        raise AssertionError(f"{error}:\n" + "\n".join(unmet)) from None

    # Nothing half made: a reported Function, Source or Sink has neither StatefulSet nor
    # Service; a reported FunctionMesh has no child.
    children = _children(stack, namespace)
    for case in later:
        if not isinstance(case.expect, Reported):
            continue
        if case.kind == "FunctionMesh":
            made = {c for c in children if c.startswith(f"Function/{case.name}-")}
        else:
            component = COMPONENT[case.kind]
            made = children & {f"StatefulSet/{case.name}-{component}",
                               f"Service/{case.name}-{component}-headless"}
        assert not made, f"{case.id}: half made: {sorted(made)}"
    for case in later:
        if isinstance(case.expect, Runs):
            assert f"StatefulSet/{case.name}-{COMPONENT[case.kind]}" in children, case.id

    # After all that, a valid Function is reconciled as any other.
    after = base("Function", "after-the-corpus")
    stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(after))
    wait_for("a valid Function applied after the corpus is Ready", lambda: _ready(
        _stored(stack, namespace).get(("Function", "after-the-corpus"))).get("status") == "True",
        120)

    assert process.poll() is None, "the operator exited"
    text = log.read_text(errors="replace")
    crashes = [line[:400] for line in text.splitlines() if any(m in line for m in CRASH_MARKS)]
    assert not crashes, "\n".join(crashes)
    report("bad input", {**counts(), "largest_input_bytes": max(len(c.json()) for c in CORPUS),
                         "crashes": 0, "half_made": 0})


def test_an_emoji_in_the_spec_reaches_the_pods(
        stack: devstack.StackInfo, namespace: str,
        operator: tuple[subprocess.Popen[bytes], Path]) -> None:
    _config_map(stack, namespace)
    function = base("Function", "emoji")
    function["spec"]["funcConfig"] = {"greeting": "hello \U0001f30d"}
    stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(function))
    ready: dict[str, Any] = {}

    def is_ready() -> bool:
        ready.update(_ready(_stored(stack, namespace).get(("Function", "emoji"))))
        return ready.get("status") == "True"
    try:
        wait_for("Ready", is_ready, 120)
    except AssertionError as error:
        raise AssertionError(f"{error}: {ready.get('message')}") from None
    # The character itself (not an escape of it) is in the instance's command line.
    sts = json.loads(stack.kubectl("get", "statefulset", "emoji-function", "-n", namespace,
                                   "-o", "json").stdout)
    command = " ".join(sts["spec"]["template"]["spec"]["containers"][0]["command"])
    assert "hello \U0001f30d" in command, "the emoji did not reach the pods' command line"
