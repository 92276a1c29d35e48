"""What a running dev stack is: where it lives, its URLs, its processes; saved as stack.json."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


class StackError(RuntimeError):
    """The stack could not start or is not running; the message says what to look at."""


@dataclass
class StackInfo:
    dir: Path
    backend: str = "local"
    kubeconfig: Path | None = None
    kubectl_path: str = "kubectl"
    pulsar_service_url: str = ""
    pulsar_admin_url: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)
    envs: dict[str, dict[str, str]] = field(default_factory=dict)
    containers: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    started_seconds: float = 0.0
    real_node: bool = False
    registry_port: int = 0

    @property
    def state_file(self) -> Path:
        return self.dir / "stack.json"

    def save(self) -> None:
        data: dict[str, Any] = asdict(self)
        data["dir"] = str(self.dir)
        data["kubeconfig"] = str(self.kubeconfig) if self.kubeconfig else None
        self.state_file.write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, stack_dir: Path) -> StackInfo:
        path = stack_dir / "stack.json"
        if not path.exists():
            raise StackError(f"no dev stack at {stack_dir} (start one with `fmesh-events dev up`)")
        data = json.loads(path.read_text())
        data["dir"] = Path(data["dir"])
        data["kubeconfig"] = Path(data["kubeconfig"]) if data.get("kubeconfig") else None
        return cls(**data)

    def alive(self, name: str) -> bool:
        pid = self.pids.get(name)
        if not pid:
            return False
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        # A zombie (exited, not yet reaped by its parent) counts as dead.
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] != "Z"

    def log_path(self, name: str) -> Path:
        return self.dir / "logs" / f"{name}.log"

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.log_path(name)
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this stack; on failure with check=True, raise with its stderr."""
        if self.kubeconfig is None:
            raise StackError("the stack has no kubeconfig yet")
        proc = subprocess.run(
            [self.kubectl_path, f"--kubeconfig={self.kubeconfig}", *args],
            input=input, capture_output=True, text=True, check=False, timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise StackError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc
