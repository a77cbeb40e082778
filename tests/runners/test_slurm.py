"""The sweep on a real one-node SLURM cluster (Debian's slurmctld, slurmd and munge,
started by :mod:`tests.slurm`): Dask workers in sbatch jobs, as dask-jobqueue submits them.

- the default pipeline on the real her2st sections through two jobs gives the sequential
  runner's summary, and SLURM's own job-completion log shows the jobs ran;
- a job cancelled (scancel) in the middle of a training: the run finishes through the
  other job and the training resumes from its checkpoint to the uninterrupted weights;
- a job that hits its walltime, and a queue where no job starts, stop with a clear error;
- no job is left in squeue and no worker process on the machine after any test.

Where the packages cannot be installed (not root, no package index) these tests skip,
printing why; `.ci/run` runs on a machine where they install.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from brstnet.runners import DaskRunner
from brstnet.runners.errors import ClusterError, DaskRunnerError
from tests.runners.helpers import (
    DASK,
    act_on_training_worker,
    assert_same_table,
    copy_of,
    per_gene,
    run_session,
)
from tests.slurm import SlurmCluster, install, start

WORKER_COMMAND = "distributed.cli.dask_worker"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> SlurmCluster:
    """A one-node cluster for this module, stopped by its process ids afterwards."""
    reason = install()
    if reason:
        pytest.skip(f"no SLURM cluster can run here: {reason}")
    cluster = start(tmp_path_factory.mktemp("slurm"))
    env = pytest.MonkeyPatch()
    env.setenv("SLURM_CONF", str(cluster.conf))  # for sbatch / squeue / scancel from Dask
    try:
        yield cluster
    finally:
        env.undo()
        cluster.stop()


def _workers() -> list[str]:
    out = subprocess.run(["pgrep", "-af", WORKER_COMMAND], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if "pgrep" not in line]


@pytest.fixture(autouse=True)
def no_orphans(slurm: SlurmCluster):
    """After each test: no job in squeue, no Dask worker process left on the machine."""
    yield
    deadline = time.monotonic() + 30
    while (slurm.queue() or _workers()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert slurm.queue() == [], "jobs left in squeue"
    assert _workers() == [], "Dask worker processes left"


def _settings(logs: Path, **slurm) -> dict:
    """Two CPU jobs of one worker each; gpu_per_training as a GPU sweep would set it
    (with gpus: 0 the trainings ask for no GPU)."""
    return {
        **DASK,
        "cluster": "slurm",
        "gpu_per_training": 0.25,
        "wait_for_workers_s": 120,
        "slurm": {
            "gpus": 0,
            "cores": 1,
            "memory": "4GB",
            "jobs": 2,
            "walltime": "00:30:00",
            "log_directory": str(logs),
            **slurm,
        },
    }


def _job_logs(logs: Path) -> dict[str, str]:
    """Job id -> what its worker wrote (dask-jobqueue's ``<name>-<jobid>.err``)."""
    return {
        re.search(r"-(\d+)\.err$", p.name).group(1): p.read_text(errors="replace")
        for p in logs.glob("*.err")
    }


@pytest.mark.real_data
def test_the_sweep_through_sbatch_gives_the_sequential_summary(
    slurm: SlurmCluster, real_run: Path, tmp_path
) -> None:
    """`kedro run ... --runner=brstnet.runners.DaskRunner --runner-params cluster=slurm`
    on the real sections of the default run (B4, C2, C3; tiny backbone), two jobs."""
    logs = tmp_path / "logs"
    settings = _settings(logs, cores=1)
    settings["torch_threads"] = torch.get_num_threads()  # as the sequential run had
    project = copy_of(real_run, tmp_path / "project", settings)
    for folder in ("data/06_models", "data/07_model_output", "data/08_reporting"):
        shutil.rmtree(project / folder)
        (project / folder).mkdir()
    started = time.perf_counter()
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "kedro"),
            "run",
            "--pipelines=model_training,evaluation",
            "--runner=brstnet.runners.DaskRunner",
            "--runner-params",
            "cluster=slurm",
        ],
        cwd=project,
        env={**os.environ, **slurm.env, "DO_NOT_TRACK": "true", "COLUMNS": "400"},
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    summary = "data/08_reporting/evaluation_summary.csv"
    assert_same_table(pd.read_csv(project / summary), pd.read_csv(real_run / summary))
    # SLURM's own records: two jobs, started and ended on this node
    jobs = {j["JobId"]: j for j in slurm.completed_jobs()}
    job_logs = _job_logs(logs)
    assert len(job_logs) == 2 and set(job_logs) <= set(jobs)
    for job in job_logs:
        record = jobs[job]
        assert record["NodeList"] == socket.gethostname().split(".")[0]
        assert record["JobState"] in {"COMPLETED", "CANCELLED"}, record
        assert record["StartTime"] <= record["EndTime"]
    # each training ran inside one of them: its job's log names it, once
    trainings = [f"test_resnet_aux_ctx_fold{k}.train_model" for k in (0, 1)]
    for training in trainings:
        ran_in = [j for j, text in job_logs.items() if f"Running node {training} " in text]
        assert len(ran_in) == 1, (training, ran_in)
        assert f"SLURM job {ran_in[0]}" in job_logs[ran_in[0]]
    out = done.stdout + done.stderr
    assert "SLURMCluster: 2 job(s) x 1 worker process(es) on 0 GPU(s)" in out
    print(f"sweep through sbatch: {wall:.0f} s, {len(job_logs)} jobs")  # noqa: T201


def _freeze_and_cancel(slurm: SlurmCluster):
    """Stop the worker process (SIGSTOP, so it cannot finish first), then scancel the
    job it runs in."""

    def act(client, worker: str, pid: int) -> dict:
        os.kill(pid, signal.SIGSTOP)
        # the one-node cluster's worker runs on this machine: its environment names its job
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        job = next(
            (v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"SLURM_JOB_ID=")), None
        )
        assert job, f"worker {worker} is not in a SLURM job"
        slurm.command("scancel", job)
        return {"job": job}

    return act


def test_a_job_cancelled_during_a_training(
    slurm: SlurmCluster, prepared: Path, sequential: Path, tmp_path
) -> None:
    """scancel of the job training a fold: the other job takes the training over, it
    resumes from its checkpoint and ends with the uninterrupted run's weights and
    metrics."""
    logs = tmp_path / "logs"
    project = copy_of(prepared, tmp_path / "project", _settings(logs))
    runner = DaskRunner()
    cancelled: dict = {}
    target = "test_resnet_aux_fold1"
    watcher = threading.Thread(
        target=act_on_training_worker,
        args=(runner, project, target, _freeze_and_cancel(slurm), cancelled),
        daemon=True,
    )
    watcher.start()
    try:
        messages = run_session(project, runner, pipeline_names=["model_training", "evaluation"])
    finally:
        cancelled["stop"] = True
        watcher.join()
    assert cancelled.get("job"), "no job was cancelled during the training"
    (trained,) = [r for r in runner.node_runs if r.name == f"{target}.train_model"]
    assert trained.job is not None and trained.job != cancelled["job"]
    assert any(
        f"{target.replace('_fold1', '')} fold 1 inner0: resuming from" in m for m in messages
    )
    record = {j["JobId"]: j for j in slurm.completed_jobs()}[cancelled["job"]]
    assert record["JobState"] == "CANCELLED"
    weights = f"data/06_models/{target}/model.safetensors"
    resumed, uninterrupted = load_file(project / weights), load_file(sequential / weights)
    assert resumed.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        assert torch.equal(resumed[key], value), key
    for variant in ("test_resnet_aux", "test_resnet_noaux"):
        assert_same_table(per_gene(project, variant), per_gene(sequential, variant))


def test_a_job_that_hits_its_walltime_stops_the_run_naming_it(
    slurm: SlurmCluster, prepared: Path, tmp_path
) -> None:
    """One job of one minute and a training longer than that: SLURM ends the job
    (TIMEOUT); the run stops with an error naming the job, keeping the checkpoint."""
    project = copy_of(
        prepared, tmp_path / "project", _settings(tmp_path / "logs", jobs=1, walltime="00:01:00")
    )
    local = yaml.safe_load((project / "conf/local/parameters.yml").read_text())
    local["model_training"]["epochs"] = 100_000
    (project / "conf/local/parameters.yml").write_text(yaml.safe_dump(local))
    target = "test_resnet_aux_fold1"
    runner = DaskRunner()
    with pytest.raises(DaskRunnerError) as err:
        run_session(project, runner, pipeline_names=["model_training"], namespaces=[target])
    message = str(err.value)
    (job,) = [j["JobId"] for j in slurm.completed_jobs() if j["JobState"] == "TIMEOUT"][-1:]
    assert f"every SLURM job of this run has ended (job {job} (TIMEOUT" in message
    assert "1 node(s) did not finish (test_resnet_aux_fold1.train_model)" in message
    assert "--only-missing-outputs" in message and "slurm.walltime" in message
    assert any((project / "data/06_models/checkpoints" / target).glob("*.pt"))


def test_a_queue_where_no_job_starts_is_a_clear_error(
    slurm: SlurmCluster, prepared: Path, tmp_path
) -> None:
    """Jobs held in the queue (they may begin in an hour): the run fails after
    wait_for_workers_s naming the pending jobs and their reason, and cancels them."""
    settings = _settings(tmp_path / "logs", job_extra_directives=["--begin=now+3600"])
    settings["wait_for_workers_s"] = 5
    project = copy_of(prepared, tmp_path / "project", settings)
    started = time.monotonic()
    with pytest.raises(ClusterError) as err:
        run_session(project, DaskRunner(), pipeline_names=["model_training"])
    assert time.monotonic() - started < 60
    message = str(err.value)
    assert re.search(
        r"no SLURM job started within 5 s \(job \d+ \(PENDING: BeginTime\), job \d+ "
        r"\(PENDING: BeginTime\)\)",
        message,
    ), message
    assert "wait_for_workers_s in" in message and "The jobs are cancelled" in message
