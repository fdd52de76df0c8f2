"""The cron entry: new data -> drift check -> retrain and redeploy when needed -> history -> refresh outputs.

    python fullprocess.py              # what cron runs every 10 minutes (see cronjob.txt)
    python fullprocess.py --dry-run    # say what it would do; change nothing
    python fullprocess.py --force      # retrain and deploy whatever the drift check says

Under a lock (a tick that finds it held exits 0; with the history on PostgreSQL the lock is there, so cron may run
the tick on every host): looks for new files (size and mtime against the store's manifest, hashing only files that
look changed); none, and a release is deployed: records the tick and exits without importing pandas, pyarrow or
scikit-learn. Else ingests (nothing deployed yet: bootstraps a first release), checks the deployed release on the
rows that arrived since the last conclusive check (drift.release_verdicts), retrains on drift and deploys the
challenger only if it is not worse on the test data, records everything in the history store, sends alerts,
refreshes diagnostics, the report and the API answers (a marker survives a kill). --dry-run takes the same path
read-only. Any failure ends the tick with one line on stderr, exit 1, recorded in the history.
"""
from __future__ import annotations

import importlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# Only light modules here: the no-new-data tick runs this far. The heavy steps (pandas, scikit-learn) are imported
# where new data has been found.
import alerts
import artifacts
import cli
import deployment
import history
import releases
import tablesource
from atomicio import LockBusy, remove_stale_temps
from config import ConfigError, display_path
from filerecord import exports_current, live_files, new_files, read_manifest
from modelstore import ModelError

log = logging.getLogger("fullprocess")

STEP_LOGS = ("fullprocess", "ingestion", "training", "scoring", "deployment", "history")
OUTPUT_STEPS = ("diagnostics", "reporting", "apicalls")  # each module offers refresh(cfg) -> dict
ROOT = Path(__file__).resolve().parent


@dataclass
class Tick:
    """What one tick did and decided, for its summary line and the history store."""
    dry_run: bool = False
    force: bool = False
    started: str = field(default_factory=history.now_iso)
    t0: float = field(default_factory=time.monotonic)
    steps: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, str]] = field(default_factory=list)
    scores: list[tuple[str, dict[str, Any], int | None]] = field(default_factory=list)
    check: dict[str, Any] | None = None


def fullprocess(cfg: dict[str, Any], dry_run: bool = False, force: bool = False) -> dict[str, Any]:
    """One tick of the automated process under the lock; returns what was found, decided and why."""
    cli.setup_logging(cfg, *STEP_LOGS)
    tick = Tick(dry_run=dry_run, force=force)
    lock = artifacts.path(cfg, "tick_lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        with history.tick_lock(cfg):  # a file lock here, or PostgreSQL's across hosts
            result = _guarded(cfg, tick)
            if not dry_run:
                _record_tick(cfg, tick, result)
                alerts.send_for_tick(cfg, result)  # after recording (recovered reads the history); never raises
                # after both, so the report and dashboard trends and alerts include this run
                if result["outcome"] != "failed" and artifacts.path(cfg, "outputs_pending").exists():
                    refresh_outputs(cfg)
    except LockBusy as e:
        log.info("another fullprocess run holds the tick lock (%s): nothing to do", e)
        result = {"outcome": "busy", "line": "another fullprocess run is in progress; this tick does nothing"}
        if not dry_run:
            _record_tick(cfg, tick, result)
    except OSError as e:  # the output folder itself is unusable (read-only, full, gone): not even the lock
        result = _failed(f"cannot work in {display_path(cfg, lock.parent)}: {e}")
        if not dry_run:
            _record_tick(cfg, tick, result)
            alerts.send_for_tick(cfg, result)
    except history.HistoryError as e:  # the shared store cannot be reached: no tick can be had
        result = _failed(str(e))
        if not dry_run:
            _record_tick(cfg, tick, result)
    if result["outcome"] == "failed":  # cli.run logs it: the one line on stderr, and exits 1 (2 for the config)
        raise (ConfigError if result.get("config_error") else cli.StepError)(result["line"])
    return result


def _guarded(cfg: dict[str, Any], tick: Tick) -> dict[str, Any]:
    """_tick(), with any failure turned into a failed result whose one line says why."""
    try:
        return _tick(cfg, tick)
    except (cli.StepError, history.HistoryError) as e:
        return _failed(str(e))
    except ConfigError as e:
        return {**_failed(str(e)), "config_error": True}
    except OSError as e:  # outside any step: the records or the input folder cannot be read
        return _failed(f"failed: {e}")
    except Exception as e:  # unforeseen: still recorded as a failed run; the traceback goes to the log
        log.error("unexpected failure", exc_info=True)
        return _failed(f"failed: {type(e).__name__}: {e}")


def _failed(line: str) -> dict[str, Any]:
    """The result of a failed tick."""
    return {"outcome": "failed", "line": line, "error": line}


def _record_tick(cfg: dict[str, Any], tick: Tick, result: dict[str, Any]) -> None:
    """Record the tick in the history store. The history is what later runs decide from (which rows were checked),
    so a run it cannot record has failed, whatever it did: its one line says both."""
    try:
        history.call(cfg, "could not record this run", history.record_tick, tick.started,
                     time.monotonic() - tick.t0, result, tick.steps, tick.check, tick.scores, tick.decisions)
    except history.HistoryError as e:
        if not result["line"].startswith("the history store"):  # else the line already says so
            result["line"] += f"; but {e}"
        result["outcome"] = "failed"


def _read(cfg: dict[str, Any], fn: Callable[..., Any], *args: Any) -> Any:
    """fn(db, *args) on the history store: what the run decides depends on it, so a failure stops the run."""
    return history.call(cfg, "cannot be read", fn, *args)


def _tick(cfg: dict[str, Any], tick: Tick) -> dict[str, Any]:
    """Steps 2 to 6 once the lock is held."""
    manifest = read_manifest(cfg)
    found, touched, landing = new_files(cfg, manifest)
    table_rows = _table_rows(cfg)
    if not tick.dry_run:
        _tidy(cfg)
    release = releases.current_release(cfg)
    # Read even when there are new files: a history store that cannot be read stops the run before it changes anything.
    unchecked = _unchecked_batches(cfg, manifest, release) if release is not None else 0
    if not found and not table_rows and release is not None and not tick.force and not unchecked:
        # Ingestion, the one writer of the store, notes a touched file's new mtime (so later ticks do not hash it)
        # and rebuilds exports edited or deleted by hand.
        if (touched or not exports_current(cfg, manifest)) and not tick.dry_run:
            import ingestion
            _step(tick, "ingestion", ingestion.ingest, cfg)
        waiting = f", {len(landing)} still landing" if landing else ""
        rejected = f", {len(manifest['rejected'])} rejected" if manifest["rejected"] else ""
        line = (f"no new data in {display_path(cfg, cfg['input_folder_path'])} ({len(live_files(manifest))} files "
                f"ingested{rejected}{waiting}); release {release['version']} stays")
        log.info("%s", line)
        return {"outcome": "no-new-data", "line": line, "release": release["version"]}
    if release is None and not found and landing and not tick.force:
        line = (f"nothing deployed yet, and {len(landing)} file{'s' if len(landing) != 1 else ''} still landing in "
                f"{display_path(cfg, cfg['input_folder_path'])} (changed in the last "
                f"{cfg['ingestion']['settle_seconds']:g} s, or no final line end): the next tick bootstraps")
        log.info("%s", line)
        return {"outcome": "no-new-data", "line": line, "release": None}
    names = [display_path(cfg, p) for p in found]
    if table_rows:
        names.append(f"{table_rows:,} rows in input_table {tablesource.source_name(cfg)}")
    if unchecked and not found:
        log.warning("%d ingested batches were never drift-checked (a run killed after ingestion?)", unchecked)
    else:
        log.info("new data: %s", ", ".join(names) or "none (forced run)")
    if tick.dry_run:
        return dry_run_plan(cfg, tick, release)
    return run_pipeline(cfg, tick, release, names)


def _table_rows(cfg: dict[str, Any]) -> int:
    """Rows waiting in input_table (0 when there is none, or it cannot be read now: the files go on without it)."""
    if not tablesource.configured(cfg):
        return 0
    try:
        return tablesource.pending(cfg)
    except tablesource.TableError as e:
        log.warning("%s; the files are taken without it, next tick tries again", e)
        return 0


def _tidy(cfg: dict[str, Any]) -> None:
    """Remove what killed runs left half-written: temporary files (not those of a writer still running) and
    partial release folders (when no deployment is running)."""
    for key in ("output_folder_path", "output_model_path", "report_folder_path"):
        remove_stale_temps(cfg[key])
    deployment.remove_leftovers(cfg)


def _last_batch(manifest: dict[str, Any]) -> int:
    """The id of the newest live batch of the store (0 when it is empty)."""
    return max((b["id"] for b in manifest["batches"]), default=0)


def _unchecked_batches(cfg: dict[str, Any], manifest: dict[str, Any], release: dict[str, Any]) -> int:
    """Live batches ingested after both the latest drift check and the deployed model's data: a run killed between
    ingestion and its record. Those files are no longer "new", so without this the work would never be done."""
    done = max(_read(cfg, history.last_checked_batch), int(release.get("model", {}).get("data_batch", 0)))
    return sum(1 for b in manifest["batches"] if b["id"] > done)


def _deployed_model(cfg: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The deployed model and its manifest; one that fails its hash check stops the run with one clear line."""
    try:
        return releases.load_deployed_model(cfg)
    except ModelError as e:
        raise cli.StepError(f"the deployed model cannot be used: {e}") from None


def _step(tick: Tick, name: str, fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run one step, remembering its timing and result for the history (failures too)."""
    started, t0 = history.now_iso(), time.monotonic()
    entry = {"step": name, "started": started, "outcome": "ok", "details": {}}
    tick.steps.append(entry)
    try:
        entry["details"] = fn(*args)
        return entry["details"]
    except deployment.Superseded as e:  # not a failure: what it was to replace is no longer current
        entry["outcome"], entry["details"] = "skipped", {"reason": str(e)}
        raise
    except ConfigError as e:  # the config, not the step, is at fault: exit 2, as from any script
        entry["outcome"], entry["details"] = "failed", {"error": str(e)}
        raise
    except Exception as e:
        entry["outcome"] = "failed"
        entry["details"] = {"error": f"{type(e).__name__}: {e}"}
        if not isinstance(e, cli.StepError):  # the traceback for the log file; stderr gets the one error line
            logging.getLogger(name).info("failed inside fullprocess", exc_info=True)
        raise cli.StepError(f"{name} failed: {e}") from None
    finally:
        entry["ended"], entry["seconds"] = history.now_iso(), time.monotonic() - t0


def _decide(tick: Tick, decision: str, reason: str) -> None:
    """Remember a decision and log it."""
    tick.decisions.append({"decision": decision, "reason": reason})
    log.info("decision %s: %s", decision, reason)


def run_pipeline(cfg: dict[str, Any], tick: Tick, release: dict[str, Any] | None,
                 names: list[str]) -> dict[str, Any]:
    """Ingest, check drift, retrain and deploy when warranted, refresh outputs (the heavy path)."""
    import ingestion
    import scoring
    import training
    # The marker goes down before anything changes: a run killed after deploying but before the end would leave
    # the outputs describing the old release, and the next tick (nothing new for it) would never refresh them.
    marker = artifacts.path(cfg, "outputs_pending")
    pending = marker.exists()
    marker.touch()
    ing = _step(tick, "ingestion", ingestion.ingest, cfg)
    parts = [ingestion.summary(ing)]
    stored = read_manifest(cfg)
    if release is None:
        _decide(tick, "bootstrap", "nothing is deployed: training and deploying from the ingested data")
        _step(tick, "training", training.train, cfg)
        trained = _step(tick, "scoring", scoring.score, cfg)
        dep = _step(tick, "deployment", deployment.deploy, cfg)
        tick.check = {"rule": cfg["drift"]["rule"], "new_rows": 0, "verdict": "bootstrap",
                      "reason": "first release", "batch_to": _last_batch(stored), "release": dep["version"]}
        parts.append(f"bootstrap: deployed release {dep['version']} (F1 {trained['f1']:.3f})")
        changed = True
    else:
        model, manifest = _deployed_model(cfg)
        check, start = check_new_rows(cfg, model, manifest, stored)
        check = {**check, "batch_from": start, "batch_to": _last_batch(stored)}
        tick.check = check
        parts.append(f"model drift: {check['verdict']} ({check['reason']})")
        if check.get("data_verdict"):
            parts.append(f"data drift: {check['data_verdict']}" + _drifting(check))
        if check["estimated"]["verdict"] == "drop":
            parts.append(f"estimated performance: drop ({check['estimated']['reason']})")
        want = _retrain_reason(cfg, check, tick.force)
        if want:
            _decide(tick, "retrain", want)
            parts.append(_challenge(cfg, tick, release))
        else:
            _decide(tick, "keep", f"release {release['version']} stays: {check['reason']}")
            parts.append(f"release {release['version']} stays")
        changed = bool(ing["ingested_files"]) or bool(want)
    if not changed and not pending:
        marker.unlink()  # nothing the outputs show changed (the marker stays if a failed output was waiting)
    # else: a marker, not a call: outputs are refreshed once the run is recorded, and by the next tick if this one
    # is killed before they are
    return {"outcome": "ok", "line": "; ".join(parts), "new_files": names, "ingestion": ing,
            "check": tick.check, "decisions": tick.decisions}


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
    # Retraining needs labels: an estimate alone triggers it only when asked to, and only with labelled new rows.
    if cfg["drift"]["retrain_on_estimated_drop"] and (check.get("estimated") or {}).get("verdict") == "drop" \
            and check["new_rows"]:
        return f"estimated performance drop (drift.retrain_on_estimated_drop is on): {check['estimated']['reason']}"
    return ""


def first_unchecked(cfg: dict[str, Any], manifest: dict[str, Any]) -> int:
    """The batch id a check's rows follow: both the last conclusive check's and the deployed model's training data's
    (release manifest)."""
    return max(_read(cfg, history.checked_up_to), int(manifest["model"].get("data_batch", 0)))


def rows_to_check(cfg: dict[str, Any], manifest: dict[str, Any], stored: dict[str, Any]) -> tuple[Any, Any, int]:
    """The labelled and the unlabelled rows first ingested after first_unchecked, from the store (its manifest), and
    the batch id they follow."""
    import store
    start = first_unchecked(cfg, manifest)
    feats = cfg["feature_columns"]
    labelled = store.read_dataset(cfg, stored, keep=[*feats, cfg["target_column"]], after=start)
    unlabelled = store.read_dataset(cfg, stored, keep=feats, after=start, labelled=False)
    return labelled, unlabelled, start


def check_new_rows(cfg: dict[str, Any], model: Any, manifest: dict[str, Any],
                   stored: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The deployed release on the rows it was not checked on yet, and the batch id they follow: read into this
    process, or on the spark engine summed up by Spark where they lie (sparkengine.new_row_figures)."""
    if cfg["engine"] != "spark":
        new, unlabelled, start = rows_to_check(cfg, manifest, stored)
        return drift_check(cfg, model, manifest, new, unlabelled), start
    import sparkengine  # only here: pyspark is installed where a config chooses the engine
    start, profile = first_unchecked(cfg, manifest), _profile(manifest)
    spark = sparkengine.session(cfg, "fullprocess")
    return _judged(cfg, manifest, profile, sparkengine.new_row_figures(cfg, spark, model, profile, stored, start)), \
        start


def drift_check(cfg: dict[str, Any], model: Any, manifest: dict[str, Any], new: Any,
                unlabelled: Any = None) -> dict[str, Any]:
    """The deployed release on new rows (frames), against its own past scores."""
    import drift
    profile = _profile(manifest)
    return _judged(cfg, manifest, profile, drift.new_row_figures(cfg, model, profile, new, unlabelled))


def _profile(manifest: dict[str, Any]) -> dict[str, Any]:
    """The deployed release's reference profile."""
    return json.loads((Path(manifest["folder"]) / artifacts.PROFILE).read_text(encoding="utf-8"))


def _judged(cfg: dict[str, Any], manifest: dict[str, Any], profile: dict[str, Any],
            figures: dict[str, Any]) -> dict[str, Any]:
    """The release's verdicts on new rows' figures (drift.release_verdicts), against its own past scores."""
    import drift
    past = _read(cfg, history.past_new_scores, manifest["version"])
    return {**drift.release_verdicts(cfg, profile, float(manifest["scores"]["f1"]), past, figures),
            "release": manifest["version"]}


def _challenge(cfg: dict[str, Any], tick: Tick, release: dict[str, Any]) -> str:
    """Train and score a challenger; deploy it if it passes the promotion gate. Returns the summary part."""
    import scoring
    import training
    _step(tick, "training", training.train, cfg)
    challenger = _step(tick, "scoring", scoring.score, cfg)
    # The release compared is the one current now (a rollback may have happened since the tick began): its score
    # is recorded as its own, and the challenger is deployed only if it is still current then.
    model, manifest = _deployed_model(cfg)
    version = manifest["version"]
    deployed = scoring.metrics(model, scoring.read_test_data(cfg), cfg)  # same evaluation data as the challenger
    tick.scores += [("challenger", challenger, None), ("deployed", deployed, version)]
    tolerance = cfg["deployment"]["promotion_tolerance"]
    margin = f"challenger F1 {challenger['f1']:.3f} vs release {version}'s {deployed['f1']:.3f} on the test data"
    if challenger["f1"] + 1e-12 < deployed["f1"] - tolerance and not tick.force:
        _decide(tick, "reject-challenger", f"{margin}: worse by more than the {tolerance:.3f} tolerance; "
                                           f"release {version} stays")
        return f"{margin}: challenger rejected, release {version} stays"
    try:
        dep = _step(tick, "deployment", deployment.deploy, cfg, version)
    except deployment.Superseded as e:
        _decide(tick, "not-deployed", str(e))
        return f"{margin}: not deployed ({e})"
    _decide(tick, "deploy", f"{margin}{' (forced)' if tick.force else ''}: deployed release {dep['version']}")
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
        artifacts.path(cfg, "outputs_pending").unlink(missing_ok=True)
    log.info("outputs refreshed: %s", ", ".join(f"{k} failed" if "error" in v else k for k, v in done.items()))
    return done


def dry_run_plan(cfg: dict[str, Any], tick: Tick, release: dict[str, Any] | None) -> dict[str, Any]:
    """What a real run would do now, by the same steps in read-only mode: ingestion's preview, then the drift
    check and retrain rule on the rows a real run would check."""
    import pandas as pd

    import ingestion
    ing = ingestion.preview(cfg)
    plan = [f"would ingest {f['name']} ({f['rows_added']:,} new rows)" for f in ing["ingested_files"]]
    plan += [f"would reject {f['reason']}" for f in ing["rejected_files"]]
    if release is None:
        plan.append("would bootstrap: train, score and deploy the first release")
        return {"outcome": "dry-run", "line": "dry run: " + "; ".join(plan), "plan": plan}
    model, manifest = _deployed_model(cfg)
    waiting, waiting_unlabelled, _ = rows_to_check(cfg, manifest, read_manifest(cfg))
    frames = [f for f in (waiting, ing["new_rows"]) if f is not None and len(f)]
    new = pd.concat(frames, ignore_index=True)[waiting.columns] if frames else waiting
    frames = [f for f in (waiting_unlabelled, ing["new_unlabelled"]) if f is not None and len(f)]
    unlabelled = pd.concat(frames, ignore_index=True)[waiting_unlabelled.columns] if frames else waiting_unlabelled
    check = drift_check(cfg, model, manifest, new, unlabelled)
    tick.check = check
    plan.append(f"model drift on {len(new):,} rows: {check['verdict']} ({check['reason']})")
    if check.get("data_verdict"):
        plan.append(f"data drift: {check['data_verdict']}" + _drifting(check))
    want = _retrain_reason(cfg, check, tick.force)
    plan.append(f"would retrain ({want}) and deploy if the challenger passes the gate" if want
                else f"would keep release {release['version']}")
    return {"outcome": "dry-run", "line": "dry run: " + "; ".join(plan), "plan": plan, "check": check,
            "decision": "retrain" if want else "keep", "reason": want}


if __name__ == "__main__":
    parser = cli.parser(__doc__)
    parser.add_argument("--dry-run", action="store_true", help="say what would be done; change nothing")
    parser.add_argument("--force", action="store_true", help="retrain and deploy regardless of drift")
    args = parser.parse_args()
    cli.run("fullprocess", args, lambda cfg: fullprocess(cfg, args.dry_run, args.force),
            lambda r: r["line"], record=False)
