"""Build the shipped sample scenario: ``data/sample/requests.jsonl.gz`` + ``data/sample/truth.json``.

Uses the "sample" preset (permissive-licence sources only) with seed 0. Needs the shared corpora
(``$ANALYZER_SHARED_DATA`` or ``<repo>/../shared/data``). Run from anywhere::

    python data/make_sample.py
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from analyzer.bench.scenario import build_scenario, write_scenario  # noqa: E402


def main() -> int:
    """Build and write the sample; print its size."""
    scenario = build_scenario("sample", seed=0)
    log_path, truth_path = write_scenario(scenario, HERE / "sample", log_name="requests.jsonl.gz")
    t = scenario.truth
    size = log_path.stat().st_size
    print(f"{log_path}: {t['n_requests']} requests, {t['n_unique_prompts']} unique prompts, "
          f"{t['n_accounts']} accounts, {size / 1e6:.2f} MB")
    print(f"{truth_path}: campaigns {sorted(t['campaigns'])}, hard negatives {sorted(t['hard_negatives'])}")
    print(f"sources: {', '.join(t['sources'])}")
    if size >= 1_000_000:
        print("warning: sample log is over 1 MB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
