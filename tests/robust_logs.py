"""Helpers for the robustness tests: small logs cut from ``data/sample``, a corrupted copy of them, and a
deterministic hashing embedder for the kill tests.

Run as a script, ``python tests/robust_logs.py ARGS...`` is ``python -m analyzer ARGS...`` with the embedder
replaced by :class:`HashEmbedder` (same pipeline, workspace, DuckDB, FAISS and HDBSCAN; only the vectors are
cheap). It exists so that the SIGKILL test can kill ten runs quickly; the real model is covered by the
``slow`` variant of that test and by the other tests.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_LOG = ROOT / "data" / "sample" / "requests.jsonl.gz"
SAMPLE_TRUTH = ROOT / "data" / "sample" / "truth.json"


#: Characters of real text put before one campaign prompt in :func:`mini_lines`: more than the 100,000-character
#: cap that ingest once had, so the row checks that long prompts are accepted and analysed.
LONG_PAD_CHARS = 120_000
LONG_REQUEST_ID = "long-padded-0"


def mini_lines() -> list[str]:
    """~180 JSONL lines (~145 unique prompts): half of one planted campaign's accounts' rows plus a thin
    slice of everything else, so a run finds candidate campaigns (one flagged) in about half a minute.

    The last line is one more request of that campaign (same account, an hour after its last one) whose
    prompt is a campaign prompt padded *before* with :data:`LONG_PAD_CHARS` characters of the sample's
    organic prompts (:func:`long_prompt`), as a campaign padding its requests with long context would send.
    """
    truth = json.loads(SAMPLE_TRUTH.read_text())
    accounts = set(truth["campaigns"]["censorship_rewrite"]["accounts"])
    with gzip.open(SAMPLE_LOG, "rt", encoding="utf-8") as fh:
        lines = fh.readlines()
    out = []
    for i, line in enumerate(lines):
        acc = json.loads(line)["account_id"]
        if (acc in accounts and i % 2 == 0) or i % 60 == 0:
            out.append(line if line.endswith("\n") else line + "\n")
    twin = next(json.loads(x) for x in out if json.loads(x)["account_id"] in accounts)
    last_ts = max(json.loads(x)["timestamp"] for x in out if json.loads(x)["account_id"] == twin["account_id"])
    ts = (datetime.fromisoformat(last_ts) + timedelta(hours=1)).isoformat()
    padded = {**twin, "request_id": LONG_REQUEST_ID, "timestamp": ts, "prompt": long_prompt(twin["prompt"], lines)}
    out.append(json.dumps(padded, ensure_ascii=False) + "\n")
    return out


def long_prompt(instruction: str, lines: list[str] | None = None) -> str:
    """``instruction`` after :data:`LONG_PAD_CHARS` characters of the sample's organic prompts."""
    if lines is None:
        with gzip.open(SAMPLE_LOG, "rt", encoding="utf-8") as fh:
            lines = fh.readlines()
    truth = json.loads(SAMPLE_TRUTH.read_text())
    planted = set().union(*(set(c["accounts"]) for c in truth["campaigns"].values()))
    organic = [r["prompt"] for r in map(json.loads, lines) if r["account_id"] not in planted and "prompt" in r]
    return "\n\n".join(organic)[:LONG_PAD_CHARS] + "\n\n" + instruction


def write_clean(path: Path, lines: list[str] | None = None) -> Path:
    path.write_text("".join(lines if lines is not None else mini_lines()), encoding="utf-8")
    return path


CSV_COLUMNS = ["request_id", "account_id", "timestamp", "prompt", "model", "ip", "user_agent", "api_key_id",
               "org_id", "country", "payment_id"]


def write_corrupted(folder: Path, lines: list[str] | None = None) -> tuple[list[Path], dict[str, int]]:
    """The clean rows of :func:`mini_lines` spread over a JSONL and a CSV file, with bad rows of every kind
    mixed in, plus an empty file and a truncated gzip (whose readable rows are copies of clean rows).

    Returns the files (in the order to pass them) and ``{"clean": n, "bad": n, "dups": n}`` where ``bad``
    counts the injected bad rows (the truncated gzip's own error included) and ``dups`` the exact copies
    of clean rows outside the truncated gzip.
    """
    import csv

    lines = list(lines if lines is not None else mini_lines())
    folder.mkdir(parents=True, exist_ok=True)
    recs = [json.loads(x) for x in lines]
    csv_idx = [i for i, r in enumerate(recs) if "prompt" in r and i % 5 == 4][:25]
    json_idx = [i for i in range(len(recs)) if i not in set(csv_idx)]
    good = recs[json_idx[0]]
    ts = good["timestamp"]

    def rec(**kw) -> bytes:
        base = {"request_id": f"bad-{len(kw)}-{hashlib.md5(repr(sorted(kw.items())).encode()).hexdigest()[:8]}",
                "account_id": "acct_bad", "timestamp": ts, "prompt": "a perfectly fine prompt"}
        base.update(kw)
        return (json.dumps({k: v for k, v in base.items() if v is not _DROP}) + "\n").encode()

    bad_json: list[bytes] = [
        b'{"request_id": "bad-malformed", "account_id": "acct_bad", "timestamp": "' + ts.encode() + b'"\n',  # cut off
        b'{"request_id": "bad-trailing", "account_id": "acct_bad",, "prompt": "x"}\n',
        b"[1, 2, 3]\n",
        b"42\n",
        rec(account_id=_DROP),                                # missing account
        rec(prompt=_DROP),                                    # missing prompt
        rec(account_id={"nested": 1}),                        # mistyped account
        rec(timestamp=True),                                  # mistyped timestamp
        rec(timestamp="not a date"),                          # bad timestamp
        rec(timestamp="1899-12-31T00:00:00Z"),                # out of range
        rec(timestamp=10**20),                                # absurd epoch
        rec(prompt=""),                                       # empty prompt
        rec(prompt="   \n\t "),                               # blank prompt
        rec(prompt="\u0000\u0000"),                           # only NULs
        b'{"request_id": "bad-nul", "account_id": "acct_bad", "timestamp": "' + ts.encode()
        + b'", "prompt": "raw \x00 NUL byte"}\n',             # raw NUL byte: invalid JSON
        b'{"request_id": "bad-utf8", "account_id": "acct_bad", "timestamp": "' + ts.encode()
        + b'", "prompt": "bad \xff\xfe bytes"}\n',            # invalid UTF-8
        b'{"request_id": "bad-ctrl", "account_id": "\x1b[31m", "timestamp": "' + ts.encode()
        + b'", "prompt": "x"}\n',                             # raw control char in a string: invalid JSON
    ]
    # Valid rows, some with unknown columns (kept in ``extra``), exact duplicates of earlier rows.
    out = bytearray()
    n_dups = 0
    slots = {int(len(json_idx) * (k + 1) / (len(bad_json) + 1)): b for k, b in enumerate(bad_json)}
    for pos, i in enumerate(json_idx):
        r = dict(recs[i])
        if pos % 7 == 3:
            r["zz_unknown_column"] = {"note": "not a canonical field", "n": pos}
            r["another-one"] = pos
        out += (json.dumps(r, ensure_ascii=False) + "\n").encode()
        if pos in slots:
            out += slots[pos]
        if pos % 11 == 5:  # an exact re-send of an earlier row (same request id)
            out += (json.dumps(recs[json_idx[pos // 2]], ensure_ascii=False) + "\n").encode()
            n_dups += 1
    main = folder / "main.jsonl"
    main.write_bytes(bytes(out))

    # CSV: the other clean rows, a wrong-width row, then a broken quote that swallows the rest of the file.
    csv_path = folder / "more.csv"
    with open(csv_path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for k, i in enumerate(csv_idx):
            w.writerow([recs[i].get(c, "") or "" for c in CSV_COLUMNS])
            if k == 10:
                w.writerow(["bad-width", "acct_bad", ts])  # too few cells
        fh.write(f'bad-quote,acct_bad,{ts},"never closed quote\nbad-after,acct_bad,{ts},swallowed\n')
    n_bad_csv = 2

    empty = folder / "empty.jsonl"
    empty.write_bytes(b"")

    # Truncated gzip: copies of clean rows, cut mid-stream (rows that survive are duplicates).
    blob = gzip.compress("".join(lines[:40]).encode())
    trunc = folder / "cut.jsonl.gz"
    trunc.write_bytes(blob[: len(blob) * 2 // 3])

    return [main, csv_path, empty, trunc], {"clean": len(recs), "bad": len(bad_json) + n_bad_csv + 1,
                                           "dups": n_dups}


def history_problems(ws) -> list[str]:
    """Ways in which a workspace's campaign history disagrees with its campaign tables (empty: consistent).

    The latest run in ``campaign_history`` must hold one row per campaign, its non-``gone`` campaigns must be
    exactly the member snapshot's and (unless a later cluster stage cleared them, pending a score) the
    ``campaigns`` table's, with the same numbers; every id in the history has an identity row, and the latest
    run's campaigns have it as their ``last_run_id``.
    """
    db = ws.db
    problems = []
    if db.execute("SELECT count(*) FROM (SELECT run_id, campaign_id FROM campaign_history GROUP BY ALL "
                  "HAVING count(*) > 1)").fetchone()[0]:
        problems.append("a campaign has two rows in one run")
    latest = db.execute("SELECT max(run_id) FROM campaign_history").fetchone()[0]
    live = {r[0] for r in db.execute("SELECT campaign_id FROM campaign_history WHERE run_id = ? AND transition <> "
                                     "'gone'", [latest]).fetchall()}
    members = {r[0] for r in db.execute("SELECT DISTINCT campaign_id FROM campaign_members").fetchall()}
    if members != live:
        problems.append(f"member snapshot {sorted(members)} is not the latest history {sorted(live)}")
    camps = db.execute("SELECT campaign_id, n_accounts, n_requests, score, flagged FROM campaigns").fetchall()
    if camps:
        hist = set(db.execute("SELECT campaign_id, n_accounts, n_requests, score, flagged FROM campaign_history "
                              "WHERE run_id = ? AND transition <> 'gone'", [latest]).fetchall())
        if set(camps) != hist:
            problems.append("the campaigns table is not the latest run's history")
    missing = db.execute("SELECT count(*) FROM (SELECT DISTINCT campaign_id FROM campaign_history) h "
                         "ANTI JOIN campaign_identity USING (campaign_id)").fetchone()[0]
    if missing:
        problems.append(f"{missing} history ids have no identity row")
    stale = db.execute("SELECT count(*) FROM campaign_identity WHERE list_contains(?, campaign_id) "
                       "AND last_run_id <> ?", [sorted(live), latest]).fetchone()[0]
    if stale:
        problems.append(f"{stale} live campaigns have a stale last_run_id")
    return problems


class _Drop:
    pass


_DROP = _Drop()


# --- a cheap deterministic embedder for the kill test ------------------------------------------------------
class HashEmbedder:
    """Hashed word uni- and bigrams into 384 dims, L2-normalised; ``delay`` seconds per text mimic a model."""

    key = "hash384-ht"
    dim = 384

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def encode(self, texts, progress=None) -> np.ndarray:
        from analyzer.text import analysis_words  # imported here: run as a script, the path is set in main

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            words = analysis_words(t)
            words = words[:100] + words[-100:] if len(words) > 200 else words  # head and tail, as the real tiers
            for tok in words + [a + " " + b for a, b in zip(words, words[1:], strict=False)]:
                h = int.from_bytes(hashlib.blake2b(tok.encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
            n = np.linalg.norm(out[i])
            if n > 0:
                out[i] /= n
            else:
                out[i, 0] = 1.0
            if self.delay:
                time.sleep(self.delay)
            if progress is not None:
                progress(1)
        return out


def kill_at_score_commit() -> None:
    """Make the score stage SIGKILL its own process when it would commit the campaigns and their history
    (every row inserted, nothing committed): the worst moment for the two to disagree."""
    import signal

    from analyzer.workspace import Workspace

    real = Workspace.replace_tables

    def replace_tables(self, frames, append=None):
        if "campaign_history" in (append or {}):
            conn = self.db

            class KillAtCommit:
                def __getattr__(self, name):
                    return getattr(conn, name)

                def execute(self, sql, *args):
                    if sql == "COMMIT":
                        os.kill(os.getpid(), signal.SIGKILL)
                    return conn.execute(sql, *args)

            self.db = KillAtCommit()
        return real(self, frames, append)

    Workspace.replace_tables = replace_tables


def main() -> None:
    from analyzer import pipeline
    from analyzer.cli import main as cli_main

    if os.environ.get("KILL_AT_SCORE_COMMIT"):
        kill_at_score_commit()

    delay = float(os.environ.get("HASH_EMBED_DELAY", "0"))
    pipeline.make_embedder = lambda *a, **k: HashEmbedder(delay)
    pipeline.versions = lambda: {"analyzer": "test", "embedder": HashEmbedder.key}
    sys.argv = ["analyzer", *sys.argv[1:]]
    cli_main()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
