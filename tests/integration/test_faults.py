"""Faults during a steady churn (issue 8): the operator SIGKILLed again and again, the broker
restarted, the API server and etcd restarted with the watch history compacted (410 Gone),
two operators with the leading one killed, the reconcile path filled with poison CRs.

After each, the same checks (tests/integration/churn.py): the cluster converges to a fresh
render of every CR, every write the API server accepted is on resource-events, every CR's
history tells a possible story, no key is reconciled by two processes at once, and the
poison CR is dead-lettered with a readable status while all others are Ready.

`--long` (or FMESH_LONG_TESTS=1) runs each for longer, with more CRs and more kills; the
figures go through tests/reliability.py (scripts/reliability collects them).
"""

from __future__ import annotations

import json
import random
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from fmesh_events import devstack, events, kube_client, pulsar_client
from fmesh_events.devstack import local
from fmesh_events.settings import Settings
from tests.examples import example
from tests.integration import churn
from tests.integration.watch_helpers import Operator, read_messages, wait_for, watch_settings
from tests.reliability import report
from tests.secret_values import new_secret


@dataclass
class Scale:
    pool: int
    fill: int
    rate: float
    seconds: float
    kills: int


JOIN_WINDOW = 30.0
SHORT = Scale(pool=200, fill=120, rate=4.0, seconds=45, kills=3)
LONG = Scale(pool=300, fill=200, rate=4.0, seconds=240, kills=10)


@dataclass
class Rig:
    stack: devstack.StackInfo
    settings: Settings
    namespace: str
    api: k8s.ApiClient
    churn: churn.Churn
    scale: Scale
    logs: Path
    poison: list[str] = field(default_factory=lambda: [churn.POISON])
    operators: list[Operator] = field(default_factory=list)

    def operator(self, name: str = "op") -> Operator:
        op = Operator(self.settings, self.logs / f"{name}-{len(self.operators)}.log")
        self.operators.append(op)
        return op.start()

    def apply_poison(self, name: str) -> None:
        """A Function whose pulsarConfig names a ConfigMap that never exists: it always fails."""
        body = example("function.yaml", "Function")
        body["metadata"]["name"] = name
        body["spec"]["pulsar"]["pulsarConfig"] = "no-such-config"
        for key in ("autoscaling", "minReplicas", "maxReplicas"):
            body["spec"].pop(key, None)
        self.stack.kubectl("apply", "-n", self.namespace, "-f", "-", input=json.dumps(body))

    def fill_and_settle(self) -> float:
        self.apply_poison(churn.POISON)
        self.churn.fill(self.scale.fill)
        return churn.wait_converged(self.api, self.namespace, self.poison, 300)

    def check(self, test: str, fault_over_at: float, extra: dict[str, Any]) -> None:
        """Stop the churn, wait for convergence, run every check, report the figures."""
        self.churn.stop()
        churn_stopped = time.monotonic()
        converged = churn.wait_converged(self.api, self.namespace, self.poison, 300)
        converge_after_fault = time.monotonic() - fault_over_at
        # Let the last status writes reach the topic before reading it back.
        admin = pulsar_client.PulsarAdmin(self.settings)
        churn.wait_drained(admin, self.settings)
        published = churn.published_changes(self.settings)
        complete = churn.completeness(self.churn.writes, published)
        assert not complete.missing, (
            f"{len(complete.missing)} accepted write(s) missing from resource-events, e.g. "
            f"{complete.missing[:3]}")
        assert complete.duplicates == 0, f"{complete.duplicates} change(s) published twice"
        live = churn.live_objects(self.api, self.namespace)
        poison_keys = [f"Function/{self.namespace}/{p}" for p in self.poison]
        story = churn.story_problems(churn.history_entries(self.settings, self.namespace), live,
                                     poison_keys)
        assert not story, f"{len(story)} inconsistent stories, e.g. {story[:5]}"
        records = churn.reconcile_records(self.settings)
        # A process that joins a running one takes over keys topic by topic (Key_Shared's
        # guarantee is per topic): within JOIN_WINDOW of a restart, a key may run twice.
        rejoins = [t for op in self.operators for t in op.started_at[1:]]
        overlaps = churn.overlapping_reconciles(records)
        at_join = [o for o in overlaps if any(t <= o[1] <= t + JOIN_WINDOW for t in rejoins)]
        steady = [o for o in overlaps if o not in at_join]
        assert not steady, f"reconciled by two processes at once: {steady[:3]}"
        dead = read_messages(self.settings, events.RECONCILE_DLQ)
        dead_keys = {m.partition_key() for m in dead}
        assert set(poison_keys) <= dead_keys, f"poison not dead-lettered: {dead_keys}"
        assert dead_keys <= set(poison_keys), f"healthy CRs dead-lettered: {dead_keys}"
        report(test, {
            **extra,
            "crs_live": len(live), "churn": self.churn.summary(),
            "changes_exact": complete.exact, "changes_covered_by_resync": complete.covered_by_resync,
            "changes_missing": 0, "resync_events": complete.resyncs,
            "reconciles": len(records), "overlaps_while_a_process_joined": len(at_join),
            "reconcilers": len({r["reconciler"] for r in records}),
            "seconds_to_converge_after_churn": round(converged, 1),
            "seconds_to_converge_after_fault": round(converge_after_fault, 1),
            "seconds_churn_stop_to_check": round(time.monotonic() - churn_stopped, 1),
            "operator_restarts": sum(op.starts for op in self.operators) - len(self.operators),
            "poison_dead_lettered": len(self.poison),
        })


@pytest.fixture
def rig(stack: devstack.StackInfo, settings: Settings, namespace: str, tmp_path: Path,
        long_run: bool) -> Iterator[Rig]:
    ws = watch_settings(settings, namespace)
    pulsar_client.PulsarAdmin(ws).ensure_namespace(ws.system_namespace)
    api = kube_client.api_client(ws)
    config = example("function.yaml", "ConfigMap")
    stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(config))
    scale = LONG if long_run else SHORT
    load = churn.Churn(api, namespace, new_secret("churn"), pool=scale.pool, rate=scale.rate,
                       seed=random.randrange(1 << 30))
    rig = Rig(stack, ws, namespace, api, load, scale, tmp_path)
    try:
        yield rig
    finally:
        load.stop()
        for op in rig.operators:
            op.kill()
        for op in rig.operators:
            print(f"{op.log_path.name}: {op.tracebacks()} traceback(s)")
        churn.delete_namespace(stack, namespace)


def _settle_then_churn(rig: Rig) -> float:
    settled = rig.fill_and_settle()
    rig.churn.start()
    return settled


def test_operator_sigkilled_again_and_again(rig: Rig) -> None:
    op = rig.operator()
    settled = _settle_then_churn(rig)
    pause = rig.scale.seconds / (rig.scale.kills + 1)
    rng = random.Random()
    downtime = []
    for _ in range(rig.scale.kills):
        time.sleep(rng.uniform(0.5, 1.5) * pause)
        op.kill()  # SIGKILL, at a random moment of the churn
        down = rng.uniform(0.5, 3.0)
        time.sleep(down)
        downtime.append(round(down, 1))
        op.start()
    time.sleep(pause)
    rig.check("operator SIGKILLed", time.monotonic(), {
        "kills": rig.scale.kills, "downtime_seconds": downtime,
        "seconds_to_first_converge": round(settled, 1)})


def test_broker_stopped_and_restarted(rig: Rig) -> None:
    rig.operator()
    _settle_then_churn(rig)
    time.sleep(rig.scale.seconds / 3)
    local.stop_process(rig.stack, "pulsar")
    time.sleep(5)
    local.start_process(rig.stack, "pulsar")  # waits for the broker
    back = time.monotonic()
    time.sleep(rig.scale.seconds / 3)
    rig.check("broker restarted", back, {"broker_down_seconds": 5})


def _etcd_url(stack: devstack.StackInfo) -> str:
    command = stack.commands["etcd"]
    return command[command.index("--listen-client-urls") + 1]


def _etcd(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def test_api_server_and_etcd_restarted_with_history_compacted(rig: Rig) -> None:
    rig.operator()
    _settle_then_churn(rig)
    time.sleep(rig.scale.seconds / 3)
    local.stop_process(rig.stack, "kube-apiserver")
    # Writes go on while the API server is away (they fail, as for any user); what the API
    # server had stored is compacted away, so every watch that resumes gets 410 Gone.
    url = _etcd_url(rig.stack)
    revision = int(_etcd(url, "/v3/kv/range", {"key": "Lw=="})["header"]["revision"])
    _etcd(url, "/v3/kv/compaction", {"revision": revision, "physical": True})
    local.stop_process(rig.stack, "etcd")
    local.start_process(rig.stack, "etcd")
    local.start_process(rig.stack, "kube-apiserver")
    wait_for("API server ready again", lambda: rig.stack.kubectl(
        "get", "--raw", "/readyz", check=False).returncode == 0, 120)
    back = time.monotonic()
    time.sleep(rig.scale.seconds / 3)
    wait_for("the watcher's resume after the restart met 410 Gone", lambda: "watch expired" in
             "".join(op.log_text() for op in rig.operators), 120)
    logs = "".join(op.log_text() for op in rig.operators)
    rig.check("API server and etcd restarted, history compacted", back, {
        "etcd_compacted_at_revision": revision,
        # streams that resumed from the oldest version the API server kept, or relisted
        "watches_resumed_after_410": logs.count('"watch expired; resuming from'),
        "watches_relisted_after_410": logs.count('"watch expired; relisting"'),
    })


def _leading_watcher(rig: Rig, since: float = 0) -> Operator:
    """The live operator whose watcher leads: the one that said so (after `since`, a wall
    time) in its log; a standby says nothing until it takes over."""

    def leader() -> Operator | None:
        for op in rig.operators:
            if op.alive() and any(
                    '"now the active watcher"' in line and
                    _log_time(line) >= since for line in op.log_path.read_text().splitlines()):
                return op
        return None
    wait_for("a leading watcher", lambda: leader() is not None, 90)
    found = leader()
    assert found is not None
    return found


def _log_time(line: str) -> float:
    try:
        return datetime.fromisoformat(json.loads(line)["time"]).timestamp()
    except (ValueError, KeyError):
        return 0.0


def test_two_operators_and_the_leading_watcher_killed(rig: Rig) -> None:
    rig.operator("a")
    rig.operator("b")
    _settle_then_churn(rig)
    time.sleep(rig.scale.seconds / 3)
    leader = _leading_watcher(rig)
    leader.kill()
    killed_at, killed_wall = time.monotonic(), time.time()
    standby = _leading_watcher(rig, since=killed_wall)
    takeover = time.monotonic() - killed_at
    assert standby is not leader
    leader.start()  # comes back as the standby
    time.sleep(rig.scale.seconds / 3)
    rig.check("two operators, leading watcher killed", killed_at,
              {"seconds_to_takeover": round(takeover, 1)})


def test_poison_crs_fill_the_reconcile_path(rig: Rig) -> None:
    rig.operator()
    rig.poison += [f"{churn.POISON}-{i}" for i in range(9)]
    for name in rig.poison[1:]:
        rig.apply_poison(name)
    _settle_then_churn(rig)
    # Keep the poison coming: every update of a poison CR starts its retries over.
    end = time.monotonic() + rig.scale.seconds
    rounds = 0
    while time.monotonic() < end:
        for name in rig.poison:
            rig.stack.kubectl("patch", "function", name, "-n", rig.namespace, "--type=merge",
                              "-p", json.dumps({"spec": {"funcConfig": {"round": rounds}}}))
        rounds += 1
        time.sleep(5)
    rig.check("poison CRs", time.monotonic(), {"poison_crs": len(rig.poison),
                                               "poison_updates": rounds * len(rig.poison)})
