"""`fmesh-events migrate`: from Pulsar's functions worker (`from-pulsar`) and from Function
Mesh (`check`). The global settings come in as ``ctx.obj`` (a Settings), as for every
other command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from fmesh_events.settings import Settings


def _settings(ctx: click.Context) -> Settings:
    settings = ctx.find_object(Settings)
    return settings if settings is not None else Settings()


@click.group()
def migrate() -> None:
    """Move workloads to fmesh-events: from Pulsar's functions worker or from Function Mesh."""


@migrate.command("from-pulsar")
@click.option("--tenant", required=True, help="Pulsar tenant to read.")
@click.option("--namespace", "pulsar_namespace", required=True,
              help="Pulsar namespace (in the tenant) to read.")
@click.option("--mesh", help="Write one FunctionMesh of this name instead of one object each.")
@click.option("--pulsar-config", default="pulsar-config", show_default=True,
              help="Name of the ConfigMap with the cluster's URLs (also written).")
@click.option("-o", "--output", "fmt", type=click.Choice(["yaml", "json"]), default="yaml",
              show_default=True)
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report as JSON to this file instead of stderr.")
@click.option("--worker-metadata-topic", default="persistent://public/functions/metadata",
              show_default=True,
              help="The functions worker's metadata topic, read for package locations and "
              "Java types (the admin API does not give them); empty: do not read it.")
@click.pass_context
def from_pulsar(ctx: click.Context, tenant: str, pulsar_namespace: str, mesh: str | None,
                pulsar_config: str, fmt: str, report_path: Path | None,
                worker_metadata_topic: str) -> None:
    """Print the Functions, Sources and Sinks registered in a Pulsar namespace as fmesh-events
    YAML (or JSON), with a ConfigMap of the cluster's URLs. What has no equivalent is
    reported (stderr or --report), field by field with its value."""
    from fmesh_events.migrate import pulsar_worker as pw

    settings = _settings(ctx)
    try:
        result = pw.migrate(settings, tenant, pulsar_namespace, mesh=mesh,
                            pulsar_config=pulsar_config, metadata_topic=worker_metadata_topic)
    except pw.MigrateError as error:
        raise click.ClickException(str(error)) from None
    if fmt == "json":
        click.echo(json.dumps({"apiVersion": "v1", "kind": "List", "items": result.documents},
                              indent=2))
    else:
        click.echo(pw.dump_yaml(result.documents), nl=False)
    counts = {kind: sum(c.kind == kind for c in result.components) for kind in pw.KINDS}
    summary = (f"{tenant}/{pulsar_namespace}: {counts['Function']} function(s), "
               f"{counts['Source']} source(s), {counts['Sink']} sink(s) converted; "
               f"{sum(f.attention for f in result.findings)} finding(s) need attention")
    if report_path is not None:
        report: dict[str, Any] = {
            "tenant": tenant, "namespace": pulsar_namespace,
            "components": [{"kind": c.kind, "name": c.config.get("name")} for c in result.components],
            "findings": [f.to_json() for f in result.findings],
        }
        report_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
        click.echo(f"{summary}; report in {report_path}", err=True)
        return
    for finding in result.findings:
        click.echo(finding.line(), err=True)
    click.echo(summary, err=True)


@migrate.command("check")
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.pass_context
def check(ctx: click.Context, fmt: str) -> None:
    """Report, for every Function, Source, Sink and FunctionMesh in the cluster, whether
    fmesh-events runs it unchanged or what differs. Exit 0: all supported unchanged;
    2: something needs attention."""
    from fmesh_events.migrate import function_mesh as fm

    try:
        view = fm.read_cluster(_settings(ctx))
    except fm.CheckError as error:
        raise click.ClickException(str(error)) from None
    reports = fm.check(view)
    if fmt == "json":
        click.echo(json.dumps({"objects": [r.to_json() for r in reports], "notes": view.notes},
                              indent=2, default=str))
    else:
        width = max([len(r.key) for r in reports] + [6])
        click.echo(f"{'OBJECT':<{width}}  {'STATUS':<9}  FINDINGS")
        for r in reports:
            status = "attention" if r.attention else "supported"
            lines = [f.line().removeprefix(f"{r.key}: ") for f in r.findings] or ["-"]
            click.echo(f"{r.key:<{width}}  {status:<9}  {lines[0]}")
            for line in lines[1:]:
                click.echo(f"{'':<{width}}  {'':<9}  {line}")
        for note in view.notes:
            click.echo(f"note: {note}", err=True)
    attention = sum(r.attention for r in reports)
    click.echo(f"{len(reports)} object(s): {len(reports) - attention} supported unchanged, "
               f"{attention} need attention", err=True)
    ctx.exit(2 if attention else 0)
