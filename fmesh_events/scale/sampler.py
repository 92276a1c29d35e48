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
- Each CR's backlog is read, and its probes listen, on the cluster its spec.pulsar names, with
  the credentials it names (fmesh_events.pulsar_identity): one session per cluster and
  identity (pulsar_client.ClusterPool), the operator's own when they are the same, closed
  once no CR names it. A cluster that refuses or does not answer makes the backlog unknown,
  with the reason in words ("backlog unknown: cluster X refused the token"); the others go on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pulsar
from apscheduler.schedulers.background import BackgroundScheduler
from kubernetes import client
from prometheus_client import Counter
from pydantic import ValidationError

from fmesh_events import events, models, pulsar_identity
from fmesh_events.models import inputs
from fmesh_events.pulsar_client import ClusterPool, ClusterSession
from fmesh_events.scale import spec as scale_spec
from fmesh_events.scale.backlog import BacklogReader
from fmesh_events.scale.usage import PodUsage, UsageSource

log = logging.getLogger("fmesh_events.scale")

SIGNALS = Counter("fmesh_scale_signals_total", "Scale signals published", ["trigger"])
KINDS = ("Function", "Source", "Sink")
RESYNC_SECONDS = 300.0  # every topic is read at least this often, probe or not
BURST_DEBOUNCE_SECONDS = 1.0
BACKLOG_UNKNOWN = "backlog unknown: "  # how every backlog reason starts (the scaler quotes it)

Handle = tuple[str, str]
"""(session key, topic): a topic on one cluster, read as one identity."""


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
                 clusters: ClusterPool, usage: UsageSource, namespaces: list[str],
                 interval_seconds: float = 15.0, rearm_seconds: float = 5.0) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.client = pulsar_client
        self.topic = topic
        self.clusters = clusters
        self.readers: dict[str, BacklogReader] = {}  # session key -> its reader
        self.where: dict[str, ClusterSession | str] = {}  # CR key -> its cluster, or why none
        self.usage = usage
        self.namespaces = namespaces
        self.interval = interval_seconds
        self.rearm_seconds = rearm_seconds
        self.producer: Any = None
        self.crs: dict[str, dict[str, Any]] = {}  # key -> CR, as of the last tick
        self.topic_keys: dict[Handle, set[str]] = {}  # input topic -> keys of CRs reading it
        self.sessions: dict[str, ClusterSession] = {}  # session key -> session, as of the tick
        self.probes: dict[Handle, Probe] = {}
        self.arming: dict[Handle, Future[Probe | None]] = {}
        self.rearm_at: dict[Handle, float] = {}
        self.pause: dict[Handle, float] = {}  # current re-arm pause (grows on busy topics)
        self.deferred: set[str] = set()  # keys whose burst sample waits out the debounce
        # Keys sampled on a burst's first message, to sample once more a moment later: a
        # burst still arriving then (a slow producer, a cold broker) is seen whole without
        # waiting for the tick, and the probe, re-armed at the end, may see nothing new.
        self.follow_up: dict[str, float] = {}
        self.readings: dict[tuple[str, str, str], Reading] = {}
        self.last_burst: dict[str, float] = {}
        self.published = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="sample")
        # Arming a probe waits for the topic's broker: on a cluster that is away, that wait
        # must not hold up the other clusters' probes or the burst samples.
        self._arm_pool = ThreadPoolExecutor(2, thread_name_prefix="probe")
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

    @property
    def admin_calls(self) -> int:
        """Admin calls of every cluster's reader (the benchmark reports calls per minute)."""
        return sum(reader.calls for reader in list(self.readers.values()))

    def close(self) -> None:
        for probe in list(self.probes.values()):
            _close_all(probe.readers)
        self.probes.clear()
        self._arm_pool.shutdown(wait=False, cancel_futures=True)
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
        topic_keys: dict[Handle, set[str]] = {}
        where: dict[str, ClusterSession | str] = {}
        sessions: dict[str, ClusterSession] = {}
        reads: dict[tuple[str, str, str], dict[str, str] | None] = {}  # this tick's reads
        for key, (cr, model) in list(crs.items()):
            try:
                found = self._cluster_of(cr["metadata"]["namespace"], model, reads)
                where[key] = found
                if isinstance(found, str):
                    continue
                sessions[found.key] = found
                topics = self._topics_of(model, self._reader(found))
            except Exception as error:  # one odd CR must not stop the tick for all others
                log.error("could not resolve the input topics; not sampled",
                          extra={"key": key, "error": str(error)})
                del crs[key]
                continue
            for topic in topics:
                topic_keys.setdefault((found.key, topic), set()).add(key)
        with self._lock:
            self.crs = {key: cr for key, (cr, _m) in crs.items()}
            self.where = where
            self.sessions = sessions
            self.topic_keys = topic_keys
            # Clusters no CR names any more: their sessions close (probes on them fail and
            # are dropped by watch_probes, which no longer wants them).
            for gone in set(self.readers) - set(sessions):
                del self.readers[gone]
            self.clusters.retain(sessions)
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

    def _topics_of(self, model: Any, reader: BacklogReader) -> list[str]:
        wanted = inputs.inputs(model)
        topics = list(wanted.topics)
        for pattern in wanted.patterns:
            topics += reader.resolve(pattern)
        return sorted(set(topics))

    # -- which cluster -----------------------------------------------------------------------
    def _read(self, kind: str, namespace: str, name: str,
              reads: dict[tuple[str, str, str], dict[str, str] | None]) -> dict[str, str] | None:
        """A ConfigMap's data, or a Secret's decoded; None when missing. Read once a tick."""
        handle = (kind, namespace, name)
        if handle not in reads:
            try:
                if kind == "ConfigMap":
                    found = self.core.read_namespaced_config_map(name, namespace)
                    reads[handle] = dict(found.data or {})
                else:
                    found = self.core.read_namespaced_secret(name, namespace)
                    reads[handle] = pulsar_identity.decode_secret_data(found.data)
            except client.ApiException as error:
                if error.status not in (403, 404):
                    raise
                reads[handle] = None
        return reads[handle]

    def _cluster_of(self, namespace: str, model: Any,
                    reads: dict[tuple[str, str, str], dict[str, str] | None],
                    ) -> ClusterSession | str:
        """The session on the cluster `model`'s spec.pulsar names, as whom it names; or why
        there is none. Secrets are read only when the spec names them."""
        if scale_spec.scale_spec(model).backlog_target is None:
            return "no backlog target"
        pulsar_spec = model.spec.pulsar
        try:
            config = self._read("ConfigMap", namespace, pulsar_spec.pulsar_config, reads)
            secrets = {name: self._read("Secret", namespace, name, reads)
                       for name in pulsar_identity.secrets_named(pulsar_spec)}
            identity = pulsar_identity.identity_of(pulsar_spec, config, secrets, namespace)
        except pulsar_identity.IdentityError as error:
            return str(error)
        return self.clusters.session(identity)

    def _reader(self, session: ClusterSession) -> BacklogReader:
        reader = self.readers.get(session.key)
        if reader is None or reader.admin is not session.admin:
            reader = self.readers[session.key] = BacklogReader(session.admin)
        return reader

    # -- one sample --------------------------------------------------------------------------
    def sample(self, key: str, cr: dict[str, Any], model: Any, trigger: str) -> dict[str, Any]:
        wanted = scale_spec.scale_spec(model)
        missing: list[str] = list(wanted.unsupported)
        topics_out: list[dict[str, Any]] = []
        total: int | None = None
        if wanted.backlog_target is not None:
            with self._lock:
                found = self.where.get(key)
            if found is None:  # a CR the last tick did not list: find its cluster now
                found = self._cluster_of(cr["metadata"]["namespace"], model, {})
            if isinstance(found, str):
                missing.append(BACKLOG_UNKNOWN + found)
            else:
                reader = self._reader(found)
                subscription = inputs.subscription_name(model)
                total = 0
                reasons: list[str] = []
                for topic in self._topics_of(model, reader):
                    value, why = self._backlog(found.key, reader, topic, subscription)
                    if value is None:  # one topic unknown: the total is unknown (no scale-down)
                        reasons.append(why or f"no backlog for {topic}")
                        total = None
                        continue
                    topics_out.append({"topic": topic, "backlog": value})
                    if total is not None:
                        total += value
                # A refusing cluster says so once, not once per topic.
                missing += [BACKLOG_UNKNOWN + r for r in dict.fromkeys(reasons)]
                if not topics_out and not reasons:
                    missing.append(BACKLOG_UNKNOWN + "no input topic to read a backlog from")
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

    def _backlog(self, session_key: str, reader: BacklogReader, topic: str,
                 subscription: str) -> tuple[int | None, str | None]:
        handle = (session_key, topic, subscription)
        reading = self.readings.get(handle)
        probe = self.probes.get((session_key, topic))
        if reading is not None and reading.backlog == 0 and probe is not None and \
                not probe.fired and probe.armed_at <= reading.at and \
                time.monotonic() - reading.at < RESYNC_SECONDS:
            return 0, None  # nothing arrived since it was 0: the probe would have fired
        result = reader.backlog(topic, subscription)
        if result.backlog is not None:
            self.readings[handle] = Reading(result.backlog, time.monotonic())
        return result.backlog, result.missing

    # -- probes (managed by the run_until thread only) ----------------------------------------

    def _arm(self, handle: Handle, session: ClusterSession, reader: BacklogReader,
             ) -> Probe | None:
        """Readers at the end of the topic (each partition) on its cluster; None when they
        cannot be had now (a topic that does not exist yet, a cluster away): the tick reads
        it meanwhile. Runs on the probe threads."""
        _session_key, topic = handle
        probe = Probe(time.monotonic())

        def fire(_reader: Any, _message: Any) -> None:
            probe.fired = True

        try:
            why = reader.refused()
            if why is not None:
                raise RuntimeError(why)
            count = reader.partitions(topic)
            names = [f"{topic}-partition-{i}" for i in range(count)] if count else [topic]
            pulsar_client = session.client()
            probe.readers = [pulsar_client.create_reader(name, pulsar.MessageId.latest,
                                                         receiver_queue_size=1,
                                                         reader_listener=fire)
                             for name in names]
        except Exception as error:
            _close_all(probe.readers)
            log.info("probe not armed", extra={"topic": topic, "cluster": session.describe(),
                                               "error": type(error).__name__})
            return None
        return probe

    def watch_probes(self) -> None:
        """Sample the CRs of topics whose probe fired; arm probes for new topics and re-arm
        those whose pause is over; drop probes of topics no longer read, and close the
        sessions of clusters no CR names any more.

        A topic with steady traffic would fire at every re-arm: its pause doubles each time
        it fires that soon, up to the tick interval (the tick reads it anyway), and falls back
        once it stays quiet. Bursts out of quiet, the case that matters, stay immediate."""
        now = time.monotonic()
        for handle, future in list(self.arming.items()):
            if not future.done():
                continue
            del self.arming[handle]
            armed = None if future.cancelled() or future.exception() else future.result()
            if armed is None:
                self.rearm_at[handle] = now + self.rearm_seconds
            else:
                self.probes[handle] = armed
        fired = [h for h, probe in self.probes.items() if probe.fired]
        for handle in fired:
            probe = self.probes.pop(handle)
            _close_all(probe.readers)
            pause = self.pause.get(handle, self.rearm_seconds)
            pause = min(pause * 2, self.interval) if now - probe.armed_at < pause \
                else self.rearm_seconds
            self.pause[handle] = pause
            self.rearm_at[handle] = now + pause
        with self._lock:
            burst = {k for h in fired for k in self.topic_keys.get(h, ())}
            due = {k for k, at in self.follow_up.items() if at <= now}
            keys = burst | due | self.deferred
            crs = {k: self.crs[k] for k in keys if k in self.crs}
        self.deferred = set()
        for key in due:
            del self.follow_up[key]
        for key, cr in crs.items():
            if now - self.last_burst.get(key, 0) < BURST_DEBOUNCE_SECONDS:
                self.deferred.add(key)  # sampled a moment ago: sample again once allowed
                continue
            self.last_burst[key] = now
            if key in burst:
                self.follow_up[key] = now + BURST_DEBOUNCE_SECONDS
            try:
                model = models.parse_resource(cr)
            except ValidationError:
                continue
            self.publish(key, cr, model, "burst")
        if crs and self.producer is not None:
            self.producer.flush()
        with self._lock:
            wanted = set(self.topic_keys)
            sessions = dict(self.sessions)
        for handle in set(self.probes) - wanted:
            _close_all(self.probes.pop(handle).readers)
        for handle in wanted - set(self.probes) - set(self.arming):
            session = sessions.get(handle[0])
            if session is not None and self.rearm_at.get(handle, 0) <= now:
                self.rearm_at.pop(handle, None)
                self.arming[handle] = self._arm_pool.submit(
                    self._arm, handle, session, self._reader(session))


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
