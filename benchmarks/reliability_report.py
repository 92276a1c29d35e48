"""The reliability suite's figures (issue 8), from one run of scripts/reliability:

- the JSON lines the tests reported (tests/reliability.py: one line per test, its figures),
- pytest's JUnit XML of the same run (what passed, failed, was skipped),

written to benchmarks/results/reliability.json and, as tables, into docs/reliability.md
between its markers. Nothing here is measured: it only reads what the tests measured, so
the docs say exactly what the last run said.

Usage: python benchmarks/reliability_report.py FIGURES.jsonl JUNIT.xml [--long]
       [--out benchmarks/results/reliability.json] [--doc docs/reliability.md]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- reliability:begin -->", "<!-- reliability:end -->"
FAULTS = ("operator SIGKILLed", "broker restarted",
          "API server and etcd restarted, history compacted",
          "two operators, leading watcher killed", "poison CRs")


def read_figures(path: Path) -> dict[str, dict[str, Any]]:
    """test name -> its figures (the last line wins when a test reported twice)."""
    out: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            out[entry.pop("test")] = entry
    return out


def read_junit(path: Path) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    failed: list[str] = []
    seconds = 0.0
    for case in ET.parse(path).getroot().iter("testcase"):
        seconds += float(case.get("time") or 0)
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            outcomes["failed"] += 1
            failed.append(name)
        elif case.find("skipped") is not None:
            outcomes["skipped"] += 1
        else:
            outcomes["passed"] += 1
    return {"outcomes": dict(outcomes), "failed": failed, "seconds": round(seconds)}


def _n(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"
    return "-" if value is None else str(value)


def markdown(report: dict[str, Any]) -> str:
    figures, junit = report["figures"], report["junit"]
    lines = [
        f"Last run: {report['time']} on {report['machine']}, "
        f"{'long' if report['long'] else 'short'} variants "
        f"(`scripts/reliability{' --long' if report['long'] else ''}`): "
        f"{_n(junit['outcomes'].get('passed', 0))} tests passed, "
        f"{_n(junit['outcomes'].get('failed', 0))} failed, "
        f"{_n(junit['outcomes'].get('skipped', 0))} skipped, in {junit['seconds'] // 60} min.",
        "",
        "| fault, during a steady churn | CRs live | writes | kills / restarts | "
        "changes on resource-events (missing) | reconciles (two at once) | "
        "converged after the churn stopped |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in FAULTS:
        f = figures.get(name)
        if f is None:
            lines.append(f"| {name} | not run | | | | | |")
            continue
        churn = f["churn"]
        kills = f.get("kills", f.get("operator_restarts", 0))
        changes = f["changes_exact"] + f["changes_covered_by_resync"]
        via = f" ({f['changes_covered_by_resync']} by RESYNC)" if f["changes_covered_by_resync"] else ""
        lines.append(
            f"| {name} | {_n(f['crs_live'])} | {_n(churn['writes'])} | {_n(kills)} | "
            f"{_n(changes)}{via} ({_n(f['changes_missing'])}) | {_n(f['reconciles'])} "
            f"({_n(f['overlaps_while_a_process_joined'])} while a process joined) | "
            f"{_n(f['seconds_to_converge_after_churn'])} s |")
    load = figures.get("load")
    lines += ["", "| load | figure |", "|---|---|"]
    if load is None:
        lines.append("| not run | |")
    else:
        steps = ", ".join(f"{_n(s['writes_per_second'])}/s {'kept up' if s['kept_up'] else 'fell behind'}"
                          for s in load["steps"])
        hold = load["hold"]
        for tried in load.get("holds_not_sustained") or []:
            lines.append(f"| held, not sustained | {_n(tried['writes_per_second'])} writes/s: "
                         f"backlog slope {_n(tried['backlog_slope_per_second'])} messages/s |")
        lines += [
            f"| steps (writes/s achieved) | {steps} |",
            f"| held | {_n(load['sustained_writes_per_second'])} writes/s for "
            f"{_n(load['hold_minutes'])} min ({_n(hold['messages_in_per_second'])} messages/s "
            f"into the operator's subscriptions) |",
            f"| operator backlog over the hold | median {_n(hold['backlog_median'])}, max "
            f"{_n(hold['backlog_max'])}, slope {_n(hold['backlog_slope_per_second'])} messages/s |",
            f"| write -> its change on resource-events, over the hold | p50 "
            f"{hold['lag_p50_seconds']:.2f} s, p99 {hold['lag_p99_seconds']:.2f} s, slope "
            f"{hold['lag_slope']:+.4f} s/s |",
            f"| operator memory over the hold | {_n(load['rss_mb_start'])} MB -> "
            f"{_n(load['rss_mb_end'])} MB (max {_n(load['rss_mb_max'])}), slope "
            f"{load['rss_slope_mb_per_minute']:+.2f} MB/min |",
            f"| afterwards | drained in {_n(load['seconds_to_drain_after'])} s, converged in "
            f"{_n(load['seconds_to_converge_after'])} s |",
        ]
    bad, malformed = figures.get("bad input"), figures.get("malformed messages")
    props, garbage = figures.get("property tests"), figures.get("watcher restarted on garbage")
    scan, rbac = figures.get("secret scan"), figures.get("rbac")
    auth = figures.get("pulsar token auth")
    lines += ["", "| bad input and security | figure |", "|---|---|"]
    if bad:
        lines.append(f"| bad CRs applied with kubectl | {_n(bad['tried'])}: {_n(bad['refused'])} "
                     f"refused by the schema naming the field, {_n(bad['reported'])} reported on "
                     f"status naming the field, {_n(bad['runs'])} odd but valid and Ready; "
                     f"{_n(bad['crashes'])} crashes, {_n(bad['half_made'])} half made |")
    if malformed:
        lines.append(f"| malformed messages on the internal topics | {_n(malformed['messages'])}, "
                     f"each dead-lettered with its reason; {_n(malformed['crashes'])} crashes |")
    if garbage:
        lines.append(f"| watcher restarted with garbage at the end of its topic | "
                     f"{_n(garbage['restarts'])} restarts, resumed from its own checkpoint each time |")
    if props:
        lines.append(f"| property tests (hypothesis: models, renderer, scaling math, codec, "
                     f"redaction) | {_n(props['tests'])} tests, up to {_n(props['max_examples'])} "
                     f"generated examples |")
    if scan:
        lines.append(f"| secrets found on the topics | **{_n(scan['hits'])}** ({_n(scan['messages'])} "
                     f"messages, {_n(scan['megabytes'])} MB, {_n(scan['topics'])} topics, "
                     f"{_n(scan['secret_values'])} secret values in {_n(scan['forms_searched'])} "
                     f"raw and base64 forms) |")
    if rbac:
        lines.append(f"| operator under deploy/'s RBAC | {_n(rbac['requests'])} requests, "
                     f"**{_n(rbac['forbidden'])}** forbidden; {_n(rbac['permissions_used'])} of "
                     f"{_n(rbac['permissions_granted'])} permissions used, the other "
                     f"{_n(rbac['seen_only_in_admission'])} checked only in admission "
                     f"(finalizers), {_n(rbac['unused'])} unused |")
    if auth:
        lines.append("| Pulsar with token authentication | the operator works with its token; "
                     "no token, a forged token and another role cannot read the audit topics "
                     "(client and admin API) |")
    if junit["failed"]:
        lines += ["", "Failed in this run: " + ", ".join(f"`{n}`" for n in junit["failed"])]
    return "\n".join(lines)


def write_doc(doc: Path, section: str) -> None:
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{doc}: no {BEGIN} ... {END} markers to write between")
    head, rest = text.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{section}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("figures", type=Path)
    parser.add_argument("junit", type=Path)
    parser.add_argument("--long", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/reliability.json")
    parser.add_argument("--doc", type=Path, default=None)
    args = parser.parse_args()
    report = {
        "benchmark": "reliability", "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{platform.machine()}, {_cores()} cores", "long": args.long,
        "junit": read_junit(args.junit), "figures": read_figures(args.figures),
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    section = markdown(report)
    print(section)
    if args.doc is not None:
        write_doc(args.doc, section)
        print(f"\nwritten to {args.out} and {args.doc}", file=sys.stderr)


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
