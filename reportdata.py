"""The facts the PDF report and the /dashboard page both show, read from the artifacts and the history store.

    t = trends(cfg); charts = trend_series(t)      # the trend charts, as (x, y) series
    check, decisions = latest_check(cfg)
    status = headline(check, decisions)            # what the system did about the latest check, in one line
    alerts = recent_alerts(cfg)                    # the latest alerts sent

reporting.py draws these with matplotlib into the PDF; app.py renders them as HTML and inline SVG. Keeping the
reading here means the two can never disagree about what a chart or table holds.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

import pandas as pd

import artifacts
import history
import store
from filerecord import escape_name, live_files, read_manifest

TOP_CLIENTS = 20
ALERTS_SHOWN = 10


def number(v: Any, digits: int = 3) -> str:
    """A number for people: thousands separators, fixed decimals, '-' for none."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, int) or (hasattr(v, "dtype") and v.dtype.kind in "iu"):
        return f"{int(v):,}"
    return f"{float(v):,.{digits}f}"


def percent(v: Any, digits: int = 1) -> str:
    """A share (0-1) as a percentage."""
    return "-" if v is None else f"{100 * float(v):.{digits}f}%"


def when(iso: str | None) -> str:
    """A stored ISO 8601 UTC timestamp as people read it: '2026-11-23 16:48 UTC'."""
    return f"{iso[:10]} {iso[11:16]} UTC" if iso and len(iso) >= 16 else (iso or "-")


def record_int(v: Any) -> int | None:
    """A record's count as an int (None when it has none)."""
    return int(v) if isinstance(v, int) or (isinstance(v, str) and v.lstrip("-").isdigit()) else None


def saved_diagnostics(cfg: dict[str, Any]) -> dict[str, Any]:
    """The diagnostics.json diagnostics.py last wrote (empty when there is none)."""
    try:
        return json.loads(artifacts.path(cfg, "diagnostics").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def file_records(cfg: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The ingested files (their live versions) and the rejected files, as the store's manifest has them, each name
    as one printable line (a name with control characters or undecodable bytes must not break a page)."""
    manifest = read_manifest(cfg)
    ingested = {name: {**b, "name": escape_name(name), "rows_read": b["rows"]}
                for name, b in live_files(manifest).items()}
    rejected = {name: {**e, "name": escape_name(name)} for name, e in manifest["rejected"].items()}
    return ingested, rejected


def trends(cfg: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """Tables from the history store: releases, timings of successful step runs, per-feature drift per check."""
    def read(db: Any) -> dict[str, pd.DataFrame]:
        def q(sql: str, *args: Any) -> pd.DataFrame:
            """One query as a frame (through the store's own connection, SQLite or PostgreSQL)."""
            cur = db.execute(sql, args)
            return pd.DataFrame.from_records(cur.fetchall(), columns=[c[0] for c in cur.description],
                                             coerce_float=True)
        marks = ", ".join("?" * len(history.TIMED_STEPS))
        return {
            "releases": q("SELECT version, action, f1, at FROM releases ORDER BY run_id"),
            "timings": q(f"SELECT id, step, seconds, started_at FROM runs WHERE outcome = 'ok' AND step IN ({marks}) "
                         "ORDER BY id", *history.TIMED_STEPS),
            # a check of zero new rows (a run that only rejected files) has nothing to plot
            "features": q("SELECT c.id AS check_id, f.feature, f.psi, f.ks, f.missing_rate, f.verdict FROM "
                          "feature_drift f JOIN drift_checks c ON c.id = f.check_id WHERE c.new_rows > 0 "
                          "ORDER BY c.id"),
            "checks": q("SELECT id AS check_id, new_score, est_f1 FROM drift_checks WHERE new_rows > 0 ORDER BY id"),
        }
    return history.safely(cfg, "cannot be read for trends", read) or {}


def trend_series(t: dict[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """The trend charts: score per release, step timings per run, missing data, data drift and realized against
    estimated F1 per check."""
    if not t:
        return []
    rel, timings, feats, scored = t["releases"], t["timings"], t["features"], t["checks"]
    # every check of new rows gets its number, so check n is the same check in every per-check chart
    checks = {cid: i + 1 for i, cid in enumerate(scored["check_id"])}
    def f1_series(col: str) -> list[tuple[int, float]]:
        """(check number, col) for the checks that have a value of col."""
        return [(checks[c], float(v)) for c, v in zip(scored["check_id"], scored[col], strict=True) if pd.notna(v)]
    def per_check(col: str, scale: float) -> dict[str, list[tuple[int, float]]]:
        """One series per feature: (check number, scaled value of col)."""
        return {name: [(checks[c], scale * v) for c, v in zip(g["check_id"], g[col], strict=True)]
                for name, g in feats.groupby("feature")}
    return [
        {"title": "F1 on the test data per release", "x_label": "release event", "y_label": "F1", "y_range": (0, 1),
         "series": {"F1": [(i + 1, f, f"release {v} ({a})") for i, (v, a, f)
                           in enumerate(zip(rel["version"], rel["action"], rel["f1"], strict=True))]}},
        {"title": "Step duration per run", "x_label": "run of the step", "y_label": "seconds", "y_range": None,
         "series": {step: list(enumerate(g["seconds"], start=1)) for step, g in timings.groupby("step", sort=False)}},
        {"title": "Missing values per drift check", "x_label": "drift check", "y_label": "% of new rows",
         "y_range": None, "series": per_check("missing_rate", 100)},
        {"title": "Data drift per drift check (PSI)", "x_label": "drift check", "y_label": "PSI", "y_range": None,
         "series": per_check("psi", 1)},
        {"title": "F1 per drift check: realized and estimated", "x_label": "drift check", "y_label": "F1",
         "y_range": (0, 1), "series": {"realized F1": f1_series("new_score"),
                                       "estimated F1 (no labels)": f1_series("est_f1")}},
    ]


def trend_counts(t: dict[str, pd.DataFrame]) -> dict[str, int]:
    """How many release events, fullprocess runs that did work and drift checks of new rows the charts cover."""
    if not t:
        return {"releases": 0, "runs": 0, "checks": 0}
    return {"releases": len(t["releases"]), "runs": int((t["timings"]["step"] == "fullprocess").sum()),
            "checks": int(t["features"]["check_id"].nunique())}


def latest_check(cfg: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The latest drift check (with the byte range it read) and the decisions of its run."""
    return history.safely(cfg, "cannot be read for the latest check", history.latest_check) or (None, [])


def top_clients(cfg: dict[str, Any], model: Any, check: dict[str, Any] | None) -> pd.DataFrame:
    """The highest-risk clients among the latest ingested rows (those of the latest drift check, else all)."""
    after = int(check["batch_from"]) if check and check.get("batch_from") else 0
    df = store.read_dataset(cfg, read_manifest(cfg), after=after)
    if df.empty:
        return df.assign(risk=pd.Series(dtype=float))
    df = df.assign(risk=model.predict_proba(df[cfg["feature_columns"]])[:, 1])
    return df.nlargest(TOP_CLIENTS, "risk")  # not a full sort: the latest data may be a million rows


def recent_alerts(cfg: dict[str, Any], limit: int = ALERTS_SHOWN) -> list[dict[str, Any]]:
    """The latest alerts sent (newest first), each with when, kind, delivered and title; empty when none."""
    return history.safely(cfg, "cannot be read for the alerts sent", history.recent_alerts, limit) or []


def _group(reason: str, pattern: str) -> str | None:
    """The first group of pattern in a decision's reason, None when the reason does not have it."""
    m = re.search(pattern, reason)
    return m.group(1) if m else None


def headline(check: dict[str, Any] | None, decisions: list[dict[str, Any]]) -> str:
    """What the system found and did at the latest check, e.g. 'drift found -> retrained -> release 2 deployed'."""
    if check is None:
        return "no drift check has run yet"
    verdict, release = check["verdict"], check.get("release")
    found = {"drift": "drift found", "no-drift": "no drift", "bootstrap": "first run",
             "insufficient-data": "insufficient data (rows wait for the next check)"}.get(verdict, verdict)
    steps = [found]
    for d in decisions:
        kind, reason = d["decision"], d["reason"]
        if kind == "retrain":
            # a retrain without model drift has another cause (data drift, an estimated drop, --force): name it
            if verdict != "drift":
                steps.append(reason.split(":")[0].split(" (")[0])
            steps.append("retrained")
        elif kind == "deploy":
            deployed = _group(reason, r"deployed release (\d+)") or "?"
            steps.append(f"release {deployed} deployed")
        elif kind == "bootstrap":
            steps.append(f"trained -> release {release or '?'} deployed")
        elif kind == "reject-challenger":
            m = re.search(r"challenger F1 ([\d.]+) vs release \d+'s ([\d.]+)", reason)
            refused = f"challenger refused (F1 {float(m[1]):.2f} vs {float(m[2]):.2f})" if m else "challenger refused"
            steps.append(f"{refused} -> release {release or '?'} stays")
        elif kind == "not-deployed":
            steps.append(f"challenger not deployed ({reason}) -> release {release or '?'} stays")
        elif kind == "keep" and verdict != "insufficient-data":  # the wait already says the release stays
            steps.append(f"release {release or '?'} stays")
    line = " -> ".join(steps)
    if check.get("est_f1") is not None:
        band = (f" ({check['est_low']:.2f}-{check['est_high']:.2f})"
                if check.get("est_low") is not None and check.get("est_high") is not None else "")
        line += f"; estimated F1 without labels {check['est_f1']:.2f}{band}"
    return line
