"""What the driver sends to the Dask workers: every node, the catalog, and the session's
node hooks and MLflow run, pickled once and checked before any cluster starts.

On Dask, nodes run in other processes (other machines): every node output must be a
catalog file, and whatever a task carries must pickle.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle
from kedro.io import MemoryDataset
from pluggy import PluginManager

from .errors import DaskRunnerError

if TYPE_CHECKING:
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node

logger = logging.getLogger(__name__)

#: Hook specifications that fire where a node runs (sent to the workers).
NODE_HOOKS = frozenset(
    {
        "before_node_run",
        "after_node_run",
        "on_node_error",
        "before_dataset_loaded",
        "after_dataset_loaded",
        "before_dataset_saved",
        "after_dataset_saved",
    }
)


@dataclass(frozen=True)
class Payloads:
    """What every task carries, pickled once on the driver."""

    nodes: dict[Node, bytes]
    catalog: bytes
    context: bytes


def dumps(obj: Any) -> bytes:
    """``obj`` as the bytes a task carries."""
    return cloudpickle.dumps(obj)


def worker_hooks(hook_manager: Any) -> tuple[tuple[str, Any], ...]:
    """The session's hook implementations that fire where nodes run and can be pickled."""
    if not isinstance(hook_manager, PluginManager):
        return ()
    shipped = []
    for name, plugin in hook_manager.list_name_plugin():
        callers = {c.name for c in hook_manager.get_hookcallers(plugin) or []}
        if not callers & NODE_HOOKS:
            continue
        try:
            cloudpickle.dumps(plugin)
        except Exception as exc:  # noqa: BLE001 - any pickling failure means "not sent"
            logger.warning(
                "hook %s is not sent to the Dask workers (it cannot be pickled: %s); its node "
                "and dataset hooks do not run there",
                name,
                exc,
            )
            continue
        shipped.append((name, plugin))
    return tuple(shipped)


def check_outputs_are_files(pipeline: Pipeline, catalog: Any) -> None:
    """Every node output must be a persistent catalog dataset: on Dask, nodes run in
    other processes (other machines), so nothing may pass between them in memory.

    Raises:
        DaskRunnerError: naming the in-memory outputs.
    """
    in_memory = sorted(
        name
        for name in pipeline.all_outputs()
        if isinstance(ds := catalog.get(name, fallback_to_runtime_pattern=True), MemoryDataset)
        or getattr(ds, "_EPHEMERAL", False)
    )
    if in_memory:
        shown = ", ".join(in_memory[:8]) + (" ..." if len(in_memory) > 8 else "")
        raise DaskRunnerError(
            f"{len(in_memory)} node output(s) have no file in the catalog ({shown}): under the "
            "Dask runner every output must be a catalog dataset on the shared filesystem "
            "(add them to conf/base/catalog.yml)"
        )


def pickled(nodes: list[Node], catalog: Any) -> tuple[dict[Node, bytes], bytes]:
    """Nodes and catalog as the bytes the workers get; say which cannot be sent, before
    any cluster starts.

    Tasks carry bytes, unpickled when the task runs: unpickling imports the node's modules
    (torch, MLflow, ...), which would otherwise happen in the worker's event loop and, on
    a busy machine, stall it past Dask's connection timeouts.
    """
    bad, payloads = [], {}
    for node in nodes:
        try:
            payloads[node] = cloudpickle.dumps(node)
        except Exception as exc:  # noqa: BLE001 - any pickling failure means "cannot send"
            bad.append(f"{node.name} ({exc})")
    if bad:
        raise DaskRunnerError(f"node(s) cannot be sent to Dask workers: {'; '.join(bad[:5])}")
    try:
        data = cloudpickle.dumps(catalog)
    except Exception as exc:  # noqa: BLE001
        raise DaskRunnerError(f"the catalog cannot be sent to Dask workers: {exc}") from exc
    logger.debug("catalog: %.0f kB per task", len(data) / 1e3)
    return payloads, data


def absolute_tracking_uri(uri: str, cwd: Path) -> str:
    """A tracking URI that means the same store from any working directory."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str((cwd / uri[len("sqlite:///") :]).resolve())
    if "://" not in uri and ":" not in uri[1:2]:  # a plain path (a file store)
        return str((cwd / uri).resolve())
    return uri


def session_tracking(cwd: Path) -> tuple[str | None, str | None]:
    """The driver's MLflow tracking URI and active run (kedro-mlflow's), if MLflow is used."""
    if "mlflow" not in sys.modules:  # a session without the project's hooks (no MLflow)
        return None, None
    # deferred: MLflow is heavy, and imported here only where the session already uses it
    import mlflow

    active = mlflow.active_run()
    uri = absolute_tracking_uri(mlflow.get_tracking_uri(), cwd)
    return uri, active.info.run_id if active is not None else None
