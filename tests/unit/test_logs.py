from __future__ import annotations

import json
import logging

import pytest

from fmesh_events import logs


def test_json_lines_carry_extra_fields(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", "json")
    logging.getLogger("fmesh.test").info("reconciled", extra={"key": "Function/ns/f", "n": 2})
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["msg"] == "reconciled" and line["key"] == "Function/ns/f" and line["n"] == 2
    assert line["level"] == "info"


def test_quiet_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure()
    logging.getLogger("fmesh.test").info("not shown")
    assert capsys.readouterr().err == ""
