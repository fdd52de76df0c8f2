"""Safe file writing: every artifact is written to a temporary file, flushed, fsynced and renamed into place,
so a reader (or the next run after a kill -9) sees the old file or the new one, never half of one.

    with atomic_file(path) as f:      # binary file object
        f.write(data)
    atomic_write(path, "text")         # str or bytes
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import IO, Any, Iterator

TEMP_MARK = ".tmp-"


def fsync_path(folder: Path) -> None:
    """Make a file's contents, or a rename inside a folder, durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[IO[bytes]]:
    """Yield a binary file that replaces path only if the block finishes without an exception."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        f = open(tmp, "xb")
    except OSError as e:  # name the artifact, not our temporary file
        raise OSError(e.errno, e.strerror, str(path)) from e
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
        fsync_path(path.parent)
    except BaseException as e:
        with contextlib.suppress(OSError):  # closing flushes what is buffered: on a full disk that fails too
            f.close()
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename in (None, str(tmp)):
            # "No space left on device: '.../finaldata.csv'", where a failed write names no file at all
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Replace path with data (text is written as UTF-8)."""
    with atomic_file(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Replace path with obj as indented JSON."""
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def remove_stale_temps(folder: Path) -> int:
    """Delete temporary files a killed writer left behind in folder (never one whose writer is still running);
    returns how many."""
    n = 0
    if folder.is_dir():
        for p in folder.glob(f".*{TEMP_MARK}*"):
            if _writer_alive(p.name):
                continue
            with contextlib.suppress(OSError):
                p.unlink()
                n += 1
    return n


def _writer_alive(temp_name: str) -> bool:
    """Whether the process that named a temporary file (".name.tmp-<pid>-<random>") still runs."""
    try:
        pid = int(temp_name.rsplit(TEMP_MARK, 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class LockBusy(Exception):
    """Another process holds the lock."""


@contextlib.contextmanager
def file_lock(path: str | Path, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on path (created if needed); LockBusy if not had within wait_seconds.

    flock locks die with their process, so a run killed with -9 never leaves a stale lock behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockBusy(f"{path} is held by another process") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)
