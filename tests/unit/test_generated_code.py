"""The committed generated code is exactly what the generator makes from proto/ now."""

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _files(folder: Path) -> set[str]:
    return {
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_code_is_up_to_date(tmp_path):
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_protos.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh, committed = tmp_path / "loyalty", ROOT / "gen" / "loyalty"
    assert _files(fresh) == _files(committed), "run `make gen` and commit the result"
    stale = [
        f for f in sorted(_files(fresh)) if not filecmp.cmp(fresh / f, committed / f, shallow=False)
    ]
    assert not stale, f"stale generated files {stale}: run `make gen` and commit the result"
