"""Synthetic API-log scenarios with planted distillation campaigns and legitimate look-alikes.

``build_scenario(preset, seed, **knobs)`` returns a :class:`Scenario`: a request frame (one row per request,
sorted by time) and a ground-truth dict. ``write_scenario`` writes the frame in the pipeline's input format
(``logs.jsonl.gz``, one JSON object per request) plus ``truth.json``.

What is planted (see ``docs/design.md`` and ``../shared/notes/threat-model.md``):

* organic accounts: heavy-tailed activity (lognormal plus a few power users), 1-4 topic interests each,
  diurnal timing in their own time zone, common SDK user agents, residential-like IPs, a realistic model mix,
  ~3% retries of the same prompt;
* campaigns, each a wrapper family around real task text: ``cot_math`` (chain-of-thought elicitation on
  GSM8K/MATH) and ``rubric_grading`` (Prometheus/PandaLM/FLASK grading) run by one operator from ONE account
  pool; ``censorship_rewrite`` (deccp / chinese_auditing questions); ``agentic_tools`` (BFCL/ToolBench tool
  calls, HumanEval/MBPP coding, InfiAgent/WTQ data analysis) which pivots to a model released mid-log.
  Load-balanced volume, shift timing with jitter, proxy /24s, shared or rotated user agents, some shared
  payment/org ids, persona system prompts; a share of accounts are "hydra" accounts that also carry
  ordinary traffic;
* hard negatives: ``homework`` (students), ``viral_prompt`` (one prompt pasted by many users),
  ``enterprise_batch`` (one account, one template, thousands of rows), ``eval_harness`` (one org re-running a
  fixed benchmark).

Everything is drawn from one ``numpy.random.Generator(seed)`` (plus, for the adversarial knobs, a second
stream ``default_rng([seed, 0x1111])``): same preset + seed + knobs gives an identical frame.

Adversarial knobs ("hard to fool", issue 11; see :data:`ADVERSARIAL_KNOBS`). Each is off by default, and off
it draws nothing from either stream, so ``sample`` / ``quick`` / ``standard`` / ``scale`` build byte-identical
frames and ``truth.json`` with or without these knobs existing (knobs at their default are left out of
``truth["knobs"]``). Each works alone and in combination:

* ``wrapper_style="fragments"``: every campaign request's wrapper is composed from interchangeable fragments of
  its task family (cot, grading, censorship, tools, coding, data analysis; 4-5 slots such as role, reasoning
  instruction, rubric, output format, closing, each with 4-8 phrasings; optional slots kept with a
  probability), in shuffled order, with the task block (itself in one of 4-7 presentations) at a random
  position. The required slots carry the intent, so every composition still asks for the same work.
* ``system_intent_share=x``: a share ``x`` of campaign requests carry the instruction in the system message
  (OpenAI ``messages``; the operator's persona, if any, first) and only the task text, after an optional
  neutral lead such as ``"Problem:"``, in the user turn.
* ``campaign_timing="diurnal"``: campaign accounts send in ordinary diurnal sessions (as organic users do) in
  the time zone of their proxy exit country (+-1 h), no shift windows.
* ``metadata="minimal"``: every row (campaign and benign) keeps only account, time and text; ``model``,
  ``ip``, ``user_agent``, ``api_key_id``, ``org_id``, ``payment_id`` and ``country`` are null (system prompts
  stay; ``request_id`` stays, an opaque row id). ``"mixed"``: the same for a random half of all accounts
  (a log merged from two gateways, one of which records only the basics), so missing metadata is no tell.
* ``wrapper_language="zh"``: campaign wrappers (fixed or fragments, personas, system instructions, padding
  labels) in Simplified Chinese around the task text; ``"mixed"``: each campaign request Chinese with
  probability 1/2. ``"es"``: the same wrappers in Spanish (a language in the Latin script, which the embedding
  models tokenise but do not understand); ``"pl"``: in Polish (the same, in a language of which the analyzer
  has no function word list).
* ``pad_chars=n``: every campaign request is padded past ``n`` characters with a filler block
  (``"Reference material:"``, ``"Context:"``, ...) of concatenated real organic corpus prompts, before the
  request for about half of them and after it for the rest.
* ``wrapper_noise=x``: each word of a campaign request's wrapper (fixed or fragments, system instruction, task
  label; never the task text) gets a typo with probability ``x`` (two inner letters swapped, one dropped or one
  doubled), drawn per request: the wrapper a person or a model retypes each time, so that few of its sentences
  recur verbatim (at 0.3 a ten-word sentence is intact in about 3% of requests).
* ``second_operator={"campaign": c, "accounts": n[, "requests_per_account": r]}``: a second, separate operator
  running the task kind of ``c`` with its own accounts, two proxy /24s (disjoint from the first operators'),
  exit countries in the Americas, its own user agents, hours outside the first operator's shifts (or, with
  diurnal timing, its exits' time zones) and, with fixed wrappers, its own paraphrases of them. Its truth
  entry is ``f"{c}_b"`` with operator ``"<first operator>2"``; the recall rule counts it as its own campaign.
* ``ban_day=d`` (issue 12, succession): on day ``d`` (0-based) ``ban_share`` (default 1/2) of each operator's
  accounts are banned; each has a fresh replacement account (new id, API key, organisation, payment; the same
  proxies and user agents) that sends everything the banned one would have sent from then on. The truth lists
  the replacements among the campaign's ``accounts`` and in ``replacement_accounts`` (replacement -> banned
  id), the banned ones in ``banned_accounts``. Draws from its own stream ``default_rng([seed, 0x2222])``.
* look-alikes coordinated for honest reasons (add them to ``hard_negatives``; not in the default tuple):
  ``enterprise_seats`` (``enterprise_seats`` seats of one organisation, one shared system prompt, a templated
  support-ticket workload over the company's customers' messages, weekday business hours in CET, one corporate
  egress /24, one org id and payment when ``enterprise_org_id`` else one org per seat and none; its system
  prompt and ticket templates in Chinese or Spanish with ``enterprise_language``),
  ``classroom`` (``classroom_students`` students, half ordinary users and half course accounts, behind one
  campus /24 in one 2-hour session, ``classroom_problems`` assignment problems asked "step by step", each
  student with own lead-ins and typos, 2-6 requests each) and ``cot_eval_harness`` (a research organisation
  re-running one CoT-prompted set of ``cot_eval_questions`` GSM8K test questions once per checkpoint,
  ``cot_eval_checkpoints`` times, sharded over ``cot_eval_accounts`` accounts of one org (per-account orgs
  when ``enterprise_org_id`` is False), nightly at scripted ~2 s intervals).

Sharded scenarios (issue 14): the ``incident`` preset is the 2026 disclosure at its size, 16 shards of 1M requests
(knob ``shards``), written by :func:`write_sharded_scenario` one build at a time, each shard's ids in a namespace of
its own (``id_namespace``) and every operator's proxies the same in all shards (``operator_seed``), with one
merged truth (:func:`merge_truths`). ``build_scenario`` builds one shard (``shards=1``), never all of them.

Adversarial presets (all quick-sized: ~12k requests over 14 days, all sources, seed-reproducible; each builds in
a few seconds):

========================  =============================================================================
``adv-paraphrase``        fragments + ``system_intent_share=0.3``
``adv-quiet``             pools of 15/15/10/20 accounts, ``campaign_share=0.03``, diurnal timing
``adv-bare``              ``metadata="minimal"``
``adv-chinese``           ``wrapper_language="zh"``
``adv-spanish``           ``wrapper_language="es"``
``adv-polish``            ``wrapper_language="pl"``
``adv-padded``            ``pad_chars=120_000``; 12 accounts x 30 requests per campaign (~1.4k padded rows,
                          ~72 MB gzipped log)
``adv-tiny``              every campaign 10 accounts x 20 requests, fragments, plus a second
                          ``censorship_rewrite`` operator with 10 accounts
``adv-lookalikes``        the four campaigns + all seven look-alikes (the three new ones included)
``adv-lookalikes-noorg``  the same with ``enterprise_org_id=False``
``adversarial``           everything but padding: pools of 20/20/15/25 accounts, ``campaign_share=0.05``,
                          fragments, ``system_intent_share=0.3``, diurnal, ``metadata="mixed"`` (half the
                          accounts bare: a detector must work with and without infrastructure fields in
                          one log), ``wrapper_language="mixed"``, a second 10-account censorship operator,
                          all seven look-alikes
========================  =============================================================================
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analyzer.atomic import atomic_open, atomic_write_bytes
from analyzer.bench import corpora, templates

# =============================================================================================== constants

START = datetime(2026, 1, 5, tzinfo=UTC)
MODELS = ("frontier-1", "frontier-1-mini", "fast-1")
MODEL_MIX = np.array([0.45, 0.35, 0.20])
NEW_MODEL = "frontier-2"

CAMPAIGN_KINDS = {
    "cot_math": ("cot", "operator_a"),
    "rubric_grading": ("grading", "operator_a"),
    "censorship_rewrite": ("censorship", "operator_b"),
    "agentic_tools": ("agentic", "operator_c"),
}
HARD_NEGATIVES = ("homework", "viral_prompt", "enterprise_batch", "eval_harness")
#: Look-alikes that are coordinated for honest reasons (issue 11); opt-in, so the default presets stay unchanged.
NEW_HARD_NEGATIVES = ("enterprise_seats", "classroom", "cot_eval_harness")
ALL_HARD_NEGATIVES = HARD_NEGATIVES + NEW_HARD_NEGATIVES

#: Columns of :attr:`Scenario.requests`. ``actor`` (ground truth) and ``chat`` (write as ``messages``)
#: are not written to the logs.
COLUMNS = ["request_id", "account_id", "ts", "prompt", "system_prompt", "model", "ip", "user_agent",
           "api_key_id", "org_id", "payment_id", "country", "actor", "chat"]

#: Columns blanked by ``metadata="minimal"`` (everything but account, time and text).
METADATA_COLUMNS = ("model", "ip", "user_agent", "api_key_id", "org_id", "payment_id", "country")

PRESETS: dict[str, dict[str, Any]] = {
    "sample": dict(
        n_requests=3_000, days=7, permissive_only=True, campaign_share=0.30,
        campaign_accounts={"cot_math": 20, "rubric_grading": 20, "censorship_rewrite": 20, "agentic_tools": 20},
        homework_students=25, viral_users=25, batch_requests=250, eval_accounts=2, eval_questions=40, eval_runs=3,
        power_users=1, organic_mu=2.0,
    ),
    "quick": dict(
        n_requests=12_000, days=14, permissive_only=False, campaign_share=0.28,
        campaign_accounts={"cot_math": 40, "rubric_grading": 40, "censorship_rewrite": 25, "agentic_tools": 60},
        homework_students=120, viral_users=150, batch_requests=1_200, eval_accounts=2, eval_questions=120,
        eval_runs=3, power_users=2,
    ),
    "standard": dict(
        n_requests=150_000, days=28, permissive_only=False, campaign_share=0.25,
        campaign_accounts={"cot_math": 150, "rubric_grading": 150, "censorship_rewrite": 60, "agentic_tools": 300},
        homework_students=250, viral_users=300, batch_requests=6_000, eval_accounts=3, eval_questions=400,
        eval_runs=4, power_users=4, organic_repeat=0.42,
    ),
    "scale": dict(
        n_requests=1_000_000, days=28, permissive_only=False, campaign_share=0.25,
        campaign_accounts={"cot_math": 300, "rubric_grading": 300, "censorship_rewrite": 150, "agentic_tools": 300},
        homework_students=300, viral_users=500, batch_requests=25_000, eval_accounts=3, eval_questions=1_000,
        eval_runs=5, power_users=20,
    ),
}

DEFAULT_KNOBS: dict[str, Any] = dict(
    requests_per_account=None,  # per account per campaign; None = derived from campaign_share
    mix_fraction=0.4,  # share of a hydra account's traffic that is ordinary (non-campaign) traffic
    hydra_fraction=0.25,  # share of each campaign's accounts that are hydra accounts
    template_variation=1.0,  # 0 = one fixed wrapper; 1 = all base wrappers; >1 = + paraphrased wrappers
    campaigns=tuple(CAMPAIGN_KINDS),
    hard_negatives=HARD_NEGATIVES,
    retry_rate=0.03,
    organic_mu=1.0,
    organic_repeat=0.2,  # share of organic requests drawn from a topic's popular head (shared common prompts)
    samples_per_task=None,  # exact repeats per rendered campaign prompt; None = per-kind defaults below
)

#: Adversarial knobs (issue 11). At these defaults the generator draws nothing extra from its random stream, so
#: every preset that does not set them produces the same frame as before they existed; they are left out of
#: ``truth["knobs"]`` while at their default (read them with ``truth["knobs"].get(name, ADVERSARIAL_KNOBS[name])``).
ADVERSARIAL_KNOBS: dict[str, Any] = dict(
    wrapper_style="fixed",  # "fixed" | "fragments": wrappers composed per request from shuffled fragments
    system_intent_share=0.0,  # share of campaign requests whose instruction sits in the system message
    campaign_timing="shifts",  # "shifts" | "diurnal": campaign accounts on an ordinary diurnal curve
    metadata="full",  # "full" | "minimal" (account, time, text only) | "mixed" (a random half of accounts minimal)
    wrapper_language="en",  # "en" | "zh" | "es" | "pl" | "mixed" (each campaign request Chinese with probability 1/2)
    pad_chars=0,  # > 0: every campaign request padded past this many characters with real corpus text
    wrapper_noise=0.0,  # probability of a typo in each wrapper word, drawn per campaign request (task text intact)
    second_operator=None,  # {"campaign": name, "accounts": n[, "requests_per_account": r]}: a second operator
    enterprise_seats=30,  # seats of the "enterprise_seats" look-alike
    enterprise_org_id=True,  # False: the enterprise seats and the CoT eval accounts carry no shared org id
    enterprise_language="en",  # "en" | "zh" | "es" | "pl": the enterprise look-alike's system prompt and ticket templates
    classroom_students=100,  # students of the "classroom" look-alike
    classroom_problems=12,  # assignment problems of the "classroom" look-alike
    cot_eval_accounts=4,  # accounts of the "cot_eval_harness" look-alike
    cot_eval_checkpoints=5,  # runs of the CoT test set (one per checkpoint)
    cot_eval_questions=100,  # size of the CoT test set (GSM8K test questions after the eval_harness ones)
    ban_day=None,  # int: from this day (0-based) a share of each campaign's accounts is banned and replaced
    ban_share=0.5,  # share of each operator's accounts banned on ``ban_day`` (each gets one fresh replacement)
)
DEFAULT_KNOBS.update(ADVERSARIAL_KNOBS)

#: Knobs of sharded scenarios (issue 14: the incident preset is written as ``shards`` independent builds, see
#: :func:`write_sharded_scenario`). Like the adversarial knobs they draw nothing at their defaults and are left
#: out of ``truth["knobs"]`` there.
SHARD_KNOBS: dict[str, Any] = dict(
    shards=1,  # builds written side by side (one file each) by write_sharded_scenario; build_scenario takes 1
    id_namespace="",  # inserted after every id's prefix (acct_, key_, org_, pm_, req_): shards never share an id
    operator_seed=None,  # int: operators' proxy /24s and exit countries drawn from it, the same in every shard
)
DEFAULT_KNOBS.update(SHARD_KNOBS)
_QUIET_KNOBS = {**ADVERSARIAL_KNOBS, **SHARD_KNOBS}

_ADV_BASE = PRESETS["quick"]
_ADV_SMALL_POOLS = {"cot_math": 20, "rubric_grading": 20, "censorship_rewrite": 15, "agentic_tools": 25}
PRESETS.update({
    # paraphrased wrappers: fragments in shuffled order, 30% of the instructions moved into the system message
    "adv-paraphrase": {**_ADV_BASE, "wrapper_style": "fragments", "system_intent_share": 0.3},
    # small, quiet pools on an ordinary day: 3% campaign traffic, diurnal timing
    "adv-quiet": {**_ADV_BASE, "campaign_share": 0.03, "campaign_timing": "diurnal",
                  "campaign_accounts": {"cot_math": 15, "rubric_grading": 15, "censorship_rewrite": 10,
                                        "agentic_tools": 20}},
    # no infrastructure metadata at all (account, time and text only)
    "adv-bare": {**_ADV_BASE, "metadata": "minimal"},
    # Chinese wrappers around the (mostly English) task text
    "adv-chinese": {**_ADV_BASE, "wrapper_language": "zh"},
    # Spanish wrappers: a Latin-script language the embedding models tokenise but do not understand
    "adv-spanish": {**_ADV_BASE, "wrapper_language": "es"},
    # Polish wrappers: the same, in a language the analyzer has no word list for
    "adv-polish": {**_ADV_BASE, "wrapper_language": "pl"},
    # every campaign request padded past 120k characters; fewer campaign requests to keep the log < 100 MB gz
    "adv-padded": {**_ADV_BASE, "pad_chars": 120_000, "requests_per_account": 30,
                   "campaign_accounts": {"cot_math": 12, "rubric_grading": 12, "censorship_rewrite": 12,
                                         "agentic_tools": 12}},
    # tiny pools: 10 accounts x 20 requests per campaign, fragment wrappers, and a second censorship operator
    "adv-tiny": {**_ADV_BASE, "campaign_accounts": 10, "requests_per_account": 20, "wrapper_style": "fragments",
                 "second_operator": {"campaign": "censorship_rewrite", "accounts": 10}},
    # the four campaigns next to all seven look-alikes (the three honest coordinated ones included)
    "adv-lookalikes": {**_ADV_BASE, "hard_negatives": ALL_HARD_NEGATIVES},
    # the same without the look-alike organisations' shared org ids
    "adv-lookalikes-noorg": {**_ADV_BASE, "hard_negatives": ALL_HARD_NEGATIVES, "enterprise_org_id": False},
    # everything at once except padding (see the module docstring)
    "adversarial": {**_ADV_BASE, "campaign_share": 0.05, "campaign_accounts": _ADV_SMALL_POOLS,
                    "wrapper_style": "fragments", "system_intent_share": 0.3, "campaign_timing": "diurnal",
                    "metadata": "mixed", "wrapper_language": "mixed",
                    "second_operator": {"campaign": "censorship_rewrite", "accounts": 10},
                    "hard_negatives": ALL_HARD_NEGATIVES},
})
# The disclosed incident (issue 14): 16M requests over six weeks in 16 shards of 1M, each one build of these
# knobs (its own organic customers and look-alikes, ids in its own namespace) with the campaign operators shared
# across shards (operator_seed: the same proxy /24s and hours everywhere). Half the traffic is campaign
# traffic, 24,000 campaign accounts at about 300 requests per campaign they run, one operator dominating:
# agentic_tools' pool holds 20,800 of them and sends ~80% of the campaign requests (the disclosure: over 13M of
# 16M exchanges from one operator), its 6 proxy /24s fronting all of them. Written by write_sharded_scenario.
PRESETS["incident"] = dict(
    n_requests=1_000_000, days=42, permissive_only=False, campaign_share=0.5,
    campaign_accounts={"cot_math": 120, "rubric_grading": 120, "censorship_rewrite": 80, "agentic_tools": 1_300},
    hard_negatives=ALL_HARD_NEGATIVES, homework_students=300, viral_users=500, batch_requests=25_000,
    eval_accounts=3, eval_questions=1_000, eval_runs=5, power_users=20, shards=16,
)
#: Seeds of a sharded scenario's builds: shard i of seed s is built with seed ``s * SHARD_SEED_STRIDE + i``.
SHARD_SEED_STRIDE = 10_000

#: The presets of issue 11 (quick-sized, ~12k requests over 14 days).
ADVERSARIAL_PRESETS = ("adv-paraphrase", "adv-quiet", "adv-bare", "adv-chinese", "adv-spanish", "adv-polish",
                       "adv-padded", "adv-tiny", "adv-lookalikes", "adv-lookalikes-noorg", "adversarial")

#: Classroom look-alike: session length, share of students who are ordinary users, mean requests per student.
_CLASSROOM_SESSION_S = 2 * 3600.0
_CLASSROOM_EXISTING = 0.5
_CLASSROOM_MEAN_REQUESTS = 4.0
#: Seed suffix of the adversarial knobs' own random stream (``default_rng([seed, _ADV_STREAM])``).
_ADV_STREAM = 0x1111
#: Seed suffix of the ban knob's own random stream (which accounts are banned, the replacements' ids).
_BAN_STREAM = 0x2222
_FRAGMENT_SEPS = {"en": [" ", "\n", "\n\n"], "zh": ["", "\n", "\n\n"], "es": [" ", "\n", "\n\n"],
                  "pl": [" ", "\n", "\n\n"]}
#: The wrapper texts of each ``wrapper_language`` other than English: fragments, fixed wrappers, personas and
#: audiences (same order as ``templates.AUDIENCES``).
_WRAPPERS = {
    "zh": (templates.FRAGMENTS_ZH, templates.FIXED_ZH, templates.PERSONA_ZH, templates.AUDIENCES_ZH),
    "es": (templates.FRAGMENTS_ES, templates.FIXED_ES, templates.PERSONA_ES, templates.AUDIENCES_ES),
    "pl": (templates.FRAGMENTS_PL, templates.FIXED_PL, templates.PERSONA_PL, templates.AUDIENCES_PL),
}

_SAMPLES_PER_TASK = {"cot": 2.0, "grading": 1.0, "censorship": 2.0, "agentic": 1.3}

_COUNTRIES = [("US", -5, .20), ("US", -8, .09), ("US", -6, .05), ("IN", 5.5, .09), ("GB", 0, .06), ("DE", 1, .05),
              ("BR", -3, .05), ("FR", 1, .04), ("CA", -5, .04), ("JP", 9, .04), ("KR", 9, .03), ("AU", 10, .03),
              ("SG", 8, .02), ("NG", 1, .02), ("MX", -6, .03), ("ES", 1, .03), ("ID", 7, .03), ("PH", 8, .03),
              ("NL", 1, .02), ("PL", 1, .02), ("TR", 3, .02), ("VN", 7, .02), ("IT", 1, .02), ("EG", 2, .01),
              ("AR", -3, .01), ("SE", 1, .01)]
_CTRY_P = np.array([c[2] for c in _COUNTRIES]) / sum(c[2] for c in _COUNTRIES)
_RESIDENTIAL_OCTETS = [24, 47, 49, 58, 59, 60, 67, 68, 70, 71, 73, 75, 76, 78, 79, 81, 82, 84, 86, 88, 90, 91, 94,
                       98, 99, 101, 106, 109, 110, 112, 114, 117, 121, 122, 124, 136, 151, 174, 175, 177, 179, 180,
                       183, 186, 187, 189, 190, 197, 200, 201]
_PROXY_OCTETS = [45, 103, 104, 154, 156, 185, 193, 194, 209]
_PROXY_COUNTRIES = ["US", "SG", "JP", "DE", "NL", "GB", "KR", "MY"]
_UA_FAMILIES: list[tuple[str, list[str], float]] = [
    ("OpenAI/Python {v}", ["1.35.7", "1.40.6", "1.51.2", "1.54.4", "1.58.1", "1.61.0"], .32),
    ("OpenAI/JS {v}", ["4.52.7", "4.67.3", "4.77.0", "4.85.1"], .17),
    ("curl/{v}", ["7.81.0", "8.4.0", "8.5.0", "8.7.1"], .08),
    ("python-requests/{v}", ["2.28.2", "2.31.0", "2.32.3"], .09),
    ("axios/{v}", ["1.6.8", "1.7.7"], .05),
    ("Go-http-client/2.0", [""], .03),
    ("PostmanRuntime/{v}", ["7.39.0", "7.42.0"], .03),
    ("langchain-openai/{v} OpenAI/Python 1.54.4", ["0.2.9", "0.3.1"], .05),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v} Safari/537.36",
     ["124.0.0.0", "126.0.0.0", "131.0.0.0"], .12),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{v} "
     "Safari/605.1.15", ["17.4", "17.6", "18.1"], .06),
]
_UA_P = np.array([f[2] for f in _UA_FAMILIES]) / sum(f[2] for f in _UA_FAMILIES)
_HOURLY = np.array([1, .6, .4, .3, .3, .4, .8, 1.5, 2.5, 3.5, 4, 4, 3.8, 4, 4, 3.8, 3.5, 3.2, 3.3, 3.6, 3.8, 3.4,
                    2.6, 1.7])
_HOURLY_P = _HOURLY / _HOURLY.sum()

_OPERATORS: dict[str, dict[str, Any]] = {
    # shifts are UTC hour ranges; payments = number of shared payment fingerprints (0 = none shared)
    "operator_a": dict(shifts=[(1, 12)], n_subnets=4, uas=["OpenAI/Python 1.51.0"], shared_payments=3,
                       payment_share=0.5, org_group=5),
    "operator_b": dict(shifts=[(0, 9), (11, 15)], n_subnets=3,
                       uas=["python-requests/2.31.0", "OpenAI/Python 1.40.6", "httpx/0.27.0"], shared_payments=0,
                       payment_share=0.0, org_group=0),
    "operator_c": dict(shifts=[(0, 8), (9, 17)], n_subnets=6, uas=["OpenAI/Python 1.58.1", "OpenAI/JS 4.77.0"],
                       shared_payments=2, payment_share=0.4, org_group=0),
}

#: Time zone of each proxy exit country (``campaign_timing="diurnal"``: accounts keep the hours of their exit).
_PROXY_TZ = {"US": -5.0, "SG": 8.0, "JP": 9.0, "DE": 1.0, "NL": 1.0, "GB": 0.0, "KR": 9.0, "MY": 8.0, "BR": -3.0,
             "MX": -6.0, "CA": -5.0, "AR": -3.0, "CL": -4.0}
#: Exit countries and user agents of a ``second_operator`` (different infrastructure from the first).
_SECOND_OPERATOR_COUNTRIES = ["BR", "MX", "CA", "AR", "CL"]
_SECOND_OPERATOR_UAS = ["okhttp/4.12.0", "Go-http-client/2.0", "OpenAI/JS 4.85.1"]

_TOPICS = ["coding", "math_science", "writing", "business", "life", "roleplay", "general"]
_TOPIC_KEYWORDS: list[tuple[str, str]] = [
    ("coding", r"```|\b(?:python|javascript|typescript|java|code|function|sql|c\+\+|bug|api|html|css|react|regex|"
               r"script|compile|database|linux|git|docker|excel formula)\b"),
    ("math_science", r"\b(?:math|equation|calculate|physics|chemistry|biology|probability|integral|algebra|theorem|"
                     r"statistics|derivative|molecule|quantum)\b"),
    ("roleplay", r"\b(?:act as|pretend|roleplay|role-play|i want you to act)\b"),
    ("writing", r"\b(?:write|essay|poem|story|email|letter|blog|article|rewrite|summari[sz]e|paragraph|lyrics|tweet|"
                r"slogan|headline)\b"),
    ("business", r"\b(?:marketing|business|startup|sales|customer|brand|product|company|market|seo|invest\w*|"
                 r"finance|revenue|pricing)\b"),
    ("life", r"\b(?:health|diet|exercise|doctor|sleep|recipe|cook\w*|travel|relationship|feel|anxiety|pet|dog|cat|"
             r"kids?|parent\w*|wedding|workout)\b"),
]
#: One alternation; a prompt's topic is the bucket of the first keyword found in its first 400 characters.
_TOPIC_RE = re.compile("|".join(f"(?P<{name}>{pat})" for name, pat in _TOPIC_KEYWORDS))
_TOPIC_CACHE: dict[str, int] = {}


# =============================================================================================== types


@dataclass
class Scenario:
    """A generated log and its ground truth.

    ``requests`` has the columns in :data:`COLUMNS` (``ts`` is ``datetime64[us, UTC]``; ``actor`` is the
    campaign or hard-negative name, or ``"organic"``; ``chat`` says whether the row is written as OpenAI
    ``messages``). ``truth`` is the dict written to ``truth.json``.
    """

    requests: pd.DataFrame
    truth: dict[str, Any]


@dataclass
class _Account:
    id: str
    country: str
    tz: float
    ips: list[str]
    uas: list[str]
    keys: list[str]
    org: str
    payment: str | None
    chat_mode: int = 0  # 0 plain prompt, 1 messages (user only), 2 messages with system prompt
    system: str | None = None
    topics: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    topic_w: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pref_model: int = 0
    adopter: float = 1.0


class _Rows:
    """Column accumulator."""

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {c: [] for c in COLUMNS if c not in ("request_id", "ts")}
        self.ts: list[np.ndarray] = []

    def add(self, acct: _Account, ts: np.ndarray, prompts: Sequence[str], systems: Sequence[str | None],
            models: Sequence[str], ips: Sequence[str], uas: Sequence[str], chat: Sequence[bool], actor: str) -> None:
        n = len(ts)
        if n == 0:
            return
        c = self.cols
        c["account_id"].extend([acct.id] * n)
        c["prompt"].extend(prompts)
        c["system_prompt"].extend(systems)
        c["model"].extend(models)
        c["ip"].extend(ips)
        c["user_agent"].extend(uas)
        c["api_key_id"].extend(acct.keys[0] if len(acct.keys) == 1 else acct.keys[i % len(acct.keys)]
                               for i in range(n))
        c["org_id"].extend([acct.org] * n)
        c["payment_id"].extend([acct.payment] * n)
        c["country"].extend([acct.country] * n)
        c["actor"].extend([actor] * n)
        c["chat"].extend(chat)
        self.ts.append(np.asarray(ts, dtype=np.float64))

    def __len__(self) -> int:
        return len(self.cols["account_id"])


class _Deck:
    """A shuffled pool of items dealt without replacement; reshuffled when exhausted. ``passes`` counts wraps."""

    def __init__(self, items: Sequence[Any], rng: np.random.Generator) -> None:
        if len(items) == 0:
            raise ValueError("empty task pool")
        self.items = list(items)
        self.rng = rng
        self.order = rng.permutation(len(self.items))
        self.pos = 0
        self.passes = 0

    def draw(self, n: int) -> list[Any]:
        out: list[Any] = []
        while len(out) < n:
            if self.pos >= len(self.order):
                self.order = self.rng.permutation(len(self.items))
                self.pos = 0
                self.passes += 1
            k = min(n - len(out), len(self.order) - self.pos)
            out.extend(self.items[i] for i in self.order[self.pos:self.pos + k])
            self.pos += k
        return out


# =============================================================================================== helpers


def _hex(rng: np.random.Generator, n: int, width: int) -> list[str]:
    vals = rng.integers(0, 16 ** min(width, 15), size=n, dtype=np.int64)
    return [format(int(v), f"0{width}x")[-width:] for v in vals]


class _Ids:
    """Unique random identifiers with a prefix."""

    def __init__(self, rng: np.random.Generator, namespace: str = "") -> None:
        self.rng = rng
        self.namespace = namespace
        self.seen: set[str] = set()

    def make(self, prefix: str, n: int = 1, width: int = 10) -> list[str]:
        out: list[str] = []
        while len(out) < n:
            for h in _hex(self.rng, n - len(out), width):
                s = prefix + self.namespace + h
                if s not in self.seen:
                    self.seen.add(s)
                    out.append(s)
        return out


def _res_ip(rng: np.random.Generator, subnet: tuple[int, int, int] | None = None) -> str:
    a, b, c = subnet if subnet else (_RESIDENTIAL_OCTETS[int(rng.integers(len(_RESIDENTIAL_OCTETS)))],
                                     int(rng.integers(0, 256)), int(rng.integers(0, 256)))
    return f"{a}.{b}.{c}.{int(rng.integers(1, 255))}"


def _organic_ua(rng: np.random.Generator) -> str:
    fam, versions, _ = _UA_FAMILIES[int(rng.choice(len(_UA_FAMILIES), p=_UA_P))]
    return fam.format(v=versions[int(rng.integers(len(versions)))])


def _topic_of(text: str) -> int:
    """Topic bucket of an organic prompt (keyword rules; cached across scenarios)."""
    hit = _TOPIC_CACHE.get(text)
    if hit is None:
        m = _TOPIC_RE.search(text[:400].lower())
        hit = _TOPICS.index(m.lastgroup) if m and m.lastgroup else _TOPICS.index("general")
        _TOPIC_CACHE[text] = hit
    return hit


def _diurnal_times(rng: np.random.Generator, n: int, tz: float, day_lo: float, day_hi: float,
                   mean_session: float = 3.0) -> np.ndarray:
    """Organic request times (epoch seconds): sessions on random days at local diurnal hours."""
    if n <= 0:
        return np.zeros(0)
    n_sess = max(1, int(math.ceil(n / max(1.0, rng.uniform(1.0, 2 * mean_session)))))
    days = np.floor(rng.uniform(day_lo, day_hi, size=n_sess))
    hours = rng.choice(24, size=n_sess, p=_HOURLY_P) + rng.random(n_sess)
    starts = START.timestamp() + days * 86400 + (hours - tz) * 3600
    which = np.sort(rng.integers(0, n_sess, size=n))
    ts = starts[which].copy()
    # within a session: cumulative exponential gaps (mean ~2 min)
    gaps = rng.exponential(120.0, size=n)
    first = np.r_[True, which[1:] != which[:-1]]
    gaps[first] = 0.0
    cum = np.cumsum(gaps)
    base = np.maximum.accumulate(np.where(first, cum, 0.0))
    return ts + (cum - base)


def _shift_times(rng: np.random.Generator, n: int, days: np.ndarray, shifts: list[tuple[int, int]],
                 jitter: float = 0.25) -> np.ndarray:
    """Scripted times: ``n`` requests evenly spread over the shift windows of ``days``, with jitter."""
    if n <= 0:
        return np.zeros(0)
    wins = [(START.timestamp() + d * 86400 + a * 3600, (b - a) * 3600) for d in days for a, b in shifts]
    lens = np.array([w[1] for w in wins], dtype=np.float64)
    starts = np.array([w[0] for w in wins])
    total = lens.sum()
    spacing = total / n
    pos = (np.arange(n) + 0.5) * spacing + rng.normal(0.0, jitter * spacing, size=n)
    pos = np.clip(pos, 0, total - 1e-3)
    edges = np.cumsum(lens)
    idx = np.searchsorted(edges, pos, side="right")
    idx = np.minimum(idx, len(wins) - 1)
    offset = pos - (edges[idx] - lens[idx])
    return starts[idx] + offset


def _pick(rng: np.random.Generator, items: Sequence[str]) -> str:
    return items[int(rng.integers(len(items)))]


_TEMPLATE_PARTS = re.compile(r"(\{[^{}]*\})")
_WORD_RUN = re.compile(r"[^\W\d_]+")  # runs of letters (numbers keep their meaning)


def _typo(word: str, rng: np.random.Generator) -> str:
    """``word`` with one typo: two adjacent inner letters swapped, one dropped or one doubled (words of four
    letters or more; shorter ones get a letter doubled)."""
    if len(word) < 4:
        i = int(rng.integers(len(word)))
        return word[: i + 1] + word[i:]
    i = int(rng.integers(1, len(word) - 2))
    kind = int(rng.integers(3))
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:
        return word[:i] + word[i + 1 :]
    return word[: i + 1] + word[i:]


def _noisy(template: str, rate: float, rng: np.random.Generator) -> str:
    """``template`` with a typo in each of its words with probability ``rate``; ``{slot}`` fields are left as they
    are (the task text filled into them is never touched). ``rate`` 0 returns it unchanged and draws nothing."""
    if rate <= 0:
        return template
    parts = _TEMPLATE_PARTS.split(template)
    for j in range(0, len(parts), 2):  # even parts are literal text, odd ones {slots}
        parts[j] = _WORD_RUN.sub(lambda m: _typo(m.group(0), rng) if rng.random() < rate else m.group(0), parts[j])
    return "".join(parts)


def _compose(spec: templates.FragmentSpec, fields: Mapping[str, str], rng: np.random.Generator, lang: str,
             with_task: bool, skip_role: bool = False, noise: float = 0.0) -> str:
    """A wrapper composed from fragments: required slots always, optional slots with their probability, one
    phrasing each, in shuffled order, the task block (when ``with_task``) at a random position; ``noise``: the
    typo rate of :func:`_noisy` in every fragment."""
    slots = [s for s in spec["slots"] if not (skip_role and s[0] == "role")]
    parts = [_noisy(_pick(rng, alts), noise, rng).format(**fields) for _, p, alts in slots
             if p >= 1.0 or rng.random() < p]
    parts = [parts[int(i)] for i in rng.permutation(len(parts))]
    sep = _pick(rng, _FRAGMENT_SEPS[lang])
    if not with_task:
        return sep.join(parts)
    task = _noisy(_pick(rng, spec["task"]), noise, rng).format(**fields)
    pos = int(rng.integers(0, len(parts) + 1))
    return "\n\n".join(x for x in (sep.join(parts[:pos]), task, sep.join(parts[pos:])) if x)


def _canonical(spec: templates.FragmentSpec, fields: Mapping[str, str], lang: str,
               rng: np.random.Generator | None = None, noise: float = 0.0) -> str:
    """The fixed instruction of a task family: the first phrasing of each required slot, in slot order (with
    ``noise``, each phrasing through :func:`_noisy`)."""
    return _FRAGMENT_SEPS[lang][0].join(
        (_noisy(alts[0], noise, rng) if rng is not None else alts[0]).format(**fields)
        for _, p, alts in spec["slots"] if p >= 1.0)


def _free_window(shifts: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The longest run of UTC hours covered by none of ``shifts`` (wrapping past midnight is not used)."""
    busy = np.zeros(24, dtype=bool)
    for a, b in shifts:
        busy[a:b] = True
    best, cur_start = (0, 0), None
    for h in range(25):
        free = h < 24 and not busy[h]
        if free and cur_start is None:
            cur_start = h
        elif not free and cur_start is not None:
            if h - cur_start > best[1] - best[0]:
                best = (cur_start, h)
            cur_start = None
    if best[1] - best[0] < 2:
        raise ValueError(f"no free hours left outside shifts {list(shifts)}")
    return best


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# =============================================================================================== generator


class _Generator:
    def __init__(self, preset: str, seed: int, knobs: dict[str, Any]) -> None:
        self.preset = preset
        self.seed = seed
        self.k = knobs
        self.rng = np.random.default_rng(seed)
        self.ids = _Ids(self.rng, str(knobs.get("id_namespace") or ""))
        self.rows = _Rows()
        self.days: int = int(knobs["days"])
        self.release = START.timestamp() + (self.days // 2) * 86400 + 14 * 3600
        self.truth_campaigns: dict[str, dict[str, Any]] = {}
        self.truth_hn: dict[str, dict[str, Any]] = {}
        self.legit_accounts: list[str] = []
        self.sources_used: set[str] = set()
        self._arng: np.random.Generator | None = None
        self._brng: np.random.Generator | None = None
        self.successors: dict[str, _Account] = {}  # banned account id -> its replacement (``ban_day``)

    # ----------------------------------------------------------------------------------- corpora
    def _corpora(self, names: Sequence[str]) -> list[corpora.Corpus]:
        perm = bool(self.k["permissive_only"])
        out = []
        for n in names:
            if perm and not corpora.is_permissive(n):
                continue
            c = corpora.load(n)
            if len(c):
                out.append(c)
                self.sources_used.add(n)
        return out

    def _family_items(self, family: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for c in self._corpora(corpora.TASK_SOURCES[family]):
            items.extend(c.items)
        return items

    def load_pools(self) -> None:
        rng = self.rng
        # ---- math: eval harness gets GSM8K test in file order; homework and CoT get disjoint shuffled slices
        math_items = self._family_items("math")
        gsm_test = [it["text"] for it in math_items if it.get("split") == "test"]
        rest = [it["text"] for it in math_items if it.get("split") != "test"]
        rest = [rest[i] for i in rng.permutation(len(rest))]
        n_hw = min(len(rest) // 4, max(200, 6 * int(self.k["homework_students"])))
        words = [it["text"] for it in self._family_items("word_problems")]
        self.hw_pool = rest[:n_hw] + words
        self.cot_pool = rest[n_hw:]
        self.eval_pool = gsm_test[: int(self.k["eval_questions"])]
        n_eval = int(self.k["eval_questions"])
        self.cot_eval_pool = gsm_test[n_eval: n_eval + int(self.k["cot_eval_questions"])]
        self.grading_pool = self._family_items("grading")
        self.sensitive_pool = [it["text"] for it in self._family_items("sensitive")]
        self.tools_pool = self._family_items("tools")
        self.coding_pool = [it["text"] for it in self._family_items("coding")]
        self.da_pool = self._family_items("data_analysis")
        # ---- organic
        texts: list[str] = []
        text_src: dict[str, str] = {}
        for c in self._corpora(corpora.ORGANIC_SOURCES):
            for t in c.prompts:
                if t not in text_src:
                    text_src[t] = c.name
                    texts.append(t)
        texts = [texts[i] for i in rng.permutation(len(texts))]
        # small presets need only part of the pool (keeps topic bucketing cheap)
        texts = texts[: max(5_000, 2 * int(self.k["n_requests"]))]
        # viral prompt: an awesome-chatgpt-prompts TEXT prompt of moderate length
        aw = [it["text"] for it in corpora.load("awesome_prompts").items
              if it.get("type") == "TEXT" and 200 <= len(it["text"]) <= 900]
        self.viral_text = aw[int(rng.integers(len(aw)))]
        self.sources_used.add("awesome_prompts")
        texts = [t for t in texts if t != self.viral_text]
        # enterprise batch dataset: a reserved slice of short organic texts
        n_batch_items = min(int(self.k["batch_requests"]), len(texts) // 5)
        short = [i for i, t in enumerate(texts) if len(t) <= 600]
        take = set(short[:n_batch_items])
        self.batch_pool = [texts[i] for i in sorted(take)]
        self.ticket_pool: list[str] = []
        if "enterprise_seats" in self.k["hard_negatives"]:  # the enterprise's own customers' messages
            n_tickets = min(40 * int(self.k["enterprise_seats"]), len(texts) // 10)
            ticket_idx = [i for i in short if i not in take][:n_tickets]
            self.ticket_pool = [texts[i] for i in ticket_idx]
            take |= set(ticket_idx)
        texts = [t for i, t in enumerate(texts) if i not in take]
        self.organic_texts = texts
        # topics: keyword buckets; prompts matching no keyword are bucketed by source ("general:<source>")
        names = [_TOPICS[_topic_of(t)] for t in texts]
        names = [f"general:{text_src[t]}" if n == "general" else n for n, t in zip(names, texts, strict=True)]
        self.topic_names = sorted(set(names))
        code = {n: i for i, n in enumerate(self.topic_names)}
        topic = np.array([code[n] for n in names], dtype=np.int64)
        self.topic_queues = [np.flatnonzero(topic == k) for k in range(len(self.topic_names))]
        self.topic_pos = [0] * len(self.topic_names)
        self.topic_sizes = np.array([len(q) for q in self.topic_queues], dtype=np.float64)

    # ----------------------------------------------------------------------------------- organic content
    def organic_prompts(self, acct: _Account, n: int) -> list[str]:
        rng = self.rng
        if n <= 0:
            return []
        tks = rng.choice(acct.topics, size=n, p=acct.topic_w)
        out: list[str] = []
        popular = rng.random(n) < float(self.k["organic_repeat"])
        for t, pop in zip(tks, popular, strict=True):
            q = self.topic_queues[int(t)]
            if pop:  # a common prompt: a skewed draw from the head (first quarter) of the topic's queue
                head = max(20, len(q) // 4)
                r = min(len(q) - 1, int(head * rng.random() ** 1.3))
                out.append(self.organic_texts[int(q[r])])
                continue
            p = self.topic_pos[int(t)]
            self.topic_pos[int(t)] = p + 1
            text = self.organic_texts[int(q[p % len(q)])]
            if p >= len(q):  # pool exhausted: reuse with a light surface perturbation
                lead = templates.ORGANIC_LEADS[int(rng.integers(len(templates.ORGANIC_LEADS)))]
                tail = templates.ORGANIC_TAILS[int(rng.integers(len(templates.ORGANIC_TAILS)))]
                text = f"{lead}{text}{tail}"
            out.append(text)
        return out

    def organic_models(self, acct: _Account, ts: np.ndarray) -> list[str]:
        rng = self.rng
        n = len(ts)
        pick = np.where(rng.random(n) < 0.7, acct.pref_model, rng.choice(3, size=n, p=MODEL_MIX))
        models = [MODELS[i] for i in pick]
        after = np.maximum(ts - self.release, 0.0) / 86400.0
        p_new = np.where(ts > self.release, 0.2 * (1 - np.exp(-after / 6.0)) * acct.adopter, 0.0)
        for i in np.flatnonzero(rng.random(n) < p_new):
            models[i] = NEW_MODEL
        return models

    def new_organic_account(self) -> _Account:
        rng = self.rng
        ci = int(rng.choice(len(_COUNTRIES), p=_CTRY_P))
        country, tz, _ = _COUNTRIES[ci]
        home = (_RESIDENTIAL_OCTETS[int(rng.integers(len(_RESIDENTIAL_OCTETS)))], int(rng.integers(0, 256)),
                int(rng.integers(0, 256)))
        n_ip = int(rng.choice([1, 1, 2, 3]))
        ips = [_res_ip(rng, home) for _ in range(n_ip)]
        if rng.random() < 0.2:
            ips.append(_res_ip(rng))  # mobile / travel
        uas = [_organic_ua(rng)] + ([_organic_ua(rng)] if rng.random() < 0.2 else [])
        acct_id = self.ids.make("acct_")[0]
        keys = self.ids.make("key_", int(rng.choice([1, 1, 1, 2])), 12)
        org = self.ids.make("org_", 1, 12)[0]
        payment = self.ids.make("pm_", 1, 14)[0] if rng.random() < 0.65 else None
        r = rng.random()
        chat_mode = 0 if r < 0.6 else (1 if r < 0.75 else 2)
        system = templates.ORGANIC_SYSTEM[int(rng.integers(len(templates.ORGANIC_SYSTEM)))] if chat_mode == 2 else None
        k = int(rng.choice([1, 2, 3, 4], p=[0.35, 0.35, 0.2, 0.1]))
        w = self.topic_sizes / self.topic_sizes.sum()
        avail = np.flatnonzero(w > 0)
        topics = rng.choice(avail, size=min(k, len(avail)), replace=False, p=w[avail] / w[avail].sum())
        topic_w = rng.dirichlet(np.ones(len(topics)))
        return _Account(id=acct_id, country=country, tz=float(tz), ips=ips, uas=uas, keys=keys, org=org,
                        payment=payment, chat_mode=chat_mode, system=system, topics=topics, topic_w=topic_w,
                        pref_model=int(rng.choice(3, p=MODEL_MIX)), adopter=float(rng.lognormal(0, 0.7)))

    def emit_organic(self, acct: _Account, n: int, actor: str = "organic", ts: np.ndarray | None = None,
                     prompts: list[str] | None = None, ips: list[str] | None = None,
                     uas: list[str] | None = None) -> None:
        """Organic-looking traffic for ``acct`` (optionally with given prompts / times / IP and UA pools)."""
        rng = self.rng
        if n <= 0:
            return
        if ts is None:
            lo = float(rng.uniform(0, self.days * 0.5)) if n > 20 else 0.0
            ts = _diurnal_times(rng, n, acct.tz, lo, self.days)
        if prompts is None:
            prompts = self.organic_prompts(acct, n)
            # retries: the same prompt again a few seconds later
            n_retry = int(rng.binomial(n, self.k["retry_rate"])) if n > 1 else 0
            if n_retry:
                src = rng.choice(n, size=n_retry)
                dst = rng.choice(n, size=n_retry, replace=False)
                for s_, d_ in zip(src, dst, strict=True):
                    if s_ != d_:
                        prompts[int(d_)] = prompts[int(s_)]
                        ts[int(d_)] = ts[int(s_)] + float(rng.exponential(20.0)) + 1.0
        ip_pool = ips if ips is not None else acct.ips
        ua_pool = uas if uas is not None else acct.uas
        ip_l = [ip_pool[int(i)] for i in rng.integers(0, len(ip_pool), size=n)]
        ua_l = [ua_pool[0] if len(ua_pool) == 1 or rng.random() < 0.8 else ua_pool[int(rng.integers(len(ua_pool)))]
                for _ in range(n)]
        chat = acct.chat_mode > 0
        self.rows.add(acct, ts, prompts, [acct.system] * n, self.organic_models(acct, ts), ip_l, ua_l, [chat] * n,
                      actor)

    # ----------------------------------------------------------------------------------- campaign content
    def _wrappers(self, tpls: list[str]) -> list[str]:
        return templates.wrapper_variants(tpls, float(self.k["template_variation"]), self.rng)

    def campaign_content(self, kind: str, n: int, deck: dict[str, _Deck], wr: dict[str, list[str]]
                         ) -> tuple[list[str], list[str | None]]:
        """Prompts and persona system prompts (None = plain prompt) for ``n`` requests of a campaign kind."""
        rng = self.rng
        prompts: list[str] = []
        systems: list[str | None] = []

        def pick(lst: list[str]) -> str:
            return lst[int(rng.integers(len(lst)))]

        if kind == "cot":
            for task in deck["cot"].draw(n):
                tpl = pick(wr["cot"])
                persona = pick(templates.COT_SYSTEM) if rng.random() < 0.25 else None
                self._render("cot", tpl, {"task": task}, persona, prompts, systems)
        elif kind == "grading":
            for it in deck["grading"].draw(n):
                tpl = pick(wr["grading"])
                fields = {"instruction": it["instruction"], "response": it["response"],
                          "rubric": pick(templates.RUBRICS)}
                persona = pick(templates.GRADING_SYSTEM) if rng.random() < 0.7 else None
                self._render("grading", tpl, fields, persona, prompts, systems)
        elif kind == "censorship":
            for task in deck["sensitive"].draw(n):
                tpl = pick(wr["censorship"])
                fields = {"task": task, "audience": pick(templates.AUDIENCES)}
                persona = pick(templates.CENSORSHIP_SYSTEM) if rng.random() < 0.6 else None
                self._render("censorship", tpl, fields, persona, prompts, systems)
        elif kind == "agentic":
            fams = ["tools", "coding", "data_analysis"]
            avail = [f for f in fams if f in deck]
            p = np.array([{"tools": .45, "coding": .30, "data_analysis": .25}[f] for f in avail])
            which = rng.choice(len(avail), size=n, p=p / p.sum())
            for fi in which:
                f = avail[int(fi)]
                it = deck[f].draw(1)[0]
                tpl = pick(wr[f])
                if f == "tools":
                    fields = {"question": it["question"], "functions": it["functions"]}
                elif f == "coding":
                    fields = {"task": it}
                else:
                    fields = {"question": it["question"], "context": it["context"]}
                persona = pick(templates.AGENT_SYSTEM[f]) if rng.random() < 0.8 else None
                self._render(f, tpl, fields, persona, prompts, systems)
        else:  # pragma: no cover
            raise ValueError(kind)
        return prompts, systems

    # ----------------------------------------------------------------------------------- adversarial content
    @property
    def arng(self) -> np.random.Generator:
        """The random stream of the adversarial knobs: separate from :attr:`rng`, created on first use."""
        if self._arng is None:
            self._arng = np.random.default_rng([self.seed, _ADV_STREAM])
        return self._arng

    @property
    def brng(self) -> np.random.Generator:
        """The random stream of the ban knob: separate from :attr:`rng` and :attr:`arng`, created on first use."""
        if self._brng is None:
            self._brng = np.random.default_rng([self.seed, _BAN_STREAM])
        return self._brng

    def _ban(self, accounts: list[_Account]) -> dict[str, str]:
        """Ban ``ban_share`` of an operator's accounts on ``ban_day``: each gets a fresh replacement account (new
        id, key, organisation and payment; the same proxies and user agents) that carries on its work from then.
        Returns ``{replacement id: banned id}``; draws only from :attr:`brng`."""
        if self.k["ban_day"] is None:
            return {}
        n_ban = int(round(float(self.k["ban_share"]) * len(accounts)))
        picked = sorted(self.brng.choice(len(accounts), size=n_ban, replace=False).tolist())
        ids = _Ids(self.brng)
        ids.seen = self.ids.seen  # one namespace of ids
        out: dict[str, str] = {}
        for i in picked:
            old = accounts[i]
            new = replace(old, id=ids.make("acct_")[0], keys=ids.make("key_", 1, 12), org=ids.make("org_", 1, 12)[0],
                          payment=ids.make("pm_", 1, 14)[0] if self.brng.random() < 0.5 else None)
            self.successors[old.id] = new
            out[new.id] = old.id
        return out

    def _apply_bans(self, df: pd.DataFrame) -> None:
        """Move every row of a banned account from ``ban_day`` on to its replacement (in place)."""
        if not self.successors:
            return
        ban_ts = pd.Timestamp(START.timestamp() + int(self.k["ban_day"]) * 86400, unit="s", tz="UTC")
        late = (df["ts"] >= ban_ts).to_numpy()
        acc = df["account_id"].to_numpy(dtype=object)
        for old, new in self.successors.items():
            m = late & (acc == old)
            if not m.any():
                continue
            df.loc[m, "account_id"] = new.id
            df.loc[m, "api_key_id"] = new.keys[0]
            df.loc[m, "org_id"] = new.org
            df.loc[m, "payment_id"] = new.payment

    def _adv_content(self) -> bool:
        k = self.k
        return (k["wrapper_style"] != "fixed" or k["wrapper_language"] != "en" or float(k["system_intent_share"]) > 0
                or int(k["pad_chars"]) > 0 or float(k["wrapper_noise"]) > 0)

    def _render(self, sub: str, tpl: str, fields: dict[str, str], persona: str | None, prompts: list[str],
                systems: list[str | None]) -> None:
        """Append one campaign request of task family ``sub`` (``tpl`` is the fixed English wrapper drawn for it).

        With every adversarial knob at its default this is ``tpl.format(**fields)`` and draws nothing.
        """
        if not self._adv_content():
            prompts.append(tpl.format(**fields))
            systems.append(persona)
            return
        k, rng = self.k, self.arng
        noise = float(k["wrapper_noise"])
        lang = k["wrapper_language"]
        if lang == "mixed":
            lang = "zh" if rng.random() < 0.5 else "en"
        fragments = k["wrapper_style"] == "fragments"
        share = float(k["system_intent_share"])
        intent = share > 0 and rng.random() < share
        frags, fixed, personas, audiences = _WRAPPERS.get(lang, (templates.FRAGMENTS_EN, None, None, None))
        if personas is not None and persona is not None:
            persona = _pick(rng, personas[sub])
        if audiences is not None and "audience" in fields:
            fields = {**fields, "audience": audiences[templates.AUDIENCES.index(fields["audience"])]}
        if intent:  # the instruction goes to the system message; the user turn carries the task text only
            frag = frags[sub]
            if fragments:  # a persona already says who the model is: no second role line
                instr = _compose(frag, fields, rng, lang, with_task=False, skip_role=persona is not None,
                                 noise=noise)
            else:
                instr = _canonical(frag, fields, lang, rng, noise)
            task_tpl = _pick(rng, frag["task"]) if fragments else frag["task"][0]
            # a neutral lead ("Problem:") only where the task block has no label of its own
            lead = _pick(rng, templates.INTENT_LEADS[lang]) if task_tpl.startswith("{") else ""
            prompt = _noisy(lead + task_tpl, noise, rng).format(**fields)
            system: str | None = instr if persona is None else f"{persona}\n\n{instr}"
        else:
            if fragments:
                prompt = _compose(frags[sub], fields, rng, lang, with_task=True, noise=noise)
            elif fixed is not None:
                own = fixed[sub]
                own_tpl = own[0] if float(k["template_variation"]) <= 0 else _pick(rng, own)
                prompt = _noisy(own_tpl, noise, rng).format(**fields)
            else:
                prompt = _noisy(tpl, noise, rng).format(**fields)
            system = persona
        pad = int(k["pad_chars"])
        if pad > 0:
            prompt = self._pad(prompt, pad, lang)
        prompts.append(prompt)
        systems.append(system)

    def _pad(self, prompt: str, pad_chars: int, lang: str) -> str:
        """``prompt`` with a filler block of real organic corpus text, before or after it, past ``pad_chars``."""
        rng = self.arng
        texts = self.organic_texts
        need = pad_chars - len(prompt) + 1
        label = _pick(rng, templates.PAD_LABELS[lang])
        parts: list[str] = [label]
        size = len(label)
        while size < need:
            for i in rng.integers(0, len(texts), size=64):
                t = texts[int(i)]
                parts.append(t)
                size += len(t) + 2
                if size >= need:
                    break
        filler = "\n\n".join(parts)
        return f"{filler}\n\n{prompt}" if rng.random() < 0.5 else f"{prompt}\n\n{filler}"

    # ----------------------------------------------------------------------------------- campaigns
    def _samples(self, kind: str) -> float:
        spt = self.k["samples_per_task"]
        if spt is None:
            return _SAMPLES_PER_TASK[kind]
        return float(spt[kind]) if isinstance(spt, Mapping) else float(spt)

    def build_campaigns(self, per_account: float) -> None:
        rng = self.rng
        chosen = [c for c in CAMPAIGN_KINDS if c in self.k["campaigns"]]
        deck: dict[str, _Deck] = {}
        if self.cot_pool:
            deck["cot"] = _Deck(self.cot_pool, rng)
        for name, pool in (("grading", self.grading_pool), ("sensitive", self.sensitive_pool),
                           ("tools", self.tools_pool), ("coding", self.coding_pool), ("data_analysis", self.da_pool)):
            if pool:
                deck[name] = _Deck(pool, rng)
        wr = {"cot": self._wrappers(templates.COT), "grading": self._wrappers(templates.GRADING),
              "censorship": self._wrappers(templates.CENSORSHIP), "tools": self._wrappers(templates.TOOLS),
              "coding": self._wrappers(templates.CODING), "data_analysis": self._wrappers(templates.DATA_ANALYSIS)}
        ca = self.k["campaign_accounts"]
        by_op: dict[str, list[str]] = {}
        for c in chosen:
            by_op.setdefault(CAMPAIGN_KINDS[c][1], []).append(c)
        for op, camps in by_op.items():
            n_acc = int(ca[camps[0]] if isinstance(ca, Mapping) else ca)
            self._run_operator(op, _OPERATORS[op], camps, {c: c for c in camps}, n_acc, per_account, deck, wr)
        so = self.k["second_operator"]
        if so is not None:
            self._second_operator(so, per_account, deck, wr)

    def _second_operator(self, so: Mapping[str, Any], per_account: float, deck: dict[str, _Deck],
                         wr: dict[str, list[str]]) -> None:
        """A separate operator running the same task kind as ``so["campaign"]``: its own proxy /24s, user
        agents, exit countries, hours and (with fixed wrappers) its own paraphrases of the wrappers."""
        c = str(so["campaign"])
        base_op = CAMPAIGN_KINDS[c][1]
        base = _OPERATORS[base_op]
        spec = dict(base)
        spec["shifts"] = [_free_window(base["shifts"])]
        spec["n_subnets"] = 2
        spec["uas"] = [u for u in _SECOND_OPERATOR_UAS if u not in base["uas"]][:2]
        spec["shared_payments"], spec["payment_share"], spec["org_group"] = 1, 0.3, 0
        spec["proxy_countries"] = _SECOND_OPERATOR_COUNTRIES
        spec["avoid_subnets"] = {tuple(int(x) for x in sn.split("/")[0].split(".")[:3])
                                 for t in self.truth_campaigns.values() for sn in t["proxy_subnets"]}
        # its own wrapper wording: paraphrases of the base wrappers (only matters with fixed wrappers)
        wr2 = {key: [templates.paraphrase(t, self.arng) for t in tpls] for key, tpls in wr.items()}
        rpa = so.get("requests_per_account")
        per = float(rpa) if rpa is not None else per_account
        self._run_operator(f"{base_op}2", spec, [c], {c: f"{c}_b"}, int(so["accounts"]), per, deck, wr2)

    def _run_operator(self, op: str, spec: Mapping[str, Any], camps: list[str], names: Mapping[str, str], n_acc: int,
                      per_account: float, deck: dict[str, _Deck], wr: dict[str, list[str]]) -> None:
        """One operator's account pool running ``camps`` (logged and recorded in the truth as ``names[c]``)."""
        rng = self.rng
        # with operator_seed, every shard's build gives the operator the same proxies (one operator, many shards)
        infra_rng = (rng if self.k["operator_seed"] is None else
                     np.random.default_rng([int(self.k["operator_seed"]), 0x3333, zlib.crc32(op.encode())]))
        subnets = self._proxy_subnets(spec, infra_rng)
        countries = spec.get("proxy_countries", _PROXY_COUNTRIES)
        sub_ctry = [countries[int(infra_rng.integers(len(countries)))] for _ in subnets]
        shared_pm = self.ids.make("pm_", spec["shared_payments"], 14) if spec["shared_payments"] else []
        group_orgs = (self.ids.make("org_", max(1, n_acc // spec["org_group"]), 12) if spec["org_group"] else [])
        start_day = int(rng.integers(0, max(1, self.days // 5)))
        hydra = set(rng.choice(n_acc, size=int(round(self.k["hydra_fraction"] * n_acc)), replace=False).tolist())
        accounts: list[_Account] = []
        plan: list[tuple[_Account, np.ndarray, np.ndarray]] = []  # account, times, campaign index per time
        hydra_ids: list[str] = []
        for a in range(n_acc):
            si = int(rng.integers(len(subnets)))
            pay = (shared_pm[int(rng.integers(len(shared_pm)))] if shared_pm and rng.random() < spec["payment_share"]
                   else (self.ids.make("pm_", 1, 14)[0] if rng.random() < 0.5 else None))
            org = group_orgs[a % len(group_orgs)] if group_orgs else self.ids.make("org_", 1, 12)[0]
            acct = _Account(id=self.ids.make("acct_")[0], country=sub_ctry[si], tz=8.0, ips=[],
                            uas=list(spec["uas"]), keys=self.ids.make("key_", 1, 12), org=org, payment=pay)
            accounts.append(acct)
            ts, labels = self._account_plan(acct, spec, len(camps), per_account, start_day)
            plan.append((acct, ts, labels))
            if a in hydra:  # ordinary customer traffic relayed through the same account and proxies
                hydra_ids.append(acct.id)
                self._relay_organic(acct, len(labels), subnets)
        n_req = {c: self._emit_campaign(ci, CAMPAIGN_KINDS[c][0], names[c], plan, subnets, spec, deck, wr)
                 for ci, c in enumerate(camps)}
        replacements = self._ban(accounts)
        for c in camps:
            self.truth_campaigns[names[c]] = {
                "kind": CAMPAIGN_KINDS[c][0], "operator": op,
                "accounts": sorted([a.id for a in accounts] + list(replacements)),
                "n_requests": n_req[c], "hydra_accounts": sorted(hydra_ids),
                "proxy_subnets": [f"{a}.{b}.{c_}.0/24" for a, b, c_ in subnets],
                "pivot": CAMPAIGN_KINDS[c][0] == "agentic",
            }
            if self.k["ban_day"] is not None:
                self.truth_campaigns[names[c]].update(
                    banned_accounts=sorted(replacements.values()), replacement_accounts=dict(sorted(replacements.items())))

    def _proxy_subnets(self, spec: Mapping[str, Any], rng: np.random.Generator) -> list[tuple[int, int, int]]:
        """The operator's proxy /24 blocks (``spec["n_subnets"]``, none of ``spec["avoid_subnets"]``)."""
        avoid = spec.get("avoid_subnets", set())
        subnets: list[tuple[int, int, int]] = []
        while len(subnets) < spec["n_subnets"]:
            sn = (_PROXY_OCTETS[int(rng.integers(len(_PROXY_OCTETS)))], int(rng.integers(0, 256)),
                  int(rng.integers(0, 256)))
            if not avoid or (sn not in avoid and sn not in subnets):
                subnets.append(sn)
        return subnets

    def _account_plan(self, acct: _Account, spec: Mapping[str, Any], n_camps: int, per_account: float,
                      start_day: int) -> tuple[np.ndarray, np.ndarray]:
        """One pool account's request times and the campaign (index) of each: most of the campaign's days,
        near-even volume per account (load balancing), in shifts or on an ordinary diurnal curve."""
        rng = self.rng
        camp_days = np.arange(start_day, self.days)
        keep = rng.random(len(camp_days)) < rng.uniform(0.75, 1.0)
        days = camp_days[keep] if keep.any() else camp_days[:1]
        counts = [max(1, int(round(per_account * rng.uniform(0.9, 1.1)))) for _ in range(n_camps)]
        total = sum(counts)
        if self.k["campaign_timing"] == "diurnal":  # an ordinary day in the exit country's time zone; no job windows
            tz = _PROXY_TZ[acct.country] + float(rng.uniform(-1.0, 1.0))
            ts = _diurnal_times(rng, total, tz, float(start_day), float(self.days))
        else:
            ts = _shift_times(rng, total, days, spec["shifts"])
        labels = np.repeat(np.arange(n_camps), counts)
        rng.shuffle(labels)
        return ts, labels

    def _relay_organic(self, acct: _Account, n_campaign: int, subnets: list[tuple[int, int, int]]) -> None:
        """A hydra account: ordinary customer traffic (``mix_fraction`` of its requests) relayed through the
        same account and proxies."""
        mix = float(self.k["mix_fraction"])
        n_org = int(round(n_campaign * mix / max(1e-9, 1 - mix)))
        donor = self.new_organic_account()
        self.ids.seen.discard(donor.id)
        donor.id, donor.keys, donor.org, donor.payment = acct.id, acct.keys, acct.org, acct.payment
        donor.country = acct.country
        pool_ips = [_res_ip(self.rng, s) for s in subnets for _ in range(3)]
        self.emit_organic(donor, n_org, actor="organic", ips=pool_ips)

    def _emit_campaign(self, ci: int, kind: str, name: str, plan: list[tuple[_Account, np.ndarray, np.ndarray]],
                       subnets: list[tuple[int, int, int]], spec: Mapping[str, Any], deck: dict[str, _Deck],
                       wr: dict[str, list[str]]) -> int:
        """The requests of campaign ``ci`` over the pool's plan; returns how many."""
        rng = self.rng
        n_c = int(sum(int((lab == ci).sum()) for _, _, lab in plan))
        # several samples per rendered prompt (best-of-n / RL rollouts), spread over the pool
        spt = max(1.0, float(self._samples(kind)))
        n_u = max(1, int(math.ceil(n_c / spt)))
        uniq_p, uniq_s = self.campaign_content(kind, n_u, deck, wr)
        order = rng.permutation(np.arange(n_c) % n_u)
        pos = 0
        for acct, ts_a, lab in plan:
            t = ts_a[lab == ci]
            n = len(t)
            sel = order[pos:pos + n]
            pos += n
            prompts = [uniq_p[int(j)] for j in sel]
            systems = [uniq_s[int(j)] for j in sel]
            ips = [_res_ip(rng, subnets[int(j)]) for j in rng.integers(0, len(subnets), size=n)]
            uas = [spec["uas"][int(j)] for j in rng.integers(0, len(spec["uas"]), size=n)]
            if kind == "agentic":  # the pivot: most traffic moves to the new model within hours
                lag = self.release + rng.uniform(1, 4) * 3600
                base = rng.choice(2, size=n, p=[0.85, 0.15])
                models = [NEW_MODEL if (tt > lag and rng.random() < 0.8) else MODELS[int(b)]
                          for tt, b in zip(t, base, strict=True)]
            else:
                models = [MODELS[int(b)] for b in rng.choice(2, size=n, p=[0.8, 0.2])]
            chat = [x is not None for x in systems]
            self.rows.add(acct, t, prompts, systems, models, ips, uas, chat, name)
        return n_c

    # ----------------------------------------------------------------------------------- hard negatives
    def pick_users(self, pool: list[tuple[_Account, int]], n: int, min_req: int) -> list[_Account]:
        cands = [a for a, k in pool if k >= min_req]
        if len(cands) < n:
            cands = [a for a, _ in pool]
        idx = self.rng.choice(len(cands), size=min(n, len(cands)), replace=False)
        return [cands[int(i)] for i in sorted(idx)]

    def build_homework(self, users: list[_Account]) -> None:
        rng = self.rng
        deck = _Deck(self.hw_pool, rng)
        n_total = 0
        for acct in users:
            n = int(rng.integers(2, 9))
            prompts = [templates.HOMEWORK_PHRASES[int(rng.integers(len(templates.HOMEWORK_PHRASES)))].format(task=t)
                       for t in deck.draw(n)]
            ts = _diurnal_times(rng, n, acct.tz, 0, self.days, mean_session=2.0)
            self.emit_organic(acct, n, actor="homework", ts=ts, prompts=prompts)
            n_total += n
        self.truth_hn["homework"] = {"kind": "homework", "accounts": sorted(a.id for a in users),
                                     "n_requests": n_total}

    def build_viral(self, users: list[_Account]) -> None:
        rng = self.rng
        day0 = rng.uniform(0.2, 0.6) * self.days
        n_total = 0
        text = self.viral_text
        for acct in users:
            n = int(rng.choice([1, 1, 1, 2, 3]))
            prompts = []
            for _ in range(n):
                r = rng.random()
                if r < 0.85:
                    prompts.append(text)
                elif r < 0.9:
                    prompts.append(text + " " + templates.ORGANIC_TAILS[1 + int(rng.integers(
                        len(templates.ORGANIC_TAILS) - 1))].strip())
                elif r < 0.95:
                    prompts.append(text.rstrip(".").lower())
                else:
                    cut = text.rfind(".", 0, len(text) - 2)
                    prompts.append(text[: cut + 1] if cut > len(text) // 2 else text + "\n")
            day = min(self.days - 1, day0 + rng.exponential(1.5))
            ts = _diurnal_times(rng, n, acct.tz, day, min(self.days, day + 1))
            self.emit_organic(acct, n, actor="viral_prompt", ts=ts, prompts=prompts)
            n_total += n
        self.truth_hn["viral_prompt"] = {"kind": "viral_prompt", "accounts": sorted(a.id for a in users),
                                         "n_requests": n_total, "prompt": text}

    def build_batch(self) -> None:
        rng = self.rng
        n = int(self.k["batch_requests"])
        acct = _Account(id=self.ids.make("acct_")[0], country="US", tz=-5, ips=["34.82.17.203"],
                        uas=["python-httpx/0.27.0"], keys=self.ids.make("key_", 1, 12), org="org_acme_retail",
                        payment="pm_acme_corporate")
        items = _Deck(self.batch_pool, rng).draw(n)
        prompts = [templates.BATCH_TEMPLATE.format(task=t) for t in items]
        n_nights = max(1, min(self.days - 1, int(math.ceil(n / 1500))))
        d0 = int(rng.integers(0, max(1, self.days - n_nights)))
        ts = _shift_times(rng, n, np.arange(d0, d0 + n_nights), [(6, 10)], jitter=0.05)
        self.rows.add(acct, ts, prompts, [None] * n, ["frontier-1-mini"] * n, acct.ips * n, acct.uas * n,
                      [False] * n, "enterprise_batch")
        self.legit_accounts.append(acct.id)
        self.truth_hn["enterprise_batch"] = {"kind": "enterprise_batch", "accounts": [acct.id], "n_requests": n}

    def build_eval(self) -> None:
        rng = self.rng
        k = int(self.k["eval_accounts"])
        accts = [_Account(id=self.ids.make("acct_")[0], country="US", tz=-8, ips=[f"35.203.44.{10 + i}"],
                          uas=["lm-eval-harness/0.4.5 OpenAI/Python 1.54.4"], keys=self.ids.make("key_", 1, 12),
                          org="org_evalco_research", payment="pm_evalco") for i in range(k)]
        prompts_one = [templates.EVAL_TEMPLATE.format(task=q) for q in self.eval_pool]
        runs = int(self.k["eval_runs"])
        n_total = 0
        for r in range(runs):
            acct = accts[r % k]
            day = int(rng.integers(0, max(1, self.days - 1)))
            model = NEW_MODEL if (r == runs - 1 and day * 86400 + START.timestamp() > self.release) else MODELS[r % 3]
            hour = float(rng.uniform(16, 22))
            start = START.timestamp() + day * 86400 + hour * 3600
            n = len(prompts_one)
            ts = start + np.cumsum(rng.uniform(1.0, 3.0, size=n))
            self.rows.add(acct, ts, prompts_one, [None] * n, [model] * n, acct.ips * n, acct.uas * n, [False] * n,
                          "eval_harness")
            n_total += n
        self.legit_accounts.extend(a.id for a in accts)
        self.truth_hn["eval_harness"] = {"kind": "eval_harness", "accounts": sorted(a.id for a in accts),
                                         "n_requests": n_total}

    def build_enterprise_seats(self) -> None:
        """A customer's product integration: many seats of one organisation, one system prompt, one templated
        support-ticket workload (classify / summarise / draft a reply / extract), weekday business hours in one
        time zone, one corporate egress /24."""
        rng, k = self.rng, self.k
        n_seats = int(k["enterprise_seats"])
        shared = bool(k["enterprise_org_id"])
        egress = (62, 96, int(rng.integers(0, 256)))
        nat = [f"{egress[0]}.{egress[1]}.{egress[2]}.{h}" for h in (11, 12, 13, 14)]
        tz = 1.0  # CET
        weekdays = [d for d in range(self.days) if (START.weekday() + d) % 7 < 5]
        deck = _Deck(self.ticket_pool or self.batch_pool, rng)
        ua = "northwind-helpdesk/2.3.1 python-httpx/0.27.0"
        lang = k["enterprise_language"]
        system = templates.ENTERPRISE_SYSTEM_BY_LANGUAGE.get(lang, templates.ENTERPRISE_SYSTEM)
        tasks = templates.ENTERPRISE_TASKS_BY_LANGUAGE.get(lang, templates.ENTERPRISE_TASKS)
        weights = np.array([0.4, 0.25, 0.25, 0.1])
        seats: list[_Account] = []
        n_total = 0
        for _ in range(n_seats):
            org = "org_northwind_outfitters" if shared else self.ids.make("org_", 1, 12)[0]
            acct = _Account(id=self.ids.make("acct_")[0], country="DE", tz=tz, ips=nat, uas=[ua],
                            keys=self.ids.make("key_", 1, 12), org=org,
                            payment="pm_northwind_invoice" if shared else None)
            seats.append(acct)
            lam = float(rng.uniform(1.5, 4.5))
            per_day = rng.poisson(lam, size=len(weekdays))
            ts = np.concatenate([START.timestamp() + d * 86400 + (9.0 + 8.0 * np.sort(rng.random(c)) - tz) * 3600
                                 for d, c in zip(weekdays, per_day, strict=True)]) if weekdays else np.zeros(0)
            n = len(ts)
            if n == 0:
                continue
            which = rng.choice(len(tasks), size=n, p=weights)
            tickets = rng.integers(100_000, 1_000_000, size=n)
            prompts = [tasks[int(w)].format(ticket=int(t), task=m)
                       for w, t, m in zip(which, tickets, deck.draw(n), strict=True)]
            ips = [nat[int(i)] for i in rng.integers(0, len(nat), size=n)]
            self.rows.add(acct, ts, prompts, [system] * n, ["frontier-1-mini"] * n, ips,
                          [ua] * n, [True] * n, "enterprise_seats")
            n_total += n
        self.legit_accounts.extend(a.id for a in seats)
        self.truth_hn["enterprise_seats"] = {
            "kind": "enterprise_seats", "accounts": sorted(a.id for a in seats), "n_requests": n_total,
            "org_id_shared": shared, "egress_subnet": f"{egress[0]}.{egress[1]}.{egress[2]}.0/24"}

    def build_cot_eval(self) -> None:
        """A research organisation's chain-of-thought eval harness: the same CoT-prompted test set re-run once
        per checkpoint, each run sharded over several accounts that send concurrently at scripted intervals."""
        rng, k = self.rng, self.k
        n_acc = int(k["cot_eval_accounts"])
        shared = bool(k["enterprise_org_id"])
        questions = self.cot_eval_pool or self.eval_pool
        subnet = (35, 199, int(rng.integers(0, 256)))
        ua = "lumen-evals/1.2 OpenAI/Python 1.54.4"
        accts = [_Account(id=self.ids.make("acct_")[0], country="US", tz=-8,
                          ips=[f"{subnet[0]}.{subnet[1]}.{subnet[2]}.{20 + i}"], uas=[ua],
                          keys=self.ids.make("key_", 1, 12),
                          org="org_lumen_research" if shared else self.ids.make("org_", 1, 12)[0],
                          payment="pm_lumen" if shared else None) for i in range(n_acc)]
        prompts_all = [templates.COT_EVAL_TEMPLATE.format(task=q) for q in questions]
        n_ck = int(k["cot_eval_checkpoints"])
        n_total = 0
        for ck in range(n_ck):
            day = min(self.days - 1, int(ck * self.days / n_ck + rng.integers(0, max(1, self.days // n_ck))))
            start = START.timestamp() + day * 86400 + 2 * 3600 + float(rng.uniform(0, 600))  # a nightly job
            model = NEW_MODEL if start > self.release else MODELS[ck % 2]
            for ai, acct in enumerate(accts):
                shard = prompts_all[ai::n_acc]
                n = len(shard)
                if n == 0:
                    continue
                ts = start + np.cumsum(rng.uniform(1.8, 2.2, size=n))
                self.rows.add(acct, ts, shard, [None] * n, [model] * n, acct.ips * n, acct.uas * n, [False] * n,
                              "cot_eval_harness")
                n_total += n
        self.legit_accounts.extend(a.id for a in accts)
        self.truth_hn["cot_eval_harness"] = {
            "kind": "cot_eval_harness", "accounts": sorted(a.id for a in accts), "n_requests": n_total,
            "checkpoints": n_ck, "questions": len(prompts_all), "org_id_shared": shared}

    def build_classroom(self, pool: list[tuple[_Account, int]]) -> None:
        """A classroom lab: students behind one campus /24 in one 2-hour session, a dozen assignment problems
        asked step by step, each student wording them a little differently. Half the students are ordinary
        users who also do other things; half are course accounts that send only this."""
        rng, k = self.rng, self.k
        n_students = int(k["classroom_students"])
        n_prob = min(int(k["classroom_problems"]), len(self.hw_pool))
        problems = [self.hw_pool[int(i)] for i in rng.choice(len(self.hw_pool), size=n_prob, replace=False)]
        campus = (141, int(rng.integers(0, 256)), int(rng.integers(0, 256)))
        tz = -6.0
        weekdays = [d for d in range(self.days) if (START.weekday() + d) % 7 < 5] or [0]
        day = weekdays[int(rng.integers(len(weekdays)))]
        start = START.timestamp() + day * 86400 + (10.0 - tz) * 3600
        taken = {a for h in self.truth_hn.values() for a in h["accounts"]}
        cands = [a for a, c in pool if a.id not in taken and c >= 2]
        n_existing = min(len(cands), int(round(_CLASSROOM_EXISTING * n_students)))
        students = [cands[int(i)] for i in rng.choice(len(cands), size=n_existing, replace=False)] if n_existing else []
        for _ in range(n_students - n_existing):
            acct = self.new_organic_account()
            self.legit_accounts.append(acct.id)
            students.append(acct)
        n_total = 0
        for si, acct in enumerate(students):
            n = int(rng.integers(2, 7))
            first = int(rng.integers(0, n_prob))
            idx = [(first + j) % n_prob for j in range(n)]
            ts = start + np.sort(rng.uniform(0, _CLASSROOM_SESSION_S, size=n))
            prompts = [self._student_wording(problems[i], i + 1) for i in idx]
            ip = f"{campus[0]}.{campus[1]}.{campus[2]}.{10 + si % 240}"
            self.rows.add(acct, ts, prompts, [None] * n, ["frontier-1-mini"] * n, [ip] * n, [acct.uas[0]] * n,
                          [False] * n, "classroom")
            n_total += n
        self.truth_hn["classroom"] = {
            "kind": "classroom", "accounts": sorted(a.id for a in students), "n_requests": n_total,
            "campus_subnet": f"{campus[0]}.{campus[1]}.{campus[2]}.0/24",
            "session": {"start": _iso(start), "end": _iso(start + _CLASSROOM_SESSION_S)}, "problems": n_prob}

    def _student_wording(self, problem: str, q: int) -> str:
        """One student's phrasing of an assignment problem: own lead-in, "step by step" phrase, maybe typos."""
        rng = self.rng
        text = problem
        for _ in range(int(rng.choice([0, 0, 1, 2]))):  # typos: a dropped or swapped letter
            if len(text) < 20:
                break
            i = int(rng.integers(1, len(text) - 2))
            text = text[:i] + text[i + 1:] if rng.random() < 0.5 else text[:i] + text[i + 1] + text[i] + text[i + 2:]
        if rng.random() < 0.3:
            text = text[0].lower() + text[1:]
        lead = _pick(rng, templates.CLASSROOM_LEADS).format(q=q)
        sbs = _pick(rng, templates.CLASSROOM_SBS)
        return f"{sbs}: {text}" if rng.random() < 0.3 else f"{lead}{text} {sbs}"

    # ----------------------------------------------------------------------------------- main
    def run(self) -> Scenario:
        k = self.k
        rng = self.rng
        self.load_pools()
        n_total = int(k["n_requests"])
        chosen = [c for c in CAMPAIGN_KINDS if c in k["campaigns"]]
        ca = k["campaign_accounts"]

        def n_acc(c: str) -> int:
            if isinstance(ca, Mapping):
                first = [x for x in chosen if CAMPAIGN_KINDS[x][1] == CAMPAIGN_KINDS[c][1]][0]
                return int(ca.get(first, ca.get(c, 20)))
            return int(ca)

        slots = sum(n_acc(c) for c in chosen)  # an operator_a account counts once per campaign it runs
        if k["second_operator"] is not None:
            slots += int(k["second_operator"]["accounts"])
        if k["requests_per_account"] is not None:
            per_account = float(k["requests_per_account"])
        else:
            per_account = max(1.0, float(k["campaign_share"]) * n_total / max(1, slots))
        self.build_campaigns(per_account)
        n_campaign_rows = len(self.rows)
        hn = [h for h in ALL_HARD_NEGATIVES if h in k["hard_negatives"]]
        if "enterprise_batch" in hn:
            self.build_batch()
        if "eval_harness" in hn:
            self.build_eval()
        if "enterprise_seats" in hn:
            self.build_enterprise_seats()
        if "cot_eval_harness" in hn:
            self.build_cot_eval()
        # organic budget: what is left, minus the expected homework / viral traffic carried by organic users
        hw_expect = 5 * int(k["homework_students"]) if "homework" in hn else 0
        vir_expect = int(1.6 * int(k["viral_users"])) if "viral_prompt" in hn else 0
        cls_expect = int(_CLASSROOM_MEAN_REQUESTS * int(k["classroom_students"])) if "classroom" in hn else 0
        budget = n_total - len(self.rows) - hw_expect - vir_expect - cls_expect
        if budget < 100:
            raise ValueError(f"n_requests={n_total} leaves no room for organic traffic "
                             f"(campaign + look-alike traffic is {n_total - budget}); raise n_requests or lower "
                             f"campaign_share / requests_per_account / campaign_accounts")
        # heavy-tailed activity: lognormal counts plus a few power users
        counts: list[int] = []
        n_power = int(k["power_users"])
        cap = max(50, int(0.03 * budget))
        for _ in range(n_power):
            counts.append(int(min(cap, rng.uniform(0.4, 1.0) * min(3000, 0.03 * budget * 1.0) + 20)))
        acc_sum = sum(counts)
        while acc_sum < budget:
            c = int(min(cap, math.floor(rng.lognormal(float(k["organic_mu"]), 1.4)) + 1))
            c = min(c, budget - acc_sum)
            counts.append(c)
            acc_sum += c
        pool: list[tuple[_Account, int]] = []
        for c in counts:
            acct = self.new_organic_account()
            self.emit_organic(acct, c)
            pool.append((acct, c))
            self.legit_accounts.append(acct.id)
        if "homework" in hn:
            self.build_homework(self.pick_users(pool, int(k["homework_students"]), 3))
        if "viral_prompt" in hn:
            self.build_viral(self.pick_users(pool, int(k["viral_users"]), 2))
        if "classroom" in hn:
            self.build_classroom(pool)
        return self.finish(n_campaign_rows)

    def finish(self, n_campaign_rows: int) -> Scenario:
        cols = self.rows.cols
        ts = np.concatenate(self.rows.ts)
        lo, hi = START.timestamp(), START.timestamp() + self.days * 86400 - 1
        ts = np.clip(ts, lo, hi)
        us = np.round(ts * 1000).astype(np.int64) * 1000
        df = pd.DataFrame({c: cols[c] for c in cols})
        df.insert(1, "ts", pd.to_datetime(us, unit="us", utc=True).as_unit("us"))
        df = df.sort_values(["ts", "account_id"], kind="mergesort").reset_index(drop=True)
        df.insert(0, "request_id", [f"req_{self.ids.namespace}{i:09d}" for i in range(len(df))])
        df = df[COLUMNS]
        df["chat"] = df["chat"].astype(bool)
        self._apply_bans(df)
        campaign_accts = {a for c in self.truth_campaigns.values() for a in c["accounts"]}
        all_accounts = sorted(df["account_id"].unique().tolist())
        legit = [a for a in all_accounts if a not in campaign_accts]
        pivot = self._pivot_stats(df)
        stripped = self._strip_metadata(df, all_accounts)
        truth = {
            "preset": self.preset,
            "seed": self.seed,
            "knobs": truth_knobs(self.k),
            "campaigns": self.truth_campaigns,
            "hard_negatives": self.truth_hn,
            "organic_accounts": len(legit),
            "n_accounts": len(all_accounts),
            "n_requests": len(df),
            "n_unique_prompts": int(df["prompt"].nunique()),
            "campaign_request_share": round(float(df["actor"].isin(list(self.truth_campaigns)).mean()), 4),
            "window": {"start": _iso(START.timestamp()), "end": _iso(START.timestamp() + self.days * 86400)},
            "new_model": {"name": NEW_MODEL, "released_at": _iso(self.release)},
            "pivot": pivot,
            "sources": sorted(self.sources_used),
            "all_accounts": all_accounts,
        }
        if stripped is not None:
            truth["metadata_stripped_accounts"] = stripped
        return Scenario(requests=df, truth=truth)

    def _strip_metadata(self, df: pd.DataFrame, all_accounts: list[str]) -> int | None:
        """Blank the infrastructure columns (``metadata`` knob) in place; returns how many accounts were
        stripped, or None when ``metadata="full"``."""
        mode = self.k["metadata"]
        if mode == "full":
            return None
        if mode == "minimal":
            mask = np.ones(len(df), dtype=bool)
            n = len(all_accounts)
        else:  # "mixed": a random half of all accounts, campaign and benign alike (two gateways, one bare)
            pick = self.arng.choice(len(all_accounts), size=len(all_accounts) // 2, replace=False)
            chosen = {all_accounts[int(i)] for i in pick}
            mask = df["account_id"].isin(chosen).to_numpy()
            n = len(chosen)
        for c in METADATA_COLUMNS:
            col = df[c].astype(object)
            col[mask] = None
            df[c] = col
        return n

    def _pivot_stats(self, df: pd.DataFrame) -> dict[str, Any]:
        rel = pd.Timestamp(self.release, unit="s", tz="UTC")
        win = (df["ts"] >= rel) & (df["ts"] < rel + pd.Timedelta(hours=24))
        out: dict[str, Any] = {}
        for name in self.truth_campaigns:
            m = win & (df["actor"] == name)
            if m.any():
                out[name] = round(float((df.loc[m, "model"] == NEW_MODEL).mean()), 3)
        org = win & (df["actor"] == "organic")
        out["organic"] = round(float((df.loc[org, "model"] == NEW_MODEL).mean()), 3) if org.any() else 0.0
        return {"share_on_new_model_first_24h": out}


# =============================================================================================== public API


def resolve_knobs(preset: str, **knobs: Any) -> dict[str, Any]:
    """Preset defaults overridden by ``knobs``; unknown knob names raise ``TypeError``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    merged: dict[str, Any] = {**DEFAULT_KNOBS, **PRESETS[preset]}
    unknown = set(knobs) - set(merged)
    if unknown:
        raise TypeError(f"unknown knob(s) {sorted(unknown)}; known: {sorted(merged)}")
    merged.update(knobs)
    if isinstance(merged["campaign_accounts"], Mapping):
        merged["campaign_accounts"] = dict(merged["campaign_accounts"])
    merged["campaigns"] = tuple(merged["campaigns"])
    merged["hard_negatives"] = tuple(merged["hard_negatives"])
    if not 0 <= float(merged["mix_fraction"]) < 1:
        raise ValueError("mix_fraction must be in [0, 1)")
    if not 0 <= float(merged["hydra_fraction"]) <= 1:
        raise ValueError("hydra_fraction must be in [0, 1]")
    _check_adversarial(merged)
    return merged


def _check_adversarial(k: dict[str, Any]) -> None:
    """Validate the adversarial knobs (and the hard-negative names) in place; raises ``ValueError``."""
    choices = {"wrapper_style": ("fixed", "fragments"), "campaign_timing": ("shifts", "diurnal"),
               "metadata": ("full", "minimal", "mixed"), "wrapper_language": ("en", "zh", "es", "pl", "mixed"),
               "enterprise_language": ("en", "zh", "es", "pl")}
    for name, allowed in choices.items():
        if k[name] not in allowed:
            raise ValueError(f"{name}={k[name]!r}; choose one of {list(allowed)}")
    if not 0.0 <= float(k["wrapper_noise"]) <= 1.0:
        raise ValueError("wrapper_noise must be in [0, 1]")
    if not 0.0 <= float(k["system_intent_share"]) <= 1.0:
        raise ValueError("system_intent_share must be in [0, 1]")
    if int(k["pad_chars"]) < 0:
        raise ValueError("pad_chars must be >= 0")
    if k["ban_day"] is not None and not 1 <= int(k["ban_day"]) < int(k["days"]):
        raise ValueError("ban_day must be None or a day in [1, days)")
    if not 0.0 <= float(k["ban_share"]) <= 1.0:
        raise ValueError("ban_share must be in [0, 1]")
    unknown = [h for h in k["hard_negatives"] if h not in ALL_HARD_NEGATIVES]
    if unknown:
        raise ValueError(f"unknown hard negative(s) {unknown}; known: {list(ALL_HARD_NEGATIVES)}")
    for name in ("enterprise_seats", "classroom_students", "classroom_problems", "cot_eval_accounts",
                 "cot_eval_checkpoints", "cot_eval_questions"):
        if int(k[name]) < 1:
            raise ValueError(f"{name} must be >= 1")
    so = k["second_operator"]
    if so is not None:
        if not isinstance(so, Mapping) or "campaign" not in so or "accounts" not in so:
            raise ValueError("second_operator must be None or a dict like "
                             "{'campaign': 'censorship_rewrite', 'accounts': 10}")
        if so["campaign"] not in CAMPAIGN_KINDS:
            raise ValueError(f"second_operator campaign {so['campaign']!r}; choose one of {list(CAMPAIGN_KINDS)}")
        if int(so["accounts"]) < 1:
            raise ValueError("second_operator accounts must be >= 1")
        extra = set(so) - {"campaign", "accounts", "requests_per_account"}
        if extra:
            raise ValueError(f"second_operator: unknown key(s) {sorted(extra)}")
        k["second_operator"] = dict(so)


def build_scenario(preset: str = "quick", seed: int = 0, **knobs: Any) -> Scenario:
    """Build a scenario.

    Parameters
    ----------
    preset : str
        ``"sample"`` (~3k requests, permissive sources only), ``"quick"`` (~12k), ``"standard"`` (~150k),
        ``"scale"`` (~1M), or one of the quick-sized adversarial presets (:data:`ADVERSARIAL_PRESETS`).
    seed : int
        Seed of the ``numpy.random.Generator``; same preset + seed + knobs gives an identical frame.
    **knobs
        Overrides of the preset (see :data:`PRESETS` and :data:`DEFAULT_KNOBS`): ``n_requests``,
        ``campaign_accounts`` (int for every campaign, or ``{campaign: n}``; ``cot_math`` and ``rubric_grading``
        share one pool, sized by ``cot_math``), ``requests_per_account`` (per account per campaign; overrides
        ``campaign_share``), ``campaign_share``, ``mix_fraction`` and ``hydra_fraction`` (hydra accounts),
        ``template_variation``, ``days``, ``permissive_only``, ``campaigns``, ``hard_negatives``,
        ``homework_students``, ``viral_users``, ``batch_requests``, ``eval_accounts``, ``eval_questions``,
        ``eval_runs``, ``power_users``, ``retry_rate``.
        Adversarial knobs (all off by default; off, the frame is byte-identical to a build without them; see the
        module docstring for what each plants): ``wrapper_style`` (``"fixed"`` | ``"fragments"``),
        ``system_intent_share`` (0..1), ``campaign_timing`` (``"shifts"`` | ``"diurnal"``), ``metadata``
        (``"full"`` | ``"minimal"`` | ``"mixed"``), ``wrapper_language`` (``"en"`` | ``"zh"`` | ``"es"`` |
        ``"pl"`` | ``"mixed"``),
        ``pad_chars`` (int), ``second_operator`` (None or ``{"campaign": c, "accounts": n}``), and the
        look-alikes ``"enterprise_seats"``, ``"classroom"``, ``"cot_eval_harness"`` in ``hard_negatives`` with
        ``enterprise_seats``, ``enterprise_org_id``, ``enterprise_language``, ``classroom_students``, ``classroom_problems``,
        ``cot_eval_accounts``, ``cot_eval_checkpoints``, ``cot_eval_questions``. Adversarial presets:
        ``adv-paraphrase``, ``adv-quiet``, ``adv-bare``, ``adv-chinese``, ``adv-spanish``, ``adv-polish``, ``adv-padded``, ``adv-tiny``,
        ``adv-lookalikes``, ``adv-lookalikes-noorg``, ``adversarial`` (:data:`ADVERSARIAL_PRESETS`).

    Raises
    ------
    corpora.SharedDataMissing
        When ``../shared/data`` is not available.
    """
    k = resolve_knobs(preset, **knobs)
    if int(k["shards"]) != 1:
        raise ValueError(f"preset {preset!r} is written in {k['shards']} shards: use write_sharded_scenario (or "
                         f"analyzer bench), or build one shard with shards=1")
    if not corpora.available():
        raise corpora.SharedDataMissing(f"shared corpora not found at {corpora.data_dir()}")
    return _Generator(preset, seed, k).run()


def scenario_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Log records (dicts in the pipeline's input format) for a scenario frame, in frame order."""
    ts = df["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str.slice(0, 23) + "Z"
    out: list[dict[str, Any]] = []
    opt = ["model", "ip", "user_agent", "api_key_id", "org_id", "payment_id", "country"]
    cols = {c: df[c].tolist() for c in ["request_id", "account_id", "prompt", "system_prompt", "chat", *opt]}
    tsl = ts.tolist()
    for i in range(len(df)):
        rec: dict[str, Any] = {"request_id": cols["request_id"][i], "account_id": cols["account_id"][i],
                               "timestamp": tsl[i]}
        if cols["chat"][i]:
            sysp = cols["system_prompt"][i]
            msgs = [{"role": "system", "content": sysp}] if isinstance(sysp, str) and sysp else []
            msgs.append({"role": "user", "content": cols["prompt"][i]})
            rec["messages"] = msgs
        else:
            rec["prompt"] = cols["prompt"][i]
        for c in opt:
            v = cols[c][i]
            if isinstance(v, str):
                rec[c] = v
        out.append(rec)
    return out


def write_scenario(scenario: Scenario, out_dir: str | os.PathLike[str], log_name: str = "logs.jsonl.gz",
                   truth_name: str = "truth.json") -> tuple[Path, Path]:
    """Write ``logs.jsonl.gz`` (one JSON object per request; byte-reproducible) and ``truth.json``."""
    out = Path(out_dir)
    log_path, truth_path = out / log_name, out / truth_name
    write_log(scenario.requests, log_path)
    atomic_write_bytes(truth_path, (json.dumps(scenario.truth, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    return log_path, truth_path


def write_log(requests: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """A scenario frame as a gzipped JSONL log at ``path`` (atomically; byte-reproducible)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6,
                                                       mtime=0) as gz:
        for start in range(0, len(requests), 10_000):  # a slice at a time: a 1M frame's dicts doubled its memory
            recs = scenario_records(requests.iloc[start:start + 10_000])
            gz.write(("\n".join(json.dumps(rec, ensure_ascii=False) for rec in recs) + "\n").encode("utf-8"))


def write_sharded_scenario(preset: str, seed: int, out_dir: str | os.PathLike[str], log: Callable[[str], None] = print,
                           **knobs: Any) -> tuple[Path, Path]:
    """Write a sharded scenario (knob ``shards``, e.g. the ``incident`` preset): ``logs/shard-NNN.jsonl.gz``, one
    build of the preset per shard, and one merged ``truth.json`` (:func:`merge_truths`); returns their paths.

    Shard ``i`` is built with seed ``seed * SHARD_SEED_STRIDE + i``, its ids in namespace ``sNNN`` (no two
    shards share an account, key, organisation, payment or request id) and every campaign operator's proxies
    drawn from ``operator_seed`` (default ``seed``): one operator across shards, as in a provider's export split by
    gateway. One shard is in memory at a time, so generating needs what a 1M build needs whatever the number
    of shards. Each shard's log and truth (``shards/shard-NNN.truth.json``) are written atomically, log first: an
    interrupted generation resumes at the first shard without both, and gives the same bytes.
    """
    k = resolve_knobs(preset, **knobs)
    n = int(k["shards"])
    out = Path(out_dir)
    logs, parts = out / "logs", out / "shards"
    op_seed = seed if k["operator_seed"] is None else int(k["operator_seed"])
    truths: list[dict[str, Any]] = []
    for i in range(n):
        name = f"shard-{i:03d}"
        log_path, truth_path = logs / f"{name}.jsonl.gz", parts / f"{name}.truth.json"
        shard_knobs = {**knobs, "shards": 1, "id_namespace": f"s{i:03d}", "operator_seed": op_seed}
        shard_seed = seed * SHARD_SEED_STRIDE + i
        if _kept_shard(log_path, truth_path, shard_seed, truth_knobs(resolve_knobs(preset, **shard_knobs))):
            log(f"[{preset} seed {seed}] {name}: kept from an earlier run")
        else:
            t0 = time.perf_counter()
            scenario = build_scenario(preset, seed=shard_seed, **shard_knobs)
            n_rows = len(scenario.requests)
            write_log(scenario.requests, log_path)
            parts.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(truth_path, (json.dumps(scenario.truth, ensure_ascii=False) + "\n").encode("utf-8"))
            del scenario
            log(f"[{preset} seed {seed}] {name}: {n_rows:,} requests ({time.perf_counter() - t0:.0f} s)")
        truths.append(json.loads(truth_path.read_text(encoding="utf-8")))
    truth = merge_truths(truths, preset, seed, {**k, "operator_seed": op_seed})
    truth_out = out / "truth.json"
    atomic_write_bytes(truth_out, (json.dumps(truth, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    return logs, truth_out


def truth_knobs(knobs: Mapping[str, Any]) -> dict[str, Any]:
    """The knobs as ``truth["knobs"]`` records them: JSON values, the quiet knobs (adversarial, sharding) left out
    while at their defaults."""
    return {k: (dict(v) if isinstance(v, Mapping) else list(v) if isinstance(v, tuple) else v)
            for k, v in knobs.items() if not (k in _QUIET_KNOBS and v == _QUIET_KNOBS[k])}


def _kept_shard(log_path: Path, truth_path: Path, seed: int, knobs: Mapping[str, Any]) -> bool:
    """Whether an earlier run wrote this shard with this seed and these knobs (else it is built again)."""
    if not (log_path.exists() and truth_path.exists()):
        return False
    try:
        kept = json.loads(truth_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return kept.get("seed") == seed and kept.get("knobs") == json.loads(json.dumps(knobs))


def merge_truths(truths: Sequence[Mapping[str, Any]], preset: str, seed: int, knobs: Mapping[str, Any]
                 ) -> dict[str, Any]:
    """One ground truth for the shards of a sharded scenario (:func:`write_sharded_scenario`): each campaign and
    look-alike with the accounts, requests, hydra accounts and proxies of all shards; counts summed (accounts
    never repeat across shards); ``n_unique_prompts`` per shard only (shards share prompts)."""
    def union(entries: list[Mapping[str, Any]], key: str) -> list[Any]:
        return sorted({x for e in entries for x in e.get(key, [])})

    def merged(group: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name in dict.fromkeys(n for t in truths for n in (t.get(group) or {})):
            entries = [t[group][name] for t in truths if name in (t.get(group) or {})]
            e = dict(entries[0])
            e.update(accounts=union(entries, "accounts"), n_requests=sum(int(x["n_requests"]) for x in entries),
                     shards=len(entries))
            for key in ("hydra_accounts", "proxy_subnets", "banned_accounts"):
                if key in e:
                    e[key] = union(entries, key)
            if "replacement_accounts" in e:
                e["replacement_accounts"] = dict(sorted(
                    (a, b) for x in entries for a, b in x["replacement_accounts"].items()))
            out[name] = e
        return out

    n_requests = sum(int(t["n_requests"]) for t in truths)
    shares = [t.get("pivot", {}).get("share_on_new_model_first_24h", {}) for t in truths]
    pivot = {name: round(float(np.mean([s[name] for s in shares if name in s])), 3)
             for name in dict.fromkeys(n for s in shares for n in s)}
    out: dict[str, Any] = {
        "preset": preset, "seed": seed, "shards": len(truths),
        "shard_seeds": [t["seed"] for t in truths],
        "knobs": {k: v for k, v in truth_knobs(knobs).items() if k != "id_namespace"},
        "campaigns": merged("campaigns"),
        "hard_negatives": merged("hard_negatives"),
        "organic_accounts": sum(int(t["organic_accounts"]) for t in truths),
        "n_accounts": sum(int(t["n_accounts"]) for t in truths),
        "n_requests": n_requests,
        "n_unique_prompts_per_shard": [int(t["n_unique_prompts"]) for t in truths],
        "campaign_request_share": round(sum(float(t["campaign_request_share"]) * int(t["n_requests"])
                                            for t in truths) / max(1, n_requests), 4),
        "window": truths[0]["window"] if truths else None,
        "new_model": truths[0]["new_model"] if truths else None,
        "pivot": {"share_on_new_model_first_24h": pivot},
        "sources": sorted({s for t in truths for s in t.get("sources", [])}),
        "all_accounts": sorted(a for t in truths for a in t.get("all_accounts", [])),
    }
    if any("metadata_stripped_accounts" in t for t in truths):
        out["metadata_stripped_accounts"] = sum(int(t.get("metadata_stripped_accounts", 0)) for t in truths)
    return out
