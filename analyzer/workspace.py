"""The workspace: one folder holding a DuckDB database, embedding shards and the FAISS index.

Everything that touches disk lives here; with :mod:`analyzer.store` (read-only queries) it is the only code
that speaks SQL. Writes are atomic: files go to a temporary name and are renamed,
database changes run in transactions, and an embedding shard is recorded in the database only after its
file is complete, so a run killed at any point can simply be started again. Only one process may write to
a workspace at a time (``.lock``). Nothing here ever unpickles: arrays are read with
``allow_pickle=False`` and all metadata is JSON, so opening a shared workspace cannot run code.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
from collections.abc import Iterator
from datetime import UTC, datetime

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from analyzer import catalog, store
from analyzer.atomic import atomic_open, atomic_write_bytes  # noqa: F401 - atomic_write_bytes: callers import it from here
from analyzer.checkpoints import checkpoint
from analyzer.retry import Backoff, retry

DB_NAME = "analyzer.duckdb"
#: How long opening the database waits for another process that holds it for a moment (the app's short
#: read-only queries, a run opening it for writing): 0.05 s, doubling up to 0.5 s, for 3 s in all.
_CONNECT_BACKOFF = Backoff(first_s=0.05, factor=2.0, max_s=0.5, total_s=3.0)

#: The fields of ``clusters.signals``: what the label stage records about every cluster (fixed keys, so a
#: STRUCT). Every key an earlier release wrote is one of them, so migrating its JSON text loses nothing.
CLUSTER_SIGNAL_FIELDS = (("template_coverage", "DOUBLE"), ("n_fixed_words", "INTEGER"), ("n_slots", "INTEGER"),
                         ("slot_entropy", "DOUBLE"), ("training_value", "DOUBLE"), ("intent", "VARCHAR"),
                         ("intent_similarity", "DOUBLE"), ("tightness", "DOUBLE"))
CLUSTER_SIGNALS = "STRUCT(" + ", ".join(f"{name} {kind}" for name, kind in CLUSTER_SIGNAL_FIELDS) + ")"
#: Campaign and account signals: name -> value in [0, 1] or NULL (not applicable). The names differ between rows
#: (a campaign formed from a watch entry has its own two; an account without a campaign has none), so a MAP,
#: which keeps each row's keys and their order.
SIGNAL_MAP = "MAP(VARCHAR, DOUBLE)"

#: The structured columns, by table: lists, STRUCTs and MAPs for values of a fixed shape; DuckDB's ``JSON`` for
#: free-form documents (run parameters and stats, a watch entry's fingerprint, a request's extra log fields),
#: whose keys change with the options, the release or the logs. An earlier release stored all of them as JSON
#: text in VARCHAR columns: :func:`legacy_columns` finds those, the writer migrates them in place and a
#: read-only handle reads them through typed views (:func:`read_legacy_as_typed`).
TYPED_COLUMNS: dict[str, dict[str, str]] = {
    "requests": {"extra": "JSON"},
    "clusters": {"keywords": "VARCHAR[]", "exemplars": "VARCHAR[]", "signals": CLUSTER_SIGNALS},
    "campaigns": {"keywords": "VARCHAR[]", "clusters": "INTEGER[]", "signals": SIGNAL_MAP, "evidence": "VARCHAR[]",
                  "examples": "VARCHAR[]"},
    "campaign_accounts": {"evidence": "VARCHAR[]"},
    "accounts": {"signals": SIGNAL_MAP},
    "watchlist": {"fingerprint": "JSON"},
    "runs": {"params": "JSON", "versions": "JSON", "stats": "JSON"},
    "campaign_history": {"parent_ids": "VARCHAR[]"},
}

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS requests(
    request_id VARCHAR, account_id VARCHAR, ts TIMESTAMPTZ, prompt_hash VARCHAR, system_prompt VARCHAR,
    model VARCHAR, ip VARCHAR, user_agent VARCHAR, api_key_id VARCHAR, org_id VARCHAR, payment_id VARCHAR,
    country VARCHAR, extra JSON, source VARCHAR, line BIGINT, run_id BIGINT);
CREATE TABLE IF NOT EXISTS prompts(prompt_hash VARCHAR PRIMARY KEY, text VARCHAR, n_chars INTEGER);
CREATE TABLE IF NOT EXISTS embedded(prompt_hash VARCHAR, model_key VARCHAR, shard INTEGER, "row" INTEGER);
CREATE TABLE IF NOT EXISTS rejected(run_id BIGINT, source VARCHAR, line BIGINT, field VARCHAR, reason VARCHAR,
    raw VARCHAR);
CREATE TABLE IF NOT EXISTS ingest_log(run_id BIGINT, source VARCHAR, n_read BIGINT, n_accepted BIGINT,
    n_rejected BIGINT, n_duplicates BIGINT);
CREATE TABLE IF NOT EXISTS prompt_clusters(prompt_hash VARCHAR, cluster_id INTEGER, probability DOUBLE,
    assigned_cluster INTEGER, intent VARCHAR, intent_similarity DOUBLE);
CREATE TABLE IF NOT EXISTS system_clusters(system_hash VARCHAR, cluster_id INTEGER, intent VARCHAR,
    intent_similarity DOUBLE);
CREATE TABLE IF NOT EXISTS clusters(cluster_id INTEGER, n_prompts INTEGER, n_requests BIGINT, n_accounts INTEGER,
    label VARCHAR, keywords VARCHAR[], template VARCHAR, exemplars VARCHAR[], signals {CLUSTER_SIGNALS});
CREATE TABLE IF NOT EXISTS cluster_campaigns(cluster_id INTEGER, campaign_id VARCHAR);
CREATE TABLE IF NOT EXISTS campaigns(campaign_id VARCHAR, rank INTEGER, score DOUBLE, flagged BOOLEAN,
    label VARCHAR, kind VARCHAR, keywords VARCHAR[], template VARCHAR, n_accounts INTEGER, n_requests BIGINT,
    first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ, clusters INTEGER[], signals {SIGNAL_MAP}, evidence VARCHAR[],
    examples VARCHAR[]);
CREATE TABLE IF NOT EXISTS campaign_accounts(campaign_id VARCHAR, account_id VARCHAR, n_requests BIGINT,
    share DOUBLE, score DOUBLE, evidence VARCHAR[]);
CREATE TABLE IF NOT EXISTS accounts(account_id VARCHAR, n_requests BIGINT, n_prompts BIGINT,
    first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ, top_cluster INTEGER, campaign_id VARCHAR, score DOUBLE,
    signals {SIGNAL_MAP});
CREATE TABLE IF NOT EXISTS prompt_map(prompt_hash VARCHAR, x DOUBLE, y DOUBLE);
CREATE TABLE IF NOT EXISTS triage(campaign_id VARCHAR, status VARCHAR, note VARCHAR, analyst VARCHAR,
    decided_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS watchlist(watch_id VARCHAR, campaign_id VARCHAR, status VARCHAR, source VARCHAR,
    created_at TIMESTAMPTZ, analyst VARCHAR, note VARCHAR, fingerprint JSON);
CREATE TABLE IF NOT EXISTS watch_vectors(watch_id VARCHAR, model_key VARCHAR, "row" INTEGER, vector FLOAT[]);
CREATE TABLE IF NOT EXISTS runs(run_id BIGINT, command VARCHAR, started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ, status VARCHAR, params JSON, versions JSON, stats JSON);
CREATE TABLE IF NOT EXISTS campaign_history(run_id BIGINT, campaign_id VARCHAR, transition VARCHAR,
    parent_ids VARCHAR[], n_accounts INTEGER, n_requests BIGINT, score DOUBLE, flagged BOOLEAN,
    recorded_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS campaign_identity(campaign_id VARCHAR, first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ,
    first_flagged_at TIMESTAMPTZ, first_flagged_run_id BIGINT, first_run_id BIGINT, last_run_id BIGINT);
CREATE TABLE IF NOT EXISTS campaign_members(campaign_id VARCHAR, kind VARCHAR, member VARCHAR, weight BIGINT);
CREATE TABLE IF NOT EXISTS campaign_ended_members(campaign_id VARCHAR, kind VARCHAR, member VARCHAR, weight BIGINT,
                                                  ended_run BIGINT);
"""

# Columns added after a table was first released: applied to older workspaces when they are opened.
MIGRATIONS = """
ALTER TABLE prompt_clusters ADD COLUMN IF NOT EXISTS assigned_cluster INTEGER;
ALTER TABLE prompt_clusters ADD COLUMN IF NOT EXISTS intent VARCHAR;
ALTER TABLE prompt_clusters ADD COLUMN IF NOT EXISTS intent_similarity DOUBLE;
ALTER TABLE prompt_clusters ADD COLUMN IF NOT EXISTS task_id BIGINT;
ALTER TABLE clusters ADD COLUMN IF NOT EXISTS kind VARCHAR;
"""

#: A workspace made before the score stage had a table of its own for each cluster's campaign kept it in
#: ``clusters.campaign_id``: moved to ``cluster_campaigns`` (the label stage's table is not the score stage's).
CAMPAIGN_COLUMN_MIGRATION = """
INSERT INTO cluster_campaigns SELECT cluster_id, campaign_id FROM clusters WHERE campaign_id IS NOT NULL;
ALTER TABLE clusters DROP COLUMN campaign_id;
"""

def legacy_columns(db: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
    """The columns of :data:`TYPED_COLUMNS` that this database still holds as JSON text (VARCHAR), as written by
    an earlier release: ``{table: {column: type it should have}}``; empty for a current workspace."""
    rows = db.execute(
        """SELECT table_name, column_name FROM information_schema.columns
           WHERE table_catalog = current_database() AND table_schema = 'main' AND data_type = 'VARCHAR'""").fetchall()
    out: dict[str, dict[str, str]] = {}
    for table, column in rows:
        if column in TYPED_COLUMNS.get(table, {}):
            out.setdefault(table, {})[column] = TYPED_COLUMNS[table][column]
    return out


def from_json_text(column: str, kind: str) -> str:
    """SQL turning the JSON text of ``column`` (an earlier release's VARCHAR) into a value of type ``kind``.

    NULL and empty text become NULL (the readers of JSON text read both as empty). A ``JSON`` column keeps the
    document as it was; text that is not JSON becomes a JSON string, so nothing is lost. A STRUCT takes the
    keys it names (:func:`check_struct_keys` makes sure there are no others); lists and maps are cast.
    """
    col = f'"{column}"'
    if kind == "JSON":
        return f"CASE WHEN {col} IS NULL THEN NULL WHEN json_valid({col}) THEN {col}::JSON ELSE to_json({col}) END"
    text = f"nullif(trim({col}), '')"
    if kind == CLUSTER_SIGNALS:
        shape = json.dumps(dict(CLUSTER_SIGNAL_FIELDS))
        return f"json_transform({text}, '{shape}')"
    return f"CAST({text}::JSON AS {kind})"


def check_struct_keys(db: duckdb.DuckDBPyConnection, legacy: dict[str, dict[str, str]]) -> None:
    """Raise :class:`WorkspaceCorrupt` when JSON text about to become a STRUCT holds a key the STRUCT has no
    field for (migrating it would drop that value)."""
    fields = {name for name, _kind in CLUSTER_SIGNAL_FIELDS}
    for table, columns in legacy.items():
        for column, kind in columns.items():
            if kind != CLUSTER_SIGNALS:
                continue
            keys = {k for (k,) in db.execute(
                f"""SELECT DISTINCT unnest(json_keys("{column}")) FROM {table}
                    WHERE json_valid("{column}") AND json_type("{column}") = 'OBJECT'""").fetchall()}
            if keys - fields:
                raise WorkspaceCorrupt(
                    f"{table}.{column} holds keys {sorted(keys - fields)} that this release does not know; "
                    "refusing to migrate the workspace (they would be lost)")


def migrate_legacy_columns(db: duckdb.DuckDBPyConnection, legacy: dict[str, dict[str, str]]) -> None:
    """Convert an earlier release's JSON text columns (``legacy``: :func:`legacy_columns`, checked by
    :func:`check_struct_keys`) to their types, in place (the caller holds the transaction)."""
    for table, columns in legacy.items():
        for column, kind in columns.items():
            db.execute(f'ALTER TABLE {table} ALTER COLUMN "{column}" SET DATA TYPE {kind} '
                       f"USING {from_json_text(column, kind)}")


def read_legacy_as_typed(db: duckdb.DuckDBPyConnection) -> list[str]:
    """On a read-only connection to an earlier release's workspace: temporary views, one per table with JSON text
    columns and under its name, that show those columns typed as a current workspace holds them (the file is
    not changed; the next writer migrates it). Returns the tables so shown (none for a current workspace)."""
    legacy = legacy_columns(db)
    if not legacy:
        return []
    catalog = db.execute("SELECT current_database()").fetchall()[0][0].replace('"', '""')
    for table, columns in legacy.items():
        replace = ", ".join(f'{from_json_text(c, k)} AS "{c}"' for c, k in columns.items())
        db.execute(f'CREATE OR REPLACE TEMP VIEW {table} AS SELECT * REPLACE ({replace}) FROM "{catalog}".main.{table}')
    return list(legacy)


def _is_missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _arrow_value(value: object, kind: pa.DataType, where: str) -> object:
    """One Python value of a structured column in the form Arrow builds ``kind`` from (``None`` for missing)."""
    if _is_missing(value):
        return None
    if isinstance(value, str | bytes):
        raise TypeError(f"{where} takes a {kind}, not text ({str(value)[:40]!r}): pass the list or dict itself")
    if pa.types.is_map(kind):
        return list(dict(value).items())
    if pa.types.is_struct(kind):
        unknown = set(value) - {f.name for f in kind}
        if unknown:
            raise ValueError(f"{where} has no field for {sorted(unknown)}")
        return dict(value)
    return value.tolist() if isinstance(value, np.ndarray) else list(value)


def typed_frame(db: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its structured columns (lists, STRUCTs, MAPs of :data:`TYPED_COLUMNS`) as Arrow arrays of
    the exact types of ``table``'s columns, so that DuckDB stores what the Python values hold (left to itself it
    guesses a type from the values, and dicts with different keys would not become a MAP)."""
    structured = [c for c, kind in TYPED_COLUMNS.get(table, {}).items()
                  if c in frame.columns and kind != "JSON" and not isinstance(frame[c].dtype, pd.ArrowDtype)]
    if not structured:
        return frame
    cols = ", ".join(f'"{c}"' for c in structured)
    schema = db.sql(f"SELECT {cols} FROM {table} LIMIT 0").to_arrow_table().schema
    out = frame.copy(deep=False)
    for c in structured:
        kind = schema.field(c).type
        values = [_arrow_value(v, kind, f"{table}.{c}") for v in frame[c]]
        out[c] = pd.Series(pd.arrays.ArrowExtensionArray(pa.array(values, type=kind)), index=frame.index)
    return out


RESULT_TABLES = ("prompt_clusters", "system_clusters", "clusters", "campaigns", "campaign_accounts", "accounts")


#: The unit a request counts towards: its prompt's template or scaffold family, else its system prompt's family,
#: else its prompt's (possibly attributed) topic cluster; -1 for none. Over :data:`UNIT_JOINS`.
UNIT_SQL = """CASE WHEN c.kind IN ('template', 'scaffold') THEN pc.assigned_cluster
                        WHEN sc.cluster_id >= 0 THEN sc.cluster_id
                        ELSE coalesce(pc.assigned_cluster, -1) END"""
#: The joins :data:`UNIT_SQL` reads; ``{kinds}``: a relation of ``cluster_id, kind``.
UNIT_JOINS = """FROM requests r LEFT JOIN prompt_clusters pc USING (prompt_hash)
            LEFT JOIN {kinds} c ON c.cluster_id = pc.assigned_cluster
            LEFT JOIN system_clusters sc ON sc.system_hash = md5(r.system_prompt)"""


def embedding_row_ids(shards: pd.Series | np.ndarray, rows: pd.Series | np.ndarray) -> np.ndarray:
    """The id of each stored vector (its embedding shard and row, ``shard << 32 | row``): the ids of the
    workspace's FAISS index (:func:`analyzer.index.update_index`)."""
    return (np.asarray(shards, dtype=np.int64) << 32) | np.asarray(rows, dtype=np.int64)


#: The memory limit DuckDB is lowered to for a moment by :meth:`Workspace.release_cache` (evicting its cached
#: blocks); its own limit is restored right after.
CACHE_RELEASE_LIMIT = "1MB"

#: Committed changes DuckDB keeps in its write-ahead log before it checkpoints them into the database file
#: (DuckDB's default: 16 MiB). At the default every ingest batch (up to 40,000 requests with their texts) passed
#: it, and each checkpoint wrote the prompts' key index and the half-filled row groups again: storing the 1M
#: scale log's batches took 21 s, against 10 s at 256 MiB, at the same memory. Commits stay durable (the log is
#: written at each one; a killed run's log is replayed when the workspace is next opened).
CHECKPOINT_THRESHOLD = "256MB"


def arrow_frame(source: pa.Table | duckdb.DuckDBPyRelation) -> pd.DataFrame:
    """An Arrow table (or a DuckDB relation, read as one) as the frame DuckDB's ``.df()`` gives (in about half
    the time for 100k rows): integer columns holding NULLs become pandas' nullable integers, as there, rather
    than floats.

    Every column is one contiguous array: DuckDB hands a result over in chunks of ~125k rows, and taking rows of
    a chunked column (``iloc`` with positions) concatenates the whole column first, every time (at 4M requests a
    take of 20k rows: 1.65 s chunked, 0.015 s contiguous). The chunks are joined in Arrow before the frame is
    made (Arrow keeps a string column in two or more arrays where one would pass its 2 GB offsets), and given a
    relation, its own result is let go then: the frame holds none of DuckDB's chunks (at 4M requests: 1.8 GB
    resident after the read, against 2.5 GB with the columns joined one by one in the frame)."""
    table = source if isinstance(source, pa.Table) else source.to_arrow_table()
    del source
    table = table.combine_chunks()
    frame = table.to_pandas()
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_integer(column.type) and column.null_count:
            kind = f"{'U' if pa.types.is_unsigned_integer(column.type) else ''}Int{column.type.bit_width}"
            frame[name] = pd.array(column.to_pylist(), dtype=kind)
    return frame


class WorkspaceLocked(RuntimeError):
    """Another process is writing to this workspace."""


class WorkspaceBusy(WorkspaceLocked, duckdb.IOException):
    """Another process has the workspace database open for writing (a run in progress).

    Also a ``duckdb.IOException``, which is what DuckDB raises for a database locked by another process.
    """


class WorkspaceMissing(FileNotFoundError):
    """The folder is not an analyzer workspace."""


class Discard(Exception):  # noqa: N818 - not an error: the way out of a transaction that writes nothing
    """Raised inside :meth:`Workspace.transaction` to roll it back without an error (nothing to commit)."""


class WorkspaceCorrupt(RuntimeError):
    """A workspace file is missing, truncated or not what it should be (never unpickled)."""


def now_utc() -> datetime:
    return datetime.now(UTC)


def atomic_save_npy(path: str, array: np.ndarray) -> None:
    """Save ``array`` as ``.npy`` atomically (complete and on disk before it appears under ``path``)."""
    with atomic_open(path, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


class StoredVectors:
    """The workspace's vectors for one model, in the order of its ``rows`` (``shard, row``), read from their
    shards only when asked for: ``vectors[positions]`` (an integer array, a boolean mask or a slice) reads and
    L2-normalises those rows (each shard file read once); ``np.asarray(vectors)`` reads them all, once, as
    :meth:`Workspace.load_vectors` does. ``shape`` and ``len`` read nothing but the first shard.

    Raises :class:`WorkspaceCorrupt` for a missing or damaged shard, or one shorter than a row asks for."""

    def __init__(self, ws: Workspace, model_key: str, rows: pd.DataFrame) -> None:
        self._ws, self._key = ws, model_key
        self._rows = rows[["shard", "row"]].reset_index(drop=True)
        self._all: np.ndarray | None = None
        self._shards: dict[int, np.ndarray] = {}
        dim = int(self._shard(int(self._rows["shard"].iloc[0])).shape[1]) if len(self._rows) else 0
        self.shape = (len(self._rows), dim)

    def __len__(self) -> int:
        return self.shape[0]

    def _shard(self, shard: int) -> np.ndarray:
        if shard not in self._shards:  # each shard file read once (as stored: half the memory of float32)
            self._shards[shard] = load_npy(self._ws.shard_path(self._key, shard))
        return self._shards[shard]

    def _read(self, positions: np.ndarray, keep: bool = True) -> np.ndarray:
        """The L2-normalised float32 vectors of the rows at ``positions``, in that order. Shard by shard, each
        shard's rows normalised on their own (no second array the size of the result); ``keep=False`` drops each
        shard file once its rows are taken (a read of every row: the float16 shards need not all be held)."""
        rows = self._rows.iloc[positions].reset_index(drop=True)
        out = np.zeros((len(rows), self.shape[1]), dtype=np.float32)
        for shard, grp in rows.groupby("shard", sort=True):
            arr = self._shard(int(shard))
            need = int(grp["row"].max()) + 1
            if arr.shape[0] < need:
                raise WorkspaceCorrupt(
                    f"{self._ws.shard_path(self._key, int(shard))} has {arr.shape[0]} rows but the database "
                    f"expects {need}; run 'analyzer embed' to re-embed the missing prompts"
                )
            block = arr[grp["row"].to_numpy()].astype(np.float32)
            norms = np.linalg.norm(block, axis=1, keepdims=True)  # row by row: as over the whole result
            block /= np.where(norms > 0, norms, 1.0)
            out[grp.index.to_numpy()] = block
            if not keep:
                del self._shards[int(shard)]
        return out

    def __getitem__(self, sel) -> np.ndarray:
        if self._all is not None:
            return self._all[sel]
        pos = np.arange(self.shape[0])[sel]
        return self._read(pos) if pos.ndim else self._read(pos.reshape(1))[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if self._all is None:
            self._all = self._read(np.arange(self.shape[0]), keep=False)
            self._shards.clear()
        out = self._all if dtype is None else self._all.astype(dtype, copy=False)
        return out.copy() if copy and out is self._all else out  # np.array(...) must not hand out the cache


def load_npy(path: str) -> np.ndarray:
    """Load a numeric ``.npy`` file without ever unpickling; a clear error for anything else.

    Raises :class:`WorkspaceCorrupt` for a missing, truncated or non-numeric (object / pickled) array.
    """
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise WorkspaceCorrupt(f"{path} is missing") from None
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise WorkspaceCorrupt(
                f"{path} holds a Python object array (pickled data); refusing to load it: workspace files must "
                "be plain numeric arrays. Was this workspace tampered with? Re-embed into a fresh workspace."
            ) from None
        raise WorkspaceCorrupt(f"{path} is not a readable .npy array ({exc})") from None
    except (OSError, EOFError) as exc:
        raise WorkspaceCorrupt(f"{path} is not a readable .npy array ({exc})") from None
    if arr.dtype.kind != "f" or arr.ndim != 2:
        raise WorkspaceCorrupt(f"{path} holds a {arr.dtype} array of shape {arr.shape}, expected a 2-D float array")
    return arr


class Workspace:
    """A workspace folder. ``Workspace(path, create=True)`` makes it if needed.

    Use ``with ws.writing():`` around anything that changes it; read-only users open it with
    ``read_only=True`` (no DDL, no lock). With :mod:`analyzer.store` this class is the SQL layer: other
    modules call its methods (or ``store``'s functions) and never ``ws.db`` directly.
    """

    def __init__(self, path: str, create: bool = False, read_only: bool = False) -> None:
        self.path = os.path.abspath(path)
        db_path = os.path.join(self.path, DB_NAME)
        if not os.path.exists(db_path):
            if not create:
                raise WorkspaceMissing(
                    f"{self.path} is not an analyzer workspace (no {DB_NAME}); run 'analyzer run LOGS --workspace {path}' first"
                )
            os.makedirs(self.path, exist_ok=True)
        self.read_only = read_only
        self._tx_depth = 0  # transactions open (an inner one joins the outer: see transaction())
        try:
            self.db = self._connect(db_path, read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            raise WorkspaceBusy(
                f"workspace {self.path} is in use by {self._lock_holder()} (the database is open for writing "
                "elsewhere); wait for that run to finish (a killed run releases it automatically)"
            ) from exc
        self._lock_fh = None
        try:
            self._prepare_schema()
        except BaseException:
            self.db.close()
            raise

    def _prepare_schema(self) -> None:
        """The writer creates missing tables and migrates an earlier release's (new columns, JSON text to typed
        columns, ``clusters.campaign_id`` to ``cluster_campaigns``) in one transaction; a reader changes nothing
        and reads JSON text columns typed through temporary views."""
        if self.read_only:
            read_legacy_as_typed(self.db)
            return
        legacy = legacy_columns(self.db)
        check_struct_keys(self.db, legacy)
        with self.transaction() as db:  # all or nothing: a failed migration leaves the earlier release's file
            db.execute(SCHEMA)
            db.execute(MIGRATIONS)
            migrate_legacy_columns(db, legacy)
            if "campaign_id" in store.column_names(db, "clusters"):
                db.execute(CAMPAIGN_COLUMN_MIGRATION)

    @staticmethod
    def _connect(db_path: str, read_only: bool, backoff: Backoff = _CONNECT_BACKOFF):
        """Open the database, retrying briefly while another process holds it for a moment (the app's
        short read-only queries, or a run opening it for writing)."""
        return retry(
            lambda: duckdb.connect(db_path, read_only=read_only,
                                   config={} if read_only else {"checkpoint_threshold": CHECKPOINT_THRESHOLD}),
            lambda exc: isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower(),
            backoff.waits(),
        )

    def close(self) -> None:
        self.db.close()
        self.release()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- locking ---------------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the write lock, or raise :class:`WorkspaceLocked` naming the holder."""
        if self._lock_fh is not None:
            return
        lock_path = os.path.join(self.path, ".lock")
        fh = open(lock_path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise WorkspaceLocked(
                f"workspace {self.path} is in use by {holder}; wait for that run to finish "
                "(a killed run releases the lock automatically)"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {now_utc().isoformat(timespec='seconds')}")
        fh.flush()
        self._lock_fh = fh
        self._recover()

    def _lock_holder(self) -> str:
        try:
            with open(os.path.join(self.path, ".lock"), encoding="utf-8", errors="replace") as fh:
                return fh.read(200).strip() or "another process"
        except OSError:
            return "another process"

    def _recover(self) -> None:
        """Tidy up after a killed writer; called with the write lock held, so no other writer is alive.

        Runs still marked ``running`` become ``interrupted``, and temporary files of interrupted atomic writes
        (``*.tmp-PID``) are removed. The database itself needs nothing: DuckDB replays or discards its WAL.
        """
        if self.db is not None and not self.read_only:
            self.db.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")
        for sub in ("embeddings", "index", "quarantine", ""):
            top = os.path.join(self.path, sub)
            for dirpath, _dirs, files in os.walk(top):
                for name in files:
                    if ".tmp-" in name:
                        with contextlib.suppress(OSError):
                            os.remove(os.path.join(dirpath, name))
                if not sub:
                    break

    def release(self) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    @contextlib.contextmanager
    def writing(self) -> Iterator[Workspace]:
        self.acquire()
        try:
            yield self
        finally:
            self.release()

    # --- runs --------------------------------------------------------------------------------------------
    def start_run(self, command: str, params: dict, versions: dict) -> int:
        run_id = int(self.db.execute("SELECT coalesce(max(run_id), 0) + 1 FROM runs").fetchall()[0][0])
        self.db.execute(
            "INSERT INTO runs VALUES (?, ?, ?, NULL, 'running', ?, ?, NULL)",
            [run_id, command, now_utc(), json.dumps(params, default=str), json.dumps(versions)],
        )
        checkpoint("run.started")
        return run_id

    def finish_run(self, run_id: int, stats: dict, status: str = "ok") -> None:
        self.db.execute(
            "UPDATE runs SET finished_at = ?, status = ?, stats = ? WHERE run_id = ?",
            [now_utc(), status, json.dumps(stats, default=str), run_id],
        )
        checkpoint("run.finished")

    # --- ingest ----------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self, point: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """``BEGIN`` ... ``COMMIT`` (``ROLLBACK`` on any error, a killed process never commits).

        Inside another transaction it joins that one: what it writes commits or rolls back with the outer
        one (the runner commits the cluster and label stages' tables together). ``point`` names the
        crash points of the outermost commit: ``POINT.before_commit`` and ``POINT.committed``
        (:mod:`analyzer.checkpoints`). Raising :class:`Discard` inside rolls back quietly.
        """
        db = self.db
        if self._tx_depth:
            self._tx_depth += 1
            try:
                yield db
            finally:
                self._tx_depth -= 1
            return
        db.execute("BEGIN")
        self._tx_depth = 1
        try:
            yield db
            if point:
                checkpoint(f"{point}.before_commit")
        except Discard:
            db.execute("ROLLBACK")
            return
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            self._tx_depth = 0
        db.execute("COMMIT")
        if point:
            checkpoint(f"{point}.committed")

    _REQUEST_COLS = (
        "request_id", "account_id", "ts", "prompt_hash", "system_prompt", "model", "ip", "user_agent",
        "api_key_id", "org_id", "payment_id", "country", "extra", "source", "line",
    )  # fmt: skip

    def _insert_requests(self, frame: pd.DataFrame, run_id: int) -> tuple[int, int]:
        if frame.empty:
            return 0, 0
        cols = list(self._REQUEST_COLS)
        batch = frame[[*cols, "prompt"]]
        db = self.db
        db.register("batch_df", batch)
        try:
            db.execute(
                """
                CREATE OR REPLACE TEMP TABLE new_rows AS
                SELECT * FROM batch_df b
                WHERE NOT EXISTS (SELECT 1 FROM requests r WHERE r.request_id = b.request_id)
                QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY source, line) = 1
                """
            )
            accepted = int(db.execute("SELECT count(*) FROM new_rows").fetchall()[0][0])
            db.execute(f"INSERT INTO requests SELECT {', '.join(cols)}, {int(run_id)} FROM new_rows")
            db.execute(
                """
                INSERT INTO prompts
                SELECT prompt_hash, any_value(prompt), length(any_value(prompt)) FROM new_rows n
                WHERE NOT EXISTS (SELECT 1 FROM prompts p WHERE p.prompt_hash = n.prompt_hash)
                GROUP BY prompt_hash
                """
            )
            db.execute("DROP TABLE new_rows")
        finally:
            db.unregister("batch_df")
        return accepted, len(batch) - accepted

    def _insert_rejected(self, rows: list, run_id: int) -> tuple[int, int]:
        if not rows:
            return 0, 0
        frame = pd.DataFrame(
            {
                "source": [r.source for r in rows],
                "line": [int(r.line) for r in rows],
                "field": [r.field for r in rows],
                "reason": [r.reason for r in rows],
                "raw": [r.raw for r in rows],
            }
        )
        self.db.register("rej_df", frame)
        try:
            before = int(self.db.execute("SELECT count(*) FROM rejected").fetchall()[0][0])
            self.db.execute(
                f"""
                INSERT INTO rejected
                SELECT {int(run_id)}, source, line, field, reason, raw FROM rej_df d
                WHERE NOT EXISTS (SELECT 1 FROM rejected r WHERE r.source = d.source AND r.line = d.line
                                  AND r.field = d.field)
                QUALIFY row_number() OVER (PARTITION BY source, line, field) = 1
                """
            )
            after = int(self.db.execute("SELECT count(*) FROM rejected").fetchall()[0][0])
        finally:
            self.db.unregister("rej_df")
        return after - before, len(rows) - (after - before)

    def add_requests(self, frame: pd.DataFrame, run_id: int) -> tuple[int, int]:
        """Insert new requests and prompts; return ``(accepted, duplicates)``.

        A ``request_id`` already in the workspace, or repeated within ``frame``, is a duplicate.
        """
        if frame.empty:
            return 0, 0
        with self.transaction():
            return self._insert_requests(frame, run_id)

    def add_rejected(self, rows: list, run_id: int) -> tuple[int, int]:
        """Record rejected rows; a row already recorded (same source, line, field) counts as a duplicate.

        Returns ``(rejected, duplicates)``.
        """
        if not rows:
            return 0, 0
        with self.transaction():
            return self._insert_rejected(rows, run_id)

    def add_ingest_batch(self, frame: pd.DataFrame, rejected: list, n_read: int, source: str,
                         run_id: int) -> dict[str, int]:
        """Store one batch of ingested requests and rejected rows and count it in ``ingest_log``, atomically.

        Requests, rejected rows and the counters commit together, so a run killed at any point leaves
        counters that match the stored rows (re-reading the file later counts the rows as duplicates).
        Returns this batch's ``{"read", "accepted", "rejected", "duplicates"}``.
        """
        with self.transaction() as db:
            accepted, dup = self._insert_requests(frame, run_id)
            n_rej, rej_dup = self._insert_rejected(rejected, run_id)
            counts = {"read": int(n_read), "accepted": accepted, "rejected": n_rej, "duplicates": dup + rej_dup}
            updated = db.execute(
                """UPDATE ingest_log SET n_read = n_read + ?, n_accepted = n_accepted + ?,
                   n_rejected = n_rejected + ?, n_duplicates = n_duplicates + ?
                   WHERE run_id = ? AND source = ? RETURNING 1""",
                [counts["read"], accepted, n_rej, counts["duplicates"], run_id, source],
            ).fetchall()
            if not updated:
                db.execute("INSERT INTO ingest_log VALUES (?, ?, ?, ?, ?, ?)",
                           [run_id, source, counts["read"], accepted, n_rej, counts["duplicates"]])
            checkpoint("ingest.batch_inserted")
        checkpoint("ingest.batch_committed")
        return counts

    def ingest_totals(self) -> dict[str, int]:
        return store.ingest_totals(self)

    # --- embeddings ------------------------------------------------------------------------------------------
    def embeddings_dir(self, model_key: str) -> str:
        return os.path.join(self.path, "embeddings", model_key)

    def pending_prompts(self, model_key: str, after: str | None = None, limit: int | None = None) -> pd.DataFrame:
        """Unique prompts without a vector for ``model_key`` (``prompt_hash``, ``text``), in hash order; with
        ``after`` / ``limit`` only the first ``limit`` whose hash sorts after ``after`` (a keyset page)."""
        after_sql = "p.prompt_hash > ? AND" if after is not None else ""
        limit_sql = f"LIMIT {int(limit)}" if limit is not None else ""
        return self.db.execute(
            f"""
            SELECT p.prompt_hash, p.text FROM prompts p
            WHERE {after_sql}
                  NOT EXISTS (SELECT 1 FROM embedded e WHERE e.prompt_hash = p.prompt_hash AND e.model_key = ?)
            ORDER BY p.prompt_hash {limit_sql}
            """,
            [*([after] if after is not None else []), model_key],
        ).df()

    def iter_pending_prompts(self, model_key: str, rows: int) -> Iterator[pd.DataFrame]:
        """Unique prompts without a vector for ``model_key`` (``prompt_hash``, ``text``; a missing text is
        ``""``) in hash order, ``rows`` at a time (the last page may be shorter).

        One query, streamed on a cursor of its own: the pending set is the one when the first page is read, so
        shards committed meanwhile on this connection do not shift the pages, and each page costs only its rows
        (pages as keyset queries re-scanned every prompt each time: 8x slower at 670k prompts). DuckDB sorts out
        of core; this process holds one page.
        """
        cur = self.db.cursor()
        try:
            cur.execute(
                """SELECT p.prompt_hash, coalesce(p.text, '') AS text FROM prompts p
                   WHERE NOT EXISTS (SELECT 1 FROM embedded e
                                     WHERE e.prompt_hash = p.prompt_hash AND e.model_key = ?)
                   ORDER BY p.prompt_hash""",
                [model_key],
            )
            while page := cur.fetchmany(int(rows)):
                yield pd.DataFrame(page, columns=["prompt_hash", "text"])
        finally:
            cur.close()

    def pending_count(self, model_key: str) -> int:
        """Number of unique prompts without a vector for ``model_key``."""
        return int(self.db.execute(
            """SELECT count(*) FROM prompts p
               WHERE NOT EXISTS (SELECT 1 FROM embedded e WHERE e.prompt_hash = p.prompt_hash AND e.model_key = ?)""",
            [model_key],
        ).fetchall()[0][0])

    def embedded_count(self, model_key: str) -> int:
        """Number of prompts with a vector for ``model_key``."""
        return int(self.db.execute("SELECT count(*) FROM embedded WHERE model_key = ?", [model_key]).fetchall()[0][0])

    def embedded_hashes(self, model_key: str) -> pd.Series:
        """Prompt hashes with a vector for ``model_key``, in hash order (the rows of its FAISS index)."""
        return store.embedded_hashes(self, model_key)

    def largest_model_key(self) -> str | None:
        """The embedding key with the most vectors (ties: the first by name); ``None`` without vectors."""
        rows = self.db.execute(
            "SELECT model_key FROM embedded GROUP BY model_key ORDER BY count(*) DESC, model_key LIMIT 1").fetchall()
        return str(rows[0][0]) if rows else None

    def add_embedding_shard(self, model_key: str, hashes: list[str], vectors: np.ndarray) -> int:
        """Store one shard (float16 file first, then its rows in the database); return its number."""
        shard = int(
            self.db.execute(
                "SELECT coalesce(max(shard), 0) + 1 FROM embedded WHERE model_key = ?", [model_key]
            ).fetchall()[0][0]
        )
        # File first (atomically: a temporary name, fsync, rename, fsync of the folder), rows second: a run
        # killed in between leaves an orphan file that the next shard with this number simply replaces.
        path = self.shard_path(model_key, shard)
        atomic_save_npy(path, vectors.astype(np.float16))
        checkpoint("embed.shard_file_written")
        frame = pd.DataFrame(
            {"prompt_hash": hashes, "model_key": model_key, "shard": shard, "row": np.arange(len(hashes))}
        )
        self.db.register("emb_df", frame)
        try:
            self.db.execute("INSERT INTO embedded SELECT * FROM emb_df")
        finally:
            self.db.unregister("emb_df")
        checkpoint("embed.shard_recorded")
        return shard

    def shard_path(self, model_key: str, shard: int) -> str:
        return os.path.join(self.embeddings_dir(model_key), f"shard-{int(shard):06d}.npy")

    def _shard_rows(self, path: str) -> int | None:
        """Rows in a complete float shard file, ``None`` if missing or partial; raises on a non-float array.

        Reads only the ``.npy`` header (never unpickles) and checks the file holds all the data it announces.
        """
        try:
            with open(path, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _fortran, dtype = read_header(fh)
                offset = fh.tell()
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError, SyntaxError):
            return None
        if dtype.hasobject or dtype.kind != "f" or len(shape) != 2:
            raise WorkspaceCorrupt(
                f"{path} holds a {dtype} array of shape {shape}, not a float embedding matrix; refusing to load "
                "it (object arrays would need unpickling). Was this workspace tampered with?"
            )
        if os.path.getsize(path) < offset + int(np.prod(shape)) * dtype.itemsize:
            return None
        return int(shape[0])

    def verify_embeddings(self, model_key: str) -> int:
        """Forget vectors whose shard file is missing or incomplete, so that they are embedded again.

        The pipeline writes a shard file before its database rows, so this only finds something after files
        were removed or damaged by hand; it returns the number of prompts that will be re-embedded.
        """
        rows = self.db.execute(
            """SELECT shard, max("row") + 1 AS need FROM embedded WHERE model_key = ? GROUP BY shard""", [model_key]
        ).fetchall()
        bad = []
        for shard, need in rows:
            have = self._shard_rows(self.shard_path(model_key, shard))
            if have is None or have < need:
                bad.append(int(shard))
        if not bad:
            return 0
        n = int(self.db.execute(
            "SELECT count(*) FROM embedded WHERE model_key = ? AND list_contains(?, shard)", [model_key, bad]
        ).fetchall()[0][0])
        self.db.execute("DELETE FROM embedded WHERE model_key = ? AND list_contains(?, shard)", [model_key, bad])
        return n

    def load_embeddings(self, model_key: str) -> tuple[np.ndarray, np.ndarray]:
        """All stored vectors for ``model_key``: ``(prompt_hashes, float32 matrix)`` in hash order (see
        :meth:`load_embedding_rows`)."""
        hashes, vectors, _ = self.load_embedding_rows(model_key)
        return hashes, vectors

    def load_embedding_rows(self, model_key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All stored vectors for ``model_key``: ``(prompt_hashes, float32 matrix, row ids)`` in hash order; a
        vector's row id (:func:`embedding_row_ids`) names its shard and row and never changes.

        Raises :class:`WorkspaceCorrupt` for a missing or damaged shard, or one that is not a float array
        (``allow_pickle=False`` always: an object array is refused, never unpickled).
        """
        rows = self.embedding_rows(model_key)
        if rows.empty:
            return np.array([], dtype=object), np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64)
        return (rows["prompt_hash"].to_numpy(dtype=object), self.load_vectors(model_key, rows),
                embedding_row_ids(rows["shard"], rows["row"]))

    def embedding_rows(self, model_key: str) -> pd.DataFrame:
        """``prompt_hash, shard, row`` of every stored vector for ``model_key``, in hash order (no vector read)."""
        return store.embedded_rows(self, model_key)

    def stored_vectors(self, model_key: str) -> tuple[np.ndarray, StoredVectors, np.ndarray]:
        """:meth:`load_embedding_rows` without reading a vector: ``(prompt_hashes, StoredVectors, row ids)``, the
        vectors read when rows of them are asked for (a daily run reads the day's and a few thousand others, not
        the history)."""
        rows = self.embedding_rows(model_key)
        return (rows["prompt_hash"].to_numpy(dtype=object), StoredVectors(self, model_key, rows),
                embedding_row_ids(rows["shard"], rows["row"]))

    def load_vectors(self, model_key: str, rows: pd.DataFrame) -> np.ndarray:
        """The L2-normalised float32 vectors of ``rows`` (``shard``, ``row``, as :meth:`embedding_rows` gives
        them), in the order of ``rows``. Raises :class:`WorkspaceCorrupt` as :meth:`load_embedding_rows` does."""
        return np.asarray(StoredVectors(self, model_key, rows))

    def index_path(self, model_key: str) -> str:
        return os.path.join(self.path, "index", f"{model_key}.faiss")

    # --- results -------------------------------------------------------------------------------------------------
    def write_tables(self, stage: str, replace: dict[str, pd.DataFrame] | None = None,
                     upsert: dict[str, tuple[str, pd.DataFrame]] | None = None,
                     append: dict[str, pd.DataFrame] | None = None) -> None:
        """The one writer of result tables, for ``stage``, in one transaction (all or nothing): for each
        ``table: (key column, rows)`` of ``upsert`` replace the rows with those keys (insert the others), then
        replace the whole contents of each table of ``replace``, then append the rows of ``append`` (history
        tables). A table that ``stage`` does not declare as an output (:data:`analyzer.catalog.PIPELINE`) is
        refused (:class:`analyzer.catalog.UndeclaredOutput`) before anything is written. The commit's crash
        points are ``STAGE.before_commit`` / ``STAGE.committed``, unless the write joins a transaction the
        runner opened (which names its own)."""
        replace, upsert, append = replace or {}, upsert or {}, append or {}
        catalog.check_outputs(stage, [*upsert, *replace, *append])
        with self.transaction(stage) as db:
            for table, (key, frame) in upsert.items():
                if len(frame):
                    self._insert_frame(db, table, frame, delete_where=f'"{key}" IN (SELECT "{key}" FROM frame_df)')
            for table, frame in replace.items():
                db.execute(f"DELETE FROM {table}")
                self._insert_frame(db, table, frame)
            for table, frame in append.items():
                self._insert_frame(db, table, frame)

    def clear_tables(self, tables: list[str]) -> None:
        """Delete every row of ``tables``: the runner's invalidation of stale outputs
        (:func:`analyzer.catalog.stale_after`), done inside the transaction of the commit that made them stale."""
        with self.transaction() as db:
            for table in tables:
                if table not in catalog.TABLES:
                    raise ValueError(f"{table!r} is not a stage's table")
                db.execute(f"DELETE FROM {table}")

    @staticmethod
    def _insert_frame(db: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame,
                      delete_where: str | None = None) -> None:
        """Insert ``frame``'s rows into ``table`` by column name, first deleting ``delete_where`` (a condition
        that may read the frame as ``frame_df``)."""
        if not len(frame):
            return
        # not unregistered on an error: the transaction is aborted then (the caller rolls back), and the next
        # registration under this name replaces it
        db.register("frame_df", typed_frame(db, table, frame))
        if delete_where:
            db.execute(f"DELETE FROM {table} WHERE {delete_where}")
        cols = ", ".join(f'"{c}"' for c in frame.columns)
        db.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM frame_df")
        db.unregister("frame_df")

    def replace_tables(self, stage: str, frames: dict[str, pd.DataFrame],
                       append: dict[str, pd.DataFrame] | None = None) -> None:
        """Replace the contents of ``stage``'s tables ``frames``, and append rows to others (``append``: history
        tables), in one transaction (:meth:`write_tables`)."""
        self.write_tables(stage, replace=frames, append=append)

    def family_sample(self, kind: str, n: int) -> pd.DataFrame:
        """Up to ``n`` member prompts of each cluster of ``kind`` (their unit) that have a stored text:
        ``prompt_hash, family`` (read the texts with :meth:`prompt_texts`, for the members that need them: joining
        every member's text here cost ten times the sample)."""
        return self.db.execute(
            """SELECT pc.prompt_hash, pc.assigned_cluster AS family
               FROM prompt_clusters pc JOIN clusters c ON c.cluster_id = pc.assigned_cluster AND c.kind = ?
               SEMI JOIN prompts p ON p.prompt_hash = pc.prompt_hash
               QUALIFY row_number() OVER (PARTITION BY pc.assigned_cluster ORDER BY pc.prompt_hash) <= ?
               ORDER BY pc.prompt_hash""", [kind, n]).df()

    def prompt_first_seen(self, since) -> pd.DataFrame:
        """Prompts whose first request is at or after ``since``: ``prompt_hash, first_seen``."""
        return self.db.execute(
            "SELECT prompt_hash, min(ts) AS first_seen FROM requests GROUP BY 1 HAVING min(ts) >= ?", [since]).df()

    def request_counts(self) -> pd.DataFrame:
        """Requests per prompt: ``prompt_hash, n``."""
        return self.db.execute("SELECT prompt_hash, count(*) AS n FROM requests GROUP BY prompt_hash").df()

    def table(self, name: str, columns: list[str] | None = None) -> pd.DataFrame:
        """Every row of table ``name`` (only ``columns``, if given); lists and JSON documents as Python values
        (:func:`analyzer.store.typed_rows`)."""
        cols = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        return store.typed_rows(self.db.execute(f"SELECT {cols} FROM {name}"))

    def empty_rows(self, name: str) -> pd.DataFrame:
        """No rows, with ``name``'s columns (to clear a table through :meth:`write_tables`)."""
        return self.db.execute(f"SELECT * FROM {name} LIMIT 0").df()

    def has_rows(self, name: str) -> bool:
        """Whether table ``name`` holds at least one row."""
        return store.has_rows(self, name)

    def prompt_texts(self, hashes: list[str] | None = None) -> pd.Series:
        """Prompt texts by ``prompt_hash`` (of ``hashes`` only, if given; unknown hashes are left out)."""
        if hashes is None:
            rows = self.db.execute("SELECT prompt_hash, text FROM prompts").df()
        else:
            rows = self.db.execute("SELECT prompt_hash, text FROM prompts WHERE list_contains(?, prompt_hash)",
                                   [list(hashes)]).df()
        return rows.set_index("prompt_hash")["text"]

    def prompt_text_objects(self, batch_rows: int = 65_536) -> pd.Series:
        """Every prompt's text by ``prompt_hash``, as Python strings (object dtype), read a batch at a time.

        For the stages that read every text (the cluster stage): a frame of pandas' Arrow-backed strings
        (:meth:`prompt_texts`) makes new Python strings each time it is iterated, mapped or turned into an
        array; these are made once. At the incident's 1M requests (487k prompts, 195M characters) the texts
        cost the cluster stage 675 MiB as a frame and its map, 257 MiB this way."""
        hashes: list[str] = []
        texts: list[str | None] = []
        reader = self.db.sql("SELECT prompt_hash, text FROM prompts").to_arrow_reader(batch_rows)
        for batch in reader:
            hashes += batch.column(0).to_pylist()
            texts += batch.column(1).to_pylist()
        return pd.Series(texts, index=pd.Index(hashes, dtype=object), dtype=object)

    def system_prompt_counts(self) -> pd.DataFrame:
        """Distinct non-empty system prompts: ``system_hash`` (md5 of the text), ``text``, ``n`` requests; in
        hash order."""
        return self.db.execute(
            """SELECT md5(system_prompt) AS system_hash, any_value(system_prompt) AS text, count(*) AS n
               FROM requests WHERE system_prompt IS NOT NULL AND system_prompt <> '' GROUP BY 1 ORDER BY 1""").df()

    def release_cache(self) -> None:
        """Hand back the memory of the database blocks DuckDB keeps cached. It holds every block it read or
        wrote until its memory limit (80% of the machine's memory by default) forces it out, so a stage that
        read a whole table (every request, every prompt's text) carried it into the stages after it: 0.4 GiB at
        4M requests right after the score stage's read of every request. Lowering the limit evicts every block
        not in use; DuckDB's default limit is put back at once. Best effort: where DuckDB cannot lower it
        (blocks in use), nothing changes."""
        try:
            self.db.execute(f"SET memory_limit = '{CACHE_RELEASE_LIMIT}'")
        except duckdb.Error:
            pass
        finally:
            # DuckDB's default again, exactly (the analyzer sets no limit of its own; the printed value is
            # rounded, so setting it back from its text would lower it a little every time).
            self.db.execute("RESET memory_limit")

    def request_system_hashes(self, since_run: int | None = None) -> pd.DataFrame:
        """``prompt_hash, system_hash`` (md5 of the system prompt, ``None`` without one) of every request, or
        of those ingested by runs after ``since_run``."""
        where, args = ("WHERE run_id > ?", [since_run]) if since_run is not None else ("", [])
        return self.db.execute(
            f"""SELECT prompt_hash, CASE WHEN system_prompt IS NULL OR system_prompt = '' THEN NULL
                                         ELSE md5(system_prompt) END AS system_hash FROM requests {where}""",
            args).df()

    def unassigned_request_share(self, prompt_units: pd.DataFrame, system_families: pd.DataFrame) -> float | None:
        """Share of all requests whose prompt has no unit (``prompt_units``: ``prompt_hash, unit``, a prompt
        missing there or at -1 has none) and whose system prompt is in no system family (``system_families``:
        ``system_hash, cluster_id``); ``None`` without requests. Counted in the database: the requests are not
        read into this process (at 4M requests that frame cost 0.9 GiB for one number)."""
        units = pd.DataFrame({"prompt_hash": prompt_units["prompt_hash"].astype(object),
                              "unit": prompt_units["unit"].astype(np.int64)})
        fams = pd.DataFrame({"system_hash": system_families["system_hash"].astype(object),
                             "cluster_id": system_families["cluster_id"].astype(np.int64)})
        self.db.register("units_df", units)
        self.db.register("system_families_df", fams)
        try:
            n, unassigned = self.db.execute(
                """SELECT count(*), count(*) FILTER (WHERE coalesce(u.unit, -1) < 0 AND coalesce(f.cluster_id, -1) < 0)
                   FROM requests r
                   LEFT JOIN units_df u ON u.prompt_hash = r.prompt_hash
                   LEFT JOIN system_families_df f ON f.system_hash =
                       CASE WHEN r.system_prompt IS NULL OR r.system_prompt = '' THEN NULL ELSE md5(r.system_prompt) END
                """).fetchall()[0]
        finally:
            self.db.unregister("units_df")
            self.db.unregister("system_families_df")
        return float(unassigned) / n if n else None

    def newest_request_ts(self, since_run: int | None = None) -> pd.Timestamp | None:
        """The latest request time (of the requests ingested by runs after ``since_run``, if given)."""
        where, args = ("WHERE run_id > ?", [since_run]) if since_run is not None else ("", [])
        return self.db.execute(f"SELECT max(ts) FROM requests {where}", args).fetchall()[0][0]

    def scoring_requests(self) -> pd.DataFrame:
        """Every request with what the campaign stage needs: ``account_id, ts, prompt_hash, cluster_id`` (its
        unit: the prompt's template family, else its system prompt's family, else its topic), ``topic_cluster,
        task_id, intent, intent_similarity`` (the stronger of prompt and system prompt), ``model, ip,
        user_agent, api_key_id, org_id, payment_id``. A system prompt is in the unit (a request without a prompt
        family of its own counts towards its system prompt's family), not a column of its own: the stage never
        read the per-request md5 it used to carry (91 MB and an md5 per request at 4M requests). Read through
        Arrow: the same frame as ``.df()`` (same columns, types and values), in half the time (0.35 -> 0.15 s at
        100k requests, on every daily run)."""
        return arrow_frame(self.db.sql(
            f"""
            SELECT r.account_id, r.ts, r.prompt_hash, {UNIT_SQL} AS cluster_id,
                   coalesce(pc.cluster_id, -1) AS topic_cluster, pc.task_id,
                   CASE WHEN sc.intent_similarity > coalesce(pc.intent_similarity, 0) THEN sc.intent
                        ELSE pc.intent END AS intent,
                   CASE WHEN pc.intent_similarity IS NULL AND sc.intent_similarity IS NULL THEN NULL
                        ELSE greatest(coalesce(pc.intent_similarity, 0), coalesce(sc.intent_similarity, 0))
                        END AS intent_similarity,
                   r.model, r.ip, r.user_agent, r.api_key_id, r.org_id, r.payment_id
            {UNIT_JOINS.format(kinds="(SELECT cluster_id, kind FROM clusters)")}
            """
        ))

    def unit_account_counts(self, kinds: pd.DataFrame) -> pd.Series:
        """Distinct accounts per unit (the ``cluster_id`` of :meth:`scoring_requests`), with the clusters' kinds
        taken from ``kinds`` (``cluster_id, kind``: the cluster rows about to be written) rather than from the
        ``clusters`` table; indexed by unit, units >= 0 only."""
        kinds = pd.DataFrame({"cluster_id": kinds["cluster_id"].astype(np.int64), "kind": kinds["kind"].astype(object)})
        self.db.register("kinds_df", kinds)
        try:
            found = self.db.execute(
                f"""SELECT cluster_id, count(DISTINCT account_id) AS n FROM (
                        SELECT r.account_id, {UNIT_SQL} AS cluster_id
                        {UNIT_JOINS.format(kinds="kinds_df")}) WHERE cluster_id >= 0 GROUP BY 1""").df()
        finally:
            self.db.unregister("kinds_df")
        return found.set_index("cluster_id")["n"]

    def prompt_units(self) -> pd.DataFrame:
        """``prompt_hash, unit``: each clustered prompt's template family, else its topic cluster (-1 noise)."""
        return self.db.execute(
            "SELECT prompt_hash, coalesce(assigned_cluster, cluster_id) AS unit FROM prompt_clusters").df()

    def campaign_cluster_ids(self) -> np.ndarray:
        """The ids of the clusters that belong to a campaign."""
        return self.db.execute("SELECT cluster_id FROM cluster_campaigns").df()["cluster_id"].to_numpy(dtype=np.int64)

    # --- campaign history ------------------------------------------------------------------------------------------
    def ok_run_stats(self) -> list[tuple[int, dict]]:
        """``(run_id, stats)`` of every run that finished ``ok``, newest first (``{}`` for runs without stats)."""
        return [(int(run_id), (json.loads(js) if js else None) or {}) for run_id, js in self.db.execute(
            "SELECT run_id, stats FROM runs WHERE status = 'ok' ORDER BY run_id DESC").fetchall()]

    def last_run_options(self) -> dict | None:
        """The ``options`` of the newest run that recorded any (:func:`analyzer.store.last_run_options`)."""
        return store.last_run_options(self)

    def latest_run_id(self) -> int:
        """The newest run's id (0 in a workspace without runs)."""
        return int(self.db.execute("SELECT coalesce(max(run_id), 0) FROM runs").fetchall()[0][0])

    def campaign_state(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """What the previous scored run left for the next one to match against:
        ``(campaigns, members, identity, ended)`` (``ended``: ``campaign_ended_members``, the member snapshots
        of recently ended campaigns).

        ``campaigns``: the latest recorded run's campaigns that were not ``gone`` (``campaign_id, n_accounts,
        n_requests, score, flagged`` from ``campaign_history``); ``members``: ``campaign_members``;
        ``identity``: ``campaign_identity``. The cluster stage clears the campaign tables but not these, so a
        re-cluster still matches against the last scored campaigns.
        """
        camps = self.db.execute(
            """
            SELECT campaign_id, n_accounts, n_requests, score, flagged FROM campaign_history
            WHERE run_id = (SELECT max(run_id) FROM campaign_history) AND transition <> 'gone'
            ORDER BY campaign_id
            """).df()
        members = self.db.execute("SELECT campaign_id, kind, member, weight FROM campaign_members").df()
        ended = self.db.execute(
            "SELECT campaign_id, kind, member, weight, ended_run FROM campaign_ended_members").df()
        return camps, members, self.table("campaign_identity"), ended

    def campaign_history(self, campaign_id: str | None = None) -> pd.DataFrame:
        """``campaign_history`` rows (one campaign's, or all), oldest run first."""
        where = "WHERE campaign_id = ?" if campaign_id is not None else ""
        return store.typed_rows(self.db.execute(
            f"SELECT * FROM campaign_history {where} ORDER BY run_id, campaign_id",
            [campaign_id] if campaign_id is not None else []))

    # --- triage ----------------------------------------------------------------------------------------------------
    def set_triage(self, campaign_id: str, status: str, note: str = "", analyst: str = "") -> None:
        if status not in ("confirmed", "dismissed", "needs review", "open"):
            raise ValueError(f"unknown triage status {status!r}")
        self.db.execute(
            "INSERT INTO triage VALUES (?, ?, ?, ?, ?)", [campaign_id, status, note, analyst, now_utc()]
        )

    # --- watchlist (see analyzer.watch) ---------------------------------------------------------------------------
    def has_table(self, name: str) -> bool:
        """Whether the table exists (a read-only handle on an older workspace may lack newer tables)."""
        return bool(self.db.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchall()[0][0])

    def put_watch(self, row: dict, vectors: np.ndarray | None, model_key: str | None) -> None:
        """Store one watch entry and its fingerprint vectors, replacing an entry with the same ``watch_id``,
        in one transaction (a killed process leaves the old entry or the new one, never half of either)."""
        with self.transaction() as db:
            db.execute("DELETE FROM watchlist WHERE watch_id = ?", [row["watch_id"]])
            db.execute("DELETE FROM watch_vectors WHERE watch_id = ?", [row["watch_id"]])
            db.execute("INSERT INTO watchlist VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       [row["watch_id"], row["campaign_id"], row["status"], row["source"],
                        row.get("created_at") or now_utc(), row.get("analyst") or "", row.get("note") or "",
                        json.dumps(row["fingerprint"], ensure_ascii=False)])
            if vectors is not None and len(vectors) and model_key:
                frame = pd.DataFrame({"watch_id": row["watch_id"], "model_key": model_key,
                                      "row": np.arange(len(vectors), dtype=np.int32),
                                      "vector": [v.astype(np.float32).tolist() for v in vectors]})
                db.register("wv_df", frame)
                try:
                    db.execute('INSERT INTO watch_vectors SELECT watch_id, model_key, "row", '
                               "CAST(vector AS FLOAT[]) FROM wv_df")
                finally:
                    db.unregister("wv_df")
            checkpoint("watch.before_commit")
        checkpoint("watch.committed")

    def remove_watch(self, watch_id: str) -> int:
        """Remove a watch entry and its vectors; returns the number of entries removed (0 or 1)."""
        with self.transaction() as db:
            n = int(db.execute("SELECT count(*) FROM watchlist WHERE watch_id = ?", [watch_id]).fetchall()[0][0])
            db.execute("DELETE FROM watchlist WHERE watch_id = ?", [watch_id])
            db.execute("DELETE FROM watch_vectors WHERE watch_id = ?", [watch_id])
        return n

    def watch_rows(self) -> pd.DataFrame:
        """Every watch entry (``watch_id, campaign_id, status, source, created_at, analyst, note,
        fingerprint`` dict), oldest first; empty where the workspace has no watchlist yet."""
        if not self.has_table("watchlist"):
            return pd.DataFrame(columns=["watch_id", "campaign_id", "status", "source", "created_at", "analyst",
                                         "note", "fingerprint"])
        return store.typed_rows(self.db.execute("SELECT * FROM watchlist ORDER BY created_at, watch_id"))

    def watch_vectors(self) -> dict[str, tuple[str, np.ndarray]]:
        """Fingerprint vectors per watch id: ``(model_key, float32 matrix)``."""
        if not self.has_table("watch_vectors"):
            return {}
        rows = self.db.execute('SELECT watch_id, model_key, vector FROM watch_vectors ORDER BY watch_id, "row"').df()
        return {str(w): (str(g["model_key"].iloc[0]), np.asarray(g["vector"].tolist(), dtype=np.float32))
                for w, g in rows.groupby("watch_id", sort=False)}

    def current_model_key(self) -> str | None:
        """The embedding key of the latest run that embedded (its stats), else the key with most vectors."""
        rows = self.db.execute(
            "SELECT stats FROM runs WHERE stats LIKE '%\"model_key\"%' ORDER BY run_id DESC LIMIT 1").fetchall()
        if rows:
            stats = json.loads(rows[0][0]) or {}
            key = (stats.get("embed") or stats).get("model_key")  # a full run nests it, 'analyzer embed' not
            if key:
                return str(key)
        return self.largest_model_key()

    def campaign_requests(self, campaign_id: str) -> tuple[dict | None, list[str], pd.DataFrame]:
        """A campaign of the latest analysis: ``(its campaigns row, member accounts, the members' requests in
        its units)`` (requests: ``account_id, ts, prompt_hash, ip, user_agent, api_key_id, payment_id``).
        ``(None, [], empty)`` for an unknown campaign."""
        camp = store.campaign(self, campaign_id)
        if camp is None:
            return None, [], pd.DataFrame()
        members = [a for (a,) in self.db.execute(
            "SELECT account_id FROM campaign_accounts WHERE campaign_id = ? ORDER BY account_id",
            [campaign_id]).fetchall()]
        units = [int(c) for c in camp.get("clusters") or []]
        req = self.db.execute(
            """
            SELECT r.account_id, r.ts, r.prompt_hash, r.ip, r.user_agent, r.api_key_id, r.payment_id
            FROM requests r LEFT JOIN prompt_clusters pc USING (prompt_hash)
            LEFT JOIN system_clusters sc ON sc.system_hash = md5(r.system_prompt)
            WHERE list_contains(?, r.account_id)
              AND (len(?) = 0 OR list_contains(?, pc.assigned_cluster) OR list_contains(?, pc.cluster_id)
                   OR list_contains(?, sc.cluster_id))
            """, [members, units, units, units, units]).df()
        return camp, members, req

    def request_identifiers(self) -> pd.DataFrame:
        """``account_id, ip, user_agent, api_key_id, payment_id`` of every distinct combination in the requests."""
        return self.db.execute(
            "SELECT DISTINCT account_id, ip, user_agent, api_key_id, payment_id FROM requests").df()

    def triage_latest(self) -> pd.DataFrame:
        return store.triage_latest(self)
