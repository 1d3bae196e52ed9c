"""SQLite schema and connections (WAL: readers never block the writer)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

SCHEMA_VERSION = "1"

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
  job_id      TEXT PRIMARY KEY,
  function    TEXT NOT NULL,
  parent      TEXT,
  dynamic     INTEGER NOT NULL DEFAULT 0,
  code_fp     TEXT NOT NULL,
  code_parts  TEXT NOT NULL,            -- json: label -> digest
  args_fp     TEXT NOT NULL,
  deps        TEXT NOT NULL,            -- json list of job ids
  def_fp      TEXT NOT NULL,
  func_key    TEXT,                     -- -> functions
  payload     BLOB,                     -- pickled (args, kwargs)
  state       TEXT NOT NULL DEFAULT 'todo',   -- last outcome: todo done failed blocked
  forced      INTEGER NOT NULL DEFAULT 0,
  -- the stored result, and what it was made from
  r_code_fp TEXT, r_code_parts TEXT, r_args_fp TEXT, r_arg_fps TEXT, r_dep_fps TEXT,
  r_result_fp TEXT, r_file TEXT, r_checksum TEXT, r_size INTEGER, r_mtime INTEGER,
  -- the last attempt
  started REAL, ended REAL, duration REAL, cpu REAL, engine TEXT,
  error TEXT, blocked_by TEXT, reasons TEXT,
  -- the definition the last failed attempt ran, so `why` can say what changed since
  f_code_fp TEXT, f_code_parts TEXT, f_args_fp TEXT
);
CREATE INDEX IF NOT EXISTS jobs_parent ON jobs(parent);
CREATE TABLE IF NOT EXISTS functions (func_key TEXT PRIMARY KEY, blob BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS logs (
  job_id TEXT PRIMARY KEY, stdout TEXT, stderr TEXT, traceback TEXT
);
-- small results, inline (results.py): r_file names INLINE for them
CREATE TABLE IF NOT EXISTS results (job_id TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


def connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly
    # what we say it is. check_same_thread=False: the writer thread owns its own handle,
    # but close() may run from another thread at exit.
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=30000")
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


def init_schema(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    if row is None:
        conn.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
    conn.execute("COMMIT")
    if row is not None and row[0] != SCHEMA_VERSION:
        raise ValueError(f"store schema version {row[0]}, this nbmake_ext reads {SCHEMA_VERSION}")
