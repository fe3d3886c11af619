"""Campaign stage: group clusters by the accounts that work on them, score each group and explain it.

1. **Account-cluster graph.** Clusters (template families and topic clusters) worked on by the same pool
   of accounts are linked (see :func:`group_clusters`): one operator's several topics and template variants,
   driven by one account pool, become one group. Organic topics share few accounts, so they stay apart.
2. **Members.** An account belongs to a group when at least ``member_share`` of its traffic falls in the
   group's clusters, or when it sends requests there and holds an identifier (subnet, user agent, key,
   payment id) that two or more of those members hold, that is used mostly by accounts working in the group
   and shared by two or more customers (hydra accounts that mix in ordinary traffic; a fresh pool's accounts
   with a single request so far).
3. **Operators.** Members linked by shared network, client or payment identifiers, or by common hours and
   common work, form communities; two or more communities of ``min_operator_accounts`` are separate campaigns (two operators on
   one task kind, a relay beside an operator), each with its own evidence.
4. **Score** in [0, 1]::

       score = spread_gate * diversity_gate * value_gate * (1 - reruns) * sum(w_i * s_i) / sum(w_i)

   over the behavioural signals ``s_i`` that apply (see :mod:`analyzer.signals`; ``sync`` without enough
   activity to measure counts as 0, see :data:`NO_EVIDENCE_IS_ZERO`; ``pivot`` counts only when above 0, see
   :data:`ONLY_WHEN_SHOWN`, and so do ``sync`` and ``regularity`` for a group tied by operator evidence, see
   :data:`CHOSEN_TIMING`; ``samples``, the identical capability prompts its customers re-send to each other,
   only where it raises the mean, see :data:`ONLY_RAISING`). ``spread_gate`` is the spread signal
   over *customers* (seats of one organisation count once, see :func:`principals`: a product integration or
   a batch job is not a campaign); ``diversity_gate`` the diversity signal over distinct *tasks* (one prompt
   pasted by many users, or a dozen problems asked by a classroom in a hundred wordings, is not a harvest);
   ``value_gate`` the training value over ``value_full`` (a coordinated workload with no capability to
   distil is not distillation; not judged, and so open, for text the embedding model cannot read); ``reruns``
   the share of requests re-running a fixed set of tasks first sent in one burst (an eval harness re-running its
   test set per checkpoint harvests nothing new; :func:`analyzer.signals.reruns`). A campaign is *flagged* when
   ``score >= flag_threshold``.
5. **Evidence.** Each signal that contributes is turned into a sentence with the numbers behind it, and what
   explains or gates the score is said too (organisations, near-duplicate tasks, operators, low or unjudged
   training value); the label says what the campaign is after ("chain-of-thought elicitation on ...: 38
   accounts"). Each member account gets its own evidence (share of traffic, shared identifiers, requests).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from analyzer import signals as sig

#: Identifiers whose sharing across *different customers* is evidence of one operator. ``org_id`` is not
#: among them: accounts of one organisation are one customer's seats, an explanation of their coordination
#: (see :func:`principals`), and an identifier shared only inside one organisation (its egress block, its
#: system prompt, its payment method) is explained the same way. A shared system prompt is content, not
#: infrastructure: it is a unit of its own (see ``pipeline.system_families``) and judged as such.
INFRA_FIELDS = ("subnet", "user_agent", "api_key_id", "payment_id")

#: Identifiers that link accounts into one infrastructure community for grouping units
#: (:func:`infra_communities`). Not the user agent: a popular client library's string is shared by
#: thousands of unrelated customers.
INFRA_LINK_FIELDS = ("subnet", "api_key_id", "payment_id")

#: Identifiers that tell operators apart: where requests come from and who pays. A system prompt is content:
#: two operators can paste the same public persona. A user agent links only where nearly all its holders are
#: the group's (``ScoringConfig.operator_agent_concentration``).
OPERATOR_FIELDS = ("subnet", "user_agent", "api_key_id", "payment_id")

#: The request columns grouping and scoring read once the workspace-wide facts (identifier usage, principals,
#: model releases) are taken (:func:`_context`): every slice of the requests (a unit's, a group's, an
#: operator's) copies these only, not the identifiers (memory: at 4M requests a slice of the largest group with
#: every column held 1 GB more).
GROUPING_COLUMNS = ("account_id", "acode", "ts", "t", "prompt_hash", "cluster_id", "topic_cluster", "task_id",
                    "intent", "intent_similarity", "model")
#: The columns a group's members and operators are chosen on (:func:`_members`, :func:`_operators`).
GROUP_COLUMNS = ("account_id", "t", "cluster_id")

#: Weights of the behavioural signals in the weighted mean. ``training_value`` is not among them: it is a
#: gate (see :func:`score_signals`), because a coordinated workload with no training value is not a
#: distillation campaign however coordinated it is.
DEFAULT_WEIGHTS: dict[str, float] = {
    "focus": 3.0,
    "evenness": 1.0,
    "templating": 2.0,
    "sync": 1.5,
    "regularity": 0.5,
    "infrastructure": 1.5,
    "samples": 1.5,
    "pivot": 1.0,
}


@dataclass
class ScoringConfig:
    """Parameters of grouping and scoring: section ``[scoring]`` of ``analyzer.toml`` (``[scoring.weights]``
    holds :data:`DEFAULT_WEIGHTS`). Each field's ``#:`` comment says what it means; ``analyzer config show``
    prints them.

    ``flag_threshold`` was calibrated on the benchmark's benign traffic (organic accounts and the four
    legitimate look-alikes): see the README's calibration table.
    """

    #: An account is *engaged* in a unit when at least this share of its own traffic falls there (and
    #: ``engaged_min_requests``); units sharing engaged accounts are linked into one group.
    engaged_share: float = 0.2
    #: Requests an account needs in a unit to be engaged in it.
    engaged_min_requests: int = 2
    #: Two units are linked when their engaged accounts overlap by at least this share of the smaller set
    #: (and ``link_min_shared`` accounts).
    link_overlap: float = 0.5
    #: Accounts two units must share to be linked (engaged overlap or Jaccard rule).
    link_min_shared: int = 3
    #: Two units are linked when their non-generalist account sets have at least this Jaccard similarity: one
    #: pool spreading its load over many template variants touches each lightly, but the pool is the same.
    link_jaccard: float = 0.3
    #: Accounts in more than this many units are generalists (power users, routers): left out of the Jaccard
    #: rule so that they cannot chain unrelated topics together.
    generalist_clusters: int = 40
    #: One pool, however spread: two units whose whole account sets (generalists included) have Jaccard
    #: similarity of at least ``pool_jaccard`` with ``pool_min_shared`` accounts in common are linked. An
    #: operator's accounts sending hundreds of requests each over many paraphrased wrapper families touch a
    #: hundred units apiece (generalists by count), yet every one of those units has the same pool of hundreds of
    #: accounts; organic power users do not make up most of the accounts of two units at once.
    pool_jaccard: float = 0.6
    #: Accounts two units must have in common for the ``pool_jaccard`` rule.
    pool_min_shared: int = 10
    #: Memory, not a threshold: units per block when the accounts two units share are counted (the product of
    #: the account x unit matrix with itself, ``sum(units per account ** 2)`` entries at once: 1.9 GB at 2M
    #: requests); any value gives the same links.
    link_block_units: int = 512
    #: One operator's infrastructure: accounts of different customers linked through identifier values
    #: (``INFRA_LINK_FIELDS``) that ``infra_link_min_principals`` or more customers hold form an infrastructure
    #: community (a proxy pool, a shared payment method). Units where one community sends at least
    #: ``infra_unit_share`` of the requests from ``infra_unit_min_accounts`` or more of its accounts are that
    #: community's work, and all of them are linked: a pool that spreads a few requests per account over
    #: coding, tool-use and data-analysis wrappers on its first days holds no unit's majority per account, but
    #: every one of those units comes from its proxies. Organic topics are not dominated by one community;
    #: one organisation's seats are one customer and form none.
    infra_link_min_principals: int = 3
    #: Sampling pools link like a proxy pool: an account whose distinct prompts are at least ``sampler_min_share``
    #: (and ``sampler_min_prompts``) capability prompts that two to ``operator_prompt_max_accounts`` accounts send
    #: is a *sampler* (a distillation pool sends each rendered prompt several times, best-of-n or rollouts, over its
    #: accounts), and samplers of two or more customers sending the same such prompt are linked, with metadata or
    #: without. An ordinary customer whose question a hydra relay also sends, or who asks a
    #: homework problem a few others ask, re-sends a small share of its prompts (`adversarial` seeds 0-2: a
    #: median of 10-13% among the 54-67 accounts per log sending two or more, where a pool account's median is
    #: 36-71%); one organisation's seats re-sending its own test set are one customer and link nothing. A
    #: sampler joins the infrastructure community whose accounts send most of its re-sent prompts, or forms one
    #: with other samplers (:func:`with_samplers`). Above 1: off.
    sampler_min_share: float = 0.3
    #: Distinct re-sent capability prompts an account needs to be a sampler.
    sampler_min_prompts: int = 2
    #: Share of a unit's requests one infrastructure community must send for the unit to be its work.
    infra_unit_share: float = 0.5
    #: Accounts of the community a unit must hold for the unit to be its work.
    infra_unit_min_accounts: int = 3
    #: Share of a community's clustered requests that must go to units it dominates for its units to be
    #: linked: an operator's proxy pool does the operator's work; a shared NAT block's users do their own.
    infra_community_focus: float = 0.5
    #: A community's *unclustered work*: requests of an infrastructure community's accounts whose prompts fall in
    #: no unit (HDBSCAN noise) but read as a capability (training value at least ``community_unit_min_value``)
    #: form one unit of that community. A small pool's first days (ten fresh accounts, three requests each, tool
    #: calls over ever different schemas in paraphrased wrappers) are too few and too varied prompts to cluster,
    #: yet come from one proxy pool; the unit is then judged like any other (spread, focus, sync...). Organic
    #: prompts in no unit are mostly ordinary requests, and a community needs customers linked through shared
    #: identifiers (a carrier NAT block's users do their own, mostly ordinary, work).
    community_unit_min_value: float = 0.5
    #: Accounts of the community that must send such requests for its unclustered work to be a unit.
    community_unit_min_accounts: int = 3
    #: Share of all the community's requests its unclustered capability work must make up to be a unit: a
    #: fresh pool's first days are mostly such work (adv-tiny, seed 0: 40-64% on days 1-2), while a campus
    #: block's classroom and regular users send mostly clustered homework and ordinary requests (7%), and a
    #: grown pool's work has clustered (15-18% by day 6).
    community_unit_min_share: float = 0.25
    #: A community's *wrapper sentences*: sentences that at least this many of its accounts send verbatim in
    #: unclustered prompts (the scaffold rule of :func:`analyzer.cluster.scaffolds`: eight words or more of them
    #: in a prompt, and text of its own). A request carrying them is the community's unclustered work whatever its
    #: training value, and the unit's templating is the share of its requests that carry them. A pool composing
    #: each wrapper from a few dozen fragments forms no template or scaffold family in its first days (too few
    #: prompts share any one fragment), but its fresh accounts already repeat each other's fragments; customers
    #: behind a shared block ask in words of their own.
    community_wrapper_min_accounts: int = 3
    #: A group's unclustered work (an infrastructure community's or a wrapper pool's unit), and its units of ever new
    #: tasks (``templating_min_tasks``) without a template, count as templated in the share of their requests whose
    #: prompts carry the group's *wrapper sentences*: sentences its prompts send
    #: around at least this many distinct tasks (the scaffold rule, see :func:`_group_wrapper`); 0 turns the rule
    #: off. A re-sent task, or a problem pasted by many students, is one task.
    group_wrapper_min_tasks: int = 4
    #: Distinct prompts of a group read for its wrapper sentences (the most requested first, then evenly through
    #: the rest): bounds the texts read per scored group.
    group_wrapper_prompts: int = 300
    #: Accounts that must send a pool's unclustered requests sharing wrapper sentences (sentences
    #: ``community_wrapper_min_accounts`` accounts send, see :func:`wrapper_pool_units`) for them to be a unit of
    #: their own, shared infrastructure or not; 0 turns the rule off.
    pool_unit_min_accounts: int = 3
    #: Most distinct unclustered capability prompts read for those units (a random sample, by hash, beyond it):
    #: bounds the score stage's texts (16k of them at 1M requests).
    pool_unit_prompts: int = 100_000
    #: How many of a community unit's most common wrapper sentences its template shows (display only).
    community_template_sentences: int = 3
    #: A community's unclustered work is linked to a unit where at least this share of its accounts also work
    #: (and ``link_min_shared`` accounts) when the community's accounts are ``community_link_min_unit_share`` of
    #: that unit's: the clustered part of the same pool's work, however lightly each account touches it (a
    #: scaffold family shared with other operators' fragment wrappers, which no community dominates).
    community_link_share: float = 0.5
    #: Share of a unit's accounts the community must hold for its unclustered work to be linked to the unit (a
    #: popular organic topic its accounts also visit is not its work).
    community_link_min_unit_share: float = 0.25
    #: Requests in the group an account needs to join through an identifier concentrated among the core
    #: members (a fresh account behind the operator's proxies is one of them from its first request).
    infra_member_min_requests: int = 1
    #: An account is a member of a group when at least this share of its own traffic falls in the group's
    #: units (and ``member_min_requests``).
    member_share: float = 0.25
    #: Capability wrappers (units templated at least ``wrapper_min_templating`` whose training value reaches
    #: ``value_full``) sharing accounts beyond chance are linked (``wrapper_link_*``, :func:`_wrapper_links`):
    #: a pool spreading one or two requests per account
    #: over a dozen paraphrased coding, tool-use and data-analysis wrappers on its first days, with no network
    #: metadata, shares only two to four accounts between any two of them, and no organic account works there.
    wrapper_min_templating: float = 0.5
    #: Prompts of a templated topic cluster's unit matched against its template to measure the unit's
    #: templating (see :func:`unit_template_coverage`); 0 keeps the coverage the label stage stored.
    template_check_prompts: int = 10
    #: Share of a capability wrapper's prompts that must carry a task of their own (distinct ``task_similarity``
    #: groups): 0.9-1.0 for a pool's wrappers, 0.04-0.4 for a classroom's problems, each asked by a dozen
    #: students in their own words around the same problem text (adversarial preset, seed 0).
    wrapper_min_task_share: float = 0.9
    #: Accounts two capability wrappers must share to be linked (see ``wrapper_min_templating``).
    wrapper_link_min_shared: int = 2
    #: How many times the accounts two random sets of their sizes would share two capability wrappers must share.
    wrapper_link_lift: float = 3.0
    #: Share of the larger capability wrapper's accounts the two must share: two hydra accounts of a pool that
    #: also send an organic support-ticket template (44 accounts) do not make it the pool's (adv-bare: a pool's
    #: wrappers share 20-30% of their accounts on its first days).
    wrapper_link_min_overlap: float = 0.15
    #: Share of a capability wrapper's accounts that must also work in another wrapper linked with it for its
    #: links to count (see :func:`_wrapper_links`): a pool's wrappers hold mostly its accounts, which spread over
    #: several of them.
    wrapper_link_pool_share: float = 0.5
    #: Share of its own traffic a wrapper joiner's one request must be (see :func:`_members`): a fresh pool
    #: account's first request is half or more of what it sent (adv-bare, first day: the same 38 accounts
    #: listed at 0.25 and at 0.5); an organic user's one coding request among four is not enough (1M scale log:
    #: two such users at 25%).
    joiner_min_share: float = 0.5
    #: A wrapper joiner's request must be in a unit of which at least this share of the accounts are the pool's:
    #: core members or accounts in two or more of the group's units (an organic template the pool's hydra
    #: accounts also use has its own one-off users, who do not join).
    joiner_unit_pool_share: float = 0.5
    #: Requests an account needs in a group to be a core member (see ``infra_member_min_requests`` for the others).
    member_min_requests: int = 2
    #: Focus shrinks each member's share towards 0 by this many pseudo-requests (``in / (total + prior)``), so
    #: that an account with one request in the group is not "fully focused".
    focus_prior: float = 3.0
    #: Focus counts a member's requests *outside* the group as focused work when they read as a capability too
    #: (training value at least this, or not judged: a script or wrapper language the models do not read, as the value
    #: gate treats it), in proportion to the infrastructure signal: an operator that spreads each account over
    #: several wrappers, task kinds and languages leaves a small share of each account's traffic in any one
    #: group, yet its accounts, shown to be one operator's by shared proxies or payment, do nothing but harvest;
    #: independent customers sharing a popular template ask other questions of their own. Above 1: only the
    #: group's own requests count.
    focus_capability_value: float = 0.5
    #: Spread is ``log(customers) / log(this)``, capped at 1: this many distinct customers give full spread.
    full_spread_accounts: int = 10
    #: A group with fewer members than this is scored only when its members sent
    #: ``min_single_account_requests`` requests (a single account's templated batch is shown, not flagged).
    min_candidate_accounts: int = 2
    #: Requests a group below ``min_candidate_accounts`` members needs to be scored at all.
    min_single_account_requests: int = 100
    #: Core members a group needs before accounts below ``member_share`` that hold an identifier concentrated
    #: among them join it (hydra accounts mixing in ordinary traffic).
    hydra_min_core: int = 2
    #: An identifier shared inside a group counts as evidence only when held by at least this many customers
    #: (principals): seats of one organisation sharing its egress block explain each other.
    evidence_min_principals: int = 2
    #: Width of the time windows in which co-activity (sync) is measured, in minutes.
    sync_bucket_minutes: int = 15
    #: Sync is 1 when the members are this many times as co-active as random accounts (0 at 1x).
    sync_full_ratio: float = 4.0
    #: Sync is measured when at least ``sync_min_accounts`` members sent ``sync_min_requests`` requests each,
    #: else it counts as 0 (see :data:`NO_EVIDENCE_IS_ZERO`); the random-account baseline uses the same bar.
    sync_min_accounts: int = 3
    #: Requests an account needs for its activity to be compared (sync and its baseline).
    sync_min_requests: int = 3
    #: Random accounts sampled for the sync baseline (activity similarity of unrelated accounts).
    null_accounts: int = 300
    #: Requests kept per account in the sync baseline, so that heavy accounts do not dominate it.
    null_max_requests: int = 200
    #: A campaign is flagged when its score is at least this. Calibrated on the benchmark's benign traffic
    #: (organic accounts and the legitimate look-alikes): see the README's calibration table.
    flag_threshold: float = 0.5
    #: Training value at which the value gate is fully open (below it the score is scaled down linearly).
    value_full: float = 0.4
    #: Distinct tasks a unit's requests (of the group's members) must carry for its template to count towards
    #: ``templating``: a template is an instruction filled with ever new tasks. A classroom's unit is one
    #: assignment problem whose statement every student pastes around lead-ins of their own (1-4 tasks; 62-76% of
    #: a classroom group's requests), a viral prompt one text; the benchmark's campaigns' units carry 8 or more
    #: (under 2% of their requests are in units with fewer), even in its quietest pools.
    templating_min_tasks: int = 5
    #: Training value is not judged (the value gate stays open) when at least this share of a campaign's
    #: requests are written mostly in a script, or wrapped in a language, the embedding model does not read.
    unjudged_max_share: float = 0.5
    #: ...unless their own words name an ordinary workload and no capability (``analyzer.signals.ORDINARY_CUE_WORDS``:
    #: a support-ticket integration written in Chinese or Spanish): then the training value is this, as the model
    #: reads the same workload in English (a 30-seat Spanish support integration without org ids scored 0.89-0.90,
    #: flagged, with the gate open).
    ordinary_named_value: float = 0.0
    #: A member account's score is the campaign score times ``base + (1 - base) * its share of traffic in the
    #: campaign``: members doing nothing else rank first.
    member_score_base: float = 0.5
    #: Accounts touching a campaign without belonging to it keep a partial score,
    #: ``score * partial_score_factor * share ** partial_score_exponent``: below every member's, above
    #: accounts that never touched it.
    partial_score_factor: float = 0.5
    #: Exponent of the share in the partial score (see ``partial_score_factor``).
    partial_score_exponent: float = 2.0
    #: Re-sent prompts of any kind (capability work or not) that an account must share with a campaign's members
    #: for them to count towards its partial score; capability prompts count from one.
    partial_min_shared_prompts: int = 3
    #: Operators: members that share no infrastructure and whose hours of activity differ (cosine of their
    #: smoothed hour-of-day profiles below ``operator_timing_similarity``) or whose work differs (cosine of
    #: their requests over units below ``operator_work_similarity``) are separate communities; a
    #: group with two or more communities of ``min_operator_accounts`` accounts is split into one campaign
    #: each. A smaller community of two or more accounts, none of them keeping the hours and doing the work of
    #: an account of a larger one, is one of them too (an eval harness on a few bare accounts; see
    #: ``operator_apart_min_requests``); smaller ones otherwise join the operator whose hours they resemble most.
    min_operator_accounts: int = 5
    #: Requests in the group each account of such a smaller community needs before its unlikeness to every
    #: operator sets it apart: a fresh pool account's one to three requests say too little about its hours and
    #: work (its pool's first day would fall apart into fragments), a harness's hundred say enough.
    operator_apart_min_requests: int = 10
    #: Cosine of two members' smoothed hour-of-day profiles at which they keep common hours (operators).
    operator_timing_similarity: float = 0.5
    #: Cosine of two members' requests over the group's units at which they do common work (operators).
    operator_work_similarity: float = 0.5
    #: Two infrastructure communities of a group's members are one operator when at least this share of the
    #: accounts of one of them keep common hours and do common work with an account of the other (see
    #: ``operator_timing_similarity``): an account behind its own proxy joins the pool it resembles, while one
    #: chance pair of look-alike accounts does not merge two pools of ten behind blocks of their own. Communities
    #: of ``min_operator_accounts`` or more merge only with each other directly; a smaller one (a bare account)
    #: joins the one it resembles most, so that bare accounts resembling two pools do not chain them into one.
    operator_link_share: float = 0.5
    #: A user agent links a group's members into one infrastructure community only when at least this share of
    #: all the accounts that send it are the group's: an operator's own client string (every holder is its
    #: account). A popular SDK version is concentrated on a group as soon as one pool uses it (63 of its 101
    #: holders in one log), and a few accounts of another operator sending their side traffic from it joined
    #: two operators into one candidate of 100 accounts; such a value stays evidence, not a link.
    operator_agent_concentration: float = 0.9
    #: Re-sent prompts: an operator samples one rendered prompt several times (best-of-n, rollouts) and spreads
    #: the samples over its pool, so an identical capability prompt sent by two to this many accounts links the
    #: group's members sending it into one community, as a shared proxy block does (more senders: a popular or
    #: assigned text, which says nothing of who runs the accounts). 0 turns re-sent prompts off, as links and as
    #: the test below.
    operator_prompt_max_accounts: int = 8
    #: ... and two accounts sending this many such prompts in common are linked as one community; one prompt in
    #: common only joins a small community to a larger one, never two large ones (see ``_weak_prompt_ties``).
    operator_prompt_min_shared: int = 2
    #: Two communities that each re-send prompts across their own accounts and never one of the other's are two
    #: operators, and common hours and work do not merge them, when one pool would keep every re-sent prompt on
    #: one side with probability below this (each prompt's ``h`` sends on one side: ``p**h + (1-p)**h``, ``p``
    #: the first community's share of their requests). The `adversarial` preset's two censorship pools (15 and
    #: 10 accounts, most of them bare, seed 0) re-send 26 and 18 prompts of their own: about 1e-12.
    operator_prompt_apart_p: float = 1e-3
    #: ... and only when they were active at the same time: the overlap of their first-to-last request spans is
    #: at least this share of the shorter span. A banned pool and the replacements that take over its work never
    #: overlap; nothing says their samples would have crossed.
    operator_prompt_apart_overlap: float = 0.5
    #: Two infrastructure communities of ``min_operator_accounts`` or more that behaviour would merge are two
    #: operators when their pooled hours (every request of theirs, smoothed) are less alike than those of all but
    #: this share of random splits of their accounts into two sets of the same sizes (a permutation test, whole
    #: accounts the unit; ``operator_hours_splits`` splits): two pools on one task kind from their own proxies,
    #: each sending on its exit countries' day, whose accounts' twenty requests read too noisily to tell them apart
    #: pair by pair (`adv-tiny` with diurnal timing and nothing re-sent, seed 0: two ten-account censorship pools,
    #: pooled-hours cosine 0.72 where 99.6% of random splits of their 20 accounts reach more, merged into one
    #: candidate of which neither held a majority). A pool's accounts on their first days pass no such test and
    #: merge as before. One operator whose proxy blocks exit in different regions, each block on its own day, is
    #: told apart too: different infrastructure and different timing communities are two campaigns.
    operator_hours_apart_p: float = 0.01
    #: Random splits drawn for that test (seeded: the same on every run); 0 turns the test off.
    operator_hours_splits: int = 999
    #: Weights of the hour-of-day smoothing kernel, centred on the hour (odd length): activity at 10:00
    #: counts partly towards 08:00-12:00, so that shifts a little apart still read as common hours.
    operator_hour_smoothing: tuple[float, ...] = (1.0, 2.0, 3.0, 2.0, 1.0)
    #: Memory, not a threshold: members per block when a group's members are compared pair by pair (hours and
    #: work) for the operator split. Only the ``members x members`` yes/no table is kept whole (one byte a pair:
    #: 430 MB for a pool of 20,800 accounts); the similarities are computed and thresholded a block of rows at a
    #: time (as eight-byte floats, held whole, they were five such tables: 15 GB for that pool). Any value gives
    #: the same operators.
    operator_block_accounts: int = 1024
    #: Weights of the behavioural signals in the weighted mean (:data:`DEFAULT_WEIGHTS`).
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))

    def __post_init__(self) -> None:
        if len(self.operator_hour_smoothing) % 2 != 1:
            raise ValueError("operator_hour_smoothing needs an odd number of weights (centred on the hour), "
                             f"not {len(self.operator_hour_smoothing)}")


@dataclass(frozen=True)
class EvidenceParams:
    """Cut-offs of what the evidence sentences and labels say (section ``[evidence]`` of ``analyzer.toml``):
    they change the text an analyst reads, never a score or a flag."""

    #: A campaign's label names its training intent (and the evidence says what the prompts read as) when its
    #: training value reaches this.
    intent_min_value: float = 0.3
    #: Members with at least this (shrunk) share of their traffic in the campaign "do almost nothing else".
    focused_share: float = 0.8
    #: The focus sentence names the capability work members do outside the campaign once it adds at least this
    #: much to their mean focus.
    focus_elsewhere_min: float = 0.01
    #: The wrapper sentence (requests in no unit carrying the group's wrapper, see ``group_wrapper_min_tasks``) is
    #: shown once at least this share of the campaign's requests were counted as templated that way.
    wrapper_min_share: float = 0.1
    #: Diversity below this is reported as "low task diversity" (a viral or scripted repeat).
    low_diversity: float = 0.5
    #: Templating at or above this is reported with the scaffold.
    templated_min: float = 0.3
    #: Sync at or above this is reported as synchronized.
    sync_min: float = 0.2
    #: Regularity at or above this is reported as scripted pacing.
    regularity_min: float = 0.5
    #: Pivot at or above this is reported as a move to a new model.
    pivot_min: float = 0.3
    #: A topic cluster names the campaign's subject only when it holds at least this share of its requests.
    topic_min_share: float = 0.3
    #: Topic clusters read for the subject (largest first).
    topic_clusters: int = 2
    #: Keywords of the subject in the label.
    topic_words: int = 3
    #: The campaign's identical capability prompts sent by two or more of its accounts (several samples of one
    #: rendered prompt spread over a pool) are reported from this many on.
    samples_min: int = 3
    #: Letters a keyword's words need to name the subject (shorter ones are fragments).
    topic_min_word_chars: int = 3
    #: Keywords stored per campaign.
    keywords: int = 10
    #: Example prompts stored per campaign.
    examples: int = 5
    #: Shared identifiers listed in each member account's evidence.
    account_identifiers: int = 3
    #: Shared identifier values named in a campaign's shared-infrastructure sentence.
    campaign_identifiers: int = 3
    #: Where the training value is not judged (text in a script or language the embedding model does not read), the label
    #: names what the requests ask for from their own words (``analyzer.signals.CUE_WORDS``): prompts read for it,
    #: the smallest first by hash.
    cue_sample: int = 40
    #: Distinct cue words of one capability (and more than of any other) a prompt needs to name it.
    cue_min_words: int = 2
    #: Share of the prompts read that must name one capability for the label to name it.
    cue_min_share: float = 0.3
    #: Cue words quoted in the evidence.
    cue_words_shown: int = 4


@dataclass
class ClusterInfo:
    """What the label stage knows about one cluster."""

    cluster_id: int
    label: str = ""
    keywords: list[str] = field(default_factory=list)
    template: str = ""
    template_coverage: float = 0.0
    n_fixed_words: int = 0
    n_slots: int | None = None  # variable slots of the template; 0 = the unit is one repeated text
    training_value: float = 0.0
    intent: str = ""
    tightness: float = 0.0
    kind: str = ""  # topic, template, scaffold or system ("" not recorded)


@dataclass
class CampaignResult:
    campaigns: pd.DataFrame
    campaign_accounts: pd.DataFrame
    accounts: pd.DataFrame
    cluster_campaign: dict[int, str]


def group_clusters(account_cluster: pd.DataFrame, account_total: pd.Series, config: ScoringConfig,
                   community: pd.Series | None = None, community_units: Collection[int] = (),
                   wrapper_units: Collection[int] = ()) -> list[list[int]]:
    """Connected groups of clusters worked on by the same pool of accounts.

    ``account_cluster`` has columns ``account_id, cluster_id, n`` (requests of the account in the cluster).
    Two clusters are linked when either

    - their *engaged* accounts (``engaged_share`` of their own traffic there) overlap by ``link_overlap``
      of the smaller set, or
    - their account sets have Jaccard similarity of at least ``link_jaccard`` with ``link_min_shared``
      accounts in common: one pool spreading its load over many template variants touches each of them
      lightly, but the pool is the same. Generalist accounts (more than ``generalist_clusters`` clusters:
      power users, routers) do not count here, so they cannot chain unrelated topics together, or
    - their whole account sets, generalists included, have Jaccard similarity of at least ``pool_jaccard``
      with ``pool_min_shared`` accounts in common: the same large pool, however many units each account
      spreads over, or
    - one infrastructure community (``community``: account id -> community id, see
      :func:`infra_communities`) dominates both (:func:`_dominant_communities`), or
    - one is a community's unclustered work (``community_units``, see :func:`community_units`, or unclustered
      requests sharing wrapper sentences, :func:`wrapper_pool_units`) and the other holds
      ``community_link_share`` of its accounts (:func:`_community_unit_links`), or
    - both are capability wrappers (``wrapper_units``, see :func:`wrapper_units`) sharing accounts beyond
      chance, mostly the same pool's (:func:`_wrapper_links`).

    Returns groups sorted by their smallest cluster id.
    """
    from scipy.sparse.csgraph import connected_components

    ac = account_cluster[account_cluster["cluster_id"] >= 0].copy()
    clusters = np.sort(ac["cluster_id"].unique())
    if not len(clusters):
        return []
    ac["share"] = ac["n"] / account_total.reindex(ac["account_id"]).to_numpy()
    # A community's unclustered work is all its accounts' scattered requests: it overlaps every unit they touch,
    # so the overlap rules leave it out (it is linked by its community's dominance and its own rule).
    real = ac[~ac["cluster_id"].isin(community_units)]
    engaged = real[(real["share"] >= config.engaged_share) & (real["n"] >= config.engaged_min_requests)]
    breadth = real.groupby("account_id")["cluster_id"].size()
    specialists = real[real["account_id"].map(breadth) <= config.generalist_clusters]
    block = config.link_block_units
    edges = [
        _linked_pairs(engaged,
                      lambda n, a, b: (n >= config.link_min_shared) & (n / np.minimum(a, b) >= config.link_overlap),
                      block, config.link_min_shared),
        _linked_pairs(specialists,
                      lambda n, a, b: (n >= config.link_min_shared) & (n / (a + b - n) >= config.link_jaccard),
                      block, config.link_min_shared),
        _linked_pairs(real, lambda n, a, b: (n >= config.pool_min_shared) & (n / (a + b - n) >= config.pool_jaccard),
                      block, config.pool_min_shared),
    ]
    dominated = pd.DataFrame({"cluster_id": pd.Series(dtype=np.int64), "community": pd.Series(dtype=np.int64)})
    if community is not None and len(community):
        dominated = _dominant_communities(ac, community, config)
        # Each dominated unit linked to the first unit of its community: one star per community.
        first = dominated.groupby("community")["cluster_id"].transform("min").to_numpy()
        edges.append(np.stack([first, dominated["cluster_id"].to_numpy()], axis=1).astype(np.int64))
    if len(community_units):
        edges.append(_community_unit_links(ac, community_units, dominated, config))
    if len(wrapper_units):
        edges.append(_wrapper_links(real[real["cluster_id"].isin(wrapper_units)], len(account_total), config))
    pos = np.searchsorted(clusters, np.concatenate(edges))
    graph = sp.coo_matrix((np.ones(len(pos)), (pos[:, 0], pos[:, 1])), shape=(len(clusters),) * 2)
    _, component = connected_components(graph, directed=False)
    groups: dict[int, list[int]] = defaultdict(list)
    for c, k in zip(clusters.tolist(), component.tolist(), strict=True):
        groups[k].append(int(c))
    return sorted(groups.values(), key=lambda g: g[0])


def infra_communities(id_pairs: pd.DataFrame, principal_of: pd.Series, min_principals: int) -> pd.Series:
    """Account id -> infrastructure community id, for accounts linked through shared identifier values.

    ``id_pairs`` holds distinct ``field, value, account_id`` rows. Only values of ``INFRA_LINK_FIELDS`` held by
    ``min_principals`` or more customers (``principal_of``: account -> customer) link accounts; accounts
    connected through such values, directly or in a chain (a proxy pool rotating its accounts over several
    blocks), are one community. Accounts that hold no such value are left out.
    """
    pairs = id_pairs[id_pairs["field"].isin(INFRA_LINK_FIELDS)]
    if pairs.empty:
        return pd.Series(dtype=np.int64)
    key = pairs["field"] + "\x1f" + pairs["value"]
    n_principals = principal_of.reindex(pairs["account_id"]).groupby(key.to_numpy()).nunique()
    linking = set(n_principals.index[n_principals >= min_principals])
    pairs = pairs[key.isin(linking).to_numpy()]
    if pairs.empty:
        return pd.Series(dtype=np.int64)
    acc_codes, accounts = pd.factorize(pairs["account_id"])
    val_codes, _ = pd.factorize(key[key.isin(linking)])
    return pd.Series(_components(acc_codes, val_codes), index=accounts)


def _components(acc_codes: np.ndarray, val_codes: np.ndarray) -> np.ndarray:
    """Connected components of the accounts (codes ``0..n-1``) through the values they hold (each row a pair)."""
    from scipy.sparse.csgraph import connected_components

    n_acc = int(acc_codes.max()) + 1
    graph = sp.csr_matrix((np.ones(len(acc_codes)), (acc_codes, n_acc + val_codes)),
                          shape=(n_acc + int(val_codes.max()) + 1,) * 2)
    _, comp = connected_components(graph, directed=False)
    return comp[:n_acc].astype(np.int64)


def with_samplers(community: pd.Series, samples: pd.DataFrame) -> pd.Series:
    """``community`` (account id -> infrastructure community id) with the samplers of ``samples``
    (:func:`sampler_pairs`) added: one in no community joins the community whose accounts send the most of its
    re-sent prompts; samplers that meet no community's are linked among themselves through their prompts into
    communities of their own. Two infrastructure communities are never merged through prompts: a hydra pool's
    relayed customer questions meet other pools' and customers' copies of the same public prompts."""
    if samples.empty:
        return community
    acc_codes, accounts = pd.factorize(samples["account_id"])
    val_codes, _ = pd.factorize(samples["value"])
    n_acc, n_val = len(accounts), int(val_codes.max()) + 1
    incidence = sp.csr_matrix((np.ones(len(samples)), (acc_codes, val_codes)), shape=(n_acc, n_val))
    known = community.reindex(accounts)
    inside = known.notna().to_numpy()
    com_codes, com_ids = pd.factorize(known[inside], sort=True)  # code order = id order: ties go to the lower id
    outside = np.flatnonzero(~inside)
    added: dict[str, int] = {}
    alone = outside
    if len(com_ids):
        # prompts x communities: whether a community's sampler sends the prompt; then, per outside sampler, the
        # number of its prompts each community's samplers send (ties: the lower community id)
        member_of = sp.csr_matrix((np.ones(len(com_codes)), (np.arange(len(com_codes)), com_codes)),
                                  shape=(len(com_codes), len(com_ids)))
        sent_by = (incidence[inside].T @ member_of).astype(bool).astype(np.float64)
        shared = (incidence[outside] @ sent_by).tocsr()  # sparse: outside samplers x communities
        shared.sort_indices()  # argmax takes the first of equal counts: the lower community id
        joins = np.diff(shared.indptr) > 0
        best = np.asarray(shared[joins].argmax(axis=1)).ravel()
        added = {accounts[i]: int(com_ids[j]) for i, j in zip(outside[joins], best, strict=True)}
        alone = outside[~joins]
    if len(alone):
        sub = incidence[alone].tocoo()
        comp = _components(sub.row, sub.col)
        first = int(community.max()) + 1 if len(community) else 0
        counts = np.bincount(comp)
        for i, c in zip(alone, comp, strict=True):
            if counts[c] >= 2:  # a sampler alone is no community
                added[accounts[i]] = first + int(c)
    if not added:
        return community
    return pd.concat([community, pd.Series(added, dtype=np.int64)])


#: Label of a community's unclustered work (see :func:`community_units`).
COMMUNITY_UNIT_LABEL = "unclustered capability requests of one community (shared infrastructure or re-sent prompts)"


def community_units(req: pd.DataFrame, community: pd.Series, clusters: Mapping[int, ClusterInfo],
                    config: ScoringConfig, signals: sig.SignalParams,
                    texts_for: Callable[[Sequence[str]], Mapping[str, str]] | None = None
                    ) -> tuple[pd.DataFrame, dict[int, ClusterInfo]]:
    """``req`` with each infrastructure community's unclustered capability work as one unit of its own, and
    ``clusters`` with those units' descriptions.

    A request is such work when its prompt is in no unit (``cluster_id`` -1), its account belongs to an
    infrastructure community (``community``, see :func:`infra_communities`) and it reads as a capability
    (training value at least ``community_unit_min_value``; not judged counts as not) or carries the community's
    wrapper sentences (with ``texts_for``: :func:`_community_wrappers`). A community's work is a unit when at
    least ``community_unit_min_accounts`` of its accounts send such requests, making up
    ``community_unit_min_share`` of all the community's requests. The unit's template coverage is the share of its
    requests that carry the wrapper sentences. Unit ids follow every id in use.
    """
    infos = dict(clusters)
    if community.empty or "intent_similarity" not in req:
        return req, infos
    com = req["account_id"].map(community)
    tv = sig.training_values(req["intent_similarity"].to_numpy(dtype=np.float64), signals.training_value_low,
                             signals.training_value_high)
    loose = ((req["cluster_id"] < 0) & com.notna()).to_numpy()
    wrapped = pd.Series(None, index=req.index, dtype=object)
    # Only communities whose unclustered requests could make a unit are read (its work is part of them).
    com_requests = com.value_counts()
    loose_share = com[loose].value_counts() / com_requests
    readable = loose & com.isin(loose_share.index[loose_share >= config.community_unit_min_share]).to_numpy()
    if texts_for is not None and readable.any():
        wrapped[readable] = _community_wrappers(req.loc[readable], com[readable], texts_for, config)
    work = loose & ((tv >= config.community_unit_min_value) | wrapped.notna().to_numpy())
    n_acc = req.loc[work, "account_id"].groupby(com[work]).nunique()
    share = (com[work].value_counts() / com_requests).reindex(n_acc.index)
    kept = np.sort(n_acc.index[(n_acc >= config.community_unit_min_accounts)
                               & (share >= config.community_unit_min_share)].to_numpy())
    work &= com.isin(kept).to_numpy()
    if not work.any():
        return req, infos
    first = max(int(req["cluster_id"].max()), max(infos, default=-1)) + 1
    ids = first + np.searchsorted(kept, com[work].to_numpy())
    unit = req["cluster_id"].to_numpy(dtype=np.int64, copy=True)
    unit[work] = ids
    req = req.assign(cluster_id=unit)
    from analyzer.cluster import words

    rows = pd.DataFrame({"c": ids, "tv": tv[work], "intent": req.loc[work, "intent"].fillna(""),
                         "wrapper": wrapped[work].to_numpy()})
    for c, g in rows.groupby("c"):
        covered = g["wrapper"].dropna()
        infos[int(c)] = ClusterInfo(
            int(c), label=COMMUNITY_UNIT_LABEL, training_value=float(g["tv"].mean()),
            intent=str(g["intent"].mode().iloc[0]), template_coverage=round(len(covered) / len(g), 4),
            n_fixed_words=int(np.median([len(words(w)) for w in covered])) if len(covered) else 0,
            template=_common_sentences(covered, config.community_template_sentences))
    return req, infos


def _common_sentences(scaffold_texts: Iterable[str], n: int) -> str:
    """The ``n`` sentences most used across ``scaffold_texts`` (:func:`analyzer.cluster.scaffolds` strings),
    joined for display as a unit's template."""
    from analyzer.cluster import SCAFFOLD_SEP

    counts = pd.Series([x for sc in scaffold_texts for x in sc.split(SCAFFOLD_SEP)], dtype=object).value_counts()
    return " … ".join(counts.index[:n])


#: Label of unclustered requests that share wrapper sentences across accounts (see :func:`wrapper_pool_units`).
WRAPPER_POOL_LABEL = "unclustered capability requests sharing wrapper sentences"


def wrapper_pool_units(req: pd.DataFrame, clusters: Mapping[int, ClusterInfo], config: ScoringConfig,
                       signals: sig.SignalParams, texts_for: Callable[[Sequence[str]], Mapping[str, str]] | None = None
                       ) -> tuple[pd.DataFrame, dict[int, ClusterInfo]]:
    """``req`` with requests in no unit that share wrapper sentences across accounts made units of their own, and
    ``clusters`` with those units' descriptions.

    Read are the requests in no unit (``cluster_id`` -1) that read as capability work (``capability``). A
    sentence is a *wrapper sentence* of theirs when ``community_wrapper_min_accounts`` or more accounts send it
    there (the scaffold rule of
    :func:`analyzer.cluster.scaffolds`: eight words or more of such sentences in a prompt, and text of its own);
    prompts linked through shared wrapper sentences, directly or in a chain, are one unit when
    ``pool_unit_min_accounts`` accounts send them (0 turns the rule off). A pool
    composing each wrapper from a few dozen fragments leaves most of its requests in no cluster (too few prompts
    share any one combination), yet its accounts send each other's fragments around new tasks: the shared
    infrastructure that :func:`community_units` reads is not needed. Customers asking in their own words share
    no eight words of sentences (on the benchmark's quiet pools and look-alikes, 1-2% of organic accounts'
    unclustered capability requests carry any, 60-90% of a small pool's). Like a community's unclustered work, such
    a unit is linked to other units only through :func:`_community_unit_links` (a unit holding half its accounts),
    not by the overlap rules: a sentence many customers share could chain their prompts into one large unit that
    overlaps everything they touch.
    """
    from scipy.sparse.csgraph import connected_components

    from analyzer.cluster import SCAFFOLD_SEP, scaffolds, words
    from analyzer.text import analysis_text

    infos = dict(clusters)
    if (config.pool_unit_min_accounts <= 0 or texts_for is None or "capability" not in req
            or "intent" not in req):
        return req, infos
    loose = (req["cluster_id"].to_numpy() < 0) & req["capability"].to_numpy() & req["intent"].notna().to_numpy()
    if not loose.any():
        return req, infos
    pairs = req.loc[loose, ["account_id", "prompt_hash"]].drop_duplicates()
    # at most pool_unit_prompts prompts, the first by hash (a random sample of them): bounded memory and reads
    texts = texts_for(sorted(set(pairs["prompt_hash"]))[: config.pool_unit_prompts])
    pairs = pairs[pairs["prompt_hash"].isin(texts.keys())]
    if pairs.empty:
        return req, infos
    found = scaffolds([analysis_text(texts[h]) for h in pairs["prompt_hash"]], config.community_wrapper_min_accounts,
                      owners=pairs["account_id"].tolist())
    wrapped = pairs.assign(scaffold=found).dropna(subset=["scaffold"])
    unit_of: dict[str, int] = {}  # prompt -> unit id
    first = max(int(req["cluster_id"].max()), max(infos, default=-1)) + 1
    if not wrapped.empty:
        # prompts linked through their wrapper sentences, directly or in a chain: one unit per pool of fragments
        prompt_codes, prompt_ids = pd.factorize(wrapped["prompt_hash"])
        parts = [sc.split(SCAFFOLD_SEP) for sc in wrapped["scaffold"]]
        rows = np.repeat(prompt_codes, [len(x) for x in parts])
        sent_codes, _ = pd.factorize(pd.Series([x for xs in parts for x in xs], dtype=object))
        n_p = len(prompt_ids)
        graph = sp.coo_matrix((np.ones(len(rows)), (rows, n_p + sent_codes)),
                              shape=(n_p + int(sent_codes.max()) + 1,) * 2)
        _, comp = connected_components(graph, directed=False)
        wrapped = wrapped.assign(component=comp[prompt_codes])
        n_acc = wrapped.groupby("component")["account_id"].nunique()
        first_hash = wrapped.groupby("component")["prompt_hash"].min()
        # ids in the order of each unit's first prompt hash: the same units get the same ids whatever the row order
        for k in sorted(n_acc.index[n_acc >= config.pool_unit_min_accounts], key=lambda k: str(first_hash[k])):
            members = wrapped[wrapped["component"] == k]
            unit_of.update(dict.fromkeys(members["prompt_hash"].astype(str), first))
            infos[first] = ClusterInfo(first, label=WRAPPER_POOL_LABEL, template_coverage=1.0,
                                       n_fixed_words=int(np.median([len(words(sc)) for sc in members["scaffold"]])),
                                       template=_common_sentences(members["scaffold"],
                                                                  config.community_template_sentences))
            first += 1
    if not unit_of:
        return req, infos
    rows = np.flatnonzero(loose)
    target = req["prompt_hash"].iloc[rows].map(unit_of).to_numpy(dtype=np.float64, na_value=np.nan)
    rows, target = rows[~np.isnan(target)], target[~np.isnan(target)].astype(np.int64)
    unit = req["cluster_id"].to_numpy(dtype=np.int64, copy=True)
    unit[rows] = target
    held = pd.DataFrame({"unit": target, "intent": req["intent"].iloc[rows].to_numpy(dtype=object),
                         "tv": sig.training_values(req["intent_similarity"].iloc[rows].to_numpy(dtype=np.float64),
                                                   signals.training_value_low, signals.training_value_high)})
    by = held.groupby("unit")
    value, intent = by["tv"].mean().fillna(0.0), by["intent"].agg(lambda x: x.mode().iloc[0])
    for uid in value.index:  # training value over its judged requests (0 where none is), its most common intent
        infos[int(uid)] = replace(infos[int(uid)], training_value=float(value[uid]), intent=str(intent[uid]))
    return req.assign(cluster_id=unit), infos


def _community_wrappers(loose: pd.DataFrame, com: pd.Series, texts_for: Callable[[Sequence[str]], Mapping[str, str]],
                        config: ScoringConfig) -> np.ndarray:
    """Per request of ``loose`` (unclustered requests of community accounts; ``com`` their community), the
    wrapper sentences its prompt carries (``" | "``-joined, ``None`` for none): sentences that
    ``community_wrapper_min_accounts`` or more accounts of its community send verbatim, by the scaffold rule of
    :func:`analyzer.cluster.scaffolds` (eight words or more of them, and text of its own). Only communities
    with that many accounts are read; ``texts_for`` reads their prompts in one call."""
    from analyzer.cluster import scaffolds
    from analyzer.text import analysis_text

    out = np.full(len(loose), None, dtype=object)
    k = config.community_wrapper_min_accounts
    n_acc = loose["account_id"].groupby(com.to_numpy()).nunique()
    read = com.isin(n_acc.index[n_acc >= k]).to_numpy()
    if not read.any():
        return out
    texts = texts_for(sorted(set(loose.loc[read, "prompt_hash"])))
    pairs = pd.DataFrame({"com": com.to_numpy()[read], "account_id": loose["account_id"].to_numpy()[read],
                          "prompt_hash": loose["prompt_hash"].to_numpy()[read]}).drop_duplicates()
    pairs = pairs[pairs["prompt_hash"].isin(texts.keys())]
    found: dict[tuple, str] = {}
    for c, g in pairs.groupby("com", sort=True):
        scaffold = scaffolds([analysis_text(texts[h]) for h in g["prompt_hash"]], k, owners=g["account_id"].tolist())
        found.update({(c, h): sc for h, sc in zip(g["prompt_hash"], scaffold, strict=True) if sc is not None})
    keys = zip(com.to_numpy(), loose["prompt_hash"].to_numpy(), strict=True)
    return np.array([found.get(key) for key in keys], dtype=object)


def _dominant_communities(account_cluster: pd.DataFrame, community: pd.Series, config: ScoringConfig
                          ) -> pd.DataFrame:
    """Rows ``cluster_id, community`` of the units one infrastructure community dominates: it sends
    ``infra_unit_share`` of the unit's requests from at least ``infra_unit_min_accounts`` of its accounts, and
    ``infra_community_focus`` of the community's clustered requests go to units it dominates."""
    ac = account_cluster.assign(community=community.reindex(account_cluster["account_id"]).to_numpy())
    unit_total = ac.groupby("cluster_id")["n"].sum()
    by = ac.dropna(subset=["community"]).groupby(["cluster_id", "community"])
    agg = pd.DataFrame({"n": by["n"].sum(), "accounts": by["account_id"].nunique()}).reset_index()
    dominated = agg[(agg["n"] >= config.infra_unit_share * unit_total.reindex(agg["cluster_id"]).to_numpy())
                    & (agg["accounts"] >= config.infra_unit_min_accounts)]
    # A community whose accounts mostly do other work (a carrier's NAT block that a few of the pool's accounts
    # also went through) is not one operator's: its units stay unlinked.
    focus = dominated.groupby("community")["n"].sum() / agg.groupby("community")["n"].sum()
    focused = focus.index[focus.to_numpy() >= config.infra_community_focus]
    return dominated.loc[dominated["community"].isin(focused), ["cluster_id", "community"]]


def _community_unit_links(account_cluster: pd.DataFrame, community_units: Collection[int], dominated: pd.DataFrame,
                          config: ScoringConfig) -> np.ndarray:
    """Pairs ``(community unit, unit)`` (an ``(n, 2)`` array) where the unit holds ``community_link_share`` of
    the community unit's accounts, at least ``link_min_shared`` of them, those accounts are
    ``community_link_min_unit_share`` of the unit's, and no other community dominates the unit (``dominated``:
    rows ``cluster_id, community`` of :func:`_dominant_communities`): a wrapper family that two operators'
    accounts share is the work of the one whose proxies send most of it."""
    is_cu = account_cluster["cluster_id"].isin(community_units)
    cu = account_cluster.loc[is_cu, ["account_id", "cluster_id"]].rename(columns={"cluster_id": "cu"})
    other = account_cluster.loc[~is_cu, ["account_id", "cluster_id"]]
    shared = cu.merge(other, on="account_id").groupby(["cu", "cluster_id"]).size()
    if shared.empty:
        return np.empty((0, 2), dtype=np.int64)
    cu_size = cu.groupby("cu").size().reindex(shared.index.get_level_values("cu")).to_numpy()
    unit_size = other.groupby("cluster_id").size().reindex(shared.index.get_level_values("cluster_id")).to_numpy()
    owner = dominated.drop_duplicates("cluster_id").set_index("cluster_id")["community"]
    cu_owner = owner.reindex(shared.index.get_level_values("cu")).to_numpy()
    unit_owner = owner.reindex(shared.index.get_level_values("cluster_id")).to_numpy()
    other_owner = ~np.isnan(unit_owner) & (unit_owner != cu_owner)
    ok = ((shared.to_numpy() >= config.link_min_shared) & (shared.to_numpy() >= config.community_link_share * cu_size)
          & (shared.to_numpy() >= config.community_link_min_unit_share * unit_size) & ~other_owner)
    return np.asarray(shared.index[ok].tolist(), dtype=np.int64).reshape(-1, 2)


def unit_template_coverage(req: pd.DataFrame, clusters: Mapping[int, ClusterInfo],
                           texts_for: Callable[[Sequence[str]], Mapping[str, str]], config: ScoringConfig,
                           signals: sig.SignalParams) -> dict[int, ClusterInfo]:
    """``clusters`` with each templated topic cluster's template coverage measured on the prompts its unit holds.

    A topic cluster's template describes its HDBSCAN members; the prompts of those that carry a template are
    counted towards their template or scaffold family, and the cluster's unit keeps the rest and the noise
    attributed to it. A large cluster built around one templated workload can so leave a unit of unrelated
    conversations that would borrow its 96% templating. Up to ``template_check_prompts`` of the unit's prompts
    (the most requested first, then evenly through the rest; ``texts_for`` reads their texts in one call) are
    matched against the template (:func:`analyzer.label.template_match`), weighted by their requests; units
    whose texts cannot be read keep the stored coverage."""
    from analyzer.label import Template, template_match

    templated = [c for c, i in clusters.items() if i.kind == "topic" and i.template
                 and sig.templating(i.template_coverage, i.n_fixed_words, signals.full_scaffold_words,
                                    n_slots=i.n_slots) > 0]
    if not templated or config.template_check_prompts <= 0:
        return dict(clusters)
    units = req[["cluster_id", "prompt_hash"]]
    sample = _unit_samples(units[units["cluster_id"].isin(templated)], config.template_check_prompts)
    texts = texts_for(sorted(set(sample["prompt_hash"])))
    sample = sample[sample["prompt_hash"].isin(texts.keys())]
    out = dict(clusters)
    for c, g in sample.groupby("cluster_id", sort=True):
        i = clusters[int(c)]
        template = Template(i.template, i.n_fixed_words, i.template_coverage, 1 if i.n_slots is None else i.n_slots, 0.0)
        hit = np.array([template_match(template, texts[h]) for h in g["prompt_hash"]], dtype=np.float64)
        out[int(c)] = replace(i, template_coverage=round(float(np.average(hit, weights=g["n"].to_numpy())), 4))
    return out


def _unit_samples(req: pd.DataFrame, n: int) -> pd.DataFrame:
    """Rows ``cluster_id, prompt_hash, n`` (its requests): up to ``n`` distinct prompts per unit of ``req``, the
    most requested first, then evenly through the rest (positions ``floor(i * size / n)``), for all units at
    once."""
    counts = req[["cluster_id", "prompt_hash"]].value_counts().rename("n").reset_index()
    counts = counts.sort_values(["cluster_id", "n", "prompt_hash"], ascending=[True, False, True], kind="stable")
    pos = counts.groupby("cluster_id").cumcount().to_numpy()
    size = counts.groupby("cluster_id")["n"].transform("size").to_numpy()
    step = np.maximum(size / n, 1.0)
    i = np.ceil(pos / step)
    keep = (size <= n) | ((i < n) & (np.floor(i * step) == pos))
    return counts[keep].reset_index(drop=True)


def wrapper_units(req: pd.DataFrame, clusters: Mapping[int, ClusterInfo], config: ScoringConfig,
                  signals: sig.SignalParams) -> list[int]:
    """Ids of the units of ``req`` (rows ``cluster_id, prompt_hash, task_id, intent_similarity``) that are
    capability wrappers: templated (``wrapper_min_templating``; a repeated text is not), holding a different task
    in at least ``wrapper_min_task_share`` of their prompts (an instruction around ever new tasks, not one problem
    asked in many words, as a classroom's students ask it), and of training value at least ``value_full`` over
    their requests, as a campaign's ``training_value`` is measured (not judged, as there, when
    ``unjudged_max_share`` of them are in a script or language the model does not read)."""
    if "task_id" not in req or "intent_similarity" not in req:
        return []
    unit = req[["cluster_id", "prompt_hash", "task_id", "intent_similarity"]]
    unit = unit[unit["cluster_id"] >= 0]
    prompts = unit[["cluster_id", "prompt_hash", "task_id"]].drop_duplicates("prompt_hash")
    by = prompts.groupby("cluster_id")
    task_share = by["task_id"].nunique() / by.size()
    sim = unit["intent_similarity"].to_numpy(dtype=np.float64)
    tv = pd.Series(sig.training_values(sim, signals.training_value_low, signals.training_value_high),
                   index=unit.index).where(~np.isnan(sim))
    value = tv.groupby(unit["cluster_id"]).mean()
    unjudged = tv.isna().groupby(unit["cluster_id"]).mean()
    capability = (value.reindex(task_share.index) >= config.value_full) | (
        unjudged.reindex(task_share.index) >= config.unjudged_max_share)
    return sorted(int(c) for c in task_share.index[(task_share >= config.wrapper_min_task_share) & capability]
                  if (i := clusters.get(int(c))) is not None
                  and sig.templating(i.template_coverage, i.n_fixed_words, signals.full_scaffold_words,
                                     n_slots=i.n_slots) >= config.wrapper_min_templating)


def _wrapper_links(pairs: pd.DataFrame, n_accounts: int, config: ScoringConfig) -> np.ndarray:
    """Pairs of capability wrappers (rows ``account_id, cluster_id`` of their accounts) that share
    ``wrapper_link_min_shared`` accounts, ``wrapper_link_lift`` times the ``|A| |B| / n_accounts`` that two
    random account sets of their sizes would share, and ``wrapper_link_min_overlap`` of the larger one's; of
    these, only pairs of units that are the linked pool's (``wrapper_link_pool_share`` of each unit's accounts
    work in another unit linked with it): a pool's wrappers hold little but its accounts, while an organic
    template that two of its hydra accounts also use ("I want you to act as a ...", twelve accounts) is not
    its work."""
    from scipy.sparse.csgraph import connected_components

    linked = _linked_pairs(pairs, lambda n, a, b: (n >= config.wrapper_link_min_shared)
                           & (n * n_accounts >= config.wrapper_link_lift * a * b)
                           & (n >= config.wrapper_link_min_overlap * np.maximum(a, b)), config.link_block_units,
                           config.wrapper_link_min_shared)
    if not len(linked):
        return linked
    units = np.unique(linked)
    pos = np.searchsorted(units, linked)
    graph = sp.coo_matrix((np.ones(len(pos)), (pos[:, 0], pos[:, 1])), shape=(len(units),) * 2)
    _, component = connected_components(graph, directed=False)
    ac = pairs.loc[pairs["cluster_id"].isin(units), ["account_id", "cluster_id"]].drop_duplicates()
    share = _pool_share(ac, component[np.searchsorted(units, ac["cluster_id"].to_numpy())])
    pool = share.index[share.to_numpy() >= config.wrapper_link_pool_share].to_numpy()
    return linked[np.isin(linked, pool).all(axis=1)]


def _linked_pairs(pairs: pd.DataFrame, accept, block: int = ScoringConfig.link_block_units, min_shared: int = 1
                  ) -> np.ndarray:
    """Pairs of clusters (an ``(n, 2)`` array of cluster ids) whose account sets (rows ``account_id,
    cluster_id``) pass ``accept(shared, |A|, |B|)``.

    ``accept`` works on arrays: one element per pair of clusters that share at least one account. The shared
    accounts are counted ``block`` clusters at a time (memory; any block gives the same pairs). ``min_shared``:
    the fewest accounts ``accept`` asks two clusters to share; clusters with fewer accounts are left out before
    counting (the same pairs, less work).
    """
    if pairs.empty:
        return np.empty((0, 2), dtype=np.int64)
    if min_shared > 1:  # a cluster with fewer accounts than a pair must share can be in no accepted pair
        size = pairs.groupby("cluster_id")["account_id"].transform("size").to_numpy()
        pairs = pairs[size >= min_shared]
        if pairs.empty:
            return np.empty((0, 2), dtype=np.int64)
    acc_codes, _ = pd.factorize(pairs["account_id"])
    cl_codes, cl_uniques = pd.factorize(pairs["cluster_id"])
    m = sp.csr_matrix((np.ones(len(pairs), dtype=np.float32), (acc_codes, cl_codes)))
    m.data[:] = 1.0
    size = np.asarray(m.sum(axis=0)).ravel()
    ids = np.asarray(cl_uniques, dtype=np.int64)
    mt = m.T.tocsr()
    # The co-occurrence (clusters x clusters) a block of rows at a time: accounts spread over many units (a pool
    # of thousands, each over 100+ units) make it hold sum(units per account ** 2) entries, 1.9 GB at 2M requests
    # all at once; each block keeps only the pairs it accepts.
    out = [np.empty((0, 2), dtype=np.int64)]
    for start in range(0, mt.shape[0], block):
        co = (mt[start:start + block] @ m).tocoo()
        row = co.row.astype(np.int64) + start
        upper = co.col > row
        row, col, shared = row[upper], co.col[upper], co.data[upper].astype(np.float64)
        keep = accept(shared, size[row], size[col])
        out.append(np.stack([ids[row[keep]], ids[col[keep]]], axis=1))
    return np.concatenate(out)


def campaign_id(accounts: list[str], clusters: list[int]) -> str:
    """Deterministic id from the member accounts (stable while membership is)."""
    key = "\x1f".join(sorted(accounts)) if accounts else "clusters:" + ",".join(map(str, clusters))
    return "c-" + hashlib.blake2b(key.encode(), digest_size=5).hexdigest()


def _fmt_pct(x: float) -> str:
    return f"{100 * x:.0f}%"


#: Signals whose absence counts as 0 rather than being left out. ``sync`` is None when fewer than three
#: members sent three requests: a group too light to show co-ordinated timing has shown none, and leaving
#: the signal out let small organic groups score on content alone (templating, training value).
NO_EVIDENCE_IS_ZERO = ("sync",)
#: Signals that only add evidence: a value of 0 is left out of the weighted mean like a signal that does not
#: apply. ``pivot`` is 0 when a group that sent enough requests after a model release moved to it no faster
#: than everyone else, which is what organic traffic and a careful operator both do; a group too small to
#: judge leaves it out, so a 0 would only penalise the groups large enough to be measured.
ONLY_WHEN_SHOWN = ("pivot",)
#: The timing signals, which an operator chooses for free. A group whose accounts of different customers are
#: already tied by operator evidence (:data:`OPERATOR_EVIDENCE` above 0: identifiers used mostly by them, or
#: identical capability prompts re-sent among them) and that sends on an ordinary daily curve (no job windows,
#: no scripted pacing) chose that timing; for it, timing only adds evidence, like :data:`ONLY_WHEN_SHOWN`.
#: Counted as 0 there, they took a fifth of the weighted mean from pools that spread their load over the day
#: (two bare or paraphrased pools of 36-41 accounts scored 0.46-0.47 on the accurate tier). A group with no such
#: tie and ordinary timing is what a topic's organic users look like, and its timing counts as before (an
#: organic "act as ..." template of 29 users at 1M scored 0.35, 0.44 with its timing left out).
CHOSEN_TIMING = ("sync", "regularity")
#: Signals that tie a group's accounts of different customers to one operator (see :data:`CHOSEN_TIMING`), with
#: the words the evidence uses for them.
OPERATOR_EVIDENCE_WORDS = {"infrastructure": "shared infrastructure", "samples": "re-sent samples"}
OPERATOR_EVIDENCE = tuple(OPERATOR_EVIDENCE_WORDS)
#: Signals that only ever raise a score: each is left out of the weighted mean where it would lower it (the
#: highest first). ``samples``: a pool re-sending samples of its prompts across customers is no less a campaign
#: for re-sending a smaller share of them than its other signals read, and one that samples each prompt once
#: (0) is no less one either.
ONLY_RAISING = ("samples",)


def score_signals(values: Mapping[str, float | None], weights: Mapping[str, float],
                  missing_as_zero: Sequence[str] = NO_EVIDENCE_IS_ZERO,
                  value_full: float = ScoringConfig.value_full,
                  only_when_shown: Sequence[str] = ONLY_WHEN_SHOWN,
                  only_raising: Sequence[str] = ONLY_RAISING,
                  chosen_timing: Sequence[str] = CHOSEN_TIMING,
                  operator_evidence: Sequence[str] = OPERATOR_EVIDENCE) -> float:
    """The campaign score from its signal values (see the module docstring).

    ``spread * diversity * value_gate(training_value) * (1 - reruns) * weighted mean of the behavioural
    signals``. A signal
    that is ``None`` does not apply and is left out of the weighted mean, except those named in
    ``missing_as_zero``, which count as 0 (no evidence found); those named in ``only_when_shown`` are left out
    at 0 too (they only add evidence), and those named in ``only_raising`` wherever they would lower the mean.
    Where any of ``operator_evidence`` is above 0, the ``chosen_timing`` signals are treated as
    ``only_when_shown`` (and not as ``missing_as_zero``).
    """
    if timing_is_chosen(values, operator_evidence):
        missing_as_zero = [n for n in missing_as_zero if n not in chosen_timing]
        only_when_shown = (*only_when_shown, *chosen_timing)
    num = den = 0.0
    raising = []
    for name, w in weights.items():
        v = values.get(name)
        if v is None and name in missing_as_zero:
            v = 0.0
        if v is None or w <= 0 or (name in only_when_shown and v <= 0):
            continue
        if name in only_raising:
            raising.append((float(v), w))
            continue
        num += w * float(v)
        den += w
    for v, w in sorted(raising, reverse=True):  # the highest first: each only where it raises the mean
        if v > 0 and (den <= 0 or v > num / den):
            num += w * v
            den += w
    behaviour = num / den if den > 0 else 0.0
    gate = float(values.get("spread") or 0.0) * float(values.get("diversity") or 0.0) * value_gate(
        values.get("training_value"), value_full) * (1.0 - float(values.get("reruns") or 0.0))
    return float(np.clip(gate * behaviour, 0.0, 1.0))


def timing_is_chosen(values: Mapping[str, float | None], operator_evidence: Sequence[str] = OPERATOR_EVIDENCE) -> bool:
    """Whether a group's timing only adds evidence (:data:`CHOSEN_TIMING`): any operator evidence above 0."""
    return any(float(values.get(name) or 0.0) > 0 for name in operator_evidence)


def value_gate(training_value: float | None, value_full: float = ScoringConfig.value_full) -> float:
    """The training-value gate in [0, 1]: ``training_value / value_full``, capped at 1.

    ``None`` (not judged: text in a script or language the embedding model does not read) leaves the gate open (1).
    """
    if training_value is None or value_full <= 0:
        return 1.0
    return float(np.clip(training_value / value_full, 0.0, 1.0))


def find_campaigns(
    requests: pd.DataFrame,
    clusters: Mapping[int, ClusterInfo],
    config: ScoringConfig | None = None,
    texts_for: Callable[[Sequence[str]], Mapping[str, str]] | None = None,
    signals: sig.SignalParams | None = None,
    evidence: EvidenceParams | None = None,
) -> CampaignResult:
    """Group, score and explain campaigns.

    Parameters
    ----------
    requests : DataFrame
        One row per request: ``account_id, ts (datetime64 UTC), prompt_hash, cluster_id`` (-1 = noise) and
        the optional identifier columns ``model, ip, user_agent, api_key_id, org_id, payment_id``.
        ``cluster_id`` is the cluster a request's prompt is attributed to. Optional ``intent`` and
        ``intent_similarity`` (per prompt) give the training-value signal per request.
    clusters : mapping of cluster id to :class:`ClusterInfo`
    config : ScoringConfig
    texts_for : function from prompt hashes to their texts (templates and example prompts).
    signals : SignalParams (thresholds of the signal functions)
    evidence : EvidenceParams (cut-offs of the evidence sentences and labels)
    """
    config = config or ScoringConfig()
    signals = signals or sig.DEFAULTS
    evidence = evidence or EvidenceParams()
    req = _scoring_frame(requests, signals)
    account_total = req.groupby("account_id").size()
    ctx = _context(req, account_total, clusters, config, texts_for or (lambda hashes: {}), signals, evidence)
    req = req[[c for c in GROUPING_COLUMNS if c in req]]
    if "intent_similarity" in req:
        req = req.assign(capability=_reads_as_capability(req, config, signals), loose=req["cluster_id"].lt(0))
        ctx.account_capability = req["capability"].groupby(req["account_id"]).sum().astype(np.int64)
        loose_kind = req["capability"].to_numpy() & req["loose"].to_numpy() & req["intent"].notna().to_numpy()
        cap = req.loc[loose_kind, ["account_id", "intent"]]
        ctx.account_kind_capability = {str(kind): g.groupby("account_id").size().astype(np.int64)
                                       for kind, g in cap.groupby("intent")}
    infra = infra_communities(ctx.id_pairs, ctx.principal_of, config.infra_link_min_principals)
    prompt_accounts = _prompt_accounts(req) if len(req) else None
    resent = _resent_pairs(req, config, pairs=prompt_accounts)
    # A pool's account shares its samples with members whether or not each reads as capability work (a
    # censorship pool's bare questions do not): for partial scores, several re-sent prompts of any kind count too.
    shared = _resent_pairs(req, config, capability=False, pairs=prompt_accounts)
    del prompt_accounts
    community = with_samplers(infra, sampler_pairs(req, ctx.principal_of, config, resent))
    ctx.samplers = frozenset(community.index.difference(infra.index))
    req, ctx.clusters = community_units(req, community, ctx.clusters, config, signals, ctx.texts_for)
    ctx.community_units = frozenset(set(ctx.clusters) - set(clusters))
    before_pools = set(ctx.clusters)
    req, ctx.clusters = wrapper_pool_units(req, ctx.clusters, config, signals, ctx.texts_for)
    ctx.pool_units = frozenset(set(ctx.clusters) - before_pools)
    ctx.clusters = unit_template_coverage(req, ctx.clusters, ctx.texts_for, config, signals)
    ac = req.groupby(["account_id", "cluster_id"]).size().rename("n").reset_index()
    ctx.wrapper_units = frozenset(wrapper_units(req, ctx.clusters, config, signals))
    groups = group_clusters(ac, account_total, config, community, ctx.community_units | ctx.pool_units,
                            ctx.wrapper_units)
    groups = [groups[i] for i in _candidate_groups(groups, ac, account_total, config)]
    campaign_rows, account_rows, partial_rows, cluster_campaign = _score_groups(groups, req, ctx)
    campaigns = pd.DataFrame(campaign_rows, columns=[
        "campaign_id", "score", "flagged", "label", "kind", "keywords", "template", "n_accounts",
        "n_requests", "first_seen", "last_seen", "clusters", "signals", "evidence", "examples"])
    if len(campaigns):
        campaigns = campaigns.sort_values(["score", "n_requests", "campaign_id"], ascending=[False, False, True])
        campaigns = campaigns.drop_duplicates("campaign_id").reset_index(drop=True)
    campaigns.insert(1, "rank", np.arange(1, len(campaigns) + 1))
    kept = set(campaigns["campaign_id"])
    camp_acc = pd.DataFrame(account_rows, columns=["campaign_id", "account_id", "n_requests", "share", "score", "evidence"])
    camp_acc = camp_acc[camp_acc["campaign_id"].isin(kept)]
    partial = pd.DataFrame(partial_rows, columns=["account_id", "campaign_id", "partial"])
    partial = partial[partial["campaign_id"].isin(kept)]
    scores = campaigns.set_index("campaign_id")["score"]
    # Capability samples count from one shared prompt; prompts of any kind from several (an ordinary customer's one
    # request can be a member's ordinary one).
    samples = [_sample_partials(resent, req, camp_acc, scores, config),
               _sample_partials(shared, req, camp_acc, scores, config, min_shared=config.partial_min_shared_prompts)]
    samples = [frame for frame in samples if len(frame)]
    if samples:
        partial = pd.concat([partial, *samples], ignore_index=True)
    accounts = _account_table(req, account_total, camp_acc, ac[ac["cluster_id"].isin(list(clusters))], partial)
    return CampaignResult(campaigns, camp_acc.reset_index(drop=True), accounts, cluster_campaign)


def _scoring_frame(requests: pd.DataFrame, signals: sig.SignalParams) -> pd.DataFrame:
    """The requests with what scoring reads: epoch seconds ``t``, every identifier column (missing ones as
    nulls), the IP's ``subnet`` and an integer account code ``acode``."""
    req = requests.copy()
    req["t"] = (req["ts"].astype("datetime64[us, UTC]").astype("int64") // 1_000_000).astype(np.int64)
    for col in ("model", "ip", "user_agent", "api_key_id", "org_id", "payment_id"):
        if col not in req:
            req[col] = None
    ip_code, ips = pd.factorize(req["ip"])
    nets = np.asarray([None, *sig.subnets([str(ip) for ip in ips], signals.subnet_prefix_v4, signals.subnet_prefix_v6)],
                      dtype=object)
    req["subnet"] = nets[ip_code + 1]  # code -1 (no address) -> None
    req["acode"] = pd.Categorical(req["account_id"]).codes.astype(np.int64)
    return req


def _reads_as_capability(req: pd.DataFrame, config: ScoringConfig, signals: sig.SignalParams) -> np.ndarray:
    """Per request, whether it reads as capability work for focus (``focus_capability_value``): training value
    at least that, or not judged (its prompt in a script or language the embedding model does not read)."""
    if config.focus_capability_value > 1:
        return np.zeros(len(req), dtype=bool)
    sims = req["intent_similarity"].to_numpy(dtype=np.float64, na_value=np.nan)
    judged = ~np.isnan(sims)
    tv = sig.training_values(np.where(judged, sims, 0.0), signals.training_value_low, signals.training_value_high)
    return ~judged | (tv >= config.focus_capability_value)


@dataclass(frozen=True)
class _ResentPairs:
    """Each (re-sent capability prompt, account) once: prompt code, account code (``acode``) and a request row of
    the pair (its prompt hash is read there: no copy of every hash is held), per pair; every account's number of
    distinct prompts by ``acode``."""

    prompt: np.ndarray
    account: np.ndarray
    row: np.ndarray
    n_prompts: np.ndarray


@dataclass(frozen=True)
class _PromptAccounts:
    """Each (prompt, account) pair of the requests once: its key ``prompt code * width + account code``, a
    request row of it, and every account's number of distinct prompts by ``acode``."""

    key: np.ndarray
    row: np.ndarray
    width: int
    n_hashes: int
    n_prompts: np.ndarray


def _prompt_accounts(req: pd.DataFrame) -> _PromptAccounts:
    """:class:`_PromptAccounts` of ``req`` (``acode``, ``prompt_hash``)."""
    acode = req["acode"].to_numpy()
    width = int(acode.max()) + 1
    pcode, hashes = pd.factorize(req["prompt_hash"])
    n_hashes = len(hashes)
    del hashes
    pair_key, first = np.unique(pcode.astype(np.int64) * width + acode, return_index=True)  # each (prompt, account)
    return _PromptAccounts(pair_key, first, width, n_hashes, np.bincount(pair_key % width, minlength=width))


def _resent_pairs(req: pd.DataFrame, config: ScoringConfig, capability: bool = True,
                  pairs: _PromptAccounts | None = None) -> _ResentPairs | None:
    """The identical capability prompts (with ``capability`` False: any prompts) that two to
    ``operator_prompt_max_accounts`` accounts send, each with its senders, in distinct prompts throughout (a
    customer retrying one question is not sampling, nor is an operator that asks for several samples from one
    account sampling less); None when there are none or it is off. ``pairs``: ``req``'s :func:`_prompt_accounts`,
    when already taken."""
    if config.operator_prompt_max_accounts < 2 or "capability" not in req or not len(req):
        return None
    if pairs is None:
        pairs = _prompt_accounts(req)
    width, n_hashes, n_prompts = pairs.width, pairs.n_hashes, pairs.n_prompts
    pair_key, first = pairs.key, pairs.row
    if capability:
        cap = req["capability"].to_numpy()[first]
        pair_key, first = pair_key[cap], first[cap]
    senders = np.bincount(pair_key // width, minlength=n_hashes)[pair_key // width]
    resent = (senders >= 2) & (senders <= config.operator_prompt_max_accounts)
    if not resent.any():
        return None
    pair_key = pair_key[resent]
    return _ResentPairs(prompt=pair_key // width, account=pair_key % width, row=first[resent], n_prompts=n_prompts)


def _sample_partials(pairs: _ResentPairs | None, req: pd.DataFrame, camp_acc: pd.DataFrame, scores: pd.Series,
                     config: ScoringConfig, min_shared: int = 1) -> pd.DataFrame:
    """Partial scores (rows ``account_id, campaign_id, partial``) of accounts that send the samples of a
    campaign's members without being one: ``score * partial_score_factor * share ** partial_score_exponent``,
    ``share`` the part of the account's distinct prompts that are re-sent prompts (``pairs``: capability ones, or
    any) a member of the campaign also sends, where it shares ``min_shared`` or more. A bare account of a pool
    whose few requests fell in no unit ranks above customers who never met the campaign, as an account touching
    its units does; it is not a member and is not flagged."""
    out = pd.DataFrame({"account_id": [], "campaign_id": [], "partial": []})
    if pairs is None or camp_acc.empty:
        return out
    acc_codes, acodes = pd.factorize(pairs.account)
    accounts = pd.Index(req["account_id"].iloc[pairs.row[np.unique(acc_codes, return_index=True)[1]]]
                        .to_numpy(dtype=object))
    n_acc, n_prompt = len(accounts), int(pairs.prompt.max()) + 1
    sends = sp.csr_matrix((np.ones(len(acc_codes)), (acc_codes, pairs.prompt)), shape=(n_acc, n_prompt))
    members = camp_acc[camp_acc["account_id"].isin(accounts)]
    if members.empty:
        return out
    camp_codes, campaigns = pd.factorize(members["campaign_id"])
    member_of = sp.csr_matrix((np.ones(len(members)), (camp_codes, accounts.get_indexer(members["account_id"]))),
                              shape=(len(campaigns), n_acc))
    theirs = (member_of @ sends).astype(bool).astype(np.float64)  # campaigns x prompts its members send
    shared = (sends @ theirs.T).tocoo()  # accounts x campaigns: prompts in common
    is_member = np.asarray(member_of.T.tocsr()[shared.row, shared.col]).ravel() > 0
    keep = ~is_member & (shared.data >= min_shared)
    row, col, k = shared.row[keep], shared.col[keep], shared.data[keep]
    if not len(row):
        return out
    n_prompts = pairs.n_prompts[np.asarray(acodes)][row]
    score = scores.reindex(campaigns).to_numpy()[col]
    partial = score * config.partial_score_factor * (k / n_prompts) ** config.partial_score_exponent
    return pd.DataFrame({"account_id": accounts[row], "campaign_id": campaigns[col], "partial": partial})


def sampler_pairs(req: pd.DataFrame, principal_of: pd.Series, config: ScoringConfig,
                  resent: _ResentPairs | None = None) -> pd.DataFrame:
    """Rows ``field`` ("prompt"), ``value`` (a prompt hash), ``account_id``: the re-sent capability prompts that
    link samplers of different customers (``sampler_min_share``; how they join communities: :func:`with_samplers`).
    ``req`` needs ``acode``, ``prompt_hash`` and ``capability``; ``resent``: its :func:`_resent_pairs`, when
    already taken."""
    empty = pd.DataFrame({"field": [], "value": [], "account_id": []}, dtype=object)
    if config.sampler_min_share > 1:
        return empty
    pairs = resent if resent is not None else _resent_pairs(req, config)
    if pairs is None:
        return empty
    n_resent = np.bincount(pairs.account, minlength=len(pairs.n_prompts))
    sampler = (n_resent >= config.sampler_min_prompts) & (n_resent >= config.sampler_min_share * pairs.n_prompts)
    keep = sampler[pairs.account]
    if not keep.any():
        return empty
    rows = pairs.row[keep]  # only these rows' strings are taken, never a whole column's
    out = pd.DataFrame({"field": "prompt", "value": req["prompt_hash"].iloc[rows].to_numpy(dtype=object),
                        "account_id": req["account_id"].iloc[rows].to_numpy(dtype=object)})
    # A prompt links when two or more customers' samplers send it (one organisation's seats are one customer).
    principal = principal_of.reindex(out["account_id"]).to_numpy()
    n_principals = pd.Series(principal).groupby(out["value"].to_numpy()).nunique()
    return out[out["value"].map(n_principals).to_numpy() >= 2].reset_index(drop=True)


def identifier_pairs(req: pd.DataFrame) -> pd.DataFrame:
    """Which account uses which identifier value: rows ``field, value, account_id`` over ``INFRA_FIELDS``
    (each pair once, empty values left out), for the infrastructure signal and the community link."""
    acode, names = pd.factorize(req["account_id"])  # on the column as it is: no Python string per request
    acode = acode.astype(np.int64)
    names = np.asarray(names, dtype=object)
    pair_frames = []
    for f in INFRA_FIELDS:
        # each (account, value) pair once, at its first row (drop_duplicates on integer codes, in arrays)
        vcode, values = pd.factorize(req[f])
        values = np.asarray(values.astype(str), dtype=object)
        nonempty = np.fromiter((len(v) > 0 for v in values), dtype=bool, count=len(values))
        rows = np.flatnonzero(vcode >= 0)
        rows = rows[nonempty[vcode[rows]]]
        _, first = np.unique(acode[rows] * (len(values) + 1) + vcode[rows], return_index=True)
        rows = np.sort(rows[first])
        pair_frames.append(pd.DataFrame({"field": f, "value": values[vcode[rows]], "account_id": names[acode[rows]]}))
    # Plain object columns: every group takes its accounts' rows, and taking rows of Arrow-backed strings one
    # group at a time was a quarter of the score stage at 1M requests (1,149 groups: 70 s -> 53 s).
    return pd.concat(pair_frames, ignore_index=True).astype(object)


def _context(req: pd.DataFrame, account_total: pd.Series, clusters: Mapping[int, ClusterInfo],
             config: ScoringConfig, texts_for: Callable[[Sequence[str]], Mapping[str, str]],
             signals: sig.SignalParams, evidence: EvidenceParams) -> _Context:
    """The workspace-wide facts every group is scored against: identifier usage, principals, model releases
    and the traffic inside their windows, the sync baseline."""
    id_pairs = identifier_pairs(req)
    infra_applicable = any((id_pairs["field"] == f).any() for f in INFRA_FIELDS)
    releases = sig.new_model_releases(pd.DataFrame({"ts": req["t"], "model": req["model"]}),
                                      signals.release_grace_hours, signals.release_min_requests)
    # Only traffic inside a release window matters for the pivot signal: keep that slice once.
    t = req["t"].to_numpy()
    in_window = np.zeros(len(req), dtype=bool)
    for t0 in releases.values():
        in_window |= (t >= t0) & (t < t0 + signals.pivot_window_hours * 3600)
    window_req = req.loc[in_window, ["account_id", "t", "model"]]
    return _Context(config, clusters, texts_for, account_total, id_pairs, infra_applicable,
                    releases, window_req, _null_activity_similarity(req, config), principals(req), signals, evidence)


def _score_groups(groups: list[list[int]], req: pd.DataFrame, ctx: _Context
                  ) -> tuple[list[dict], list[dict], list[dict], dict[int, str]]:
    """Score every candidate group, one campaign per operator in it: campaign rows, member rows, partial rows
    and the campaign each cluster belongs to (its largest operator's)."""
    config = ctx.config
    group_of = {c: i for i, group in enumerate(groups) for c in group}
    rows = np.flatnonzero(req["cluster_id"].isin(group_of.keys()).to_numpy())
    group_ids = pd.Series(req["cluster_id"].to_numpy()[rows]).map(group_of).to_numpy()
    order = np.argsort(group_ids, kind="stable")
    rows = rows[order]  # the grouped requests' positions in ``req``, group after group, in ``req`` order within one
    bounds = np.searchsorted(group_ids[order], np.arange(len(groups) + 1))
    # Members and operators are chosen on a few columns; only an operator's own requests are taken with every
    # column (:func:`_score_group`). At the incident's size (the agentic pool's group: 20,800 accounts, 6.4M of
    # their requests) a copy of every grouped request with every column, beside the operator's own, was most of
    # the 3 GB that this and the contiguous read (:func:`analyzer.workspace.arrow_frame`) took off the peak.
    slim = req[[c for c in GROUP_COLUMNS if c in req]].iloc[rows]
    full = pd.factorize(req["prompt_hash"])[0]
    prompt_code, prompt_senders = _sample_codes(req, rows, config, full)
    popular_code = _popular_codes(full[rows], req["acode"].to_numpy()[rows], config.operator_prompt_max_accounts)
    campaign_rows, account_rows, partial_rows = [], [], []
    cluster_campaign: dict[int, str] = {}
    for i, group in enumerate(groups):
        greq = slim.iloc[bounds[i] : bounds[i + 1]]
        members, extra_members, per_acc, joiners = _members(greq, ctx)
        if not members or (len(members) < config.min_candidate_accounts
                           and per_acc.reindex(members).sum() < config.min_single_account_requests):
            continue
        operators, by_prompts, copying = _operators(members, greq, prompt_code[bounds[i] : bounds[i + 1]], ctx,
                                                    popular_code[bounds[i] : bounds[i + 1]])
        # Wrapper joiners are listed only where the group is one operator's: a single request says nothing of
        # which of two operators sharing the group's wrappers an account would belong to.
        joiners = joiners if len(operators) == 1 else []
        for op_members, copies in zip(operators, copying, strict=True):
            theirs = greq["account_id"].isin(set(op_members)).to_numpy()
            mreq = req.iloc[rows[bounds[i] : bounds[i + 1]][theirs]]
            codes, accounts = prompt_code[bounds[i] : bounds[i + 1]][theirs], greq["account_id"].to_numpy()[theirs]
            samples = _samples_across(codes, accounts)[0]
            # The samples signal counts the operator's own samples (no one outside it sends them: a public prompt
            # that several customers copy is sent by others too) and customers (seats of one organisation
            # re-sending their own test set count once), and the accounts that send them.
            across = (_samples_across(_own_prompts(codes, accounts, prompt_senders), accounts,
                                      ctx.principal_of.reindex(accounts).to_numpy()) if samples else (0, 0))
            row, member_rows, partial = _score_group(group, mreq, op_members, extra_members, per_acc, ctx,
                                                     n_operators=len(operators), joiners=joiners,
                                                     by_prompts=by_prompts, samples=(samples, across),
                                                     copying="self" if copies else "others" if any(copying) else "")
            campaign_rows.append(row)
            account_rows += member_rows
            partial_rows += partial
            for c in group:  # the largest operator (scored first) names the cluster's campaign
                cluster_campaign.setdefault(int(c), row["campaign_id"])
    # Example prompts: one read of every campaign's sample (one query per campaign was a tenth of the stage at 1M)
    texts = ctx.texts_for(sorted({h for row in campaign_rows for h in row["examples"]})) if campaign_rows else {}
    for row in campaign_rows:
        row["examples"] = [texts[h] for h in row["examples"] if h in texts]
    return campaign_rows, account_rows, partial_rows, cluster_campaign


@dataclass
class _Context:
    """Workspace-wide facts every group is scored against."""

    config: ScoringConfig
    clusters: Mapping[int, ClusterInfo]
    texts_for: Callable[[Sequence[str]], Mapping[str, str]]
    account_total: pd.Series
    id_pairs: pd.DataFrame
    infra_applicable: bool
    releases: dict[str, int]
    window_req: pd.DataFrame
    null_similarity: float
    principal_of: pd.Series  # account id -> principal (its organisation, else the account itself)
    signals: sig.SignalParams = sig.DEFAULTS
    #: ids of the infrastructure communities' unclustered work (see :func:`community_units`)
    community_units: frozenset[int] = frozenset()
    #: ids of the unclustered requests sharing wrapper sentences (see :func:`wrapper_pool_units`)
    pool_units: frozenset[int] = frozenset()
    #: ids of the capability wrappers (see :func:`wrapper_units`)
    wrapper_units: frozenset[int] = frozenset()
    #: accounts in a community only through the capability prompts they re-send (see :func:`with_samplers`)
    samplers: frozenset[str] = frozenset()
    #: requests per account that read as a capability (see ``focus_capability_value``; empty: not known)
    account_capability: pd.Series = field(default_factory=lambda: pd.Series(dtype=np.int64))
    #: per capability intent, requests per account in no cluster that read as that capability (empty: not known)
    account_kind_capability: dict[str, pd.Series] = field(default_factory=dict)
    evidence: EvidenceParams = field(default_factory=EvidenceParams)

    def __post_init__(self) -> None:
        # Row positions per account in ``id_pairs`` and ``window_req``: a group's rows are looked up through
        # its accounts instead of scanning the whole workspace's rows once per group (at 1M requests those
        # scans were a third of the score stage).
        self._pair_rows = self.id_pairs.groupby("account_id", sort=False).indices
        self._window_rows = self.window_req.groupby("account_id", sort=False).indices
        self._window_t = self.window_req["t"].to_numpy()
        self._window_model = self.window_req["model"].to_numpy(dtype=object)
        self._window_total = sig.window_counts(self._window_t, self._window_model, self.releases,
                                               self.signals.pivot_window_hours)
        # Each identifier value as an integer, in (field, value) order, with its holders in the workspace (each
        # row of ``id_pairs`` is one account's use of one value) and each row's principal as an integer: what
        # :func:`_evidence_values` counts, group after group, in arrays.
        pairs = self.id_pairs
        self.value_code = (pairs.groupby(["field", "value"], sort=True).ngroup().to_numpy(dtype=np.int64)
                           if len(pairs) else np.zeros(0, dtype=np.int64))
        _, first, self.value_holders = np.unique(self.value_code, return_index=True, return_counts=True)
        self.value_field = pairs["field"].to_numpy(dtype=object)[first]
        self.value_text = pairs["value"].to_numpy(dtype=object)[first]
        self.pair_principal = pd.factorize(self.principal_of.reindex(pairs["account_id"]).to_numpy())[0]

    def pair_rows(self, accounts: Collection[str]) -> np.ndarray:
        """Sorted positions in ``id_pairs`` of the rows of ``accounts``."""
        return _rows_of(self._pair_rows, accounts)

    def pairs_of(self, accounts: Collection[str]) -> pd.DataFrame:
        """The ``id_pairs`` rows of ``accounts``, in table order (``id_pairs[account_id.isin(accounts)]``)."""
        return self.id_pairs.iloc[self.pair_rows(accounts)]

    def window_counts_without(self, accounts: Collection[str]) -> dict[str, tuple[int, int]]:
        """:func:`analyzer.signals.window_counts` of the ``window_req`` rows of every account but ``accounts``:
        everyone's counts minus those accounts' (a group's pivot baseline, without copying the window's rows)."""
        rows = _rows_of(self._window_rows, accounts)
        theirs = sig.window_counts(self._window_t[rows], self._window_model[rows], self.releases,
                                   self.signals.pivot_window_hours)
        return {m: (n - theirs[m][0], on - theirs[m][1]) for m, (n, on) in self._window_total.items()}


def _rows_of(positions: Mapping[str, np.ndarray], accounts: Collection[str]) -> np.ndarray:
    """The sorted row positions of ``accounts`` in a table whose rows by account are ``positions``."""
    found = [positions[a] for a in accounts if a in positions]
    return np.sort(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)


def principals(req: pd.DataFrame) -> pd.Series:
    """The customer behind each account: ``"org:<org_id>"`` (its most frequent organisation), else
    ``"account:<account_id>"``.

    Seats of one organisation are one paying customer: many of them working one templated workload is a
    product integration, not many accounts. The spread gate counts principals, and identifiers count as
    evidence only when shared across principals.
    """
    accounts = pd.Index(req["account_id"].unique())
    out = pd.Series("account:" + accounts.astype(str), index=accounts)
    if "org_id" in req:
        orgs = req[["account_id", "org_id"]].dropna()
        orgs = orgs[orgs["org_id"].astype(str).str.len() > 0]
        if len(orgs):
            top = orgs.groupby(["account_id", "org_id"]).size().sort_values(ascending=False)
            top = top.reset_index().drop_duplicates("account_id").set_index("account_id")["org_id"]
            out.loc[top.index] = "org:" + top.astype(str)
    return out


def _holders(ctx: _Context, accounts: set[str], shared: list[sig.SharedValue]) -> pd.DataFrame:
    """Rows ``field, value, account_id`` of ``accounts`` that hold one of the ``shared`` identifier values."""
    if not shared or not accounts:
        return ctx.id_pairs.iloc[:0]
    sub = ctx.pairs_of(accounts)
    keys = pd.MultiIndex.from_tuples([(s.field, s.value) for s in shared])
    return sub[pd.MultiIndex.from_frame(sub[["field", "value"]]).isin(keys)]


def _candidate_groups(groups: list[list[int]], account_cluster: pd.DataFrame, account_total: pd.Series,
                      config: ScoringConfig) -> np.ndarray:
    """Indices of the groups that can have members, found for all groups at once.

    A group needs core members (``member_share`` of their own traffic in it, ``member_min_requests``), and a
    single core account needs ``min_single_account_requests``: at scale most groups are small organic topics
    with neither, and skipping them here saves scoring tens of thousands of groups one by one. Groups kept
    are exactly those :func:`_score_group` would not drop for lack of members.
    """
    if not groups:
        return np.zeros(0, dtype=np.int64)
    group_of = pd.Series({c: i for i, group in enumerate(groups) for c in group})
    ac = account_cluster[account_cluster["cluster_id"].isin(group_of.index)]
    per = ac.assign(g=group_of.reindex(ac["cluster_id"]).to_numpy()).groupby(["g", "account_id"])["n"].sum()
    share = per / account_total.reindex(per.index.get_level_values("account_id")).to_numpy()
    core = per[(share >= config.member_share) & (per >= config.member_min_requests)]
    n_core = core.groupby(level="g").size()
    core_requests = core.groupby(level="g").sum()
    ok = (n_core >= config.hydra_min_core) | ((n_core >= config.min_candidate_accounts)
                          | (core_requests >= config.min_single_account_requests))
    return np.sort(n_core.index[ok.to_numpy()].to_numpy().astype(np.int64))


def _members(greq: pd.DataFrame, ctx: _Context) -> tuple[list[str], set[str], pd.Series, list[str]]:
    """``(members, joined_by_infrastructure, requests per account in the group, wrapper joiners)``.

    Members hold ``member_share`` of their own traffic in the group; accounts below that share join when they
    hold an identifier concentrated among those core members (hydra accounts). *Wrapper joiners* (not among the
    members) hold ``joiner_min_share`` of their traffic in the group with fewer than ``member_min_requests``
    requests, all of them in capability wrappers (:func:`wrapper_units`): a pool account's first request in
    the operator's own wrapper. They are listed with the campaign, not measured in its signals.
    """
    config = ctx.config
    per_acc = greq.groupby("account_id").size()
    accounts, n = per_acc.index, per_acc.to_numpy()  # arrays: a group is scored for every few requests
    share = n / ctx.account_total.reindex(accounts).to_numpy()
    core = set(accounts[(share >= config.member_share) & (n >= config.member_min_requests)])
    extra: set[str] = set()
    joiners: list[str] = []
    if len(core) >= config.hydra_min_core:
        cand = set(accounts[(n >= config.infra_member_min_requests) & ~accounts.isin(core)])
        shared = _evidence_values(ctx, core, around=cand)
        extra = set(_holders(ctx, cand, shared)["account_id"])
        loose = accounts[(share >= config.joiner_min_share) & ~accounts.isin(core | extra)]
        if ctx.wrapper_units and len(loose) and greq["cluster_id"].isin(ctx.wrapper_units).any():
            joiners = _wrapper_joiners(greq, loose, core | extra, ctx)
    return sorted(core | extra), extra, per_acc, joiners


def _wrapper_joiners(greq: pd.DataFrame, candidates: pd.Index, members: set[str], ctx: _Context) -> list[str]:
    """The ``candidates`` (accounts outside ``members`` with ``joiner_min_share`` of their traffic in the group)
    whose every request in it is in capability wrappers of which ``joiner_unit_pool_share`` of the accounts are
    the pool's (members, or in two or more of the group's units): see :func:`_members`."""
    pairs = greq[["account_id", "cluster_id"]].drop_duplicates()
    share = _pool_share(pairs, np.zeros(len(pairs), dtype=np.int64), members)
    units = set(share.index[share.to_numpy() >= ctx.config.joiner_unit_pool_share]) & ctx.wrapper_units
    in_pool_units = greq["cluster_id"].isin(units).groupby(greq["account_id"]).all()
    return sorted(a for a in candidates if in_pool_units[a])


def _pool_share(pairs: pd.DataFrame, group: np.ndarray, members: Collection[str] = ()) -> pd.Series:
    """Per unit of ``pairs`` (distinct rows ``account_id, cluster_id``), the share of its accounts that are the
    pool's: in ``members``, or in two or more units of their row's ``group`` (a group of units per row)."""
    breadth = pairs.groupby([pairs["account_id"].to_numpy(), group])["cluster_id"].transform("size").to_numpy()
    pool = (breadth >= 2) | pairs["account_id"].isin(members).to_numpy()
    return pd.Series(pool).groupby(pairs["cluster_id"].to_numpy()).mean()


def _evidence_values(ctx: _Context, accounts: set[str], around: set[str] | None = None) -> list[sig.SharedValue]:
    """Identifier values concentrated among ``accounts`` and held by two or more principals (customers).

    A value shared only by the seats of one organisation (its egress block, its system prompt) explains their
    likeness instead of proving an operator behind them. With ``around`` (the other accounts working in the
    group), a value is concentrated among ``accounts`` and ``around`` together, and still needs
    ``infra_min_accounts`` holders among ``accounts``: a fresh pool's two proxy blocks, held by its ten
    accounts and nobody else, of which four have sent two requests in the group so far.
    """
    # :func:`analyzer.signals.concentrated_values` over ``accounts | around``, in the arrays of ``ctx`` (one row of
    # ``id_pairs`` is one account holding one value: counting rows counts holders).
    sigp = ctx.signals
    values, n = np.unique(ctx.value_code[ctx.pair_rows(accounts | (around or set()))], return_counts=True)
    total = ctx.value_holders[values]
    keep = sig.concentrated(n, total, sigp.infra_min_accounts, sigp.infra_min_concentration)
    if around and keep.any():  # and held by ``infra_min_accounts`` of ``accounts`` themselves
        core_values, core_n = np.unique(ctx.value_code[ctx.pair_rows(accounts)], return_counts=True)
        in_core = np.zeros(len(values), dtype=np.int64)
        found = np.isin(values, core_values)
        in_core[found] = core_n[np.searchsorted(core_values, values[found])]
        keep &= in_core >= sigp.infra_min_accounts
    values, n, total = values[keep], n[keep], total[keep]
    if not len(values):
        return []
    # held by ``evidence_min_principals`` customers among ``accounts``
    held = ctx.pair_rows(accounts)
    held = held[np.isin(ctx.value_code[held], values) & (ctx.pair_principal[held] >= 0)]
    pv = np.unique(np.stack([ctx.value_code[held], ctx.pair_principal[held]]), axis=1)[0]
    principals_per = np.searchsorted(pv, values, side="right") - np.searchsorted(pv, values, side="left")
    ok = principals_per >= ctx.config.evidence_min_principals
    order = np.lexsort((values[ok], -n[ok]))  # most holders first, then (field, value) order
    values, n, total = values[ok][order], n[ok][order], total[ok][order]
    return [sig.SharedValue(str(ctx.value_field[v]), str(ctx.value_text[v]), int(k), int(t))
            for v, k, t in zip(values, n, total, strict=True)]


def _n_principals(members: list[str], ctx: _Context, shared: list[sig.SharedValue]) -> int:
    """Distinct customers among ``members``: seats of one organisation count once, unless that organisation
    shares evidence identifiers (a payment method, a proxy subnet) with other customers in the group, which
    makes it one of several linked shells rather than an independent customer."""
    principal = ctx.principal_of.reindex(members)
    if shared:
        holders = _holders(ctx, set(members), shared)
        linked = set(principal.reindex(holders["account_id"]).dropna())
        principal = principal.where(~principal.isin(linked), "account:" + principal.index.to_series())
    return int(principal.nunique())


def _hour_counts(mreq: pd.DataFrame, members: list[str], kernel: Sequence[float]) -> np.ndarray:
    """Hour-of-day request counts of ``members`` (rows x 24), smoothed over neighbouring hours with the weights
    ``kernel`` (odd length, centred on the hour)."""
    codes = pd.Categorical(mreq["account_id"], categories=members).codes
    hours = ((mreq["t"].to_numpy() // 3600) % 24).astype(np.int64)
    prof = np.zeros((len(members), 24))
    np.add.at(prof, (codes, hours), 1.0)
    half = len(kernel) // 2
    return sum(w * np.roll(prof, o, axis=1) for o, w in zip(range(-half, half + 1), kernel, strict=True))


def _unit_rows(m: np.ndarray) -> np.ndarray:
    """``m`` with each non-zero row scaled to length 1."""
    norm = np.linalg.norm(m, axis=-1, keepdims=True)
    return m / np.where(norm > 0, norm, 1.0)


def _hour_profiles(mreq: pd.DataFrame, members: list[str], kernel: Sequence[float]) -> np.ndarray:
    """Unit hour-of-day activity profiles of ``members`` (rows), smoothed as :func:`_hour_counts`."""
    return _unit_rows(_hour_counts(mreq, members, kernel))


def _work_profiles(mreq: pd.DataFrame, members: list[str], copies: np.ndarray | None = None) -> sp.csr_matrix:
    """The work the members do (sparse, members x units, unit rows): their requests' distributions over the
    group's units; the cosine of two rows is how alike their work is. With ``copies`` (per request: a copy of a
    popular text, :func:`_copiers`), copies and a unit's other requests count as two kinds of work.

    Units rather than intents: a padded prompt's intent reads the padding as much as the instruction, so two
    pools padding with the same documents look alike by intent, while their wrappers keep them in their own
    units.
    """
    codes = pd.Categorical(mreq["account_id"], categories=members).codes
    unit = mreq["cluster_id"].to_numpy().astype(np.int64)
    units, ucodes = np.unique(unit if copies is None else 2 * unit + copies, return_inverse=True)
    prof = sp.csr_matrix((np.ones(len(codes)), (codes, ucodes)), shape=(len(members), len(units)))
    prof.sum_duplicates()
    norm = np.sqrt(np.asarray(prof.multiply(prof).sum(axis=1)).ravel())
    return sp.csr_matrix(sp.diags(1.0 / np.maximum(norm, 1e-12)) @ prof)


def _alike_members(hours: np.ndarray, work: sp.csr_matrix, config: ScoringConfig) -> np.ndarray:
    """Which members keep common hours *and* do common work (members x members, bool): cosine of their hour
    profiles ``hours`` at least ``operator_timing_similarity`` and of their ``work`` rows at least
    ``operator_work_similarity``, computed ``operator_block_accounts`` rows at a time."""
    n = len(hours)
    alike = np.zeros((n, n), dtype=bool)
    work_t = work.T.tocsr()  # CSR x CSR: scipy would convert a CSC right side again for every block
    for rows in _row_blocks(n, config.operator_block_accounts):
        timing = hours[rows] @ hours.T >= config.operator_timing_similarity
        alike[rows] = timing & ((work[rows] @ work_t).toarray() >= config.operator_work_similarity)
    return alike


def _infra_components(n: int, incidence: sp.csr_matrix | None) -> np.ndarray:
    """Connected communities of ``n`` members linked through the identifier values they hold (``incidence``:
    members x values), a label per member, numbered in order of first member. The graph of members and values
    has the components of the members x members "shares a value" graph, without building that."""
    from scipy.sparse.csgraph import connected_components

    if incidence is None or incidence.shape[1] == 0:
        return np.arange(n)
    k = incidence.shape[1]
    graph = sp.bmat([[sp.csr_matrix((n, n)), incidence], [incidence.T, sp.csr_matrix((k, k))]], format="csr")
    _, label = connected_components(graph, directed=False)
    _, first, inverse = np.unique(label[:n], return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first, kind="stable"), kind="stable")[inverse]


def _operators(members: list[str], greq: pd.DataFrame, prompt_code: np.ndarray, ctx: _Context,
               popular_code: np.ndarray | None = None) -> tuple[list[list[str]], bool, list[bool]]:
    """Split a group's members into operators: communities linked by shared infrastructure or re-sent
    prompts, or by common hours and common work; and whether re-sent prompts told two of them apart.

    Two accounts are linked when they share an evidence identifier (:func:`_evidence_values`; a user agent only
    when nearly all its holders are the group's: ``operator_agent_concentration``) or send
    ``operator_prompt_min_shared`` identical prompts in common (``prompt_code``: each of ``greq``'s requests'
    prompt as an integer; :func:`_resent_prompts`, :func:`_prompt_links`; one in common only joins a small
    community to a larger one: :func:`_weak_prompt_ties`), or when their
    hour-of-day profiles have cosine ``operator_timing_similarity`` or more *and* their requests over the
    group's units have cosine ``operator_work_similarity`` or more, unless their communities each re-send
    prompts of their own only (:func:`_apart_by_prompts`) or keep different hours once pooled
    (:func:`_apart_by_hours`); members that send nothing in the group but copies of popular texts
    (``popular_code``: each of ``greq``'s requests' popular text as an integer, -1 for none; :func:`_copiers`) are
    linked through the text they copy, and copying counts as work of its own kind; communities that no
    identifier or re-sent prompt ties are then joined where their pooled hours and work agree
    (:func:`_join_untied`). Connected communities of at least ``min_operator_accounts`` accounts are operators;
    with two or more, each becomes a campaign of its own (a relay and an operator on the same task kind are not
    one actor). A smaller community of two or more
    accounts that resemble no account of those (hours and work) is one too; accounts of the other smaller
    communities join the operator whose hours and work they resemble most (:func:`_nearest_operator`). Largest
    operator first. Also which operators are mostly such copiers.
    """
    config = ctx.config
    if len(members) < 2 * config.min_operator_accounts:
        return [members], False, [False]
    theirs = greq["account_id"].isin(set(members)).to_numpy()
    mreq = greq[theirs]
    counts = _hour_counts(mreq, members, config.operator_hour_smoothing)
    unit = _unit_rows(counts)
    inc = None
    shared = [v for v in _evidence_values(ctx, set(members)) if v.field in OPERATOR_FIELDS and (
        v.field != "user_agent" or v.n_group_accounts >= config.operator_agent_concentration * v.n_all_accounts)]
    if shared:
        holders = _holders(ctx, set(members), shared)
        pos = {a: i for i, a in enumerate(members)}
        rows = holders["account_id"].map(pos).to_numpy()
        vcode, _ = pd.factorize(holders["field"] + "\x1f" + holders["value"])
        inc = sp.csr_matrix((np.ones(len(holders)), (rows, vcode)),
                            shape=(len(members), int(vcode.max()) + 1 if len(vcode) else 0))
    member = pd.Categorical(mreq["account_id"], categories=members).codes  # each request's member
    prompt_inc = _resent_prompts(member, prompt_code[theirs], len(members), config)
    links = _prompt_links(prompt_inc, config) if prompt_inc is not None else None
    if links is not None:
        inc = links if inc is None else sp.hstack([inc, links], format="csr")
    copier = _copiers(member, popular_code[theirs], len(members)) if popular_code is not None else None
    if copier is not None:  # the copiers of one popular text are one community; copying is work of its own kind
        copy_inc = _resent_prompts(member, np.where(copier[member], popular_code[theirs], -1), len(members),
                                   replace(config, operator_prompt_max_accounts=len(members)))
        if copy_inc is not None:
            inc = copy_inc if inc is None else sp.hstack([inc, copy_inc], format="csr")
    # Common hours and common work link accounts too: one operator may give each account its own proxy
    # block, and nothing in the identifiers tells that apart from two operators. It takes different
    # infrastructure and either different hours or different work (a chain-of-thought pool and a tool-use
    # pool merged through a shared padding text) to call them two.
    infra = _infra_components(len(members), inc)
    if prompt_inc is not None:
        infra = _weak_prompt_ties(infra, prompt_inc, config.min_operator_accounts, config.operator_block_accounts)
    work = _work_profiles(mreq, members, popular_code[theirs] >= 0 if copier is not None else None)
    alike = _alike_members(unit, work, config)
    kept_apart = (_apart_by_prompts(infra, prompt_inc, member, mreq["t"].to_numpy(), config)
                  if prompt_inc is not None else None)
    comp = _merge_by_behaviour(infra, alike, config.operator_link_share, config.min_operator_accounts,
                               config.operator_block_accounts, kept_apart,
                               lambda pairs: _apart_by_hours(infra, counts, pairs, config))
    comp = _join_untied(comp, infra, unit, work, config)
    sizes = np.bincount(comp)
    is_big = sizes >= config.min_operator_accounts
    # A smaller community of two or more accounts none of which keeps the hours and does the work of an account
    # of a large one is an actor of its own (an eval harness re-running its test set on a few bare accounts),
    # not a part of the operator whose hours happen to be nearest, once each has sent enough to tell.
    reaches_big = alike[:, is_big[comp]].any(axis=1)
    n_requests = mreq.groupby("account_id").size().reindex(members, fill_value=0).to_numpy()
    light = n_requests < config.operator_apart_min_requests
    apart = np.bincount(comp, weights=reaches_big | light, minlength=len(sizes)) == 0
    is_big |= (sizes >= 2) & apart & is_big.any()
    big = np.flatnonzero(is_big)
    if len(big) < 2:
        return [members], False, [False]
    big = big[np.argsort(-sizes[big], kind="stable")]
    owner = np.where(np.isin(comp, big), comp, big[_nearest_operator(unit, work, comp, big)])
    operators = [[a for a, o in zip(members, owner, strict=True) if o == c] for c in big]
    by_prompts = False
    if kept_apart is not None:  # were two of the operators told apart by their re-sent prompts?
        comp_of = np.full(int(infra.max()) + 1, -1)
        comp_of[infra] = np.where(np.isin(comp, big), comp, -1)
        i, j = kept_apart[:, 0], kept_apart[:, 1]
        by_prompts = bool(((comp_of[i] >= 0) & (comp_of[j] >= 0) & (comp_of[i] != comp_of[j])).any())
    copying = [bool(copier is not None and copier[owner == c].sum() > (~copier[owner == c]).sum()) for c in big]
    return operators, by_prompts, copying


def _prompt_links(prompt_inc: sp.csr_matrix, config: ScoringConfig) -> sp.csr_matrix | None:
    """Members x links (sparse, one column per pair of members that send ``operator_prompt_min_shared`` or more of
    the same re-sent prompts, ``prompt_inc``: members x prompts), None when no pair does. Pairs are found a block
    of ``operator_block_accounts`` members at a time (only the pairs kept are held)."""
    n = prompt_inc.shape[0]
    prompt_inc = sp.csr_matrix(prompt_inc, dtype=np.float64)
    by_prompt = prompt_inc.T.tocsr()
    first, second = [], []
    for rows in _row_blocks(n, config.operator_block_accounts):
        shared = (prompt_inc[rows] @ by_prompt).tocoo()
        i = shared.row + rows.start
        keep = (i < shared.col) & (shared.data >= config.operator_prompt_min_shared)
        first.append(i[keep])
        second.append(shared.col[keep])
    i, j = np.concatenate(first), np.concatenate(second)
    if not len(i):
        return None
    pair = np.arange(len(i))
    return sp.csr_matrix((np.ones(2 * len(i)), (np.concatenate([i, j]), np.concatenate([pair, pair]))),
                         shape=(n, len(i)))


def _weak_prompt_ties(infra: np.ndarray, prompt_inc: sp.csr_matrix, min_size: int,
                      block: int = ScoringConfig.operator_block_accounts) -> np.ndarray:
    """Communities (a label per member) after the weak ties: a re-sent prompt that links communities ``infra``
    (members x prompts ``prompt_inc``) though no two accounts of theirs send ``operator_prompt_min_shared`` in
    common. A community of fewer than ``min_size`` accounts joins the larger one it shares most such prompts with;
    the small ones that share none with a larger one join each other; two communities of ``min_size`` or more
    are never joined so: one relayed ordinary prompt that a hydra account of each of two pools happened to send
    chained a 40-account chain-of-thought pool and a 60-account tool-use pool into one candidate. Small
    communities are compared ``block`` at a time (only their best large one and their links are held)."""
    from scipy.sparse.csgraph import connected_components

    labels, infra = np.unique(infra, return_inverse=True)
    k = len(labels)
    onehot = sp.csr_matrix((np.ones(len(infra)), (infra, np.arange(len(infra)))), shape=(k, len(infra)))
    held = sp.csr_matrix((onehot @ prompt_inc) > 0, dtype=np.float64)  # community x prompt
    held_t = held.T.tocsr()
    large = np.bincount(infra, minlength=k) >= min_size
    small = np.flatnonzero(~large)
    label = np.where(large, np.arange(k), -1)
    firsts, seconds = [], []
    for rows in _row_blocks(len(small), block):
        shared = (held[small[rows]] @ held_t).tocsr()  # these small communities x every community
        if large.any():
            to_large = shared[:, np.flatnonzero(large)].toarray()
            joins = to_large.max(axis=1) > 0
            label[small[rows][joins]] = np.flatnonzero(large)[to_large[joins].argmax(axis=1)]
        coo = shared[:, small].tocoo()
        firsts.append(small[rows][coo.row])
        seconds.append(small[coo.col])
    rest = np.flatnonzero(label < 0)
    if len(rest):
        pos = np.full(k, -1)
        pos[rest] = np.arange(len(rest))
        i, j = pos[np.concatenate(firsts)], pos[np.concatenate(seconds)]
        both = (i >= 0) & (j >= 0)
        adjacency = sp.csr_matrix((np.ones(int(both.sum())), (i[both], j[both])), shape=(len(rest), len(rest)))
        _, comp = connected_components(adjacency, directed=False)
        label[rest] = k + comp
    return np.unique(label, return_inverse=True)[1][infra]


def _copiers(member: np.ndarray, popular_code: np.ndarray, n_members: int) -> np.ndarray | None:
    """Which of ``n_members`` members send nothing in the group but copies of popular texts (``member``,
    ``popular_code``: each of their requests' member position and popular text, -1 for none; see
    :func:`_popular_codes`); None unless the group holds both such copiers and members doing work of their own.

    A viral "act as a code tutor" prompt that the fast tier clusters with a ten-account tool-use pool's tasks put
    28 of its senders (three requests each) into the pool's candidate, whose hours and unit they share: one
    operator of 39 accounts, flagged at 0.55 with the pool a minority of it. Copying a text that many accounts send
    is not the pool's work, whatever unit it lands in."""
    n_req = np.bincount(member, minlength=n_members)
    n_copies = np.bincount(member[popular_code >= 0], minlength=n_members)
    copier = (n_req > 0) & (n_copies == n_req)
    return copier if copier.any() and not copier[n_req > 0].all() else None


def _sample_codes(req: pd.DataFrame, rows: np.ndarray, config: ScoringConfig, full: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Each of the grouped requests' (``rows`` of ``req``) prompt as an integer (4 bytes a request rather than a
    copy of the prompt hashes beside the group's rows), -1 where it does not read as capability work (a hydra
    account's relayed customer prompt, "explain what a smart speaker is", meets the same prompt from an
    ordinary customer by chance) or where more than ``operator_prompt_max_accounts`` accounts send it among all
    grouped requests (a viral prompt, an assigned problem: a popular text, nobody's samples). Identical prompts
    share a unit, so a prompt's senders are in one group (bar a community's or pool's unclustered work).

    Also, per prompt code, how many distinct accounts send it among *all* requests (0 for the codes left at -1):
    whether anyone outside an operator sends its samples (:func:`_own_prompts`). ``full``: every request's prompt
    as an integer (``pd.factorize`` of ``req["prompt_hash"]``), if already at hand."""
    if config.operator_prompt_max_accounts < 2:  # the rule is off: no prompt is anyone's samples
        return np.full(len(rows), -1, dtype=np.int32), np.zeros(0, dtype=np.int64)
    full = pd.factorize(req["prompt_hash"])[0] if full is None else full
    code = full[rows].astype(np.int32)
    if "capability" in req:  # an operator samples its capability prompts; ordinary ones coincide by chance
        code[~req["capability"].to_numpy()[rows]] = -1
    acode = req["acode"].to_numpy()
    read = code >= 0
    if not read.any():
        return code, np.zeros(0, dtype=np.int64)
    n_codes = int(full.max()) + 1
    senders = _distinct_senders(code[read], acode[rows][read].astype(np.int64), n_codes)
    code[read & (senders[np.maximum(code, 0)] > config.operator_prompt_max_accounts)] = -1
    wanted = np.zeros(n_codes, dtype=bool)
    wanted[code[code >= 0]] = True
    sent = wanted[full]  # every request of a prompt still counted, wherever it was sent
    return code, _distinct_senders(full[sent], acode[sent].astype(np.int64), n_codes)


def _popular_codes(codes: np.ndarray, accounts: np.ndarray, max_accounts: int) -> np.ndarray:
    """``codes`` (each grouped request's prompt as a non-negative integer, any kind of prompt; ``accounts``: its
    sender as an integer), -1 where ``max_accounts`` or fewer distinct accounts send it among them: what is left are the copies
    of popular texts (a viral prompt, an assigned problem, a public "act as ..." prompt). All -1 when re-sent
    prompts are off (``max_accounts`` below 2)."""
    if max_accounts < 2 or not len(codes):
        return np.full(len(codes), -1, dtype=np.int32)
    senders = _distinct_senders(codes, accounts.astype(np.int64))
    return np.where(senders[codes] > max_accounts, codes, -1).astype(np.int32)


def _own_prompts(prompt_code: np.ndarray, accounts: np.ndarray, senders: np.ndarray) -> np.ndarray:
    """``prompt_code`` (one per request of ``accounts``, -1 for none), -1 where an account other than ``accounts``
    also sends the prompt (``senders``: each code's distinct senders among all requests, :func:`_sample_codes`).
    An operator's samples are its own rendered prompts; a public prompt that several customers copy (a
    well-known "act as ..." prompt) is sent by customers outside any one group too. On the adversarial
    benchmark every pool's re-sent prompts are its own (99-100%), and 0-5% of those of the ordinary candidates
    that share popular prompts."""
    read = prompt_code >= 0
    if not read.any():
        return prompt_code
    inside = _distinct_senders(prompt_code[read], pd.factorize(accounts[read])[0].astype(np.int64), len(senders))
    out = prompt_code.copy()
    out[read & (inside[np.maximum(prompt_code, 0)] < senders[np.maximum(prompt_code, 0)])] = -1
    return out


def _distinct_senders(prompts: np.ndarray, accounts: np.ndarray, n_prompts: int = 0) -> np.ndarray:
    """Per prompt code (``0..n_prompts-1`` at least), how many distinct accounts send it (``prompts``,
    ``accounts``: non-negative integer codes, one pair per request)."""
    width = int(accounts.max(initial=0)) + 1
    pairs = np.unique(prompts.astype(np.int64) * width + accounts)  # each (prompt, account) once
    return np.bincount(pairs // width, minlength=n_prompts)


def _samples_across(prompt_code: np.ndarray, accounts: np.ndarray, senders: np.ndarray | None = None
                    ) -> tuple[int, int]:
    """How many distinct prompts (``prompt_code``, -1 for none: see :func:`_sample_codes` and :func:`_own_prompts`)
    two or more distinct ``senders`` send (one per request; default the ``accounts`` themselves, their customers for
    the samples signal), and how many of ``accounts`` (one per request) send one of those prompts."""
    read = prompt_code >= 0
    if not read.any():
        return 0, 0
    code = np.unique(prompt_code[read], return_inverse=True)[1]  # numbered here: a group holds few of all prompts
    who = accounts if senders is None else senders
    n_senders = _distinct_senders(code, pd.factorize(who[read])[0].astype(np.int64))
    counted = n_senders[code] >= 2
    return int((n_senders >= 2).sum()), int(pd.unique(accounts[read][counted]).size)


def _resent_prompts(member: np.ndarray, prompts: np.ndarray, n_members: int, config: ScoringConfig
                    ) -> sp.csr_matrix | None:
    """Members x prompts (sparse, one column per re-sent prompt) over the identical prompts that two or more of
    ``n_members`` members send (``member``, ``prompts``: each request's member position, -1 for none, and prompt
    code, -1 for a popular prompt; see :func:`_sample_codes`): an operator samples one rendered prompt several
    times across its pool."""
    if config.operator_prompt_max_accounts < 2:
        return None
    pairs = pd.DataFrame({"member": member, "prompt": prompts}).drop_duplicates()
    pairs = pairs[(pairs["member"] >= 0) & (pairs["prompt"] >= 0)]
    holders = pairs["prompt"].map(pairs["prompt"].value_counts())
    pairs = pairs[holders >= 2]
    if not len(pairs):
        return None
    column, _ = pd.factorize(pairs["prompt"])
    return sp.csr_matrix((np.ones(len(pairs)), (pairs["member"].to_numpy(), column)),
                         shape=(n_members, int(column.max()) + 1))


def _apart_by_prompts(infra: np.ndarray, prompt_inc: sp.csr_matrix, member: np.ndarray, t: np.ndarray,
                      config: ScoringConfig) -> np.ndarray:
    """Pairs of communities (``infra`` labels, rows ``i, j``) whose re-sent prompts say they are two operators
    (``member``, ``t``: each of the members' requests' member position and time):
    each community of ``min_operator_accounts`` or more re-sends identical prompts across its own accounts
    (``prompt_inc``) and never one of the other's, while they were active at the same time. Were they one pool,
    each re-sent prompt's ``h`` sends would land in one of them with probability ``p**h + (1 - p)**h`` (``p``:
    the first one's share of their requests); all of them doing so has probability below
    ``operator_prompt_apart_p``. Taken ``operator_block_accounts`` communities at a time."""
    none = np.zeros((0, 2), dtype=np.int64)
    k = int(infra.max()) + 1
    holders = np.asarray(prompt_inc.sum(axis=0)).ravel().astype(np.int64)
    # each re-sent prompt lies in one community (its holders are linked through it)
    owner = infra[np.asarray(prompt_inc.argmax(axis=0)).ravel()]
    large = np.bincount(infra, minlength=k) >= config.min_operator_accounts
    ev = np.unique(owner[large[owner]])
    if len(ev) < 2:
        return none
    hist = np.zeros((k, int(holders.max()) + 1))
    np.add.at(hist, (owner, holders), 1.0)
    comm = infra[member]
    requests = np.bincount(comm, minlength=k).astype(np.float64)[ev]
    lo, hi = np.full(k, np.inf), np.full(k, -np.inf)
    np.minimum.at(lo, comm, t)
    np.maximum.at(hi, comm, t)
    lo, hi, hist = lo[ev], hi[ev], hist[ev]
    found = []
    for rows in _row_blocks(len(ev), config.operator_block_accounts):
        p = requests[rows, None] / (requests[rows, None] + requests[None, :])
        log_none = np.zeros_like(p)
        for h in range(2, hist.shape[1]):
            log_none += (hist[rows, h][:, None] + hist[None, :, h]) * np.log(p**h + (1.0 - p) ** h)
        overlap = np.minimum(hi[rows, None], hi[None, :]) - np.maximum(lo[rows, None], lo[None, :])
        shorter = np.maximum(np.minimum((hi - lo)[rows, None], (hi - lo)[None, :]), 1.0)
        apart = (log_none < np.log(config.operator_prompt_apart_p)) & (
            overlap >= config.operator_prompt_apart_overlap * shorter)
        i, j = np.nonzero(apart)
        i += rows.start
        found.append(np.stack([ev[i[i != j]], ev[j[i != j]]], axis=1))
    return np.concatenate(found) if found else none


def _apart_by_hours(infra: np.ndarray, counts: np.ndarray, pairs: np.ndarray, config: ScoringConfig, seed: int = 0
                    ) -> np.ndarray:
    """Which ``pairs`` of communities (rows ``i, j`` of ``infra`` labels, a label per member) keep different hours:
    the cosine of their pooled hour counts (``counts``: members x 24, :func:`_hour_counts`) is lower than that of
    all but a share below ``operator_hours_apart_p`` of ``operator_hours_splits`` random splits of their accounts
    into two sets of the same sizes. Accounts, not requests, are shuffled: an account's requests keep its own hours
    (its exit country's day), so a test on requests would call two halves of one pool apart as soon as each holds a
    few accounts of other hours. Splits drawn from ``seed``: the same answer on every run; taken a block at a time
    (``operator_block_accounts`` squared cells)."""
    n_splits = config.operator_hours_splits
    apart = np.zeros(len(pairs), dtype=bool)
    if n_splits < 1 or not len(pairs):
        return apart
    rng = np.random.default_rng(seed)
    order = np.argsort(infra, kind="stable")
    bounds = np.searchsorted(infra[order], np.arange(int(infra.max()) + 2))
    for n, (i, j) in enumerate(pairs):
        a, b = order[bounds[i] : bounds[i + 1]], order[bounds[j] : bounds[j + 1]]
        x = counts[np.concatenate([a, b])]
        total = x.sum(axis=0)
        observed = float(_unit_rows(x[: len(a)].sum(axis=0)) @ _unit_rows(total - x[: len(a)].sum(axis=0)))
        as_unlike = 0
        for rows in _row_blocks(n_splits, max(1, config.operator_block_accounts**2 // len(x))):
            picked = np.zeros((rows.stop - rows.start, len(x)))
            first = np.argsort(rng.random(picked.shape), axis=1)[:, : len(a)]
            np.put_along_axis(picked, first, 1.0, axis=1)
            side = picked @ x
            as_unlike += int(((_unit_rows(side) * _unit_rows(total - side)).sum(axis=1) <= observed).sum())
        apart[n] = (as_unlike + 1) / (n_splits + 1) < config.operator_hours_apart_p
    return apart


def _join_untied(comp: np.ndarray, infra: np.ndarray, hours: np.ndarray, work: sp.csr_matrix,
                 config: ScoringConfig) -> np.ndarray:
    """Communities (``comp``, a label per member) after joining the *untied* ones (no two of their accounts linked
    by a shared identifier or a re-sent prompt: ``infra`` communities of one account only) that share pooled hours
    and pooled work: cosine of their mean hour profiles (``hours``) at least ``operator_timing_similarity`` and of
    their mean work (``work``) at least ``operator_work_similarity``. Each set of untied communities so joined
    then joins the one *tied* community it shares them with most, if any: never two, so that it cannot chain two
    pools tied by their own identifiers into one.

    Hours and work compared account by account split a bare pool that samples each prompt once: an account's
    twenty requests read noisily, so the pairs that pass both bars chain into several communities (one 60-account
    pool fell apart into six operators, none scoring high enough to be found). Pooled over a community they read
    clearly: the pieces of one pool keep the same hours and do the same work, while two pools on different work
    (a chain-of-thought pool and a tool-use pool linked into one group) stay two. Communities of one account are
    left to :func:`_nearest_operator`; pooled profiles are compared ``operator_block_accounts`` at a time."""
    from scipy.sparse.csgraph import connected_components

    labels, comp = np.unique(comp, return_inverse=True)
    sizes = np.bincount(comp)
    onehot = sp.csr_matrix((np.ones(len(comp)), (comp, np.arange(len(comp)))), shape=(len(labels), len(comp)))
    tied = np.asarray(onehot @ (np.bincount(infra)[infra] >= 2)).ravel() > 0
    untied = np.flatnonzero((sizes >= 2) & ~tied)
    if len(untied) < 2 and not (len(untied) and tied.any()):
        return comp

    def pooled(rows: sp.csr_matrix) -> tuple[np.ndarray, sp.csr_matrix]:
        """Mean hour profiles and mean work (unit rows) of ``rows``' communities."""
        return _unit_rows(np.asarray(rows @ hours)), sp.csr_matrix(_unit_rows(np.asarray((rows @ work).todense())))

    def alike(a: tuple[np.ndarray, sp.csr_matrix], b: tuple[np.ndarray, sp.csr_matrix]
              ) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
        """``a``'s communities against ``b``'s, a block of ``a`` at a time: (its rows, which pairs pass both bars,
        hours times work similarity where they do, else -1)."""
        b_work_t = b[1].T.tocsr()  # CSR x CSR: scipy would convert a CSC right side again for every block
        for rows in _row_blocks(len(a[0]), config.operator_block_accounts):
            hour_sim = a[0][rows] @ b[0].T
            work_sim = (a[1][rows] @ b_work_t).toarray()
            ok = (hour_sim >= config.operator_timing_similarity) & (work_sim >= config.operator_work_similarity)
            yield rows, ok, np.where(ok, hour_sim * work_sim, -1.0)

    # 1. untied communities that keep the same hours over the same work, joined among themselves
    loose = pooled(onehot[untied])
    pairs = [(i + rows.start, j) for rows, ok, _ in alike(loose, loose) for i, j in [np.nonzero(ok)]]
    i, j = np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
    n_sets, member_set = connected_components(sp.csr_matrix((np.ones(len(i)), (i, j)), shape=(len(untied),) * 2),
                                              directed=False)
    set_label = len(labels) + np.arange(n_sets)
    # 2. each set joins the one tied community it resembles most, if any
    tied_ids = np.flatnonzero(tied)
    if len(tied_ids):
        set_onehot = sp.csr_matrix((np.ones(len(untied)), (member_set, np.arange(len(untied)))),
                                   shape=(n_sets, len(untied))) @ onehot[untied]
        for rows, ok, score in alike(pooled(set_onehot), pooled(onehot[tied_ids])):
            set_label[rows] = np.where(ok.any(axis=1), tied_ids[score.argmax(axis=1)], set_label[rows])
    new = np.arange(len(labels))
    new[untied] = set_label[member_set]
    return np.unique(new, return_inverse=True)[1][comp]


def _nearest_operator(hours: np.ndarray, work: sp.csr_matrix, comp: np.ndarray, big: np.ndarray) -> np.ndarray:
    """For each member, the position in ``big`` (operator communities of ``comp``) of the operator it resembles
    most: the cosine of its hour profile to the operator's mean one times that of its work to the operator's
    mean work. Hours alone sent a chain-of-thought pool's two bare accounts to an eval harness that re-runs its
    own test set on other accounts at night, where the pool's work is not done; where a member's work meets no
    operator's, its hours decide."""
    hour_sim = hours @ np.stack([hours[comp == c].mean(axis=0) for c in big]).T
    work_mean = np.vstack([np.asarray(work[np.flatnonzero(comp == c)].mean(axis=0)) for c in big])
    norm = np.linalg.norm(work_mean, axis=1)
    work_sim = np.asarray(work @ (work_mean / np.where(norm > 0, norm, 1.0)[:, None]).T)
    both = np.clip(hour_sim, 0.0, None) * work_sim
    return np.where(both.max(axis=1) > 0, both.argmax(axis=1), hour_sim.argmax(axis=1))


def _row_blocks(n: int, block: int) -> Iterator[slice]:
    """Slices of ``block`` rows (the last one shorter) covering ``n`` rows."""
    return (slice(start, min(n, start + block)) for start in range(0, n, max(1, block)))


def _bool_times(a: np.ndarray, x: sp.spmatrix, block: int, positive: bool = False) -> np.ndarray:
    """``a @ x`` for a dense boolean ``a`` and a sparse ``x``, ``block`` rows of ``a`` at a time (as floats;
    ``positive``: only whether each entry is above 0, as booleans): one byte per entry of ``a`` is all that is
    held whole."""
    xt = sp.csr_matrix(x.T, dtype=np.float64)
    out = np.empty((a.shape[0], x.shape[1]), dtype=bool if positive else np.float64)
    for rows in _row_blocks(a.shape[0], block):
        prod = np.asarray(xt @ a[rows].T.astype(np.float64)).T
        out[rows] = prod > 0 if positive else prod
    return out


def _merge_by_behaviour(infra: np.ndarray, alike: np.ndarray, share: float, min_size: int = 1,
                        block: int = ScoringConfig.operator_block_accounts, apart: np.ndarray | None = None,
                        hours_apart: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Communities (a label per account) after merging the infrastructure communities ``infra`` (a label per
    account) that behave alike: two are merged when at least ``share`` of the accounts of one of them keep the
    hours and do the work (``alike``: account x account) of an account of the other. An account of its own
    proxy joins the community it resembles; two pools of ten, each behind its own blocks, stay two when one
    pair of their accounts happens to keep similar hours over similar work.

    Communities of ``min_size`` accounts or more merge with each other only directly. A smaller one (an account
    with no shared identifier: a bare account, or one behind a proxy of its own) joins the merged community it
    resembles most (the most alike pairs per account of the two), never two at once: two pools whose bare
    accounts each resemble an account of both pools stay two. It joins through the large communities' own
    accounts, not through small ones that joined before it: round after round, a tool-use pool's bare accounts
    followed one ordinary customer who resembled both them and the copiers of a viral prompt into the copiers'
    community (one candidate of 39 accounts, the pool 10 of them). The small ones left, that resemble no large
    one, merge among themselves as before (and :func:`_join_untied` joins their pieces on pooled hours and work).

    ``apart`` (rows ``i, j`` of community labels, :func:`_apart_by_prompts`): pairs that behaviour never merges
    directly (their re-sent prompts say two operators). ``hours_apart`` (:func:`_apart_by_hours`): which of the
    pairs of communities of ``min_size`` or more that behaviour would merge keep different hours when pooled; those
    are not merged directly either.

    ``alike`` is used as it is (one byte per pair) and every product with it is taken ``block`` rows at a time.
    """
    from scipy.sparse.csgraph import connected_components

    k = int(infra.max()) + 1
    sizes = np.bincount(infra, minlength=k)
    onehot = sp.csr_matrix((np.ones(len(infra)), (np.arange(len(infra)), infra)), shape=(len(infra), k))
    reaches = _bool_times(alike, onehot, block, positive=True)  # account -> communities it resembles
    # community -> share of its accounts that resemble each community, >= share (a block of columns at a time)
    linked = np.empty((k, k), dtype=bool)
    for cols in _row_blocks(k, block):
        linked[:, cols] = (onehot.T @ reaches[:, cols].astype(np.float64)) / sizes[:, None] >= share
    if apart is not None:  # re-sent prompts say two operators: behaviour does not merge them
        linked[apart[:, 0], apart[:, 1]] = False
    large = sizes >= min_size
    if hours_apart is not None:  # nor do pooled hours that no random split of their accounts reaches
        i, j = np.nonzero(np.triu((linked | linked.T) & large[:, None] & large[None, :], 1))
        kept = hours_apart(np.stack([i, j], axis=1))
        linked[i[kept], j[kept]] = linked[j[kept], i[kept]] = False
    # 1. large communities merge directly only
    _, comp = connected_components(sp.csr_matrix(linked & large[:, None] & large[None, :]), directed=False)
    group = np.where(large, comp, -1)
    # 2. small ones join the merged large community they resemble most: in one round, through the large
    # communities' own accounts only (not through small ones that joined before them)
    free = np.flatnonzero(group < 0)
    taken = np.flatnonzero(group >= 0)
    if len(free) and len(taken):
        g_codes, g_of = np.unique(group[taken], return_inverse=True)
        g_onehot = sp.csr_matrix((np.ones(len(taken)), (taken, g_of)), shape=(k, len(g_codes)))
        acc_group = onehot @ g_onehot  # account -> its community's group (none for free ones)
        pairs = _bool_times(alike, acc_group, block)  # account -> alike accounts in each group
        reach_share = (onehot.T @ sp.csr_matrix((pairs > 0).astype(np.float64))).toarray() / sizes[:, None]
        affinity = (onehot.T @ sp.csr_matrix(pairs)).toarray() / (sizes[:, None] * np.bincount(g_of, weights=sizes[taken]))
        ok = reach_share[free] >= share
        joins = ok.any(axis=1)
        best = np.where(ok, affinity[free], -1.0).argmax(axis=1)
        group[free[joins]] = g_codes[best[joins]]
    # 3. the small ones left merge among themselves
    free = group < 0
    if free.any():
        _, rest = connected_components(sp.csr_matrix(linked & free[:, None] & free[None, :]), directed=False)
        group[free] = int(group.max(initial=-1)) + 1 + rest[free]
    return group[infra]


@dataclass
class _Operator:
    """One operator's members on a group of clusters, and what the signals read of them."""

    group: list[int]
    members: list[str]
    member_set: set[str]
    mreq: pd.DataFrame  # the members' requests in the group
    counts: pd.Series  # requests per member in the group, in ``members`` order
    share: np.ndarray  # each member's (shrunk) share of its own traffic in the group
    elsewhere: np.ndarray  # each member's (shrunk) share of its own traffic that is capability work outside the group
    shared: list[sig.SharedValue]  # evidence identifiers (concentrated, across principals)
    n_principals: int
    totals: np.ndarray  # each member's requests in all, in ``members`` order


def _operator(group: list[int], mreq: pd.DataFrame, members: list[str], per_acc: pd.Series, ctx: _Context
              ) -> _Operator:
    """What every signal reads of the members' requests on the group (``mreq``, every column; ``per_acc``: every
    account's requests on the group, :func:`_members`, which counts each member's requests in ``mreq``)."""
    member_set = set(members)
    counts = per_acc.reindex(members)
    totals = ctx.account_total.reindex(members).to_numpy()
    share = sig.shrunk_share(counts.to_numpy(), totals, ctx.config.focus_prior)
    outside = np.zeros(len(members))
    if len(ctx.account_capability) and "capability" in mreq:
        # capability work outside the group: the member's capability requests less those inside it
        capability = mreq["capability"]
        inside = (capability.groupby(mreq["account_id"]).sum().reindex(members, fill_value=0).to_numpy()
                  if capability.to_numpy().any() else np.zeros(len(members), dtype=np.int64))
        outside = ctx.account_capability.reindex(members, fill_value=0).to_numpy() - inside
    elsewhere = sig.shrunk_share(outside, totals, ctx.config.focus_prior)
    shared = _evidence_values(ctx, member_set) if len(members) >= 2 else []
    return _Operator(group, members, member_set, mreq, counts, share, elsewhere, shared,
                     _n_principals(members, ctx, shared), totals)


def _score_group(group: list[int], mreq: pd.DataFrame, members: list[str], extra_members: set[str],
                 per_acc: pd.Series, ctx: _Context, n_operators: int = 1, joiners: Sequence[str] = (),
                 by_prompts: bool = False, samples: tuple[int, tuple[int, int]] = (0, (0, 0)), copying: str = ""):
    """Signals, score, evidence and account rows of one operator's members on a group of clusters (``mreq``:
    their requests on it; ``joiners``: wrapper joiners of :func:`_members`, listed with the campaign, not in its
    signals; ``by_prompts``: whether re-sent prompts told the group's operators apart; ``samples``: how many
    identical capability prompts two or more of the members send, and how many of its own two or more of their
    customers send, with the members sending them (both :func:`_samples_across`); ``copying``: "self" where most
    of its members only copy popular texts in the group, "others" where another operator's do, see
    :func:`_copiers`)."""
    op = _operator(group, mreq, members, per_acc, ctx)
    values, content, extras = _signal_values(op, ctx, samples[1])
    score = score_signals(values, ctx.config.weights, value_full=ctx.config.value_full)
    cid = campaign_id(members, group)
    row = _campaign_row(cid, score, values, content, extras, op, n_operators, ctx, len(joiners), by_prompts,
                        samples, copying)
    account_rows = _account_rows(cid, score, op, extras["holders"], extra_members, ctx)
    account_rows += _joiner_rows(cid, score, joiners, per_acc, ctx)
    partial_rows = _partial_rows(cid, score, per_acc, op.member_set | set(joiners), ctx)
    return row, account_rows, partial_rows


@dataclass
class _Content:
    """What the group's units say of the operator's work: the units, the main one, the capability intent."""

    infos: list[ClusterInfo]
    weights: np.ndarray  # the members' requests per unit, in ``infos`` order
    top: ClusterInfo
    kind_name: str
    unjudged: float  # share of the requests whose intent was not judged (unreadable script)
    #: where the training value is not judged: the cue words that name ``kind_name`` (:func:`_named_intent`)
    kind_cues: list[str] = field(default_factory=list)
    #: where it is not judged and no capability is named: the ordinary workload the requests' words name, and
    #: those words (the training value is then ``ordinary_named_value``)
    ordinary: tuple[str, list[str]] = ("", [])
    #: the group's wrapper sentences (:func:`_group_wrapper`) and the share of its requests they made templated
    wrapper: tuple[str, float] = ("", 0.0)


def _in_no_unit(cluster_ids: np.ndarray, ctx: _Context) -> np.ndarray:
    """Whether each of ``cluster_ids`` holds requests whose prompts are in no cluster: an infrastructure
    community's unclustered work (:func:`community_units`), unclustered requests sharing wrapper sentences
    (:func:`wrapper_pool_units`), or none (-1, never part of a group)."""
    return (cluster_ids < 0) | np.isin(cluster_ids, list(ctx.community_units | ctx.pool_units))


def _group_wrapper(mreq: pd.DataFrame, task: pd.Series, ctx: _Context) -> tuple[pd.Series, str] | None:
    """Per unit of the group (``cluster_id``), the share of its requests whose prompts carry the group's *wrapper
    sentences*, over the prompts read; and the most used of those sentences. None where the rule is off or
    nothing was read. The prompts are sampled from the whole group, so a small unit is judged on the few of its
    prompts the sample holds.

    A wrapper sentence is one the group's prompts send around ``group_wrapper_min_tasks`` distinct tasks or more,
    by the scaffold rule of :func:`analyzer.cluster.scaffolds` (eight words or more of them in a prompt, and text
    of its own), read on up to ``group_wrapper_prompts`` of its distinct prompts. A small pool composing each
    wrapper from fragments leaves its requests in no cluster or in a topic cluster without a template (too few
    prompts share any one fragment for a scaffold family), yet its prompts repeat each other's fragments around
    ever new tasks; customers who share a topic ask in words of their own, and a re-sent task is one task
    however often it comes.
    """
    from analyzer.cluster import scaffolds
    from analyzer.text import analysis_text

    config = ctx.config
    if config.group_wrapper_min_tasks <= 0:
        return None
    sample = _sample_hashes(mreq, config.group_wrapper_prompts)
    texts = ctx.texts_for(sample)
    read = [h for h in sample if h in texts]
    if not read:
        return None
    tasks = pd.Series(task.to_numpy(), index=mreq["prompt_hash"].to_numpy())
    tasks = tasks[~tasks.index.duplicated()]
    found = scaffolds([analysis_text(texts[h]) for h in read], config.group_wrapper_min_tasks,
                      owners=tasks.reindex(read).tolist())
    carried = {h: sc for h, sc in zip(read, found, strict=True) if sc is not None}
    hashes = mreq["prompt_hash"]
    judged = hashes.isin(read).to_numpy()  # hashed lookups: a group holds up to millions of requests
    hit = hashes[judged].isin(list(carried)).to_numpy(dtype=np.float64)
    share = pd.Series(hit).groupby(mreq["cluster_id"].to_numpy()[judged]).mean()
    return share, _common_sentences(carried.values(), config.community_template_sentences)


def _content_signals(mreq: pd.DataFrame, task: pd.Series, ctx: _Context) -> tuple[dict[str, float | None], _Content]:
    """``templating`` and ``training_value`` of the members' requests (``task``: each one's task, see
    :func:`_request_tasks`), and the units they fall in.

    Templating of each unit (a template family has one scaffold; a topic cluster rarely does), weighted by
    the members' requests in it, where those requests carry ``templating_min_tasks`` distinct tasks or more (a
    problem statement pasted around each student's own words is one task, not a filled template); training
    value per request from its intent similarity.
    """
    config, sigp = ctx.config, ctx.signals
    cw = mreq.groupby("cluster_id").size()
    infos = [ctx.clusters.get(int(c), ClusterInfo(int(c))) for c in cw.index]
    w = cw.to_numpy(dtype=np.float64)
    if len(cw) == 1:  # one unit (most groups): its tasks are all the tasks
        filled = np.array([task.nunique() >= config.templating_min_tasks])
    else:
        filled = (task.groupby(mreq["cluster_id"]).nunique().reindex(cw.index) >= config.templating_min_tasks).to_numpy()
    unit_templating = np.array([
        sig.templating(i.template_coverage, i.n_fixed_words, sigp.full_scaffold_words, n_slots=i.n_slots) * ok
        for i, ok in zip(infos, filled, strict=True)])
    raised = (_in_no_unit(cw.index.to_numpy(), ctx) | filled) & (unit_templating < 1)
    wrapper = _group_wrapper(mreq, task, ctx) if raised.any() else None
    if wrapper is not None:  # unclustered work, and units of ever new tasks, carrying the group's wrapper
        carried = wrapper[0].reindex(cw.index).fillna(0.0).to_numpy()
        lifted = raised & (carried > unit_templating)
        unit_templating = np.where(lifted, carried, unit_templating)
        wrapper_found = (wrapper[1], float((carried * w)[lifted].sum() / w.sum()))
    else:
        wrapper_found = ("", 0.0)
    values: dict[str, float | None] = {"templating": float(np.average(unit_templating, weights=w))}
    top_info = max(infos, key=lambda i: cw.get(i.cluster_id, 0))
    unjudged = 0.0
    if "intent_similarity" in mreq:
        # arrays, not boolean .loc on the frame (two of those per group were a fifth of a daily score stage)
        sims = mreq["intent_similarity"].to_numpy(dtype=np.float64, na_value=np.nan)
        judged = ~np.isnan(sims)
        unjudged = 1.0 - float(judged.mean())
        tv = sig.training_values(sims[judged], sigp.training_value_low, sigp.training_value_high)
        # Mostly text the embedding model cannot read (another script): training value is not judged and
        # the gate stays open, so that detection rests on behaviour rather than on the model's languages.
        values["training_value"] = float(tv.mean()) if unjudged < config.unjudged_max_share and len(tv) else None
        intents = mreq["intent"].to_numpy(dtype=object)[judged]
        keys = np.where(pd.isna(intents), "", intents)
        if len(keys) and (keys == keys[0]).all():  # one intent (most groups): its sum is positive where any value is
            kind_name = str(keys[0]) if (tv > 0).any() else ""
        else:
            kinds = pd.Series(tv).groupby(keys).sum()
            kind_name = str(kinds.idxmax()) if len(kinds) and kinds.max() > 0 else ""
        if values["training_value"] is None:  # what the requests ask for, in their own words
            unread = mreq["prompt_hash"].to_numpy(dtype=object)[~judged]
            kind_name, cues = _named_intent(unread, ctx)
            ordinary = ("", []) if kind_name else _named_intent(unread, ctx, ordinary=True)
            if ordinary[0]:  # an ordinary workload in another language: its value is that of its English twin
                values["training_value"] = config.ordinary_named_value
            return values, _Content(infos, w, top_info, kind_name, unjudged, cues, ordinary, wrapper_found)
    else:
        values["training_value"] = float(np.average([i.training_value for i in infos], weights=w))
        kind_name = top_info.intent
    return values, _Content(infos, w, top_info, kind_name, unjudged, wrapper=wrapper_found)


def _named_intent(hashes: np.ndarray, ctx: _Context, ordinary: bool = False) -> tuple[str, list[str]]:
    """The capability that the prompts ``hashes`` (in a script or language the embedding model does not read) name
    in their own words (:func:`analyzer.signals.cue_intent`; with ``ordinary``, the ordinary workload), read from
    a sample of them (the first ``cue_sample`` by hash): the intent named by the most sampled prompts, when at
    least ``cue_min_share`` of them name it; with its most frequent cue words. ``("", [])`` otherwise. A capability
    names the label only, never scored; an ordinary workload named where no capability is sets the training
    value (``ScoringConfig.ordinary_named_value``)."""
    ep = ctx.evidence
    sample = sorted(set(hashes))[: ep.cue_sample]
    texts = ctx.texts_for(sample)
    named = [sig.cue_intent(texts[h], ep.cue_min_words, ordinary=ordinary) for h in sample if h in texts]
    intents = Counter(intent for intent, _ in named if intent)
    if not intents:
        return "", []
    best, n = max(sorted(intents.items()), key=lambda kv: kv[1])
    if n < ep.cue_min_share * len(named):
        return "", []
    words = Counter(w for intent, cues in named if intent == best for w in cues)
    return best, [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))][: ep.cue_words_shown]


def _behaviour_signals(op: _Operator, ctx: _Context) -> tuple[dict[str, float | None], dict]:
    """``sync``, ``regularity``, ``infrastructure`` and ``pivot`` of the members, with what their evidence
    quotes (activity similarity, identifier holders, the model pivoted to)."""
    config, sigp, mreq = ctx.config, ctx.signals, op.mreq
    values: dict[str, float | None] = {"sync": None}
    sim = None
    # ``op.counts``: each member's requests in ``mreq`` (which holds the members' requests only)
    if (op.counts.to_numpy() >= config.sync_min_requests).sum() >= config.sync_min_accounts:
        sim = sig.activity_similarity(mreq["acode"].to_numpy(), mreq["t"].to_numpy(), config.sync_bucket_minutes)
        values["sync"] = sig.sync(sim, ctx.null_similarity, config.sync_full_ratio)
    values["regularity"] = sig.regular_pacing(mreq["acode"].to_numpy(), mreq["t"].to_numpy(),
                                              sigp.regularity_min_requests, sigp.regularity_max_cv)
    holders = _holders(ctx, op.member_set, op.shared)
    infra_accounts = set(holders["account_id"])
    n_members = len(op.members)
    # Over the members that send identifiers at all: an account sending without network or client metadata can
    # show no shared infrastructure, and stripping it from some accounts must not dilute the others' evidence.
    n_identified = int(ctx.pairs_of(op.member_set)["account_id"].nunique())
    n_measured = n_identified if n_identified >= sigp.infra_min_accounts else n_members
    values["infrastructure"] = len(infra_accounts) / n_measured if (ctx.infra_applicable and n_members >= 2) else None
    values["pivot"], pivot_model = None, None  # no model released during the log: nothing to pivot to
    if ctx.releases:
        mine = sig.window_counts(mreq["t"].to_numpy(), mreq["model"].to_numpy(dtype=object), ctx.releases,
                                 sigp.pivot_window_hours)
        values["pivot"], pivot_model = sig.pivot_against(mine, ctx.window_counts_without(op.member_set),
                                                         sigp.pivot_min_requests, sigp.pivot_full_excess)
    return values, {"sim": sim, "holders": holders, "infra_accounts": infra_accounts, "pivot_model": pivot_model,
                    "n_measured": n_measured}


def _request_tasks(mreq: pd.DataFrame) -> pd.Series:
    """Each request's task: its near-duplicate task group where every request has one, else its prompt."""
    return mreq["task_id"] if "task_id" in mreq and mreq["task_id"].notna().all() else mreq["prompt_hash"]


def _same_kind_elsewhere(op: _Operator, kind: str, ctx: _Context) -> np.ndarray:
    """Each member's (shrunk) share of its own traffic that is capability work of the group's own kind (``kind``)
    in no cluster and outside the group."""
    members = op.members
    kind_total = ctx.account_kind_capability.get(kind)
    if kind_total is None or "capability" not in op.mreq:
        return np.zeros(len(members))
    m = op.mreq
    sel = m["capability"].to_numpy() & m["loose"].to_numpy()
    if sel.any():  # most groups hold no unclustered capability work: nothing of theirs to take off
        sel &= m["intent"].eq(kind).fillna(False).to_numpy(dtype=bool)
        inside = m.loc[sel].groupby("account_id").size().reindex(members, fill_value=0).to_numpy()
    else:
        inside = np.zeros(len(members), dtype=np.int64)
    total = kind_total.reindex(members, fill_value=0).to_numpy()
    return sig.shrunk_share(np.maximum(total - inside, 0), op.totals, ctx.config.focus_prior)


def _signal_values(op: _Operator, ctx: _Context, samples_across: tuple[int, int] = (0, 0)
                   ) -> tuple[dict[str, float | None], _Content, dict]:
    """Every signal of one operator, in the order the exports list them (see the module docstring);
    ``samples_across``: its own identical capability prompts that two or more of its customers send, and how many
    of its members send them (:func:`_samples_across`)."""
    config, sigp, mreq = ctx.config, ctx.signals, op.mreq
    n_members = len(op.members)
    values: dict[str, float | None] = {"spread": sig.spread(op.n_principals, config.full_spread_accounts)}
    values["evenness"] = sig.evenness(op.counts.to_numpy()) if n_members >= 2 else None
    values["focus"] = None  # below, once the infrastructure signal is known (the exports keep this order)
    n_unique = int(mreq["prompt_hash"].nunique())
    task = _request_tasks(mreq)
    n_tasks = int(task.nunique())
    values["diversity"] = sig.diversity(n_tasks, len(mreq), sigp.diversity_saturation, sigp.diversity_distinct_saturation)
    values["reruns"] = sig.reruns(task.to_numpy(), mreq["t"].to_numpy(), sigp.rerun_gap_hours, sigp.rerun_intro_share,
                                  sigp.rerun_burst_share)
    content_values, content = _content_signals(mreq, task, ctx)
    values.update(content_values)
    behaviour, extras = _behaviour_signals(op, ctx)
    pivot = behaviour.pop("pivot")
    values.update(behaviour)
    # times the share of its accounts that send them: accounts that merely touch the pool's units (a few
    # requests of ordinary customers) are not part of a sampling pool
    values["samples"] = (sig.samples(samples_across[0], n_unique, sigp.samples_min_prompts, sigp.samples_full_share,
                                     sigp.samples_min_share) * samples_across[1] / max(n_members, 1)
                         if config.operator_prompt_max_accounts >= 2 else None)
    values["pivot"] = pivot
    # Capability work outside the group is the operator's only as far as the accounts are shown to be one
    # operator's: it counts in proportion to the infrastructure signal. Independent customers who happen to use
    # one template (a popular chain-of-thought prompt) also ask other reasoning questions of their own.
    tie = float(values.get("infrastructure") or 0.0)
    # Capability work of the group's own kind (its main intent) in no cluster is the operator's work whatever the
    # infrastructure: a pool composing each wrapper from fragments leaves half its harvest too varied to cluster.
    # Work of that kind in other units is not counted without a tie: students of one class ask the assignment's
    # other problems there, each a unit of its own.
    same = _same_kind_elsewhere(op, content.kind_name, ctx)
    member_focus = op.share + np.maximum(tie * op.elsewhere, same)
    values["focus"] = float(member_focus.mean())
    extras.update(n_unique=n_unique, n_tasks=n_tasks, member_focus=member_focus,
                  focus_same_kind=content.kind_name if same.mean() > (tie * op.elsewhere).mean() else "")
    return values, content, extras


def _campaign_row(cid: str, score: float, values: dict[str, float | None], content: _Content, extras: dict,
                  op: _Operator, n_operators: int, ctx: _Context, n_joiners: int = 0,
                  by_prompts: bool = False, samples: tuple[int, tuple[int, int]] = (0, (0, 0)), copying: str = ""
                  ) -> dict:
    """The ``campaigns`` row: score, label, evidence sentences and examples (``n_joiners``: wrapper joiners
    listed beside the members, see :func:`_members`; ``copying``: see :func:`_score_group`)."""
    config, ep, mreq = ctx.config, ctx.evidence, op.mreq
    n_members, top_info = len(op.members), content.top
    tv = values["training_value"]
    # not judged: the kind its own words name (or none); judged: its capability once its value reaches the bar
    kind = content.kind_name if tv is None or tv >= ep.intent_min_value else ""
    evidence = _evidence(values, n_members, len(mreq), extras["n_unique"], op.counts,
                         (op.share, extras["member_focus"]), op.shared, extras["infra_accounts"], extras["n_measured"],
                         top_info.template, top_info.template_coverage, kind, extras["pivot_model"], extras["sim"],
                         ctx.null_similarity, config, ep)
    context = _context_evidence(n_members, op.n_principals, extras["n_tasks"], extras["n_unique"], n_operators,
                                values, config, content.unjudged, (kind, content.kind_cues), content.ordinary,
                                samples[0] if by_prompts and n_operators > 1 else 0,
                                samples[0] if samples[0] >= ep.samples_min else 0, samples[1], copying)
    if values.get("reruns"):  # what gates the score, right after what explains it
        context.append(_rerun_evidence(float(values["reruns"]), extras["n_tasks"], ctx.signals))
    evidence[1:1] = context
    if extras["focus_same_kind"]:
        evidence = [e.replace(FOCUS_INFRA_WORDS, f"or other {extras['focus_same_kind']} requests of their own in no "
                              "cluster") for e in evidence]
    if values["templating"] >= ep.templated_min and not (top_info.template and top_info.template_coverage > 0):
        evidence.append(_templated_elsewhere(values["templating"], content))
    if content.wrapper[1] >= ep.wrapper_min_share:
        evidence.append(f"Wrapper sentences: {_fmt_pct(content.wrapper[1])} of its requests are in no cluster or in "
                        "one without a template, yet carry sentences its prompts send around "
                        f"{config.group_wrapper_min_tasks}+ different tasks (\u201c{content.wrapper[0][:160]}\u201d): one "
                        "wrapper composed from fragments, counted as templated.")
    evidence += _community_unit_evidence(mreq, ctx)
    if n_joiners:
        evidence.append(f"{n_joiners} more account{'s' if n_joiners != 1 else ''} sent only one request to the "
                        "campaign's capability wrappers, half or more of all they sent (fresh pool accounts): "
                        f"listed with the campaign, not counted in its signals")
    topic = _topic(mreq, ctx, top_info) or ("" if kind else top_info.label)
    note = ""
    if tv is None:
        note = ("named from its own wording; training value not judged" if kind
                else "intent not judged: text in a script or language the model does not read")
    elif content.ordinary[0]:
        note = f"{content.ordinary[0]}, named from its own wording"
    return {
        "campaign_id": cid, "score": round(score, 4), "flagged": bool(score >= config.flag_threshold),
        "label": campaign_label(kind, topic, n_members + n_joiners, op.n_principals + n_joiners, note),
        "kind": kind,
        "keywords": list(dict.fromkeys(k for i in content.infos for k in i.keywords))[: ep.keywords],
        "template": top_info.template,
        "n_accounts": n_members + n_joiners, "n_requests": int(len(mreq)),
        "first_seen": mreq["ts"].min(), "last_seen": mreq["ts"].max(),
        # a community's unclustered work is no stored cluster: the campaign lists the clusters it has
        "clusters": [int(c) for c in op.group if c not in ctx.community_units and c not in ctx.pool_units],
        "signals": {k: (None if v is None else round(float(v), 4)) for k, v in values.items()},
        # the prompts' hashes: their texts are read for every campaign at once (:func:`_score_groups`)
        "evidence": evidence, "examples": _sample_hashes(mreq, ep.examples),
    }


def _templated_elsewhere(templating: float, content: _Content) -> str:
    """The templating sentence where the main unit has no template of its own: the share of the requests in
    templated units (and the template of the unit holding most of them), or carrying the group's wrapper."""
    covered = np.array([i.template_coverage if i.template else 0.0 for i in content.infos]) * content.weights
    best = content.infos[int(covered.argmax())] if covered.max(initial=0.0) > 0 else None
    example = f", most in one sharing \u201c{best.template[:160]}\u201d" if best is not None else ""
    return (f"Templated ({templating:.2f}): its requests fall in units whose prompts share a template or carry the "
            f"group's wrapper sentences{example}; its main unit's own prompts share none.")


def _rerun_evidence(reruns: float, n_tasks: int, sigp: sig.SignalParams) -> str:
    """What the re-run gate (:func:`analyzer.signals.reruns`) found, in words."""
    return (f"Evaluation re-runs: {_fmt_pct(sigp.rerun_intro_share)} of its {n_tasks:,} tasks were first sent in one "
            "burst, far shorter than the pause before they were sent again, and "
            f"{_fmt_pct(reruns)} of its requests re-send one of them {sigp.rerun_gap_hours:g} hours or more later: an "
            "eval harness re-running a fixed test set per checkpoint (a harvest keeps asking new tasks, or spreads "
            f"each pass over a source set across the days). The score is scaled by {1 - reruns:.2f}.")


def _community_unit_evidence(mreq: pd.DataFrame, ctx: _Context) -> list[str]:
    """The sentences saying how many of the campaign's requests are its community's unclustered work (see
    :func:`community_units`) or unclustered requests sharing wrapper sentences (:func:`wrapper_pool_units`)."""
    out = []
    in_unit = mreq["cluster_id"].isin(ctx.community_units).to_numpy()
    n = int(in_unit.sum())
    if n:
        senders = mreq.loc[in_unit, "account_id"].unique()
        n_samplers = int(np.isin(senders, list(ctx.samplers)).sum()) if ctx.samplers else 0
        if n_samplers == len(senders):
            how = ("identical capability prompts they re-send to each other (several samples of one prompt spread "
                   "over the accounts)")
        elif n_samplers:
            how = (f"shared network, key or payment identifiers ({len(senders) - n_samplers} of these "
                   f"{len(senders)} accounts; the other {n_samplers} re-send the same capability prompts as they do, "
                   "several samples of one prompt spread over the accounts)")
        else:
            how = "shared network, key or payment identifiers"
        out.append(f"{n} of its {len(mreq)} requests ({_fmt_pct(n / len(mreq))}) have prompts in no cluster (too few "
                   "or too varied to form one); they are counted together because they read as capability requests "
                   f"and come from accounts of different customers linked through {how}")
    n = int(mreq["cluster_id"].isin(ctx.pool_units).sum())
    if n:
        out.append(f"{n} of its {len(mreq)} requests ({_fmt_pct(n / len(mreq))}) have prompts in no cluster (too few "
                   "or too varied to form one); they are counted together because they read as capability requests "
                   f"and carry wrapper sentences that {ctx.config.community_wrapper_min_accounts} or more accounts send "
                   "around tasks of their own (a wrapper composed from fragments)")
    return out


def _account_rows(cid: str, score: float, op: _Operator, holders: pd.DataFrame, extra_members: set[str],
                  ctx: _Context) -> list[dict]:
    """The ``campaign_accounts`` rows: each member's share of its traffic, its identifiers, its score."""
    config, ep = ctx.config, ctx.evidence
    by_value = {(s.field, s.value): s for s in op.shared}
    rank = {(s.field, s.value): i for i, s in enumerate(op.shared)}  # most shared first, whatever the row order
    infra_by_acc: dict[str, list[str]] = defaultdict(list)
    for f, v, a in sorted(zip(holders["field"], holders["value"], holders["account_id"], strict=True),
                          key=lambda t: rank[(t[0], t[1])]):
        infra_by_acc[a].append(
            f"shares {f.replace('_', ' ')} {v[:60]!r} with {by_value[(f, v)].n_group_accounts - 1} other members")
    rows = []
    for acc, n in zip(op.members, op.counts.to_numpy(), strict=True):
        total = int(ctx.account_total[acc])
        ev = [f"{n} of its {total} requests ({_fmt_pct(n / total)}) are in this campaign"]
        ev += infra_by_acc.get(acc, [])[: ep.account_identifiers]
        if acc in extra_members:
            ev.append("joined through shared infrastructure despite mixing in other traffic (hydra pattern)")
        rows.append({
            "campaign_id": cid, "account_id": acc, "n_requests": int(n), "share": round(float(n / total), 4),
            "score": _member_score(score, n / total, config), "evidence": ev,
        })
    return rows


def _member_score(score: float, share: float, config: ScoringConfig) -> float:
    """A member account's score: the campaign's times ``member_score_base`` plus the rest by its ``share`` of
    traffic in the campaign, so that members doing nothing else rank first."""
    return round(score * (config.member_score_base + (1.0 - config.member_score_base) * min(1.0, share)), 4)


def _joiner_rows(cid: str, score: float, joiners: Sequence[str], per_acc: pd.Series, ctx: _Context) -> list[dict]:
    """The ``campaign_accounts`` rows of the wrapper joiners (see :func:`_members`), scored like members."""
    rows = []
    for acc in joiners:
        n, total = int(per_acc[acc]), int(ctx.account_total[acc])
        rows.append({
            "campaign_id": cid, "account_id": acc, "n_requests": n, "share": round(n / total, 4),
            "score": _member_score(score, n / total, ctx.config),
            "evidence": [f"{n} of its {total} requests ({_fmt_pct(n / total)}) are in this campaign, all in its "
                         "capability wrappers"],
        })
    return rows


def _partial_rows(cid: str, score: float, per_acc: pd.Series, member_set: set[str], ctx: _Context) -> list[dict]:
    """Accounts that touch the campaign without belonging to it keep a partial score (below every member's),
    so that near-members rank above accounts that never touched it."""
    config = ctx.config
    rest = per_acc[~per_acc.index.isin(member_set)]
    share = rest.to_numpy() / ctx.account_total.reindex(rest.index).to_numpy()
    partial = score * config.partial_score_factor * share ** config.partial_score_exponent
    return [{"account_id": acc, "campaign_id": cid, "partial": p} for acc, p in zip(rest.index, partial, strict=True)]


#: How each capability intent reads in a campaign label.
INTENT_PHRASES: dict[str, str] = {
    "chain-of-thought elicitation": "chain-of-thought elicitation",
    "rubric grading": "rubric grading (model as reward model)",
    "tool use": "tool-use trajectories",
    "agentic coding": "agentic coding",
    "censorship-safe rewrite": "censorship-safe rewrites",
    "data analysis": "data analysis",
}


def campaign_label(kind: str, topic: str, n_accounts: int, n_principals: int, note: str = "") -> str:
    """What the campaign is after, in words an analyst reads at a glance.

    ``"chain-of-thought elicitation on apples, total, many: 38 accounts"``; without a training intent the
    topic alone. Seats of one organisation are said so (``"30 accounts of 1 organisation"``). A ``note`` (how
    the intent was read) follows in brackets.
    """
    who = f"{n_accounts} accounts" if n_accounts != 1 else "1 account"
    if n_principals < n_accounts:
        who += f" of {n_principals} organisation{'s' if n_principals != 1 else ''}"
    what = INTENT_PHRASES.get(kind, kind)
    head = f"{what} on {topic}" if what and topic else (what or topic or "unlabelled")
    return f"{head} ({note}): {who}" if note else f"{head}: {who}"


#: Words of instructions rather than subjects: never used to name what a campaign's tasks are about.
_INSTRUCTION_WORDS = frozenset(
    "answer answers step steps final problem problems question questions response responses score scores "
    "solve solution reasoning explain output format json task tasks think show write given following "
    "please result results instruction instructions rubric feedback grade use using end boxed".split())


def _topic(mreq: pd.DataFrame, ctx: _Context, top_info: ClusterInfo) -> str:
    """The subject of the tasks: keywords of the members' most used topic (semantic) cluster.

    A template family's keywords name its wrapper ("problem · step · answer"); the topic clusters the same
    prompts fall into name what the tasks are about, once words of the wrapper and of instructions are left
    out. Empty when nothing is left (the label then names the intent alone). Cut-offs: ``ctx.evidence``.
    """
    ep = ctx.evidence
    units = [ctx.clusters.get(int(c)) for c in mreq["cluster_id"].unique()]
    scaffold = set(re.findall(r"\w+", " ".join(
        [top_info.template] + [u.template for u in units if u is not None]).lower())) | _INSTRUCTION_WORDS
    chosen: list[str] = []
    if "topic_cluster" in mreq:
        # most requests first, ties by cluster id: the same label whatever order the rows come in
        topic = mreq["topic_cluster"].to_numpy()
        ids, n = np.unique(topic[topic >= 0], return_counts=True)
        order = np.argsort(-n, kind="stable")
        # Only a topic that holds a good part of the campaign names it; tasks spread over many topics (a
        # harvest of GSM8K problems) get no topic rather than the keywords of a minor one.
        for tc in ids[order][n[order] >= ep.topic_min_share * len(mreq)][: ep.topic_clusters]:
            info = ctx.clusters.get(int(tc))
            for k in (info.keywords if info is not None else []):
                words = re.findall(r"\w+", k.lower())
                if (words and all(len(w) >= ep.topic_min_word_chars and w.isalpha() for w in words)
                        and not set(words) & scaffold
                        and k not in chosen):
                    chosen.append(k)
    return ", ".join(chosen[: ep.topic_words])


def _context_evidence(n_members: int, n_principals: int, n_tasks: int, n_unique: int, n_operators: int,
                      values: Mapping[str, float | None], config: ScoringConfig, unjudged: float = 0.0,
                      named: tuple[str, Sequence[str]] = ("", ()),
                      ordinary: tuple[str, Sequence[str]] = ("", ()), resent: int = 0, samples: int = 0,
                      samples_across: tuple[int, int] = (0, 0), copying: str = "") -> list[str]:
    """Sentences on what explains or gates the score: organisations, distinct tasks, operators, value (``named``:
    where it is not judged, the capability the requests' own words name and those words; ``ordinary``: the
    ordinary workload they name instead, which set the value; ``resent``: where re-sent prompts told the operators
    apart, how many identical prompts this one's accounts send among themselves; ``samples``: otherwise, how many
    identical capability prompts two or more of its accounts send; ``samples_across``: its own that two or more
    of its customers send, which the samples signal counts, and how many of its accounts send them;
    ``copying``: "self" where most of its accounts only copy popular texts in the group, "others" where another
    operator's do)."""
    ev = []
    if n_principals < n_members:
        ev.append(f"Explanation: the {n_members} accounts belong to {n_principals} organisation"
                  f"{'s' if n_principals != 1 else ''} (org id); seats of one customer count once in spread "
                  f"({values['spread']:.2f}).")
    if n_tasks < n_unique:
        ev.append(f"{n_unique:,} distinct prompts are {n_tasks:,} distinct tasks once near-duplicate wordings "
                  "of one task are merged.")
    if n_operators > 1 and copying == "self":
        ev.append(f"One of {n_operators} sets of accounts working this task kind: most of these send nothing here but "
                  f"copies of popular texts (prompts more than {config.operator_prompt_max_accounts} accounts send: a viral or "
                  "assigned text), no work of their own, so they are kept apart from the accounts that do work here.")
    elif n_operators > 1 and copying == "others":
        ev.append(f"One of {n_operators} sets of accounts working this task kind: the customers who send nothing here "
                  "but copies of popular texts (a viral or assigned text that lands among this work) are kept apart, "
                  "and are not counted among its accounts.")
    elif n_operators > 1 and resent:
        ev.append(f"One of {n_operators} operators working this task kind: its accounts share no infrastructure "
                  f"with the others, and re-send {resent:,} identical prompt{'s' if resent != 1 else ''} among "
                  "themselves (several samples of one prompt, spread over the pool) but none of the others' at the "
                  "same time, so each is a campaign of its own.")
    elif n_operators > 1:
        ev.append(f"One of {n_operators} operators working this task kind: its accounts share no infrastructure "
                  "and keep different hours from the others, so each is a campaign of its own.")
    if values.get("samples"):
        ev.append(f"Re-sent samples ({values['samples']:.2f}): {samples_across[0]:,} of its {n_unique:,} distinct "
                  "prompts are identical capability prompts that two or more of its customers send and no one else "
                  f"does, sent by {samples_across[1]:,} of its {n_members:,} accounts, as a pool spreading several "
                  "samples of one rendered prompt (best-of-n, rollouts) over its accounts does.")
    elif samples and not (n_operators > 1 and resent):
        ev.append(f"Re-sent across accounts: {samples:,} of its {n_unique:,} distinct prompts are identical "
                  "capability prompts that two or more of its accounts send, as a pool spreading several samples of "
                  "one rendered prompt (best-of-n, rollouts) over its accounts does.")
    gate = value_gate(values.get("training_value"), config.value_full)
    if ordinary[0]:
        ev.append(f"Training value read from their own words: {_fmt_pct(unjudged)} of the requests are written (or "
                  "wrapped) in a script or language the embedding model does not read, and they name an ordinary "
                  f"workload ({ordinary[0]}: {', '.join(ordinary[1])}), no capability; scored as that workload reads "
                  f"in English (training value {values.get('training_value') or 0:.2f}, score scaled by {gate:.2f}).")
    elif values.get("training_value") is None:
        ev.append(f"Training value not judged: {_fmt_pct(unjudged)} of the requests are written (or wrapped) in "
                  "a script or language the embedding model does not read (e.g. Chinese or Spanish wrappers); the "
                  "score rests on behaviour alone.")
        if named[0]:
            ev.append(f"What they ask for, in their own words: {INTENT_PHRASES.get(named[0], named[0])} "
                      f"(cue words {', '.join(named[1])}); named for the analyst, not scored.")
    elif gate < 1.0:
        ev.append(f"Low training value ({values['training_value'] or 0:.2f}): the content maps onto ordinary "
                  f"workloads more than onto a model capability, so the score is scaled by {gate:.2f}.")
    return ev


def _null_activity_similarity(req: pd.DataFrame, config: ScoringConfig, seed: int = 0) -> float:
    """Activity similarity of ``null_accounts`` random accounts with at least ``sync_min_requests`` requests:
    the baseline for ``sync``."""
    counts = req.groupby("account_id").size()
    pool = sorted(counts[counts >= config.sync_min_requests].index)
    if len(pool) < config.sync_min_accounts:
        return 0.0
    rng = np.random.default_rng(seed)
    pick = set(rng.choice(pool, size=min(config.null_accounts, len(pool)), replace=False).tolist())
    # Cap heavy accounts so that they do not dominate the baseline: their first requests in time (ties by
    # prompt), whatever order the workspace returned the rows in.
    sub = req[req["account_id"].isin(pick)].sort_values(["account_id", "t", "prompt_hash"], kind="stable")
    sub = sub.groupby("account_id", group_keys=False).head(config.null_max_requests)
    return sig.activity_similarity(sub["acode"].to_numpy(), sub["t"].to_numpy(), config.sync_bucket_minutes)


def _sample_hashes(mreq: pd.DataFrame, n: int) -> list[str]:
    """Up to ``n`` distinct prompts of the group: the most frequent first, then evenly through the rest (the
    rule of :func:`_unit_samples` for one unit, in arrays: it runs once per scored group)."""
    codes, uniques = pd.factorize(mreq["prompt_hash"].astype(str).to_numpy(), sort=True)
    counts = np.bincount(codes, minlength=len(uniques))
    order = np.lexsort((np.arange(len(uniques)), -counts))  # most requested first, ties by hash
    pos = np.arange(len(order))
    step = max(len(order) / n, 1.0)
    i = np.ceil(pos / step)
    keep = (len(order) <= n) | ((i < n) & (np.floor(i * step) == pos))
    return [str(h) for h in np.asarray(uniques, dtype=object)[order[keep]]]


#: What the focus sentence counts beside the campaign's own work where shared infrastructure ties the accounts.
FOCUS_INFRA_WORDS = ("or, as they share an operator's infrastructure, capability work elsewhere (reasoning, grading, "
                     "tool use, code or text the model does not read, in other units)")


def _evidence(values, n_members, n_requests, n_unique, m_counts, m_shares, shared_vals, infra_accounts, n_measured,
              template_text: str, coverage: float, kind, pivot_model, sim, null_sim, config: ScoringConfig,
              ep: EvidenceParams) -> list[str]:
    ev = [f"{n_members} accounts sent {n_requests:,} requests ({n_unique:,} distinct prompts)."]
    if n_members >= 2:
        ev.append(
            f"Volume per account: median {int(np.median(m_counts))}, max {int(m_counts.max())}; "
            f"evenness {values['evenness']:.2f} (1 = perfectly load-balanced)."
        )
    m_share, m_focus = m_shares  # each member's share in the campaign, and its focus (capability work elsewhere too)
    elsewhere = float(np.mean(m_focus) - np.mean(m_share))
    ev.append(
        f"Accounts are focused: on average {_fmt_pct(float(np.mean(m_focus)))} of each account's own traffic is "
        + (f"this campaign's work {FOCUS_INFRA_WORDS}; {_fmt_pct(float(np.mean(m_share)))} in this campaign itself"
           if elsewhere >= ep.focus_elsewhere_min else "in this campaign")
        + (f"; {int((m_focus >= ep.focused_share).sum())} accounts do almost nothing else."
           if (m_focus >= ep.focused_share).any() else ".")
    )
    if values["diversity"] < ep.low_diversity:
        ev.append(
            f"Low task diversity ({values['diversity']:.2f}): {n_unique:,} distinct prompts for {n_requests:,} requests "
            "(a few tasks asked over and over or by many accounts: a viral prompt, a classroom's assignment, a "
            "scripted repeat; not a harvest of tasks)."
        )
    if values["templating"] >= ep.templated_min and template_text and coverage > 0:  # else templated elsewhere
        ev.append(f"Templated: {_fmt_pct(coverage)} of the main unit's prompts share the scaffold "
                  f"\u201c{template_text[:160]}\u201d.")
    if (values["training_value"] or 0.0) >= ep.intent_min_value and kind:
        ev.append(f"Training value {values['training_value']:.2f}: the prompts read as {kind}.")
    if values.get("sync") is not None and values["sync"] >= ep.sync_min:
        ev.append(f"Synchronized: accounts are active in the same {config.sync_bucket_minutes}-minute windows "
                  f"(activity similarity {sim:.3f} vs {null_sim:.3f} for random accounts).")
    elif n_members >= 2:
        chosen = timing_is_chosen(values)
        ties = " and ".join(w for n, w in OPERATOR_EVIDENCE_WORDS.items() if (values.get(n) or 0) > 0)
        how = (f"left out of the score: its accounts are tied by {ties}, and a pool can spread its load over the day"
               if chosen else "counted as no synchronization")
        if values.get("sync") is None:
            ev.append(f"Timing: too few accounts with {config.sync_min_requests}+ requests to compare their "
                      f"activity ({how}).")
        elif chosen and values["sync"] <= 0:
            ev.append(f"Timing: accounts no more co-active than random accounts (activity similarity {sim:.3f} vs "
                      f"{null_sim:.3f}), an ordinary daily curve ({how}).")
    if values.get("regularity") is not None and values["regularity"] >= ep.regularity_min:
        ev.append(f"Scripted pacing: {_fmt_pct(values['regularity'])} of active accounts send at regular intervals.")
    if infra_accounts:
        tops = "; ".join(f"{s.field.replace('_', ' ')} {s.value[:50]!r} ({s.n_group_accounts} accounts)" for s in shared_vals[: ep.campaign_identifiers])
        bare = (f" ({n_members - n_measured} send no network or client identifiers: the signal is the share of the "
                f"{n_measured} that do)") if n_measured < n_members else ""
        ev.append(f"Shared infrastructure: {len(infra_accounts)} of {n_members} accounts share identifiers used "
                  f"mostly by this group{bare}: {tops}.")
    if values.get("pivot") is not None and values["pivot"] >= ep.pivot_min:
        ev.append(f"Pivot: traffic moved to newly released model {pivot_model!r} much faster than other tenants "
                  f"(pivot {values['pivot']:.2f}).")
    if n_members == 1:
        ev.append("Single account: a templated batch job by one customer is not a multi-account campaign.")
    return ev


def _account_table(req: pd.DataFrame, account_total: pd.Series, camp_acc: pd.DataFrame, ac: pd.DataFrame,
                   partial: pd.DataFrame) -> pd.DataFrame:
    """One row per account: volume, first and last request, its top cluster (the stored cluster of ``ac``,
    requests per account and cluster, holding most of its requests; -1: none), best campaign and score."""
    g = req.groupby("account_id")
    out = pd.DataFrame({
        "n_requests": account_total,
        "n_prompts": g["prompt_hash"].nunique(),
        "first_seen": g["ts"].min(),
        "last_seen": g["ts"].max(),
    })
    clustered = ac[ac["cluster_id"] >= 0].sort_values(["account_id", "n", "cluster_id"], ascending=[True, False, True])
    out["top_cluster"] = clustered.drop_duplicates("account_id").set_index("account_id")["cluster_id"].reindex(out.index)
    out["top_cluster"] = out["top_cluster"].fillna(-1).astype(int)
    best = camp_acc.sort_values(["score", "campaign_id"], ascending=[False, True]).drop_duplicates("account_id")
    best = best.set_index("account_id")
    out["campaign_id"] = best["campaign_id"].reindex(out.index)
    near = partial.groupby("account_id")["partial"].max().reindex(out.index).fillna(0.0)
    out["score"] = np.maximum(best["score"].reindex(out.index).fillna(0.0), near.round(4))
    out["signals"] = [
        {"share_in_campaign": float(s)} if pd.notna(s) else {}
        for s in best["share"].reindex(out.index)
    ]
    out.index.name = "account_id"
    return out.reset_index()
