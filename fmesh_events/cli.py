"""The `fmesh-events` command line (click). Entry point only: it reads settings and calls
into the stages and foundations; nothing below imports it."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from fmesh_events import __version__, logs
from fmesh_events.migrate.cli import migrate
from fmesh_events.settings import Settings


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="fmesh-events")
@click.option("--kubeconfig", type=click.Path(path_type=Path), envvar="FMESH_KUBECONFIG",
              help="Kubeconfig file (default: in-cluster, then $KUBECONFIG).")
@click.option("--context", "kube_context", envvar="FMESH_KUBE_CONTEXT",
              help="Context in the kubeconfig.")
@click.option("--pulsar-service-url", envvar="FMESH_PULSAR_SERVICE_URL",
              help="Pulsar broker URL, pulsar:// or pulsar+ssl://.")
@click.option("--pulsar-admin-url", envvar="FMESH_PULSAR_ADMIN_URL",
              help="Pulsar admin API URL, http:// or https://.")
@click.option("--pulsar-auth-token", envvar="FMESH_PULSAR_AUTH_TOKEN",
              help="JWT for Pulsar (client and admin).")
@click.option("--pulsar-tls-trust-certs-file", type=click.Path(path_type=Path),
              envvar="FMESH_PULSAR_TLS_TRUST_CERTS_FILE", help="CA bundle for Pulsar TLS.")
@click.option("--pulsar-tls-cert-file", type=click.Path(path_type=Path),
              envvar="FMESH_PULSAR_TLS_CERT_FILE", help="Client certificate (mTLS).")
@click.option("--pulsar-tls-key-file", type=click.Path(path_type=Path),
              envvar="FMESH_PULSAR_TLS_KEY_FILE", help="Client key (mTLS).")
@click.option("--system-namespace", envvar="FMESH_SYSTEM_NAMESPACE",
              help="Pulsar namespace of the operator's topics [public/fmesh-system].")
@click.option("--stack-dir", type=click.Path(path_type=Path), envvar="FMESH_STACK_DIR",
              help="State of the dev stack [~/.cache/fmesh-events/stack].")
@click.option("--log-level", envvar="FMESH_LOG_LEVEL", help="Log level [WARNING].")
@click.option("--log-format", type=click.Choice(["json", "text"]), envvar="FMESH_LOG_FORMAT",
              help="Log line format [json].")
@click.pass_context
def main(ctx: click.Context, /, **flags: Any) -> None:
    """Run Apache Pulsar Functions, Sources and Sinks on Kubernetes (Function Mesh CRDs),
    as an event-driven operator built on Pulsar."""
    given = {key: value for key, value in flags.items() if value is not None}
    settings = Settings(**given)
    logs.configure(settings.log_level, settings.log_format)
    ctx.obj = settings


@main.command()
@click.option("--write", "write_dir", type=click.Path(path_type=Path),
              help="Write one file per CRD into this directory instead of printing.")
@click.option("--k8s-openapi", "openapi_dir",
              type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="First refresh the embedded Kubernetes types (fmesh_events/models/"
              "k8s-openapi.json) from the OpenAPI v3 documents in this directory: a running "
              "API server's (kubectl get --raw /openapi/v3/api/v1 > DIR/api__v1_openapi.json; "
              "likewise apis/apps/v1 and apis/autoscaling/v2) or Kubernetes' "
              "api/openapi-spec/v3.")
@click.option("--k8s-source", default=None,
              help="With --k8s-openapi: where the documents come from, recorded in the extract "
              "(e.g. 'Kubernetes v1.34.4, kube-apiserver /openapi/v3').")
def crds(write_dir: Path | None, openapi_dir: Path | None, k8s_source: str | None) -> None:
    """Print the CustomResourceDefinitions, generated from the pydantic models."""
    from fmesh_events.models import crd, k8s_types

    if openapi_dir is not None:
        if not k8s_source:
            raise click.UsageError("--k8s-openapi needs --k8s-source to record where it is from")
        click.echo(str(k8s_types.write_openapi(openapi_dir, k8s_source)), err=True)
    if write_dir is None:
        click.echo(crd.dump_crds_yaml(), nl=False)
        return
    for path in crd.write_crds(write_dir):
        click.echo(str(path))


COMPONENTS = ("watch", "reconcile", "scale")


@main.command()
@click.option("--components", default=",".join(COMPONENTS), show_default=True,
              help=f"Comma-separated components to run, of: {', '.join(COMPONENTS)}.")
@click.option("--grace-seconds", default=25.0, show_default=True,
              help="On SIGTERM, how long to finish in-flight work before exiting.")
@click.pass_context
def run(ctx: click.Context, components: str, grace_seconds: float) -> None:
    """Run the operator's components until SIGTERM or Ctrl-C."""
    import signal
    import threading

    wanted = [c.strip() for c in components.split(",") if c.strip()]
    unknown = sorted(set(wanted) - set(COMPONENTS))
    if unknown or not wanted:
        raise click.BadParameter(f"unknown component(s) {unknown}; choose from {COMPONENTS}",
                                 param_hint="--components")
    settings = _settings(ctx)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threads = []
    if "watch" in wanted:
        from fmesh_events.watch import run_watch

        threads.append(threading.Thread(target=run_watch, args=(settings, stop), name="watch",
                                        daemon=True))
    if "reconcile" in wanted:
        from fmesh_events.reconcile import run_reconcile

        threads.append(threading.Thread(target=run_reconcile, args=(settings, stop),
                                        name="reconcile", daemon=True))
    if "scale" in wanted:
        from fmesh_events.scale import run_scale

        threads.append(threading.Thread(target=run_scale, args=(settings, stop), name="scale",
                                        daemon=True))
    for thread in threads:
        thread.start()
    from fmesh_events import observe

    observe.serve(settings, lambda: all(t.is_alive() for t in threads), stop)
    while not stop.wait(0.5):
        if not any(t.is_alive() for t in threads):
            raise click.ClickException("every component stopped; see the log above")
    for thread in threads:
        thread.join(timeout=grace_seconds)
    # Each component has closed its Pulsar client by now. Leave without the interpreter's
    # finalization: the Pulsar client's C++ threads can still be winding down, and finalizing
    # Python under them intermittently aborts the process ("terminate called without an
    # active exception", apache/pulsar-client-python#256), turning a clean stop into exit 134.
    import logging
    import os

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@main.command()
@click.argument("target", required=False)
@click.option("-n", "--namespace", help="Every CR of this Kubernetes namespace.")
@click.option("--since", help="From this long ago (90s, 15m, 1h30m, 2d) or this time (RFC 3339).")
@click.option("--until", help="Up to this time (or this long ago).")
@click.option("--type", "types", default="change,reconcile,scale", show_default=True,
              help="What to show: change (CRs and pods), reconcile, scale; comma-separated.")
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "json", "jsonl"]),
              default="table", show_default=True)
@click.option("-f", "--follow", is_flag=True, help="Keep streaming new entries (Ctrl-C stops).")
@click.option("--summary", is_flag=True, help="Per CR: changes, reconciles, failures, scalings.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False),
              help="Write a self-contained page with the timeline drawn, instead of printing.")
@click.option("--status", "include_status", is_flag=True,
              help="Also show status-only changes of the CRs.")
@click.pass_context
def history(ctx: click.Context, target: str | None, namespace: str | None, since: str | None,
            until: str | None, types: str, fmt: str, follow: bool, summary: bool,
            html_path: str | None, include_status: bool) -> None:
    """What happened to a Function, Source, Sink or FunctionMesh, and why: one timeline from
    the operator's topics (needs read access to them, nothing in Kubernetes).

    TARGET is KIND/NAMESPACE/NAME, e.g. function/default/word-count; without it, every CR
    (of --namespace, if given)."""
    from fmesh_events import history as hist

    try:
        wanted = [t.strip() for t in types.split(",") if t.strip()]
        bad = sorted(set(wanted) - {"change", "reconcile", "scale"})
        if bad or not wanted:
            raise hist.HistoryError(f"unknown --type {', '.join(bad) or '(empty)'}: use change, "
                                    "reconcile, scale")
        q = hist.Query(key=hist.parse_key(target) if target else None, namespace=namespace,
                       since=hist.parse_time(since) if since else None,
                       until=hist.parse_time(until) if until else None,
                       types=wanted, follow=follow, include_status=include_status)
        if q.since and q.until and q.until < q.since:
            raise hist.HistoryError("--until is before --since")
        count = hist.query(_settings(ctx), q, sys.stdout, fmt, summary, html_path)
    except hist.HistoryError as error:
        raise click.ClickException(str(error)) from None
    if count == 0 and q.key and not follow:
        raise click.ClickException(
            f"no history for {q.key}{' since ' + since if since else ''}: check the name "
            "(kubectl get functions,sources,sinks,functionmeshes -A) or widen --since")


@main.command()
@click.option("--since", required=True, help="Replay keys changed since (1h, or RFC 3339).")
@click.argument("keys", nargs=-1)
@click.option("--timeout", default=120.0, show_default=True,
              help="Seconds to wait for the reconcilers' answers.")
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.pass_context
def replay(ctx: click.Context, since: str, keys: tuple[str, ...], timeout: float,
           fmt: str) -> None:
    """Reconcile again what the topics say changed since --since (or only KEYS), through the
    running reconcilers, and report what that wrote. On a healthy cluster: nothing."""
    from fmesh_events import history as hist

    try:
        results = hist.replay(_settings(ctx), hist.parse_time(since),
                              [hist.parse_key(k) for k in keys], timeout)
    except hist.HistoryError as error:
        raise click.ClickException(str(error)) from None
    if fmt == "json":
        click.echo(json.dumps([r.__dict__ for r in results], indent=1))
    else:
        width = max([len(r.key) for r in results] + [3])
        click.echo(f"{'KEY':<{width}}  {'OUTCOME':<13}  WROTE")
        for r in results:
            wrote = ", ".join(r.writes) or "nothing"
            click.echo(f"{r.key:<{width}}  {r.outcome:<13}  {wrote}{'  ' + r.error if r.error else ''}")
    writes = sum(len(r.writes) for r in results)
    unanswered = sum(r.outcome == "NO ANSWER" for r in results)
    click.echo(f"replayed {len(results)} key(s): {writes} write(s)"
               + (" (the cluster already matched)" if results and not writes else "")
               + (f"; {unanswered} without an answer in {timeout:g}s (is a reconciler running?)"
                  if unanswered else ""), err=True)
    ctx.exit(hist.replay_exit_code(results))


main.add_command(migrate)


@main.group()
def dev() -> None:
    """A local stack: a real Pulsar broker and a real Kubernetes control plane."""


def _stack_dir(ctx: click.Context) -> Path:
    return _settings(ctx).resolved_stack_dir


def _default_crds() -> list[Path]:
    """The committed CRDs next to the package (a checkout), else generate them."""
    repo_crds = Path(__file__).resolve().parent.parent / "crds"
    files = sorted(repo_crds.glob("*.yaml")) if repo_crds.is_dir() else []
    if files:
        return files
    from fmesh_events.models import crd

    return crd.write_crds(Path.home() / ".cache" / "fmesh-events" / "crds")


@dev.command("up")
@click.option("--backend", type=click.Choice(["auto", "local", "docker"]), envvar="FMESH_STACK_BACKEND",
              default="auto", show_default=True,
              help="local: processes built from package registries; docker: testcontainers.")
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.pass_context
def dev_up(ctx: click.Context, backend: str, output: str) -> None:
    """Start the stack (first time: fetch and build, with progress), apply the CRDs, print
    the KUBECONFIG path and the Pulsar URLs."""
    from fmesh_events import devstack

    settings = _settings(ctx)
    try:
        stack = devstack.up(_stack_dir(ctx), settings.cache_dir, backend, crds=_default_crds(),
                            real_node=settings.real_node)
    except devstack.StackError as error:
        raise click.ClickException(str(error)) from error
    info = devstack.status(stack.dir)
    if output == "json":
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"dev stack up in {stack.started_seconds}s ({stack.backend}); use it with:")
    ctx.invoke(dev_env, kubectl_path=False)


@dev.command("env")
@click.option("--kubectl", "kubectl_path", is_flag=True,
              help="Print only the path of the kubectl that matches the stack.")
@click.pass_context
def dev_env(ctx: click.Context, kubectl_path: bool) -> None:
    """Print shell exports for the running stack: eval "$(fmesh-events dev env)"."""
    from fmesh_events import devstack

    try:
        stack = devstack.StackInfo.load(_stack_dir(ctx))
    except devstack.StackError as error:
        raise click.ClickException(str(error)) from error
    if kubectl_path:
        click.echo(stack.kubectl_path)
        return
    click.echo(f"export KUBECONFIG={stack.kubeconfig}")
    click.echo(f"export FMESH_KUBECONFIG={stack.kubeconfig}")
    click.echo(f"export FMESH_PULSAR_SERVICE_URL={stack.pulsar_service_url}")
    click.echo(f"export FMESH_PULSAR_ADMIN_URL={stack.pulsar_admin_url}")
    if stack.real_node:
        from fmesh_events.devstack import node

        urls = node.in_cluster_urls()
        click.echo("# pods on the real node reach the dev Pulsar at (a pulsarConfig ConfigMap's values):")
        click.echo(f"export FMESH_POD_BROKER_SERVICE_URL={urls['brokerServiceURL']}")
        click.echo(f"export FMESH_POD_WEB_SERVICE_URL={urls['webServiceURL']}")
        click.echo("# an operator run here reaches those names at the node's address:")
        aliases = json.dumps(node.host_aliases(stack), separators=(",", ":"))
        click.echo(f"export FMESH_PULSAR_HOST_ALIASES={shlex.quote(aliases)}")


@dev.command("image")
@click.option("--tag", default=__version__, show_default=True, help="Tag of the image.")
@click.pass_context
def dev_image(ctx: click.Context, tag: str) -> None:
    """Build the operator's image from this checkout (Docker; a local base when none can be
    pulled) and push it to the stack's registry as ghcr.io/fmesh-events/fmesh-events:<tag>,
    where the real node pulls it (`kubectl apply -k deploy/`)."""
    from fmesh_events import devstack
    from fmesh_events.devstack import images
    from fmesh_events.devstack.builds import BuildError
    from fmesh_events.devstack.progress import Progress

    settings = _settings(ctx)
    source = Path(__file__).resolve().parent.parent
    if not (source / "Dockerfile").exists():
        raise click.ClickException(f"no Dockerfile in {source}: run this from a checkout")
    try:
        stack = devstack.StackInfo.load(_stack_dir(ctx))
        local_tag = images.build_operator_image(source, tag, settings.cache_dir, Progress())
        if stack.registry_port:
            images.push_images(f"127.0.0.1:{stack.registry_port}",
                               {local_tag: [(images.OPERATOR_IMAGE_REPOSITORY, tag)]}, Progress())
    except (devstack.StackError, BuildError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"ghcr.io/{images.OPERATOR_IMAGE_REPOSITORY}:{tag}")


@dev.command("roundtrip")
@click.argument("input_topic")
@click.argument("output_topic")
@click.argument("messages", nargs=-1, required=True)
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for the output.")
@click.pass_context
def dev_roundtrip(ctx: click.Context, input_topic: str, output_topic: str, messages: tuple[str, ...],
                  timeout: float) -> None:
    """Send MESSAGES to INPUT_TOPIC and print what comes out on OUTPUT_TOPIC (one line each):
    a quick look at functions processing messages. Exit 1 when fewer come out in time."""
    import secrets
    import time

    import pulsar

    from fmesh_events import pulsar_client

    client = pulsar_client.connect(_settings(ctx))
    try:
        # String schema: what a function typed java.lang.String (the samples) registers.
        string = pulsar.schema.StringSchema()
        consumer = client.subscribe(output_topic, f"dev-roundtrip-{secrets.token_hex(3)}",
                                    initial_position=pulsar.InitialPosition.Latest, schema=string)
        producer = client.create_producer(input_topic, schema=string)
        for message in messages:
            producer.send(message)
        click.echo(f"sent {len(messages)} message(s) to {input_topic}", err=True)
        received = 0
        deadline = time.monotonic() + timeout
        while received < len(messages) and time.monotonic() < deadline:
            try:
                got = consumer.receive(timeout_millis=1000)
            except pulsar.Timeout:
                continue
            consumer.acknowledge(got)
            click.echo(got.value())
            received += 1
        consumer.unsubscribe()
    finally:
        client.close()
    if received < len(messages):
        raise click.ClickException(f"{received} of {len(messages)} came out on {output_topic} "
                                   f"within {timeout:g}s")


@dev.command("down")
@click.pass_context
def dev_down(ctx: click.Context) -> None:
    """Stop the stack and keep its logs."""
    from fmesh_events import devstack

    try:
        stack = devstack.StackInfo.load(_stack_dir(ctx))
    except devstack.StackError as error:
        raise click.ClickException(str(error)) from error
    devstack.down(stack)
    click.echo(f"dev stack in {stack.dir} stopped")


@dev.command("status")
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.pass_context
def dev_status(ctx: click.Context, output: str) -> None:
    """What runs, where, and how to reach it. Exit 1 when something is stopped."""
    from fmesh_events import devstack

    try:
        info = devstack.status(_stack_dir(ctx))
    except devstack.StackError as error:
        raise click.ClickException(str(error)) from error
    processes: dict[str, str] = info["processes"]  # type: ignore[assignment]
    if output == "json":
        click.echo(json.dumps(info, indent=2))
    else:
        for key in ("backend", "kubeconfig", "pulsar_service_url", "pulsar_admin_url"):
            click.echo(f"{key:<20} {info[key]}")
        for name, state in processes.items():
            click.echo(f"{name:<20} {state}")
    healthy = bool(info["containers"]) or (
        bool(processes) and all(state == "running" for state in processes.values())
    )
    sys.exit(0 if healthy else 1)
