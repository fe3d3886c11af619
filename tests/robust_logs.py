"""Helpers for the robustness tests: small logs cut from ``data/sample``, a corrupted copy of them, a
deterministic hashing embedder, and :class:`CliServer`, which runs CLI commands in forked children of one warm
process for the kill tests.

Run as a script, ``python tests/robust_logs.py ARGS...`` is ``python -m analyzer ARGS...`` with the embedder
replaced by :class:`HashEmbedder` (same pipeline, workspace, DuckDB, FAISS and HDBSCAN; only the vectors are
cheap), and ``python tests/robust_logs.py --serve FOLDER`` is the :class:`CliServer` process. The kill tests
use it so that some thirty killed runs and their re-runs stay fast; the real model is covered by the other
tests.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import subprocess
import sys
import traceback
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
    """Hashed word uni- and bigrams into 384 dims, L2-normalised."""

    key = "hash384-ht"
    dim = 384

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
            if progress is not None:
                progress(1)
        return out


# --- a warm process that runs analyzer commands, each in a forked child ------------------------------------
#: Environment of :class:`CliServer`'s process. Its children are forked after a warm-up run has started numba's
#: and FAISS's threads: numba's workqueue threading layer is fork-safe, and with one OpenMP thread GNU OpenMP
#: keeps no thread pool that a forked child would wait on.
FORK_SAFE_ENV = {"NUMBA_THREADING_LAYER": "workqueue", "OMP_NUM_THREADS": "1"}
#: Seconds a command may run in :class:`CliServer` before the server and its child are killed (a hang, not a
#: slow machine: a command on the small test logs takes seconds).
COMMAND_TIMEOUT_S = 600


class CliServer:
    """Runs ``analyzer`` commands with the :class:`HashEmbedder`, each in a child forked from one warm process.

    A fresh interpreter pays about ten seconds (imports, numba loading its compiled HDBSCAN) before a small
    run does any work; the server pays it once (``python tests/robust_logs.py --serve FOLDER`` warms up with
    a full and an incremental run), so a command killed at a checkpoint and its re-run cost only their work.
    Each child is a separate process: :func:`analyzer.checkpoints.checkpoint` SIGKILLs it, not the server.
    """

    def __init__(self, folder: Path) -> None:
        from analyzer.checkpoints import CRASH_ENV, LOG_ENV

        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._n = 0
        env = {k: v for k, v in os.environ.items() if k not in (CRASH_ENV, LOG_ENV)}
        env.update(FORK_SAFE_ENV, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", str(folder)],
                                     cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     start_new_session=True)  # its own process group, children included
        if self._reply() != "ready":
            raise RuntimeError(f"the CLI server did not start: {self.server_log()}")

    def _reply(self) -> str:
        """The server's next line; kills the server and its children if none comes in time."""
        import select

        if not select.select([self.proc.stdout], [], [], COMMAND_TIMEOUT_S)[0]:
            self.close()
            raise TimeoutError(f"no answer from the CLI server in {COMMAND_TIMEOUT_S} s: {self.server_log()}")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the CLI server died: {self.server_log()}")
        return line.strip()

    def server_log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def run(self, args: list, crash_at: str | None = None, log: Path | None = None) -> tuple[int, str]:
        """Run ``analyzer ARGS`` in a fresh child; returns ``(exit status, output)``, ``-SIGKILL`` when the
        checkpoint ``crash_at`` killed it. ``log``: a file to which the child appends each checkpoint it hits."""
        from analyzer.checkpoints import CRASH_ENV, LOG_ENV

        self._n += 1
        out = self.folder / f"command-{self._n}.txt"
        env = {**({CRASH_ENV: crash_at} if crash_at else {}), **({LOG_ENV: str(log)} if log else {})}
        self.proc.stdin.write(json.dumps({"args": [str(a) for a in args], "env": env, "out": str(out)}) + "\n")
        self.proc.stdin.flush()
        return int(json.loads(self._reply())["rc"]), out.read_text(errors="replace")

    def close(self) -> None:
        """Kill the server's process group (idle between commands: nothing to finish)."""
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)


def use_hash_embedder() -> None:
    """Make this process's pipeline embed with :class:`HashEmbedder` (and record it as the embedder)."""
    from analyzer import pipeline

    pipeline.make_embedder = lambda *a, **k: HashEmbedder()
    pipeline.versions = lambda: {"analyzer": "test", "embedder": HashEmbedder.key}


def _invoke(args: list[str]) -> int:
    """``analyzer ARGS`` in this process; its exit status (1 and a traceback for an unexpected error)."""
    from analyzer.cli import main as cli_main

    try:
        cli_main.main(args, prog_name="analyzer")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def serve(folder: Path) -> None:
    """The :class:`CliServer` process: warm up, then fork one child per JSON request read from stdin
    (``{"args", "env", "out"}``) and answer each with ``{"rc"}`` once the child has ended."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    server_log = os.open(folder / "server.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(server_log, 1)
    os.dup2(server_log, 2)
    use_hash_embedder()
    warm = folder / "warm-up"
    log = write_clean(folder / "warm-up.jsonl")
    for args in (["--no-map"], []):  # a full run, then an incremental one with the map
        if _invoke(["run", str(log), "--workspace", str(warm), "--quiet", *args]):
            raise SystemExit(f"warm-up failed: run {args}")
    sys.stdout.flush()
    proto.write("ready\n")
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the child: run the command, never return into this loop
            rc = 1
            try:
                out = os.open(req["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(out, 1)
                os.dup2(out, 2)
                os.environ.update(req["env"])
                rc = _invoke(req["args"])
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(rc)
        _, status = os.waitpid(pid, 0)
        proto.write(json.dumps({"rc": os.waitstatus_to_exitcode(status)}) + "\n")


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        serve(Path(sys.argv[2]))
        return
    use_hash_embedder()
    raise SystemExit(_invoke(sys.argv[1:]))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
