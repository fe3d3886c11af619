"""Does an ingest batch cost more as the workspace grows? Time every batch's store of a large ingest.

Run: ``python benchmarks/ingest_growth.py --workspace WS LOG [LOG ...] [--out results.json]``

Ingests the logs (files in order, one reader: the store is what is measured) into a fresh workspace ``WS`` and
times each batch's :meth:`~analyzer.workspace.Workspace.add_ingest_batch` (the duplicate check and the inserts
in one transaction). Prints the whole ingest's wall time, the stores' total, and the median store time of the
first and of the last ten batches: a duplicate check against every stored id makes the last ones slower, one
through a key index would not. The workspace is removed afterwards.
To compare code, run the same file with another checkout first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

try:
    import analyzer  # noqa: F401 - the checkout on PYTHONPATH (or installed), if any
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyzer import pipeline  # noqa: E402
from analyzer.workspace import Workspace  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("logs", nargs="+")
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--out")
    args = ap.parse_args()
    shutil.rmtree(args.workspace, ignore_errors=True)
    ws = Workspace(args.workspace, create=True)
    store_s: list[float] = []
    add = ws.add_ingest_batch

    def timed(*a, **k):
        t = time.perf_counter()
        out = add(*a, **k)
        store_s.append(time.perf_counter() - t)
        return out

    ws.add_ingest_batch = timed  # type: ignore[method-assign]
    t0 = time.perf_counter()
    with ws.writing():
        run_id = ws.start_run("ingest", {}, {})
        counts = pipeline.ingest(ws, args.logs, run_id, progress=False, workers=1)
    wall = time.perf_counter() - t0
    ws.close()
    shutil.rmtree(args.workspace, ignore_errors=True)
    row = {"code": str(Path(pipeline.__file__).resolve().parents[1]), "logs": args.logs, "counts": counts,
           "wall_s": round(wall, 1), "store_s": round(sum(store_s), 1), "batches": len(store_s),
           "first_10_median_s": round(statistics.median(store_s[:10]), 3),
           "last_10_median_s": round(statistics.median(store_s[-10:]), 3)}
    print(json.dumps(row, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(row, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
