"""Time each app page's server-side render on a workspace (Streamlit AppTest), first load and cached.

    python benchmarks/app_paint.py WORKSPACE [--repeat 3]

Prints, per page, the first render after the app's first load and the median of the repeats (cached queries).
This measures the script run that produces the page, which is what delays the first paint; the browser's
own drawing adds a fraction of a second (see tests/test_app_browser.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = ["Overview", "Campaigns", "Campaign", "Account", "Map", "Search", "Triage", "Export"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workspace")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ["ANALYZER_WORKSPACE"] = os.path.abspath(args.workspace)
    at = AppTest.from_file(APP, default_timeout=600)
    t0 = time.perf_counter()
    at.run()
    print(f"first load (imports, Overview): {time.perf_counter() - t0:.2f} s")
    print(f"{'page':<10} {'first':>8} {'cached median':>14}")
    for page in PAGES:
        times = []
        for _ in range(1 + args.repeat):
            t = time.perf_counter()
            at.sidebar.radio(key="page").set_value(page).run()
            times.append(time.perf_counter() - t)
            if at.exception:
                raise SystemExit(f"{page}: {at.exception[0].message}")
        print(f"{page:<10} {times[0]:>7.2f}s {statistics.median(times[1:]):>13.2f}s")


if __name__ == "__main__":
    main()
