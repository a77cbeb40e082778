"""The `brstnet` command: help lists every command, a bare `brstnet` runs nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.synthetic import REPO, project_copy


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


def _kedro(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "kedro"), *args],
        cwd=cwd,
        env={**os.environ, "DO_NOT_TRACK": "true", "KEDRO_DISABLE_TELEMETRY": "true", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_project_error_in_a_node_ends_kedro_run_in_one_block(
    tmp_path: Path, tiny_her2st: Path
) -> None:
    """Failed before: 175-407 lines of stderr, 1-5 chained tracebacks, for a one-line
    cause. Here the local copy's files are not the published ones (their sha256 differs)."""
    project = project_copy(tmp_path / "project")
    local = {
        "data_processing": {
            "sections": ["A1"],
            "source": {"local_dir": str(tiny_her2st)},
            "stain": {"reference_section": "A1"},
        }
    }
    (project / "conf/local/parameters.yml").write_text(yaml.safe_dump(local))
    for command in (["kedro", "run"], ["brstnet", "run"]):
        args = ["--pipelines=data_processing"]
        done = (
            _kedro("run", *args, cwd=project)
            if command[0] == "kedro"
            else _brstnet("run", *args, cwd=project)
        )
        assert done.returncode == 1, done.stderr[-2000:]
        assert "Traceback" not in done.stderr
        block = done.stderr.strip().splitlines()[-2:]
        assert block[0].startswith(
            "kedro run: error in node 'acquire_raw_data': "
            f"{tiny_her2st / 'data/ST-cnts/A1.tsv.gz'}: sha256 "
        ), block
        assert block[0].endswith("or remove it to download it")
        assert block[1] == (
            "(the full traceback: logs/last_error.log; BRSTNET_TRACEBACK=1 prints it here)"
        )
        saved = (project / "logs/last_error.log").read_text()
        assert saved.startswith("Traceback") and "AcquisitionError" in saved
    verbose = _kedro("run", "--pipelines=data_processing", cwd=project, BRSTNET_TRACEBACK="1")
    assert verbose.returncode == 1 and "Traceback (most recent call last)" in verbose.stderr


def test_a_bug_keeps_kedros_traceback(tmp_path: Path) -> None:
    """Only the project's own errors are shortened: an unknown pipeline is Kedro's."""
    project = project_copy(tmp_path / "project")
    done = _kedro("run", "--pipelines=no_such_pipeline", cwd=project)
    assert done.returncode != 0 and "kedro run: error" not in done.stderr
    assert "no_such_pipeline" in done.stderr
