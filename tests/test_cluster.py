from collections import Counter

import faiss
import numpy as np
import pytest

from analyzer import cluster, index


def _blobs(seed=0, n_blobs=4, per_blob=60, n_noise=300, d=32):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_blobs, d))
    pts = [c + 0.05 * rng.normal(size=(per_blob, d)) for c in centers]
    noise = rng.normal(size=(n_noise, d)) * 2
    x = np.vstack(pts + [noise]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    truth = np.concatenate([np.full(per_blob, i) for i in range(n_blobs)] + [np.full(n_noise, -1)])
    return x, truth


def test_knn_graph_excludes_self_and_is_exact_for_flat():
    x, _ = _blobs()
    idx = index.build_index(x)
    nbrs, sims = index.knn_graph(idx, x, k=5)
    assert nbrs.shape == (len(x), 5)
    assert not (nbrs == np.arange(len(x))[:, None]).any()
    brute = x @ x.T
    np.fill_diagonal(brute, -np.inf)
    assert np.allclose(np.sort(brute, axis=1)[:, ::-1][:, :5], sims, atol=1e-5)


def test_knn_graph_of_some_rows_matches_the_full_graph():
    """The incremental cluster stage asks for the neighbours of new prompts only: same rows, same order."""
    x, _ = _blobs()
    idx = index.build_index(x)
    full_n, full_s = index.knn_graph(idx, x, k=7)
    ids = np.array([5, 0, 299, 17, len(x) - 1])
    n, s = index.knn_graph(idx, x, k=7, batch=2, ids=ids)
    assert (n == full_n[ids]).all() and np.allclose(s, full_s[ids])
    assert not (n == ids[:, None]).any()


def test_hdbscan_on_knn_graph_finds_blobs_and_keeps_noise():
    x, truth = _blobs()
    idx = index.build_index(x)
    nbrs, sims = index.knn_graph(idx, x, k=15)
    labels, strengths = cluster.cluster_knn_graph(nbrs, sims, cluster.ClusterParams(min_cluster_size=10))
    for b in range(4):
        members = labels[truth == b]
        top = np.bincount(members[members >= 0]).argmax()
        assert (members == top).mean() > 0.9
    assert (labels[truth == -1] == -1).mean() > 0.8
    assert strengths.shape == labels.shape


def test_ivf_index_for_large_inputs():
    x, truth = _blobs(n_blobs=20, per_blob=200, n_noise=1000)
    idx = index.build_index(x, flat_max=1000)
    assert "IVF" in index.index_kind(len(x), flat_max=1000)
    nbrs, sims = index.knn_graph(idx, x, k=10)
    # What clustering needs: a blob point's neighbours come from its own blob.
    in_blob = truth >= 0
    same = (truth[nbrs[in_blob]] == truth[in_blob][:, None]).mean()
    assert same > 0.95


@pytest.mark.parametrize("flat_max", [None, 1000], ids=["flat", "ivf"])
def test_knn_graph_with_copies_searches_each_vector_once_and_gives_the_same_graph(flat_max, monkeypatch):
    x, _ = _blobs(n_blobs=20, per_blob=100, n_noise=500)
    rng = np.random.default_rng(1)
    # Rows 0..n-1 are distinct; then up to 40 copies of some of them, interleaved (a fixed wrapper's scaffold).
    code = np.concatenate([np.arange(len(x)), rng.choice(50, size=1500)])
    code = code[rng.permutation(len(code))]
    rows = x[code]
    idx = index.build_index(rows, flat_max=flat_max)
    assert ("IVF" in index.index_kind(len(rows), flat_max=flat_max)) == (flat_max is not None)
    plain_nbrs, plain_sims = index.knn_graph(idx, rows, k=15, batch=512)
    queries = []  # the query vectors the index is asked for: an exact index's searches, an IVF's list comparisons
    search, probed = idx.search, index.probed_search
    monkeypatch.setattr(idx, "search", lambda q, k: queries.append(len(q)) or search(q, k))
    monkeypatch.setattr(index, "probed_search", lambda ivf, q, *a, **kw: queries.append(len(q)) or probed(ivf, q, *a, **kw))
    nbrs, sims = index.knn_graph(idx, rows, k=15, batch=512, copies=code)
    assert sum(queries) == len(np.unique(code)) < len(rows)
    np.testing.assert_array_equal(nbrs, plain_nbrs)
    np.testing.assert_array_equal(sims, plain_sims)
    assert not (nbrs == np.arange(len(rows))[:, None]).any()


def test_ivf_graph_is_the_exact_top_k_of_the_probed_lists(monkeypatch):
    """With float products, the IVF graph compares every query, as float vectors, with every row of the lists its
    ``nprobe`` nearest centroids hold, and keeps the best ``k``: computed here the slow way for a sample of rows,
    and it finds more of the true neighbours than the 8-bit codes searched query by query do (a true neighbour
    in a probed list is always among the probed lists' exact best). The integer products' graph is compared with
    this one in ``test_int8_lists.py``."""
    monkeypatch.setattr(index, "INTEGER_PRODUCTS", False)
    x = np.random.default_rng(5).normal(size=(6000, 12)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    idx = index.build_index(x, flat_max=1000)
    ivf = faiss.extract_index_ivf(idx)
    ivf.nprobe = 4  # few probes, so that the probed lists matter
    nbrs, sims = index.knn_graph(idx, x, k=10)
    list_of = ivf.quantizer.search(x, 1)[1][:, 0]  # a row's list: its nearest centroid
    _, probes = ivf.quantizer.search(x, ivf.nprobe)
    for r in np.random.default_rng(0).choice(len(x), 50, replace=False):
        held = np.flatnonzero(np.isin(list_of, probes[r]) & (np.arange(len(x)) != r))
        best = held[np.argsort(-(x[held] @ x[r]), kind="stable")[:10]]
        assert set(nbrs[r]) == set(best)
        np.testing.assert_allclose(sims[r], np.sort(x[best] @ x[r])[::-1], rtol=1e-5)
    exact = faiss.IndexFlatIP(x.shape[1])
    exact.add(x)
    truth = exact.search(x, 11)[1][:, 1:]
    codes = idx.search(x, 11)[1][:, 1:]

    def recall(found: np.ndarray) -> float:
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)]))

    assert recall(nbrs) > recall(codes) > 0.5


def test_ivf_graph_in_query_blocks_is_the_whole_graph_and_reports_every_row(monkeypatch):
    """Queries are compared list by list a block at a time (``PROBED_QUERIES``, bounding the heap): blocks give the
    graph of one pass, and the progress told adds up to every row, once."""
    x, _ = _blobs(n_blobs=20, per_blob=150, n_noise=1000)
    idx = index.build_index(x, flat_max=1000)
    whole = index.knn_graph(idx, x, k=10)
    monkeypatch.setattr(index, "PROBED_QUERIES", 700)
    told: list[int] = []
    blocks = index.knn_graph(idx, x, k=10, progress=told.append)
    np.testing.assert_array_equal(blocks[0], whole[0])
    np.testing.assert_array_equal(blocks[1], whole[1])
    assert sum(told) == len(x) and min(told) > 0


def test_ivf_graph_through_a_position_index_is_the_same_graph():
    """A workspace index holds embedding row ids, not positions: the graph through it is the positional one."""
    x, _ = _blobs(n_blobs=20, per_blob=200, n_noise=1000)
    ids = np.random.default_rng(3).permutation(len(x)).astype(np.int64) * 7 + 2
    by_id = index.PositionIndex(index.build_index(x, flat_max=1000, ids=ids), ids)
    by_position = index.build_index(x, flat_max=1000)
    a, b = index.knn_graph(by_id, x, k=10), index.knn_graph(by_position, x, k=10)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_ivf_build_finds_each_rows_lists_once_for_the_index_and_the_graph(monkeypatch):
    """Building an inverted file searches the coarse quantiser once for every row's ``nprobe`` nearest lists: the
    row goes into the first (as FAISS's own ``add`` would put it) and the kNN graph reuses them, so the index holds
    the same lists and codes as one filled by ``add_with_ids`` and the graph is the one of a fresh search."""
    x, _ = _blobs(n_blobs=20, per_blob=200, n_noise=1000)
    ids = np.random.default_rng(4).permutation(len(x)).astype(np.int64) * 3 + 1
    calls: list[int] = []
    nearest = index.nearest_lists
    monkeypatch.setattr(index, "nearest_lists", lambda ivf, v, *a: calls.append(len(v)) or nearest(ivf, v, *a))
    built, probes = index.build_index_and_probes(x, flat_max=1000, ids=ids)
    found = index.PositionIndex(built, ids, probes)
    graph = index.knn_graph(found, x, k=10)
    assert calls == [len(x)]  # one search of the quantiser for both

    plain = faiss.deserialize_index(index.empty_copy(built))  # the same trained quantiser and codec, no rows
    plain.add_with_ids(x, ids)
    a, b = faiss.extract_index_ivf(built).invlists, faiss.extract_index_ivf(plain).invlists
    for lst in range(faiss.extract_index_ivf(built).nlist):
        assert a.list_size(lst) == b.list_size(lst)
        held_a = faiss.rev_swig_ptr(a.get_ids(lst), a.list_size(lst)).copy()
        held_b = faiss.rev_swig_ptr(b.get_ids(lst), b.list_size(lst)).copy()
        np.testing.assert_array_equal(held_a, held_b)
    np.testing.assert_array_equal(built.search(x[:200], 10)[1], plain.search(x[:200], 10)[1])

    fresh = index.knn_graph(index.PositionIndex(plain, ids), x, k=10)  # no lists kept: searched again
    assert sum(calls[1:]) == len(x)  # block by block (a block per thread)
    np.testing.assert_array_equal(graph[0], fresh[0])
    np.testing.assert_array_equal(graph[1], fresh[1])
    # Lists kept for another nprobe or for fewer rows than the index holds are not used.
    assert index.row_probes(found) is probes
    faiss.extract_index_ivf(built).nprobe = 4
    assert index.row_probes(found) is None
    faiss.extract_index_ivf(built).nprobe = 16
    built.add_with_ids(x[:5], ids[:5] + 10**6)
    assert index.row_probes(found) is None
    assert index.build_index_and_probes(x, ids=ids)[1] is None  # an exact index has no lists


def test_repeat_clusters_and_deterministic_relabel():
    labels = np.array([7, 7, -1, 3, -1, 3, 3, 9, 5, 5])
    relabelled = cluster.relabel_by_size(labels)
    # largest first (3 has three points), ties by first point (7 before 5), noise kept
    assert relabelled.tolist() == [1, 1, -1, 0, -1, 0, 0, 3, 2, 2]
    # the same partition under other ids gets the same labels
    renamed = np.array([40, 40, -1, 11, -1, 11, 11, 2, 0, 0])
    assert cluster.relabel_by_size(renamed).tolist() == relabelled.tolist()
    out = cluster.add_repeat_clusters(relabelled, np.array([1, 1, 50, 1, 3, 1, 1, 1, 1, 1]), min_requests=10)
    assert out[2] == 4 and out[4] == -1  # only the noise prompt sent 50 times gets a cluster, the next id
    assert np.array_equal(np.delete(out, 2), np.delete(relabelled, 2))


def test_tiny_input_is_all_noise():
    x = np.eye(3, dtype=np.float32)
    idx = index.build_index(x)
    nbrs, sims = index.knn_graph(idx, x, k=15)
    labels, _ = cluster.cluster_knn_graph(nbrs, sims, cluster.ClusterParams())
    assert (labels == -1).all()


def test_words_split_cjk_characters():
    assert cluster.words("请一步一步地思考 Step 2") == ["请", "一", "步", "一", "步", "地", "思", "考", "step", "2"]


def test_chinese_wrapper_forms_a_literal_family():
    """A Chinese wrapper is one run of characters without spaces; it must still open a template family."""
    tasks = [f"Tom has {i} apples and buys {i + 3} more. How many apples does he have now?" for i in range(12)]
    texts = [f"请一步一步地思考下面的问题，展示完整的推理过程。问题：{t}" for t in tasks]
    texts += [f"Unrelated question number {i} about cooking pasta with tomatoes and basil tonight" for i in range(12)]
    fams = cluster.template_families(texts, edge_words=6, min_size=8)
    assert len(set(fams[:12])) == 1 and fams[0] >= 0
    assert (fams[12:] != fams[0]).all()


def test_task_groups_merge_near_duplicates_only():
    sims = np.array([[0.95, 0.5], [0.95, 0.4], [0.5, 0.3], [0.2, 0.1]], dtype=np.float32)
    nbrs = np.array([[1, 2], [0, 3], [0, 1], [2, 0]])
    groups = cluster.task_groups(nbrs, sims, min_similarity=0.9)
    assert groups[0] == groups[1]
    assert len({groups[0], groups[2], groups[3]}) == 3


def test_tasks_apart_from_wrappers_splits_a_group_by_payload():
    # Five prompts one near-duplicate group by their vectors (a Spanish wrapper outweighs the task in them): the
    # marked ones are one task only with the same payload (sentences outside the wrapper), the unmarked one keeps
    # its id, and so does the group's first payload.
    wrapper = "Razona paso a paso y escribe cada cálculo intermedio. Termina con una línea aparte."
    texts = [f"{wrapper}\nProblema: {q}" for q in ("Tom has 3 apples.", "Ann has 7 pears.", "Tom has 3 apples.",
                                                    "Bo has 2 figs.")] + ["Tom has 3 apples, explain."]
    sents = set(cluster.sentences(wrapper))
    tasks = np.array([4, 4, 4, 4, 4])
    where = np.array([True, True, True, True, False])
    out = cluster.tasks_apart_from_wrappers(tasks, texts, [sents] * 4 + [None], where)
    assert out[0] == out[2] == out[4] == 4  # the first payload (and the unmarked prompt) keep the group's id
    assert len({out[0], out[1], out[3]}) == 3 and min(out[1], out[3]) == 5  # new ids past the largest
    again = cluster.tasks_apart_from_wrappers(tasks, texts, [sents] * 4 + [None], where, first_new=100)
    assert sorted({int(t) for t in again} - {4}) == [100, 101]
    daily = cluster.tasks_apart_from_wrappers(tasks, texts, [sents] * 4 + [None], where, keep_first=False)
    assert daily[4] == 4 and daily[0] == daily[2] and len({4, *daily[:4].tolist()}) == 4  # every payload a new id
    same = cluster.tasks_apart_from_wrappers(tasks, texts, [sents] * 4 + [None], np.zeros(5, dtype=bool))
    assert (same == tasks).all()


def test_scaffolds_survive_typos_in_every_copy_of_the_wrapper():
    # Every request retypes the wrapper: one word in three has a typo inside it (two letters swapped, one dropped
    # or doubled), so no fragment recurs verbatim in 8 prompts; their skeletons do, and every copy gets one
    # scaffold, spelled word by word as most copies spell it: the fragments as written, though few copies are.
    from analyzer.bench.scenario import _noisy

    rng = np.random.default_rng(3)
    fragments = ["Think about the problem step by step before you answer.",
                 "Show every intermediate calculation you make along the way.",
                 "Put the final answer on its own line at the very end."]
    texts = []
    for _ in range(30):
        town = "".join(chr(97 + int(c)) for c in rng.integers(0, 26, size=8))
        wrapper = " ".join(_noisy(f, 0.3, rng) for f in fragments)
        texts.append(f"A train leaves the town of {town} at noon and travels far. {wrapper}")
    assert max(Counter(s for t in texts for s in set(cluster.sentences(t))).values()) < 8  # none recurs verbatim
    out = cluster.scaffolds(texts, min_prompts=8)
    assert all(s is not None for s in out) and len(set(out)) == 1
    assert out[0] == " | ".join(sorted(f.lower().rstrip(".") for f in fragments))
    assert "train" not in out[0]  # the task text is not scaffold
    assert out == _scaffolds_by_definition(texts, 8)
    # Verbatim copies only: with the skeletons found but every sentence unique, nothing else changes.
    organic = [f"Tell me about {''.join(chr(97 + int(c)) for c in rng.integers(0, 26, size=6))} and its history."
               for _ in range(30)]
    assert cluster.scaffolds(organic, min_prompts=8) == [None] * 30


def test_the_consensus_of_retyped_copies_is_the_sentence_as_written():
    copies = {"thnik about the problem step by step": 1, "think aboout the problem setp by step": 1,
              "think about the porblem step by stpe": 1, "tihnk about thhe problem step by step": 1}
    assert cluster.consensus(copies) == "think about the problem step by step"  # no copy is intact
    # without typos: the most used variant, word for word; ties to the first in sort order
    assert cluster.consensus({"translate it into french now please ok": 5,
                              "translate it into finnish now please ok": 2}) == "translate it into french now please ok"
    assert cluster.consensus({"b c d e f g": 1, "a c d e f g": 1}) == "a c d e f g"


def test_a_skeleton_needs_six_words_and_keeps_first_and_last_letters():
    assert cluster.skeleton("think about the problem step by step") == "tk at te pm sp by sp"
    assert cluster.skeleton("thnik aboout the porblem setp by step") == cluster.skeleton(
        "think about the problem step by step")
    assert cluster.skeleton("answer in five words") is None  # too short: many sentences would share one
    assert cluster.skeleton("请一步一步地思考这个问题并给出答案") is None  # CJK: one run, no words to key on


def test_scaffolds_survive_fragment_order_and_ignore_task_text():
    rng = np.random.default_rng(0)
    fragments = ["Think about the problem step by step before you answer.",
                 "Show every intermediate calculation you make along the way.",
                 "Put the final answer on its own line at the very end.",
                 "You are a careful mathematician who explains each move."]
    texts = []
    for _ in range(20):
        parts = [fragments[j] for j in rng.permutation(4)[:3]]
        town = "".join(chr(97 + int(c)) for c in rng.integers(0, 26, size=8))  # task text differs by words
        parts.insert(int(rng.integers(0, 4)), f"A train carrying passengers leaves the town of {town} at noon.")
        texts.append(" ".join(parts))
    texts.append("What is a good recipe for banana bread with walnuts and honey?")
    out = cluster.scaffolds(texts, min_prompts=8)
    assert all(s is not None for s in out[:20]) and out[20] is None
    assert all("passengers" not in s for s in out[:20])  # the task text is not scaffold
    by_text = {s: s for s in out[:20]}
    assert all(s is by_text[s] for s in out[:20])  # one string per distinct scaffold, however many prompts share it
    assert all(set(s.split(" | ")) <= {" ".join(cluster.words(f)) for f in fragments} | {
        f.lower().rstrip(".") for f in fragments} for s in out[:20])
    # A prompt that is nothing but recurring sentences is a repeat, not a filled template.
    assert cluster.scaffolds([fragments[0] + " " + fragments[1]] * 10, min_prompts=8)[0] is None


def _blobs_graph(seed: int, k: int = 10):
    """A kNN graph over blobs of several sizes, exact copies (distance ties), a far outlier group, and rows
    missing neighbours (-1), as the stage's graphs have them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, 16))
    x = np.vstack([c + rng.normal(scale=s, size=(m, 16)) for c, s, m in
                   zip(centres, rng.uniform(0.05, 0.4, 12), rng.integers(5, 80, 12), strict=True)])
    x = np.vstack([x, x[:30], rng.normal(size=(40, 16))]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    nbrs, sims = index.knn_graph(index.build_index(x), x, k=k)
    nbrs[::17, -3:] = -1
    sims[::17, -3:] = -np.inf
    return nbrs, sims


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_symmetric_graph_is_fast_hdbscans_own(seed):
    from fast_hdbscan.precomputed import _symmetrize_min_csr

    nbrs, sims = _blobs_graph(seed)
    ours = cluster.symmetric_distance_graph(nbrs, sims)
    theirs = _symmetrize_min_csr(cluster.knn_to_distance_graph(nbrs, sims))
    theirs.sort_indices()
    assert ours.indices.dtype == ours.indptr.dtype == np.int32 and ours.data.dtype == np.float64
    np.testing.assert_array_equal(ours.indptr, theirs.indptr)
    np.testing.assert_array_equal(ours.indices, theirs.indices)
    np.testing.assert_array_equal(ours.data, theirs.data)  # bit for bit


@pytest.mark.parametrize(("seed", "selection"), [(0, "leaf"), (1, "leaf"), (2, "eom")])
def test_hdbscan_on_the_symmetric_graph_equals_fast_hdbscan(seed, selection):
    from fast_hdbscan.hdbscan import fast_hdbscan

    nbrs, sims = _blobs_graph(seed)
    params = cluster.ClusterParams(k=10, min_cluster_size=8, min_samples=5, selection=selection)
    labels, strengths = cluster.cluster_knn_graph(nbrs, sims, params)
    ref_labels, ref_strengths = fast_hdbscan(cluster.knn_to_distance_graph(nbrs, sims), metric="precomputed",
                                             min_samples=5, min_cluster_size=8, cluster_selection_method=selection)
    np.testing.assert_array_equal(labels, cluster.relabel_by_size(np.asarray(ref_labels, dtype=np.int64)))
    np.testing.assert_array_equal(strengths, ref_strengths)
    assert len(set(labels.tolist()) - {-1}) >= 5


def test_cluster_knn_graph_falls_back_to_fast_hdbscans_entry_point(monkeypatch):
    # Another fast_hdbscan without these internals: its public entry point, the same labels.
    import sys

    nbrs, sims = _blobs_graph(3)
    params = cluster.ClusterParams(k=10, min_cluster_size=8, min_samples=5)
    direct = cluster.cluster_knn_graph(nbrs, sims, params)
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "fast_hdbscan.precomputed", None)  # importing from it raises ImportError
        assert cluster._hdbscan_on_symmetric(nbrs, sims, 5, 8, "leaf") is None
    monkeypatch.setattr(cluster, "_hdbscan_on_symmetric", lambda *args: None)
    fallback = cluster.cluster_knn_graph(nbrs, sims, params)
    np.testing.assert_array_equal(direct[0], fallback[0])
    np.testing.assert_array_equal(direct[1], fallback[1])


def _votes(variants, j):
    """(word, prompts) pairs at word position ``j`` over a skeleton's variants."""
    votes = Counter()
    for v, n in variants.items():
        votes[v.split()[j]] += n
    return list(votes.items())


def _scaffolds_by_definition(texts, min_prompts, owners=None, min_sentence_words=3, min_scaffold_words=8):
    """:func:`cluster.scaffolds` as its docstring defines it, every prompt's sentences held at once."""
    per_prompt = [list(dict.fromkeys(cluster.sentences(t))) for t in texts]
    users = owners if owners is not None else range(len(texts))
    df = Counter(s for s, _ in {(s, u) for sents, u in zip(per_prompt, users, strict=True) for s in sents})
    skel_df = Counter(k for k, _ in {(cluster.skeleton(s), u) for sents, u in zip(per_prompt, users, strict=True)
                                     for s in sents} if k is not None)

    def skel_recurs(s):
        k = cluster.skeleton(s)
        return k is not None and skel_df[k] >= min_prompts

    def stands_in(s):  # a recurring skeleton used by more than this sentence: its variants stand as one
        return skel_recurs(s) and skel_df[cluster.skeleton(s)] > df[s]

    # a recurring skeleton stands for the word-by-word majority of its sentences, each weighed by its prompts
    prompts_using = Counter(s for sents in per_prompt for s in sents if stands_in(s))
    by_skeleton = {}
    for s, n in prompts_using.items():
        by_skeleton.setdefault(cluster.skeleton(s), {})[s] = n
    stand_in = {}
    for k, variants in by_skeleton.items():
        width = len(next(iter(variants)).split())
        stand_in[k] = " ".join(min(_votes(variants, j), key=lambda wn: (-wn[1], wn[0]))[0] for j in range(width))
    out = []
    for sents in per_prompt:
        recurring = [s for s in sents if df[s] >= min_prompts or skel_recurs(s)]
        common = [s for s in recurring if len(cluster.words(s)) >= min_sentence_words]
        own = sum(len(cluster.words(s)) for s in sents if s not in recurring)
        ok = sum(len(cluster.words(s)) for s in common) >= min_scaffold_words and own >= min_sentence_words
        named = sorted({stand_in[cluster.skeleton(s)] if stands_in(s) else s for s in common})
        out.append(" | ".join(named) if ok else None)
    return out


@pytest.mark.parametrize("with_owners", [False, True])
def test_scaffolds_match_their_definition(with_owners, monkeypatch):
    # Sentences counted on hashes in a first pass, prompts split again in a second: the same scaffolds as
    # holding every prompt's sentences, with repeated sentences inside a prompt, empty texts (also last),
    # CJK wrappers and owners repeating their own phrasing.
    rng = np.random.default_rng(11)
    pool = [f"Fragment number {i} says to reason carefully about item {i}." for i in range(12)]
    pool += ["请一步一步地思考这个问题并给出答案。", "用中文回答并说明每一步的理由。"]
    texts, owners = [], []
    for _ in range(400):
        parts = [pool[j] for j in rng.choice(len(pool), size=int(rng.integers(0, 5)), replace=False)]
        if rng.random() < 0.2 and parts:
            parts.append(parts[0])  # a sentence twice in one prompt counts once
        task = " ".join("".join(chr(97 + int(c)) for c in rng.integers(0, 26, size=6)) for _ in range(5))
        parts.insert(int(rng.integers(0, len(parts) + 1)), f"Task {task}.")
        texts.append(" ".join(parts) if rng.random() > 0.05 else "")
        owners.append(f"acct{int(rng.integers(0, 15))}" if rng.random() > 0.1 else None)
    # At the bar: a sentence in exactly 6 prompts (6 owners), one in 5, one in 8 prompts of 3 owners.
    at_bar = [("Always double check the arithmetic before replying to me.", 6, 6),
              ("Never mention that these instructions were given to you.", 5, 5),
              ("Answer as a patient teacher would for a young student.", 8, 3)]
    for sentence, n_prompts, n_owners in at_bar:
        for j in range(n_prompts):
            texts[j * 7 + 3] += " " + sentence + " " + pool[0] + " " + pool[1]
            owners[j * 7 + 3] = f"bar{sentence[:5]}{j % n_owners}"
    texts += ["", ""]
    owners += ["acct1", None]
    kw = {"owners": owners} if with_owners else {}
    expected = _scaffolds_by_definition(texts, 6, **kw)
    assert cluster.scaffolds(texts, min_prompts=6, **kw) == expected
    assert sum(s is not None for s in expected) > 50
    assert cluster.scaffolds([], min_prompts=6) == []
    # In worker processes, texts handed out 37 at a time (both passes split mid-way through the bar's prompts,
    # counts gathered over every task): the same scaffolds.
    monkeypatch.setattr(cluster, "SCAFFOLD_TASK_TEXTS", 37)
    assert cluster.scaffolds(texts, min_prompts=6, workers=2, **kw) == expected
    assert cluster.scaffolds([], min_prompts=6, workers=2) == []


def _saved_index_case(tmp_path, n_old=4000, n_new=400, d=32):
    """Vectors with shuffled embedding row ids (hash order is not row order), the first ``n_old`` indexed."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n_old + n_new, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = (np.int64(1) << 32) + rng.permutation(n_old + n_new).astype(np.int64)
    tags = index.hash_tags(np.array([f"h{i}" for i in ids], dtype=object))
    path = str(tmp_path / "k.faiss")
    old = np.sort(rng.choice(n_old + n_new, n_old, replace=False))
    built, rows, how, probes = index.update_index(path, x[old], ids[old], tags[old], flat_max=1000)
    assert how == "built" and rows.trained_on == n_old and probes.shape == (n_old, 16)
    index.save_workspace_index(path, built, rows)
    return x, ids, tags, path


def test_saved_index_is_extended_and_searched_by_position(tmp_path):
    """A daily run adds the new vectors to the saved inverted file (no training); searches answer with positions
    in the run's rows, and each vector finds itself first."""
    x, ids, tags, path = _saved_index_case(tmp_path)
    extended, rows, how, probes = index.update_index(path, x, ids, tags, flat_max=1000)
    assert how == "extended" and extended.ntotal == len(x) and rows.trained_on == 4000 and probes is None
    found = index.PositionIndex(extended, ids)
    _, top = found.search(x, 1)
    assert (top[:, 0] == np.arange(len(x))).mean() > 0.99
    nbrs, _ = index.knn_graph(found, x, k=5, ids=np.arange(10))
    assert ((nbrs >= 0) & (nbrs < len(x))).all() and not (nbrs == np.arange(10)[:, None]).any()


def test_saved_index_is_trained_again_when_it_cannot_serve(tmp_path):
    """Grown past retrain_growth, a vector's id holding another prompt (a re-embedded shard), a missing rows
    file, or --recluster: a fresh index, trained on everything."""
    x, ids, tags, path = _saved_index_case(tmp_path)
    assert index.update_index(path, x, ids, tags, flat_max=1000, retrain_growth=1.05)[2] == "built"
    other = tags.copy()
    other[:] += 1
    assert index.update_index(path, x, ids, other, flat_max=1000)[2] == "built"
    assert index.update_index(path, x, ids, tags, flat_max=1000, rebuild=True)[2] == "built"
    import os

    os.remove(index.rows_path(path))
    again, rows, how, _ = index.update_index(path, x, ids, tags, flat_max=1000)
    assert how == "built" and rows.trained_on == len(x) and again.ntotal == len(x)


#: Texts at the edges of the scaffold scan's block reading: every kind of whitespace and boundary, digit runs, text
#: around the head/tail cut, empty texts, NUL characters (one a sentence of its own: that block is read text by
#: text), other scripts, a final sigma, a lone surrogate, an emoji.
_SENTENCE_EDGE_TEXTS = [
    "", "   ", "Hello world. Hello world!  Hello   world?", "a\tb\x0bc\x0cd\re\x1cf\x1dg\x1eh\x1fi. j",
    "Line one\nline two\r\nline three;four:five", "Order 123 and 4567 items, 0 or 00 or 1.5 kg", "x" * 10 + ". " * 3,
    " . . .  . ", "Ends without a boundary  ", "snake_case words and_more. Mixed CASE Words",
    "NUL\x00inside a sentence. And \x00 between spaces.", "Keep. " * 700 + "Cut here " * 400 + "tail end. done",
    "中文句子。另一个句子！问号？分号；冒号：结束", "Ünïcödé wörds. ΣΑΣ ΟΔΟΣ. ٣٤٥ digits and ４２ wide",
    "no\u3000break\xa0space\x85next\u2028line", "emoji 🙂 text. lone \ud800 surrogate. Done",
    "İstanbul and i̇ dots.", "Tabs\t\tand  spaces\t \t mixed. \n\n\n. .",
]


@pytest.mark.parametrize("block_chars", [1 << 21, 64])
def test_block_sentences_are_each_texts_distinct_sentences(block_chars, monkeypatch):
    # Read together (ASCII texts as one string, others one by one), in blocks of any size: what reading each text
    # gives, sentence for sentence; a block where a text holds the separator as a sentence falls back to that.
    monkeypatch.setattr(cluster, "SCAFFOLD_BLOCK_CHARS", block_chars)
    texts = _SENTENCE_EDGE_TEXTS + ["Lone NUL.\x00.After it", "plain ascii. text"] + _SENTENCE_EDGE_TEXTS[::-1]
    for group in (texts, [t for t in texts if t.isascii()], texts[-3:], ["Lone NUL.\x00.After it"], []):
        expected = [list(dict.fromkeys(cluster.sentences(t))) for t in group]
        lengths, hashes, skeletons = cluster._sentence_hashes((group, 3000, 2000))
        flat = []
        for part in cluster._char_blocks(group, 5001):
            found, n = cluster._block_sentences(group[part], 3000, 2000)
            flat += found
            assert n.tolist() == [len(e) for e in expected[part]]
        assert flat == [s for e in expected for s in e]
        assert lengths.tolist() == [len(e) for e in expected]
        np.testing.assert_array_equal(hashes, cluster._hashes64(flat))
        np.testing.assert_array_equal(skeletons, [cluster._hashes64(["\x00" + k])[0] if (k := cluster.skeleton(s))
                                                  else 0 for s in flat])


def test_skeletons_and_word_counts_of_many_sentences_are_those_of_each():
    sentences = ["a b c d e f", "a b c d e", "one two three four five six seven", "x", "naïve plan to finish each task now",
                 "nalve plan to finish each task now", "snake_case and kebab-case and dots.inside them ok",
                 "中文 句子 abc 一 二 三 四", "0 0 0 0 0 0", "__ _ a_b c d e", "emoji 🙂 a b c d e f"]
    hashes = cluster._skeleton_hashes(sentences)
    for s, h in zip(sentences, hashes, strict=True):
        k = cluster.skeleton(s)
        assert h == (cluster._hashes64(["\x00" + k])[0] if k else 0)
    assert hashes[4] == hashes[5] != 0  # a typo inside a word, in another script or not: one skeleton
    assert cluster._word_counts(sentences).tolist() == [len(cluster._WORD.findall(s)) for s in sentences]
    assert cluster._word_counts([]).tolist() == [] and cluster._skeleton_hashes([]).tolist() == []


def test_words_of_ascii_text_are_the_patterns_words():
    for text in ["A_b c-d", "\x00\x01 x\ty", "", "   ", "__", "a1b2 3c", "Don't stop-me now!", *_SENTENCE_EDGE_TEXTS]:
        assert cluster.words(text) == cluster._WORD.findall(text.lower())
