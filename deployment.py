"""Publish the trained model, its score and the ingestion record as one numbered release.

    python deployment.py               # publish models/ (+ ingestedfiles.txt) as the next release
    python deployment.py --list        # the kept releases, the current one marked
    python deployment.py --rollback    # make the previous release current again
    python deployment.py --live-at 2026-11-30T12:00:00Z   # which release was live then (history on PostgreSQL)

Layout of prod_deployment_path:
    releases/0003/   trainedmodel.pkl, trainedmodel.json, latestscore.txt, scores.json, reference_profile.json,
                     ingestedfiles.txt, manifest.json (each file's sha256, when and from what data it was trained)
    current          symlink to releases/0003: switched with one atomic rename, so a reader that resolves it
                     once sees one whole release, never files of two mixed (with the history on PostgreSQL, a
                     row there is the pointer every host follows, moved in one transaction with its log line,
                     history.live_at tells what was live when; the link mirrors it)
    trainedmodel.pkl, latestscore.txt, ingestedfiles.txt   symlinks through current (the well-known names)

A release folder is built under a temporary name and renamed when complete; a crash mid-deploy leaves the
previous release current and untouched. Anything that loads the deployed model checks its sha256 against the
manifest first (releases.load_deployed_model) and refuses a file that does not match.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import pickle
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import cli
import history
import objectstore
from artifacts import (
    CURRENT,
    DEPLOYMENT_LOCK,
    INGESTED,
    MANIFEST,
    MODEL,
    MODEL_FILES,
    MODEL_RECORD,
    PROFILE,
    RELEASES,
    SCORE,
    SCORES,
    WELL_KNOWN,
)
from atomicio import LockBusy, atomic_write_json, file_lock, fsync_path, sha256_file
from config import display_path, load_config
from modelstore import ModelError, load_model
from releases import PARTIAL, current_release, list_releases, release_dir, remote, versions

log = logging.getLogger("deployment")

LOCK_WAIT_SECONDS = 600.0  # a training of ten million rows takes a minute; cron ticks every ten


def _check_candidate(cfg: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model record and scores of models/, after checking they belong together; StepError if not."""
    src = cfg["output_model_path"]
    for name in MODEL_FILES:
        if not (src / name).is_file():
            hint = "run scoring.py" if name in (SCORE, SCORES) else "run training.py"
            raise cli.StepError(f"nothing to deploy: {display_path(cfg, src / name)} is missing ({hint})")
    if not (cfg["output_folder_path"] / INGESTED).is_file():
        raise cli.StepError(f"nothing to deploy: {display_path(cfg, cfg['output_folder_path'] / INGESTED)} "
                            f"is missing (run ingestion.py)")
    record = json.loads((src / MODEL_RECORD).read_text(encoding="utf-8"))
    scores = json.loads((src / SCORES).read_text(encoding="utf-8"))
    profile = json.loads((src / PROFILE).read_text(encoding="utf-8"))
    actual = sha256_file(src / MODEL)
    if actual != record.get("sha256"):
        raise cli.StepError(f"{display_path(cfg, src / MODEL)} does not match its record "
                            f"{MODEL_RECORD} (interrupted training?); run training.py again")
    if scores.get("model_sha256") != actual:
        raise cli.StepError(f"{display_path(cfg, src / SCORE)} is the score of another model; "
                            f"run scoring.py first")
    if profile.get("data_commit") != record.get("data_commit"):
        raise cli.StepError(f"{PROFILE} was made from other data than the model; run training.py again")
    return record, scores


class Superseded(cli.StepError):
    """The release a challenger was compared with is no longer current (a rollback came first): not deployed."""


@contextlib.contextmanager
def release_lock(cfg: dict[str, Any], step: str) -> Iterator[None]:
    """The one lock of training, scoring, deployment and rollback: a release never holds the files of two
    trainings, and a rollback never lands inside a deployment. With the history on PostgreSQL it holds across hosts
    too (two hosts deploying at once would otherwise number two releases alike)."""
    prod = cfg["prod_deployment_path"]
    prod.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(file_lock(prod / DEPLOYMENT_LOCK, wait_seconds=LOCK_WAIT_SECONDS))
            if history.shared(cfg):
                held.enter_context(history.shared_lock(cfg, history.RELEASE_LOCK_KEY, "the release lock",
                                                       LOCK_WAIT_SECONDS))
        except LockBusy:
            raise cli.StepError(f"{step}: another training, scoring, deployment or rollback has held "
                                f"{display_path(cfg, prod / DEPLOYMENT_LOCK)} (or the shared release lock) for "
                                f"{LOCK_WAIT_SECONDS:.0f} s; try again later") from None
        except history.HistoryError as e:
            raise cli.StepError(f"{step}: {e}") from None
        yield


def deploy(cfg: dict[str, Any], expected: int | None = None) -> dict[str, Any]:
    """Publish models/ and the ingestion record as the next release and make it current; given the version the
    candidate was compared with, only while that release is still current (else Superseded)."""
    with release_lock(cfg, "deployment"):
        current = current_release(cfg)
        if expected is not None and (current or {}).get("version") != expected:
            raise Superseded(f"release {current and current['version']} became current while the challenger was "
                             f"being compared with release {expected} (a rollback?); it stays")
        return _deploy_locked(cfg, expected)


def _deploy_locked(cfg: dict[str, Any], expected: int | None = None) -> dict[str, Any]:
    """deploy() once the lock is held."""
    record, scores = _check_candidate(cfg)
    prod = cfg["prod_deployment_path"]
    base = prod / RELEASES
    base.mkdir(exist_ok=True)
    _remove_partials(base)
    _remove_partials(prod)
    previous = current_release(cfg)
    # the shared store's numbers too: another host may have deployed releases this host never fetched
    version = max([int(p.name) for p in base.iterdir() if p.name.isdigit()] + versions(cfg), default=0) + 1
    staging = base / f"{PARTIAL}{version:04d}"
    staging.mkdir()
    sources = [cfg["output_model_path"] / n for n in MODEL_FILES] + [cfg["output_folder_path"] / INGESTED]
    files = {}
    for src in sources:
        dst = staging / src.name
        shutil.copyfile(src, dst)
        fsync_path(dst)
        files[src.name] = sha256_file(dst)
    if files[MODEL] != record["sha256"]:
        shutil.rmtree(staging)
        raise cli.StepError("the model changed while it was being deployed (training running?); try again")
    manifest = {
        "version": version,
        "created_at": history.now_iso(),
        "previous": previous["version"] if previous else None,
        "files": files,
        "model": {k: v for k, v in record.items() if k not in ("sha256", "bytes")},
        "scores": {k: scores.get(k) for k in ("f1", "precision", "recall", "accuracy", "roc_auc", "rows",
                                               "positives", "scored_at", "test_data")},
    }
    atomic_write_json(staging / MANIFEST, manifest)  # fsynced, folder too; a full disk names the file
    final = base / f"{version:04d}"
    os.rename(staging, final)
    fsync_path(base)
    _publish(cfg, final)
    try:
        _switch(cfg, version, "deploy", expected)
    except Superseded:
        _remove_release(cfg, final)
        raise
    pruned = _prune(cfg)
    log.info("deployed release %d (F1 %.4f) -> %s; pruned %s", version, scores["f1"], final, pruned or "none")
    return {"action": "deploy", "version": version, "previous": manifest["previous"], "f1": scores["f1"],
            "model_sha256": files[MODEL], "folder": display_path(cfg, final), "pruned": pruned}


def rollback(cfg: dict[str, Any]) -> dict[str, Any]:
    """Make the newest release older than the current one current again."""
    with release_lock(cfg, "rollback"):
        cur = current_release(cfg)
        if cur is None:
            raise cli.StepError("nothing is deployed, so there is nothing to roll back")
        older = [r for r in list_releases(cfg) if r["version"] < cur["version"]]
        if not older:
            raise cli.StepError(f"release {cur['version']} is the oldest kept release; nothing to roll back to")
        target = older[-1]
        _switch(cfg, target["version"], "rollback", cur["version"])
        log.warning("rolled back from release %d to release %d", cur["version"], target["version"])
        return {"action": "rollback", "version": target["version"], "from_version": cur["version"],
                "f1": target["scores"]["f1"], "model_sha256": target["files"][MODEL],
                "folder": display_path(cfg, Path(target["folder"]))}


def _publish(cfg: dict[str, Any], folder: Path) -> None:
    """Upload a finished release to the shared store (when there is one), its manifest last: a reader that finds
    the manifest finds every file it names."""
    url = remote(cfg)
    if not url:
        return
    for f in sorted(folder.iterdir(), key=lambda f: f.name == MANIFEST):
        objectstore.put_file(objectstore.join(url, RELEASES, folder.name, f.name), f)


def _switch(cfg: dict[str, Any], version: int, action: str, expected: int | None = None) -> None:
    """Make a release current. With the history on PostgreSQL the row every host follows moves first, in one
    transaction with its log line, and only while release `expected` (when given) is still current there; then the
    shared store's `current` object (one PUT, atomic) when releases are on s3://, and the local link mirror it."""
    if history.shared(cfg):
        try:
            moved = history.call(cfg, "could not move the release pointer", history.move_release_pointer,
                                 os.path.relpath(release_dir(cfg, version), cfg["prod_deployment_path"]), version,
                                 action, expected)
        except history.HistoryError as e:
            raise cli.StepError(str(e)) from None
        if not moved:
            raise Superseded(f"another release became current (from another host) while release {expected} was "
                             f"being replaced; it stays")
    url = remote(cfg)
    if url:
        objectstore.put_bytes(objectstore.join(url, CURRENT),
                              json.dumps({"version": version, "at": history.now_iso()}).encode())
    _link_current(cfg, release_dir(cfg, version))


def _link_current(cfg: dict[str, Any], folder: Path) -> None:
    """Point the link current at a release folder with one atomic rename; make sure the well-known links exist."""
    prod = cfg["prod_deployment_path"]
    tmp = prod / f".{CURRENT}{PARTIAL}{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(folder, prod), tmp)
    os.replace(tmp, prod / CURRENT)
    for name in WELL_KNOWN:
        link = prod / name
        if os.path.islink(link) and os.readlink(link) == f"{CURRENT}/{name}":
            continue
        tmp = prod / f".{name}{PARTIAL}{os.getpid()}"
        tmp.unlink(missing_ok=True)
        os.symlink(f"{CURRENT}/{name}", tmp)
        os.replace(tmp, link)
    fsync_path(prod)


def _prune(cfg: dict[str, Any]) -> list[int]:
    """Delete the oldest releases beyond releases_kept, never the current one."""
    keep = cfg["deployment"]["releases_kept"]
    releases = list_releases(cfg)
    doomed = [r for r in releases[:-keep] if not r["current"]] if len(releases) > keep else []
    for r in doomed:
        _remove_release(cfg, Path(r["folder"]))
    return [r["version"] for r in doomed]


def _remove_release(cfg: dict[str, Any], folder: Path) -> None:
    """Delete a release: from the shared store (its manifest first: a run killed mid-way leaves files no reader
    lists), then the local folder, renamed out of the numbered names first (a run killed while deleting leaves a
    partial folder that the next deployment removes, never a numbered release with files missing)."""
    url = remote(cfg)
    if url:
        objectstore.delete(objectstore.join(url, RELEASES, folder.name, MANIFEST))
        objectstore.delete_prefix(objectstore.join(url, RELEASES, folder.name))
    if folder.is_dir():
        gone = folder.with_name(f"{PARTIAL}pruned-{folder.name}")
        os.rename(folder, gone)
        shutil.rmtree(gone, ignore_errors=True)


def remove_leftovers(cfg: dict[str, Any]) -> None:
    """Remove what a killed deployment left (see _remove_partials), unless a deployment is running now; with the
    history on PostgreSQL, point the link `current` again where the row points (a deployment killed between the two
    left the link behind)."""
    prod = cfg["prod_deployment_path"]
    if history.shared(cfg):
        _mirror_pointer(cfg)
    folders = [f for f in (prod, prod / RELEASES) if f.is_dir()]
    if not any(next(f.glob(f"*{PARTIAL}*"), None) for f in folders):
        return
    try:
        with file_lock(prod / DEPLOYMENT_LOCK):
            for f in folders:
                _remove_partials(f)
    except LockBusy:
        pass  # that deployment, or the next one, cleans up


def _mirror_pointer(cfg: dict[str, Any]) -> None:
    """The link `current` made to agree with the shared pointer (releases.current_dir reads the row)."""
    folder = current_release(cfg)
    link = cfg["prod_deployment_path"] / CURRENT
    if folder is None or (os.path.islink(link) and link.resolve() == Path(folder["folder"])):
        return
    try:
        with file_lock(cfg["prod_deployment_path"] / DEPLOYMENT_LOCK):
            _link_current(cfg, Path(folder["folder"]))
            log.warning("the link %s pointed elsewhere than the shared pointer: now release %d", link,
                        folder["version"])
    except LockBusy:
        pass  # a deployment is moving both now


def _remove_partials(base: Path) -> None:
    """Remove what a killed deployment left: half-built or half-pruned release folders in releases/, and the
    temporary links of a switch (.current.partial-<pid>) beside current. Callers hold the deployment lock."""
    for p in base.glob(f"*{PARTIAL}*"):
        if p.is_symlink():
            p.unlink(missing_ok=True)
        else:
            shutil.rmtree(p, ignore_errors=True)


def describe(cfg: dict[str, Any]) -> dict[str, Any]:
    """The kept releases, for --list."""
    return {"releases": [{"version": r["version"], "created_at": r["created_at"], "f1": r["scores"]["f1"],
                          "trained_on_rows": r["model"].get("rows"), "current": r["current"]}
                         for r in list_releases(cfg)]}


def live_at(cfg: dict[str, Any], when: str) -> dict[str, Any]:
    """The release that was live at a time (ISO 8601; UTC when no zone is given), from the deployment log the
    history keeps on PostgreSQL."""
    if not history.shared(cfg):
        raise cli.StepError("--live-at reads the deployment log, kept when history_url is PostgreSQL; on SQLite the "
                            "history's releases table lists deployments and rollbacks")
    try:
        t = datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        raise cli.StepError(f"--live-at: expected an ISO 8601 time such as 2026-11-30T12:00:00Z, "
                            f"got {when!r}") from None
    t = t.replace(tzinfo=t.tzinfo or timezone.utc).astimezone(timezone.utc)
    at = t.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    try:
        found = history.call(cfg, "cannot be read", history.live_at, at)
    except history.HistoryError as e:
        raise cli.StepError(str(e)) from None
    return {"action": "live-at", "at": at, "live": found}


def summary(r: dict[str, Any]) -> str:
    """One line (or the release table for --list) for people."""
    if "releases" in r:
        if not r["releases"]:
            return "no releases deployed"
        return "\n".join(f"{'*' if x['current'] else ' '} release {x['version']:>4}  {x['created_at']}  "
                         f"F1 {x['f1']:.3f}  trained on {x['trained_on_rows']:,} rows" for x in r["releases"])
    if r["action"] == "live-at":
        if r["live"] is None:
            return f"nothing was live at {r['at']}"
        x = r["live"]
        return f"release {x['version']} was live at {r['at']} ({x['action']} at {x['at']} from {x['host']})"
    if r["action"] == "rollback":
        return f"rolled back from release {r['from_version']} to release {r['version']} (F1 {r['f1']:.3f})"
    return f"deployed release {r['version']} (F1 {r['f1']:.3f}, model {r['model_sha256'][:12]}) -> {r['folder']}"


# The course's starter names (Udacity's "A Dynamic Risk Assessment System"): thin calls of the functions above.
def store_model_into_pickle(model: Any = None, *, config_path: str | Path | None = None) -> dict[str, Any]:
    """Deploy the model training wrote, with its score, as the next release; return what deploy() returns."""
    cfg = load_config(config_path)
    if model is not None:
        _check_same_as_trained(cfg, model)
    return deploy(cfg)


def _check_same_as_trained(cfg: dict[str, Any], model: Any) -> None:
    """StepError unless model is the one in <output_model_path>/trainedmodel.pkl.

    A release is the trained file with its score and profile, all hash-checked; an arbitrary object has neither,
    so it is refused rather than deployed unscored."""
    path = cfg["output_model_path"] / MODEL
    try:
        trained, _ = load_model(path)
    except ModelError as e:
        raise cli.StepError(str(e)) from None
    # Equal pickles, not identity: the model a caller holds was loaded from the file in another call.
    if pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL) != pickle.dumps(trained, protocol=pickle.HIGHEST_PROTOCOL):
        raise cli.StepError(f"the model given is not {display_path(cfg, path)}; only the trained and scored model "
                            f"is deployed: train it (training.train_model), score it (scoring.score_model), then "
                            f"call store_model_into_pickle() with no model")


if __name__ == "__main__":
    parser = cli.parser(__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--rollback", action="store_true", help="make the previous release current again")
    group.add_argument("--list", action="store_true", help="list the kept releases")
    group.add_argument("--live-at", metavar="TIME", help="which release was live at an ISO 8601 time (history on "
                                                         "PostgreSQL)")
    args = parser.parse_args()
    work = describe if args.list else rollback if args.rollback else deploy
    if args.live_at:
        work = functools.partial(live_at, when=args.live_at)
    cli.run("deployment", args, work, summary, record=not (args.list or args.live_at))
