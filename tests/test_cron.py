"""The real cron: Debian's cron daemon runs fullprocess.py from a crontab line, from cron's own working directory
and environment, and the run shows up in that workspace's history store. The test adds one marked line to the
current user's crontab and always takes it out again, leaving every other line as it was."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import ROOT

CRON_DAEMON = Path("/usr/sbin/cron")
WAIT_SECONDS = 180


def cron_pids() -> set[int]:
    """Process ids of running cron daemons."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "comm").read_text().strip() == "cron":
                    pids.add(int(proc.name))
            except OSError:
                continue
    return pids


def read_crontab() -> str | None:
    """The current user's crontab, or None when there is none."""
    p = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    if p.returncode != 0:
        assert "no crontab" in p.stderr, p.stderr
        return None
    return p.stdout


def write_crontab(text: str | None) -> None:
    """Install text as the current user's crontab (None: remove the crontab)."""
    if text is None:
        subprocess.run(["crontab", "-r"], capture_output=True, text=True)
        return
    subprocess.run(["crontab", "-"], input=text, text=True, check=True, capture_output=True)


def fullprocess_runs(history: Path) -> list[tuple[str, str]]:
    """(outcome, summary) of the fullprocess runs recorded in a history file (none yet if it cannot be read)."""
    if not history.exists():
        return []
    try:
        db = sqlite3.connect(f"file:{history}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute("SELECT outcome, summary FROM runs WHERE step = 'fullprocess'").fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return []


def test_cron_runs_fullprocess(workspace: Path):
    if not CRON_DAEMON.exists() or shutil.which("crontab") is None or os.geteuid() != 0:
        pytest.fail("the cron test needs Debian's cron daemon (/usr/sbin/cron and crontab) and root: install it "
                    "with `apt-get install cron` (CI installs it)")
    marker = f"drs-cron-test-{uuid.uuid4().hex}"
    # The line cronjob.txt installs, every minute instead of every 10, for this workspace.
    line = (f"* * * * * mkdir -p {workspace}/logs && {sys.executable} {ROOT}/fullprocess.py --config "
            f"{workspace}/config.json >> {workspace}/logs/cron.log 2>&1 # {marker}")
    original = read_crontab()
    started = None
    try:
        kept = original if original is None or original.endswith("\n") or original == "" else original + "\n"
        write_crontab(f"{kept or ''}# {marker}: added by tests/test_cron.py, removed when it ends\n{line}\n")
        if not cron_pids():
            before = cron_pids()
            subprocess.run([str(CRON_DAEMON)], check=True, capture_output=True, timeout=30)
            time.sleep(0.5)
            started = cron_pids() - before
            assert started, "started /usr/sbin/cron but no cron process is running"
        history = workspace / "history" / "history.sqlite3"
        deadline = time.monotonic() + WAIT_SECONDS
        runs = []
        while time.monotonic() < deadline and not runs:
            time.sleep(1)
            runs = fullprocess_runs(history)
        log = workspace / "logs" / "cron.log"
        assert runs, (f"cron did not run fullprocess within {WAIT_SECONDS} s (cron running: {bool(cron_pids())}; "
                      f"cron.log: {log.read_text() if log.exists() else 'none'})")
        # Run from cron's working directory with cron's environment, it bootstrapped the workspace's release.
        outcome, summary = runs[0]
        assert outcome == "ok" and "bootstrap: deployed release 1" in summary, runs
        assert os.readlink(workspace / "production_deployment" / "current") == "releases/0001"
        # The summary line reaches cron.log when the run ends, after the outputs it refreshes once recorded.
        while time.monotonic() < deadline and "bootstrap: deployed release 1" not in (
                log.read_text() if log.exists() else ""):
            time.sleep(1)
        assert "bootstrap: deployed release 1" in log.read_text()
    finally:
        current = read_crontab()
        if current is not None:
            rest = "".join(line + "\n" for line in current.splitlines() if marker not in line)
            write_crontab(rest if rest or original is not None else None)
        for pid in started or ():
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass
    assert read_crontab() == original, "the crontab was not restored"
