"""SQLite schema and connections (WAL: readers never block the writer)."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Iterator

SCHEMA_VERSION = "6"

JOBS = """
CREATE TABLE IF NOT EXISTS jobs (
  job_id      TEXT PRIMARY KEY,
  function    TEXT NOT NULL,
  parent      TEXT,
  dynamic     INTEGER NOT NULL DEFAULT 0,
  code_fp     TEXT NOT NULL,            -- -> code
  args_fp     TEXT NOT NULL,
  deps        TEXT NOT NULL,            -- json list of job ids
  def_fp      TEXT NOT NULL,
  func_key    TEXT,                     -- -> functions
  payload     BLOB,                     -- the pickled args and kwargs
  inputs      TEXT,                     -- json list of its input files (NULL: none)
  options     TEXT                      -- json of its options (core/options.py), NULL: none
)"""

SCHEMA = JOBS + """;
-- What each code fingerprint was made of (json: label -> digest), so `why` can name what
-- changed: once per version of the code, not once per job that runs it.
CREATE TABLE IF NOT EXISTS code (code_fp TEXT PRIMARY KEY, parts TEXT NOT NULL);
-- What became of a job (no row: todo, never forced). A table of its own: recording a
-- result writes this narrow row, not the job's whole definition again.
CREATE TABLE IF NOT EXISTS outcomes (
  job_id TEXT PRIMARY KEY,
  state  TEXT NOT NULL DEFAULT 'todo',  -- last outcome: todo done failed blocked
  forced INTEGER NOT NULL DEFAULT 0,
  -- the stored result, and what it was made from
  r_code_fp TEXT, r_args_fp TEXT, r_arg_fps TEXT, r_dep_fps TEXT,
  r_result_fp TEXT, r_file TEXT, r_checksum TEXT, r_size INTEGER, r_mtime INTEGER,
  r_files TEXT,  -- json {path: fingerprint} of the files it read and wrote (NULL: none)
  -- the last attempt
  started REAL, ended REAL, duration REAL, cpu REAL, engine TEXT,
  error TEXT, blocked_by TEXT, reasons TEXT,
  peak_rss INTEGER,                     -- bytes
  attempts TEXT,                        -- json: the failed attempts before it (job_retries)
  -- the definition the last failed attempt ran, so `why` can say what changed since
  f_code_fp TEXT, f_args_fp TEXT
);
-- the results that are files (results.py INLINE is ':db'): the few a write replaces
CREATE INDEX IF NOT EXISTS outcomes_files ON outcomes(job_id)
  WHERE r_file IS NOT NULL AND r_file != ':db';
CREATE TABLE IF NOT EXISTS functions (func_key TEXT PRIMARY KEY, blob BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS logs (
  job_id TEXT PRIMARY KEY, stdout TEXT, stderr TEXT, traceback TEXT
);
-- small results, inline (results.py): r_file names INLINE for them
CREATE TABLE IF NOT EXISTS results (job_id TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
""" + """
-- fingerprints of files by (size, mtime, inode): files/fingerprints.py FileCache
CREATE TABLE IF NOT EXISTS file_stats (
  path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
  inode INTEGER NOT NULL, hashed_ns INTEGER NOT NULL, fp TEXT NOT NULL
);
"""

# The columns of a definition in every version (options came with version 3).
DEFINITION = ("job_id", "function", "parent", "dynamic", "code_fp", "args_fp", "deps",
              "def_fp", "func_key", "payload")
OUTCOME = ("state", "forced", "r_code_fp", "r_args_fp", "r_arg_fps", "r_dep_fps",
           "r_result_fp", "r_file", "r_checksum", "r_size", "r_mtime", "started", "ended",
           "duration", "cpu", "engine", "error", "blocked_by", "reasons", "f_code_fp",
           "f_args_fp")  # (the columns version 1 had; peak_rss and attempts came in 4)


# Compiled statements a connection keeps (the sqlite3 module's default is 128). Writes of
# many rows are statements of many rows, a new text for each batch size, and each kept one
# holds megabytes: 128 of them held 50 MB after a make of 100,000 jobs. The statements run
# per job are few, and stay among the 16 most recent.
STATEMENTS_KEPT = 16


def connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly
    # what we say it is. check_same_thread=False: the writer thread owns its own handle,
    # but close() may run from another thread at exit.
    new = not path.exists()
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False,
                           cached_statements=STATEMENTS_KEPT)
    conn.execute("PRAGMA busy_timeout=30000")
    if new:  # the switch to WAL writes only the header of an empty file: nothing to flush
        conn.execute("PRAGMA synchronous=OFF")
    _use_wal(conn)
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _use_wal(conn: sqlite3.Connection, timeout: float = 30.0) -> None:
    """Switch a new database to WAL. SQLite refuses at once ("database is locked", without
    waiting) while another process opens the same new store; try again until it is done."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(2 * delay, 0.05)


# Every change to what decides whether a job is up to date (its definition, its outcome)
# counts one more write in ``meta``, whoever makes it (this version, another, another
# process, by hand): a make can tell that nothing changed since a clean make by that number
# alone (store/unchanged.py). Created in stores of every version as they open. (An inline
# result's row is written with its outcome's; a make judges jobs without reading them.)
COUNTED = ("jobs", "outcomes")
TRIGGERS = [
    f"CREATE TRIGGER IF NOT EXISTS counted_{table}_{op.lower()} AFTER {op} ON {table}"
    " BEGIN UPDATE meta SET value = value + 1 WHERE key = 'writes'; END"
    for table in COUNTED for op in ("INSERT", "UPDATE", "DELETE")
]


# Which jobs changed, in order: every write to a job's definition or outcome (by anyone, as
# above) adds the job's id to ``changes``. A snapshot read again reads only the rows of the
# jobs named since it was read (snapshots.py). The oldest entries go once there are many
# (``prune_changes``); a snapshot older than what is kept is read whole.
CHANGES = "CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY, job_id TEXT NOT NULL)"
LOGGED = [
    f"CREATE TRIGGER IF NOT EXISTS logged_{table}_{op.lower()} AFTER {op} ON {table}"
    f" BEGIN INSERT INTO changes (job_id) VALUES ({row}.job_id); END"
    for table in COUNTED for op, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD"))
] + [  # (a job's id is never changed by an update; if it were, both ids changed)
    f"CREATE TRIGGER IF NOT EXISTS logged_{table}_renamed AFTER UPDATE OF job_id ON {table}"
    " WHEN OLD.job_id IS NOT NEW.job_id"
    " BEGIN INSERT INTO changes (job_id) VALUES (OLD.job_id); END"
    for table in COUNTED
]
CHANGES_KEPT = 20_000   # entries kept when the oldest go
CHANGES_PRUNED = 100_000  # entries beyond those that make the oldest go


def changes_mark(conn: sqlite3.Connection) -> tuple[int, int]:
    """The last entry of ``changes``, and the last one pruned (0: none)."""
    last = conn.execute("SELECT max(seq) FROM changes").fetchone()[0] or 0
    row = conn.execute("SELECT value FROM meta WHERE key='changes_from'").fetchone()
    return last, int(row[0]) if row else 0


def changed_since(conn: sqlite3.Connection, seq: int,
                  skipped: list[tuple[int, int]] = ()) -> list[str]:
    """The jobs written to after entry ``seq`` of ``changes``, each once, in the order
    they were first written to; not counting the entries of the ``skipped`` ranges (each
    (first, end): those after first, up to end)."""
    skip = "".join(" AND NOT (seq > ? AND seq <= ?)" for _ in skipped)
    return [jid for (jid,) in conn.execute(
        f"SELECT job_id FROM changes WHERE seq > ?{skip} GROUP BY job_id ORDER BY min(seq)",
        (seq, *(n for pair in skipped for n in pair)))]


def prune_changes(conn: sqlite3.Connection) -> None:
    """Within a write transaction: the oldest entries go once many are kept."""
    last, pruned = changes_mark(conn)
    if last - pruned > CHANGES_KEPT + CHANGES_PRUNED:
        upto = last - CHANGES_KEPT
        conn.execute("DELETE FROM changes WHERE seq <= ?", (upto,))
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('changes_from', ?)", (upto,))


def write_count(conn: sqlite3.Connection) -> int | None:
    """The store's count of writes (None in a store that keeps none)."""
    row = conn.execute("SELECT value FROM meta WHERE key='writes'").fetchone()
    return None if row is None else int(row[0])


def init_schema(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('writes', 0)")
        conn.execute(CHANGES)
        for trigger in TRIGGERS + LOGGED:
            conn.execute(trigger)
        row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        version = row[0] if row else SCHEMA_VERSION
        if version == "1":
            _from_version_1(conn)  # makes the jobs table of the latest version
            version = SCHEMA_VERSION
        if version == "2":
            _from_version_2(conn)
            version = "3"
        if version == "3":
            _from_version_3(conn)
            version = "4"
        if version == "4":
            _from_version_4(conn)
            version = "5"
        if version == "5":
            # The tables are those of version 5. What changed is how stores claim jobs
            # (claims.py, the gate): a version that claims without the gate must not open
            # a store that this one may use at the same time.
            version = SCHEMA_VERSION
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (version,))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    if version != SCHEMA_VERSION:
        raise ValueError(f"store schema version {version}, this nbmake_ext reads {SCHEMA_VERSION}")


def _from_version_1(conn: sqlite3.Connection) -> None:
    """Version 1 kept each job's outcome in its row of ``jobs``, and the parts of its code
    with each code fingerprint: move them to ``outcomes`` and ``code`` (inside the caller's
    transaction, so a store is either wholly migrated or untouched)."""
    # Early stores of version 1 lack some columns: what they lack reads as empty.
    have = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    defaults = {"state": "'todo'", "forced": "0", "dynamic": "0", "parent": "NULL",
                "func_key": "NULL", "payload": "NULL"}

    def column(name: str) -> str:
        return name if name in have else defaults.get(name, "NULL" if name in OUTCOME else "''")
    for fp, parts in (("code_fp", "code_parts"), ("r_code_fp", "r_code_parts"),
                      ("f_code_fp", "f_code_parts")):
        if fp in have and parts in have:
            conn.execute(f"INSERT OR IGNORE INTO code SELECT {fp}, {parts} FROM jobs"
                         f" WHERE {fp} IS NOT NULL AND {parts} IS NOT NULL")
    outcome = ", ".join(OUTCOME)
    conn.execute(
        f"INSERT OR REPLACE INTO outcomes (job_id, {outcome})"
        f" SELECT job_id, {', '.join(map(column, OUTCOME))} FROM jobs"
        f" WHERE {column('state')} != 'todo' OR {column('forced')} != 0"
        f" OR {column('r_result_fp')} IS NOT NULL OR {column('started')} IS NOT NULL")
    conn.execute("ALTER TABLE jobs RENAME TO jobs_version_1")
    conn.execute("DROP INDEX IF EXISTS jobs_parent")  # never used by a query
    conn.execute(JOBS)
    conn.execute(f"INSERT INTO jobs ({', '.join(DEFINITION)})"
                 f" SELECT {', '.join(map(column, DEFINITION))} FROM jobs_version_1")
    conn.execute("DROP TABLE jobs_version_1")


def _from_version_2(conn: sqlite3.Connection) -> None:
    """Version 2 had no job options: every job it holds has none (NULL)."""
    conn.execute("ALTER TABLE jobs ADD COLUMN options TEXT")


def _from_version_3(conn: sqlite3.Connection) -> None:
    """Version 3 kept no peak memory nor earlier attempts of a job's last run."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(outcomes)")}
    for column, kind in (("peak_rss", "INTEGER"), ("attempts", "TEXT")):
        if column not in have:
            conn.execute(f"ALTER TABLE outcomes ADD COLUMN {column} {kind}")


def _from_version_4(conn: sqlite3.Connection) -> None:
    """Version 4 knew no files: no job has input files, no result was made from any, and
    no file's fingerprint is cached."""
    for table, column in (("jobs", "inputs"), ("outcomes", "r_files")):
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
    conn.execute("CREATE TABLE IF NOT EXISTS file_stats (path TEXT PRIMARY KEY,"
                 " size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL,"
                 " hashed_ns INTEGER NOT NULL, fp TEXT NOT NULL)")


@contextlib.contextmanager
def one_moment(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Reads inside see the database as it was at one moment (a read transaction)."""
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")
