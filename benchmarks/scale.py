"""Scale benchmark: how fast a backlog burst becomes replicas, and how many Pulsar admin calls
the sampler makes for 100 and 1,000 autoscaled Functions.

1. Reaction: `fmesh-events run` (all components) as its own process; a Function with a backlog
   target of 100; bursts of 450 messages on its input topic. Measured per burst: burst ->
   decision (the scale-decisions record's time), decision -> the CR's spec.replicas, -> the
   StatefulSet's spec.replicas. After each burst the topic is drained and the Function goes
   back to 1 before the next.
2. Admin load: N Functions (each its own input topic and subscription) sampled by the sampler
   (every 15 s) for a minute idle, then a minute with 10% of the topics receiving a message a
   second; admin calls counted by the client. KEDA's Pulsar scaler reads one stats endpoint per
   ScaledObject per pollingInterval (30 s): 2 x N calls a minute whatever happens.

Usage: python benchmarks/scale.py [--sizes 100,1000] [--bursts 5] [--out FILE]
Uses the running dev stack (`fmesh-events dev up`), or starts one. Figures go to
benchmarks/results/scale.json (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pulsar  # noqa: E402
from kubernetes import client  # noqa: E402

from benchmarks.bench_stack import bench_stack  # noqa: E402
from fmesh_events import devstack, events, kube_client, models, pulsar_client  # noqa: E402
from fmesh_events.scale import Sampler  # noqa: E402
from fmesh_events.scale.usage import MetricsApiSource  # noqa: E402
from fmesh_events.settings import Settings  # noqa: E402

SUBSCRIPTION = "bench-sub"


def function(name: str, topic: str, window: int) -> dict[str, Any]:
    return {"apiVersion": models.API_VERSION, "kind": "Function", "metadata": {"name": name},
            "spec": {"className": "org.example.Echo", "java": {"jar": "/pulsar/echo.jar"},
                     "input": {"topics": [topic]}, "subscriptionName": SUBSCRIPTION,
                     "replicas": 1, "minReplicas": 1, "maxReplicas": 10,
                     "autoscaling": {"backlog": {"targetPerReplica": 100}, "behavior": {
                         "scaleDown": {"stabilizationWindowSeconds": window}}},
                     "pulsar": {"pulsarConfig": "bench-pulsar"}}}


def config_map(settings: Settings) -> dict[str, Any]:
    """The functions' cluster: the operator's own (the sampler reads backlogs where it says)."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bench-pulsar"},
            "data": {"webServiceURL": settings.pulsar_admin_url,
                     "brokerServiceURL": settings.pulsar_service_url}}


def apply_all(stack: devstack.StackInfo, namespace: str, docs: list[dict[str, Any]]) -> None:
    path = Path(tempfile.mkstemp(suffix=".json")[1])
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    stack.kubectl("apply", "--server-side", "-n", namespace, "-f", str(path))


def subscribe_all(settings: Settings, topics: list[str]) -> None:
    pc = pulsar_client.connect(settings)
    try:
        for topic in topics:
            pc.subscribe(topic, SUBSCRIPTION, initial_position=pulsar.InitialPosition.Earliest).close()
    finally:
        pc.close()


def wait_until(condition: Any, timeout: float, step: float = 0.01) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.time()
        time.sleep(step)
    return None


def reaction(stack: devstack.StackInfo, base: Settings, bursts: int) -> dict[str, Any]:
    namespace = f"sb-react-{secrets.token_hex(2)}"
    settings = base.model_copy(update={"system_namespace": f"public/sb-{secrets.token_hex(3)}",
                                       "watch_namespaces": [namespace]})
    pulsar_client.PulsarAdmin(settings).ensure_namespace(settings.system_namespace)
    devstack.create_namespace(stack, namespace)
    topic = f"persistent://public/default/sb-{secrets.token_hex(3)}"
    subscribe_all(settings, [topic])
    env = {**os.environ, "FMESH_KUBECONFIG": str(settings.kubeconfig),
           "FMESH_PULSAR_SERVICE_URL": settings.pulsar_service_url,
           "FMESH_PULSAR_ADMIN_URL": settings.pulsar_admin_url,
           "FMESH_SYSTEM_NAMESPACE": settings.system_namespace,
           "FMESH_WATCH_NAMESPACES": json.dumps([namespace]),
           "FMESH_SCALE_PROBE_REARM_SECONDS": "1", "PYTHONPATH": str(REPO)}
    log = Path(tempfile.mkdtemp(prefix="sb-")) / "operator.log"
    operator = subprocess.Popen([sys.executable, "-m", "fmesh_events", "run"], env=env,
                                stdout=log.open("wb"), stderr=subprocess.STDOUT)
    api = kube_client.api_client(settings)
    custom, apps = client.CustomObjectsApi(api), client.AppsV1Api(api)
    pc = pulsar_client.connect(settings)
    rows = []
    try:
        apply_all(stack, namespace, [config_map(settings), function("react", topic, 1)])

        def replicas() -> int:
            cr = custom.get_namespaced_custom_object(models.GROUP, models.VERSION, namespace,
                                                     "functions", "react")
            return int(cr["spec"].get("replicas", 1))

        def sts_replicas() -> int:
            try:
                return int(apps.read_namespaced_stateful_set("react-function", namespace)
                           .spec.replicas)
            except client.ApiException:
                return -1

        decisions = pc.create_reader(settings.topic(events.SCALE_DECISIONS),
                                     pulsar.MessageId.earliest)
        decisions.read_next(120_000)  # the first tick: the sampler leads, probes are armed
        time.sleep(2)
        producer = pc.create_producer(topic, batching_enabled=False)
        consumer = pc.subscribe(topic, SUBSCRIPTION, consumer_type=pulsar.ConsumerType.Shared)
        for i in range(bursts):
            if wait_until(lambda: replicas() == 1 and sts_replicas() == 1, 120, 0.2) is None:
                raise SystemExit("the Function did not come back to 1 replica")
            time.sleep(2.5)  # probes re-armed
            burst = time.time()
            for j in range(450):
                producer.send_async(f"{i}-{j}".encode(), None)
            producer.flush()
            cr_at = wait_until(lambda: replicas() == 5, 60)
            sts_at = wait_until(lambda: sts_replicas() == 5, 60)
            decided = None
            while decided is None:
                record = events.decode_record(events.PARSED_SCALE_DECISION,
                                              decisions.read_next(60_000).data())
                if record["applied"] and record["desiredReplicas"] == 5:
                    decided = record
            decided_at = decided["time"].timestamp()
            rows.append({"burst_to_decision_s": round(decided_at - burst, 3),
                         "decision_to_cr_s": round((cr_at or 0) - decided_at, 3),
                         "burst_to_statefulset_s": round((sts_at or 0) - burst, 3),
                         "trigger": decided["trigger"]})
            print(json.dumps(rows[-1]), file=sys.stderr)
            drained = 0
            while drained < 450:
                consumer.acknowledge(consumer.receive(10_000))
                drained += 1
    finally:
        pc.close()
        operator.terminate()
        operator.wait(30)
        stack.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    to_decision = [r["burst_to_decision_s"] for r in rows]
    to_sts = [r["burst_to_statefulset_s"] for r in rows]
    return {"bursts": rows, "burst_to_decision_median_s": round(statistics.median(to_decision), 3),
            "burst_to_decision_max_s": max(to_decision),
            "burst_to_statefulset_median_s": round(statistics.median(to_sts), 3),
            "triggers": sorted({r["trigger"] for r in rows})}


def admin_load(stack: devstack.StackInfo, base: Settings, n: int,
               minutes: float) -> dict[str, Any]:
    namespace = f"sb-load-{n}-{secrets.token_hex(2)}"
    settings = base.model_copy(update={"system_namespace": f"public/sb-{secrets.token_hex(3)}",
                                       "watch_namespaces": [namespace]})
    pulsar_client.PulsarAdmin(settings).ensure_namespace(settings.system_namespace)
    devstack.create_namespace(stack, namespace)
    prefix = f"persistent://public/default/sbl-{secrets.token_hex(3)}-"
    topics = [f"{prefix}{i}" for i in range(n)]
    print(f"admin load: {n} Functions and topics ...", file=sys.stderr)
    subscribe_all(settings, topics)
    apply_all(stack, namespace, [config_map(settings)] + [function(f"f-{i}", t, 300)
                                                  for i, t in enumerate(topics)])
    pc = pulsar_client.connect(settings)
    api = kube_client.api_client(settings)
    clusters = pulsar_client.ClusterPool(settings, own_client=pc)
    sampler = Sampler(api, pc, settings.topic, clusters, MetricsApiSource(api), [namespace],
                      15.0, 5.0)
    sampler.lead()
    stop = threading.Event()
    thread = threading.Thread(target=sampler.run_until, args=(stop,), daemon=True)
    thread.start()
    out: dict[str, Any] = {"n": n}
    try:
        time.sleep(20)  # the first full pass, and probes armed
        for phase, busy in (("idle", 0), ("10% of topics busy", n // 10)):
            producers = [pc.create_producer(t, batching_enabled=False) for t in topics[:busy]]
            feeding = threading.Event()

            def feed(producers: list[Any] = producers, feeding: threading.Event = feeding) -> None:
                while not feeding.wait(1.0):
                    for producer in producers:
                        producer.send_async(b"x", None)
            feeder = threading.Thread(target=feed, daemon=True)
            feeder.start()
            before, published = sampler.admin_calls, sampler.published
            time.sleep(60 * minutes)
            feeding.set()
            feeder.join()
            out[phase] = {"busy_topics": busy,
                          "admin_calls_per_minute": round((sampler.admin_calls - before) / minutes),
                          "signals_per_minute": round((sampler.published - published) / minutes)}
            print(json.dumps({phase: out[phase]}), file=sys.stderr)
    finally:
        stop.set()
        thread.join(30)
        pc.close()
        stack.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    out["keda_admin_calls_per_minute"] = 2 * n
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--bursts", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "scale.json")
    args = parser.parse_args()
    with bench_stack() as (stack, base):
        result: dict[str, Any] = {
            "benchmark": "scale", "machine": f"{os.cpu_count()} cores",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "reaction": reaction(stack, base, args.bursts),
            "admin_load": [admin_load(stack, base, int(n), args.minutes)
                           for n in args.sizes.split(",")],
            "published_defaults": {"hpa_sync_period_s": 15, "keda_polling_interval_s": 30}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    reaction_row = result["reaction"]
    print(f"burst -> decision: median {reaction_row['burst_to_decision_median_s']} s, "
          f"max {reaction_row['burst_to_decision_max_s']} s; burst -> StatefulSet replicas: "
          f"median {reaction_row['burst_to_statefulset_median_s']} s")
    for row in result["admin_load"]:
        print(f"N={row['n']}: admin calls/min idle {row['idle']['admin_calls_per_minute']}, "
              f"10% busy {row['10% of topics busy']['admin_calls_per_minute']}; "
              f"KEDA {row['keda_admin_calls_per_minute']}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
