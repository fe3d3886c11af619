"""Scaffold families at scale: the capped kNN graph, templates from counts, vectorised training value.

Each shortcut is checked against the plain computation it replaces, on the real model, FAISS and HDBSCAN.
"""


import numpy as np
import pandas as pd

from analyzer import cluster, pipeline, signals

WRAPPER = ["You are a patient tutor who explains every move to the student.",
           "Think about the problem step by step before you answer.",
           "Show every intermediate calculation you make along the way.",
           "Put the final answer on its own line at the very end."]
FRAGMENTS = [["Reason through the question slowly and carefully.", "Work through the question one step at a time."],
             ["Write down each partial result you compute.", "List every partial result that you obtain."],
             ["End with the final result on a separate line.", "Close with the final result on a line of its own."]]
SUBJECTS = ["train", "farmer", "baker", "painter", "sailor", "miner", "doctor", "pilot", "tailor", "weaver"]


def _task(rng: np.random.Generator) -> str:
    name = "".join(chr(97 + int(c)) for c in rng.integers(0, 26, size=7))
    return (f"A {SUBJECTS[int(rng.integers(0, 10))]} named {name} has {int(rng.integers(2, 99))} crates and "
            f"sells {int(rng.integers(2, 99))} of them each week; how long until none are left")


def _texts(seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(120):  # one fixed wrapper: a single scaffold shared by 120 prompts
        texts.append(" ".join(WRAPPER[:2] + [_task(rng) + "?"] + WRAPPER[2:]))
    for _ in range(60):  # a wrapper composed of fragments: many distinct scaffolds, a few copies each
        parts = [group[int(rng.integers(0, 2))] for group in FRAGMENTS]
        parts = [parts[j] for j in rng.permutation(3)]
        parts.insert(int(rng.integers(0, 4)), _task(rng) + ".")
        texts.append(" ".join(parts))
    for _ in range(80):  # bare tasks: the sentence they share is too short to be a wrapper
        texts.append(_task(rng) + "?")
    return texts


def test_capped_scaffold_graph_gives_the_families_of_the_full_graph(monkeypatch):
    texts = _texts()
    options = pipeline.RunOptions(progress=False)
    eligible = np.ones(len(texts), dtype=bool)
    scaf, capped = pipeline.scaffold_families(texts, eligible, options)
    shared = pd.Series([s for s in scaf if s]).value_counts()
    assert shared.iloc[0] == 120 > 2 * options.cluster.k  # the fixed wrapper's scaffold is capped
    monkeypatch.setattr(pipeline, "SCAFFOLD_COPIES_PER_K", 10**6)  # every copy in the graph
    scaf_full, full = pipeline.scaffold_families(texts, eligible, options)
    assert scaf_full == scaf
    np.testing.assert_array_equal(capped, full)
    assert (capped[:120] == capped[0]).all() and capped[0] >= 0  # every copy takes its scaffold's family
    assert (capped[120:180] >= 0).mean() > 0.9 and not set(capped[120:180]) & {capped[0]}
    assert (capped[180:] < 0).all()


def test_first_copies_keeps_the_first_occurrences_of_each_value():
    codes = np.array([3, 1, 3, 3, 2, 1, 3, 0, 3])
    np.testing.assert_array_equal(cluster.first_copies(codes, 2), [0, 1, 2, 4, 5, 7])
    np.testing.assert_array_equal(cluster.first_copies(codes, 10), np.arange(len(codes)))
    assert len(cluster.first_copies(np.zeros(0, dtype=np.int64), 2)) == 0


def _templates_by_member(rows: pd.DataFrame, family_ids: np.ndarray, scaffold_of: list) -> pd.DataFrame:
    """The plain computation: every member's sentences counted one by one."""
    rows = rows.copy()
    members = cluster.members_by_label(family_ids)
    for i, r in rows.iterrows():
        parts = pd.Series([s for j in members[int(r.cluster_id)] for s in (scaffold_of[j] or "").split(" | ") if s])
        top = parts.value_counts().index[:4].tolist()
        n_words = [len(cluster.words(scaffold_of[j] or "")) for j in members[int(r.cluster_id)]]
        sig_ = dict(r.signals)
        sig_.update(template_coverage=1.0, n_fixed_words=int(np.median(n_words)), n_slots=1)
        rows.at[i, "signals"] = sig_
        rows.at[i, "template"] = " … ".join(top) + " … {task} (sentences in varying order)"
    return rows


def test_scaffold_templates_from_counts_match_the_member_by_member_count():
    rng = np.random.default_rng(3)
    sentences = [f"sentence number {w} of the wrapper here" for w in ["one", "two", "three", "four", "five", "six"]]
    scaffold_of, family_ids = [], []
    for _ in range(400):
        fam = int(rng.integers(-1, 5))
        picked = sorted(rng.choice(sentences, size=int(rng.integers(1, 4)), replace=False).tolist())
        scaffold_of.append(" | ".join(picked) if fam >= 0 else None)
        family_ids.append(fam)
    family_ids = np.array(family_ids)
    rows = pd.DataFrame({"cluster_id": [0, 1, 2, 3, 4], "template": [""] * 5,
                         "signals": [{"template_coverage": 0.2, "training_value": 0.5} for _ in range(5)]})
    got = pipeline.scaffold_templates(rows, family_ids, scaffold_of)
    want = _templates_by_member(rows, family_ids, scaffold_of)
    assert got["template"].tolist() == want["template"].tolist()
    assert got["signals"].tolist() == want["signals"].tolist()
    assert got["signals"][0]["training_value"] == 0.5  # other signals are kept
    # Ties keep the order in which members show the sentences.
    tie = pipeline.scaffold_templates(rows.iloc[:1], np.zeros(2, dtype=np.int64), ["b x y | a x y", "a x y | b x y"])
    assert tie["template"][0].startswith("b x y … a x y … {task}")


def test_training_values_match_the_scalar_mapping():
    sims = np.array([-0.3, 0.0, 0.15, 0.2, 0.3333, 0.45, 0.9, np.float64(0.1234567)])
    np.testing.assert_array_equal(signals.training_values(sims),
                                  [signals.training_value_from_similarity(float(x)) for x in sims])


def test_ascii_text_is_always_readable():
    assert not signals.unreadable("Solve: 2 + 2 = ?  " * 500)
    assert signals.unreadable("请一步一步地思考这个问题，并写出每一步的推理过程和最后的答案。" + " Solve 2 + 2." * 100)


def test_most_common_intent_matches_pandas_mode():
    rng = np.random.default_rng(5)
    names = np.array(["reasoning", "coding", "chain-of-thought elicitation", "tool use", "b", "a"], dtype=object)
    for _ in range(300):
        values = names[rng.integers(0, len(names), size=int(rng.integers(1, 12)))]
        assert pipeline.most_common(values) == str(pd.Series(values).mode().iloc[0])
