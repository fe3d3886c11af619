"""Named crash points at the workspace's durable write boundaries: a test-only hook.

The pipeline calls ``checkpoint(name)`` just before and just after each write that must survive a crash
(a transaction about to commit, a file renamed into place, a row committed). Normally that is a no-op (two
environment look-ups: microseconds, some twenty times a run). When the environment variable :data:`CRASH_ENV`
names the point, the process SIGKILLs itself there, so a test can kill a run at an exact point rather than at
a random time and check that running the same command again ends where an uninterrupted run ends
(``tests/test_robustness.py``).

``ANALYZER_CRASH_AT=score.before_commit`` kills at the first hit of that point, ``...=ingest.batch_committed:2``
at the second. :data:`LOG_ENV` names a file to which every hit is appended (one name a line), so a test can
check that each registered point is reached by a normal run and that no unregistered name is used.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

#: Environment variable: ``NAME`` or ``NAME:N`` (the N-th hit in this process) of the point to die at.
CRASH_ENV = "ANALYZER_CRASH_AT"
#: Environment variable: a file to which each checkpoint hit appends its name (tests only).
LOG_ENV = "ANALYZER_CHECKPOINT_LOG"

#: Every checkpoint, with the state a process killed there leaves behind.
CHECKPOINTS: dict[str, str] = {
    "run.started": "the run's row is in `runs` (status 'running'); nothing else written yet",
    "ingest.batch_inserted": "one batch's requests, prompts, rejected rows and ingest_log counts inserted, "
                             "not committed",
    "ingest.batch_committed": "one ingest batch committed",
    "ingest.quarantine_written": "every batch committed and quarantine/rejected-<run>.jsonl renamed into place",
    "embed.shard_file_written": "an embedding shard's file is complete on disk; its `embedded` rows are not",
    "embed.shard_recorded": "an embedding shard's file and its `embedded` rows are stored",
    "index.file_written": "the FAISS index file renamed into place; the record of the rows it holds is the "
                          "previous run's (the next run finds them apart and builds the index afresh)",
    "index.written": "the FAISS index file and the record of its rows renamed into place",
    "cluster.before_commit": "the full cluster and label stages' tables inserted (the runner cleared the tables "
                             "they make stale: campaigns), not committed",
    "cluster.committed": "the full cluster and label stages' tables committed",
    "assign.before_commit": "the incremental cluster and label stages' rows upserted (stale tables cleared), not "
                            "committed",
    "assign.committed": "the incremental cluster and label stages' rows committed",
    "score.before_commit": "campaign tables, cluster_campaigns, history, identity and member snapshot inserted, "
                           "not committed",
    "score.committed": "campaign tables, history, identity and member snapshot committed",
    "map.before_commit": "the map's points inserted, not committed",
    "map.committed": "the map's points committed",
    "run.finished": "the run's row updated to its final status",
    "watch.before_commit": "a watch entry and its vectors inserted, not committed",
    "watch.committed": "a watch entry and its vectors committed",
    "export.before_rename": "an output file (export, STIX bundle, scenario truth) written under its temporary "
                            "name, not yet under its own",
}

_hits: Counter[str] = Counter()


def checkpoint(name: str) -> None:
    """Die here (SIGKILL, no clean-up of any kind) if :data:`CRASH_ENV` names this point; else nothing."""
    target = os.environ.get(CRASH_ENV)
    log = os.environ.get(LOG_ENV)
    if target is None and log is None:
        return
    _hits[name] += 1
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(name + "\n")
    if target:
        want, _, nth = target.partition(":")
        if want == name and _hits[name] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)
