"""Cluster templates in other processes: the label stage's largest pure-Python step, on every CPU.

:func:`analyzer.label.extract_template` aligns the sampled prompts of one cluster; at the incident's 1M requests
the label stage runs it for some 29,000 clusters, template and scaffold families (about 42 s of one core while
the other idled). :func:`start_templates` hands those clusters to ``workers`` fresh interpreters
(``python -m analyzer.label_worker JOB``, as the parallel ingest does: no fork of a process that holds DuckDB's
and the progress bars' threads, nothing through pickle: jobs and results are JSON files) and returns at once,
so that the label stage computes its keywords meanwhile; :meth:`PendingTemplates.result` waits and gives the
templates in the clusters' order, the same as extracting them one after another in this process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence

from analyzer.label import Template, extract_template


class PendingTemplates:
    """Templates being extracted: :meth:`result` gives them, in the order of the groups given."""

    def __init__(self, groups: Sequence[Sequence[str]], seed: int, workers: int) -> None:
        self._groups, self._seed = groups, seed
        self._procs: list[tuple[subprocess.Popen, str, list[int]]] = []
        self._spool: str | None = None
        if workers > 1 and len(groups) > 1:
            self._start(workers)

    def _start(self, workers: int) -> None:
        # Longest groups first onto the least loaded worker (a cluster's cost grows with its texts' length).
        cost = [sum(min(len(t), 4000) for t in g) + 100 for g in self._groups]
        shares: list[list[int]] = [[] for _ in range(workers)]
        load = [0] * workers
        for i in sorted(range(len(self._groups)), key=lambda j: -cost[j]):
            w = load.index(min(load))
            shares[w].append(i)
            load[w] += cost[i]
        self._spool = tempfile.mkdtemp(prefix="analyzer-label-")
        for w, share in enumerate(s for s in shares if s):
            prefix = os.path.join(self._spool, f"{w:03d}")
            with open(prefix + ".job.json", "w", encoding="utf-8") as fh:
                json.dump({"seed": int(self._seed), "groups": [list(self._groups[i]) for i in share],
                           "out": prefix + ".out.json"}, fh)
            with open(prefix + ".stderr", "wb") as err:
                proc = subprocess.Popen([sys.executable, "-m", "analyzer.label_worker", prefix + ".job.json"],
                                        stdout=subprocess.DEVNULL, stderr=err)
            self._procs.append((proc, prefix, share))

    def result(self) -> list[Template]:
        """The templates, in the groups' order (extracted here and now when no worker was started)."""
        if not self._procs:
            return [extract_template(list(g), seed=self._seed) for g in self._groups]
        out: list[Template | None] = [None] * len(self._groups)
        try:
            for proc, prefix, share in self._procs:
                proc.wait()
                if proc.returncode != 0 or not os.path.exists(prefix + ".out.json"):
                    with open(prefix + ".stderr", "rb") as fh:
                        tail = fh.read().decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
                    raise RuntimeError(f"a template worker failed (exit {proc.returncode}): {tail[0]}")
                with open(prefix + ".out.json", encoding="utf-8") as fh:
                    for i, row in zip(share, json.load(fh), strict=True):
                        out[i] = Template(*row)
        finally:
            self.close()
        return out  # type: ignore[return-value]

    def close(self) -> None:
        """Stop any worker still running and remove the job files."""
        for proc, _, _ in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self._procs = []
        if self._spool:
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None


def start_templates(groups: Sequence[Sequence[str]], seed: int, workers: int) -> PendingTemplates:
    """Start extracting one :class:`~analyzer.label.Template` per group of texts (``workers`` processes; 1:
    later, in this process, when :meth:`PendingTemplates.result` is called)."""
    return PendingTemplates(groups, seed, workers)


def run_job(path: str) -> None:
    """A worker's work: the templates of the job file's groups, written as JSON rows next to it."""
    with open(path, encoding="utf-8") as fh:
        job = json.load(fh)
    rows = []
    for group in job["groups"]:
        t = extract_template(group, seed=job["seed"])
        rows.append([t.text, t.n_fixed_words, t.coverage, t.n_slots, t.slot_entropy])
    tmp = job["out"] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(rows, fh)
    os.replace(tmp, job["out"])


if __name__ == "__main__":
    run_job(sys.argv[1])
