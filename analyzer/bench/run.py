"""``analyzer bench``: build scenarios, run the analyzer and the baselines, score them side by side.

With an embedding cache, prompts already embedded by an earlier run (another seed) are reused; the row's
``stages`` then say how many (``embeddings_reused``) and its time covers only the new ones.

Systems (same scenario, same run):

- ``analyzer``: the full pipeline (:func:`analyzer.pipeline.run_all`) into a fresh workspace.
- ``bertopic``: BERTopic's default pipeline (UMAP + HDBSCAN + c-TF-IDF) given the *same* embeddings, its
  topics ranked by distinct accounts as an analyst would use it: the top ``bertopic_top`` topics with at
  least ``min_accounts`` accounts are flagged, with every account that sent a request into them.
- ``bertopic_e2e``: BERTopic end to end from the log file with its own default embedding (sentence-transformers
  all-MiniLM-L6-v2 on torch), ranked the same way. Only when asked for: it embeds every prompt on torch.
- ``volume``: a per-account volume heuristic: accounts whose request count is an outlier (log-volume
  robust z-score >= 3) are flagged, each as its own campaign; the account score is its volume rank.

Each system runs in its own child process so that its peak memory is its own. Systems whose optional
dependencies are missing (BERTopic without the ``dev`` extra) are skipped with a line naming the extra.

Modes besides the side-by-side rows:

- ``benign_only``: the preset built with no campaigns (``campaigns=()``), so every candidate and every account is
  benign; the rows give the false-positive rate of benign traffic against benign traffic
  (:func:`analyzer.bench.metrics.benign_false_positives`) and :func:`benign_summary` pools them over seeds with a
  Wilson upper bound.
- :func:`run_curve`: the difficulty curve, one knob of :data:`CURVE_GRID` varied at a time from the preset.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing as mp
import os
import resource
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analyzer.bench import corpora, metrics
from analyzer.bench.scenario import (
    Scenario,
    build_scenario,
    resolve_knobs,
    write_scenario,
    write_sharded_scenario,
)
from analyzer.embed import DEFAULT_TIER, TIERS

SYSTEMS = ("analyzer", "bertopic", "bertopic_e2e", "volume")
#: What ``analyzer bench`` runs without ``--system``: BERTopic end to end embeds every prompt on torch (about an
#: hour for the standard scenario on two cores), so it runs only when asked for.
DEFAULT_SYSTEMS = ("analyzer", "bertopic", "volume")
#: Modules each optional system imports, and the extra of pyproject.toml that installs them.
SYSTEM_REQUIRES: dict[str, tuple[str, ...]] = {
    "bertopic": ("bertopic", "umap", "hdbscan"),
    "bertopic_e2e": ("bertopic", "umap", "hdbscan", "sentence_transformers"),
}
SYSTEM_EXTRA: dict[str, str] = {"bertopic": "dev", "bertopic_e2e": "dev"}
#: Named preset suites (``analyzer bench --suite NAME``). A suite runs the presets listed here that exist in
#: :data:`analyzer.bench.scenario.PRESETS` plus, for ``adversarial``, every other preset whose name starts with
#: ``adv``; listed names missing from PRESETS are skipped with a message.
SUITES: dict[str, tuple[str, ...]] = {
    "adversarial": ("adv-paraphrase", "adv-quiet", "adv-bare", "adv-chinese", "adv-padded", "adv-tiny",
                    "adv-lookalikes", "adversarial"),
}
SUITE_PREFIX: dict[str, str] = {"adversarial": "adv"}
Log = Callable[[str], None]


@dataclass
class SystemResult:
    flagged: list[list[str]]          # accounts of each flagged campaign
    scores: dict[str, float]          # account -> score in [0, 1]
    seconds: float
    peak_rss_mb: float
    stages: dict[str, float]
    candidates: list[tuple[float, list[str]]] = field(default_factory=list)  # every candidate: (score, accounts)
    candidates_flagged: list[bool] = field(default_factory=list)  # same order as candidates: was it flagged


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_analyzer(log_path: str, workdir: str, embedding_cache: str | None = None, tier: str = DEFAULT_TIER,
                 quiet: bool = True, config_file: str | None = None) -> SystemResult:
    """The analyzer on ``log_path`` in a fresh workspace; ``config_file``: a TOML configuration
    (:mod:`analyzer.config`) over the defaults."""
    from analyzer import config as config_mod
    from analyzer.ingest import expand_paths
    from analyzer.pipeline import RunOptions, run_all
    from analyzer.workspace import Workspace

    t0 = time.perf_counter()
    opts = RunOptions(progress=not quiet, make_map=False, embedding_cache=embedding_cache, tier=tier)
    if config_file:
        opts = config_mod.apply(config_mod.read_file(config_file), opts)
    ws = Workspace(os.path.join(workdir, "ws-analyzer"), create=True)
    stats = run_all(ws, expand_paths([log_path]) if os.path.isdir(log_path) else [log_path], opts)  # or shards
    stats["stages_s"]["embeddings_reused"] = stats["embed"]["reused_from_cache"]
    result = workspace_result(ws, time.perf_counter() - t0, _peak_mb(), stats["stages_s"])
    ws.close()
    return result


def workspace_result(ws, seconds: float, peak_rss_mb: float, stages: dict[str, float]) -> SystemResult:
    """What a finished analyzer workspace found, as a :class:`SystemResult` (campaigns, their accounts, account
    scores), with the run's time, memory and stage times."""
    camps = ws.table("campaigns", ["campaign_id", "flagged", "score"])
    ca = ws.table("campaign_accounts", ["campaign_id", "account_id"])
    acc = ws.table("accounts", ["account_id", "score"])
    flagged_ids = set(camps.loc[camps["flagged"], "campaign_id"])
    members = {cid: g["account_id"].tolist() for cid, g in ca.groupby("campaign_id")}
    flagged = [accounts for cid, accounts in members.items() if cid in flagged_ids]
    candidates = [(float(score), members.get(cid, [])) for cid, score in zip(camps["campaign_id"], camps["score"],
                                                                             strict=True)]
    return SystemResult(flagged, dict(zip(acc["account_id"], acc["score"].astype(float), strict=True)),
                        seconds, peak_rss_mb, stages, candidates, [bool(f) for f in camps["flagged"]])


def _embeddings_from(workdir: str):
    """The analyzer workspace's prompts, vectors and requests (the 'same embeddings' for BERTopic)."""
    from analyzer.workspace import Workspace

    ws = Workspace(os.path.join(workdir, "ws-analyzer"))
    key = ws.largest_model_key()
    hashes, vectors = ws.load_embeddings(key)
    texts = ws.prompt_texts()
    req = ws.table("requests", ["account_id", "prompt_hash"])
    ws.close()
    return hashes, vectors, texts.reindex(hashes).tolist(), req


def _rank_topics(topics, hashes, req: pd.DataFrame, top: int, min_accounts: int
                 ) -> tuple[list[list[str]], dict[str, float]]:
    """BERTopic's topics as an analyst would triage them: ranked by distinct accounts, the top ``top`` with at
    least ``min_accounts`` accounts flagged with every account that sent a request into them."""
    topic_of = pd.Series(np.asarray(topics), index=hashes)
    req = req.assign(topic=topic_of.reindex(req["prompt_hash"]).to_numpy())
    per_topic = req[req["topic"] >= 0].groupby("topic")["account_id"].nunique().sort_values(ascending=False)
    ranked = [t for t, n in per_topic.items() if n >= min_accounts][:top]
    flagged = [sorted(req.loc[req["topic"] == t, "account_id"].unique()) for t in ranked]
    # Account score: the best normalised topic spread among the topics it used.
    topic_score = (per_topic / per_topic.max()) if len(per_topic) else per_topic
    req["tscore"] = topic_score.reindex(req["topic"]).fillna(0.0).to_numpy()
    scores = req.groupby("account_id")["tscore"].max().astype(float).to_dict()
    return flagged, scores


def _no_joblib_processes() -> None:
    """joblib's loky process pool (used inside HDBSCAN) was seen to hang in a spawned child: run in-process.

    joblib reads this when it is first imported, so it is set before anything else happens in the child.
    """
    os.environ.setdefault("JOBLIB_MULTIPROCESSING", "0")


def _bertopic_model(seed: int):
    from bertopic import BERTopic
    from hdbscan import HDBSCAN
    from umap import UMAP

    # BERTopic's own default UMAP and HDBSCAN settings, with a seed so that runs repeat, and HDBSCAN's core
    # distances computed in this process: its joblib (loky) worker pool was seen to hang in a spawned child.
    umap_model = UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=seed)
    hdbscan_model = HDBSCAN(min_cluster_size=10, metric="euclidean", cluster_selection_method="eom",
                            prediction_data=True, core_dist_n_jobs=1)
    return BERTopic(umap_model=umap_model, hdbscan_model=hdbscan_model, calculate_probabilities=False,
                    verbose=False)


def run_bertopic(workdir: str, top: int = 10, min_accounts: int = 20, seed: int = 0) -> SystemResult:
    """BERTopic given the analyzer's vectors (clustering and ranking only)."""
    _no_joblib_processes()
    t0 = time.perf_counter()
    hashes, vectors, docs, req = _embeddings_from(workdir)
    load_s = time.perf_counter() - t0
    model = _bertopic_model(seed)
    t1 = time.perf_counter()
    topics, _ = model.fit_transform(docs, embeddings=vectors)
    fit_s = time.perf_counter() - t1
    flagged, scores = _rank_topics(topics, hashes, req, top, min_accounts)
    return SystemResult(flagged, scores, time.perf_counter() - t0, _peak_mb(),
                        {"load_embeddings": round(load_s, 3), "bertopic_fit": round(fit_s, 3)})


def run_bertopic_e2e(log_path: str, top: int = 10, min_accounts: int = 20, seed: int = 0) -> SystemResult:
    """BERTopic end to end from the log file with its default embedding model.

    That model is all-MiniLM-L6-v2 on sentence-transformers (torch, fp32, its default 256-token truncation),
    loaded from the packaged copy. Requests are read with the analyzer's own log reader (a few seconds; BERTopic
    has none) and only unique prompts are embedded and fitted, which is the generous way to use it.
    """
    _no_joblib_processes()
    from analyzer.embed import resolve_model_path
    from analyzer.ingest import read_logs

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    parts = [b.requests[["account_id", "prompt_hash", "prompt"]] for b in read_logs([log_path])]
    req = pd.concat(parts, ignore_index=True)
    unique = req.drop_duplicates("prompt_hash")
    hashes, docs = unique["prompt_hash"].to_numpy(), unique["prompt"].tolist()
    read_s = time.perf_counter() - t0
    from sentence_transformers import SentenceTransformer

    t1 = time.perf_counter()
    encoder = SentenceTransformer(resolve_model_path("minilm"), device="cpu")
    vectors = encoder.encode(docs, batch_size=32, show_progress_bar=False)
    embed_s = time.perf_counter() - t1
    model = _bertopic_model(seed)
    t2 = time.perf_counter()
    topics, _ = model.fit_transform(docs, embeddings=vectors)
    fit_s = time.perf_counter() - t2
    flagged, scores = _rank_topics(topics, hashes, req[["account_id", "prompt_hash"]], top, min_accounts)
    return SystemResult(flagged, scores, time.perf_counter() - t0, _peak_mb(),
                        {"read_logs": round(read_s, 3), "embed": round(embed_s, 3), "bertopic_fit": round(fit_s, 3),
                         "prompts_embedded": len(docs)})


def run_volume(log_path: str, z: float = 3.0) -> SystemResult:
    t0 = time.perf_counter()
    frame = pd.read_json(log_path, lines=True, compression="infer", dtype=False)
    counts = frame.groupby("account_id").size()
    logc = np.log1p(counts.astype(float))
    mad = float(np.median(np.abs(logc - np.median(logc)))) or 1e-9
    robust_z = (logc - np.median(logc)) / (1.4826 * mad)
    flagged = [[a] for a in counts.index[robust_z >= z]]
    scores = (counts.rank(pct=True)).astype(float).to_dict()
    return SystemResult(flagged, scores, time.perf_counter() - t0, _peak_mb(), {})


def _child(target, args, queue):
    try:
        queue.put(("ok", asdict(target(*args))))
    except BaseException as exc:  # report, do not hang the parent
        import traceback

        queue.put(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def _isolated(target, *args) -> SystemResult:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(target, args, queue))
    proc.start()
    import queue as queue_mod

    while True:
        try:
            status, payload = queue.get(timeout=10)
            break
        except queue_mod.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"{target.__name__} died with exit code {proc.exitcode}") from None
    proc.join()
    if status != "ok":
        raise RuntimeError(payload)
    return SystemResult(**payload)


def _module_available(name: str) -> bool:
    """Whether ``name`` can be imported (found on the path), without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def runnable_systems(systems: Iterable[str]) -> tuple[list[str], list[str]]:
    """The systems whose optional dependencies are installed, and one message per system skipped.

    A message names the missing modules and the extra that installs them, e.g.
    ``bertopic skipped (bertopic not installed): pip install 'analyzer[dev]'``.
    """
    runnable: list[str] = []
    messages: list[str] = []
    for system in systems:
        missing = [m for m in SYSTEM_REQUIRES.get(system, ()) if not _module_available(m)]
        if missing:
            messages.append(f"{system} skipped ({', '.join(missing)} not installed): "
                            f"pip install 'analyzer[{SYSTEM_EXTRA.get(system, 'dev')}]'")
        else:
            runnable.append(system)
    return runnable, messages


def resolve_presets(presets: Sequence[str] = (), suite: str | None = None,
                    known: Mapping[str, Any] | None = None) -> tuple[list[str], list[str]]:
    """The presets to run (``presets`` then the ``suite``'s, without repeats) and messages about skipped names.

    ``known`` is the preset table (default: :data:`analyzer.bench.scenario.PRESETS`, read now, so presets added
    there are accepted without changes here). An unknown name in ``presets`` raises ``ValueError``; a name of the
    suite missing from ``known`` is skipped with a message.
    """
    if known is None:
        from analyzer.bench.scenario import PRESETS as known
    out: list[str] = []
    messages: list[str] = []
    for name in presets:
        if name not in known:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(known)}")
        if name not in out:
            out.append(name)
    if suite is not None:
        if suite not in SUITES:
            raise ValueError(f"unknown suite {suite!r}; choose one of {sorted(SUITES)}")
        prefix = SUITE_PREFIX.get(suite)
        extra = [n for n in known if prefix and n.startswith(prefix) and n not in SUITES[suite]]
        for name in [*SUITES[suite], *extra]:
            if name not in known:
                messages.append(f"suite {suite}: preset {name!r} is not in PRESETS, skipped")
            elif name not in out:
                out.append(name)
    return out, messages


def drop_campaigns(scenario: Scenario) -> Scenario:
    """The scenario without its campaigns' requests and truth (a benign-only scenario built the long way).

    Requests whose ``actor`` is a true campaign are dropped; the ordinary traffic that hydra accounts relay stays
    and is benign now. ``truth`` keeps its hard negatives, loses its campaigns, and its counts are recomputed.
    """
    truth = dict(scenario.truth)
    names = set(truth.get("campaigns") or {})
    df = scenario.requests[~scenario.requests["actor"].isin(names)].reset_index(drop=True)
    accounts = sorted(df["account_id"].unique().tolist())
    truth.update(campaigns={}, all_accounts=accounts, n_accounts=len(accounts), n_requests=len(df),
                 n_unique_prompts=int(df["prompt"].nunique()), campaign_request_share=0.0)
    if isinstance(truth.get("pivot"), Mapping):
        shares = truth["pivot"].get("share_on_new_model_first_24h", {})
        truth["pivot"] = {"share_on_new_model_first_24h": {k: v for k, v in shares.items() if k not in names}}
    return Scenario(requests=df, truth=truth)


def build_benign(preset: str, seed: int, knobs: Mapping[str, Any] | None = None, log: Log = print) -> Scenario:
    """``preset`` with no campaigns (knobs ``campaigns=()`` and ``second_operator=None``: the ``adversarial``
    preset's second censorship pool is a campaign too); if the generator refuses that, the full scenario with
    its campaigns dropped (:func:`drop_campaigns`), saying why."""
    base = dict(knobs or {})
    try:
        return build_scenario(preset, seed=seed, **{**base, "campaigns": (), "second_operator": None})
    except corpora.SharedDataMissing:
        raise
    except Exception as exc:  # any refusal of the generator: fall back, saying which
        log(f"[{preset} seed {seed}] the generator refused campaigns=() ({type(exc).__name__}: {exc}); "
            f"building the full scenario and dropping its campaigns")
        return drop_campaigns(build_scenario(preset, seed=seed, **base))


def score_row(system: str, scenario: str, seed: int, res: SystemResult, truth: dict,
              tier: str | None = None) -> dict:
    recall, found = metrics.campaign_recall(res.flagged, truth)
    n_false, hard = metrics.false_flags(res.flagged, truth)
    flagged_accounts = {a for c in res.flagged for a in c}
    precision, rec = metrics.account_precision_recall(flagged_accounts, truth)
    row = {
        "system": system, "tier": tier, "scenario": scenario, "seed": seed,
        "campaign_recall": round(recall, 4), "smallest_campaign_found": metrics.smallest_campaign_found(found, truth),
        "false_flagged_campaigns": n_false,
        "hard_negatives_flagged": hard, "account_auc": round(metrics.account_auc(res.scores, truth), 4),
        "account_precision": round(precision, 4), "account_recall": round(rec, 4),
        "seconds": round(res.seconds, 2), "peak_rss_mb": round(res.peak_rss_mb, 1),
        "found": found, "stages": res.stages,
    }
    if res.candidates:
        lowest_true, highest_benign = metrics.score_margin(res.candidates, truth)
        row["lowest_true_score"] = None if lowest_true is None else round(lowest_true, 3)
        row["highest_benign_score"] = None if highest_benign is None else round(highest_benign, 3)
    return row


def benign_row(system: str, scenario: str, seed: int, res: SystemResult, truth: dict,
               tier: str | None = None) -> dict:
    """A benign-only row: how much of a campaign-free log the system flags.

    ``candidates_scored`` / ``candidates_flagged`` / ``fpr`` need a system that scores candidates it does not flag
    (the analyzer); for the others they are ``None`` / the number of flags / ``None``. The account-level figures
    hold for every system.
    """
    has_candidates = bool(res.candidates) and len(res.candidates_flagged) == len(res.candidates)
    if has_candidates:
        stats = metrics.benign_false_positives(res.candidates, res.candidates_flagged, truth, res.scores.keys())
    else:
        stats = metrics.benign_false_positives([(0.0, c) for c in res.flagged], [True] * len(res.flagged), truth,
                                               res.scores.keys())
    fpr, afpr = stats.fpr, stats.account_fpr
    return {
        "system": system, "tier": tier, "scenario": scenario, "seed": seed, "benign_only": True,
        "candidates_scored": stats.candidates_scored if has_candidates else None,
        "candidates_flagged": stats.candidates_flagged,
        "fpr": None if fpr is None or not has_candidates else round(fpr, 5),
        "benign_accounts": stats.accounts, "benign_accounts_flagged": stats.accounts_flagged,
        "account_fpr": None if afpr is None else round(afpr, 5),
        "highest_benign_score": (None if stats.highest_score is None or not has_candidates
                                 else round(stats.highest_score, 3)),
        "seconds": round(res.seconds, 2), "peak_rss_mb": round(res.peak_rss_mb, 1), "stages": res.stages,
    }


def _tier_list(tier: str | Sequence[str]) -> list[str]:
    if isinstance(tier, str):
        tiers = list(TIERS) if tier == "both" else [tier]
    else:
        tiers = list(tier)
    bad = [t for t in tiers if t not in TIERS]
    if bad or not tiers:
        raise ValueError(f"unknown tier(s) {bad}; choose from {list(TIERS)} or 'both'")
    # the default tier first: BERTopic is given its vectors
    return sorted(dict.fromkeys(tiers), key=lambda t: (t != DEFAULT_TIER, t))


def _caller(isolate: bool) -> Callable[..., SystemResult]:
    return _isolated if isolate else (lambda f, *a: f(*a))


def run_systems(log_path: str, workdir: str, systems: Sequence[str], tiers: Sequence[str],
                embedding_cache: str | None, isolate: bool, config_file: str | None = None
                ) -> list[tuple[str, str | None, SystemResult]]:
    """Run ``systems`` on one log: ``(system, tier, result)`` in run order.

    The analyzer runs once per tier, each into ``workdir/<tier>``; BERTopic is given the first tier's vectors, so
    the analyzer runs (unreported) when only BERTopic is asked for.
    """
    call = _caller(isolate)
    out: list[tuple[str, str | None, SystemResult]] = []
    for system in SYSTEMS:
        if system not in systems and not (system == "analyzer" and "bertopic" in systems):
            continue
        if system == "analyzer":
            for t in tiers:
                os.makedirs(os.path.join(workdir, t), exist_ok=True)
                out.append((system, t, call(run_analyzer, log_path, os.path.join(workdir, t), embedding_cache, t, True,
                                            config_file)))
        elif system == "bertopic":
            out.append((system, tiers[0], call(run_bertopic, os.path.join(workdir, tiers[0]))))
        elif system == "bertopic_e2e":
            out.append((system, None, call(run_bertopic_e2e, log_path)))
        else:
            out.append((system, None, call(run_volume, log_path)))
    return [(s, t, r) for s, t, r in out if s in systems]


def run_bench(preset: str | Sequence[str] = "quick", seeds: Sequence[int] = (0,),
              systems: Sequence[str] = DEFAULT_SYSTEMS, isolate: bool = True, workdir: str | None = None,
              knobs: dict | None = None, embedding_cache: str | None = None,
              tier: str | Sequence[str] = DEFAULT_TIER, benign_only: bool = False, log: Log = print,
              config_file: str | None = None) -> list[dict]:
    """Run every system on every seed of every preset; one row per (preset, seed, system[, tier]).

    ``tier`` is a tier, ``"both"``, or a list; the analyzer runs once per tier and its rows carry ``tier``.
    With ``benign_only`` each preset is built with no campaigns and the rows are :func:`benign_row`'s.
    """
    presets = [preset] if isinstance(preset, str) else list(preset)
    tiers = _tier_list(tier)
    rows = []
    for name in presets:
        if int(resolve_knobs(name, **(knobs or {}))["shards"]) > 1:
            rows += _run_sharded(name, seeds, systems, tiers, workdir, knobs or {}, embedding_cache, isolate, log,
                                 config_file, benign_only)
            continue
        for seed in seeds:
            with tempfile.TemporaryDirectory(prefix=f"bench-{name}-{seed}-", dir=workdir) as tmp:
                t0 = time.perf_counter()
                if benign_only:
                    scenario = build_benign(name, seed, knobs, log)
                else:
                    scenario = build_scenario(name, seed=seed, **(knobs or {}))
                log_path, _ = write_scenario(scenario, tmp)
                truth = scenario.truth
                log(f"[{name} seed {seed}] scenario{' (benign only)' if benign_only else ''}: "
                    f"{len(scenario.requests):,} requests, {scenario.requests['account_id'].nunique():,} accounts "
                    f"({time.perf_counter() - t0:.1f} s)")
                for system, t, res in run_systems(str(log_path), tmp, systems, tiers, embedding_cache, isolate,
                                                  config_file):
                    row = (benign_row if benign_only else score_row)(system, name, seed, res, truth, t)
                    rows.append(row)
                    log(format_benign_row(row) if benign_only else format_row(row))
    return rows


def _run_sharded(name: str, seeds: Sequence[int], systems: Sequence[str], tiers: Sequence[str], workdir: str | None,
                 knobs: Mapping[str, Any], embedding_cache: str | None, isolate: bool, log: Log,
                 config_file: str | None, benign_only: bool) -> list[dict]:
    """A sharded preset (``incident``): its shards written by :func:`write_sharded_scenario` and the analyzer run on
    their folder. The baselines read one log file and are not run at this size."""
    if benign_only:
        raise ValueError(f"preset {name!r} is sharded: --benign-only builds single logs; use shards=1")
    skipped = [s for s in systems if s != "analyzer"]
    if skipped:
        log(f"[{name}] {', '.join(skipped)} skipped: sharded presets run the analyzer only")
    rows = []
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-{seed}-", dir=workdir) as tmp:
            t0 = time.perf_counter()
            logs, truth_path = write_sharded_scenario(name, seed, tmp, log, **knobs)
            truth = json.loads(truth_path.read_text(encoding="utf-8"))
            log(f"[{name} seed {seed}] scenario: {truth['n_requests']:,} requests in {truth['shards']} shards, "
                f"{truth['n_accounts']:,} accounts ({time.perf_counter() - t0:.1f} s)")
            if "analyzer" in systems:
                for system, t, res in run_systems(str(logs), tmp, ["analyzer"], tiers, embedding_cache, isolate,
                                                  config_file):
                    rows.append(score_row(system, name, seed, res, truth, t))
                    log(format_row(rows[-1]))
    return rows


def benign_summary(rows: Sequence[dict], confidence: float = 0.95) -> list[dict]:
    """Benign-only rows pooled over seeds, per (scenario, system, tier).

    Pooled rates are total flagged over total scored (candidates) and over total benign accounts, each with the
    upper end of its two-sided Wilson interval at ``confidence``.
    """
    groups: dict[tuple[str, str, str | None], list[dict]] = {}
    for r in rows:
        if r.get("benign_only"):
            groups.setdefault((r["scenario"], r["system"], r.get("tier")), []).append(r)
    out = []
    for (scenario, system, tier), rs in groups.items():
        scored = [r["candidates_scored"] for r in rs if r["candidates_scored"] is not None]
        flagged = [r["candidates_flagged"] for r in rs if r["candidates_scored"] is not None]
        n, k = sum(scored), sum(flagged)
        na, ka = sum(r["benign_accounts"] for r in rs), sum(r["benign_accounts_flagged"] for r in rs)
        tops = [r["highest_benign_score"] for r in rs if r["highest_benign_score"] is not None]
        out.append({
            "scenario": scenario, "system": system, "tier": tier, "seeds": [r["seed"] for r in rs],
            "candidates_scored": n if scored else None, "candidates_flagged": sum(r["candidates_flagged"] for r in rs),
            "fpr": (k / n) if n else None,
            "fpr_upper": metrics.wilson_interval(k, n, confidence)[1] if scored else None,
            "benign_accounts": na, "benign_accounts_flagged": ka, "account_fpr": (ka / na) if na else None,
            "account_fpr_upper": metrics.wilson_interval(ka, na, confidence)[1],
            "highest_benign_score": max(tops) if tops else None, "confidence": confidence,
        })
    return out


# ------------------------------------------------------------------------------------------- difficulty curve

#: The difficulty curve: each entry is a knob and the values it takes, one knob varied at a time from the preset's
#: own settings (the other knobs stay at the preset's). ``campaign_accounts`` sets every campaign's account count
#: and keeps each account's request rate at the preset's (``requests_per_account`` fixed to the baseline
#: scenario's mean), so a smaller campaign is also less traffic; ``campaign_share`` is the campaigns' share of all
#: requests (honoured with ``requests_per_account=None``; at 0.01 each account sends its floor of one request per
#: campaign, so the actual share is reported too); ``template_variation`` 0 = one fixed wrapper, 1 = the base
#: wrappers, 3 = plus paraphrased wrappers; ``wrapper_style="fragments"`` (only where the scenario generator knows
#: that knob) splits wrappers into fragments; ``wrapper_noise`` retypes every wrapper with a typo in that share of
#: its words (the paraphrase an operator gets by having each request's wrapper retyped).
CURVE_GRID: tuple[tuple[str, tuple[Any, ...]], ...] = (
    ("campaign_accounts", (5, 10, 20, 40)),
    ("campaign_share", (0.01, 0.02, 0.05, 0.25)),
    ("template_variation", (0, 1, 3)),
    ("wrapper_style", ("fragments",)),
    ("wrapper_noise", (0.15, 0.3, 0.5)),
)


def curve_points(preset: str, grid: Sequence[tuple[str, Sequence[Any]]] = CURVE_GRID,
                 base: Mapping[str, Any] | None = None) -> tuple[list[tuple[str, Any]], list[str]]:
    """The ``(knob, value)`` points of the curve for ``preset``, and a message per knob the generator lacks."""
    known = resolve_knobs(preset, **dict(base or {}))
    points: list[tuple[str, Any]] = []
    messages: list[str] = []
    for knob, values in grid:
        if knob not in known:
            messages.append(f"curve: knob {knob!r} is not known to the scenario generator yet, skipped")
            continue
        points.extend((knob, v) for v in values)
    return points, messages


def _per_account_rate(truth: Mapping[str, Any]) -> float | None:
    """Mean requests per account per campaign in a scenario's truth (None without campaigns)."""
    rates = [c["n_requests"] / len(c["accounts"]) for c in (truth.get("campaigns") or {}).values()
             if c.get("accounts") and c.get("n_requests") is not None]
    return sum(rates) / len(rates) if rates else None


def point_knobs(knob: str, value: Any, baseline_truth: Mapping[str, Any]) -> dict[str, Any]:
    """The knob overrides of one curve point (see :data:`CURVE_GRID`)."""
    if knob == "campaign_share":
        return {"campaign_share": value, "requests_per_account": None}
    if knob == "campaign_accounts":
        rate = _per_account_rate(baseline_truth)
        return {"campaign_accounts": value, **({"requests_per_account": round(rate, 2)} if rate else {})}
    return {knob: value}


def curve_point(preset: str, seed: int, knob: str, value: Any, overrides: Mapping[str, Any], res: SystemResult,
                truth: Mapping[str, Any], tier: str, scenario_s: float) -> dict:
    """One row of the curve table."""
    recall, found = metrics.campaign_recall(res.flagged, truth)
    n_false, hard = metrics.false_flags(res.flagged, truth)
    lowest_true, highest_benign = metrics.score_margin(res.candidates, truth)
    camps = truth.get("campaigns") or {}
    return {
        "scenario": preset, "seed": seed, "tier": tier, "knob": knob, "value": value, "knobs": dict(overrides),
        "campaign_request_share": truth.get("campaign_request_share"),
        "campaign_accounts": len(metrics.campaign_accounts(truth)),
        "requests_per_account": None if _per_account_rate(truth) is None else round(_per_account_rate(truth), 1),
        "campaign_recall": round(recall, 4), "found": found,
        "smallest_campaign_found": metrics.smallest_campaign_found(found, truth),
        "highest_benign_score": None if highest_benign is None else round(highest_benign, 3),
        "lowest_true_score": None if lowest_true is None else round(lowest_true, 3),
        "false_flagged_campaigns": n_false, "hard_negatives_flagged": hard,
        "seconds": round(res.seconds, 2), "scenario_seconds": round(scenario_s, 2), "n_campaigns": len(camps),
    }


def run_curve(preset: str = "quick", seed: int = 0, tier: str | Sequence[str] = DEFAULT_TIER,
              grid: Sequence[tuple[str, Sequence[Any]]] = CURVE_GRID, knobs: Mapping[str, Any] | None = None,
              isolate: bool = True, workdir: str | None = None, embedding_cache: str | None = None,
              log: Log = print, config_file: str | None = None) -> list[dict]:
    """The analyzer on ``preset`` as it is (knob ``"default"``) and at every point of ``grid``.

    A point whose knobs resolve to the baseline's is not run again: the baseline's figures are copied.
    """
    tiers = _tier_list(tier)
    base = dict(knobs or {})
    points, messages = curve_points(preset, grid, base)
    for m in messages:
        log(m)
    call = _caller(isolate)
    rows: list[dict] = []
    baseline_truth: Mapping[str, Any] = {}
    baseline_rows: list[dict] = []
    baseline_resolved = resolve_knobs(preset, **base)
    for knob, value in [("default", None), *points]:
        overrides = {} if knob == "default" else point_knobs(knob, value, baseline_truth)
        merged = {**base, **overrides}
        if knob != "default" and resolve_knobs(preset, **merged) == baseline_resolved:
            for r in baseline_rows:
                rows.append({**r, "knob": knob, "value": value, "knobs": overrides, "same_as_default": True})
                log(format_curve_point(rows[-1]))
            continue
        with tempfile.TemporaryDirectory(prefix=f"curve-{preset}-{seed}-", dir=workdir) as tmp:
            t0 = time.perf_counter()
            scenario = build_scenario(preset, seed=seed, **merged)
            log_path, _ = write_scenario(scenario, tmp)
            scenario_s = time.perf_counter() - t0
            for t in tiers:
                wd = os.path.join(tmp, t)
                os.makedirs(wd, exist_ok=True)
                res = call(run_analyzer, str(log_path), wd, embedding_cache, t, True, config_file)
                row = curve_point(preset, seed, knob, value, overrides, res, scenario.truth, t, scenario_s)
                rows.append(row)
                log(format_curve_point(row))
                if knob == "default":
                    baseline_rows.append(row)
            if knob == "default":
                baseline_truth = scenario.truth
    return rows


def format_curve_point(r: dict) -> str:
    return (f"curve {r['scenario']} seed {r['seed']} [{r['tier']}] {r['knob']}={r['value']}: recall "
            f"{r['campaign_recall']:.2f}, highest benign {r['highest_benign_score']}, lowest true "
            f"{r['lowest_true_score']}, false flags {r['false_flagged_campaigns']}, {r['seconds']:.1f} s")


def _fmt(v: Any, spec: str = "") -> str:
    return "-" if v is None else format(v, spec)


def curve_table(rows: Sequence[dict]) -> str:
    """The curve as a Markdown table."""
    head = ("| knob | value | tier | campaign share | accounts | req/account | recall | smallest found | "
            "highest benign | lowest true | false flags | seconds |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        lines.append(f"| {r['knob']} | {_fmt(r['value'])} | {r['tier']} | {_fmt(r['campaign_request_share'], '.3f')} | "
                     f"{r['campaign_accounts']} | {_fmt(r['requests_per_account'])} | {r['campaign_recall']:.2f} | "
                     f"{_fmt(r['smallest_campaign_found'])} | {_fmt(r['highest_benign_score'], '.3f')} | "
                     f"{_fmt(r['lowest_true_score'], '.3f')} | {r['false_flagged_campaigns']} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def curve_plot_path(out: str) -> str:
    """Where the curve's plot goes: ``--out`` with ``.png`` for its suffix."""
    root, _ = os.path.splitext(out)
    return root + ".png"


def _curve_series(rows: Sequence[dict]) -> dict[str, dict[str, list]]:
    """Per knob (default excluded), the x labels and the three y series of the plot."""
    out: dict[str, dict[str, list]] = {}
    for r in rows:
        if r["knob"] == "default":
            continue
        label = str(r["value"]) + ("" if len({x.get("tier") for x in rows}) == 1 else f" [{r['tier']}]")
        s = out.setdefault(r["knob"], {"x": [], "recall": [], "highest benign score": [], "lowest true score": []})
        s["x"].append(label)
        s["recall"].append(r["campaign_recall"])
        s["highest benign score"].append(r["highest_benign_score"])
        s["lowest true score"].append(r["lowest_true_score"])
    return out


def curve_figure_plotly(rows: Sequence[dict]):
    """The curve as a plotly figure: one panel per knob; recall and the two score margins against the value."""
    from plotly.subplots import make_subplots

    series = _curve_series(rows)
    fig = make_subplots(rows=1, cols=max(1, len(series)), subplot_titles=list(series), shared_yaxes=True)
    symbols = {"recall": "circle", "highest benign score": "square", "lowest true score": "triangle-up"}
    colors = {"recall": "#1f77b4", "highest benign score": "#d62728", "lowest true score": "#2ca02c"}
    for i, (_, s) in enumerate(series.items(), start=1):
        for name in symbols:
            fig.add_scatter(x=s["x"], y=s[name], name=name, mode="lines+markers", row=1, col=i,
                            marker_symbol=symbols[name], line_color=colors[name], showlegend=(i == 1))
    fig.update_yaxes(range=[0, 1.05])
    fig.update_layout(width=320 * max(1, len(series)), height=360, margin=dict(l=40, r=20, t=40, b=40))
    return fig


def save_curve_plot(rows: Sequence[dict], path: str, log: Log = print) -> str | None:
    """Write the curve's PNG with matplotlib, else plotly + kaleido, else say why not; the path or ``None``."""
    series = _curve_series(rows)
    if not series:
        log("curve plot skipped: no curve points")
        return None
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if _module_available("matplotlib"):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(series), figsize=(3.6 * len(series), 3.4), sharey=True, squeeze=False)
        for ax, (knob, s) in zip(axes[0], series.items(), strict=True):
            for name, style in (("recall", "o-"), ("highest benign score", "s--"), ("lowest true score", "^:")):
                ys = [float("nan") if y is None else y for y in s[name]]
                ax.plot(s["x"], ys, style, label=name)
            ax.set_title(knob)
            ax.set_ylim(0, 1.05)
        axes[0][0].legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path
    if _module_available("plotly") and _module_available("kaleido"):
        curve_figure_plotly(rows).write_image(path)
        return path
    log("curve plot skipped: neither matplotlib nor plotly + kaleido is installed (pip install matplotlib)")
    return None


def format_row(row: dict) -> str:
    hn = ",".join(row["hard_negatives_flagged"]) or "-"
    system = row["system"] + (f"[{row['tier']}]" if row.get("tier") else "")
    return (f"{system:<18} {row['scenario']:<14} seed {row['seed']:<3} recall {row['campaign_recall']:.2f}  "
            f"smallest found {_fmt(row.get('smallest_campaign_found')):<4} "
            f"false flags {row['false_flagged_campaigns']:<3} hard negatives flagged {hn:<20} "
            f"AUC {row['account_auc']:.3f}  acc P {row['account_precision']:.2f} R {row['account_recall']:.2f}  "
            f"{row['seconds']:.1f} s  {row['peak_rss_mb']:.0f} MiB"
            + (f"  margin {row['lowest_true_score']} / {row['highest_benign_score']}"
               if row.get("lowest_true_score") is not None else ""))


def format_benign_row(row: dict) -> str:
    system = row["system"] + (f"[{row['tier']}]" if row.get("tier") else "")
    return (f"{system:<18} {row['scenario']:<14} seed {row['seed']:<3} benign only: candidates flagged "
            f"{row['candidates_flagged']}/{_fmt(row['candidates_scored'])} (FPR {_fmt(row['fpr'], '.4f')}), "
            f"accounts flagged {row['benign_accounts_flagged']}/{row['benign_accounts']} "
            f"(FPR {_fmt(row['account_fpr'], '.4f')}), highest benign score {_fmt(row['highest_benign_score'])}, "
            f"{row['seconds']:.1f} s")


def table(rows: list[dict]) -> str:
    """A Markdown table of the rows (for the README)."""
    head = ("| system | tier | scenario | seed | campaign recall | smallest found | false flags | "
            "hard negatives flagged | account AUC | account precision | account recall | seconds | peak RSS MiB |")
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        lines.append(f"| {r['system']} | {r.get('tier') or '-'} | {r['scenario']} | {r['seed']} | "
                     f"{r['campaign_recall']:.2f} | {_fmt(r.get('smallest_campaign_found'))} | "
                     f"{r['false_flagged_campaigns']} | {', '.join(r['hard_negatives_flagged']) or '-'} | "
                     f"{r['account_auc']:.3f} | {r['account_precision']:.2f} | {r['account_recall']:.2f} | "
                     f"{r['seconds']:.0f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def benign_table(rows: Sequence[dict], summary: Sequence[dict] = ()) -> str:
    """Benign-only rows, then the pooled lines of :func:`benign_summary`, as a Markdown table."""
    head = ("| system | tier | scenario | seed | candidates scored | candidates flagged | FPR | FPR 95% upper | "
            "benign accounts flagged | account FPR | account FPR 95% upper | highest benign score |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        k, n = r["candidates_flagged"], r["candidates_scored"]
        upper = None if n is None else metrics.wilson_interval(k, n)[1]
        a_upper = metrics.wilson_interval(r["benign_accounts_flagged"], r["benign_accounts"])[1]
        lines.append(f"| {r['system']} | {r.get('tier') or '-'} | {r['scenario']} | {r['seed']} | {_fmt(n)} | {k} | "
                     f"{_fmt(r['fpr'], '.4f')} | {_fmt(upper, '.4f')} | "
                     f"{r['benign_accounts_flagged']} / {r['benign_accounts']} | {_fmt(r['account_fpr'], '.4f')} | "
                     f"{a_upper:.4f} | {_fmt(r['highest_benign_score'], '.3f')} |")
    for s in summary:
        seeds = ",".join(str(x) for x in s["seeds"])
        lines.append(f"| **{s['system']}** | {s.get('tier') or '-'} | {s['scenario']} | pooled {seeds} | "
                     f"{_fmt(s['candidates_scored'])} | {s['candidates_flagged']} | {_fmt(s['fpr'], '.4f')} | "
                     f"{_fmt(s['fpr_upper'], '.4f')} | {s['benign_accounts_flagged']} / {s['benign_accounts']} | "
                     f"{_fmt(s['account_fpr'], '.4f')} | {s['account_fpr_upper']:.4f} | "
                     f"{_fmt(s['highest_benign_score'], '.3f')} |")
    return "\n".join(lines)


def benign_summary_text(summary: Sequence[dict]) -> str:
    """One sentence per pooled group: the figures a threshold's false-positive rate is stated with."""
    out = []
    for s in summary:
        who = s["system"] + (f" ({s['tier']} tier)" if s.get("tier") else "")
        seeds = len(s["seeds"])
        pct = int(round(100 * s["confidence"]))
        if s["candidates_scored"] is not None:
            out.append(f"- {who} on {s['scenario']} without campaigns, {seeds} seed(s): "
                       f"{s['candidates_flagged']} of {s['candidates_scored']} benign candidates flagged, FPR "
                       f"{100 * (s['fpr'] or 0):.2f}% (Wilson {pct}% upper bound {100 * s['fpr_upper']:.2f}%); "
                       f"{s['benign_accounts_flagged']} of {s['benign_accounts']} benign accounts flagged, "
                       f"{100 * (s['account_fpr'] or 0):.2f}% (upper {100 * s['account_fpr_upper']:.2f}%); highest "
                       f"benign score {_fmt(s['highest_benign_score'], '.3f')}")
        else:
            out.append(f"- {who} on {s['scenario']} without campaigns, {seeds} seed(s): {s['candidates_flagged']} "
                       f"flags; {s['benign_accounts_flagged']} of {s['benign_accounts']} benign accounts flagged, "
                       f"{100 * (s['account_fpr'] or 0):.2f}% (upper {100 * s['account_fpr_upper']:.2f}%)")
    return "\n".join(out)


def save(rows: list[dict], path: str, **extra: Any) -> None:
    """Write ``{"rows": rows, **extra}`` as JSON (``extra``: e.g. the benign-only ``summary``)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"rows": rows, **extra}, fh, indent=2, default=str)


def comparison(rows: list[dict]) -> str:
    """Time ratios of BERTopic to the analyzer, per seed, as Markdown lines ('' when there is nothing to compare).

    (a) end to end from the log file, each with its own default embedding: ``bertopic_e2e`` seconds over the
    analyzer's seconds (its embedding included only if it was not served from a cache). (b) clustering and ranking
    given the same vectors: BERTopic's fit over the analyzer's index + cluster + score stages.
    """
    lines = []
    by_seed: dict[tuple[str, int], dict[str, dict]] = {}
    for r in rows:
        # with several tiers the first analyzer row (the default tier's, whose vectors BERTopic was given) counts
        by_seed.setdefault((r["scenario"], r["seed"]), {}).setdefault(r["system"], r)
    for (scenario, seed), systems in by_seed.items():
        ours = systems.get("analyzer")
        if ours is None:
            continue
        if "bertopic_e2e" in systems:
            theirs = systems["bertopic_e2e"]
            cached = ours["stages"].get("embeddings_reused", 0)
            note = f" (analyzer reused {cached:,} cached vectors)" if cached else ""
            lines.append(f"- {scenario} seed {seed}, (a) end to end: BERTopic {theirs['seconds']:.0f} s, analyzer "
                         f"{ours['seconds']:.0f} s: {theirs['seconds'] / ours['seconds']:.1f}x{note}")
        if "bertopic" in systems:
            fit = systems["bertopic"]["stages"].get("bertopic_fit")
            own = sum(ours["stages"].get(k, 0.0) for k in ("index", "cluster", "score"))
            if fit and own:
                lines.append(f"- {scenario} seed {seed}, (b) same vectors: BERTopic fit {fit:.0f} s, analyzer index + "
                             f"cluster + score {own:.0f} s: {fit / own:.1f}x")
    return "\n".join(lines)
