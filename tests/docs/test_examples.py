"""Every ```python block of README.md and docs/*.md runs as written, as a whole script.

Each block is saved as a file and run with this environment's Python in a fresh directory,
against a real gateway with its embedded emulator (the examples read its address from
``GAGITECK_GATEWAY_ADDRESS``, by default make run's ``127.0.0.1:50051``). A block not meant
to run carries ``<!-- not-run: why -->`` on the line before its fence.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .gateway_process import example_env
from .markdown import DOCUMENTS, Block, blocks

PYTHON_BLOCKS = [b for path in DOCUMENTS for b in blocks(path) if b.language == "python"]
TO_RUN = [block for block in PYTHON_BLOCKS if block.not_run is None]
SECONDS = 60


def test_the_docs_have_python_examples() -> None:
    """A guard against an extraction that silently finds nothing."""
    assert {block.path.name for block in TO_RUN} >= {"README.md", "consumers.md", "emulator.md"}


@pytest.mark.parametrize("block", TO_RUN, ids=[block.where for block in TO_RUN])
def test_python_block_runs_as_written(block: Block, gateway_target: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(block.text, encoding="utf-8")
    try:
        ran = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=example_env(gateway_target),
            capture_output=True,
            text=True,
            timeout=SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{block.where}: still running after {SECONDS}s; output: {exc.stdout!r}")
    assert ran.returncode == 0, f"{block.where} failed:\n{ran.stdout}\n{ran.stderr}"
    assert "Traceback" not in ran.stderr, ran.stderr


def test_every_skipped_block_says_why() -> None:
    for block in PYTHON_BLOCKS:
        assert block.not_run != "(no reason given)", f"{block.where}: not-run without a reason"
