"""The pipeline's stages as small swappable classes, and the runner that runs them in the declared order.

Each stage is a class in the scikit-learn manner: the constructor stores the run's options and nothing else,
``run(context)`` does the work and returns its stats, and what it learned is kept in attributes ending in
``_``. What a stage reads and writes is declared once, in :data:`analyzer.catalog.PIPELINE`; a stage writes
through :meth:`Context.write`, which refuses a table the stage does not declare, and the runner
(:func:`run_stages`) commits those writes -- with the tables they make stale downstream cleared in the same
transaction (:func:`analyzer.catalog.stale_after`). The cluster and label stages commit together: a killed
run never leaves new ``prompt_clusters`` beside the previous run's ``clusters``.

Which class runs each stage is configuration: the ``[stages]`` section of ``analyzer.toml``
(:class:`analyzer.catalog.StageClasses`), ``"package.module:ClassName"``, default the classes below. A class
given there must implement :class:`StageLike` (a constructor taking the :class:`~analyzer.pipeline.RunOptions`
and a ``run(context) -> dict`` method); subclassing a default class and overriding one method (e.g.
:meth:`Cluster.topics`, the topic clustering algorithm) is the short way to swap one part.

The pure cores stay in their modules (:mod:`analyzer.cluster`, :mod:`analyzer.label`, :mod:`analyzer.campaigns`
...) and the work of each stage in :mod:`analyzer.pipeline`'s functions; this module wires them to the
declaration.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from analyzer import catalog, pipeline
from analyzer import cluster as cluster_mod
from analyzer.catalog import StageClasses
from analyzer.config import ConfigError
from analyzer.executor import Executor
from analyzer.workspace import Workspace


@dataclass
class Context:
    """What a run hands its stages: the workspace, the options, the run's id and raw inputs, the in-memory
    datasets (:data:`analyzer.catalog.MEMORY`) and the writes waiting for the runner to commit them.

    Parameters
    ----------
    ws : Workspace
        The workspace, open for writing.
    options : RunOptions
        Every option of the run.
    run_id : int or None
        The run recorded in ``runs``.
    logs : list of str
        The log files to ingest (the raw input ``logs``).
    column_map : dict or None
        Renaming of input columns.
    strict : bool
        Stop at the first bad row instead of quarantining it.
    memory : dict
        The in-memory datasets made so far in this run, by name.
    stage : str
        The stage running now (set by the runner): the one whose outputs :meth:`write` and :meth:`put` accept.
    pending : list
        Writes queued by the stages and not yet committed: ``(stage, write_tables arguments)``.
    peaks : StagePeaks or None
        The runner's meter of each stage's peak memory.
    executor : Executor or None
        Where the stages' work that grows with the data runs (:mod:`analyzer.executor`): ``None`` in this
        process; a :class:`analyzer.distributed.RayExecutor` (``--ray``, entered by the run) parses the log
        files, embeds and builds the kNN graph on Ray.
    """

    ws: Workspace
    options: pipeline.RunOptions
    run_id: int | None = None
    logs: list[str] = field(default_factory=list)
    column_map: dict[str, str] | None = None
    strict: bool = False
    memory: dict[str, Any] = field(default_factory=dict)
    stage: str = ""
    pending: list[tuple[str, dict]] = field(default_factory=list)
    peaks: StagePeaks | None = None
    executor: Executor | None = None

    def write(self, replace: dict[str, pd.DataFrame] | None = None,
              upsert: dict[str, tuple[str, pd.DataFrame]] | None = None,
              append: dict[str, pd.DataFrame] | None = None) -> None:
        """Queue a write of the running stage's tables (committed by the runner, :meth:`flush`); a table the
        stage does not declare is refused here (:class:`analyzer.catalog.UndeclaredOutput`)."""
        catalog.check_outputs(self.stage, [*(replace or {}), *(upsert or {}), *(append or {})])
        self.pending.append((self.stage, {"replace": replace, "upsert": upsert, "append": append}))

    def put(self, name: str, value: Any) -> None:
        """Hand an in-memory dataset to the stages downstream (it must be the running stage's output)."""
        catalog.check_outputs(self.stage, [name])
        self.memory[name] = value

    def get(self, name: str) -> Any:
        """An in-memory dataset an upstream stage made in this run (``KeyError`` naming it otherwise)."""
        if name not in self.memory:
            raise KeyError(f"{name!r} was not made in this run: run the stage that writes it "
                           f"({catalog.writer_of(name)}) first")
        return self.memory[name]

    def flush(self) -> None:
        """Write the queued tables (:meth:`~analyzer.workspace.Workspace.write_tables`, each under the stage
        that queued it)."""
        pending, self.pending = self.pending, []
        for stage, kwargs in pending:
            self.ws.write_tables(stage, **kwargs)


@runtime_checkable
class StageLike(Protocol):
    """The interface of a stage class: ``cls(options)``, then ``run(context) -> stats``."""

    def run(self, ctx: Context) -> dict:
        """Read the stage's inputs from ``ctx``, queue its outputs (:meth:`Context.write`, :meth:`Context.put`),
        return its stats."""
        ...


class Stage(ABC):
    """Base of the default stage classes.

    Parameters
    ----------
    options : RunOptions
        Every option of the run (each stage reads its own sections).
    """

    #: The stage's name in :data:`analyzer.catalog.PIPELINE`.
    name: ClassVar[str] = ""

    def __init__(self, options: pipeline.RunOptions) -> None:
        self.options = options

    @abstractmethod
    def run(self, ctx: Context) -> dict:
        """Do the stage's work on ``ctx``; returns its stats."""


class Ingest(Stage):
    """Read the logs into ``requests``, ``prompts``, ``rejected``, ``ingest_log`` (committed batch by batch).

    Attributes
    ----------
    counts_ : dict
        ``read, accepted, rejected, duplicates`` of this run.
    quarantine_ : str or None
        The quarantine file of the rows this run rejected, if any.
    """

    name = "ingest"

    def run(self, ctx: Context) -> dict:
        self.counts_ = pipeline.ingest(ctx.ws, ctx.logs, ctx.run_id, ctx.column_map, ctx.strict,
                                       self.options.progress, self.options.ingest_workers, ctx.executor)
        path = pipeline.quarantine_path(ctx.ws, ctx.run_id)
        self.quarantine_ = path if os.path.exists(path) else None
        return self.counts_


class Embed(Stage):
    """Embed every prompt without a vector (shards committed one by one: resumable).

    Parameters
    ----------
    options : RunOptions
        Every option of the run.
    executor : Executor or None
        What runs the model (:mod:`analyzer.executor`): ``None`` in this process,
        :class:`analyzer.distributed.RayExecutor` on a Ray cluster (``--ray``).

    Attributes
    ----------
    counts_ : dict
        ``model_key, embedded_now, embedded_total, reused_from_cache``.
    """

    name = "embed"

    def __init__(self, options: pipeline.RunOptions, executor=None) -> None:
        super().__init__(options)
        self.executor = executor

    def run(self, ctx: Context) -> dict:
        self.counts_ = pipeline.embed(ctx.ws, self.options, self.executor or ctx.executor)
        return self.counts_


class Index(Stage):
    """Build (or extend the saved) FAISS index over the stored vectors and save it; hands ``vectors`` (hashes,
    vectors, index) on.

    Attributes
    ----------
    n_prompts_ : int
        Prompts in the index.
    """

    name = "index"

    def run(self, ctx: Context) -> dict:
        stats: dict = {}
        built = pipeline.build_index(ctx.ws, self.options, stats)
        ctx.put("vectors", built)
        self.n_prompts_ = int(len(built[0]))
        return {"prompts": self.n_prompts_, **stats}


class Cluster(Stage):
    """Group prompts into units: topic clusters (kNN graph + :meth:`topics`), noise attribution, task groups,
    template / scaffold / system families, intents. A workspace that has a clustering gets its new prompts
    assigned to it (:func:`analyzer.pipeline.assign`) unless ``options.recluster`` is set or
    :func:`analyzer.pipeline.choose_cluster_path` or the assignment's drift check call for a full clustering
    (:func:`analyzer.pipeline.cluster`). Writes ``prompt_clusters`` and ``system_clusters`` and hands
    ``label_work`` to the label stage.

    Attributes
    ----------
    path_ : str
        ``"full"`` or ``"incremental"``.
    grouping_ : Grouping
        What was found (:class:`analyzer.pipeline.Grouping`).
    discarded_ : dict or None
        The stats of a daily assignment discarded for drift.
    seconds_ : dict
        Seconds spent on ``assign`` and / or ``cluster``.
    """

    name = "cluster"

    def topics(self, nbrs: np.ndarray, sims: np.ndarray, params: cluster_mod.ClusterParams
               ) -> tuple[np.ndarray, np.ndarray]:
        """Topic clusters over a kNN graph: ``(labels, strengths)``, ``-1`` = noise (HDBSCAN,
        :func:`analyzer.cluster.cluster_knn_graph`). Override to swap the clustering algorithm."""
        return cluster_mod.cluster_knn_graph(nbrs, sims, params)

    def run(self, ctx: Context) -> dict:
        opts, vectors = self.options, ctx.get("vectors")
        path, why = pipeline.choose_cluster_path(ctx.ws, opts, pipeline.embedder_for(opts).key)
        self.discarded_, self.seconds_ = None, {}
        if path == "incremental":
            t0 = time.perf_counter()
            grouping = pipeline.assign(ctx.ws, opts, vectors, self.topics)
            self.seconds_["assign"] = time.perf_counter() - t0
            if grouping.stats.get("drift"):  # the day does not fit the clustering: nothing is written
                path, why, self.discarded_ = "full", grouping.stats["drift"], grouping.stats
        if path == "full":
            t0 = time.perf_counter()
            grouping = pipeline.cluster(ctx.ws, opts, vectors, self.topics, ctx.executor)
            grouping.stats["trigger"] = why
            self.seconds_["cluster"] = time.perf_counter() - t0
        self.path_, self.grouping_ = path, grouping
        if grouping.upsert:
            ctx.write(upsert={"prompt_clusters": ("prompt_hash", grouping.prompt_clusters),
                              "system_clusters": ("system_hash", grouping.system_clusters)})
        else:
            ctx.write(replace={"prompt_clusters": grouping.prompt_clusters,
                               "system_clusters": grouping.system_clusters})
        ctx.put("label_work", grouping.work)
        return grouping.stats


class Label(Stage):
    """One row per cluster in ``clusters``: counts (prompts, requests, accounts), c-TF-IDF keywords, recovered
    template, exemplars, label and content signals (training value, intent, tightness). A daily run keeps the
    stored rows, updating those of the clusters it touched.

    Attributes
    ----------
    rows_ : DataFrame
        The cluster rows written.
    """

    name = "label"

    def keywords(self, docs: list[str], labels: list[int], weights: list[float]) -> dict[int, list[str]]:
        """Keywords per cluster from its sampled member texts (``docs``, their cluster ``labels`` and request
        ``weights``): c-TF-IDF (:func:`analyzer.label.ctfidf_keywords`). Override to swap the representation."""
        return pipeline.DefaultLabelParts().keywords(docs, labels, weights)

    #: The recovered template of one cluster's sampled texts, variable slots marked: ``template(texts, seed)``
    #: (:meth:`analyzer.pipeline.DefaultLabelParts.template`, :func:`analyzer.label.extract_template`). Override to
    #: swap template detection. Kept as the default's own function, so that the label workers know it is the
    #: default and run it from :mod:`analyzer.label` alone (:func:`analyzer.pipeline.label_parts`).
    template = pipeline.DefaultLabelParts.template

    def run(self, ctx: Context) -> dict:
        self.rows_ = pipeline.label_rows(ctx.ws, ctx.get("label_work"), self.options, parts=self)
        ctx.write(replace={"clusters": self.rows_})
        return {"clusters": int(len(self.rows_)), "topic_clusters": int((self.rows_["kind"] == "topic").sum())}


class Score(Stage):
    """Group units into campaigns by shared accounts, compute signals, score and explain them, apply the
    watchlist and keep campaign ids across runs (:func:`analyzer.pipeline.score`).

    Attributes
    ----------
    stats_ : dict
        Campaigns, flagged, accounts, watchlist outcome, transitions.
    """

    name = "score"

    def run(self, ctx: Context) -> dict:
        self.stats_ = pipeline.score(ctx.ws, self.options, ctx.run_id, write=ctx.write)
        return self.stats_


class Map(Stage):
    """The app's 2-D map of a sample of prompts (:func:`analyzer.pipeline.make_map`): laid out afresh with
    ``options.recluster`` or when the prompts have grown enough, else the kept map extended.

    Attributes
    ----------
    stats_ : dict
        Points laid out and placed.
    """

    name = "map"

    def run(self, ctx: Context) -> dict:
        self.stats_ = pipeline.make_map(ctx.ws, self.options, write=ctx.write, relayout=self.options.recluster)
        return self.stats_


def load_class(key: str, path: str) -> type:
    """The class ``"package.module:ClassName"`` named by ``[stages] KEY``; a :class:`ConfigError` naming the key
    when it cannot be imported or does not implement :class:`StageLike`."""
    where = f"[stages] {key} = {path!r}"
    module_name, _, cls_name = path.partition(":")
    if not module_name or not cls_name:
        raise ConfigError(f"{where}: expected 'package.module:ClassName'")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{where}: cannot be loaded ({exc})") from None
    if not isinstance(cls, type) or not callable(getattr(cls, "run", None)):
        raise ConfigError(f"{where}: {cls_name} does not implement the stage interface "
                          "(analyzer.stages.StageLike: a class taking the run options, with a run(context) method)")
    return cls


def make_stage(name: str, options: pipeline.RunOptions, **kwargs) -> StageLike:
    """The configured class of stage ``name`` (``options.stages``), constructed with ``options`` (and
    ``kwargs``: the embed stage's ``executor``)."""
    return load_class(name, getattr(options.stages, name))(options, **kwargs)


def _commit(ctx: Context, names: list[str], point: str | None) -> None:
    """Write the queued tables of ``names`` and clear what they make stale, in one transaction."""
    if not ctx.pending:
        return
    with ctx.ws.transaction(point):
        ctx.flush()
        if not any(catalog.STAGES[n].appends for n in names):
            ctx.ws.clear_tables(catalog.stale_after(names))


def _enter(ctx: Context, name: str) -> None:
    """Make ``name`` the running stage; the memory meter samples at the boundary (a stage shorter than its
    interval still gets a figure)."""
    if ctx.peaks is not None:
        ctx.peaks.sample()
    ctx.stage = name
    if ctx.peaks is not None:
        ctx.peaks.sample()


def _run_one(ctx: Context, stage: StageLike, name: str) -> dict:
    _enter(ctx, name)
    stats = stage.run(ctx)
    _commit(ctx, [name], name)  # crash points NAME.before_commit / NAME.committed
    return stats


def _run_clustering(ctx: Context, cluster: StageLike, label: StageLike) -> dict:
    """The cluster and label stages, committed together under ``cluster`` (a full clustering) or ``assign``
    (a daily run's assignment)."""
    _enter(ctx, "cluster")
    stats = cluster.run(ctx)
    point = "assign" if stats.get("path") == "incremental" else "cluster"
    with ctx.ws.transaction(point):
        ctx.flush()
        _enter(ctx, "label")
        label_stats = label.run(ctx)
        ctx.flush()
        ctx.ws.clear_tables(catalog.stale_after(["cluster", "label"]))
    stats.setdefault("clusters", label_stats.get("topic_clusters", 0))
    return stats


class StagePeaks:
    """Peak resident memory of each stage, in MiB: a daemon thread reads the resident set of this process and its
    worker processes (:class:`analyzer.pipeline.ChildrenResident`) every ``interval`` seconds and charges it to
    the stage running then (``ctx.stage``). A spike shorter than the interval can be missed; the process's exact
    peak is :func:`analyzer.pipeline.peak_rss_mb`. Where ``/proc/self/statm`` does not exist (not Linux) each stage
    gets the process's peak so far. Each sample takes the interpreter's lock from the stage's own thread: at a
    tenth of a second, with the children listed anew every time, the meter took 7 s of CPU in a 1M run.

    Attributes
    ----------
    peaks_ : dict
        MiB by stage name, in the order the stages ran.
    """

    def __init__(self, ctx: Context, interval: float = 0.25) -> None:
        self.ctx, self.interval = ctx, interval
        self._children = pipeline.ChildrenResident()
        self.peaks_: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stage-peaks", daemon=True)

    def __enter__(self) -> StagePeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def sample(self) -> None:
        """Charge the resident set now to the running stage."""
        stage = self.ctx.stage
        if stage:
            now = pipeline.resident_mb() + self._children()
            self.peaks_[stage] = max(self.peaks_.get(stage, 0.0), round(now, 1))

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()


def run_stages(ctx: Context, names: Sequence[str], stages: dict[str, StageLike] | None = None,
               seconds: dict[str, float] | None = None, peaks: dict[str, float] | None = None) -> dict:
    """Run the stages ``names`` in the declared order (the configured classes, or ``stages``); returns each
    one's stats by name (and ``assign_discarded``, ``quarantine`` where they apply). ``seconds`` collects
    each stage's time, ``peaks`` its peak resident memory in MiB (:class:`StagePeaks`). The objects of
    ``stages`` that run are taken out of it (handed over: each is let go once it has run, with its learned
    state)."""
    watch = ctx.peaks = StagePeaks(ctx)
    try:
        with watch:
            return _run_in_order(ctx, names, stages, {} if seconds is None else seconds)
    finally:  # after the meter's last sample, at the end of the last stage
        if peaks is not None:
            peaks.update(watch.peaks_)


def _run_in_order(ctx: Context, names: Sequence[str], stages: dict[str, StageLike] | None,
                  seconds: dict[str, float]) -> dict:
    order = [s.name for s in catalog.PIPELINE if s.name in names]
    unknown = set(names) - set(order)
    if unknown:
        raise KeyError(f"no stage {sorted(unknown)}; the stages are {', '.join(catalog.STAGES)}")
    # Every class checked first. The given objects are taken out of ``stages``: the runner then holds the only
    # reference and lets go of each stage (and what it learned) once it has run (:func:`_release`).
    given = {n: stages.pop(n) for n in order if stages and n in stages}
    made = {n: given.get(n) or make_stage(n, ctx.options) for n in order}
    del given
    out: dict = {}
    for pos, name in enumerate(order):
        if name == "label" and "cluster" in order:
            continue  # committed with the cluster stage
        t0 = time.perf_counter()
        if name == "cluster":
            out["cluster"] = _run_clustering(ctx, made["cluster"], made["label"])
            extra = getattr(made["cluster"], "seconds_", {}) or {"cluster": time.perf_counter() - t0}
            for key, sec in extra.items():
                seconds[key] = round(sec, 3)
            seconds["label"] = round(time.perf_counter() - t0 - sum(extra.values()), 3)
            if getattr(made["cluster"], "discarded_", None):
                out["assign_discarded"] = made["cluster"].discarded_
        else:
            out[name] = _run_one(ctx, made[name], name)
            seconds[name] = round(time.perf_counter() - t0, 3)
            if name == "ingest" and getattr(made[name], "quarantine_", None):
                out["quarantine"] = made[name].quarantine_
        _release(ctx, made, [n for n in order[pos + 1:] if not (name == "cluster" and n == "label")])
    return out


def _release(ctx: Context, made: dict[str, StageLike], remaining: Sequence[str]) -> None:
    """Let go of what no stage still to run reads: the in-memory datasets (the vectors and FAISS index, the
    label work with every prompt's text) and the stage objects that ran, with their learned state. At 1M
    requests this is about a gigabyte that the score stage would otherwise hold at its peak."""
    needed = {d for n in remaining for d in catalog.STAGES[n].inputs}
    for dataset in [d for d in ctx.memory if d not in needed]:
        del ctx.memory[dataset]
    for name in [n for n in made if n not in remaining]:
        del made[name]
    ctx.ws.release_cache()  # the database blocks the stage read or wrote
    pipeline.return_free_memory()


#: The default class of each stage (the values of :class:`analyzer.catalog.StageClasses`).
DEFAULTS = {f.name: f.default for f in fields(StageClasses)}
