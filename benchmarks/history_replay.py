"""Do campaign ids survive daily runs? A scenario fed one day at a time into one workspace.

Run: ``python benchmarks/history_replay.py [--preset quick] [--seed 0] [--ban-day 7] [--out FILE]``

Each day's requests go into the same workspace with ``run_all`` (ingest, embed the new prompts, re-cluster
everything, score). From ``--ban-day`` on, half of each planted campaign's accounts are "banned": their
requests from that day on are sent by fresh accounts instead (the same work). For each planted campaign the
script follows the flagged campaign holding most of its accounts and reports the day it was first flagged and
how often its id changed after that, both for the stable id (``campaigns.campaign_id``) and for the
provisional id the score stage computes before matching (a hash of accounts and clusters: what the id was
before campaign history existed). Also per day: wall seconds, the matching's seconds, transitions.
Needs ``../shared/data`` (or ``$ANALYZER_SHARED_DATA``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from analyzer import history as history_mod  # noqa: E402
from analyzer.bench import corpora  # noqa: E402
from analyzer.bench.scenario import Scenario, build_scenario, write_scenario  # noqa: E402
from analyzer.campaigns import campaign_id  # noqa: E402
from analyzer.pipeline import RunOptions, run_all  # noqa: E402
from analyzer.workspace import Workspace  # noqa: E402


def replace_accounts(req: pd.DataFrame, truth: dict, ban_day: pd.Timestamp) -> tuple[pd.DataFrame, dict]:
    """From ``ban_day`` on, half of each campaign's accounts are replaced by fresh ones (same requests)."""
    req = req.copy()
    fresh: dict[str, dict[str, str]] = {}
    for name, camp in truth["campaigns"].items():
        accs = sorted(camp["accounts"])
        fresh[name] = {a: f"fresh_{name}_{i}" for i, a in enumerate(accs[: len(accs) // 2])}
        late = (req["ts"] >= ban_day) & req["account_id"].isin(fresh[name])
        req.loc[late, "account_id"] = req.loc[late, "account_id"].map(fresh[name])
    return req, fresh


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ban-day", type=int, default=7, help="from this day (1-based) half the accounts are replaced")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    ap.add_argument("--keep", default=None, help="analyse into this workspace folder (kept) instead of a temporary one")
    args = ap.parse_args()
    if not corpora.available():
        sys.exit(f"benchmark corpora not found at {corpora.data_dir()}: nothing to measure")
    sc = build_scenario(args.preset, seed=args.seed)
    day0 = sc.requests["ts"].min().floor("D")
    req, fresh = replace_accounts(sc.requests, sc.truth, day0 + pd.Timedelta(days=args.ban_day - 1))
    days = ((req["ts"] - day0) // pd.Timedelta(days=1)).astype(int)

    timings: list[float] = []
    real_track = history_mod.track

    def timed_track(*a, **k):
        t0 = time.perf_counter()
        out = real_track(*a, **k)
        timings.append(time.perf_counter() - t0)
        return out

    history_mod.track = timed_track
    per_day, follow = [], {name: [] for name in sc.truth["campaigns"]}
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(args.keep or str(Path(tmp) / "ws"), create=True)
        opts = RunOptions(progress=False, make_map=False)
        for d in sorted(days.unique()):
            log, _ = write_scenario(Scenario(req[days == d].reset_index(drop=True), sc.truth), Path(tmp) / f"d{d}",
                                    log_name="day.jsonl.gz")
            t0 = time.perf_counter()
            stats = run_all(ws, [str(log)], opts)
            wall = time.perf_counter() - t0
            camps = ws.table("campaigns")
            members = ws.table("campaign_accounts").groupby("campaign_id")["account_id"].agg(set)
            per_day.append({"day": int(d) + 1, "requests": int((days <= d).sum()), "wall_s": round(wall, 1),
                            "score_s": stats["stages_s"]["score"], "match_s": round(timings[-1], 3),
                            "campaigns": int(len(camps)), "flagged": int(camps["flagged"].sum()),
                            "transitions": stats["score"]["transitions"]})
            print(json.dumps(per_day[-1]), flush=True)
            for name, camp in sc.truth["campaigns"].items():
                accs = set(camp["accounts"]) | set(fresh[name].values())
                best = None
                for c in camps[camps["flagged"]].itertuples(index=False):
                    n = len(members.get(c.campaign_id, set()) & accs)
                    if n and (best is None or n > best[0]):
                        provisional = campaign_id(sorted(members[c.campaign_id]), list(c.clusters))
                        best = (n, c.campaign_id, provisional)
                follow[name].append(None if best is None else best[1:])
        ws.close()

    report = {}
    for name, seen in follow.items():
        flagged_days = [i for i, s in enumerate(seen) if s is not None]
        if not flagged_days:
            report[name] = {"first_flagged_day": None}
            continue
        after = [s for s in seen[flagged_days[0]:] if s is not None]
        changes = {k: sum(a[k] != b[k] for a, b in zip(after, after[1:], strict=False)) for k in (0, 1)}
        report[name] = {"first_flagged_day": flagged_days[0] + 1, "stable_id_changes": changes[0],
                        "provisional_id_changes": changes[1], "days_flagged": len(flagged_days),
                        "ids_by_day": [None if s is None else s[0] for s in seen]}
    print(json.dumps({k: {f: v for f, v in r.items() if f != "ids_by_day"} for k, r in report.items()}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"per_day": per_day, "campaigns": report, "args": vars(args)}, indent=1))
    if args.keep:
        print(f"workspace kept in {args.keep}")


if __name__ == "__main__":
    main()
