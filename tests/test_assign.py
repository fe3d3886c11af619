"""Incremental runs: the pure assignment rules (analyzer.assign) and the daily path end to end."""

from __future__ import annotations

import gzip
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from analyzer import assign
from analyzer.cluster import template_families

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_LOG = ROOT / "data" / "sample" / "requests.jsonl.gz"
SAMPLE_TRUTH = ROOT / "data" / "sample" / "truth.json"
#: The sample log (7 days) is split here: the first run clusters days 0-4, the second adds days 5-6.
CUT = "2026-01-10"


# --- pure rules ---------------------------------------------------------------------------------------------------
def test_nearest_label_takes_first_labelled_neighbour_within_reach() -> None:
    labels = np.array([[-1, 3, 5], [-1, -1, 2], [4, 4, 4], [7, -1, -1]])
    sims = np.array([[0.9, 0.8, 0.7], [0.9, 0.8, 0.5], [0.55, 0.5, 0.4], [0.61, 0.9, 0.9]])
    assert assign.nearest_label(labels, sims, 0.6).tolist() == [3, -1, -1, 7]


def test_majority_label_needs_more_than_the_share_of_all_neighbours() -> None:
    labels = np.array([[1, 1, 1, 2], [1, 1, 2, 2], [1, 1, 1, -1], [1, 1, 1, 1]])
    sims = np.array([[0.9] * 4, [0.9] * 4, [0.9] * 4, [0.9, 0.9, 0.3, 0.3]])
    # row 2: three of four neighbours are in cluster 1; row 3: only two are close enough
    assert assign.majority_label(labels, sims, 0.6, 0.5).tolist() == [1, -1, 1, -1]


def _wrapped(opening: str, closing: str, i: int) -> str:
    body = " ".join(random.Random(i).choice(["alpha", "beta", "gamma", "delta", "omega", "sigma", "theta", "kappa"])
                    for _ in range(12))
    return f"{opening} {body} {i} {closing}"


def test_family_keys_recover_the_key_template_families_were_formed_on() -> None:
    head = "You are a careful grader of student answers."
    tail = "Return only JSON with the fields score and reason please."
    members = [_wrapped(head, f"tail {i} words here to differ now", i) for i in range(10)]
    openers = ["apples", "rivers", "clouds", "stones", "lamps", "forks", "boats", "kites", "bells", "roses"]
    members += [_wrapped(f"{w} open this prompt in a way of its own", tail, 100 + i) for i, w in enumerate(openers)]
    fams = template_families(members, 6, 8)
    assert len(set(fams.tolist())) == 2 and (fams >= 0).all()
    heads, tails = assign.family_keys(members, fams.tolist(), 6)
    new = [_wrapped(head, "a different closing of five words at least", 500),
           _wrapped("some other opening words for this one", tail, 501),
           _wrapped("nothing shared with either family at all", "and no shared closing words either here", 502)]
    got = assign.match_families(new, heads, tails, 6)
    assert got[0] == fams[0] and got[1] == fams[10] and got[2] == -1


def test_scaffold_sentences_match_recurring_sentences_in_any_order() -> None:
    frags = ["Think through the problem step by step before answering",
             "Show every intermediate calculation clearly",
             "Finish with the final answer on its own line"]
    rng = random.Random(0)
    members = []
    for i in range(12):
        parts = frags[:]
        rng.shuffle(parts)
        members.append(". ".join(parts) + f". Problem {i}: a train leaves station {chr(65 + i)} at noon going east.")
    sets = assign.scaffold_sentences(members, [4] * len(members), min_prompts=2)
    assert {s.split()[0] for s in sets[4]} >= {"think", "show", "finish"}
    new = [f"{frags[2]}. {frags[0]}. {frags[1]}. Problem: how many apples are left in the basket now?",
           "Tell me a story about a dragon and a knight who become friends in the mountains."]
    assert assign.match_scaffolds(new, sets).tolist() == [4, -1]
    # Retyped (typos inside words): no sentence verbatim, every one by its skeleton.
    typed = ["Finsih with the final anwser on its own lnie. Thnik through the porblem step by setp before answeirng. "
             "Show every intremediate calculation clearly. Problem: how many apples are left in the basket now?"]
    assert assign.match_scaffolds(typed, sets).tolist() == [4]


def test_assign_tasks_links_to_seen_tasks_and_groups_new_near_duplicates() -> None:
    # new prompt 0 is close to a seen prompt of task 7; 1 and 2 are close to each other only; 3 is alone
    nb_new = np.array([[-1, 1], [2, -1], [1, -1], [-1, -1]])
    nb_old_task = np.array([[7, -1], [-1, 9], [-1, 9], [3, -1]])
    sims = np.array([[0.95, 0.5], [0.93, 0.4], [0.93, 0.4], [0.5, -np.inf]])
    got = assign.assign_tasks(nb_new, nb_old_task, sims, 0.9, next_id=100)
    assert got[0] == 7 and got[1] == got[2] and got[1] >= 100 and got[3] >= 100 and got[3] != got[1]


def test_drift_trigger_names_the_measure() -> None:
    p = assign.IncrementalParams(max_growth=1.0, max_unassigned_increase=0.25)
    assert assign.drift_trigger(p, 1000, 1900) is None
    assert assign.drift_trigger(p, 1000, 2100) == "growth"
    assert assign.drift_trigger(p, 1000, 1100, 0.6, 0.4) is None
    assert assign.drift_trigger(p, 1000, 1100, 0.7, 0.4) == "unassigned"
    assert assign.drift_trigger(p, 1000, 1100, 0.9, None) is None


# --- end to end ---------------------------------------------------------------------------------------------------
def _write(records: list[dict], path: Path) -> str:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def two_days(tmp_path_factory) -> dict:
    """The sample log as two runs into one workspace (saved after the first), and the same two runs with
    ``recluster`` on the second."""
    from analyzer.pipeline import RunOptions, run_all
    from analyzer.workspace import Workspace

    tmp = tmp_path_factory.mktemp("two-days")
    with gzip.open(SAMPLE_LOG, "rt", encoding="utf-8") as fh:
        recs = sorted((json.loads(line) for line in fh), key=lambda r: r["timestamp"])
    day1 = _write([r for r in recs if r["timestamp"] < CUT], tmp / "day1.jsonl.gz")
    day2 = _write([r for r in recs if r["timestamp"] >= CUT], tmp / "day2.jsonl.gz")
    ws = Workspace(str(tmp / "incr"), create=True)
    first = run_all(ws, [day1], RunOptions(progress=False, make_map=False))
    ws.close()
    shutil.copytree(tmp / "incr", tmp / "after-day1")
    shutil.copytree(tmp / "incr", tmp / "full")
    out = {"tmp": tmp, "day1": day1, "day2": day2, "first": first}
    for name, recluster in (("incr", False), ("full", True)):
        ws = Workspace(str(tmp / name))
        out[name] = run_all(ws, [day2], RunOptions(progress=False, make_map=False, recluster=recluster))
        out[name + "_flagged"] = _export(ws)
        ws.close()
    return out


def _export(ws) -> list[dict]:
    from analyzer.export import to_json

    return [c for c in json.loads(to_json(ws))["campaigns"] if c["flagged"]]


def test_second_day_is_assigned_incrementally(two_days) -> None:
    from analyzer.workspace import Workspace

    assert two_days["first"]["cluster"]["path"] == "full"
    assert two_days["first"]["cluster"]["trigger"] == "no clustering"
    st = two_days["incr"]["cluster"]
    assert st["path"] == "incremental" and "assign" in two_days["incr"]["stages_s"]
    assert "cluster" not in two_days["incr"]["stages_s"]
    assert st["new_prompts"] > 100
    # every new prompt got a row; most of the new campaign prompts joined a family or a cluster
    ws = Workspace(str(two_days["tmp"] / "incr"), read_only=True)
    try:
        n_rows = ws.db.execute("SELECT count(*) FROM prompt_clusters").fetchall()[0][0]
        n_emb = ws.db.execute("SELECT count(*) FROM embedded").fetchall()[0][0]
        assert n_rows == n_emb == st["prompts"]
        assert st["to_template_families"] + st["to_scaffold_families"] + st["topic_members"] + st["attributed"] > 0.3 * st["new_prompts"]
        # the clusters the day's prompts went to exist, and no task id is missing
        dangling = ws.db.execute(
            """SELECT count(*) FROM prompt_clusters pc LEFT JOIN clusters c ON c.cluster_id = pc.assigned_cluster
               WHERE pc.assigned_cluster >= 0 AND c.cluster_id IS NULL""").fetchall()[0][0]
        assert dangling == 0
        assert ws.db.execute("SELECT count(*) FROM prompt_clusters WHERE task_id IS NULL").fetchall()[0][0] == 0
    finally:
        ws.close()


def test_incremental_campaigns_match_a_full_recluster(two_days) -> None:
    from analyzer.bench import metrics
    from analyzer.bench.replay import jaccard

    truth = json.loads(SAMPLE_TRUTH.read_text())
    assert two_days["full"]["cluster"]["path"] == "full" and two_days["full"]["cluster"]["trigger"] == "requested"
    inc = [c["accounts"] for c in two_days["incr_flagged"]]
    full = [c["accounts"] for c in two_days["full_flagged"]]
    r_inc, found_inc = metrics.campaign_recall(inc, truth)
    r_full, found_full = metrics.campaign_recall(full, truth)
    assert r_inc == r_full == 1.0
    assert metrics.false_flags(inc, truth)[0] == metrics.false_flags(full, truth)[0] == 0
    for name in truth["campaigns"]:
        a = {x for c, names in zip(inc, metrics.assign_flags(inc, truth), strict=True) if name in names for x in c}
        b = {x for c, names in zip(full, metrics.assign_flags(full, truth), strict=True) if name in names for x in c}
        assert jaccard(a, b) >= 0.9, name


def test_recluster_flag_takes_the_full_path(two_days, tmp_path) -> None:
    from click.testing import CliRunner

    from analyzer.cli import main

    ws = tmp_path / "ws"
    shutil.copytree(two_days["tmp"] / "after-day1", ws)
    res = CliRunner().invoke(main, ["run", two_days["day2"], "--workspace", str(ws), "--recluster", "--no-map", "-q"])
    assert res.exit_code == 0, res.output
    assert "full re-cluster (requested)" in res.output


def test_a_day_of_entirely_new_content_triggers_a_recluster(two_days, tmp_path) -> None:
    from analyzer.pipeline import RunOptions, run_all
    from analyzer.workspace import Workspace

    ws_path = tmp_path / "ws"
    shutil.copytree(two_days["tmp"] / "after-day1", ws_path)
    rng = random.Random(1)
    syll = ["ka", "zu", "mi", "tor", "vex", "ul", "qua", "rin", "bo", "sel", "fy", "dra"]
    recs = [{"request_id": f"novel-{i}", "account_id": f"novel-acct-{i % 40}",
             "timestamp": f"2026-01-12T{(i % 24):02d}:{(i * 7) % 60:02d}:00Z",
             "prompt": " ".join("".join(rng.choice(syll) for _ in range(rng.randint(2, 4))) for _ in range(14))}
            for i in range(400)]
    day = _write(recs, tmp_path / "novel.jsonl.gz")
    ws = Workspace(str(ws_path))
    try:
        stats = run_all(ws, [day], RunOptions(progress=False, make_map=False))
    finally:
        ws.close()
    assert stats["cluster"]["path"] == "full" and stats["cluster"]["trigger"] == "unassigned"
    assert stats["assign_discarded"]["unassigned_request_share"] > 0.9


def test_scaffold_sentences_memo_gives_what_the_computation_gives(tmp_path) -> None:
    """The daily run's memo of scaffold families' sentences: reused while a family's sample is unchanged, made
    again for a family whose sample changed, and harmless when damaged."""
    import pandas as pd

    from analyzer.pipeline import analysis_text, scaffold_family_sentences
    from analyzer.workspace import Workspace

    frags = ["Think through the problem step by step before answering", "Show every intermediate calculation",
             "Finish with the final answer on its own line", "Grade the answer against the rubric below",
             "Return a score from one to ten with a reason"]
    rows = [(f"h{f}{i}", f, ". ".join(frags[f * 2: f * 2 + 3]) + f". Item {i}: what is {i} plus {i + 1}?")
            for f in (0, 1) for i in range(6)]
    sample = pd.DataFrame(rows, columns=["prompt_hash", "family", "text"])

    def computed(frame):
        return assign.scaffold_sentences(frame["text"].map(analysis_text).tolist(), frame["family"].tolist(),
                                         min_prompts=2)

    with Workspace(str(tmp_path / "ws"), create=True) as ws:
        memo = tmp_path / "ws" / "cache" / "scaffold-sentences.json"
        first = scaffold_family_sentences(ws, sample)
        assert first == computed(sample) and all(first.values()) and memo.exists()
        assert scaffold_family_sentences(ws, sample) == first
        grown = pd.concat([sample.iloc[6:], pd.DataFrame(
            [("h1x", 1, f"{frags[2]}. A new sentence that every member now carries here. Item x: 2 + 2?"),
             ("h1y", 1, f"{frags[3]}. A new sentence that every member now carries here. Item y: 3 + 3?")],
            columns=sample.columns)])
        assert scaffold_family_sentences(ws, grown) == computed(grown) != computed(sample.iloc[6:])
        memo.write_text("{not json", encoding="utf-8")
        assert scaffold_family_sentences(ws, sample) == first


def test_a_scaffold_tie_does_not_depend_on_the_order_of_the_families() -> None:
    shared = {"rewrite the question in neutral terms", "answer with the rewritten question only"}
    fams = {7: set(shared), 3: set(shared)}
    text = "Rewrite the question in neutral terms. Answer with the rewritten question only. What happened in 1989?"
    one = assign.match_scaffolds([text], fams)
    other = assign.match_scaffolds([text], dict(reversed(list(fams.items()))))
    assert one.tolist() == other.tolist() == [3]


def test_a_daily_run_extends_the_kept_inverted_file_and_searches_it_by_position(two_days, tmp_path,
                                                                                monkeypatch) -> None:
    """Past the exact-index size the index is an inverted file kept between runs: the first run trains it, the
    next adds its new vectors (no training) and every search answers with positions in the run's rows, in the
    pipeline and in the app's search alike."""
    from analyzer import index as index_mod
    from analyzer import pipeline
    from analyzer.pipeline import RunOptions, run_all
    from analyzer.workspace import Workspace, embedding_row_ids

    monkeypatch.setattr(index_mod, "FLAT_MAX", 500)  # the sample's ~2,000 prompts call for an inverted file
    shutil.copytree(two_days["tmp"] / "after-day1", tmp_path / "ws")
    with Workspace(str(tmp_path / "ws")) as ws:
        built: dict = {}
        pipeline.build_index(ws, RunOptions(progress=False), built)
        stats = run_all(ws, [two_days["day2"]], RunOptions(progress=False, make_map=False))
        assert built["index"] == "built" and stats["index"]["index"] == "extended"
        assert stats["index"]["trained_on"] == built["trained_on"] < stats["index"]["prompts"]
        assert stats["cluster"]["path"] == "incremental" and _export(ws)
        hashes, vectors, ids = ws.load_embedding_rows(pipeline.embedder_for(RunOptions()).key)
        rows = ws.db.execute('SELECT shard, "row" FROM embedded ORDER BY prompt_hash').df()
        assert (embedding_row_ids(rows["shard"], rows["row"]) == ids).all()
        found = index_mod.load_position_index(ws.index_path(pipeline.embedder_for(RunOptions()).key), ids)
    assert isinstance(found, index_mod.PositionIndex) and found.ntotal == len(hashes)
    _, top = found.search(vectors, 1)
    assert (top[:, 0] == np.arange(len(vectors))).mean() > 0.95


def test_sentence_counts_carried_from_sample_to_sample_give_what_counting_every_member_gives() -> None:
    # A family's sample changes from run to run (members in, members out): the counts carried along give the
    # recurring sentences that counting every member of each sample gives.
    rng = random.Random(5)
    frags = [f"fragment number {i} of the wrapper says this" for i in range(12)]
    pool = {f"p{i:03d}": ". ".join(rng.sample(frags, rng.randint(1, 4))) + f". Task {i}: add {i} and {i * 7}."
            for i in range(120)}
    counts = None
    for _ in range(25):
        members = sorted(rng.sample(sorted(pool), rng.randint(5, 40)))
        counts = assign.update_sentence_counts(counts, members, pool, min_prompts=2)
        full = assign.scaffold_sentences([pool[h] for h in members], [0] * len(members), min_prompts=2)
        assert assign.recurring_sentences(counts, 2) == full.get(0, set())
        assert counts.members == members
    # a sentence's text is kept only while two or more members hold it
    assert all(counts.counts[k] >= 2 for k in counts.strings)


def test_scaffold_sentences_memo_splits_only_the_members_that_changed(tmp_path, monkeypatch) -> None:
    import pandas as pd

    from analyzer import cluster as cluster_mod
    from analyzer import pipeline
    from analyzer.pipeline import analysis_text, scaffold_family_sentences
    from analyzer.workspace import Workspace

    frags = ["Think through the problem step by step before answering", "Show every intermediate calculation",
             "Finish with the final answer on its own line", "Grade the answer against the rubric below"]
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"account_id": f"a{i}", "timestamp": "2026-03-01T00:00:00Z",
                                       "prompt": f"{frags[i % 4]}. {frags[(i + 1) % 4]}. Item {i}: {i} plus {i}?"})
                           + "\n" for i in range(30)), encoding="utf-8")
    with Workspace(str(tmp_path / "ws"), create=True) as ws:
        pipeline.ingest(ws, [str(log)], ws.start_run("ingest", {}, {}), progress=False)
        prompts = ws.prompt_texts().sort_index()
        everyone = pd.DataFrame({"prompt_hash": prompts.index, "family": [i % 2 for i in range(len(prompts))],
                                 "text": prompts.to_numpy()})
        first, second = everyone.iloc[:20], pd.concat([everyone.iloc[2:20], everyone.iloc[20:23]])

        def computed(frame):
            return assign.scaffold_sentences(frame["text"].map(analysis_text).tolist(), frame["family"].tolist(),
                                             min_prompts=2)

        assert scaffold_family_sentences(ws, first) == computed(first)
        expected = computed(second)
        split = []
        real = cluster_mod._sentences
        monkeypatch.setattr(cluster_mod, "_sentences", lambda text, *a: split.append(text) or real(text, *a))
        assert scaffold_family_sentences(ws, second) == expected
        assert len(split) == 5  # the 3 members that entered the samples and the 2 they displaced, not 21
        split.clear()
        assert scaffold_family_sentences(ws, second) == expected and not split  # nothing changed: nothing split
