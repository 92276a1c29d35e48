"""Load (issue 8): the largest churn this machine sustains without the operator's own backlog
growing, held (10 minutes with --long), with the operator's memory sampled over the hold.

The churn (tests/integration/churn.py: creates, updates, `kubectl scale`, deletes over a pool
of Functions, Sources and Sinks) steps up through RATES; a step keeps up when the backlog of
the operator's subscriptions does not grow over its second half (least-squares slope at most
KEEP_UP_SLACK of what flows in, plus 1 message/s of noise). The highest step that keeps up is
then held; over the hold the backlog must not grow either, the operator's memory must stay
flat (its slope is reported), and afterwards the cluster converges to a fresh render of every
CR. Figures go through tests/reliability.py.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fmesh_events import devstack, kube_client, pulsar_client
from fmesh_events.settings import Settings
from tests.examples import example
from tests.integration import churn
from tests.integration.watch_helpers import Operator, watch_settings
from tests.reliability import report, slope
from tests.secret_values import new_secret

KEEP_UP_SLACK = 0.02  # of the messages flowing in per second
NOISE = 1.0  # messages/s of slope that sampling alone can show
MAX_MEMORY_GROWTH = 0.25  # of the mean RSS, over the whole hold
SAMPLE_SECONDS = 2.0
WRITERS = 4  # threads of the churn: one alone cannot write faster than the API server answers


@dataclass(frozen=True)
class Plan:
    rates: tuple[float, ...]  # writes per second, stepped up in order
    step_seconds: float
    hold_seconds: float
    pool: int
    fill: int


SHORT = Plan(rates=(4, 8, 16), step_seconds=40, hold_seconds=90, pool=300, fill=150)
LONG = Plan(rates=(4, 8, 12, 16, 24, 32), step_seconds=60, hold_seconds=600, pool=400, fill=200)


@dataclass(frozen=True)
class Sample:
    at: float  # monotonic seconds
    backlog: int
    messages_in: int
    rss_mb: float
    writes: int


@dataclass
class Phase:
    rate: float
    samples: list[Sample]

    @property
    def seconds(self) -> float:
        return self.samples[-1].at - self.samples[0].at

    def per_second(self, attribute: str) -> float:
        first, last = self.samples[0], self.samples[-1]
        change = float(getattr(last, attribute) - getattr(first, attribute))
        return change / max(self.seconds, 1e-9)

    def backlog_slope(self) -> float:
        """Messages/s the backlog grows by over the second half of the phase (the first half
        absorbs the step from the rate before)."""
        half = self.samples[len(self.samples) // 2:]
        return slope([(s.at, s.backlog) for s in half])

    def keeps_up(self) -> bool:
        return self.backlog_slope() <= NOISE + KEEP_UP_SLACK * self.per_second("messages_in")

    def figures(self) -> dict[str, Any]:
        backlogs = sorted(s.backlog for s in self.samples)
        return {
            "rate_asked": self.rate, "writes_per_second": round(self.per_second("writes"), 2),
            "messages_in_per_second": round(self.per_second("messages_in"), 1),
            "backlog_slope_per_second": round(self.backlog_slope(), 2),
            "backlog_median": backlogs[len(backlogs) // 2], "backlog_max": backlogs[-1],
            "seconds": round(self.seconds), "kept_up": self.keeps_up(),
        }


@dataclass
class Meter:
    """Samples the operator's queue and memory every SAMPLE_SECONDS, in a thread."""

    admin: pulsar_client.PulsarAdmin
    settings: Settings
    operator: Operator
    load: churn.Churn
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> Sample:
        queues = churn.operator_queues(self.admin, self.settings).values()
        return Sample(time.monotonic(), sum(q.backlog for q in queues),
                      sum(q.messages_in for q in queues), self.operator.rss_bytes() / 2**20,
                      len(self.load.writes))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.samples.append(self.sample())

    def phase(self, rate: float, seconds: float) -> Phase:
        """Run the churn at `rate` for `seconds`; the samples taken meanwhile."""
        self.load.rate = rate
        start = self.sample()
        time.sleep(seconds)
        end = self.sample()
        inside = [s for s in self.samples if start.at < s.at < end.at]
        return Phase(rate, [start, *inside, end])

    def __enter__(self) -> Meter:
        threading.Thread(target=self._run, daemon=True, name="meter").start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


@dataclass
class LoadRig:
    settings: Settings
    namespace: str
    api: Any
    load: churn.Churn
    operator: Operator
    plan: Plan


@pytest.fixture
def load_rig(stack: devstack.StackInfo, settings: Settings, namespace: str, tmp_path: Path,
             long_run: bool) -> Iterator[LoadRig]:
    ws = watch_settings(settings, namespace)
    pulsar_client.PulsarAdmin(ws).ensure_namespace(ws.system_namespace)
    api = kube_client.api_client(ws)
    stack.kubectl("apply", "-n", namespace, "-f", "-",
                  input=json.dumps(example("function.yaml", "ConfigMap")))
    plan = LONG if long_run else SHORT
    load = churn.Churn(api, namespace, new_secret("load"), pool=plan.pool, rate=0,
                       seed=random.randrange(1 << 30), writers=WRITERS)
    operator = Operator(ws, tmp_path / "operator.log").start()
    try:
        yield LoadRig(ws, namespace, api, load, operator, plan)
    finally:
        load.stop()
        operator.kill()
        print(f"operator log: {operator.tracebacks()} traceback(s)")
        churn.delete_namespace(stack, namespace)


def test_the_largest_sustained_churn_holds_with_flat_memory(load_rig: LoadRig) -> None:
    rig, plan = load_rig, load_rig.plan
    admin = pulsar_client.PulsarAdmin(rig.settings)
    rig.load.fill(plan.fill)
    churn.wait_converged(rig.api, rig.namespace, (), 300)
    churn.wait_drained(admin, rig.settings)
    rig.load.start()
    steps: list[Phase] = []
    with Meter(admin, rig.settings, rig.operator, rig.load) as meter:
        for rate in plan.rates:
            steps.append(meter.phase(rate, plan.step_seconds))
            print(f"[load] step {steps[-1].figures()}")
            if not steps[-1].keeps_up():
                break
        kept = [p for p in steps if p.keeps_up()]
        assert kept, f"the operator kept up with no step: {[p.figures() for p in steps]}"
        chosen = kept[-1].rate
        # Let what the last step left drain, then hold the chosen rate.
        rig.load.rate = 0
        churn.wait_drained(admin, rig.settings, 300)
        hold = meter.phase(chosen, plan.hold_seconds)
    rig.load.stop()
    memory = [(s.at / 60, s.rss_mb) for s in hold.samples]
    memory_slope = slope(memory)  # MB per minute
    mean_rss = sum(m for _t, m in memory) / len(memory)
    drained = churn.wait_drained(admin, rig.settings, 300)
    converged = churn.wait_converged(rig.api, rig.namespace, (), 300)
    figures = {
        "steps": [p.figures() for p in steps], "hold": hold.figures(),
        "sustained_writes_per_second": round(hold.per_second("writes"), 2),
        "hold_minutes": round(hold.seconds / 60, 1),
        "rss_mb_start": round(hold.samples[0].rss_mb, 1),
        "rss_mb_end": round(hold.samples[-1].rss_mb, 1),
        "rss_mb_max": round(max(m for _t, m in memory), 1),
        "rss_slope_mb_per_minute": round(memory_slope, 2),
        "seconds_to_drain_after": round(drained, 1),
        "seconds_to_converge_after": round(converged, 1),
        "churn": rig.load.summary(), "operator_tracebacks": rig.operator.tracebacks(),
    }
    report("load", figures)
    assert hold.keeps_up(), f"the backlog grew over the hold: {hold.figures()}"
    assert memory_slope * hold.seconds / 60 <= MAX_MEMORY_GROWTH * mean_rss, \
        f"memory grew {memory_slope:.2f} MB/min over the hold (mean {mean_rss:.0f} MB)"
    assert rig.operator.alive(), "the operator died under load"
    assert rig.operator.tracebacks() == 0, "the operator logged a traceback under load"
