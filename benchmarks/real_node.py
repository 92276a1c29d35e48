"""Real-node benchmark: how soon a Java function processes its first message after
`kubectl apply`, and how many real instances fit on this machine's 2 cores.

1. First message: `fmesh-events run` (all components) as its own process; an
   ExclamationFunction applied; measured: apply -> pod Ready, apply -> first message out.
2. Density: the same Function scaled to each size in turn; per size: scale -> every instance
   Ready *and* consuming (a consumer on the function's subscription), then, after a settle,
   the instances' CPU and memory from metrics-server (`kubectl top`) and the node's, and one
   message through each instance's share. A size that does not get there within the bound
   ends the run.

Usage: python benchmarks/real_node.py [--sizes 5,10,20,30] [--out FILE]
Uses the running dev stack (`fmesh-events dev up`, real node on), or starts one. Figures go
to benchmarks/results/real_node.json (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pulsar  # noqa: E402

from benchmarks.bench_stack import bench_stack  # noqa: E402
from fmesh_events import devstack, pulsar_client  # noqa: E402
from fmesh_events.devstack import node  # noqa: E402
from fmesh_events.settings import Settings  # noqa: E402

NAME = "bench-exclaim"
SELECTOR = f"compute.functionmesh.io/name={NAME},compute.functionmesh.io/component=function"
STEP_TIMEOUT = 420.0


def _function(inp: str, out: str) -> dict[str, Any]:
    return {
        "apiVersion": "compute.functionmesh.io/v1alpha1", "kind": "Function",
        "metadata": {"name": NAME},
        "spec": {
            "image": "streamnative/pulsar-functions-java-sample:4.0.7",
            "className": "org.apache.pulsar.functions.api.examples.ExclamationFunction",
            "replicas": 1,
            "input": {"topics": [inp], "typeClassName": "java.lang.String"},
            "output": {"topic": out, "typeClassName": "java.lang.String"},
            "pulsar": {"pulsarConfig": "dev-pulsar"},
            "java": {"jar": "/pulsar/examples/api-examples.jar"},
            # Small requests so the scheduler is not what limits the count.
            "resources": {"requests": {"cpu": "25m", "memory": "256Mi"},
                          "limits": {"cpu": "1", "memory": "512Mi"}},
        },
    }


def _ready(stack: devstack.StackInfo, namespace: str) -> int:
    pods = json.loads(stack.kubectl("get", "pods", "-n", namespace, "-l", SELECTOR, "-o", "json").stdout)
    return sum(1 for p in pods["items"] if p["spec"].get("nodeName") == node.NODE_NAME and any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", [])))


def _consumers(admin: pulsar_client.PulsarAdmin, inp: str) -> int:
    try:
        stats = admin.request("GET", f"/admin/v2/persistent/{inp.removeprefix('persistent://')}/stats")
    except pulsar_client.PulsarAdminError:
        return 0
    return len(stats.get("subscriptions", {}).get(f"public/default/{NAME}", {}).get("consumers", []))


def _top(stack: devstack.StackInfo, *args: str) -> list[list[str]]:
    out = stack.kubectl("top", *args, "--no-headers", check=False).stdout
    return [line.split() for line in out.splitlines() if line.strip()]


def _millicores(value: str) -> float:
    return float(value[:-1]) if value.endswith("m") else float(value) * 1000


def _mebibytes(value: str) -> float:
    return float(value[:-2]) * (1024 if value.endswith("Gi") else 1)


def _wait(condition: Any, timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return round(time.monotonic() - started, 1)
        time.sleep(1)
    return None


def run(stack: devstack.StackInfo, settings: Settings, sizes: list[int]) -> dict[str, Any]:
    namespace = f"bench-real-{secrets.token_hex(3)}"
    devstack.create_namespace(stack, namespace, fake_nodes=False)
    prefix = f"persistent://public/default/bench-real-{secrets.token_hex(3)}-"
    inp, out = prefix + "in", prefix + "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMESH_")}
    env.update({"FMESH_KUBECONFIG": str(stack.kubeconfig),
                "FMESH_PULSAR_SERVICE_URL": settings.pulsar_service_url,
                "FMESH_PULSAR_ADMIN_URL": settings.pulsar_admin_url, "FMESH_HTTP_PORT": "0",
                "FMESH_SYSTEM_NAMESPACE": f"public/bench-real-{secrets.token_hex(3)}",
                "FMESH_WATCH_NAMESPACES": json.dumps([namespace])})
    log = (stack.dir / "logs" / "bench-real-operator.log").open("ab")
    operator = subprocess.Popen([sys.executable, "-m", "fmesh_events", "run"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    client = pulsar_client.connect(settings)
    admin = pulsar_client.PulsarAdmin(settings)
    string = pulsar.schema.StringSchema()
    result: dict[str, Any] = {"cores": os.cpu_count(), "sizes": []}
    try:
        consumer = client.subscribe(out, "bench", schema=string,
                                    initial_position=pulsar.InitialPosition.Earliest)
        producer = client.create_producer(inp, schema=string)
        config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dev-pulsar"},
                  "data": node.in_cluster_urls()}
        started = time.monotonic()
        for doc in (config, _function(inp, out)):
            stack.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))
        ready = _wait(lambda: _ready(stack, namespace) == 1, STEP_TIMEOUT)
        first = None
        while first is None and time.monotonic() - started < STEP_TIMEOUT:
            producer.send("first")
            try:
                consumer.acknowledge(consumer.receive(timeout_millis=1000))
                first = round(time.monotonic() - started, 1)
            except pulsar.Timeout:
                pass
        result["apply_to_ready_s"] = ready
        result["apply_to_first_message_s"] = first
        print(json.dumps({"apply_to_ready_s": ready, "apply_to_first_message_s": first}), file=sys.stderr)
        for size in sizes:
            stack.kubectl("scale", f"function/{NAME}", f"--replicas={size}", "-n", namespace)
            took = _wait(lambda size=size: _ready(stack, namespace) == size
                         and _consumers(admin, inp) == size, STEP_TIMEOUT)
            row: dict[str, Any] = {"instances": size, "scale_to_all_consuming_s": took}
            if took is not None:
                time.sleep(45)  # metrics-server's window, and the JVMs past their start-up
                pods = _top(stack, "pods", "-n", namespace, "-l", SELECTOR)
                nodes = {r[0]: r for r in _top(stack, "nodes")}
                row["instance_cpu_m_total"] = sum(_millicores(r[1]) for r in pods)
                row["instance_memory_mib_total"] = sum(_mebibytes(r[2]) for r in pods)
                row["instances_measured"] = len(pods)
                if node.NODE_NAME in nodes:
                    row["node_cpu_m"] = _millicores(nodes[node.NODE_NAME][1])
                    row["node_memory_mib"] = _mebibytes(nodes[node.NODE_NAME][3])
                sent = [f"d{size}-{i}" for i in range(size * 20)]
                t0 = time.monotonic()
                for value in sent:
                    producer.send_async(value, None)
                producer.flush()
                got = 0
                while got < len(sent) and time.monotonic() - t0 < 120:
                    try:
                        consumer.acknowledge(consumer.receive(timeout_millis=1000))
                        got += 1
                    except pulsar.Timeout:
                        pass
                row["messages_through"] = f"{got}/{len(sent)}"
                row["messages_seconds"] = round(time.monotonic() - t0, 1)
            result["sizes"].append(row)
            print(json.dumps(row), file=sys.stderr)
            if took is None:
                break
    finally:
        client.close()
        operator.terminate()
        operator.wait(60)
        stack.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="5,10,20,30")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "real_node.json")
    args = parser.parse_args()
    with bench_stack() as (stack, settings):
        if not stack.real_node:
            raise SystemExit("this benchmark needs a stack with the real node (FMESH_REAL_NODE)")
        result = run(stack, settings, [int(s) for s in args.sizes.split(",")])
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
