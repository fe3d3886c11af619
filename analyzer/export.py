"""Exports: the contract other tools rely on (JSON schema version 1), an account CSV and a Markdown report.

Text from the logs (prompts, account ids, user agents, labels) is attacker-controlled. Every export keeps it
inert and visible: :func:`sanitize` is the one function that writes control, bidi and other invisible
characters as visible escapes such as ``\\u202e`` (identifiers by an exactly reversible rule), CSV cells
cannot start a formula, Markdown puts prompts in fenced code blocks (longer fences than any backtick run
inside) and ids in code spans, and escapes other text only where a renderer would misread it. The JSON
export is for machines: its identifiers are exact and its bytes pure ASCII (:func:`to_json`). An optional
redaction removes emails, phone numbers, card numbers and API-key-like strings.
Exports only read the workspace (opened read-only: no lock, no DDL, no DML).
"""

from __future__ import annotations

import csv
import io
import json
import re
import string
from collections.abc import Iterable
from datetime import UTC, datetime

import pandas as pd

from analyzer import store
from analyzer.workspace import Workspace

SCHEMA_VERSION = 1

# Characters that can change how text is displayed without being seen: Unicode categories Cc (C0 and C1
# controls, DEL, ESC of terminal escape sequences), Cf (format: bidi overrides and isolates U+202A-U+202E,
# U+2066-U+2069, marks U+200E/U+200F/U+061C, zero-width characters, soft hyphen, tag characters used for
# "ASCII smuggling"), Zl/Zp (U+2028/U+2029) and lone surrogates (Cs). Table of Unicode 14 (Python 3.11);
# tests/test_export.py checks it against ``unicodedata``.
_UNSAFE_RANGES = (
    "\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
# Prose keeps tab, newline and the zero-width (non-)joiners that emoji and Persian / Indic scripts need.
_PROSE_KEEP = "\t\n\u200c\u200d"
_UNSAFE_IDENT = re.compile(f"[{_UNSAFE_RANGES}]|\\\\(?=[uU])")
_UNSAFE_PROSE = re.compile(f"(?![{_PROSE_KEEP}])[{_UNSAFE_RANGES}]")
_ESCAPED = re.compile(r"\\u([0-9a-f]{4})|\\U([0-9a-f]{8})")


def _escape_char(m: re.Match) -> str:
    cp = ord(m.group(0))
    return f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"


def sanitize(text: str, ident: bool = False) -> str:
    """Text made safe for a terminal, a spreadsheet, Markdown or a browser: the one sanitiser of every output.

    Nothing is dropped: each invisible or display-changing character (controls such as ESC, C1 controls
    U+0080-U+009F, bidi overrides and isolates, zero-width and other format characters, line/paragraph
    separators) becomes a visible escape, ``\\u202e`` (4 lower-case hex digits) or ``\\U000e0041`` (8 for
    characters beyond U+FFFF). A terminal escape sequence ``ESC [31m`` shows as ``\\u001b[31m``.

    ``ident=False`` (prose: prompts, labels, evidence, notes) keeps tab, newline and U+200C/U+200D, and turns
    CRLF into LF (a lone CR is escaped, so no text can overwrite a line on a terminal).

    ``ident=True`` (identifiers: account, campaign, org and key ids, user agents, analysts) escapes tab and
    newline too, and writes a backslash that precedes ``u`` or ``U`` as ``\\u005c``. The rule is then exactly
    reversible (:func:`unescape_ident`), so distinct ids stay distinct and an exported id can be matched
    against the raw logs. Ids without such characters or ``\\u`` are unchanged.
    """
    if ident:
        return _UNSAFE_IDENT.sub(_escape_char, text)
    return _UNSAFE_PROSE.sub(_escape_char, text.replace("\r\n", "\n"))


def unescape_ident(text: str) -> str:
    """The raw identifier behind ``sanitize(raw, ident=True)``: every ``\\uXXXX`` / ``\\UXXXXXXXX`` becomes
    its character (``unescape_ident(sanitize(x, ident=True)) == x`` for every string ``x``)."""
    return _ESCAPED.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)), text)


def strip_terminal(text: str) -> str:
    """Historical name of ``sanitize(text)`` (prose): control and bidi characters are escaped visibly, no
    longer removed."""
    return sanitize(text)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(m: re.Match) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    return "[CARD]" if 13 <= len(digits) <= 19 and _luhn_ok(digits) else m.group(0)


def _phone(m: re.Match) -> str:
    n = sum(c.isdigit() for c in m.group(0))
    return "[PHONE]" if 8 <= n <= 15 else m.group(0)


def _token(m: re.Match) -> str:
    t = m.group(0)
    # a random-looking token mixes lower case, upper case and digits (base64) or is a long hex run
    is_hex = re.fullmatch(r"[0-9a-fA-F]{40,}", t) is not None
    mixed = any(c.islower() for c in t) and any(c.isupper() for c in t) and any(c.isdigit() for c in t)
    return "[TOKEN]" if is_hex or mixed else t


# Order matters: keys and tokens before cards and phones (a key may contain digit runs).
_REDACTIONS: list[tuple[re.Pattern, object]] = [
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), "[EMAIL]"),
    (re.compile(
        r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}"          # OpenAI / Anthropic / Stripe style (sk-..., sk-proj-...)
        r"|\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{10,}"  # Stripe
        r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"               # AWS access key ids
        r"|\bgh[pousr]_[A-Za-z0-9]{30,}"                # GitHub tokens
        r"|\bgithub_pat_[A-Za-z0-9_]{22,}"
        r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"              # Slack
        r"|\bAIza[0-9A-Za-z_-]{35}"                     # Google API keys
        r"|\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"  # JWT
    ), "[API_KEY]"),
    (re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{32,}={0,2}(?![A-Za-z0-9+/=_-])"), _token),
    (re.compile(r"(?<![\w.,])\d(?:[ -]?\d){12,18}(?!\w|[.,]\d)"), _card),
    (re.compile(
        r"(?<![\w+])\+\d{1,3}+[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}+(?:[ .-]?\d{2,4}){1,4}+(?![\w+])"  # +CC ...
        r"|(?<![\w(])\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}(?!\w)"     # (555) 123-4567
        r"|(?<![\w.-])\d{3}[.-]\d{3}[.-]\d{4}(?![\w.-])"       # 555-123-4567, 555.123.4567
        r"|(?<![\w.-])0\d{1,4}[ ]\d{3,4}[ ]\d{3,4}(?![\w.-])"  # 020 7946 0958
    ), _phone),
]


def redact(text: str) -> str:
    """Replace emails, API keys and key-like tokens, card numbers (Luhn-valid, 13-19 digits) and phone
    numbers with ``[EMAIL]``, ``[API_KEY]``, ``[TOKEN]``, ``[CARD]`` and ``[PHONE]``.

    Ordinary numbers (years, amounts, ``12 + 30 = 42``, ids such as ``req_000123``) are kept.
    Idempotent: ``redact(redact(t)) == redact(t)``.
    """
    for pattern, repl in _REDACTIONS:
        text = pattern.sub(repl, text)  # type: ignore[arg-type]
    return text


# --- Markdown ---------------------------------------------------------------------------------------------------
_URL_SCHEME = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{1,20}):(?=//)")
_WWW = re.compile(r"(?i)\bwww\.")
_EMAIL_AT = re.compile(r"(?<=[\w.+-])@(?=[\w-]+\.[\w-])")
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_ASCII_PUNCT = frozenset(string.punctuation)
_MD_ALWAYS = frozenset("`*[~")  # code spans, emphasis, links / images / footnotes, strikethrough
# Block markers that only mean something at the start of a line (the start of a list item or paragraph):
# ATX headings, block quotes, bullet lists, thematic breaks and ordered lists ("1." / "1)").
_MD_LEADING = re.compile(r"(?:#{1,6}|>|[-+](?=[-+\s]|$)|(?P<num>\d{1,9})[.)](?=\s|$))")


def _md_escape(text: str, table: bool) -> str:
    out = []
    n = len(text)
    for i, ch in enumerate(text):
        if ch in _MD_ALWAYS or (table and ch == "|"):
            out.append("\\" + ch)
        elif ch == "<":  # raw HTML and <autolinks>
            out.append("&lt;")
        elif ch == "&" and _ENTITY.match(text, i):  # "&lt;" shows as typed, not as "<"
            out.append("&amp;")
        elif ch == "\\" and (i + 1 == n or text[i + 1] in _ASCII_PUNCT):  # would escape what follows
            out.append("\\\\")
        elif ch == "_" and not (0 < i < n - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()):
            out.append("\\_")  # snake_case stays as is; _emphasis_ does not form
        else:
            out.append(ch)
    escaped = "".join(out)
    lead = _MD_LEADING.match(escaped)
    if lead:
        cut = lead.end("num") if lead.group("num") else 0
        escaped = escaped[:cut] + "\\" + escaped[cut:]
    return escaped


def md_inline(text: str, limit: int = 300, table: bool = False) -> str:
    """Text for inline Markdown that reads naturally as plain text and renders as the same text.

    Only what a renderer would misread is escaped: backticks, ``*``, ``[`` and ``~`` (code, emphasis, links,
    images, strikethrough), ``_`` outside words, ``<`` (as ``&lt;``: no HTML or autolinks), ``&`` that starts
    an entity, a backslash before punctuation, a leading ``#``, ``>``, ``-``, ``+`` or ``1.`` (headings,
    quotes, lists) and, with ``table``, ``|``. Parentheses, quotes, apostrophes, periods and ``!`` stay as
    they are. URLs are defanged (``http://x`` shows as ``http[:]//x``, ``www.`` as ``www[.]``) so that no
    renderer (GitHub's autolinks included) turns them into links; so are e-mail addresses (``a@b.example`` shows
    as ``a[@]b.example``: no ``mailto:`` link). Newlines and tabs become spaces; control and bidi characters are
    escaped visibly (:func:`sanitize`).
    """
    if len(text) > limit:
        text = text[:limit] + "…"
    text = sanitize(text).replace("\n", " ").replace("\t", " ").strip()
    text = _md_escape(text, table)
    text = _URL_SCHEME.sub(r"\1[:]", text)
    text = _EMAIL_AT.sub("[@]", text)
    return _WWW.sub("www[.]", text)


def md_code(text: str, limit: int = 200, table: bool = False) -> str:
    """An inline code span showing ``text`` verbatim, in a fence longer than any backtick run inside.

    Meant for identifiers already escaped by ``sanitize(text, ident=True)`` (as :func:`load_campaigns`
    returns them): sanitising again (the idempotent prose rule) escapes anything left, and a newline or tab
    shows as ``\\u000a`` / ``\\u0009``. With ``table``, ``|`` is escaped as GFM tables require.
    """
    if len(text) > limit:
        text = text[:limit] + "…"
    text = sanitize(text).replace("\n", "\\u000a").replace("\t", "\\u0009")
    if table:
        text = text.replace("|", "\\|")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_block(text: str, limit: int = 2000) -> str:
    """A fenced code block that shows ``text`` verbatim and inert (control characters escaped visibly)."""
    if len(text) > limit:
        text = text[:limit] + "\n… (truncated)"
    text = sanitize(text)
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_cell(value: object, ident: bool = False) -> str:
    """A text cell for CSV: :func:`sanitize` (``ident`` for identifiers), and a leading ``= + - @`` (or tab /
    CR) prefixed with ``'`` so that spreadsheets do not evaluate it as a formula (CSV injection)."""
    text = sanitize(str(value), ident=ident)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _iso(value) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return None
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.tz_convert("UTC").isoformat().replace("+00:00", "Z")


# --- reading the workspace (read-only: no DDL, no DML) ------------------------------------------------------------
def _tables(ws: Workspace) -> set[str]:
    """Tables present in the workspace: an old or partly written workspace may lack some, and exports read
    it read-only, so they cannot create them."""
    return store.table_names(ws)


def _triage_latest(ws: Workspace, tables: set[str]) -> pd.DataFrame:
    if "triage" not in tables:
        return pd.DataFrame(columns=["campaign_id", "status", "note", "analyst", "decided_at"])
    return ws.triage_latest()


def _ingest_totals(ws: Workspace, tables: set[str]) -> dict[str, int]:
    if "ingest_log" not in tables:
        return {"read": 0, "accepted": 0, "rejected": 0, "duplicates": 0}
    return ws.ingest_totals()


def _campaign_history(ws: Workspace, tables: set[str]) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """Each campaign's ``history`` entries (oldest run first) and its ``campaign_identity`` row, by id."""
    history: dict[str, list[dict]] = {}
    identity: dict[str, dict] = {}
    if "campaign_history" in tables:
        rows = store.current_campaign_history(ws)
        for r in rows.itertuples(index=False):
            history.setdefault(r.campaign_id, []).append({
                "run": int(r.run_id), "transition": str(r.transition),
                "parents": [sanitize(str(p), ident=True) for p in r.parent_ids or []],
                "score": float(r.score), "flagged": bool(r.flagged), "n_accounts": int(r.n_accounts),
                "n_requests": int(r.n_requests),
            })
    if "campaign_identity" in tables:
        for r in store.current_campaign_identity(ws).itertuples(index=False):
            identity[r.campaign_id] = r._asdict()
    return history, identity


def _run_or_none(value) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def load_campaigns(ws: Workspace, redact_examples: bool = False) -> list[dict]:
    """Campaigns of the latest analysis as plain dicts (schema of the JSON export), best first.

    Every text goes through :func:`sanitize`: identifiers (``id``, ``accounts``, ``kind``, ``triage.analyst``)
    with ``ident=True``, prose (label, keywords, template, evidence, examples, triage note) without; with
    ``redact_examples`` the prose is also passed through :func:`redact`. This is the form for people (terminal,
    Markdown, app); machine outputs (:func:`to_json`, :mod:`analyzer.api`) restore exact ids with
    :func:`exact_ids`. Only reads: a workspace without result tables yields no campaigns.
    """
    tables = _tables(ws)
    if "campaigns" not in tables:
        return []
    camps = store.campaigns(ws)
    by_campaign: dict[str, list[str]] = {}
    if "campaign_accounts" in tables:
        accounts = store.campaign_members(ws)
        by_campaign = accounts.groupby("campaign_id")["account_id"].agg(list).to_dict()
    triage = _triage_latest(ws, tables).set_index("campaign_id")
    history, identity = _campaign_history(ws, tables)

    def text(v: str) -> str:
        return redact(sanitize(v)) if redact_examples else sanitize(v)

    def ident(v: object) -> str | None:
        return None if v is None or (isinstance(v, float) and pd.isna(v)) else sanitize(str(v), ident=True)

    out = []
    for r in camps.itertuples(index=False):
        t = triage.loc[r.campaign_id] if r.campaign_id in triage.index else None
        kind = getattr(r, "kind", None)  # not in workspaces written before kinds existed
        since = identity.get(r.campaign_id, {})
        first_seen = min((t for t in (r.first_seen, since.get("first_seen")) if t is not None and not pd.isna(t)),
                         default=None)
        last_seen = max((t for t in (r.last_seen, since.get("last_seen")) if t is not None and not pd.isna(t)),
                        default=None)
        out.append({
            "id": ident(r.campaign_id),
            "rank": int(r.rank),
            "score": float(r.score),
            "flagged": bool(r.flagged),
            "label": text(r.label or ""),
            "kind": ident(kind) if isinstance(kind, str) and kind else None,
            "keywords": [text(k) for k in r.keywords or []],
            "template": text(r.template or ""),
            "n_accounts": int(r.n_accounts),
            "n_requests": int(r.n_requests),
            "first_seen": _iso(first_seen),
            "last_seen": _iso(last_seen),
            "first_flagged": _iso(since.get("first_flagged_at")),
            "first_flagged_run": _run_or_none(since.get("first_flagged_run_id")),
            "first_run": _run_or_none(since.get("first_run_id")),
            "history": history.get(r.campaign_id, []),
            "accounts": [ident(a) for a in by_campaign.get(r.campaign_id, [])],
            "clusters": [int(c) for c in r.clusters or []],
            "signals": dict(r.signals or {}),
            "evidence": [text(e) for e in r.evidence or []],
            "examples": [text(e) for e in r.examples or []],
            "triage": None if t is None else {
                "status": sanitize(str(t["status"])), "note": sanitize(t["note"] if isinstance(t["note"], str) else ""),
                "analyst": ident(t["analyst"]), "at": _iso(t["decided_at"]),
            },
        })
    return out


def exact_ids(campaign: dict) -> dict:
    """A campaign of :func:`load_campaigns` with its identifiers exact again (the raw values in the workspace):
    ``id``, ``accounts``, ``history[].parents`` and ``triage.analyst`` through :func:`unescape_ident`.

    For machine-readable outputs (the JSON export, :mod:`analyzer.api`), whose readers match ids against
    ground truth or raw logs; their bytes are kept safe by the encoding (``ensure_ascii``), not by changing
    values. Prose fields stay escaped by :func:`sanitize`.
    """
    out = dict(campaign, id=unescape_ident(campaign["id"]),
               accounts=[unescape_ident(a) for a in campaign["accounts"]],
               history=[dict(h, parents=[unescape_ident(p) for p in h["parents"]]) for h in campaign["history"]])
    if out["triage"] is not None and out["triage"]["analyst"] is not None:
        out["triage"] = dict(out["triage"], analyst=unescape_ident(out["triage"]["analyst"]))
    return out


def to_json(ws: Workspace, redact_examples: bool = False) -> str:
    """The JSON export, ``schema_version`` 1: the contract other tools read.

    Top level: ``schema_version``, ``generated_at`` (ISO 8601 UTC), ``workspace`` (path), ``ingest`` (counts
    ``read``, ``accepted``, ``rejected``, ``duplicates``) and ``campaigns``, best first, each with ``id``,
    ``rank``, ``score``, ``flagged``, ``label``, ``kind``, ``keywords``, ``template``, ``n_accounts``,
    ``n_requests``, ``first_seen``, ``last_seen``, ``first_flagged``, ``first_flagged_run``, ``first_run``,
    ``history``, ``accounts`` (member account ids, most requests first), ``clusters``, ``signals``,
    ``evidence``, ``examples`` and ``triage`` (``status``, ``note``, ``analyst``, ``at``, or null).

    A campaign keeps its ``id`` across runs into one workspace while it continues (:mod:`analyzer.history`).
    ``first_seen`` / ``last_seen``: its earliest and latest request (data time) over every run that found it;
    ``first_flagged``: its latest request time in the first run that flagged it (null if never flagged), that
    run's id in ``first_flagged_run``; ``first_run``: the run that first found it. ``history``: one entry per
    run that recorded it, oldest first: ``run``, ``transition`` (``new``, ``continued``, ``grown``,
    ``shrunk``, ``split``, ``merged``), ``parents`` (split: the campaign it came from; merged: the campaigns
    it absorbed), ``score``, ``flagged``, ``n_accounts``, ``n_requests``.

    Text escaping. The document is ASCII (``ensure_ascii``): every non-ASCII character is a JSON ``\\uXXXX``
    escape, so the bytes hold no control, bidi or other invisible character whatever the logs held, and a
    JSON parser gives back the exact values. Identifiers (``id``, ``accounts``, ``history[].parents``,
    ``workspace``, ``triage.analyst``) are exact: the account and campaign ids of the workspace, to match
    against raw logs or ground truth as they are (:func:`exact_ids`); escape them before showing them to a
    person (:func:`sanitize` with ``ident=True``). Prose fields (label, keywords, template, evidence, examples,
    triage note) are already escaped for display by :func:`sanitize`: each control, bidi or invisible format
    character is the visible text ``\\u202e``; tabs and newlines are kept (CRLF becomes LF).
    """
    doc = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "workspace": ws.path,
        "ingest": _ingest_totals(ws, _tables(ws)),
        "campaigns": [exact_ids(c) for c in load_campaigns(ws, redact_examples)],
    }
    return ascii_json(doc)


def ascii_json(doc: object) -> str:
    """``doc`` as indented JSON in pure printable ASCII: non-ASCII characters and controls (DEL included, which
    ``ensure_ascii`` leaves raw) are ``\\uXXXX`` escapes, so parsing gives back exactly ``doc``."""
    return json.dumps(doc, ensure_ascii=True, indent=2).replace("\x7f", "\\u007f")


CSV_COLUMNS = ["account_id", "score", "campaign_id", "flagged", "n_requests", "share_in_campaign",
               "campaign_score", "campaign_label", "campaign_transition", "campaign_first_flagged"]


def to_csv(ws: Workspace) -> str:
    """One row per account in the workspace, highest score first.

    Text cells go through :func:`csv_cell` (ids with the reversible identifier escaping of :func:`to_json`,
    no spreadsheet formulas).
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    tables = _tables(ws)
    if not {"accounts", "campaigns", "campaign_accounts"} <= tables:
        return buf.getvalue()
    rows = store.account_rows(ws)
    for r in rows.itertuples(index=False):
        w.writerow([
            csv_cell(r.account_id, ident=True), f"{float(r.score):.4f}",
            csv_cell(r.campaign_id, ident=True) if isinstance(r.campaign_id, str) else "",
            "true" if bool(r.flagged) else "false", int(r.n_requests),
            "" if pd.isna(r.share_in_campaign) else f"{float(r.share_in_campaign):.4f}",
            "" if pd.isna(r.campaign_score) else f"{float(r.campaign_score):.4f}",
            csv_cell(r.campaign_label) if isinstance(r.campaign_label, str) else "",
            r.campaign_transition if isinstance(r.campaign_transition, str) else "",
            _iso(r.campaign_first_flagged) or "",
        ])
    return buf.getvalue()


def _when(iso: str | None) -> str:
    """``2026-01-05T10:30:00Z`` as ``2026-01-05 10:30`` (the report says times are UTC)."""
    return "-" if not iso else iso[:16].replace("T", " ")


def to_markdown(ws: Workspace, redact_examples: bool = False, campaigns: Iterable[dict] | None = None) -> str:
    """A report of the flagged campaigns that reads well both rendered and as plain text.

    Prompts and templates are fenced code blocks; ids are code spans; other text is escaped only where a
    renderer would misread it (:func:`md_inline`), with URLs defanged. ``campaigns`` are dicts of
    :func:`load_campaigns` (already sanitised).
    """
    camps = list(campaigns) if campaigns is not None else load_campaigns(ws, redact_examples)
    flagged = [c for c in camps if c["flagged"]]
    totals = _ingest_totals(ws, _tables(ws))
    lines = [
        "# Campaign report",
        "",
        f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M')} UTC from "
        f"{md_code(sanitize(ws.path, ident=True), 500)}. Times are UTC.",
        "",
        f"Requests read {totals['read']:,}, accepted {totals['accepted']:,}, rejected {totals['rejected']:,}, "
        f"duplicates {totals['duplicates']:,}. Candidate campaigns {len(camps)}, **flagged {len(flagged)}**.",
        "",
    ]
    if flagged:
        lines += ["| # | campaign | score | accounts | requests | first seen | last seen | label |",
                  "|---|---|---|---|---|---|---|---|"]
        for c in flagged:
            lines.append(f"| {c['rank']} | {md_code(c['id'], table=True)} | {c['score']:.2f} | {c['n_accounts']} | "
                         f"{c['n_requests']:,} | {_when(c['first_seen'])} | {_when(c['last_seen'])} | "
                         f"{md_inline(c['label'], 80, table=True)} |")
        lines.append("")
    for c in flagged:
        lines += [f"## {c['rank']}. {md_inline(c['label'], 120)} ({md_code(c['id'])}, score {c['score']:.2f})", ""]
        if c.get("kind"):
            lines += [f"Looks like **{md_inline(c['kind'])}**.", ""]
        if c.get("history"):
            steps = [f"{h['transition']} (run {h['run']}"
                     + (f", from {', '.join(md_code(p) for p in h['parents'])}" if h["parents"] else "") + ")"
                     for h in c["history"][-6:]]
            more = len(c["history"]) - len(steps)
            lines += [f"History: {'… ' if more > 0 else ''}{' → '.join(steps)}; first flagged "
                      f"{_when(c.get('first_flagged'))}.", ""]
        if c.get("triage"):
            t = c["triage"]
            note = f": {md_inline(t['note'])}" if t.get("note") else ""
            lines += [f"Triage: **{md_inline(t['status'])}** by {md_code(t['analyst'] or 'unknown')}{note}", ""]
        lines += ["**Evidence**", ""] + [f"- {md_inline(e, 500)}" for e in c["evidence"]] + [""]
        lines += ["**Signals**", "", "| signal | value |", "|---|---|"]
        lines += [f"| {md_inline(str(k), 60, table=True)} | {'n/a' if v is None else f'{v:.2f}'} |"
                  for k, v in c["signals"].items()] + [""]
        if c["template"]:
            lines += ["**Template** (variable slots marked)", "", md_block(c["template"], 1000), ""]
        if c["keywords"]:
            lines += [f"**Keywords**: {md_inline(', '.join(c['keywords']))}", ""]
        if c["examples"]:
            lines += ["**Example prompts**", ""]
            for e in c["examples"][:3]:
                lines += [md_block(e, 800), ""]
        shown = c["accounts"][:20]
        more = len(c["accounts"]) - len(shown)
        lines += [f"**Accounts** ({c['n_accounts']}): " + ", ".join(md_code(a or "", 60) for a in shown)
                  + (f" and {more} more" if more > 0 else ""), ""]
    if not flagged:
        lines += ["No campaign was flagged.", ""]
    return "\n".join(lines)


def export(ws: Workspace, fmt: str, redact_examples: bool = False) -> str:
    """Render the workspace's latest analysis as ``json``, ``csv`` or ``markdown`` (reads only)."""
    if fmt == "json":
        return to_json(ws, redact_examples)
    if fmt == "csv":
        return to_csv(ws)
    if fmt in ("markdown", "md"):
        return to_markdown(ws, redact_examples)
    raise ValueError(f"unknown export format {fmt!r}: choose json, csv or markdown")
