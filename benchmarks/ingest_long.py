"""Ingest throughput and peak memory on long prompts (issue 11, README "Long prompts").

Writes a synthetic JSONL log of ``--rows`` requests whose prompts are ``--chars`` characters of real text (the
bundled sample's prompts, concatenated in a different order for each row, so every prompt is unique), then
times :func:`analyzer.ingest.read_logs` over it (and over the bundled sample) in a fresh subprocess each and
reports rows/s, MB/s and the subprocess's peak RSS. Run from the repository root::

    python benchmarks/ingest_long.py [--rows 300] [--chars 150000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample" / "requests.jsonl.gz"

_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[2])
from analyzer.ingest import read_logs
t0 = time.perf_counter()
n = acc = rej = 0
for b in read_logs([sys.argv[1]]):
    n += b.n_read; acc += len(b.requests); rej += len(b.rejected)
dt = time.perf_counter() - t0
print(json.dumps({"read": n, "accepted": acc, "rejected": rej, "seconds": dt,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_synthetic(path: Path, rows: int, chars: int, seed: int = 0) -> None:
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as fh:
        recs = [json.loads(line) for line in fh]
    texts = [r["prompt"] for r in recs if isinstance(r.get("prompt"), str)]
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as out:
        for i in range(rows):
            parts: list[str] = []
            size = 0
            while size < chars:
                t = rng.choice(texts)
                parts.append(t)
                size += len(t) + 2
            prompt = "\n\n".join(parts)[:chars]
            rec = {"request_id": f"long-{i}", "account_id": f"acct_{i % 7}",
                   "timestamp": f"2024-05-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z", "prompt": prompt}
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")


def measure(path: Path, repeat: int, code_root: Path) -> dict:
    best = None
    for _ in range(repeat):
        res = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(code_root)], capture_output=True,
                             text=True, check=True)
        r = json.loads(res.stdout.strip().splitlines()[-1])
        if best is None or r["seconds"] < best["seconds"]:
            best = r
    size = os.path.getsize(path)
    assert best is not None
    best["file_mb"] = size / 1e6
    best["rows_per_s"] = best["read"] / best["seconds"]
    best["mb_per_s"] = size / 1e6 / best["seconds"]
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--chars", type=int, default=150_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--code", default=str(ROOT), help="repository whose analyzer package is measured")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        synth = Path(tmp) / "long.jsonl"
        write_synthetic(synth, args.rows, args.chars)
        for name, path in (("sample", SAMPLE), (f"{args.rows} x {args.chars:,}-char prompts", synth)):
            r = measure(path, args.repeat, Path(args.code))
            print(f"{name}: read {r['read']:,} accepted {r['accepted']:,} rejected {r['rejected']:,} in "
                  f"{r['seconds']:.2f} s = {r['rows_per_s']:,.0f} rows/s, {r['mb_per_s']:.1f} MB/s "
                  f"(file {r['file_mb']:.1f} MB), peak RSS {r['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
