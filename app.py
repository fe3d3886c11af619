"""Streamlit entry point: ``streamlit run app.py -- --workspace DIR [--require-login]``.

``analyzer app DIR`` runs this bound to 127.0.0.1. The workspace can also come from ``ANALYZER_WORKSPACE``
and the login gate from ``ANALYZER_REQUIRE_LOGIN=1``. Everything else lives in :mod:`analyzer.app`.
"""

from __future__ import annotations

import os
import sys

import streamlit as st

from analyzer.app import auth, pages, parse_args


def main() -> None:
    """Configure the page, apply the login gate, then render the app for the chosen workspace."""
    st.set_page_config(page_title="analyzer: distillation campaigns", layout="wide")
    args = parse_args(sys.argv)
    if not auth.gate(auth.login_required(args.require_login)):
        st.stop()
    pages.run_app(args.workspace or os.environ.get("ANALYZER_WORKSPACE"))


main()
