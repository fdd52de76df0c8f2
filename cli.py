"""What every script shares at its edges: arguments, logging, and turning outcomes into exit codes.

Exit codes: 0 success, 1 a failure the step explains (StepError), 2 bad usage or config.
stdout holds only the summary line (or --json); details go to logs/<step>.log and warnings to stderr.
"""
from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any, Callable

import history
from config import DEFAULT_CONFIG, ConfigError, load_config
from modelstore import ModelError
from objectstore import ObjectStoreError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_UNWRITABLE_LOG_FOLDERS: set[Path] = set()  # said once per process, not once per step


class StepError(Exception):
    """A failure the step can explain in one line (exit code 1)."""


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose help is the script's docstring, with --config and --json."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(DEFAULT_CONFIG),
                   help="config file (default: config.json beside the scripts)")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a summary line")
    return p


def setup_logging(cfg: dict[str, Any], *steps: str) -> None:
    """Send each named step's log to logs/<step>.log (rotated) and warnings to stderr, one line each."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if not any(getattr(h, "_drs_stderr", False) for h in root.handlers):
        err = logging.StreamHandler(sys.stderr)
        err.setLevel(logging.WARNING)
        err.format = _one_line  # type: ignore[method-assign]  # tracebacks go to the step's log file only
        err._drs_stderr = True  # type: ignore[attr-defined]
        root.addHandler(err)
    folder = cfg["log_folder_path"]
    if folder in _UNWRITABLE_LOG_FOLDERS:
        return
    for step in steps:
        logger = logging.getLogger(step)
        target = str(folder / f"{step}.log")
        if any(getattr(h, "baseFilename", None) == target for h in logger.handlers):
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fh = logging.handlers.RotatingFileHandler(target, maxBytes=cfg["log"]["max_bytes"],
                                                      backupCount=cfg["log"]["backups"], encoding="utf-8")
        except OSError as e:  # the work matters more than its log: go on, and say so once
            logging.getLogger(step).warning("cannot write logs in %s (%s): warnings and errors go to stderr only",
                                            folder, e.strerror or e)
            _UNWRITABLE_LOG_FOLDERS.add(folder)
            return
        fh.setFormatter(logging.Formatter(LOG_FORMAT))
        # A line that cannot be written (a full disk) is dropped without a traceback on stderr: the step's own
        # one-line error already says what the disk did.
        fh.handleError = _drop_record  # type: ignore[method-assign]
        logger.addHandler(fh)
    rotate_redirected_output(cfg)


def _one_line(record: logging.LogRecord) -> str:
    """A log record as one stderr line: step, level, message (no traceback; newlines folded)."""
    return f"{record.name}: {record.levelname}: {' '.join(record.getMessage().splitlines())}"


def _drop_record(record: logging.LogRecord) -> None:
    """What a log file handler does with a record it could not write: nothing."""


def rotate_redirected_output(cfg: dict[str, Any]) -> None:
    """Rotate our stdout or stderr when it is appended to a file of the log folder, as cron does with
    logs/cron.log (cronjob.txt): one summary line per tick every 10 minutes grows it without end otherwise.
    The file is renamed to <name>.1 (and so on, log.backups kept); this run goes on writing to the renamed file,
    the next one to a fresh file."""
    folder, limit = cfg["log_folder_path"], cfg["log"]["max_bytes"]
    for fd in (sys.stdout, sys.stderr):
        try:
            st = os.fstat(fd.fileno())
        except (OSError, ValueError, AttributeError):
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_size < limit or not folder.is_dir():
            continue
        for p in folder.glob("*.log"):  # the current file only, never one already rotated (name.log.1)
            try:
                same = os.path.samestat(p.stat(), st)
            except OSError:
                continue
            if same:
                _shift(p, cfg["log"]["backups"])
                break


def _shift(path: Path, keep: int) -> None:
    """path -> path.1 -> path.2 ... keeping `keep` old files (none: path is just removed)."""
    try:
        if keep == 0:
            path.unlink()
            return
        for i in range(keep - 1, 0, -1):
            older = path.with_name(f"{path.name}.{i}")
            if older.exists():
                os.replace(older, path.with_name(f"{path.name}.{i + 1}"))
        os.replace(path, path.with_name(f"{path.name}.1"))
    except OSError as e:  # another tick rotated it first, or the folder is read-only: try again next tick
        logging.getLogger("cli").info("could not rotate %s: %s", path, e)


def progress(step: str, text: str, done: float | None = None, total: float | None = None,
             started: float | None = None, last: bool = False) -> None:
    """A status line that overwrites itself on a terminal's stderr ("ingestion: 3/10 files, 2,970,000 rows,
    1,100,000 rows/s, about 7 s left"); given done, total and started, the time left is added; the last one ends
    the line. Silent when stderr is not a terminal: under cron, in pipes and in the tests' captured output."""
    if not sys.stderr.isatty():
        return
    if done and total and started is not None and done < total:
        spent = time.monotonic() - started
        text += f", about {spent / done * (total - done):.0f} s left"
    end = "\n" if last else ""
    sys.stderr.write(f"\r\x1b[2K{step}: {text}{end}")  # \x1b[2K: clear the previous, longer line
    sys.stderr.flush()


def rate(rows: int, started: float) -> str:
    """Rows per second since started, for progress lines."""
    spent = time.monotonic() - started
    return f"{rows / spent:,.0f} rows/s" if spent > 0 else ""


def run(step: str, args: argparse.Namespace, work: Callable[[dict[str, Any]], dict[str, Any]],
        summary: Callable[[dict[str, Any]], str], record: bool = True) -> None:
    """Load the config, run work(cfg), print its summary (or JSON), record the run and exit with its outcome's code."""
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"{step}: config error: {e}", file=sys.stderr)
        sys.exit(2)
    setup_logging(cfg, step)
    log = logging.getLogger(step)
    started, t0 = history.now_iso(), time.monotonic()
    code, result, line = 0, {}, ""
    try:
        result = work(cfg)
        line = summary(result)
    except (StepError, ObjectStoreError, ModelError) as e:  # failures whose message already says it all
        log.error("%s", e)
        code, result, line = 1, {"error": str(e)}, str(e)
    except ConfigError as e:
        log.error("config error: %s", e)
        code, result, line = 2, {"error": str(e)}, str(e)
    except KeyboardInterrupt:
        log.error("interrupted")
        code, result, line = 130, {"error": "interrupted"}, "interrupted"
    except Exception as e:  # an unforeseen failure still ends in one line; the traceback goes to the log
        line = f"failed: {type(e).__name__}: {e}"
        log.error("%s (traceback in %s)", line, cfg["log_folder_path"] / (step + ".log"), exc_info=True)
        code, result = 1, {"error": line}
    if record:
        history.safely(cfg, f"could not record the {step} run", history.record_run, step, started, history.now_iso(),
                       time.monotonic() - t0, "ok" if code == 0 else "failed", line, result)
    if code == 0:
        _emit(args, {"ok": True, **result}, line)
    elif code == 1:
        _emit(args, {"ok": False, **result}, None)
    sys.exit(code)


def _emit(args: argparse.Namespace, result: dict[str, Any], line: str | None) -> None:
    """Print the result as JSON (--json) or as the one summary line."""
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    elif line:
        print(line)
