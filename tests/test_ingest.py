"""Tests for analyzer.ingest: formats, normalisation, bad input, counts, strict mode, properties."""

from __future__ import annotations

import csv
import gzip
import io
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.ingest import (
    CANONICAL_COLUMNS,
    IngestBatch,
    IngestError,
    Rejected,
    expand_paths,
    parse_column_map,
    prompt_hash,
    read_logs,
)

FUZZ = Path(__file__).parent / "fuzz"
TS = 1704067200  # 2024-01-01T00:00:00Z


# --------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------
def rec(i: int = 0, **kw) -> dict:
    base = {"account_id": f"acct{i}", "timestamp": "2024-01-01T00:00:00Z", "prompt": f"prompt {i}"}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not ...}


def write_jsonl(path: Path, records: list, gz: bool = False) -> Path:
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_csv(path: Path, rows: list[dict], delimiter: str = ",", gz: bool = False) -> Path:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), delimiter=delimiter)  # "\r\n": quotes bare "\r" too
    w.writeheader()
    w.writerows(rows)
    data = buf.getvalue().encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def read_all(paths, **kw) -> tuple[pd.DataFrame, list[Rejected], int, list[IngestBatch]]:
    if isinstance(paths, str | Path):
        paths = [paths]
    batches = list(read_logs([str(p) for p in paths], **kw))
    frames = [b.requests for b in batches if len(b.requests)]
    df = pd.concat(frames, ignore_index=True) if frames else batches[0].requests
    rejected = [r for b in batches for r in b.rejected]
    n_read = sum(b.n_read for b in batches)
    for b in batches:
        assert len(b.requests) + len(b.rejected) == b.n_read
    return df, rejected, n_read, batches


def only_reject(path, **kw) -> Rejected:
    df, rej, n, _ = read_all(path, **kw)
    assert len(df) == 0 and len(rej) == 1 and n == 1, (df, rej)
    return rej[0]


# --------------------------------------------------------------------------------------------------------
# formats
# --------------------------------------------------------------------------------------------------------
def test_prompt_hash() -> None:
    import hashlib

    assert prompt_hash("héllo") == hashlib.blake2b("héllo".encode(), digest_size=16).hexdigest()
    assert len(prompt_hash("")) == 32


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("ext", ["jsonl", "ndjson", "json"])
def test_jsonl_formats(tmp_path: Path, ext: str, gz: bool) -> None:
    name = f"log.{ext}" + (".gz" if gz else "")
    p = write_jsonl(tmp_path / name, [rec(0, model="m1", ip="1.2.3.4"), rec(1)], gz=gz)
    df, rej, n, batches = read_all(p)
    assert rej == [] and n == 2 and len(batches) == 1
    assert list(df.columns) == CANONICAL_COLUMNS
    assert str(df["ts"].dtype) == "datetime64[us, UTC]"
    assert df["line"].dtype == "int64"
    assert df["prompt"].tolist() == ["prompt 0", "prompt 1"]
    assert df["prompt_hash"].tolist() == [prompt_hash("prompt 0"), prompt_hash("prompt 1")]
    assert df["model"].tolist() == ["m1", None]
    assert df["ip"].tolist() == ["1.2.3.4", None]
    assert df["line"].tolist() == [1, 2]
    assert set(df["source"]) == {str(p)}
    assert df["ts"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert batches[0].source == str(p)


@pytest.mark.parametrize("gz", [False, True])
def test_json_array(tmp_path: Path, gz: bool) -> None:
    data = json.dumps([rec(0), rec(1), rec(2)], indent=2).encode()
    p = tmp_path / ("arr.json" + (".gz" if gz else ""))
    p.write_bytes(gzip.compress(data) if gz else data)
    df, rej, n, _ = read_all(p)
    assert rej == [] and n == 3
    assert df["prompt"].tolist() == ["prompt 0", "prompt 1", "prompt 2"]
    assert df["line"].tolist() == [2, 7, 12]  # line where each element starts


def test_json_array_large_elements_stream(tmp_path: Path) -> None:
    big = [rec(i, prompt="x" * 50_000 + str(i)) for i in range(12)]
    p = tmp_path / "big.json"
    p.write_text(json.dumps(big))
    df, rej, n, _ = read_all(p)
    assert rej == [] and n == 12 and df["prompt"].str.len().tolist() == [50_001 if i < 10 else 50_002 for i in range(12)]


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("delim,ext", [(",", "csv"), ("\t", "tsv")])
def test_csv_tsv(tmp_path: Path, delim: str, ext: str, gz: bool) -> None:
    rows = [
        {"account_id": "a1", "timestamp": "2024-01-01T00:00:00Z", "prompt": 'multi\nline, "quoted"\tprompt',
         "model": "m", "custom": "c1"},
        {"account_id": "a2", "timestamp": str(TS), "prompt": "p2", "model": "", "custom": ""},
    ]  # fmt: skip
    p = write_csv(tmp_path / (f"log.{ext}" + (".gz" if gz else "")), rows, delimiter=delim, gz=gz)
    df, rej, n, _ = read_all(p)
    assert rej == [] and n == 2
    assert df["prompt"].tolist() == ['multi\nline, "quoted"\tprompt', "p2"]
    assert df["line"].tolist() == [2, 4]  # the first record spans lines 2-3
    assert df["model"].tolist() == ["m", None]
    assert json.loads(df["extra"].iloc[0]) == {"custom": "c1"}
    assert df["extra"].iloc[1] is None
    assert (df["ts"] == pd.Timestamp("2024-01-01", tz="UTC")).all()


def test_csv_crlf_and_bom(tmp_path: Path) -> None:
    p = tmp_path / "win.csv"
    p.write_bytes(b'\xef\xbb\xbfaccount_id,timestamp,prompt\r\na1,2024-01-01,"x\r\ny"\r\na2,2024-01-01,z\r\n')
    df, rej, _, _ = read_all(p)
    assert rej == []
    assert df["account_id"].tolist() == ["a1", "a2"]
    assert df["prompt"].tolist() == ["x\r\ny", "z"]
    assert df["line"].tolist() == [2, 4]


@pytest.mark.parametrize("gz", [False, True])
def test_parquet(tmp_path: Path, gz: bool) -> None:
    table = pa.table(
        {
            "id": ["r1", "r2", "r3"],
            "user_id": [1, 2, 3],
            "created_at": pa.array(
                [datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC), None], pa.timestamp("us", "UTC")
            ),
            "messages": [
                [{"role": "system", "content": "sys"}, {"role": "user", "content": "hello"}],
                [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a"},
                 {"role": "user", "content": "u2"}],
                [{"role": "user", "content": "x"}],
            ],  # fmt: skip
            "country": ["DE", None, "FR"],
            "score": [0.5, 1.5, 2.5],
        }
    )
    p = tmp_path / "log.parquet"
    pq.write_table(table, p, row_group_size=2)
    if gz:
        p2 = tmp_path / "log.parquet.gz"
        p2.write_bytes(gzip.compress(p.read_bytes()))
        p = p2
    df, rej, n, _ = read_all(p, batch_size=2)
    assert n == 3 and len(df) == 2
    assert [(r.line, r.field, r.reason) for r in rej] == [(3, "timestamp", "missing timestamp")]
    assert df["request_id"].tolist() == ["r1", "r2"]
    assert df["account_id"].tolist() == ["1", "2"]
    assert df["prompt"].tolist() == ["hello", "u1\n\nu2"]
    assert df["system_prompt"].tolist() == ["sys", None]
    assert df["country"].tolist() == ["DE", None]
    assert df["line"].tolist() == [1, 2]
    assert json.loads(df["extra"].iloc[1]) == {"score": 1.5}
    assert df["ts"].tolist() == [pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-01-02", tz="UTC")]


def test_unreadable_parquet_is_one_rejection(tmp_path: Path) -> None:
    p = tmp_path / "bad.parquet"
    p.write_bytes(b"PAR1 definitely not parquet")
    r = only_reject(p)
    assert r.field == "<file>" and "unreadable parquet" in r.reason and r.source == str(p)
    with pytest.raises(IngestError, match="bad.parquet"):
        list(read_logs([str(p)], strict=True))


# --------------------------------------------------------------------------------------------------------
# normalisation
# --------------------------------------------------------------------------------------------------------
def test_messages_string_and_list_content(tmp_path: Path) -> None:
    msgs = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": [{"type": "text", "text": "part one"},
                                     {"type": "image_url", "image_url": {"url": "http://x"}},
                                     {"type": "text", "text": "part two"}]},
        {"role": "assistant", "content": "reply"},
        {"role": "user", "content": "follow-up"},
    ]  # fmt: skip
    p = write_jsonl(tmp_path / "m.jsonl", [rec(0, prompt=..., messages=msgs)])
    df, rej, _, _ = read_all(p)
    assert rej == []
    assert df["prompt"].iloc[0] == "part one\n\npart two\n\nfollow-up"
    assert df["system_prompt"].iloc[0] == "You are helpful."


def test_system_column_and_prompt_precedence(tmp_path: Path) -> None:
    p = write_jsonl(
        tmp_path / "s.jsonl",
        [rec(0, system="col system"), rec(1, system_prompt="sp"),
         rec(2, prompt="", messages=[{"role": "user", "content": "from messages"}])],
    )  # fmt: skip
    df, rej, _, _ = read_all(p)
    assert rej == []
    assert df["system_prompt"].tolist() == ["col system", "sp", None]
    assert df["prompt"].tolist() == ["prompt 0", "prompt 1", "from messages"]


def test_aliases_and_extra(tmp_path: Path) -> None:
    p = write_jsonl(
        tmp_path / "a.jsonl",
        [{"id": 17, "user_id": "u", "ts": TS, "prompt": "p", "timestamp_local": "x", "nested": {"a": [1, 2]},
          "time": "ignored alias", "model": 4, "api_key_id": "k", "org_id": "o", "payment_id": 9.0,
          "user_agent": "ua", "empty": None}],
    )  # fmt: skip
    df, rej, _, _ = read_all(p)
    assert rej == []
    row = df.iloc[0]
    assert (row["request_id"], row["account_id"], row["model"], row["payment_id"]) == ("17", "u", "4", "9")
    assert (row["api_key_id"], row["org_id"], row["user_agent"]) == ("k", "o", "ua")
    assert json.loads(row["extra"]) == {"timestamp_local": "x", "nested": {"a": [1, 2]}, "time": "ignored alias"}


def test_column_map(tmp_path: Path) -> None:
    cmap = parse_column_map("account_id=customer, prompt=text, ts=when, model=engine")
    assert cmap == {"customer": "account_id", "text": "prompt", "when": "timestamp", "engine": "model"}
    p = write_jsonl(
        tmp_path / "c.jsonl",
        [{"customer": "c1", "user_id": "not me", "text": "hi", "when": TS * 1000, "engine": "e"}],
    )
    df, rej, _, _ = read_all(p, column_map=cmap)
    assert rej == []
    assert df["account_id"].iloc[0] == "c1" and df["prompt"].iloc[0] == "hi" and df["model"].iloc[0] == "e"
    assert json.loads(df["extra"].iloc[0]) == {"user_id": "not me"}  # the mapped column wins over the alias
    # without the map the alias is used and the timestamp is missing
    _, rej, _, _ = read_all(p)
    assert [r.field for r in rej] == ["timestamp"]


@pytest.mark.parametrize("spec", ["account_id", "nope=x", "account_id=a,account_id=b", "prompt=x,model=x", "=x"])
def test_parse_column_map_errors(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_column_map(spec)


def test_read_logs_rejects_unknown_map_target(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "x.jsonl", [rec()])
    with pytest.raises(ValueError, match="unknown canonical field"):
        list(read_logs([str(p)], column_map={"x": "bogus"}))


@pytest.mark.parametrize(
    "value,expected",
    [
        (TS, "2024-01-01T00:00:00"),
        (TS * 1000 + 500, "2024-01-01T00:00:00.500"),
        (TS + 0.25, "2024-01-01T00:00:00.250"),
        (str(TS), "2024-01-01T00:00:00"),
        (str(TS * 1000), "2024-01-01T00:00:00"),
        ("1704067200.5", "2024-01-01T00:00:00.500"),
        ("2024-01-01 02:00:00+02:00", "2024-01-01T00:00:00"),
        ("2024-01-01T00:00:00", "2024-01-01T00:00:00"),  # naive = UTC
        ("2024-01-01T00:00:00.123456789Z", "2024-01-01T00:00:00.123456"),
        ("2024-01-01t00:00:00z", "2024-01-01T00:00:00"),
        ("2000-01-01T00:00:00Z", "2000-01-01T00:00:00"),
    ],
)
def test_timestamps(tmp_path: Path, value, expected: str) -> None:
    p = write_jsonl(tmp_path / "t.jsonl", [rec(timestamp=value)])
    df, rej, _, _ = read_all(p)
    assert rej == []
    assert df["ts"].iloc[0] == pd.Timestamp(expected, tz="UTC")


@pytest.mark.parametrize(
    "value,reason",
    [
        ("yesterday", "unparseable"),
        ("", "missing"),
        (None, "missing"),
        (5, "out of range"),
        (1e13 * 1000, "out of range"),
        ("1999-12-31T23:59:59Z", "out of range"),
        ("2100-01-01T00:00:01Z", "out of range"),
        (True, "expected an ISO-8601"),
        ({"t": 1}, "expected an ISO-8601"),
    ],
)
def test_bad_timestamps(tmp_path: Path, value, reason: str) -> None:
    p = write_jsonl(tmp_path / "t.jsonl", [rec(timestamp=value)])
    r = only_reject(p)
    assert r.field == "timestamp" and reason in r.reason and r.line == 1


def test_request_id_hash_is_idempotent(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "h.jsonl", [rec(0), rec(1), rec(0, model="other"), rec(0, request_id="given")])
    ids1 = read_all(p)[0]["request_id"].tolist()
    ids2 = read_all(p)[0]["request_id"].tolist()
    assert ids1 == ids2
    assert ids1[3] == "given"
    assert all(i.startswith("h:") and len(i) == 34 for i in ids1[:3])
    assert len(set(ids1)) == 4
    # the same record as CSV (epoch timestamp) gets the same id
    q = write_csv(tmp_path / "h.csv", [{"account_id": "acct0", "timestamp": str(TS), "prompt": "prompt 0"}])
    assert read_all(q)[0]["request_id"].tolist() == ids1[:1]


def test_batches_and_lines(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "b.jsonl", [rec(i) if i != 4 else {"bad": 1} for i in range(10)])
    q = write_jsonl(tmp_path / "c.jsonl", [rec(i) for i in range(2)])
    batches = list(read_logs([str(p), str(q)], batch_size=3))
    assert [b.n_read for b in batches] == [3, 3, 3, 1, 2]
    assert [b.source for b in batches] == [str(p)] * 4 + [str(q)]
    lines = [ln for b in batches[:4] for ln in b.requests["line"]]
    assert lines == [1, 2, 3, 4, 6, 7, 8, 9, 10]
    assert batches[1].rejected[0].line == 5


def test_empty_file_yields_an_empty_batch(tmp_path: Path) -> None:
    p = tmp_path / "e.jsonl"
    p.write_bytes(b"")
    (batch,) = list(read_logs([str(p)]))
    assert batch.n_read == 0 and batch.rejected == []
    assert list(batch.requests.columns) == CANONICAL_COLUMNS and len(batch.requests) == 0
    assert str(batch.requests["ts"].dtype) == "datetime64[us, UTC]"


# --------------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "line,field,reason",
    [
        (b"{not json", "<line>", "invalid JSON"),
        (b"[1, 2]", "<line>", "not a JSON object"),
        (b'"str"', "<line>", "not a JSON object"),
        (b'{"account_id": "a", "timestamp": 1704067200, "prompt": "caf\xe9"}', "<line>", "invalid UTF-8"),
        (b'{"account_id": "a", "timestamp": 1704067200, "prompt": "x\\udc00"}', "prompt", "lone surrogate"),
        (b'{"account_id": {"a": 1}, "timestamp": 1704067200, "prompt": "p"}', "account_id", "expected a string"),
        (b'{"account_id": "  ", "timestamp": 1704067200, "prompt": "p"}', "account_id", "empty"),
        (b'{"timestamp": 1704067200, "prompt": "p"}', "account_id", "missing"),
        (b'{"account_id": "a", "timestamp": 1704067200, "prompt": ["p"]}', "prompt", "expected a string"),
        (b'{"account_id": "a", "timestamp": 1704067200, "prompt": " \\n\\t "}', "prompt", "empty prompt"),
        (b'{"account_id": "a", "timestamp": 1704067200, "prompt": "\\u0000\\u0000"}', "prompt", "empty prompt"),
        (b'{"account_id": "a", "timestamp": 1704067200}', "prompt", "missing prompt"),
        (b'{"account_id": "a", "timestamp": 1704067200, "messages": {"role": "user"}}', "messages", "expected a list"),
        (b'{"account_id": "a", "timestamp": 1704067200, "messages": [{"role": "system", "content": "s"}]}',
         "messages", "no user turn"),
        (b'{"account_id": "a", "timestamp": 1704067200, "messages": ["hi"]}', "messages", "not an object"),
        (b'{"account_id": "a", "timestamp": 1704067200, "messages": [{"role": "user", "content": 3}]}',
         "messages", "content must be"),
        (b'{"account_id": "a", "timestamp": 1704067200, "prompt": "p", "request_id": [1]}', "request_id",
         "expected a string"),
        (b"[" * 100_000 + b"]" * 100_000, "<line>", "invalid JSON"),
    ],
)  # fmt: skip
def test_bad_jsonl_lines(tmp_path: Path, line: bytes, field: str, reason: str) -> None:
    good = json.dumps(rec()).encode()
    p = tmp_path / "bad.jsonl"
    p.write_bytes(good + b"\n" + line + b"\n" + good + b"\n")
    df, rej, n, _ = read_all(p)
    assert n == 3 and len(df) == 2 and len(rej) == 1
    r = rej[0]
    assert (r.source, r.line, r.field) == (str(p), 2, field)
    assert reason in r.reason
    assert r.raw and len(r.raw) <= 2000
    with pytest.raises(IngestError) as exc:
        list(read_logs([str(p)], strict=True))
    assert f"{p}:2: field {field!r}" in str(exc.value)


def test_control_characters_are_stripped(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "c.jsonl", [rec(prompt="a\x00b\x07c\td\ne\rf\x1b", system="s\x00y", account_id="a\x00")])
    df, rej, _, _ = read_all(p)
    assert rej == []
    assert df["prompt"].iloc[0] == "abc\td\ne\rf"
    assert df["system_prompt"].iloc[0] == "sy"
    assert df["account_id"].iloc[0] == "a"
    assert df["prompt_hash"].iloc[0] == prompt_hash("abc\td\ne\rf")


def _long_prompt(n: int) -> str:
    """``n`` characters of varied text (multi-byte characters included): instruction first, then context."""
    unit = "Summarise the report below. Café naïve 日本語 — line {i}: the quick brown fox jumps over the lazy dog.\n"
    parts, size, i = [], 0, 0
    while size < n:
        parts.append(unit.format(i=i))
        size += len(parts[-1])
        i += 1
    return "".join(parts)[:n]


@pytest.mark.parametrize("ext", ["jsonl", "jsonl.gz", "json", "csv", "tsv", "parquet"])
def test_long_prompts_are_accepted_whole(tmp_path: Path, ext: str) -> None:
    """A 300k-character prompt (the old 100,000-character cap is gone) is accepted and kept intact."""
    big = _long_prompt(300_000)
    rows = [rec(0, prompt=big), rec(1, prompt="short one"), rec(2, prompt=big[::-1])]
    p = tmp_path / f"long.{ext}"
    if ext.startswith("jsonl"):
        write_jsonl(p, rows, gz=ext.endswith(".gz"))
    elif ext == "json":
        p.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    elif ext == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), p)
    else:
        write_csv(p, rows, delimiter="\t" if ext == "tsv" else ",")
    df, rej, n, _ = read_all(p)
    assert rej == [] and n == 3
    assert df["prompt"].tolist() == [big, "short one", big[::-1]]
    assert df["prompt_hash"].iloc[0] == prompt_hash(big)


def test_default_limits_are_stated() -> None:
    from analyzer import ingest

    assert ingest.MAX_RECORD_BYTES == 64 * 2**20 == ingest.MAX_LINE_BYTES
    assert ingest.BATCH_BYTES == 16 * 2**20
    with pytest.raises(ValueError):
        list(read_logs([str(FUZZ)], max_record_bytes=10))


def test_record_over_the_byte_limit_is_rejected_naming_file_line_field_and_limit(tmp_path: Path) -> None:
    limit = 4096
    good = json.dumps(rec()).encode()
    p = tmp_path / "big.jsonl"
    p.write_bytes(
        good + b"\n"
        + json.dumps(rec(1, prompt="z" * 5000)).encode() + b"\n"  # the prompt runs past the limit
        + json.dumps(rec(2, prompt=..., messages=[{"role": "user", "content": "m" * 5000}])).encode() + b"\n"
        + json.dumps(rec(3, prompt="ok", notes="n" * 5000)).encode() + b"\n"  # an extra column
        + good + b"\n"
    )  # fmt: skip
    df, rej, n, _ = read_all(p, max_record_bytes=limit)
    assert n == 5 and len(df) == 2 and df["line"].tolist() == [1, 5]
    assert [(r.line, r.field) for r in rej] == [(2, "prompt"), (3, "messages"), (4, "notes")]
    for r in rej:
        assert r.source == str(p) and "record limit of 4,096 bytes" in r.reason and "max_record_bytes=4096" in r.reason
        assert len(r.raw) <= 2000
    with pytest.raises(IngestError) as exc:
        list(read_logs([str(p)], strict=True, max_record_bytes=limit))
    assert f"{p}:2: field 'prompt': record larger than the record limit" in str(exc.value)
    # the same prompt is accepted under the default limit
    df, rej, _, _ = read_all(p)
    assert rej == [] and len(df) == 5 and len(df["prompt"].iloc[1]) == 5000


@pytest.mark.parametrize("ext", ["json", "csv", "parquet"])
def test_record_limit_in_other_formats(tmp_path: Path, ext: str) -> None:
    rows = [rec(0), rec(1, prompt="q" * 20_000), rec(2)]
    p = tmp_path / f"big.{ext}"
    if ext == "json":
        p.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    elif ext == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), p)
    else:
        write_csv(p, rows)
    df, rej, n, _ = read_all(p, max_record_bytes=8192)
    assert len(df) + len(rej) == n and len(rej) == 1
    r = rej[0]
    assert "max_record_bytes=8192" in r.reason
    assert r.field == "prompt"
    if ext == "json":  # a JSON array cannot be resynchronised past an element it did not read
        assert r.line == 7 and "rest of file skipped" in r.reason and df["prompt"].tolist() == ["prompt 0"]
    else:
        assert r.line == {"csv": 3, "parquet": 2}[ext]  # CSV: physical line (header is 1); Parquet: row
        assert df["prompt"].tolist() == ["prompt 0", "prompt 2"]


def test_batches_are_bounded_by_bytes_as_well_as_rows(tmp_path: Path) -> None:
    big = _long_prompt(50_000)
    rows = [rec(i, prompt=f"{i} {big}") for i in range(10)] + [rec(10 + i) for i in range(5)]
    p = write_jsonl(tmp_path / "b.jsonl", rows)
    df, rej, n, batches = read_all(p, batch_bytes=120_000)
    assert rej == [] and n == 15 and len(df) == 15
    assert [len(b.requests) for b in batches] == [3, 3, 3, 6]  # closed at >= 120k chars, or at the end
    assert max(sum(len(x) for x in b.requests["prompt"]) for b in batches) < 120_000 + 50_010
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "b.parquet")
    df2, _, _, batches2 = read_all(tmp_path / "b.parquet", batch_bytes=120_000)
    assert df2["prompt"].tolist() == df["prompt"].tolist() and len(batches2) >= 4


def test_overlong_physical_line_is_skipped_unread(tmp_path: Path) -> None:
    good = json.dumps(rec()).encode()
    p = tmp_path / "long.jsonl"
    p.write_bytes(good + b"\n" + b'{"prompt": "' + b"z" * 50_000 + b'"}\n' + good + b"\n")
    df, rej, n, _ = read_all(p, max_record_bytes=1024)
    assert n == 3 and len(df) == 2 and df["line"].tolist() == [1, 3]
    assert rej[0].line == 2 and rej[0].field == "prompt" and "record limit of 1,024 bytes" in rej[0].reason


@pytest.mark.parametrize("ext", ["jsonl", "csv", "json"])
def test_truncated_gzip(tmp_path: Path, ext: str) -> None:
    rows = [rec(i, prompt=f"prompt number {i} " + "pad " * 20) for i in range(3000)]
    p = tmp_path / f"t.{ext}.gz"
    if ext == "jsonl":
        write_jsonl(p, rows, gz=True)
    elif ext == "json":
        p.write_bytes(gzip.compress(json.dumps(rows, indent=1).encode()))
    else:
        write_csv(p, rows, gz=True)
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    df, rej, n, _ = read_all(p)
    assert 0 < len(df) < 3000
    assert len(rej) == 1 and rej[0].field == "<file>" and rej[0].reason.startswith("truncated gzip stream")
    assert n == len(df) + 1
    assert df["prompt"].tolist() == [r["prompt"] for r in rows[: len(df)]]  # rows before the break are intact
    with pytest.raises(IngestError, match="truncated gzip"):
        list(read_logs([str(p)], strict=True))


def test_not_gzip(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl.gz"
    p.write_bytes(b'{"a": 1}\n')
    r = only_reject(p)
    assert r.field == "<file>" and "gzip" in r.reason


def test_csv_bad_rows(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_bytes(
        b"account_id,timestamp,prompt,note\n"
        b'a1,2024-01-01,"ok ""quoted""",\n'  # 2
        b'a2,2024-01-01,"bad"x,\n'  # 3 broken quoting
        b"a3,2024-01-01,p3\n"  # 4 too few fields
        b'a4,2024-01-01,"caf\xe9\nsecond line",n\n'  # 5-6 invalid UTF-8
        b"a5,not a date,p5,\n"  # 7
        b",2024-01-01,p6,\n"  # 8 empty account
        b"a7,2024-01-01,,\n"  # 9 empty prompt
        b"a8,2024-01-01,p8,\x00\n"  # 10 fine (NUL in note)
        b'a9,1704067200000,"multi\nline",z\n'  # 11-12
    )
    df, rej, n, _ = read_all(p)
    assert n == 9
    assert df["account_id"].tolist() == ["a1", "a8", "a9"]
    assert df["line"].tolist() == [2, 10, 11]
    assert df["prompt"].tolist() == ['ok "quoted"', "p8", "multi\nline"]
    got = [(r.line, r.field, r.reason.split(":")[0]) for r in rej]
    assert got == [
        (3, "<line>", "malformed CSV"),
        (4, "<line>", "expected 4 fields, got 3"),
        (5, "<line>", "invalid UTF-8"),
        (7, "timestamp", "unparseable timestamp 'not a date'"),
        (8, "account_id", "missing or empty account_id"),
        (9, "prompt", "empty prompt"),
    ]
    assert "second line" in rej[2].raw


def test_csv_unclosed_quote_at_end(tmp_path: Path) -> None:
    p = tmp_path / "q.csv"
    p.write_bytes(b'account_id,timestamp,prompt\na1,2024-01-01,p1\na2,2024-01-01,"never closed\na3,x,y\n')
    df, rej, n, _ = read_all(p)
    assert df["account_id"].tolist() == ["a1"] and n == 2
    assert rej[0].line == 3 and rej[0].field == "<line>"


def test_csv_bad_header(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_bytes(b'account_id,"time\xff",prompt\na1,2024-01-01,p1\n')
    r = only_reject(p)
    assert r.field == "<file>" and "header" in r.reason


def test_json_array_bad_elements(tmp_path: Path) -> None:
    p = tmp_path / "a.json"
    p.write_bytes(
        b'[{"account_id": "a", "timestamp": 1704067200, "prompt": "p1"},\n'
        b' 5,\n'
        b' {"account_id": "b", "timestamp": 1704067200, "prompt": "caf\xe9"},\n'
        b' {"account_id": "c", "timestamp": 1704067200, "prompt": "p4"},\n'
        b' {"account_id": "d", "timestamp": \n'
    )  # fmt: skip
    df, rej, n, _ = read_all(p)
    assert df["account_id"].tolist() == ["a", "c"]
    assert [(r.line, r.field) for r in rej] == [(2, "<line>"), (3, "<line>"), (5, "<line>")]
    assert "not a JSON object" in rej[0].reason and "invalid UTF-8" in rej[1].reason
    assert "rest of file skipped" in rej[2].reason
    assert n == 5


def test_fuzz_corpus_never_crashes() -> None:
    files = sorted(p for p in FUZZ.iterdir() if p.is_file() and not p.name.startswith("."))
    assert len(files) >= 15
    expected = {  # file: (accepted, rejected)
        "array.json": (3, 1), "array_broken.json": (1, 1), "bad_fields.jsonl": (1, 11),
        "bad_utf8.csv": (2, 1), "bad_utf8.jsonl": (2, 1), "blank_lines.jsonl": (2, 0), "bom.jsonl": (2, 0),
        "broken_quote.csv": (2, 2), "corrupt.parquet": (0, 1), "crlf.tsv": (2, 0),
        "embedded_newline.csv": (3, 0), "empty.csv": (0, 0), "empty.jsonl": (0, 0), "header_only.csv": (0, 0),
        "json_lines.json": (2, 1), "malformed.jsonl": (2, 6), "not_gzip.jsonl.gz": (0, 1),
        "nul_prompt.jsonl": (1, 1), "surrogate.jsonl": (1, 1), "truncated.jsonl.gz": (691, 1),
        "wrong_width.csv": (1, 2),
    }  # fmt: skip
    for f in files:
        df, rej, n, _ = read_all(f)
        assert len(df) + len(rej) == n, f.name
        for r in rej:
            assert r.source == str(f) and r.field and r.reason and len(r.raw) <= 2000
        if f.name in expected:
            assert (len(df), len(rej)) == expected[f.name], f.name
        if len(df):
            assert not df["prompt"].str.strip().eq("").any()
            df["prompt"].map(lambda s: s.encode("utf-8"))  # every accepted text is valid Unicode


def test_count_invariant_across_all_bad_files() -> None:
    files = [str(p) for p in sorted(FUZZ.iterdir()) if p.is_file()]
    batches = list(read_logs(files, batch_size=2))
    assert sum(len(b.requests) + len(b.rejected) for b in batches) == sum(b.n_read for b in batches)
    assert {b.source for b in batches} == set(files)  # every file yields at least one batch


# --------------------------------------------------------------------------------------------------------
# paths and errors
# --------------------------------------------------------------------------------------------------------
def test_expand_paths(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for rel in ["d/b.jsonl", "d/a.csv", "d/sub/c.parquet", "d/sub/e.jsonl.gz", "d/readme.txt", "d/.hidden.jsonl"]:
        (tmp_path / rel).write_bytes(b"")
    d = str(tmp_path / "d")
    assert expand_paths([d]) == [f"{d}/a.csv", f"{d}/b.jsonl", f"{d}/sub/c.parquet", f"{d}/sub/e.jsonl.gz"]
    assert expand_paths([f"{d}/**/*.jsonl*"]) == [f"{d}/b.jsonl", f"{d}/sub/e.jsonl.gz"]
    assert expand_paths([f"{d}/b.jsonl", f"{d}/*.jsonl"]) == [f"{d}/b.jsonl"]  # no duplicates
    with pytest.raises(IngestError, match="nomatch"):
        expand_paths([f"{d}/nomatch*.csv"])
    with pytest.raises(IngestError, match="missing.jsonl"):
        expand_paths([f"{d}/missing.jsonl"])


def test_missing_and_unknown_files_raise(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="nope.jsonl"):
        list(read_logs([str(tmp_path / "nope.jsonl")]))
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(IngestError, match="unsupported file type"):
        list(read_logs([str(tmp_path / "x.txt")]))


def test_strict_mode_message(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "s.jsonl", [rec(0), rec(1, timestamp="garbage")])
    gen = read_logs([str(p)], strict=True)
    with pytest.raises(IngestError) as exc:
        list(gen)
    assert str(exc.value).startswith(f"{p}:2: field 'timestamp': unparseable timestamp")


# --------------------------------------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------------------------------------
_text = st.text(
    alphabet=st.characters(exclude_categories=("Cs", "Cc"), include_characters="\n\t\r"), min_size=1, max_size=40
).filter(lambda s: not s.isspace())
_ids = st.text(alphabet=st.characters(exclude_categories=("Cs", "Cc", "Z")), min_size=1, max_size=10)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.lists(
        st.fixed_dictionaries({"account_id": _ids, "prompt": _text, "ts": st.integers(946684800, 4102444800)}),
        min_size=1, max_size=8,
    ),
    fmt=st.sampled_from(["jsonl", "csv", "tsv", "json", "jsonl.gz", "csv.gz"]),
)  # fmt: skip
def test_prompt_round_trip(records: list[dict], fmt: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"log.{fmt}"
        gz = fmt.endswith(".gz")
        if fmt.startswith("jsonl"):
            write_jsonl(p, records, gz=gz)
        elif fmt == "json":
            p.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        else:
            write_csv(p, [{k: str(v) for k, v in r.items()} for r in records], "\t" if fmt == "tsv" else ",", gz)
        df, rej, n, _ = read_all(p)
    assert rej == [] and n == len(records)
    assert df["prompt"].tolist() == [r["prompt"] for r in records]
    assert df["account_id"].tolist() == [r["account_id"] for r in records]
    assert df["prompt_hash"].tolist() == [prompt_hash(r["prompt"]) for r in records]
    assert [int(t.timestamp()) for t in df["ts"]] == [r["ts"] for r in records]


_valid_line = st.builds(lambda i: json.dumps(rec(i)).encode(), st.integers(0, 1000))


@settings(max_examples=60, deadline=None)
@given(
    items=st.lists(st.one_of(_valid_line.map(lambda b: ("ok", b)), st.binary(max_size=60).map(lambda b: ("junk", b))),
                   max_size=12),
    fmt=st.sampled_from(["jsonl", "csv", "json", "jsonl.gz"]),
)  # fmt: skip
def test_count_invariant_with_garbage(items: list[tuple[str, bytes]], fmt: str) -> None:
    lines = []
    for kind, b in items:
        if fmt == "csv" and kind == "ok":
            r = json.loads(b)
            b = f'{r["account_id"]},{r["timestamp"]},{r["prompt"]}'.encode()
        lines.append(b)
    data = (b"account_id,timestamp,prompt\n" if fmt == "csv" else b"") + b"\n".join(lines) + b"\n"
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"g.{fmt}"
        p.write_bytes(gzip.compress(data) if fmt.endswith(".gz") else data)
        batches = list(read_logs([str(p)], batch_size=3))
    accepted = sum(len(b.requests) for b in batches)
    rejected = sum(len(b.rejected) for b in batches)
    assert accepted + rejected == sum(b.n_read for b in batches)
    n_ok = sum(kind == "ok" for kind, _ in items)
    if fmt in ("jsonl", "jsonl.gz") and all(b"\n" not in b for _, b in items):
        assert accepted == n_ok
    for b in batches:
        for r in b.rejected:
            assert r.source == str(p) and r.line >= 0 and r.field and r.reason


def test_surrogates_never_reach_the_frame(tmp_path: Path) -> None:
    p = tmp_path / "s.jsonl"
    p.write_bytes(b'{"account_id": "a", "timestamp": 1704067200, "prompt": "ok", "note": "\\ud83d"}\n')
    r = only_reject(p)
    assert r.field == "note" and "surrogate" in r.reason


def test_csv_field_larger_than_default_limit(tmp_path: Path) -> None:
    big = "w" * 200_000
    p = write_csv(tmp_path / "big.csv", [{"account_id": "a", "timestamp": str(TS), "prompt": big}])
    df, rej, _, _ = read_all(p)
    assert rej == [] and df["prompt"].iloc[0] == big


@pytest.mark.parametrize("ext", ["jsonl", "json", "csv", "tsv", "parquet", "jsonl.gz", "csv.gz", "json.gz"])
def test_random_mutations_never_crash(tmp_path: Path, ext: str) -> None:
    import random

    rng = random.Random(ext)
    rows = [rec(i, prompt=f"p {i} ü\nx", model="m", n=i) for i in range(20)]
    rows[3] = rec(3, prompt=..., messages=[{"role": "user", "content": [{"type": "text", "text": "t"}]}])
    if ext.startswith("jsonl"):
        data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    elif ext.startswith("json"):
        data = json.dumps(rows, indent=1).encode()
    elif ext == "parquet":
        sink = io.BytesIO()
        pq.write_table(pa.Table.from_pylist([{k: str(v) for k, v in r.items()} for r in rows]), sink)
        data = sink.getvalue()
    else:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["account_id", "timestamp", "prompt", "model", "n"],
                           delimiter="\t" if ext == "tsv" else ",", extrasaction="ignore")  # fmt: skip
        w.writeheader()
        w.writerows(rows)
        data = buf.getvalue().encode()
    if ext.endswith(".gz"):
        data = gzip.compress(data)
    p = tmp_path / f"m.{ext}"
    for _ in range(60):
        d = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            if not d:
                break
            i = rng.randrange(len(d))
            op = rng.random()
            if op < 0.4:
                d[i] = rng.randrange(256)
            elif op < 0.6:
                del d[i : i + rng.randint(1, 20)]
            elif op < 0.85:
                d[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            else:
                d = d[: max(i, 1)]
        p.write_bytes(bytes(d))
        df, rej, n, _ = read_all(p, batch_size=7)
        assert len(df) + len(rej) == n
        for col in ("prompt", "account_id", "request_id", "system_prompt", "extra", "model"):
            for v in df[col]:
                assert v is None or isinstance(v.encode("utf-8"), bytes)
        for r in rej:
            (r.raw + r.reason + r.field).encode("utf-8")


def test_files_parsed_by_several_workers_give_the_same_batches_in_the_same_order() -> None:
    """Parallel reading of several files (a provider's export in shards): every batch as one reader gives it,
    in file order, bad rows and all; it needs the files to be several to use the workers."""
    files = [str(p) for p in sorted(FUZZ.iterdir()) if p.is_file()]
    one = list(read_logs(files, batch_size=2))
    two = list(read_logs(files, batch_size=2, workers=2))
    assert len(one) == len(two) > len(files)
    for a, b in zip(one, two, strict=True):
        assert (a.source, a.n_read, a.rejected) == (b.source, b.n_read, b.rejected)
        pd.testing.assert_frame_equal(a.requests, b.requests)


def test_one_file_parsed_by_a_worker_process_gives_the_batches_one_reader_gives() -> None:
    """A single large log is parsed by a reader process while the caller stores its batches: the same batches
    in the same order as parsing it here, bad rows and all."""
    path = max((p for p in FUZZ.iterdir() if p.is_file()), key=lambda p: p.stat().st_size)
    one = list(read_logs([str(path)], batch_size=2))
    two = list(read_logs([str(path)], batch_size=2, workers=2))
    assert len(one) == len(two) > 1
    for a, b in zip(one, two, strict=True):
        assert (a.source, a.n_read, a.rejected) == (b.source, b.n_read, b.rejected)
        pd.testing.assert_frame_equal(a.requests, b.requests)


def test_strict_parallel_reading_yields_a_files_batches_before_its_bad_record(tmp_path: Path) -> None:
    """The batches a worker made before a bad record come first (the caller stores them as one reader would),
    then the error naming the file and line."""
    path = tmp_path / "a.jsonl"
    write_jsonl(path, [rec(request_id=f"r{i}") for i in range(5)])
    with path.open("ab") as fh:
        fh.write(b'{"account_id": "x", "timestamp": "2026-01-01T00:00:00Z"}\n')
    sizes = {}
    for workers in (1, 2):
        got = []
        with pytest.raises(IngestError, match=r"a\.jsonl:6: field"):
            for batch in read_logs([str(path)], strict=True, batch_size=2, workers=workers):
                got.append(batch)
        sizes[workers] = [len(b.requests) for b in got]
    assert sizes[1] == sizes[2] == [2, 2]


def test_strict_parallel_reading_stops_at_the_first_bad_file_in_order(tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "a.jsonl", [rec(request_id=f"r{i}") for i in range(3)])
    bad = tmp_path / "b.jsonl"
    bad.write_bytes(b'{"account_id": "x", "timestamp": "2026-01-01T00:00:00Z"}\n')
    later = write_jsonl(tmp_path / "c.jsonl", [rec(request_id="r9")])
    got = []
    with pytest.raises(IngestError, match=r"b\.jsonl:1: field"):
        for batch in read_logs([str(good), str(bad), str(later)], strict=True, workers=3):
            got.append(batch)
    assert [b.source for b in got] == [str(good)] and len(got[0].requests) == 3


def test_a_workspace_ingested_by_several_workers_holds_what_one_reader_stores(tmp_path: Path) -> None:
    from analyzer import pipeline
    from analyzer.workspace import Workspace

    files = [str(p) for p in sorted(FUZZ.iterdir()) if p.is_file()]
    stored = []
    for workers in (1, 2):
        with Workspace(str(tmp_path / f"ws{workers}"), create=True) as ws:
            run_id = ws.start_run("ingest", {}, {})
            counts = pipeline.ingest(ws, files, run_id, progress=False, workers=workers)
            # by content: DuckDB's inserts need not keep a frame's row order (the batches' order is tested above)
            tables = {t: ws.db.execute(f"SELECT * FROM {t} ORDER BY ALL").df()
                      for t in ("requests", "prompts", "rejected", "ingest_log")}
            quarantine = Path(pipeline.quarantine_path(ws, run_id)).read_bytes()
        stored.append((counts, tables, quarantine))
    (c1, t1, q1), (c2, t2, q2) = stored
    assert c1 == c2 and c1["rejected"] > 0 and q1 == q2
    for name in t1:
        pd.testing.assert_frame_equal(t1[name].drop(columns=["run_id"], errors="ignore"),
                                      t2[name].drop(columns=["run_id"], errors="ignore"), check_dtype=False)
