"""Load (issue 8): the largest churn this machine sustains without the operator's own backlog
growing, held (10 minutes with --long), with the operator's memory sampled over the hold.

The churn (tests/integration/churn.py: creates, updates, `kubectl scale`, deletes over a pool
of Functions, Sources and Sinks, by WRITERS threads) steps up through the plan's rates; a step
keeps up when, over its second half, the backlog of the operator's subscriptions does not grow
(least-squares slope at most STEP_SLACK of what flows in, plus NOISE) and the watcher keeps up
too (nine writes in ten have their change on resource-events within MAX_LAG_SECONDS). The
highest step that keeps up is then held (and, if the hold shows it was not sustained, the next
one down); over the hold the backlog must not grow either (by HOLD_SLACK), the operator's
memory must stay flat (its slope is reported), and afterwards the cluster converges to a
fresh render of every CR. Figures go through tests/reliability.py.
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

import pulsar
import pytest

from fmesh_events import devstack, events, kube_client, pulsar_client
from fmesh_events.settings import Settings
from tests.examples import example
from tests.integration import churn
from tests.integration.watch_helpers import Operator, watch_settings
from tests.reliability import report, slope
from tests.secret_values import new_secret

# A step is short: only a clear deficit shows in its slope. The hold is long: a small one does.
STEP_SLACK, HOLD_SLACK = 0.05, 0.02  # backlog growth allowed, of the messages flowing in
NOISE = 2.0  # messages/s of slope that sampling a bursty backlog alone can show
MAX_LAG_SECONDS = 1.0  # p90 from a write's answer to its change on resource-events
MAX_MEMORY_GROWTH = 0.25  # of the mean RSS, over the whole hold
SAMPLE_SECONDS = 2.0
MAX_HOLDS = 3  # rates tried for the hold, from the highest that kept up in its step down
WRITERS = 4  # threads of the churn: one alone cannot write faster than the API server answers


@dataclass(frozen=True)
class Plan:
    rates: tuple[float, ...]  # writes per second, stepped up in order
    step_seconds: float
    hold_seconds: float
    pool: int
    fill: int


SHORT = Plan(rates=(4, 8, 16), step_seconds=45, hold_seconds=90, pool=300, fill=150)
LONG = Plan(rates=(4, 8, 12, 16, 24, 32), step_seconds=60, hold_seconds=600, pool=400, fill=200)


@dataclass(frozen=True)
class Sample:
    at: float  # monotonic seconds
    wall: float  # the same moment, wall time (writes and publish times are wall times)
    backlog: int
    messages_in: int
    rss_mb: float
    writes: int


@dataclass
class Phase:
    rate: float
    samples: list[Sample]
    lags: list[tuple[float, float]]  # (write time, seconds until its change was on the topic)
    hold: bool = False

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

    def lag_slope(self) -> float:
        """Seconds of write-to-topic lag gained per second, over the second half."""
        half = self.lags[len(self.lags) // 2:]
        return slope(half)

    def lag_quantile(self, q: float, second_half: bool = False) -> float:
        lags = self.lags[len(self.lags) // 2:] if second_half else self.lags
        ordered = sorted(lag for _at, lag in lags)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    def keeps_up(self) -> bool:
        """Neither the operator's subscriptions (their backlog does not grow) nor the watcher
        (nine changes in ten on the topic within MAX_LAG_SECONDS) fall behind."""
        slack = HOLD_SLACK if self.hold else STEP_SLACK
        return (self.backlog_slope() <= NOISE + slack * self.per_second("messages_in")
                and self.lag_quantile(0.9, second_half=True) <= MAX_LAG_SECONDS)

    def figures(self) -> dict[str, Any]:
        backlogs = sorted(s.backlog for s in self.samples)
        return {
            "rate_asked": self.rate, "writes_per_second": round(self.per_second("writes"), 2),
            "messages_in_per_second": round(self.per_second("messages_in"), 1),
            "backlog_slope_per_second": round(self.backlog_slope(), 2),
            "backlog_median": backlogs[len(backlogs) // 2], "backlog_max": backlogs[-1],
            "lag_p50_seconds": round(self.lag_quantile(0.5), 3),
            "lag_p90_seconds": round(self.lag_quantile(0.9), 3),
            "lag_p99_seconds": round(self.lag_quantile(0.99), 3),
            "lag_slope": round(self.lag_slope(), 4),
            "seconds": round(self.seconds), "kept_up": self.keeps_up(),
        }


@dataclass
class Meter:
    """Samples the operator's queue and memory every SAMPLE_SECONDS, and tails
    resource-events for when each write's change got there, in threads."""

    admin: pulsar_client.PulsarAdmin
    settings: Settings
    operator: Operator
    load: churn.Churn
    samples: list[Sample] = field(default_factory=list)
    published: dict[tuple[str, str], float] = field(default_factory=dict)  # -> publish time
    _stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> Sample:
        queues = churn.operator_queues(self.admin, self.settings).values()
        return Sample(time.monotonic(), time.time(), sum(q.backlog for q in queues),
                      sum(q.messages_in for q in queues), self.operator.rss_bytes() / 2**20,
                      len(self.load.writes))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.samples.append(self.sample())

    def _tail(self) -> None:
        client = pulsar_client.connect(self.settings)
        try:
            reader = client.create_reader(self.settings.topic(events.RESOURCE_EVENTS),
                                          pulsar.MessageId.earliest)
            while not self._stop.is_set():
                try:
                    message = reader.read_next(timeout_millis=500)
                except pulsar.Timeout:
                    continue
                event = events.decode(message.data())
                self.published[(event.key, event.resource_version)] = \
                    message.publish_timestamp() / 1000
        finally:
            client.close()

    def lags(self, start: float, end: float) -> list[tuple[float, float]]:
        """(write time, lag) of every create, update and scale written in [start, end]; a
        change not on the topic yet counts with the lag it has so far."""
        now = time.time()
        return [(w.at, self.published.get((w.key, w.resource_version), now) - w.at)
                for w in list(self.load.writes) if start <= w.at <= end and w.op != "delete"]

    def phase(self, rate: float, seconds: float, hold: bool = False) -> Phase:
        """Run the churn at `rate` for `seconds`; the samples taken meanwhile."""
        self.load.rate = rate
        start = self.sample()
        time.sleep(seconds)
        end = self.sample()
        inside = [s for s in self.samples if start.at < s.at < end.at]
        return Phase(rate, [start, *inside, end], self.lags(start.wall, end.wall), hold)

    def __enter__(self) -> Meter:
        threading.Thread(target=self._run, daemon=True, name="meter").start()
        threading.Thread(target=self._tail, daemon=True, name="tail").start()
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


@pytest.mark.timeout(3600)  # the long plan: six steps, then up to MAX_HOLDS holds of 10 minutes
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
        # A short step can pass by luck: hold the highest rate that kept up, and when the
        # hold shows it was not sustained after all, the next one down.
        holds: list[Phase] = []
        for candidate in sorted({p.rate for p in kept}, reverse=True)[:MAX_HOLDS]:
            rig.load.rate = 0  # let what came before drain first
            churn.wait_drained(admin, rig.settings, 300)
            holds.append(meter.phase(candidate, plan.hold_seconds, hold=True))
            print(f"[load] hold {holds[-1].figures()}")
            if holds[-1].keeps_up():
                break
        hold = holds[-1]
    rig.load.stop()
    memory = [(s.at / 60, s.rss_mb) for s in hold.samples]
    memory_slope = slope(memory)  # MB per minute
    mean_rss = sum(m for _t, m in memory) / len(memory)
    drained = churn.wait_drained(admin, rig.settings, 300)
    converged = churn.wait_converged(rig.api, rig.namespace, (), 300)
    figures = {
        "steps": [p.figures() for p in steps], "hold": hold.figures(),
        "holds_not_sustained": [h.figures() for h in holds[:-1]],
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
    assert hold.keeps_up(), f"no rate that kept up in a step held: {[h.figures() for h in holds]}"
    assert memory_slope * hold.seconds / 60 <= MAX_MEMORY_GROWTH * mean_rss, \
        f"memory grew {memory_slope:.2f} MB/min over the hold (mean {mean_rss:.0f} MB)"
    assert rig.operator.alive(), "the operator died under load"
    assert rig.operator.tracebacks() == 0, "the operator logged a traceback under load"
