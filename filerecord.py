"""The ingestion record: which data files were ingested or rejected, by name and content hash.

Kept light on purpose (no pandas): the cron tick with no new data reads only this and the input folder's
directory listing. Each record is a tab-separated text file, one line per file, name first:

    ingestedfiles.txt   name  sha256  size  mtime_ns  rows_read  rows_added  ingested_at
    rejectedfiles.txt   name  sha256  size  mtime_ns  reason  rejected_at

A file is "new" when its name is in neither record, or its content hash differs from the recorded one; the
size and mtime are checked first so only files that look changed are hashed.

A name is written with "%", control characters (tab, newline, the "\\r" of a macOS "Icon\\r") and bytes that are not
UTF-8 as %XX, so any file name the folder can hold fits on its line and reads back as the same name.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from atomicio import atomic_write, sha256_file

INGESTED_FIELDS = ["name", "sha256", "size", "mtime_ns", "rows_read", "rows_added", "ingested_at"]
REJECTED_FIELDS = ["name", "sha256", "size", "mtime_ns", "reason", "rejected_at"]
INGESTED_FILE = "ingestedfiles.txt"
REJECTED_FILE = "rejectedfiles.txt"
ESCAPED = re.compile(r"%([0-9A-F]{2})")


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


def read_record(path: Path, fields: list[str]) -> dict[str, dict[str, Any]]:
    """Entries of a record file by name; a line with too few fields is ignored (older formats keep the name)."""
    entries: dict[str, dict[str, Any]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return entries
    for line in text.splitlines():
        parts = line.split("\t")
        if not parts[0]:
            continue
        # strict=False: a line with more fields than these (a newer format) keeps the ones known here
        entry = dict(zip(fields, parts + [""] * (len(fields) - len(parts)), strict=False))
        entry["name"] = unescape_name(entry["name"])
        entries[entry["name"]] = entry
    return entries


def write_record(path: Path, fields: list[str], entries: dict[str, dict[str, Any]]) -> None:
    """Atomically rewrite a record file, one line per entry in name order."""
    lines = []
    for name in sorted(entries):
        e = entries[name]
        lines.append("\t".join([escape_name(name), *(_clean(e.get(f, "")) for f in fields[1:])]))
    atomic_write(path, "".join(line + "\n" for line in lines))


def _clean(value: Any) -> str:
    """A field value that cannot break the one-line, tab-separated format."""
    if value is None:
        return ""
    text = str(value).encode("utf-8", "backslashreplace").decode("utf-8")  # no undecodable name can stop a write
    return " ".join(text.replace("\t", " ").split())


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


def unescape_name(text: str) -> str:
    """The file name escape_name() wrote."""
    return ESCAPED.sub(lambda m: chr(int(m[1], 16) + (0xDC00 if int(m[1], 16) >= 0x80 else 0)), text)


def same_stat(entry: dict[str, Any] | None, st: os.stat_result) -> bool:
    """True when a recorded file still has the size and mtime it had when recorded."""
    return bool(entry) and entry["size"] == str(st.st_size) and entry["mtime_ns"] == str(st.st_mtime_ns)


def recorded_as(name: str, ingested: dict[str, dict[str, Any]], rejected: dict[str, dict[str, Any]],
                st: os.stat_result, digest: str | None = None) -> str | None:
    """Which record ("ingested" or "rejected") already holds this file as it is now: by size and mtime, or, given
    its content hash, by that (a file touched but not changed); None when it is new or changed."""
    for kind, record in (("ingested", ingested), ("rejected", rejected)):
        entry = record.get(name)
        if same_stat(entry, st) or (digest and entry and entry.get("sha256") == digest):
            return kind
    return None


def new_files(folder: Path, ext: str, root: Path, ingested: dict[str, dict[str, Any]],
              rejected: dict[str, dict[str, Any]]) -> tuple[list[Path], list[Path]]:
    """Data files in folder that neither record holds with their current content; and the files only touched
    (size or mtime unlike their record, content as recorded)."""
    found, touched = [], []
    for p in list_data_files(folder, ext):
        name = record_name(p, root)
        try:
            st = p.stat()
            if recorded_as(name, ingested, rejected, st):
                continue
            digest = sha256_file(p)
        except OSError:
            found.append(p)  # unreadable now: ingestion will say why
            continue
        (touched if recorded_as(name, ingested, rejected, st, digest) else found).append(p)
    return found, touched


def record_name(p: Path, root: Path) -> str:
    """How a data file is named in the records: its path relative to the project folder when inside it."""
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return p.as_posix()
