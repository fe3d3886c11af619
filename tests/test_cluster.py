import numpy as np

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


def test_repeat_clusters_and_deterministic_relabel():
    labels = np.array([1, 1, -1, 0, -1, 0, 0])
    relabelled = cluster.relabel_by_size(labels)
    assert relabelled.tolist() == [1, 1, -1, 0, -1, 0, 0]
    out = cluster.add_repeat_clusters(relabelled, np.array([1, 1, 50, 1, 3, 1, 1]), min_requests=10)
    assert out[2] == 2 and out[4] == -1


def test_tiny_input_is_all_noise():
    x = np.eye(3, dtype=np.float32)
    idx = index.build_index(x)
    nbrs, sims = index.knn_graph(idx, x, k=15)
    labels, _ = cluster.cluster_knn_graph(nbrs, sims, cluster.ClusterParams())
    assert (labels == -1).all()
