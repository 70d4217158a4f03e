"""Build-time code generation and proto checks.

    python tools/generate.py python            write the Python stubs into generated/python
    python tools/generate.py python --check    fail when the committed stubs are stale
    python tools/generate.py buf-lint          run `buf lint` on protos/
    python tools/generate.py descriptor-set OUT  write a FileDescriptorSet of protos/ (with imports)
    python tools/generate.py buf-breaking [REV]  `buf breaking` of protos/ against git REV
                                                 (default HEAD~1; skipped if REV has no protos)

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


def write_descriptor_set(out: Path, root: Path = PROTOS) -> None:
    files = [str(p.relative_to(root)) for p in proto_files(root)]
    includes = [root, *include_paths()[1:]]
    from grpc_tools import protoc

    argv = [
        "grpc_tools.protoc",
        *(f"-I{p}" for p in includes),
        f"--descriptor_set_out={out}",
        "--include_imports",
        *files,
    ]
    if protoc.main(argv) != 0:
        raise SystemExit(f"protoc failed on {root}")


def breaking_between(old_root: Path, new_root: Path) -> int:
    """``buf breaking`` (rules from buf.yaml) of the protos under new_root against old_root."""
    if not BUF.exists():
        raise SystemExit("buf is not installed: run `npm install` (make lint does it)")
    with tempfile.TemporaryDirectory() as tmp:
        old_image, new_image = Path(tmp) / "old.binpb", Path(tmp) / "new.binpb"
        write_descriptor_set(old_image, old_root)
        write_descriptor_set(new_image, new_root)
        rules = (ROOT / "buf.yaml").read_text().split("breaking:", 1)[1]
        return subprocess.call(
            [
                str(BUF),
                "breaking",
                str(new_image),
                "--against",
                str(old_image),
                "--config",
                "version: v2\nbreaking:" + rules,
            ],
            cwd=ROOT,
        )


def buf_breaking(rev: str) -> int:
    """Compare the working tree's contract with ``rev``'s, as images built by protoc.

    buf reads both sides as FileDescriptorSets, so neither needs the google/api module
    that buf would otherwise fetch from the network.
    """
    listed = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", rev, "--", "protos/gagiteck"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if listed.returncode != 0 or not listed.stdout.strip():
        print(f"buf breaking: {rev} has no protos to compare with; skipped")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        old_root = Path(tmp) / "old"
        old_root.mkdir()
        archive = subprocess.run(
            ["git", "archive", rev, "protos"], cwd=ROOT, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(old_root)], input=archive.stdout, check=True)
        result = breaking_between(old_root / "protos", PROTOS)
    print(f"buf breaking against {rev}: {'ok' if result == 0 else 'BREAKING CHANGES'}")
    return result


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
        case ["buf-breaking"]:
            return buf_breaking("HEAD~1")
        case ["buf-breaking", rev]:
            return buf_breaking(rev)
        case ["descriptor-set", out]:
            write_descriptor_set(Path(out))
            return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
