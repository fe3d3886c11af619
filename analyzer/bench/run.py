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

Each system runs in its own child process so that its peak memory is its own.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import resource
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from analyzer.bench import metrics
from analyzer.bench.scenario import build_scenario, write_scenario
from analyzer.embed import DEFAULT_TIER

SYSTEMS = ("analyzer", "bertopic", "bertopic_e2e", "volume")
#: What ``analyzer bench`` runs without ``--system``: BERTopic end to end embeds every prompt on torch (about an
#: hour for the standard scenario on two cores), so it runs only when asked for.
DEFAULT_SYSTEMS = ("analyzer", "bertopic", "volume")


@dataclass
class SystemResult:
    flagged: list[list[str]]          # accounts of each flagged campaign
    scores: dict[str, float]          # account -> score in [0, 1]
    seconds: float
    peak_rss_mb: float
    stages: dict[str, float]
    candidates: list[tuple[float, list[str]]] = field(default_factory=list)  # every candidate: (score, accounts)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_analyzer(log_path: str, workdir: str, embedding_cache: str | None = None, tier: str = DEFAULT_TIER,
                 quiet: bool = True) -> SystemResult:
    from analyzer.pipeline import RunOptions, run_all
    from analyzer.workspace import Workspace

    t0 = time.perf_counter()
    ws = Workspace(os.path.join(workdir, "ws-analyzer"), create=True)
    stats = run_all(ws, [log_path], RunOptions(progress=not quiet, make_map=False, embedding_cache=embedding_cache,
                                               tier=tier))
    stats["stages_s"]["embeddings_reused"] = stats["embed"]["reused_from_cache"]
    camps = ws.db.execute("SELECT campaign_id, flagged, score FROM campaigns").df()
    ca = ws.db.execute("SELECT campaign_id, account_id FROM campaign_accounts").df()
    acc = ws.db.execute("SELECT account_id, score FROM accounts").df()
    ws.close()
    flagged_ids = set(camps.loc[camps["flagged"], "campaign_id"])
    members = {cid: g["account_id"].tolist() for cid, g in ca.groupby("campaign_id")}
    flagged = [accounts for cid, accounts in members.items() if cid in flagged_ids]
    candidates = [(float(score), members.get(cid, [])) for cid, score in zip(camps["campaign_id"], camps["score"],
                                                                             strict=True)]
    return SystemResult(flagged, dict(zip(acc["account_id"], acc["score"].astype(float), strict=True)),
                        time.perf_counter() - t0, _peak_mb(), stats["stages_s"], candidates)


def _embeddings_from(workdir: str):
    """The analyzer workspace's prompts, vectors and requests (the 'same embeddings' for BERTopic)."""
    from analyzer.workspace import Workspace

    ws = Workspace(os.path.join(workdir, "ws-analyzer"))
    key = ws.db.execute("SELECT model_key FROM embedded GROUP BY model_key ORDER BY count(*) DESC LIMIT 1").fetchall()[0][0]
    hashes, vectors = ws.load_embeddings(key)
    texts = ws.db.execute("SELECT prompt_hash, text FROM prompts").df().set_index("prompt_hash")["text"]
    req = ws.db.execute("SELECT account_id, prompt_hash FROM requests").df()
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


def score_row(system: str, scenario: str, seed: int, res: SystemResult, truth: dict) -> dict:
    recall, found = metrics.campaign_recall(res.flagged, truth)
    n_false, hard = metrics.false_flags(res.flagged, truth)
    flagged_accounts = {a for c in res.flagged for a in c}
    precision, rec = metrics.account_precision_recall(flagged_accounts, truth)
    row = {
        "system": system, "scenario": scenario, "seed": seed,
        "campaign_recall": round(recall, 4), "false_flagged_campaigns": n_false,
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


def run_bench(preset: str = "quick", seeds: Sequence[int] = (0,), systems: Sequence[str] = DEFAULT_SYSTEMS,
              isolate: bool = True, workdir: str | None = None, knobs: dict | None = None,
              embedding_cache: str | None = None, tier: str = DEFAULT_TIER, log=print) -> list[dict]:
    """Run every system on every seed of ``preset``; returns one row per (system, seed)."""
    rows = []
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix=f"bench-{preset}-{seed}-", dir=workdir) as tmp:
            t0 = time.perf_counter()
            scenario = build_scenario(preset, seed=seed, **(knobs or {}))
            log_path, _ = write_scenario(scenario, tmp)
            truth = scenario.truth
            log(f"[{preset} seed {seed}] scenario: {len(scenario.requests):,} requests, "
                f"{scenario.requests['account_id'].nunique():,} accounts ({time.perf_counter() - t0:.1f} s)")
            call = _isolated if isolate else (lambda f, *a: f(*a))
            results: dict[str, SystemResult] = {}
            # The analyzer runs first: BERTopic reuses its embeddings.
            for system in SYSTEMS:
                if system not in systems and not (system == "analyzer" and "bertopic" in systems):
                    continue
                if system == "analyzer":
                    results[system] = call(run_analyzer, str(log_path), tmp, embedding_cache, tier)
                elif system == "bertopic":
                    results[system] = call(run_bertopic, tmp)
                elif system == "bertopic_e2e":
                    results[system] = call(run_bertopic_e2e, str(log_path))
                else:
                    results[system] = call(run_volume, str(log_path))
                if system in systems:
                    row = score_row(system, preset, seed, results[system], truth)
                    rows.append(row)
                    log(format_row(row))
    return rows


def format_row(row: dict) -> str:
    hn = ",".join(row["hard_negatives_flagged"]) or "-"
    return (f"{row['system']:<9} {row['scenario']:<8} seed {row['seed']:<3} recall {row['campaign_recall']:.2f}  "
            f"false flags {row['false_flagged_campaigns']:<3} hard negatives flagged {hn:<20} "
            f"AUC {row['account_auc']:.3f}  acc P {row['account_precision']:.2f} R {row['account_recall']:.2f}  "
            f"{row['seconds']:.1f} s  {row['peak_rss_mb']:.0f} MiB"
            + (f"  margin {row['lowest_true_score']} / {row['highest_benign_score']}"
               if row.get("lowest_true_score") is not None else ""))


def table(rows: list[dict]) -> str:
    """A Markdown table of the rows (for the README)."""
    head = ("| system | scenario | seed | campaign recall | false flags | hard negatives flagged | account AUC | "
            "account precision | account recall | seconds | peak RSS MiB |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['system']} | {r['scenario']} | {r['seed']} | {r['campaign_recall']:.2f} | "
                     f"{r['false_flagged_campaigns']} | {', '.join(r['hard_negatives_flagged']) or '-'} | "
                     f"{r['account_auc']:.3f} | {r['account_precision']:.2f} | {r['account_recall']:.2f} | "
                     f"{r['seconds']:.0f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def save(rows: list[dict], path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"rows": rows}, fh, indent=2, default=str)


def comparison(rows: list[dict]) -> str:
    """Time ratios of BERTopic to the analyzer, per seed, as Markdown lines ('' when there is nothing to compare).

    (a) end to end from the log file, each with its own default embedding: ``bertopic_e2e`` seconds over the
    analyzer's seconds (its embedding included only if it was not served from a cache). (b) clustering and ranking
    given the same vectors: BERTopic's fit over the analyzer's index + cluster + score stages.
    """
    lines = []
    by_seed: dict[tuple[str, int], dict[str, dict]] = {}
    for r in rows:
        by_seed.setdefault((r["scenario"], r["seed"]), {})[r["system"]] = r
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
