"""The Streamlit app: data access (:mod:`analyzer.app.data`), pages (:mod:`analyzer.app.pages`) and the
optional login gate (:mod:`analyzer.app.auth`). ``app.py`` at the repository root is the entry point.
"""

from __future__ import annotations

import argparse


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the app's own arguments: those after ``--`` if present, else ``argv[1:]``; others are ignored.

    ``streamlit run app.py -- --workspace DIR`` passes ``["app.py", "--workspace", "DIR"]``; under a test
    runner ``sys.argv`` belongs to the runner, so unknown options are ignored rather than fatal.
    """
    args = argv[argv.index("--") + 1 :] if "--" in argv else argv[1:]
    parser = argparse.ArgumentParser(prog="app.py", allow_abbrev=False, add_help=False)
    parser.add_argument("--workspace", default=None, help="Workspace folder written by `analyzer run`.")
    parser.add_argument("--require-login", action="store_true", help="Refuse to show data without OIDC login.")
    known, _ = parser.parse_known_args(args)
    return known
