"""Build-time code generation and proto checks.

    python tools/generate.py python            write the Python stubs into generated/python
    python tools/generate.py python --check    fail when the committed stubs are stale
    python tools/generate.py buf-lint          run `buf lint` on protos/
    python tools/generate.py descriptor-set OUT  write a FileDescriptorSet of protos/ (with imports)

The google/api and google/rpc protos come from the installed googleapis-common-protos
package, and the well-known types from grpcio-tools; nothing third-party is copied into
the repository. buf needs the google/api files as a module of their own, so they are
staged under build/proto-deps for it at run time.
"""

from __future__ import annotations

import filecmp
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GENERATED_PY = ROOT / "generated" / "python"
DEPS = ROOT / "build" / "proto-deps"
BUF = ROOT / "node_modules" / ".bin" / "buf"


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.submodule_search_locations is None:
        raise SystemExit(f"{module} is not installed: run `make install` first")
    return Path(next(iter(spec.submodule_search_locations)))


def include_paths() -> list[Path]:
    googleapis_root = _package_dir("google.api").parent.parent
    well_known = _package_dir("grpc_tools") / "_proto"
    return [PROTOS, googleapis_root, well_known]


def proto_files(root: Path = PROTOS) -> list[Path]:
    return sorted(root.rglob("*.proto"))


def _protoc(args: list[str]) -> None:
    from grpc_tools import protoc

    argv = ["grpc_tools.protoc", *(f"-I{p}" for p in include_paths()), *args]
    if protoc.main(argv) != 0:
        raise SystemExit("protoc failed: " + " ".join(args[:3]) + " ...")


def _mypy_plugins() -> list[str]:
    bindir = Path(sys.executable).parent
    return [
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
    ]


def generate_python(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    files = [str(p.relative_to(PROTOS)) for p in proto_files()]
    _protoc(
        [
            *_mypy_plugins(),
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            f"--mypy_out=quiet:{out}",
            f"--mypy_grpc_out=quiet:{out}",
            *files,
        ]
    )
    for pkg in {p.parent for p in out.rglob("*_pb2.py")}:
        while pkg != out:
            (pkg / "__init__.py").touch()
            (pkg / "py.typed").touch()
            pkg = pkg.parent


def _tree(root: Path) -> set[Path]:
    """The generated files below ``root`` (caches and other droppings ignored)."""
    return {
        p.relative_to(root)
        for p in root.rglob("*")
        if p.is_file()
        and (p.suffix in (".py", ".pyi") or p.name == "py.typed")
        and not any(part.startswith(".") or part == "__pycache__" for part in p.parts)
    }


def check_python() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate_python(fresh)
        want, have = _tree(fresh), _tree(GENERATED_PY)
        stale = sorted(str(p) for p in want ^ have)
        stale += sorted(
            str(p) for p in want & have if not filecmp.cmp(fresh / p, GENERATED_PY / p, False)
        )
    if stale:
        print("generated/python is stale; run `make generate` and commit:", *stale, sep="\n  ")
        return 1
    print(f"generated/python is fresh ({len(want)} files)")
    return 0


def stage_deps() -> Path:
    """Copy the google/api protos our files import into build/proto-deps for buf."""
    shutil.rmtree(DEPS, ignore_errors=True)
    src = _package_dir("google.api")
    dst = DEPS / "google" / "api"
    dst.mkdir(parents=True)
    for name in ("annotations.proto", "http.proto", "field_behavior.proto"):
        shutil.copy(src / name, dst / name)
    return DEPS


def buf(*args: str) -> int:
    if not BUF.exists():
        raise SystemExit("buf is not installed: run `npm install` (make lint does it)")
    stage_deps()
    return subprocess.call([str(BUF), *args], cwd=ROOT)


def write_descriptor_set(out: Path) -> None:
    files = [str(p.relative_to(PROTOS)) for p in proto_files()]
    _protoc([f"--descriptor_set_out={out}", "--include_imports", "--include_source_info", *files])


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    match argv:
        case ["python"]:
            shutil.rmtree(GENERATED_PY / "gagiteck", ignore_errors=True)
            generate_python(GENERATED_PY)
            return 0
        case ["python", "--check"]:
            return check_python()
        case ["buf-lint"]:
            return buf("lint")
        case ["buf-breaking", against]:
            return buf("breaking", "--against", against)
        case ["descriptor-set", out]:
            write_descriptor_set(Path(out))
            return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
