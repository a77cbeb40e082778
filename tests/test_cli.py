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


def test_kedro_commands_leave_pyproject_unchanged_without_do_not_track(tmp_path: Path) -> None:
    """The committed .telemetry (consent: false) stops kedro-telemetry, which otherwise
    writes a [tool.kedro_telemetry] project_id into pyproject.toml at every command."""
    import yaml

    from tests.synthetic import REPO

    assert yaml.safe_load((REPO / ".telemetry").read_text()) == {"consent": False}
    project = project_copy(tmp_path / "project")
    before = (project / "pyproject.toml").read_bytes()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DO_NOT_TRACK", "KEDRO_DISABLE_TELEMETRY", "MLFLOW_DISABLE_TELEMETRY")
    }
    kedro = Path(sys.executable).parent / "kedro"
    listed = subprocess.run(
        [str(kedro), "registry", "list"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stderr
    assert "training" in listed.stdout
    assert (project / "pyproject.toml").read_bytes() == before
    assert "[tool.kedro_telemetry]" not in (project / "pyproject.toml").read_text()
