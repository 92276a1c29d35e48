"""The reliability suite's two halves: a churn that writes Functions, Sources and Sinks the way
users do (creates, updates, `kubectl scale`, deletes) while recording what the API server
accepted, and the checks that hold after any fault (issue 8):

- converged: every child equals a fresh render of its CR, nothing orphaned, every CR Ready
  on its latest generation (the poison CR dead-lettered with a readable status);
- complete: every change the API server accepted is on resource-events (exactly, or covered
  by the RESYNC of a relist after 410 Gone);
- consistent: each CR's history (the history command's own timeline) tells a possible story;
- exclusive: no key reconciled by two processes at once.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from fmesh_events import devstack, events, history, models, pulsar_client
from fmesh_events.events import ChangeEvent, EventType
from fmesh_events.history.timeline import Entry, What
from fmesh_events.reconcile import render
from fmesh_events.settings import Settings
from tests.examples import example
from tests.integration.watch_helpers import read_messages

GROUP, VERSION = "compute.functionmesh.io", "v1alpha1"
PLURALS = {"Function": "functions", "Source": "sources", "Sink": "sinks"}
KINDS = ("Function",) * 8 + ("Source", "Sink")  # mostly Functions, as in real clusters
POISON = "poison"
POISON_KEY_NAME = "poison"
PULSAR_CONFIG = "test-pulsar"


# ---------------------------------------------------------------------------- the operator


def delete_namespace(stack: devstack.StackInfo, namespace: str, timeout: int = 300) -> None:
    """Delete a churn's namespace and wait until it is gone: tearing down hundreds of CRs and
    their children loads the control plane, which must not count against the next test."""
    stack.kubectl("delete", "namespace", namespace, "--wait=true", f"--timeout={timeout}s",
                  check=False, timeout=timeout + 30)


# ---------------------------------------------------------------------------- the churn


@dataclass(frozen=True)
class Write:
    """One write the API server accepted."""

    at: float
    key: str
    op: str  # create, update, scale, delete
    uid: str
    resource_version: str
    generation: int | None


def _body(kind: str, name: str, serial: int, secret: str) -> dict[str, Any]:
    file = {"Function": "function.yaml", "Source": "source.yaml", "Sink": "sink.yaml"}[kind]
    body = example(file, kind)
    body["metadata"] = {"name": name, "labels": {"churn": "yes"}}
    spec = body["spec"]
    for field_name in ("autoscaling", "minReplicas", "maxReplicas"):
        spec.pop(field_name, None)  # replicas are the churn's to set; the scaler has its tests
    spec["replicas"] = 1
    config_field = {"Function": "funcConfig", "Source": "sourceConfig", "Sink": "sinkConfig"}[kind]
    spec[config_field] = {**(spec.get(config_field) or {}), "serial": serial, "password": secret}
    return body


class Churn:
    """Creates, updates, scales and deletes CRs over a pool of names at a steady rate (writes
    per second, shared by `writers` threads, each over its own part of the pool), recording
    every write the API server accepted (and counting the refused ones)."""

    def __init__(self, api: k8s.ApiClient, namespace: str, secret: str, pool: int = 200,
                 rate: float = 4.0, seed: int = 1, writers: int = 1) -> None:
        self.objects = k8s.CustomObjectsApi(api)
        self.namespace = namespace
        self.secret = secret
        self.names = [f"c{i:03d}" for i in range(pool)]
        self.rate = rate
        self.writers = writers
        self.random = random.Random(seed)
        self.live: dict[str, tuple[str, str]] = {}  # name -> (kind, uid)
        self.writes: list[Write] = []
        self.refused: Counter[str] = Counter()
        self.serial = itertools.count()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    # one operation ------------------------------------------------------------------------
    def _key(self, kind: str, name: str) -> str:
        return f"{kind}/{self.namespace}/{name}"

    def _record(self, kind: str, name: str, op: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        self.writes.append(Write(time.time(), self._key(kind, name), op, meta.get("uid", ""),
                                 str(meta.get("resourceVersion", "")), meta.get("generation")))

    def create(self, name: str, kind: str | None = None) -> None:
        kind = kind or self.random.choice(KINDS)
        body = _body(kind, name, next(self.serial), self.secret)
        obj = self.objects.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURALS[kind], body)
        self.live[name] = (kind, obj["metadata"]["uid"])
        self._record(kind, name, "create", obj)

    def step(self, rng: random.Random | None = None, names: list[str] | None = None) -> None:
        """One write on a random name (of `names`, the part of the pool of one writer)."""
        rng = rng or self.random
        name = rng.choice(names or self.names)
        try:
            if name not in self.live:
                self.create(name, rng.choice(KINDS))
                return
            kind = self.live[name][0]
            roll = rng.random()
            if roll < 0.45:
                config = {"Function": "funcConfig", "Source": "sourceConfig",
                          "Sink": "sinkConfig"}[kind]
                obj = self.objects.patch_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURALS[kind], name,
                    {"spec": {config: {"serial": next(self.serial)}}})
                self._record(kind, name, "update", obj)
            elif roll < 0.75:
                obj = self.objects.patch_namespaced_custom_object_scale(
                    GROUP, VERSION, self.namespace, PLURALS[kind], name,
                    {"spec": {"replicas": rng.randint(1, 3)}})
                self._record(kind, name, "scale", obj)
            else:
                self.objects.delete_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURALS[kind], name)
                # The answer is a Status, not the object: the uid is the one created.
                self._record(kind, name, "delete", {"metadata": {"uid": self.live.pop(name)[1]}})
        except ApiException as error:
            self._refused(f"HTTP {error.status}")
            if error.status == 404:
                self.live.pop(name, None)
            elif error.status == 409 and name not in self.live:
                self.live[name] = self._find(name)
        except Exception as error:  # the API server is down: the write did not happen
            self._refused(type(error).__name__)

    def _refused(self, why: str) -> None:
        with self._lock:
            self.refused[why] += 1

    def _find(self, name: str) -> tuple[str, str]:
        for kind, plural in PLURALS.items():
            try:
                obj = self.objects.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, plural, name)
                return kind, obj["metadata"]["uid"]
            except ApiException:
                continue
        return "Function", ""

    # the thread ---------------------------------------------------------------------------
    def fill(self, count: int) -> None:
        """Create the first `count` CRs of the pool at once (the steady state churn works on)."""
        for name in self.names[:count]:
            self.create(name)

    def _run(self, part: int) -> None:
        rng = random.Random(self.random.random())
        names = self.names[part::self.writers]
        next_at = time.monotonic()
        while not self._stop.is_set():
            rate = self.rate  # once: the load test changes it from another thread
            if rate <= 0:  # paused
                self._stop.wait(0.2)
                next_at = time.monotonic()
                continue
            self.step(rng, names)
            period = self.writers / rate
            next_at = max(next_at + period, time.monotonic() - 1.0)  # no catch-up burst
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def start(self) -> Churn:
        self._threads = [threading.Thread(target=self._run, args=(part,), daemon=True,
                                          name=f"churn-{part}") for part in range(self.writers)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def summary(self) -> dict[str, Any]:
        return {"writes": len(self.writes), "by_op": dict(Counter(w.op for w in self.writes)),
                "refused": dict(self.refused), "live": len(self.live)}


# ---------------------------------------------------------------------------- the checks


def _custom(api: k8s.ApiClient, namespace: str) -> list[dict[str, Any]]:
    objects = k8s.CustomObjectsApi(api)
    out: list[dict[str, Any]] = []
    for plural in PLURALS.values():
        out += objects.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]
    return out


def _ready(cr: dict[str, Any]) -> dict[str, Any]:
    conditions = (cr.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), {})


def contains(desired: Any, existing: Any) -> bool:
    """True when every field of ``desired`` is in ``existing`` with the same value (quantities
    compared by value); fields the API server defaulted are ignored, list lengths must match."""
    if isinstance(desired, dict):
        return isinstance(existing, dict) and all(
            contains(value, existing.get(key)) for key, value in desired.items())
    if isinstance(desired, list):
        return (isinstance(existing, list) and len(desired) == len(existing)
                and all(contains(d, e) for d, e in zip(desired, existing, strict=True)))
    return render._same_scalar(desired, existing)


def divergences(api: k8s.ApiClient, namespace: str, poison: Iterable[str] = ()) -> list[str]:
    """What differs between the cluster and what the CRs say; empty when converged.

    Every StatefulSet and Service must equal a fresh render of its CR (render.py, the
    reconciler's own pure function), no child may outlive its CR, every CR must be Ready on
    its latest generation, and each poison CR must have given up with a readable message."""
    apps, core = k8s.AppsV1Api(api), k8s.CoreV1Api(api)
    sanitize = api.sanitize_for_serialization
    statefulsets = {s.metadata.name: sanitize(s)
                    for s in apps.list_namespaced_stateful_set(namespace).items}
    services = {s.metadata.name: sanitize(s)
                for s in core.list_namespaced_service(namespace).items}
    problems: list[str] = []
    wanted: set[tuple[str, str]] = set()
    poisoned = set(poison)
    for cr in _custom(api, namespace):
        meta = cr["metadata"]
        label = f"{cr['kind']}/{meta['name']}"
        if meta.get("deletionTimestamp"):
            problems.append(f"{label}: still deleting")
            continue
        ready = _ready(cr)
        if meta["name"] in poisoned:
            if ready.get("reason") != "ReconcileGaveUp" or "pulsarConfig" not in ready.get(
                    "message", ""):
                problems.append(f"{label}: poison CR without a readable gave-up status: {ready}")
            continue
        status = cr.get("status") or {}
        if status.get("observedGeneration") != meta.get("generation"):
            problems.append(f"{label}: observedGeneration {status.get('observedGeneration')} "
                            f"!= generation {meta.get('generation')}")
        if ready.get("status") != "True":
            problems.append(f"{label}: not Ready ({ready.get('message')})")
        model = models.parse_resource(cr)
        for desired in render.render_workload(model):  # type: ignore[arg-type]
            name = desired["metadata"]["name"]
            existing = (statefulsets if desired["kind"] == "StatefulSet" else services).get(name)
            wanted.add((desired["kind"], name))
            if existing is None:
                problems.append(f"{label}: {desired['kind']} {name} missing")
            elif not contains(desired["spec"], existing.get("spec")):
                problems.append(f"{label}: {desired['kind']} {name} differs from a fresh render")
            elif not contains(desired["metadata"].get("labels") or {},
                              (existing.get("metadata") or {}).get("labels") or {}):
                problems.append(f"{label}: {desired['kind']} {name} labels differ")
    for kind, children in (("StatefulSet", statefulsets), ("Service", services)):
        for name, child in children.items():
            owned = (child.get("metadata") or {}).get("ownerReferences")
            if owned and (kind, name) not in wanted and not child["metadata"].get(
                    "deletionTimestamp"):
                problems.append(f"{kind} {name}: orphan, its CR is gone")
    return problems


def wait_converged(api: k8s.ApiClient, namespace: str, poison: Iterable[str] = (),
                   timeout: float = 300) -> float:
    """Seconds until divergences() is empty; fails with the remaining ones after timeout."""
    started = last_shown = time.monotonic()
    problems: list[str] = []
    while time.monotonic() - started < timeout:
        problems = divergences(api, namespace, poison)
        if not problems:
            return time.monotonic() - started
        if time.monotonic() - last_shown > 15:
            last_shown = time.monotonic()
            print(f"[converge] {time.monotonic() - started:.0f}s: {len(problems)} left, "
                  f"e.g. {problems[:2]}")
        time.sleep(1)
    raise AssertionError(f"not converged after {timeout:.0f}s: {len(problems)} problems, "
                         f"e.g. {problems[:5]}")


@dataclass
class Completeness:
    exact: int = 0
    covered_by_resync: int = 0
    missing: list[Write] = field(default_factory=list)
    duplicates: int = 0
    resyncs: int = 0


def _rv(value: str) -> int:
    return int(value) if value.isdigit() else -1


def completeness(writes: list[Write], published: list[ChangeEvent]) -> Completeness:
    """Is every accepted write on resource-events?

    Exactly: the (key, resourceVersion) was published, or for a delete, a DELETED of that uid.
    Covered: the watcher relisted after the write (410 Gone or a checkpoint too old), and its
    RESYNC/DELETED of that key carries a later version: what a relist can promise."""
    out = Completeness()
    seen: Counter[tuple[str, str, str]] = Counter()
    deleted: set[tuple[str, str]] = set()
    later: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for event in published:
        seen[(event.key, event.resource_version, event.type.value)] += 1
        if event.type == EventType.DELETED:
            deleted.add((event.key, event.uid))
        if event.type == EventType.RESYNC:
            out.resyncs += 1
        if event.type in (EventType.RESYNC, EventType.DELETED):
            later[event.key].append((event.observed_time_ms / 1000, _rv(event.resource_version),
                                     event.uid))
    out.duplicates = sum(n - 1 for n in seen.values() if n > 1)
    by_key_rv = {(k, rv) for (k, rv, _t) in seen}
    for write in writes:
        if write.op == "delete":
            if (write.key, write.uid) in deleted:
                out.exact += 1
            else:
                out.missing.append(write)
        elif (write.key, write.resource_version) in by_key_rv:
            out.exact += 1
        elif any(rv >= _rv(write.resource_version) for _t, rv, _uid in later[write.key]):
            out.covered_by_resync += 1
        else:
            out.missing.append(write)
    return out


def story_problems(entries: Iterable[Entry], live: dict[str, dict[str, Any]],
                   poison_keys: Iterable[str] = ()) -> list[str]:
    """Does each CR's timeline, as the history command builds it, tell a possible story?

    Per object (uid): it starts with CREATED or RESYNC, nothing follows its DELETED, its
    resourceVersions only grow and its generations never go back. Per key at the end: a live
    CR's story ends on its current object and has a successful reconcile of its current
    generation; a gone CR's story ends deleted; the poison CR's ends dead-lettered."""
    problems: list[str] = []
    by_key: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        by_key[entry.key].append(entry)
    poison = set(poison_keys)
    for key, story in by_key.items():
        if key.split("/", 1)[0] not in PLURALS:
            continue
        state: dict[str, tuple[int, int, bool]] = {}  # uid -> (rv, generation, deleted)
        last_change: Entry | None = None
        for entry in story:
            if entry.source.value != "change" or "uid" not in entry.details:
                continue
            uid, rv = entry.details["uid"], _rv(str(entry.details.get("resourceVersion", "")))
            generation = entry.details.get("generation") or 0
            previous = state.get(uid)
            if previous is None:
                if entry.what not in (What.CREATED, What.RESYNC, What.DELETED):
                    problems.append(f"{key}: uid {uid[:8]} starts with {entry.what}")
            else:
                p_rv, p_gen, p_deleted = previous
                if p_deleted:
                    problems.append(f"{key}: {entry.what} after DELETED of uid {uid[:8]}")
                if rv < p_rv or (rv == p_rv and entry.what != What.RESYNC):
                    problems.append(f"{key}: resourceVersion {rv} after {p_rv}")
                if generation < p_gen:
                    problems.append(f"{key}: generation {generation} after {p_gen}")
            state[uid] = (rv, generation, entry.what == What.DELETED)
            last_change = entry
        if last_change is None:
            continue
        current = live.get(key)
        if current is None:
            if last_change.what != What.DELETED:
                problems.append(f"{key}: gone, but its story ends {last_change.what}")
            continue
        meta = current["metadata"]
        if last_change.details.get("uid") != meta["uid"]:
            problems.append(f"{key}: story ends on another object than the live one")
        outcomes = [e for e in story if e.source.value == "reconcile"]
        if key in poison:
            if not outcomes or outcomes[-1].what != What.DEAD_LETTERED:
                problems.append(f"{key}: poison CR's story does not end dead-lettered")
        elif not any(e.what == What.RECONCILED
                     and e.details.get("generation") == meta.get("generation")
                     for e in outcomes):
            problems.append(f"{key}: no successful reconcile of generation "
                            f"{meta.get('generation')}")
    return problems


def history_entries(settings: Settings, namespace: str) -> list[Entry]:
    """The timeline of every CR in the namespace, as `fmesh-events history -n NS` reads it."""
    client = pulsar_client.connect(settings)
    try:
        q = history.Query(namespace=namespace, include_status=True)
        return list(history.entries(client, settings, q))
    finally:
        client.close()


def live_objects(api: k8s.ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    return {f"{cr['kind']}/{namespace}/{cr['metadata']['name']}": cr
            for cr in _custom(api, namespace)}


def reconcile_records(settings: Settings) -> list[dict[str, Any]]:
    return [events.decode_record(events.PARSED_RECONCILE_RECORD, m.data())
            for m in read_messages(settings, events.RECONCILE_LOG)]


def overlapping_reconciles(records: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """(key and processes, wall time) of each pair of reconciles of one key by two processes
    at the same time (spans from each record's end and duration)."""
    by_key: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for r in records:
        end = r["time"].timestamp() * 1000 if hasattr(r["time"], "timestamp") else r["time"]
        by_key[r["key"]].append((end - r["durationMs"], end, r["reconciler"]))
    return [(f"{key} by {who1} and {who2}", s2 / 1000)
            for key, spans in by_key.items()
            for (_s1, e1, who1), (s2, _e2, who2) in itertools.pairwise(sorted(spans))
            if who1 != who2 and s2 < e1]


def published_changes(settings: Settings) -> list[ChangeEvent]:
    return [events.decode(m.data()) for m in read_messages(settings, events.RESOURCE_EVENTS)]


OPERATOR_SUBSCRIPTIONS = ((events.RESOURCE_EVENTS, "reconcile"), (events.POD_EVENTS, "reconcile"),
                          (events.RECONCILE_REQUESTS, "reconcile"), (events.SCALE_SIGNALS, "scale"))


@dataclass(frozen=True)
class Queue:
    """The operator's own queue on one topic: what is waiting, and all that ever came in."""

    backlog: int
    messages_in: int


def operator_queues(admin: pulsar_client.PulsarAdmin, settings: Settings) -> dict[str, Queue]:
    """The operator's subscriptions on its input topics, by topic."""
    out = {}
    for topic, subscription in OPERATOR_SUBSCRIPTIONS:
        path = "/admin/v2/persistent/" + settings.topic(topic).split("://", 1)[1] + "/stats"
        stats = admin.request("GET", path, ok=(200, 404)) or {}
        sub = (stats.get("subscriptions") or {}).get(subscription) or {}
        out[topic] = Queue(int(sub.get("msgBacklog") or 0), int(stats.get("msgInCounter") or 0))
    return out


def own_backlog(admin: pulsar_client.PulsarAdmin, settings: Settings) -> dict[str, int]:
    """Messages the operator has not yet processed, by topic: its subscriptions' backlog."""
    return {topic: queue.backlog for topic, queue in operator_queues(admin, settings).items()}


def wait_drained(admin: pulsar_client.PulsarAdmin, settings: Settings,
                 timeout: float = 120) -> float:
    """Seconds until the operator's own backlog is 0; fails naming what is left."""
    started = time.monotonic()
    left: dict[str, int] = {}
    while time.monotonic() - started < timeout:
        left = own_backlog(admin, settings)
        if not any(left.values()):
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"the operator's backlog not drained after {timeout:.0f}s: {left}")
