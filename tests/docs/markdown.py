"""The fenced code blocks of the project's Markdown, as a reader would copy them.

A block not meant to run is marked on the line before its fence (blank lines between
allowed) with ``<!-- not-run: why -->``; the doc tests leave it out and say why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import REPO

DOCUMENTS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
"""Where copied examples come from: the README and the top-level pages of docs/."""

_FENCE = re.compile(r"^```(?P<language>[\w+-]*)\s*$")
_NOT_RUN = re.compile(r"^<!--\s*not-run:(?P<reason>.*?)-->\s*$")
_HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it starts, its language, its text, the heading it is under."""

    path: Path
    line: int
    language: str
    text: str
    section: str
    not_run: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of ``path`` in order; an unclosed fence is an error."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    section, marker, index = "", None, 0
    while index < len(lines):
        line = lines[index]
        fence = _FENCE.match(line)
        if fence is None:
            section, marker = _context(line, section, marker)
            index += 1
            continue
        end = _closing_fence(lines, index, path)
        text = "\n".join(lines[index + 1 : end]) + "\n"
        found.append(Block(path, index + 1, fence["language"], text, section, marker))
        marker, index = None, end + 1
    return found


def _context(line: str, section: str, marker: str | None) -> tuple[str, str | None]:
    """The heading and pending not-run marker after a line outside any block."""
    heading, not_run = _HEADING.match(line), _NOT_RUN.match(line.strip())
    if heading is not None:
        return heading["title"], None
    if not_run is not None:
        return section, not_run["reason"].strip() or "(no reason given)"
    return section, marker if not line.strip() else None


def _closing_fence(lines: list[str], start: int, path: Path) -> int:
    for index in range(start + 1, len(lines)):
        if lines[index].strip() == "```":
            return index
    raise ValueError(f"{path}:{start + 1}: a code block that is never closed")


def commands(text: str) -> list[str]:
    """The shell commands of a block: continuation lines joined, comment lines dropped."""
    joined: list[str] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.strip()[:-1].rstrip() + " "
            continue
        joined.append(pending + line.strip())
        pending = ""
    return joined


def section_blocks(path: Path, section: str, language: str) -> list[Block]:
    """The blocks of one language under one heading of ``path``."""
    return [b for b in blocks(path) if b.section == section and b.language == language]
