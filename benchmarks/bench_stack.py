"""The stack a benchmark runs against: the running dev stack, or one started for the run."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fmesh_events import devstack
from fmesh_events.settings import Settings

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def bench_stack() -> Iterator[tuple[devstack.StackInfo, Settings]]:
    """(stack, settings pointing at it); a stack started here is stopped on exit."""
    base = Settings()
    own = None
    try:
        stack = devstack.StackInfo.load(base.resolved_stack_dir)
        if not all(stack.alive(p) for p in stack.pids) and not stack.containers:
            raise devstack.StackError("stopped")
    except devstack.StackError:
        own = stack = devstack.up(Path(tempfile.mkdtemp(prefix="fmesh-bench-")), base.cache_dir,
                                  base.stack_backend, crds=sorted((REPO / "crds").glob("*.yaml")),
                                  real_node=base.real_node)
    try:
        yield stack, base.model_copy(update={"kubeconfig": stack.kubeconfig,
                                             "pulsar_service_url": stack.pulsar_service_url,
                                             "pulsar_admin_url": stack.pulsar_admin_url})
    finally:
        if own is not None:
            devstack.down(own)
