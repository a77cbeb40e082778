"""One run's nodes on the cluster: each submitted once its upstream nodes are done, the
GPU trainings first, logged as they finish; a failing node's own error, or a cluster
whose jobs have all ended, stops the run with what to do.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, Any

from distributed import CancelledError, as_completed
from distributed.scheduler import KilledWorker
from tqdm.auto import tqdm

from .cluster import Cluster, training_resources
from .clusters import dashboard_link
from .config import DaskSettings
from .errors import DaskRunnerError
from .payloads import Payloads
from .worker import FORWARDED_LOGGER, NodeRun, run_node

if TYPE_CHECKING:
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node


@dataclass
class NodeScheduler:
    """Submits one pipeline's nodes to a connected cluster and waits for them.

    Attributes:
        pipeline: The pipeline being run (its nodes in topological order).
        catalog: The run's catalog (datasets released as the runner's own do).
        cluster: The connected cluster.
        sent: The pickled nodes, catalog and worker context.
        settings: The Dask settings.
        where: Where the settings come from (for messages).
        logger: The runner's logger.
        release: The runner's ``_release_datasets`` (node, catalog, load counts, pipeline).
        node_runs: Every finished node's :class:`~brstnet.runners.worker.NodeRun`, in the
            order they finished (the runner's list, filled as they finish).
    """

    pipeline: Pipeline
    catalog: Any
    cluster: Cluster
    sent: Payloads
    settings: DaskSettings
    where: str
    logger: logging.Logger
    release: Callable[[Node, Any, Counter, Pipeline], None]
    node_runs: list[NodeRun] = field(default_factory=list)

    def run(self) -> None:
        """Submit each node once its upstream nodes are done; log as they finish.

        Upstream futures are deliberately not task arguments (as in Kedro's Dask guide):
        a finished task's result lives on its worker, and when that worker dies Dask
        recomputes it for any task still waiting on it, which would re-run a finished
        training. Nodes exchange data through catalog files only, so a node is simply
        submitted when its inputs are written, as Kedro's own runners do; Dask places it
        (resources, free workers) and re-runs it if its worker dies.
        """
        pipeline, cluster, sent, settings = self.pipeline, self.cluster, self.sent, self.settings
        client = cluster.client
        self.logger.info("Dask: %s", cluster.description)
        self.logger.info("Dask dashboard: %s", dashboard_link(client, settings))
        client.forward_logging(
            FORWARDED_LOGGER, level=logging.getLogger(FORWARDED_LOGGER).getEffectiveLevel()
        )

        nodes = pipeline.nodes
        needs = training_resources(settings)
        gpu_tags = set(settings.gpu_node_tags)
        is_gpu = {n: bool(gpu_tags & set(n.tags)) for n in nodes}
        order = {n: i for i, n in enumerate(nodes)}  # topological
        self.logger.info(
            "Running %d nodes on Dask (%d asking for %s)",
            len(nodes),
            sum(is_gpu.values()),
            needs or "no GPU: CPU workers",
        )
        token = uuid.uuid4().hex[:8]
        upstream = pipeline.node_dependencies
        downstream: dict[Node, set[Node]] = defaultdict(set)
        for node, parents in upstream.items():
            for parent in parents:
                downstream[parent].add(node)
        futures: dict[Any, Node] = {}
        pending = as_completed()

        def submit(ready: list[Node]) -> None:
            # the long GPU trainings first, then pipeline order
            for node in sorted(ready, key=lambda n: (not is_gpu[n], order[n])):
                future = client.submit(
                    run_node,
                    sent.nodes[node],
                    sent.catalog,
                    sent.context,
                    key=f"{node.name}-{token}",
                    resources=needs if is_gpu[node] else None,
                    priority=1 if is_gpu[node] else 0,
                    pure=False,
                )
                futures[future] = node
                pending.add(future)

        done_nodes: set[Node] = set()
        load_counts = Counter(chain.from_iterable(n.inputs for n in nodes))
        left = Counter(_namespace(n) for n in nodes)
        spans: dict[str | None, list[NodeRun]] = defaultdict(list)
        submit([n for n in nodes if not upstream[n]])
        with tqdm(total=len(nodes), desc="Dask nodes", unit="node", disable=None) as bar:
            try:
                for future in _finished(pending, cluster):
                    node = futures[future]
                    if future.status != "finished":
                        self._fail(client, futures, future, node)
                    record: NodeRun = future.result()
                    future.release()
                    done_nodes.add(node)
                    self.node_runs.append(record)
                    bar.update()
                    self._log_finished(node, record, spans, left, len(nodes))
                    self.release(node, self.catalog, load_counts, pipeline)
                    submit([c for c in downstream[node] if upstream[c] <= done_nodes])
            except _ClusterLost as lost:
                self._stop_lost(client, futures, str(lost))
        if len(done_nodes) != len(nodes):  # cannot happen for a valid Kedro pipeline
            missing = sorted(n.name for n in set(nodes) - done_nodes)
            raise DaskRunnerError(f"nodes never became ready: {missing[:5]}")

    def _stop_lost(self, client: Any, futures: dict[Any, Node], why: str) -> None:
        """Every job of the run has ended: cancel what is left and say how to resume."""
        left = sorted(node.name for f, node in futures.items() if f.status == "pending")
        client.cancel([f for f in futures if f.status == "pending"])
        shown = ", ".join(left[:4]) + (" ..." if len(left) > 4 else "")
        raise DaskRunnerError(
            f"{why} and no Dask worker is left; {len(left)} node(s) did not finish ({shown}). "
            "The outputs already written are kept: run the same command with "
            "--only-missing-outputs to resume (trainings resume from their checkpoints); a "
            f"job that hit its time limit needs a longer slurm.walltime ({self.where})"
        )

    def _log_finished(
        self,
        node: Node,
        record: NodeRun,
        spans: dict[str | None, list[NodeRun]],
        left: Counter,
        total: int,
    ) -> None:
        """One line per node; one line per namespace once its last node is done."""
        self.logger.info(
            "Completed node %s in %.1f s on %s%s (%d of %d)",
            node.name,
            record.seconds,
            record.worker,
            f", SLURM job {record.job}" if record.job else "",
            len(self.node_runs),
            total,
        )
        namespace = _namespace(node)
        spans[namespace].append(record)
        left[namespace] -= 1
        if namespace and not left[namespace]:
            runs = spans[namespace]
            wall = max(r.finished for r in runs) - min(r.started for r in runs)
            self.logger.info(
                "Finished namespace %s in %.1f s (%d node(s) on %s)",
                namespace,
                wall,
                len(runs),
                ", ".join(sorted({r.worker for r in runs})),
            )

    def _fail(self, client: Any, futures: dict[Any, Node], future: Any, node: Node) -> None:
        """Cancel what is left and raise the failing node's own error."""
        settings, where = self.settings, self.where
        try:
            error = future.exception()
            traceback = future.traceback()
        except CancelledError:
            error = None
        # only now: a cancelled future has no error to read
        client.cancel([f for f in futures if f.status == "pending"])
        if error is None:
            raise DaskRunnerError(f"node {node.name!r} was cancelled on the Dask cluster")
        self.logger.warning(
            "A node failed; the outputs already written are kept: run the same command with "
            "--only-missing-outputs to resume"
        )
        if isinstance(error, KilledWorker):
            raise DaskRunnerError(
                f"node {node.name!r} was lost with its Dask worker {settings.retries + 1} times "
                f"(retries: {settings.retries} in {where}); the worker died (killed, out of "
                f"memory?). Last worker: {getattr(error, 'last_worker', '?')}"
            ) from error
        self.logger.error("Node %s failed: %s: %s", node.name, type(error).__name__, error)
        if not any(node.name in note for note in getattr(error, "__notes__", [])):
            error.add_note(f"in Kedro node {node.name!r} (on Dask)")  # failed before it ran
        raise error.with_traceback(traceback)


def _namespace(node: Node) -> str | None:
    return node.namespace.split(".")[0] if node.namespace else None


class _ClusterLost(Exception):
    """No worker is left and none will come (the message says why)."""


def _finished(pending: Any, cluster: Cluster, *, check_every_s: float = 5.0) -> Iterator[Any]:
    """The futures of ``pending`` (a ``distributed.as_completed``) as they finish; while
    none does, ask the cluster every ``check_every_s`` whether any worker can still come
    (:meth:`~brstnet.runners.cluster.Cluster.lost`), so that a run whose SLURM jobs have
    all ended stops instead of waiting for ever."""
    last = time.monotonic()
    while not pending.is_empty():
        if pending.has_ready():
            yield from pending.next_batch(block=False)
            last = time.monotonic()
            continue
        if time.monotonic() - last >= check_every_s:
            last = time.monotonic()
            why = cluster.lost()
            if why is not None:
                raise _ClusterLost(why)
        time.sleep(0.05)
