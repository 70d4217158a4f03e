"""The block extraction the doc tests rest on: fences, headings, not-run markers, commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.paths import REPO

from .markdown import DOCUMENTS, blocks, commands

PAGE = """# Title

## Python

```python
print("runs")
```

<!-- not-run: needs a real API key -->

```python
print("skipped")
```

Prose.

```python
print("runs again")
```

## Shell

```bash
# a comment
make tools
build/bin/grpcurl -plaintext -d '{"a":  "b"}' \\
    127.0.0.1:50051 x.Y/Z   # trailing
```
"""


def test_fences_headings_and_markers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    found = blocks(page)
    assert [(b.language, b.section, b.not_run) for b in found] == [
        ("python", "Python", None),
        ("python", "Python", "needs a real API key"),
        ("python", "Python", None),
        ("bash", "Shell", None),
    ]
    assert found[0].text == 'print("runs")\n'
    assert found[0].line == 5


def test_commands_join_continuations_and_drop_comments(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    shell = blocks(page)[-1]
    assert commands(shell.text) == [
        "make tools",
        'build/bin/grpcurl -plaintext -d \'{"a":  "b"}\' 127.0.0.1:50051 x.Y/Z   # trailing',
    ]


def test_an_unclosed_fence_is_an_error(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```python\nprint()\n")
    with pytest.raises(ValueError, match="never closed"):
        blocks(page)


def test_every_marker_is_followed_by_a_block() -> None:
    """A not-run marker that no fence follows is a typo, not a skip."""
    for path in DOCUMENTS:
        lines = path.read_text(encoding="utf-8").splitlines()
        markers = [n for n, line in enumerate(lines, 1) if line.strip().startswith("<!-- not-run")]
        marked = {b.line for b in blocks(path) if b.not_run is not None}
        assert len(markers) == len(marked), f"{path.relative_to(REPO)}: stray not-run marker"
