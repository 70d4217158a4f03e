"""buf breaking catches a change that would break Go or Java callers."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import REPO

ROOT = REPO


def _generate_module() -> Any:
    spec = importlib.util.spec_from_file_location("generate", ROOT / "tools" / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["generate"] = module
    spec.loader.exec_module(module)
    return module


generate = _generate_module()

needs_buf = pytest.mark.skipif(
    not generate.BUF.exists(), reason="buf is installed by `make lint` (npm); CI runs it first"
)


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "protos"
    shutil.copytree(ROOT / "protos", root)
    return root


@needs_buf
def test_unchanged_contract_passes(tmp_path: Path) -> None:
    assert generate.breaking_between(_copy(tmp_path), ROOT / "protos") == 0


@needs_buf
@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("string name = 2 [", "string name = 12 ["),  # renumbered: breaks the wire
        ("string system_prompt = 3;", "string prompt = 3;"),  # renamed: breaks JSON
    ],
    ids=["renumbered-field", "renamed-field"],
)
def test_breaking_change_fails(tmp_path: Path, old: str, new: str) -> None:
    changed = _copy(tmp_path)
    agent = changed / "gagiteck" / "v1" / "agent.proto"
    text = agent.read_text()
    assert old in text
    agent.write_text(text.replace(old, new, 1))
    assert generate.breaking_between(ROOT / "protos", changed) != 0
