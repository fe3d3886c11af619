"""The whole default ``analyzer run`` under two checkouts on one log, one after the other: wall time, peak
memory, stage seconds and detection, read through the export contract so that any two releases compare.

Run: ``python benchmarks/run_ab.py --old ../old-checkout --log logs.jsonl.gz --truth truth.json [--runs 2]
[--out results.json]``, with a scenario written by ``analyzer.bench.scenario.write_scenario`` (for the 1M scale
preset: ``write_scenario(build_scenario('scale', 11), DIR)``, about a minute).

``--old`` is another checkout (e.g. ``git worktree add ../old <commit>``); the new code is this one; both run
with this interpreter. The runs go in the order old, new, new, old (``--runs 2``; more repeat the pattern), each
a fresh process into a new workspace (:func:`stage_ab.run_child`), so that a slow spell of a shared machine hits
both. Each row holds the wall seconds and peak resident memory of the run's process (``wait4``'s ``ru_maxrss``),
the stage seconds and stage peak memory (its process and worker processes) the run printed, and detection
scored with :mod:`analyzer.bench.metrics` from what every release exports: the JSON campaigns (``accounts``,
``flagged``, ``score``) and the account CSV (``account_id``, ``score``). Figures are printed, medians last;
nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import pandas as pd

NEW = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(NEW))

from stage_ab import run_child  # noqa: E402 - a script beside this one (benchmarks/)

from analyzer.bench import metrics  # noqa: E402 - after the path of this checkout is set

STAGE_LINE = re.compile(r"^stage seconds: (.*?)(;|$)", re.MULTILINE)
#: The run's line of each stage's peak memory (its process and worker processes, MiB).
PEAK_LINE = re.compile(r"^stage peak memory MiB: (.*)$", re.MULTILINE)


def detection(campaigns_json: Path, accounts_csv: Path, truth: dict) -> dict:
    """Recall, false flags, account AUC and the score margin, from the two contract exports."""
    camps = json.loads(campaigns_json.read_text())
    camps = camps["campaigns"] if isinstance(camps, dict) else camps
    flagged = [c["accounts"] for c in camps if c["flagged"]]
    recall, found = metrics.campaign_recall(flagged, truth)
    n_false, named = metrics.false_flags(flagged, truth)
    acc = pd.read_csv(accounts_csv, usecols=["account_id", "score"], dtype={"account_id": str})
    in_campaigns = metrics.campaign_accounts(truth)

    def is_true(c: dict) -> bool:
        return 2 * len(set(c["accounts"]) & in_campaigns) > len(c["accounts"])

    return {"campaign_recall": recall, "found": found, "false_flagged_campaigns": n_false,
            "hard_negatives_flagged": named,
            "account_auc": round(metrics.account_auc(dict(zip(acc["account_id"], acc["score"], strict=True)), truth), 4),
            "lowest_true_score": min((c["score"] for c in camps if c["flagged"] and is_true(c)), default=None),
            "highest_benign_score": max((c["score"] for c in camps if not is_true(c)), default=None)}


def _by_stage(line: re.Pattern[str], text: str) -> dict[str, float]:
    """The figure of each stage on the run's ``line`` (``stage 12.3, ...``), none where the run printed no such line."""
    found = line.search(text)
    return {k: float(v) for k, v in re.findall(r"(\w+) ([\d.]+)", found.group(1))} if found else {}


def one_run(checkout: Path, tag: str, log: Path, truth: dict, scratch: Path) -> dict:
    ws = scratch / f"ws-{tag}"
    shutil.rmtree(ws, ignore_errors=True)
    wall, peak, text = run_child(checkout, ["run", str(log), "--workspace", str(ws)])
    stages, stage_peaks = _by_stage(STAGE_LINE, text), _by_stage(PEAK_LINE, text)
    exports = {}
    for fmt, name in (("json", "campaigns.json"), ("csv", "accounts.csv")):
        exports[fmt] = scratch / f"{tag}-{name}"
        run_child(checkout, ["export", "--workspace", str(ws), "--format", fmt, "--out", str(exports[fmt])])
    row = {"tag": tag, "checkout": str(checkout), "wall_s": round(wall, 1), "peak_rss_mb": round(peak),
           "stages": stages, "stage_peak_mb": stage_peaks, **detection(exports["json"], exports["csv"], truth)}
    shutil.rmtree(ws, ignore_errors=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", type=Path, required=True, help="the other checkout")
    ap.add_argument("--log", type=Path, required=True)
    ap.add_argument("--truth", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=2, help="runs of each checkout (old, new, new, old, ...)")
    ap.add_argument("--scratch", type=Path, default=None, help="where workspaces go (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    truth = json.loads(args.truth.read_text())
    old = args.old.resolve()
    pattern = [("old", old), ("new", NEW), ("new", NEW), ("old", old)]
    order = [pattern[i % 4] for i in range(2 * args.runs)]
    rows = []
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        seen: dict[str, int] = {}
        for name, checkout in order:
            seen[name] = seen.get(name, 0) + 1
            row = one_run(checkout, f"{name}-{seen[name]}", args.log.resolve(), truth, Path(scratch))
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.out:
                args.out.write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    for name in ("old", "new"):
        mine = [r for r in rows if r["tag"].startswith(name)]
        print(f"{name}: median wall {statistics.median(r['wall_s'] for r in mine):.1f} s, "
              f"median peak {statistics.median(r['peak_rss_mb'] for r in mine):.0f} MiB")


if __name__ == "__main__":
    main()
