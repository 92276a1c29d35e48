"""Watch benchmark: can the watcher keep up with what the API server can write?

For each N (default 1,000 and 10,000) it creates N Function CRs in a fresh namespace, with
a pool of writer threads, while `fmesh-events run --components watch` runs as its own process,
and measures in the same run, against the same API server:

- API write rate: creates per second the API server accepted;
- watcher rate: events per second from the first create to the last ack by Pulsar;
- lag: Pulsar's publish time minus the moment the create call returned, p50 and p99;
- the watcher's peak resident memory (VmHWM).

Usage: python benchmarks/watch.py [--sizes 1000,10000] [--writers 8] [--out FILE]
Uses the running dev stack (`fmesh-events dev up`), or starts one for the run.
Figures go to benchmarks/results/watch.json (see docs/performance.md).
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
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pulsar
from kubernetes import client as k8s

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_stack import bench_stack  # noqa: E402
from fmesh_events import devstack, kube_client, pulsar_client  # noqa: E402
from fmesh_events.events import RESOURCE_EVENTS, decode  # noqa: E402
from fmesh_events.settings import Settings  # noqa: E402

GROUP, VERSION = "compute.functionmesh.io", "v1alpha1"


def function_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Function", "metadata": {"name": name},
        "spec": {
            "className": "org.apache.pulsar.functions.api.examples.ExclamationFunction",
            "replicas": 1, "input": {"topics": ["persistent://public/default/in"]},
            "output": {"topic": "persistent://public/default/out"},
            "pulsar": {"pulsarConfig": "bench-pulsar"},
            "java": {"jar": "/pulsar/examples/api-examples.jar"},
        },
    }


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_one(settings: Settings, stack: devstack.StackInfo, n: int, writers: int) -> dict[str, Any]:
    namespace = f"bench-{n}-{secrets.token_hex(2)}"
    settings = settings.model_copy(update={
        "system_namespace": f"public/bench-{secrets.token_hex(3)}",
        "watch_namespaces": [namespace]})
    devstack.create_namespace(stack, namespace)
    pulsar_client.PulsarAdmin(settings).ensure_namespace(settings.system_namespace)
    env = {**os.environ, "FMESH_KUBECONFIG": str(settings.kubeconfig),
           "FMESH_PULSAR_SERVICE_URL": settings.pulsar_service_url,
           "FMESH_PULSAR_ADMIN_URL": settings.pulsar_admin_url,
           "FMESH_SYSTEM_NAMESPACE": settings.system_namespace,
           "FMESH_WATCH_NAMESPACES": json.dumps([namespace])}
    log = Path(tempfile.mkdtemp(prefix="fmesh-watch-bench-")) / "watcher.log"
    with log.open("wb") as log_file:
        watcher = subprocess.Popen([sys.executable, "-m", "fmesh_events", "run", "--components",
                                    "watch"], env=env, stdout=log_file, stderr=subprocess.STDOUT)
    client = pulsar_client.connect(settings)
    try:
        deadline = time.time() + 60
        while b"now the active watcher" not in log.read_bytes():
            if time.time() > deadline:
                raise RuntimeError(f"watcher did not start: {log.read_text()}")
            time.sleep(0.2)
        time.sleep(1)  # let it list (nothing) and start watching
        api = k8s.CustomObjectsApi(kube_client.api_client(settings))
        done_at: dict[str, float] = {}

        def create(i: int) -> None:
            name = f"f-{i}"
            api.create_namespaced_custom_object(GROUP, VERSION, namespace, "functions",
                                                function_body(name))
            done_at[f"Function/{namespace}/{name}"] = time.time()

        started = time.time()
        with ThreadPoolExecutor(writers) as pool:
            list(pool.map(create, range(n)))
        write_seconds = time.time() - started

        reader = client.create_reader(settings.topic(RESOURCE_EVENTS), pulsar.MessageId.earliest)
        publish_ms: dict[str, int] = {}
        deadline = time.time() + 120 + n / 50
        while len(publish_ms) < n and time.time() < deadline:
            try:
                message = reader.read_next(timeout_millis=2000)
            except Exception:
                continue
            publish_ms[decode(message.data()).key] = message.publish_timestamp()
        if len(publish_ms) < n:
            raise RuntimeError(f"only {len(publish_ms)} of {n} changes published")
        last_publish = max(publish_ms.values()) / 1000
        lags = sorted(publish_ms[k] / 1000 - done_at[k] for k in done_at)
        return {
            "n": n,
            "writers": writers,
            "api_creates_per_second": round(n / write_seconds, 1),
            "watcher_events_per_second": round(n / (last_publish - started), 1),
            "watcher_over_api_ratio": round((n / (last_publish - started)) / (n / write_seconds), 3),
            "lag_p50_ms": round(statistics.quantiles(lags, n=100)[49] * 1000, 1),
            "lag_p99_ms": round(statistics.quantiles(lags, n=100)[98] * 1000, 1),
            "watcher_peak_rss_mb": round(peak_rss_mb(watcher.pid), 1),
        }
    finally:
        watcher.terminate()
        watcher.wait(30)
        client.close()
        stack.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "watch.json")
    args = parser.parse_args()
    results = []
    with bench_stack() as (stack, base):
        for n in (int(s) for s in args.sizes.split(",")):
            print(f"creating {n} Functions with {args.writers} writers ...", file=sys.stderr)
            result = run_one(base, stack, n, args.writers)
            results.append(result)
            print(json.dumps(result), file=sys.stderr)
    report = {"benchmark": "watch", "machine": f"{os.cpu_count()} cores",
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'N':>7} {'API creates/s':>14} {'watcher ev/s':>13} {'ratio':>6} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'peak MB':>8}")
    for r in results:
        print(f"{r['n']:>7} {r['api_creates_per_second']:>14} {r['watcher_events_per_second']:>13} "
              f"{r['watcher_over_api_ratio']:>6} {r['lag_p50_ms']:>8} {r['lag_p99_ms']:>8} "
              f"{r['watcher_peak_rss_mb']:>8}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
