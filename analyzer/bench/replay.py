"""Replay benchmark: a scenario fed one day at a time into one workspace, as a team running daily would.

:func:`split_days` writes one log per day of a scenario; :func:`replay` runs ``analyzer run`` on each day in
turn (incremental, or ``--recluster`` every day) and keeps, per day, the wall time, the path the cluster stage
took and the JSON export's campaigns (``id``, ``accounts``, ``flagged``, ``score``: nothing else is read, so
any detector that writes the same export can be scored). :func:`score_replay` turns the days into figures:
the day each true campaign was first flagged against its first day of activity, the ids of its flagged
campaigns day by day and how often they changed after detection, and, for accounts that replaced banned ones
(scenario knob ``ban_day``), the share flagged by the end and how many of their requests had been seen when
they were first flagged. :func:`equivalence` compares two modes' last days.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analyzer.bench import metrics
from analyzer.bench.scenario import Scenario, scenario_records

Log = Callable[[str], None]


@dataclass(frozen=True)
class ReplayCriteria:
    """The checks of issue 12 that the replay reports on (each reported as met or not, never enforced).

    Parameters
    ----------
    detect_within_days : int
        A campaign of ``min_accounts`` accounts or more must be flagged by the end of this day of its activity
        (1 = its first day).
    min_accounts : int
        Campaigns smaller than this are reported but not held to ``detect_within_days``.
    replacement_flagged_share : float
        Share of replacement accounts that must be flagged by the last day.
    replacement_requests : int
        "Most" replacement accounts must be flagged within this many of their own requests.
    last_over_second_day : float
        The last day's run may cost at most this multiple of the second day's.
    matched_jaccard : float
        Two modes agree on a true campaign when the account sets of the flagged campaigns matched to it have
        at least this Jaccard similarity.
    """

    detect_within_days: int = 2
    min_accounts: int = 10
    replacement_flagged_share: float = 0.9
    replacement_requests: int = 20
    last_over_second_day: float = 1.5
    matched_jaccard: float = 0.9


@dataclass
class DayResult:
    day: int
    seconds: float  # wall time of the day's run (in process: the JSON export included)
    cpu_seconds: float  # CPU time of the run, all threads (less disturbed by other load on the machine)
    path: str
    trigger: str | None
    stages: dict[str, float]
    campaigns: list[dict[str, Any]] = field(default_factory=list)  # id, accounts, flagged, score


def split_days(scenario: Scenario, out_dir: str) -> list[str]:
    """Write one ``day-NN.jsonl.gz`` per UTC day of the scenario (in time order); returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    df = scenario.requests
    day = (df["ts"] - df["ts"].min().normalize()).dt.days
    paths = []
    for d in sorted(day.unique()):
        path = os.path.join(out_dir, f"day-{int(d):02d}.jsonl.gz")
        with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as fh:
            for rec in scenario_records(df[day == d]):
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        paths.append(path)
    return paths


def day_request_counts(scenario: Scenario) -> list[int]:
    """Requests on each UTC day of the scenario, in the order of :func:`split_days`' logs."""
    df = scenario.requests
    day = (df["ts"] - df["ts"].min().normalize()).dt.days
    return [int(n) for n in day.value_counts().sort_index().to_numpy()]


def start_late(scenario: Scenario, campaign: str, day: int) -> Scenario:
    """The scenario with ``campaign``'s requests before ``day`` (0-based) removed: a campaign that starts
    mid-log, after the first clusterings were made without it. The truth records ``late_start``."""
    df = scenario.requests
    if campaign not in scenario.truth.get("campaigns", {}):
        raise ValueError(f"no campaign {campaign!r} in the scenario")
    days = (df["ts"] - df["ts"].min().normalize()).dt.days
    keep = ~((df["actor"] == campaign) & (days < day))
    truth = {**scenario.truth, "late_start": {**scenario.truth.get("late_start", {}), campaign: int(day)}}
    out = df[keep].reset_index(drop=True)
    truth["n_requests"] = int(len(out))
    truth["all_accounts"] = sorted(out["account_id"].unique().tolist())
    return Scenario(requests=out, truth=truth)


def export_campaigns(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The fields the replay scores, from a JSON export (``analyzer export --format json``)."""
    return [{"id": c["id"], "accounts": list(c["accounts"]), "flagged": bool(c["flagged"]),
             "score": float(c.get("score", 0.0))} for c in doc.get("campaigns", [])]


#: The replay's modes: a daily run in this process, the same with a full re-cluster every day, and one
#: ``analyzer run DAY --workspace WS`` process per day with its defaults (the map included), as a team runs it.
MODES = ("incremental", "recluster", "process")


def replay(day_paths: Sequence[str], workdir: str, recluster: bool, embedding_cache: str | None = None,
           log: Log = print, process: bool = False, retime: int = 0) -> tuple[list[DayResult], dict[str, Any]]:
    """Run the analyzer on each day's log in turn, into one workspace; ``recluster`` forces a full run each day;
    ``process`` runs each day as its own ``analyzer run`` process (its wall and CPU time are the process's:
    start-up, imports and the map included; the JSON export is read afterwards, not timed).

    With ``retime`` > 0 the workspace is copied before the second and before the last day, and afterwards those
    two days are run again ``retime`` times each, alternately, each on a fresh copy: on a machine whose speed
    drifts over the minutes a replay takes, the ratio of their medians measured side by side is the figure to
    quote (:func:`retimed`), and each run again must decide what the first run of its day decided
    (``same_campaigns``). The last day is also run at the second day's volume (:func:`thin_log`: its requests
    sampled down to the second day's count), beside them: what the history costs, apart from the day's own size.
    Returns the days and the re-timing (empty without ``retime``)."""
    import shutil

    mode = "process" if process else "recluster" if recluster else "incremental"
    ws_path = os.path.join(workdir, f"ws-{mode}")
    n = len(day_paths)
    snap_days = {1, n - 1} if retime > 0 and n >= 3 else set()
    out = []
    for d, path in enumerate(day_paths):
        if d in snap_days:
            shutil.copytree(ws_path, f"{ws_path}-before-{d}", dirs_exist_ok=False)
        secs, cpu, stats, doc = _run_day(path, ws_path, mode, embedding_cache)
        cl = stats["cluster"]
        res = DayResult(day=d, seconds=round(secs, 2), cpu_seconds=round(cpu, 2), path=cl["path"], trigger=cl.get("trigger"),
                        stages=stats["stages_s"], campaigns=export_campaigns(doc))
        n_flag = sum(c["flagged"] for c in res.campaigns)
        log(f"  day {d:2d} {mode}: {secs:6.1f} s ({cpu:6.1f} s CPU), {cl['path']}"
            f"{' (' + str(cl.get('trigger')) + ')' if cl.get('trigger') else ''}, {n_flag} flagged")
        out.append(res)
    if not snap_days:
        return out, {}
    thinned = os.path.join(workdir, f"last-day-at-second-day-volume-{mode}.jsonl.gz")
    n_thinned = thin_log(day_paths[n - 1], thinned, _count_lines(day_paths[1]))
    runs = [(1, day_paths[1], "second day"), (n - 1, day_paths[n - 1], "last day"),
            (n - 1, thinned, f"last day thinned to {n_thinned:,} requests")]
    times: list[list[tuple[float, float]]] = [[] for _ in runs]
    same = True  # every run again decided what the replay's own run of that day decided
    for r in range(retime):
        for i, (d, path, what) in enumerate(runs):
            again = f"{ws_path}-again"
            shutil.rmtree(again, ignore_errors=True)
            shutil.copytree(f"{ws_path}-before-{d}", again)
            secs, cpu, _, doc = _run_day(path, again, mode, embedding_cache)
            shutil.rmtree(again, ignore_errors=True)
            times[i].append((round(secs, 2), round(cpu, 2)))
            if path == day_paths[d]:
                same &= _decisions(export_campaigns(doc)) == _decisions(out[d].campaigns)
            log(f"  again ({r + 1}/{retime}) {what} (day {d}) {mode}: {secs:6.1f} s ({cpu:6.1f} s CPU)")
    equal = retimed(times[0], times[2])
    return out, {**retimed(times[0], times[1]), "same_campaigns": same,
                 "last_day_thinned": {"requests": n_thinned, "times": equal["last_day"],
                                      "median": equal["median_last_day"],
                                      "over_second_day": equal["last_over_second_day"],
                                      "over_second_day_cpu": equal["last_over_second_day_cpu"]}}


def _count_lines(path: str) -> int:
    """Requests (non-empty lines) in a gzip JSONL log."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def thin_log(path: str, out_path: str, n: int, seed: int = 0) -> int:
    """Write ``n`` of the requests of the JSONL log ``path`` (gzip), drawn at random with ``seed``, in their
    order, to ``out_path``; all of them when it holds ``n`` or fewer. Returns how many were written."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        lines = [line for line in fh if line.strip()]
    keep = np.sort(np.random.default_rng(seed).choice(len(lines), size=min(n, len(lines)), replace=False))
    with gzip.open(out_path, "wt", encoding="utf-8", compresslevel=1) as fh:
        fh.writelines(lines[int(i)] for i in keep)
    return len(keep)


def _decisions(campaigns: Sequence[Mapping[str, Any]]) -> list[tuple[str, tuple[str, ...], bool]]:
    """What a run decided, comparable between two runs: each campaign's id, accounts and flag."""
    return sorted((c["id"], tuple(sorted(c["accounts"])), bool(c["flagged"])) for c in campaigns)


def retimed(second: Sequence[tuple[float, float]], last: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """The second and the last day's runs repeated side by side (``(wall, CPU)`` seconds each): their times, the
    medians and the ratio of the medians (last over second), wall and CPU."""
    med = {k: [float(np.median([t[i] for t in v])) for i in (0, 1)] for k, v in (("second", second), ("last", last))}
    return {"second_day": [list(t) for t in second], "last_day": [list(t) for t in last],
            "median_second_day": med["second"], "median_last_day": med["last"],
            "last_over_second_day": round(med["last"][0] / max(med["second"][0], 1e-9), 3),
            "last_over_second_day_cpu": round(med["last"][1] / max(med["second"][1], 1e-9), 3)}


def _run_day(path: str, ws_path: str, mode: str, embedding_cache: str | None
             ) -> tuple[float, float, dict[str, Any], dict[str, Any]]:
    """One day's run in ``mode``: wall and CPU seconds, the run's stats and the JSON export (read after the
    timing in the process mode; in this process, timed with the run)."""
    from analyzer.export import to_json
    from analyzer.pipeline import RunOptions, run_all
    from analyzer.workspace import Workspace

    process = mode == "process"
    t0, c0 = time.perf_counter(), (_children_cpu() if process else time.process_time())
    if process:
        _run_process(path, ws_path, embedding_cache)
        secs, cpu = time.perf_counter() - t0, _children_cpu() - c0
        ws = Workspace(ws_path)
        try:
            stats = ws.ok_run_stats()[0][1]
            doc = json.loads(to_json(ws))
        finally:
            ws.close()
        return secs, cpu, stats, doc
    opts = RunOptions(progress=False, make_map=False, recluster=mode == "recluster", embedding_cache=embedding_cache)
    ws = Workspace(ws_path, create=True)
    try:
        stats = run_all(ws, [path], opts)
        doc = json.loads(to_json(ws))
    finally:
        ws.close()
    return time.perf_counter() - t0, time.process_time() - c0, stats, doc


def _run_process(path: str, ws_path: str, embedding_cache: str | None) -> None:
    """``analyzer run PATH --workspace WS_PATH`` in a process of its own; its output is shown only on failure."""
    import subprocess

    cmd = [sys.executable, "-m", "analyzer.cli", "run", path, "--workspace", ws_path, "--quiet"]
    if embedding_cache:
        cmd += ["--embedding-cache", embedding_cache]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def _children_cpu() -> float:
    """CPU seconds used by this process's finished child processes (user and system)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _flagged(day: DayResult) -> list[dict[str, Any]]:
    return [c for c in day.campaigns if c["flagged"]]


def _scores(day: DayResult) -> dict[str, float]:
    """An account's score from the export alone: the best score of a campaign listing it."""
    out: dict[str, float] = {}
    for c in day.campaigns:
        for a in c["accounts"]:
            out[a] = max(out.get(a, 0.0), c["score"])
    return out


def matched(day: DayResult, truth: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The flagged campaigns of a day assigned to each true campaign (a strict majority of their accounts)."""
    fl = _flagged(day)
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in truth.get("campaigns", {})}
    for c, names in zip(fl, metrics.assign_flags([c["accounts"] for c in fl], truth), strict=True):
        for name in names:
            out[name].append(c)
    return out


def first_activity_days(requests: pd.DataFrame) -> dict[str, int]:
    """Day (0-based) of each true campaign's first request (``actor`` column of the scenario frame)."""
    day = (requests["ts"] - requests["ts"].min().normalize()).dt.days
    return {str(a): int(d) for a, d in day.groupby(requests["actor"]).min().items()}


def truth_until(scenario: Scenario, day: int) -> dict[str, Any]:
    """The truth restricted to the accounts with a request by the end of ``day`` (0-based)."""
    req = scenario.requests
    days = (req["ts"] - req["ts"].min().normalize()).dt.days
    active = set(req.loc[days <= day, "account_id"])
    truth = scenario.truth
    out = {**truth, "campaigns": {n: {**t, "accounts": [a for a in t["accounts"] if a in active]}
                                  for n, t in truth.get("campaigns", {}).items()}}
    if truth.get("all_accounts"):
        out["all_accounts"] = [a for a in truth["all_accounts"] if a in active]
    return out


def score_replay(days: Sequence[DayResult], scenario: Scenario, criteria: ReplayCriteria = ReplayCriteria()
                 ) -> dict[str, Any]:
    """Detection delay, id changes and replacement-account coverage over a replay (see the module doc)."""
    truth = scenario.truth
    req = scenario.requests
    first_active = first_activity_days(req)
    per_campaign: dict[str, Any] = {}
    # A campaign is found on a day when it is found among the accounts active so far: accounts that replace
    # banned ones later are not yet there to be flagged.
    found_by_day = [metrics.campaign_recall([c["accounts"] for c in _flagged(d)], truth_until(scenario, d.day))[1]
                    for d in days]
    matched_by_day = [matched(d, truth) for d in days]
    for name, t in truth.get("campaigns", {}).items():
        start = first_active.get(name)
        first = next((d.day for d, f in zip(days, found_by_day, strict=True) if f.get(name)), None)
        ids = [sorted(c["id"] for c in m[name]) for m in matched_by_day]
        changes = 0
        if first is not None:
            changes = sum(1 for a, b in zip(ids[first:], ids[first + 1:], strict=False) if a != b)
        delay = None if first is None or start is None else first - start + 1
        per_campaign[name] = {
            "n_accounts": len(t["accounts"]), "first_active_day": start, "first_flagged_day": first,
            "detected_on_day_of_activity": delay, "flagged_at_end": bool(found_by_day[-1].get(name)) if days else False,
            "id_changes_after_detection": changes, "ids_per_day": ids,
            "meets_deadline": (len(t["accounts"]) < criteria.min_accounts
                               or (delay is not None and delay <= criteria.detect_within_days)),
        }
    out: dict[str, Any] = {"campaigns": per_campaign}
    out["replacements"] = replacement_stats(days, scenario, criteria)
    if days:
        last = days[-1]
        fl = [c["accounts"] for c in _flagged(last)]
        recall, _ = metrics.campaign_recall(fl, truth)
        out["final"] = {"campaign_recall": round(recall, 4), "false_flags": metrics.false_flags(fl, truth)[0],
                        "account_auc": round(metrics.account_auc(_scores(last), truth), 4)}
        secs, cpu = [d.seconds for d in days], [d.cpu_seconds for d in days]
        out["seconds_per_day"], out["cpu_seconds_per_day"] = secs, cpu
        out["paths"] = [d.path if d.path == "incremental" else f"full ({d.trigger})" for d in days]
        if len(days) >= 2:
            out["last_over_second_day"] = round(secs[-1] / max(secs[1], 1e-9), 3)
            out["last_over_second_day_cpu"] = round(cpu[-1] / max(cpu[1], 1e-9), 3)
    return out


def replacement_stats(days: Sequence[DayResult], scenario: Scenario, criteria: ReplayCriteria) -> dict[str, Any]:
    """For accounts that replaced banned ones: the share flagged by the end, and per account the number of its
    requests seen by the end of the day it was first flagged (``None``: never flagged)."""
    truth = scenario.truth
    repl = sorted({a for t in truth.get("campaigns", {}).values() for a in t.get("replacement_accounts", {})})
    if not repl or not days:
        return {"n": len(repl)}
    req = scenario.requests
    start = req["ts"].min().normalize()
    day = (req["ts"] - start).dt.days.to_numpy()
    first_flag: dict[str, int] = {}
    for d in days:
        flagged = {a for c in _flagged(d) for a in c["accounts"]}
        for a in repl:
            if a in flagged and a not in first_flag:
                first_flag[a] = d.day
    seen: dict[str, int | None] = {}
    mine = req[req["account_id"].isin(repl)]
    mday = day[mine.index.to_numpy()]
    for a in repl:
        m = (mine["account_id"] == a).to_numpy()
        seen[a] = int((mday[m] <= first_flag[a]).sum()) if a in first_flag else None
    last = {a for c in _flagged(days[-1]) for a in c["accounts"]}
    counts = np.array([v for v in seen.values() if v is not None], dtype=float)
    within = int((counts <= criteria.replacement_requests).sum())
    return {
        "n": len(repl), "flagged_at_end": round(sum(a in last for a in repl) / len(repl), 4),
        "ever_flagged": round(len(first_flag) / len(repl), 4),
        "requests_seen_when_first_flagged": {
            "min": float(counts.min()) if len(counts) else None,
            "p25": float(np.percentile(counts, 25)) if len(counts) else None,
            "median": float(np.median(counts)) if len(counts) else None,
            "p75": float(np.percentile(counts, 75)) if len(counts) else None,
            "max": float(counts.max()) if len(counts) else None},
        f"share_flagged_within_{criteria.replacement_requests}_requests": round(within / len(repl), 4),
        "histogram": {str(k): int(v) for k, v in zip(*np.unique(np.minimum(counts, 50).astype(int),
                                                               return_counts=True), strict=True)},
    }


def jaccard(a: set[str], b: set[str]) -> float:
    """|a & b| / |a | b| (1.0 when both are empty)."""
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def equivalence(a: DayResult, b: DayResult, truth: Mapping[str, Any]) -> dict[str, Any]:
    """Compare two runs' exports of the same day: per true campaign, the Jaccard of the accounts of the flagged
    campaigns matched to it; recall, false flags and account AUC of each."""
    ma, mb = matched(a, truth), matched(b, truth)
    per = {}
    for name in truth.get("campaigns", {}):
        sa = {x for c in ma[name] for x in c["accounts"]}
        sb = {x for c in mb[name] for x in c["accounts"]}
        per[name] = round(jaccard(sa, sb), 4)
    out: dict[str, Any] = {"matched_jaccard": per}
    for label, day in (("a", a), ("b", b)):
        fl = [c["accounts"] for c in _flagged(day)]
        out[label] = {"campaign_recall": round(metrics.campaign_recall(fl, truth)[0], 4),
                      "false_flags": metrics.false_flags(fl, truth)[0],
                      "account_auc": round(metrics.account_auc(_scores(day), truth), 4)}
    return out


def mode_report(mode: str, res: Mapping[str, Any], crit: ReplayCriteria) -> list[str]:
    """Lines describing one mode's replay figures (:func:`score_replay`) for a terminal."""
    lines = [f"== {mode}",
             "seconds per day: " + ", ".join(f"{s:.1f}" for s in res["seconds_per_day"]),
             "CPU seconds per day: " + ", ".join(f"{s:.1f}" for s in res["cpu_seconds_per_day"]),
             "cluster path per day: " + ", ".join(res["paths"])]
    if "last_over_second_day" in res:
        lines.append(f"last day / second day: {res['last_over_second_day']:.2f} wall, "
                     f"{res['last_over_second_day_cpu']:.2f} CPU (target <= {crit.last_over_second_day})")
    if "last_over_second_day_per_request" in res:
        req = res["requests_per_day"]
        lines.append(f"  the days' requests: {req[1]:,} on the second, {req[-1]:,} on the last; per request the "
                     f"last day costs {res['last_over_second_day_per_request']:.2f}x the second")
    if "retimed" in res:
        rt = res["retimed"]
        lines.append(f"  run again side by side ({len(rt['second_day'])} times each): medians "
                     f"{rt['median_second_day'][0]:.1f} s and {rt['median_last_day'][0]:.1f} s: last / second "
                     f"{rt['last_over_second_day']:.2f} wall, {rt['last_over_second_day_cpu']:.2f} CPU")
        if "last_day_thinned" in rt:
            th = rt["last_day_thinned"]
            lines.append(f"  the last day at the second day's volume ({th['requests']:,} of its requests): median "
                         f"{th['median'][0]:.1f} s: {th['over_second_day']:.2f} wall, {th['over_second_day_cpu']:.2f} "
                         "CPU of the second day's")
    lines.append("final: " + json.dumps(res.get("final")))
    for name, c in res["campaigns"].items():
        lines.append(f"  {name:22s} {c['n_accounts']:3d} accounts: active from day {c['first_active_day']}, first "
                     f"flagged day {c['first_flagged_day']} (day {c['detected_on_day_of_activity']} of its activity), "
                     f"{c['id_changes_after_detection']} id changes after detection")
    r = res["replacements"]
    if r.get("n"):
        lines.append(f"  replacement accounts: {r['n']}, flagged at the end {r['flagged_at_end']:.1%}, ever flagged "
                     f"{r['ever_flagged']:.1%}; requests seen when first flagged "
                     f"{r['requests_seen_when_first_flagged']}; within {crit.replacement_requests}: "
                     f"{r[f'share_flagged_within_{crit.replacement_requests}_requests']:.1%}")
    return lines


def run_replay(preset: str = "quick", seed: int = 0, ban_day: int = 7, days: int | None = None,
               late: str | None = "censorship_rewrite:5", modes: Sequence[str] = ("incremental", "recluster"),
               workdir: str | None = None, embedding_cache: bool = False, log: Log = print,
               n_requests: int | None = None, retime: int = 0) -> dict[str, Any]:
    """The whole replay benchmark (``analyzer bench --replay``, ``benchmarks/replay.py``): build the scenario
    (``ban_day`` < 0: no bans; ``late`` ``"CAMPAIGN:DAY"`` drops that campaign's requests before DAY, ``None``:
    off; ``days`` and ``n_requests`` override the preset's), split it into days, replay each mode (of
    :data:`MODES`) into its own workspace under ``workdir`` (default: a temporary folder), score the days and
    log the figures; ``retime`` > 0 runs the second and the last day again that many times each, side by side
    (:func:`replay`). Returns the document the script writes as JSON."""
    import tempfile
    from dataclasses import asdict

    from analyzer.bench.scenario import build_scenario

    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"no replay mode {unknown[0]!r}; the modes are {', '.join(MODES)}")
    knobs: dict[str, Any] = {} if ban_day < 0 else {"ban_day": ban_day}
    if days:
        knobs["days"] = days
    if n_requests:
        knobs["n_requests"] = n_requests
    scenario = build_scenario(preset, seed=seed, **knobs)
    if late:
        name, day = late.rsplit(":", 1)
        scenario = start_late(scenario, name, int(day))
    crit = ReplayCriteria()
    with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
        work = workdir or tmp
        paths = split_days(scenario, os.path.join(work, "days"))
        log(f"{preset} seed {seed}: {len(scenario.requests):,} requests over {len(paths)} days, knobs {knobs}")
        days_by_mode, retimes = {}, {}
        for mode in modes:
            log(f"replaying ({mode})")
            days_by_mode[mode], retimes[mode] = replay(
                paths, work, recluster=(mode == "recluster"), log=log, process=(mode == "process"), retime=retime,
                embedding_cache=os.path.join(work, "embedding-cache") if embedding_cache else None)
    day_requests = day_request_counts(scenario)
    results = {m: score_replay(d, scenario, crit) for m, d in days_by_mode.items()}
    for m, res in results.items():
        res["requests_per_day"] = day_requests
        if len(day_requests) >= 2 and "last_over_second_day" in res:
            res["last_over_second_day_per_request"] = round(
                res["last_over_second_day"] * day_requests[1] / max(day_requests[-1], 1), 3)
        if retimes[m]:
            res["retimed"] = retimes[m]
    for m, res in results.items():
        log("\n" + "\n".join(mode_report(m, res, crit)))
    doc: dict[str, Any] = {
        "preset": preset, "seed": seed, "knobs": knobs, "late_start": late or "none", "criteria": asdict(crit),
        "modes": results,
        "days": {m: [{"day": d.day, "seconds": d.seconds, "cpu_seconds": d.cpu_seconds, "path": d.path,
                      "trigger": d.trigger, "stages": d.stages,
                      "flagged": [{"id": c["id"], "accounts": c["accounts"]} for c in d.campaigns if c["flagged"]]}
                     for d in ds] for m, ds in days_by_mode.items()}}
    if {"incremental", "recluster"} <= set(days_by_mode):
        a, b = days_by_mode["incremental"][-1], days_by_mode["recluster"][-1]
        doc["equivalence_last_day"] = equivalence(a, b, scenario.truth)
        log("\nequivalence on the last day (a = incremental, b = recluster): " + json.dumps(doc["equivalence_last_day"]))
        per_day = [equivalence(x, y, scenario.truth)
                   for x, y in zip(days_by_mode["incremental"], days_by_mode["recluster"], strict=True)]
        doc["equivalence_per_day"] = per_day
        log("per day, min Jaccard of matched campaigns / recall a, b / false flags a, b: " + "; ".join(
            f"{min(e['matched_jaccard'].values(), default=1.0):.2f} / {e['a']['campaign_recall']:.2f}, "
            f"{e['b']['campaign_recall']:.2f} / {e['a']['false_flags']}, {e['b']['false_flags']}" for e in per_day))
    return doc
