"""Where the cluster stage's time goes, piece by piece, on a random slice of an embedded workspace.

Run: ``python benchmarks/cluster_parts.py --workspace WS [--sample 150000] [--seed 0]``

Reads the workspace only (ingested and embedded, e.g. a ``--scale`` run's). Takes ``--sample`` prompts at
random and runs the steps of :func:`analyzer.pipeline.cluster` on them one after the other, printing process
CPU and wall seconds per step (the machine may be shared: CPU seconds and ratios hold better than wall time).
Also prints what drives the main kNN graph's cost: the IVF index's list balance, as codes scanned per query
(``nprobe`` lists) against what lists of equal size would hold. The cost of the graph grows with that
product; near-duplicate prompts that share one list make it grow faster than the prompt count. Figures are
printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyzer import cluster as cluster_mod  # noqa: E402
from analyzer import embed as embed_mod  # noqa: E402
from analyzer import index as index_mod  # noqa: E402
from analyzer import pipeline  # noqa: E402
from analyzer import signals as sig  # noqa: E402
from analyzer.text import analysis_text  # noqa: E402
from analyzer.workspace import Workspace  # noqa: E402

#: Queries sampled to measure the IVF list balance (codes scanned per query).
BALANCE_QUERIES = 20_000


def timed(times: dict[str, tuple[float, float]], name: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``, record and print its ``(CPU s, wall s)`` under ``name``."""
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    times[name] = (round(time.process_time() - cpu, 1), round(time.perf_counter() - wall, 1))
    print(f"{name:<22} cpu {times[name][0]:7.1f} s   wall {times[name][1]:7.1f} s", flush=True)
    return out


def list_balance(index: faiss.Index, vectors: np.ndarray, seed: int) -> dict[str, float]:
    """Imbalance factor of an IVF index and the codes a query scans, against equal-sized lists."""
    ivf = faiss.extract_index_ivf(index)
    sizes = np.array([ivf.invlists.list_size(i) for i in range(ivf.nlist)])
    rng = np.random.default_rng(seed)
    q = vectors[rng.choice(len(vectors), size=min(BALANCE_QUERIES, len(vectors)), replace=False)]
    _, probed = ivf.quantizer.search(q, ivf.nprobe)
    return {"nlist": int(ivf.nlist), "nprobe": int(ivf.nprobe), "imbalance_factor": round(ivf.invlists.imbalance_factor(), 3),
            "largest_list": int(sizes.max()), "codes_per_query": round(float(sizes[probed].sum(axis=1).mean())),
            "codes_per_query_if_balanced": round(ivf.nprobe * len(vectors) / ivf.nlist)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--sample", type=int, default=150_000, help="Prompts taken at random (all if larger).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="Also write the figures to this JSON file.")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    opts = pipeline.RunOptions(progress=False, seed=args.seed)
    p = opts.cluster
    key = pipeline.embedder_for(opts).key
    ws = Workspace(args.workspace, read_only=True)
    times: dict[str, tuple[float, float]] = {}
    hashes, vectors = timed(times, "load vectors", lambda: ws.load_embeddings(key))
    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(len(hashes), size=min(args.sample, len(hashes)), replace=False))
    hashes, vectors = hashes[pick], np.ascontiguousarray(vectors[pick])
    n = len(hashes)
    counts = ws.db.execute("SELECT prompt_hash, count(*) AS n FROM requests GROUP BY prompt_hash").df()
    req_counts = counts.set_index("prompt_hash")["n"].reindex(hashes).fillna(0).to_numpy()
    texts = ws.db.execute("SELECT prompt_hash, text FROM prompts").df().set_index("prompt_hash")["text"]
    texts = texts.reindex(hashes).map(analysis_text)
    hash_texts = texts.tolist()
    print(f"{n:,} prompts", flush=True)

    index = timed(times, "index build", lambda: index_mod.build_index(vectors, seed=args.seed))
    balance = list_balance(index, vectors, args.seed) if "IVF" in index_mod.index_kind(n) else {}
    print(json.dumps(balance), flush=True)
    nbrs, sims = timed(times, "knn graph", lambda: index_mod.knn_graph(index, vectors, k=p.k))
    labels, _ = timed(times, "hdbscan", lambda: cluster_mod.cluster_knn_graph(nbrs, sims, p))
    labels = cluster_mod.add_repeat_clusters(labels, req_counts, p.min_cluster_size)
    calibrated = embed_mod.calibrate_similarity(key, sims)
    timed(times, "attach + tasks", lambda: (cluster_mod.attach_noise(labels, nbrs, calibrated, p.attach_similarity),
                                            cluster_mod.task_groups(nbrs, calibrated, p.task_similarity)))
    families = timed(times, "template families",
                     lambda: cluster_mod.template_families(hash_texts, p.edge_words, p.min_family_size))
    offset = int(labels.max()) + 1
    family_ids = np.where(families >= 0, families + offset, -1)
    scaffold_of, scaffold_fams = timed(times, "scaffold families",
                                       lambda: pipeline.scaffold_families(hash_texts, np.ones(n, dtype=bool), opts))
    scaffold_ids = np.where(scaffold_fams >= 0, scaffold_fams + max(int(family_ids.max()) + 1, offset), -1)
    intents, intent_sim = timed(times, "intents", lambda: pipeline.prompt_intents(vectors, opts, key))
    unread = timed(times, "unreadable", lambda: np.fromiter((sig.unreadable(t) for t in hash_texts), dtype=bool, count=n))
    intent_sim = np.where(unread, np.nan, intent_sim)
    for kind, ids in (("topic", labels), ("template", family_ids), ("scaffold", scaffold_ids)):
        rows = timed(times, f"label {kind}", lambda ids=ids, kind=kind: pipeline.label_clusters(
            hashes, ids, vectors, req_counts, texts, intents, intent_sim, opts, kind=kind))
    timed(times, "scaffold templates", lambda: pipeline.scaffold_templates(rows, scaffold_ids, scaffold_of))
    total = sum(c for c, _ in times.values())
    print(f"{'total':<22} cpu {total:7.1f} s; topic clusters {offset:,}, template families {int(families.max()) + 1:,}, "
          f"scaffold families {int(scaffold_fams.max()) + 1:,}; load average {os.getloadavg()[0]:.1f}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump({"workspace": args.workspace, "prompts": n, "seconds_cpu_wall": times, "ivf": balance}, fh, indent=1)


if __name__ == "__main__":
    main()
