"""The history store on SQLite against PostgreSQL (history_url): the cron tick with no new data, and the reads an
API worker makes per request, on one bootstrapped workspace each. PostgreSQL is a throwaway local server on
loopback (tests/pgserver.py), so the figures leave out a network hop to a real database host.

    .venv/bin/python bench/history_backends.py               # 15 ticks and 300 reads per backend
    .venv/bin/python bench/history_backends.py --ticks 5 --reads 100

Prints a Markdown table (docs/scale-out.md holds the figures of the last run kept).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from measure import PY, machine, run

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # our modules live at the repository root; the server helper in tests/

import history  # noqa: E402 (importable only after the sys.path line above)
import pgserver  # noqa: E402 (importable only after the sys.path line above)
import releases  # noqa: E402 (importable only after the sys.path line above)
from config import load_config  # noqa: E402 (importable only after the sys.path line above)


def workspace(folder: Path, history_url: str | None) -> Path:
    """The shipped data and a config (settled files taken at once), bootstrapped by one real tick: release 1."""
    folder.mkdir(parents=True)
    for name in ("sourcedata", "testdata"):
        shutil.copytree(ROOT / name, folder / name)
    cfg = {**json.loads((ROOT / "config.json").read_text()), "ingestion": {"settle_seconds": 0}}
    cfg["url"] = "http://127.0.0.1:9/"  # apicalls finds nothing listening
    if history_url:
        cfg["history_url"] = history_url
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    run([PY, ROOT / "fullprocess.py", "--config", folder / "config.json"], cwd=folder)
    return folder


def ticks(ws: Path, n: int) -> dict[str, float]:
    """n no-new-data ticks, each a fresh process: median and worst wall time, median CPU."""
    done = [run([PY, ROOT / "fullprocess.py", "--config", ws / "config.json"], cwd=ws) for _ in range(n)]
    assert all(d["stdout"].startswith("no new data") for d in done), done[-1]["stdout"]
    walls = [d["wall"] for d in done]
    return {"tick_wall": statistics.median(walls), "tick_worst": max(walls),
            "tick_cpu": statistics.median(d["cpu"] for d in done)}


def reads(ws: Path, n: int) -> dict[str, float]:
    """In one process, as an API worker: /health's history read and the current release's pointer, n times each;
    the median milliseconds of each."""
    cfg = load_config(ws / "config.json")
    out = {}
    for name, fn in (("health_ms", lambda: history.call(cfg, "read", history.last_successful_run)),
                     ("pointer_ms", lambda: releases.current_dir(cfg))):
        took = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            took.append((time.perf_counter() - t0) * 1000)
        out[name] = statistics.median(took)
    return out


def lock_freed_after_kill(url: str, times: int = 5) -> float:
    """A process holds a session advisory lock and is killed with -9: the median milliseconds until the server has
    let go of it (seen from another connection)."""
    import psycopg
    holder = ("import psycopg, sys, time; c = psycopg.connect(sys.argv[1], autocommit=True); "
              "c.execute('SELECT pg_advisory_lock(1)'); print('held', flush=True); time.sleep(600)")
    took = []
    with psycopg.connect(url, autocommit=True) as db:
        for _ in range(times):
            proc = subprocess.Popen([PY, "-c", holder, url], stdout=subprocess.PIPE, text=True)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
            t0 = time.perf_counter()
            proc.kill()
            while db.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0]:
                time.sleep(0.0005)
            took.append((time.perf_counter() - t0) * 1000)
            proc.wait()
    return statistics.median(took)


def main() -> None:
    """Measure both backends and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=15)
    parser.add_argument("--reads", type=int, default=300)
    args = parser.parse_args()
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp, pgserver.throwaway_server() as server:
        load0 = os.getloadavg()[0]
        for name, url in (("SQLite", None), ("PostgreSQL", pgserver.fresh_database(server, "bench"))):
            ws = workspace(Path(tmp) / name, url)
            rows[name] = {**ticks(ws, args.ticks), **reads(ws, args.reads)}
        freed = lock_freed_after_kill(pgserver.fresh_database(server, "lock"))
        load1 = os.getloadavg()[0]
    m = machine()
    print(f"{m['cpu']}, {m['usable_cores']} cores usable; load average {load0:.2f} before, {load1:.2f} after; "
          f"{args.ticks} ticks and {args.reads} reads per backend\n")
    print("| history store | no-new-data tick, median wall (worst) | tick CPU | /health read | release pointer |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['tick_wall']:.3f} s ({r['tick_worst']:.3f} s) | {r['tick_cpu']:.3f} s | "
              f"{r['health_ms']:.2f} ms | {r['pointer_ms']:.2f} ms |")
    print(f"\nA session advisory lock held by a process killed with -9 was free again after {freed:.1f} ms "
          f"(median of 5).")


if __name__ == "__main__":
    main()
