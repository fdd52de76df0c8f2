"""The read side of deployed releases: which release is current, its manifest, and its model after the hash check.

    release = current_release(cfg)             # the manifest (with "folder"), or None when nothing is deployed
    model, manifest = load_deployed_model(cfg)  # ModelError unless the model file matches the manifest's sha256
    folder, model, manifest = follow(cfg, loaded)  # what a long-lived reader (an API worker) keeps loaded

deployment.py writes releases; every reader (the steps, the API, diagnostics, reporting) comes through here.
Where the pointer to the current release lives: with the history on PostgreSQL, a row there that every host
follows; else, when prod_deployment_path is s3://bucket/prefix, the `current` object there; else the `current` link
in prod_deployment_path (the link, and the object, mirror the row). Releases shared through s3:// are copied, hash
checked, into this host's release_cache_path as they are read.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import history
import objectstore
from artifacts import CURRENT, MANIFEST, MODEL, RELEASES, SCORES
from atomicio import sha256_file
from modelstore import ModelError, load_model

log = logging.getLogger("releases")
PARTIAL = ".partial-"  # a folder or link being built; deployment removes what a killed run left


def remote(cfg: dict[str, Any]) -> str | None:
    """The s3:// location releases are shared through, or None for a local (or shared-filesystem) folder."""
    return cfg.get("release_url")


def release_dir(cfg: dict[str, Any], version: int) -> Path:
    """The (local) folder of a release."""
    return cfg["prod_deployment_path"] / RELEASES / f"{version:04d}"


def shared_pointer(cfg: dict[str, Any]) -> bool:
    """Whether the pointer lives outside this host (a database row or an object), so readers poll it."""
    return bool(remote(cfg)) or history.shared(cfg)


def current_version(cfg: dict[str, Any]) -> int | None:
    """The current release's number from the pointer, or None when nothing is deployed."""
    if history.shared(cfg):
        # None when the row is not there yet (deployed before history_url moved) or cannot be read: the mirrors say
        target = history.safely(cfg, "cannot be read for the current release", history.release_pointer)
        if target is not None and Path(target).name.isdigit():
            return int(Path(target).name)
    url = remote(cfg)
    if url:
        data = objectstore.get_bytes(objectstore.join(url, CURRENT))
        try:
            return None if data is None else int(json.loads(data)["version"])
        except (ValueError, KeyError, TypeError):
            raise objectstore.ObjectStoreError(f"{objectstore.join(url, CURRENT)}: expected "
                                               f'{{"version": N}}, got {data[:80]!r}') from None
    try:
        name = Path(os.readlink(cfg["prod_deployment_path"] / CURRENT)).name
    except OSError:
        return None
    return int(name) if name.isdigit() else None


def current_dir(cfg: dict[str, Any]) -> Path | None:
    """The folder of the current release (fetched into the cache first when shared through s3://), or None when
    nothing is deployed."""
    version = current_version(cfg)
    if version is None:
        return None
    folder = fetch(cfg, version) if remote(cfg) else release_dir(cfg, version)
    return folder if (folder / MANIFEST).is_file() else None


def fetch(cfg: dict[str, Any], version: int) -> Path:
    """A shared release's local copy, downloaded when missing: every file checked against the manifest's sha256,
    the manifest written last and the folder renamed into place, so a copy is whole or absent."""
    folder = release_dir(cfg, version)
    if (folder / MANIFEST).is_file():
        return folder
    url = objectstore.join(remote(cfg), RELEASES, folder.name)
    raw = objectstore.get_bytes(objectstore.join(url, MANIFEST))
    if raw is None:
        raise ModelError(f"{url}: release {version} has no {MANIFEST} in the release store")
    tmp = folder.with_name(f"{PARTIAL}fetch-{folder.name}-{os.getpid()}-{threading.get_ident()}")
    tmp.mkdir(parents=True)
    try:
        for name, sha in json.loads(raw)["files"].items():
            if not objectstore.get_file(objectstore.join(url, name), tmp / name) or sha256_file(tmp / name) != sha:
                raise ModelError(f"{objectstore.join(url, name)}: missing or not the file its manifest names "
                                 f"(sha256 {sha[:12]}...); refusing release {version}")
        (tmp / MANIFEST).write_bytes(raw)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / MANIFEST).is_file():  # else another worker fetched it first: theirs is as good
                raise
        log.info("fetched release %d from %s", version, url)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a release folder, with the folder itself."""
    return {**json.loads((folder / MANIFEST).read_text(encoding="utf-8")), "folder": str(folder)}


def current_release(cfg: dict[str, Any]) -> dict[str, Any] | None:
    """The current release's manifest (with its folder), or None when nothing is deployed."""
    folder = current_dir(cfg)
    if folder is None:
        return None
    try:
        return read_manifest(folder)
    except (OSError, ValueError):
        return None


def list_releases(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Manifests of every complete kept release, oldest first, the current one marked."""
    current = current_version(cfg)
    out = []
    for version in versions(cfg):
        folder = release_dir(cfg, version)
        try:
            if (folder / MANIFEST).is_file() or not remote(cfg):
                m = read_manifest(folder)
            else:  # a shared release this host has not fetched: its manifest alone
                raw = objectstore.get_bytes(objectstore.join(remote(cfg), RELEASES, folder.name, MANIFEST))
                m = {**json.loads(raw or b"null"), "folder": str(folder)}
        except (OSError, ValueError, TypeError):
            continue
        out.append({**m, "current": version == current})
    return out


def versions(cfg: dict[str, Any]) -> list[int]:
    """The numbers of the kept releases that have a manifest (in the shared store, or the local folder)."""
    url = remote(cfg)
    if url:
        names = objectstore.list_names(objectstore.join(url, RELEASES))
        return sorted(int(n.split("/")[0]) for n in names if n.split("/")[0].isdigit() and n.endswith("/" + MANIFEST))
    base = cfg["prod_deployment_path"] / RELEASES
    return sorted(int(p.name) for p in base.iterdir() if p.name.isdigit()) if base.is_dir() else []


def load_release(folder: Path) -> tuple[Any, dict[str, Any]]:
    """A release's model and manifest, the model unpickled only after its sha256 matches the manifest."""
    try:
        manifest = read_manifest(folder)
    except (OSError, ValueError) as e:
        raise ModelError(f"{folder}: unreadable release manifest ({e})") from None
    model, _ = load_model(folder / MODEL, expected_sha256=manifest["files"][MODEL])
    return model, manifest


def load_deployed_model(cfg: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The current release's model and manifest; ModelError when nothing is deployed or the hash does not match."""
    folder = current_dir(cfg)
    if folder is None:
        raise ModelError(f"nothing deployed in {cfg['prod_deployment_path']}; run deployment.py or fullprocess.py")
    return load_release(folder)


def follow(cfg: dict[str, Any], loaded: tuple[Path | None, Any, Any]) -> tuple[Path, Any, dict[str, Any]]:
    """(folder, model, manifest) of the current release: `loaded` itself while current still points at its folder,
    else the current release loaded anew. A deployment may switch away from (and prune) the release being loaded:
    it is followed up to three times; ModelError when nothing is deployed or it cannot be loaded."""
    for _ in range(3):
        folder = current_dir(cfg)
        if folder is None:
            raise ModelError("no release is deployed yet; run fullprocess.py")
        if folder == loaded[0]:
            return loaded  # type: ignore[return-value]  # loaded[0] is a folder, so the rest were loaded with it
        try:
            model, manifest = load_release(folder)
        except (ModelError, OSError, KeyError):
            if current_dir(cfg) != folder:
                continue
            raise
        return folder, model, manifest
    raise ModelError("the deployed release changed three times while loading it; try again")


def release_scores(manifest: dict[str, Any]) -> dict[str, Any]:
    """The release's scores.json (with the confusion matrix and ROC points), else the manifest's summary."""
    try:
        saved = json.loads((Path(manifest["folder"]) / SCORES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    return {**saved, **manifest["scores"]}
