"""Held-out-like variations: the adversarial presets with knobs combined in ways the presets do not.

Issue 11's detection is checked on held-out logs "of the same kinds"; these mixes are how we look for the kinds our
own presets miss (bare metadata with look-alikes, bigger eval harnesses, quiet paraphrased pools, ...). Each mix
runs the analyzer alone through ``analyzer.bench.run.run_bench`` on every seed and prints one line per mix and
seed: campaign recall, false flags (and the look-alikes they hit), account AUC, lowest campaign / highest benign
score.

    python benchmarks/variations.py --seeds 0 1 2 --tier fast --out benchmarks/results/variations.json
    python benchmarks/variations.py --only harness-12x300-mixed-noorg --seeds 0

About 6 s per mix and seed on the fast tier (2 cores).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from analyzer.bench.run import run_bench
from analyzer.bench.scenario import ALL_HARD_NEGATIVES

#: name -> (preset, knobs). A-H are the mixes of an earlier release (README, "Eight mixes"); the rest came with
#: the eval harness re-run gate and the leftover-account rule of the operator split.
MIXES: dict[str, tuple[str, dict[str, Any]]] = {
    "A-bare-zh": ("adv-bare", {"wrapper_language": "zh"}),
    "B-tiny-bare": ("adv-tiny", {"metadata": "minimal"}),
    "C-tiny-mixedlang": ("adv-tiny", {"wrapper_language": "mixed"}),
    "D-quiet-1pct": ("adv-quiet", {"campaign_share": 0.01}),
    "E-para-diurnal-bare": ("adv-paraphrase", {"campaign_timing": "diurnal", "metadata": "minimal"}),
    "F-lookalikes-noorg-bare": ("adv-lookalikes-noorg", {"metadata": "minimal"}),
    "G-tiny-second-cot": ("adv-tiny", {"second_operator": {"campaign": "cot_math", "accounts": 10}}),
    "H-adv-second15": ("adversarial", {"second_operator": {"campaign": "censorship_rewrite", "accounts": 15}}),
    # everything of `adversarial` but the second operator: is the first censorship pool found on its own?
    "I-adversarial-one-censorship-operator": ("adversarial", {"second_operator": None}),
    # quiet pools with no metadata beside every look-alike (org ids kept / dropped)
    "J-quiet-bare-lookalikes": ("adv-quiet", {"metadata": "minimal", "hard_negatives": list(ALL_HARD_NEGATIVES)}),
    "K-quiet-bare-lookalikes-noorg": ("adv-quiet", {"metadata": "minimal", "hard_negatives": list(ALL_HARD_NEGATIVES),
                                                    "enterprise_org_id": False}),
    # the same with paraphrased wrappers: the smallest pools' hardest case
    "L-quiet-bare-fragments-lookalikes-noorg": ("adv-quiet", {"metadata": "minimal",
                                                              "hard_negatives": list(ALL_HARD_NEGATIVES),
                                                              "enterprise_org_id": False,
                                                              "wrapper_style": "fragments"}),
    # bigger eval harnesses with no org ids: 8 accounts x 10 checkpoints; 12 accounts x 300 questions, half bare
    "M-harness-8x10-noorg": ("adv-lookalikes-noorg", {"cot_eval_accounts": 8, "cot_eval_checkpoints": 10}),
    "N-harness-12x300-mixed-noorg": ("adv-lookalikes-noorg", {"metadata": "mixed", "cot_eval_accounts": 12,
                                                              "cot_eval_questions": 300}),
    # a 60-seat enterprise with no metadata; a 10-seat one in Chinese with no org ids; a 200-student classroom
    "O-enterprise-60-bare": ("adv-lookalikes", {"metadata": "minimal", "enterprise_seats": 60}),
    "P-enterprise-10-noorg-zh": ("adv-lookalikes-noorg", {"enterprise_seats": 10, "enterprise_language": "zh"}),
    "Q-classroom-200-bare": ("adv-lookalikes", {"metadata": "minimal", "classroom_students": 200,
                                                "classroom_problems": 30}),
    # typo'd paraphrased wrappers with half the instructions in the system message
    "R-noise-fragments-system": ("quick", {"wrapper_noise": 0.3, "wrapper_style": "fragments",
                                           "system_intent_share": 0.5}),
    # operators that sample each prompt once (no best-of-n): nothing re-sent ties a pool together or tells two
    # operators on one task kind apart; with no metadata and diurnal hours, only content and hours are left
    "S-paraphrase-diurnal-bare-no-samples": ("adv-paraphrase", {"campaign_timing": "diurnal", "metadata": "minimal",
                                                                "samples_per_task": 1}),
    "T-adversarial-no-samples": ("adversarial", {"samples_per_task": 1}),
    "U-tiny-bare-diurnal-no-samples": ("adv-tiny", {"metadata": "minimal", "campaign_timing": "diurnal",
                                                    "samples_per_task": 1}),
    # tiny pools on an ordinary daily curve (two operators on one task kind, each on its exit countries' day):
    # with metadata, without, and with metadata but nothing re-sent (only pooled hours tell the two apart)
    "V-tiny-diurnal": ("adv-tiny", {"campaign_timing": "diurnal"}),
    "W-tiny-diurnal-bare": ("adv-tiny", {"campaign_timing": "diurnal", "metadata": "minimal"}),
    "X-tiny-diurnal-no-samples": ("adv-tiny", {"campaign_timing": "diurnal", "samples_per_task": 1}),
}


def summary(name: str, row: dict) -> str:
    missed = sorted(k for k, v in (row.get("found") or {}).items() if not v)
    return (f"{name:40s} seed {row['seed']}  recall {row['campaign_recall']:.2f}  false flags "
            f"{row['false_flagged_campaigns']} {','.join(row['hard_negatives_flagged']) or '-':18s} AUC "
            f"{row['account_auc']:.3f}  {row.get('lowest_true_score')} / {row.get('highest_benign_score')}"
            + (f"  missed {','.join(missed)}" if missed else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--tier", default="fast", choices=["fast", "accurate"])
    ap.add_argument("--only", nargs="+", default=None, help="mix names (default: all)")
    ap.add_argument("--config", default=None, help="a TOML configuration over the defaults")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    names = args.only or list(MIXES)
    unknown = sorted(set(names) - set(MIXES))
    if unknown:
        ap.error(f"unknown mix(es) {unknown}; choose from {list(MIXES)}")
    out = []
    for name in names:
        preset, knobs = MIXES[name]
        rows = run_bench(preset, args.seeds, systems=["analyzer"], tier=args.tier, knobs=knobs,
                         config_file=args.config, log=lambda _msg: None)
        for row in rows:
            print(summary(name, row), flush=True)
        out.append({"name": name, "preset": preset, "knobs": knobs, "rows": rows})
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"what": f"held-out-like mixes of the adversarial knobs, {args.tier} tier, seeds {args.seeds}"
                               + (f", configuration {args.config}" if args.config else ""),
                       "variations": out}, f, indent=1)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
