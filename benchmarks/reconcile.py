"""Reconcile benchmark: N Functions applied at once; time until every StatefulSet exists and
every Function is Ready, for fmesh-events with 1 and with 3 reconciler processes and for a
kopf baseline (benchmarks/baselines/kopf_operator.py) rendering the same objects, side by side
in one run against the same API server.

Usage: python benchmarks/reconcile.py [--sizes 100,1000,5000] [--profile] [--out FILE]
With --profile, py-spy samples every fmesh-events process of a run, and the result names the
functions where their CPU went (own samples and samples under, in per cent).
Uses the running dev stack (`fmesh-events dev up`), or starts one for the run. Figures go to
benchmarks/results/reconcile.json (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_stack import bench_stack  # noqa: E402
from fmesh_events import devstack, events, pulsar_client  # noqa: E402
from fmesh_events.settings import Settings  # noqa: E402

# py-spy from the bench extra, found beside this interpreter when its venv is not on PATH.
PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
WATCHED = ("functions", "statefulsets", "services", "configmaps")


def functions_yaml(n: int) -> str:
    docs = [json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "bench-pulsar"},
                        "data": {"webServiceURL": "http://pulsar:8080",
                                 "brokerServiceURL": "pulsar://pulsar:6650"}})]
    for i in range(n):
        docs.append(json.dumps({
            "apiVersion": "compute.functionmesh.io/v1alpha1", "kind": "Function",
            "metadata": {"name": f"f-{i}"},
            # Fully specified, as a user writes one after Function Mesh's defaults.
            "spec": {"className": "org.apache.pulsar.functions.api.examples.ExclamationFunction",
                     "image": "streamnative/pulsar-functions-java-sample:4.0.7",
                     "replicas": 1, "maxPendingAsyncRequests": 1000, "autoAck": True,
                     "forwardSourceMessageProperty": True,
                     "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                                   "limits": {"cpu": "1", "memory": "512Mi"}},
                     "input": {"topics": [f"persistent://public/default/in-{i}"],
                               "typeClassName": "java.lang.String"},
                     "output": {"topic": f"persistent://public/default/out-{i}",
                                "typeClassName": "java.lang.String"},
                     "pulsar": {"pulsarConfig": "bench-pulsar"},
                     "java": {"jar": "/pulsar/examples/api-examples.jar"}}}))
    return "\n---\n".join(docs)


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def api_requests(stack: devstack.StackInfo) -> dict[str, int]:
    """Non-watch requests the API server served on the resources the operators touch, by
    `resource[/subresource] VERB`."""
    kubeconfig = Path(str(stack.kubeconfig)).read_text()
    server = re.search(r"server: (\S+)", kubeconfig)
    token = re.search(r"token: (\S+)", kubeconfig)
    assert server and token
    import ssl

    request = urllib.request.Request(f"{server.group(1)}/metrics",
                                     headers={"Authorization": f"Bearer {token.group(1)}"})
    body = urllib.request.urlopen(request, context=ssl._create_unverified_context(),
                                  timeout=10).read().decode()
    counts: dict[str, int] = {}
    for line in body.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        subresource = labels.get("subresource", "")
        if labels.get("resource") in WATCHED and labels.get("verb") not in ("WATCH", "LIST") \
                and subresource in ("", "status"):
            what = f"{labels['resource']}{'/' + subresource if subresource else ''} {labels['verb']}"
            counts[what] = counts.get(what, 0) + int(float(line.rsplit(" ", 1)[1]))
    return counts


def per_function(before: dict[str, int], after: dict[str, int], n: int) -> dict[str, float]:
    """Requests per Function during a run, by kind of request, largest first."""
    moved = {what: after[what] - before.get(what, 0) for what in after}
    return {what: round(count / n, 2)
            for what, count in sorted(moved.items(), key=lambda item: -item[1]) if count}


def ready_counts(stack: devstack.StackInfo, namespace: str) -> tuple[int, int]:
    items = json.loads(stack.kubectl("get", "functions", "-n", namespace, "-o", "json").stdout)
    ready = sum(1 for f in items["items"] if any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (f.get("status") or {}).get("conditions") or []))
    sts = stack.kubectl("get", "statefulsets", "-n", namespace, "-o", "name").stdout.split()
    return ready, len(sts)


def start_operator(mode: str, settings: Settings, namespace: str, logdir: Path
                   ) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "FMESH_KUBECONFIG": str(settings.kubeconfig),
           "KUBECONFIG": str(settings.kubeconfig),
           "FMESH_PULSAR_SERVICE_URL": settings.pulsar_service_url,
           "FMESH_PULSAR_ADMIN_URL": settings.pulsar_admin_url,
           "FMESH_SYSTEM_NAMESPACE": settings.system_namespace,
           "FMESH_WATCH_NAMESPACES": json.dumps([namespace]), "FMESH_LOG_LEVEL": "INFO",
           "PYTHONPATH": str(REPO)}

    def spawn(args: list[str], name: str) -> subprocess.Popen[bytes]:
        log = (logdir / f"{name}.log").open("wb")
        return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)

    if mode == "kopf":
        return [spawn([sys.executable, "-m", "kopf", "run", "--standalone", "--namespace",
                       namespace, str(REPO / "benchmarks" / "baselines" / "kopf_operator.py")],
                      "kopf")]
    reconcilers = 3 if mode == "fmesh-3" else 1
    procs = [spawn([sys.executable, "-m", "fmesh_events", "run", "--components", "watch"],
                   "watch")]
    procs += [spawn([sys.executable, "-m", "fmesh_events", "run", "--components", "reconcile"],
                    f"reconcile-{i}") for i in range(reconcilers)]
    return procs


def start_profilers(procs: list[subprocess.Popen[bytes]], logdir: Path
                    ) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """py-spy on each process: collapsed stacks, written when the process exits."""
    profilers = []
    for proc in procs:
        out = logdir / f"profile-{proc.pid}.txt"
        profilers.append((subprocess.Popen(
            [PY_SPY, "record", "--pid", str(proc.pid), "--format", "raw", "--rate", "200", "--gil",
             "--nonblocking", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out))
    return profilers


def frame_name(frame: str) -> str:
    """`render (fmesh_events/reconcile/render.py:120)` -> `render (render.py)`."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = path.split("/")
    short = "/".join(parts[-2:]) if "site-packages" not in path else \
        "/".join(parts[parts.index("site-packages") + 1:][:2])
    return f"{name} ({short})"


def summarize_profile(files: list[Path], top: int = 15) -> dict[str, Any]:
    """Own and cumulative share of the samples per function, over all the files."""
    own: dict[str, int] = {}
    under: dict[str, int] = {}
    total = 0
    for file in files:
        if not file.exists():
            continue
        for line in file.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [frame_name(f) for f in stack.split(";") if " (" in f]
            if not frames:
                continue
            total += count
            own[frames[-1]] = own.get(frames[-1], 0) + count
            for name in set(frames):
                under[name] = under.get(name, 0) + count

    def share(table: dict[str, int]) -> list[list[Any]]:
        best = sorted(table.items(), key=lambda item: -item[1])[:top]
        return [[name, round(100 * count / total, 1)] for name, count in best]

    return {"samples": total, "own_percent": share(own) if total else [],
            "under_percent": share(under) if total else []}


def audit_trail(settings: Settings) -> tuple[int, int]:
    """(messages published, bytes stored) on the topics the watcher and reconcilers write."""
    admin = pulsar_client.PulsarAdmin(settings)
    messages = stored = 0
    try:
        for topic in (events.RESOURCE_EVENTS, events.POD_EVENTS, events.RECONCILE_LOG):
            path = pulsar_client.admin_topic_path(settings.topic(topic)) + "/stats"
            stats = admin.request("GET", path, ok=(200, 404)) or {}
            messages += int(stats.get("msgInCounter") or 0)
            stored += int(stats.get("storageSize") or 0)
    finally:
        admin.close()
    return messages, stored


def run_one(base: Settings, stack: devstack.StackInfo, n: int, mode: str,
            profile: bool = False) -> dict[str, Any]:
    namespace = f"rb-{mode}-{n}-{secrets.token_hex(2)}"
    settings = base.model_copy(update={"system_namespace": f"public/rb-{secrets.token_hex(3)}"})
    pulsar_client.PulsarAdmin(settings).ensure_namespace(settings.system_namespace)
    devstack.create_namespace(stack, namespace)
    logdir = Path(tempfile.mkdtemp(prefix=f"rb-{mode}-"))
    procs = start_operator(mode, settings, namespace, logdir)
    profilers = start_profilers(procs, logdir) if profile and mode != "kopf" else []
    result: dict[str, Any] = {}
    try:
        time.sleep(5)  # let every process subscribe / start watching
        manifest = logdir / "functions.yaml"
        manifest.write_text(functions_yaml(n))
        before = api_requests(stack)
        broker = stack.pids.get("pulsar")
        broker_before = cpu_seconds(broker) if broker else None
        started = time.monotonic()
        stack.kubectl("apply", "--server-side", "-n", namespace, "-f", str(manifest),
                      timeout=600 + n)
        applied = time.monotonic() - started
        deadline = started + 120 + n * 0.5
        ready = sts = 0
        all_sts_at = None
        while time.monotonic() < deadline:
            dead = [proc.args for proc in procs if proc.poll() is not None]
            if dead:
                raise SystemExit(f"{mode}: an operator process exited early: {dead[0]!r} "
                                 f"(its log is in {logdir})")
            ready, sts = ready_counts(stack, namespace)
            if sts == n and all_sts_at is None:
                all_sts_at = time.monotonic()
            if ready == n and sts == n:
                break
            time.sleep(max(1.0, n / 1000))  # listing thousands of CRs loads the API server too
        took = time.monotonic() - started
        requests = per_function(before, api_requests(stack), n)
        operator_cpu = sum(cpu_seconds(proc.pid) for proc in procs)
        peak_rss = sum(peak_rss_mib(proc.pid) for proc in procs)
        broker_cpu = cpu_seconds(broker) - broker_before \
            if broker and broker_before is not None else None
        messages, stored = audit_trail(settings) if mode != "kopf" else (0, 0)
        calls = [json.loads(line)["calls"] for f in logdir.glob("reconcile-*.log")
                 for line in f.read_text().splitlines()
                 if line.startswith("{") and '"reconciled"' in line]
        result = {
            "n": n, "mode": mode, "all_ready": ready == n and sts == n,
            "ready": ready, "statefulsets": sts,
            "apply_seconds": round(applied, 1),
            "seconds_to_all_statefulsets":
                round(all_sts_at - started, 1) if all_sts_at is not None else None,
            "seconds_to_all_ready": round(took, 1),
            "functions_ready_per_second": round(ready / took, 1),
            "reconciles": len(calls) if mode != "kopf" else None,
            "operator_api_calls_per_reconcile":
                round(sum(calls) / len(calls), 2) if calls else None,
            "api_requests_per_function": round(sum(requests.values()), 2),
            "api_requests_per_function_by_kind": requests,
            "reconciles_per_function": round(len(calls) / n, 2) if mode != "kopf" else None,
            # CPU from the start of the apply until all Ready (start-up before it included
            # for the operators: a few tenths of a second each).
            "operator_cpu_seconds": round(operator_cpu, 1),
            "broker_cpu_seconds": round(broker_cpu, 1) if broker_cpu is not None else None,
            "operator_peak_rss_mib": round(peak_rss),
            # The audit trail: messages on the operator's topics, and the bytes the broker
            # stores for them (compressed as sent).
            "broker_messages_per_function": round(messages / n, 2) if mode != "kopf" else None,
            "audit_kib_per_function": round(stored / n / 1024, 2) if mode != "kopf" else None,
        }
        return result
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for profiler, _ in profilers:
            try:
                profiler.wait(30)
            except subprocess.TimeoutExpired:
                profiler.kill()
        if profilers and result:
            result["profile"] = summarize_profile([out for _, out in profilers])
        # Wait until the namespace is gone: its pods are deleted by the same
        # kube-controller-manager the next run depends on, so a run must not overlap the last
        # one's clean-up (that is what made an earlier run look 35% slower).
        print(f"{mode}: deleting {namespace} ...", file=sys.stderr)
        stack.kubectl("delete", "namespace", namespace, f"--timeout={300 + n}s", check=False,
                      timeout=360 + n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--modes", default="kopf,fmesh-1,fmesh-3")
    parser.add_argument("--out", type=Path,
                        default=REPO / "benchmarks" / "results" / "reconcile.json")
    parser.add_argument("--profile", action="store_true",
                        help="sample the fmesh-events processes with py-spy (the bench extra)")
    args = parser.parse_args()
    if args.profile and not Path(PY_SPY).exists():
        parser.error("--profile needs py-spy: pip install -e .[bench]")
    if "kopf" in args.modes.split(","):
        try:
            import kopf  # noqa: F401
        except ImportError:
            parser.error("the kopf baseline needs kopf: pip install -e .[bench]")
    results = []
    with bench_stack() as (stack, base):
        for n in (int(s) for s in args.sizes.split(",")):
            for mode in args.modes.split(","):
                print(f"{mode}: {n} Functions ...", file=sys.stderr)
                results.append(run_one(base, stack, n, mode, args.profile))
                print(json.dumps(results[-1]), file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "reconcile", "machine": f"{os.cpu_count()} cores",
                                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                    "results": results}, indent=2) + "\n")
    print(f"{'N':>6} {'mode':>8} {'all STS s':>9} {'Ready s':>8} {'op CPU s':>8} "
          f"{'broker CPU s':>12} {'RSS MiB':>7} {'API req/fn':>10} {'rec/fn':>6} {'calls/rec':>9} "
          f"{'msg/fn':>6} {'KiB/fn':>6}")
    for r in results:
        print(f"{r['n']:>6} {r['mode']:>8} {r['seconds_to_all_statefulsets']!s:>9} "
              f"{r['seconds_to_all_ready']:>8} {r['operator_cpu_seconds']:>8} "
              f"{r['broker_cpu_seconds']!s:>12} {r['operator_peak_rss_mib']:>7} "
              f"{r['api_requests_per_function']:>10} {r['reconciles_per_function']!s:>6} "
              f"{r['operator_api_calls_per_reconcile']!s:>9} "
              f"{r.get('broker_messages_per_function')!s:>6} {r.get('audit_kib_per_function')!s:>6}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
