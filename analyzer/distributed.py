"""Distributed batch embedding on Ray Data: the embed stage spread over a Ray cluster (optional extra ``ray``).

The driver (the process running ``analyzer embed --ray ADDRESS``) owns the workspace: it streams the pending
prompts out of DuckDB in shards (a keyset on ``prompt_hash``, never one giant frame), hands them to a pool of
Ray actors that each load the embedding model once (:class:`EmbedActor`), and writes the vectors that come
back through :meth:`Workspace.add_embedding_shard`, exactly the storage the local path
(:func:`analyzer.pipeline.embed`) writes, so the later stages cannot tell the difference.

Resumable: vectors are committed every ``shard_rows`` prompts as they arrive; a killed job loses only what was
in flight, and the next run embeds only prompts without a vector.

Workers never open the workspace: only prompt texts travel to them and vectors back, so the workspace must be
on the driver's machine and every worker needs the ``analyzer`` package (and the model) installed.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from analyzer.embed import make_embedder
from analyzer.pipeline import RunOptions, _bar, export_embeddings, import_embeddings
from analyzer.workspace import Workspace

#: Prompt text (in bytes) handed to Ray per Dataset. Each Dataset starts its own actor pool (one model load per
#: actor), so windows are large: 16M prompts of ~500 bytes are 8 windows.
WINDOW_BYTES = 1 << 30


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


def _embedder_kwargs(options: RunOptions, backend: str | None) -> dict[str, Any]:
    """Arguments of :func:`make_embedder` for ``options``: the same on the driver and in every actor.

    ``tier`` and ``backend`` are passed only where ``make_embedder`` accepts them. ``backend`` pins the driver's
    backend in the actors, so that an actor without onnxruntime fails instead of silently falling back to torch.
    """
    params = inspect.signature(make_embedder).parameters
    kw: dict[str, Any] = {"model": options.model, "max_seq_length": options.max_seq_length,
                          "batch_size": options.batch_size}
    tier = getattr(options, "tier", None)
    if tier is not None and "tier" in params:
        kw["tier"] = tier
    if backend in ("onnx", "torch") and "backend" in params:
        kw["backend"] = backend
    return kw


class EmbedActor:
    """A Ray Data callable class: loads the embedder once per actor, then embeds batches of prompts.

    Takes a pandas batch with ``prompt_hash`` and ``text``; returns ``prompt_hash`` and ``vector`` (one float16
    array per row; the workspace stores float16, so nothing is lost by sending them that way).
    """

    def __init__(self, embedder_kwargs: dict[str, Any], expected_key: str) -> None:
        self.embedder = make_embedder(**embedder_kwargs)
        if self.embedder.key != expected_key:
            # Vectors of another backend or quantization config live in another space: refuse to mix them.
            raise RuntimeError(
                f"this Ray worker builds embedder {self.embedder.key!r} but the driver stores {expected_key!r}: "
                "install the same analyzer version and extras (onnxruntime) on every worker, and use workers with "
                "the same CPU features as the driver (the ONNX quantization config depends on them)"
            )

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        vecs = self.embedder.encode(batch["text"].tolist()).astype(np.float16)
        return pd.DataFrame({"prompt_hash": batch["prompt_hash"].to_numpy(), "vector": list(vecs)})


def pending_count(ws: Workspace, key: str) -> int:
    """Number of unique prompts without a vector for ``key``."""
    return ws.pending_count(key)


def iter_pending(ws: Workspace, key: str, shard_rows: int) -> Iterator[pd.DataFrame]:
    """Pending prompts (``prompt_hash``, ``text``) in hash order, ``shard_rows`` at a time.

    A keyset on ``prompt_hash`` (not ``OFFSET``): vectors committed meanwhile shrink the pending set without
    shifting the next shard. Memory stays at one shard whatever the workspace size.
    """
    after = ""
    while True:
        frame = ws.pending_prompts(key, after=after, limit=int(shard_rows))
        if frame.empty:
            return
        frame["text"] = frame["text"].fillna("")
        yield frame
        if len(frame) < shard_rows:
            return
        after = str(frame["prompt_hash"].iloc[-1])


def _windows(shards: Iterator[pd.DataFrame], window_bytes: int) -> Iterator[list[pd.DataFrame]]:
    window: list[pd.DataFrame] = []
    size = 0
    for shard in shards:
        window.append(shard)
        size += int(shard["text"].str.len().sum())
        if size >= window_bytes:
            yield window
            window, size = [], 0
    if window:
        yield window


def _start_ray(ray, address: str) -> bool:
    """Connect to (or start) Ray; returns whether this call started it (and so must shut it down)."""
    if ray.is_initialized():
        return False
    if address == "local":
        ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)
    return True


def _quiet_ray_data(ray) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours counts prompts
    ctx.execution_options.preserve_order = True  # shards come back in hash order, as the local path writes them
    for name in ("ray.data", "ray.data._internal.execution.streaming_executor"):
        logging.getLogger(name).setLevel(logging.WARNING)


def embed_with_ray(ws: Workspace, options: RunOptions, address: str, num_actors: int | None = None,
                   shard_rows: int = 8192, batch_size: int = 256, window_bytes: int = WINDOW_BYTES,
                   num_cpus_per_actor: float = 1.0, num_gpus_per_actor: float = 0.0) -> dict[str, int | str]:
    """Embed every pending prompt on a Ray cluster; returns the same counts as :func:`analyzer.pipeline.embed`.

    Parameters
    ----------
    ws : Workspace
        The workspace, on this (the driver's) machine; the caller holds its write lock.
    options : RunOptions
        Model options (``model``, ``max_seq_length``, ``batch_size`` per forward pass, ``embedding_cache``,
        ``progress``), as for the local path.
    address : str
        ``"local"`` starts a private 2-CPU Ray on this machine; anything else goes to ``ray.init(address=...)``:
        ``"auto"`` (a cluster this machine belongs to), ``"HOST:6379"`` or ``"ray://HOST:10001"`` (Ray Client).
        An already initialised Ray is used as it is.
    num_actors : int, optional
        Embedding actors (one model copy each). Default: 1 locally, one per alive node on a cluster.
    shard_rows : int
        Prompts read from DuckDB per block and committed per embedding shard.
    batch_size : int
        Prompts per call of an actor.
    window_bytes : int
        Prompt text per Ray Dataset (each starts its own actor pool); bounds what sits in the object store.
    num_cpus_per_actor, num_gpus_per_actor : float
        Ray resources reserved per actor.
    """
    ray = require_ray()
    embedder = make_embedder(**_embedder_kwargs(options, None))
    key = embedder.key
    actor_kwargs = {"embedder_kwargs": _embedder_kwargs(options, getattr(embedder, "backend", None)),
                    "expected_key": key}
    del embedder  # only the key and backend were needed here; the actors load their own copies
    ws.verify_embeddings(key)
    reused = import_embeddings(ws, options.embedding_cache, key) if options.embedding_cache else 0
    n = pending_count(ws, key)
    shard_rows = max(1, int(shard_rows))
    done = 0
    if n:
        started = _start_ray(ray, address)
        try:
            _quiet_ray_data(ray)
            if num_actors is None:
                num_actors = 1 if address == "local" else max(1, sum(1 for x in ray.nodes() if x.get("Alive")))
            remote_args: dict[str, Any] = {"num_cpus": num_cpus_per_actor}
            if num_gpus_per_actor:
                remote_args["num_gpus"] = num_gpus_per_actor
            if address != "local" and num_actors > 1:
                remote_args["scheduling_strategy"] = "SPREAD"
            with _bar(n, "embed (ray)", " prompts", options.progress) as bar:
                for window in _windows(iter_pending(ws, key, shard_rows), window_bytes):
                    ds = ray.data.from_pandas(window).map_batches(
                        EmbedActor,
                        fn_constructor_kwargs=actor_kwargs,
                        compute=ray.data.ActorPoolStrategy(size=max(1, int(num_actors))),
                        batch_size=max(1, int(batch_size)),
                        batch_format="pandas",
                        **remote_args,
                    )
                    del window
                    done += _collect(ws, key, ds.iter_batches(batch_size=None, batch_format="pandas"),
                                     shard_rows, bar.update)
        finally:
            if started:
                ray.shutdown()
    if options.embedding_cache and done:
        export_embeddings(ws, options.embedding_cache, key)
    total = ws.embedded_count(key)
    return {"model_key": key, "embedded_now": done, "embedded_total": total, "reused_from_cache": reused}


def _collect(ws: Workspace, key: str, batches, shard_rows: int, progress) -> int:
    """Write result batches to the workspace, one shard per ``shard_rows`` prompts (the rest at the end)."""
    hashes: list[str] = []
    vectors: list[np.ndarray] = []
    n_buf = written = 0

    def flush(upto: int) -> int:
        nonlocal hashes, vectors, n_buf
        h = np.concatenate(hashes)
        v = np.concatenate(vectors)
        ws.add_embedding_shard(key, h[:upto].tolist(), v[:upto])
        hashes, vectors = [h[upto:]], [v[upto:]]
        n_buf -= upto
        return upto

    for batch in batches:
        if batch.empty:
            continue
        hashes.append(batch["prompt_hash"].to_numpy(dtype=object))
        vectors.append(np.stack(batch["vector"].to_numpy()).astype(np.float16, copy=False))
        n_buf += len(batch)
        progress(len(batch))
        while n_buf >= shard_rows:
            written += flush(shard_rows)
    if n_buf:
        written += flush(n_buf)
    return written
