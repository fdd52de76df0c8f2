"""The no-new-data cron tick in a few milliseconds: a stamp of what the last full tick saw, and the check against it.

    python fullprocess.py    # calls quick_tick(sys.argv[1:]) before importing anything else

Nearly every cron tick finds nothing new, and a full tick must import logging, json, sqlite3, the config checker and
the project's modules (about 5x the cost of starting Python) before it can say so. So a full tick that found nothing
to do leaves a stamp beside the config file (`.config.json.tick`): the size, mtime and inode of everything whose
change could mean work (the config, each entry of the input folder, the records, the output, model,
deployment, report and test folders), the history store, and the line it printed. The next tick rebuilds that state
with os.stat alone; when it matches, the tick records itself in the history store, logs and prints the same line,
and exits. Any difference, a log due for rotation, any argument but --config, or any error: the full tick runs.

A stamp is only written when every mtime in it is older than RACY_SECONDS: a change made within the filesystem's
timestamp granularity of the stamp would otherwise leave the mtime unchanged and go unseen (git's "racy clean").
Only os, sys and time are imported here (they are loaded by Python's start-up anyway), and sqlite3 to record.
"""
from __future__ import annotations

import os
import stat  # loaded by os already: free
import sys
import time

VERSION = b"tickstamp 1"
RACY_SECONDS = 2.0
SUFFIX = ".tick"
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config.json")  # as config.py's
# The fields of a stamp, in order; the last one (the state) may hold anything, so it is split off last.
FIELDS = ("version", "config", "history", "schema", "line", "release", "log", "log_max", "input", "watched", "state")


def stamp_path(config_path: str) -> str:
    """Where the stamp of a config file lives: beside it, hidden."""
    folder, name = os.path.split(config_path)
    return os.path.join(folder, f".{name}{SUFFIX}")


def config_of(argv: list[str]) -> str | None:
    """The resolved config path when the arguments are only --config (or none), else None: the full tick runs."""
    if not argv:
        path = DEFAULT_CONFIG
    elif len(argv) == 2 and argv[0] == "--config":
        path = argv[1]
    elif len(argv) == 1 and argv[0].startswith("--config="):
        path = argv[0].partition("=")[2]
    else:
        return None
    return os.path.realpath(os.path.expanduser(path))


def state(watched: list[str], folder: str, racy_before: float | None = None) -> bytes | None:
    """Size, mtime and inode of each watched path and of each entry of the input folder, as bytes; None when
    racy_before is given and some mtime is later than it (too recent to trust)."""
    parts = []
    try:
        entries = sorted(os.listdir(folder))  # the order of a folder listing is the filesystem's whim
    except OSError:
        return None
    for path in [*watched, *(os.path.join(folder, name) for name in entries)]:
        try:
            st = os.stat(path)
        except OSError:
            parts.append(os.fsencode(path) + b"\0-")
            continue
        if racy_before is not None and st.st_mtime_ns > racy_before * 1e9:
            return None
        parts.append(os.fsencode(path) + f"\0{st.st_size} {st.st_mtime_ns} {st.st_ino}".encode())
    return b"\0".join(parts)


def write_stamp(config_path: str, stamp: dict[str, str], watched: list[str], folder: str,
                taken: bytes | None) -> None:
    """Leave the stamp of a full no-new-data tick, given the state taken before it looked (None: do not stamp).
    The state is taken again now: if the tick changed anything it watches, no stamp (the next full tick will)."""
    path = stamp_path(config_path)
    if taken is None or state(watched, folder) != taken or any("\n" in w for w in watched):
        _unlink(path)
        return
    fields = {**stamp, "version": VERSION.decode(), "config": config_path, "input": folder,
              "watched": "\n".join(watched)}
    data = b"\0".join(os.fsencode(fields[f]) for f in FIELDS[:-1]) + b"\0" + taken
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # no fsync: a stamp lost in a crash only costs one full tick
    except OSError:
        _unlink(tmp)


def forget(config_path: str) -> None:
    """Remove the stamp of a config file, if there is one: the next tick runs the full check."""
    _unlink(stamp_path(config_path))


def _unlink(path: str) -> None:
    """Remove a file if it is there."""
    try:
        os.unlink(path)
    except OSError:
        pass


def racy_limit() -> float:
    """The latest mtime a stamp taken now may trust."""
    return time.time() - RACY_SECONDS


def quick_tick(argv: list[str]) -> bool:
    """Record, log and print a no-new-data tick if nothing changed since the stamp; False: run the full tick."""
    config_path = config_of(argv)
    if config_path is None:
        return False
    started = time.time()
    try:
        with open(stamp_path(config_path), "rb") as f:
            raw = f.read()
        values = raw.split(b"\0", len(FIELDS) - 1)
        if len(values) != len(FIELDS) or values[0] != VERSION:
            return False
        s = dict(zip(FIELDS, values))
        text = {k: os.fsdecode(v) for k, v in s.items() if k != "state"}
        if text["config"] != config_path or state(text["watched"].split("\n"), text["input"]) != s["state"]:
            return False
        if not _room_to_log(text["log"], int(text["log_max"])) or not _record(text, started):
            return False
    except (OSError, ValueError, IndexError):
        return False
    line = text["line"]
    _log(text["log"], line, started)
    sys.stdout.write(line + "\n")
    return True


def _room_to_log(log_path: str, most: int) -> bool:
    """False when the step log, or a file cron appends our output to, is due for rotation (the full tick rotates)."""
    try:
        if os.stat(log_path).st_size > most - 1000:
            return False
    except FileNotFoundError:
        return False
    for fd in (1, 2):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_size > most - 1000:
            return False
    return True


def _record(text: dict[str, str], started: float) -> bool:
    """The tick's row in the history store, as the full tick writes it; False if the store is not as stamped."""
    import sqlite3  # here, not at the top: only a tick that got this far needs it
    if not os.path.isfile(text["history"]):  # sqlite3 would create an empty one
        return False
    ended = time.time()
    try:
        db = sqlite3.connect(text["history"], timeout=30)
        try:
            db.execute("PRAGMA synchronous=NORMAL")
            if db.execute("PRAGMA user_version").fetchone()[0] != int(text["schema"]):
                return False
            with db:
                db.execute("INSERT INTO runs(step, started_at, ended_at, seconds, outcome, summary, details) "
                           "VALUES ('fullprocess', ?, ?, ?, 'no-new-data', ?, ?)",
                           (_iso(started), _iso(ended), round(ended - started, 4), text["line"],
                            f'{{"outcome": "no-new-data", "release": {int(text["release"])}}}'))
        finally:
            db.close()
    except sqlite3.Error:
        return False
    return True


def _iso(t: float) -> str:
    """history.now_iso() for a given time: ISO 8601 UTC with milliseconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def _log(log_path: str, line: str, t: float) -> None:
    """Append the line to the step log in cli.LOG_FORMAT (a log that cannot be written loses the line, as there)."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f",{int(t * 1000) % 1000:03d}"
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, f"{stamp} INFO fullprocess: {line}\n".encode())
        finally:
            os.close(fd)
    except OSError:
        pass
