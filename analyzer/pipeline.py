"""Runs the stages against a workspace. The CLI and the benchmark call these functions.

Each stage reads what the previous one stored in the workspace and stores its own result, so stages can
run separately (batch jobs) and a killed run can be started again: ingest skips request ids it already
has, embedding skips prompts that already have a vector, and the later stages recompute from stored data.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import resource
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from analyzer import __version__
from analyzer import cluster as cluster_mod
from analyzer import embed as embed_mod
from analyzer import index as index_mod
from analyzer import label as label_mod
from analyzer import signals as sig
from analyzer.campaigns import ClusterInfo, ScoringConfig, find_campaigns
from analyzer.embed import DEFAULT_TIER, TIERS, make_embedder
from analyzer.ingest import read_logs
from analyzer.text import analysis_text
from analyzer.workspace import Workspace


@dataclass
class RunOptions:
    """Every option of a full run; stored with the run so that any result can be traced to how it was made."""

    model: str = "minilm"
    tier: str = DEFAULT_TIER
    max_seq_length: int = 128
    batch_size: int = 16
    embed_chunk: int = 4096
    cluster: cluster_mod.ClusterParams = field(default_factory=cluster_mod.ClusterParams)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    label_sample: int = 100
    keyword_sample: int = 50
    map_sample: int = 20_000
    make_map: bool = True
    embedding_cache: str | None = None
    seed: int = 0
    progress: bool = True


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
def _embedder(model: str, max_seq_length: int, batch_size: int, tier: str):
    return make_embedder(model, max_seq_length, batch_size, tier=tier)


def embedder_for(options: RunOptions):
    """The embedder for ``options`` (loaded once per process and reused by every stage)."""
    return _embedder(options.model, options.max_seq_length, options.batch_size, options.tier)


def workspace_tier(ws: Workspace) -> str | None:
    """The embedding tier of the workspace's latest run that recorded one (``None`` for a new workspace).

    Later stages and re-runs use it when no tier is given, so that a workspace keeps one vector space.
    """
    rows = ws.db.execute(
        "SELECT params FROM runs WHERE params LIKE '%\"tier\"%' ORDER BY run_id DESC LIMIT 1").fetchall()
    if not rows:
        return None
    tier = (json.loads(rows[0][0]).get("options") or {}).get("tier")
    return tier if tier in TIERS else None


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class StageTimer:
    stages: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = round(self.stages.get(name, 0.0) + time.perf_counter() - t0, 3)


def _bar(total: int | None, desc: str, unit: str, enabled: bool):
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True, leave=False)


# --- ingest ---------------------------------------------------------------------------------------------------
def ingest(ws: Workspace, paths: Sequence[str], run_id: int, column_map: dict[str, str] | None = None,
           strict: bool = False, progress: bool = True) -> dict[str, int]:
    """Read logs into the workspace; returns ``{"read", "accepted", "rejected", "duplicates"}`` for this run.

    ``accepted + rejected + duplicates == read``. Rejected rows go to the ``rejected`` table and to
    ``quarantine/rejected-<run_id>.jsonl`` (one JSON object per bad row read in this run: source, line, field,
    reason, raw; written under a temporary name and renamed when the ingest finishes). Each batch of requests,
    rejected rows and counters is committed in one transaction, so a killed run can simply be run again.
    """
    totals = {"read": 0, "accepted": 0, "rejected": 0, "duplicates": 0}
    qpath = quarantine_path(ws, run_id)
    os.makedirs(os.path.dirname(qpath), exist_ok=True)
    tmp = f"{qpath}.tmp-{os.getpid()}"
    n_bad = 0
    try:
        with open(tmp, "w", encoding="utf-8") as qfh, _bar(None, "ingest", " rows", progress) as bar:
            for batch in read_logs(paths, column_map=column_map, strict=strict):
                for r in batch.rejected:
                    qfh.write(json.dumps({"source": r.source, "line": r.line, "field": r.field, "reason": r.reason,
                                          "raw": r.raw}, ensure_ascii=False) + "\n")
                n_bad += len(batch.rejected)
                counts = ws.add_ingest_batch(batch.requests, batch.rejected, batch.n_read, batch.source, run_id)
                for key, val in counts.items():
                    totals[key] += val
                bar.update(batch.n_read)
            qfh.flush()
            os.fsync(qfh.fileno())
        if n_bad:
            os.replace(tmp, qpath)
        else:
            os.remove(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    return totals


def quarantine_path(ws: Workspace, run_id: int) -> str:
    """``quarantine/rejected-<run_id>.jsonl`` in the workspace (exists only if the run rejected rows)."""
    return os.path.join(ws.path, "quarantine", f"rejected-{run_id}.jsonl")


# --- embed ------------------------------------------------------------------------------------------------------
def embed(ws: Workspace, options: RunOptions) -> dict[str, int | str]:
    """Embed every unique prompt that has no vector yet for the chosen model; returns counts.

    Vectors are saved in shards of ``options.embed_chunk`` prompts; a killed run keeps every finished shard.
    """
    embedder = embedder_for(options)
    key = embedder.key
    ws.verify_embeddings(key)
    reused = 0
    if options.embedding_cache:
        reused = import_embeddings(ws, options.embedding_cache, key)
    pending = ws.pending_prompts(key)
    n = len(pending)
    if n:
        with _bar(n, "embed", " prompts", options.progress) as bar:
            for start in range(0, n, max(1, options.embed_chunk)):
                chunk = pending.iloc[start : start + max(1, options.embed_chunk)]
                vecs = embedder.encode(chunk["text"].tolist(), progress=bar.update)
                ws.add_embedding_shard(key, chunk["prompt_hash"].tolist(), vecs)
    if options.embedding_cache and n:
        export_embeddings(ws, options.embedding_cache, key)
    total = int(ws.db.execute("SELECT count(*) FROM embedded WHERE model_key = ?", [key]).fetchall()[0][0])
    return {"model_key": key, "embedded_now": n, "embedded_total": total, "reused_from_cache": reused}


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
            known = set(h for (h,) in cache.db.execute(
                "SELECT prompt_hash FROM embedded WHERE model_key = ?", [key]).fetchall())
            take = np.flatnonzero([h not in known for h in hashes])
            if len(take):
                cache.add_embedding_shard(key, hashes[take].tolist(), vectors[take])
    finally:
        cache.close()
    return int(len(take))


# --- index + cluster + label ------------------------------------------------------------------------------------
def build_index(ws: Workspace, options: RunOptions):
    """Build and save the FAISS index for the stored vectors; returns ``(hashes, vectors, index)``."""
    key = embedder_for(options).key
    hashes, vectors = ws.load_embeddings(key)
    if len(hashes) == 0:
        raise RuntimeError("no embedded prompts in the workspace: run 'analyzer ingest' and 'analyzer embed' first")
    index = index_mod.build_index(vectors, seed=options.seed)
    index_mod.save_index(index, ws.index_path(key))
    return hashes, vectors, index


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


def cluster(ws: Workspace, options: RunOptions, index_result=None) -> dict[str, int]:
    """kNN graph, HDBSCAN, labels and per-cluster content signals; stored in ``prompt_clusters``/``clusters``."""
    hashes, vectors, index = index_result or build_index(ws, options)
    n = len(hashes)
    with _bar(n, "knn graph", " prompts", options.progress) as bar:
        nbrs, sims = index_mod.knn_graph(index, vectors, k=options.cluster.k, progress=bar.update)
    key = embedder_for(options).key
    labels, strengths = cluster_mod.cluster_knn_graph(nbrs, sims, options.cluster)
    counts = ws.db.execute("SELECT prompt_hash, count(*) AS n FROM requests GROUP BY prompt_hash").df()
    req_counts = counts.set_index("prompt_hash")["n"].reindex(hashes).fillna(0).to_numpy()
    labels = cluster_mod.add_repeat_clusters(labels, req_counts, options.cluster.min_cluster_size)
    strengths = np.where((strengths == 0) & (labels >= 0), 1.0, strengths)

    calibrated = embed_mod.calibrate_similarity(key, sims)
    attached = cluster_mod.attach_noise(labels, nbrs, calibrated, options.cluster.attach_similarity)
    tasks = cluster_mod.task_groups(nbrs, calibrated, options.cluster.task_similarity)
    del nbrs, sims, calibrated
    # Every text-reading step below (families, scaffolds, labels, language) reads a long prompt's head and
    # tail only: bounded work per prompt, and padding cannot push the instruction out of view.
    texts = ws.db.execute("SELECT prompt_hash, text FROM prompts").df().set_index("prompt_hash")["text"].map(
        analysis_text)
    hash_texts = texts.reindex(hashes).fillna("").tolist()
    families = cluster_mod.template_families(hash_texts, options.cluster.edge_words, options.cluster.min_family_size)
    offset = int(labels.max()) + 1 if n else 0
    family_ids = np.where(families >= 0, families + offset, -1)
    scaffold_of, scaffold_fams = scaffold_families(hash_texts, np.ones(n, dtype=bool), options)
    scaffold_offset = (int(family_ids.max()) + 1) if (family_ids >= 0).any() else offset
    scaffold_ids = np.where(scaffold_fams >= 0, scaffold_fams + scaffold_offset, -1)
    # The unit a prompt's requests count towards in campaign signals: its scaffold family (recurring sentences,
    # in any order: survives paraphrase by fragments), else its literal template family (opening or closing
    # words), else its (possibly attributed) topic cluster.
    assigned = np.where(scaffold_ids >= 0, scaffold_ids, np.where(family_ids >= 0, family_ids, attached))

    intents, intent_sim = prompt_intents(vectors, options, key)
    # The embedding models read English (and Latin-script languages) only: the intent of a prompt written
    # mostly in another script is not judged (NaN), so that detection does not depend on it.
    unread = np.fromiter((sig.unreadable(t) for t in hash_texts), dtype=bool, count=len(hash_texts))
    intent_sim = np.where(unread, np.nan, intent_sim)

    scaffold_rows = label_clusters(hashes, scaffold_ids, vectors, req_counts, texts, intents, intent_sim, options,
                                   kind="scaffold")
    scaffold_rows = scaffold_templates(scaffold_rows, scaffold_ids, scaffold_of)
    rows = pd.concat([
        label_clusters(hashes, labels, vectors, req_counts, texts, intents, intent_sim, options, kind="topic"),
        label_clusters(hashes, family_ids, vectors, req_counts, texts, intents, intent_sim, options, kind="template"),
        scaffold_rows,
    ], ignore_index=True)
    pc = pd.DataFrame({
        "prompt_hash": hashes, "cluster_id": labels.astype(np.int32), "probability": strengths,
        "assigned_cluster": assigned.astype(np.int32), "intent": intents,
        "intent_similarity": intent_sim.astype(np.float64), "task_id": tasks.astype(np.int64),
    })
    # Campaigns computed from the previous clustering no longer match: clear them in the same transaction,
    # so that a run killed before the score stage never shows new clusters beside old campaigns.
    empty = {t: ws.db.execute(f"SELECT * FROM {t} LIMIT 0").df() for t in ("campaigns", "campaign_accounts", "accounts")}
    system_map, system_rows = system_families(ws, options, key, first_id=int(rows["cluster_id"].max()) + 1
                                              if len(rows) else 0)
    rows = pd.concat([rows, system_rows], ignore_index=True)
    ws.replace_tables({"prompt_clusters": pc, "system_clusters": system_map, "clusters": rows, **empty})
    return {"prompts": n, "clusters": offset, "noise": int((labels < 0).sum()),
            "noise_attributed": int(((labels < 0) & (attached >= 0)).sum()),
            "template_families": int(families.max() + 1) if n else 0,
            "prompts_in_families": int((families >= 0).sum()),
            "scaffold_families": int(scaffold_fams.max() + 1) if n else 0,
            "prompts_in_scaffold_families": int((scaffold_fams >= 0).sum()),
            "distinct_tasks": int(len(np.unique(tasks))),
            "system_families": int(system_rows["cluster_id"].nunique()) if len(system_rows) else 0}


#: A system prompt is a unit of its own when it reads as a capability at least this much (training value of
#: its best capability intent): an operator can move the whole instruction into the system message and send
#: bare tasks as user turns. Generic personas ("You are a helpful assistant.") stay out.
SYSTEM_MIN_VALUE = 0.5


def system_families(ws: Workspace, options: RunOptions, key: str, first_id: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """System prompts that carry a capability instruction, grouped into families.

    Returns ``(system_clusters rows: system_hash, cluster_id (-1 = none), intent, intent_similarity;
    cluster rows of kind "system")``. Families: the distinct system prompts' vectors clustered like prompts
    (kNN graph, HDBSCAN), and any other one sent in ``min_family_size`` requests on its own. A request whose
    prompt is in no template family counts towards its system prompt's family, and its training value is the
    larger of its prompt's and its system prompt's.
    """
    empty = (pd.DataFrame(columns=["system_hash", "cluster_id", "intent", "intent_similarity"]),
             pd.DataFrame(columns=["cluster_id", "kind", "n_prompts", "n_requests", "n_accounts", "label", "keywords",
                                   "template", "exemplars", "campaign_id", "signals"]))
    sysp = ws.db.execute(
        """SELECT md5(system_prompt) AS system_hash, any_value(system_prompt) AS text, count(*) AS n
           FROM requests WHERE system_prompt IS NOT NULL AND system_prompt <> '' GROUP BY 1 ORDER BY 1""").df()
    if sysp.empty:
        return empty
    vecs = embedder_for(options).encode(sysp["text"].tolist())
    intents, sim = prompt_intents(vecs, options, key)
    value = sig.training_values(sim)
    keep = np.flatnonzero(value >= SYSTEM_MIN_VALUE)
    if len(keep) == 0:
        return empty
    sysp, vecs, intents, sim = sysp.iloc[keep].reset_index(drop=True), vecs[keep], intents[keep], sim[keep]
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
    rows = label_clusters(sysp["system_hash"].to_numpy(), ids, vecs, counts, texts, intents, sim, options,
                          kind="system")
    # A system family is one instruction, not a filled template: templating is judged on the user turns.
    rows["signals"] = rows["signals"].map(lambda js: json.dumps({**json.loads(js), "template_coverage": 0.0}))
    out = pd.DataFrame({"system_hash": sysp["system_hash"], "cluster_id": ids.astype(np.int32), "intent": intents,
                        "intent_similarity": sim.astype(np.float64)})
    return out, rows


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


def scaffold_families(texts: list[str], eligible: np.ndarray, options: RunOptions
                      ) -> tuple[list[str | None], np.ndarray]:
    """Families of prompts built on the same paraphrased wrapper: ``(scaffold per prompt, family per prompt)``.

    The scaffold of a prompt is its recurring sentences (:func:`analyzer.cluster.scaffolds`); scaffolds are
    embedded and clustered like prompts (kNN graph, HDBSCAN), so fragments composed in another order, or
    swapped for a synonymous fragment, land in one family. Only ``eligible`` prompts (not already in a literal
    template family) are considered. Family ids start at 0; ``-1`` = none.
    """
    p = options.cluster
    n = len(texts)
    fams = np.full(n, -1, dtype=np.int64)
    scaf = cluster_mod.scaffolds(texts, min_prompts=p.scaffold_min_prompts)
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
    nbrs, sims = index_mod.knn_graph(index, vecs, k=k)
    del index
    labels, _ = cluster_mod.cluster_knn_graph(nbrs, sims, replace(p, selection=p.scaffold_selection))
    _, first = np.unique(inverse[kept], return_index=True)  # every distinct scaffold has a kept copy
    per_prompt = labels[first][inverse]
    per_prompt[kept] = labels
    # Numbered by decreasing size over all prompts, as if every copy had been clustered.
    fams[idx] = cluster_mod.relabel_by_size(per_prompt)
    return scaf, fams


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
    for cid, js in zip(rows["cluster_id"], rows["signals"], strict=True):
        # A family's prompts share few distinct scaffolds: count those (in order of first appearance, so
        # that sentences as frequent as each other keep the order in which the members show them).
        scaf_counts = Counter(scaffold_of[j] or "" for j in members[int(cid)])
        parts: Counter[str] = Counter()
        for scaf, m in scaf_counts.items():
            for sent in scaf.split(" | "):
                if sent:
                    parts[sent] += m
        top = pd.Series(parts, dtype=object).sort_values(ascending=False, kind="stable").index[:4].tolist()
        for scaf in scaf_counts:
            if scaf not in n_words:
                n_words[scaf] = len(cluster_mod.words(scaf))
        median_words = np.median(np.repeat([n_words[x] for x in scaf_counts], list(scaf_counts.values())))
        sig_ = json.loads(js)
        sig_.update(template_coverage=1.0, n_fixed_words=int(median_words), n_slots=1)
        signals.append(json.dumps(sig_))
        templates.append(" … ".join(top) + " … {task} (sentences in varying order)")
    rows["signals"] = signals
    rows["template"] = templates
    return rows


def label_clusters(hashes, labels, vectors, req_counts, texts: pd.Series, intents: np.ndarray,
                   intent_sim: np.ndarray, options: RunOptions, kind: str = "topic") -> pd.DataFrame:
    """One row per cluster of ``labels``: keywords, template, exemplars, label and content signals.

    ``kind`` is ``"topic"`` for semantic (HDBSCAN) clusters and ``"template"`` for template families.
    """
    rng = np.random.default_rng(options.seed)
    tight = cluster_mod.cluster_tightness(labels, vectors)
    cluster_ids = [int(c) for c in np.unique(labels) if c >= 0]
    members = cluster_mod.members_by_label(labels)
    sample = {c: (idx if len(idx) <= options.label_sample else np.sort(rng.choice(idx, options.label_sample, replace=False)))
              for c, idx in members.items()}
    docs, doc_labels, doc_weights = [], [], []
    for c, idx in sample.items():
        idx = idx[: options.keyword_sample]
        docs += [texts[hashes[i]] for i in idx]
        doc_labels += [c] * len(idx)
        doc_weights += [float(req_counts[i]) for i in idx]
    keywords = label_mod.ctfidf_keywords(docs, doc_labels, weights=doc_weights) if docs else {}
    out = []
    for c in cluster_ids:
        idx = sample[c]
        ctexts = [texts[hashes[i]] for i in idx]
        template = label_mod.extract_template(ctexts, seed=options.seed)
        judged = intent_sim[idx][~np.isnan(intent_sim[idx])]
        tv = float(np.mean(sig.training_values(judged))) if len(judged) else 0.0
        kw = keywords.get(c, [])
        out.append({
            "cluster_id": c,
            "kind": kind,
            "n_prompts": int(len(members[c])),
            "n_requests": int(req_counts[members[c]].sum()),
            "n_accounts": 0,
            "label": label_mod.cluster_label(kw, template),
            "keywords": json.dumps(kw),
            "template": template.text,
            "exemplars": json.dumps(label_mod.exemplars(ctexts, vectors[idx], n=3)),
            "campaign_id": None,
            "signals": json.dumps({
                "template_coverage": round(template.coverage, 4),
                "n_fixed_words": template.n_fixed_words,
                "n_slots": template.n_slots,
                "slot_entropy": round(template.slot_entropy, 4),
                "training_value": round(tv, 4),
                "intent": most_common(intents[idx]),
                "intent_similarity": round(float(judged.mean()), 4) if len(judged) else None,
                "tightness": round(tight.get(c, 0.0), 4),
            }),
        })
    return pd.DataFrame(out, columns=["cluster_id", "kind", "n_prompts", "n_requests", "n_accounts", "label", "keywords",
                                      "template", "exemplars", "campaign_id", "signals"])


def most_common(values: Sequence[str]) -> str:
    """The most frequent of ``values``, the first in sorted order among equally frequent ones (as pandas'
    ``Series.mode().iloc[0]``, without building a Series per cluster)."""
    counts = Counter(values)
    top = max(counts.values())
    return str(min(v for v, c in counts.items() if c == top))


# --- score --------------------------------------------------------------------------------------------------------
def cluster_infos(rows: pd.DataFrame) -> dict[int, ClusterInfo]:
    """What the label stage stored about each cluster (rows of the ``clusters`` table)."""
    infos = {}
    for r in rows.itertuples(index=False):
        s = json.loads(r.signals or "{}")
        infos[int(r.cluster_id)] = ClusterInfo(
            cluster_id=int(r.cluster_id), label=r.label or "", keywords=json.loads(r.keywords or "[]"),
            template=r.template or "", template_coverage=float(s.get("template_coverage", 0.0)),
            n_fixed_words=int(s.get("n_fixed_words", 0)),
            n_slots=None if s.get("n_slots") is None else int(s["n_slots"]), training_value=float(s.get("training_value", 0.0)),
            intent=s.get("intent", ""), tightness=float(s.get("tightness", 0.0)),
            exemplars=json.loads(r.exemplars or "[]"),
        )
    return infos


def score(ws: Workspace, options: RunOptions) -> dict[str, int]:
    """Group clusters into campaigns, score and explain them; stored in ``campaigns`` and friends."""
    req = ws.db.execute(
        """
        SELECT r.account_id, r.ts, r.prompt_hash,
               -- the unit: the prompt's template family, else its system prompt's family, else its topic
               CASE WHEN c.kind IN ('template', 'scaffold') THEN pc.assigned_cluster
                    WHEN sc.cluster_id >= 0 THEN sc.cluster_id
                    ELSE coalesce(pc.assigned_cluster, -1) END AS cluster_id,
               coalesce(pc.cluster_id, -1) AS topic_cluster, pc.task_id,
               CASE WHEN sc.intent_similarity > coalesce(pc.intent_similarity, 0) THEN sc.intent
                    ELSE pc.intent END AS intent,
               CASE WHEN pc.intent_similarity IS NULL AND sc.intent_similarity IS NULL THEN NULL
                    ELSE greatest(coalesce(pc.intent_similarity, 0), coalesce(sc.intent_similarity, 0))
                    END AS intent_similarity,
               r.model, r.ip, r.user_agent, r.api_key_id, r.org_id, r.payment_id,
               CASE WHEN r.system_prompt IS NULL OR r.system_prompt = '' THEN NULL
                    ELSE md5(r.system_prompt) END AS system_prompt
        FROM requests r LEFT JOIN prompt_clusters pc USING (prompt_hash)
        LEFT JOIN (SELECT cluster_id, kind FROM clusters) c ON c.cluster_id = pc.assigned_cluster
        LEFT JOIN system_clusters sc ON sc.system_hash = md5(r.system_prompt)
        """
    ).df()
    if req.empty:
        raise RuntimeError("the workspace has no requests: run 'analyzer ingest' first")
    clusters = ws.table("clusters")
    result = find_campaigns(req, cluster_infos(clusters), options.scoring, lambda hashes: prompt_texts(ws, hashes))
    n_acc = req[req["cluster_id"] >= 0].groupby("cluster_id")["account_id"].nunique()
    clusters["n_accounts"] = n_acc.reindex(clusters["cluster_id"]).fillna(0).astype(int).to_numpy()
    clusters["campaign_id"] = clusters["cluster_id"].map(result.cluster_campaign)
    camps = result.campaigns.copy()
    for col in ("keywords", "clusters", "signals", "evidence", "examples"):
        camps[col] = camps[col].map(lambda v: json.dumps(v, ensure_ascii=False, default=str))
    ca = result.campaign_accounts.copy()
    ca["evidence"] = ca["evidence"].map(lambda v: json.dumps(v, ensure_ascii=False))
    acc = result.accounts.copy()
    acc["signals"] = acc["signals"].map(json.dumps)
    ws.replace_tables({"clusters": clusters, "campaigns": camps, "campaign_accounts": ca, "accounts": acc})
    return {"campaigns": int(len(camps)), "flagged": int(camps["flagged"].sum()) if len(camps) else 0,
            "accounts": int(len(acc))}


def prompt_texts(ws: Workspace, hashes: Sequence[str]) -> dict[str, str]:
    """Texts of the given prompts, in one query."""
    if not len(hashes):
        return {}
    rows = ws.db.execute("SELECT prompt_hash, text FROM prompts WHERE list_contains(?, prompt_hash)",
                         [list(hashes)]).fetchall()
    return dict(rows)


# --- map ----------------------------------------------------------------------------------------------------------------
def make_map(ws: Workspace, options: RunOptions) -> dict[str, int]:
    """The app's 2-D map of up to ``options.map_sample`` prompts (see :mod:`analyzer.maplayout`).

    UMAP lays out cluster representatives -- every cluster of every campaign among them -- and the other
    shown prompts are placed beside their most similar representatives.
    """
    from analyzer import maplayout

    key = embedder_for(options).key
    hashes, vectors = ws.load_embeddings(key)
    if len(hashes) < 10:
        ws.replace_tables({"prompt_map": pd.DataFrame(columns=["prompt_hash", "x", "y"])})
        return {"points": 0}
    units, campaign_units = map_units(ws, hashes)
    params = maplayout.MapParams()
    rng = np.random.default_rng(options.seed)
    reps, placed = maplayout.select_points(units, campaign_units, options.map_sample, params, rng)
    xy = maplayout.umap_layout(vectors[reps], params, options.seed)
    placed_xy = maplayout.place_points(vectors[placed], vectors[reps], xy, params, rng, units[placed], units[reps])
    idx = np.concatenate([reps, placed])
    pos = np.vstack([xy, placed_xy])
    order = np.argsort(idx, kind="stable")
    frame = pd.DataFrame({"prompt_hash": hashes[idx[order]], "x": pos[order, 0].astype(float),
                          "y": pos[order, 1].astype(float)})
    ws.replace_tables({"prompt_map": frame})
    return {"points": int(len(frame)), "laid_out": int(len(reps)), "placed": int(len(placed))}


def map_units(ws: Workspace, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each prompt's cluster as the app colours it (template family, else topic cluster; -1 noise), in
    ``hashes`` order, and the clusters that belong to a campaign."""
    pc = ws.db.execute("SELECT prompt_hash, coalesce(assigned_cluster, cluster_id) AS unit FROM prompt_clusters").df()
    units = pc.set_index("prompt_hash")["unit"].reindex(hashes).fillna(-1).astype(np.int64).to_numpy()
    in_campaign = ws.db.execute("SELECT cluster_id FROM clusters WHERE campaign_id IS NOT NULL").df()
    return units, in_campaign["cluster_id"].to_numpy(dtype=np.int64)


# --- everything ---------------------------------------------------------------------------------------------------------
def run_all(ws: Workspace, paths: Sequence[str], options: RunOptions, column_map: dict[str, str] | None = None,
            strict: bool = False, command: str = "run") -> dict:
    """Ingest, embed, index, cluster, label, score (and map) in one go; returns stage times and counts."""
    timer = StageTimer()
    params = {"paths": list(paths), "options": asdict(options), "column_map": column_map, "strict": strict}
    with ws.writing():
        run_id = ws.start_run(command, params, versions())
        stats: dict = {"run_id": run_id}
        try:
            with timer.stage("ingest"):
                stats["ingest"] = ingest(ws, paths, run_id, column_map, strict, options.progress)
            if os.path.exists(quarantine_path(ws, run_id)):
                stats["quarantine"] = quarantine_path(ws, run_id)
            with timer.stage("embed"):
                stats["embed"] = embed(ws, options)
            with timer.stage("index"):
                index_result = build_index(ws, options)
            with timer.stage("cluster"):
                stats["cluster"] = cluster(ws, options, index_result)
            del index_result
            with timer.stage("score"):
                stats["score"] = score(ws, options)
            if options.make_map:
                with timer.stage("map"):
                    stats["map"] = make_map(ws, options)
        except BaseException as exc:
            stats["stages_s"] = timer.stages
            ws.finish_run(run_id, stats, status=f"failed: {type(exc).__name__}")
            raise
        stats["stages_s"] = timer.stages
        stats["peak_rss_mb"] = round(peak_rss_mb(), 1)
        ws.finish_run(run_id, stats)
    return stats
