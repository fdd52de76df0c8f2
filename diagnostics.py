"""Diagnostics of the data, the deployed model and the environment, saved for the API and the report.

    python diagnostics.py            # refresh <output_model_path>/diagnostics.json and print readable tables
    python diagnostics.py --json     # the same result as JSON

Holds: predictions of the deployed model on given data; summary statistics (count, mean, median, std, min, max)
per numeric column of the ingested data; missing values per column (count and percent); step timings; a
dependency table (package, required, installed, latest) for requirements.txt.

Timings are read from the durations recorded by real runs in the history store (latest and median of the last
20), never by re-running ingestion or training over the real artifacts. Latest versions come from pip's own
configured index (`pip index versions`, so the user's pip config and mirrors apply) with a short timeout, in
parallel, cached for diagnostics.cache_hours; offline, the answer is "unknown" within the timeout.
"""
from __future__ import annotations

import json
import logging
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import cli
import releases
import history
from atomicio import atomic_write_json
from config import display_path
from ingestion import read_finaldata

log = logging.getLogger("diagnostics")

DIAGNOSTICS_FILE = "diagnostics.json"
REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"
TIMED_STEPS = ("ingestion", "training", "scoring", "deployment", "fullprocess")
UNKNOWN = "unknown"


def model_predictions(cfg: dict[str, Any], df: pd.DataFrame) -> list[int]:
    """Predictions (0/1) of the deployed model for a frame with the feature columns."""
    model, _ = releases.load_deployed_model(cfg)
    return [int(p) for p in model.predict(df[cfg["feature_columns"]])]


def summary_stats(df: pd.DataFrame, cfg: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """count, mean, median, std, min and max of every numeric column (features and target)."""
    out = {}
    for col in [*cfg["feature_columns"], cfg["target_column"]]:
        x = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype="float64")
        x = x[~np.isnan(x)]
        none = x.size == 0
        out[col] = {
            "count": int(x.size),
            "mean": None if none else float(x.mean()),
            "median": None if none else float(np.median(x)),
            "std": None if x.size < 2 else float(x.std(ddof=1)),
            "min": None if none else float(x.min()),
            "max": None if none else float(x.max()),
        }
    return out


def missing_data(df: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Missing values per column: count and percent of rows."""
    n = len(df)
    out = {}
    for col in df.columns:
        missing = df[col].isna()
        if df[col].dtype == object:
            missing |= df[col] == ""  # an empty id cell is missing too
        count = int(missing.sum())
        out[col] = {"count": count, "percent": round(100 * count / n, 4) if n else 0.0}
    return out


def timings(cfg: dict[str, Any]) -> dict[str, Any]:
    """Durations of recent real runs of each step, from the history store."""
    def read(db: Any) -> dict[str, Any]:
        out = {}
        for step in TIMED_STEPS:
            rows = db.execute("SELECT seconds FROM runs WHERE step = ? AND outcome = 'ok' ORDER BY id DESC "
                              "LIMIT 20", (step,)).fetchall()
            secs = [float(r[0]) for r in rows]
            out[step] = {"latest_seconds": secs[0] if secs else None,
                         "median_seconds": statistics.median(secs) if secs else None, "runs": len(secs)}
        return out
    steps = history.safely(cfg, "timings", read, reading=True) or {}
    return {"source": "durations recorded by real runs in the history store", "steps": steps}


def requirements(path: Path = REQUIREMENTS) -> list[tuple[str, str]]:
    """(name, specifier) of each line of requirements.txt."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$", line)
        if m:
            out.append((m.group(1), m.group(2).strip()))
    return out


def latest_version(name: str, timeout: float) -> str:
    """The newest version pip's configured index offers for a package, or "unknown" (offline, timeout)."""
    cmd = [sys.executable, "-m", "pip", "index", "versions", name, "--disable-pip-version-check",
           "--timeout", str(max(1, int(timeout))), "--retries", "0"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 2)
    except (subprocess.TimeoutExpired, OSError):
        return UNKNOWN
    m = re.search(rf"^{re.escape(name)} \(([^)]+)\)", p.stdout, re.MULTILINE | re.IGNORECASE)
    return m.group(1) if p.returncode == 0 and m else UNKNOWN


def dependencies(cfg: dict[str, Any], cached: dict[str, Any] | None = None) -> dict[str, Any]:
    """Package, required, installed and latest version for requirements.txt, reusing a fresh enough cache."""
    reqs = requirements()
    max_age = cfg["diagnostics"]["cache_hours"] * 3600
    if cached and [r["package"] for r in cached.get("packages", [])] == [n for n, _ in reqs]:
        # an offline answer ("unknown") is reused for an hour at most, so a later run can fill it in
        if any(r["latest"] == UNKNOWN for r in cached["packages"]):
            max_age = min(max_age, 3600)
        if time.time() - cached.get("checked_epoch", 0) < max_age:
            return cached
    timeout = cfg["diagnostics"]["pip_timeout"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        latest = list(pool.map(lambda r: latest_version(r[0], timeout), reqs))
    rows = []
    for (name, spec), new in zip(reqs, latest):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "not installed"
        rows.append({"package": name, "required": spec, "installed": installed, "latest": new,
                     "outdated": new not in (UNKNOWN, installed)})
    return {"checked_at": _now(), "checked_epoch": time.time(), "index": "pip's configured index",
            "packages": rows}


def latest_drift(cfg: dict[str, Any]) -> dict[str, Any] | None:
    """The most recent drift check with its per-feature figures, from the history store."""
    def read(db: Any) -> dict[str, Any] | None:
        row = db.execute("SELECT c.*, r.started_at FROM drift_checks c JOIN runs r ON r.id = c.run_id "
                         "ORDER BY c.id DESC LIMIT 1").fetchone()
        if row is None:
            return None
        feats = db.execute("SELECT feature, psi, psi_floor, ks, ks_pvalue, missing_rate, verdict FROM "
                           "feature_drift WHERE check_id = ?", (row["id"],)).fetchall()
        check = {k: row[k] for k in row.keys() if k not in ("id", "run_id")}
        return {**check, "features": [dict(f) for f in feats]}
    return history.safely(cfg, "the latest drift check", read, reading=True)


def diagnose(cfg: dict[str, Any]) -> dict[str, Any]:
    """Compute every diagnostic and save them atomically as diagnostics.json."""
    started = time.monotonic()
    path = cfg["output_model_path"] / DIAGNOSTICS_FILE
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = {}
    df = read_finaldata(cfg)
    release = releases.current_release(cfg)
    result = {
        "generated_at": _now(),
        "release": release["version"] if release else None,
        "data_rows": len(df),
        "summary_stats": summary_stats(df, cfg),
        "missing_data": missing_data(df),
        "timings": timings(cfg),
        "dependencies": dependencies(cfg, previous.get("dependencies")),
        "drift": latest_drift(cfg),
    }
    result["seconds"] = round(time.monotonic() - started, 3)
    atomic_write_json(path, result)
    result["file"] = display_path(cfg, path)
    return result


def refresh(cfg: dict[str, Any]) -> dict[str, Any]:
    """What fullprocess calls after a run that changed something."""
    r = diagnose(cfg)
    return {"file": r["file"], "seconds": r["seconds"]}


def _now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fmt(v: Any) -> str:
    """A number for a table cell."""
    if v is None:
        return "-"
    return f"{v:,.3f}" if isinstance(v, float) else str(v)


def tables(r: dict[str, Any]) -> str:
    """The diagnostics as plain-text tables."""
    lines = [f"diagnostics of {r['data_rows']:,} ingested rows, release {r['release']} -> {r['file']}", "",
             f"{'column':<24}{'count':>10}{'mean':>14}{'median':>14}{'std':>14}{'min':>12}{'max':>14}"]
    for col, s in r["summary_stats"].items():
        lines.append(f"{col:<24}{s['count']:>10,}" + "".join(f"{_fmt(s[k]):>14}" for k in ("mean", "median", "std"))
                     + f"{_fmt(s['min']):>12}{_fmt(s['max']):>14}")
    lines += ["", f"{'column':<24}{'missing':>10}{'percent':>10}"]
    lines += [f"{c:<24}{m['count']:>10,}{m['percent']:>9.2f}%" for c, m in r["missing_data"].items()]
    lines += ["", f"{'step':<14}{'latest s':>10}{'median s':>10}{'runs':>6}   ({r['timings']['source']})"]
    for step, t in r["timings"]["steps"].items():
        lines.append(f"{step:<14}{_fmt(t['latest_seconds']):>10}{_fmt(t['median_seconds']):>10}{t['runs']:>6}")
    lines += ["", f"{'package':<16}{'required':<14}{'installed':<14}{'latest':<14}"]
    for p in r["dependencies"]["packages"]:
        flag = "  (update available)" if p["outdated"] else ""
        lines.append(f"{p['package']:<16}{p['required']:<14}{p['installed']:<14}{p['latest']:<14}{flag}")
    d = r.get("drift")
    if d:
        lines += ["", f"latest drift check: {d['verdict']} / data {d['data_verdict']} ({d['reason']})"]
    return "\n".join(lines)


if __name__ == "__main__":
    cli.run("diagnostics", cli.parser(__doc__).parse_args(), diagnose, tables)
