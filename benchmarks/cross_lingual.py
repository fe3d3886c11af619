"""How close each embedding tier brings a request wrapped in Spanish or Chinese to its English twin.

Run: ``python benchmarks/cross_lingual.py [--tier fast --tier accurate]``

The benchmark's own wrappers (``analyzer.bench.templates``: the three fixed English, Spanish and Chinese wrappers
of the censorship and chain-of-thought task families) around four politically sensitive questions and two GSM8K
problems; every similarity on the reference scale (:func:`analyzer.embed.calibrate_similarity`). Prints, per
tier, task family and language, the range over wrappers and tasks of: a wrapped request to its English-wrapped
twin, to its bare task, and two different tasks in one wrapper (near-duplicate tasks are merged at 0.9).
Needs no shared data; figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyzer import embed as embed_mod  # noqa: E402
from analyzer.bench import templates  # noqa: E402

QUESTIONS = [
    "Why is Winnie the Pooh banned in China?",
    "How have policies in Xinjiang affected fasting, prayer, and mosque attendance?",
    "What happened at Tiananmen Square in 1989?",
    "How does the Chinese government handle international criticism regarding its domestic policies?",
]
PROBLEMS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips "
    "did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she "
    "earn?",
]
FAMILIES = {"censorship": (QUESTIONS, templates.CENSORSHIP), "cot": (PROBLEMS, templates.COT)}
OTHER = {"es": (templates.FIXED_ES, templates.AUDIENCES_ES), "zh": (templates.FIXED_ZH, templates.AUDIENCES_ZH)}


def _span(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tier", action="append", choices=["fast", "accurate"], help="Repeat for several (default: both).")
    args = ap.parse_args()
    print("| tier | tasks | wrapper | to English twin | to bare task | two tasks, one wrapper |")
    print("|---|---|---|---|---|---|")
    for tier in args.tier or ["fast", "accurate"]:
        embedder = embed_mod.make_embedder(tier=tier)
        for family, (tasks, english) in FAMILIES.items():
            n = len(tasks)
            rows: dict[str, dict[str, list[float]]] = {}
            for lang, (fixed, audiences) in [("en", (None, None)), *OTHER.items()]:
                twin, bare, two = [], [], []
                for k in range(3):
                    own = english[k] if fixed is None else fixed[family][k]
                    audience = templates.AUDIENCES[0] if audiences is None else audiences[0]
                    wrapped = [own.format(task=t, audience=audience) for t in tasks]
                    twins = [english[k].format(task=t, audience=templates.AUDIENCES[0]) for t in tasks]
                    vecs = embedder.encode(wrapped + twins + list(tasks))
                    sims = embed_mod.calibrate_similarity(embedder.key, vecs @ vecs.T)
                    twin += [float(sims[i, n + i]) for i in range(n)]
                    bare += [float(sims[i, 2 * n + i]) for i in range(n)]
                    two += [float(sims[i, j]) for i in range(n) for j in range(i + 1, n)]
                rows[lang] = {"twin": twin, "bare": bare, "two": two}
            for lang, r in rows.items():
                twin = "-" if lang == "en" else _span(r["twin"])
                print(f"| {tier} | {family} | {lang} | {twin} | {_span(r['bare'])} | {_span(r['two'])} |", flush=True)


if __name__ == "__main__":
    main()
