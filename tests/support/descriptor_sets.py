"""Compiles the test-only protos into a FileDescriptorSet (with imports) at test time."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

from tests.support.paths import TEST_PROTOS


def _root_of(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    assert spec is not None
    assert spec.submodule_search_locations is not None
    return Path(next(iter(spec.submodule_search_locations)))


def compile_descriptor_set(out: Path, *files: str) -> Path:
    includes = [
        TEST_PROTOS,
        _root_of("google.api").parent.parent,
        _root_of("grpc_tools") / "_proto",
    ]
    argv = [
        "grpc_tools.protoc",
        *(f"-I{p}" for p in includes),
        f"--descriptor_set_out={out}",
        "--include_imports",
        *files,
    ]
    assert protoc.main(argv) == 0, "protoc failed on the test protos"
    return out
