"""The scaler: a Key_Shared consumer of scale-signals that decides replicas as the HPA does
(fmesh_events.scale.hpa), writes them through the CR's /scale subresource, and publishes every
decision, with its inputs and reason, to scale-decisions.

The stabilization windows and rate policies need the recent past of each key. It is not kept in
the operator's memory alone: every scaler tails scale-decisions from an hour back, so a
restarted scaler, or the one a key moves to, decides with the same history (no flapping).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pulsar
from kubernetes import client
from prometheus_client import Counter
from pydantic import ValidationError

from fmesh_events import events, models
from fmesh_events.scale import hpa
from fmesh_events.scale import spec as scale_spec
from fmesh_events.scale.sampler import BACKLOG_UNKNOWN

log = logging.getLogger("fmesh_events.scale")

DECISIONS = Counter("fmesh_scale_decisions_total", "Scale decisions", ["action", "applied"])
SUBSCRIPTION = "scale"
HISTORY_SECONDS = 3900  # the longest window (3600 s) and policy period (1800 s), with margin
WRITER = "fmesh-events scaler"
CONFLICT_ATTEMPTS = 5  # reads and decisions per signal when /scale answers 409
STATUS_REFRESH_MS = 60_000  # a new reason alone refreshes status.autoscaling at most this often


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).replace(microsecond=0).isoformat() \
        .replace("+00:00", "Z")


def _parse_ms(value: str | None) -> float:
    if not value:
        return 0.0
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000


def _ms(value: Any) -> float:
    return value.timestamp() * 1000 if isinstance(value, datetime) else float(value)


SIGNAL_VERSION = 1
SCALABLE_KINDS = ("Function", "Source", "Sink")


def decode_signal(data: bytes) -> dict[str, Any]:
    """A scale signal, or events.Undecodable: beyond decoding, a version this scaler knows, a
    key that names a scalable CR, and no negative count."""
    signal = events.decode_record(events.PARSED_SCALE_SIGNAL, data, newest=SIGNAL_VERSION)
    events.check_key(signal.get("key"), SCALABLE_KINDS)
    counts = ("currentReplicas", "readyReplicas", "cpuMissing", "cpuUnready", "memoryMissing")
    if any(signal[c] < 0 for c in counts) or (signal["backlog"] or 0) < 0:
        raise events.Undecodable("not a ScaleSignal: a negative count")
    return signal


def signal_inputs(signal: dict[str, Any], current: int, now: float) -> hpa.Inputs:
    """The HPA's inputs: the signal's metrics, with the replicas the CR has now."""
    return hpa.Inputs(
        current=current, now=now, cpu_utilizations=tuple(signal["cpuUtilizations"]),
        cpu_missing=signal["cpuMissing"], cpu_unready=signal["cpuUnready"],
        memory_utilizations=tuple(signal["memoryUtilizations"]),
        memory_missing=signal["memoryMissing"], backlog=signal["backlog"],
        cpu_available=signal["cpuServed"], memory_available=signal["cpuServed"],
        backlog_missing=backlog_missing(signal))


def backlog_missing(signal: dict[str, Any]) -> str | None:
    """Why the signal's backlog is unknown, as the sampler said it (every cause, in order)."""
    if signal["backlog"] is not None:
        return None
    causes = [m for m in signal["missing"] if m.startswith(BACKLOG_UNKNOWN)]
    if not causes:
        return None
    return BACKLOG_UNKNOWN + "; ".join(c[len(BACKLOG_UNKNOWN):] for c in causes)


class History:
    """Per key: past recommendations (for the windows) and replica changes (for policies)."""

    def __init__(self) -> None:
        self.recommendations: dict[str, list[tuple[float, int]]] = defaultdict(list)
        self.changes: dict[str, list[tuple[float, int]]] = defaultdict(list)
        self.lock = threading.Lock()

    def add(self, record: dict[str, Any]) -> None:
        at = _ms(record["time"]) / 1000
        key = record["key"]
        with self.lock:
            self.recommendations[key].append((at, int(record["recommendation"])))
            change = int(record["desiredReplicas"]) - int(record["currentReplicas"])
            if record["applied"] and change:
                self.changes[key].append((at, change))
            self._prune(key, at)

    def _prune(self, key: str, now: float) -> None:
        for table in (self.recommendations, self.changes):
            rows = table[key]
            while rows and rows[0][0] < now - HISTORY_SECONDS:
                rows.pop(0)

    def of(self, key: str) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
        with self.lock:
            return list(self.recommendations[key]), list(self.changes[key])

    def forget(self, key: str) -> None:
        with self.lock:
            self.recommendations.pop(key, None)
            self.changes.pop(key, None)


class Scaler:
    def __init__(self, api: client.ApiClient, pulsar_client: pulsar.Client, topic: Any,
                 name: str, subscription: str = SUBSCRIPTION) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.client = pulsar_client
        self.topic = topic
        self.name = name
        self.subscription = subscription
        self.history = History()
        self.consumer: Any = None
        self.decisions: Any = None
        self.dead_letters: Any = None
        self.tail: Any = None
        self.handled = 0
        self.conflicts = 0  # /scale writes refused with 409 and decided again
        self.caught_up = threading.Event()
        models.allow_deep_objects()  # read back whatever the API server stores

    def open(self) -> None:
        self.decisions = self.client.create_producer(
            self.topic(events.SCALE_DECISIONS), batching_enabled=False)
        self.dead_letters = self.client.create_producer(self.topic(events.SCALE_DLQ),
                                                        batching_enabled=False)
        self.tail = self.client.create_reader(self.topic(events.SCALE_DECISIONS),
                                              pulsar.MessageId.earliest)
        self.tail.seek(int((time.time() - HISTORY_SECONDS) * 1000))
        self.consumer = self.client.subscribe(
            self.topic(events.SCALE_SIGNALS), self.subscription,
            consumer_type=pulsar.ConsumerType.KeyShared, consumer_name=self.name,
            initial_position=pulsar.InitialPosition.Latest, receiver_queue_size=100,
            key_shared_policy=pulsar.ConsumerKeySharedPolicy(
                key_shared_mode=pulsar.KeySharedMode.AutoSplit, allow_out_of_order_delivery=False))

    def close(self) -> None:
        for closable in (self.consumer, self.tail, self.decisions, self.dead_letters):
            if closable is not None:
                try:
                    closable.close()
                except Exception:
                    log.debug("close failed", exc_info=True)

    def run_until(self, stop: threading.Event) -> None:
        tailing = threading.Thread(target=self._tail, args=(stop,), daemon=True, name="scale-tail")
        tailing.start()
        while not self.caught_up.wait(0.2):  # decide only with the whole window known
            if stop.is_set():
                return
        while not stop.is_set():
            try:
                message = self.consumer.receive(timeout_millis=500)
            except pulsar.Timeout:
                continue
            try:
                self.handle(message)
            except Exception:  # Pulsar or the API server gone mid-way: redelivered
                log.exception("scale decision failed", extra={"message_id": str(message.message_id())})
                self.consumer.negative_acknowledge(message)

    def _tail(self, stop: threading.Event) -> None:
        """Other scalers' decisions (and ours from an earlier life) into the history."""
        while not stop.is_set():
            try:
                if not self.caught_up.is_set() and not self.tail.has_message_available():
                    self.caught_up.set()
                    continue
                message = self.tail.read_next(timeout_millis=500)
            except pulsar.Timeout:
                continue
            except Exception:
                if stop.is_set():
                    return
                log.warning("scale-decisions tail failed; retrying", exc_info=True)
                stop.wait(1)
                continue
            try:
                record = events.decode_record(events.PARSED_SCALE_DECISION, message.data())
            except Exception:
                log.warning("undecodable scale decision skipped",
                            extra={"message_id": str(message.message_id())})
                continue
            if record.get("scaler") != self.name:  # our own are added when decided
                self.history.add(record)

    # -- one signal --------------------------------------------------------------------------
    def handle(self, message: Any) -> None:
        try:
            signal = decode_signal(message.data())
        except Exception as undecodable:
            log.error("undecodable scale signal dead-lettered",
                      extra={"message_id": str(message.message_id()), "error": str(undecodable)})
            self.dead_letters.send(message.data(), properties={
                "reason": str(undecodable)[:2000], "origin-topic": message.topic_name(),
                "origin-message-id": str(message.message_id())},
                partition_key=message.partition_key() or "unknown")
            self.consumer.acknowledge(message)
            return
        key = signal["key"]
        kind, namespace, name = key.split("/", 2)
        plural = models.PLURALS[kind]
        # Read, decide, write /scale conditional on the version read. A 409 means the CR moved
        # in between (the reconciler writing status, most often): read it again and decide
        # again, as client-go's RetryOnConflict does, rather than drop the signal.
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            read = self._read(namespace, plural, name)
            if read is None:
                self.history.forget(key)
                self.consumer.acknowledge(message)
                return
            cr, model = read
            wanted = scale_spec.scale_spec(model)
            if not wanted.enabled:
                self.consumer.acknowledge(message)
                return
            current = model.spec.replica_count
            now = time.time()
            recommendations, changes = self.history.of(key)
            decision = hpa.decide(wanted, signal_inputs(signal, current, now), recommendations,
                                  changes)
            applied, error = False, None
            version = cr["metadata"]["resourceVersion"]
            if decision.desired == current:
                break
            try:
                # Conditional on the version decided on: a spec change in between (autoscaling
                # turned off, say) wins, and the decision is made again on what it says now.
                scaled = self.custom.patch_namespaced_custom_object_scale(
                    models.GROUP, models.VERSION, namespace, plural, name,
                    {"metadata": {"resourceVersion": version},
                     "spec": {"replicas": decision.desired}})
                version = scaled["metadata"]["resourceVersion"]
                applied = True
                break
            except client.ApiException as failure:
                error = f"/scale refused ({failure.status}): {failure.reason}"
                if failure.status != 409:
                    break
                self.conflicts += 1
                log.debug("/scale conflict; deciding again",
                          extra={"key": key, "attempt": attempt, "version": version})
        record = self._record(signal, message, decision, wanted, applied, error, now)
        self.history.add(record)
        decision_id = str(self.decisions.send(
            events.encode_record(events.PARSED_SCALE_DECISION, record), partition_key=key))
        self._write_status(cr, version, plural, decision, record, decision_id, applied)
        self.consumer.acknowledge(message)
        self.handled += 1
        DECISIONS.labels(decision.action, str(applied).lower()).inc()
        log.info("scale decision", extra={"key": key, "message_id": str(message.message_id()),
                                          "current": current, "desired": decision.desired,
                                          "applied": applied, "reason": decision.reason})

    def _read(self, namespace: str, plural: str, name: str,
              ) -> tuple[dict[str, Any], models.Function | models.Source | models.Sink] | None:
        """The CR and its model; None when it is gone or is not a scalable kind it parses as."""
        try:
            cr = self.custom.get_namespaced_custom_object(models.GROUP, models.VERSION, namespace,
                                                          plural, name)
            model = models.parse_resource(cr)
        except client.ApiException as missing:
            if missing.status != 404:
                raise
            return None
        except ValidationError:
            return None
        if not isinstance(model, models.Function | models.Source | models.Sink):
            return None
        return cr, model

    def _record(self, signal: dict[str, Any], message: Any, decision: hpa.Decision,
                wanted: scale_spec.ScaleSpec, applied: bool, error: str | None,
                now: float) -> dict[str, Any]:
        cpu = signal["cpuUtilizations"]
        memory = signal["memoryUtilizations"]
        return {
            "decisionVersion": 1, "key": signal["key"], "time": int(now * 1000),
            "signalMessageId": str(message.message_id()), "trigger": signal["trigger"],
            "currentReplicas": decision.current, "recommendation": decision.recommendation,
            "desiredReplicas": decision.desired, "cpuRecommendation": decision.cpu,
            "memoryRecommendation": decision.memory, "backlogRecommendation": decision.backlog,
            "cpuUtilization": sum(cpu) / len(cpu) if cpu else None,
            "memoryUtilization": sum(memory) / len(memory) if memory else None,
            "backlog": signal["backlog"], "minReplicas": wanted.min_replicas,
            "maxReplicas": wanted.max_replicas, "action": decision.action, "applied": applied,
            "reason": decision.reason, "error": error, "scaler": self.name,
        }

    def _write_status(self, cr: dict[str, Any], version: str, plural: str,
                      decision: hpa.Decision, record: dict[str, Any], decision_id: str,
                      applied: bool) -> None:
        """status.autoscaling says the scaler writes replicas, and why they are what they are.
        Written when the decision moves, not on every signal (each write is a CR event)."""
        before = (cr.get("status") or {}).get("autoscaling") or {}
        cpu = record["cpuUtilization"]
        status = {
            "writer": WRITER, "desiredReplicas": decision.desired, "lastDecision": decision.reason,
            "lastDecisionTime": _iso(record["time"]), "lastDecisionMessageId": decision_id,
            "backlog": record["backlog"], "cpuUtilizationPercent": round(cpu) if cpu is not None else None,
        }
        if applied:
            status["lastScaleTime"] = status["lastDecisionTime"]
        elif before.get("lastScaleTime"):
            status["lastScaleTime"] = before["lastScaleTime"]
        unchanged = before.get("writer") == WRITER and \
            before.get("desiredReplicas") == decision.desired and not applied
        recent = record["time"] - _parse_ms(before.get("lastDecisionTime")) < STATUS_REFRESH_MS
        if unchanged and (before.get("lastDecision") == decision.reason or recent):
            return
        namespace, name = cr["metadata"]["namespace"], cr["metadata"]["name"]
        for _attempt in range(CONFLICT_ATTEMPTS):
            try:  # conditional on the version decided on (or our /scale write's): never stale
                self.custom.patch_namespaced_custom_object_status(
                    models.GROUP, models.VERSION, namespace, plural, name,
                    {"metadata": {"resourceVersion": version}, "status": {"autoscaling": status}})
                return
            except client.ApiException as error:
                if error.status != 409:
                    log.warning("could not write status.autoscaling",
                                extra={"key": record["key"], "error": str(error)})
                    return
            # 409: the CR moved on. The status still tells the truth while its replicas are the
            # ones decided; when they are not, a newer decision (or a user) owns it.
            read = self._read(namespace, plural, name)
            if read is None:
                return
            now_cr, model = read
            if model.spec.replica_count != decision.desired:
                return
            version = now_cr["metadata"]["resourceVersion"]
