"""The accurate tier and the kNN graph on a GPU: speed, agreement with the CPU, and the graph at incident size.

Run (on a machine with a CUDA GPU and torch; FAISS and DuckDB are not needed):
``python benchmarks/gpu_check.py --prompts PROMPTS.parquet --model MODEL_DIR [--embed 100000]
[--sizes 1000000,2000000,4000000] [--deadline 420] [--out gpu_check.json]``

``PROMPTS.parquet`` holds a ``text`` column of real unique prompts (a sample of a workspace's ``prompts``);
``MODEL_DIR`` the accurate tier's model (the packaged all-MiniLM-L6-v2, or a copy of it with fp16 weights: the
GPU runs it in fp16 either way). Measured, each printed and written as JSON:

1. **Embedding** (:class:`analyzer.embed.SentenceTransformerEmbedder` on the GPU, fp16): prompts per second
   over ``--embed`` prompts after a warm-up, the long-prompt windowing (tokenizer, CPU) timed apart, and the
   agreement with the same model in fp32 on the CPU (cosine of each prompt's two vectors) on a sample.
2. **The exact kNN graph** (:func:`analyzer.exact_knn.knn_graph_exact`) over those real vectors: its time,
   and its recall@k against an fp32 brute force on the GPU (a sample of queries), which shows what the
   half-precision products lose before the final fp32 re-scoring.
3. **The graph at incident size**: ``--sizes`` rows made of the real vectors plus noise (an exact graph's
   time does not depend on the values), timed whole with the GPU's peak memory; the next size is skipped when
   the quadratic projection from the last one would pass ``--deadline`` seconds since the start.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyzer.embed import SentenceTransformerEmbedder  # noqa: E402
from analyzer.exact_knn import BASE_BLOCK, QUERY_BLOCK, knn_graph_exact  # noqa: E402

#: The torch device measured (``--device``; ``cpu`` only to try the script on a small input).
DEVICE = "cuda"


def _sync() -> None:
    import torch

    if DEVICE != "cpu":
        torch.cuda.synchronize()


def embedding(texts: list[str], model: str, batch_size: int, compare: int, reference: str | None
              ) -> tuple[dict, np.ndarray]:
    """Time the GPU embedder on ``texts``; compare the first ones with fp32 vectors (``reference``, a ``.npy``
    of the first prompts' vectors, or ``compare`` of them embedded in fp32 on this CPU)."""
    gpu = SentenceTransformerEmbedder(model=model, device=DEVICE, batch_size=batch_size)
    gpu.encode(texts[:2048])  # warm-up: model load, kernels
    _sync()
    t0 = time.perf_counter()
    gpu.window(texts)
    t_window = time.perf_counter() - t0
    t0 = time.perf_counter()
    vectors = gpu.encode(texts)
    _sync()
    t_encode = time.perf_counter() - t0
    if reference is not None:  # fp32 vectors of the first prompts, made elsewhere from the fp32 weights
        ref = np.load(reference)
        compare = len(ref)
        cpu_speed = None
    else:  # the same weights as the GPU's, in fp32 on this machine's CPU
        cpu = SentenceTransformerEmbedder(model=model, device="cpu", batch_size=64)
        t0 = time.perf_counter()
        ref = cpu.encode(texts[:compare])
        cpu_speed = round(compare / (time.perf_counter() - t0), 1)
    cos = np.sum(ref * vectors[:compare], axis=1)
    return {
        "prompts": len(texts), "batch_size": batch_size, "seconds": round(t_encode, 2),
        "prompts_per_s": round(len(texts) / t_encode, 1), "window_seconds": round(t_window, 2),
        "cpu_fp32_prompts_per_s_this_machine": cpu_speed,
        "fp16_vs_fp32_cosine": {"prompts": compare, "reference": reference or "this CPU, same weights",
                                "mean": round(float(cos.mean()), 6),
                                "min": round(float(cos.min()), 6), "p01": round(float(np.quantile(cos, 0.01)), 6)},
    }, vectors


def graph_recall(vectors: np.ndarray, k: int, queries: int, seed: int) -> dict:
    """The exact graph over real vectors, timed, and its recall@k against an fp32 brute force."""
    import torch

    _sync()
    t0 = time.perf_counter()
    nbrs, sims = knn_graph_exact(vectors, k=k, device=DEVICE)
    _sync()
    seconds = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(vectors), size=min(queries, len(vectors)), replace=False))
    base = torch.from_numpy(vectors).to(DEVICE)
    picked = torch.from_numpy(rows).to(DEVICE)
    with torch.inference_mode():
        prod = base[picked] @ base.T
        prod[torch.arange(len(rows), device=DEVICE), picked] = -float("inf")
        ref_s, ref_i = torch.topk(prod, k, dim=1)
    ref_i, ref_s = ref_i.cpu().numpy(), ref_s.cpu().numpy()
    hits = sum(len(set(a) & set(b)) for a, b in zip(nbrs[rows], ref_i, strict=True))
    return {"rows": len(vectors), "k": k, "seconds": round(seconds, 2), "queries_checked": len(rows),
            f"recall@{k}": round(hits / (len(rows) * k), 5),
            "kth_similarity_max_abs_diff": float(np.abs(sims[rows, -1] - ref_s[:, -1]).max())}


def graph_at_size(real: np.ndarray, n: int, k: int, seed: int, query_block: int, base_block: int) -> dict:
    """The exact graph over ``n`` rows built from the real vectors plus noise; seconds and GPU peak memory."""
    import torch

    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    with torch.inference_mode():
        base = torch.from_numpy(real).to(DEVICE)
        picked = torch.randint(0, len(real), (n,), generator=gen, device=DEVICE)
        made = base[picked] + 0.05 * torch.randn((n, real.shape[1]), generator=gen, device=DEVICE)
        rows = torch.nn.functional.normalize(made, dim=1).cpu().numpy()
        del base, picked, made
    if DEVICE != "cpu":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    _sync()
    t0 = time.perf_counter()
    knn_graph_exact(rows, k=k, device=DEVICE, query_block=query_block, base_block=base_block)
    _sync()
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if DEVICE != "cpu" else float("nan")
    return {"rows": n, "dims": rows.shape[1], "k": k, "query_block": query_block, "base_block": base_block,
            "seconds": round(seconds, 2), "gpu_peak_gib": round(peak, 2)}


def main() -> None:
    import pandas as pd
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--embed", type=int, default=100_000, help="prompts embedded (at most the file's)")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--compare", type=int, default=2000, help="prompts also embedded in fp32 on the CPU")
    ap.add_argument("--reference", default=None, help="fp32 vectors (.npy) of the first prompts, instead of --compare")
    ap.add_argument("--k", type=int, default=15)
    ap.add_argument("--sizes", default="1000000,2000000,4000000")
    ap.add_argument("--blocks", default="", help="extra QUERYxBASE block shapes timed at the first size, e.g. "
                                                 "16384x1048576,4096x262144")
    ap.add_argument("--deadline", type=float, default=420.0, help="seconds since start after which no size starts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    ap.add_argument("--device", default="cuda", help="'cpu' only to try the script on a small input")
    args = ap.parse_args()
    global DEVICE
    DEVICE = args.device
    start = time.perf_counter()
    gpu_name = torch.cuda.get_device_name(0) if DEVICE != "cpu" else "none (cpu)"
    result: dict = {"device": DEVICE, "gpu": gpu_name, "torch": torch.__version__,
                    "python": platform.python_version(), "cpus": __import__("os").cpu_count()}

    def say(key: str, value: object) -> None:
        result[key] = value
        print(json.dumps({key: value}), flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2))

    texts = pd.read_parquet(args.prompts)["text"].astype(str).tolist()[: args.embed]
    emb, vectors = embedding(texts, args.model, args.batch_size, args.compare, args.reference)
    say("embedding", emb)
    say("graph_real", graph_recall(vectors, args.k, 2000, args.seed))
    sizes = [int(s) for s in args.sizes.split(",") if s]
    shapes = [(QUERY_BLOCK, BASE_BLOCK)] + [tuple(int(x) for x in b.split("x")) for b in args.blocks.split(",") if b]
    at_size: list[dict] = []
    last: dict | None = None
    for n in sizes:
        for q, b in shapes if n == sizes[0] else shapes[:1]:
            if last is not None:
                projected = last["seconds"] * (n / last["rows"]) ** 2
                if time.perf_counter() - start + projected > args.deadline:
                    at_size.append({"rows": n, "skipped": f"projected {projected:.0f} s past the deadline"})
                    say("graph_at_size", at_size)
                    continue
            found = graph_at_size(vectors, n, args.k, args.seed, q, b)
            at_size.append(found)
            say("graph_at_size", at_size)
            if (q, b) == shapes[0]:
                last = found
    say("total_seconds", round(time.perf_counter() - start, 1))


if __name__ == "__main__":
    main()
