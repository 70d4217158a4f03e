"""A Go team's first client, from docs/consumers.md alone, built and run against a gateway.

The page's Go section gives the steps (two ```bash blocks) and the program (the ```go block
with ``package main``). They run as written in a scratch directory where, as the page
says, a checkout of this repository sits at ``../gagiteck-gateway`` (a link to this one):
``go mod init``, the ``replace`` to the checkout, ``go mod tidy`` (the Go module proxy must be
reachable) and ``go run .``. Run by `make doctest`, which sets GATEWAY_DOCTEST=1.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.docs.gateway_process import example_env, missing, strict
from tests.docs.markdown import section_blocks
from tests.support.paths import REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not strict(), reason="builds a Go module: `make doctest` runs it"),
]

PAGE = REPO / "docs" / "consumers.md"
SECONDS = 600


def _documented_script() -> str:
    """The page's steps as one bash script, with the program saved where it says."""
    setup, run = (block.text for block in section_blocks(PAGE, "Go", "bash"))
    (program,) = (b.text for b in section_blocks(PAGE, "Go", "go") if "package main" in b.text)
    assert "go mod edit -replace" in setup
    assert "go run ." in run
    return f"set -euo pipefail\n{setup}cat > main.go <<'GO_PROGRAM'\n{program}GO_PROGRAM\n{run}"


def test_go_client_from_the_docs(gateway_target: str, tmp_path: Path) -> None:
    if shutil.which("go") is None:
        missing("go is not on the PATH")
    (tmp_path / "gagiteck-gateway").symlink_to(REPO, target_is_directory=True)
    env = example_env(gateway_target, GOFLAGS="-mod=mod")
    ran = subprocess.run(
        ["bash", "-c", _documented_script()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=SECONDS,
        check=False,
    )
    assert ran.returncode == 0, f"{ran.stdout}\n{ran.stderr}"
    assert "created agent_" in ran.stdout
    assert "NotFound NOT_FOUND http=404" in ran.stdout
    go_mod = (tmp_path / "agents-client" / "go.mod").read_text()
    assert "github.com/gagiteck/gagiteck-gateway/generated/go =>" in go_mod
