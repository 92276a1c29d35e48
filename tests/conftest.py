"""Fixtures for the integration tests: one real stack per test run (Pulsar broker and a
Kubernetes control plane), a Kubernetes namespace and a Pulsar topic prefix per test.

FMESH_TEST_STACK_DIR=<dir of a running `fmesh-events dev up`> reuses that stack instead of
starting one (handy while developing); FMESH_STACK_BACKEND=local|docker|auto picks how.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from fmesh_events import devstack
from fmesh_events.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long", action="store_true", default=os.environ.get("FMESH_LONG_TESTS") == "1",
        help="run the long variants of the reliability suite (10-minute load, more faults); "
             "also FMESH_LONG_TESTS=1")


@pytest.fixture(scope="session")
def long_run(request: pytest.FixtureRequest) -> bool:
    """True under --long: the reliability tests run their long variants."""
    return bool(request.config.getoption("--long"))


# Run after every other test of the session: it scans every topic for the secrets they used.
RUN_LAST = ("tests/integration/test_security.py::test_no_secret_in_any_topic",)


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--long"):
        # Read by the property tests' settings when their modules are imported (collection).
        os.environ["FMESH_LONG_TESTS"] = "1"


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The property tests' figure for the reliability report: how many ran, and how many
    examples hypothesis was asked to generate for them."""
    from tests.reliability import report

    asked = [getattr(item.obj, "_hypothesis_internal_use_settings", None)
             for item in session.items
             if isinstance(item, pytest.Function) and hasattr(item.obj, "hypothesis")]
    if asked:
        report("property tests", {"tests": len(asked),
                                  "max_examples": sum(s.max_examples for s in asked if s)})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
    last = [item for item in items if item.nodeid.endswith(RUN_LAST)]
    items[:] = [item for item in items if item not in last] + last


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.StackInfo]:
    reuse = os.environ.get("FMESH_TEST_STACK_DIR")
    if reuse:
        yield devstack.StackInfo.load(Path(reuse))
        return
    base = Settings()
    stack_dir = tmp_path_factory.mktemp("stack")
    info = devstack.up(stack_dir, base.cache_dir, base.stack_backend,
                       crds=sorted((REPO / "crds").glob("*.yaml")), real_node=base.real_node)
    try:
        yield info
    finally:
        devstack.down(info)


@pytest.fixture(scope="session")
def run_id() -> str:
    return secrets.token_hex(3)


@pytest.fixture
def settings(stack: devstack.StackInfo, run_id: str) -> Settings:
    """Settings pointing at the test stack, with the operator's topics in a per-run namespace."""
    return Settings(
        kubeconfig=stack.kubeconfig,
        pulsar_service_url=stack.pulsar_service_url,
        pulsar_admin_url=stack.pulsar_admin_url,
        system_namespace=f"public/fmesh-test-{run_id}",
    )


def _slug(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")


@pytest.fixture
def namespace(stack: devstack.StackInfo, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh Kubernetes namespace for one test, deleted afterwards (without waiting).

    Its pods go to the KWOK nodes: tests about the operator's own behaviour (and their
    hundreds of pods) need pods that report Ready, not instances that run.
    """
    name = f"t-{_slug(request)}-{secrets.token_hex(2)}"[:63].rstrip("-")
    devstack.create_namespace(stack, name, fake_nodes=True)
    yield name
    stack.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def real_namespace(stack: devstack.StackInfo, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace whose pods run on the real node: real instances, real messages."""
    if not stack.real_node:
        pytest.fail("this test needs the stack's real node (FMESH_REAL_NODE is off)")
    name = f"r-{_slug(request)}-{secrets.token_hex(2)}"[:63].rstrip("-")
    devstack.create_namespace(stack, name, fake_nodes=False)
    yield name
    stack.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> str:
    """A Pulsar topic prefix no other test uses: persistent://public/default/<test>-<rand>-"""
    return f"persistent://public/default/{_slug(request)}-{secrets.token_hex(3)}-"
