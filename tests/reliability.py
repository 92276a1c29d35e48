"""Figures of the reliability suite (issue 8). Each test that proves a promise reports what it
measured here: printed, and appended as one JSON line to $FMESH_RELIABILITY_OUT when set
(scripts/reliability sets it, then benchmarks/reliability_report.py turns the lines into
benchmarks/results/reliability.json and docs/reliability.md)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

OUT_ENV = "FMESH_RELIABILITY_OUT"


def report(test: str, figures: dict[str, Any]) -> None:
    line = json.dumps({"test": test, **figures}, default=str)
    print(f"\n[reliability] {line}")
    out = os.environ.get(OUT_ENV)
    if out:
        with Path(out).open("a") as handle:
            handle.write(line + "\n")


def slope(points: Sequence[tuple[float, float]]) -> float:
    """The least-squares slope of (x, y) points; 0 for fewer than two distinct x."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var
