"""`fmesh-events dev up|status|env|down` as a user runs them: a second, separate stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fmesh_events import devstack


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fmesh_events", *args], capture_output=True,
                          text=True, env=env, timeout=900, check=False)


def test_dev_up_status_env_down(stack: devstack.StackInfo, tmp_path: Path) -> None:
    if stack.backend != "local":
        pytest.skip("the CLI lifecycle test covers the local backend")
    # A second stack beside the session's: the machine's one real node is the session's.
    env = {**os.environ, "FMESH_STACK_DIR": str(tmp_path / "cli-stack"),
           "FMESH_STACK_BACKEND": "local", "FMESH_REAL_NODE": "false"}
    up = _cli("dev", "up", "-o", "json", env=env)
    try:
        assert up.returncode == 0, up.stderr
        info = json.loads(up.stdout)
        assert set(info["processes"].values()) == {"running"}
        assert "etcd ready" in up.stderr and "Pulsar ready" in up.stderr  # progress shown
        status = _cli("dev", "status", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        exports = _cli("dev", "env", env=env).stdout
        assert f"export KUBECONFIG={info['kubeconfig']}" in exports
        again = _cli("dev", "up", env=env)
        assert again.returncode == 1 and "already runs" in again.stderr
    finally:
        down = _cli("dev", "down", env=env)
    assert down.returncode == 0, down.stderr
    after = _cli("dev", "status", "-o", "json", env=env)
    assert after.returncode == 1
    assert set(json.loads(after.stdout)["processes"].values()) == {"stopped"}
