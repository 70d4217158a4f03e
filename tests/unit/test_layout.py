"""The package's architecture, as its imports show it: stages in layers, imports pointing
down, no cycles, and a public face that stays put."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import gateway

ROOT = Path(gateway.__file__).parent

# Lowest first. A module may import modules of its own layer or of lower ones; within a
# layer the module graph must still be acyclic (checked below for the whole package).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("gateway.version", "gateway.clock", "gateway.error_body"),
    ("gateway.errors", "gateway.status"),
    ("gateway.call", "gateway.testing"),
    ("gateway.telemetry",),
    ("gateway.upstream",),
    ("gateway.traffic",),
    ("gateway.transcoding",),
    ("gateway.streaming",),
    ("gateway.config",),
    ("gateway.server",),
    ("gateway.cli",),
    ("gateway", "gateway.__main__"),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for path in ROOT.rglob("*.py")
        if "emulator" not in path.relative_to(ROOT).parts
    }


def _imports(path: Path) -> Iterator[str]:
    """Every gateway module ``path`` imports, at module level or inside functions."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("gateway"):
                    yield alias.name
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and node.module.startswith("gateway")
        ):
            yield node.module
            for alias in node.names:  # "from gateway.upstream import wire"
                yield f"{node.module}.{alias.name}"


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: {target for target in _imports(path) if target in modules and target != name}
        for name, path in modules.items()
    }


def _layer(module: str) -> int:
    best = -1
    best_prefix = ""
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if prefix == "gateway":
                matches = module == "gateway"
            if matches and len(prefix) > len(best_prefix):
                best, best_prefix = index, prefix
    return best


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(m for m in _modules() if _layer(m) < 0)
    assert not unplaced, f"place these modules in LAYERS: {unplaced}"


def test_imports_point_down() -> None:
    upward = sorted(
        f"{source} -> {target}"
        for source, targets in _graph().items()
        for target in targets
        if _layer(target) > _layer(source)
    )
    assert not upward, "imports pointing up:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_emulator_stands_alone() -> None:
    """The emulator is a separate program that happens to ship in the package."""
    emulator = ROOT / "emulator"
    strays = sorted(
        f"{path.relative_to(ROOT)}: {target}"
        for path in emulator.rglob("*.py")
        for target in _imports(path)
        if not target.startswith("gateway.emulator")
    )
    assert not strays


@pytest.mark.parametrize("name", ["Gateway", "GatewayConfig", "load_config", "__version__"])
def test_public_face(name: str) -> None:
    assert name in gateway.__all__
    assert getattr(gateway, name) is not None


def test_public_face_is_exactly_this() -> None:
    assert sorted(gateway.__all__) == ["Gateway", "GatewayConfig", "__version__", "load_config"]
