"""The Ray executor: a stage's batch work on a Ray cluster (optional extra ``ray``).

:class:`RayExecutor` is the Ray implementation of :class:`analyzer.executor.Executor`. The driver (the
process running ``analyzer run --ray ADDRESS`` or ``analyzer embed --ray ADDRESS``) keeps the workspace and
every step of the stage (:func:`analyzer.pipeline.embed`: what is pending, what is stored, resuming); only the
batch work goes to Ray, as a Ray Data ``map_batches`` over a pool of actors that each build the task once (for
the embed stage, one model load per actor: :class:`analyzer.embed.EmbedBatches`). Results come back in input
order (``preserve_order``) and the driver stores them exactly as it stores the local executor's, so the later
stages cannot tell the difference.

Bounded memory: the input frames are handed to Ray in windows of about :data:`WINDOW_BYTES` (one Ray Dataset,
and one actor pool, per window); the next window is read only when the previous one's results are taken.

Workers never open the workspace: only the batches travel to them and results back, so the workspace must be
on the driver's machine and every worker needs the ``analyzer`` package (and the model) installed.

Two more stages hand their work that grows with the data to the same executor (``analyzer run --ray``):

* **ingest**: each log file is parsed by a Ray task (:meth:`RayExecutor.map_jobs`, a streaming generator per
  file, :func:`analyzer.ingest.read_file_job`): its batches come back as Arrow IPC bytes and JSON-able rejected
  rows and are stored by the driver file by file, in input order, exactly as one local reader's. The log files
  must be readable at the same path by every worker (a shared filesystem; with ``--ray local`` this machine).
* **the kNN graph** of a full clustering (:meth:`RayExecutor.knn_graph`): the index is split into shards of
  rows, one Ray actor each (the index's trained quantiser without its lists, plus the shard's vectors); every
  block of query rows is searched by every shard and the shards' top-k merged on the driver: the graph of the
  whole index, each actor holding 1/N of it.

The small global steps (the cluster tree, families, labels, campaign grouping and scoring) stay on the driver.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from analyzer.executor import BatchTask, Executor

#: Input (in bytes, as pandas counts a frame's memory) handed to Ray per Dataset. Each Dataset starts its own
#: actor pool (one model load per actor), so windows are large: 16M prompts of ~500 bytes are ~10 windows.
WINDOW_BYTES = 1 << 30
#: Rows per call of an actor.
ACTOR_BATCH_ROWS = 256
#: Items a file's ingest task may have waiting for the driver before it pauses (memory: a batch each).
JOB_BACKPRESSURE_ITEMS = 2
#: Query blocks of the kNN graph in flight at once (each is searched by every shard).
KNN_BLOCKS_IN_FLIGHT = 4
#: Query rows per block of the kNN graph when the index is an inverted file: each shard compares its lists with a
#: block list by list (:func:`analyzer.index.probed_search`), one pass over all its lists per block, so blocks are
#: larger than an exact index's (:data:`analyzer.index.KNN_BATCH`): at 5M prompts (8,944 lists) about 120 queries
#: per list and 80 passes, instead of 15 and 610. A block's results: ~12 MB per shard at k = 15.
KNN_PROBED_BLOCK = 1 << 16


def knn_block(index: Any) -> int:
    """Query rows per block of the distributed kNN graph over ``index``."""
    from analyzer.index import KNN_BATCH, inverted_file

    return KNN_BATCH if inverted_file(index) is None else KNN_PROBED_BLOCK


class RayUnavailable(RuntimeError):
    """Ray (the optional extra ``analyzer[ray]``) is not installed."""


def require_ray():
    """Import and return ``ray`` (with Ray Data), or raise :class:`RayUnavailable` saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise RayUnavailable(
            "distributed embedding needs Ray Data: pip install 'analyzer[ray]' (or 'ray[data]>=2.40')"
        ) from exc
    return ray


def _windows(frames: Iterable[pd.DataFrame], window_bytes: int) -> Iterator[list[pd.DataFrame]]:
    """``frames`` grouped into lists of about ``window_bytes`` (the last may be smaller), read lazily."""
    window: list[pd.DataFrame] = []
    size = 0
    for frame in frames:
        window.append(frame)
        size += int(frame.memory_usage(index=False, deep=True).sum())
        if size >= window_bytes:
            yield window
            window, size = [], 0
    if window:
        yield window


def _quiet_ray_data(ray) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the stage's own bar counts rows
    ctx.execution_options.preserve_order = True  # results in input order, as the local executor returns them
    for name in ("ray.data", "ray.data._internal.execution.streaming_executor"):
        logging.getLogger(name).setLevel(logging.WARNING)


class RayExecutor(Executor):
    """Runs batch tasks on a Ray Data actor pool.

    Parameters
    ----------
    address : str
        ``"local"`` starts a private 2-CPU Ray on this machine; anything else goes to ``ray.init(address=...)``:
        ``"auto"`` (a cluster this machine belongs to), ``"HOST:6379"`` or ``"ray://HOST:10001"`` (Ray Client).
        An already initialised Ray is used as it is (and left running).
    num_actors : int, optional
        Actors (one task instance, e.g. one model copy, each). Default: 1 locally, one per alive node on a
        cluster.
    batch_size : int
        Rows per call of an actor.
    window_bytes : int
        Input per Ray Dataset (each starts its own actor pool); bounds what sits in the object store.
    num_cpus_per_actor, num_gpus_per_actor : float
        Ray resources reserved per actor.
    """

    name = "ray"

    def __init__(self, address: str, num_actors: int | None = None, batch_size: int = ACTOR_BATCH_ROWS,
                 window_bytes: int = WINDOW_BYTES, num_cpus_per_actor: float = 1.0,
                 num_gpus_per_actor: float = 0.0) -> None:
        self.address = address
        self.num_actors = num_actors
        self.batch_size = max(1, int(batch_size))
        self.window_bytes = int(window_bytes)
        self.num_cpus_per_actor = num_cpus_per_actor
        self.num_gpus_per_actor = num_gpus_per_actor
        self._ray: Any = None
        self._started = False
        self._depth = 0  # nested ``with`` blocks: a run holds Ray across its stages, each stage enters it again

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "ray": self.address, "ray_actors": self.num_actors}

    def start(self) -> None:
        """Connect to (or start) Ray unless it is running already."""
        ray = self._ray = require_ray()
        self._depth += 1
        if not ray.is_initialized():
            if self.address == "local":
                ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
            else:
                ray.init(address=self.address, log_to_driver=False)
            self._started = True
        _quiet_ray_data(ray)

    def stop(self) -> None:
        """Shut Ray down if :meth:`start` started it and this closes the outermost ``with``."""
        self._depth = max(0, self._depth - 1)
        if self._started and not self._depth:
            self._ray.shutdown()
            self._started = False

    def _remote_args(self) -> dict[str, Any]:
        """``map_batches`` arguments: the actor pool and the resources of each actor."""
        ray = self._ray
        local = self.address == "local"
        n = self.num_actors
        if n is None:
            n = 1 if local else max(1, sum(1 for x in ray.nodes() if x.get("Alive")))
        args: dict[str, Any] = {"compute": ray.data.ActorPoolStrategy(size=max(1, int(n))),
                                "num_cpus": self.num_cpus_per_actor}
        if self.num_gpus_per_actor:
            args["num_gpus"] = self.num_gpus_per_actor
        if not local and n > 1:
            args["scheduling_strategy"] = "SPREAD"
        return args

    def map_batches(self, task: BatchTask, frames: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        self._require_started("map_batches")
        args = self._remote_args()
        for window in _windows(frames, self.window_bytes):
            ds = self._ray.data.from_pandas(window).map_batches(
                task.cls, fn_constructor_kwargs=task.kwargs, batch_size=self.batch_size, batch_format="pandas",
                **args)
            del window
            yield from ds.iter_batches(batch_size=None, batch_format="pandas")

    def _require_started(self, what: str) -> Any:
        if self._ray is None or not self._depth:
            raise RuntimeError(f"RayExecutor.{what} outside 'with executor:' (Ray is not started)")
        return self._ray

    def _workers(self) -> int:
        """How many tasks or shards to run at once: ``num_actors`` if given, else one per CPU of the cluster."""
        if self.num_actors is not None:
            return max(1, int(self.num_actors))
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def map_jobs(self, fn: Callable[[dict], Iterator[Any]], jobs: Sequence[dict]) -> Iterator[Any]:
        """Each job as a Ray task streaming its items (a remote generator, paused when
        :data:`JOB_BACKPRESSURE_ITEMS` wait unread); up to one job per worker (:meth:`_workers`) in flight. The
        items come back job by job in input order, each job's in the order it yielded them."""
        ray = self._require_started("map_jobs")
        remote = ray.remote(fn).options(num_cpus=self.num_cpus_per_actor, num_returns="streaming",
                                        _generator_backpressure_num_objects=JOB_BACKPRESSURE_ITEMS)
        todo = iter(jobs)
        running: deque = deque()

        def start() -> None:
            job = next(todo, None)
            if job is not None:
                running.append(remote.remote(job))

        for _ in range(self._workers()):
            start()
        try:
            while running:
                for ref in running[0]:
                    yield ray.get(ref)
                running.popleft()
                start()
        finally:
            for gen in running:  # stopped early (an error downstream): cancel what still runs
                ray.cancel(gen)

    def knn_graph(self, index: Any, vectors: np.ndarray, k: int,
                  progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The kNN graph of :func:`analyzer.index.knn_graph` over a sharded copy of ``index``: one actor per
        shard of rows (:class:`KnnShard`, ``num_actors`` shards, default one per CPU of the cluster), each query
        block (:func:`knn_block` rows) searched by every shard and the
        shards' top-k merged here. The same neighbours as the local path's up to the order of equal
        similarities."""
        from analyzer import index as index_mod

        ray = self._require_started("knn_graph")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n = vectors.shape[0]
        k_eff = min(k + 1, n)
        nbrs = np.full((n, k), -1, dtype=np.int64)
        sims = np.full((n, k), -np.inf, dtype=np.float32)
        if n == 0:
            return nbrs, sims
        bounds = np.linspace(0, n, min(self._workers(), n) + 1).astype(np.int64)
        empty = index_mod.empty_copy(index)
        actor_cls = ray.remote(num_cpus=self.num_cpus_per_actor)(KnnShard)
        shards = [actor_cls.remote(empty, ray.put(vectors[lo:hi]), int(lo))
                  for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
        batch = knn_block(index)
        pending: deque = deque()
        try:
            for start in range(0, n, batch):
                q = ray.put(vectors[start : start + batch])
                pending.append((start, [s.search.remote(q, k_eff) for s in shards]))
                if len(pending) < KNN_BLOCKS_IN_FLIGHT:
                    continue
                self._merge_block(pending.popleft(), nbrs, sims, k, k_eff, n, progress)
            while pending:
                self._merge_block(pending.popleft(), nbrs, sims, k, k_eff, n, progress)
        finally:
            for s in shards:
                ray.kill(s)
        return nbrs, sims

    def _merge_block(self, block: tuple[int, list], nbrs: np.ndarray, sims: np.ndarray, k: int, k_eff: int, n: int,
                     progress: Callable[[int], None] | None) -> None:
        from analyzer.index import drop_self

        start, refs = block
        found = self._ray.get(refs)
        s, i = merge_topk([f[0] for f in found], [f[1] for f in found], k_eff)
        rows = np.arange(start, min(start + len(s), n))
        drop_self(nbrs, sims, start, rows, s, i, k)
        if progress is not None:
            progress(len(rows))


def merge_topk(sims: Sequence[np.ndarray], ids: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` (highest similarity first) of several shards' search results for the same queries, each
    ``(queries, k_shard)``; ties keep shard order (the lower rows first, as shards hold consecutive rows)."""
    s = np.concatenate(sims, axis=1)
    i = np.concatenate(ids, axis=1)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, axis=1), np.take_along_axis(i, order, axis=1)


class KnnShard:
    """A Ray actor holding one shard of the kNN graph's index: the rows ``offset ..`` of the run's vectors,
    added to a copy of the index's trained, empty structure (:func:`analyzer.index.empty_copy`)."""

    def __init__(self, empty: np.ndarray, vectors: np.ndarray, offset: int) -> None:
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.index = faiss.deserialize_index(empty)
        self.index.add(vectors)
        self.ivf = faiss.try_extract_index_ivf(self.index)
        # An inverted file's lists are compared with the float rows; an exact index holds its own copy of them.
        self.vectors = vectors if self.ivf is not None else None
        self.offset = int(offset)
        self.lists: Any = None  # the shard's rows rounded for integer products, at its first search

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(similarities, row ids)`` of the queries' top ``k`` in this shard (ids in the whole run's rows): an
        inverted file's probed lists compared as the local path compares them
        (:func:`analyzer.index.probed_search`)."""
        from analyzer.index import integer_lists, probed_search

        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.ivf is None:
            s, i = self.index.search(queries, k)
        else:
            if self.lists is None:  # rounded once, not again for each block of queries
                self.lists = integer_lists(self.ivf, self.vectors)
            s, i = probed_search(self.ivf, queries, k, self.vectors, lists=self.lists)
        return s, np.where(i >= 0, i + self.offset, -1)
