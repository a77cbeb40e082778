"""The package's structure: layers without cycles (import-linter's contracts in
pyproject.toml) and modules of one idea, none over 300 lines."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.synthetic import REPO

MAX_LINES = 300


def _lint_imports() -> str:
    beside = Path(sys.executable).with_name("lint-imports")
    return str(beside) if beside.exists() else shutil.which("lint-imports") or "lint-imports"


def test_the_layers_and_acyclic_contracts_are_kept() -> None:
    out = subprocess.run(
        [_lint_imports(), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in out.stdout


def test_no_module_is_over_300_lines() -> None:
    long = {
        str(path.relative_to(REPO)): n
        for path in sorted((REPO / "src").rglob("*.py"))
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"
