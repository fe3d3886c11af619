"""The declared pipeline: every stage with the datasets it reads and writes, in one place.

Modelled on Kedro's nodes and data catalog: each stage names its inputs and outputs by dataset, so the order
and the direction of the flow can be read (and checked, ``tests/test_stages.py``) here rather than found in
the code. A dataset is a workspace table, a file of the workspace, an in-memory result handed from one stage
to the next in the same process (``MEMORY``), or a raw input from outside the pipeline (``RAW``: the log files
and what analysts decide through ``analyzer watch`` / the app).

Rules the tests hold the declaration to:

* **one way**: every input of a stage is a raw input or the output of a stage before it;
* **one writer**: every dataset is the output of exactly one stage, and at run time
  :meth:`analyzer.workspace.Workspace.write_tables` refuses to write a table for a stage that does not
  declare it;
* ``previous`` inputs are read as the last run left them (the incremental cluster stage updates the stored
  clustering; the score stage matches campaigns against the last scored ones): they are named apart so that
  the one-way rule stays checkable, and they are the stage's own or a downstream stage's *state*.

When a stage that replaces its results (``appends=False``) commits, the runner clears, in the same
transaction, the *derived* outputs of every stage downstream of it (:func:`stale_after`): outputs that are
not carried from run to run (``STATE``). So no table ever shows results computed from older inputs than those
upstream of it: a run killed between the cluster and the score stage leaves new clusters and no campaigns,
never new clusters beside old campaigns. Stages that only add data (ingest, embed, index) clear nothing: a
daily run assigns its new prompts to the stored clustering.

This module holds data and small functions only (no heavy imports): the workspace and the configuration read
it. The stage classes that do the work are in :mod:`analyzer.stages`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: Datasets from outside the pipeline.
RAW = {
    "logs": "the log files given to 'analyzer run' / 'analyzer ingest'",
    "watchlist": "fingerprints of decided campaigns ('analyzer watch add', the app); with watch_vectors",
    "watch_vectors": "the watch entries' fingerprint centroids",
    "triage": "analysts' decisions on campaigns (the app), read by the exports",
}

#: Datasets that live only in the process of a run, handed from one stage to the next.
MEMORY = {
    "vectors": "(prompt hashes, vectors, FAISS index) as the index stage built them",
    "label_work": "what the label stage labels: the grouping of each kind of unit, with the prompts' texts, "
                  "intents and vectors (and, for a daily run, the stored clusters that gained prompts)",
}

#: Tables that a stage carries from run to run (it reads the previous run's rows to write the next ones):
#: never cleared as stale.
STATE = ("campaign_history", "campaign_identity", "campaign_members", "campaign_ended_members")

#: Tables never cleared as stale: the score stage's :data:`STATE`, and the map (``prompt_map``), whose positions
#: depend only on the vectors: a run keeps the shown points and adds new ones (the app colours them by the
#: current clusters and campaigns).
KEPT = (*STATE, "prompt_map")


@dataclass(frozen=True)
class StageSpec:
    """One stage of the pipeline: its name (the ``[stages]`` key of the configuration and the name
    :meth:`~analyzer.workspace.Workspace.write_tables` checks), what it reads, what it writes.

    Parameters
    ----------
    name : str
        The stage's name.
    inputs : tuple of str
        Datasets it reads, each a raw input or an upstream stage's output.
    outputs : tuple of str
        Datasets it writes (tables, files, in-memory results); no other stage writes them.
    previous : tuple of str
        Datasets it reads as the previous run left them (its own state, or the stored clustering for a daily
        run): not part of the one-way order.
    appends : bool
        True for a stage that only adds rows (ingest, embed, index): its commits make nothing downstream stale.
    job : str
        What it does, in a line.
    """

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    previous: tuple[str, ...] = ()
    appends: bool = False
    job: str = ""


#: The pipeline, in the order its stages run. ``analyzer run`` runs all of them (map unless ``--no-map``);
#: ``analyzer ingest / embed / cluster / score / map`` run one (cluster: index, cluster and label).
PIPELINE: tuple[StageSpec, ...] = (
    StageSpec("ingest", ("logs",), ("requests", "prompts", "rejected", "ingest_log", "quarantine_file"),
              appends=True, job="read logs, normalise to the request record, quarantine bad rows"),
    StageSpec("embed", ("prompts",), ("embedded", "embedding_shards"), appends=True,
              job="embed every unique prompt without a vector (resumable shards)"),
    StageSpec("index", ("embedded", "embedding_shards"), ("faiss_index", "vectors"), appends=True,
              job="FAISS index over the prompt vectors"),
    StageSpec("cluster", ("vectors", "requests", "prompts"), ("prompt_clusters", "system_clusters", "label_work"),
              previous=("prompt_clusters", "system_clusters", "clusters"),
              job="topic clusters (kNN graph, HDBSCAN), template / scaffold / system families, intents, tasks; "
                  "a daily run assigns new prompts to the stored ones"),
    StageSpec("label", ("label_work", "requests", "prompt_clusters", "system_clusters"), ("clusters",),
              previous=("clusters",),
              job="one row per cluster: counts, keywords, template, exemplars, label, content signals"),
    StageSpec("score", ("requests", "prompts", "prompt_clusters", "system_clusters", "clusters", "watchlist",
                        "watch_vectors", "embedded", "embedding_shards"),
              ("campaigns", "campaign_accounts", "accounts", "cluster_campaigns", *STATE),
              previous=STATE,
              job="group units into campaigns, signals, score, watchlist, stable ids across runs"),
    StageSpec("map", ("embedded", "embedding_shards", "prompt_clusters", "cluster_campaigns"), ("prompt_map",),
              previous=("prompt_map",),
              job="the app's 2-D map of a sample of prompts: laid out, or the kept one extended"),
    StageSpec("export", ("campaigns", "campaign_accounts", "accounts", "clusters", "cluster_campaigns", "requests",
                         "triage", "campaign_history", "campaign_identity", "ingest_log"), ("export_files",),
              appends=True, job="JSON / CSV / Markdown / STIX files (the app reads the same tables)"),
)

#: Stage name -> its spec.
STAGES: dict[str, StageSpec] = {s.name: s for s in PIPELINE}


class UndeclaredOutput(ValueError):
    """A stage tried to write a dataset it does not declare as an output."""


def outputs_of(stage: str) -> tuple[str, ...]:
    """The datasets ``stage`` declares as outputs; ``KeyError`` naming the known stages for an unknown one."""
    if stage not in STAGES:
        raise KeyError(f"no stage {stage!r}; the stages are {', '.join(STAGES)}")
    return STAGES[stage].outputs


def check_outputs(stage: str, datasets: Iterable[str]) -> None:
    """Raise :class:`UndeclaredOutput` when ``stage`` does not declare every one of ``datasets``."""
    declared = outputs_of(stage)
    extra = sorted(set(datasets) - set(declared))
    if extra:
        raise UndeclaredOutput(f"stage {stage!r} may not write {', '.join(extra)}: its outputs are "
                               f"{', '.join(declared)} (analyzer.catalog.PIPELINE)")


def writer_of(dataset: str) -> str | None:
    """The stage that writes ``dataset`` (``None`` for a raw input)."""
    found = [s.name for s in PIPELINE if dataset in s.outputs]
    return found[0] if found else None


def downstream_of(stages: Iterable[str]) -> list[str]:
    """The stages that read, directly or not, an output of ``stages`` (not ``stages`` themselves), in order."""
    dirty = set(stages)
    made: set[str] = set()
    for name in dirty:
        made |= set(STAGES[name].outputs)
    found = []
    for spec in PIPELINE:
        if spec.name not in dirty and made & set(spec.inputs):
            found.append(spec.name)
            made |= set(spec.outputs)
    return found


def stale_after(stages: Iterable[str]) -> list[str]:
    """The workspace tables the runner clears when ``stages`` commit new results: the derived (not
    :data:`KEPT`, not in-memory, not file) outputs of the stages downstream of them."""
    out: list[str] = []
    for name in downstream_of(stages):
        out += [d for d in STAGES[name].outputs if d not in KEPT and d not in MEMORY and d in TABLES]
    return out


#: The workspace's tables written by stages (files and in-memory datasets are the other outputs).
TABLES = ("requests", "prompts", "rejected", "ingest_log", "embedded", "prompt_clusters", "system_clusters",
          "clusters", "campaigns", "campaign_accounts", "accounts", "cluster_campaigns", *STATE, "prompt_map")


@dataclass(frozen=True)
class StageClasses:
    """The class that runs each stage, as ``"package.module:ClassName"`` (section ``[stages]``): a class taking
    the run's options, with a ``run(context)`` method (:class:`analyzer.stages.StageLike`); subclass the default
    to swap one part of it (e.g. ``Cluster.topics``, the topic clustering algorithm). Changing the cluster or
    label class calls for a full re-cluster, as changing the cluster parameters does."""

    #: Read the logs into the workspace (requests, prompts, rejected rows).
    ingest: str = "analyzer.stages:Ingest"
    #: Embed the prompts without a vector.
    embed: str = "analyzer.stages:Embed"
    #: Build the FAISS index over the vectors.
    index: str = "analyzer.stages:Index"
    #: Topic clusters, template / scaffold / system families, intents, tasks (prompt_clusters, system_clusters).
    cluster: str = "analyzer.stages:Cluster"
    #: One row per cluster: counts, keywords, template, exemplars, label, content signals (clusters).
    label: str = "analyzer.stages:Label"
    #: Campaigns: grouping, signals, score, evidence, watchlist, ids across runs.
    score: str = "analyzer.stages:Score"
    #: The app's 2-D map.
    map: str = "analyzer.stages:Map"


def stage_table() -> str:
    """The stages as a Markdown table (stage, default class, reads, writes, job): the stage list of
    ``docs/design.md``, which a test checks against this declaration."""
    classes = {f: getattr(StageClasses(), f) for f in StageClasses.__dataclass_fields__}
    rows = ["| stage | default class | reads | writes | job |", "|---|---|---|---|---|"]
    for s in PIPELINE:
        cls = f"`{classes[s.name].split(':')[1]}`" if s.name in classes else "- (`analyzer export`, the app)"
        reads = ", ".join(f"`{d}`" for d in s.inputs)
        if s.previous:
            reads += "; previous run's " + ", ".join(f"`{d}`" for d in s.previous)
        writes = ", ".join(f"`{d}`" for d in s.outputs)
        rows.append(f"| `{s.name}` | {cls} | {reads} | {writes} | {s.job} |")
    return "\n".join(rows)


def mermaid() -> str:
    """The data flow as a Mermaid flowchart (stages as boxes, datasets as rounded nodes, each declared once):
    the diagram of ``docs/design.md``, which a test checks against this declaration."""
    lines = ["flowchart TD"]
    seen: set[str] = set()

    def node(d: str) -> str:
        if d in seen:
            return d
        seen.add(d)
        return f"{d}([{d}])"

    for spec in PIPELINE:
        lines.append(f"    {spec.name}[[{spec.name}]]")
        lines += [f"    {node(d)} --> {spec.name}" for d in spec.inputs]
        lines += [f"    {spec.name} --> {node(d)}" for d in spec.outputs]
    return "\n".join(lines)
