"""Optional login gate for a shared deployment (Streamlit's built-in OIDC: ``st.login`` / ``st.user``), and
who a triage decision is recorded under.

Enabled by ``ANALYZER_REQUIRE_LOGIN=1`` or ``app.py -- --require-login``. OIDC is configured in
``.streamlit/secrets.toml`` (``[auth]`` with ``redirect_uri``, ``cookie_secret``, ``client_id``,
``client_secret`` and ``server_metadata_url``). Without a signed-in user the app shows a refusal and stops
before any workspace data is read.

Analyst identity (:func:`analyst_identity`): a signed-in user's decisions are recorded under the identity
provider's e-mail (or subject), whatever is typed and whoever runs the server. Login is *on* when it is
required or when OIDC is configured at all (an ``[auth]`` section): then nobody signed in records a decision,
neither under a typed name nor under the server's ``$USER`` (the service account of a shared deployment,
not a person). Only without any login configured is nothing verified, and the recorded name says so:
``local:<name the analyst typed>``, else ``local:<$USER of the app process>`` (the person running
``analyzer app`` on their own machine).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import streamlit as st

from analyzer.export import sanitize

REFUSAL = "This analyzer deployment requires sign-in. No data is shown until you log in."
LOCAL_PREFIX = "local:"
_REQUIRED_KEY = "_analyzer_login_required"


class AnalystUnknown(RuntimeError):
    """Login is required but no signed-in identity is available: a decision cannot be attributed."""


def analyst_identity(user: Mapping[str, Any] | None, login_required: bool, typed: str = "",
                     local_user: str | None = None, login_configured: bool = False) -> str:
    """The name a triage decision is recorded under (pure: the app passes ``st.user``, whether login is
    required, whether OIDC is configured, and ``$USER``).

    * ``user["is_logged_in"]`` true (OIDC): the ``email`` claim, unless ``email_verified`` is false, else the
      subject as ``sub:<sub>``. ``typed`` and ``local_user`` are ignored: a signed-in analyst cannot record
      a decision under another name, and the server's account is never used.
    * Login on (``login_required``, or ``login_configured``: OIDC is set up even if viewing is open) and
      nobody signed in: :class:`AnalystUnknown`. A client-supplied name is never trusted while login is on.
    * No login at all: ``local:<typed>`` when a name was typed, else ``local:<local_user>``, else
      ``local:unknown``. An ``email`` without ``is_logged_in`` (Streamlit's local placeholder user) is not an
      identity.
    """
    user = user or {}
    if user.get("is_logged_in") is True:
        email = str(user.get("email") or "").strip()
        if email and user.get("email_verified") is not False:
            return email
        sub = str(user.get("sub") or "").strip()
        if sub:
            return f"sub:{sub}"
        raise AnalystUnknown("signed in, but the identity provider gave neither an e-mail nor a subject")
    if login_required:
        raise AnalystUnknown("this deployment requires sign-in; log in to record a decision")
    if login_configured:
        raise AnalystUnknown("this deployment has sign-in configured; log in to record a decision")
    name = typed.strip()
    if name.startswith(LOCAL_PREFIX):
        name = name[len(LOCAL_PREFIX):].strip()
    return LOCAL_PREFIX + (name or (local_user or "").strip() or "unknown")


def login_required(flag: bool = False) -> bool:
    """Whether the gate is on: the command-line flag, or ``ANALYZER_REQUIRE_LOGIN`` set to 1/true/yes."""
    return flag or os.environ.get("ANALYZER_REQUIRE_LOGIN", "").strip().lower() in ("1", "true", "yes")


def login_was_required() -> bool:
    """Whether :func:`gate` ran with login required in this session (else the environment decides)."""
    return bool(st.session_state.get(_REQUIRED_KEY, login_required()))


def current_user() -> dict[str, Any]:
    """The claims of ``st.user`` (``st.experimental_user`` on older Streamlit) as a dict; ``{}`` if none."""
    proxy = getattr(st, "user", None) or getattr(st, "experimental_user", None)
    try:
        return dict(proxy.to_dict()) if proxy is not None else {}
    except Exception:  # no script context, or auth not configured
        return {}


def auth_configured() -> bool:
    """Whether OIDC login is configured (an ``[auth]`` section in ``.streamlit/secrets.toml``)."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def _logged_in() -> bool:
    return current_user().get("is_logged_in") is True


def gate(required: bool) -> bool:
    """Return True when the page may show data; otherwise render the refusal (and a login button)."""
    st.session_state[_REQUIRED_KEY] = required
    if _logged_in():
        user = current_user()
        name = user.get("name") or user.get("email") or "signed in"
        st.sidebar.text(f"User: {sanitize(str(name), ident=True)}")
        st.sidebar.button("Log out", on_click=st.logout)
        return True
    if not required:
        if auth_configured():  # viewing is open, but only a signed-in analyst records triage decisions
            st.sidebar.button("Log in to triage", on_click=st.login)
        return True
    st.error(REFUSAL)
    if auth_configured():
        st.button("Log in", on_click=st.login, type="primary")
    else:
        st.warning("Login is required but no [auth] section is configured in .streamlit/secrets.toml; "
                   "ask the administrator to configure OIDC.")
    return False
