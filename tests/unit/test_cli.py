"""The CLI's own surface: printed CRDs match the committed ones; settings come from flags
and environment; a missing stack is a clear error, not a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from fmesh_events.cli import main
from fmesh_events.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_crds_command_prints_the_committed_crds() -> None:
    result = CliRunner().invoke(main, ["crds"])
    assert result.exit_code == 0, result.output
    printed = [doc for doc in yaml.safe_load_all(result.output) if doc]
    committed = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "crds").glob("*.yaml"))]
    key: Callable[[dict[str, Any]], str] = lambda doc: doc["metadata"]["name"]  # noqa: E731
    assert sorted(printed, key=key) == sorted(committed, key=key), (
        "crds/ drifted from the models: run `fmesh-events crds --write crds/`"
    )
    assert {key(d) for d in printed} == {
        f"{plural}.compute.functionmesh.io"
        for plural in ("functions", "sources", "sinks", "functionmeshes", "backendconfigs")
    }


def test_settings_from_env_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMESH_PULSAR_SERVICE_URL", "pulsar://env:6650")
    monkeypatch.setenv("FMESH_SYSTEM_NAMESPACE", "ops/audit")
    settings = Settings()
    assert settings.pulsar_service_url == "pulsar://env:6650"
    assert settings.topic("resource-events") == "persistent://ops/audit/resource-events"
    assert Settings(pulsar_service_url="pulsar://flag:6650").pulsar_service_url == "pulsar://flag:6650"


def test_dev_status_without_a_stack_is_a_clear_error(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMESH_STACK_DIR", str(tmp_path / "nothing"))
    result = CliRunner().invoke(main, ["dev", "status"])
    assert result.exit_code == 1
    assert "no dev stack at" in result.output
    assert "Traceback" not in result.output


def test_unknown_backend_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["dev", "up", "--backend", "vm"])
    assert result.exit_code == 2
    assert "vm" in result.output


def test_run_waits_for_an_absent_pulsar_and_stops_on_sigterm(tmp_path: Path) -> None:
    """No crash loop: with nothing listening, `run` logs and retries; SIGTERM ends it cleanly."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "FMESH_PULSAR_ADMIN_URL": "http://127.0.0.1:9",
           "FMESH_PULSAR_SERVICE_URL": "pulsar://127.0.0.1:9",
           "FMESH_KUBECONFIG": str(tmp_path / "none")}
    proc = subprocess.Popen([sys.executable, "-m", "fmesh_events", "run"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(4)
    assert proc.poll() is None, proc.communicate()[0]
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output
    assert "cannot prepare the system namespace; retrying" in output
