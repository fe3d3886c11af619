"""Parameters of the app's 2-D map (:mod:`analyzer.maplayout`), apart from the layout code so that reading the
configuration does not import numba."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MapParams:
    """Parameters of the map layout.

    Parameters
    ----------
    min_per_cluster : int
        Representatives every cluster gets before the rest of the room is shared out in proportion to cluster
        size (a smaller cluster gives all its prompts). Clusters that belong to a campaign come first and always
        get at least one, however many there are.
    max_layout : int
        Most points laid out by UMAP (representatives plus the noise sample); the cost of the layout grows
        with it. Other shown points are placed, not laid out.
    noise_share : float
        Share of ``max_layout`` kept for noise prompts, so that the background is visible.
    clustered_share : float
        Share of all shown points that are clustered prompts when there are enough noise prompts to fill the
        rest (as the map always did: 70 % clustered, 30 % background).
    n_neighbors : int
        Neighbours per point in the layout's kNN graph (UMAP's ``n_neighbors``).
    n_epochs : int
        SGD epochs of the layout (fixed, whatever the number of points).
    min_dist : float
        UMAP's ``min_dist``: how tightly points may pack in the layout.
    negative_samples : int
        Negative samples per positive edge sample (UMAP's ``negative_sample_rate``).
    place_neighbors : int
        Representatives a placed point is averaged between.
    jitter : float
        Standard deviation of the noise added to placed points, as a share of the layout's median
        nearest-neighbour distance (keeps points with a single close representative from stacking).
    relayout_growth : float
        A run lays the map out afresh (UMAP) when the embedded prompts have grown by more than this share since
        the last layout (1.0: doubled; with even daily volume, layouts on days 1, 2, 4, 8, 16, ...), when there is
        no map, or with ``--recluster``. Otherwise it keeps every shown point where it is and places beside them
        a point for each campaign cluster that has none, and new prompts while the map is below its size.
    """

    min_per_cluster: int = 5
    max_layout: int = 3000
    noise_share: float = 0.15
    clustered_share: float = 0.7
    n_neighbors: int = 15
    n_epochs: int = 200
    min_dist: float = 0.1
    negative_samples: int = 5
    place_neighbors: int = 5
    jitter: float = 0.25
    relayout_growth: float = 1.0
