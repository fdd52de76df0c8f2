"""What every script shares at its edges: arguments, logging, and turning outcomes into exit codes.

Exit codes (SPEC section 6): 0 success, 1 a failure the step explains (StepError), 2 bad usage or config.
stdout holds only the summary line (or --json); details go to logs/<step>.log and warnings to stderr.
"""
from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import sys
import time
from typing import Any, Callable

import history
from config import DEFAULT_CONFIG, ConfigError, load_config

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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
    """Send each named step's log to logs/<step>.log (rotated) and warnings to stderr."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if not any(getattr(h, "_drs_stderr", False) for h in root.handlers):
        err = logging.StreamHandler(sys.stderr)
        err.setLevel(logging.WARNING)
        err.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
        err._drs_stderr = True  # type: ignore[attr-defined]
        root.addHandler(err)
    folder = cfg["log_folder_path"]
    folder.mkdir(parents=True, exist_ok=True)
    for step in steps:
        logger = logging.getLogger(step)
        target = str(folder / f"{step}.log")
        if any(getattr(h, "baseFilename", None) == target for h in logger.handlers):
            continue
        fh = logging.handlers.RotatingFileHandler(target, maxBytes=cfg["log"]["max_bytes"],
                                                  backupCount=cfg["log"]["backups"], encoding="utf-8")
        fh.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(fh)


def run(step: str, args: argparse.Namespace, work: Callable[[dict[str, Any]], dict[str, Any]],
        summary: Callable[[dict[str, Any]], str], record: bool = True) -> None:
    """Load the config, run work(cfg), print its summary (or JSON), record the run and exit with the SPEC's code."""
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
    except StepError as e:
        log.error("%s", e)
        code, result, line = 1, {"error": str(e)}, str(e)
    except ConfigError as e:
        log.error("config error: %s", e)
        code, result, line = 2, {"error": str(e)}, str(e)
    except KeyboardInterrupt:
        log.error("interrupted")
        code, result, line = 130, {"error": "interrupted"}, "interrupted"
    except Exception as e:  # an unforeseen failure still ends in one line; the traceback goes to the log
        log.exception("failed")
        line = f"failed: {type(e).__name__}: {e}"
        print(f"{step}: {line} (traceback in {cfg['log_folder_path'] / (step + '.log')})", file=sys.stderr)
        code, result = 1, {"error": line}
    if record:
        history.safely(cfg, f"the {step} run", history.record_run, step, started, history.now_iso(),
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
