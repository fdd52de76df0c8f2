"""The history store: one SQLite file (WAL mode) remembering every run of every step, for decisions and trends.

    with connect(cfg) as db:                      # creates or upgrades the schema (schema.sql)
        run_id = record_run(db, "ingestion", started, ended, "ok", line, result)

The schema lives in schema.sql; PRAGMA user_version numbers it, and MIGRATIONS upgrades older files in place.
Only the standard library is used, so the cron tick with no new data can record itself cheaply.
"""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from config import display_path

log = logging.getLogger("history")

SCHEMA_FILE = Path(__file__).resolve().parent / "schema.sql"
SCHEMA_VERSION = 4
# version -> SQL that upgrades a file of the previous version (schema.sql is the current version whole).
MIGRATIONS: dict[int, str] = {
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
}
TIMED_STEPS = ("ingestion", "training", "scoring", "deployment", "fullprocess")  # shown in timings and trends
LOW_DISK_BYTES = 10 * 2**20


class HistoryError(Exception):
    """The history store could not be read or written; the message is one line naming the store and why."""


def now_iso() -> str:
    """The current UTC time, ISO 8601 with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextlib.contextmanager
def connect(cfg: dict[str, Any]) -> Iterator[sqlite3.Connection]:
    """An open, schema-checked connection that commits on success and always closes."""
    path = Path(cfg["history_path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30)
    try:
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        _migrate(db)
        with db:
            yield db
    finally:
        db.close()


def _migrate(db: sqlite3.Connection) -> None:
    """Create the schema in a new file, or upgrade an older one step by step."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(f"history file has schema version {version}, newer than this code's "
                                    f"{SCHEMA_VERSION}; upgrade the code")
    with db:
        if version == 0:
            db.executescript(SCHEMA_FILE.read_text(encoding="utf-8"))
            version = SCHEMA_VERSION
        while version < SCHEMA_VERSION:
            version += 1
            db.executescript(MIGRATIONS[version])
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def record_run(db: sqlite3.Connection, step: str, started: str, ended: str, seconds: float, outcome: str,
               summary: str, details: dict[str, Any], parent_id: int | None = None) -> int:
    """Insert one step run, with the files, score or release its result describes; returns its id."""
    cur = db.execute(
        "INSERT INTO runs(step, parent_id, started_at, ended_at, seconds, outcome, summary, details) "
        "VALUES (?,?,?,?,?,?,?,?)",
        (step, parent_id, started, ended, round(seconds, 4), outcome, summary, json.dumps(details, default=str)))
    run_id = int(cur.lastrowid)
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
    cur = db.execute(
        "INSERT INTO drift_checks(run_id, release, rule, new_rows, new_score, ci_low, ci_high, deployed_score, "
        "threshold, verdict, reason, data_verdict, batch_from, batch_to, unlabelled_rows, est_f1, est_low, est_high, "
        "est_verdict, prediction_verdict, prior_verdict) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (run_id, check.get("release"), check["rule"], check["new_rows"], check.get("new_score"),
         check.get("ci_low"), check.get("ci_high"), check.get("deployed_score"), check.get("threshold"),
         check["verdict"], check["reason"], check.get("data_verdict"), check.get("batch_from", 0),
         check["batch_to"], check.get("unlabelled_rows", 0), est.get("f1"), est.get("ci_low"), est.get("ci_high"),
         est.get("verdict"), (check.get("prediction") or {}).get("verdict"), (check.get("prior") or {}).get("verdict")))
    check_id = int(cur.lastrowid)
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
    except (sqlite3.Error, OSError) as e:
        raise HistoryError(trouble(cfg, e, what)) from None


def safely(cfg: dict[str, Any], what: str, fn: Any, *args: Any) -> Any:
    """call(), for what a step can do without: a failing store is logged as a warning and gives None."""
    try:
        return call(cfg, what, fn, *args)
    except HistoryError as e:
        log.warning("%s", e)
        return None


def trouble(cfg: dict[str, Any], e: Exception, what: str) -> str:
    """One line: the store, what failed, the error. SQLite says "disk I/O error" when a full disk leaves no room for
    its shared-memory file, so the free space is named when low."""
    path = Path(cfg["history_path"])
    free = shutil.disk_usage(path.parent).free if path.parent.is_dir() else 0
    low = f"; {free // 1024:,} KB free there" if free < LOW_DISK_BYTES else ""
    return f"the history store {display_path(cfg, path)} {what} ({e}{low})"


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
        for r in db.execute("SELECT kind, MAX(id), at FROM alerts WHERE target = ? AND delivered = 1 GROUP BY kind",
                            (target,)):
            out[(target, r["kind"])] = r["at"]
    return out


def record_alerts(db: sqlite3.Connection, rows: list[tuple[str, str, str, bool, str]]) -> None:
    """Insert alert attempts: (at, kind, target, delivered, title) each."""
    db.executemany("INSERT INTO alerts(at, kind, target, delivered, title) VALUES (?,?,?,?,?)", rows)


def step_seconds(db: sqlite3.Connection, step: str, last: int = 20) -> list[float]:
    """Durations of a step's latest successful runs, newest first."""
    rows = db.execute("SELECT seconds FROM runs WHERE step = ? AND outcome = 'ok' ORDER BY id DESC LIMIT ?",
                      (step, last)).fetchall()
    return [float(r[0]) for r in rows]


def recent_alerts(db: sqlite3.Connection, limit: int = 10) -> list[dict[str, Any]]:
    """The latest alert attempts, newest first: at, kind, target, delivered (bool), title."""
    rows = db.execute("SELECT at, kind, target, delivered, title FROM alerts ORDER BY id DESC LIMIT ?", (limit,))
    return [{**dict(r), "delivered": bool(r["delivered"])} for r in rows]
