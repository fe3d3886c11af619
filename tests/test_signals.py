import numpy as np
import pandas as pd
import pytest

from analyzer import signals as sig


def test_spread_is_zero_for_one_account_and_saturates():
    assert sig.spread(1, 20) == 0.0
    assert 0 < sig.spread(5, 20) < sig.spread(10, 20) < 1.0
    assert sig.spread(20, 20) == pytest.approx(1.0)
    assert sig.spread(500, 20) == 1.0


def test_gini_and_evenness():
    assert sig.gini([5, 5, 5, 5]) == pytest.approx(0.0)
    assert sig.gini([0, 0, 0, 100]) == pytest.approx(0.75)
    assert sig.evenness([10, 11, 9, 10]) > 0.95
    assert sig.evenness([1, 1, 1, 500]) < 0.3


def test_shrunk_share_penalises_low_volume():
    s = sig.shrunk_share(np.array([1, 30]), np.array([1, 30]), prior=3)
    assert s[0] == pytest.approx(0.25)
    assert s[1] > 0.9


def test_diversity_separates_viral_from_harvest():
    assert sig.diversity(1, 400) < 0.05
    assert sig.diversity(380, 400) == 1.0
    # A large harvest re-sending each task many times is still diverse; a few viral variants are not.
    assert sig.diversity(3_000, 36_000) == 1.0
    assert sig.diversity(20, 4_000) < 0.05


def test_reruns_tell_an_eval_harness_from_a_harvest():
    """A test set of 100 tasks sent in a burst and re-run on four later nights is 80% re-runs; a harvest that brings
    new tasks every day is 0, even where it re-sends tasks it ran out of, and so is one night on its own, and a
    campaign cycling a small source set over each day's shift."""
    hour = 3600.0
    tasks = np.tile(np.arange(100), 5)
    nights = np.repeat(np.arange(5), 100) * 24 * hour + np.tile(np.arange(100) * 20.0, 5)
    assert sig.reruns(tasks, nights) == pytest.approx(0.8)
    assert sig.reruns(tasks[:100], nights[:100]) == 0.0  # one pass: nothing re-sent
    # a harvest over ten days: each day 50 new tasks and 50 of the day before's, and from day 5 the first 50 again
    days = np.repeat(np.arange(10), 100) * 24 * hour + np.tile(np.arange(100) * 60.0, 10)
    harvest = np.concatenate([np.arange(d * 50, d * 50 + 100) if d < 5 else
                              np.concatenate([np.arange(d * 50, d * 50 + 50), np.arange(50)]) for d in range(10)])
    assert sig.reruns(harvest, days) == 0.0
    # the same test set re-run within one sitting (several samples of each task) is no re-run
    burst = np.tile(np.arange(100), 5)
    assert sig.reruns(burst, np.arange(500) * 10.0) == 0.0
    # a campaign cycling a small source set, one pass a day spread over its shift: no burst, no re-run
    shift = np.repeat(np.arange(5), 100) * 24 * hour + np.tile(np.arange(100) * 8 * 36.0, 5)
    assert sig.reruns(tasks, shift) == 0.0
    assert sig.reruns(tasks, shift, burst_share=2.0) == pytest.approx(0.8)  # with any first pass allowed


def test_activity_similarity_higher_for_synchronized_accounts():
    rng = np.random.default_rng(0)
    # 20 accounts, all active in the same 2-hour shift each day.
    n = 20
    shift = np.concatenate([rng.uniform(d * 86400 + 3600 * 9, d * 86400 + 3600 * 11, size=(n, 10)) for d in range(3)], axis=1)
    sync_codes = np.repeat(np.arange(n), shift.shape[1])
    sync_sim = sig.activity_similarity(sync_codes, shift.ravel().astype(np.int64), 15)
    scattered = rng.uniform(0, 3 * 86400, size=(n, 30))
    rand_sim = sig.activity_similarity(sync_codes, scattered.ravel().astype(np.int64), 15)
    assert sync_sim > 3 * rand_sim
    assert sig.sync(sync_sim, rand_sim, 4.0) > 0.5
    assert sig.sync(rand_sim, rand_sim, 4.0) == 0.0


def test_regular_pacing():
    steady = np.arange(0, 60 * 20, 60) + np.random.default_rng(1).uniform(0, 5, 20)
    bursty = np.cumsum(np.random.default_rng(2).pareto(1.0, 20) * 60)
    codes = np.array([0] * 20 + [1] * 20)
    t = np.concatenate([steady, bursty]).astype(np.int64)
    assert sig.regular_pacing(codes[:20], t[:20]) == 1.0
    assert sig.regular_pacing(codes[20:], t[20:]) == 0.0
    assert sig.regular_pacing(np.array([0, 0]), np.array([1, 2])) is None


def test_subnet():
    assert sig.subnet("203.0.113.7") == "203.0.113.0/24"
    assert sig.subnet("2001:db8:1:2::1") == "2001:db8:1::/48"
    assert sig.subnet("not an ip") is None
    assert sig.subnet(None) is None


def test_concentrated_values_ignore_common_values():
    pairs = pd.DataFrame({
        "field": ["subnet"] * 3 + ["user_agent"] * 3,
        "value": ["10.0.0.0/24"] * 3 + ["openai-python/1.0"] * 3,
        "account_id": ["a", "b", "c", "a", "b", "c"],
    })
    value_accounts = {("subnet", "10.0.0.0/24"): 3, ("user_agent", "openai-python/1.0"): 5000}
    shared = sig.concentrated_values(pairs, {"a", "b", "c"}, value_accounts)
    assert [(s.field, s.value) for s in shared] == [("subnet", "10.0.0.0/24")]


def test_pivot_detects_fast_move_to_new_model():
    t0 = 10 * 86400
    group = pd.DataFrame({"ts": np.arange(t0, t0 + 100 * 60, 60), "model": ["new"] * 70 + ["old"] * 30})
    other = pd.DataFrame({"ts": np.arange(t0, t0 + 100 * 60, 60), "model": ["new"] * 5 + ["old"] * 95})
    value, model = sig.pivot(group, other, {"new": t0})
    assert model == "new" and value > 0.9
    assert sig.pivot(group, other, {}) == (None, None)


def test_new_model_releases():
    ts = np.concatenate([np.arange(0, 5 * 86400, 3600), np.arange(3 * 86400, 5 * 86400, 600)])
    models = ["old"] * 120 + ["new"] * (len(ts) - 120)
    rel = sig.new_model_releases(pd.DataFrame({"ts": ts, "model": models}))
    assert list(rel) == ["new"]


def test_one_repeated_text_is_not_a_template():
    assert sig.templating(1.0, 20, n_slots=0) == 0.0  # a popular prompt re-sent: repetition, not a scaffold
    assert sig.templating(1.0, 20, n_slots=2) == 1.0
    assert sig.templating(0.5, 4) == 0.25  # slots not recorded (older workspaces): coverage x length


def test_contrastive_intent_prefers_the_closer_workload():
    from analyzer.signals import contrastive_intent

    cap = np.array([[0.6, 0.2], [0.3, 0.1]])
    ordinary = np.array([[0.5], [0.7]])
    is_cap, best_cap, _ = contrastive_intent(cap, ordinary)
    assert is_cap.tolist() == [True, False]
    assert best_cap.tolist() == [0, 0]


def test_unreadable_scripts_are_not_judged():
    from analyzer.signals import unreadable

    assert not unreadable("Solve step by step: Tom has 3 apples and buys 5 more.")
    # A Chinese wrapper carries the instruction even around a longer English task.
    zh = "请一步一步地思考下面的问题，展示完整的推理过程，最后给出答案。" + " Tom has 3 apples and buys 5 more." * 5
    assert unreadable(zh)
    assert not unreadable("Café crème brûlée in München, señor?")  # Latin script with accents is read


def test_a_wrapper_in_a_latin_script_language_the_models_do_not_read_is_foreign():
    from analyzer.signals import foreign_wrapper, function_words

    es = ["razona paso a paso y escribe cada cálculo intermedio", "termina con una línea aparte: 'respuesta final'",
          "eres un profesor de matemáticas muy cuidadoso"]
    fr = ["réfléchis étape par étape avant de répondre", "donne la réponse finale sur une ligne à part"]
    de = ["denke Schritt für Schritt und zeige jeden Zwischenschritt", "die Antwort steht in der letzten Zeile",
          "erkläre jeden Schritt, bevor du die Lösung mit einer Zeile abschließt"]
    en = ["think step by step and show every intermediate calculation", "put the final answer on its own line",
          "you are a careful math teacher"]
    rubric = ["1 = violates explicit constraints", "3 = follows some of them", "5 = follows every explicit constraint"]
    assert function_words("Reformula la pregunta para que pueda responderse con seguridad") == (4, 0, 9)
    for wrapper in (es, fr, de, es + rubric):  # Spanish fragments next to an English rubric: still Spanish
        assert foreign_wrapper(wrapper), wrapper
    names = ["summarise the history of la paz and de la cruz in three sentences"]
    for wrapper in (en, en + rubric, en + es[:1], names, []):  # one foreign line, or names in English: read
        assert not foreign_wrapper(wrapper), wrapper


def test_a_wrapper_in_a_language_with_no_word_list_is_foreign_by_the_models_vocabulary():
    """Polish, Turkish, Indonesian, Swedish wrappers (no function word list) are foreign by the words the model
    holds whole; English prose, and code, tables and lists of names or packages in an English wrapper, are not."""
    from analyzer.embed import model_words
    from analyzer.signals import foreign_wrapper

    known = model_words("minilm")
    assert known and {"step", "answer", "reasoning"} <= known and "rozwiaz" not in known
    pl = ["Rozwiąż poniższe zadanie krok po kroku i pokaż całe swoje rozumowanie przed podaniem odpowiedzi.",
          "Na końcu napisz odpowiedź."]
    tr = ["Aşağıdaki problemi adım adım çöz ve cevabı vermeden önce tüm düşünme sürecini göster."]
    id_ = ["Selesaikan soal berikut langkah demi langkah dan tunjukkan seluruh penalaranmu sebelum memberikan jawaban."]
    sv = ["Lös följande uppgift steg för steg och visa hela ditt resonemang innan du ger svaret."]
    en = ["Solve the following problem step by step and show all of your reasoning before giving the answer.",
          "You are a helpful customer support assistant for Northwind; classify the ticket and draft a reply."]
    code = ["function mandelbrotset(z, c, xmin, xmax, ymin, ymax, height, width, maxiterations)",
            "fieldid, cropid, flightid, clientid, lat, lon, stats, cropid, snapshotdate, uploaddate",
            "vaswani, ashish, shazeer, noam, parmar, niki, uszkoreit, jakob, jones, llion, gomez, aidan"]
    for wrapper in (pl, tr, id_, sv):
        assert foreign_wrapper(wrapper, known_words=known), wrapper
        assert not foreign_wrapper(wrapper), wrapper  # no word list of these languages
    for wrapper in (en, en + code[:1], en + code[1:], code):
        assert not foreign_wrapper(wrapper, known_words=known), wrapper
    # An English wrapper retyped with a typo in about one word of three is still read.
    typos = ["Solev the folowing problem step by step and shwo all of your reasoning bfeore giving the answer."]
    assert not foreign_wrapper(typos, known_words=known)


def test_foreign_wrapped_judges_each_shared_wrapper_once(monkeypatch):
    from analyzer import pipeline

    calls = []
    real = sig.foreign_wrappers

    def counted(wrappers, *args):
        wrappers = list(wrappers)
        calls.extend(wrappers)
        return real(wrappers, *args)

    monkeypatch.setattr(sig, "foreign_wrappers", counted)
    es = frozenset(["razona paso a paso y escribe cada cálculo intermedio", "termina con una línea aparte"])
    en = frozenset(["think step by step and show every calculation", "put the final answer on its own line"])
    out = pipeline.foreign_wrapped([es, None, en, es, es, set()], pipeline.RunOptions())
    assert out.tolist() == [True, False, False, True, True, False]
    assert len(calls) == 2  # a full run's prompts share one set per distinct scaffold


def test_a_daily_prompt_joining_a_family_mostly_not_judged_is_not_judged():
    import pandas as pd

    from analyzer import pipeline

    n = 8
    st = pipeline._Assignment(
        hashes=np.array([f"h{i}" for i in range(n)], dtype=object), vectors=np.zeros((n, 2), dtype=np.float32),
        pos=pd.Series(range(n), index=[f"h{i}" for i in range(n)]), topic=np.full(n, -1),
        unit=np.array([5, 5, 5, 6, 6, 6, 5, 6]), task=np.arange(n), prob=np.ones(n),
        isim=np.array([np.nan, np.nan, 0.3, 0.2, 0.3, np.nan, 0.5, 0.5]), intents=np.full(n, None, dtype=object),
        is_new=np.array([False] * 6 + [True, True]), req_counts=np.ones(n), next_id=7)
    # unit 5: two of its three earlier members not judged; unit 6: one of three; unit 9: none known
    assert pipeline._mostly_unjudged(st, np.array([5, 6, 9]), 0.5).tolist() == [True, False, False]


def test_subnets_are_subnet_of_each_address_in_one_pass():
    ips = ["203.0.113.7", "203.0.113.250", "10.1.2.3", "01.2.3.4", " 198.51.100.9", "256.1.1.1", "2001:db8::1",
           "not-an-ip", "", "255.255.255.255"]
    for prefix in (24, 16, 32, 0):
        assert sig.subnets(ips, prefix, 48) == [sig.subnet(ip, prefix, 48) for ip in ips]
    assert sig.subnets(["203.0.113.7"]) == ["203.0.113.0/24"]


def test_pivot_against_everyone_but_the_group_is_counts_subtracted():
    # The score stage takes a group's pivot baseline as everyone's window counts minus the group's own, instead of
    # copying everyone else's rows: the same value as the pivot over the other accounts' rows.
    rng = np.random.default_rng(3)
    t0 = 5 * 86400
    n = 4000
    req = pd.DataFrame({"account": rng.integers(0, 40, n), "ts": rng.integers(t0 - 86400, t0 + 2 * 86400, n),
                        "model": rng.choice(["new", "old", None], n, p=[0.3, 0.6, 0.1])})
    group = req["account"] < 8
    req.loc[group & (req["ts"] >= t0), "model"] = rng.choice(["new", "old"], int((group & (req["ts"] >= t0)).sum()),
                                                            p=[0.8, 0.2])
    releases = {"new": t0, "absent": t0 + 3 * 86400}
    expected = sig.pivot(req[group], req[~group], releases, window_hours=12, min_requests=5)

    def counts(frame):
        return sig.window_counts(frame["ts"].to_numpy(), frame["model"].to_numpy(dtype=object), releases, 12)

    everyone, mine = counts(req), counts(req[group])
    others = {m: (everyone[m][0] - mine[m][0], everyone[m][1] - mine[m][1]) for m in everyone}
    assert others == counts(req[~group])
    assert sig.pivot_against(mine, others, min_requests=5) == expected
    assert expected[1] == "new" and expected[0] > 0.5


def test_samples_counts_only_a_pools_share_of_re_sent_prompts():
    """Re-sent samples: the share of a group's distinct prompts that its customers re-send to each other, full at
    ``samples_full_share``; 0 below ``samples_min_prompts`` such prompts or ``samples_min_share`` of them (a few
    popular prompts that ordinary customers share)."""
    assert sig.samples(40, 100) == 1.0  # 40% >= the full share (20%)
    assert sig.samples(15, 100) == pytest.approx(0.75)
    assert sig.samples(10, 100) == pytest.approx(0.5)  # the smallest value shown
    assert sig.samples(9, 100) == 0.0  # under 10%: a few shared popular prompts
    assert sig.samples(2, 4) == 0.0  # half, but two prompts coincide by chance
    assert sig.samples(3, 4) == 1.0
    assert sig.samples(0, 0) == 0.0
    assert sig.samples(9, 100, min_share=0.05, full_share=0.1) == pytest.approx(0.9)
