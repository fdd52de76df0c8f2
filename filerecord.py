"""The store's manifest: which data files were ingested (as which batch) or rejected, by name and content hash.

    manifest = read_manifest(cfg)     # {"batches": [...], "rejected": {...}, ...}; an empty one before any ingestion
    found, touched, landing = new_files(cfg, manifest)

Kept light on purpose (no pandas): the cron tick with no new data reads only this and the input folder's listing.
The manifest (<output_folder_path>/store/manifest.json, written atomically by ingestion alone) lists the live
batches in order, one per ingested file version (file name, content hash, size, mtime, rows, batch id, when), the
versions a correction retired, the rejected files with their reasons, and which row hash the store's batches
were hashed with (row_hash: store.row_hashes). A file is "new" when it is in neither,
or its content hash differs from the recorded one; size and mtime are checked first, so only files that look
changed are hashed. A file is taken only once it has landed: unchanged for ingestion.settle_seconds and ending with
a line end (one without a final line end waits ingestion.unterminated_seconds), so a file still being copied in is
never read half-way.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import artifacts
import objectstore
from atomicio import atomic_write_json, sha256_file

FORMAT = 1
ROW_HASH = 2  # the row hash a new store uses (store.row_hashes); a store keeps the one it was made with


def empty_manifest() -> dict[str, Any]:
    """The manifest of a store with nothing in it."""
    return {"format": FORMAT, "commit": 0, "next_batch": 1, "batches": [], "retired": [], "rejected": {},
            "index": None, "exports": {}, "row_hash": ROW_HASH}


def read_manifest(cfg: dict[str, Any]) -> dict[str, Any]:
    """The store's manifest (an empty one before the first ingestion); OSError when it cannot be read."""
    path = artifacts.path(cfg, "store_manifest")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return empty_manifest()
    except ValueError as e:  # written atomically, so only a hand edit gets here
        raise OSError(f"{path}: unreadable store manifest ({e}); restore it from a backup") from None
    if manifest.get("format") != FORMAT:
        raise OSError(f"{path}: store format {manifest.get('format')}, this code reads format {FORMAT}")
    manifest.setdefault("row_hash", 1)  # made before row hash 2: its stored hashes are row hash 1's
    return manifest


def write_manifest(cfg: dict[str, Any], manifest: dict[str, Any]) -> None:
    """Commit a manifest atomically: readers see the old store or the new one."""
    atomic_write_json(artifacts.path(cfg, "store_manifest"), manifest)


def live_files(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The latest live batch of each ingested file, by name."""
    return {b["file"]: b for b in manifest["batches"]}


def exports_current(cfg: dict[str, Any], manifest: dict[str, Any]) -> bool:
    """Whether finaldata.csv and ingestedfiles.txt are of the store as it is (a run killed between its commit and
    its export leaves them behind) and as that export left them (not edited, not deleted)."""
    live = [b["id"] for b in manifest["batches"]]
    return manifest.get("exported_batches") == live and exports_untouched(cfg, manifest)


def exports_untouched(cfg: dict[str, Any], manifest: dict[str, Any]) -> bool:
    """Whether finaldata.csv and ingestedfiles.txt are as the last export left them (size and mtime recorded)."""
    for what in ("finaldata", "ingested"):
        try:
            st = artifacts.path(cfg, what).stat()
        except OSError:
            return False
        if manifest["exports"].get(what) != [st.st_size, st.st_mtime_ns]:
            return False
    return True


def list_data_files(folder: Path, ext: str) -> list[Path]:
    """Visible files directly in folder with the configured extension, sorted by name (no directories)."""
    if not folder.is_dir():
        return []
    suffix = "." + ext.lower()
    found = []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith(".") or not entry.name.lower().endswith(suffix):
                continue
            if entry.is_file():  # follows symlinks: a link to a regular file counts, a link to a folder not
                found.append(Path(entry.path))
    return sorted(found)


def escape_name(name: str) -> str:
    """A file name as one printable line: %, control characters and undecodable bytes become %XX."""
    out = []
    for ch in name:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, as os.listdir hands it over (surrogateescape)
            out.append(f"%{code - 0xDC00:02X}")
        elif ch == "%" or code < 0x20 or code == 0x7F:
            out.append(f"%{code:02X}")
        else:
            out.append(ch)
    return "".join(out)


def same_stat(entry: dict[str, Any] | None, st: os.stat_result) -> bool:
    """True when a recorded file still has the size and mtime it had when recorded."""
    return bool(entry) and entry["size"] == st.st_size and entry["mtime_ns"] == st.st_mtime_ns


def recorded_as(name: str, ingested: dict[str, dict[str, Any]], rejected: dict[str, dict[str, Any]],
                st: os.stat_result, digest: str | None = None) -> str | None:
    """Whether the manifest already holds this file as it is now, as "ingested" or "rejected": by size and mtime,
    or, given its content hash, by that (a file touched but not changed); None when it is new or changed."""
    for kind, record in (("ingested", ingested), ("rejected", rejected)):
        entry = record.get(name)
        if same_stat(entry, st) or (digest and entry and entry.get("sha256") == digest):
            return kind
    return None


def landed(path: Path, st: os.stat_result, cfg: dict[str, Any]) -> bool:
    """Whether a file has finished arriving: unchanged for ingestion.settle_seconds and ending with a line end (one
    that does not end with one, or is empty, waits ingestion.unterminated_seconds: it may still be growing)."""
    age = abs(time.time() - st.st_mtime)  # a future mtime (another host's clock) counts by its distance
    if age < cfg["ingestion"]["settle_seconds"]:
        return False
    if st.st_size and age < cfg["ingestion"]["unterminated_seconds"]:
        with open(path, "rb") as f:
            f.seek(st.st_size - 1)
            return f.read(1) == b"\n"
    return st.st_size > 0 or age >= cfg["ingestion"]["unterminated_seconds"]


def data_files(cfg: dict[str, Any]) -> list[Path]:
    """The data files ingestion takes in: the input folder's (copied from object storage first, when it is an
    s3:// prefix), the API's request logs when api.log_requests, and the rows pulled from input_table."""
    if cfg.get("input_url"):
        objectstore.mirror(cfg["input_url"], cfg["input_folder_path"], "." + cfg["input_file_extension"].lower())
    files = list_data_files(cfg["input_folder_path"], cfg["input_file_extension"])
    if cfg["api"]["log_requests"]:
        files += list_data_files(artifacts.path(cfg, "requests"), "csv")
    if cfg["input_table"]["url"]:
        files += list_data_files(artifacts.path(cfg, "table"), "csv")
    return files


def new_files(cfg: dict[str, Any], manifest: dict[str, Any]) -> tuple[list[Path], list[Path], list[Path]]:
    """Data files of the input folder that the manifest does not hold with their current content, and have
    landed; the files only touched (size or mtime unlike their record, content as recorded); and those still
    landing."""
    files, rejected = live_files(manifest), manifest["rejected"]
    found, touched, landing = [], [], []
    for p in data_files(cfg):
        name = record_name(p, cfg["root"])
        try:
            st = p.stat()
            if recorded_as(name, files, rejected, st):
                continue
            if not landed(p, st, cfg):
                landing.append(p)
                continue
            digest = sha256_file(p)
        except OSError:
            found.append(p)  # unreadable now: ingestion will say why
            continue
        (touched if recorded_as(name, files, rejected, st, digest) else found).append(p)
    return found, touched, landing


def record_name(p: Path, root: Path) -> str:
    """How a data file is named in the records: its path relative to the project folder when inside it."""
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return p.as_posix()
