"""The Python API: the analysis from a notebook or another tool, results as pandas DataFrames.

::

    import analyzer

    result = analyzer.analyze("logs/day1.jsonl.gz")        # a path, a glob, a folder, a list of them, or a DataFrame
    result.campaigns[result.campaigns.flagged]             # one row per candidate campaign, best first
    result.accounts                                        # one row per account: score, campaign, flagged
    again = analyzer.open_workspace(result.workspace)      # the results of an existing workspace

:func:`analyze` does what ``analyzer run`` does (the command calls :func:`run_logs` and :func:`run_options`
too), with the same parameters under the same names, so a notebook and the command give the same campaigns
on the same input. A DataFrame is written to a Parquet file (in the workspace's ``frames/`` while the run
reads it) and read by the ingest exactly as a file would be: same column names, same validation, bad rows
quarantined (``Analysis.rejected``), not fatal, unless ``strict``, and the same frame analysed again into
the same workspace counts as duplicates.

Values are the workspace's own: account and campaign ids in these frames are exact (as in the JSON export),
so they join against ground truth or other tables. Ids come from the logs and may hold control or bidi
characters; escape them before showing them to a person (:func:`analyzer.export.sanitize`, ``ident=True``).
Text the analyzer writes from prompts (labels, keywords, templates, evidence, examples) is already escaped
that way, as in every export.

``import analyzer`` stays cheap: this module is loaded on first use of ``analyzer.analyze`` (or the other
names), and it imports the pipeline (numpy, pandas, FAISS...) only inside the functions.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from analyzer.executor import Executor
    from analyzer.pipeline import RunOptions
    from analyzer.workspace import Workspace

#: The name a DataFrame source gets in ``Analysis.rejected`` (its temporary file is gone by then).
DATAFRAME_SOURCE = "<DataFrame>"
#: Folder of a workspace where a DataFrame source is written for the ingest to read (removed after the run).
#: The file is named by its content's hash, so the same frame analysed again has the same source name and
#: its rows (rejected ones included) count as duplicates, as a file read again does.
FRAME_DIR = "frames"

CAMPAIGN_COLUMNS = ["campaign_id", "rank", "score", "flagged", "label", "kind", "keywords", "n_accounts",
                    "n_requests", "accounts", "evidence", "signals", "template", "examples", "clusters",
                    "first_seen", "last_seen", "first_flagged", "triage"]
ACCOUNT_COLUMNS = ["account_id", "score", "campaign_id", "flagged", "n_requests", "n_prompts",
                   "share_in_campaign", "first_seen", "last_seen", "signals"]
CLUSTER_COLUMNS = ["cluster_id", "label", "kind", "keywords", "template", "n_prompts", "n_requests", "n_accounts",
                   "campaign_id", "exemplars", "signals"]
REJECTED_COLUMNS = ["run_id", "source", "line", "field", "reason", "raw"]


def check_device(device: str) -> str:
    """``device`` if the analysis can run there: ``"cpu"``, or a torch device whose GPU torch sees (torch is
    imported only for a GPU). ``ValueError`` naming what is wrong otherwise."""
    if device == "cpu":
        return device
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"unknown device {device!r}: 'cpu', or a GPU as torch names it ('cuda', 'cuda:1')") from exc
    if dev.type != "cuda":
        raise ValueError(f"device {device!r}: only 'cpu' or a CUDA GPU ('cuda', 'cuda:1') is supported")
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: torch sees no CUDA GPU here (torch {torch.__version__})")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: torch sees {torch.cuda.device_count()} GPU(s)")
    return device


def run_options(model: str = "minilm", tier: str | None = None, max_seq_length: int = 128, batch_size: int = 16,
                embedding_cache: str | None = None, min_cluster_size: int | None = None,
                min_samples: int | None = None, knn: int | None = None, selection: str | None = None,
                flag_threshold: float | None = None, weights: Mapping[str, float] | None = None, seed: int = 0,
                make_map: bool = True, progress: bool = True, embed_chunk: int | None = None,
                recluster: bool = False, workspace: str | os.PathLike[str] | None = None,
                config_file: str | os.PathLike[str] | None = None, ingest_workers: int = 0,
                device: str = "cpu", text_workers: int = 0) -> RunOptions:
    """:class:`~analyzer.pipeline.RunOptions` from the parameters of ``analyzer run`` (the command calls this).

    Names follow the command's options (``--min-cluster-size`` is ``min_cluster_size``...); ``make_map`` is
    the opposite of ``--no-map`` and ``progress`` of ``--quiet``. ``None`` keeps the default (for ``tier``:
    :data:`analyzer.embed.DEFAULT_TIER`; :func:`run_logs` replaces it by the workspace's tier when the caller
    gave none). ``weights`` sets some signal weights, the others keep theirs. The configuration files
    (``WORKSPACE/analyzer.toml``, then ``config_file``; see :mod:`analyzer.config`) apply first, and every
    parameter given here overrides them.

    ``device``: ``"cpu"``, or a GPU as torch names it (``"cuda"``): the accurate tier and the kNN graph run there
    (:func:`check_device`).

    Raises ``ValueError`` for an unknown tier, selection, signal weight or device, and
    :class:`analyzer.config.ConfigError` (a ``ValueError``) for a bad configuration file.
    """
    from analyzer import config as config_mod
    from analyzer.embed import DEFAULT_TIER, TIERS
    from analyzer.pipeline import RunOptions

    if tier is not None and tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; choose from {list(TIERS)}")
    if selection is not None and selection not in ("leaf", "eom"):
        raise ValueError(f"unknown selection {selection!r}; choose 'leaf' or 'eom'")
    opts = RunOptions(model=model, tier=tier or DEFAULT_TIER, max_seq_length=max_seq_length, batch_size=batch_size,
                      seed=seed, make_map=make_map, progress=progress, embedding_cache=embedding_cache,
                      recluster=recluster, ingest_workers=ingest_workers, device=check_device(device),
                      text_workers=text_workers)
    if embed_chunk is not None:
        opts.embed_chunk = embed_chunk
    opts = config_mod.apply(config_mod.load_config(None if workspace is None else os.fspath(workspace),
                                                   None if config_file is None else os.fspath(config_file)), opts)
    cp = opts.cluster
    opts.cluster = replace(cp, k=knn or cp.k, min_cluster_size=min_cluster_size or cp.min_cluster_size,
                           min_samples=min_samples or cp.min_samples, selection=selection or cp.selection)
    if flag_threshold is not None:
        opts.scoring = replace(opts.scoring, flag_threshold=flag_threshold)
    if weights:
        unknown = set(weights) - set(opts.scoring.weights)
        if unknown:
            raise ValueError(f"unknown signals {sorted(unknown)}; known: {sorted(opts.scoring.weights)}")
        opts.scoring = replace(opts.scoring, weights={**opts.scoring.weights,
                                                      **{k: float(v) for k, v in weights.items()}})
    return opts


def run_logs(ws: Workspace, paths: Sequence[str], options: RunOptions, column_map: Mapping[str, str] | None = None,
             strict: bool = False, tier: str | None = None, executor: Executor | None = None) -> dict:
    """The work of ``analyzer run`` on an open workspace: every stage on the log files ``paths`` (expanded
    already, see :func:`analyzer.ingest.expand_paths`); returns the run's stats (:func:`analyzer.pipeline.run_all`).

    ``tier`` is the tier the caller asked for: ``None`` keeps the one the workspace already uses (a new
    workspace gets ``options.tier``), so that a workspace keeps one vector space across runs. ``executor`` runs
    the embedding model (default: in this process; :class:`analyzer.distributed.RayExecutor` on a Ray cluster).
    """
    from analyzer.pipeline import run_all, workspace_tier

    if tier is None:
        options.tier = workspace_tier(ws) or options.tier
    else:
        options.tier = tier
    return run_all(ws, list(paths), options, dict(column_map) if column_map else None, strict, executor=executor)


def _ray_executor(address: str | None, actors: int | None) -> Executor | None:
    """The Ray executor for ``address`` (``None`` without one: everything runs in this process)."""
    if address is None:
        return None
    from analyzer.distributed import RayExecutor

    return RayExecutor(address, actors)


@dataclass(eq=False)
class Analysis:
    """The results of a workspace's latest analysis, as DataFrames (read when it was made; nothing stays open).

    * ``campaigns``: one row per candidate campaign, best first (flagged and unflagged): ``campaign_id``,
      ``rank``, ``score``, ``flagged``, ``label``, ``kind`` (intent, e.g. ``"rubric grading"``), ``keywords``
      (list), ``n_accounts``, ``n_requests``, ``accounts`` (list of member ids, most requests first),
      ``evidence`` (list of sentences), ``signals`` (dict), ``template``, ``examples``, ``clusters``,
      ``first_seen``, ``last_seen``, ``first_flagged`` (UTC timestamps) and ``triage`` (latest decision:
      dict or None). The same values as the JSON export's campaigns (``id`` is ``campaign_id`` here).
    * ``accounts``: one row per account, highest score first: ``account_id``, ``score``, ``campaign_id`` (its
      campaign, or None), ``flagged`` (that campaign is flagged), ``n_requests``, ``n_prompts``,
      ``share_in_campaign``, ``first_seen``, ``last_seen``, ``signals`` (dict).
    * ``clusters``: one row per prompt cluster or template family (``cluster_id``, ``label``, ``kind``,
      ``keywords``, ``template``, ``n_prompts``, ``n_requests``, ``n_accounts``, ``campaign_id``,
      ``exemplars``, ``signals``).
    * ``rejected``: rows the ingest quarantined (``run_id``, ``source``, ``line``, ``field``, ``reason``,
      ``raw``); for a DataFrame source, ``source`` is ``"<DataFrame>"`` and ``line`` the 1-based row position.
    * ``stats``: the run's counts and stage seconds (empty for :func:`open_workspace`).
    * ``workspace``: the workspace folder (``analyzer app WORKSPACE``, ``analyzer export``...). A temporary
      workspace (``analyze(..., workspace=None)``) is deleted with this object or by :meth:`cleanup`.
    """

    workspace: str
    campaigns: pd.DataFrame
    accounts: pd.DataFrame
    clusters: pd.DataFrame
    rejected: pd.DataFrame
    stats: dict = field(default_factory=dict)
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def flagged(self) -> pd.DataFrame:
        """The flagged campaigns (rows of ``campaigns``)."""
        return self.campaigns[self.campaigns["flagged"]]

    def export(self, fmt: str = "json", redact: bool = False) -> str:
        """The workspace's export as text, as ``analyzer export --format FMT`` writes it (json, csv, markdown)."""
        from analyzer.export import export
        from analyzer.workspace import Workspace

        with Workspace(self.workspace, read_only=True) as ws:
            return export(ws, fmt, redact)

    def cleanup(self) -> None:
        """Delete a temporary workspace now (nothing happens for a workspace the caller named)."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __repr__(self) -> str:
        n_flagged = int(self.campaigns["flagged"].sum()) if len(self.campaigns) else 0
        return (f"Analysis({self.workspace!r}: {len(self.campaigns)} candidate campaigns, {n_flagged} flagged, "
                f"{len(self.accounts)} accounts, {len(self.rejected)} rejected rows)")


def analyze(source: Any, workspace: str | os.PathLike[str] | None = None, *,
            column_map: Mapping[str, str] | str | None = None, strict: bool = False, tier: str | None = None,
            model: str = "minilm", max_seq_length: int = 128, batch_size: int = 16,
            embedding_cache: str | None = None, min_cluster_size: int | None = None,
            min_samples: int | None = None, knn: int | None = None, selection: str | None = None,
            flag_threshold: float | None = None, weights: Mapping[str, float] | None = None, seed: int = 0,
            make_map: bool = False, progress: bool = True, embed_chunk: int | None = None,
            recluster: bool = False, config_file: str | os.PathLike[str] | None = None,
            ray_address: str | None = None, ray_actors: int | None = None, ingest_workers: int = 0,
            device: str = "cpu", text_workers: int = 0) -> Analysis:
    """Analyse request logs as ``analyzer run`` does and return the results as DataFrames (:class:`Analysis`).

    ``source``: a log file, folder or glob, a list of them (JSONL / CSV / Parquet, optionally gzipped), or a
    pandas DataFrame with the columns the ingest accepts (``account_id``, ``timestamp``, ``prompt`` or
    ``messages``, optional ``request_id``, ``model``, ``ip``, ``user_agent``, ``org_id``...; see the README's
    Input section). ``workspace``: a folder to analyse into (created if missing; a workspace that has data
    already gets the new requests added, as with the command); ``None`` uses a temporary one.

    The other parameters are the command's options (``analyzer run --help``): ``column_map`` (a mapping
    ``{source column: canonical}`` or the command's ``"user=account_id,text=prompt"``), ``strict``, ``tier``
    (``"fast"`` or ``"accurate"``; default: the workspace's tier, else fast), ``model``, ``max_seq_length``,
    ``batch_size``, ``embedding_cache``, ``min_cluster_size``, ``min_samples``, ``knn``, ``selection``,
    ``flag_threshold``, ``weights`` (a dict of signal weights), ``seed``, ``embed_chunk``, ``recluster``,
    ``config_file`` (a TOML configuration, read after ``WORKSPACE/analyzer.toml``; see ``analyzer config show``).
    ``make_map`` (default off here, on in the command) computes the app's 2-D map; ``progress`` shows bars.
    ``ray_address`` (the command's ``--ray``) parses the log files, embeds and builds the kNN graph on a Ray
    cluster (:class:`analyzer.distributed.RayExecutor`, with ``ray_actors`` actors and shards); by default all of
    it runs in this process. ``ingest_workers``: log files parsed at once by reader processes (1: in this
    process; 0: one per CPU for inputs of 32 MiB or more). ``device``: ``"cpu"`` or a GPU (``"cuda"``) for the
    accurate tier's model and the kNN graph (the command's ``--device``). ``text_workers``: processes for the
    cluster and label stages' text work on large runs (0: one per CPU; 1: all in this process).

    Raises :class:`analyzer.ingest.IngestError` (a ``ValueError``) for a path that matches nothing or a bad
    row under ``strict``, :class:`analyzer.workspace.WorkspaceLocked` when another run writes the workspace,
    and ``ValueError`` for an unknown option value.
    """
    import pandas as pd

    from analyzer.ingest import expand_paths, parse_column_map
    from analyzer.workspace import Workspace

    opts = run_options(model=model, tier=tier, max_seq_length=max_seq_length, batch_size=batch_size,
                       embedding_cache=embedding_cache, min_cluster_size=min_cluster_size, min_samples=min_samples,
                       knn=knn, selection=selection, flag_threshold=flag_threshold, weights=weights, seed=seed,
                       make_map=make_map, progress=progress, embed_chunk=embed_chunk, recluster=recluster,
                       workspace=workspace, config_file=config_file, ingest_workers=ingest_workers,
                       device=device, text_workers=text_workers)
    cmap = parse_column_map(column_map) if isinstance(column_map, str) else column_map
    is_frame = isinstance(source, pd.DataFrame)
    if is_frame:
        paths: list[str] = []
    elif isinstance(source, str | os.PathLike | Sequence):
        paths = expand_paths([os.fspath(source)] if isinstance(source, str | os.PathLike)
                             else [os.fspath(p) for p in source])
    else:
        raise TypeError(f"source must be a path, a list of paths or a pandas DataFrame, not {type(source).__name__}")
    tmp_ws = tempfile.TemporaryDirectory(prefix="analyzer-") if workspace is None else None
    try:
        ws = Workspace(os.path.join(tmp_ws.name, "workspace") if tmp_ws else os.fspath(workspace), create=True)
        frame_file = None
        try:
            if is_frame:
                frame_file = write_frame(source, os.path.join(ws.path, FRAME_DIR))
                paths = [frame_file]
            stats = run_logs(ws, paths, opts, cmap, strict, tier, _ray_executor(ray_address, ray_actors))
        finally:
            ws.close()
            if frame_file is not None:
                os.remove(frame_file)
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.dirname(frame_file))
        result = open_workspace(ws.path)
    except BaseException:
        if tmp_ws is not None:
            tmp_ws.cleanup()
        raise
    result.stats = stats
    result._tmp = tmp_ws
    if is_frame:
        frames = result.rejected["source"].str.startswith(os.path.join(ws.path, FRAME_DIR, ""))
        result.rejected.loc[frames, "source"] = DATAFRAME_SOURCE
    return result


def write_frame(frame: pd.DataFrame, folder: str) -> str:
    """Write a DataFrame source into ``folder`` for the ingest to read, named by its content's hash
    (``dataframe-<sha256 prefix>.parquet``). Parquet keeps types (timestamps stay timestamps, ``messages``
    lists stay lists); when pyarrow cannot type a column (mixed values in one column, e.g. ids that are numbers
    in some rows and strings in others), the frame is written as JSON lines instead. Returns the file's path."""
    import pyarrow as pa

    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{os.getpid()}")
    try:
        frame.to_parquet(tmp, index=False)
        ext = "parquet"
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        frame.to_json(tmp, orient="records", lines=True, date_format="iso", date_unit="us", force_ascii=False,
                      default_handler=str)
        ext = "jsonl"
    digest = hashlib.sha256()
    with open(tmp, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    path = os.path.join(folder, f"dataframe-{digest.hexdigest()[:16]}.{ext}")
    os.replace(tmp, path)
    return path


def open_workspace(path: str | os.PathLike[str]) -> Analysis:
    """The results of an existing workspace's latest analysis (opened read-only: no lock, nothing written, so
    it works next to the app or a running export). Raises :class:`analyzer.workspace.WorkspaceMissing` for a
    folder that is not a workspace."""
    from analyzer import store
    from analyzer.workspace import Workspace

    with Workspace(os.fspath(path), read_only=True) as ws:
        store.use_utc(ws)
        return Analysis(workspace=ws.path, campaigns=campaign_frame(ws), accounts=account_frame(ws),
                        clusters=cluster_frame(ws), rejected=rejected_frame(ws))


def campaign_frame(ws: Workspace) -> pd.DataFrame:
    """The campaigns of the JSON export as a DataFrame, ids exact (:func:`analyzer.export.exact_ids`)."""
    import pandas as pd

    from analyzer.export import exact_ids, load_campaigns

    rows = [exact_ids(c) for c in load_campaigns(ws)]
    frame = pd.DataFrame(rows, columns=["id", *CAMPAIGN_COLUMNS[1:]]).rename(columns={"id": "campaign_id"})
    for col in ("first_seen", "last_seen", "first_flagged"):
        frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
    return frame.astype({"rank": "int64", "score": "float64", "flagged": "bool", "n_accounts": "int64",
                         "n_requests": "int64"})


def account_frame(ws: Workspace) -> pd.DataFrame:
    """One row per account, highest score first (:func:`analyzer.store.account_scores`)."""
    import pandas as pd

    from analyzer import store

    if not {"accounts", "campaigns", "campaign_accounts"} <= store.table_names(ws):
        return pd.DataFrame(columns=ACCOUNT_COLUMNS)
    frame = store.account_scores(ws)
    frame["signals"] = frame["signals"].map(lambda s: dict(s) if isinstance(s, dict) else {})
    frame["campaign_id"] = frame["campaign_id"].astype(object).where(frame["campaign_id"].notna(), None)
    return frame[ACCOUNT_COLUMNS].reset_index(drop=True)


def cluster_frame(ws: Workspace) -> pd.DataFrame:
    """The ``clusters`` table, text escaped (:func:`analyzer.export.sanitize`); ``keywords`` and ``exemplars``
    lists, ``signals`` a dict."""
    import pandas as pd

    from analyzer import store
    from analyzer.export import sanitize

    if "clusters" not in store.table_names(ws):
        return pd.DataFrame(columns=CLUSTER_COLUMNS)
    frame = store.cluster_rows(ws).sort_values("n_requests", ascending=False, kind="stable")
    if "kind" not in frame:
        frame["kind"] = None

    def text(v: object) -> object:
        return sanitize(v) if isinstance(v, str) else v

    def texts(v: object) -> list:
        return [text(x) for x in v] if isinstance(v, list) else []

    frame["label"] = frame["label"].map(text)
    frame["template"] = frame["template"].map(text)
    frame["keywords"] = frame["keywords"].map(texts)
    frame["exemplars"] = frame["exemplars"].map(texts)
    frame["signals"] = frame["signals"].map(lambda s: dict(s) if isinstance(s, dict) else {})
    frame["campaign_id"] = frame["campaign_id"].astype(object).where(frame["campaign_id"].notna(), None)
    return frame[CLUSTER_COLUMNS].reset_index(drop=True)


def rejected_frame(ws: Workspace) -> pd.DataFrame:
    """Rows the ingest quarantined, every run's, in order."""
    import pandas as pd

    from analyzer import store

    if "rejected" not in store.table_names(ws):
        return pd.DataFrame(columns=REJECTED_COLUMNS)
    return store.rejected_rows(ws)[REJECTED_COLUMNS]
