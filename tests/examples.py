"""Reading the YAML in examples/, shared by the unit and integration tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def documents(path: Path) -> list[dict[str, Any]]:
    """The non-empty documents of a multi-document YAML file."""
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def example(file: str, kind: str) -> dict[str, Any]:
    """The first object of `kind` in examples/<file>, without a namespace (tests set one)."""
    doc = next(d for d in documents(EXAMPLES / file) if d["kind"] == kind)
    doc["metadata"].pop("namespace", None)
    return doc
