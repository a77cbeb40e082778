"""The Dask runner on a real LocalCluster of 2 CPU worker processes, tiny data, tiny model.

One project is prepared once (data_processing + feature_selection, sequential); copies of
it then train and evaluate ``test_resnet`` with and without the auxiliary head on 2 folds
(4 training namespaces) under the sequential runner and under the Dask runner, in real
Kedro sessions with kedro-mlflow and a temporary sqlite tracking store per project.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import threading
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from distributed import LocalCluster
from kedro.config import OmegaConfigLoader
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from brstnet.parameter_check import ParameterError
from brstnet.pipelines import model_training
from brstnet.pipelines.run_parameters import CONFIG_LOADER_ARGS
from brstnet.pipelines.variants import variant_grid
from brstnet.runners import DaskRunner
from brstnet.runners.clusters import open_cluster
from brstnet.runners.config import load_settings
from brstnet.runners.errors import ClusterError
from brstnet.runners.local_clusters import visible_gpus
from brstnet.runners.slurm_cluster import make_slurm_cluster
from tests.runners.helpers import (
    DASK,
    NAMESPACES,
    PIPELINES,
    VARIANTS,
    act_on_training_worker,
    assert_same_table,
    copy_of,
    per_gene,
    run_session,
)
from tests.synthetic import project_catalog


@pytest.fixture(scope="module")
def on_dask(prepared: Path, tmp_path_factory) -> dict:
    project = copy_of(prepared, tmp_path_factory.mktemp("dask") / "project", DASK)
    runner = DaskRunner()
    messages = run_session(project, runner, pipeline_names=PIPELINES)
    return {"project": project, "runner": runner, "messages": messages}


def test_dask_gives_the_sequential_metrics(sequential: Path, on_dask: dict) -> None:
    for variant in (*VARIANTS, "baseline_mean", "baseline_ridge", "reference_read_depth"):
        assert_same_table(per_gene(on_dask["project"], variant), per_gene(sequential, variant))
    summary = "data/08_reporting/evaluation_summary.csv"
    assert_same_table(pd.read_csv(on_dask["project"] / summary), pd.read_csv(sequential / summary))
    # the trainings really ran on the two worker processes, not in this one
    trained = [r for r in on_dask["runner"].node_runs if r.name.endswith(".train_model")]
    assert {r.namespace for r in trained} == NAMESPACES
    assert len({r.pid for r in trained}) == 2 and os.getpid() not in {r.pid for r in trained}


def _runs(project: Path) -> tuple:
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("brstnet")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.info.run_name: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    return parents, children


def test_dask_mlflow_runs_as_sequential(sequential: Path, on_dask: dict) -> None:
    (seq_parent,), seq_children = _runs(sequential)
    (dask_parent,), dask_children = _runs(on_dask["project"])
    assert dask_parent.info.run_name == seq_parent.info.run_name == "model_training+evaluation"
    assert dask_parent.info.status == "FINISHED"
    # kedro-mlflow logged the nodes' parameters on the parent run from the workers
    assert dask_parent.data.params == seq_parent.data.params
    assert dask_parent.data.params["model_training.epochs"] == "2"
    assert (
        set(dask_children)
        == set(seq_children)
        == {*VARIANTS, "baseline_mean", "baseline_ridge", "reference_read_depth"}
    )
    for name, child in dask_children.items():
        expected = seq_children[name]
        assert child.data.tags["mlflow.parentRunId"] == dask_parent.info.run_id
        assert child.info.status == "FINISHED"
        assert child.data.params == expected.data.params
        assert set(child.data.metrics) == set(expected.data.metrics)
        for key, value in expected.data.metrics.items():
            if key.endswith("train_seconds"):  # wall time: present in both, not equal
                continue
            assert child.data.metrics[key] == pytest.approx(value, abs=1e-6, nan_ok=True), key


def test_dask_logs_dashboard_and_one_line_per_namespace(on_dask: dict) -> None:
    messages = on_dask["messages"]
    assert any(m.startswith("Dask dashboard: http://127.0.0.1:") for m in messages)
    finished = [m.split()[2] for m in messages if m.startswith("Finished namespace ")]
    evaluated = {*VARIANTS, "baseline_mean", "baseline_ridge", "reference_read_depth"}
    assert sorted(finished) == sorted(NAMESPACES | evaluated)  # each exactly once
    line = next(m for m in messages if m.startswith("Finished namespace test_resnet_aux_fold0"))
    assert float(line.split(" in ")[1].split(" s")[0]) > 0


def _sigkill(client, worker: str, pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def test_worker_killed_during_training(prepared: Path, sequential: Path, tmp_path) -> None:
    """kill -9 of the worker training a fold: the task is re-run (retries), resumes from
    its checkpoint, and ends with the same weights and curves as an uninterrupted run
    (the per-gene metrics follow from the weights, see the test above)."""
    project = copy_of(prepared, tmp_path / "project", DASK)
    runner = DaskRunner()
    killed: dict = {}
    target = "test_resnet_aux_fold1"  # inner0 then best_checkpoint: 2 epochs, 1 stage
    killer = threading.Thread(
        target=act_on_training_worker,
        args=(runner, project, target, _sigkill, killed),
        daemon=True,
    )
    killer.start()
    try:
        messages = run_session(
            project, runner, pipeline_names=["model_training"], namespaces=[target]
        )
    finally:
        killed["stop"] = True
        killer.join()
    assert killed.get("pid"), "no worker was killed during the training"
    (trained,) = runner.node_runs
    assert trained.name == f"{target}.train_model" and trained.pid != killed["pid"]
    assert any("test_resnet_aux fold 1 inner0: resuming from" in m for m in messages), messages
    weights = f"data/06_models/{target}/model.safetensors"
    resumed, uninterrupted = load_file(project / weights), load_file(sequential / weights)
    assert resumed.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        assert torch.equal(resumed[key], value), key
    history = f"data/08_reporting/training/{target}_history.csv"
    a, b = pd.read_csv(project / history), pd.read_csv(sequential / history)
    pd.testing.assert_frame_equal(a.drop(columns="images_per_s"), b.drop(columns="images_per_s"))


@pytest.fixture(scope="module")
def scheduler() -> str:
    """A running scheduler with 2 CPU worker processes (``cluster: address``), kept warm
    across runs as a shared one would be."""
    with LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    ) as cluster:
        yield cluster.scheduler_address


def test_only_missing_outputs_resumes_a_half_done_sweep(
    on_dask: dict, sequential: Path, scheduler: str
) -> None:
    """A sweep stopped before one namespace finished: ``--only-missing-outputs`` trains
    that namespace alone and ends with the full run's numbers; after a completed run it
    re-runs no training node."""
    project = on_dask["project"]
    models = sorted((project / "data/06_models").glob("*/model.safetensors"))
    assert len(models) == 4
    stamps = {m: m.stat().st_mtime_ns for m in models}
    unfinished = "test_resnet_noaux_fold1"
    for path in (
        f"data/06_models/{unfinished}",
        f"data/08_reporting/training/{unfinished}_history.csv",
        f"data/07_model_output/{unfinished}_predictions.h5ad",
        "data/08_reporting/evaluation/test_resnet_noaux_per_gene.csv",
        "data/08_reporting/evaluation/test_resnet_noaux_metrics.json",
        "data/08_reporting/evaluation_summary.csv",
    ):
        target = project / path
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    # the scheduler's workers are CPU workers: trainings ask for no GPU there
    (project / "conf/local/dask.yml").write_text(yaml.safe_dump({**DASK, "gpu_per_training": 0}))
    runner = DaskRunner(cluster="address", address=scheduler)  # as --runner-params
    run_session(project, runner, pipeline_names=PIPELINES, only_missing_outputs=True)
    trained = {r.namespace for r in runner.node_runs if r.name.endswith(".train_model")}
    assert trained == {unfinished}
    assert all(m.stat().st_mtime_ns == t for m, t in stamps.items() if unfinished not in str(m))
    assert_same_table(
        per_gene(project, "test_resnet_noaux"), per_gene(sequential, "test_resnet_noaux")
    )
    # now complete: the training pipeline has nothing left to run, no cluster is started
    runner = DaskRunner(cluster="address", address=scheduler)
    messages = run_session(
        project, runner, pipeline_names=["model_training"], only_missing_outputs=True
    )
    assert runner.node_runs == [] and "Nothing to run on Dask: the pipeline has no node" in messages


def test_a_node_error_fails_the_run_with_that_error(
    prepared: Path, scheduler: str, tmp_path
) -> None:
    project = copy_of(prepared, tmp_path / "project", {"gpu_per_training": 0})
    local = yaml.safe_load((project / "conf/local/parameters.yml").read_text())
    local["model_training"]["initial_weights"] = "missing.safetensors"
    (project / "conf/local/parameters.yml").write_text(yaml.safe_dump(local))
    runner = DaskRunner(cluster="address", address=scheduler)
    with pytest.raises(FileNotFoundError, match="initial weights missing.safetensors") as err:
        run_session(
            project, runner, pipeline_names=["model_training"], namespaces=["test_resnet_aux_fold0"]
        )
    notes = "\n".join(getattr(err.value, "__notes__", []))
    assert "in Kedro node 'test_resnet_aux_fold0.train_model'" in notes
    assert runner.node_runs == []


def test_bad_dask_yml_names_key_and_file_before_any_node(prepared: Path, tmp_path) -> None:
    project = copy_of(prepared, tmp_path / "project", {"cluster": "kubernetes", "retrys": 3})
    runner = DaskRunner()
    with pytest.raises(ParameterError) as err:
        run_session(project, runner, pipeline_names=["model_training"])
    message = str(err.value)
    assert "Dask setting cluster (set in conf/base/dask.yml, conf/local/dask.yml)" in message
    assert "'local', 'local_cuda', 'slurm' or 'address'" in message
    assert (
        "unknown Dask setting retrys (set in conf/local/dask.yml); did you mean retries?" in message
    )
    assert runner.node_runs == [] and not list((project / "data/06_models").glob("*/model.*"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _direct_run(project: Path, settings: dict) -> DaskRunner:
    """The model_training pipeline on the project's catalog, without a Kedro session."""
    params = OmegaConfigLoader(str(project / "conf"), **CONFIG_LOADER_ARGS)["parameters"]
    catalog = project_catalog(project)
    catalog["params:model_training"] = params["model_training"]
    variants, folds = variant_grid(params)
    runner = DaskRunner(settings=settings)
    try:
        runner.run(model_training.create_pipeline(variants=variants, n_folds=folds), catalog)
    finally:
        assert runner.node_runs == []  # every bad setting stops the run before any node
        assert not list((project / "data/06_models").glob("*/model.*"))
    return runner


def test_unreachable_scheduler(prepared: Path) -> None:
    address = f"tcp://127.0.0.1:{_closed_port()}"
    settings = {"cluster": "address", "address": address, "connect_timeout_s": 1}
    with pytest.raises(ClusterError, match=f"cannot reach the Dask scheduler at {address}"):
        _direct_run(prepared, settings)


def test_more_gpus_than_visible(prepared: Path) -> None:
    asked = visible_gpus() + 1
    settings = {"cluster": "local_cuda", "local_cuda": {"n_gpus": asked}}
    with pytest.raises(ClusterError, match=f"local_cuda.n_gpus: {asked} .* asks for more GPUs"):
        _direct_run(prepared, settings)


def test_scheduler_without_gpu_workers(prepared: Path) -> None:
    with LocalCluster(
        n_workers=1,
        processes=False,
        protocol="tcp://",  # reached through its address, as a remote scheduler is
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as cluster:
        settings = {"cluster": "address", "address": cluster.scheduler_address}
        with pytest.raises(ClusterError, match="GPU nodes ask for GPU=1 .* no worker offers"):
            _direct_run(prepared, settings)


def test_slurm_without_sbatch(prepared: Path, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a login node without SLURM's commands
    assert shutil.which("sbatch") is None
    with pytest.raises(ClusterError, match="sbatch is not on PATH"):
        _direct_run(prepared, {"cluster": "slurm"})


def test_local_workers_keep_glibcs_adaptive_malloc(tmp_path, monkeypatch) -> None:
    """Dask's MALLOC_TRIM_THRESHOLD_ slows torch on CPU ~1.5x; the runner's workers lack it,
    even when an earlier Dask nanny in this process left it in os.environ."""
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # what Dask's nannies leave
    settings = load_settings({"local": {"n_workers": 1}, "dashboard_address": "127.0.0.1:0"})
    with open_cluster(settings, project_path=tmp_path, where="test") as cluster:
        env = cluster.client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_")
        threads = cluster.torch_threads
    assert list(env.values()) == [None]
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"  # this process's left as it was
    assert threads == max(1, len(os.sched_getaffinity(0)))  # cores / 1 worker


def test_settings_errors_name_the_key_and_its_source(tmp_path) -> None:
    conf = tmp_path / "dask.yml"
    conf.write_text("local:\n  n_worker: 4\n")
    with pytest.raises(ParameterError) as err:
        load_settings(yaml.safe_load(conf.read_text()), [conf])
    assert f"unknown Dask setting local.n_worker (set in {conf}); did you mean n_workers?" in str(
        err.value
    )
    conf.write_text("gpu_per_training: 0.3\n")
    with pytest.raises(ParameterError, match=rf"Dask settings \(set in {conf}\): .*0.3 is not 1/k"):
        load_settings(yaml.safe_load(conf.read_text()), [conf])
    with pytest.raises(ParameterError, match=r"Dask setting cluster \(set in --runner-params\)"):
        load_settings({}, overrides={"cluster": "kubernetes"})
    with pytest.raises(ParameterError, match="use cluster: address"):
        load_settings({"address": "tcp://host:8786"})
    assert load_settings({"gpu_per_training": 0.25}).trainings_per_gpu == 4
    # --runner-params "slurm.jobs=8" overrides one key of the slurm block, not the block
    merged = load_settings({"slurm": {"queue": "gpu", "jobs": 1}}, overrides={"slurm": {"jobs": 8}})
    assert (merged.slurm.queue, merged.slurm.jobs) == ("gpu", 8)


def test_slurm_job_scripts(tmp_path) -> None:
    """The SLURMCluster's job script (dask-jobqueue's own), without submitting it."""
    multi = load_settings(
        {
            "cluster": "slurm",
            "slurm": {
                "gpus": 4,
                "queue": "gpu",
                "cores": 32,
                "jobs": 2,
                "job_extra_directives": ["--constraint=h100"],
                "job_script_prologue": ["module load cuda"],
            },
        }
    )
    cluster = make_slurm_cluster(multi, tmp_path)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in (
        "#SBATCH -p gpu",
        "#SBATCH --gres=gpu:4",
        "#SBATCH --cpus-per-task=32",
        "#SBATCH --constraint=h100",
        "#SBATCH -t 24:00:00",
        f"cd {tmp_path}",
        "module load cuda",
    ):
        assert line in script, line
    assert "-m dask cuda worker" in script and "--resources GPU=1" in script  # one per GPU
    assert "PRE_SPAWN_ENVIRON__MALLOC_TRIM_THRESHOLD_=None" in script
    shared = load_settings({"cluster": "slurm", "gpu_per_training": 0.25, "slurm": {"gpus": 1}})
    cluster = make_slurm_cluster(shared, tmp_path)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "--nworkers 4" in script and "--resources GPU=0.25" in script
    assert "#SBATCH --gres=gpu:1" in script and "--nthreads 1" in script
