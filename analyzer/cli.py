"""The ``analyzer`` command line: a thin shell over :mod:`analyzer.pipeline` and :mod:`analyzer.export`."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

import click

from analyzer import __version__
from analyzer.campaigns import ScoringConfig
from analyzer.cluster import ClusterParams
from analyzer.embed import DEFAULT_TIER, TIERS
from analyzer.export import sanitize
from analyzer.pipeline import RunOptions

#: TLP levels of STIX exports (kept here so that ``--help`` needs no stix2 import).
TLP_LEVELS = ("clear", "green", "amber", "amber+strict", "red")

WORKSPACE = click.option(
    "--workspace", "-w", required=True, type=click.Path(file_okay=False), help="Workspace folder (created if missing)."
)
CONFIG = click.option(
    "--config", "config_file", default=None, type=click.Path(dir_okay=False),
    help="A TOML configuration (see 'analyzer config show'): over the defaults and WORKSPACE/analyzer.toml, "
         "under explicit flags.")


def _model_options(f):
    f = click.option("--model", default="minilm", show_default=True,
                     help="Embedding model: 'minilm' (packaged all-MiniLM-L6-v2), a local model folder, or a cached hub name.")(f)
    f = click.option("--tier", default=None, type=click.Choice(TIERS),
                     help=f"Embedding tier: 'fast' (a static model distilled once from MiniLM and cached; tens of "
                          f"thousands of prompts/s) or 'accurate' (MiniLM itself, ONNX int8 where available; better "
                          f"on paraphrase, ~100x slower). Default: the tier the workspace already uses, else "
                          f"'{DEFAULT_TIER}'.")(f)
    f = click.option("--max-seq-length", default=128, show_default=True, type=int,
                     help="Tokens kept per prompt when embedding.")(f)
    f = click.option("--batch-size", default=16, show_default=True, type=int, help="Prompts per embedding batch.")(f)
    f = click.option("--device", default="cpu", show_default=True, envvar="ANALYZER_DEVICE",
                     help="Where the accurate tier's model and the kNN graph run: 'cpu' (ONNX int8 and FAISS), or "
                          "a GPU as torch names it ('cuda', 'cuda:1': the model in fp16, the graph exact). Also "
                          "$ANALYZER_DEVICE.")(f)
    f = click.option("--embedding-cache", default=None, type=click.Path(file_okay=False),
                     help="A folder shared by several workspaces: vectors found there are reused, new ones added.")(f)
    return f

TEXT_WORKERS = click.option(
    "--text-workers", default=0, show_default=True, type=click.IntRange(min=0),
    help="Processes for the fast tier's embedding and the cluster and label stages' pure-Python text work "
         "(sentence scan, keywords, templates) on runs of 60,000 texts or more (0: one per CPU; 1: all in this "
         "process). The same result either way.")


def _cluster_options(f):
    # Defaults None: a flag given overrides the configuration files, one not given leaves them be.
    f = click.option("--min-cluster-size", default=None, show_default=str(ClusterParams.min_cluster_size), type=int,
                     help="Fewest unique prompts in a cluster: the smallest detectable campaign template.")(f)
    f = click.option("--min-samples", default=None, show_default=str(ClusterParams.min_samples), type=int,
                     help="HDBSCAN min_samples (higher = more conservative, more noise).")(f)
    f = click.option("--knn", default=None, show_default=str(ClusterParams.k), type=int, help="Neighbours per prompt in the kNN graph.")(f)
    f = click.option("--selection", default=None, show_default=ClusterParams.selection, type=click.Choice(["leaf", "eom"]),
                     help="HDBSCAN cluster selection method.")(f)
    return f


def _score_options(f):
    f = click.option("--flag-threshold", default=None, show_default=str(ScoringConfig.flag_threshold), type=float,
                     help="Campaigns scoring at least this are flagged.")(f)
    f = click.option("--weights", default=None, metavar="JSON",
                     help='Signal weights as JSON, e.g. \'{"focus": 3, "sync": 2}\' (others keep defaults).')(f)
    return f


def _options(model="minilm", tier=None, max_seq_length=128, batch_size=16, device="cpu", embedding_cache=None,
             min_cluster_size=None, min_samples=None, knn=None,
             selection=None, flag_threshold=None, weights=None, seed=0, no_map=False, quiet=False,
             config_file=None, workspace=None) -> RunOptions:
    from analyzer import config as config_mod
    from analyzer.api import run_options  # shared with the Python API: the same parameters mean the same run

    if weights:
        try:
            weights = json.loads(weights)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"--weights is not valid JSON: {exc}") from None
    try:
        return run_options(model=model, tier=tier, max_seq_length=max_seq_length, batch_size=batch_size,
                           device=device, embedding_cache=embedding_cache, min_cluster_size=min_cluster_size,
                           min_samples=min_samples, knn=knn, selection=selection, flag_threshold=flag_threshold,
                           weights=weights, seed=seed, make_map=not no_map, progress=not quiet,
                           workspace=workspace, config_file=config_file)
    except config_mod.ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:
        raise click.BadParameter(f"--weights: {exc}" if weights else str(exc)) from None


def _configured(opts: RunOptions, workspace: str | None, config_file: str | None) -> RunOptions:
    """``opts`` with the configuration of ``WORKSPACE/analyzer.toml`` and ``--config`` (analyzer.config)."""
    from analyzer import config as config_mod

    try:
        return config_mod.apply(config_mod.load_config(workspace, config_file), opts)
    except config_mod.ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _effective(opts: RunOptions) -> dict:
    """The configuration ``opts`` runs with, as recorded in the run's params."""
    from analyzer import config as config_mod

    return config_mod.as_dict(config_mod.of_options(opts))


def _open(path: str, create: bool = False, read_only: bool = False):
    """The workspace at ``path`` (read-only: no lock taken, nothing written); a clear error if it is absent or
    another run holds it."""
    from analyzer.workspace import Workspace, WorkspaceLocked, WorkspaceMissing

    try:
        return Workspace(path, create=create, read_only=read_only)
    except (WorkspaceMissing, WorkspaceLocked) as exc:
        raise click.ClickException(str(exc)) from None


def _paths(logs) -> list[str]:
    """LOGS arguments (files, folders, globs) as a list of files; a clear error for one that matches nothing."""
    from analyzer.ingest import IngestError, expand_paths

    try:
        return expand_paths(list(logs))
    except IngestError as exc:
        raise click.ClickException(sanitize(str(exc))) from None


EMBED_CHUNK = click.option("--embed-chunk", default=4096, show_default=True, type=click.IntRange(min=1),
                           help="Prompts per embedding shard; progress is saved after each shard, so a killed "
                                "run loses at most one shard of work.")


def _ray_options(f):
    f = click.option("--ray-actors", default=None, type=click.IntRange(min=1), metavar="N",
                     help="With --ray: embedding actors (one model copy each; default 1 locally, one per node on a "
                          "cluster), and the log files parsed at once and the kNN graph's index shards (default one "
                          "per CPU of the cluster).")(f)
    f = click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
                     help="Run the work that grows with the data on a Ray cluster (needs the 'ray' extra: pip install "
                          "'analyzer[ray]'): parsing the log files (which every worker must read at the same path), "
                          "embedding, and the kNN graph of a full clustering ('embed': the embedding only). 'local' "
                          "starts a private 2-CPU Ray here, 'auto' joins the cluster this machine is part of, "
                          "'ray://HEAD:10001' connects with Ray Client. The workspace and the global steps (cluster "
                          "tree, labels, scoring) stay on this machine; workers need the analyzer package "
                          "installed.")(f)
    return f


def _executor(ray_address: str | None, ray_actors: int | None):
    """The run's executor: ``None`` (in this process) without ``--ray``, else a RayExecutor.
    Checks that Ray is installed before any workspace is opened: a clear message, no failed run recorded."""
    if ray_address is None:
        return None
    from analyzer.distributed import RayExecutor, RayUnavailable, require_ray

    try:
        require_ray()
    except RayUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    return RayExecutor(ray_address, ray_actors)


def _executor_errors(executor) -> tuple[type[BaseException], ...]:
    """Exceptions of the executor's engine that end a command with a message (no cluster there, a worker that
    failed): none for the local executor."""
    if executor is None:
        return ()
    from analyzer.distributed import require_ray

    return (ConnectionError, require_ray().exceptions.RayError)


def _echo_summary(ws) -> None:
    from analyzer.export import load_campaigns

    camps = load_campaigns(ws)
    flagged = [c for c in camps if c["flagged"]]
    click.echo(f"{len(camps)} candidate campaigns, {len(flagged)} flagged:")
    for c in flagged[:20]:
        # load_campaigns escaped control and bidi characters in ids and labels (analyzer.export.sanitize)
        label = c["label"].replace("\n", " ").replace("\t", " ")
        click.echo(f"  #{c['rank']:<3} {c['id']}  score {c['score']:.2f}  {c['n_accounts']:>5} accounts "
                   f"{c['n_requests']:>8,} requests  {label[:60]}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="analyzer")
def main() -> None:
    """Find coordinated query campaigns (model distillation) in LLM API request logs.

    Typical use: ``analyzer run logs/*.jsonl.gz --workspace ws`` then ``analyzer export --workspace ws
    --format markdown --out report.md`` or ``analyzer app ws``.
    """


@main.command()
@click.argument("logs", nargs=-1, required=True)
@WORKSPACE
@_model_options
@_cluster_options
@_score_options
@CONFIG
@click.option("--column-map", default=None, metavar="SRC=DST,...",
              help="Rename input columns, e.g. 'user=account_id,text=prompt,time=timestamp'.")
@click.option("--strict", is_flag=True, help="Stop at the first bad row instead of quarantining it.")
@click.option("--no-map", is_flag=True, help="Skip the 2-D map layout (UMAP) used by the app.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed (sampling, index training, map).")
@EMBED_CHUNK
@click.option("--recluster", is_flag=True,
              help="Cluster everything again. Without it, a workspace that has a clustering assigns the new prompts "
                   "to it, and re-clusters only when the new traffic does not fit (drift).")
@_ray_options
@click.option("--ingest-workers", default=0, show_default=True, type=click.IntRange(min=0),
              help="Log files parsed at once, a process each, while this one stores them (1: parsed here; 0: one "
                   "per CPU when they hold 32 MiB or more). Batches are stored in file order.")
@TEXT_WORKERS
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def run(logs, workspace, column_map, strict, embed_chunk, recluster, ray_address, ray_actors, ingest_workers,
        text_workers, **kw):
    """Ingest LOGS and analyse everything in the workspace: embed, index, cluster, label, score.

    LOGS are files, folders or globs of JSONL / CSV / Parquet (optionally .gz). Re-running with more logs
    adds to the workspace: known request ids are skipped and known prompts are not embedded again.
    """
    from analyzer.api import run_logs
    from analyzer.config import ConfigError
    from analyzer.ingest import IngestError, parse_column_map
    from analyzer.workspace import WorkspaceLocked

    opts = _options(workspace=workspace, **kw)
    opts.embed_chunk = embed_chunk
    opts.recluster = recluster
    opts.ingest_workers = ingest_workers
    opts.text_workers = text_workers
    paths = _paths(logs)
    executor = _executor(ray_address, ray_actors)
    ws = _open(workspace, create=True)
    try:
        stats = run_logs(ws, paths, opts, parse_column_map(column_map) if column_map else None, strict,
                         kw.get("tier"), executor)
    except (IngestError, WorkspaceLocked, FileNotFoundError, ConfigError) as exc:
        ws.close()
        raise click.ClickException(sanitize(str(exc))) from None  # may quote file names and values from the logs
    except _executor_errors(executor) as exc:
        ws.close()
        raise click.ClickException(f"Ray: {exc}") from None
    ing = stats["ingest"]
    click.echo(f"ingest: read {ing['read']:,}, accepted {ing['accepted']:,}, rejected {ing['rejected']:,}, "
               f"duplicates {ing['duplicates']:,}")
    if stats.get("quarantine"):
        click.echo(f"rejected rows (with reasons): {stats['quarantine']}")
    click.echo(f"embed: {stats['embed']['embedded_now']:,} new prompts ({stats['embed']['embedded_total']:,} in workspace)")
    cl = stats["cluster"]
    how = (f"assigned {cl['new_prompts']:,} new prompts" if cl["path"] == "incremental"
           else f"full re-cluster ({cl.get('trigger')})")
    click.echo(f"cluster: {how}; {cl['clusters']:,} clusters, {cl['noise']:,} noise prompts")
    click.echo("campaigns since the previous run: "  # ids kept while a campaign continues (analyzer.history)
               + (", ".join(f"{n} {t}" for t, n in stats["score"]["transitions"].items()) or "none"))
    click.echo("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in stats["stages_s"].items())
               + f"; peak memory {stats['peak_rss_mb']:.0f} MiB")
    click.echo("stage peak memory MiB: " + ", ".join(f"{k} {v:.0f}" for k, v in stats["stage_peak_mb"].items()))
    _echo_summary(ws)
    ws.close()


def _use_workspace_tier(ws, opts: RunOptions, tier: str | None) -> None:
    """Without ``--tier``, keep the tier the workspace already uses (a new workspace gets the default)."""
    from analyzer.pipeline import workspace_tier

    if tier is None:
        opts.tier = workspace_tier(ws) or DEFAULT_TIER


def _stage(name: str, stages: list[str], workspace: str, opts: RunOptions, params: dict | None = None,
           create=False, tier: str | None = None, embeds: bool = False, ctx_args: dict | None = None,
           stage_kwargs: dict[str, dict] | None = None):
    """Run ``stages`` (:data:`analyzer.catalog.PIPELINE` names) through the runner in a run recorded as
    ``name``; the run's stats are those of stage ``name``. Stages that use vectors (``embeds``) resolve the
    tier first; ``stage_kwargs``: more arguments of a stage's class (the embed stage's ``executor``)."""
    from analyzer.config import ConfigError
    from analyzer.pipeline import versions
    from analyzer.stages import Context, make_stage, run_stages
    from analyzer.workspace import WorkspaceLocked

    try:  # a misconfigured class ([stages] in analyzer.toml) fails before anything is opened or recorded
        made = {n: make_stage(n, opts, **(stage_kwargs or {}).get(n, {})) for n in stages}
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    ws = _open(workspace, create=create)
    params = dict(params or {})
    if embeds:
        _use_workspace_tier(ws, opts, tier)
        params["options"] = {"model": opts.model, "tier": opts.tier, "max_seq_length": opts.max_seq_length}
    seconds: dict[str, float] = {}
    try:
        with ws.writing():
            run_id = ws.start_run(name, params, versions())
            try:
                stats = run_stages(Context(ws, opts, run_id, **(ctx_args or {})), stages, made, seconds)[name]
            except BaseException as exc:
                ws.finish_run(run_id, {"stages_s": seconds}, status=f"failed: {type(exc).__name__}")
                raise
            ws.finish_run(run_id, {name: stats, "stages_s": seconds})
    except WorkspaceLocked as exc:
        ws.close()
        raise click.ClickException(str(exc)) from None
    click.echo(f"{name}: {json.dumps(stats, default=str)} ({sum(seconds.values()):.1f} s)")
    return ws


@main.command()
@click.argument("logs", nargs=-1, required=True)
@WORKSPACE
@click.option("--column-map", default=None, metavar="SRC=DST,...", help="Rename input columns.")
@click.option("--strict", is_flag=True, help="Stop at the first bad row instead of quarantining it.")
@click.option("--ingest-workers", default=0, show_default=True, type=click.IntRange(min=0),
              help="Log files parsed at once, a process each, while this one stores them (1: parsed here; 0: one "
                   "per CPU when they hold 32 MiB or more). Batches are stored in file order.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def ingest(logs, workspace, column_map, strict, ingest_workers, quiet):
    """Read LOGS into the workspace (bad rows are quarantined with file, line, field and reason)."""
    from analyzer.ingest import IngestError, parse_column_map

    cmap = parse_column_map(column_map) if column_map else None
    try:
        paths = _paths(logs)
        _stage("ingest", ["ingest"], workspace, RunOptions(progress=not quiet, ingest_workers=ingest_workers),
               {"paths": paths, "column_map": cmap, "strict": strict}, create=True,
               ctx_args={"logs": paths, "column_map": cmap, "strict": strict}).close()
    except (IngestError, FileNotFoundError) as exc:
        raise click.ClickException(sanitize(str(exc))) from None


@main.command()
@WORKSPACE
@_model_options
@EMBED_CHUNK
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@_ray_options
def embed(workspace, quiet, embed_chunk, ray_address, ray_actors, **kw):
    """Embed the unique prompts that have no vector yet (resumable: finished shards are kept)."""
    opts = _options(quiet=quiet, **kw)
    opts.embed_chunk = embed_chunk
    executor = _executor(ray_address, ray_actors)
    params = {"model": opts.model, **(executor.describe() if executor else {})}
    try:
        _stage("embed", ["embed"], workspace, opts, params, tier=kw.get("tier"), embeds=True,
               stage_kwargs={"embed": {"executor": executor}} if executor else None).close()
    except _executor_errors(executor) as exc:
        raise click.ClickException(f"Ray: {exc}") from None


@main.command()
@WORKSPACE
@_model_options
@_cluster_options
@CONFIG
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed (label sampling, index training).")
@TEXT_WORKERS
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def cluster(workspace, quiet, text_workers, **kw):
    """Build the FAISS index and kNN graph, cluster with HDBSCAN and label the clusters."""
    opts = _options(quiet=quiet, workspace=workspace, **kw)
    opts.text_workers = text_workers
    opts.recluster = True  # everything, not only the prompts new since the last clustering
    _stage("cluster", ["index", "cluster", "label"], workspace, opts,
           {"cluster": opts.cluster.__dict__, "config": _effective(opts)}, tier=kw.get("tier"), embeds=True).close()


@main.command()
@WORKSPACE
@_score_options
@CONFIG
def score(workspace, **kw):
    """Group clusters into campaigns by shared accounts, compute signals, score and explain."""
    opts = _options(workspace=workspace, **kw)
    ws = _stage("score", ["score"], workspace, opts, {"scoring": opts.scoring.__dict__, "config": _effective(opts)})
    _echo_summary(ws)
    ws.close()


@main.command("map")
@WORKSPACE
@_model_options
@click.option("--sample", default=20_000, show_default=True, type=int, help="Prompts laid out.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed (sample and UMAP).")
@CONFIG
def map_cmd(workspace, sample, seed, **kw):
    """Compute the 2-D map (UMAP on a sample of prompts) shown in the app."""
    opts = _options(seed=seed, workspace=workspace, **kw)
    opts.map_sample = sample
    opts.recluster = True  # this command lays the map out afresh (the only stage it runs)
    _stage("map", ["map"], workspace, opts, {"sample": sample}, tier=kw.get("tier"), embeds=True).close()


@main.command()
@WORKSPACE
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "markdown", "stix"]), default="json",
              show_default=True, help="json: every campaign with signals and evidence; csv: one row per account; "
                                      "markdown: a report; stix: a STIX 2.1 bundle of the flagged campaigns.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default="-", show_default=True,
              help="Output file ('-' for standard output).")
@click.option("--redact", is_flag=True, help="Redact emails, phone and card numbers and API keys in example prompts.")
@click.option("--tlp", default="amber", show_default=True, type=click.Choice(TLP_LEVELS),
              help="TLP 2.0 marking of a STIX bundle (--format stix).")
def export(workspace, fmt, out, redact, tlp):
    """Export the latest analysis: JSON (schema_version 1), CSV (one row per account) or Markdown.

    Reads only: the workspace is opened read-only (no lock taken, nothing written), so an export runs next to
    the app or another export. Control and bidi characters in ids and text are written as visible escapes.
    """
    from analyzer.export import export as render

    ws = _open(workspace, read_only=True)
    try:
        if fmt == "stix":
            from analyzer.pipeline import stix_export

            text = stix_export(ws, tlp)
        else:
            text = render(ws, fmt, redact)
    finally:
        ws.close()
    _write_out(out, text)


def _write_out(out: str, text: str) -> None:
    """``text`` (every value in it already through analyzer.export.sanitize) to standard output or, atomically,
    to the file ``out``."""
    from analyzer.workspace import atomic_write_bytes

    if out == "-":
        sys.stdout.write(text)
    else:
        atomic_write_bytes(out, text.encode("utf-8"))
        click.echo(f"wrote {sanitize(out, ident=True)} ({len(text):,} bytes)", err=True)


@main.group()
def watch() -> None:
    """Watchlists: fingerprints of confirmed and dismissed campaigns, checked on every later run.

    An account whose requests continue a confirmed campaign's work (its prompts, template, infrastructure)
    is flagged from its first few requests; a dismissed campaign is not flagged again unless it changed
    materially. See analyzer/watch.py for the rule.
    """


@watch.command("add")
@click.argument("campaign")
@WORKSPACE
@click.option("--dismiss", is_flag=True, help="Remember the campaign as dismissed (not flagged again) instead of confirmed.")
@click.option("--note", default="", help="Why (stored with the entry).")
@click.option("--analyst", default=None, help="Who decided (default: cli:$USER).")
@CONFIG
def watch_add(campaign, workspace, dismiss, note, analyst, config_file):
    """Store CAMPAIGN's fingerprint (a campaign id of the latest analysis) as a watch entry."""
    from analyzer.pipeline import add_watch
    from analyzer.workspace import WorkspaceLocked

    watch_config = _configured(RunOptions(), workspace, config_file).watch  # how fingerprints are made
    ws = _open(workspace)
    try:
        with ws.writing():
            e = add_watch(ws, campaign, "dismissed" if dismiss else "confirmed",
                          analyst or f"cli:{os.environ.get('USER', 'unknown')}", note, watch_config)
    except (KeyError, WorkspaceLocked) as exc:
        raise click.ClickException(str(exc).strip('"')) from None
    finally:
        ws.close()
    fp = e.fingerprint
    click.echo(f"{e.watch_id}: {e.status} {sanitize(campaign, ident=True)} ({fp.n_accounts} accounts, "
               f"{len(fp.vectors)} vectors, {len(fp.template_patterns)} template sentences, "
               f"{len(fp.prompt_sha256)} prompt hashes, {sum(map(len, fp.infra.values()))} infrastructure values)")


@watch.command("list")
@WORKSPACE
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry (fingerprint included, vectors not).")
def watch_list(workspace, as_json):
    """List the watch entries."""
    ws = _open(workspace, read_only=True)
    try:
        rows = ws.watch_rows()
    finally:
        ws.close()
    if as_json:
        for r in rows.itertuples(index=False):
            click.echo(json.dumps({"watch_id": r.watch_id, "campaign_id": r.campaign_id, "status": r.status,
                                   "source": r.source, "created_at": str(r.created_at), "analyst": r.analyst,
                                   "note": r.note, "fingerprint": r.fingerprint}, ensure_ascii=True))
        return
    if rows.empty:
        click.echo("no watch entries")
        return
    for r in rows.itertuples(index=False):
        fp = r.fingerprint or {}
        label = sanitize(str(fp.get("label", ""))).replace("\n", " ")[:60]
        click.echo(f"{r.watch_id}  {r.status:<9}  {sanitize(r.campaign_id, ident=True)}  "
                   f"{str(r.created_at)[:16]}  {sanitize(r.analyst or '-', ident=True)}  {sanitize(r.source, ident=True)}"
                   f"  {label}")


@watch.command("remove")
@click.argument("watch_id")
@WORKSPACE
def watch_remove(watch_id, workspace):
    """Remove the watch entry WATCH_ID (see 'analyzer watch list')."""
    from analyzer.workspace import WorkspaceLocked

    ws = _open(workspace)
    try:
        with ws.writing():
            n = ws.remove_watch(watch_id)
    except WorkspaceLocked as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        ws.close()
    if not n:
        raise click.ClickException(f"no watch entry {sanitize(watch_id, ident=True)}")
    click.echo(f"removed {sanitize(watch_id, ident=True)}")


@watch.command("export")
@WORKSPACE
@click.option("--out", "-o", type=click.Path(dir_okay=False), default="-", show_default=True,
              help="Output file ('-' for standard output).")
@click.option("--tlp", default="amber", show_default=True, type=click.Choice(TLP_LEVELS), help="TLP 2.0 marking.")
@click.option("--identity", default="analyzer", show_default=True, help="Name of the STIX identity that shares.")
@click.option("--no-vectors", is_flag=True, help="Leave the fingerprint vectors (x_analyzer_fingerprint) out.")
def watch_export(workspace, out, tlp, identity, no_vectors):
    """Write the confirmed watch entries as a STIX 2.1 bundle."""
    from analyzer.pipeline import stix_export

    ws = _open(workspace, read_only=True)
    try:
        text = stix_export(ws, tlp, source="watchlist", identity=identity, vectors=not no_vectors)
    finally:
        ws.close()
    _write_out(out, text)


@watch.command("import")
@click.argument("bundle", type=click.Path(dir_okay=False, exists=True))
@WORKSPACE
def watch_import(bundle, workspace):
    """Turn a STIX 2.1 BUNDLE's indicators into confirmed watch entries (source stix:<bundle id>)."""
    from stix2.exceptions import STIXError

    from analyzer.pipeline import import_watch_bundle
    from analyzer.workspace import WorkspaceLocked

    with open(bundle, encoding="utf-8") as fh:
        text = fh.read()
    ws = _open(workspace, create=True)
    try:
        with ws.writing():
            entries, notes = import_watch_bundle(ws, text)
    except (STIXError, ValueError, WorkspaceLocked) as exc:
        raise click.ClickException(f"{sanitize(bundle, ident=True)}: {exc}") from None
    finally:
        ws.close()
    for n in notes:
        click.echo(sanitize(n), err=True)
    for e in entries:
        fp = e.fingerprint
        click.echo(f"{e.watch_id}: {sanitize(fp.label)[:60]} ({len(fp.vectors)} vectors, "
                   f"{len(fp.template_patterns)} template patterns, {len(fp.prompt_sha256)} prompt hashes, "
                   f"{sum(map(len, fp.infra.values()))} infrastructure values)")
    click.echo(f"imported {len(entries)} watch entries")


@main.group("config")
def config_group() -> None:
    """The configuration: every threshold and weight, read from WORKSPACE/analyzer.toml and --config FILE."""


@config_group.command("show")
@click.option("--workspace", "-w", default=None, type=click.Path(file_okay=False),
              help="Read WORKSPACE/analyzer.toml too (when present).")
@CONFIG
def config_show(workspace, config_file):
    """Print the effective configuration as TOML, each value with what it means.

    Defaults, then WORKSPACE/analyzer.toml, then --config FILE. The output is a valid configuration: save it as
    WORKSPACE/analyzer.toml (or pass it with --config) and edit the values to change.
    """
    from analyzer import config as config_mod

    try:
        cfg = config_mod.load_config(workspace, config_file)
    except config_mod.ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    read = [p for p in ((os.path.join(workspace, config_mod.CONFIG_FILE) if workspace else None), config_file)
            if p and os.path.isfile(p)]
    header = (f"analyzer {__version__}: effective configuration (defaults"
              + "".join(f" < {sanitize(p, ident=True)}" for p in read) + ").\n"
              "Save as WORKSPACE/analyzer.toml or pass with --config; explicit command-line flags override it.")
    click.echo(config_mod.to_toml(cfg, header), nl=False)


def _known_presets(ctx, param, value):
    """``--preset`` names checked against analyzer.bench.scenario.PRESETS as it is now (not a fixed list)."""
    from analyzer.bench.scenario import PRESETS

    unknown = [v for v in value if v not in PRESETS]
    if unknown:
        raise click.BadParameter(f"unknown preset(s) {unknown}; choose from {sorted(PRESETS)}")
    return value


def _known_suite(ctx, param, value):
    from analyzer.bench.run import SUITES

    if value is not None and value not in SUITES:
        raise click.BadParameter(f"unknown suite {value!r}; choose from {sorted(SUITES)}")
    return value


def _bench_replay(presets: list[str], seeds: list[int], knobs: dict, out: str | None, dry_run: bool, say) -> None:
    """``analyzer bench --replay``: :func:`analyzer.bench.replay.run_replay` per preset and seed."""
    from analyzer.atomic import atomic_write_bytes
    from analyzer.bench import corpora
    from analyzer.bench.replay import run_replay

    unknown = set(knobs) - {"ban_day", "days"}
    if unknown:
        raise click.UsageError(f"--replay takes the knobs ban_day and days only, not {sorted(unknown)}")
    if dry_run:
        say(f"would replay {presets} x seeds {seeds} day by day (incremental path), knobs {knobs}")
        return
    if not corpora.available():
        raise click.ClickException(f"benchmark corpora not found at {corpora.data_dir()}: nothing to replay")
    docs = [run_replay(p, seed, int(knobs.get("ban_day", 7)), knobs.get("days"), modes=("incremental",), log=say)
            for p in presets for seed in seeds]
    if out:
        atomic_write_bytes(out, (json.dumps(docs if len(docs) > 1 else docs[0], indent=1) + "\n").encode())
        say(f"wrote {out}")


@main.command()
@click.option("--quick", is_flag=True, help="The quick scenario (~12k requests; about a minute plus embedding).")
@click.option("--scale", is_flag=True,
              help="The 1M-request scale scenario, analyzer and volume heuristic only unless --system says more.")
@click.option("--preset", "presets", multiple=True, metavar="NAME", callback=_known_presets,
              help="Scenario preset: any name in analyzer.bench.scenario.PRESETS (sample, quick, standard, scale, "
                   "the adversarial ones...); repeat for several. Default: standard, or quick with --quick or "
                   "--curve, or scale with --scale.")
@click.option("--suite", default=None, metavar="NAME", callback=_known_suite,
              help="A named set of presets: 'adversarial' = every preset whose name starts with 'adv' "
                   "(listed ones missing from PRESETS are skipped with a message).")
@click.option("--seed", "seeds", multiple=True, type=int, help="Scenario seed; repeat for several (default 0).")
@click.option("--system", "systems", multiple=True,
              type=click.Choice(["analyzer", "bertopic", "bertopic_e2e", "volume"]),
              help="Systems to run (default: analyzer, bertopic and volume; analyzer alone with --benign-only). "
                   "bertopic_e2e is BERTopic from the log file with its own torch embedding: about 27 minutes on "
                   "the standard scenario. Systems whose extras are not installed are skipped with a message.")
@click.option("--knob", "knobs", multiple=True, metavar="NAME=VALUE",
              help="Scenario knob, e.g. --knob campaign_accounts=10 --knob template_variation=2 (JSON values).")
@click.option("--benign-only", is_flag=True,
              help="Build each preset with no campaigns and report false positives: benign candidates flagged / "
                   "scored, benign accounts flagged, highest benign score, pooled over seeds with a Wilson 95%% "
                   "upper bound.")
@click.option("--curve", is_flag=True,
              help="Difficulty curve: the analyzer on the preset (default quick) with one knob varied at a time "
                   "(campaign size, traffic share, paraphrase level); a Markdown table, and a PNG next to --out.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the rows as JSON here.")
@click.option("--in-process", is_flag=True, help="Run systems in this process (faster start, shared peak memory).")
@click.option("--embedding-cache", default=None, type=click.Path(file_okay=False),
              help="Reuse prompt vectors across runs and seeds (the rows report how many were reused).")
@click.option("--tier", default=DEFAULT_TIER, show_default=True, type=click.Choice([*TIERS, "both"]),
              help="Embedding tier the analyzer uses (bertopic is given the same vectors); 'both' runs the analyzer "
                   "once per tier, each row carrying its tier.")
@click.option("--replay", is_flag=True,
              help="Daily replay instead (issue 12): the preset (default quick) split into one log per day and fed "
                   "day by day into one workspace with the incremental path; half of each operator's accounts "
                   "banned and replaced on day 7 (--knob ban_day=N, -1: none), censorship starting on day 5; "
                   "reports detection day, id changes, replacement accounts and per-day cost. "
                   "benchmarks/replay.py also runs --recluster every day for comparison.")
@click.option("--dry-run", is_flag=True, help="Print what would run (presets, seeds, systems, tiers) and stop.")
@click.option("--config", "config_file", default=None, type=click.Path(dir_okay=False, exists=True),
              help="A TOML configuration (see 'analyzer config show') the analyzer runs with, over the defaults.")
def bench(quick, scale, presets, suite, seeds, systems, knobs, benign_only, curve, out, in_process, embedding_cache,
          tier, replay, dry_run, config_file):
    """Benchmark the analyzer against BERTopic and a volume heuristic on labelled scenarios.

    Scenarios are built from the public corpora in ../shared/data (see data/README.md); without them the
    benchmark cannot run and says so.
    """
    from analyzer.bench.run import DEFAULT_SYSTEMS, curve_plot_path, resolve_presets, runnable_systems

    if benign_only and curve:
        raise click.UsageError("--benign-only and --curve are separate runs; choose one")
    say = lambda m: click.echo(m, err=True)  # noqa: E731
    parsed = _parse_knobs(knobs)
    if replay:
        _bench_replay(list(presets) or ["quick"], list(seeds) or [0], parsed, out, dry_run, say)
        return
    if scale and not systems:
        systems = ("analyzer", "volume")
    if curve or (benign_only and not systems):
        systems = ("analyzer",)
    systems, skipped = runnable_systems(systems or DEFAULT_SYSTEMS)
    for m in skipped:
        say(m)
    if not systems:
        raise click.ClickException("no system left to run (see the lines above)")
    names, notes = resolve_presets(presets, suite)
    for m in notes:
        say(m)
    if suite and not names:
        raise click.ClickException(f"suite {suite}: none of its presets exist yet")
    names = names or ["quick" if (quick or curve) else "scale" if scale else "standard"]
    tiers = ["fast", "accurate"] if tier == "both" else [tier]
    mode = "curve" if curve else "benign-only" if benign_only else "compare"
    if config_file:  # a bad file is an error now, not in every run
        _check_config_file(config_file)
    if dry_run:
        click.echo(f"mode: {mode}\npresets: {', '.join(names)}\nseeds: {', '.join(map(str, seeds or (0,)))}\n"
                   f"systems: {', '.join(systems)}\ntiers: {', '.join(tiers)}\nknobs: {json.dumps(parsed)}\n"
                   f"out: {out or '-'}\nconfig: {config_file or 'defaults'}"
                   + (f"\nplot: {curve_plot_path(out)}" if curve and out else ""))
        return
    _require_corpora()
    run = dict(knobs=parsed, isolate=not in_process, embedding_cache=embedding_cache, log=say, config_file=config_file)
    if curve:
        _bench_curve(names, seeds or (0,), tier, out, say, **run)
    else:
        _bench_compare(names, seeds or (0,), systems, tier, benign_only, out, say, **run)


def _parse_knobs(knobs: Sequence[str]) -> dict:
    """``NAME=VALUE`` pairs; a value is JSON where it parses as JSON, else the string."""
    parsed = {}
    for k in knobs:
        name, _, value = k.partition("=")
        try:
            parsed[name] = json.loads(value)
        except json.JSONDecodeError:
            parsed[name] = value
    return parsed


def _check_config_file(config_file: str) -> None:
    """A bad configuration file is an error before any run, not in every run."""
    from analyzer import config as config_mod

    try:
        config_mod.read_file(config_file)
    except config_mod.ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _require_corpora() -> None:
    from analyzer.bench import corpora

    if not corpora.available():
        raise click.ClickException(
            f"benchmark corpora not found at {corpora.data_dir()} (set ANALYZER_SHARED_DATA); nothing is downloaded"
        )


def _bench_curve(names: list[str], seeds: Sequence[int], tier: str, out: str | None, say, **run) -> None:
    """``analyzer bench --curve``: the difficulty curve's rows as a table, saved with a plot next to ``out``."""
    from analyzer.bench.run import curve_plot_path, curve_table, run_curve, save, save_curve_plot

    rows = []
    for name in names:
        for seed in seeds:
            rows += run_curve(name, seed, tier, **run)
    click.echo(curve_table(rows))
    if not out:
        say("curve plot not saved: give --out to save it next to the rows")
        return
    save(rows, out)
    say(f"wrote {out}")
    written = save_curve_plot(rows, curve_plot_path(out), log=say)
    if written:
        say(f"wrote {written}")


def _bench_compare(names: list[str], seeds: Sequence[int], systems: Sequence[str], tier: str, benign_only: bool,
                   out: str | None, say, **run) -> None:
    """``analyzer bench`` (and ``--benign-only``): every system on every scenario, as a table (with the
    speed ratios, or the benign look-alikes' summary)."""
    from analyzer.bench.run import (
        benign_summary,
        benign_summary_text,
        benign_table,
        comparison,
        run_bench,
        save,
        table,
    )

    rows = run_bench(names, seeds, systems, tier=tier, benign_only=benign_only, **run)
    summary = []
    if benign_only:
        summary = benign_summary(rows)
        click.echo(benign_table(rows, summary))
        click.echo("\n" + benign_summary_text(summary))
    else:
        click.echo(table(rows))
        ratios = comparison(rows)
        if ratios:
            click.echo("\n" + ratios)
    if out:
        save(rows, out, **({"summary": summary} if summary else {}))
        say(f"wrote {out}")

@main.command()
@click.argument("workspace", type=click.Path(file_okay=False, exists=True))
@click.option("--port", default=8501, show_default=True, type=int, help="Port to serve the app on.")
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Interface to bind; keep 127.0.0.1 unless behind an authenticating proxy (see README).")
def app(workspace, port, address):
    """Open the Streamlit app on WORKSPACE."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, "-m", "streamlit", "run", os.path.join(root, "app.py"), "--server.address", address,
           "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none", "--", "--workspace", os.path.abspath(workspace)]
    click.echo(f"analyzer app on http://{address}:{port} (Ctrl-C stops it)", err=True)
    raise SystemExit(subprocess.call(cmd, cwd=root))


if __name__ == "__main__":  # pragma: no cover
    main()
