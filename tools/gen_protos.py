"""Regenerate the committed Python code for every contract under proto/.

Usage: ``python tools/gen_protos.py [OUT_DIR]`` (default: ``gen``). The output is
deterministic for the pinned grpcio-tools and mypy-protobuf versions, so a test can
regenerate into a temporary folder and compare it with what is committed.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"


def _well_known_include() -> str:
    import grpc_tools

    return str(Path(grpc_tools.__file__).parent / "_proto")


def generate(out_dir: Path) -> None:
    """Write messages, gRPC stubs and their .pyi type stubs for every proto into out_dir."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    if not protos:
        raise SystemExit("no .proto files under proto/")
    package_root = out_dir / "loyalty"
    if package_root.exists():
        shutil.rmtree(package_root)
    out_dir.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={_well_known_include()}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # grpc_python_out writes a stub module for every file; keep only those with services.
    for proto in protos:
        if not re.search(r"^service\s", (PROTO_ROOT / proto).read_text(), re.MULTILINE):
            stem = out_dir / proto.removesuffix(".proto")
            for suffix in ("_pb2_grpc.py", "_pb2_grpc.pyi"):
                Path(f"{stem}{suffix}").unlink(missing_ok=True)
    # Generated modules import each other as loyalty.<pkg>.v1.*: make every folder a package.
    for folder in [package_root, *(p for p in package_root.rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    (package_root / "py.typed").touch()


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "gen")
