"""The work of the stages against a workspace: the functions the stage classes of :mod:`analyzer.stages` call
(ingest, embed, index, cluster / assign, label rows, score, map), and :func:`run_all`, every stage in one run.

Each stage reads what the stages before it stored in the workspace (or handed on in memory) and stores its
own result only (:data:`analyzer.catalog.PIPELINE`), so stages can run separately (batch jobs) and a killed
run can be started again: ingest skips request ids it already has, embedding skips prompts that already have
a vector, and the later stages recompute from stored data.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import math
import os
import platform
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol, TypeVar

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from analyzer import __version__
from analyzer import assign as assign_mod
from analyzer import cluster as cluster_mod
from analyzer import embed as embed_mod
from analyzer import history as history_mod
from analyzer import index as index_mod
from analyzer import label as label_mod
from analyzer import signals as sig
from analyzer import watch as watch_mod
from analyzer.atomic import atomic_path
from analyzer.campaigns import ClusterInfo, EvidenceParams, ScoringConfig, find_campaigns
from analyzer.catalog import StageClasses
from analyzer.checkpoints import checkpoint
from analyzer.embed import DEFAULT_TIER, make_embedder, recorded_settings
from analyzer.executor import BatchTask, Executor, LocalExecutor, process_map
from analyzer.ingest import read_logs
from analyzer.mapparams import MapParams
from analyzer.text import analysis_text
from analyzer.workspace import Workspace, now_utc


@dataclass
class RunOptions:
    """Every option of a full run; stored with the run so that any result can be traced to how it was made."""

    model: str = "minilm"
    tier: str = DEFAULT_TIER
    max_seq_length: int = 128
    batch_size: int = 16
    embed_chunk: int = 4096
    ingest_workers: int = 0  # log files parsed at once (a process each; 1: in this process); 0: one per CPU
    # Worker processes for text work on large runs (the fast tier's embedding, the cluster stage's sentence scan, the
    # label stage's keywords and templates; TEXT_PARALLEL_MIN_TEXTS); 0: one per CPU this process may use, 1: all in
    # this process.
    text_workers: int = 0
    # Where the accurate tier's model and the kNN graph run: "cpu" (ONNX int8 and FAISS), or a torch GPU device
    # ("cuda", "cuda:1": the model in fp16 and the exact graph by matrix products, analyzer.exact_knn).
    device: str = "cpu"
    cluster: cluster_mod.ClusterParams = field(default_factory=cluster_mod.ClusterParams)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    history: history_mod.HistoryConfig = field(default_factory=history_mod.HistoryConfig)
    label_sample: int = 100
    keyword_sample: int = 50
    map_sample: int = 20_000
    make_map: bool = True
    embedding_cache: str | None = None
    seed: int = 0
    progress: bool = True
    recluster: bool = False  # re-cluster everything even when new prompts could be assigned to the clustering
    incremental: assign_mod.IncrementalParams = field(default_factory=assign_mod.IncrementalParams)
    # The other sections of the configuration (analyzer.config.AnalyzerConfig groups them all).
    signals: sig.SignalParams = field(default_factory=sig.SignalParams)
    evidence: EvidenceParams = field(default_factory=EvidenceParams)
    watch: watch_mod.WatchConfig = field(default_factory=watch_mod.WatchConfig)
    map: MapParams = field(default_factory=MapParams)
    stages: StageClasses = field(default_factory=StageClasses)


#: Packages whose versions each run records: key in the record, then the distribution names it may have.
RECORDED_PACKAGES = (
    ("duckdb", ("duckdb",)), ("faiss", ("faiss-cpu", "faiss-gpu", "faiss")),
    ("sentence_transformers", ("sentence-transformers",)), ("onnxruntime", ("onnxruntime", "onnxruntime-gpu")),
    ("model2vec", ("model2vec",)), ("torch", ("torch",)), ("numpy", ("numpy",)), ("pandas", ("pandas",)),
)


def versions() -> dict[str, str]:
    """Versions of Python, the analyzer and the packages that shape its results, for the ``runs`` record.

    Read from the installed distributions' metadata, without importing them: importing torch and
    sentence-transformers only to read their versions cost 3-4 s of every run with the workspace locked,
    and the fast tier does not need them at all.
    """
    from importlib.metadata import PackageNotFoundError, version

    found = {"analyzer": __version__, "python": platform.python_version()}
    for key, dists in RECORDED_PACKAGES:
        found[key] = "not installed"
        for dist in dists:
            try:
                found[key] = version(dist)
                break
            except PackageNotFoundError:
                continue
    return found


@functools.lru_cache(maxsize=4)
def _embedder(model: str, max_seq_length: int, batch_size: int, tier: str, device: str = "cpu"):
    return make_embedder(model, max_seq_length, batch_size, tier=tier, device=device)


def embedder_for(options: RunOptions):
    """The embedder for ``options`` (loaded once per process and reused by every stage)."""
    return _embedder(options.model, options.max_seq_length, options.batch_size, options.tier, options.device)


def workspace_tier(ws: Workspace) -> str | None:
    """The embedding tier of the workspace's latest run that recorded one (``None`` for a new workspace).

    Later stages and re-runs use it when no tier is given, so that a workspace keeps one vector space.
    """
    found = recorded_settings(ws.last_run_options())
    return found.tier if found else None


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


#: Resident memory (MiB) from which :func:`return_free_memory` does its work: a full garbage collection costs
#: about 0.2 s in a process holding the analyzer's libraries, too much for a small daily run's seven stages.
RETURN_MEMORY_MIN_MB = 1024


def resident_mb() -> float:
    """This process's resident memory now, in MiB (Linux; elsewhere its peak so far)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def children_resident_mb() -> float:
    """Resident memory of this process's child processes now (its worker processes: ingest readers, text
    workers), in MiB; 0 where ``/proc`` does not tell.

    A child still running this process's program (its command line is this process's) is left out: a worker
    is started by a fork (or vfork) and an exec of a new interpreter, and until the exec the child's pages are
    this process's own, shared, which its resident size would count a second time (a 1M run's cluster stage
    was seen at 4.5 and 5.4 GiB where it holds 3.1-3.2: a sample that fell between a scan worker's fork and
    its exec)."""
    return ChildrenResident(relist_s=0.0)()


class ChildrenResident:
    """:func:`children_resident_mb` for a meter that asks several times a second: the children are listed anew
    (one file per thread of this process, dozens with the numerical libraries' pools) at most every ``relist_s``
    seconds, and a child seen running a program of its own is not asked again until the next listing; between
    listings only the known children's resident sizes are read. A worker started since the last listing is
    counted from the next one."""

    def __init__(self, relist_s: float = 1.0) -> None:
        self.relist_s = relist_s
        self._pids: list[str] = []
        self._own_program: set[str] = set()  # children seen running a program of their own
        self._listed_at = -math.inf
        self._mine = _cmdline("self")

    def __call__(self) -> float:
        now = time.monotonic()
        if now - self._listed_at >= self.relist_s:
            self._pids, self._listed_at = _child_pids(), now
            self._own_program.clear()  # (a listed id may be a new child's: asked again)
        pages = 0
        for pid in self._pids:
            try:
                if pid not in self._own_program:
                    if self._mine is not None and _cmdline(pid) == self._mine:
                        continue  # not yet a program of its own: this process's pages
                    self._own_program.add(pid)
                with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
                    pages += int(fh.read().split()[1])
            except (OSError, ValueError, IndexError):
                continue
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _child_pids() -> list[str]:
    """The process ids of this process's children (each thread's, from ``/proc``); none where it does not tell."""
    pids: set[str] = set()
    try:
        threads = os.listdir("/proc/self/task")
    except OSError:
        return []
    for tid in threads:
        try:
            with open(f"/proc/self/task/{tid}/children", encoding="ascii") as fh:
                pids.update(fh.read().split())
        except OSError:
            continue
    return sorted(pids)


def _cmdline(pid: str) -> bytes | None:
    """The command line of process ``pid`` (``/proc``), ``None`` where it cannot be read."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return None


def return_free_memory() -> None:
    """Collect garbage and hand the C heap's free pages back to the system (glibc's ``malloc_trim``; nothing
    elsewhere) and Arrow's pool's, once the process holds :data:`RETURN_MEMORY_MIN_MB` or more. A stage that
    made and dropped millions of small objects (every prompt's text and sentences) leaves its freed memory in
    the process; the next stages' peaks would sit on top of it. At the incident's 1M requests this returned
    several hundred MiB after the cluster and label stages, in about 0.2 s."""
    if resident_mb() < RETURN_MEMORY_MIN_MB:
        return
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
    import pyarrow as pa

    pa.default_memory_pool().release_unused()  # Arrow's allocator keeps what the frames it backed let go


def _glibc():
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _glibc() if sys.platform.startswith("linux") else None


def _bar(total: int | None, desc: str, unit: str, enabled: bool):
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True, leave=False)


# --- ingest ---------------------------------------------------------------------------------------------------
def ingest(ws: Workspace, paths: Sequence[str], run_id: int, column_map: dict[str, str] | None = None,
           strict: bool = False, progress: bool = True, workers: int = 1, executor: Executor | None = None
           ) -> dict[str, int]:
    """Read logs into the workspace; returns ``{"read", "accepted", "rejected", "duplicates"}`` for this run.

    ``accepted + rejected + duplicates == read``. Rejected rows go to the ``rejected`` table and to
    ``quarantine/rejected-<run_id>.jsonl`` (one JSON object per bad row read in this run: source, line, field,
    reason, raw; written under a temporary name and renamed when the ingest finishes). Each batch of requests,
    rejected rows and counters is committed in one transaction, so a killed run can simply be run again.
    ``workers``: files parsed at once by reader processes while this one stores the batches
    (:func:`analyzer.ingest.read_logs`; 1: parsed here; 0: one per usable CPU when the files hold
    :data:`INGEST_PARALLEL_MIN_BYTES` or more); the batches are stored in the same order whatever the number.
    ``executor``: a remote one (Ray) parses the files instead, one task per file, in the same order.
    """
    if not workers:  # one per CPU, for inputs large enough to pay for starting the readers (about a second each)
        big = sum(os.path.getsize(p) for p in paths if os.path.isfile(p)) >= INGEST_PARALLEL_MIN_BYTES
        workers = usable_cpus() if big else 1
    totals = {"read": 0, "accepted": 0, "rejected": 0, "duplicates": 0}
    qpath = quarantine_path(ws, run_id)
    n_bad = 0
    with atomic_path(qpath) as tmp:
        with open(tmp, "w", encoding="utf-8") as qfh, _bar(None, "ingest", " rows", progress) as bar:
            batches = read_logs(paths, column_map=column_map, strict=strict, workers=workers, executor=executor)
            for batch in read_ahead(batches):
                for r in batch.rejected:
                    qfh.write(json.dumps({"source": r.source, "line": r.line, "field": r.field, "reason": r.reason,
                                          "raw": r.raw}, ensure_ascii=True) + "\n")  # exact values, ASCII bytes
                n_bad += len(batch.rejected)
                counts = ws.add_ingest_batch(batch.requests, batch.rejected, batch.n_read, batch.source, run_id)
                for key, val in counts.items():
                    totals[key] += val
                bar.update(batch.n_read)
        if not n_bad:  # no quarantine file for a clean run
            os.remove(tmp)
    if n_bad:
        checkpoint("ingest.quarantine_written")
    return totals


T = TypeVar("T")


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """``items``, the next one read by a helper thread while the caller works on the one it was given.

    The ingest parses a batch (Python: the GIL) while the previous one is stored (DuckDB: mostly outside it), so
    the two overlap on two cores. The items come in the same order, an error of the reader is raised where its
    item would have come, and the reader is at most one item ahead (its memory: one batch).
    """
    done = object()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as pool:
        pending = pool.submit(next, items, done)
        while (item := pending.result()) is not done:
            pending = pool.submit(next, items, done)
            yield item


#: Input size (bytes on disk) from which several files are parsed at once by default (``ingest_workers=0``).
INGEST_PARALLEL_MIN_BYTES = 32 * 1024 * 1024


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the platform tells it, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on every platform
        return max(1, os.cpu_count() or 1)


def quarantine_path(ws: Workspace, run_id: int) -> str:
    """``quarantine/rejected-<run_id>.jsonl`` in the workspace (exists only if the run rejected rows)."""
    return os.path.join(ws.path, "quarantine", f"rejected-{run_id}.jsonl")


# --- embed ------------------------------------------------------------------------------------------------------
def embed(ws: Workspace, options: RunOptions, executor: Executor | None = None) -> dict[str, int | str]:
    """Embed every unique prompt that has no vector yet for the chosen model; returns counts.

    The one embed path, whatever runs the model: ``executor`` turns batches of pending prompts into vectors
    (default :class:`LocalExecutor`, the embedder in this process; :class:`analyzer.distributed.RayExecutor`
    on a Ray cluster), everything else happens here. Pending prompts are read in hash order in pages of
    ``options.embed_chunk`` and the vectors stored in shards of that many as they come back, so memory stays at
    a few shards and a killed run keeps every finished shard (the next run embeds only what is still pending).
    """
    embedder = embedder_for(options)
    key = embedder.key
    ws.verify_embeddings(key)
    reused = import_embeddings(ws, options.embedding_cache, key) if options.embedding_cache else 0
    n = ws.pending_count(key)
    if executor is None:
        workers = embed_workers(options, embedder, n)
        if workers > 1:
            embedder.prepare()  # the static model distilled (once, into the cache) here, not by every worker at once
        executor = LocalExecutor(workers=workers)
    done = 0
    if n:
        chunk = max(1, int(options.embed_chunk))
        task = BatchTask(embed_mod.EmbedBatches, {"embedder_kwargs": embedder_kwargs(options, embedder),
                                                  "expected_key": key},
                         local=embed_mod.EmbedBatches.wrapping(embedder),
                         worker_env={"TOKENIZERS_PARALLELISM": "false"})  # one process a core: one thread each
        desc = "embed" if executor.name == "local" else f"embed ({executor.name})"
        with executor, _bar(n, desc, " prompts", options.progress) as bar:
            vectors = executor.map_batches(task, ws.iter_pending_prompts(key, chunk))
            done = write_shards(ws, key, vectors, chunk, bar.update)
    if options.embedding_cache and done:
        export_embeddings(ws, options.embedding_cache, key)
    total = ws.embedded_count(key)
    return {"model_key": key, "embedded_now": done, "embedded_total": total, "reused_from_cache": reused}


def embed_workers(options: RunOptions, embedder: embed_mod.Embedder, n_prompts: int) -> int:
    """Processes that embed ``n_prompts`` prompts on this machine: for the fast tier, as many as the text work's
    (:func:`text_workers`), each with a one-thread tokenizer; otherwise 1 (this process: onnxruntime and torch
    already use every core). In one process the fast tier keeps about 1.5 cores busy (its tokenizer's threads wait
    while the batch is pooled in Python); in two, both (262,144 of the 1M scale log's prompts: 14.7 / 15.2 s in one
    process, 11.9 / 12.0 s in two)."""
    return text_workers(options, n_prompts) if getattr(embedder, "backend", None) == "static" else 1


def embedder_kwargs(options: RunOptions, embedder: embed_mod.Embedder | None = None) -> dict[str, object]:
    """Arguments of :func:`make_embedder` for ``options``, the same in this process and in every worker.

    With ``embedder`` (the one this process built), its backend is pinned, so that a worker without onnxruntime
    fails (:class:`analyzer.embed.EmbedBatches` checks the key) instead of silently falling back to torch.
    """
    kw: dict[str, object] = {"model": options.model, "max_seq_length": options.max_seq_length,
                             "batch_size": options.batch_size, "tier": options.tier}
    if options.device != "cpu":
        kw["device"] = options.device
    backend = getattr(embedder, "backend", None)
    if backend in ("onnx", "torch"):
        kw["backend"] = backend
    return kw


def write_shards(ws: Workspace, key: str, batches: Iterable[pd.DataFrame], shard_rows: int,
                 progress: Callable[[int], None]) -> int:
    """Store result batches (``prompt_hash``, ``vector``) as they come, one shard per ``shard_rows`` prompts
    (the rest at the end), whatever the batches' sizes; returns the number of prompts stored."""
    hashes: list[np.ndarray] = []
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


def import_embeddings(ws: Workspace, cache_dir: str, key: str, chunk: int = 65536) -> int:
    """Copy vectors of this workspace's pending prompts from an embedding cache (another workspace folder).

    Lets several workspaces (benchmark seeds, daily workspaces) embed each unique prompt once, ever.
    Returns the number of vectors copied.
    """
    if not os.path.exists(os.path.join(cache_dir, "analyzer.duckdb")):
        return 0
    cache = Workspace(cache_dir, read_only=True)
    try:
        hashes, vectors = cache.load_embeddings(key)
    finally:
        cache.close()
    if len(hashes) == 0:
        return 0
    pending = set(ws.pending_prompts(key)["prompt_hash"])
    take = np.flatnonzero([h in pending for h in hashes])
    for start in range(0, len(take), chunk):
        idx = take[start : start + chunk]
        ws.add_embedding_shard(key, hashes[idx].tolist(), vectors[idx])
    return int(len(take))


def export_embeddings(ws: Workspace, cache_dir: str, key: str) -> int:
    """Add this workspace's vectors that the cache lacks to the cache; returns how many were added."""
    hashes, vectors = ws.load_embeddings(key)
    cache = Workspace(cache_dir, create=True)
    try:
        with cache.writing():
            known = set(cache.embedded_hashes(key))
            take = np.flatnonzero([h not in known for h in hashes])
            if len(take):
                cache.add_embedding_shard(key, hashes[take].tolist(), vectors[take])
    finally:
        cache.close()
    return int(len(take))


# --- index + cluster + label ------------------------------------------------------------------------------------
def build_index(ws: Workspace, options: RunOptions, stats: dict | None = None):
    """The FAISS index for the stored vectors, the saved one extended with the new vectors when it can serve
    (:func:`analyzer.index.update_index`; trained afresh with ``options.recluster``), saved again; returns
    ``(hashes, vectors, index)``, the index searched by position in ``hashes``, ``vectors`` a
    :class:`analyzer.workspace.StoredVectors` (rows read when indexed; ``np.asarray`` reads them all). ``stats``
    gets how it was made."""
    key = embedder_for(options).key
    hashes, vectors, ids = ws.stored_vectors(key)  # read when asked for: an extended index reads the new ones only
    if len(hashes) == 0:
        raise RuntimeError("no embedded prompts in the workspace: run 'analyzer ingest' and 'analyzer embed' first")
    path = ws.index_path(key)
    index, rows, how, probes = index_mod.update_index(path, vectors, ids, index_mod.hash_tags(hashes),
                                                      seed=options.seed,
                                                      retrain_growth=options.incremental.index_retrain_growth,
                                                      rebuild=options.recluster)
    index_mod.save_workspace_index(path, index, rows)
    checkpoint("index.written")
    if stats is not None:
        stats.update(index=how, trained_on=rows.trained_on)
    return hashes, vectors, index_mod.PositionIndex(index, ids, probes)


def intent_vectors(options: RunOptions) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """Vectors of the capability intents and of the ordinary workloads they are contrasted with."""
    names = list(sig.TRAINING_INTENTS)
    ordinary = list(sig.ORDINARY_INTENTS)
    emb = embedder_for(options)
    vecs = emb.encode([sig.TRAINING_INTENTS[n] for n in names] + [sig.ORDINARY_INTENTS[n] for n in ordinary])
    return names, vecs[: len(names)], ordinary, vecs[len(names):]


def prompt_intents(vectors: np.ndarray, options: RunOptions, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt: the intent it reads as, and its similarity to the best capability intent (0 when an
    ordinary workload is closer: such a prompt has no training value)."""
    names, cvecs, ordinary, ovecs = intent_vectors(options)
    csims = embed_mod.calibrate_similarity(key, vectors @ cvecs.T)
    osims = embed_mod.calibrate_similarity(key, vectors @ ovecs.T)
    is_cap, cap, ordi = sig.contrastive_intent(csims, osims)
    rows = np.arange(len(vectors))
    intents = np.where(is_cap, np.asarray(names, dtype=object)[cap], np.asarray(ordinary, dtype=object)[ordi])
    sim = np.where(is_cap, csims[rows, cap], 0.0).astype(np.float64)
    return intents, sim


#: A topic clusterer: ``(neighbours, similarities, params) -> (labels, strengths)`` over a kNN graph (the
#: default: :func:`analyzer.cluster.cluster_knn_graph`, HDBSCAN). The cluster stage's ``topics`` method.
TopicClusterer = Callable[[np.ndarray, np.ndarray, cluster_mod.ClusterParams], tuple[np.ndarray, np.ndarray]]


@dataclass
class LabelJob:
    """One kind of unit for the label stage to label (:func:`label_clusters`'s arguments): ``labels`` of the
    prompts (or system prompts) ``hashes``, with what labelling reads about them. ``scaffold_of``: each
    prompt's scaffold, for the templates of scaffold families."""

    hashes: np.ndarray
    labels: np.ndarray
    vectors: np.ndarray
    req_counts: np.ndarray
    texts: pd.Series
    intents: np.ndarray
    intent_sim: np.ndarray
    kind: str
    scaffold_of: list[str | None] | None = None


@dataclass
class ClusterUpdate:
    """A daily run's change to the stored clusters (:func:`update_cluster_rows`'s arguments): every clustered
    prompt's topic and unit, requests and intent similarity, which are new, and the clusters touched."""

    topic: np.ndarray
    unit: np.ndarray
    req_counts: np.ndarray
    intent_sim: np.ndarray
    is_new: np.ndarray
    touched: np.ndarray


@dataclass
class LabelWork:
    """What the cluster stage hands the label stage (the in-memory dataset ``label_work``): the units to label,
    in the order their rows are written, the system families (a full clustering labels them last), and for a
    daily run the update of the stored cluster rows (``None`` for a full clustering)."""

    jobs: list[LabelJob]
    system: LabelJob | None = None
    update: ClusterUpdate | None = None


@dataclass
class Grouping:
    """The cluster stage's result: its stats, the ``prompt_clusters`` and ``system_clusters`` rows (all of them
    for a full clustering, ``upsert`` the changed ones for a daily run; ``None`` when a daily run found drift
    and wrote nothing) and the label stage's work."""

    stats: dict
    prompt_clusters: pd.DataFrame | None = None
    system_clusters: pd.DataFrame | None = None
    work: LabelWork | None = None
    upsert: bool = False


def cluster(ws: Workspace, options: RunOptions, index_result=None,
            topics: TopicClusterer = cluster_mod.cluster_knn_graph, executor: Executor | None = None) -> Grouping:
    """The full cluster stage: kNN graph, topic clusters (``topics``: HDBSCAN), noise attribution, task groups,
    template / scaffold / system families and intents. Reads only; returns the rows of ``prompt_clusters`` and
    ``system_clusters`` and the label stage's work (:class:`Grouping`). ``executor`` builds the kNN graph
    (:meth:`analyzer.executor.Executor.knn_graph`; default here, on Ray a sharded index)."""
    hashes, vectors, index = index_result or build_index(ws, options)
    vectors = np.asarray(vectors)  # a full clustering reads every vector
    n = len(hashes)
    executor = executor or LocalExecutor(device=options.device)
    desc = "knn graph" if executor.name == "local" else f"knn graph ({executor.name})"
    with _bar(n, desc, " prompts", options.progress) as bar:
        nbrs, sims = executor.knn_graph(index, vectors, options.cluster.k, progress=bar.update)
    # The graph's blocks were searched on threads of their own, whose heaps keep what they freed (at 1M requests
    # 2.0 GiB resident after the graph, 1.6 once returned): the stage's peak comes later, on top of it.
    return_free_memory()
    if isinstance(index, index_mod.PositionIndex):
        index.probes = None  # each row's nearest lists, found when the index was built: the graph was their one use
    key = embedder_for(options).key
    # Every text-reading step below (families, scaffolds, labels, language) reads a long prompt's head and
    # tail only: bounded work per prompt, and padding cannot push the instruction out of view.
    stored = ws.prompt_text_objects().reindex(hashes).array
    hash_texts = [analysis_text(t) if isinstance(t, str) else "" for t in stored]  # a short text is kept as is
    del stored
    # The prompts' sentences are scanned for scaffolds in worker processes (the stage's largest text work) while
    # this process runs HDBSCAN on the graph and finds template families, which need none of them: both cores stay
    # busy where each step alone would leave one idle (1M: 77 -> 72 s). Not during the graph: its threads already
    # use both cores, and sharing them with the scan took it from 28 to 57 s.
    with ThreadPoolExecutor(1, thread_name_prefix="scaffold-scan") as background:
        scanning = background.submit(cluster_mod.scaffolds, hash_texts, min_prompts=options.cluster.scaffold_min_prompts,
                                     workers=text_workers(options, n))
        labels, strengths = topics(nbrs, sims, options.cluster)
        counts = ws.request_counts()
        req_counts = counts.set_index("prompt_hash")["n"].reindex(hashes).fillna(0).to_numpy()
        labels = cluster_mod.add_repeat_clusters(labels, req_counts, options.cluster.min_cluster_size)
        strengths = np.where((strengths == 0) & (labels >= 0), 1.0, strengths)

        calibrated = embed_mod.calibrate_similarity(key, sims)
        attached = cluster_mod.attach_noise(labels, nbrs, calibrated, options.cluster.attach_similarity)
        tasks = cluster_mod.task_groups(nbrs, calibrated, options.cluster.task_similarity)
        del nbrs, sims, calibrated
        texts = pd.Series(hash_texts, index=pd.Index(hashes, dtype=object), dtype=object)
        families = cluster_mod.template_families(hash_texts, options.cluster.edge_words, options.cluster.min_family_size)
        offset = int(labels.max()) + 1 if n else 0
        family_ids = np.where(families >= 0, families + offset, -1)
        scanned = scanning.result()
    scaffold_of, scaffold_fams = scaffold_families(hash_texts, np.ones(n, dtype=bool), options, scanned)
    return_free_memory()  # the sentences of every prompt, just dropped: the label work's peak sits above this
    scaffold_offset = (int(family_ids.max()) + 1) if (family_ids >= 0).any() else offset
    scaffold_ids = np.where(scaffold_fams >= 0, scaffold_fams + scaffold_offset, -1)
    # The unit a prompt's requests count towards in campaign signals: its scaffold family (recurring sentences,
    # in any order: survives paraphrase by fragments), else its literal template family (opening or closing
    # words), else its (possibly attributed) topic cluster.
    assigned = np.where(scaffold_ids >= 0, scaffold_ids, np.where(family_ids >= 0, family_ids, attached))

    intents, intent_sim = prompt_intents(vectors, options, key)
    # The embedding models read English only: the intent of a prompt written mostly in another script, or
    # wrapped in another language, is not judged (NaN), so that detection does not depend on it; and where the
    # wrapper is in a Latin-script language (whose word pieces outweigh the task in the vector), a task is the
    # prompt's payload, not its vector's near-duplicates.
    wrappers = cluster_mod.scaffold_sets(scaffold_of)
    foreign = foreign_wrapped(wrappers, options)
    unread = np.fromiter((sig.unreadable(t, options.signals) for t in hash_texts), dtype=bool, count=len(hash_texts))
    unread |= foreign
    intent_sim = np.where(unread, np.nan, intent_sim)
    if foreign.any():
        tasks = cluster_mod.tasks_apart_from_wrappers(tasks, hash_texts, wrappers, foreign)
    del wrappers

    jobs = [LabelJob(hashes, labels, vectors, req_counts, texts, intents, intent_sim, "topic"),
            LabelJob(hashes, family_ids, vectors, req_counts, texts, intents, intent_sim, "template"),
            LabelJob(hashes, scaffold_ids, vectors, req_counts, texts, intents, intent_sim, "scaffold", scaffold_of)]
    pc = pd.DataFrame({
        "prompt_hash": hashes, "cluster_id": labels.astype(np.int32), "probability": strengths,
        "assigned_cluster": assigned.astype(np.int32), "intent": intents,
        "intent_similarity": intent_sim.astype(np.float64), "task_id": tasks.astype(np.int64),
    })
    first_system = int(max(labels.max(initial=-1), family_ids.max(initial=-1), scaffold_ids.max(initial=-1))) + 1
    system_map, system_job = system_families(ws, options, key, first_id=first_system)
    stats = {"path": "full", "model_key": key, "knn_graph": executor.name, "cluster_params": asdict(options.cluster),
             "signal_params": cluster_signal_params(options.signals), "stages": grouping_classes(options.stages),
             "unassigned_request_share": unassigned_share(ws, hashes, assigned, system_map),
             "prompts": n, "clusters": offset, "noise": int((labels < 0).sum()),
             "noise_attributed": int(((labels < 0) & (attached >= 0)).sum()),
             "template_families": int(families.max() + 1) if n else 0,
             "prompts_in_families": int((families >= 0).sum()),
             "scaffold_families": int(scaffold_fams.max() + 1) if n else 0,
             "prompts_in_scaffold_families": int((scaffold_fams >= 0).sum()),
             "distinct_tasks": int(len(np.unique(tasks))),
             "system_families": int(len(np.unique(system_job.labels[system_job.labels >= 0]))) if system_job else 0}
    return Grouping(stats, pc, system_map, LabelWork(jobs, system_job))


def unassigned_share(ws: Workspace, hashes: np.ndarray, units: np.ndarray, system_map: pd.DataFrame) -> float | None:
    """Share of all requests whose prompt has no unit (``units``, in ``hashes`` order: no cluster, family or
    attribution) and whose system prompt is in no system family (``system_map``); ``None`` without requests.
    Counted in the database (:meth:`Workspace.unassigned_request_share`)."""
    fams = system_map[["system_hash", "cluster_id"]] if len(system_map) else pd.DataFrame(
        {"system_hash": pd.Series(dtype=object), "cluster_id": pd.Series(dtype=np.int64)})
    return ws.unassigned_request_share(pd.DataFrame({"prompt_hash": hashes, "unit": units}), fams)


#: The signal parameters the cluster stage reads (training value of prompts and clusters, scripts not judged,
#: system families): a change to one calls for a full re-cluster, as a change of the cluster parameters does.
CLUSTER_SIGNAL_FIELDS = ("training_value_low", "training_value_high", "unreadable_share", "unreadable_letters",
                         "unreadable_head_chars", "unreadable_tail_chars", "system_min_value")


def cluster_signal_params(signals: sig.SignalParams) -> dict:
    """The values of :data:`CLUSTER_SIGNAL_FIELDS`, as recorded with a full clustering."""
    return {f: getattr(signals, f) for f in CLUSTER_SIGNAL_FIELDS}


def system_families(ws: Workspace, options: RunOptions, key: str, first_id: int
                    ) -> tuple[pd.DataFrame, LabelJob | None]:
    """System prompts that carry a capability instruction, grouped into families.

    Returns ``(system_clusters rows: system_hash, cluster_id (-1 = none), intent, intent_similarity;
    the label stage's job for the families, None without any capability system prompt)``. Families: the
    distinct system prompts' vectors clustered like prompts (kNN graph, HDBSCAN), and any other one sent in
    ``min_family_size`` requests on its own. A request whose prompt is in no template family counts towards
    its system prompt's family, and its training value is the larger of its prompt's and its system prompt's.
    """
    empty = pd.DataFrame(columns=["system_hash", "cluster_id", "intent", "intent_similarity"])
    sysp = ws.system_prompt_counts()
    if sysp.empty:
        return empty, None
    sysp, vecs, intents, sim = capability_system_prompts(sysp, options, key)
    if sysp.empty:
        return empty, None
    p = options.cluster
    labels = np.full(len(sysp), -1, dtype=np.int64)
    if len(sysp) >= max(p.min_family_size, 2):
        index = index_mod.build_index(vecs, seed=options.seed)
        nbrs, sims = index_mod.knn_graph(index, vecs, k=min(p.k, len(sysp) - 1))
        labels, _ = cluster_mod.cluster_knn_graph(nbrs, sims, p)
    counts = sysp["n"].to_numpy()
    labels = cluster_mod.add_repeat_clusters(labels, counts, p.min_family_size)
    ids = np.where(labels >= 0, labels + first_id, -1)
    texts = sysp.set_index("system_hash")["text"].map(analysis_text)
    job = LabelJob(sysp["system_hash"].to_numpy(), ids, vecs, counts, texts, intents, sim, "system")
    out = pd.DataFrame({"system_hash": sysp["system_hash"], "cluster_id": ids.astype(np.int32), "intent": intents,
                        "intent_similarity": sim.astype(np.float64)})
    return out, job


#: Copies of one distinct scaffold, per kNN neighbour (``k``), that take part in the scaffold kNN graph. Many
#: prompts share one scaffold (a fixed wrapper: thousands). A scaffold with at least ``k + 1`` copies has all
#: its ``k`` neighbours among its own copies, and any other prompt sees the same similarities in its neighbour
#: list whether the scaffold has ``k`` copies or thousands; with at least ``min_cluster_size`` copies kept, every
#: split of the density tree that holds such a scaffold stays a cluster either way. So the graph with copies
#: capped at ``2 k`` yields the same families as the graph of every prompt (up to how HDBSCAN orders equal
#: distances: on the adversarial presets, seed 0, one prompt in about 9,400 changed family in 3 of 9, with no
#: change of score beyond 0.002), at a fraction of the size: at 1M requests 157k prompts with a scaffold, 50k
#: distinct scaffolds, 109k points in the graph, where the IVF lists holding a fixed wrapper's 18k copies made
#: the search quadratic.
SCAFFOLD_COPIES_PER_K = 2


def scaffold_families(texts: list[str], eligible: np.ndarray, options: RunOptions,
                      scanned: list[str | None] | None = None) -> tuple[list[str | None], np.ndarray]:
    """Families of prompts built on the same paraphrased wrapper: ``(scaffold per prompt, family per prompt)``.

    The scaffold of a prompt is its recurring sentences (:func:`analyzer.cluster.scaffolds`; ``scanned``: those
    of ``texts`` with ``options``' settings, where already found); scaffolds are embedded and clustered like
    prompts (kNN graph, HDBSCAN), so fragments composed in another order, or swapped for a synonymous fragment,
    land in one family. Only ``eligible`` prompts (not already in a literal template family) are considered.
    Family ids start at 0; ``-1`` = none.
    """
    p = options.cluster
    n = len(texts)
    fams = np.full(n, -1, dtype=np.int64)
    scaf = scanned if scanned is not None else cluster_mod.scaffolds(texts, min_prompts=p.scaffold_min_prompts,
                                                                      workers=text_workers(options, n))
    scaf = [s if ok else None for s, ok in zip(scaf, eligible, strict=True)]
    idx = np.array([i for i, s in enumerate(scaf) if s is not None], dtype=np.int64)
    if len(idx) < max(p.min_family_size, 2):
        return scaf, fams
    k = min(p.k, len(idx) - 1)
    distinct, inverse = np.unique(np.array([scaf[i] for i in idx], dtype=object), return_inverse=True)
    # Each prompt is a point (a wrapper's family counts its prompts), but a distinct scaffold's copies beyond
    # the first few only repeat the same neighbours: they take part in the graph up to a cap, and the others
    # take the label of their scaffold's first copy (see SCAFFOLD_COPIES_PER_K).
    cap = max(SCAFFOLD_COPIES_PER_K * k, k + 1, p.min_cluster_size, p.min_samples + 1)
    kept = cluster_mod.first_copies(inverse, cap)
    vecs = embedder_for(options).encode(list(distinct))[inverse[kept]]
    index = index_mod.build_index(vecs, seed=options.seed)
    # A kept scaffold's copies are one vector: searched once (at 1M 50k searches instead of 109k, 24.4 -> 11.5
    # CPU s; one row of the graph had a float tie ordered the other way, which moved 7 prompts' units).
    nbrs, sims = index_mod.knn_graph(index, vecs, k=k, copies=inverse[kept])
    del index
    labels, _ = cluster_mod.cluster_knn_graph(nbrs, sims, replace(p, selection=p.scaffold_selection))
    _, first = np.unique(inverse[kept], return_index=True)  # every distinct scaffold has a kept copy
    per_prompt = labels[first][inverse]
    per_prompt[kept] = labels
    # Numbered by decreasing size over all prompts, as if every copy had been clustered.
    fams[idx] = cluster_mod.relabel_by_size(per_prompt)
    return scaf, fams


def foreign_wrapped(wrappers: Sequence[Collection[str] | None], options: RunOptions) -> np.ndarray:
    """Per prompt, whether its wrapper (``wrappers[i]``: its recurring sentences, or None) is written in a
    Latin-script language the embedding models do not read (:func:`analyzer.signals.foreign_wrapper`, with the
    words the model holds whole: :func:`analyzer.embed.model_words`), judged once per distinct wrapper."""
    distinct: dict[int, Collection[str]] = {}  # by object: a full run's prompts share one set per distinct scaffold
    for wrapper in wrappers:
        if wrapper:
            distinct.setdefault(id(wrapper), wrapper)
    if not distinct:
        return np.zeros(len(wrappers), dtype=bool)
    known = embed_mod.model_words(options.model)
    found = dict(zip(distinct, sig.foreign_wrappers((sorted(w) for w in distinct.values()), options.signals, known),
                     strict=True))
    return np.fromiter((bool(w) and found[id(w)] for w in wrappers), dtype=bool, count=len(wrappers))


def scaffold_templates(rows: pd.DataFrame, family_ids: np.ndarray, scaffold_of: list[str | None]) -> pd.DataFrame:
    """Template fields of scaffold families: their most frequent recurring sentences, in varying order.

    Coverage is 1 (every member has a scaffold), the fixed words are the median scaffold length and the
    task text is the one slot: a literal alignment would find little in wrappers whose order varies.
    """
    if rows.empty:
        return rows
    rows = rows.copy()
    members = cluster_mod.members_by_label(family_ids)
    n_words: dict[str, int] = {}  # words per distinct scaffold
    signals, templates = [], []
    for cid, stored in zip(rows["cluster_id"], rows["signals"], strict=True):
        # A family's prompts share few distinct scaffolds: count those (in order of first appearance, so
        # that sentences as frequent as each other keep the order in which the members show them).
        scaf_counts = Counter(scaffold_of[j] or "" for j in members[int(cid)])
        parts: Counter[str] = Counter()
        for scaf, m in scaf_counts.items():
            for sent in scaf.split(cluster_mod.SCAFFOLD_SEP):
                if sent:
                    parts[sent] += m
        top = [sent for sent, _ in sorted(parts.items(), key=lambda kv: -kv[1])[:4]]  # stable: ties as first met
        for scaf in scaf_counts:
            if scaf not in n_words:
                n_words[scaf] = len(cluster_mod.words(scaf))
        median_words = np.median(np.repeat([n_words[x] for x in scaf_counts], list(scaf_counts.values())))
        signals.append({**stored, "template_coverage": 1.0, "n_fixed_words": int(median_words), "n_slots": 1})
        templates.append(" … ".join(top) + " … {task} (sentences in varying order)")
    rows["signals"] = signals
    rows["template"] = templates
    return rows


class LabelParts(Protocol):
    """The swappable parts of labelling (the label stage's class implements them, :class:`analyzer.stages.Label`):
    keywords per cluster from sampled member texts, and the recovered template of one cluster's texts."""

    def keywords(self, docs: list[str], labels: list[int], weights: list[float]) -> dict[int, list[str]]: ...

    def template(self, texts: list[str], seed: int) -> label_mod.Template: ...


class DefaultLabelParts:
    """c-TF-IDF keywords (:func:`analyzer.label.ctfidf_keywords`) and aligned templates
    (:func:`analyzer.label.extract_template`)."""

    def keywords(self, docs: list[str], labels: list[int], weights: list[float]) -> dict[int, list[str]]:
        return label_mod.ctfidf_keywords(docs, labels, weights=weights)

    def template(self, texts: list[str], seed: int) -> label_mod.Template:
        """The recovered template of one cluster's sampled texts, variable slots marked
        (:func:`analyzer.label.extract_template`)."""
        return label_mod.extract_template(texts, seed=seed)


@dataclass
class LabelPlan:
    """What labelling one :class:`LabelJob` reads (:func:`label_plan`): its units in order, each unit's members
    and sampled members (positions), every prompt's text by position, and the keyword documents (each unit's
    first ``keyword_sample`` sampled texts, their unit and request count)."""

    cluster_ids: list[int]
    members: dict[int, np.ndarray]
    sample: dict[int, np.ndarray]
    text_at: np.ndarray
    docs: list[str]
    doc_labels: list[int]
    doc_weights: list[float]

    def sampled_texts(self) -> list[list[str]]:
        """Each unit's sampled texts, in unit order (what its template is recovered from)."""
        return [[self.text_at[i] for i in self.sample[c]] for c in self.cluster_ids]


def label_plan(hashes, labels, req_counts, texts: pd.Series, options: RunOptions) -> LabelPlan:
    """The :class:`LabelPlan` of units ``labels`` over ``hashes`` (``options.label_sample`` members sampled per
    unit with ``options.seed``)."""
    rng = np.random.default_rng(options.seed)
    cluster_ids = [int(c) for c in np.unique(labels) if c >= 0]
    members = cluster_mod.members_by_label(labels)
    sample = {c: (idx if len(idx) <= options.label_sample else np.sort(rng.choice(idx, options.label_sample, replace=False)))
              for c, idx in members.items()}
    # Texts by position, looked up once (a Series lookup per sampled text was ~5% of the labelling time).
    text_at = texts.reindex(hashes).to_numpy()
    docs, doc_labels, doc_weights = [], [], []
    for c, idx in sample.items():
        idx = idx[: options.keyword_sample]
        docs += [text_at[i] for i in idx]
        doc_labels += [c] * len(idx)
        doc_weights += [float(req_counts[i]) for i in idx]
    return LabelPlan(cluster_ids, members, sample, text_at, docs, doc_labels, doc_weights)


@dataclass
class KeywordsAndTemplates:
    """What the swappable parts made of one :class:`LabelPlan`: keywords per unit, and each unit's template in
    the plan's unit order."""

    keywords: dict[int, list[str]]
    templates: list[label_mod.Template]


def label_parts(plans: Sequence[LabelPlan], parts: LabelParts, options: RunOptions) -> list[KeywordsAndTemplates]:
    """Keywords and templates of every plan: the templates in worker processes when the work is large enough
    (:data:`TEXT_PARALLEL_MIN_TEXTS` sampled texts, ``options.text_workers``) while the keywords are made here
    (:func:`_label_parts_parallel`), else everything here; the same result either way (each keyword set is
    computed over its whole plan, each template over its unit's sample). A sample that recurs (a template family
    whose prompts are all of one topic cluster, sampled alike in both jobs) is made into a template once."""
    position: dict[tuple[str, ...], int] = {}  # each distinct sample, numbered in the order first met
    made_from = [position.setdefault(tuple(texts), len(position)) for p in plans for texts in p.sampled_texts()]
    distinct = [list(texts) for texts in position]
    del position
    n_texts = sum(len(p.docs) for p in plans) + sum(map(len, distinct))
    workers = text_workers(options, n_texts)
    if workers > 1 and _picklable(parts):
        keywords, templates = _label_parts_parallel(plans, distinct, parts, options.seed, workers)
    else:
        keywords = [_keywords(p, parts) for p in plans]
        templates = [parts.template(texts, options.seed) for texts in distinct]
    out, start = [], 0
    for plan, kw in zip(plans, keywords, strict=True):
        end = start + len(plan.cluster_ids)
        out.append(KeywordsAndTemplates(kw, [templates[j] for j in made_from[start:end]]))
        start = end
    return out


def _made_here(plan: LabelPlan, parts: LabelParts, seed: int) -> KeywordsAndTemplates:
    """The keywords and templates of one plan, made in this process."""
    return KeywordsAndTemplates(_keywords(plan, parts), [parts.template(texts, seed) for texts in plan.sampled_texts()])


def _keywords(plan: LabelPlan, parts: LabelParts) -> dict[int, list[str]]:
    """The keywords of one plan's clusters (none without keyword documents)."""
    return parts.keywords(plan.docs, plan.doc_labels, plan.doc_weights) if plan.docs else {}


#: Texts from which pure-Python text work runs in worker processes (``RunOptions.text_workers``): the cluster
#: stage's sentence scan (prompts) and the label stage's keywords and templates (sampled texts: keyword documents
#: and each unit's template sample). Starting the workers costs about a second each, which pays from here on
#: (1M requests: 487k prompts, 20 s of sentence scan; 215k keyword documents, 58 s of labelling).
TEXT_PARALLEL_MIN_TEXTS = 60_000


def text_workers(options: RunOptions, n_texts: int) -> int:
    """Worker processes for text work over ``n_texts`` texts: 1 (in this process) under
    :data:`TEXT_PARALLEL_MIN_TEXTS`, else ``options.text_workers`` or one per usable CPU."""
    if n_texts < TEXT_PARALLEL_MIN_TEXTS:
        return 1
    return options.text_workers or usable_cpus()


#: Sampled texts per template task handed to a worker process (small enough to spread the work evenly).
LABEL_TASK_TEXTS = 20_000


def _picklable(obj: object) -> bool:
    """Whether ``obj`` (the label stage's parts) can be sent to a worker process."""
    import pickle

    try:
        pickle.dumps(obj)
    except Exception:  # noqa: BLE001 - any failure means: label in this process
        return False
    return True


def _label_templates(parts: LabelParts, task: tuple[int, list[list[str]]]) -> list[label_mod.Template]:
    """The templates of a run of units (their sampled texts), made in a worker process."""
    seed, groups = task
    return [parts.template(texts, seed) for texts in groups]


def _template_task(parts: LabelParts) -> Callable[[tuple[int, list[list[str]]]], list[label_mod.Template]]:
    """What a label worker runs on a task of :func:`_label_templates`: with the default template method
    (:meth:`DefaultLabelParts.template`, which the label stage's class keeps unless overridden),
    :func:`analyzer.label.templates_of`, whose worker imports :mod:`analyzer.label` and NumPy only; else the
    parts' own method, whose worker imports whatever module defines them (the pipeline's, 2-3 s of a core)."""
    if getattr(type(parts), "template", None) is DefaultLabelParts.template:
        return label_mod.templates_of
    return functools.partial(_label_templates, parts)


def _label_parts_parallel(plans: Sequence[LabelPlan], samples: Sequence[list[str]], parts: LabelParts, seed: int,
                          workers: int) -> tuple[list[dict[int, list[str]]], list[label_mod.Template]]:
    """:func:`label_parts`'s keywords of each plan and templates of each of ``samples``, the templates in worker
    processes, in tasks of :data:`LABEL_TASK_TEXTS` sampled texts, while this process makes the keywords in a
    thread: c-TF-IDF needs a whole job at once (at 16M requests gigabytes of counts), so it stays where it ran
    before and a worker only ever holds a bounded task."""
    tasks: list[tuple[int, list[list[str]]]] = []  # (seed, units' sampled texts)
    group: list[list[str]] = []
    size = 0
    for texts in samples:
        group.append(texts)
        size += len(texts)
        if size >= LABEL_TASK_TEXTS:
            tasks.append((seed, group))
            group, size = [], 0
    if group:
        tasks.append((seed, group))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="label-keywords") as here:
        keywords = here.submit(lambda: [_keywords(p, parts) for p in plans])
        templates = process_map(_template_task(parts), tasks, workers)
        return keywords.result(), [t for made in templates for t in made]


def label_clusters(hashes, labels, vectors, req_counts, texts: pd.Series, intents: np.ndarray,
                   intent_sim: np.ndarray, options: RunOptions, kind: str = "topic",
                   parts: LabelParts | None = None) -> pd.DataFrame:
    """One row per cluster of ``labels``: keywords, template, exemplars, label and content signals.

    ``kind`` is ``"topic"`` for semantic (HDBSCAN) clusters and ``"template"`` for template families;
    ``parts`` computes keywords and templates (default :class:`DefaultLabelParts`), in this process.
    """
    plan = label_plan(hashes, labels, req_counts, texts, options)
    made = _made_here(plan, parts or DefaultLabelParts(), options.seed)
    return plan_rows(plan, made, labels, vectors, req_counts, intents, intent_sim, options, kind)


def plan_rows(plan: LabelPlan, made: KeywordsAndTemplates, labels, vectors, req_counts, intents: np.ndarray,
              intent_sim: np.ndarray, options: RunOptions, kind: str) -> pd.DataFrame:
    """The cluster rows of a :class:`LabelPlan` given its keywords and templates (:func:`label_clusters`)."""
    tight = cluster_mod.cluster_tightness(labels, vectors)
    out = []
    for c, template in zip(plan.cluster_ids, made.templates, strict=True):
        idx = plan.sample[c]
        ctexts = plan.text_at[idx].tolist()
        judged = intent_sim[idx][~np.isnan(intent_sim[idx])]
        tv = (float(np.mean(sig.training_values(judged, options.signals.training_value_low,
                                                options.signals.training_value_high))) if len(judged) else 0.0)
        kw = made.keywords.get(c, [])
        members = plan.members[c]
        out.append({
            "cluster_id": c,
            "kind": kind,
            "n_prompts": int(len(members)),
            "n_requests": int(req_counts[members].sum()),
            "n_accounts": 0,
            "label": label_mod.cluster_label(kw, template),
            "keywords": kw,
            "template": template.text,
            "exemplars": label_mod.exemplars(ctexts, vectors[idx], n=3),
            "signals": {
                # A system family is one instruction, not a filled template: templating is judged on the user
                # turns.
                "template_coverage": 0.0 if kind == "system" else round(template.coverage, 4),
                "n_fixed_words": template.n_fixed_words,
                "n_slots": template.n_slots,
                "slot_entropy": round(template.slot_entropy, 4),
                "training_value": round(tv, 4),
                "intent": most_common(intents[idx]),
                "intent_similarity": round(float(judged.mean()), 4) if len(judged) else None,
                "tightness": round(tight.get(c, 0.0), 4),
            },
        })
    return pd.DataFrame(out, columns=["cluster_id", "kind", "n_prompts", "n_requests", "n_accounts", "label", "keywords",
                                      "template", "exemplars", "signals"])


# --- assign: the incremental cluster stage ----------------------------------------------------------------------
def last_full_clustering(ws: Workspace) -> dict | None:
    """The cluster stats of the latest run that clustered everything (``None`` when no run recorded one)."""
    for _run_id, stats in ws.ok_run_stats():
        found = stats.get("cluster") or {}
        if found.get("path") == "full":
            return found
    return None


def last_clustering_run(ws: Workspace) -> int | None:
    """The id of the latest finished run that clustered or assigned (``None`` when there is none)."""
    for run_id, stats in ws.ok_run_stats():
        if stats.get("cluster"):
            return run_id
    return None


def choose_cluster_path(ws: Workspace, options: RunOptions, key: str) -> tuple[str, str]:
    """``("incremental", "")`` when the new prompts can be assigned to the workspace's clustering, else
    ``("full", why)``: ``"requested"`` (``--recluster``), ``"no clustering"``, ``"parameters changed"`` (cluster
    parameters or embedding model differ from the last full clustering's) or ``"growth"``
    (:func:`analyzer.assign.drift_trigger`). The other drift measure, ``"unassigned"``, is checked by
    :func:`assign` once it has assigned the day."""
    if options.recluster:
        return "full", "requested"
    if not ws.has_rows("prompt_clusters"):
        return "full", "no clustering"
    last = last_full_clustering(ws)
    if last is None or "prompts" not in last:
        return "full", "no clustering"
    if last.get("model_key") != key or last.get("cluster_params") != json.loads(json.dumps(asdict(options.cluster))):
        return "full", "parameters changed"
    # A clustering recorded before signal parameters were configurable was made with the defaults.
    recorded = last.get("signal_params", cluster_signal_params(sig.DEFAULTS))
    if recorded != json.loads(json.dumps(cluster_signal_params(options.signals))):
        return "full", "parameters changed"
    if last.get("stages", grouping_classes(StageClasses())) != grouping_classes(options.stages):
        return "full", "parameters changed"
    n_now = ws.embedded_count(key)
    trigger = assign_mod.drift_trigger(options.incremental, int(last["prompts"]), n_now)
    return ("full", trigger) if trigger else ("incremental", "")


def grouping_classes(stages: StageClasses) -> dict[str, str]:
    """The classes of the stages a clustering is made by (cluster, label), as recorded with a full one."""
    return {"cluster": stages.cluster, "label": stages.label}


def _texts_of(ws: Workspace, hashes: np.ndarray) -> list[str]:
    """Analysis texts (head and tail) of ``hashes``, in order."""
    found = prompt_texts(ws, [str(h) for h in hashes])
    return [analysis_text(found.get(h, "")) for h in hashes]


def assign(ws: Workspace, options: RunOptions, index_result=None,
           topics: TopicClusterer = cluster_mod.cluster_knn_graph) -> Grouping:
    """The cluster stage for a daily run: assign prompts without a row in ``prompt_clusters`` to the units of the
    stored clustering (see :mod:`analyzer.assign`) instead of clustering everything again.

    New prompts join a topic cluster by their neighbours among clustered prompts, a template family by its
    key, a scaffold family by its recurring sentences; new system prompts join a system family by their
    nearest member. New groups are then looked for among recent prompts in no family (template families,
    scaffolds, HDBSCAN over their topic noise), and noise prompts sent ``min_cluster_size`` times become repeat
    clusters. Intents and task ids are computed for the new prompts only; the counts and training value of the
    clusters that gained prompts are updated. When the share of the requests since the last clustering run that
    no known unit takes shows drift (:func:`analyzer.assign.drift_trigger`), nothing is written and the stats
    carry ``"drift"``: the caller re-clusters. Reads only: returns the changed ``prompt_clusters`` and
    ``system_clusters`` rows (to upsert) and the label stage's work (:class:`Grouping`), which the runner
    writes in one transaction. New groups are looked for only when there are new prompts, so a run killed
    after that transaction and run again ends where the uninterrupted run ends.
    """
    hashes, vectors, index = index_result or build_index(ws, options)
    key = embedder_for(options).key
    clusters = ws.table("clusters")
    st = _stored_assignment(ws, hashes, vectors, clusters)
    stats: dict = {"path": "incremental", "prompts": len(hashes), "new_prompts": int(len(st.new))}
    fams = _known_families(ws, options)
    if len(st.new):  # 1. new prompts: topic cluster, template / scaffold family, intent and task
        stats.update(_assign_new(ws, st, index, fams, options, key))
    before_topic, before_unit = st.topic.copy(), st.unit.copy()
    # The requests since the clustering was last written by a finished run: the day's, plus those of runs
    # killed before they finished (their clustering, if written, is consistent, but they recorded nothing).
    since = last_clustering_run(ws)
    # 2. system prompts
    system_rows, system_job, st.next_id, sys_stats = assign_system(ws, options, key, st.next_id)
    stats.update(sys_stats)
    # 3. drift: the run's requests that no known unit takes, against the share left without one at the last
    # full clustering (before new groups are looked for: a day of entirely new content is drift, not growth)
    run_req = ws.request_system_hashes(since)
    share = _unassigned_share(ws, st, run_req, system_rows)
    stats["unassigned_request_share"] = round(share, 4)
    last = last_full_clustering(ws) or {}
    drift = assign_mod.drift_trigger(options.incremental, len(hashes), len(hashes), share,
                                     last.get("unassigned_request_share"))
    if drift:
        stats["drift"] = drift
        return Grouping(stats)
    # 4. new groups among recent prompts in no family, and repeat clusters
    kinds = dict(zip(clusters["cluster_id"].astype(int), clusters["kind"], strict=True))
    found = _discover(ws, st, kinds, since, fams, options, topics, stats)
    # 5. what the label stage does: label the new clusters, update counts and training value of the ones that
    # gained prompts
    ids = np.flatnonzero((st.topic != before_topic) | (st.unit != before_unit) | st.is_new)
    jobs = _daily_label_jobs(ws, st, ids, found)
    run_pos = st.pos.reindex(run_req["prompt_hash"].unique()).dropna().to_numpy(dtype=np.int64)
    touched = np.unique(np.concatenate([st.topic[run_pos], st.unit[run_pos], st.topic[ids], st.unit[ids],
                                        before_topic[ids], before_unit[ids]]))
    changed = pd.DataFrame({
        "prompt_hash": hashes[ids], "cluster_id": st.topic[ids].astype(np.int32), "probability": st.prob[ids],
        "assigned_cluster": st.unit[ids].astype(np.int32), "intent": st.intents[ids],
        "intent_similarity": st.isim[ids].astype(np.float64), "task_id": st.task[ids].astype(np.int64),
    })
    stats.update(rows_written=int(len(changed)), noise=int((st.topic < 0).sum()))
    update = ClusterUpdate(st.topic, st.unit, st.req_counts, st.isim, st.is_new, touched)
    return Grouping(stats, changed, system_rows, LabelWork(jobs, system_job, update), upsert=True)


@dataclass
class _Assignment:
    """The stored clustering over every indexed prompt, as arrays a daily run updates in place: topic cluster,
    unit, task, membership strength, intent and its similarity; which prompts are new; the next free id."""

    hashes: np.ndarray
    vectors: np.ndarray
    pos: pd.Series  # prompt hash -> row
    topic: np.ndarray
    unit: np.ndarray
    task: np.ndarray
    prob: np.ndarray
    isim: np.ndarray
    intents: np.ndarray
    is_new: np.ndarray
    req_counts: np.ndarray
    next_id: int
    texts: dict[str, str] = field(default_factory=dict)  # analysis texts read so far, by hash

    @property
    def new(self) -> np.ndarray:
        return np.flatnonzero(self.is_new)

    def read_texts(self, ws: Workspace, rows: np.ndarray) -> list[str]:
        """Analysis texts of the prompts at ``rows`` (each read from the workspace once)."""
        missing = [h for h in self.hashes[rows] if h not in self.texts]
        self.texts.update(zip(missing, _texts_of(ws, np.asarray(missing, dtype=object)), strict=True))
        return [self.texts[h] for h in self.hashes[rows]]


def _stored_assignment(ws: Workspace, hashes: np.ndarray, vectors: np.ndarray, clusters: pd.DataFrame
                       ) -> _Assignment:
    """The stored ``prompt_clusters`` rows laid over the indexed prompts (new prompts: -1, no intent)."""
    n = len(hashes)
    pos = pd.Series(np.arange(n), index=hashes)
    pc = ws.table("prompt_clusters")
    at = pos.index.get_indexer(pc["prompt_hash"])  # (isin of a str column in an object index: 50x slower)
    pc, old = pc[at >= 0].reset_index(drop=True), at[at >= 0]
    topic, unit, task = (np.full(n, -1, dtype=np.int64) for _ in range(3))
    prob, isim = np.zeros(n), np.full(n, np.nan)
    intents = np.full(n, None, dtype=object)
    topic[old], unit[old] = pc["cluster_id"].to_numpy(), pc["assigned_cluster"].to_numpy()
    task[old], prob[old] = pc["task_id"].fillna(-1).to_numpy(), pc["probability"].fillna(0.0).to_numpy()
    intents[old], isim[old] = pc["intent"].to_numpy(), pc["intent_similarity"].astype(float).to_numpy()
    is_new = np.ones(n, dtype=bool)
    is_new[old] = False
    next_id = int(max(clusters["cluster_id"].max() if len(clusters) else -1, topic.max(initial=-1),
                      unit.max(initial=-1))) + 1
    req_counts = ws.request_counts().set_index("prompt_hash")["n"].reindex(hashes).fillna(0).to_numpy()
    return _Assignment(hashes, vectors, pos, topic, unit, task, prob, isim, intents, is_new, req_counts, next_id)


@dataclass
class _Families:
    """The known families' keys, from a sample of each family's members: template families' opening and
    closing words, scaffold families' recurring sentences."""

    heads: Any
    tails: Any
    sentences: Any

    def match(self, texts: list[str], edge_words: int) -> tuple[np.ndarray, np.ndarray]:
        """(template family, scaffold family) of each text, -1 for none."""
        return (assign_mod.match_families(texts, self.heads, self.tails, edge_words),
                assign_mod.match_scaffolds(texts, self.sentences))


def _known_families(ws: Workspace, options: RunOptions) -> _Families:
    ip = options.incremental
    tf = ws.family_sample("template", ip.family_sample)
    # texts by hash in a second query: joining every sampled member to its text cost ten times the sample
    texts = ws.prompt_texts(tf["prompt_hash"].tolist()).reindex(tf["prompt_hash"]).fillna("")
    heads, tails = assign_mod.family_keys(texts.map(analysis_text).tolist(), tf["family"].tolist(),
                                          options.cluster.edge_words)
    sentences = scaffold_family_sentences(ws, ws.family_sample("scaffold", ip.family_sample))
    return _Families(heads, tails, sentences)


def scaffold_family_sentences(ws: Workspace, sample: pd.DataFrame) -> dict[int, set[str]]:
    """The recurring sentences of each scaffold family (:func:`analyzer.assign.scaffold_sentences`) from its
    ``sample`` of members (``prompt_hash, family`` and optionally ``text``; without it the texts needed are
    read from the workspace), counted incrementally: the workspace's ``cache/scaffold-sentences.json`` keeps
    each family's sampled members and its sentence counts (:class:`analyzer.assign.SentenceCounts`), so that a
    run splits only the members that entered a family's sample and those they displaced (read again from the
    workspace), not every member: at 100k prompts every family's sample took a member or two a day, and
    splitting them all again cost about half a second a run. The memo is only a shortcut: a missing,
    unreadable or older one is made again, and what it gives is what counting every member gives."""
    path = os.path.join(ws.path, "cache", "scaffold-sentences.json")
    header = f"{__version__} {FAMILY_SENTENCE_MIN_MEMBERS}"
    memo = _read_sentence_memo(path, header)
    hashes = sample["prompt_hash"].to_numpy(dtype=object)
    given = dict(zip(hashes, sample["text"], strict=True)) if "text" in sample else {}
    members_of = {int(fam): hashes[rows].tolist() for fam, rows in sorted(sample.groupby("family").indices.items())}
    # Each changed family's sample: the members that entered it and those they displaced are split; a family
    # met for the first time (or whose displaced member is gone from the workspace) is counted afresh.
    fresh: dict[str, assign_mod.SentenceCounts] = {}
    todo: dict[str, tuple[assign_mod.SentenceCounts | None, list[str]]] = {}
    for fam, members in members_of.items():
        old = memo.get(str(fam))
        if old is not None and old.members == members:
            fresh[str(fam)] = old
        else:
            todo[str(fam)] = (old, members)
    needed = {h for old, members in todo.values()
              for h in (set(members) ^ set(old.members) if old is not None else members)}
    texts = _analysis_texts(ws, needed, given)
    for fam, (old, members) in todo.items():
        if old is not None and not set(old.members) - set(members) <= texts.keys():
            old = None  # a displaced member is no longer in the workspace: count this family afresh
            texts.update(_analysis_texts(ws, set(members) - texts.keys(), given))
        fresh[fam] = assign_mod.update_sentence_counts(old, members, texts, FAMILY_SENTENCE_MIN_MEMBERS)
    out = {int(fam): assign_mod.recurring_sentences(fresh[str(fam)], FAMILY_SENTENCE_MIN_MEMBERS)
           for fam in members_of}
    if todo or set(memo) != set(fresh):
        # flat lists, not [key, count] pairs: a quarter of the time to read (93k sentences at 100k prompts)
        doc = {"header": header, "families": {fam: {"members": c.members, "keys": list(c.counts),
                                                    "counts": list(c.counts.values()), "string_keys": list(c.strings),
                                                    "strings": list(c.strings.values())}
                                              for fam, c in fresh.items()}}
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(doc, ensure_ascii=False))  # dumps: C encoder (json.dump's is Python, 4x slower)
    return out


def _analysis_texts(ws: Workspace, hashes: Collection[str], given: Mapping[str, str]) -> dict[str, str]:
    """Analysis texts of ``hashes`` found in ``given`` (texts by hash), else in the workspace; hashes in neither
    are left out."""
    out = {h: analysis_text(given[h]) for h in hashes if h in given}
    rest = sorted(set(hashes) - out.keys())
    if rest:
        out.update((h, analysis_text(t)) for h, t in ws.prompt_texts(rest).items())
    return out


def _read_sentence_memo(path: str, header: str) -> dict[str, assign_mod.SentenceCounts]:
    """The scaffold families' sentence counts kept at ``path`` by a run of this version (empty when there are
    none, they cannot be read or another version wrote them)."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
        if doc.get("header") != header:
            return {}
        return {str(fam): assign_mod.SentenceCounts(list(f["members"]), dict(zip(f["keys"], f["counts"], strict=True)),
                                                    dict(zip(f["string_keys"], f["strings"], strict=True)))
                for fam, f in doc["families"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def _assign_new(ws: Workspace, st: _Assignment, index, fams: _Families, options: RunOptions, key: str) -> dict:
    """New prompts join a topic cluster by their neighbours' majority, a scaffold family by its sentences, else
    a template family by its key, else the nearest topic (attribution); their intents and task ids are
    computed. Returns the step's stats."""
    p, new = options.cluster, st.new
    nbrs, sims = index_mod.knn_graph(index, st.vectors, k=p.k, ids=new)  # the new prompts' neighbours
    cal = embed_mod.calibrate_similarity(key, sims)
    nb = np.clip(nbrs, 0, None)
    nb_topic = np.where(nbrs >= 0, st.topic[nb], -1)  # new prompts have no topic yet
    member = assign_mod.majority_label(nb_topic, cal, p.attach_similarity, options.incremental.majority)
    attached = assign_mod.nearest_label(nb_topic, cal, p.attach_similarity)
    st.topic[new], st.prob[new] = member, np.where(member >= 0, 1.0, 0.0)
    new_texts = st.read_texts(ws, new)
    tmpl, scaf = fams.match(new_texts, p.edge_words)
    st.unit[new] = np.where(scaf >= 0, scaf, np.where(tmpl >= 0, tmpl, attached))
    new_intents, new_sim = prompt_intents(st.vectors[new], options, key)
    # A new prompt's wrapper is the known scaffold family's recurring sentences it joined (as in a full run); one
    # that joined a template or scaffold family whose members are mostly not judged (a wrapper in a script or
    # language the models do not read) is not judged either.
    wrappers = [fams.sentences.get(int(f)) if f >= 0 else None for f in scaf]
    foreign = foreign_wrapped(wrappers, options)
    unread = np.fromiter((sig.unreadable(t, options.signals) for t in new_texts), dtype=bool, count=len(new))
    unjudged_family = _mostly_unjudged(st, st.unit[new], options.incremental.unjudged_family_share)
    unread |= foreign | ((np.maximum(tmpl, scaf) >= 0) & unjudged_family)
    st.intents[new], st.isim[new] = new_intents, np.where(unread, np.nan, new_sim)
    new_pos = np.full(len(st.hashes), -1, dtype=np.int64)
    new_pos[new] = np.arange(len(new))
    nb_new = np.where(nbrs >= 0, new_pos[nb], -1)
    nb_old_task = np.where((nbrs >= 0) & ~st.is_new[nb], st.task[nb], -1)
    first_new = int(st.task.max(initial=-1)) + 1
    new_tasks = assign_mod.assign_tasks(nb_new, nb_old_task, cal, p.task_similarity, first_new)
    if foreign.any():
        new_tasks = cluster_mod.tasks_apart_from_wrappers(new_tasks, new_texts, wrappers, foreign, keep_first=False,
                                                          first_new=max(first_new, int(new_tasks.max()) + 1))
    st.task[new] = new_tasks
    return {"topic_members": int((member >= 0).sum()), "attributed": int(((member < 0) & (attached >= 0)).sum()),
            "to_template_families": int(((tmpl >= 0) & (scaf < 0)).sum()),
            "to_scaffold_families": int((scaf >= 0).sum())}


def _unassigned_share(ws: Workspace, st: _Assignment, run_req: pd.DataFrame, system_rows: pd.DataFrame) -> float:
    """Share of the run's requests that neither their prompt's unit nor their system prompt's family takes."""
    if not len(run_req):
        return 0.0
    sys_fam = pd.concat([ws.table("system_clusters")[["system_hash", "cluster_id"]],
                         system_rows[["system_hash", "cluster_id"]]]).drop_duplicates("system_hash", keep="last")
    in_sys = run_req["system_hash"].map(sys_fam.set_index("system_hash")["cluster_id"]).fillna(-1).to_numpy() >= 0
    run_units = pd.Series(st.unit, index=st.hashes).reindex(run_req["prompt_hash"]).fillna(-1).to_numpy()
    return float(((run_units < 0) & ~in_sys).mean())


@dataclass
class _Discovery:
    """New groups found among the discovery prompts ``disc`` (rows): per row its new topic, template family
    and scaffold family (-1 none) and scaffold; ``topic_ids`` the new topic and repeat clusters."""

    disc: np.ndarray
    topics: np.ndarray
    templates: np.ndarray
    scaffolds: np.ndarray
    scaffold_of: list[str | None]
    topic_ids: np.ndarray


def _discover(ws: Workspace, st: _Assignment, kinds: dict[int, str], since: int | None, fams: _Families,
              options: RunOptions, topics: TopicClusterer, stats: dict) -> _Discovery:
    """New groups among the recent prompts in no family (template families, scaffolds, topic clusters over
    their noise) and repeat clusters of noise prompts sent ``min_cluster_size`` times; updates ``st``."""
    p = options.cluster
    family_ids = np.array([c for c, k in kinds.items() if k in ("template", "scaffold")], dtype=np.int64)
    in_family = np.isin(st.unit, family_ids)
    newest = ws.newest_request_ts(since)
    recent = (ws.prompt_first_seen(newest - pd.Timedelta(days=options.incremental.discovery_days))["prompt_hash"]
              if newest is not None else pd.Series([], dtype=object))
    disc = np.union1d(st.pos.reindex(recent).dropna().to_numpy(dtype=np.int64), st.new)
    disc = _late_joiners(ws, st, disc[~in_family[disc]], fams, p.edge_words, stats)
    found = _new_groups(ws, st, disc, options, topics)
    st.topic[disc] = np.where(found.topics >= 0, found.topics, st.topic[disc])
    repeats = np.flatnonzero((st.topic < 0) & (st.req_counts >= p.min_cluster_size))
    st.topic[repeats] = st.next_id + np.arange(len(repeats))
    st.prob[repeats] = 1.0
    st.next_id += len(repeats)
    st.unit[repeats] = np.where(in_family[repeats], st.unit[repeats], st.topic[repeats])
    st.unit[disc] = np.where(found.scaffolds >= 0, found.scaffolds, np.where(
        found.templates >= 0, found.templates, np.where(found.topics >= 0, found.topics, st.unit[disc])))
    found.topic_ids = np.unique(np.concatenate([found.topics[found.topics >= 0], st.topic[repeats]]))
    _foreign_discovered(ws, st, disc, found, options)
    stats.update(discovery_prompts=int(len(disc)), new_topic_clusters=int(len(found.topic_ids)),
                 new_repeat_clusters=int(len(repeats)),
                 new_template_families=int(len(np.unique(found.templates[found.templates >= 0]))),
                 new_scaffold_families=int(len(np.unique(found.scaffolds[found.scaffolds >= 0]))))
    return found


def _mostly_unjudged(st: _Assignment, units: np.ndarray, min_share: float) -> np.ndarray:
    """Per unit of ``units``: whether at least ``min_share`` of its members known before this run have no judged
    intent (``IncrementalParams.unjudged_family_share``)."""
    old = ~st.is_new & (st.unit >= 0)
    share = pd.Series(np.isnan(st.isim[old])).groupby(st.unit[old]).mean()
    return np.nan_to_num(share.reindex(units).to_numpy(dtype=np.float64), nan=0.0) >= min_share


def _foreign_discovered(ws: Workspace, st: _Assignment, disc: np.ndarray, found: _Discovery,
                        options: RunOptions) -> None:
    """The discovery prompts that formed a new group, whose wrapper (their scaffold in the discovery set) is in
    a Latin-script language the models do not read: intent not judged and tasks told apart by payload, as in a
    full run (a campaign that starts wrapped in Spanish on a later day is a new group of the daily path)."""
    grouped = (found.scaffolds >= 0) | (found.templates >= 0) | (found.topics >= 0)  # written: their unit changed
    wrappers = cluster_mod.scaffold_sets(found.scaffold_of, keep=grouped)
    foreign = foreign_wrapped(wrappers, options)
    if not foreign.any():
        return
    st.isim[disc[foreign]] = np.nan
    st.task[disc] = cluster_mod.tasks_apart_from_wrappers(st.task[disc], st.read_texts(ws, disc), wrappers, foreign,
                                                          first_new=int(st.task.max(initial=-1)) + 1, keep_first=False)


def _late_joiners(ws: Workspace, st: _Assignment, disc: np.ndarray, fams: _Families, edge_words: int,
                  stats: dict) -> np.ndarray:
    """Recent prompts seen before a family formed (its first days) join it now, as a new prompt would; returns
    the discovery prompts left."""
    st.read_texts(ws, disc)
    seen = disc[~st.is_new[disc]]
    tmpl, scaf = fams.match(st.read_texts(ws, seen), edge_words)
    late = np.where(scaf >= 0, scaf, tmpl)
    st.unit[seen] = np.where(late >= 0, late, st.unit[seen])
    stats["recent_prompts_joining_families"] = int((late >= 0).sum())
    return np.setdiff1d(disc, seen[late >= 0])


def _new_groups(ws: Workspace, st: _Assignment, disc: np.ndarray, options: RunOptions,
                topics: TopicClusterer) -> _Discovery:
    """Template and scaffold families and topic clusters among the discovery prompts (their noise only for
    topics). Only new prompts bring new groups; without them the search would only re-cut what an earlier
    (possibly killed) run left ungrouped, so a re-run after a crash gives what the uninterrupted run gave."""
    p = options.cluster
    none = np.full(len(disc), -1, dtype=np.int64)
    found = _Discovery(disc, none.copy(), none.copy(), none.copy(), [None] * len(disc), none[:0])
    if not (len(st.new) and len(disc) >= max(p.min_family_size, 2)):
        return found
    disc_texts = st.read_texts(ws, disc)
    fams = cluster_mod.template_families(disc_texts, p.edge_words, p.min_family_size)
    found.templates = np.where(fams >= 0, fams + st.next_id, -1)
    st.next_id = int(max(st.next_id, found.templates.max() + 1))
    found.scaffold_of, sfams = scaffold_families(disc_texts, np.ones(len(disc), dtype=bool), options)
    found.scaffolds = np.where(sfams >= 0, sfams + st.next_id, -1)
    st.next_id = int(max(st.next_id, found.scaffolds.max() + 1))
    noise = np.flatnonzero(st.topic[disc] < 0)
    if len(noise) >= max(p.min_cluster_size, 2):
        rows = disc[noise]
        vecs = st.vectors[rows]
        sub = index_mod.build_index(vecs, seed=options.seed)
        s_nbrs, s_sims = index_mod.knn_graph(sub, vecs, k=min(p.k, len(noise) - 1))
        labels, strengths = topics(s_nbrs, s_sims, p)
        found.topics[noise] = np.where(labels >= 0, labels + st.next_id, -1)
        st.prob[rows] = np.where(labels >= 0, np.where(strengths > 0, strengths, 1.0), st.prob[rows])
        st.next_id = int(max(st.next_id, found.topics.max() + 1))
    return found


def _daily_label_jobs(ws: Workspace, st: _Assignment, ids: np.ndarray, found: _Discovery) -> list[LabelJob]:
    """What the label stage labels after a daily run: the new topic clusters over the changed prompts ``ids``,
    the new template and scaffold families over the discovery set they were formed in."""
    st.read_texts(ws, ids)
    text_s = pd.Series(st.texts, dtype=object)
    d = found.disc
    return [LabelJob(st.hashes[ids], np.where(np.isin(st.topic[ids], found.topic_ids), st.topic[ids], -1),
                     st.vectors[ids], st.req_counts[ids], text_s, st.intents[ids], st.isim[ids], "topic"),
            LabelJob(st.hashes[d], found.templates, st.vectors[d], st.req_counts[d], text_s, st.intents[d],
                     st.isim[d], "template"),
            LabelJob(st.hashes[d], found.scaffolds, st.vectors[d], st.req_counts[d], text_s, st.intents[d],
                     st.isim[d], "scaffold", found.scaffold_of)]


#: The columns of the ``clusters`` table, as the label stage writes them.
CLUSTER_COLUMNS = ["cluster_id", "kind", "n_prompts", "n_requests", "n_accounts", "label", "keywords", "template",
                   "exemplars", "signals"]


def label_job(job: LabelJob, options: RunOptions, plan: LabelPlan, made: KeywordsAndTemplates) -> pd.DataFrame:
    """The cluster rows of one :class:`LabelJob` from its plan and the keywords and templates made of it
    (:func:`plan_rows`; scaffold families get their recurring sentences as template, :func:`scaffold_templates`)."""
    rows = plan_rows(plan, made, job.labels, job.vectors, job.req_counts, job.intents, job.intent_sim, options,
                     job.kind)
    if job.kind == "scaffold":
        rows = scaffold_templates(rows, job.labels, job.scaffold_of or [])
    return rows


def label_rows(ws: Workspace, work: LabelWork, options: RunOptions, parts: LabelParts | None = None) -> pd.DataFrame:
    """The label stage: every row of the ``clusters`` table. A full clustering labels every unit; a daily run
    keeps the stored rows (with the counts and training value of the clusters it touched updated,
    :func:`update_cluster_rows`) and adds the new clusters. ``n_accounts``: the distinct accounts whose requests
    count towards each unit (:meth:`~analyzer.workspace.Workspace.unit_account_counts`, over the
    ``prompt_clusters`` and ``system_clusters`` rows the cluster stage has written). Keywords and templates of
    every job are made together (:func:`label_parts`: in worker processes on large runs)."""
    parts = parts or DefaultLabelParts()
    jobs = [*work.jobs, *([work.system] if work.system is not None else [])]
    plans = [label_plan(j.hashes, j.labels, j.req_counts, j.texts, options) for j in jobs]
    labelled = [label_job(j, options, plan, made)
                for j, plan, made in zip(jobs, plans, label_parts(plans, parts, options), strict=True)]
    new, system = labelled[: len(work.jobs)], labelled[len(work.jobs):]
    if work.update is None:
        rows = pd.concat(new, ignore_index=True)
        rows = pd.concat([rows, system[0] if system else pd.DataFrame(columns=CLUSTER_COLUMNS)], ignore_index=True)
    else:
        u = work.update
        old = update_cluster_rows(ws.table("clusters", CLUSTER_COLUMNS), u.topic, u.unit, u.req_counts,
                                  u.intent_sim, u.is_new, u.touched, options.signals)
        rows = pd.concat([old, *[r for r in [*new, *system] if len(r)]], ignore_index=True)
    n_acc = ws.unit_account_counts(rows)
    rows["n_accounts"] = n_acc.reindex(rows["cluster_id"].astype(np.int64)).fillna(0).astype(int).to_numpy()
    return rows


#: A known scaffold family's recurring sentences are those found in at least this many of its sampled members.
FAMILY_SENTENCE_MIN_MEMBERS = 2


def capability_system_prompts(sysp: pd.DataFrame, options: RunOptions, key: str
                              ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """The rows of ``sysp`` (``system_hash, text, n``) whose text reads as a capability instruction (training
    value at least ``system_min_value``), with their vectors, intents and intent similarities."""
    vecs = embedder_for(options).encode(sysp["text"].tolist())
    intents, sim = prompt_intents(vecs, options, key)
    value = sig.training_values(sim, options.signals.training_value_low, options.signals.training_value_high)
    keep = np.flatnonzero(value >= options.signals.system_min_value)
    return sysp.iloc[keep].reset_index(drop=True), vecs[keep], intents[keep], sim[keep]


def update_cluster_rows(clusters: pd.DataFrame, topic: np.ndarray, unit: np.ndarray, req_counts: np.ndarray,
                        intent_sim: np.ndarray, is_new: np.ndarray, touched: np.ndarray,
                        signals: sig.SignalParams = sig.DEFAULTS) -> pd.DataFrame:
    """The stored cluster rows, where those in ``touched`` (clusters that gained or lost prompts or requests)
    have ``n_prompts`` / ``n_requests`` recounted (topic clusters by membership, template and scaffold families
    by unit) and, when they gained new prompts, the training value as the running mean over their prompts.
    Labels, keywords, templates and exemplars are kept; untouched rows are left as they are."""
    rows = clusters.copy()
    if rows.empty:
        return rows
    rows["n_prompts"] = rows["n_prompts"].fillna(0).astype(np.int64)
    rows["n_requests"] = rows["n_requests"].fillna(0).astype(np.int64)
    value = sig.training_values(intent_sim[is_new], signals.training_value_low, signals.training_value_high)
    ids = rows["cluster_id"].astype(np.int64)
    by_topic = rows["kind"].eq("topic").to_numpy()
    counted = (rows["kind"].isin(["topic", "template", "scaffold"]) & rows["cluster_id"].isin(touched)).to_numpy()
    n_prompts, n_requests, n_gained, v_gained = (np.zeros(len(rows)) for _ in range(4))
    for mask, member in ((by_topic, topic), (~by_topic, unit)):
        agg = pd.DataFrame({"c": member, "n": req_counts}).groupby("c")["n"].agg(["size", "sum"])
        gained = pd.DataFrame({"c": member[is_new], "v": value}).dropna().groupby("c")["v"].agg(["size", "sum"])
        sel = mask & counted & ids.isin(agg.index).to_numpy()
        n_prompts[sel] = agg["size"].reindex(ids[sel]).to_numpy()
        n_requests[sel] = agg["sum"].reindex(ids[sel]).to_numpy()
        n_gained[mask] = gained["size"].reindex(ids[mask]).fillna(0).to_numpy()
        v_gained[mask] = gained["sum"].reindex(ids[mask]).fillna(0).to_numpy()
        rows.loc[sel, "n_prompts"] = n_prompts[sel].astype(np.int64)
        rows.loc[sel, "n_requests"] = n_requests[sel].astype(np.int64)
    sig_col = rows.columns.get_loc("signals")
    for i in np.flatnonzero(counted & (n_gained > 0)):
        s = dict(rows.iat[i, sig_col] or {})
        n_old = float(clusters["n_prompts"].iat[i] or 0)
        tv = float(_stored(s, "training_value", 0.0))
        s["training_value"] = round((tv * n_old + v_gained[i]) / (n_old + n_gained[i]), 4)
        rows.iat[i, sig_col] = s
    return rows


def assign_system(ws: Workspace, options: RunOptions, key: str, first_id: int
                  ) -> tuple[pd.DataFrame, LabelJob | None, int, dict]:
    """System prompts in no stored system family, for an incremental run: ``(system_clusters rows to upsert,
    the label stage's job for the new families (None when nothing is new), next free cluster id, stats)``.

    Capability system prompts (see :func:`system_families`) join the family of their nearest member at
    ``attach_similarity`` or closer; the others are clustered among themselves, and any sent in
    ``min_family_size`` requests becomes a family of its own.
    """
    p = options.cluster
    empty = pd.DataFrame(columns=["system_hash", "cluster_id", "intent", "intent_similarity"])
    sysp = ws.system_prompt_counts()
    known = ws.table("system_clusters")
    fam = known[known["cluster_id"] >= 0]
    cand = sysp[~sysp["system_hash"].isin(fam["system_hash"])].reset_index(drop=True)
    if cand.empty:
        return empty, None, first_id, {"system_prompts_assigned": 0, "new_system_families": 0}
    emb = embedder_for(options)
    cand, vecs, intents, sim = capability_system_prompts(cand, options, key)
    if cand["system_hash"].isin(known["system_hash"]).all():  # nothing new since they were last judged
        return empty, None, first_id, {"system_prompts_assigned": 0, "new_system_families": 0}
    labels = np.full(len(cand), -1, dtype=np.int64)
    if len(cand) and len(fam):
        fam_text = sysp.set_index("system_hash")["text"].reindex(fam["system_hash"]).fillna("")
        cos = embed_mod.calibrate_similarity(key, vecs @ emb.encode(fam_text.tolist()).T)
        best = cos.argmax(axis=1)
        labels = np.where(cos.max(axis=1) >= p.attach_similarity, fam["cluster_id"].to_numpy()[best], -1)
    rest = np.flatnonzero(labels < 0)
    found = np.full(len(rest), -1, dtype=np.int64)
    if len(rest) >= max(p.min_family_size, 2):
        sub = index_mod.build_index(vecs[rest], seed=options.seed)
        nbrs, sims = index_mod.knn_graph(sub, vecs[rest], k=min(p.k, len(rest) - 1))
        found, _ = cluster_mod.cluster_knn_graph(nbrs, sims, p)
    found = cluster_mod.add_repeat_clusters(found, cand["n"].to_numpy()[rest], p.min_family_size)
    new_ids = np.where(found >= 0, found + first_id, -1)
    labels[rest] = new_ids
    next_id = int(max(first_id, new_ids.max(initial=-1) + 1))
    job = LabelJob(cand["system_hash"].to_numpy()[rest], new_ids, vecs[rest], cand["n"].to_numpy()[rest],
                   cand.set_index("system_hash")["text"].map(analysis_text), intents[rest], sim[rest], "system")
    out = pd.DataFrame({"system_hash": cand["system_hash"], "cluster_id": labels.astype(np.int32), "intent": intents,
                        "intent_similarity": sim.astype(np.float64)})
    n_known = int((labels >= 0).sum()) - int((new_ids >= 0).sum())
    return out, job, next_id, {"system_prompts_assigned": n_known,
                                "new_system_families": int(len(np.unique(new_ids[new_ids >= 0])))}


def most_common(values: Sequence[str]) -> str:
    """The most frequent of ``values``, the first in sorted order among equally frequent ones (as pandas'
    ``Series.mode().iloc[0]``, without building a Series per cluster)."""
    counts = Counter(values)
    top = max(counts.values())
    return str(min(v for v, c in counts.items() if c == top))


# --- score --------------------------------------------------------------------------------------------------------
#: The ``clusters`` columns the score stage reads: not the exemplars (three whole prompts per cluster, never scored:
#: at 4M requests 120k clusters' rows took 830 MB with them, 540 MB without).
SCORING_CLUSTER_COLUMNS = ("cluster_id", "label", "keywords", "template", "signals", "kind")


def cluster_infos(rows: pd.DataFrame) -> dict[int, ClusterInfo]:
    """What the label stage stored about each cluster (rows of the ``clusters`` table) that scoring reads."""
    infos = {}
    for r in rows.itertuples(index=False):
        s = r.signals or {}
        infos[int(r.cluster_id)] = ClusterInfo(
            cluster_id=int(r.cluster_id), label=r.label or "", keywords=list(r.keywords or []),
            template=r.template or "", template_coverage=float(_stored(s, "template_coverage", 0.0)),
            n_fixed_words=int(_stored(s, "n_fixed_words", 0)),
            n_slots=None if s.get("n_slots") is None else int(s["n_slots"]),
            training_value=float(_stored(s, "training_value", 0.0)),
            intent=_stored(s, "intent", ""), tightness=float(_stored(s, "tightness", 0.0)),
            kind=r.kind or "",
        )
    return infos


def _stored(signals: dict, key: str, default):
    """A stored cluster signal, ``default`` where it was not recorded (NULL: older workspaces lack some)."""
    value = signals.get(key)
    return default if value is None else value


def score(ws: Workspace, options: RunOptions, run_id: int | None = None, write: Callable | None = None) -> dict:
    """The score stage: group units into campaigns, score and explain them; stored in ``campaigns``,
    ``campaign_accounts``, ``accounts`` and ``cluster_campaigns`` (each cluster's campaign).

    Campaigns keep their ids across runs (:mod:`analyzer.history`): this run's transitions are appended to
    ``campaign_history`` (under ``run_id``, default the newest run) in the transaction that stores them.
    ``write``: the runner's queue of writes (:meth:`analyzer.stages.Context.write`); without it the tables are
    written here, in one transaction.
    """
    req = ws.scoring_requests()
    if req.empty:
        raise RuntimeError("the workspace has no requests: run 'analyzer ingest' first")
    ws.release_cache()  # the blocks of every request, just read: the stage's peak comes later
    clusters = ws.table("clusters", list(SCORING_CLUSTER_COLUMNS))
    result = find_campaigns(req, cluster_infos(clusters), options.scoring, lambda hashes: prompt_texts(ws, hashes),
                            options.signals, options.evidence)
    # The watchlist first (fresh accounts continuing a confirmed campaign join it or form their own), then
    # stable ids for everything this run found, watch-formed campaigns included.
    result, watch_stats = check_watchlist(ws, req, result, options.scoring.flag_threshold, options.watch)
    tracked = history_mod.track(history_mod.PreviousState(*ws.campaign_state()), req, result,
                                ws.latest_run_id() if run_id is None else run_id, now_utc(), options.history)
    result = tracked.result
    campaign_of = clusters["cluster_id"].map(result.cluster_campaign)
    cluster_campaigns = pd.DataFrame({"cluster_id": clusters["cluster_id"][campaign_of.notna()].astype(np.int32),
                                      "campaign_id": campaign_of.dropna().astype(object)})
    camps, ca, acc = result.campaigns, result.campaign_accounts, result.accounts
    tables = {"campaigns": camps, "campaign_accounts": ca, "accounts": acc, "cluster_campaigns": cluster_campaigns,
              "campaign_members": tracked.members, "campaign_identity": tracked.identity,
              "campaign_ended_members": tracked.ended}
    if write is None:
        ws.replace_tables("score", tables, append={"campaign_history": tracked.history})
    else:
        write(replace=tables, append={"campaign_history": tracked.history})
    return {"campaigns": int(len(camps)), "flagged": int(camps["flagged"].sum()) if len(camps) else 0,
            "accounts": int(len(acc)), "watch": watch_stats,
            "transitions": {str(k): int(v) for k, v in tracked.history["transition"].value_counts().sort_index().items()}}


def prompt_texts(ws: Workspace, hashes: Sequence[str]) -> dict[str, str]:
    """Texts of the given prompts, in one query."""
    if not len(hashes):
        return {}
    return ws.prompt_texts([str(h) for h in hashes]).to_dict()


# --- watchlist (analyzer.watch: fingerprints of decided campaigns, matched on every score stage) -------------------
def watch_entries(ws: Workspace) -> list[watch_mod.WatchEntry]:
    """The workspace's watch entries with their fingerprints and vectors."""
    vecs = ws.watch_vectors()
    out = []
    for r in ws.watch_rows().itertuples(index=False):
        key, v = vecs.get(r.watch_id, (None, None))
        fp = watch_mod.Fingerprint.from_json(r.fingerprint, v)
        fp.model_key = key or fp.model_key
        created = None if pd.isna(r.created_at) else pd.Timestamp(r.created_at).isoformat()
        out.append(watch_mod.WatchEntry(r.watch_id, r.campaign_id, r.status, r.source, fp, created,
                                        r.analyst or "", r.note or ""))
    return out


def check_watchlist(ws: Workspace, req: pd.DataFrame, result, flag_threshold: float,
                    config: watch_mod.WatchConfig | None = None):
    """The score stage's watchlist check: match every account against the watch entries and apply the flags
    (:func:`analyzer.watch.apply_watchlist`). Returns ``(result, stats)``; costs nothing without entries.

    Fingerprint vectors are compared only with prompt vectors of the same embedding key; an entry made under
    another tier is matched by prompt hashes, template sentences and infrastructure, and the stats say so.
    """
    config = config or watch_mod.WatchConfig()
    entries = watch_entries(ws)
    if not entries:
        return result, {"entries": 0}
    req = watch_mod.with_subnet(req)  # once, not per entry
    hashes = pd.unique(req["prompt_hash"])
    full = prompt_texts(ws, hashes)
    shas = [watch_mod.prompt_sha256(full.get(h, "")) for h in hashes]
    texts = [analysis_text(full.get(h, "")) for h in hashes]
    del full
    by_key: dict[str, np.ndarray] = {}  # per model key: each prompt's row in its vectors (-1 = none)
    loaded: dict[str, np.ndarray] = {}
    notes: list[str] = []
    matches = []
    for e in entries:
        fp, sims = e.fingerprint, None
        key = fp.model_key
        if key and len(fp.vectors):
            if key not in loaded:
                vh, vv = ws.load_embeddings(key)
                pos = pd.Series(np.arange(len(vh)), index=vh)
                by_key[key] = pos.reindex(hashes).fillna(-1).to_numpy(dtype=np.int64)
                loaded[key] = vv
            rows = by_key[key]
            if (rows >= 0).any():
                sims = np.full(len(hashes), np.nan)
                have = rows >= 0
                raw = (loaded[key][rows[have]] @ fp.vectors.T).max(axis=1)
                sims[have] = embed_mod.calibrate_similarity(key, raw)
                if not have.all():
                    notes.append(f"watch {e.watch_id}: {int((~have).sum())} prompts have no vector under {key}")
            else:
                notes.append(f"watch {e.watch_id}: fingerprint vectors are in {key}, which this workspace does not "
                             "use; matched by prompt hashes, template sentences and infrastructure only")
        match, sim = watch_mod.content_similarity(fp, shas, texts, sims, config)
        pm = pd.DataFrame({"prompt_hash": hashes, "match": match, "similarity": sim})
        matches.append(watch_mod.match_accounts(req, e, pm, config))
    loaded.clear()
    matched = pd.concat(matches, ignore_index=True)
    result, outcome = watch_mod.apply_watchlist(result, req, entries, matched, flag_threshold, config)
    outcome.notes += notes
    return result, {"entries": len(entries), **outcome.to_dict()}


def add_watch(ws: Workspace, campaign_id: str, status: str = "confirmed", analyst: str = "", note: str = "",
              config: watch_mod.WatchConfig | None = None) -> watch_mod.WatchEntry:
    """Store the fingerprint of a campaign of the latest analysis as a watch entry (``confirmed`` or
    ``dismissed``); a new decision on the same campaign replaces the previous one. Raises ``KeyError`` for
    a campaign the workspace does not have."""
    config = config or watch_mod.WatchConfig()
    if status not in ("confirmed", "dismissed"):
        raise ValueError(f"a watch entry is 'confirmed' or 'dismissed', not {status!r}")
    fp = fingerprint_of(ws, campaign_id, config)
    entry = watch_mod.WatchEntry(watch_mod.local_watch_id(campaign_id), campaign_id, status, "local", fp,
                                 analyst=analyst, note=note)
    store_watch(ws, entry)
    return entry


def fingerprint_of(ws: Workspace, campaign_id: str, config: watch_mod.WatchConfig | None = None,
                   embeddings: tuple[np.ndarray, np.ndarray] | None = None) -> watch_mod.Fingerprint:
    """The fingerprint of a campaign of the latest analysis (reads only); ``KeyError`` for an unknown one.
    ``embeddings``: the workspace's ``(hashes, vectors)`` under its current key, when already loaded."""
    camp, members, creq = ws.campaign_requests(campaign_id)
    if camp is None:
        raise KeyError(f"no campaign {campaign_id!r} in the latest analysis of {ws.path}")
    hashes = pd.unique(creq["prompt_hash"])
    key = ws.current_model_key()
    vectors = np.zeros((0, 0), dtype=np.float32)
    if key:
        vh, vv = embeddings if embeddings is not None else ws.load_embeddings(key)
        rows = pd.Series(np.arange(len(vh)), index=vh).reindex(hashes).dropna().to_numpy(dtype=np.int64)
        vectors = vv[rows]
    return watch_mod.build_fingerprint(camp, members, creq, ws.request_identifiers(), prompt_texts(ws, hashes),
                                       hashes, vectors, key, config or watch_mod.WatchConfig())


def import_watch_bundle(ws: Workspace, doc) -> tuple[list[watch_mod.WatchEntry], list[str]]:
    """Turn a STIX bundle's indicators into confirmed watch entries of this workspace (see
    :func:`analyzer.stix.entries_from_bundle`); returns the entries stored and notes on what was skipped."""
    from analyzer import stix

    entries, notes = stix.entries_from_bundle(doc)
    for e in entries:
        store_watch(ws, e)
    return entries, notes


def stix_export(ws: Workspace, tlp: str = "amber", source: str = "campaigns", identity: str = "analyzer",
                vectors: bool = True) -> str:
    """A STIX 2.1 bundle (JSON) of the latest analysis's flagged campaigns (``source="campaigns"``) or of the
    confirmed watch entries (``source="watchlist"``). Reads only."""
    from analyzer import stix
    from analyzer.export import load_campaigns, unescape_ident

    items = []
    key = ws.current_model_key()
    embeddings = ws.load_embeddings(key) if key and source != "watchlist" else None
    if source == "watchlist":
        for e in watch_entries(ws):
            if e.status == "confirmed":
                fp = e.fingerprint
                items.append(stix.Shared(fp, fp.n_requests, fp.n_accounts, fp.first_seen, fp.last_seen,
                                         f"Confirmed by {e.analyst or 'an analyst'}" + (f": {e.note}" if e.note else "")))
    else:
        for c in load_campaigns(ws):
            if c["flagged"]:
                fp = fingerprint_of(ws, unescape_ident(c["id"]), embeddings=embeddings)
                items.append(stix.Shared(fp, c["n_requests"], c["n_accounts"], c["first_seen"], c["last_seen"],
                                         " ".join(c["evidence"][:5])))
    return stix.bundle_json(stix.make_bundle(items, tlp, identity, vectors))


def store_watch(ws: Workspace, entry: watch_mod.WatchEntry) -> None:
    """Write one watch entry (fingerprint JSON and vectors) in one transaction."""
    ws.put_watch({"watch_id": entry.watch_id, "campaign_id": entry.campaign_id, "status": entry.status,
                  "source": entry.source, "created_at": entry.created_at, "analyst": entry.analyst,
                  "note": entry.note, "fingerprint": entry.fingerprint.to_json()},
                 entry.fingerprint.vectors, entry.fingerprint.model_key)


# --- map ----------------------------------------------------------------------------------------------------------------
def make_map(ws: Workspace, options: RunOptions, write: Callable | None = None, relayout: bool = False
             ) -> dict[str, int | str]:
    """The app's 2-D map of up to ``options.map_sample`` prompts (see :mod:`analyzer.maplayout`).

    A layout: UMAP lays out cluster representatives -- every cluster of every campaign among them -- and the
    other shown prompts are placed beside their most similar representatives. A run lays the map out when there
    is none, with ``relayout`` (``--recluster``, ``analyzer map``), when the map was laid out for another
    ``options.map_sample``, or when the prompts have grown by more than ``options.map.relayout_growth`` since the
    last layout (:func:`map_layout_basis`); otherwise it keeps the shown points where they are and places new
    ones beside them (:func:`analyzer.maplayout.extend_points`), at a cost that does not grow with the history.
    ``write``: the runner's queue of writes (without it ``prompt_map`` is written here).
    """
    from analyzer import maplayout

    def save(frame: pd.DataFrame) -> None:
        if write is None:
            ws.replace_tables("map", {"prompt_map": frame})
        else:
            write(replace={"prompt_map": frame})

    key = embedder_for(options).key
    embedded = ws.embedding_rows(key)
    hashes = embedded["prompt_hash"].to_numpy(dtype=object)
    if len(hashes) < 10:
        save(pd.DataFrame(columns=["prompt_hash", "x", "y"]))
        return {"points": 0}
    units, campaign_units = map_units(ws, hashes)
    params = options.map
    rng = np.random.default_rng(options.seed)
    basis = None if relayout else map_layout_basis(ws)
    if (basis is not None and basis[1] == options.map_sample
            and len(hashes) <= (1.0 + params.relayout_growth) * basis[0]):
        shown = ws.table("prompt_map", ["prompt_hash", "x", "y"])
        at = pd.Index(hashes).get_indexer(shown["prompt_hash"])
        if (at >= 0).sum() >= 10:
            shown, at = shown[at >= 0], at[at >= 0]
            add = maplayout.extend_points(units, campaign_units, at, options.map_sample, params, rng)
            vectors = ws.load_vectors(key, embedded.iloc[np.concatenate([add, at])])  # the shown and added only
            xy = maplayout.place_points(vectors[: len(add)], vectors[len(add):], shown[["x", "y"]].to_numpy(), params,
                                        rng, units[add], units[at])
            frame = pd.concat([shown, pd.DataFrame({"prompt_hash": hashes[add], "x": xy[:, 0], "y": xy[:, 1]})],
                              ignore_index=True)
            save(frame)
            return {"layout": "extended", "points": int(len(frame)), "added": int(len(add)),
                    "layout_prompts": int(basis[0]), "sample": int(options.map_sample)}
    reps, placed = maplayout.select_points(units, campaign_units, options.map_sample, params, rng)
    idx = np.concatenate([reps, placed])
    vectors = ws.load_vectors(key, embedded.iloc[idx])  # the shown prompts' only (at 1M, 20k of 669k: 2.2 -> 0.1 s)
    rep_vectors = vectors[: len(reps)]
    xy = maplayout.umap_layout(rep_vectors, params, options.seed)
    placed_xy = maplayout.place_points(vectors[len(reps):], rep_vectors, xy, params, rng, units[placed], units[reps])
    pos = np.vstack([xy, placed_xy])
    order = np.argsort(idx, kind="stable")
    frame = pd.DataFrame({"prompt_hash": hashes[idx[order]], "x": pos[order, 0].astype(float),
                          "y": pos[order, 1].astype(float)})
    save(frame)
    return {"layout": "full", "points": int(len(frame)), "laid_out": int(len(reps)), "placed": int(len(placed)),
            "layout_prompts": int(len(hashes)), "sample": int(options.map_sample)}


def map_layout_basis(ws: Workspace) -> tuple[int, int] | None:
    """``(prompts, sample)``: how many prompts the map's last layout was made over and the map size it was asked
    for (the latest finished run's map stats), or ``None`` when unknown (no map yet, or one recorded before maps
    were extended)."""
    for _run_id, stats in ws.ok_run_stats():
        found = stats.get("map") or {}
        if found:
            if "layout_prompts" in found and "sample" in found:
                return int(found["layout_prompts"]), int(found["sample"])
            return None
    return None


def map_units(ws: Workspace, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each prompt's cluster as the app colours it (template family, else topic cluster; -1 noise), in
    ``hashes`` order, and the clusters that belong to a campaign."""
    pc = ws.prompt_units()
    units = pc.set_index("prompt_hash")["unit"].reindex(hashes).fillna(-1).astype(np.int64).to_numpy()
    return units, ws.campaign_cluster_ids()


# --- everything ---------------------------------------------------------------------------------------------------------
def run_all(ws: Workspace, paths: Sequence[str], options: RunOptions, column_map: dict[str, str] | None = None,
            strict: bool = False, command: str = "run", executor: Executor | None = None) -> dict:
    """Every stage of :data:`analyzer.catalog.PIPELINE` in one recorded run (the map unless
    ``options.make_map`` is off), through the runner :func:`analyzer.stages.run_stages`; returns stage times
    and counts.

    ``executor`` runs the work that grows with the data (default: in this process): the log files' parsing, the
    embedding model (see :func:`embed`; it is also handed to the embed stage's class) and the kNN graph of a full
    clustering; the run holds it open (one Ray session) across its stages.

    When the workspace already has a clustering, new prompts are assigned to it (:func:`assign`) unless
    ``options.recluster`` is set or :func:`choose_cluster_path` / the assignment's drift check call for a full
    re-cluster; ``stats["cluster"]["path"]`` says which ran and ``stats["cluster"]["trigger"]`` why a full one.
    """
    from analyzer.stages import Context, make_stage, run_stages

    names = ["ingest", "embed", "index", "cluster", "label", "score"] + (["map"] if options.make_map else [])
    # a misconfigured class fails before the run starts
    stages = {name: make_stage(name, options, **({"executor": executor} if name == "embed" and executor else {}))
              for name in names}
    params = {"paths": list(paths), "options": asdict(options), "column_map": column_map, "strict": strict}
    if executor is not None and executor.name != "local":
        params.update(executor.describe())
    seconds: dict[str, float] = {}
    peaks: dict[str, float] = {}
    with ws.writing():
        run_id = ws.start_run(command, params, versions())
        stats: dict = {"run_id": run_id}
        ctx = Context(ws, options, run_id, list(paths), column_map, strict, executor=executor)
        try:
            with executor or contextlib.nullcontext():
                stats.update(run_stages(ctx, names, stages, seconds=seconds, peaks=peaks))
        except BaseException as exc:
            stats["stages_s"], stats["stage_peak_mb"] = seconds, peaks
            ws.finish_run(run_id, stats, status=f"failed: {type(exc).__name__}")
            raise
        stats["stages_s"], stats["stage_peak_mb"] = seconds, peaks
        stats["peak_rss_mb"] = round(peak_rss_mb(), 1)
        ws.finish_run(run_id, stats)
    return stats
