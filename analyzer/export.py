"""Exports: the contract other tools rely on (JSON schema version 1), an account CSV and a Markdown report.

Prompt text is attacker-controlled. Every export keeps it inert: terminal escape sequences and control
characters are removed, Markdown puts prompts in fenced code blocks (longer fences than any backtick run
inside) and escapes inline text, and an optional redaction removes emails, phone numbers, card numbers and
API-key-like strings from example prompts.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime

import pandas as pd

from analyzer.workspace import Workspace

SCHEMA_VERSION = 1

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

_REDACTIONS = [
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[EMAIL]"),
    (re.compile(r"\b(?:sk|pk|rk|ak|key|api|token)[-_][A-Za-z0-9_-]{16,}\b|\bAKIA[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{30,}\b"), "[API_KEY]"),
    (re.compile(r"\b(?:\d[ -]?){13,19}\b"), "[CARD]"),
    (re.compile(r"(?<!\w)\+?\d{1,3}?[ .-]?\(?\d{2,4}\)?[ .-]?\d{3,4}[ .-]?\d{3,4}(?!\w)"), "[PHONE]"),
]


def strip_terminal(text: str) -> str:
    """Remove ANSI escape sequences and control characters (newlines and tabs are kept)."""
    return _CONTROL.sub("", _ANSI.sub("", text))


def redact(text: str) -> str:
    """Replace emails, API-key-like strings, card numbers and phone numbers with placeholders."""
    for pattern, repl in _REDACTIONS:
        text = pattern.sub(repl, text)
    return text


def md_inline(text: str, limit: int = 300) -> str:
    """Escape text for inline Markdown: no HTML, links, images or emphasis can survive."""
    text = strip_terminal(text).replace("\n", " ")
    if len(text) > limit:
        text = text[:limit] + "…"
    text = html.escape(text, quote=True)
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~>])", r"\\\1", text)


def md_block(text: str, limit: int = 2000) -> str:
    """A fenced code block that shows ``text`` verbatim and inert."""
    text = strip_terminal(text)
    if len(text) > limit:
        text = text[:limit] + "\n… (truncated)"
    longest = max((len(m) for m in re.findall(r"`+|~+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def _iso(value) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return None
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.tz_convert("UTC").isoformat().replace("+00:00", "Z")


def load_campaigns(ws: Workspace, redact_examples: bool = False) -> list[dict]:
    """Campaigns of the latest analysis as plain dicts (schema of the JSON export), best first."""
    camps = ws.db.execute("SELECT * FROM campaigns ORDER BY rank").df()
    accounts = ws.db.execute(
        "SELECT campaign_id, account_id FROM campaign_accounts ORDER BY campaign_id, n_requests DESC, account_id"
    ).df()
    by_campaign = accounts.groupby("campaign_id")["account_id"].agg(list).to_dict()
    triage = ws.triage_latest().set_index("campaign_id")
    out = []
    for r in camps.itertuples(index=False):
        examples = [strip_terminal(e) for e in json.loads(r.examples)]
        if redact_examples:
            examples = [redact(e) for e in examples]
        t = triage.loc[r.campaign_id] if r.campaign_id in triage.index else None
        out.append({
            "id": r.campaign_id,
            "rank": int(r.rank),
            "score": float(r.score),
            "flagged": bool(r.flagged),
            "label": strip_terminal(r.label or ""),
            "kind": r.kind or None,
            "keywords": [strip_terminal(k) for k in json.loads(r.keywords)],
            "template": strip_terminal(r.template or ""),
            "n_accounts": int(r.n_accounts),
            "n_requests": int(r.n_requests),
            "first_seen": _iso(r.first_seen),
            "last_seen": _iso(r.last_seen),
            "accounts": by_campaign.get(r.campaign_id, []),
            "clusters": json.loads(r.clusters),
            "signals": json.loads(r.signals),
            "evidence": [strip_terminal(e) for e in json.loads(r.evidence)],
            "examples": examples,
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
    """One row per account in the workspace, highest score first."""
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
            r.account_id, f"{float(r.score):.4f}", r.campaign_id if isinstance(r.campaign_id, str) else "",
            "true" if bool(r.flagged) else "false", int(r.n_requests),
            "" if pd.isna(r.share_in_campaign) else f"{float(r.share_in_campaign):.4f}",
            "" if pd.isna(r.campaign_score) else f"{float(r.campaign_score):.4f}",
            strip_terminal(r.campaign_label) if isinstance(r.campaign_label, str) else "",
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
        f"Generated {datetime.now(UTC).isoformat(timespec='seconds')} from `{md_inline(ws.path)}`.",
        "",
        f"Requests read {totals['read']:,}, accepted {totals['accepted']:,}, rejected {totals['rejected']:,}, "
        f"duplicates {totals['duplicates']:,}. Candidates {len(camps)}, **flagged {len(flagged)}**.",
        "",
    ]
    if flagged:
        lines += ["| # | campaign | score | accounts | requests | first seen | last seen | label |",
                  "|---|---|---|---|---|---|---|---|"]
        for c in flagged:
            lines.append(f"| {c['rank']} | `{c['id']}` | {c['score']:.2f} | {c['n_accounts']} | {c['n_requests']:,} | "
                         f"{c['first_seen']} | {c['last_seen']} | {md_inline(c['label'], 80)} |")
        lines.append("")
    for c in flagged:
        lines += [f"## {c['rank']}. {md_inline(c['label'], 120)} (`{c['id']}`, score {c['score']:.2f})", ""]
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
        lines += [f"**Accounts** ({c['n_accounts']}): " + ", ".join(f"`{md_inline(a, 60)}`" for a in shown)
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
