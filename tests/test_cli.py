"""The `brstnet` command: help lists every command, a bare `brstnet` runs nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.synthetic import project_copy


def _brstnet(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DO_NOT_TRACK": "true", "KEDRO_DISABLE_TELEMETRY": "true"}
    return subprocess.run(
        [sys.executable, "-m", "brstnet", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_bare_brstnet_prints_help_and_runs_nothing(tmp_path: Path) -> None:
    project = project_copy(tmp_path / "project")
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    bare = _brstnet(cwd=project)
    assert bare.returncode == 0, bare.stderr
    assert bare.stdout.startswith("usage: brstnet <command>")
    for command in ("predict", "run", "mlflow-link"):
        assert f"\n  {command} " in bare.stdout, command
    assert _brstnet("--help", cwd=project).stdout == bare.stdout
    # nothing ran: no data, no MLflow store, no log written into the project
    assert sorted(p.relative_to(project) for p in project.rglob("*")) == before


def test_each_command_has_its_help_and_a_typo_is_an_error(tmp_path: Path) -> None:
    project = project_copy(tmp_path / "project")
    predict = _brstnet("predict", "--help", cwd=project)
    assert predict.returncode == 0 and "models:/<name>/<version>" in predict.stdout
    run = _brstnet("run", "--help", cwd=project)
    assert run.returncode == 0 and "--pipelines" in run.stdout, run.stderr
    assert "brstnet run" in run.stdout
    link = _brstnet("mlflow-link", cwd=project)  # no tracked run yet
    assert link.returncode == 1 and "run the pipelines first" in link.stderr
    typo = _brstnet("predcit", cwd=project)
    assert typo.returncode == 2 and "unknown command 'predcit'" in typo.stderr
