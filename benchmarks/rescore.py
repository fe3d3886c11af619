"""Score-stage changes measured on stored benchmark runs: build the runs once, re-score them under two checkouts.

    python benchmarks/rescore.py build --root runs/adv-fast --suite adversarial --seeds 0 1 2
    python benchmarks/rescore.py build --root runs/var-fast --variations --seeds 0 1 2
    python benchmarks/rescore.py build --root runs/benign --preset quick standard --seeds 0 1 2 --benign-only
    python benchmarks/rescore.py score --root runs/adv-fast --old ../old-checkout --out result.json

``build`` writes one folder per run (preset or variation mix, seed): the log (``logs.jsonl.gz``), ``truth.json`` and
the analyzer's workspace after a full ``analyzer run`` on the chosen tier (``ws``); runs already built are kept.
``score`` copies each stored workspace, runs the score stage on the copy (``python -m analyzer score``) with the
old checkout (``--old``, e.g. ``git worktree add ../old <commit>``) and with this one, and prints each run's bench
row from both (campaign recall, false flags, account AUC, lowest campaign / highest benign score; for benign-only
runs the candidates and accounts flagged and the highest score), then the runs whose rows differ and a summary.
Every stage before scoring is stored, so a change to scoring costs a few seconds per run instead of a bench run;
a change anywhere earlier needs ``analyzer bench``. Both checkouts must read and write the same workspace format
(the rows are read back with this checkout's ``workspace_result``). Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from analyzer.bench.run import (
    benign_row,
    build_benign,
    resolve_presets,
    run_analyzer,
    score_row,
    workspace_result,
)
from analyzer.bench.scenario import build_scenario, write_scenario
from analyzer.workspace import Workspace

HERE = Path(__file__).resolve().parent
NEW = HERE.parent


def planned_runs(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any]]]:
    """(folder name, preset, knobs) for every run ``build`` was asked for, seeds apart."""
    runs: list[tuple[str, str, dict[str, Any]]] = []
    if args.suite or args.preset:
        runs += [(p, p, {}) for p in resolve_presets(args.preset or (), args.suite)[0]]
    if args.variations:
        sys.path.insert(0, str(HERE))
        from variations import MIXES  # benchmarks/variations.py
        runs += [(name, preset, dict(knobs)) for name, (preset, knobs) in MIXES.items()]
    return runs


def build(args: argparse.Namespace) -> int:
    root = Path(args.root)
    for name, preset, knobs in planned_runs(args):
        for seed in args.seeds:
            run_dir = root / f"{name}-{seed}"
            if (run_dir / "run.json").exists():
                continue
            if run_dir.exists():  # an interrupted build: start that run again
                shutil.rmtree(run_dir)
            run_dir.mkdir(parents=True)
            scenario = (build_benign(preset, seed, knobs) if args.benign_only
                        else build_scenario(preset, seed=seed, **knobs))
            write_scenario(scenario, str(run_dir))
            res = run_analyzer(str(run_dir / "logs.jsonl.gz"), str(run_dir), tier=args.tier)
            shutil.move(str(run_dir / "ws-analyzer"), str(run_dir / "ws"))
            meta = {"name": f"{name}-{seed}", "preset": preset, "seed": seed, "knobs": knobs, "tier": args.tier,
                    "benign_only": bool(args.benign_only), "seconds": round(res.seconds, 1)}
            (run_dir / "run.json").write_text(json.dumps(meta))
            print(f"built {meta['name']} ({args.tier}, {res.seconds:.0f} s)", flush=True)
    return 0


def score_copy(checkout: Path, workspace: Path) -> Workspace:
    """The score stage of ``checkout`` on a copy of ``workspace``; the copy, opened (its folder is removed with
    the temporary directory the caller holds)."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "analyzer", "score", "-w", str(workspace)], cwd=checkout, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{checkout}: analyzer score -w {workspace} failed:\n{proc.stdout[-1000:]}{proc.stderr[-2000:]}")
    return Workspace(str(workspace), read_only=True)


def row_of(meta: dict, ws: Workspace, truth: dict) -> dict:
    res = workspace_result(ws, 0.0, 0.0, {})
    make = benign_row if meta["benign_only"] else score_row
    row = make("analyzer", meta["preset"], meta["seed"], res, truth, meta["tier"])
    for key in ("stages", "seconds", "peak_rss_mb"):
        row.pop(key, None)
    return row


def brief(row: dict) -> str:
    if row.get("benign_only"):
        return (f"{row['candidates_flagged']}/{row['candidates_scored']} flagged, accounts "
                f"{row['benign_accounts_flagged']}/{row['benign_accounts']}, highest {row['highest_benign_score']}")
    missed = sorted(k for k, v in (row.get("found") or {}).items() if not v)
    return (f"recall {row['campaign_recall']:.2f} ff {row['false_flagged_campaigns']} AUC {row['account_auc']:.3f} "
            f"{row.get('lowest_true_score')}/{row.get('highest_benign_score')}"
            + (f" missed {','.join(missed)}" if missed else ""))


def summary(rows: list[dict], side: str) -> str:
    camp = [r[side] for r in rows if not r[side].get("benign_only")]
    benign = [r[side] for r in rows if r[side].get("benign_only")]
    parts = []
    if camp:
        parts.append(f"{len(camp)} runs: recall < 1 in {sum(r['campaign_recall'] < 1 for r in camp)}, false flags "
                     f"{sum(r['false_flagged_campaigns'] for r in camp)}, lowest AUC "
                     f"{min(r['account_auc'] for r in camp):.3f}, highest benign score "
                     f"{max((r['highest_benign_score'] or 0) for r in camp):.3f}")
    if benign:
        parts.append(f"{len(benign)} benign-only runs: {sum(r['candidates_flagged'] for r in benign)} of "
                     f"{sum(r['candidates_scored'] or 0 for r in benign)} candidates and "
                     f"{sum(r['benign_accounts_flagged'] for r in benign)} accounts flagged, highest "
                     f"{max((r['highest_benign_score'] or 0) for r in benign):.3f}")
    return "; ".join(parts)


def score(args: argparse.Namespace) -> int:
    old = Path(args.old).resolve() if args.old else None
    rows = []
    for run_dir in sorted(p for p in Path(args.root).iterdir() if (p / "run.json").exists()):
        meta = json.loads((run_dir / "run.json").read_text())
        truth = json.loads((run_dir / "truth.json").read_text())
        out: dict[str, Any] = {"name": meta["name"]}
        for side, checkout in (("old", old), ("new", NEW)):
            if checkout is None:
                continue
            with tempfile.TemporaryDirectory(prefix="rescore-") as tmp:
                copy = Path(tmp) / "ws"
                shutil.copytree(run_dir / "ws", copy)
                ws = score_copy(checkout, copy)
                try:
                    out[side] = row_of(meta, ws, truth)
                finally:
                    ws.close()
        rows.append(out)
        print(f"{meta['name']:48s} " + ("  ->  ".join(brief(out[s]) for s in ("old", "new") if s in out)), flush=True)
    if old is not None:
        changed = [r for r in rows if brief(r["old"]) != brief(r["new"])]
        camp = [r for r in rows if not r["new"].get("benign_only")]
        up = sum(r["new"]["account_auc"] > r["old"]["account_auc"] for r in camp)
        down = sum(r["new"]["account_auc"] < r["old"]["account_auc"] for r in camp)
        print(f"\n{len(changed)} of {len(rows)} rows changed; account AUC up in {up}, down in {down}")
        for r in changed:
            print(f"  {r['name']:46s} {brief(r['old'])}  ->  {brief(r['new'])}")
        print(f"old: {summary(rows, 'old')}")
    print(f"new: {summary(rows, 'new')}")
    if args.out:
        Path(args.out).write_text(json.dumps({"old": str(old) if old else None, "runs": rows}, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build and run the scenarios once, keeping their workspaces")
    b.add_argument("--root", required=True)
    b.add_argument("--preset", nargs="+", default=None)
    b.add_argument("--suite", default=None, help="e.g. adversarial")
    b.add_argument("--variations", action="store_true", help="the mixes of benchmarks/variations.py")
    b.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    b.add_argument("--tier", default="fast", choices=["fast", "accurate"])
    b.add_argument("--benign-only", action="store_true", help="the presets without their campaigns")
    s = sub.add_parser("score", help="re-score every stored run with --old and with this checkout")
    s.add_argument("--root", required=True)
    s.add_argument("--old", default=None, help="another checkout of the analyzer (default: this one only)")
    s.add_argument("--out", default=None, help="write both rows of every run as JSON here")
    args = ap.parse_args(argv)
    return build(args) if args.command == "build" else score(args)


if __name__ == "__main__":
    raise SystemExit(main())
