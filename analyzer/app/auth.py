"""Optional login gate for a shared deployment (Streamlit's built-in OIDC: ``st.login`` / ``st.user``).

Enabled by ``ANALYZER_REQUIRE_LOGIN=1`` or ``app.py -- --require-login``. OIDC is configured in
``.streamlit/secrets.toml`` (``[auth]`` with ``redirect_uri``, ``cookie_secret``, ``client_id``,
``client_secret`` and ``server_metadata_url``). Without a signed-in user the app shows a refusal and stops
before any workspace data is read.
"""

from __future__ import annotations

import os

import streamlit as st

REFUSAL = "This analyzer deployment requires sign-in. No data is shown until you log in."


def login_required(flag: bool = False) -> bool:
    """Whether the gate is on: the command-line flag, or ``ANALYZER_REQUIRE_LOGIN`` set to 1/true/yes."""
    return flag or os.environ.get("ANALYZER_REQUIRE_LOGIN", "").strip().lower() in ("1", "true", "yes")


def _auth_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def _logged_in() -> bool:
    try:
        return bool(st.user.is_logged_in)
    except Exception:  # auth not configured: nobody can be logged in
        return False


def gate(required: bool) -> bool:
    """Return True when the page may show data; otherwise render the refusal (and a login button)."""
    if not required:
        return True
    if _logged_in():
        name = getattr(st.user, "name", None) or getattr(st.user, "email", None) or "signed in"
        st.sidebar.text(f"User: {name}")
        st.sidebar.button("Log out", on_click=st.logout)
        return True
    st.error(REFUSAL)
    if _auth_configured():
        st.button("Log in", on_click=st.login, type="primary")
    else:
        st.warning("Login is required but no [auth] section is configured in .streamlit/secrets.toml; "
                   "ask the administrator to configure OIDC.")
    return False
