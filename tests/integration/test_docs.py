"""The documented commands, run: every block of README.md and docs/*.md marked
`<!-- test: run -->` (tests/docs_blocks.py reads them), in order, against the test stack.

The blocks run as a reader would paste them into one shell, from a copy of the checkout:
exported variables carry over from block to block (the quick start's `eval "$(fmesh-events
dev env)"` holds for every later block), and what a block starts in the background (the
quick start's operator) runs until the end. Each block runs under `set -eo pipefail`, so any
failing line fails it; it must exit as its marker says, and print what its marker and a
following `<!-- test: output -->` block say.

So that a run shares nothing with other tests or other people on the same stack, and only
for that, the run differs from a reader's in these ways (docs/contributing.md says so too):

- `kubectl` is a shell function whose kubeconfig's context names the run's own namespace
  (pods on the real node), so `kubectl apply -f ...` lands there and nowhere else;
- `default` as a namespace in a CR key (`function/default/x`) or after `-n` becomes that
  namespace, and topics `persistent://public/default/X` become `.../docs-<id>-X`, in the
  blocks and in the copy of examples/ they apply;
- the operator a block starts watches only that namespace and keeps its topics in its own
  Pulsar namespace (FMESH_WATCH_NAMESPACES, FMESH_SYSTEM_NAMESPACE), with no HTTP port.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from fmesh_events import devstack, pulsar_client
from fmesh_events.settings import Settings
from tests.docs_blocks import REPO, Block, all_blocks

# The quick start alone has four; the manual adds more. Fewer means markers were lost.
MIN_BLOCKS = 12
BLOCK_TIMEOUT = 420.0
TOPIC_ROOT = "persistent://public/default/"


@dataclass
class Isolation:
    namespace: str
    topic_prefix: str

    def apply(self, text: str) -> str:
        text = re.sub(r"(?i)\b(function|source|sink|functionmesh)/default/",
                      rf"\1/{self.namespace}/", text)
        text = re.sub(r"(\s)(-n|--namespace)([ =])default\b", rf"\1\2\3{self.namespace}", text)
        return text.replace(TOPIC_ROOT, TOPIC_ROOT + self.topic_prefix)


def work_tree(dest: Path, isolation: Isolation) -> Path:
    """The checkout as the blocks see it: examples/ copied with the isolation applied, every
    other top-level entry a symlink to the real one."""
    dest.mkdir()
    for entry in REPO.iterdir():
        if entry.name in {".git", "examples"}:
            continue
        (dest / entry.name).symlink_to(entry)
    for source in (REPO / "examples").rglob("*"):
        target = dest / "examples" / source.relative_to(REPO / "examples")
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(isolation.apply(source.read_text()))
    return dest


def namespaced_kubeconfig(stack: devstack.StackInfo, namespace: str, dest: Path) -> Path:
    assert stack.kubeconfig is not None
    config = yaml.safe_load(stack.kubeconfig.read_text())
    current = config["current-context"]
    for context in config["contexts"]:
        if context["name"] == current:
            context["context"]["namespace"] = namespace
    dest.write_text(yaml.safe_dump(config))
    return dest


class Shell:
    """One reader's shell: environment carried from block to block, process groups kept."""

    PRELUDE = ('set -eo pipefail\n'
               'kubectl() { command kubectl --kubeconfig "$FMESH_DOCS_KUBECONFIG" "$@"; }\n')

    def __init__(self, cwd: Path, env: dict[str, str], state: Path) -> None:
        self.cwd, self.env, self.state = cwd, env, state
        self.groups: list[int] = []

    def run(self, code: str) -> tuple[int, str]:
        script = f"{self.PRELUDE}{code}\nenv -0 > {self.state}\n"
        self.state.unlink(missing_ok=True)
        process = subprocess.Popen(["bash", "-c", script], cwd=self.cwd, env=self.env,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.groups.append(process.pid)
        try:
            output, _ = process.communicate(timeout=BLOCK_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate(timeout=30)
            return -1, output + f"\n(timed out after {BLOCK_TIMEOUT:g}s)"
        if process.returncode == 0 and self.state.exists():
            pairs = (item.split("=", 1) for item in self.state.read_text().split("\0") if "=" in item)
            self.env = {k: v for k, v in pairs if k not in {"PWD", "OLDPWD", "SHLVL", "_"}}
        return process.returncode, output

    def stop(self) -> None:
        """SIGTERM to every group a block left running (the operator), SIGKILL after 40 s."""
        alive = []
        for group in self.groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
                alive.append(group)
        deadline = time.monotonic() + 40
        while alive and time.monotonic() < deadline:
            time.sleep(0.5)
            alive = [g for g in alive if _group_alive(g)]
        for group in alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def check(block: Block, code: int, output: str) -> list[str]:
    problems = []
    if code != block.exit_code:
        problems.append(f"exit {code}, the doc says {block.exit_code}")
    for text in block.expect:
        if text not in output:
            problems.append(f"no {text!r} in the output")
    if "command not found" in output:  # inside $(...) or `&` it would not fail the block
        problems.append("a command was not found")
    lines = {line.strip() for line in output.splitlines()}
    problems += [f"no line {line!r} in the output" for line in block.output if line not in lines]
    return problems


@pytest.fixture
def docs_namespace(stack: devstack.StackInfo) -> Iterator[str]:
    if not stack.real_node:
        pytest.fail("the quick start runs Java functions on the stack's real node (FMESH_REAL_NODE is off)")
    name = f"docs-{secrets.token_hex(3)}"
    devstack.create_namespace(stack, name, fake_nodes=False)
    yield name
    stack.kubectl("delete", "namespace", name, "--wait=false", check=False)


def delete_topics(stack: devstack.StackInfo, system_namespace: str, prefix: str) -> None:
    """The run's topics: its Pulsar namespace and the examples' topics it renamed."""
    admin = pulsar_client.PulsarAdmin(Settings(pulsar_admin_url=stack.pulsar_admin_url))
    try:
        for topic in admin.request("GET", "/admin/v2/persistent/public/default") or []:
            if topic.startswith(TOPIC_ROOT + prefix):
                admin.request("DELETE", f"/admin/v2/persistent/{topic.removeprefix('persistent://')}"
                              "?force=true", ok=(200, 204, 404))
        for topic in admin.request("GET", f"/admin/v2/namespaces/{system_namespace}/topics") or []:
            admin.request("DELETE", f"/admin/v2/persistent/{topic.removeprefix('persistent://')}"
                          "?force=true", ok=(200, 204, 404))
        admin.request("DELETE", f"/admin/v2/namespaces/{system_namespace}", ok=(200, 204, 404))
    except (pulsar_client.PulsarAdminError, OSError) as error:
        print(f"left the run's topics behind: {error}")


def test_documented_commands_run(stack: devstack.StackInfo, docs_namespace: str,
                                 tmp_path: Path) -> None:
    blocks = all_blocks()
    assert len(blocks) >= MIN_BLOCKS, f"only {len(blocks)} runnable blocks found"
    run = secrets.token_hex(3)
    isolation = Isolation(docs_namespace, f"docs-{run}-")
    system_namespace = f"public/docs-{run}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMESH_") and k != "KUBECONFIG"}
    env.update({
        "FMESH_STACK_DIR": str(stack.dir),
        "FMESH_SYSTEM_NAMESPACE": system_namespace,
        "FMESH_WATCH_NAMESPACES": json.dumps([docs_namespace]),
        "FMESH_HTTP_PORT": "0",
        "FMESH_DOCS_KUBECONFIG": str(namespaced_kubeconfig(stack, docs_namespace,
                                                           tmp_path / "kubeconfig")),
    })
    shell = Shell(work_tree(tmp_path / "checkout", isolation), env, tmp_path / "env")
    timings = []
    try:
        for block in blocks:
            started = time.monotonic()
            code, output = shell.run(isolation.apply(block.code))
            timings.append(f"{time.monotonic() - started:6.1f}s  {block.where}")
            if os.environ.get("FMESH_DOCS_VERBOSE"):
                print(f"--- {block.where}\n{isolation.apply(block.code)}\n--- output\n{output}")
            problems = check(block, code, output)
            if problems:
                log = tmp_path / "checkout" / "operator.log"
                tail = log.read_text()[-3000:] if log.exists() else "(no operator.log)"
                pytest.fail(f"{block.where}: {'; '.join(problems)}\n--- block (as run)\n"
                            f"{isolation.apply(block.code)}\n--- output\n{output[-6000:]}\n"
                            f"--- operator.log (tail)\n{tail}", pytrace=False)
    finally:
        shell.stop()
        print("\n".join(timings))
        # Gone first: a running instance would make its topics again as it reconnects.
        stack.kubectl("delete", "namespace", docs_namespace, "--timeout=180s", check=False)
        delete_topics(stack, system_namespace, isolation.topic_prefix)
