"""History benchmark: how fast `fmesh-events history` replays, and whether `--since` seeks.

1. Replay speed: N reconcile-log records and N scale-decisions (N/2 each, as a busy operator
   writes them) published to a fresh Pulsar namespace, then the history query run in this
   process (one core) printing JSONL to /dev/null: events decoded and printed per second.
2. Seek: `history KEY --since T` where T is after a bulk of older events (0, 100,000 and
   1,000,000 of them): the time to answer should stay flat as the topic grows, because the
   readers seek by publish time instead of scanning.

Usage: python benchmarks/history.py [--sizes 100000,1000000] [--out FILE]
Uses the running dev stack (`fmesh-events dev up`), or starts one. Figures go to
benchmarks/results/history.json (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pulsar  # noqa: E402

from benchmarks.bench_stack import bench_stack  # noqa: E402
from fmesh_events import events, history, pulsar_client  # noqa: E402
from fmesh_events.settings import Settings  # noqa: E402

KEYS = 1000


def reconcile_record(i: int, key: str) -> bytes:
    return events.encode_record(events.PARSED_RECONCILE_RECORD, {
        "recordVersion": 1, "key": key, "triggerTopic": "resource-events",
        "triggerMessageId": f"(1,{i},-1,0)", "generation": 1 + i % 7, "outcome": "OK",
        "attempt": 0, "children": [
            {"kind": "StatefulSet", "name": key.rsplit("/", 1)[1] + "-function", "action": "UNCHANGED"},
            {"kind": "Service", "name": key.rsplit("/", 1)[1] + "-function-headless",
             "action": "UNCHANGED"}],
        "statusChanged": i % 3 == 0, "durationMs": 12.5, "error": None,
        "time": int(time.time() * 1000), "reconciler": "bench-0"})


def scale_decision(i: int, key: str) -> bytes:
    return events.encode_record(events.PARSED_SCALE_DECISION, {
        "decisionVersion": 1, "key": key, "time": int(time.time() * 1000),
        "signalMessageId": f"(2,{i},-1,0)", "trigger": "tick", "currentReplicas": 4,
        "recommendation": 4, "desiredReplicas": 4, "cpuRecommendation": None,
        "memoryRecommendation": None, "backlogRecommendation": 4, "cpuUtilization": None,
        "memoryUtilization": None, "backlog": 380 + i % 50, "minReplicas": 1, "maxReplicas": 10,
        "action": "NONE", "applied": False,
        "reason": "backlog 400 over target 100 x 4 replicas -> 4 (within tolerance)",
        "error": None, "scaler": "bench-0"})


def publish(settings: Settings, count: int, first: int = 0, keys: int = KEYS) -> None:
    client = pulsar_client.connect(settings)
    try:
        producers = {
            events.RECONCILE_LOG: client.create_producer(
                settings.topic(events.RECONCILE_LOG), batching_enabled=True,
                batching_type=pulsar.BatchingType.KeyBased, batching_max_messages=1000,
                batching_max_publish_delay_ms=20, block_if_queue_full=True),
            events.SCALE_DECISIONS: client.create_producer(
                settings.topic(events.SCALE_DECISIONS), batching_enabled=True,
                batching_type=pulsar.BatchingType.KeyBased, batching_max_messages=1000,
                batching_max_publish_delay_ms=20, block_if_queue_full=True)}
        for i in range(first, first + count):
            key = f"Function/bench/fn-{i % keys}"
            if i % 2:
                producers[events.RECONCILE_LOG].send_async(reconcile_record(i, key), None,
                                                           partition_key=key)
            else:
                producers[events.SCALE_DECISIONS].send_async(scale_decision(i, key), None,
                                                             partition_key=key)
        for producer in producers.values():
            producer.flush()
    finally:
        client.close()


def run_query(settings: Settings, q: history.Query) -> tuple[int, float]:
    started = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        count = history.query(settings, q, devnull, "jsonl")
    return count, time.perf_counter() - started


def fresh(base: Settings) -> Settings:
    settings = base.model_copy(update={"system_namespace": f"public/hb-{secrets.token_hex(3)}"})
    pulsar_client.PulsarAdmin(settings).ensure_namespace(settings.system_namespace)
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "history.json")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    result: dict[str, Any] = {"benchmark": "history", "machine": f"{os.cpu_count()} cores",
                              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "replay": [], "seek": []}
    with bench_stack() as (_stack, base):
        for n in sizes:
            settings = fresh(base)
            print(f"publishing {n:,} events ...", file=sys.stderr)
            publish(settings, n)
            cpu = time.process_time()
            count, took = run_query(settings, history.Query(types=["reconcile", "scale"]))
            row = {"events": n, "printed": count, "seconds": round(took, 2),
                   "events_per_second": round(n / took),
                   "cpu_seconds": round(time.process_time() - cpu, 2),
                   "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
            result["replay"].append(row)
            print(json.dumps(row), file=sys.stderr)
        settings = fresh(base)
        older = 0
        for target in [0, *sizes]:
            if target > older:
                print(f"topic now holds {target:,} older events ...", file=sys.stderr)
                publish(settings, target - older, first=older)
                older = target
            time.sleep(1.5)
            since = datetime.now(UTC)
            time.sleep(0.5)
            publish(settings, 20, first=10_000_000 + target, keys=1)  # the new ones
            q = history.Query(key="Function/bench/fn-0", since=since, types=["reconcile", "scale"])
            count, took = run_query(settings, q)
            row = {"older_events": target, "answered_entries": count, "seconds": round(took, 3)}
            result["seek"].append(row)
            print(json.dumps(row), file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for row in result["replay"]:
        print(f"replay {row['events']:>9,} events: {row['events_per_second']:>8,}/s "
              f"({row['seconds']} s, peak RSS {row['peak_rss_mb']} MB)")
    for row in result["seek"]:
        print(f"--since after {row['older_events']:>9,} older events: {row['seconds']} s "
              f"({row['answered_entries']} entries)")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
