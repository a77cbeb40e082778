"""model_training wall time: the sequential runner vs the Dask runner, on the real data.

Builds a throw-away copy of the project (conf/ + pyproject.toml) reading the real her2st
copy, runs data_processing + feature_selection once, then times ``kedro run
--pipelines=model_training`` (the default 4 namespaces: resnet18 with / without the
auxiliary head x 2 folds) in real Kedro sessions:

1. SequentialRunner, torch using ``--seq-threads`` threads (default: every core; several
   values: one sequential run each);
2. DaskRunner on a LocalCluster of ``--workers`` processes, ``--threads`` torch threads
   each (the models are deleted before each run, so every run trains them all); with
   ``--cluster slurm``, on a one-node SLURM cluster started on this machine
   (:mod:`tests.slurm`, Debian's packages): ``--workers`` sbatch jobs of one worker each.

Prints the wall times (Dask's includes starting the cluster and the workers' imports),
the per-namespace training times, the ratios, and whether the Dask run trained the same
weights as each sequential run (it should where the torch threads per process match).

    python benchmarks/dask_sweep.py --epochs 2
    python benchmarks/dask_sweep.py --epochs 2 --workers 2 --threads 1 --seq-threads 2 1
    python benchmarks/dask_sweep.py --epochs 2 --cluster slurm --seq-threads 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TRAINING = "data/06_models"


def make_project(root: Path, her2st: Path, epochs: int, dask: dict) -> Path:
    """The project's configuration in ``root``, reading ``her2st``, with its own MLflow store."""
    shutil.copytree(REPO / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    (root / "src").mkdir()
    local = root / "conf/local"
    local.mkdir()
    params = {
        "data_processing": {"source": {"local_dir": str(her2st)}},
        "model_training": {"epochs": epochs},
    }
    (local / "parameters.yml").write_text(yaml.safe_dump(params))
    (local / "dask.yml").write_text(yaml.safe_dump(dask))
    tracking = {"server": {"mlflow_tracking_uri": f"sqlite:///{root / 'mlflow.db'}"}}
    (local / "mlflow.yml").write_text(yaml.safe_dump(tracking))
    return root


def run(project: Path, runner, pipelines: list[str]) -> float:
    """Wall seconds of one ``kedro run`` in ``project``."""
    import mlflow
    from kedro.framework.session import KedroSession

    tic = time.perf_counter()
    with KedroSession.create(project_path=project) as session:
        session.run(pipeline_names=pipelines, runner=runner)
    seconds = time.perf_counter() - tic
    while mlflow.active_run() is not None:  # one session per run, as `kedro run`
        mlflow.end_run()
    return seconds


def weights(project: Path) -> dict:
    from safetensors.torch import load_file

    return {
        p.parent.name: load_file(p) for p in sorted((project / TRAINING).glob("*/*.safetensors"))
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--her2st", type=Path, default=REPO.parent / "shared/data/her2st")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per Dask worker")
    parser.add_argument("--seq-threads", type=int, nargs="+", default=[os.cpu_count() or 1])
    parser.add_argument("--keep", action="store_true", help="keep the temporary project")
    parser.add_argument("--cluster", choices=["local", "slurm"], default="local")
    args = parser.parse_args()

    import torch
    from kedro.framework.startup import bootstrap_project
    from kedro.runner import SequentialRunner

    from brstnet.runners import DaskRunner

    dask = {
        "cluster": "local",
        "local": {"n_workers": args.workers},
        "torch_threads": args.threads,
        "dashboard_address": "127.0.0.1:0",
    }
    tmp = Path(tempfile.mkdtemp(prefix="dask_sweep_"))
    slurm = None
    if args.cluster == "slurm":
        sys.path.insert(0, str(REPO))
        from tests.slurm import install, start

        reason = install()
        if reason:
            parser.error(reason)
        slurm = start(tmp / "slurm")
        os.environ.update(slurm.env)
        dask = {
            **dask,
            "cluster": "slurm",
            "slurm": {
                "gpus": 0,
                "cores": args.threads,
                "memory": "8GB",
                "jobs": args.workers,
                "log_directory": str(tmp / "slurm/logs"),
            },
        }
    project = make_project(tmp / "project", args.her2st.resolve(), args.epochs, dask)
    os.chdir(project)
    bootstrap_project(project)
    print(f"project: {project}", flush=True)
    prep = run(project, SequentialRunner(), ["data_processing", "feature_selection"])
    print(f"data_processing + feature_selection: {prep:.0f} s", flush=True)

    sequential = {}
    for threads in args.seq_threads:
        torch.set_num_threads(threads)
        sequential[threads] = (
            run(project, SequentialRunner(), ["model_training"]),
            weights(project),
        )
        shutil.rmtree(project / TRAINING)
        shutil.rmtree(project / "data/08_reporting/training")

    runner = DaskRunner()
    try:
        on_dask = run(project, runner, ["model_training"])
    finally:
        jobs = slurm.completed_jobs() if slurm is not None else []
        if slurm is not None:
            slurm.stop()
    trained_weights = weights(project)

    trained = [r for r in runner.node_runs if r.name.endswith(".train_model")]
    print()
    print(f"model_training, {len(trained)} namespaces, {args.epochs} epochs, cpus={os.cpu_count()}")
    for threads, (seconds, _) in sequential.items():
        print(f"sequential: {seconds:7.1f} s  (1 process, {threads} torch thread(s))")
    where = (
        f"{args.workers} SLURM jobs of 1 worker" if slurm else f"{args.workers} worker processes"
    )
    print(
        f"dask:       {on_dask:7.1f} s  ({where} x {args.threads} torch thread(s); includes "
        "cluster start, job start and the workers' imports)"
    )
    if slurm is not None:
        states = ", ".join(f"job {j['JobId']} {j['JobState']}" for j in jobs)
        print(f"  SLURM jobs submitted: {len(jobs)} ({states})")
    for r in sorted(trained, key=lambda r: r.started):
        job = f", SLURM job {r.job}" if r.job else ""
        print(f"  {r.namespace:28s} {r.seconds:6.1f} s on {r.worker}{job}")
    if trained:
        span = max(r.finished for r in trained) - min(r.started for r in trained)
        print(f"  trainings from first start to last end: {span:.1f} s")
    for threads, (seconds, reference) in sequential.items():
        same = reference.keys() == trained_weights.keys() and all(
            torch.equal(reference[k][t], trained_weights[k][t])
            for k in reference
            for t in reference[k]
        )
        diff = max(
            float((reference[k][t].float() - trained_weights[k][t].float()).abs().max())
            for k in reference
            for t in reference[k]
        )
        print(
            f"sequential ({threads} thread(s)) / dask: {seconds / on_dask:.2f}x; same weights: "
            f"{same} (max abs difference {diff:.1e})"
        )
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":  # Dask's worker processes re-import this module
    raise SystemExit(main())
