"""The MLflow UI and kedro-viz as a researcher opens them, in a headless Chromium.

Used by ``tests/test_browser.py`` (against a tiny tracked run) and by ``make screenshots``
(``python -m tests.browser --out data/08_reporting``: the project's own ``mlflow.db`` when
it exists, else the tiny run). Servers listen on 127.0.0.1 on free ports and are stopped
by process group. Chromium is the system one (``apt-get install chromium``), driven by
playwright's Python package; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: The columns a researcher compares variants on, as the runs table heads them.
COMPARISON_HEADERS = (
    "mean_r_libnorm",
    "median_r_libnorm",
    "median_partial_r",
    "genes_partial_r_gt_0",
    "median_r_log1p",
    "genes_r_gt_0_5_log1p",
    "significant_genes",
    "backbone",
    "aux_weight",
    "patch_size_px",
)


def chromium_path() -> str:
    """The system Chromium (Debian's ``chromium`` package)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("no Chromium found: install it with `apt-get install -y chromium`")


def free_port() -> int:
    """A free port on 127.0.0.1 below 49152 (kedro-viz refuses the ephemeral range)."""
    import random

    for port in random.sample(range(20000, 49000), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port on 127.0.0.1")


def _quiet_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DO_NOT_TRACK": "true",
        "KEDRO_DISABLE_TELEMETRY": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        **extra,
    }


@contextlib.contextmanager
def server(
    command: list[str], url: str, *, cwd: Path, log: Path, timeout: float = 180
) -> Iterator[str]:
    """Run ``command`` in its own process group until ``url`` answers; stop the group after."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=_quiet_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{command[0]} exited ({proc.returncode}): {log.read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{url} did not answer in {timeout} s: {log.read_text()[-2000:]}"
                )
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


def mlflow_server(db: Path, work: Path) -> contextlib.AbstractContextManager[str]:
    """``make mlflow-ui``'s server on the store ``db`` (a free port)."""
    port = free_port()
    command = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{db}",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    return server(command, f"http://127.0.0.1:{port}/health", cwd=work, log=work / "mlflow.log")


def kedro_viz_server(project: Path, work: Path) -> contextlib.AbstractContextManager[str]:
    """``make viz``'s server on ``project`` (a free port)."""
    port = free_port()
    command = [
        str(BIN / "kedro"),
        "viz",
        "run",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-browser",
    ]
    return server(command, f"http://127.0.0.1:{port}/api/main", cwd=project, log=work / "viz.log")


@dataclass
class Seen:
    """What the browser showed."""

    runs_url: str = ""
    headers: list[str] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)
    flowchart_nodes: list[str] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)


def table_rows(page) -> list[dict[str, str]]:
    """The runs table's rows as the grid shows them: column id (``metrics.`median_r```,
    ``params.`backbone```, ``run_name`` ...) -> cell text, top row first."""
    cells = page.eval_on_selector_all(
        ".ag-row .ag-cell[col-id]",
        "cells => cells.map(c => [c.closest('.ag-row').getAttribute('row-index'),"
        " c.getAttribute('col-id'), c.textContent.trim()])",
    )
    rows: dict[int, dict[str, str]] = {}
    for index, column, text in cells:
        rows.setdefault(int(index), {})[column] = text
    return [rows[i] for i in sorted(rows)]


def look(db: Path, project: Path, out: Path, work: Path, *, experiment: str = "brstnet") -> Seen:
    """Open the MLflow runs table (the README's link) and the kedro-viz flowchart of
    ``project`` in Chromium; screenshot both into ``out``."""
    from mlflow.tracking import MlflowClient
    from playwright.sync_api import sync_playwright

    from brstnet.mlflow_views import runs_table_url

    out.mkdir(parents=True, exist_ok=True)
    seen = Seen()
    found = MlflowClient(f"sqlite:///{db}").get_experiment_by_name(experiment)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(),
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(viewport={"width": 2400, "height": 1000})
        with mlflow_server(db, work) as health:
            seen.runs_url = runs_table_url(health.rsplit("/", 1)[0], found.experiment_id)
            page.goto(seen.runs_url)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.ag-header-cell')]"
                ".some(e => e.textContent.trim() === 'mean_r_libnorm')",
                timeout=120_000,
            )
            assistant = page.get_by_role("button", name="Close")  # MLflow's chat panel
            if assistant.count():
                assistant.first.click()
            page.wait_for_timeout(2000)  # let the grid lay out its rows and columns
            seen.headers = [t.strip() for t in page.locator(".ag-header-cell").all_inner_texts()]
            seen.rows = table_rows(page)
            page.screenshot(path=str(out / "mlflow_runs_table.png"), full_page=True)
            seen.screenshots.append(out / "mlflow_runs_table.png")
        with kedro_viz_server(project, work) as api:
            page.goto(api.rsplit("/api", 1)[0] + "/")
            page.wait_for_selector(".pipeline-node", timeout=120_000)
            page.wait_for_timeout(1500)
            # no feature tour over the graph: kedro-viz keeps its settings in localStorage
            page.evaluate(
                "() => { const s = JSON.parse(localStorage.getItem('KedroViz') || '{}');"
                " s.showFeatureHints = false; localStorage.setItem('KedroViz', JSON.stringify(s)); }"
            )
            page.reload()
            page.wait_for_selector(".pipeline-node", timeout=120_000)
            for button in page.get_by_role("button", name="Dismiss").all():  # "new version"
                with contextlib.suppress(Exception):
                    button.click(timeout=2000)
            page.wait_for_timeout(1500)
            seen.flowchart_nodes = [  # SVG: textContent, not innerText
                t.strip()
                for t in page.eval_on_selector_all(
                    ".pipeline-node", "e => e.map(n => n.textContent)"
                )
            ]
            page.screenshot(path=str(out / "kedro_viz_flowchart.png"), full_page=True)
            seen.screenshots.append(out / "kedro_viz_flowchart.png")
        browser.close()
    return seen


def tiny_tracked_run(root: Path) -> Path:
    """A tracked ``kedro run`` in miniature, written by the project's own datasets and
    hooks (no training): a parent run with two trained variants (one logged model) and a
    baseline under it. Returns the store's database; artifacts stay under ``root``."""
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.tracking import MlflowClient
    from PIL import Image

    from brstnet.datasets import MlflowChildRunDataset, MlflowParentRunDataset
    from brstnet.evaluation.tracking import TrackedRun, build_headline
    from brstnet.hooks import TrackingHooks
    from brstnet.models import ModelSpec
    from brstnet.st.geometry import PatchGeometry
    from brstnet.training.bundle import ModelBundle

    db = root / "mlflow.db"
    image = Image.new("RGB", (64, 48), "white")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    try:
        experiment = MlflowClient().create_experiment(
            "brstnet", artifact_location=str(root / "artifacts")
        )
        spec = ModelSpec("test_resnet", n_main=2, img_size=16, n_aux=1, aux_weight=1.0)
        bundle = ModelBundle(
            {
                "variant": "test_resnet_aux",
                "fold": 0,
                "model": spec.to_dict(),
                "geometry": PatchGeometry(window_um=150.0, size_px=16).to_dict(),
                "genes": ["ERBB2", "GRB7"],
                "aux_genes": ["ACTB"],
                "target": {
                    "transform": "log1p",
                    "zscore": True,
                    "mean": [1.0, 2.0],
                    "std": [0.5, 0.5],
                },
                "train_patients": ["A"],
                "test_patients": ["B"],
            },
            spec.build(seed=0).state_dict(),
        )
        rows = []
        with mlflow.start_run(experiment_id=experiment, run_name="training"):
            hooks = TrackingHooks()
            hooks.before_pipeline_run({}, None, None)
            for variant, backbone, aux, median_r, kind in (
                ("test_resnet_aux", "test_resnet", 1.0, 0.31, "model"),
                ("test_resnet_noaux", "test_resnet", 0.0, 0.27, "model"),
                ("baseline_ridge", "ridge on image features", 0.0, 0.12, "baseline"),
            ):
                metrics = {
                    "mean_r_libnorm": median_r,
                    "median_r_libnorm": median_r - 0.01,
                    "median_partial_r": median_r / 3,
                    "genes_partial_r_gt_0": int(median_r * 400),
                    "median_r_log1p": median_r + 0.2,
                    "genes_r_gt_0_5_log1p": int(median_r * 40),
                    "aCC_log1p": median_r + 0.15,
                    "median_r": median_r,
                    "genes_positive": 200,
                    "genes_r_gt_0_5": int(median_r * 40),
                    "significant_genes": int(median_r * 100),
                    "aCC": median_r - 0.05,
                    "n_genes": 250,
                }
                rows.append({"variant": variant, **metrics})
                run = TrackedRun(
                    variant,
                    params={
                        "variant": variant,
                        "kind": kind,
                        "backbone": backbone,
                        "aux_weight": aux,
                        "patch_size_px": 112,
                    },
                    metrics={**metrics, **({"train_seconds": 60.0} if kind == "model" else {})},
                    histories={"fold0_final_loss_main": [0.9, 0.7, 0.6]} if kind == "model" else {},
                    tables={"per_gene.csv": pd.DataFrame({"median_r": np.linspace(-0.2, 0.6, 5)})},
                    images={"r_histogram.png": image},
                    models={"fold0": bundle} if variant == "test_resnet_aux" else {},
                    tags={"brstnet.kind": kind},
                    start_time=time.time() - 120 if kind == "model" else None,
                    end_time=time.time() - 60 if kind == "model" else None,
                )
                MlflowChildRunDataset(variant).save(run)
            headline = build_headline(
                pd.DataFrame(rows),
                {
                    "test_resnet_aux": ("test_resnet", 1.0),
                    "test_resnet_noaux": ("test_resnet", 0.0),
                },
                patch_size_px=112,
                window_um=150.0,
            )
            MlflowParentRunDataset("training").save(headline)
            hooks.after_pipeline_run({}, None, None)
    finally:
        mlflow.set_tracking_uri(previous)
    return db


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "data/08_reporting")
    parser.add_argument(
        "--db",
        type=Path,
        default=REPO / "mlflow.db",
        help="the tracking store (default: the project's; a tiny run when absent)",
    )
    args = parser.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.db.is_file():  # the project's store: its experiment opens on the comparison
            from mlflow.tracking import MlflowClient

            from brstnet.mlflow_views import set_experiment_views

            client = MlflowClient(f"sqlite:///{args.db}")
            found = client.get_experiment_by_name("brstnet")
            if found is None:
                parser.exit(1, f"no experiment 'brstnet' in {args.db}: run `make run` first\n")
            set_experiment_views(client, found.experiment_id, replace=False)
            db = args.db
        else:
            db = tiny_tracked_run(work)
        seen = look(db, REPO, args.out, work)
    for path in seen.screenshots:
        print(f"wrote {path}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
