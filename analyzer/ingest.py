"""Read request logs (JSONL / JSON / CSV / TSV / Parquet, optionally gzipped) into canonical records.

This module only reads and normalises; it never touches the workspace. :func:`read_logs` streams the
files in batches (memory stays bounded whatever the file size) and yields :class:`IngestBatch` objects
holding a pandas frame of canonical request records (see ``docs/design.md``) and the rows it rejected.

Formats are chosen by extension, each optionally followed by ``.gz``:

* ``.jsonl`` / ``.ndjson``: one JSON object per line (empty lines are skipped and not counted);
* ``.json``: a JSON array of objects (streamed element by element) or JSON lines;
* ``.csv`` / ``.tsv``: a header row, then one record per row (quoted fields may hold newlines,
  ``"`` quoting as written by Python's ``csv`` module or pandas);
* ``.parquet``: read in record batches with pyarrow.

Field names. A record needs an account, a timestamp and a prompt. Without a column map, these source
names are recognised (first present wins, the others are kept in ``extra``):

====================  ===============================================
canonical              accepted source names
====================  ===============================================
``request_id``         ``request_id``, ``id``
``account_id``         ``account_id``, ``user_id``, ``account``
timestamp (``ts``)     ``timestamp``, ``ts``, ``time``, ``created_at``
prompt                 ``prompt`` or ``messages`` (OpenAI style)
``system_prompt``      ``system_prompt``, ``system`` (else system turns of ``messages``)
optional fields        their own names (:data:`OPTIONAL_FIELDS`)
====================  ===============================================

A column map (``{source_name: canonical_name}``, see :func:`parse_column_map`) takes precedence over
these names. Every other non-empty column goes to ``extra`` as a JSON object string.

Without a request id in the log, ``request_id`` is ``"h:"`` + the first 32 hex digits of
``blake2b(f"{account_id}\x1f{ts_iso}\x1f{prompt}\x1f{model or ''}")`` with ``ts_iso`` the UTC time as
``2024-01-01T00:00:00.000000+00:00``, so reading a file twice gives the same ids (deduplication is the
workspace's job).

Bad input never stops a run: a bad row becomes a :class:`Rejected` naming file, line, field and reason,
and keeps its raw text. With ``strict=True`` the first bad row raises :class:`IngestError` instead.
Files that cannot be opened at all (missing, unreadable, unknown extension) always raise.

Size. A prompt of any length is accepted and kept whole (a long-context request of 25k tokens is ordinary
traffic; later stages read a bounded head and tail of it, see :mod:`analyzer.text`). The limits protect memory
only and are far above any real API request:

* one record may take at most ``max_record_bytes`` bytes (:data:`MAX_RECORD_BYTES`, 64 MiB): a longer JSONL
  line, JSON array element, CSV field or Parquet prompt is rejected, naming file, line, field and the limit
  (a longer physical line is skipped without being read into memory whole);
* a batch holds at most ``batch_size`` records and about ``batch_bytes`` characters of prompt, system prompt
  and extra text (:data:`BATCH_BYTES`, 16 MiB), whichever comes first, so a file of 5 MB prompts is read in
  batches of four rows rather than 50,000. Peak memory grows with ``batch_bytes`` (measured on 5 MB prompts:
  about 0.27 GiB at 8 MiB, 0.33 GiB at 16 MiB, 0.70 GiB at 64 MiB), not with the prompts' length.
"""

from __future__ import annotations

import csv
import glob
import gzip
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from analyzer.executor import Executor

__all__ = [
    "CANONICAL_COLUMNS",
    "OPTIONAL_FIELDS",
    "SUPPORTED_EXTENSIONS",
    "IngestBatch",
    "IngestError",
    "Rejected",
    "expand_paths",
    "parse_column_map",
    "prompt_hash",
    "read_logs",
]

CANONICAL_COLUMNS = [
    "request_id", "account_id", "ts", "prompt", "prompt_hash", "system_prompt", "model", "ip",
    "user_agent", "api_key_id", "org_id", "payment_id", "country", "extra", "source", "line",
]  # fmt: skip
OPTIONAL_FIELDS = ("model", "ip", "user_agent", "api_key_id", "org_id", "payment_id", "country")
SUPPORTED_EXTENSIONS = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet")

RAW_MAX_CHARS = 2000
#: Largest record accepted, in bytes of its source text (a JSONL line, a JSON array element, a CSV field, a
#: Parquet prompt). 64 MiB is about 16M tokens, two orders of magnitude above the longest context window
#: offered by any API, and small enough that one record never endangers memory.
MAX_RECORD_BYTES = 64 * 1024 * 1024
#: Kept for callers of earlier versions: the physical-line limit is the record limit.
MAX_LINE_BYTES = MAX_RECORD_BYTES
#: Characters of text (prompt, system prompt, extra) after which a batch is closed even if it holds fewer
#: than ``batch_size`` records; bounds a batch's memory whatever the prompts' length. 16 MiB is about 28,000
#: requests of the sample's average length (583 characters), so ordinary logs keep large batches.
BATCH_BYTES = 16 * 1024 * 1024

# canonical target -> source names recognised without a column map, in priority order
_ALIASES: dict[str, tuple[str, ...]] = {
    "request_id": ("request_id", "id"),
    "account_id": ("account_id", "user_id", "account"),
    "timestamp": ("timestamp", "ts", "time", "created_at"),
    "prompt": ("prompt",),
    "messages": ("messages",),
    "system_prompt": ("system_prompt", "system"),
    **{f: (f,) for f in OPTIONAL_FIELDS},
}
_TARGETS = tuple(_ALIASES)
_TARGET_SYNONYMS = {"ts": "timestamp"}

_TS_MIN_US = 946_684_800 * 1_000_000  # 2000-01-01T00:00:00Z
_TS_MAX_US = 4_102_444_800 * 1_000_000  # 2100-01-01T00:00:00Z
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_US = timedelta(microseconds=1)
_fromiso = datetime.fromisoformat
_NUMERIC_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_CTRL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")  # C0 controls except \t \n \r
_SURROGATE_ESC_RE = re.compile(r"\\u[dD][89a-fA-F]")
_BOM = b"\xef\xbb\xbf"
_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error, OSError)
_EMPTY_FRAME_CACHE: list[pd.DataFrame] = []
_JSON_DECODER = json.JSONDecoder()
_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=str)


def prompt_hash(text: str) -> str:
    """Hash a prompt text.

    Parameters
    ----------
    text : str
        The prompt.

    Returns
    -------
    str
        ``blake2b(text.encode("utf-8"), digest_size=16).hexdigest()`` (32 hex characters).
    """
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


@dataclass(frozen=True)
class Rejected:
    """A record (or a whole file) that could not be ingested.

    ``field`` is the canonical field at fault (``account_id``, ``timestamp``, ``prompt``, ``messages``,
    ``request_id``), or ``"<line>"`` for a record that could not be parsed at all, or ``"<file>"`` for a
    problem with the file itself. ``raw`` is the record's text, truncated to 2000 characters.
    """

    source: str
    line: int
    field: str
    reason: str
    raw: str


@dataclass
class IngestBatch:
    """A batch of normalised requests and the records rejected while reading them.

    A batch never spans two files (``source``). ``n_read`` counts every record read for the batch,
    so ``len(requests) + len(rejected) == n_read``.
    """

    requests: pd.DataFrame
    rejected: list[Rejected]
    n_read: int
    source: str = ""


class IngestError(ValueError):
    """A file cannot be read, or (in strict mode) a record is bad. The message names file, line, field."""


# --------------------------------------------------------------------------------------------------------
# paths and options
# --------------------------------------------------------------------------------------------------------
def _detect_format(path: str) -> tuple[str, bool] | None:
    name = os.path.basename(path).lower()
    gz = name.endswith(".gz")
    if gz:
        name = name[:-3]
    for ext in SUPPORTED_EXTENSIONS:
        if name.endswith(ext):
            return {".ndjson": "jsonl"}.get(ext, ext[1:]), gz
    return None


def _files_in_dir(directory: str) -> list[str]:
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and _detect_format(name) is not None:
                found.append(os.path.join(root, name))
    return found


def expand_paths(patterns: Sequence[str]) -> list[str]:
    """Expand files, directories and glob patterns into a list of files.

    Parameters
    ----------
    patterns : sequence of str
        Paths or glob patterns (``*``, ``?``, ``[...]``, ``**`` for any depth; ``~`` is expanded).
        A directory stands for the supported log files below it (recursively, hidden entries skipped).

    Returns
    -------
    list of str
        The files, each pattern's matches in sorted order, without duplicates.

    Raises
    ------
    IngestError
        If a pattern matches no file (the message names the pattern).
    """
    if isinstance(patterns, str | os.PathLike):
        patterns = [patterns]
    out: list[str] = []
    seen: set[str] = set()
    for pattern in patterns:
        pat = os.path.expanduser(os.fspath(pattern))
        if glob.has_magic(pat):
            matches = sorted(glob.glob(pat, recursive=True))
        elif os.path.exists(pat):
            matches = [pat]
        else:
            raise IngestError(f"{pattern}: no such file or directory")
        files: list[str] = []
        for m in matches:
            if os.path.isdir(m):
                files.extend(_files_in_dir(m))
            elif os.path.isfile(m):
                files.append(m)
        if not files:
            raise IngestError(f"{pattern}: matches no log file")
        for f in files:
            key = os.path.realpath(f)
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def _canonical_target(name: str) -> str:
    target = _TARGET_SYNONYMS.get(name, name)
    if target not in _ALIASES:
        raise ValueError(
            f"unknown canonical field {name!r} in column map; expected one of: {', '.join(_TARGETS)}"
        )
    return target


def parse_column_map(spec: str) -> dict[str, str]:
    """Parse a column-map specification.

    Parameters
    ----------
    spec : str
        Comma-separated ``canonical=source`` pairs, e.g. ``"account_id=user,prompt=text,ts=when"``.
        Canonical names: ``request_id``, ``account_id``, ``timestamp`` (or ``ts``), ``prompt``,
        ``messages``, ``system_prompt`` and the :data:`OPTIONAL_FIELDS`.

    Returns
    -------
    dict of str to str
        Map from SOURCE column name to canonical name (the form :func:`read_logs` takes),
        e.g. ``{"user": "account_id", "text": "prompt", "when": "timestamp"}``.

    Raises
    ------
    ValueError
        On a malformed pair, an unknown canonical name, or a name used twice.
    """
    out: dict[str, str] = {}
    targets: set[str] = set()
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        canonical, sep, source = (s.strip() for s in part.partition("="))
        if not sep or not canonical or not source:
            raise ValueError(f"bad column map entry {part!r}: expected canonical=source")
        target = _canonical_target(canonical)
        if source in out:
            raise ValueError(f"column map: source column {source!r} mapped twice")
        if target in targets:
            raise ValueError(f"column map: canonical field {target!r} mapped twice")
        out[source] = target
        targets.add(target)
    return out


# --------------------------------------------------------------------------------------------------------
# field normalisation
# --------------------------------------------------------------------------------------------------------
class _Bad(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


_JSON_TYPES = {dict: "object", list: "array", bool: "boolean", type(None): "null", str: "string",
               int: "integer", float: "number"}  # fmt: skip


def _tname(v: Any) -> str:
    return _JSON_TYPES.get(type(v), type(v).__name__)


def _short(v: Any, n: int = 60) -> str:
    s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


def _num_str(v: int | float) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _id_str(v: Any, field: str) -> str | None:
    """A scalar identifier as a stripped string (None if absent or empty)."""
    if type(v) is str:
        s = v.strip()
    elif v is None:
        return None
    elif isinstance(v, bool) or not isinstance(v, int | float | str):
        raise _Bad(field, f"expected a string or number, got {_tname(v)}")
    elif isinstance(v, float) and not math.isfinite(v):
        raise _Bad(field, f"expected a string or number, got {v}")
    else:
        s = _num_str(v) if not isinstance(v, str) else v.strip()
    if not s.isprintable() and _CTRL_RE.search(s):  # (printable: no control character; a faster test)
        s = _CTRL_RE.sub("", s).strip()
    return s or None


def _opt_str(v: Any) -> str | None:
    """An optional field as a string (numbers converted, objects as JSON, empty -> None)."""
    if type(v) is str:
        s = v.strip()
        if not s.isprintable() and _CTRL_RE.search(s):  # (printable: no control character; a faster test)
            s = _CTRL_RE.sub("", s).strip()
        return s or None
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return _num_str(v) if not (isinstance(v, float) and not math.isfinite(v)) else None
    if isinstance(v, dict | list):
        return _to_json(v)
    return str(v) or None


def _clean_nan(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean_nan(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean_nan(x) for x in v]
    return v


def _to_json(v: Any) -> str:
    try:
        return _JSON_ENCODER.encode(v)
    except ValueError:  # NaN / infinity: not JSON
        return _JSON_ENCODER.encode(_clean_nan(v))


def _epoch_us(x: float | int, shown: Any) -> int:
    if isinstance(x, float):
        if not math.isfinite(x):
            raise _Bad("timestamp", f"unparseable timestamp {_short(shown)}")
        us = round(x * 1000) if abs(x) > 1e11 else round(x * 1_000_000)
    else:
        us = x * 1000 if abs(x) > 100_000_000_000 else x * 1_000_000
    return us


def _dt_us(dt: datetime) -> int:
    if dt.tzinfo is None:
        return (dt - _EPOCH_NAIVE) // _US
    return (dt - _EPOCH) // _US


def _parse_ts(v: Any) -> int:
    """Timestamp -> microseconds since the epoch (UTC), in 2000-01-01..2100-01-01."""
    try:  # the common case first: an ISO-8601 string (_dt_us inlined: this runs once per record)
        dt = _fromiso(v)
        us = (dt - (_EPOCH if dt.tzinfo is not None else _EPOCH_NAIVE)) // _US
    except (TypeError, ValueError):
        us = _ts_other(v)
    if not _TS_MIN_US <= us <= _TS_MAX_US:
        raise _Bad("timestamp", f"timestamp {_short(v)} out of range 2000-01-01..2100-01-01")
    return us


def _ts_other(v: Any) -> int:
    """A timestamp that is not a bare ISO-8601 string -> microseconds since the epoch (range not checked)."""
    if type(v) is str:
        return _ts_str(v)
    if type(v) is int or type(v) is float:
        return _epoch_us(v, v)
    if v is None:
        raise _Bad("timestamp", "missing timestamp")
    if isinstance(v, datetime):
        return _dt_us(v)
    if isinstance(v, date):
        return _dt_us(datetime(v.year, v.month, v.day))
    if isinstance(v, int | float) and not isinstance(v, bool):
        return _epoch_us(float(v) if isinstance(v, float) else int(v), v)
    raise _Bad("timestamp", f"expected an ISO-8601 string or epoch number, got {_tname(v)}")


def _ts_str(v: str) -> int:
    """A timestamp string: ISO-8601 with spaces around or in lowercase, or an epoch number."""
    s = v.strip()
    if not s:
        raise _Bad("timestamp", "missing timestamp")
    try:
        return _dt_us(datetime.fromisoformat(s))
    except ValueError:
        pass
    if _NUMERIC_RE.fullmatch(s):
        return _epoch_us(float(s) if ("." in s or "e" in s or "E" in s) else int(s), v)
    try:
        return _dt_us(datetime.fromisoformat(s.upper()))
    except ValueError:
        raise _Bad("timestamp", f"unparseable timestamp {_short(v)}") from None


def _content_text(content: Any, i: int) -> str:
    if type(content) is str:
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                if part.get("type", "text") == "text":
                    text = part.get("text")
                    if not isinstance(text, str):
                        raise _Bad("messages", f"messages[{i}]: text part without a string 'text'")
                    parts.append(text)
            else:
                raise _Bad("messages", f"messages[{i}]: content part is {_tname(part)}, not an object")
        return "\n\n".join(parts)
    raise _Bad("messages", f"messages[{i}].content must be a string or a list of parts, got {_tname(content)}")


def _parse_messages(v: Any) -> tuple[str, str | None]:
    """OpenAI-style messages -> (user turns joined, system turns joined or None)."""
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except (ValueError, RecursionError):
            raise _Bad("messages", "messages is a string but not a JSON list") from None
    if not isinstance(v, list):
        raise _Bad("messages", f"expected a list of {{role, content}} objects, got {_tname(v)}")
    user: list[str] = []
    system: list[str] = []
    for i, m in enumerate(v):
        if not isinstance(m, dict):
            raise _Bad("messages", f"messages[{i}] is {_tname(m)}, not an object")
        role = m.get("role")
        if role == "user":
            user.append(_content_text(m.get("content"), i))
        elif role in ("system", "developer"):
            system.append(_content_text(m.get("content"), i))
        elif not isinstance(role, str):
            raise _Bad("messages", f"messages[{i}] has no string 'role'")
    if not user:
        raise _Bad("messages", "messages has no user turn")
    return "\n\n".join(user), ("\n\n".join(system) if system else None)


class _Plan:
    """How to read records with a given tuple of keys: the source key of each canonical field, and extras."""

    __slots__ = ("rid", "account", "ts", "prompt", "messages", "system", "opt", "extra")

    def __init__(self, keys: Sequence[str], column_map: Mapping[str, str]) -> None:
        src: dict[str, str] = {}
        for k in keys:  # explicit mapping first
            target = column_map.get(k)
            if target is not None and target not in src:
                src[target] = k
        for target, names in _ALIASES.items():
            if target in src:
                continue
            for name in names:
                if name in keys and name not in column_map:
                    src[target] = name
                    break
        self.rid = src.get("request_id")
        self.account = src.get("account_id")
        self.ts = src.get("timestamp")
        self.prompt = src.get("prompt")
        self.messages = src.get("messages")
        self.system = src.get("system_prompt")
        self.opt = [(i, src[f]) for i, f in enumerate(OPTIONAL_FIELDS) if f in src]
        used = set(src.values())
        self.extra = [k for k in keys if k not in used]


class _Normaliser:
    """Turns one source record (a dict) into a canonical row tuple, or raises :class:`_Bad`."""

    def __init__(self, column_map: Mapping[str, str], max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self.column_map = dict(column_map)
        self.max_record_bytes = max_record_bytes
        self.plans: dict[tuple[str, ...], _Plan] = {}

    def plan(self, rec: dict[str, Any]) -> _Plan:
        keys = tuple(rec)
        p = self.plans.get(keys)
        if p is None:
            if len(self.plans) > 4096:
                self.plans.clear()
            p = self.plans[keys] = _Plan(keys, self.column_map)
        return p

    def __call__(self, rec: dict[str, Any], source: str, line: int) -> tuple:
        p = self.plans.get(tuple(rec)) or self.plan(rec)
        if p.account is None:
            raise _Bad("account_id", "missing account_id")
        account = _id_str(rec[p.account], "account_id")
        if not account:
            raise _Bad("account_id", "missing or empty account_id")
        if p.ts is None:
            raise _Bad("timestamp", "missing timestamp")
        ts_us = _parse_ts(rec[p.ts])
        prompt, system = self._prompt(rec, p)
        if p.system is not None:
            system = _system_prompt(rec[p.system], system)
        opt: list[str | None] = [None] * len(OPTIONAL_FIELDS)
        for i, k in p.opt:
            opt[i] = _opt_str(rec[k])
        extra = _extra(rec, p.extra) if p.extra else None
        rid = _id_str(rec[p.rid], "request_id") if p.rid is not None else None
        if not rid:
            rid = _hashed_id(account, ts_us, prompt, opt[0])
        return (rid, account, ts_us, prompt, prompt_hash(prompt), system, *opt, extra, source, line)

    def _prompt(self, rec: dict[str, Any], p: _Plan) -> tuple[str, str | None]:
        """(prompt, system prompt from ``messages`` or None), control characters removed; the prompt is
        neither empty nor larger than the record limit."""
        prompt, system = _prompt_source(
            rec[p.prompt] if p.prompt is not None else None, rec[p.messages] if p.messages is not None else None
        )
        if _CTRL_RE.search(prompt):
            prompt = _CTRL_RE.sub("", prompt)
        if len(prompt) > self.max_record_bytes // 4:  # only then can its UTF-8 exceed the record limit
            size = len(prompt.encode("utf-8", "surrogatepass"))
            if size > self.max_record_bytes:
                raise _Bad("prompt", f"prompt of {_mib(size)} is larger than the record limit of "
                                     f"{_mib(self.max_record_bytes)} (max_record_bytes={self.max_record_bytes})")
        if not prompt or prompt.isspace():
            raise _Bad("prompt", "empty prompt")
        if system is not None and _CTRL_RE.search(system):
            system = _CTRL_RE.sub("", system)
        return prompt, system


def _prompt_source(pv: Any, mv: Any) -> tuple[str, str | None]:
    """(prompt, system prompt or None) from the prompt field's value ``pv`` and the messages field's ``mv``:
    a non-empty prompt string wins, else non-empty messages; as found, control characters and all."""
    if type(pv) is str and (pv or mv is None or mv == ""):
        return pv, None
    if pv is not None and pv != "":
        raise _Bad("prompt", f"expected a string, got {_tname(pv)}")
    if mv is not None and mv != "":
        return _parse_messages(mv)
    if pv is None:
        raise _Bad("prompt", "missing prompt (no 'prompt' or 'messages' field)")
    return "", None


def _system_prompt(v: Any, default: str | None) -> str | None:
    """The system prompt field's value (control characters removed), or ``default`` when it is empty."""
    if v is None or v == "":
        return default
    if type(v) is not str:
        raise _Bad("system_prompt", f"expected a string, got {_tname(v)}")
    return _CTRL_RE.sub("", v) if _CTRL_RE.search(v) else v


def _extra(rec: dict[str, Any], keys: Sequence[str]) -> str | None:
    """The non-empty values of ``keys`` as a JSON object string, or None when all are empty."""
    ex = {k: v for k in keys if (v := rec[k]) is not None and v != ""}
    return _to_json(ex) if ex else None


def _hashed_id(account: str, ts_us: int, prompt: str, model: str | None) -> str:
    """The request id of a record without one: see the module docstring."""
    ts_iso = (_EPOCH + timedelta(microseconds=ts_us)).isoformat(timespec="microseconds")
    key = f"{account}\x1f{ts_iso}\x1f{prompt}\x1f{model or ''}"
    return "h:" + hashlib.blake2b(key.encode("utf-8")).hexdigest()[:32]


# --------------------------------------------------------------------------------------------------------
# readers: each yields (line, raw, record, error); raw may be None (then built from the record)
# --------------------------------------------------------------------------------------------------------
_Item = tuple[int, str | None, dict[str, Any] | None, tuple[str, str] | None]


class _Lines:
    """Physical lines of a binary stream, with line numbers; stops cleanly on a broken gzip stream."""

    def __init__(self, fh: BinaryIO, max_line_bytes: int) -> None:
        self.fh = fh
        self.max_line_bytes = max_line_bytes
        self.lineno = 0
        self.error: str | None = None

    def __iter__(self) -> Iterator[tuple[int, bytes, bool]]:
        """Yield ``(lineno, line, overlong)``; an overlong line is cut and the rest skipped."""
        readline = self.fh.readline
        limit = self.max_line_bytes
        try:
            while True:
                b = readline(limit)
                if not b:
                    return
                self.lineno += 1
                if self.lineno == 1 and b.startswith(_BOM):
                    b = b[3:]
                if len(b) >= limit and not b.endswith(b"\n"):
                    while True:  # skip the rest of the line
                        rest = readline(limit)
                        if not rest or rest.endswith(b"\n"):
                            break
                    yield self.lineno, b, True
                else:
                    yield self.lineno, b, False
        except EOFError as e:
            self.error = f"truncated gzip stream after line {self.lineno}: {e}"
        except gzip.BadGzipFile as e:
            self.error = f"not a valid gzip file: {e}"
        except zlib.error as e:
            self.error = f"corrupt gzip stream after line {self.lineno}: {e}"
        except OSError as e:
            self.error = f"read error after line {self.lineno}: {e}"


def _safe_text(s: str) -> str:
    """``s`` with any lone surrogate (from undecodable bytes) shown as a backslash escape."""
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        try:
            return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            return s.encode("utf-8", "backslashreplace").decode("utf-8")


def _raw_text(b: bytes) -> str:
    return b[: RAW_MAX_CHARS * 4].decode("utf-8", "backslashreplace")


def _mib(n: int) -> str:
    """A byte count for a message: ``64 MiB``, ``1.5 MiB`` or ``4,096 bytes``."""
    if n < 2**20:
        return f"{n:,} bytes"
    return f"{n // 2**20} MiB" if n % 2**20 == 0 else f"{n / 2**20:.1f} MiB"


_JSON_STR_RE = re.compile(rb'"((?:[^"\\]++|\\.)*+)("?)')
_JSON_COLON_RE = re.compile(rb"\s*:")


def _cut_json_field(prefix: bytes) -> str:
    """The field whose value a JSON record cut at ``prefix``'s end was in (canonical name where known).

    Scans the JSON strings of the prefix (linear time, no backtracking): the key of the last ``"key":`` before
    the cut is the field; a ``content``/``text`` key inside ``messages`` is reported as ``messages``.
    """
    key: bytes | None = None
    key_at = 0
    for m in _JSON_STR_RE.finditer(prefix):
        if m.group(2) and _JSON_COLON_RE.match(prefix, m.end()):
            key, key_at = m.group(1), m.start()
    if key is None:
        return "<line>"
    name = key.decode("utf-8", "backslashreplace")
    if name in ("content", "text") and b'"messages"' in prefix[:key_at]:
        return "messages"
    for target, names in _ALIASES.items():
        if name in names:
            return target
    return name


def _too_large(limit: int) -> str:
    return f"record larger than the record limit of {_mib(limit)} (max_record_bytes={limit}); skipped unread"


def _surrogate_field(rec: dict[str, Any]) -> str | None:
    """The first top-level key whose value (or the key itself) holds a lone surrogate, else None."""

    def bad(v: Any) -> bool:
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return True
            return False
        if isinstance(v, dict):
            return any(bad(k) or bad(x) for k, x in v.items())
        if isinstance(v, list):
            return any(bad(x) for x in v)
        return False

    for k, v in rec.items():
        if bad(k) or bad(v):
            return k.encode("utf-8", "backslashreplace").decode("utf-8")
    return None


def _json_error(e: ValueError) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"{e.msg} (column {e.colno})" if e.lineno == 1 else e.msg
    return str(e)


def _check_json_record(obj: Any, text: str, decode_error: bool) -> tuple[str, str] | None:
    if not isinstance(obj, dict):
        return ("<line>", f"not a JSON object (got {_tname(obj)})")
    if decode_error or ("\\u" in text and _SURROGATE_ESC_RE.search(text)):
        key = _surrogate_field(obj)
        if key is not None:
            if decode_error:
                return ("<line>", "invalid UTF-8")
            return (key, "invalid Unicode: lone surrogate escape")
    return None


def _read_jsonl(lines: _Lines) -> Iterator[_Item]:
    decode = _JSON_DECODER.raw_decode
    for lineno, b, overlong in lines:
        if overlong:
            yield lineno, _raw_text(b), None, (_cut_json_field(b), _too_large(lines.max_line_bytes))
            continue
        try:
            text = b.decode("utf-8")
        except UnicodeDecodeError:
            if b.strip():
                yield lineno, _raw_text(b), None, ("<line>", "invalid UTF-8")
            continue
        text = text.strip()
        if not text:
            continue
        try:
            obj, end = decode(text)
            if end != len(text):
                raise json.JSONDecodeError("Extra data", text, end)
        except ValueError as e:
            yield lineno, text, None, ("<line>", f"invalid JSON: {_json_error(e)}")
            continue
        except RecursionError:
            yield lineno, text, None, ("<line>", "invalid JSON: nested too deeply")
            continue
        if type(obj) is dict and "\\u" not in text:
            yield lineno, text, obj, None
        else:
            err = _check_json_record(obj, text, False)
            yield lineno, text, (None if err else obj), err


def _read_json(lines: _Lines) -> Iterator[_Item]:
    """A ``.json`` file: a JSON array (streamed element by element) or JSON lines."""
    it = iter(lines)
    head: list[tuple[int, bytes, bool]] = []
    first = b""
    for item in it:
        head.append(item)
        first = item[1].lstrip()
        if first:
            break
    if not first.startswith(b"["):

        class _Replay:
            max_line_bytes = lines.max_line_bytes

            def __iter__(self) -> Iterator[tuple[int, bytes, bool]]:
                yield from head
                yield from it

        yield from _read_jsonl(_Replay())  # type: ignore[arg-type]
        return
    yield from _read_json_array(head, it, lines)


def _read_json_array(
    head: list[tuple[int, bytes, bool]], it: Iterator[tuple[int, bytes, bool]], lines: _Lines
) -> Iterator[_Item]:
    """The elements of a JSON array (``head``: the lines read so far, the first holding the ``[``)."""
    return iter(_ArrayReader(head, it, lines))


class _ArrayReader:
    """Streams the elements of a JSON array: decoded lines are buffered until an element parses whole.

    Each element is yielded with the line it starts on and its text (for a rejection). A bad element (not an
    object, invalid UTF-8, a lone surrogate) is rejected and reading goes on; broken JSON, an element over
    the record limit or a missing separator end the file with one rejection (an array cannot be resynchronised).
    """

    _WS = " \t\r\n"

    def __init__(
        self, head: list[tuple[int, bytes, bool]], it: Iterator[tuple[int, bytes, bool]], lines: _Lines
    ) -> None:
        self.lines = lines
        self.max_bytes = lines.max_line_bytes
        self.it = it
        self.pending = list(head)
        self.buf = ""
        self.pos = 0  # parse position in buf
        self.line_at_pos = head[0][0]  # physical line number of buf[pos]
        self.bad_lines: list[int] = []  # lines that were not valid UTF-8
        self.overlong_lines: list[int] = []  # lines cut at the record limit
        self.eof = False
        self.decoder = json.JSONDecoder()

    # --- the buffer -----------------------------------------------------------------------------------------
    def _next_line(self) -> tuple[int, bytes, bool] | None:
        if self.pending:
            return self.pending.pop(0)
        try:
            return next(self.it)
        except StopIteration:
            self.eof = True
            return None

    def more(self) -> bool:
        """Append at least 64 KiB of lines (more while an element is incomplete) to the buffer."""
        if self.eof:
            return False
        chunk: list[str] = []
        size = 0
        want = max(1 << 16, len(self.buf) - self.pos)  # grow geometrically while an element is incomplete
        while size < want and (item := self._next_line()) is not None:
            lineno, b, overlong = item
            try:
                s = b.decode("utf-8")
            except UnicodeDecodeError:
                s = b.decode("utf-8", "surrogateescape")
                self.bad_lines.append(lineno)
            if overlong:
                self.bad_lines.append(lineno)
                self.overlong_lines.append(lineno)
            chunk.append(s)
            size += len(b)
        if chunk:
            self.buf = self.buf[self.pos :] + "".join(chunk)
            self.pos = 0
        return bool(chunk)

    def advance(self, to: int) -> None:
        self.line_at_pos += self.buf.count("\n", self.pos, to)
        self.pos = to

    def skip_ws(self) -> str:
        """Move past whitespace; the next character, or ``""`` at the end of the file."""
        while True:
            buf, p = self.buf, self.pos
            n = len(buf)
            while p < n and buf[p] in self._WS:
                p += 1
            self.advance(p)
            if p < n:
                return buf[p]
            if not self.more():
                return ""

    def _error(self, line: int, field: str, reason: str) -> _Item:
        return line, self.buf[self.pos : self.pos + RAW_MAX_CHARS], None, (field, reason)

    # --- the array ------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[_Item]:
        self.more()
        self.skip_ws()
        self.advance(self.pos + 1)  # the "["
        expect_value = True
        while True:
            c = self.skip_ws()
            if c == "" or c == "]" or (not expect_value and c != ","):
                end = self._end(c)
                if end is not None:
                    yield end
                return
            if not expect_value:
                self.advance(self.pos + 1)
                expect_value = True
                continue
            item, last = self._element()
            if item is not None:
                yield item
            if last:
                return
            expect_value = False

    def _end(self, c: str) -> _Item | None:
        """The rejection (if any) that ends the array at character ``c`` (end of file, ``]`` or no ``,``)."""
        if c == "":
            if self.lines.error:  # a broken gzip stream is reported once, for the file
                return None
            return self._error(self.line_at_pos, "<line>", "invalid JSON: unterminated array")
        if c == "]":
            self.advance(self.pos + 1)
            if not self.skip_ws():
                return None
            return self._error(self.line_at_pos, "<line>", "invalid JSON: data after the closing ']' (ignored)")
        return self._error(self.line_at_pos, "<line>",
                           "invalid JSON: expected ',' or ']' between array elements; rest of file skipped")  # fmt: skip

    def _element(self) -> tuple[_Item | None, bool]:
        """Decode the element at the parse position: (the item to yield or None, whether it is the last)."""
        start_line = self.line_at_pos
        while True:
            try:
                obj, end = self.decoder.raw_decode(self.buf, self.pos)
                break
            except (ValueError, RecursionError) as e:
                if len(self.buf) - self.pos < self.max_bytes and self.more():
                    continue
                return self._broken(start_line, e), True
        text = self.buf[self.pos : end]
        self.advance(end)
        bad_lines = self.bad_lines
        decode_error = bool(bad_lines) and any(start_line <= b <= self.line_at_pos for b in bad_lines)
        err = _check_json_record(obj, text, decode_error)
        if decode_error and err is None:
            err = ("<line>", "invalid UTF-8")
        if bad_lines and bad_lines[-1] <= self.line_at_pos:
            bad_lines.clear()
        return (start_line, text[:RAW_MAX_CHARS], (None if err else obj), err), False

    def _broken(self, start_line: int, e: Exception) -> _Item | None:
        """The rejection for an element that does not parse (none when the gzip stream broke under it)."""
        if self.lines.error:
            return None
        if len(self.buf) - self.pos >= self.max_bytes or any(b >= start_line for b in self.overlong_lines):
            field = _cut_json_field(self.buf[self.pos : self.pos + self.max_bytes].encode("utf-8", "surrogateescape"))
            return self._error(start_line, field, _too_large(self.max_bytes) + "; rest of file skipped")
        reason = getattr(e, "msg", None) or str(e) if isinstance(e, ValueError) else "nested too deeply"
        return self._error(start_line, "<line>", f"invalid JSON: {reason}; rest of file skipped")


class _CsvFeed:
    """Feeds decoded physical lines to ``csv.reader`` and remembers the raw text and bad lines."""

    def __init__(self, lines: _Lines) -> None:
        self.lines = lines
        self.pending: list[str] = []
        self.bad: str | None = None

    def __iter__(self) -> Iterator[str]:
        pending = self.pending
        for _lineno, b, overlong in self.lines:
            try:
                s = b.decode("utf-8")
            except UnicodeDecodeError:
                s = b.decode("utf-8", "backslashreplace")
                self.bad = self.bad or "invalid UTF-8"
            if overlong:
                self.bad = _too_large(self.lines.max_line_bytes)
                s += "\n"
            pending.append(s)
            yield s


def _unique_header(row: list[str]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for i, name in enumerate(row):
        name = name.strip() or f"column_{i + 1}"
        base, n = name, 1
        while name in seen:
            n += 1
            name = f"{base}_{n}"
        seen.add(name)
        out.append(name)
    return out


def _cut_csv_field(raw: str, header: list[str], delimiter: str) -> str:
    """The column a CSV record cut at the record limit was in (its header name), else ``"<line>"``."""
    try:
        cells = next(csv.reader([raw.rstrip("\r\n")], delimiter=delimiter))
    except (csv.Error, StopIteration):
        return "<line>"
    name = header[len(cells) - 1] if 0 < len(cells) <= len(header) else None
    if name is None:
        return "<line>"
    for target, names in _ALIASES.items():
        if name in names:
            return target
    return name


def _read_csv(lines: _Lines, delimiter: str, field_limit: int) -> Iterator[_Item]:
    old_limit = csv.field_size_limit()
    csv.field_size_limit(max(old_limit, field_limit))
    feed = _CsvFeed(lines)
    reader = csv.reader(feed, delimiter=delimiter, strict=True)
    pending = feed.pending
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
            err = None
        except StopIteration:
            break
        except csv.Error as e:
            if lines.error:  # the stream broke mid-record: reported once for the file
                break
            if "field larger than field limit" in str(e):
                row, err = None, _too_large(field_limit)
            else:
                row, err = None, f"malformed CSV: {e}"
        raw = "".join(pending)
        pending.clear()
        bad, feed.bad = feed.bad, None
        if row is not None and (not row or (len(row) == 1 and not row[0].strip())):
            if bad is None:
                continue  # blank line
        reason = bad or err
        if header is None:
            if reason:
                yield start, raw[:RAW_MAX_CHARS], None, ("<file>", f"bad CSV header: {reason}")
                return
            assert row is not None
            header = _unique_header(row)
            continue
        if reason is None and row is not None and len(row) != len(header):
            reason = f"expected {len(header)} fields, got {len(row)}"
        if reason is not None:
            field = "<line>"
            if reason.startswith("record larger than"):  # name the column the cut fell in
                field = _cut_csv_field(raw, header, delimiter)
            yield start, raw[:RAW_MAX_CHARS], None, (field, reason)
            continue
        yield start, raw, dict(zip(header, row, strict=True)), None


def _parquet_rows_per_batch(pf: Any, batch_size: int, batch_bytes: int) -> int:
    """Rows per Parquet record batch: ``batch_size`` (at most 65,536), fewer when rows are large on average."""
    rows = max(1, min(batch_size, 65_536))
    meta = pf.metadata
    if meta is not None and meta.num_rows:
        size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        rows = max(1, min(rows, batch_bytes * meta.num_rows // max(size, 1)))
    return rows


def _read_parquet(fh: BinaryIO, gz: bool, batch_size: int, batch_bytes: int = BATCH_BYTES) -> Iterator[_Item]:
    import pyarrow.parquet as pq

    if gz:  # parquet needs random access: decompress to a temporary file first
        tmp = tempfile.TemporaryFile()
        try:
            shutil.copyfileobj(fh, tmp, 1 << 20)
        except _GZIP_ERRORS as e:
            tmp.close()
            yield 0, None, None, ("<file>", f"unreadable gzip stream: {e}")
            return
        tmp.seek(0)
        try:
            yield from _read_parquet(tmp, False, batch_size, batch_bytes)  # type: ignore[arg-type]
        finally:
            tmp.close()
        return
    try:
        pf = pq.ParquetFile(fh)
    except Exception as e:  # noqa: BLE001 - any failure means the file is unreadable
        yield 0, None, None, ("<file>", f"unreadable parquet file: {e}")
        return
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=_parquet_rows_per_batch(pf, batch_size, batch_bytes)):
            try:
                records = batch.to_pylist()
            except Exception:  # noqa: BLE001 - fall back to row by row to isolate the bad row
                records = []
                for i in range(batch.num_rows):
                    try:
                        records.append(batch.slice(i, 1).to_pylist()[0])
                    except Exception as e:  # noqa: BLE001
                        records.append(e)
            for rec in records:
                row += 1
                if isinstance(rec, Exception):
                    yield row, "", None, ("<line>", f"unreadable row: {rec}")
                else:
                    yield row, None, rec, None
    except Exception as e:  # noqa: BLE001
        yield row + 1, None, None, ("<file>", f"unreadable parquet data after row {row}: {e}")


# --------------------------------------------------------------------------------------------------------
# batching
# --------------------------------------------------------------------------------------------------------
def _empty_frame() -> pd.DataFrame:
    if not _EMPTY_FRAME_CACHE:
        _EMPTY_FRAME_CACHE.append(_make_frame([]))
    return _EMPTY_FRAME_CACHE[0].copy()


def _make_frame(rows: list[tuple]) -> pd.DataFrame:
    # column by column (``zip(*rows)`` over a batch's tens of thousands of rows took twice as long)
    cols = [list(map(itemgetter(i), rows)) for i in range(len(CANONICAL_COLUMNS))] if rows else [
        () for _ in CANONICAL_COLUMNS]
    return _frame_from_columns(cols)


def _frame_from_columns(cols: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """The batch frame of :data:`CANONICAL_COLUMNS` from their values, in that order (``ts`` in epoch
    microseconds): the one place that sets the batch frame's dtypes."""
    data: dict[str, Any] = {}
    for name, values in zip(CANONICAL_COLUMNS, cols, strict=True):
        if name == "ts":
            us = np.array(values, dtype=np.int64).view("datetime64[us]")
            data[name] = pd.Series(us, dtype="datetime64[us]").dt.tz_localize("UTC")
        elif name == "line":
            data[name] = pd.Series(np.array(values, dtype=np.int64))
        else:
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
            data[name] = pd.Series(arr, dtype=object)
    return pd.DataFrame(data, columns=CANONICAL_COLUMNS)


def _open(path: str, gz: bool) -> BinaryIO:
    try:
        if gz:
            return gzip.open(path, "rb")  # type: ignore[return-value]
        return open(path, "rb", buffering=1 << 20)  # noqa: SIM115
    except OSError as e:
        raise IngestError(f"{path}: cannot open: {e}") from e


def _items(kind: str, gz: bool, fh: BinaryIO, batch_size: int, batch_bytes: int,
           max_record_bytes: int) -> tuple[Iterator[_Item], _Lines | None]:  # fmt: skip
    if kind == "parquet":
        return _read_parquet(fh, gz, batch_size, batch_bytes), None
    lines = _Lines(fh, max_record_bytes)
    if kind == "jsonl":
        return _read_jsonl(lines), lines
    if kind == "json":
        return _read_json(lines), lines
    return _read_csv(lines, "\t" if kind == "tsv" else ",", max_record_bytes), lines


def read_logs(
    paths: Sequence[str],
    column_map: Mapping[str, str] | None = None,
    strict: bool = False,
    batch_size: int = 50_000,
    max_record_bytes: int | None = None,
    batch_bytes: int | None = None,
    workers: int = 1,
    executor: Executor | None = None,
) -> Iterator[IngestBatch]:
    """Read log files and yield batches of canonical request records.

    Parameters
    ----------
    paths : sequence of str
        Files to read (use :func:`expand_paths` for globs and directories). The format comes from the
        extension: ``.jsonl``, ``.ndjson``, ``.json``, ``.csv``, ``.tsv``, ``.parquet``, each optionally
        ``.gz``. All paths are checked before anything is read.
    column_map : mapping of str to str, optional
        Map from SOURCE column name to canonical name (``request_id``, ``account_id``, ``timestamp``
        (or ``ts``), ``prompt``, ``messages``, ``system_prompt`` or an optional field); it takes precedence
        over the built-in aliases. See :func:`parse_column_map`.
    strict : bool, default False
        Raise :class:`IngestError` at the first bad record instead of rejecting it.
    batch_size : int, default 50_000
        Most records read (accepted plus rejected) per batch. A batch never spans two files; every file
        yields at least one batch (possibly empty).
    max_record_bytes : int, optional
        Largest record, in bytes of its source text (default :data:`MAX_RECORD_BYTES`, 64 MiB). A larger
        record is rejected (never truncated) with a reason naming the limit; prompts of any length below it
        are accepted whole.
    batch_bytes : int, optional
        A batch is also closed once its accepted records hold this many characters of prompt, system
        prompt and extra text (default :data:`BATCH_BYTES`, 16 MiB), so memory stays bounded whatever the
        prompts' length.
    workers : int, default 1
        Above 1: files parsed at once, each by a process of its own (:func:`_read_parallel`), while the caller
        stores what they made: a provider's export in shards parses ``workers`` times as fast, and one large
        file is parsed beside the storing of its earlier batches. The batches are yielded in the same order,
        with the same content, as with one worker (1: parsed in this process).
    executor : Executor, optional
        A remote executor (:class:`analyzer.distributed.RayExecutor`, entered) parses the files instead, one task
        per file (:func:`read_file_job`); the batches are yielded in the same order, with the same content, as
        one local reader's. ``workers`` is then unused: the executor decides how many run at once.

    Yields
    ------
    IngestBatch
        ``requests`` has :data:`CANONICAL_COLUMNS` (``ts`` is ``datetime64[us, UTC]``, ``line`` is int64,
        missing optional values are None); ``len(requests) + len(rejected) == n_read``.

    Raises
    ------
    IngestError
        If a path is missing, not a file, unreadable or of unknown type; in strict mode, at the first bad
        record (the message is ``"FILE:LINE: field 'FIELD': REASON"``).
    ValueError
        If ``column_map`` names an unknown canonical field.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    cmap = {str(k): _canonical_target(v) for k, v in (column_map or {}).items()}
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    max_record_bytes = MAX_RECORD_BYTES if max_record_bytes is None else int(max_record_bytes)
    batch_bytes = BATCH_BYTES if batch_bytes is None else int(batch_bytes)
    if max_record_bytes < 1024 or batch_bytes < 1:
        raise ValueError("max_record_bytes must be >= 1024 and batch_bytes >= 1")
    formats: list[tuple[str, str, bool]] = []
    for path in paths:
        fmt = _detect_format(path)
        if fmt is None:
            raise IngestError(
                f"{path}: unsupported file type (expected one of {', '.join(SUPPORTED_EXTENSIONS)}, optionally .gz)"
            )
        if not os.path.isfile(path):
            raise IngestError(f"{path}: no such file" if not os.path.exists(path) else f"{path}: not a file")
        if not os.access(path, os.R_OK):
            raise IngestError(f"{path}: not readable")
        formats.append((path, *fmt))
    if executor is not None and executor.name != "local":
        jobs = [_file_job(path, kind, gz, cmap, strict, batch_size, batch_bytes, max_record_bytes)
                for path, kind, gz in formats]
        for item in executor.map_jobs(read_file_job, jobs):
            if "error" in item:
                raise IngestError(item["error"])
            yield IngestBatch(_frame_from_ipc(item["frame"]), [Rejected(*r) for r in item["rejected"]],
                              int(item["n_read"]), item["source"])
        return
    if workers > 1:
        yield from _read_parallel(formats, cmap, strict, batch_size, batch_bytes, max_record_bytes, workers)
        return
    normalise = _Normaliser(cmap, max_record_bytes)
    for path, kind, gz in formats:
        yield from _read_one(path, kind, gz, normalise, strict, batch_size, batch_bytes, max_record_bytes)


def _read_parallel(formats: Sequence[tuple[str, str, bool]], cmap: Mapping[str, str], strict: bool, batch_size: int,
                   batch_bytes: int, max_record_bytes: int, workers: int) -> Iterator[IngestBatch]:
    """:func:`read_logs` with ``workers`` reader processes: each parses one file and spools its batches to a
    temporary folder as it makes them (Arrow IPC files; memory stays at a batch per process), naming each on its
    standard output once written; this process yields them in order as they are named -- the first file's while
    it is still being parsed, so storing overlaps parsing even for one file -- and deletes each once read. Up to
    ``workers`` files are in flight; a reader whose file's turn has not come waits once its output pipe is full
    (some hundreds of batches named), which bounds the spool. A worker's error (strict mode) is raised where its
    bad record's batch would have come, after every earlier batch, as reading one file after another would.

    Each worker is a fresh interpreter (``python -m analyzer.ingest_worker JOB``), not a multiprocessing child:
    a script that calls the analyzer without an ``if __name__ == "__main__"`` guard would be run again by a
    spawned child, and a forked one would inherit the caller's threads (DuckDB's, the progress bars'). Nothing
    passes through pickle: jobs and the batch list are JSON, frames Arrow."""
    import subprocess
    import sys
    from collections import deque

    spool = tempfile.mkdtemp(prefix="analyzer-ingest-")
    todo = iter(enumerate(formats))
    running: deque[tuple[str, str, subprocess.Popen]] = deque()

    def start() -> None:
        nxt = next(todo, None)
        if nxt is None:
            return
        i, (path, kind, gz) = nxt
        prefix = os.path.join(spool, f"{i:06d}")
        job = {**_file_job(path, kind, gz, cmap, strict, batch_size, batch_bytes, max_record_bytes),
               "prefix": prefix}
        with open(prefix + ".job.json", "w", encoding="utf-8") as fh:
            json.dump(job, fh)
        with open(prefix + ".stderr", "wb") as err:  # a file, not a pipe: a chatty reader never waits for us
            proc = subprocess.Popen([sys.executable, "-m", "analyzer.ingest_worker", prefix + ".job.json"],
                                    stdout=subprocess.PIPE, stderr=err, text=True, encoding="utf-8")
        running.append((path, prefix, proc))

    try:
        for _ in range(workers):
            start()
        while running:
            path, prefix, proc = running[0]
            finished = False
            assert proc.stdout is not None
            for line in proc.stdout:  # a batch a line as the worker writes them, then its end
                item = json.loads(line)
                if "error" in item:
                    raise IngestError(item["error"])
                if item.get("done"):
                    finished = True
                    continue
                frame = _read_spooled_frame(item["frame"] + ".arrow")
                with open(item["frame"] + ".rejected.json", encoding="utf-8") as fh:
                    rejected = [Rejected(*r) for r in json.load(fh)]
                os.remove(item["frame"] + ".arrow")
                os.remove(item["frame"] + ".rejected.json")
                yield IngestBatch(frame, rejected, int(item["n_read"]), item["source"])
            proc.wait()
            running.popleft()
            start()
            if proc.returncode != 0 or not finished:
                with open(prefix + ".stderr", "rb") as fh:
                    tail = fh.read().decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
                raise IngestError(f"{path}: its reader process failed (exit {proc.returncode}): {tail[0]}")
    finally:
        for _, _, proc in running:
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        shutil.rmtree(spool, ignore_errors=True)


def _file_job(path: str, kind: str, gz: bool, cmap: Mapping[str, str], strict: bool, batch_size: int,
              batch_bytes: int, max_record_bytes: int) -> dict:
    """One file's parsing job, as plain values (a reader process or a remote task reads it)."""
    return {"path": path, "kind": kind, "gz": gz, "column_map": dict(cmap), "strict": strict,
            "batch_size": batch_size, "batch_bytes": batch_bytes, "max_record_bytes": max_record_bytes}


def _job_batches(job: dict) -> Iterator[IngestBatch]:
    normalise = _Normaliser(job["column_map"], job["max_record_bytes"])
    return _read_one(job["path"], job["kind"], job["gz"], normalise, job["strict"], job["batch_size"],
                     job["batch_bytes"], job["max_record_bytes"])


def _rejected_rows(rejected: Sequence[Rejected]) -> list[list]:
    return [[r.source, r.line, r.field, r.reason, r.raw] for r in rejected]


def read_file_job(job: dict) -> Iterator[dict]:
    """A remote executor's task of :func:`read_logs` (:meth:`analyzer.executor.Executor.map_jobs`): parse one
    file (a :func:`_file_job`) and yield its batches as plain values, ``{"frame": Arrow IPC bytes, "rejected":
    rows, "n_read", "source"}``; a strict-mode error is yielded as ``{"error": message}`` (and ends the file), so
    that it reaches the driver in its place in the order."""
    try:
        for batch in _job_batches(job):
            yield {"frame": _frame_to_ipc(batch.requests), "rejected": _rejected_rows(batch.rejected),
                   "n_read": batch.n_read, "source": batch.source}
    except IngestError as exc:
        yield {"error": str(exc)}


def run_spool_job(job_path: str) -> None:
    """A worker of :func:`_read_parallel` (``python -m analyzer.ingest_worker JOB``): parse the job's file, each
    batch to ``PREFIX-NNNNNN.arrow`` (its requests) and ``PREFIX-NNNNNN.rejected.json`` as it is made, then a line
    naming it (file stem, rows read, source) on standard output; ``{"done": true}`` when the file is read, or a
    strict-mode error as ``{"error": message}``. Anything else written to standard output goes to the error
    stream, not among those lines."""
    manifest = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)

    def say(item: dict) -> None:
        manifest.write(json.dumps(item) + "\n")
        manifest.flush()

    with open(job_path, encoding="utf-8") as fh:
        job = json.load(fh)
    prefix = job["prefix"]
    try:
        for j, batch in enumerate(_job_batches(job)):
            stem = f"{prefix}-{j:06d}"
            _write_spooled_frame(batch.requests, stem + ".arrow")
            with open(stem + ".rejected.json", "w", encoding="utf-8") as fh:
                json.dump(_rejected_rows(batch.rejected), fh)
            say({"frame": stem, "n_read": batch.n_read, "source": batch.source})
    except IngestError as exc:
        say({"error": str(exc)})
        raise SystemExit(1) from None
    say({"done": True})


def _arrow_table(frame: pd.DataFrame):
    """A batch's requests (:data:`CANONICAL_COLUMNS`) as an Arrow table: ``ts`` as epoch microseconds."""
    import pyarrow as pa

    cols = {}
    for name in CANONICAL_COLUMNS:
        if name == "ts":
            cols[name] = pa.array(np.asarray(frame[name].array.asi8, dtype=np.int64))  # datetime64[us]: micros
        elif name == "line":
            cols[name] = pa.array(frame[name].to_numpy(dtype=np.int64))
        else:
            cols[name] = pa.array(frame[name].to_numpy(dtype=object), type=pa.string())
    return pa.table(cols)


def _frame_of_table(table) -> pd.DataFrame:
    """The frame of an :func:`_arrow_table`, with the dtypes of :func:`_make_frame`."""
    return _frame_from_columns([table.column(name).to_numpy(zero_copy_only=False) for name in CANONICAL_COLUMNS])


def _write_spooled_frame(frame: pd.DataFrame, path: str) -> None:
    """A batch's requests as an Arrow IPC file."""
    import pyarrow as pa

    table = _arrow_table(frame)
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _read_spooled_frame(path: str) -> pd.DataFrame:
    """The frame :func:`_write_spooled_frame` wrote."""
    import pyarrow as pa

    with pa.memory_map(path, "r") as src:
        return _frame_of_table(pa.ipc.open_file(src).read_all())


def _frame_to_ipc(frame: pd.DataFrame) -> bytes:
    """A batch's requests as Arrow IPC stream bytes (what a remote task sends back: no pickled objects)."""
    import pyarrow as pa

    table = _arrow_table(frame)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _frame_from_ipc(data: bytes) -> pd.DataFrame:
    """The frame of :func:`_frame_to_ipc`'s bytes."""
    import pyarrow as pa

    return _frame_of_table(pa.ipc.open_stream(pa.py_buffer(data)).read_all())


def _read_one(path: str, kind: str, gz: bool, normalise: _Normaliser, strict: bool, batch_size: int,
              batch_bytes: int, max_record_bytes: int) -> Iterator[IngestBatch]:  # fmt: skip
    fh = _open(path, gz)
    rows: list[tuple] = []
    rejected: list[Rejected] = []
    n_read = 0
    n_chars = 0  # text held by the batch's rows
    yielded = False

    def reject(line: int, raw: str | None, rec: dict | None, fld: str, reason: str) -> None:
        if raw is None:
            raw = _to_json(rec) if rec is not None else ""
        r = Rejected(path, line, _safe_text(fld), _safe_text(reason), _safe_text(raw[:RAW_MAX_CHARS]))
        if strict:
            raise IngestError(f"{path}:{line}: field {fld!r}: {reason}")
        rejected.append(r)

    def flush() -> IngestBatch:
        nonlocal rejected, n_read, n_chars
        frame = _make_frame(rows) if rows else _empty_frame()
        batch = IngestBatch(frame, rejected, n_read, path)
        rows.clear()  # the frame holds its own arrays
        rejected, n_read, n_chars = [], 0, 0
        return batch

    try:
        items, lines = _items(kind, gz, fh, batch_size, batch_bytes, max_record_bytes)
        append = rows.append
        for line, raw, rec, err in items:
            n_read += 1
            if err is not None:
                reject(line, raw, rec, err[0], err[1])
            else:
                try:
                    row = normalise(rec, path, line)  # type: ignore[arg-type]
                    append(row)
                    n_chars += len(row[3]) + len(row[5] or "") + len(row[13] or "")  # prompt, system, extra
                except _Bad as b:
                    reject(line, raw, rec, b.field, b.reason)
                except Exception as e:  # noqa: BLE001 - never let one odd record stop the run
                    reject(line, raw, rec, "<line>", f"unexpected error: {type(e).__name__}: {e}")
            if n_read >= batch_size or n_chars >= batch_bytes:
                yielded = True
                yield flush()
        if lines is not None and lines.error is not None:
            n_read += 1
            reject(lines.lineno + 1, "", None, "<file>", lines.error)
    finally:
        fh.close()
    if n_read or not yielded:
        yield flush()

