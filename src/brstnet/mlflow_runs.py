"""MLflow runs left RUNNING by a killed ``kedro run``: recognised and marked KILLED.

A run a process cannot end (kill -9, power loss) stays RUNNING in the tracking store
forever. Every run brstnet starts records its owner (:data:`OWNER_TAG`: host, pid and
start time, see :mod:`brstnet.processes`); the next tracked run marks the project's
RUNNING runs whose owner is gone as KILLED (MLflow's own status for a run that was
stopped), and so their child runs. Runs of a live process, of another host, or without an
owner record (started elsewhere, or before owners were recorded) are left as they are.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow.entities import ViewType

from .processes import Owner

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)

#: Tag holding the owner of a run (``host~pid~started``).
OWNER_TAG = "brstnet.owner"
#: Tag set on a run marked KILLED here: whose it was and which run found it.
ORPHAN_TAG = "brstnet.orphaned"
PARENT_TAG = "mlflow.parentRunId"


def owner_tags() -> dict[str, str]:
    """The tags that name this process as a run's owner."""
    return {OWNER_TAG: Owner.current().token}


def orphaned_runs(client: MlflowClient, experiment_ids: list[str], *, keep: set[str]) -> list:
    """RUNNING runs of ``experiment_ids`` whose owner is gone (and their child runs
    without an owner record whose parent is no longer running), except ``keep``."""
    running = client.search_runs(
        experiment_ids,
        filter_string="attributes.status = 'RUNNING'",
        run_view_type=ViewType.ACTIVE_ONLY,
        max_results=50_000,
    )
    ids = {run.info.run_id for run in running}
    orphans = {}
    for run in running:
        owner = Owner.parse(run.data.tags.get(OWNER_TAG, ""))
        if run.info.run_id not in keep and owner is not None and owner.gone():
            orphans[run.info.run_id] = run
    for run in running:
        tags = run.data.tags
        parent = tags.get(PARENT_TAG)
        if run.info.run_id in keep or run.info.run_id in orphans or OWNER_TAG in tags:
            continue
        if parent is not None and (parent in orphans or parent not in ids):
            orphans[run.info.run_id] = run
    return list(orphans.values())


def end_orphaned_runs(
    client: MlflowClient, experiment_ids: list[str], *, current: str | None = None
) -> list[str]:
    """Mark orphaned runs (see :func:`orphaned_runs`) KILLED; ``current`` is never one.

    Returns:
        The ids of the runs marked KILLED.
    """
    ended = []
    for run in orphaned_runs(client, experiment_ids, keep={current} if current else set()):
        owner = run.data.tags.get(OWNER_TAG, f"parent {run.data.tags.get(PARENT_TAG)}")
        client.set_tag(run.info.run_id, ORPHAN_TAG, f"owner {owner} gone; found by run {current}")
        client.set_terminated(run.info.run_id, "KILLED")
        ended.append(run.info.run_id)
        logger.warning(
            "MLflow run %s (%s) was left RUNNING by a killed process (owner %s): marked KILLED",
            run.info.run_id,
            run.info.run_name,
            owner,
        )
    return ended


#: The first 16 bytes of every SQLite 3 database file.
SQLITE_HEADER = b"SQLite format 3\x00"


def check_tracking_store(uri: str) -> None:
    """Refuse a sqlite tracking store whose file is not an SQLite database, naming it
    (MLflow would fail with ``file is not a database`` and its SQL, naming no file).

    Raises:
        ValueError: the file exists, is not empty and is not an SQLite database.
    """
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.is_file() or path.stat().st_size == 0:
        return  # MLflow creates it
    with open(path, "rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise ValueError(
            f"the MLflow tracking store {path} is not an SQLite database (damaged, or another "
            f"file): move it aside (mv {path} {path}.broken) to start a new store, or restore "
            "it from a backup (server.mlflow_tracking_uri in conf/base/mlflow.yml names it)"
        )
