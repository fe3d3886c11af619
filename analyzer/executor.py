"""Executors: where a stage's batch work runs, written once and run in this process or on a Ray cluster.

A stage that maps batches of rows to batches of results (the embed stage: ``prompt_hash``, ``text`` in;
``prompt_hash``, ``vector`` out) describes the work as a :class:`BatchTask`: a callable class that each worker
builds once (a model load) and then calls per pandas batch. The stage keeps every other step (what to read,
what to store, resuming, progress) and hands its batches to an :class:`Executor`:

* :class:`LocalExecutor` calls the task in this process, one batch at a time, in order, or in a few worker
  processes on this machine (``workers``: each builds the task once), the results in order;
* :class:`analyzer.distributed.RayExecutor` runs it on a Ray Data actor pool (optional extra ``ray``).

Two more kinds of work go through an executor, each with a local default written here once:

* :meth:`Executor.map_jobs`: a generator function run over a list of jobs (the ingest stage: one job a log file,
  its parsed batches the items), the items job by job in input order;
* :meth:`Executor.knn_graph`: the cluster stage's all-points kNN graph (:func:`analyzer.index.knn_graph` here;
  on Ray, query blocks searched against a sharded index by actors).

And helpers for work on this machine: for pure-Python work, which threads cannot spread over cores,
:func:`process_map`, a function over a list of tasks in worker processes (loky's pool, as joblib uses it:
fresh interpreters, for the length of the call), and :func:`process_pool`, the same for several calls in one
pool; for compiled work that runs without the GIL (the kNN graph's blocks of queries), :func:`thread_map`, the
same on threads of this process.

All return the results in input order and read their input lazily, so a stage that writes results as they
come keeps its memory bounded and can be resumed after a kill. An executor is a context manager: entering it
starts the engine it needs (nothing for the local one), leaving it stops what entering started; entering one
that is already running is harmless, so a run may hold it open across several stages.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: A batch function: a pandas batch in, a pandas batch of results out (same rows, same order).
BatchFn = Callable[[pd.DataFrame], pd.DataFrame]


@dataclass(frozen=True)
class BatchTask:
    """Batch work to map over frames.

    Attributes
    ----------
    cls : type
        A callable class: ``cls(**kwargs)`` is built once per worker, then called with each batch. It must be
        importable by name (Ray workers import it), and ``kwargs`` must be plain, picklable values.
    kwargs : dict
        Constructor arguments of ``cls``.
    local : callable, optional
        An instance this process already built (a model it already loaded): the local executor uses it
        instead of building another.
    """

    cls: type
    kwargs: dict[str, Any] = field(default_factory=dict)
    local: BatchFn | None = None
    #: Environment variables of a local worker process (:class:`LocalExecutor` with ``workers``), set before it
    #: imports anything: say, one thread for a library that would otherwise take every core in each worker.
    worker_env: dict[str, str] = field(default_factory=dict)

    def build(self) -> BatchFn:
        """The batch function for this process: ``local`` if given, else a new ``cls(**kwargs)``."""
        return self.local if self.local is not None else self.cls(**self.kwargs)


class Executor:
    """Runs a :class:`BatchTask` over a stream of frames; subclasses say where."""

    #: Short name, used in progress bars and run records.
    name = "executor"

    def __enter__(self) -> Executor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the engine this executor needs (idempotent)."""

    def stop(self) -> None:
        """Stop what :meth:`start` started (nothing that was running before it)."""

    def describe(self) -> dict[str, Any]:
        """How the work ran, for the run's record."""
        return {"executor": self.name}

    def map_batches(self, task: BatchTask, frames: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        """``task`` applied to ``frames``: result batches in input order (their sizes may differ from the
        input frames'); the input is read lazily, as results are taken."""
        raise NotImplementedError

    def map_jobs(self, fn: Callable[[dict], Iterator[Any]], jobs: Sequence[dict]) -> Iterator[Any]:
        """The items of the generator ``fn(job)`` for each job, job by job in input order (``fn`` must be a
        module-level function and ``jobs`` plain values: a remote executor runs it in other processes).
        Here: one job after another, in this process."""
        for job in jobs:
            yield from fn(job)

    def knn_graph(self, index: Any, vectors: np.ndarray, k: int,
                  progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Every row's ``k`` nearest other rows of ``vectors`` in ``index`` (whose rows they are, in order):
        ``(neighbours, similarities)`` as :func:`analyzer.index.knn_graph` returns them. Here: that function."""
        from analyzer.index import knn_graph

        return knn_graph(index, vectors, k=k, progress=progress)


class LocalExecutor(Executor):
    """Runs the task on this machine: one call per input frame, results in input order as they are computed.

    ``device``: where the kNN graph is built: ``"cpu"`` with FAISS (the default above), a torch GPU device
    (``"cuda"``) exactly, by matrix products in blocks (:func:`analyzer.exact_knn.knn_graph_exact`).
    ``workers``: processes that run :meth:`map_batches`' task (loky's pool: fresh interpreters, each builds the
    task once, with the task's ``worker_env``); 1 (the default): in this process, with the task's ``local``
    instance. A frame travels to its worker and its result back by pickle.
    """

    name = "local"

    def __init__(self, device: str = "cpu", workers: int = 1) -> None:
        self.device = device
        self.workers = max(1, int(workers))

    def knn_graph(self, index: Any, vectors: np.ndarray, k: int,
                  progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        if self.device == "cpu":
            return super().knn_graph(index, vectors, k, progress)
        from analyzer.exact_knn import knn_graph_exact

        return knn_graph_exact(vectors, k=k, device=self.device, progress=progress)

    def map_batches(self, task: BatchTask, frames: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        if self.workers <= 1:
            fn = task.build()
            for frame in frames:
                yield fn(frame)
            return
        key = f"{task.cls.__module__}.{task.cls.__qualname__}:{task.kwargs!r}"
        yield from pool_map(functools.partial(_worker_batch, key, task.cls, task.kwargs), frames, self.workers,
                            env=task.worker_env)


#: The batch function a local worker process built, by task (:meth:`LocalExecutor.map_batches`): one at a time.
_WORKER_BATCH: dict[str, BatchFn] = {}


def _worker_batch(key: str, cls: type, kwargs: dict[str, Any], frame: pd.DataFrame) -> pd.DataFrame:
    """One frame through the task ``key`` in a worker process, built on its first frame."""
    fn = _WORKER_BATCH.get(key)
    if fn is None:
        _WORKER_BATCH.clear()
        fn = _WORKER_BATCH[key] = cls(**kwargs)
    return fn(frame)


#: Tasks handed to :func:`pool_map`'s workers ahead of the results taken, per worker (enough to keep each busy
#: while the next is pickled; few enough that the pickled tasks waiting do not add up).
TASKS_AHEAD_PER_WORKER = 2


def process_map(fn: Callable[[Any], Any], tasks: Sequence[Any], workers: int) -> list[Any]:
    """``[fn(t) for t in tasks]`` in ``workers`` processes, no more than there are tasks (in this process for one
    worker or one task; :func:`process_pool` for one call). A task's exception is raised here."""
    with process_pool(min(workers, len(tasks))) as run:
        return run(fn, tasks)


@contextmanager
def process_pool(workers: int) -> Iterator[Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]]:
    """A ``map(fn, tasks)`` for the length of the ``with`` block: ``[fn(t) for t in tasks]``, in this process for
    one worker or one task, else in one pool of ``workers`` processes (loky's, as :func:`pool_map`'s) for all its
    calls, started at the first call that needs it and stopped at the end of the block: work in several passes
    (the scaffold scan reads every prompt, then the prompts with a recurring sentence again) starts its workers
    once (a worker's start, a fresh interpreter importing what the tasks need, is about a second of a core). A
    task's exception is raised where its result would have come."""
    from joblib.externals.loky import ProcessPoolExecutor

    pool: Any = None

    def run(fn: Callable[[Any], Any], tasks: Sequence[Any]) -> list[Any]:
        nonlocal pool
        if workers <= 1 or len(tasks) <= 1:
            return [fn(t) for t in tasks]
        if pool is None:
            pool = ProcessPoolExecutor(max_workers=workers)
        return list(_in_order(pool, fn, tasks, workers))

    try:
        yield run
    finally:
        if pool is not None:
            pool.shutdown(wait=True)


def pool_map(fn: Callable[[Any], Any], tasks: Iterable[Any], workers: int,
             env: dict[str, str] | None = None) -> Iterator[Any]:
    """``fn(t)`` for each of ``tasks`` in ``workers`` processes: loky's (joblib's) process pool, fresh interpreters
    (not forks of this process, which holds DuckDB's and FAISS's threads; ``env``: environment variables set in
    them), started for this call and gone when it returns, so that nothing they held rides along into the next
    stage. Tasks are read lazily and handed out in order, at most :data:`TASKS_AHEAD_PER_WORKER` per worker ahead
    of the results taken (put the largest first); ``fn`` and the tasks travel by pickle; the results come back in
    input order. A task's exception is raised where its result would have come."""
    from joblib.externals.loky import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers, env=dict(env or {})) as pool:
        yield from _in_order(pool, fn, tasks, workers)


def thread_map(fn: Callable[[Any], Any], tasks: Sequence[Any], workers: int) -> Iterator[Any]:
    """``fn(t)`` for each of ``tasks`` on ``workers`` threads of this process (work that runs without the GIL:
    compiled code, native libraries), the results in input order, tasks handed out as :func:`pool_map` does (at
    most :data:`TASKS_AHEAD_PER_WORKER` per worker ahead of the results taken, which bounds the results held). One
    worker or one task: here, one after another."""
    if workers <= 1 or len(tasks) <= 1:
        yield from map(fn, tasks)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        yield from _in_order(pool, fn, tasks, workers)


def _in_order(pool: Any, fn: Callable[[Any], Any], tasks: Iterable[Any], workers: int) -> Iterator[Any]:
    """``fn(t)`` for each of ``tasks`` in ``pool``, at most :data:`TASKS_AHEAD_PER_WORKER` per worker ahead of the
    results taken, the results in input order."""
    from collections import deque
    from itertools import islice

    todo = iter(tasks)
    pending = deque(pool.submit(fn, t) for t in islice(todo, TASKS_AHEAD_PER_WORKER * workers))
    while pending:
        result = pending.popleft().result()
        pending.extend(pool.submit(fn, t) for t in islice(todo, 1))  # one more in, for the one taken out
        yield result
