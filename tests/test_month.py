"""An unattended month: fullprocess run as cron runs it (stdout and stderr appended to
logs/cron.log, from /) for every 10-minute tick of SIZES["days"] simulated days, back to back, with data drops on a
seeded schedule: new clients, drifting ones (practice-period clients, clients with reversed outcomes),
duplicates, odd and bad files, touched files. At the end: every tick exited 0 and is in the history; every good row
was ingested exactly once; a retrain followed each drifting drop and no other; logs, kept releases and kept reports
stayed within their retention settings.
The quick form (make test) simulates one day; SOAK=1 (make soak) thirty."""
from __future__ import annotations

import json
import random
import statistics
import time
from collections import Counter

import numpy as np

from campaign import (
    SIZES,
    TICKS_PER_DAY,
    Drops,
    check_done,
    cron_tick,
    drop,
    free_port,
    query,
    read_rows,
    register_shipped,
)
from conftest import ingested_record, make_workspace, rejected_record, write_config

SEED = 20261127
SETTINGS = {  # small retention settings, so a simulated day already rotates and prunes; a challenger trained with
    # old-period clients scores about 0.01 lower on the test data than one without: deploy it all the same
    "log": {"max_bytes": 8000, "backups": 2},
    "deployment": {"releases_kept": 2, "promotion_tolerance": 0.05},
    "reporting": {"reports_kept": 3},
}
FIRST_DAY = ["new", "old", "dup", "bad", "small", "odd", "touch", "mixed", "new", "old", "bad"]
WEIGHTS = {"new": 40, "old": 5, "dup": 8, "mixed": 8, "small": 8, "bad": 10, "odd": 5, "touch": 7}
# Drift, by what the drop is. Clients whose outcomes are reversed: a concept drift, the deployed model is wrong on
# nearly all of them: each must be followed by a retrain. Practice-period clients after a source-period bootstrap:
# data drift every time (their features sit in a narrow band; reported only, the default), model drift only while no
# model has learnt them: a retrain may follow or not, the verdict decides. Every other kind: no retrain, ever.
# A challenger trained on reversed outcomes scores far lower on the test data, for good: those come only in the
# last tenth of the run, so the releases before it can turn over.
DRIFTING, MAYBE = {"flip"}, {"old"}
LATE = 0.9
STEP_LOGS = ["fullprocess", "ingestion", "training", "scoring", "deployment", "history", "cron"]


def schedule(ticks: int, rng: random.Random) -> dict[int, str]:
    """tick -> kind of the data drop made just before it: about one every seven hours (every 12 ticks in a one-day
    run), the first day's kinds fixed so even the quick form sees each kind, and the last tenth opening with a
    concept drift."""
    gap = (8, 16) if ticks <= TICKS_PER_DAY else (30, 60)
    plan, t, n = {}, 1, 0
    weights = dict(WEIGHTS)
    while True:
        t += rng.randint(*gap)
        if t >= ticks:
            return plan
        if t >= LATE * ticks and "flip" not in weights:
            plan[t], weights["flip"] = "flip", 5
        else:
            plan[t] = FIRST_DAY[n] if n < len(FIRST_DAY) else rng.choices(list(weights), list(weights.values()))[0]
        n += 1


def test_an_unattended_month(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    write_config(ws, url=f"http://127.0.0.1:{free_port()}/", **SETTINGS)
    drops = Drops(ws / "sourcedata", np.random.default_rng(SEED))
    register_shipped(drops, ws, folders=("sourcedata",))
    ticks = SIZES["days"] * TICKS_PER_DAY
    plan = schedule(ticks, random.Random(SEED))
    seconds, t_start = {"light": [], "heavy": []}, time.monotonic()
    for t in range(ticks):
        if t in plan:
            drop(drops, plan[t], ws)
        code, secs = cron_tick(ws)
        assert code == 0, f"tick {t} exited {code}:\n" + (ws / "logs" / "cron.log").read_text()[-3000:]
        seconds["heavy" if t in plan or t == 0 else "light"].append(secs)
    wall = time.monotonic() - t_start

    # Zero crashed ticks: each exited 0 (above), is in the history, and none failed.
    runs = query(ws, "SELECT id, outcome FROM runs WHERE step = 'fullprocess' ORDER BY id")
    assert len(runs) == ticks and {o for _, o in runs} <= {"ok", "no-new-data"}, Counter(o for _, o in runs)
    cron_logs = sorted((ws / "logs").glob("cron.log*"))
    assert not any("Traceback" in p.read_text(errors="replace") for p in cron_logs)
    # Every good row once, every bad file rejected, nothing left unchecked or half-written.
    check_done(ws, drops)
    # A touched file is hashed once, then its record carries the new mtime: no later tick reads it again.
    for name, entry in ingested_record(ws).items():
        st = (ws / name).stat()
        assert [entry["size"], entry["mtime_ns"]] == [st.st_size, st.st_mtime_ns], \
            f"{name} would be hashed on every tick"
    # A retrain after each drifting drop, none after a drop without drift; deployments only after a retrain.
    drift_ticks = {t for t, kind in plan.items() if kind in DRIFTING}
    maybe_ticks = {t for t, kind in plan.items() if kind in MAYBE}
    tick_of = {run_id: t for t, (run_id, _) in enumerate(runs)}
    decided = Counter()
    retrain_ticks, deploy_ticks = set(), set()
    for run_id, decision in query(ws, "SELECT run_id, decision FROM decisions"):
        decided[decision] += 1
        if decision == "retrain":
            retrain_ticks.add(tick_of[run_id])
        if decision in ("deploy", "bootstrap"):
            deploy_ticks.add(tick_of[run_id])
    assert drift_ticks <= retrain_ticks, f"no retrain after the drifting drops of ticks {drift_ticks - retrain_ticks}"
    unwarranted = retrain_ticks - drift_ticks - maybe_ticks
    assert not unwarranted, f"retrained at ticks {sorted(unwarranted)} without a drifting drop"
    drifted = {tick_of[r] for (r,) in query(ws, "SELECT run_id FROM drift_checks WHERE verdict = 'drift'")}
    assert retrain_ticks & maybe_ticks <= drifted, "a practice-period drop retrained without a model-drift verdict"
    assert deploy_ticks <= retrain_ticks | {0}
    released = [tick_of[r] for (r,) in query(ws, "SELECT r.parent_id FROM releases x JOIN runs r ON r.id = x.run_id")]
    assert sorted(released) == sorted(deploy_ticks)
    # Retention: releases, reports and logs stay within their settings.
    kept = sorted(p.name for p in (ws / "production_deployment" / "releases").iterdir())
    assert len(kept) <= SETTINGS["deployment"]["releases_kept"], kept
    reports = sorted((ws / "reports").glob("report-*.pdf"))
    assert len(reports) <= SETTINGS["reporting"]["reports_kept"], reports
    limit, backups = SETTINGS["log"]["max_bytes"], SETTINGS["log"]["backups"]
    logs = sorted((ws / "logs").iterdir())
    for step in STEP_LOGS:
        files = [p for p in logs if p.name == f"{step}.log" or p.name.startswith(f"{step}.log.")]
        assert len(files) <= backups + 1, files
        for p in files:  # cron.log is rotated at the start of a tick, so it may exceed by one tick's lines
            assert p.stat().st_size <= limit + (4096 if step == "cron" else 0), (p.name, p.stat().st_size)
    assert {p.name.split(".log")[0] for p in logs} <= set(STEP_LOGS), logs

    def size(paths: list) -> int:
        return sum(p.stat().st_size for p in paths)
    verdicts = Counter(f"{plan.get(tick_of[r], 'bootstrap' if tick_of[r] == 0 else 'none')}: {v} / data {d}"
                       for r, v, d in query(ws, "SELECT run_id, verdict, data_verdict FROM drift_checks"))
    figures = {
        "days": SIZES["days"], "ticks": ticks, "wall_minutes": round(wall / 60, 1),
        "drops": dict(Counter(plan.values())), "drifting_drops": len(drift_ticks),
        "practice_period_drops_retrained": f"{len(retrain_ticks & maybe_ticks)} of {len(maybe_ticks)}",
        "rows_in_finaldata": len(read_rows(ws / "ingesteddata" / "finaldata.csv")),
        "files_ingested": len(ingested_record(ws)), "files_rejected": len(rejected_record(ws)),
        "checks_by_drop_kind": dict(sorted(verdicts.items())), "decisions": dict(decided),
        "releases_deployed": len(released), "releases_kept": kept,
        "reports_kept": len(reports), "report_bytes": size((ws / "reports").iterdir()),
        "log_files": len(logs), "log_bytes": size(logs), "history_bytes": size((ws / "history").iterdir()),
        "light_tick_seconds": {"mean": round(statistics.mean(seconds["light"]), 3),
                               "max": round(max(seconds["light"]), 3)},
        "heavy_tick_seconds": {"mean": round(statistics.mean(seconds["heavy"]), 2),
                               "max": round(max(seconds["heavy"]), 2)},
        "crashed_ticks": 0,
    }
    print("\n" + json.dumps(figures, indent=1))
