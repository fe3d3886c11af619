"""Incremental assignment: new prompts join the units of an existing clustering instead of re-clustering.

A daily run into one workspace adds a day of prompts to weeks of history. Re-clustering everything costs in
proportion to the history; assigning costs in proportion to the day. Each new prompt is given, by the rules
the full cluster stage uses (:mod:`analyzer.cluster`, ``pipeline.cluster``):

* a **topic cluster**: the label held by most of its nearest neighbours among already-clustered prompts
  (HDBSCAN membership), and the *attributed* unit of :func:`analyzer.cluster.attach_noise`: the label of its
  nearest clustered neighbour at ``attach_similarity`` or closer;
* a **literal template family** when its opening (else closing) words are a known family's key
  (:func:`family_keys`, :func:`match_families`);
* a **scaffold family** when it carries enough of a known family's recurring sentences (:func:`match_scaffolds`);
* a **task id**: the task of an already-seen prompt at ``task_similarity`` or closer, else a new task shared by
  the new prompts linked at that similarity (:func:`assign_tasks`).

Prompts that match nothing stay noise; the pipeline then looks for new groups among recent unassigned
prompts (template families, scaffolds, HDBSCAN on that small set) so a campaign that starts mid-log is found.
When the new traffic no longer fits the clustering (:class:`IncrementalParams`, :func:`drift_trigger`) the
pipeline re-clusters everything instead. Everything here is pure: arrays and lists in, arrays out.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from analyzer import cluster as cluster_mod


@dataclass(frozen=True)
class IncrementalParams:
    """When a run assigns new prompts to the existing clustering, and when it re-clusters instead.

    Parameters
    ----------
    max_growth : float
        Re-cluster when the prompts added since the last full clustering exceed this share of the prompts it
        clustered (2.0: the history has tripled). Full runs then happen at geometric points (with even daily
        volume: days 3, 9, 27, ...), so their total cost stays proportional to the final history (1.5 full
        runs of it), and assignment never leans on a clustering of a much smaller past.
    max_unassigned_increase : float
        Re-cluster when the share of the run's requests that no known unit takes (no topic cluster, family or
        system family; measured before new groups are looked for) exceeds the share of all requests left
        without a unit at the last full clustering by more than this: the day's traffic does not fit the known
        units (a day of entirely new content). On the quick replay (14 days) ordinary days sit 0.15-0.27 above
        that share (a day's prompts are mostly new, and new prompts are noise more often than old ones); a day
        of unrelated text sits 0.5 or more above it.
    discovery_days : float
        New groups are looked for among prompts first seen within this many days before the run's newest
        request that belong to no template or scaffold family: a campaign that starts on day ``d`` has its
        first days' prompts pooled until they are numerous enough to form a family or a cluster.
    family_sample : int
        Members read per known template or scaffold family to recover its key or its recurring sentences.
    majority : float
        A new prompt is a member of a topic cluster (not only attributed to it) when more than this share of
        its neighbours, each at ``attach_similarity`` or closer, are in that cluster.
    index_retrain_growth : float
        The saved inverted-file index is extended with each run's new vectors until the prompts number this many
        times those its quantiser was trained on (4.0: twice as many inverted lists are then due, ``4 sqrt(n)``);
        then, and with ``--recluster``, it is trained again. Training on every run cost 2-3 s a day at 100k
        prompts and grew with the history.
    unjudged_family_share : float
        A new prompt that joins a template or scaffold family of which at least this share of the members known
        before the run have no judged intent (a wrapper in a script or language the models do not read) is not
        judged either, as the family's first members were not.
    """

    max_growth: float = 2.0
    max_unassigned_increase: float = 0.4
    discovery_days: float = 3.0
    family_sample: int = 100
    majority: float = 0.5
    index_retrain_growth: float = 4.0
    unjudged_family_share: float = 0.5


# --- topic clusters ---------------------------------------------------------------------------------------------
def nearest_label(nb_labels: np.ndarray, nb_sims: np.ndarray, min_similarity: float) -> np.ndarray:
    """Per row, the label of the first (most similar) labelled neighbour at ``min_similarity`` or closer, else -1.

    The rule of :func:`analyzer.cluster.attach_noise`, for points outside the clustered graph: ``nb_labels``
    holds the neighbours' labels (``-1`` for unlabelled or missing neighbours), in order of similarity.
    """
    if nb_labels.shape[0] == 0 or nb_labels.shape[1] == 0:
        return np.full(nb_labels.shape[0], -1, dtype=np.int64)
    ok = (nb_labels >= 0) & (nb_sims >= min_similarity)
    has = ok.any(axis=1)
    first = ok.argmax(axis=1)
    return np.where(has, nb_labels[np.arange(len(nb_labels)), first], -1).astype(np.int64)


def majority_label(nb_labels: np.ndarray, nb_sims: np.ndarray, min_similarity: float, share: float) -> np.ndarray:
    """Per row, the label held by more than ``share`` of all ``k`` neighbours (each at ``min_similarity`` or
    closer), else -1: a point inside a cluster, as HDBSCAN would have made it a member."""
    n, k = nb_labels.shape
    out = np.full(n, -1, dtype=np.int64)
    if n == 0 or k == 0:
        return out
    ok = (nb_labels >= 0) & (nb_sims >= min_similarity)
    for i in np.flatnonzero(ok.any(axis=1)):
        labels, counts = np.unique(nb_labels[i, ok[i]], return_counts=True)
        j = int(np.argmax(counts))
        if counts[j] > share * k:
            out[i] = int(labels[j])
    return out


# --- literal template families ----------------------------------------------------------------------------------
def family_keys(texts: Sequence[str], families: Sequence[int], edge_words: int
                ) -> tuple[dict[str, int], dict[str, int]]:
    """The key of each known template family, from (a sample of) its members: ``(opening keys, closing keys)``.

    A family was formed on its members' shared opening or, failing that, their shared closing
    (:func:`analyzer.cluster.template_families`); whichever of the two the most members share is its key.
    """
    heads: dict[int, Counter] = {}
    tails: dict[int, Counter] = {}
    for text, fam in zip(texts, families, strict=True):
        head, tail = cluster_mod._edge_keys(text, edge_words)
        if head is not None:
            heads.setdefault(int(fam), Counter())[head] += 1
        if tail is not None:
            tails.setdefault(int(fam), Counter())[tail] += 1
    head_map: dict[str, int] = {}
    tail_map: dict[str, int] = {}
    for fam in set(heads) | set(tails):
        h = heads.get(fam, Counter()).most_common(1)
        t = tails.get(fam, Counter()).most_common(1)
        if h and (not t or h[0][1] >= t[0][1]):
            head_map.setdefault(h[0][0], fam)
        elif t:
            tail_map.setdefault(t[0][0], fam)
    return head_map, tail_map


def match_families(texts: Sequence[str], head_map: Mapping[str, int], tail_map: Mapping[str, int],
                   edge_words: int) -> np.ndarray:
    """Per text, the known family whose opening (else closing) key it carries, else -1."""
    out = np.full(len(texts), -1, dtype=np.int64)
    if not head_map and not tail_map:
        return out
    for i, text in enumerate(texts):
        head, tail = cluster_mod._edge_keys(text, edge_words)
        if head is not None and head in head_map:
            out[i] = head_map[head]
        elif tail is not None and tail in tail_map:
            out[i] = tail_map[tail]
    return out


# --- scaffold families ------------------------------------------------------------------------------------------
def scaffold_sentences(texts: Sequence[str], families: Sequence[int], min_prompts: int,
                       min_sentence_words: int = 3) -> dict[int, set[str]]:
    """The recurring sentences of each known scaffold family, from (a sample of) its members: sentences of
    ``min_sentence_words`` words or more found in at least ``min_prompts`` of the family's members."""
    counts: dict[int, Counter] = {}
    for text, fam in zip(texts, families, strict=True):
        counts.setdefault(int(fam), Counter()).update(set(cluster_mod._sentences(text, 3000, 2000)))
    return {fam: {s for s, n in c.items() if n >= min_prompts and len(cluster_mod.words(s)) >= min_sentence_words}
            for fam, c in counts.items()}


@dataclass
class SentenceCounts:
    """A scaffold family's sampled members and, per distinct sentence among them (by :func:`sentence_key`),
    how many of them hold it; the text of the sentences held by ``min_prompts`` or more. What
    :func:`scaffold_sentences` counts, kept so that a run whose sample took a few new members splits those
    (and the ones they displaced) rather than every member again (:func:`update_sentence_counts`)."""

    members: list[str]
    counts: dict[int, int] = field(default_factory=dict)
    strings: dict[int, str] = field(default_factory=dict)


def sentence_key(sentence: str) -> int:
    """A 64-bit key of a normalised sentence (BLAKE2b)."""
    return int.from_bytes(hashlib.blake2b(sentence.encode("utf-8"), digest_size=8).digest(), "big")


def update_sentence_counts(old: SentenceCounts | None, members: Sequence[str], texts: Mapping[str, str],
                           min_prompts: int, min_sentence_words: int = 3) -> SentenceCounts:
    """The counts of ``members`` from those of an earlier sample ``old`` (``None``: none): the sentences of the
    members added are counted in, those of the members gone counted out. ``texts`` holds the analysis texts of
    both (by prompt hash). Sentences of fewer than ``min_sentence_words`` words are not counted (they are never
    recurring sentences), which keeps the counts small. Gives what counting every member gives
    (:func:`recurring_sentences`)."""
    before = set(old.members) if old is not None else set()
    counts = dict(old.counts) if old is not None else {}
    strings = dict(old.strings) if old is not None else {}
    now = set(members)

    def sentences(h: str) -> set[str]:
        return {s for s in cluster_mod._sentences(texts[h], 3000, 2000) if len(cluster_mod.words(s)) >= min_sentence_words}

    for h in sorted(before - now):
        for s in sentences(h):
            k = sentence_key(s)
            n = counts.get(k, 0) - 1
            if n > 0:
                counts[k] = n
                if n < min_prompts:
                    strings.pop(k, None)
            else:
                counts.pop(k, None)
                strings.pop(k, None)
    for h in sorted(now - before):
        for s in sentences(h):
            k = sentence_key(s)
            counts[k] = counts.get(k, 0) + 1
            if counts[k] >= min_prompts:
                strings[k] = s
    return SentenceCounts(list(members), counts, strings)


def recurring_sentences(counts: SentenceCounts, min_prompts: int, min_sentence_words: int = 3) -> set[str]:
    """The sentences of ``min_sentence_words`` words or more held by ``min_prompts`` or more of the members (the
    rule of :func:`scaffold_sentences`)."""
    return {s for k, s in counts.strings.items()
            if counts.counts.get(k, 0) >= min_prompts and len(cluster_mod.words(s)) >= min_sentence_words}


def match_scaffolds(texts: Sequence[str], family_sentences: Mapping[int, set[str]], min_scaffold_words: int = 8,
                    min_sentence_words: int = 3) -> np.ndarray:
    """Per text, the known scaffold family whose recurring sentences it carries most of, else -1 (a sentence
    counts verbatim or, failing that, by its :func:`analyzer.cluster.skeleton`: a retyped copy).

    The rule of :func:`analyzer.cluster.scaffolds`: at least ``min_scaffold_words`` words of the family's
    recurring sentences, and at least ``min_sentence_words`` words of text of its own (a filled template, not a
    repeat). A tie goes to the family of the text's earlier sentence, then to the lower family id, whatever the
    order of ``family_sentences``.
    """
    out = np.full(len(texts), -1, dtype=np.int64)
    if not family_sentences:
        return out
    owner: dict[str, list[int]] = {}
    by_skeleton: dict[str, dict[int, None]] = {}  # a retyped copy of a family's sentence: the same skeleton
    # by family id: ties between families go the same way whatever order the sentences were gathered in
    for fam, sents in sorted(family_sentences.items()):
        for s in sents:
            owner.setdefault(s, []).append(fam)
            key = cluster_mod.skeleton(s)
            if key is not None:
                by_skeleton.setdefault(key, {})[fam] = None
    for i, text in enumerate(texts):
        sents = list(dict.fromkeys(cluster_mod._sentences(text, 3000, 2000)))
        common: Counter = Counter()
        own = 0
        for s in sents:
            n = len(cluster_mod.words(s))
            fams = owner.get(s)
            if not fams:
                key = cluster_mod.skeleton(s)
                fams = list(by_skeleton.get(key, ())) if key is not None else None
            if fams:
                for f in fams:
                    common[f] += n
            else:
                own += n
        if common and own >= min_sentence_words:
            fam, n_common = common.most_common(1)[0]
            if n_common >= min_scaffold_words:
                out[i] = fam
    return out


# --- tasks ------------------------------------------------------------------------------------------------------
def assign_tasks(nb_new: np.ndarray, nb_old_task: np.ndarray, sims: np.ndarray, min_similarity: float,
                 next_id: int) -> np.ndarray:
    """Task ids of new prompts (the rule of :func:`analyzer.cluster.task_groups`, for new prompts only).

    Row ``i`` holds new prompt ``i``'s neighbours in order: ``nb_new`` the neighbour's position among the new
    prompts (-1 when it is not new), ``nb_old_task`` its task when it is an already-seen prompt (-1 otherwise),
    ``sims`` the similarity on the reference scale. New prompts linked at ``min_similarity`` or closer form
    components; a component linked to a seen prompt takes that prompt's task (its most similar such link), any
    other gets a new id from ``next_id`` on.
    """
    n_new = nb_new.shape[0]
    if n_new == 0:
        return np.zeros(0, dtype=np.int64)
    close = sims >= min_similarity
    to_new = close & (nb_new >= 0)
    rows = np.repeat(np.arange(n_new), nb_new.shape[1])[to_new.ravel()]
    graph = csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, nb_new[to_new])), shape=(n_new, n_new))
    _, comp = connected_components(graph, directed=False)
    to_old = close & (nb_old_task >= 0)
    best_sim = np.full(comp.max() + 1, -np.inf)
    task_of_comp = np.full(comp.max() + 1, -1, dtype=np.int64)
    for i in np.flatnonzero(to_old.any(axis=1)):
        j = int(to_old[i].argmax())
        c = comp[i]
        if sims[i, j] > best_sim[c]:
            best_sim[c] = sims[i, j]
            task_of_comp[c] = int(nb_old_task[i, j])
    fresh = np.flatnonzero(task_of_comp < 0)
    task_of_comp[fresh] = next_id + np.arange(len(fresh))
    return task_of_comp[comp]


# --- when to re-cluster -----------------------------------------------------------------------------------------
def drift_trigger(params: IncrementalParams, n_clustered_at_full: int, n_prompts_now: int,
                  unassigned_share: float | None = None, unassigned_share_at_full: float | None = None
                  ) -> str | None:
    """The name of the measure that calls for a full re-cluster, or ``None`` (see :class:`IncrementalParams`).

    ``"growth"``: prompts added since the last full clustering exceed ``max_growth`` of those it clustered;
    ``"unassigned"``: the run's share of requests without a unit exceeds the share at the last full clustering
    by more than ``max_unassigned_increase`` (checked once assignment has run, when the shares are given).
    """
    if n_prompts_now - n_clustered_at_full > params.max_growth * max(1, n_clustered_at_full):
        return "growth"
    if unassigned_share is not None and unassigned_share_at_full is not None and (
            unassigned_share > unassigned_share_at_full + params.max_unassigned_increase):
        return "unassigned"
    return None
