"""Exports: the contract other tools rely on (JSON schema version 1), an account CSV and a Markdown report.

Prompt text is attacker-controlled. Every export keeps it inert: terminal escape sequences and control
characters are removed, Markdown puts prompts in fenced code blocks (longer fences than any backtick run
inside) and escapes inline text, and an optional redaction removes emails, phone numbers, card numbers and
API-key-like strings from example prompts.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime

import pandas as pd

from analyzer.workspace import Workspace

SCHEMA_VERSION = 1

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[PX^_][^\x1b]*(?:\x1b\\)?|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_BIDI = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")  # direction overrides ("trojan source")


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


def strip_terminal(text: str) -> str:
    """Remove ANSI escape sequences, control characters and bidi overrides (newlines and tabs are kept;
    carriage returns become newlines so that no text can overwrite another line on a terminal)."""
    text = _ANSI.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _BIDI.sub("", _CONTROL.sub("", text))


def redact(text: str) -> str:
    """Replace emails, API keys and key-like tokens, card numbers (Luhn-valid, 13-19 digits) and phone
    numbers with ``[EMAIL]``, ``[API_KEY]``, ``[TOKEN]``, ``[CARD]`` and ``[PHONE]``.

    Ordinary numbers (years, amounts, ``12 + 30 = 42``, ids such as ``req_000123``) are kept.
    Idempotent: ``redact(redact(t)) == redact(t)``.
    """
    for pattern, repl in _REDACTIONS:
        text = pattern.sub(repl, text)  # type: ignore[arg-type]
    return text


_MD_SPECIAL = re.compile(r"[\\`*_{}\[\]()#+\-.!|~:=\"'<>&]")
_MD_ENTITY = {"<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&#39;"}
_URL_SCHEME = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{1,20}):(?=//)")
_WWW = re.compile(r"(?i)\bwww\.")


def md_inline(text: str, limit: int = 300) -> str:
    """Escape text for inline Markdown: no HTML, links, autolinks, images or emphasis can survive.

    ``< > & " '`` become HTML entities, other Markdown punctuation is backslash-escaped, and URLs are
    defanged (``http://x`` shows as ``http[:]//x``, ``www.`` as ``www[.]``) so that no renderer (GitHub's
    autolinks included) turns them into links.
    """
    text = strip_terminal(text).replace("\n", " ").replace("\t", " ")
    if len(text) > limit:
        text = text[:limit] + "…"
    text = _URL_SCHEME.sub(r"\1[:]", text)
    text = _WWW.sub("www[.]", text)
    return _MD_SPECIAL.sub(lambda m: _MD_ENTITY.get(m.group(0)) or "\\" + m.group(0), text)


def md_code(text: str, limit: int = 200) -> str:
    """An inline code span showing ``text`` verbatim (a fence longer than any backtick run inside)."""
    text = strip_terminal(text).replace("\n", " ").replace("\t", " ")
    if len(text) > limit:
        text = text[:limit] + "…"
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_block(text: str, limit: int = 2000) -> str:
    """A fenced code block that shows ``text`` verbatim and inert."""
    text = strip_terminal(text)
    if len(text) > limit:
        text = text[:limit] + "\n… (truncated)"
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_cell(value) -> str:
    """A text cell for CSV: terminal escapes removed, and a leading ``= + - @`` (or tab / CR) prefixed with
    ``'`` so that spreadsheets do not evaluate it as a formula (CSV injection)."""
    text = strip_terminal(str(value))
    return "'" + text if text.startswith(_FORMULA_START) else text


def _iso(value) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return None
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.tz_convert("UTC").isoformat().replace("+00:00", "Z")


def load_campaigns(ws: Workspace, redact_examples: bool = False) -> list[dict]:
    """Campaigns of the latest analysis as plain dicts (schema of the JSON export), best first.

    Text fields have terminal escapes removed; with ``redact_examples`` the example prompts, template,
    label, keywords and evidence are also passed through :func:`redact`.
    """
    camps = ws.db.execute("SELECT * FROM campaigns ORDER BY rank").df()
    accounts = ws.db.execute(
        "SELECT campaign_id, account_id FROM campaign_accounts ORDER BY campaign_id, n_requests DESC, account_id"
    ).df()
    by_campaign = accounts.groupby("campaign_id")["account_id"].agg(list).to_dict()
    triage = ws.triage_latest().set_index("campaign_id")
    text = (lambda v: redact(strip_terminal(v))) if redact_examples else strip_terminal
    out = []
    for r in camps.itertuples(index=False):
        t = triage.loc[r.campaign_id] if r.campaign_id in triage.index else None
        out.append({
            "id": r.campaign_id,
            "rank": int(r.rank),
            "score": float(r.score),
            "flagged": bool(r.flagged),
            "label": text(r.label or ""),
            "kind": r.kind or None,
            "keywords": [text(k) for k in json.loads(r.keywords)],
            "template": text(r.template or ""),
            "n_accounts": int(r.n_accounts),
            "n_requests": int(r.n_requests),
            "first_seen": _iso(r.first_seen),
            "last_seen": _iso(r.last_seen),
            "accounts": by_campaign.get(r.campaign_id, []),
            "clusters": json.loads(r.clusters),
            "signals": json.loads(r.signals),
            "evidence": [text(e) for e in json.loads(r.evidence)],
            "examples": [text(e) for e in json.loads(r.examples)],
            "triage": None if t is None else {"status": t["status"], "note": t["note"], "analyst": t["analyst"],
                                              "at": _iso(t["decided_at"])},
        })
    return out


def to_json(ws: Workspace, redact_examples: bool = False) -> str:
    doc = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "workspace": ws.path,
        "ingest": ws.ingest_totals(),
        "campaigns": load_campaigns(ws, redact_examples),
    }
    return json.dumps(doc, ensure_ascii=False, indent=2)


CSV_COLUMNS = ["account_id", "score", "campaign_id", "flagged", "n_requests", "share_in_campaign",
               "campaign_score", "campaign_label"]


def to_csv(ws: Workspace) -> str:
    """One row per account in the workspace, highest score first.

    Text cells go through :func:`csv_cell` (no terminal escapes, no spreadsheet formulas).
    """
    rows = ws.db.execute(
        """
        SELECT a.account_id, a.score, a.campaign_id, coalesce(c.flagged, false) AS flagged, a.n_requests,
               ca.share AS share_in_campaign, c.score AS campaign_score, c.label AS campaign_label
        FROM accounts a
        LEFT JOIN campaigns c USING (campaign_id)
        LEFT JOIN campaign_accounts ca ON ca.campaign_id = a.campaign_id AND ca.account_id = a.account_id
        ORDER BY a.score DESC, a.account_id
        """
    ).df()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows.itertuples(index=False):
        w.writerow([
            csv_cell(r.account_id), f"{float(r.score):.4f}",
            csv_cell(r.campaign_id) if isinstance(r.campaign_id, str) else "",
            "true" if bool(r.flagged) else "false", int(r.n_requests),
            "" if pd.isna(r.share_in_campaign) else f"{float(r.share_in_campaign):.4f}",
            "" if pd.isna(r.campaign_score) else f"{float(r.campaign_score):.4f}",
            csv_cell(r.campaign_label) if isinstance(r.campaign_label, str) else "",
        ])
    return buf.getvalue()


def to_markdown(ws: Workspace, redact_examples: bool = False, campaigns: Iterable[dict] | None = None) -> str:
    """A readable report of the flagged campaigns."""
    camps = list(campaigns) if campaigns is not None else load_campaigns(ws, redact_examples)
    flagged = [c for c in camps if c["flagged"]]
    totals = ws.ingest_totals()
    lines = [
        "# Campaign report",
        "",
        f"Generated {datetime.now(UTC).isoformat(timespec='seconds')} from {md_code(ws.path, 500)}.",
        "",
        f"Requests read {totals['read']:,}, accepted {totals['accepted']:,}, rejected {totals['rejected']:,}, "
        f"duplicates {totals['duplicates']:,}. Candidates {len(camps)}, **flagged {len(flagged)}**.",
        "",
    ]
    if flagged:
        lines += ["| # | campaign | score | accounts | requests | first seen | last seen | label |",
                  "|---|---|---|---|---|---|---|---|"]
        for c in flagged:
            lines.append(f"| {c['rank']} | {md_code(c['id'])} | {c['score']:.2f} | {c['n_accounts']} | {c['n_requests']:,} | "
                         f"{c['first_seen']} | {c['last_seen']} | {md_inline(c['label'], 80)} |")
        lines.append("")
    for c in flagged:
        lines += [f"## {c['rank']}. {md_inline(c['label'], 120)} ({md_code(c['id'])}, score {c['score']:.2f})", ""]
        if c.get("kind"):
            lines += [f"Looks like **{md_inline(c['kind'])}**.", ""]
        if c.get("triage"):
            t = c["triage"]
            lines += [f"Triage: **{md_inline(t['status'])}** by {md_inline(t['analyst'] or 'unknown')}: "
                      f"{md_inline(t['note'] or '')}", ""]
        lines += ["**Evidence**", ""] + [f"- {md_inline(e, 500)}" for e in c["evidence"]] + [""]
        lines += ["**Signals**", "", "| signal | value |", "|---|---|"]
        lines += [f"| {k} | {'n/a' if v is None else f'{v:.2f}'} |" for k, v in c["signals"].items()] + [""]
        if c["template"]:
            lines += ["**Template**", "", md_block(c["template"], 1000), ""]
        lines += [f"**Keywords**: {md_inline(', '.join(c['keywords']))}", ""]
        if c["examples"]:
            lines += ["**Example prompts**", ""]
            for e in c["examples"][:3]:
                lines += [md_block(e, 800), ""]
        shown = c["accounts"][:20]
        more = len(c["accounts"]) - len(shown)
        lines += [f"**Accounts** ({c['n_accounts']}): " + ", ".join(md_code(a, 60) for a in shown)
                  + (f" and {more} more" if more > 0 else ""), ""]
    if not flagged:
        lines += ["No campaign was flagged.", ""]
    return "\n".join(lines)


def export(ws: Workspace, fmt: str, redact_examples: bool = False) -> str:
    """Render the workspace's latest analysis as ``json``, ``csv`` or ``markdown``."""
    if fmt == "json":
        return to_json(ws, redact_examples)
    if fmt == "csv":
        return to_csv(ws)
    if fmt in ("markdown", "md"):
        return to_markdown(ws, redact_examples)
    raise ValueError(f"unknown export format {fmt!r}: choose json, csv or markdown")
