"""The read side of deployed releases: which release is current, its manifest, and its model after the hash check.

    release = current_release(cfg)             # the manifest (with "folder"), or None when nothing is deployed
    model, manifest = load_deployed_model(cfg)  # ModelError unless the model file matches the manifest's sha256
    folder, model, manifest = follow(cfg, loaded)  # what a long-lived reader (an API worker) keeps loaded

deployment.py writes releases; every reader (the steps, the API, diagnostics, reporting) comes through here. The
pointer to the current release is the symlink `current`, or with the history on PostgreSQL a row there (history.py).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import history
from artifacts import CURRENT, MANIFEST, MODEL, RELEASES, SCORES
from modelstore import ModelError, load_model


def current_dir(cfg: dict[str, Any]) -> Path | None:
    """The folder of the current release (resolved once), or None when nothing is deployed. With the history on
    PostgreSQL the pointer is a row there, shared by every host; else (and when that row cannot be read: the link
    mirrors it) the symlink `current`."""
    link = cfg["prod_deployment_path"] / CURRENT
    target = _pointer(cfg) if history.shared(cfg) else None
    if target is None:
        try:
            target = os.readlink(link)
        except OSError:
            return None
    folder = (link.parent / target).resolve()
    return folder if (folder / MANIFEST).is_file() else None


def _pointer(cfg: dict[str, Any]) -> str | None:
    """The current release's folder (relative to prod_deployment_path) as the shared history store has it; None when
    it has none yet (a deployment made before history_url moved there) or cannot be read."""
    return history.safely(cfg, "cannot be read for the current release", history.release_pointer)


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
    base = cfg["prod_deployment_path"] / RELEASES
    cur = current_dir(cfg)
    out = []
    if base.is_dir():
        for folder in sorted(p for p in base.iterdir() if p.name.isdigit()):
            try:
                m = read_manifest(folder)
            except (OSError, ValueError):
                continue
            out.append({**m, "current": folder == cur})
    return out


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
