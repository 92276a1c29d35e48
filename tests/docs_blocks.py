"""The runnable blocks of README.md and docs/*.md, as the docs test reads them.

A fenced shell block is runnable when the line right before its opening fence is a marker:

    <!-- test: run -->                      run it; it must exit 0
    <!-- test: run exit=1 -->               it must exit 1
    <!-- test: run expect="Ready" -->       its output must contain this text (repeatable)

and a plain fenced block after a runnable one (prose between, no other block) may be marked

    <!-- test: output -->

so that each of its non-empty lines must be a line of that block's output. The syntax is
described for contributors in docs/contributing.md; a marker that does not fit it is an error,
so a typo cannot turn a test off silently.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^<!--\s*test:\s*(?P<body>.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<lang>[\w-]*)\s*$")
SHELL = {"sh", "bash", "shell"}


class MarkerError(ValueError):
    """A `<!-- test: ... -->` marker the docs test cannot follow."""


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    code: str
    exit_code: int = 0
    expect: list[str] = field(default_factory=list)
    output: list[str] = field(default_factory=list)  # lines of a following `output` block

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def doc_files(repo: Path = REPO) -> list[Path]:
    """README.md first, then docs/*.md by name: the order the docs test runs them in."""
    return [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]


def _fenced(lines: list[str], start: int) -> tuple[str, str, int]:
    """(language, body, index after the closing fence) of the fence opening at lines[start]."""
    opening = FENCE.match(lines[start])
    if opening is None:
        raise MarkerError("a test marker must be followed directly by a fenced block")
    fence = opening["fence"]
    for end in range(start + 1, len(lines)):
        if lines[end].strip() == fence:
            return opening["lang"], "\n".join(lines[start + 1:end]), end + 1
    raise MarkerError("the fenced block after a test marker is not closed")


def parse(path: Path) -> list[Block]:
    """The runnable blocks of one Markdown file; MarkerError (naming the line) for a bad marker."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    index = 0
    in_fence: str | None = None
    last_closed_runnable = False
    while index < len(lines):
        text = lines[index]
        fence = FENCE.match(text)
        if in_fence is not None:
            if text.strip() == in_fence:
                in_fence = None
            index += 1
            continue
        marker = MARKER.match(text)
        if marker is None:
            if fence is not None:
                in_fence = fence["fence"]
                last_closed_runnable = False
            index += 1
            continue
        where = f"{path}:{index + 1}"
        try:
            words = shlex.split(marker["body"])
        except ValueError as error:
            raise MarkerError(f"{where}: {error}") from None
        if index + 1 >= len(lines):
            raise MarkerError(f"{where}: a test marker must be followed directly by a fenced block")
        try:
            lang, body, after = _fenced(lines, index + 1)
        except MarkerError as error:
            raise MarkerError(f"{where}: {error}") from None
        kind, options = (words[0] if words else ""), words[1:]
        if kind == "run":
            if lang not in SHELL:
                raise MarkerError(f"{where}: `test: run` marks a shell block (```sh), not {lang!r}")
            block = Block(path, index + 2, body)
            for option in options:
                name, _, value = option.partition("=")
                if name == "exit" and value.isdigit():
                    block.exit_code = int(value)
                elif name == "expect" and value:
                    block.expect.append(value)
                else:
                    raise MarkerError(f"{where}: unknown option {option!r} (exit=N, expect=TEXT)")
            blocks.append(block)
            last_closed_runnable = True
        elif kind == "output":
            if options:
                raise MarkerError(f"{where}: `test: output` takes no options")
            if not blocks or not last_closed_runnable:
                raise MarkerError(f"{where}: `test: output` must follow a `test: run` block")
            blocks[-1].output = [line.strip() for line in body.splitlines() if line.strip()]
            last_closed_runnable = False
        else:
            raise MarkerError(f"{where}: unknown marker {kind!r} (run, output)")
        index = after
    return blocks


def all_blocks(repo: Path = REPO) -> list[Block]:
    return [block for path in doc_files(repo) for block in parse(path)]
