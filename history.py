"""The history store: every run of every step, for decisions and trends, in SQLite (one file, WAL mode, the
default) or PostgreSQL (history_url: several hosts sharing one history, one tick at a time, one release pointer).

    with connect(cfg) as db:                      # creates or upgrades the schema
        run_id = record_run(db, "ingestion", started, ended, "ok", line, result)
    with tick_lock(cfg):                          # LockBusy while another tick (on any host) holds it
        ...

SQL is written once, SQLite's way (? placeholders, rows read by position or name); on PostgreSQL the connection
translates it (PgConnection), and insert() returns the new id both ways. Each dialect has its schema file
(schema.sql, schema.postgresql.sql) and its numbered MIGRATIONS; SQLite numbers its file with PRAGMA user_version,
PostgreSQL in the table history_schema. Only the standard library is imported for SQLite, and psycopg only when a
PostgreSQL store is used, so the cron tick with no new data can record itself cheaply.
"""
from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import socket
import sqlite3
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import artifacts
from atomicio import LockBusy, file_lock
from config import display_path

log = logging.getLogger("history")

HERE = Path(__file__).resolve().parent
SCHEMA_FILES = {"sqlite": HERE / "schema.sql", "postgresql": HERE / "schema.postgresql.sql"}
SCHEMA_VERSION = 5
# dialect -> version -> SQL that upgrades a store of the previous version (the schema file is the current version
# whole). PostgreSQL stores began at version 5.
MIGRATIONS: dict[str, dict[int, str]] = {"sqlite": {
    # drift checks name store batches instead of byte offsets into finaldata.csv
    2: "ALTER TABLE drift_checks ADD COLUMN batch_from INTEGER NOT NULL DEFAULT 0; "
       "ALTER TABLE drift_checks ADD COLUMN batch_to INTEGER NOT NULL DEFAULT 0; "
       "ALTER TABLE drift_checks DROP COLUMN data_end_bytes; "
       "CREATE INDEX IF NOT EXISTS drift_checks_release ON drift_checks(release, id);",
    # alerts.py: what was sent to whom and when, for its cooldown
    3: "CREATE TABLE IF NOT EXISTS alerts (id INTEGER PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL, "
       "target TEXT NOT NULL, delivered INTEGER NOT NULL, title TEXT NOT NULL DEFAULT ''); "
       "CREATE INDEX IF NOT EXISTS alerts_target ON alerts(target, kind, id);",
    # what a check tells without labels, and what the labels' rate and the predictions' spread say
    4: "ALTER TABLE drift_checks ADD COLUMN unlabelled_rows INTEGER NOT NULL DEFAULT 0; "
       "ALTER TABLE drift_checks ADD COLUMN est_f1 REAL; ALTER TABLE drift_checks ADD COLUMN est_low REAL; "
       "ALTER TABLE drift_checks ADD COLUMN est_high REAL; ALTER TABLE drift_checks ADD COLUMN est_verdict TEXT; "
       "ALTER TABLE drift_checks ADD COLUMN prediction_verdict TEXT; "
       "ALTER TABLE drift_checks ADD COLUMN prior_verdict TEXT;",
    # the report and the dashboard read a check's features and its run's decisions by id
    5: "CREATE INDEX IF NOT EXISTS feature_drift_check ON feature_drift(check_id); "
       "CREATE INDEX IF NOT EXISTS decisions_run ON decisions(run_id);",
}, "postgresql": {}}
TIMED_STEPS = ("ingestion", "training", "scoring", "deployment", "fullprocess")  # shown in timings and trends
LOW_DISK_BYTES = 10 * 2**20
PG_CONNECT_SECONDS = 10
_PG_CURRENT: set[str] = set()  # the PostgreSQL stores this process found at SCHEMA_VERSION
# pg_try_advisory_lock's key for the tick: any constant, the same on every host ("risk" + "tick" in ASCII)
TICK_LOCK_KEY = 0x7269736B7469636B
MIGRATION_LOCK_KEY = TICK_LOCK_KEY + 1
RELEASE_LOCK_KEY = TICK_LOCK_KEY + 2  # training, scoring, deployment and rollback, across hosts
# the database server's clock as now_iso() writes time: one clock for every host's pointer moves
PG_NOW = """to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""


class HistoryError(Exception):
    """The history store could not be read or written; the message is one line naming the store and why."""


def now_iso() -> str:
    """The current UTC time, ISO 8601 with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dialect(cfg: dict[str, Any]) -> str:
    """"sqlite" or "postgresql", from history_url."""
    return "sqlite" if cfg["history_url"].startswith("sqlite:") else "postgresql"


def shared(cfg: dict[str, Any]) -> bool:
    """Whether the history is a database several hosts share (PostgreSQL): the tick lock and the release pointer
    live there then."""
    return dialect(cfg) == "postgresql"


@contextlib.contextmanager
def connect(cfg: dict[str, Any]) -> Iterator[Any]:
    """An open, schema-checked connection that commits on success and always closes."""
    if shared(cfg):
        with _pg_connect(cfg) as db:
            yield db
        return
    path = Path(cfg["history_path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30)
    try:
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        _migrate_sqlite(db)
        with db:
            yield db
    finally:
        db.close()


def _migrate_sqlite(db: sqlite3.Connection) -> None:
    """Create the schema in a new file, or upgrade an older one step by step."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    _refuse_newer(version)
    with db:
        db.executescript(_upgrade_script("sqlite", version))
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _refuse_newer(version: int) -> None:
    """A store written by newer code is left alone."""
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(f"history store has schema version {version}, newer than this code's "
                                    f"{SCHEMA_VERSION}; upgrade the code")


def _upgrade_script(name: str, version: int) -> str:
    """The SQL that takes a store of a dialect from version (0: empty) to SCHEMA_VERSION."""
    if version == 0:
        return SCHEMA_FILES[name].read_text(encoding="utf-8")
    return "; ".join(MIGRATIONS[name][v] for v in range(version + 1, SCHEMA_VERSION + 1))


class PgRow(tuple):
    """A PostgreSQL row read as sqlite3.Row is: by position, by column name, and as dict(row)."""
    names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        return super().__getitem__(self.names[key] if isinstance(key, str) else key)

    def keys(self) -> list[str]:
        """The column names, in order (what dict(row) reads)."""
        return list(self.names)


def _pg_row(cursor: Any) -> Any:
    """psycopg's row factory for PgRow."""
    names = {c.name: i for i, c in enumerate(cursor.description or [])}

    def make(values: Any) -> PgRow:
        row = PgRow(values)
        row.names = names
        return row
    return make


class PgConnection:
    """A psycopg connection that takes the SQL written for SQLite: ? placeholders become %s."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Any = ()) -> Any:
        """Run one statement; the cursor (iterable, fetchone, fetchall, description)."""
        return self.conn.execute(_pg_sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Any) -> Any:
        """Run one statement per row of parameters."""
        cur = self.conn.cursor()
        cur.executemany(_pg_sql(sql), [tuple(r) for r in rows])
        return cur


def _pg_sql(sql: str) -> str:
    """SQLite's ? placeholders as psycopg's %s (a literal % doubled). The project's SQL holds no ? in literals."""
    return sql.replace("%", "%%").replace("?", "%s")


@contextlib.contextmanager
def _pg_connect(cfg: dict[str, Any], autocommit: bool = False) -> Iterator[PgConnection]:
    """A PostgreSQL connection (psycopg, imported here only), schema-checked, committed on success, always closed."""
    import psycopg  # noqa: PLC0415 (only when a PostgreSQL store is used: the SQLite tick stays lean)
    conn = psycopg.connect(cfg["history_url"], connect_timeout=PG_CONNECT_SECONDS, row_factory=_pg_row,
                           autocommit=autocommit)
    try:
        db = PgConnection(conn)
        if not autocommit:
            _migrate_pg(db, cfg["history_url"])
        yield db
        if not autocommit:
            conn.commit()
    finally:
        conn.close()  # an uncommitted transaction is rolled back, and a session lock released


def _migrate_pg(db: PgConnection, url: str) -> None:
    """Create the schema in a new database, or upgrade an older one; hosts starting at once take turns. Checked once
    per process and database: an API worker's reads then cost one query each, not three."""
    if url in _PG_CURRENT or _pg_version(db) == SCHEMA_VERSION:
        _PG_CURRENT.add(url)
        return
    db.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK_KEY,))
    version = _pg_version(db)
    if version == SCHEMA_VERSION:
        return
    _refuse_newer(version)
    db.conn.execute(_upgrade_script("postgresql", version))  # several statements: no parameters
    db.execute("DELETE FROM history_schema")
    db.execute("INSERT INTO history_schema(version) VALUES (?)", (SCHEMA_VERSION,))
    db.conn.commit()
    _PG_CURRENT.add(url)


def _pg_version(db: PgConnection) -> int:
    """The schema version of a PostgreSQL store (0 when empty)."""
    if db.execute("SELECT to_regclass('history_schema')").fetchone()[0] is None:
        return 0
    row = db.execute("SELECT MAX(version) FROM history_schema").fetchone()
    return int(row[0] or 0)


def insert(db: Any, sql: str, params: Any) -> int:
    """Run an INSERT into a table with an id column; the new row's id (lastrowid, or RETURNING id)."""
    if isinstance(db, sqlite3.Connection):
        return int(db.execute(sql, params).lastrowid)
    return int(db.execute(f"{sql} RETURNING id", params).fetchone()[0])


def errors() -> tuple[type[BaseException], ...]:
    """The exceptions a failing store raises: psycopg's only once it has been imported (else none can occur)."""
    found: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)
    if "psycopg" in sys.modules:
        found += (sys.modules["psycopg"].Error,)
    return found


@contextlib.contextmanager
def tick_lock(cfg: dict[str, Any]) -> Iterator[None]:
    """The one tick at a time, LockBusy when held elsewhere: with SQLite a file lock in the output folder; with
    PostgreSQL a session advisory lock on a connection of its own, held open for the whole tick (the transaction
    variant, or a pooled connection, would let go at once). Both die with their holder's process or connection."""
    if not shared(cfg):
        with file_lock(artifacts.path(cfg, "tick_lock")):
            yield
        return
    with shared_lock(cfg, TICK_LOCK_KEY, "the tick lock", 0.0):
        yield


@contextlib.contextmanager
def shared_lock(cfg: dict[str, Any], key: int, what: str, wait_seconds: float) -> Iterator[None]:
    """A PostgreSQL session advisory lock, on a connection held open while it is held (so it dies with its holder),
    waited for up to wait_seconds; LockBusy when another host holds it that long."""
    with contextlib.ExitStack() as held:
        deadline = time.monotonic() + wait_seconds
        try:
            db = held.enter_context(_pg_connect(cfg, autocommit=True))
            while not db.execute("SELECT pg_try_advisory_lock(?)", (key,)).fetchone()[0]:
                if time.monotonic() >= deadline:
                    raise LockBusy(f"{what} in {store_name(cfg)} is held by another host")
                time.sleep(0.5)
        except errors() as e:
            raise HistoryError(trouble(cfg, e, f"cannot take {what}")) from None
        yield


def record_run(db: sqlite3.Connection, step: str, started: str, ended: str, seconds: float, outcome: str,
               summary: str, details: dict[str, Any], parent_id: int | None = None) -> int:
    """Insert one step run, with the files, score or release its result describes; returns its id."""
    run_id = insert(
        db, "INSERT INTO runs(step, parent_id, started_at, ended_at, seconds, outcome, summary, details) "
        "VALUES (?,?,?,?,?,?,?,?)",
        (step, parent_id, started, ended, round(seconds, 4), outcome, summary, json.dumps(details, default=str)))
    for f in details.get("ingested_files", []):
        db.execute("INSERT INTO files(run_id, name, status, rows_read, rows_added) VALUES (?,?,?,?,?)",
                   (run_id, f["name"], "ingested", f["rows_read"], f["rows_added"]))
    for f in details.get("rejected_files", []):
        db.execute("INSERT INTO files(run_id, name, status, reason) VALUES (?,?,?,?)",
                   (run_id, f["name"], "rejected", f["reason"]))
    if step == "scoring" and "f1" in details:
        record_score(db, run_id, "trained", details)
    if step == "deployment" and "version" in details:
        db.execute("INSERT INTO releases(run_id, version, action, model_sha256, f1, at) VALUES (?,?,?,?,?,?)",
                   (run_id, details["version"], details.get("action", "deploy"), details.get("model_sha256"),
                    details.get("f1"), ended))
    return run_id


def record_score(db: sqlite3.Connection, run_id: int, role: str, m: dict[str, Any],
                 release: int | None = None) -> None:
    """Insert the metrics of one model on one data set."""
    db.execute("INSERT INTO scores(run_id, role, release, model_sha256, f1, precision, recall, accuracy, roc_auc, "
               "rows) VALUES (?,?,?,?,?,?,?,?,?,?)",
               (run_id, role, release, m.get("model_sha256"), m.get("f1"), m.get("precision"), m.get("recall"),
                m.get("accuracy"), m.get("roc_auc"), m.get("rows")))


def record_decision(db: sqlite3.Connection, run_id: int, decision: str, reason: str) -> None:
    """Insert what a run decided and why."""
    db.execute("INSERT INTO decisions(run_id, decision, reason) VALUES (?,?,?)", (run_id, decision, reason))


def record_drift_check(db: sqlite3.Connection, run_id: int, check: dict[str, Any]) -> int:
    """Insert a drift check and its per-feature figures; returns the check's id."""
    est = check.get("estimated") or {}
    check_id = insert(
        db, "INSERT INTO drift_checks(run_id, release, rule, new_rows, new_score, ci_low, ci_high, deployed_score, "
        "threshold, verdict, reason, data_verdict, batch_from, batch_to, unlabelled_rows, est_f1, est_low, est_high, "
        "est_verdict, prediction_verdict, prior_verdict) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (run_id, check.get("release"), check["rule"], check["new_rows"], check.get("new_score"),
         check.get("ci_low"), check.get("ci_high"), check.get("deployed_score"), check.get("threshold"),
         check["verdict"], check["reason"], check.get("data_verdict"), check.get("batch_from", 0),
         check["batch_to"], check.get("unlabelled_rows", 0), est.get("f1"), est.get("ci_low"), est.get("ci_high"),
         est.get("verdict"), (check.get("prediction") or {}).get("verdict"), (check.get("prior") or {}).get("verdict")))
    for f in check.get("features", []):
        db.execute("INSERT INTO feature_drift(check_id, feature, psi, psi_floor, ks, ks_pvalue, missing_rate, "
                   "verdict) VALUES (?,?,?,?,?,?,?,?)",
                   (check_id, f["feature"], f.get("psi"), f.get("psi_floor"), f.get("ks"), f.get("ks_pvalue"),
                    f.get("missing_rate"), f["verdict"]))
    return check_id


def record_tick(db: sqlite3.Connection, started: str, seconds: float, result: dict[str, Any],
                steps: list[dict[str, Any]], check: dict[str, Any] | None,
                scores: list[tuple[str, dict[str, Any], Any]], decisions: list[dict[str, str]]) -> int:
    """Write a fullprocess tick, its steps, drift check, scores and decisions; returns its id."""
    details = {k: v for k, v in result.items() if k != "line"}
    # The drift check of a run that failed before carrying out its decision (training, scoring or deployment
    # failed) is kept in the run's details only: recorded as a check it would mark its rows as checked, and the
    # next run would find nothing to do, the retrain lost.
    acted_on = result["outcome"] != "failed"
    if check and not acted_on:
        details["check_not_acted_on"] = check
    run_id = record_run(db, "fullprocess", started, now_iso(), seconds, result["outcome"], result["line"], details)
    for s in steps:
        record_run(db, s["step"], s["started"], s["ended"], s["seconds"], s["outcome"], "", s["details"],
                   parent_id=run_id)
    if check and acted_on:
        record_drift_check(db, run_id, check)
    for role, metrics, release in scores:
        record_score(db, run_id, role, metrics, release)
    for d in decisions:
        record_decision(db, run_id, d["decision"], d["reason"])
    return run_id


def checked_up_to(db: sqlite3.Connection) -> int:
    """The store batch up to which rows have been drift-checked by a conclusive check (0 before any)."""
    row = db.execute("SELECT MAX(batch_to) FROM drift_checks WHERE verdict != 'insufficient-data'").fetchone()
    return int(row[0] or 0)


def last_checked_batch(db: sqlite3.Connection) -> int:
    """The store batch the latest drift check of any verdict reached (0 before any check)."""
    row = db.execute("SELECT batch_to FROM drift_checks ORDER BY id DESC LIMIT 1").fetchone()
    return int(row[0]) if row else 0


def past_new_scores(db: sqlite3.Connection, release: int) -> list[float]:
    """Scores of a release's model on earlier batches of new data, of conclusive no-drift checks only, oldest first:
    a score that was itself found to be drift never lowers the bar for the next (a lasting drop would otherwise
    stop being called drift after a few ticks when the challenger is refused)."""
    rows = db.execute("SELECT new_score FROM drift_checks WHERE release = ? AND new_score IS NOT NULL "
                      "AND verdict = 'no-drift' ORDER BY id", (release,)).fetchall()
    return [float(r[0]) for r in rows]


def call(cfg: dict[str, Any], what: str, fn: Any, *args: Any) -> Any:
    """fn(db, *args) in one transaction; HistoryError when the store fails, e.g. "the history store
    history/history.sqlite3 cannot be read (disk I/O error; 0 KB free there)"."""
    try:
        with connect(cfg) as db:
            return fn(db, *args)
    except errors() as e:
        raise HistoryError(trouble(cfg, e, what)) from None


def safely(cfg: dict[str, Any], what: str, fn: Any, *args: Any) -> Any:
    """call(), for what a step can do without: a failing store is logged as a warning and gives None."""
    try:
        return call(cfg, what, fn, *args)
    except HistoryError as e:
        log.warning("%s", e)
        return None


def store_name(cfg: dict[str, Any]) -> str:
    """The store as people know it: the SQLite file's path, or the PostgreSQL URL without its password."""
    if not shared(cfg):
        return display_path(cfg, Path(cfg["history_path"]))
    return re.sub(r"(//[^:/@]*):[^@/]*@", r"\1@", cfg["history_url"])


def trouble(cfg: dict[str, Any], e: Exception, what: str) -> str:
    """One line: the store, what failed, the error. SQLite says "disk I/O error" when a full disk leaves no room for
    its shared-memory file, so the free space is named when low."""
    low = ""
    if not shared(cfg):
        path = Path(cfg["history_path"])
        free = shutil.disk_usage(path.parent).free if path.parent.is_dir() else 0
        low = f"; {free // 1024:,} KB free there" if free < LOW_DISK_BYTES else ""
    said = " ".join(str(e).split())  # psycopg's messages span lines
    return f"the history store {store_name(cfg)} {what} ({said}{low})"


def latest_check(db: sqlite3.Connection) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The latest drift check (with its features, when its run started and the batches it read) and the decisions
    of its run."""
    row = db.execute("SELECT c.*, r.started_at FROM drift_checks c JOIN runs r ON r.id = c.run_id "
                     "ORDER BY c.id DESC LIMIT 1").fetchone()
    if row is None:
        return None, []
    check = dict(row)
    check["features"] = [dict(f) for f in db.execute(
        "SELECT feature, psi, psi_floor, ks, ks_pvalue, missing_rate, verdict FROM feature_drift WHERE check_id = ?",
        (row["id"],))]
    decisions = [dict(d) for d in db.execute("SELECT decision, reason FROM decisions WHERE run_id = ?",
                                             (row["run_id"],))]
    return check, decisions


def last_successful_run(db: sqlite3.Connection) -> dict[str, Any] | None:
    """When the latest successful fullprocess run ended, how long ago (seconds) and its outcome; None before any."""
    # newest first along the runs(step, id) index: the scan stops at the first success
    row = db.execute("SELECT ended_at, outcome FROM runs WHERE step = 'fullprocess' "
                     "AND outcome IN ('ok', 'no-new-data') ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return None
    age = datetime.now(timezone.utc) - datetime.fromisoformat(row["ended_at"])
    return {"at": row["ended_at"], "age_seconds": round(age.total_seconds(), 3), "outcome": row["outcome"]}


def failures_before_latest(db: sqlite3.Connection, last: int = 100) -> tuple[int, str | None]:
    """How many fullprocess runs failed in a row just before the latest one (busy ticks aside, at most last), and
    when the first of them started."""
    rows = db.execute("SELECT outcome, started_at FROM runs WHERE step = 'fullprocess' AND outcome != 'busy' "
                      "ORDER BY id DESC LIMIT ?", (last + 1,)).fetchall()
    failed = 0
    for r in rows[1:]:
        if r["outcome"] != "failed":
            break
        failed += 1
    return failed, rows[failed]["started_at"] if failed else None


def alerts_sent(db: sqlite3.Connection, targets: list[str]) -> dict[tuple[str, str], str]:
    """When each kind of alert was last delivered to each target: {(target, kind): at}."""
    out: dict[tuple[str, str], str] = {}
    for target in targets:
        for r in db.execute("SELECT kind, at FROM alerts WHERE id IN (SELECT MAX(id) FROM alerts WHERE target = ? "
                            "AND delivered = 1 GROUP BY kind)", (target,)):
            out[(target, r["kind"])] = r["at"]
    return out


def record_alerts(db: sqlite3.Connection, rows: list[tuple[str, str, str, bool, str]]) -> None:
    """Insert alert attempts: (at, kind, target, delivered, title) each."""
    db.executemany("INSERT INTO alerts(at, kind, target, delivered, title) VALUES (?,?,?,?,?)",
                   [(at, kind, target, int(delivered), title) for at, kind, target, delivered, title in rows])


def step_seconds(db: sqlite3.Connection, step: str, last: int = 20) -> list[float]:
    """Durations of a step's latest successful runs, newest first."""
    rows = db.execute("SELECT seconds FROM runs WHERE step = ? AND outcome = 'ok' ORDER BY id DESC LIMIT ?",
                      (step, last)).fetchall()
    return [float(r[0]) for r in rows]


def recent_alerts(db: sqlite3.Connection, limit: int = 10) -> list[dict[str, Any]]:
    """The latest alert attempts, newest first: at, kind, target, delivered (bool), title."""
    rows = db.execute("SELECT at, kind, target, delivered, title FROM alerts ORDER BY id DESC LIMIT ?", (limit,))
    return [{**dict(r), "delivered": bool(r["delivered"])} for r in rows]


def release_pointer(db: Any) -> str | None:
    """The current release's folder, relative to prod_deployment_path, from the shared store (None when unset)."""
    row = db.execute("SELECT folder FROM release_pointer WHERE name = 'current'").fetchone()
    return row[0] if row else None


def move_release_pointer(db: Any, folder: str, version: int, action: str, expected: int | None = None) -> bool:
    """Point the shared store at a release folder and log it, in the caller's one transaction; only while release
    `expected` is current there, when given (the row is locked meanwhile, so a rollback and a deployment from two
    hosts take turns). Whether it moved. A store without the row yet (the release was deployed before history_url
    moved here) takes the caller's word for what is current."""
    row = db.execute("SELECT version FROM release_pointer WHERE name = 'current' FOR UPDATE").fetchone()
    was = int(row[0]) if row else None
    if expected is not None and was is not None and was != expected:
        return False
    at = db.execute(f"SELECT {PG_NOW}").fetchone()[0]
    db.execute("INSERT INTO release_pointer(name, folder, version, changed_at) VALUES ('current', ?, ?, ?) "
               "ON CONFLICT (name) DO UPDATE SET folder = excluded.folder, version = excluded.version, "
               "changed_at = excluded.changed_at", (folder, version, at))
    db.execute("INSERT INTO deployment_log(at, version, action, from_version, host) VALUES (?, ?, ?, ?, ?)",
               (at, version, action, was if row else expected, socket.gethostname()))
    return True


def live_at(db: Any, at: str) -> dict[str, Any] | None:
    """What was live at a time (ISO 8601 UTC, as now_iso writes it): the release the latest pointer move up to then
    made current, with when and how (deploy or rollback) and from which host; None before the first."""
    row = db.execute("SELECT version, action, at, from_version, host FROM deployment_log WHERE at <= ? "
                     "ORDER BY at DESC, id DESC LIMIT 1", (at,)).fetchone()
    return dict(row) if row else None
