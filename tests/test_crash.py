"""kill -9 at any moment (SPEC section 10): fullprocess is killed with SIGKILL at many points of a long run
(ingestion of a large file, the drift check, training, scoring, deployment, the output steps), and after every kill
the deployed release is whole and serving, every artifact parses, and the next normal run finishes the job."""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pytest

import deployment
import generate_data
from config import load_config
from conftest import ROOT, make_workspace, run_script, write_config

SEED = 20261127
BIG_FILE_ROWS = 100_000        # makes ingestion, the drift check and training take a noticeable time
TIMED_CHAINS = 7               # independent workspaces, each killed twice in a row at seeded random moments
KILLS_PER_CHAIN = 2            # before a normal run: 14 timed kills...
# ...and kills the moment a run reaches a point where a crash would hurt most, whatever the machine's speed:
EVENT_CHAINS = [["ingestion recorded", "model trained"], ["release switched"]]
COLUMNS = ["corporation", "lastmonth_activity", "lastyear_activity", "number_of_employees", "exited"]
ALL_FILES = {"practicedata/dataset1.csv", "practicedata/dataset2.csv", "sourcedata/dataset3.csv",
             "sourcedata/dataset4.csv", "sourcedata/data001.csv"}


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def command(ws: Path) -> list[str]:
    """The cron command for a workspace."""
    return [sys.executable, str(ROOT / "fullprocess.py"), "--config", str(ws / "config.json")]


def epoch(iso: str) -> float:
    """Seconds since the epoch of a history timestamp (UTC, ending in Z)."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def check_consistent(ws: Path) -> str:
    """Assert everything a kill may have hit is whole; return how far the killed run got."""
    cfg = load_config(ws / "config.json")
    prod = ws / "production_deployment"
    # The deployed release: complete, its files matching the manifest, served under the well-known names.
    folder = (prod / os.readlink(prod / "current")).resolve()
    manifest = json.loads((folder / "manifest.json").read_text())
    for name, digest in manifest["files"].items():
        assert sha256(folder / name) == digest, f"{folder.name}/{name} does not match its manifest"
    for name in ("trainedmodel.pkl", "latestscore.txt", "ingestedfiles.txt"):
        assert (prod / name).read_bytes() == (folder / name).read_bytes(), name
    model, loaded = deployment.load_deployed_model(cfg)
    assert loaded["version"] == manifest["version"] and hasattr(model, "predict")
    assert 0 < float((prod / "latestscore.txt").read_text()) <= 1
    for models in ("models", "practicemodels"):
        score = ws / models / "latestscore.txt"
        if score.exists():
            assert 0 <= float(score.read_text()) <= 1, score
    # The data and its record.
    df = pd.read_csv(ws / "ingesteddata" / "finaldata.csv")
    assert list(df.columns) == COLUMNS
    assert not df.duplicated().any(), "finaldata.csv holds duplicate rows"
    names = []
    for line in (ws / "ingesteddata" / "ingestedfiles.txt").read_text().splitlines():
        fields = line.split("\t")
        assert len(fields) >= 7 and fields[0] and len(fields[1]) == 64, line
        names.append(fields[0])
    assert len(names) == len(set(names))
    assert set(names) <= ALL_FILES
    # The history store.
    db = sqlite3.connect(ws / "history" / "history.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] >= 1
    finally:
        db.close()
    if "sourcedata/data001.csv" not in names:
        return "before the ingestion was recorded"
    if manifest["version"] == 1:
        return "ingested, not yet deployed"
    return "deployed"


def kill_at(ws: Path, delay: float) -> bool:
    """Start a tick, SIGKILL it (and anything it started) after delay seconds; False if it ended first."""
    p = subprocess.Popen(command(ws), cwd=ws, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        p.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        return True


def events(ws: Path) -> dict[str, Callable[[], bool]]:
    """Observable points of a run, checked from outside every few milliseconds."""
    def recorded() -> bool:
        try:
            return "sourcedata/data001.csv" in (ws / "ingesteddata" / "ingestedfiles.txt").read_text()
        except OSError:
            return False

    def switched() -> bool:
        try:
            return os.readlink(ws / "production_deployment" / "current") != "releases/0001"
        except OSError:
            return False
    return {"ingestion recorded": recorded, "model trained": (ws / "models" / "trainedmodel.json").exists,
            "release switched": switched}


def kill_when(ws: Path, event: str) -> bool:
    """Start a tick and SIGKILL it as soon as it reaches event; False if it ended first."""
    ready = events(ws)[event]
    p = subprocess.Popen(command(ws), cwd=ws, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    deadline = time.monotonic() + 300
    while p.poll() is None and time.monotonic() < deadline:
        if ready():
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return True
        time.sleep(0.003)
    p.wait(timeout=60)
    return False


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Release 1 from the practice data; the source data and a large source-period file waiting. Plus what an
    uninterrupted run makes of it: when it deploys and the data it ends with."""
    base = tmp_path_factory.mktemp("crash")
    ws = make_workspace(base / "template")
    write_config(ws, "config.practice.json", input_folder_path="practicedata", output_model_path="practicemodels")
    p = run_script("fullprocess.py", ws, config="config.practice.json")
    assert p.returncode == 0, p.stderr
    generate_data.write_large(ws / "sourcedata", BIG_FILE_ROWS, 1, seed=SEED, period="new")
    run_script("diagnostics.py", ws)          # as a user would; later runs reuse its looked-up versions
    calm = base / "calm"
    shutil.copytree(ws, calm, symlinks=True)
    t0 = time.time()
    p = subprocess.run(command(calm), cwd=calm, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "deployed release 2" in p.stdout
    db = sqlite3.connect(calm / "history" / "history.sqlite3")
    (deployed_at,) = db.execute("SELECT ended_at FROM runs WHERE step = 'deployment' ORDER BY id DESC LIMIT 1").fetchone()
    db.close()
    return {"path": ws, "deploy_seconds": epoch(deployed_at) - t0,
            "finaldata_sha256": sha256(calm / "ingesteddata" / "finaldata.csv")}


def chain(template: dict[str, Any], ws: Path, delays: list[float | str]) -> list[tuple[str, str]]:
    """Kill successive ticks of one workspace at the given delays (seconds, or events), checking it after each;
    then a normal run, which must finish the job."""
    shutil.copytree(template["path"], ws, symlinks=True)
    seen = []
    for delay in delays:
        killed = kill_when(ws, delay) if isinstance(delay, str) else kill_at(ws, delay)
        when = delay if isinstance(delay, str) else f"{delay:5.2f} s"
        seen.append((when, check_consistent(ws) if killed else "finished before the kill"))
    p = subprocess.run(command(ws), cwd=ws, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"the run after kills at {delays} failed:\n{p.stdout}\n{p.stderr}"
    assert "Traceback" not in p.stderr
    assert check_consistent(ws) == "deployed"
    # The job is done: every file recorded once, the data exactly what an uninterrupted run made, and the
    # current release trained on all of it.
    names = [line.split("\t")[0] for line in (ws / "ingesteddata/ingestedfiles.txt").read_text().splitlines()]
    assert sorted(names) == sorted(ALL_FILES)
    data = ws / "ingesteddata" / "finaldata.csv"
    assert sha256(data) == template["finaldata_sha256"], f"finaldata.csv differs after kills at {delays}"
    manifest = json.loads((ws / "production_deployment/current/manifest.json").read_text())
    assert manifest["model"]["data_bytes"] == data.stat().st_size, \
        f"after kills at {delays} the deployed release {manifest['version']} was not trained on all the data"
    db = sqlite3.connect(ws / "history" / "history.sqlite3")
    (outcome,) = db.execute("SELECT outcome FROM runs WHERE step = 'fullprocess' ORDER BY id DESC LIMIT 1").fetchone()
    db.close()
    assert outcome in ("ok", "no-new-data")
    return seen


def test_kill_minus_nine_at_any_moment(template, tmp_path):
    # Delays spread evenly (each in its own slice, seeded) from the start of the process to a little after an
    # uninterrupted run deploys: the kills land in start-up, ingestion, the drift check, training, scoring,
    # deployment and the output steps.
    kills = TIMED_CHAINS * KILLS_PER_CHAIN
    span = template["deploy_seconds"] * 1.3
    rng = random.Random(SEED)
    delays = [span * (i + rng.random()) / kills for i in range(kills)]
    rng.shuffle(delays)
    plans: list[list[float | str]] = [delays[i::TIMED_CHAINS] for i in range(TIMED_CHAINS)] + EVENT_CHAINS
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda i: chain(template, tmp_path / f"chain{i}", plans[i]), range(len(plans))))
    seen = [s for r in results for s in r]
    report = "\n".join(f"{d}: {s}" for d, s in sorted(seen))
    print(report)
    assert len([s for _, s in seen if s != "finished before the kill"]) >= 15, report
    # The kills the moment a point was reached left the state that point implies.
    by_event = dict((d, s) for d, s in seen if not d.endswith(" s"))
    assert by_event == {"ingestion recorded": "ingested, not yet deployed",
                        "model trained": "ingested, not yet deployed", "release switched": "deployed"}, report
    # The timed kills spread over the run, not all in one phase.
    timed = {s for d, s in seen if d.endswith(" s")}
    assert len(timed - {"finished before the kill"}) >= 2, report
