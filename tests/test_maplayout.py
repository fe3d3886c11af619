"""The map layout: which prompts are laid out, that the layout separates clusters, and placement."""

import numpy as np

from analyzer import maplayout
from analyzer.maplayout import MapParams, place_points, select_points, umap_layout


def _blobs(n_blobs: int, per_blob: int, dim: int = 32, spread: float = 0.15, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_blobs, dim))
    labels = np.repeat(np.arange(n_blobs), per_blob)
    x = centres[labels] + spread * rng.normal(size=(len(labels), dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def test_every_campaign_cluster_has_a_representative_even_beyond_the_cap():
    rng = np.random.default_rng(0)
    units = np.concatenate([np.repeat(np.arange(400), 30), np.full(5000, -1)])  # 400 clusters of 30, noise
    campaign = np.arange(0, 400, 2)  # 200 campaign clusters
    params = MapParams(max_layout=150, min_per_cluster=5)
    reps, placed = select_points(units, campaign, total=1000, params=params, rng=rng)
    assert set(campaign) <= set(units[reps])  # 200 campaign clusters although only 150 points fit
    assert len(np.intersect1d(reps, placed)) == 0
    assert len(reps) + len(placed) <= max(1000, len(campaign))


def test_selection_respects_caps_and_keeps_cluster_footprints():
    rng = np.random.default_rng(1)
    sizes = np.linspace(3, 600, 50).astype(int)
    units = np.concatenate([np.repeat(np.arange(50), sizes), np.full(20_000, -1)])
    campaign = np.array([3, 7])
    params = MapParams(max_layout=900, min_per_cluster=5, noise_share=0.2)
    reps, placed = select_points(units, campaign, total=4000, params=params, rng=rng)
    assert len(reps) <= 900 and len(reps) + len(placed) == 4000
    counts = np.bincount(units[reps][units[reps] >= 0], minlength=50)
    assert (counts >= np.minimum(sizes, 5)).all()  # every cluster gets its floor
    assert counts[-5:].mean() > 3 * counts[:5].mean()  # the rest in proportion to size
    assert (units[reps] < 0).sum() >= 0.2 * 900 - 1  # the noise share is laid out
    shown = np.concatenate([reps, placed])
    assert abs((units[shown] >= 0).mean() - params.clustered_share) < 0.01  # a plain 70/30 sample otherwise
    again = select_points(units, campaign, total=4000, params=params, rng=np.random.default_rng(1))
    assert all(np.array_equal(p, q) for p, q in zip((reps, placed), again, strict=True))


def test_layout_keeps_clusters_apart_and_placed_points_land_on_their_cluster():
    x, labels = _blobs(6, 80)
    params = MapParams(n_epochs=100)
    xy = umap_layout(x, params, seed=0)
    assert xy.shape == (len(x), 2) and np.isfinite(xy).all()
    centroids = np.array([xy[labels == c].mean(axis=0) for c in range(6)])
    within = np.mean([np.linalg.norm(xy[labels == c] - centroids[c], axis=1).mean() for c in range(6)])
    between = np.linalg.norm(centroids[:, None] - centroids[None], axis=2)[np.triu_indices(6, 1)].min()
    assert between > 2 * within
    new, new_labels = _blobs(6, 10, seed=0)  # same centres, new points
    pos = place_points(new, x, xy, params, np.random.default_rng(0))
    nearest = np.linalg.norm(pos[:, None] - centroids[None], axis=2).argmin(axis=1)
    assert (nearest == new_labels).mean() > 0.95
    # Told their clusters, points are placed among their own cluster's representatives, whatever they resemble.
    wrong = (new_labels + 1) % 6
    pos = place_points(new, x, xy, params, np.random.default_rng(0), units=wrong, rep_units=labels)
    nearest = np.linalg.norm(pos[:, None] - centroids[None], axis=2).argmin(axis=1)
    assert (nearest == wrong).all()


def test_a_kept_map_gets_every_new_campaign_cluster_and_fills_up_to_its_size():
    """Between layouts: each campaign cluster without a shown prompt gets min_per_cluster of them (a small one all
    it has), shown prompts are not added again, and other prompts fill the map only up to its size."""
    rng = np.random.default_rng(0)
    units = np.concatenate([np.full(50, 1), np.full(40, 2), np.full(3, 3), np.full(200, -1)])
    shown = np.arange(0, 50, 2)  # half of cluster 1; clusters 2 and 3 (new campaign clusters) have none
    params = MapParams(min_per_cluster=5)
    add = maplayout.extend_points(units, np.array([1, 2, 3]), shown, 60, params, rng)
    assert not np.isin(add, shown).any() and (np.diff(add) > 0).all()
    assert (units[add] == 2).sum() >= 5 and (units[add] == 3).sum() == 3
    assert len(shown) + len(add) == 60
    full = maplayout.extend_points(units, np.array([1, 2, 3]), shown, len(shown), params, rng)
    assert sorted(set(units[full])) == [2, 3] and len(full) == 8  # a full map: only the campaigns' points
