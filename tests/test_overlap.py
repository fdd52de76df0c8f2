"""Overlapping cron ticks: ten fullprocess runs started at once, round after round, with a
data drop before every other round. Exactly one run does the work; the others exit 0 without waiting (their wall
times are printed); nothing is ingested twice; every run, winner or loser, is in the history store.
The quick form (make test) runs SIZES["overlap_rounds"] rounds; SOAK=1 (make soak) the long form."""
from __future__ import annotations

import random
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from campaign import SIZES, Drops, check_done, command, drop, prepared_workspace, query, register_shipped

SEED = 20261127
RUNS = 10
DROP_KINDS = ["new", "flip", "dup", "mixed", "bad", "large"]


def start_together(ws: Path, n: int) -> list[tuple[int, float, str, str]]:
    """Start n ticks at once; (exit code, wall seconds, stdout, stderr) of each."""
    procs = [(subprocess.Popen(command(ws), cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
              time.monotonic()) for _ in range(n)]

    def wait(pt: tuple[subprocess.Popen, float]) -> tuple[int, float, str, str]:
        out, err = pt[0].communicate(timeout=600)
        return pt[0].returncode, time.monotonic() - pt[1], out, err
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(wait, procs))


def role(stdout: str) -> str:
    """What a tick did, from its summary line."""
    if "another fullprocess run is in progress" in stdout:
        return "busy"
    if stdout.startswith("no new data in "):  # the light tick's line (a run that only rejects says "no new data:")
        return "nothing to do"
    return "worked"


def test_ten_ticks_at_once_one_works_the_others_leave(tmp_path):
    ws = prepared_workspace(tmp_path / "ws")          # the shipped source data waits: the first round has work
    drops = Drops(ws / "sourcedata", np.random.default_rng(SEED))
    register_shipped(drops, ws)
    plan = random.Random(SEED)
    report = []
    for n in range(SIZES["overlap_rounds"]):
        if n % 2 == 0 and n > 0:
            drop(drops, plan.choice(DROP_KINDS), ws)
        work = n % 2 == 0                              # the shipped data, or a drop, waits
        before = query(ws, "SELECT COUNT(*) FROM runs WHERE step = 'fullprocess'")[0][0]
        results = start_together(ws, RUNS)
        for code, _, out, err in results:
            assert code == 0 and "Traceback" not in err, (code, out, err)
        roles = [role(out) for _, _, out, _ in results]
        assert roles.count("worked") == (1 if work else 0), roles
        outcomes = [o for (o,) in query(ws, "SELECT outcome FROM runs WHERE step = 'fullprocess' ORDER BY id")][before:]
        assert len(outcomes) == RUNS, outcomes      # every tick, winner or loser, is in the history
        assert sorted(outcomes) == sorted({"worked": "ok", "busy": "busy", "nothing to do": "no-new-data"}[r]
                                          for r in roles)
        check_done(ws, drops)                          # every row once, every file recorded once
        losers = sorted(round(s, 2) for (_, s, _, _), r in zip(results, roles, strict=True) if r != "worked")
        winner = [round(s, 2) for (_, s, _, _), r in zip(results, roles, strict=True) if r == "worked"]
        report.append(f"round {n + 1}: {'drop, ' if work else ''}{roles.count('busy')} busy, "
                      f"{roles.count('nothing to do')} found nothing to do, worker {winner or '-'} s; losers' wall "
                      f"times {losers} s (median {statistics.median(losers):.2f})")
    twice = query(ws, "SELECT name, COUNT(*) FROM files WHERE status = 'ingested' GROUP BY name HAVING COUNT(*) > 1")
    assert twice == [], f"ingested more than once: {twice}"
    print("\n" + "\n".join(report))
