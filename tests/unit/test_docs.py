"""The docs, checked without services: their test markers parse, their relative links lead
somewhere, and the CLI reference names every command, option and setting. The marked
commands themselves run in tests/integration/test_docs.py."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from fmesh_events.cli import main
from fmesh_events.settings import Settings
from tests.docs_blocks import REPO, MarkerError, all_blocks, doc_files, parse

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


def prose(text: str) -> str:
    """The Markdown outside fenced blocks and inline code, where links are links."""
    out, fence = [], None
    for line in text.splitlines():
        match = re.match(r"^\s*(```+|~~~+)", line)
        if fence is None and match:
            fence = match[1]
        elif fence is not None and line.strip().startswith(fence) and not line.strip()[len(fence):]:
            fence = None
        elif fence is None:
            out.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", lambda m: "_" if m[0] == "_" else "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(m[1]) for line in prose(path.read_text()).splitlines()
            if (m := HEADING.match(line))}


def test_slug_is_githubs() -> None:
    assert slug("Against Function Mesh, on real instances") == "against-function-mesh-on-real-instances"
    assert slug("Faults: `tests/integration/test_faults.py`") == "faults-testsintegrationtest_faultspy"


def test_every_relative_link_leads_to_a_file_and_heading() -> None:
    broken = []
    for path in doc_files():
        for target in LINK.findall(prose(path.read_text())):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(REPO)}: {target}"
            if not dest.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{where} (no such heading)")
    assert not broken, "\n".join(broken)


def test_docs_index_links_every_page() -> None:
    index = (REPO / "docs" / "README.md").read_text()
    pages = {p.name for p in (REPO / "docs").glob("*.md")} - {"README.md"}
    assert {p for p in pages if f"]({p})" not in index} == set()
    assert "[Pulsar clusters and credentials](pulsar-clusters.md)" in index


def test_every_marker_parses_and_the_quick_start_is_runnable() -> None:
    blocks = all_blocks()
    assert len(blocks) >= 12
    readme = "\n".join(b.code for b in blocks if b.path.name == "README.md"
                       and b.path.parent == REPO)
    for command in ("kubectl apply -f examples/exclamation-mesh.yaml", "fmesh-events dev roundtrip",
                    "fmesh-events history", "fmesh-events --log-level INFO run"):
        assert command in readme, f"the quick start's {command!r} is not marked runnable"
    assert any(b.output for b in blocks), "no `test: output` block checks what came out"


def test_the_readme_fits_on_two_screens() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 120


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(text)
    return path


def test_markers_and_their_options(tmp_path: Path) -> None:
    page = _write(tmp_path, "\n".join([
        "<!-- test: run -->", "```sh", "echo one", "```",
        "text", "<!-- test: output -->", "```", "one", "```",
        "```sh", "not marked", "```",
        '<!-- test: run exit=1 expect="no such" expect=two -->', "```bash", "false", "```",
        "````markdown", "<!-- test: run -->", "```sh", "inside an example", "```", "````",
    ]))
    first, second = parse(page)
    assert (first.code, first.line, first.output, first.exit_code) == ("echo one", 2, ["one"], 0)
    assert (second.exit_code, second.expect, second.output) == (1, ["no such", "two"], [])


@pytest.mark.parametrize("text, message", [
    ("<!-- test: run -->\n\n```sh\nx\n```\n", "followed directly"),
    ("<!-- test: run -->\n```yaml\nx: 1\n```\n", "shell block"),
    ("<!-- test: run timeout=5 -->\n```sh\nx\n```\n", "unknown option"),
    ("<!-- test: runn -->\n```sh\nx\n```\n", "unknown marker"),
    ("<!-- test: output -->\n```\nx\n```\n", "must follow"),
    ("<!-- test: run -->\n```sh\nx\n```\n```sh\ny\n```\n<!-- test: output -->\n```\nx\n```\n",
     "must follow"),
    ("<!-- test: run -->\n```sh\nx\n", "not closed"),
])
def test_a_bad_marker_is_an_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(MarkerError, match=message):
        parse(_write(tmp_path, text))


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            found += _commands(command, f"{path} ")
        else:
            found.append((path, command))
    return found


def test_the_cli_reference_names_every_command_option_and_setting() -> None:
    text = (REPO / "docs" / "cli.md").read_text()
    missing = [f"command {path}" for path, _ in _commands(main) if f"`{path}" not in text]
    for path, command in [("", main), *_commands(main)]:
        for param in command.params:
            for flag in getattr(param, "opts", []):
                if flag.startswith("--") and flag not in text:
                    missing.append(f"{path or 'global'} {flag}")
    for name in Settings.model_fields:
        variable = f"FMESH_{name.upper()}"
        if variable not in text:
            missing.append(f"setting {variable}")
    assert not missing, "docs/cli.md lacks: " + ", ".join(missing)
