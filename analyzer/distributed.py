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
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import pandas as pd

from analyzer.executor import BatchTask, Executor

#: Input (in bytes, as pandas counts a frame's memory) handed to Ray per Dataset. Each Dataset starts its own
#: actor pool (one model load per actor), so windows are large: 16M prompts of ~500 bytes are ~10 windows.
WINDOW_BYTES = 1 << 30
#: Rows per call of an actor.
ACTOR_BATCH_ROWS = 256


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

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "ray": self.address, "ray_actors": self.num_actors}

    def start(self) -> None:
        """Connect to (or start) Ray unless it is running already."""
        ray = self._ray = require_ray()
        if not ray.is_initialized():
            if self.address == "local":
                ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
            else:
                ray.init(address=self.address, log_to_driver=False)
            self._started = True
        _quiet_ray_data(ray)

    def stop(self) -> None:
        """Shut Ray down if :meth:`start` started it."""
        if self._started:
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
        if self._ray is None:
            raise RuntimeError("RayExecutor.map_batches outside 'with executor:' (Ray is not started)")
        args = self._remote_args()
        for window in _windows(frames, self.window_bytes):
            ds = self._ray.data.from_pandas(window).map_batches(
                task.cls, fn_constructor_kwargs=task.kwargs, batch_size=self.batch_size, batch_format="pandas",
                **args)
            del window
            yield from ds.iter_batches(batch_size=None, batch_format="pandas")
