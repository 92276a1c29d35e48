"""The sampler: turns metrics into messages on scale-signals, one per autoscaled CR.

- A tick (apscheduler, every `interval` seconds) samples every CR with maxReplicas set: its
  backlog (admin API) and its pods' CPU and memory (metrics.k8s.io).
- A probe on each input topic wakes the sampler at once when new messages arrive, so a burst
  does not wait for the next tick. A probe is a non-durable Reader at the topic's end: Pulsar
  pushes the first new message to it, the sampler samples the functions that read the topic,
  closes the reader (so it does not stream the topic's traffic) and re-arms it a few seconds
  later. While a probe is armed and silent, a topic whose backlog was 0 still has backlog 0:
  the tick reuses that instead of calling the admin API, so admin calls grow with the topics
  that change, not with the number of functions.
- Only the leader samples: the producer on scale-signals opens WaitForExclusive, so a second
  operator waits and takes over when the leader goes (as the watcher does).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pulsar
from apscheduler.schedulers.background import BackgroundScheduler
from kubernetes import client
from prometheus_client import Counter
from pydantic import ValidationError

from fmesh_events import events, models
from fmesh_events.models import inputs
from fmesh_events.scale import spec as scale_spec
from fmesh_events.scale.backlog import BacklogReader
from fmesh_events.scale.usage import PodUsage, UsageSource

log = logging.getLogger("fmesh_events.scale")

SIGNALS = Counter("fmesh_scale_signals_total", "Scale signals published", ["trigger"])
KINDS = ("Function", "Source", "Sink")
RESYNC_SECONDS = 300.0  # every topic is read at least this often, probe or not
BURST_DEBOUNCE_SECONDS = 1.0


@dataclass
class Probe:
    armed_at: float  # time.monotonic() when the readers were at the topic's end
    readers: list[Any] = field(default_factory=list)
    fired: bool = False  # set by this probe's own readers only: an old probe cannot mislead


@dataclass
class Reading:
    backlog: int
    at: float  # time.monotonic()


class Sampler:
    def __init__(self, api: client.ApiClient, pulsar_client: pulsar.Client, topic: Callable[[str], str],
                 backlog: BacklogReader, usage: UsageSource, namespaces: list[str],
                 interval_seconds: float = 15.0, rearm_seconds: float = 5.0) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.client = pulsar_client
        self.topic = topic
        self.backlog_reader = backlog
        self.usage = usage
        self.namespaces = namespaces
        self.interval = interval_seconds
        self.rearm_seconds = rearm_seconds
        self.producer: Any = None
        self.crs: dict[str, dict[str, Any]] = {}  # key -> CR, as of the last tick
        self.topic_keys: dict[str, set[str]] = {}  # input topic -> keys of CRs reading it
        self.probes: dict[str, Probe] = {}
        self.rearm_at: dict[str, float] = {}
        self.pause: dict[str, float] = {}  # topic -> current re-arm pause (grows on busy topics)
        self.deferred: set[str] = set()  # keys whose burst sample waits out the debounce
        self.readings: dict[tuple[str, str], Reading] = {}
        self.last_burst: dict[str, float] = {}
        self.published = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="sample")
        models.allow_deep_objects()  # read back whatever the API server stores

    # -- leadership and loops ----------------------------------------------------------------
    def lead(self) -> None:
        """Blocks until this process is the one sampler (the exclusive producer)."""
        self.producer = self.client.create_producer(
            self.topic(events.SCALE_SIGNALS),
            access_mode=pulsar.ProducerAccessMode.WaitForExclusive,
            batching_enabled=True, batching_type=pulsar.BatchingType.KeyBased,
            batching_max_publish_delay_ms=2)
        log.warning("now the active sampler", extra={"interval_s": self.interval})

    def run_until(self, stop: threading.Event) -> None:
        scheduler = BackgroundScheduler(daemon=True)
        scheduler.add_job(self.tick, "interval", seconds=self.interval, max_instances=1,
                          coalesce=True, next_run_time=_now_datetime())
        scheduler.start()
        try:
            while not stop.wait(0.1):
                self.watch_probes()
        except Exception:
            if not stop.is_set():
                raise
            # Stopping: the process closed the Pulsar client under us. Not a failure, and
            # not to be reported as one ("sampler stopped; starting over").
        finally:
            scheduler.shutdown(wait=False)
            self.close()

    def close(self) -> None:
        for probe in list(self.probes.values()):
            _close_all(probe.readers)
        self.probes.clear()
        if self.producer is not None:
            try:
                self.producer.flush()
                self.producer.close()
            except Exception:
                log.debug("producer close failed", exc_info=True)
        self._pool.shutdown(wait=False)

    # -- the tick ----------------------------------------------------------------------------
    def tick(self) -> None:
        try:
            crs = self.list_autoscaled()
        except Exception as error:
            log.error("could not list the autoscaled objects", extra={"error": str(error)})
            return
        topic_keys: dict[str, set[str]] = {}
        for key, (_cr, model) in list(crs.items()):
            try:
                topics = self._topics_of(model)
            except Exception as error:  # one odd CR must not stop the tick for all others
                log.error("could not resolve the input topics; not sampled",
                          extra={"key": key, "error": str(error)})
                del crs[key]
                continue
            for topic in topics:
                topic_keys.setdefault(topic, set()).add(key)
        with self._lock:
            self.crs = {key: cr for key, (cr, _m) in crs.items()}
            self.topic_keys = topic_keys
        list(self._pool.map(lambda item: self.publish(item[0], item[1][0], item[1][1], "tick"),
                            crs.items()))
        self.producer.flush()

    def list_autoscaled(self) -> dict[str, tuple[dict[str, Any], Any]]:
        out: dict[str, tuple[dict[str, Any], Any]] = {}
        for kind in KINDS:
            plural = models.PLURALS[kind]
            answers = [self.custom.list_namespaced_custom_object(models.GROUP, models.VERSION, ns,
                                                                 plural) for ns in self.namespaces] \
                if self.namespaces else [self.custom.list_cluster_custom_object(
                    models.GROUP, models.VERSION, plural)]
            for answer in answers:
                for cr in answer.get("items") or []:
                    if (cr.get("spec") or {}).get("maxReplicas") is None or \
                            (cr.get("metadata") or {}).get("deletionTimestamp"):
                        continue
                    cr.setdefault("kind", kind)
                    cr.setdefault("apiVersion", models.API_VERSION)
                    try:
                        model = models.parse_resource(cr)
                    except ValueError:  # ValidationError included
                        continue  # reconcile reports a spec that does not fit, on the CR
                    meta = cr["metadata"]
                    out[events.resource_key(kind, meta["namespace"], meta["name"])] = (cr, model)
        return out

    def _topics_of(self, model: Any) -> list[str]:
        wanted = inputs.inputs(model)
        topics = list(wanted.topics)
        for pattern in wanted.patterns:
            topics += self.backlog_reader.resolve(pattern)
        return sorted(set(topics))

    # -- one sample --------------------------------------------------------------------------
    def sample(self, key: str, cr: dict[str, Any], model: Any, trigger: str) -> dict[str, Any]:
        wanted = scale_spec.scale_spec(model)
        missing: list[str] = list(wanted.unsupported)
        topics_out: list[dict[str, Any]] = []
        total: int | None = None
        if wanted.backlog_target is not None:
            subscription = inputs.subscription_name(model)
            total = 0
            for topic in self._topics_of(model):
                value, why = self._backlog(topic, subscription)
                if value is None:  # one topic unknown: the total is unknown (no scale-down)
                    missing.append(why or f"no backlog for {topic}")
                    total = None
                    continue
                topics_out.append({"topic": topic, "backlog": value})
                if total is not None:
                    total += value
            if not topics_out and not missing:
                missing.append("no input topic to read a backlog from")
                total = None
        usage = PodUsage(served=False)
        if wanted.cpu_target is not None or wanted.memory_target is not None:
            selector = (cr.get("status") or {}).get("selector")
            if selector:
                try:
                    usage = self.usage.usage(cr["metadata"]["namespace"], selector)
                except Exception as error:
                    usage = PodUsage(served=False, missing_reason=f"pod metrics: {error}")
            else:
                usage = PodUsage(served=False, missing_reason="no pod selector in status yet")
            if usage.missing_reason:
                missing.append(usage.missing_reason)
        status = cr.get("status") or {}
        return {
            "signalVersion": 1, "key": key, "time": int(time.time() * 1000), "trigger": trigger,
            "currentReplicas": model.spec.replica_count,
            "readyReplicas": int(status.get("readyReplicas") or 0),
            "cpuServed": usage.served, "cpuUtilizations": usage.cpu, "cpuMissing": usage.cpu_missing,
            "cpuUnready": usage.unready, "memoryUtilizations": usage.memory,
            "memoryMissing": usage.memory_missing,
            "backlog": total, "topics": topics_out, "missing": missing,
        }

    def publish(self, key: str, cr: dict[str, Any], model: Any, trigger: str) -> None:
        try:
            signal = self.sample(key, cr, model, trigger)
            data = events.encode_record(events.PARSED_SCALE_SIGNAL, signal)
            self.producer.send_async(data, _log_failure(key), partition_key=key)
            self.published += 1
            SIGNALS.labels(trigger).inc()
        except Exception as error:
            log.error("sampling failed", extra={"key": key, "error": str(error)})

    def _backlog(self, topic: str, subscription: str) -> tuple[int | None, str | None]:
        handle = (topic, subscription)
        reading = self.readings.get(handle)
        probe = self.probes.get(topic)
        if reading is not None and reading.backlog == 0 and probe is not None and \
                not probe.fired and probe.armed_at <= reading.at and \
                time.monotonic() - reading.at < RESYNC_SECONDS:
            return 0, None  # nothing arrived since it was 0: the probe would have fired
        result = self.backlog_reader.backlog(topic, subscription)
        if result.backlog is not None:
            self.readings[handle] = Reading(result.backlog, time.monotonic())
        return result.backlog, result.missing

    # -- probes (managed by the run_until thread only) ----------------------------------------

    def _arm(self, topic: str) -> None:
        probe = Probe(time.monotonic())

        def fire(_reader: Any, _message: Any) -> None:
            probe.fired = True

        try:
            count = self.backlog_reader.partitions(topic)
            names = [f"{topic}-partition-{i}" for i in range(count)] if count else [topic]
            probe.readers = [self.client.create_reader(name, pulsar.MessageId.latest,
                                                       receiver_queue_size=1, reader_listener=fire)
                             for name in names]
        except Exception as error:  # a topic that does not exist yet: the tick reads it
            _close_all(probe.readers)
            log.info("probe not armed", extra={"topic": topic, "error": str(error)})
            self.rearm_at[topic] = time.monotonic() + self.rearm_seconds
            return
        self.probes[topic] = probe

    def watch_probes(self) -> None:
        """Sample the CRs of topics whose probe fired; arm probes for new topics and re-arm
        those whose pause is over; drop probes of topics no longer read.

        A topic with steady traffic would fire at every re-arm: its pause doubles each time
        it fires that soon, up to the tick interval (the tick reads it anyway), and falls back
        once it stays quiet. Bursts out of quiet, the case that matters, stay immediate."""
        now = time.monotonic()
        fired = [t for t, probe in self.probes.items() if probe.fired]
        for topic in fired:
            probe = self.probes.pop(topic)
            _close_all(probe.readers)
            pause = self.pause.get(topic, self.rearm_seconds)
            pause = min(pause * 2, self.interval) if now - probe.armed_at < pause \
                else self.rearm_seconds
            self.pause[topic] = pause
            self.rearm_at[topic] = now + pause
        with self._lock:
            keys = {k for t in fired for k in self.topic_keys.get(t, ())} | self.deferred
            crs = {k: self.crs[k] for k in keys if k in self.crs}
        self.deferred = set()
        for key, cr in crs.items():
            if now - self.last_burst.get(key, 0) < BURST_DEBOUNCE_SECONDS:
                self.deferred.add(key)  # sampled a moment ago: sample again once allowed
                continue
            self.last_burst[key] = now
            try:
                model = models.parse_resource(cr)
            except ValidationError:
                continue
            self.publish(key, cr, model, "burst")
        if crs and self.producer is not None:
            self.producer.flush()
        with self._lock:
            wanted = set(self.topic_keys)
        for topic in set(self.probes) - wanted:
            _close_all(self.probes.pop(topic).readers)
        for topic in wanted - set(self.probes):
            if self.rearm_at.get(topic, 0) <= now:
                self.rearm_at.pop(topic, None)
                self._arm(topic)


def _close_all(readers: list[Any]) -> None:
    for reader in readers:
        try:
            reader.close()
        except Exception:
            log.debug("reader close failed", exc_info=True)


def _log_failure(key: str) -> Callable[[Any, Any], None]:
    def done(result: Any, _message_id: Any) -> None:
        if result != pulsar.Result.Ok:
            log.error("scale signal not published", extra={"key": key, "result": str(result)})
    return done


def _now_datetime() -> datetime:
    return datetime.now()
