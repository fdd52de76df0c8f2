"""The cron entry: new data -> drift check -> retrain and redeploy when needed -> history -> refresh outputs.

    python fullprocess.py              # what cron runs every 10 minutes (see cronjob.txt)
    python fullprocess.py --dry-run    # say what it would do; change nothing
    python fullprocess.py --force      # retrain and deploy whatever the drift check says

1. Takes a lock; if another run holds it, says so and exits 0 (overlapping cron ticks are normal).
2. Looks for new data: files whose size or mtime changed are hashed and compared with the ingestion record (a
   file touched but unchanged gets its new mtime recorded, so it is hashed once). Removes what killed runs left
   half-written. None, and a release is deployed: records the tick and exits, without importing pandas or
   scikit-learn, and leaves a stamp of what it saw; while nothing it saw changes, the next ticks are recorded
   from that stamp at about the cost of starting Python (tickstamp.py). (Rows ingested by a run killed before
   its drift check are not "new" files, but are checked by the next run.)
3. Ingests. Nothing deployed yet: trains, scores and deploys from whatever data exists (bootstrap).
4. Checks the deployed model on the rows that arrived since the last conclusive check (drift.py: the config's
   rule, a bootstrap interval and a minimum margin; "insufficient-data" keeps the rows for the next check), and
   data drift per feature against the release's reference profile.
5. On model drift (or data drift, if the config says so, or --force) trains a challenger, scores it, and deploys
   it only if it is not worse than the deployed model on the same test data (deployment.promotion_tolerance).
   Data drift on too few rows for a model check retrains nothing: those rows wait for the next check.
6. Records the run, every step's timing, the drift check and each decision with its reason in the history store.
7. If anything changed, refreshes diagnostics, the report and the API answers (after recording, so the report's
   trends include this run; a run killed before it, or an output that failed, leaves a marker the next tick acts
   on). Failures: logged only.
A failure (a step, a full disk, a read-only folder, a history store that cannot record the run) ends the run
with one line on stderr and exit code 1; what was stored stays, and the next run does the work again.
"""
from __future__ import annotations

import sys

import tickstamp

# Before any other import: a tick with nothing new since the last full one is recorded and said from a stamp, at
# about the cost of starting Python (tickstamp.py says how it knows).
if __name__ == "__main__" and tickstamp.quick_tick(sys.argv[1:]):
    sys.exit(0)

import importlib  # noqa: E402 (after the quick tick on purpose)
import json
import logging
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

# Only light modules here: a no-new-data tick without a valid stamp runs this far. The heavy steps (pandas,
# scikit-learn) are imported in run_pipeline(), after new data has been found.
import cli
import deployment
import history
from atomicio import LockBusy, file_lock, remove_stale_temps
from config import display_path
from filerecord import (INGESTED_FIELDS, INGESTED_FILE, REJECTED_FIELDS, REJECTED_FILE, new_files, read_record,
                        record_name, write_record)
from modelstore import ModelError

log = logging.getLogger("fullprocess")

LOCK_FILE = ".fullprocess.lock"
OUTPUTS_PENDING = ".outputs-pending"  # in the output folder: a run changed something its outputs do not show yet
FINALDATA_FILE = "finaldata.csv"  # ingestion.FINALDATA_FILE, named here so the light path need not import pandas
INGESTION_LOCK = ".ingestion.lock"  # ingestion.LOCK_FILE, likewise
LOW_DISK_BYTES = 10 * 2**20
STEP_LOGS = ("fullprocess", "ingestion", "training", "scoring", "deployment", "history")
OUTPUT_STEPS = ("diagnostics", "reporting", "apicalls")  # each module offers refresh(cfg) -> dict
ROOT = Path(__file__).resolve().parent


def fullprocess(cfg: dict[str, Any], dry_run: bool = False, force: bool = False) -> dict[str, Any]:
    """One tick of the automated process under the lock; returns what was found, decided and why."""
    cli.setup_logging(cfg, *STEP_LOGS)
    run = {"started": history.now_iso(), "t0": time.monotonic(), "steps": [], "decisions": [], "scores": [],
           "check": None, "dry_run": dry_run}
    out = cfg["output_folder_path"]
    try:
        out.mkdir(parents=True, exist_ok=True)
        with file_lock(out / LOCK_FILE):
            try:
                result = _tick(cfg, run, dry_run, force)
            except cli.StepError as e:
                result = {"outcome": "failed", "line": str(e), "error": str(e)}
            except OSError as e:  # outside any step: the records or the input folder cannot be read
                result = {"outcome": "failed", "line": f"failed: {e}", "error": str(e)}
            if not dry_run:
                _record_tick(cfg, run, result)
                # after recording, so the report and dashboard trends include this run
                if result["outcome"] != "failed" and (out / OUTPUTS_PENDING).exists():
                    refresh_outputs(cfg)
                _stamp(cfg, run, result)
    except LockBusy:
        log.info("another fullprocess run holds %s: nothing to do", out / LOCK_FILE)
        result = {"outcome": "busy", "line": "another fullprocess run is in progress; this tick does nothing"}
        if not dry_run:
            _record_tick(cfg, run, result)
    except OSError as e:  # the output folder itself is unusable (read-only, full, gone): not even the lock
        line = f"cannot work in {display_path(cfg, out)}: {e}"
        result = {"outcome": "failed", "line": line, "error": line}
        if not dry_run:
            _record_tick(cfg, run, result)
    if result["outcome"] == "failed":
        raise cli.StepError(result["line"])  # cli.run logs it: the one line on stderr
    return result


def _record_tick(cfg: dict[str, Any], run: dict[str, Any], result: dict[str, Any]) -> None:
    """Record the tick in the history store. The history is what later runs decide from (which rows were checked),
    so a run it cannot record has failed, whatever it did: its one line says both."""
    try:
        with history.connect(cfg) as db:
            _record(db, run, result)
    except (sqlite3.Error, OSError) as e:
        if not result["line"].startswith("the history store"):  # else the line already says so
            result["line"] += f"; but {_history_trouble(cfg, e, 'could not record this run')}"
        result["outcome"] = "failed"


def _read_history(cfg: dict[str, Any], fn: Callable[..., Any], *args: Any) -> Any:
    """fn(db, *args) on the history store. What the run decides depends on it (which rows were checked), and it
    could not record the run either: a store that cannot be read stops the run, in one line."""
    try:
        with history.connect(cfg) as db:
            return fn(db, *args)
    except (sqlite3.Error, OSError) as e:
        raise cli.StepError(_history_trouble(cfg, e, "cannot be read")) from None


def _history_trouble(cfg: dict[str, Any], e: Exception, what: str) -> str:
    """"the history store history/history.sqlite3 <what> (disk I/O error; 0 KB free there)": SQLite says "disk I/O
    error" when a full disk leaves no room for its shared-memory file, so the free space is named when low."""
    folder = Path(cfg["history_path"]).parent
    free = shutil.disk_usage(folder).free if folder.is_dir() else 0
    low = f"; {free // 1024:,} KB free there" if free < LOW_DISK_BYTES else ""
    return f"the history store {display_path(cfg, cfg['history_path'])} {what} ({e}{low})"


def _stamp(cfg: dict[str, Any], run: dict[str, Any], result: dict[str, Any]) -> None:
    """After a full tick that found nothing to do, the stamp that lets the next ticks say so quickly; after any
    other, none."""
    config_path = str(cfg["config_path"])
    if result["outcome"] != "no-new-data" or "state" not in run:
        tickstamp.forget(config_path)
        return
    log_file = cfg["log_folder_path"] / "fullprocess.log"
    stamp = {"history": str(cfg["history_path"]), "schema": str(history.SCHEMA_VERSION), "line": result["line"],
             "release": str(result["release"]), "log": str(log_file), "log_max": str(cfg["log"]["max_bytes"])}
    tickstamp.write_stamp(config_path, stamp, *_watched(cfg), run["state"])


def _watched(cfg: dict[str, Any]) -> tuple[list[str], str]:
    """What a change in could mean work for a tick (the stamp's paths), and the input folder."""
    out = cfg["output_folder_path"]
    paths = [cfg["config_path"], out, out / INGESTED_FILE, out / REJECTED_FILE,
             out / FINALDATA_FILE, cfg["output_model_path"], cfg["prod_deployment_path"], cfg["report_folder_path"],
             cfg["test_data_path"]]
    return [str(p) for p in paths], str(cfg["input_folder_path"])


def _tick(cfg: dict[str, Any], run: dict[str, Any], dry_run: bool, force: bool) -> dict[str, Any]:
    """Steps 2 to 6 once the lock is held."""
    out = cfg["output_folder_path"]
    if not dry_run:  # before looking: what changes while this tick looks makes the next tick look again
        run["state"] = tickstamp.state(*_watched(cfg), racy_before=tickstamp.racy_limit())
    ingested = read_record(out / INGESTED_FILE, INGESTED_FIELDS)
    rejected = read_record(out / REJECTED_FILE, REJECTED_FIELDS)
    found, touched = new_files(cfg["input_folder_path"], cfg["input_file_extension"], cfg["root"], ingested,
                               rejected)
    if not dry_run:
        _tidy(cfg)
        _remember_touched(cfg, touched)
    release = releases.current_release(cfg)
    # Read even when there are new files: a history store that cannot be read stops the run before it changes anything.
    unchecked = _unchecked_bytes(cfg, release) if release is not None else 0
    if not found and release is not None and not force and not unchecked:
        line = (f"no new data in {display_path(cfg, cfg['input_folder_path'])} ({len(ingested)} files ingested"
                f"{f', {len(rejected)} rejected' if rejected else ''}); release {release['version']} stays")
        log.info("%s", line)
        return {"outcome": "no-new-data", "line": line, "release": release["version"]}
    names = [display_path(cfg, p) for p in found]
    if unchecked and not found:
        log.warning("%d bytes of ingested rows were never drift-checked (a run killed after ingestion?)",
                    unchecked)
    else:
        log.info("new data: %s", ", ".join(names) or "none (forced run)")
    if dry_run:
        return dry_run_plan(cfg, found, release, force, unchecked)
    return run_pipeline(cfg, run, release, force, names)


def _remember_touched(cfg: dict[str, Any], touched: dict[Path, os.stat_result]) -> None:
    """Record the new size and mtime of data files that were touched but whose content is unchanged, so the
    following ticks do not hash them again (SPEC 7.2: the no-new-data tick reads no file it has seen).
    Under the ingestion lock, like every writer of the records; skipped when an ingestion holds it."""
    if not touched:
        return
    out = cfg["output_folder_path"]
    try:
        with file_lock(out / INGESTION_LOCK):
            for record, fields in ((INGESTED_FILE, INGESTED_FIELDS), (REJECTED_FILE, REJECTED_FIELDS)):
                entries = read_record(out / record, fields)
                changed = False
                for p, st in touched.items():
                    entry, now = entries.get(record_name(p, cfg["root"])), p.stat()
                    # unchanged since it was hashed (before new_files): the hash that matched is still its hash
                    if entry and (now.st_ino, now.st_size, now.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns):
                        entry.update(size=str(st.st_size), mtime_ns=str(st.st_mtime_ns))
                        changed = True
                if changed:
                    write_record(out / record, fields, entries)
                    log.info("touched, unchanged: %s", ", ".join(display_path(cfg, p) for p in touched))
    except (LockBusy, OSError) as e:  # next tick tries again; hashing once more costs time, not correctness
        log.info("could not record touched files: %s", e)


def _tidy(cfg: dict[str, Any]) -> None:
    """Remove what killed runs left half-written: temporary files (not those of a writer still running) and
    partial release folders (when no deployment is running)."""
    for key in ("output_folder_path", "output_model_path", "report_folder_path"):
        remove_stale_temps(cfg[key])
    deployment.remove_leftovers(cfg)


def _unchecked_bytes(cfg: dict[str, Any], release: dict[str, Any]) -> int:
    """Bytes of finaldata.csv that were ingested but never drift-checked nor trained on: a run killed between
    ingestion and its record. Those files are no longer "new", so without this the work would never be done."""
    try:
        size = (cfg["output_folder_path"] / FINALDATA_FILE).stat().st_size
    except OSError:
        return 0
    checked = _read_history(cfg, history.last_check_end)
    return max(0, size - max(checked, int(release.get("model", {}).get("data_bytes", 0))))


def _deployed_model(cfg: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The deployed model and its manifest; one that fails its hash check stops the run with one clear line."""
    try:
        return releases.load_deployed_model(cfg)
    except ModelError as e:
        raise cli.StepError(f"the deployed model cannot be used: {e}") from None


def _step(run: dict[str, Any], name: str, fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run one step, remembering its timing and result for the history (failures too)."""
    started, t0 = history.now_iso(), time.monotonic()
    entry = {"step": name, "started": started, "outcome": "ok", "details": {}}
    run["steps"].append(entry)
    try:
        entry["details"] = fn(*args)
        return entry["details"]
    except Exception as e:
        entry["outcome"] = "failed"
        entry["details"] = {"error": f"{type(e).__name__}: {e}"}
        if not isinstance(e, cli.StepError):  # the traceback for the log file; stderr gets the one error line
            logging.getLogger(name).info("failed inside fullprocess", exc_info=True)
        raise cli.StepError(f"{name} failed: {e}") from None
    finally:
        entry["ended"], entry["seconds"] = history.now_iso(), time.monotonic() - t0


def _decide(run: dict[str, Any], decision: str, reason: str) -> None:
    """Remember a decision and log it."""
    run["decisions"].append({"decision": decision, "reason": reason})
    log.info("decision %s: %s", decision, reason)


def run_pipeline(cfg: dict[str, Any], run: dict[str, Any], release: dict[str, Any] | None, force: bool,
                 names: list[str]) -> dict[str, Any]:
    """Ingest, check drift, retrain and deploy when warranted, refresh outputs (the heavy path)."""
    import ingestion
    import scoring
    import training
    # The marker goes down before anything changes: a run killed after deploying but before the end would leave
    # the outputs describing the old release, and the next tick (nothing new for it) would never refresh them.
    marker = cfg["output_folder_path"] / OUTPUTS_PENDING
    pending = marker.exists()
    marker.touch()
    ing = _step(run, "ingestion", ingestion.ingest, cfg)
    parts = [ingestion.summary(ing)]
    size = (cfg["output_folder_path"] / ingestion.FINALDATA_FILE).stat().st_size
    if release is None:
        _decide(run, "bootstrap", "nothing is deployed: training and deploying from the ingested data")
        _step(run, "training", training.train, cfg)
        trained = _step(run, "scoring", scoring.score, cfg)
        dep = _step(run, "deployment", deployment.deploy, cfg)
        run["check"] = {"rule": cfg["drift"]["rule"], "new_rows": 0, "verdict": "bootstrap",
                        "reason": "first release", "data_end_bytes": size, "release": dep["version"]}
        parts.append(f"bootstrap: deployed release {dep['version']} (F1 {trained['f1']:.3f})")
        changed = True
    else:
        check = drift_check(cfg, release, size)
        run["check"] = check
        parts.append(f"model drift: {check['verdict']} ({check['reason']})")
        if check.get("data_verdict"):
            parts.append(f"data drift: {check['data_verdict']}" + _drifting(check))
        want = _retrain_reason(cfg, check, force)
        if want:
            _decide(run, "retrain", want)
            parts.append(_challenge(cfg, run, release, force))
        else:
            _decide(run, "keep", f"release {release['version']} stays: {check['reason']}")
            parts.append(f"release {release['version']} stays")
        changed = bool(ing["ingested_files"]) or bool(want)
    if not changed and not pending:
        marker.unlink()  # nothing the outputs show changed (the marker stays if a failed output was waiting)
    # else: a marker, not a call: outputs are refreshed once the run is recorded, and by the next tick if this one
    # is killed before they are
    return {"outcome": "ok", "line": "; ".join(parts), "new_files": names, "ingestion": ing,
            "check": run["check"], "decisions": run["decisions"]}


def _drifting(check: dict[str, Any]) -> str:
    """The features named after a data-drift verdict, e.g. " (lastyear_activity PSI 1.92)"."""
    bad = [f for f in check.get("features", []) if f["verdict"] != "OK"]
    named = ", ".join(f"{f['feature']} PSI {f['psi']:.2f} KS {f['ks']:.2f}" for f in bad)
    return f" ({named})" if bad else ""


def _retrain_reason(cfg: dict[str, Any], check: dict[str, Any], force: bool) -> str:
    """Why to retrain now, or "" to keep the release."""
    if force:
        return "--force"
    if check["verdict"] == "drift":
        return f"model drift: {check['reason']}"
    # Too few rows for a model check are too few to retrain on their data drift too: they wait for the next check
    # (three odd rows once put PSI past its noise floor and retrained).
    if cfg["drift"]["retrain_on_data_drift"] and check.get("data_verdict") == "DRIFT" \
            and check["verdict"] != "insufficient-data":
        return "data drift (drift.retrain_on_data_drift is on)" + _drifting(check)
    return ""


def drift_check(cfg: dict[str, Any], release: dict[str, Any], size: int) -> dict[str, Any]:
    """Model and data drift of the deployed release on the rows ingested since the last conclusive check."""
    import drift
    import ingestion
    model, manifest = _deployed_model(cfg)
    # New rows: those after both the last conclusive check and the data the deployed model was trained on.
    start = max(_read_history(cfg, history.checked_up_to),
                int(manifest["model"].get("data_bytes", 0)))
    start = start if start <= size else 0
    target = cfg["target_column"]
    new = ingestion.read_finaldata_since(cfg, start, keep=[*cfg["feature_columns"], target])
    y = new[target].to_numpy()
    pred = model.predict(new[cfg["feature_columns"]]) if len(new) else y
    past = _read_history(cfg, history.past_new_scores, release["version"])
    check = drift.model_drift(y, pred, float(manifest["scores"]["f1"]), past, cfg["drift"])
    profile = json.loads((Path(manifest["folder"]) / "reference_profile.json").read_text(encoding="utf-8"))
    data = drift.data_drift(profile, new, cfg["feature_columns"], cfg["drift"])
    return {**check, "release": release["version"], "data_verdict": data["verdict"], "features": data["features"],
            "data_start_bytes": start, "data_end_bytes": size}


def _challenge(cfg: dict[str, Any], run: dict[str, Any], release: dict[str, Any], force: bool) -> str:
    """Train and score a challenger; deploy it if it passes the promotion gate. Returns the summary part."""
    import scoring
    import training
    _step(run, "training", training.train, cfg)
    challenger = _step(run, "scoring", scoring.score, cfg)
    model, manifest = _deployed_model(cfg)
    deployed = scoring.metrics(model, scoring.read_test_data(cfg), cfg)  # same evaluation data as the challenger
    run["scores"] += [("challenger", challenger, None), ("deployed", deployed, release["version"])]
    tolerance = cfg["deployment"]["promotion_tolerance"]
    margin = f"challenger F1 {challenger['f1']:.3f} vs deployed {deployed['f1']:.3f} on the test data"
    if challenger["f1"] + 1e-12 < deployed["f1"] - tolerance and not force:
        _decide(run, "reject-challenger", f"{margin}: worse by more than the {tolerance:.3f} tolerance; "
                                          f"release {release['version']} stays")
        return f"{margin}: challenger rejected, release {release['version']} stays"
    dep = _step(run, "deployment", deployment.deploy, cfg)
    _decide(run, "deploy", f"{margin}{' (forced)' if force else ''}: deployed release {dep['version']}")
    return f"{margin}: deployed release {dep['version']}"


def refresh_outputs(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run diagnostics, reporting and apicalls when they exist, then clear the marker if all succeeded; failures
    are logged only (the release is unaffected) and tried again by the next tick."""
    log.info("refreshing outputs: %s", ", ".join(OUTPUT_STEPS))
    done: dict[str, Any] = {}
    for name in OUTPUT_STEPS:
        if not (ROOT / f"{name}.py").exists():
            log.info("%s.py not present: skipped", name)
            continue
        try:
            done[name] = importlib.import_module(name).refresh(cfg)
        except Exception as e:  # outputs are secondary: a deployment that succeeded stays deployed
            log.warning("%s failed (the release is unaffected): %s: %s", name, type(e).__name__, e)
            done[name] = {"error": f"{type(e).__name__}: {e}"}
    if not any("error" in v for v in done.values()):  # else the next tick tries again: no stale report stays
        (cfg["output_folder_path"] / OUTPUTS_PENDING).unlink(missing_ok=True)
    log.info("outputs refreshed: %s", ", ".join(f"{k} failed" if "error" in v else k for k, v in done.items()))
    return done


def dry_run_plan(cfg: dict[str, Any], found: list[Path], release: dict[str, Any] | None,
                 force: bool, unchecked: int = 0) -> dict[str, Any]:
    """What a real run would do now, computed without writing anything."""
    from datacontract import DataError, parse_csv
    import pandas as pd
    frames, plan = [], []
    for p in found:
        try:
            frames.append(parse_csv(p.read_bytes(), cfg, display_path(cfg, p)))
            plan.append(f"would ingest {display_path(cfg, p)}")
        except (DataError, OSError) as e:
            plan.append(f"would reject {e}")
    if release is None:
        plan.append("would bootstrap: train, score and deploy the first release")
        return {"outcome": "dry-run", "line": "dry run: " + "; ".join(plan), "plan": plan}
    if unchecked and not found:
        plan.append(f"would check drift on {unchecked:,} bytes of ingested rows that were never checked "
                    f"(a run killed after ingestion?)")
    import drift
    new = pd.concat(frames, ignore_index=True) if frames else None
    if unchecked and not found:
        import ingestion
        size = (cfg["output_folder_path"] / FINALDATA_FILE).stat().st_size
        new = ingestion.read_finaldata_since(cfg, size - unchecked)
    if new is not None and len(new):
        model, manifest = _deployed_model(cfg)
        past = _read_history(cfg, history.past_new_scores, release["version"])
        check = drift.model_drift(new[cfg["target_column"]].to_numpy(), model.predict(new[cfg["feature_columns"]]),
                                  float(manifest["scores"]["f1"]), past, cfg["drift"])
        which = "the unchecked rows" if unchecked and not found else "the new files alone"
        plan.append(f"model drift on {which}: {check['verdict']} ({check['reason']})")
        want = _retrain_reason(cfg, check, force)
    else:
        want = _retrain_reason(cfg, {"verdict": "no-drift"}, force)
    plan.append(f"would retrain ({want}) and deploy if the challenger passes the gate" if want
                else f"would keep release {release['version']}")
    return {"outcome": "dry-run", "line": "dry run: " + "; ".join(plan), "plan": plan}


def _record(db: Any, run: dict[str, Any], result: dict[str, Any]) -> int:
    """Write the tick, its steps, drift check, scores and decisions to the history store; returns its id."""
    seconds = time.monotonic() - run["t0"]
    details = {k: v for k, v in result.items() if k != "line"}
    # The drift check of a run that failed before carrying out its decision (training, scoring or deployment
    # failed) is kept in the run's details only: recorded as a check it would mark its rows as checked, and the
    # next run would find nothing to do, the retrain lost.
    acted_on = result["outcome"] != "failed"
    if run["check"] and not acted_on:
        details["check_not_acted_on"] = run["check"]
    run_id = history.record_run(db, "fullprocess", run["started"], history.now_iso(), seconds, result["outcome"],
                                result["line"], details)
    for s in run["steps"]:
        history.record_run(db, s["step"], s["started"], s["ended"], s["seconds"], s["outcome"],
                           "", s["details"], parent_id=run_id)
    if run["check"] and acted_on:
        history.record_drift_check(db, run_id, run["check"])
    for role, metrics, release in run["scores"]:
        history.record_score(db, run_id, role, metrics, release)
    for d in run["decisions"]:
        history.record_decision(db, run_id, d["decision"], d["reason"])
    return run_id


if __name__ == "__main__":
    parser = cli.parser(__doc__)
    parser.add_argument("--dry-run", action="store_true", help="say what would be done; change nothing")
    parser.add_argument("--force", action="store_true", help="retrain and deploy regardless of drift")
    args = parser.parse_args()
    cli.run("fullprocess", args, lambda cfg: fullprocess(cfg, args.dry_run, args.force),
            lambda r: r["line"], record=False)
