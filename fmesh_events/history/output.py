"""Renderers of timeline entries: a table a person reads, JSON lines, a streamed JSON array,
the per-key summary, and one self-contained HTML page with a chart per key."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from types import TracebackType
from typing import TextIO

import orjson

from fmesh_events.history.timeline import (
    FAILURES,
    SPEC_CHANGES,
    Entry,
    Source,
    SummaryBuilder,
    SummaryRow,
    What,
    iso_millis,
)

KEY_WIDTH = 40
_TIME_WIDTH = 24  # 2025-11-24T16:00:00.123Z
_WHAT_WIDTH = max(len(w.value) for w in What)
_TOOLTIP_CHANGES = 10


# -- text ---------------------------------------------------------------------------------------
def table_header(key_width: int = KEY_WIDTH) -> str:
    return f"{'TIME':<{_TIME_WIDTH}}  {'KEY':<{key_width}}  {'WHAT':<{_WHAT_WIDTH}}  SUMMARY"


def format_table_line(entry: Entry, key_width: int = KEY_WIDTH) -> str:
    """One entry; its field changes follow as indented lines. A key longer than the column
    pushes the rest of its line rather than losing characters."""
    line = (f"{iso_millis(entry.time):<{_TIME_WIDTH}}  {entry.key:<{key_width}}  "
            f"{entry.what.value:<{_WHAT_WIDTH}}  {entry.summary}")
    return "\n".join([line, *(f"    {change.describe()}" for change in entry.changes)])


def to_json_line(entry: Entry) -> str:
    # orjson: JSON encoding was the largest single cost of a replay printed as JSONL.
    return orjson.dumps(entry.to_json_dict(), default=str).decode()


class JsonArrayWriter:
    """Streams entries as one JSON array: nothing is held, so a long history costs no memory.
    Leaving the `with` block on an exception leaves the array open: truncated output must
    not parse as if it were complete."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.count = 0

    def write(self, entry: Entry) -> None:
        self.out.write("[\n" if self.count == 0 else ",\n")
        self.out.write(to_json_line(entry))
        self.count += 1

    def close(self) -> None:
        self.out.write("\n]\n" if self.count else "[]\n")

    def __enter__(self) -> JsonArrayWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is None:
            self.close()


def _error_cell(row: SummaryRow, limit: int = 80) -> str:
    if row.last_error is None or row.last_error_time is None:
        return "-"
    text = row.last_error if len(row.last_error) <= limit else row.last_error[: limit - 1] + "…"
    return f"{iso_millis(row.last_error_time)} {text}"


def summary_table(rows: list[SummaryRow]) -> str:
    header = ["KEY", "CHANGES", "RECONCILES", "FAILURES", "SCALE UPS", "SCALE DOWNS", "LAST SEEN",
              "LAST ERROR"]
    cells = [[row.key, str(row.changes), str(row.reconciles), str(row.failures), str(row.scale_ups),
              str(row.scale_downs), iso_millis(row.last_seen) if row.last_seen else "-", _error_cell(row)]
             for row in rows]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header) - 1)]
    numeric = range(1, 6)

    def fmt(line: list[str]) -> str:
        padded = [line[i].rjust(w) if i in numeric and line is not header else line[i].ljust(w)
                  for i, w in enumerate(widths)]
        return "  ".join([*padded, line[-1]]).rstrip()

    return "\n".join(fmt(line) for line in [header, *cells])


# -- HTML ---------------------------------------------------------------------------------------
Point = tuple[datetime, float]


def _extremes(points: list[Point]) -> list[Point]:
    low = min(points, key=lambda p: p[1])
    high = max(points, key=lambda p: p[1])
    return [low] if low == high else sorted([low, high])


class _Series:
    """A line's points, about `limit` at most: past it, neighbouring points merge into buckets
    that keep their lowest and highest value, so peaks survive and resolution stays even."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 8)
        self.bucket = 1  # inputs per bucket; a bucket keeps its extremes (the point itself at 1)
        self.points: list[Point] = []
        self.pending: list[Point] = []
        self.seen = 0

    def add(self, time: datetime, value: float) -> None:
        self.seen += 1
        self.pending.append((time, value))
        if len(self.pending) < self.bucket:
            return
        self.points.extend(_extremes(self.pending))
        self.pending = []
        if len(self.points) > self.limit:
            self.points = [p for i in range(0, len(self.points), 4) for p in _extremes(self.points[i:i + 4])]
            self.bucket = 4 if self.bucket == 1 else self.bucket * 2

    def all(self) -> list[Point]:
        return self.points + (_extremes(self.pending) if self.pending else [])


@dataclass(frozen=True, slots=True)
class _Mark:
    time: datetime
    label: str


class _Marks:
    """Marks of one class, `limit` at most: past it every other one goes, and from then on
    only every `stride`-th new one is kept, so a dense history shows an even sample."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 2)
        self.stride = 1
        self.items: list[_Mark] = []
        self.seen = 0

    def add(self, mark: _Mark) -> None:
        self.seen += 1
        if (self.seen - 1) % self.stride:
            return
        self.items.append(mark)
        if len(self.items) > self.limit:
            self.items = self.items[::2]
            self.stride *= 2


MARK_CLASSES = ("change", "reconcile", "failure")
_LANE_LABELS = {"change": "spec changes", "reconcile": "reconciles", "failure": "failures"}


@dataclass
class _KeyPage:
    """What one key's section draws, bounded whatever the number of entries."""

    replicas: _Series
    backlog: _Series
    marks: dict[str, _Marks]
    rows: deque[Entry]
    first: datetime
    last: datetime
    rows_seen: int = 0
    holds: int = 0
    last_replicas: int | None = None

    def replica(self, time: datetime, value: int) -> None:
        if value != self.last_replicas:  # a step line needs only the steps
            self.replicas.add(time, value)
            self.last_replicas = value


@dataclass
class HtmlPage:
    """Collects entries as they stream by, then renders one HTML file: inline CSS and SVG, no
    network, so it can be mailed or attached to a ticket."""

    title: str = "fmesh-events history"
    max_points: int = 2000
    max_rows: int = 500
    _keys: dict[str, _KeyPage] = field(default_factory=dict, init=False)
    _summary: SummaryBuilder = field(default_factory=SummaryBuilder, init=False)

    def add(self, entry: Entry) -> None:
        self._summary.add(entry)
        page = self._keys.get(entry.key)
        if page is None:
            page = _KeyPage(_Series(self.max_points), _Series(self.max_points),
                            {name: _Marks(self.max_points) for name in MARK_CLASSES},
                            deque(maxlen=self.max_rows), entry.time, entry.time)
            self._keys[entry.key] = page
        page.first, page.last = min(page.first, entry.time), max(page.last, entry.time)
        details = entry.details
        if entry.source == Source.SCALE:
            page.replica(entry.time, int(details["currentReplicas"]))
            if details.get("applied"):
                page.replica(entry.time, int(details["desiredReplicas"]))
            if details.get("backlog") is not None:
                page.backlog.add(entry.time, float(details["backlog"]))
        elif entry.what == What.STATEFULSET and details.get("replicas") is not None:
            page.replica(entry.time, int(details["replicas"]))
        lines = [f"{iso_millis(entry.time)} {entry.what.value}: {entry.summary}",
                 *(c.describe() for c in entry.changes[:_TOOLTIP_CHANGES])]
        mark = _Mark(entry.time, "\n".join(lines))
        if entry.what in SPEC_CHANGES:
            page.marks["change"].add(mark)
        elif entry.what in FAILURES:
            page.marks["failure"].add(mark)
        elif entry.source == Source.RECONCILE:
            page.marks["reconcile"].add(mark)
        if entry.what == What.HOLD and not details.get("error"):
            page.holds += 1  # one per scaler tick: the backlog line shows them
        else:
            page.rows_seen += 1
            page.rows.append(entry)

    def render(self) -> str:
        rows = self._summary.rows()
        sections = [_section(i, row, self._keys[row.key]) for i, row in enumerate(rows)]
        if rows:
            first = min(p.first for p in self._keys.values())
            last = max(p.last for p in self._keys.values())
            keys = "1 key" if len(rows) == 1 else f"{len(rows)} keys"
            span = f"{keys}, {iso_millis(first)} to {iso_millis(last)} (times in UTC)"
        else:
            span = "No entries."
        return "".join([
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
            f"<title>{escape(self.title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{escape(self.title)}</h1><p class=\"span\">{escape(span)}</p>",
            _index(rows) if rows else "", *sections, "</body></html>\n",
        ])


_CSS = """
body{font:13px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2937;margin:24px;
 max-width:1100px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 4px;font-family:ui-monospace,monospace}
.span,.counts,.note{color:#4b5563;margin:2px 0}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:3px 8px;vertical-align:top;
 border-bottom:1px solid #e5e7eb}th{background:#f9fafb;font-weight:600}
td.num{text-align:right}td.key{white-space:nowrap}td.time,td.what{white-space:nowrap;font-family:ui-monospace,monospace;font-size:12px}
.table-wrap{max-height:320px;overflow:auto;border:1px solid #e5e7eb;margin-top:6px}
.diff{font-family:ui-monospace,monospace;font-size:12px;color:#4b5563;padding-left:12px}
.legend{display:flex;flex-wrap:wrap;gap:16px;margin:6px 0}.legend span{display:inline-flex;
 align-items:center;gap:6px}
.sw{display:inline-block;width:18px;height:0;border-top:3px solid}.sw.dot{width:10px;height:10px;
 border:none;border-radius:50%}
.sw.replicas{border-color:#2563eb}.sw.backlog{border-color:#f59e0b;border-top-style:dashed}
.sw.change{background:#7c3aed}.sw.reconcile{background:#16a34a}.sw.failure{background:#dc2626}
svg.chart{width:100%;height:auto;max-width:1000px;display:block;background:#fff}
.frame{fill:none;stroke:#9ca3af}.grid line{stroke:#eef0f3}.tick{font-size:11px;fill:#4b5563}
.axis-label{font-size:12px;fill:#374151}.lane-label{font-size:11px;fill:#4b5563}
.lane{stroke:#f3f4f6}.empty{font-size:13px;fill:#9ca3af}
.line{fill:none}.line.replicas{stroke:#2563eb;stroke-width:2.5}
.line.backlog{stroke:#f59e0b;stroke-width:2;stroke-dasharray:6 3}
.mark{opacity:.85}.mark.change{fill:#7c3aed}.mark.reconcile{fill:#16a34a}
.mark.failure{fill:#dc2626}.mark:hover{opacity:1;stroke:#111827;stroke-width:1.5}
.guide{stroke-width:1;stroke-dasharray:2 3}.guide.change{stroke:#c4b5fd}.guide.failure{stroke:#fca5a5}
tr.failure td.what{color:#dc2626}tr.change td.what{color:#7c3aed}tr.scale td.what{color:#b45309}
"""


def _index(rows: list[SummaryRow]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in
                   ("key", "changes", "reconciles", "failures", "scale ups", "scale downs", "last error"))
    body = []
    for i, row in enumerate(rows):
        numbers = "".join(f"<td class=\"num\">{n}</td>" for n in
                          (row.changes, row.reconciles, row.failures, row.scale_ups, row.scale_downs))
        body.append(f"<tr><td class=\"key\"><a href=\"#k-{i}\">{escape(row.key)}</a></td>{numbers}"
                    f"<td>{escape(_error_cell(row))}</td></tr>")
    return f"<table class=\"index\"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _section(index: int, row: SummaryRow, page: _KeyPage) -> str:
    counts = (f"spec changes {row.changes} · reconciles {row.reconciles} (failed {row.failures}) · "
              f"scale-ups {row.scale_ups} · scale-downs {row.scale_downs}")
    notes = []
    if page.holds:
        notes.append(f"{page.holds} hold decisions are drawn in the chart only.")
    if page.rows_seen > len(page.rows):
        notes.append(f"The table shows the last {len(page.rows)} of {page.rows_seen} entries.")
    sampled = page.replicas.bucket > 1 or page.backlog.bucket > 1 or any(
        m.stride > 1 for m in page.marks.values())
    if sampled:
        notes.append("Dense history: the chart shows an even sample that keeps the peaks.")
    return "".join([
        f"<section class=\"key\" id=\"k-{index}\"><h2>{escape(row.key)}</h2>",
        f"<p class=\"counts\">{escape(counts)}</p>", _LEGEND, _chart(row.key, page),
        *(f"<p class=\"note\">{escape(n)}</p>" for n in notes), _table(page), "</section>",
    ])


_LEGEND = ("<div class=\"legend\"><span><i class=\"sw replicas\"></i>replicas (left axis)</span>"
           "<span><i class=\"sw backlog\"></i>backlog, messages (right axis)</span>"
           "<span><i class=\"sw dot change\"></i>spec change</span>"
           "<span><i class=\"sw dot reconcile\"></i>reconcile</span>"
           "<span><i class=\"sw dot failure\"></i>failure</span></div>")

# Chart geometry (SVG user units; the SVG scales to the page's width).
_W, _H = 1000, 300
_LEFT, _RIGHT, _TOP = 84, 70, 14
_PLOT_BOTTOM = 184
_LANES = {"change": 202, "reconcile": 220, "failure": 238}
_MAX_GUIDES = 40  # vertical guides for changes and failures; more would hide the lines
_TICKS_Y = 262
_TITLE_Y = 288
_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
               86400, 172800, 604800, 2592000)


def _nice_step(span: float, ticks: int) -> float:
    raw = max(span / ticks, 1e-9)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 5, 10) if raw <= m * magnitude * (1 + 1e-9))


def _compact(value: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:g}{suffix}"
    return f"{value:g}"


@dataclass(frozen=True, slots=True)
class _Scale:
    """Data -> SVG coordinates for one chart."""

    t0: float
    t1: float
    replicas_max: float
    backlog_max: float

    def x(self, time: datetime) -> float:
        return _LEFT + (time.timestamp() - self.t0) / (self.t1 - self.t0) * (_W - _LEFT - _RIGHT)

    def y(self, value: float, top: float) -> float:
        return _PLOT_BOTTOM - value / top * (_PLOT_BOTTOM - _TOP)


def _time_ticks(scale: _Scale) -> list[tuple[float, str]]:
    span = scale.t1 - scale.t0
    step = next((s for s in _TIME_STEPS if span / s <= 8), _TIME_STEPS[-1])
    first = datetime.fromtimestamp(scale.t0, UTC)
    last = datetime.fromtimestamp(scale.t1, UTC)
    if step >= 86400:
        fmt = "%Y-%m-%d"
    elif first.date() != last.date():
        fmt = "%m-%d %H:%M"
    else:
        fmt = "%H:%M:%S" if step < 60 else "%H:%M"
    ticks = []
    t = math.ceil(scale.t0 / step) * step
    while t <= scale.t1:
        ticks.append((float(t), datetime.fromtimestamp(t, UTC).strftime(fmt)))
        t += step
    return ticks


def _chart(key: str, page: _KeyPage) -> str:
    replicas = sorted(page.replicas.all())
    backlog = sorted(page.backlog.all())
    pad = max((page.last - page.first).total_seconds() * 0.02, 30.0)
    t0 = (page.first - timedelta(seconds=pad)).timestamp()
    t1 = (page.last + timedelta(seconds=pad)).timestamp()
    top_replicas = max((v for _, v in replicas), default=1)
    replicas_step = max(1.0, _nice_step(top_replicas + 0.5, 5))
    backlog_step = _nice_step(max((v for _, v in backlog), default=0) or 10, 4)
    scale = _Scale(t0, t1, math.ceil((top_replicas + 0.5) / replicas_step) * replicas_step,
                   math.ceil(max((v for _, v in backlog), default=0) / backlog_step) * backlog_step
                   or backlog_step)
    out = [f"<svg class=\"chart\" viewBox=\"0 0 {_W} {_H}\" xmlns=\"http://www.w3.org/2000/svg\" "
           f"role=\"img\" aria-label=\"{escape(f'replicas, backlog and events of {key}')}\">"]
    out.append("<g class=\"grid\">")
    value = 0.0
    while value <= scale.replicas_max + 1e-9:
        y = scale.y(value, scale.replicas_max)
        out.append(f"<line x1=\"{_LEFT}\" x2=\"{_W - _RIGHT}\" y1=\"{y:.1f}\" y2=\"{y:.1f}\"/>"
                   f"<text class=\"tick\" x=\"{_LEFT - 6}\" y=\"{y + 4:.1f}\" text-anchor=\"end\">"
                   f"{_compact(value)}</text>")
        value += replicas_step
    for t, label in _time_ticks(scale):
        x = scale.x(datetime.fromtimestamp(t, UTC))
        out.append(f"<line x1=\"{x:.1f}\" x2=\"{x:.1f}\" y1=\"{_TOP}\" y2=\"{_LANES['failure'] + 8}\"/>"
                   f"<text class=\"tick\" x=\"{x:.1f}\" y=\"{_TICKS_Y}\" text-anchor=\"middle\">"
                   f"{escape(label)}</text>")
    out.append("</g>")
    if backlog:
        value = 0.0
        while value <= scale.backlog_max + 1e-9:
            y = scale.y(value, scale.backlog_max)
            out.append(f"<text class=\"tick\" x=\"{_W - _RIGHT + 6}\" y=\"{y + 4:.1f}\">"
                       f"{_compact(value)}</text>")
            value += backlog_step
    out.append(f"<rect class=\"frame\" x=\"{_LEFT}\" y=\"{_TOP}\" width=\"{_W - _LEFT - _RIGHT}\" "
               f"height=\"{_PLOT_BOTTOM - _TOP}\"/>")
    middle = (_TOP + _PLOT_BOTTOM) / 2
    out.append(f"<text class=\"axis-label\" transform=\"translate(16 {middle}) rotate(-90)\" "
               "text-anchor=\"middle\">replicas</text>")
    if backlog:
        out.append(f"<text class=\"axis-label\" transform=\"translate({_W - 12} {middle}) rotate(90)\" "
                   "text-anchor=\"middle\">backlog (messages)</text>")
    caption = (f"time (UTC), {datetime.fromtimestamp(t0, UTC):%Y-%m-%d %H:%M:%S} to "
               f"{datetime.fromtimestamp(t1, UTC):%Y-%m-%d %H:%M:%S}")
    out.append(f"<text class=\"axis-label\" x=\"{(_LEFT + _W - _RIGHT) / 2}\" y=\"{_TITLE_Y}\" "
               f"text-anchor=\"middle\">{escape(caption)}</text>")
    if replicas:
        out.append(_step_path(replicas, scale, page.last))
    if backlog:
        points = " ".join(f"{scale.x(t):.1f},{scale.y(v, scale.backlog_max):.1f}" for t, v in backlog)
        out.append(f"<polyline class=\"line backlog\" points=\"{points}\"/>")
    if not replicas and not backlog:
        out.append(f"<text class=\"empty\" x=\"{(_LEFT + _W - _RIGHT) / 2}\" y=\"{middle}\" "
                   "text-anchor=\"middle\">no replica or backlog data</text>")
    for name in MARK_CLASSES:
        lane = _LANES[name]
        out.append(f"<line class=\"lane\" x1=\"{_LEFT}\" x2=\"{_W - _RIGHT}\" y1=\"{lane}\" y2=\"{lane}\"/>"
                   f"<text class=\"lane-label\" x=\"{_LEFT - 8}\" y=\"{lane + 4}\" text-anchor=\"end\">"
                   f"{_LANE_LABELS[name]}</text>")
        marks = page.marks[name].items
        guides = name != "reconcile" and len(marks) <= _MAX_GUIDES
        for mark in marks:
            x = scale.x(mark.time)
            if guides:
                out.append(f"<line class=\"guide {name}\" x1=\"{x:.1f}\" x2=\"{x:.1f}\" y1=\"{_TOP}\" "
                           f"y2=\"{lane}\"/>")
            out.append(f"<circle class=\"mark {name}\" cx=\"{x:.1f}\" cy=\"{lane}\" r=\"5\" "
                       f"data-key=\"{escape(key)}\" data-time=\"{iso_millis(mark.time)}\">"
                       f"<title>{escape(mark.label)}</title></circle>")
    out.append("</svg>")
    return "".join(out)


def _step_path(points: list[Point], scale: _Scale, until: datetime) -> str:
    """Replicas hold their value until the next step, up to the key's last entry."""
    first_time, first_value = points[0]
    parts = [f"M{scale.x(first_time):.1f} {scale.y(first_value, scale.replicas_max):.1f}"]
    for time, value in points[1:]:
        parts.append(f"H{scale.x(time):.1f} V{scale.y(value, scale.replicas_max):.1f}")
    parts.append(f"H{scale.x(until):.1f}")
    return f"<path class=\"line replicas\" d=\"{' '.join(parts)}\"/>"


def _row_class(entry: Entry) -> str:
    if entry.what in FAILURES:
        return "failure"
    if entry.what in SPEC_CHANGES:
        return "change"
    return entry.source.value


def _table(page: _KeyPage) -> str:
    rows = []
    for entry in page.rows:
        diff = "".join(f"<div class=\"diff\">{escape(c.describe())}</div>" for c in entry.changes)
        rows.append(f"<tr class=\"{_row_class(entry)}\"><td class=\"time\">{iso_millis(entry.time)}</td>"
                    f"<td class=\"what\">{escape(entry.what.value)}</td>"
                    f"<td>{escape(entry.summary)}{diff}</td></tr>")
    return ("<div class=\"table-wrap\"><table class=\"entries\"><thead><tr><th>time (UTC)</th>"
            f"<th>what</th><th>summary</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>")
