"""The image as the Dockerfile describes it, read (no Docker engine is needed): a base pinned to
a patch release and a digest, a numeric user, dependencies only from the hashed lock, a
HEALTHCHECK that runs ``gagiteck-gateway health``, a build context holding what the
Dockerfile copies and nothing else; and the lock in step with pyproject.toml.

``make image-check`` runs the Dockerfile's install steps and its HEALTHCHECK for real.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.paths import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()
LOCK = REPO / "requirements.lock"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    lines = (" ".join(line.split()) for line in joined.splitlines())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def _all(instruction: str) -> list[str]:
    return [args for name, args in _instructions() if name == instruction]


def test_the_base_is_pinned_to_a_patch_release_and_a_digest() -> None:
    base, *stages = _all("FROM")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64} AS base", base)
    assert stages == ["base AS build", "base"]  # one line names the base of both stages


def test_the_user_is_numeric_and_created_with_that_id() -> None:
    (user,) = _all("USER")
    uid, gid = re.fullmatch(r"(\d+):(\d+)", user).groups()  # type: ignore[union-attr]
    assert int(uid) >= 10000  # above any uid of the node's own users
    assert int(gid) >= 10000
    runs = " ".join(_all("RUN"))
    assert f"groupadd --system --gid {gid} " in runs
    assert f"useradd --system --uid {uid} --gid {gid} " in runs


def test_dependencies_come_from_the_lock_only() -> None:
    runs = _all("RUN")
    installs = [run for run in runs if "pip install" in run]
    assert installs == [
        "/opt/gateway/bin/pip install --require-hashes --no-deps -r /tmp/requirements.lock",
        "/opt/gateway/bin/pip install --no-deps --no-build-isolation . "
        "&& /opt/gateway/bin/pip check",
    ]
    assert "COPY requirements.lock /tmp/requirements.lock" in [
        f"COPY {args}" for args in _all("COPY")
    ]


def test_healthcheck_runs_the_health_command() -> None:
    (healthcheck,) = _all("HEALTHCHECK")
    assert healthcheck.endswith('CMD ["gagiteck-gateway", "health"]')
    assert "127.0.0.1" not in healthcheck  # the command finds the address itself
    assert "50051" not in healthcheck
    assert _all("ENTRYPOINT") == ['["gagiteck-gateway"]']
    assert _all("CMD") == ['["serve"]']


# -- .dockerignore, with Docker's rules: the last pattern that matches a path (or one of
#    its parent directories) decides; `!` lets it through again.


def _ignore_patterns() -> list[tuple[bool, list[str]]]:
    patterns = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            patterns.append((negated, line.lstrip("!").strip("/").split("/")))
    return patterns


def _match(pattern: list[str], parts: list[str]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
    return (
        bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _match(pattern[1:], parts[1:])
    )


def _in_context(path: str) -> bool:
    parts = path.split("/")
    excluded = False
    for negated, pattern in _ignore_patterns():
        if any(_match(pattern, parts[:n]) for n in range(1, len(parts) + 1)):
            excluded = not negated
    return not excluded


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    sources = [
        source
        for args in _all("COPY")
        if not args.startswith("--from")
        for source in args.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), source
        assert _in_context(source), source
    for file in (REPO / "gateway").rglob("*.py"):
        relative = file.relative_to(REPO).as_posix()
        assert _in_context(relative) is ("__pycache__" not in relative), relative


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        ".venv/bin/python",
        "build/bin/kustomize",
        "tests/conftest.py",
        "node_modules/x",
        "bench/run.py",
        "gateway/__pycache__/x.pyc",
        "deploy/kustomization.yaml",
        "generated/go/go.mod",
    ],
)
def test_the_build_context_leaves_out(path: str) -> None:
    assert not _in_context(path)


# -- requirements.lock against pyproject.toml (make lock refreshes it)


def _locked() -> dict[str, tuple[str, list[str]]]:
    """name → (pinned version, hashes) of every entry in the lock."""
    text = re.sub(r"\\\n\s*", " ", LOCK.read_text())
    entries: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        assert not line.startswith("-"), f"an option in the lock: {line}"
        spec, *hashes = line.split(" --hash=")
        name, version = spec.strip().split("==")
        entries[canonicalize_name(name)] = (version, [h.strip() for h in hashes])
    return entries


def _declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    declared = (
        project["project"]["dependencies"] + project["project"]["optional-dependencies"]["speed"]
    )
    return [Requirement(text) for text in declared + project["build-system"]["requires"]]


def test_every_dependency_of_the_image_is_pinned_in_the_lock() -> None:
    locked = _locked()
    for requirement in _declared():
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement} is not in requirements.lock: run `make lock`"
        version = locked[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, outside {requirement}: run `make lock`"
        )


def test_every_pin_in_the_lock_has_hashes() -> None:
    locked = _locked()
    assert len(locked) > len(_declared())  # the transitive closure too
    for name, (version, hashes) in locked.items():
        assert re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version), name
        assert hashes, f"{name} has no hash"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), name
    assert "make lock" in LOCK.read_text().split("\n\n", 1)[0]  # the command that made it
