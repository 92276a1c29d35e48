"""The history page in a real browser (Debian's chromium, headless): it must parse into the
marks and lines the renderer meant, and paint. Needs no Pulsar and no Kubernetes."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from fmesh_events import events
from fmesh_events.events import ChangeEvent, EventType
from fmesh_events.history.output import HtmlPage
from fmesh_events.history.timeline import TimelineBuilder

T0 = datetime(2025, 11, 24, 16, 0, tzinfo=UTC)
KEY = "Function/prod/word-count"
STS = "word-count-function"


def _ms(seconds: float) -> int:
    return int((T0 + timedelta(seconds=seconds)).timestamp() * 1000)


def _change(kind: str, name: str, event_type: EventType, obj: dict[str, Any], seconds: float,
            generation: int | None = None, **pod: Any) -> ChangeEvent:
    return ChangeEvent(key=KEY, type=event_type, kind=kind, api_version="v1", namespace="prod", name=name,
                       uid=f"uid-{name}", resource_version=str(_ms(seconds)), generation=generation,
                       observed_time_ms=_ms(seconds), object=json.dumps(obj), **pod)


def _function(event_type: EventType, seconds: float, generation: int, image: str) -> ChangeEvent:
    obj = {"apiVersion": "compute.functionmesh.io/v1alpha1", "kind": "Function",
           "metadata": {"name": "word-count", "namespace": "prod", "generation": generation},
           "spec": {"image": image, "replicas": 1, "maxReplicas": 10,
                    "input": {"topics": ["persistent://public/default/words"]},
                    "pulsar": {"authConfig": {"token": "redacted:5f2b8c01d9e3"}}}}
    return _change("Function", "word-count", event_type, obj, seconds, generation)


def _statefulset(seconds: float, replicas: int, ready: int) -> ChangeEvent:
    obj = {"kind": "StatefulSet", "metadata": {"name": STS}, "spec": {"replicas": replicas},
           "status": {"replicas": replicas, "readyReplicas": ready}}
    return _change("StatefulSet", STS, EventType.MODIFIED, obj, seconds)


def _pod(event_type: EventType, seconds: float, index: int, ready: bool) -> ChangeEvent:
    name = f"{STS}-{index}"
    return _change("Pod", name, event_type, {"kind": "Pod", "metadata": {"name": name}}, seconds,
                   phase="Running" if ready else "Pending", ready=ready, restart_count=0)


def _reconcile(seconds: float, outcome: str, generation: int, children: list[tuple[str, str]],
               error: str | None = None) -> dict[str, Any]:
    record = {"key": KEY, "triggerTopic": "resource-events", "triggerMessageId": f"3:{seconds:.0f}:0",
              "generation": generation, "outcome": outcome, "attempt": 0,
              "children": [{"kind": k, "name": STS if k == "StatefulSet" else f"{STS}-headless",
                            "action": a} for k, a in children],
              "statusChanged": outcome == "OK", "durationMs": 38.5, "error": error, "time": _ms(seconds),
              "reconciler": "reconciler-0"}
    return events.decode_record(events.PARSED_RECONCILE_RECORD,
                                events.encode_record(events.PARSED_RECONCILE_RECORD, record))


def _scale(seconds: float, current: int, desired: int, backlog: int) -> dict[str, Any]:
    action = "UP" if desired > current else "DOWN" if desired < current else "NONE"
    reason = f"backlog {backlog:,} above activation 0, target 3,100 per replica -> {desired}"
    record = {"key": KEY, "time": _ms(seconds), "signalMessageId": f"8:{seconds:.0f}:0", "trigger": "tick",
              "currentReplicas": current, "recommendation": desired, "desiredReplicas": desired,
              "backlogRecommendation": desired, "backlog": backlog, "minReplicas": 1, "maxReplicas": 10,
              "action": action, "applied": action != "NONE", "reason": reason, "error": None,
              "scaler": "scaler-0"}
    return events.decode_record(events.PARSED_SCALE_DECISION,
                                events.encode_record(events.PARSED_SCALE_DECISION, record))


def _page() -> HtmlPage:
    """One Function's morning: created, rolled out, updated (its first rollout fails once),
    scaled 1 -> 4 by a backlog of 12,400 and back to 1 once it is drained."""
    builder, page = TimelineBuilder(), HtmlPage()
    made = [
        builder.add_change(_function(EventType.ADDED, 0, 1, "apachepulsar/pulsar-all:3.3.2"), "1:0:0",
                           events.RESOURCE_EVENTS),
        builder.add_reconcile(_reconcile(1, "OK", 1, [("StatefulSet", "CREATED"), ("Service", "CREATED")]),
                              "4:1:0"),
        builder.add_change(_statefulset(2, 1, 0), "2:1:0", events.POD_EVENTS),
        builder.add_change(_pod(EventType.ADDED, 2, 0, False), "2:2:0", events.POD_EVENTS),
        builder.add_change(_pod(EventType.MODIFIED, 18, 0, True), "2:3:0", events.POD_EVENTS),
        builder.add_change(_statefulset(18, 1, 1), "2:4:0", events.POD_EVENTS),
        builder.add_change(_function(EventType.MODIFIED, 120, 2, "apachepulsar/pulsar-all:3.3.3"), "1:1:0",
                           events.RESOURCE_EVENTS),
        builder.add_reconcile(_reconcile(121, "FAILED", 2, [], "admission webhook \"policy\" denied the "
                                         "request: image tag not allowed"), "4:2:0"),
        builder.add_reconcile(_reconcile(127, "OK", 2, [("StatefulSet", "UPDATED"),
                                                        ("Service", "UNCHANGED")]), "4:3:0"),
        builder.add_reconcile(_reconcile(140, "OK", 2, [("StatefulSet", "UNCHANGED"),
                                                        ("Service", "UNCHANGED")]), "4:4:0"),
    ]
    backlog = [0, 150, 900, 2_600, 5_800, 9_100, 12_400]
    made += [builder.add_scale(_scale(60 + 15 * i, 1, 1, b), f"8:{i}:0") for i, b in enumerate(backlog[:-1])]
    made.append(builder.add_scale(_scale(150, 1, 4, backlog[-1]), "8:6:0"))
    made.append(builder.add_change(_statefulset(151, 4, 1), "2:5:0", events.POD_EVENTS))
    for index in (1, 2, 3):
        made.append(builder.add_change(_pod(EventType.ADDED, 151, index, False), f"2:6:{index}", "p"))
        ready = _pod(EventType.MODIFIED, 165 + index, index, True)
        made.append(builder.add_change(ready, f"2:7:{index}", "p"))
    made.append(builder.add_change(_statefulset(170, 4, 4), "2:8:0", events.POD_EVENTS))
    draining = [11_800, 9_300, 6_700, 4_100, 1_900, 600, 80, 0, 0, 0, 0, 0]
    made += [builder.add_scale(_scale(165 + 15 * i, 4, 4, b), f"8:d{i}:0") for i, b in enumerate(draining)]
    made.append(builder.add_scale(_scale(360, 4, 1, 0), "8:9:0"))
    made.append(builder.add_change(_statefulset(361, 1, 1), "2:9:0", events.POD_EVENTS))
    for index in (1, 2, 3):
        made.append(builder.add_change(_pod(EventType.DELETED, 362, index, True), f"2:10:{index}", "p"))
    made += [builder.add_scale(_scale(375 + 15 * i, 1, 1, 0), f"8:e{i}:0") for i in range(4)]
    for entry in made:
        if entry is not None:
            page.add(entry)
    return page


class _Dom(HTMLParser):
    """Elements of the dumped DOM with their classes, and the text of each class."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.titles: list[str] = []
        self.legend = ""
        self._open: list[str] = []
        self._in_legend = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.elements.append((tag, attributes))
        self._open.append(tag)
        if "legend" in (attributes.get("class") or "").split() or self._in_legend:
            self._in_legend += 1

    def handle_endtag(self, tag: str) -> None:
        if self._in_legend:
            self._in_legend -= 1
        self._open.pop()

    def handle_data(self, data: str) -> None:
        if self._open and self._open[-1] == "title" and len(self._open) > 1:
            self.titles.append(data)
        if self._in_legend:
            self.legend += data + " "

    def having(self, tag: str | None, *classes: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.elements if (tag is None or t == tag)
                and set(classes) <= set((a.get("class") or "").split())]


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed: run scripts/setup (it installs Debian's chromium)")
    done = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", *args],
        capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _write_page(tmp_path: Path) -> Path:
    path = tmp_path / "history.html"
    path.write_text(_page().render(), encoding="utf-8")
    return path


def test_browser_sees_the_lines_marks_and_legend(tmp_path: Path) -> None:
    path = _write_page(tmp_path)
    dom = _Dom()
    dom.feed(_chromium(tmp_path, "--dump-dom", path.as_uri()).stdout)

    assert len(dom.having("circle", "mark", "reconcile")) == 3
    assert len(dom.having("circle", "mark", "failure")) == 1
    assert len(dom.having("circle", "mark", "change")) == 2
    for mark in dom.having(None, "mark"):
        assert mark["data-key"] == KEY
        assert datetime.fromisoformat(str(mark["data-time"])).tzinfo is not None
    assert any("failed (attempt 1): admission webhook" in t for t in dom.titles)
    assert any("updated gen 2: spec.image" in t for t in dom.titles)

    [replicas] = dom.having("path", "line", "replicas")
    assert str(replicas["d"]).count("V") == 2  # 1 -> 4 -> 1
    [backlog] = dom.having("polyline", "line", "backlog")
    assert len(str(backlog["points"]).split()) == 6 + 1 + 12 + 1 + 4

    for text in ("replicas", "backlog", "spec change", "reconcile", "failure"):
        assert text in dom.legend
    assert len(dom.having("table", "entries")) == 1
    assert "redacted:" not in path.read_text(encoding="utf-8")


def test_browser_paints_the_page(tmp_path: Path) -> None:
    path = _write_page(tmp_path)
    shot = tmp_path / "page.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,900", "--hide-scrollbars", path.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 900)
    assert len(data) > 20_000  # a blank page compresses to a few kB
