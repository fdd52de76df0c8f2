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
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import artifacts
import cli
import history
import releases
import store
from atomicio import atomic_write_json
from config import display_path, load_config
from filerecord import read_manifest
from scoring import read_test_data

log = logging.getLogger("diagnostics")

REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"
UNKNOWN = "unknown"


def predict_deployed(cfg: dict[str, Any], df: pd.DataFrame) -> list[int]:
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


def missing_table(df: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Missing values per column: count and percent of rows."""
    n = len(df)
    out = {}
    for col in df.columns:
        missing = df[col].isna()
        if pd.api.types.is_string_dtype(df[col].dtype):
            missing |= df[col] == ""  # an empty id cell is missing too
        count = int(missing.sum())
        out[col] = {"count": count, "percent": round(100 * count / n, 4) if n else 0.0}
    return out


def dataset_figures(cfg: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Rows, summary statistics and missing data of the ingested dataset: Spark aggregates on the spark engine (the
    data need not fit this process), else from the frame store.read_dataset gives."""
    manifest = read_manifest(cfg)
    if cfg["engine"] == "spark":
        import sparkengine  # only here: pyspark is installed where a config chooses the engine

        data = sparkengine.dataset(cfg, sparkengine.session(cfg, "diagnostics"), manifest)
        try:
            return sparkengine.summary(cfg, data)
        finally:
            data.unpersist()
    df = store.read_dataset(cfg, manifest)
    return len(df), summary_stats(df, cfg), missing_table(df)


def timings(cfg: dict[str, Any]) -> dict[str, Any]:
    """Durations of recent real runs of each step, from the history store."""
    def read(db: Any) -> dict[str, Any]:
        secs = {step: history.step_seconds(db, step) for step in history.TIMED_STEPS}
        return {step: {"latest_seconds": s[0] if s else None, "median_seconds": statistics.median(s) if s else None,
                       "runs": len(s)} for step, s in secs.items()}
    steps = history.safely(cfg, "cannot be read for timings", read) or {}
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
    for (name, spec), new in zip(reqs, latest, strict=True):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "not installed"
        rows.append({"package": name, "required": spec, "installed": installed, "latest": new,
                     "outdated": new not in (UNKNOWN, installed)})
    return {"checked_at": history.now_iso(), "checked_epoch": time.time(), "index": "pip's configured index",
            "packages": rows}


def latest_drift(cfg: dict[str, Any]) -> dict[str, Any] | None:
    """The most recent drift check with its per-feature figures, from the history store."""
    return (history.safely(cfg, "cannot be read for the latest drift check", history.latest_check) or (None,))[0]


def diagnose(cfg: dict[str, Any]) -> dict[str, Any]:
    """Compute every diagnostic and save them atomically as diagnostics.json."""
    started = time.monotonic()
    path = artifacts.path(cfg, "diagnostics")
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = {}
    rows, stats, missing = dataset_figures(cfg)
    release = releases.current_release(cfg)
    result = {
        "generated_at": history.now_iso(),
        "release": release["version"] if release else None,
        "data_rows": rows,
        "summary_stats": stats,
        "missing_data": missing,
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


# The course's starter names (Udacity's "A Dynamic Risk Assessment System"): thin calls of the functions above.
def model_predictions(df: pd.DataFrame | None = None, *, config_path: str | Path | None = None) -> list[int]:
    """0/1 predictions of the deployed model, one per row of df (default: the test data)."""
    cfg = load_config(config_path)
    return predict_deployed(cfg, read_test_data(cfg) if df is None else df)


def dataframe_summary(*, config_path: str | Path | None = None) -> list[list[Any]]:
    """[column, mean, median, std] for each numeric column (features and target) of the ingested data."""
    _, stats, _ = dataset_figures(load_config(config_path))
    return [[col, s["mean"], s["median"], s["std"]] for col, s in stats.items()]


def missing_data(*, config_path: str | Path | None = None) -> list[list[Any]]:
    """[column, fraction of rows missing] for each column of the ingested data."""
    n, _, missing = dataset_figures(load_config(config_path))
    # From the counts, not the rounded percent: the fraction is exact.
    return [[col, m["count"] / n if n else 0.0] for col, m in missing.items()]


def execution_time(*, config_path: str | Path | None = None) -> list[float]:
    """[ingestion seconds, training seconds] of the latest recorded runs; nothing is re-run."""
    cfg = load_config(config_path)
    steps = timings(cfg)["steps"]
    out = []
    for step in ("ingestion", "training"):
        seconds = (steps.get(step) or {}).get("latest_seconds")
        if seconds is None:
            raise cli.StepError(f"no successful {step} run recorded in the history store yet; "
                                f"run fullprocess.py (or {step}.py) first")
        out.append(float(seconds))
    return out


def outdated_packages_list(*, config_path: str | Path | None = None) -> list[list[str]]:
    """[package, installed, latest] for each package of requirements.txt."""
    cfg = load_config(config_path)
    try:
        saved = json.loads(artifacts.path(cfg, "diagnostics").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    # The versions diagnostics.py last looked up are reused while fresh: no wait on pip's index per call.
    deps = dependencies(cfg, saved.get("dependencies"))
    return [[p["package"], p["installed"], p["latest"]] for p in deps["packages"]]


if __name__ == "__main__":
    cli.run("diagnostics", cli.parser(__doc__).parse_args(), diagnose, tables)
