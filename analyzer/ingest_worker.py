"""Entry point of the parallel ingest's reader processes: ``python -m analyzer.ingest_worker JOB`` parses one log
file into spooled batches (:func:`analyzer.ingest.run_spool_job`). A module of its own, not ``python -m
analyzer.ingest``: running that module as ``__main__`` would load a second copy of it."""

import sys

from analyzer.ingest import run_spool_job

if __name__ == "__main__":
    run_spool_job(sys.argv[1])
