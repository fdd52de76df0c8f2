"""The automated process: bootstrap, the shipped drift story, the cheap no-new-data tick, keeping
or replacing the release, the promotion gate, --dry-run and overlapping runs. Every run is a real subprocess of
fullprocess.py in a workspace of its own; the history is read back from its SQLite file."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import generate_data
from campaign import clone, cron_tick
from conftest import ROOT, ingested_record, make_workspace, run_script, store_manifest, tree_hashes, write_config

FEATURES = ["lastmonth_activity", "lastyear_activity", "number_of_employees"]


# ---------------------------------------------------------------- helpers

def fullprocess(ws: Path, *args: str, config: str = "config.json") -> subprocess.CompletedProcess:
    """One cron tick, asserting it succeeded."""
    p = run_script("fullprocess.py", ws, *args, config=config)
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    assert "Traceback" not in p.stderr
    return p


def query(ws: Path, sql: str, *params: Any) -> list[tuple]:
    """Rows of a query on the workspace's history file."""
    db = sqlite3.connect(ws / "history" / "history.sqlite3")
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def last_run(ws: Path) -> tuple[int, str, str]:
    """(id, outcome, summary) of the latest fullprocess run in the history."""
    return query(ws, "SELECT id, outcome, summary FROM runs WHERE step = 'fullprocess' ORDER BY id DESC LIMIT 1")[0]


def decisions(ws: Path, run_id: int) -> list[str]:
    """What a run decided, in order."""
    return [d for (d,) in query(ws, "SELECT decision FROM decisions WHERE run_id = ? ORDER BY rowid", run_id)]


def current(ws: Path) -> str:
    """Where production_deployment/current points."""
    return os.readlink(ws / "production_deployment" / "current")


def releases(ws: Path) -> list[str]:
    """The release folders kept."""
    return sorted(p.name for p in (ws / "production_deployment" / "releases").iterdir())


def finaldata(ws: Path) -> pd.DataFrame:
    """The ingested dataset as a user would read it."""
    return pd.read_csv(ws / "ingesteddata" / "finaldata.csv")


def ingested_names(ws: Path) -> list[str]:
    """The file names in ingestedfiles.txt, one per line, in file order."""
    return (ws / "ingesteddata" / "ingestedfiles.txt").read_text().splitlines()


def manifest(ws: Path) -> dict[str, Any]:
    """The current release's manifest."""
    return json.loads((ws / "production_deployment" / "current" / "manifest.json").read_text())


def store_index(ws: Path) -> dict[str, np.ndarray]:
    """The arrays of the store's current index (which rows the dataset keeps, which were new), by name."""
    with np.load(ws / "ingesteddata" / "store" / store_manifest(ws)["index"]) as z:
        return {name: z[name] for name in z.files}


def artifacts(ws: Path) -> dict[str, str]:
    """Hashes of everything a run may change (the history file included), and where current points."""
    out = tree_hashes(ws / "ingesteddata", ws / "models", ws / "practicemodels", ws / "production_deployment",
                      ws / "history")
    link = ws / "production_deployment" / "current"
    out["current ->"] = os.readlink(link) if link.is_symlink() else "(none)"
    return out


@pytest.fixture(scope="module")
def states(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Pipeline states built once for this module and copied by each test:
    practice: release 1 bootstrapped from practicedata (config.practice.json); the source data not yet ingested.
    shipped:  then fullprocess with config.json: the source data ingested, drift found, release 2.
    source:   a fresh workspace where fullprocess (config.json) bootstrapped release 1 from all the source data."""
    base = tmp_path_factory.mktemp("fullprocess-states")
    ws = make_workspace(base / "shipped")
    write_config(ws, "config.practice.json", input_folder_path="practicedata", output_model_path="practicemodels")
    practice_run = fullprocess(ws, config="config.practice.json")
    shutil.copytree(ws, base / "practice", symlinks=True)
    shipped_run = fullprocess(ws)
    src = make_workspace(base / "source")
    source_run = fullprocess(src)
    return {"practice": base / "practice", "shipped": ws, "source": src,
            "practice_run": practice_run, "shipped_run": shipped_run, "source_run": source_run}


# ---------------------------------------------------------------- bootstrap and the shipped story

def test_the_shipped_story(states):
    ws = states["shipped"]
    first, second = states["practice_run"].stdout, states["shipped_run"].stdout
    assert "bootstrap: deployed release 1" in first
    assert "model drift: drift" in second and "deployed release 2" in second
    assert current(ws) == "releases/0002"
    assert releases(ws) == ["0001", "0002"]
    (r1,), (r2,) = query(ws, "SELECT id FROM runs WHERE step = 'fullprocess' ORDER BY id")
    assert decisions(ws, r1) == ["bootstrap"]
    assert decisions(ws, r2) == ["retrain", "deploy"]
    # The drift check of release 1 on the source rows, with its per-feature data drift.
    ((check_id, release, verdict, new_rows, new_score, deployed_score, data_verdict),) = query(
        ws, "SELECT id, release, verdict, new_rows, new_score, deployed_score, data_verdict FROM drift_checks "
            "WHERE run_id = ?", r2)
    assert (release, verdict, data_verdict) == (1, "drift", "DRIFT")
    assert new_rows == 1700 and new_score < deployed_score - 0.05
    features = query(ws, "SELECT feature, verdict, psi, ks FROM feature_drift WHERE check_id = ?", check_id)
    assert sorted(f[0] for f in features) == sorted(FEATURES)
    assert all(f[1] == "DRIFT" and f[2] > 0.25 for f in features)
    # The challenger beat the deployed model on the same test data, and that is the score release 2 carries.
    scores = dict(query(ws, "SELECT role, f1 FROM scores WHERE run_id = ? AND role IN ('challenger', 'deployed')", r2))
    assert scores["challenger"] > scores["deployed"]
    assert manifest(ws)["scores"]["f1"] == pytest.approx(scores["challenger"])
    assert manifest(ws)["model"]["rows"] == len(finaldata(ws)) == 2800
    # Every step's timing is in the history.
    steps = dict(query(ws, "SELECT step, seconds FROM runs WHERE parent_id = ?", r2))
    assert {"ingestion", "training", "scoring", "deployment"} <= set(steps)


def test_bootstrap_from_whatever_data_exists(states):
    ws = states["source"]
    assert "bootstrap: deployed release 1" in states["source_run"].stdout
    assert current(ws) == "releases/0001"
    assert manifest(ws)["model"]["rows"] == len(finaldata(ws)) > 1600
    assert sorted(ingested_names(ws)) == ["sourcedata/dataset3.csv", "sourcedata/dataset4.csv"]


def test_bootstrap_into_an_empty_deployment_folder_uses_the_ingested_data(states, tmp_path):
    """No new files at all, but nothing deployed where the config points: the tick deploys from the data there."""
    ws = clone(states["source"], tmp_path / "ws")
    write_config(ws, prod_deployment_path="prod2")
    p = fullprocess(ws)
    assert "bootstrap: deployed release 1" in p.stdout
    assert os.readlink(ws / "prod2" / "current") == "releases/0001"
    assert json.loads((ws / "prod2" / "current" / "manifest.json").read_text())["model"]["rows"] == len(finaldata(ws))


# ---------------------------------------------------------------- the no-new-data tick

def imported_modules(importtime_stderr: str) -> set[str]:
    """Module names from python -X importtime output."""
    return {line.rsplit("|", 1)[1].strip() for line in importtime_stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


def tick(ws: Path) -> tuple[subprocess.CompletedProcess, set[str]]:
    """One real tick under -X importtime, run from another folder as cron does: the process and what it imported."""
    p = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "fullprocess.py"), "--config",
                        str(ws / "config.json")], cwd="/", capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    modules = imported_modules(p.stderr)
    assert "history" in modules and "deployment" in modules, "importtime output not understood"
    return p, modules


def heavy(modules: set[str]) -> list[str]:
    """The data libraries (and the PostgreSQL driver) among imported modules: the no-new-data tick on SQLite must
    import none of them."""
    return sorted(m for m in modules if m.split(".")[0] in ("pandas", "pyarrow", "sklearn", "psycopg"))


def test_no_new_data_is_a_cheap_no_op(states, tmp_path):
    ws = clone(states["source"], tmp_path / "ws")
    before, stored_before, index_before = artifacts(ws), store_manifest(ws), store_index(ws)
    final_inode = (ws / "ingesteddata" / "finaldata.csv").stat().st_ino
    ticks_before = len(query(ws, "SELECT id FROM runs WHERE step = 'fullprocess'"))
    # A touched but unchanged file is not new data either: the first tick has ingestion (the one writer of its
    # store) note its new mtime in the store's manifest, so the next ticks neither hash it nor import the data
    # libraries.
    src = ws / "sourcedata" / "dataset3.csv"
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10**9))
    for i in range(3):
        p, modules = tick(ws)
        assert p.stdout.startswith("no new data in sourcedata") and "release 1 stays" in p.stdout
        assert i == 0 or heavy(modules) == [], f"the no-new-data tick imported {heavy(modules)[:5]}"
        assert last_run(ws)[1] == "no-new-data"
    after = artifacts(ws)
    # Only the history file changed, and the store's manifest (the touched file's mtime); the data (batches, index,
    # finaldata.csv, ingestedfiles.txt), models and release are byte for byte the same, and not rewritten.
    store = ws / "ingesteddata" / "store"

    def kept(hashes: dict[str, str]) -> dict[str, str]:
        """The hashes of what must not change."""
        changed = (str(ws / "history" / "history.sqlite3"), str(store / "manifest.json"))
        return {k: v for k, v in hashes.items() if not k.startswith(changed)}
    assert kept(before) == kept(after)
    assert final_inode == (ws / "ingesteddata" / "finaldata.csv").stat().st_ino
    assert len(query(ws, "SELECT id FROM runs WHERE step = 'fullprocess'")) == ticks_before + 3
    # The manifest differs from before only by the touched file's new mtime (and its own bookkeeping: commit number,
    # index file name, export stats); the index says the same rows as before.
    stored_after = store_manifest(ws)
    touched = [{**b, "mtime_ns": src.stat().st_mtime_ns} if b["file"] == "sourcedata/dataset3.csv" else b
               for b in stored_before["batches"]]
    assert stored_after["batches"] == touched
    bookkeeping = ("batches",)
    assert {k: v for k, v in stored_after.items() if k not in bookkeeping} == \
        {k: v for k, v in stored_before.items() if k not in bookkeeping}
    index_after = store_index(ws)
    assert index_after.keys() == index_before.keys()
    assert all(np.array_equal(index_after[k], index_before[k]) for k in index_before)


def test_ticks_with_nothing_new_are_recorded_and_logged_alike(states, tmp_path):
    """The tick cron runs every 10 minutes: each says the same line, is recorded in the history and logged."""
    ws = clone(states["source"], tmp_path / "ws")
    lines = []
    for _ in range(3):
        p, modules = tick(ws)
        assert heavy(modules) == [] and p.stderr.count("\n") == p.stderr.count("import time:")
        lines.append(p.stdout)
    assert len(set(lines)) == 1 and lines[0].startswith("no new data in sourcedata"), lines
    rows = query(ws, "SELECT outcome, summary, details FROM runs WHERE step = 'fullprocess' ORDER BY id DESC LIMIT 3")
    assert len(set(rows)) == 1 and rows[0][0] == "no-new-data", rows
    assert json.loads(rows[0][2]) == {"outcome": "no-new-data", "release": 1}
    times = query(ws, "SELECT started_at, ended_at, seconds FROM runs ORDER BY id DESC LIMIT 1")[0]
    assert times[0] <= times[1] and times[0].endswith("Z") and 0 <= times[2] < 60
    log = (ws / "logs" / "fullprocess.log").read_text().splitlines()[-3:]
    assert all(line.endswith(" INFO fullprocess: " + lines[0].strip()) for line in log), log


def drop_new_file(ws: Path) -> str:
    (ws / "sourcedata" / "new.csv").write_text(
        "corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\nnewa,1,2,3,0\n")
    return "ingested 1 new file"


def change_in_place(ws: Path) -> str:
    """Same size, same name, other content (the first row's exited flipped to 1): a new version of the file."""
    src = ws / "sourcedata" / "dataset3.csv"
    text = src.read_text()
    i = text.index("\n") + 1
    with open(src, "r+") as f:  # in place: same inode
        f.seek(i)
        f.write(text[i:].replace("0\n", "1\n", 1)[:50])
    return "ingested 1 new file (1 a new version: 1 row removed): 1 row"


def roll_back(ws: Path) -> str:
    assert run_script("deployment.py", ws, "--rollback").returncode == 0
    return "release 1 stays"


def mark_outputs_pending(ws: Path) -> str:
    (ws / "ingesteddata" / ".outputs-pending").touch()
    (ws / "reports" / "report.pdf").unlink()
    return "no new data"


def fill_the_log(ws: Path) -> str:
    with open(ws / "logs" / "fullprocess.log", "a") as f:
        f.write("x" * 1_000_000 + "\n")
    return "no new data"


def change_config(ws: Path) -> str:
    write_config(ws, input_folder_path="practicedata")  # ingested already, in this workspace
    return "no new data in practicedata"


@pytest.mark.parametrize("change", [drop_new_file, change_in_place, roll_back, mark_outputs_pending, fill_the_log,
                                    change_config])
def test_any_change_after_a_quiet_tick_is_acted_on_by_the_next(states, tmp_path, change):
    ws = clone(states["shipped"], tmp_path / "ws")
    assert "no new data" in tick(ws)[0].stdout
    first_row = (ws / "sourcedata" / "dataset3.csv").read_text().splitlines()[1].split(",")
    rows_before, old = finaldata(ws), ingested_record(ws)["sourcedata/dataset3.csv"]
    expect = change(ws)
    p, _ = tick(ws)
    assert expect in p.stdout, p.stdout
    if change is change_in_place:
        # The new version replaced the old one: its batch is retired, and the dataset holds the corrected row
        # instead of the old one, in the same number of rows.
        new = ingested_record(ws)["sourcedata/dataset3.csv"]
        assert new["id"] > old["id"] and new["rows"] == old["rows"]
        assert [(r["id"], r["replaced_by"]) for r in store_manifest(ws)["retired"]] == [(old["id"], new["id"])]
        df = finaldata(ws)
        assert len(df) == len(rows_before)
        assert df.loc[df["corporation"] == first_row[0], "exited"].tolist() == [1]
        assert rows_before.loc[rows_before["corporation"] == first_row[0], "exited"].tolist() == [int(first_row[-1])]
    if change is mark_outputs_pending:
        assert (ws / "reports" / "report.pdf").is_file()
    if change is fill_the_log:
        assert (ws / "logs" / "fullprocess.log.1").stat().st_size > 1_000_000
        assert (ws / "logs" / "fullprocess.log").stat().st_size < 10_000


# ---------------------------------------------------------------- new data: keep, replace, reject

def test_new_data_without_drift_joins_the_dataset_and_keeps_the_release(states, tmp_path):
    ws = clone(states["source"], tmp_path / "ws")
    rows_before = len(finaldata(ws))
    # same distribution as training, and enough rows for the check to decide
    generate_data.write_large(ws / "sourcedata", 3000, 1, seed=1, period="new")
    p = fullprocess(ws)
    assert "ingested 1 new file" in p.stdout and "release 1 stays" in p.stdout
    df = finaldata(ws)
    added = ingested_record(ws)["sourcedata/data001.csv"]["rows_added"]
    assert added > 2500 and len(df) == rows_before + added
    assert not df.duplicated().any()
    assert current(ws) == "releases/0001" and releases(ws) == ["0001"]
    run_id, outcome, _ = last_run(ws)
    assert outcome == "ok" and decisions(ws, run_id) == ["keep"]
    ((verdict, new_rows),) = query(ws, "SELECT verdict, new_rows FROM drift_checks WHERE run_id = ?", run_id)
    assert verdict == "no-drift" and new_rows == added
    # The next tick has nothing to do.
    assert "no new data" in fullprocess(ws).stdout


def test_a_worse_challenger_is_not_deployed_and_not_retried(states, tmp_path):
    ws = clone(states["source"], tmp_path / "ws")
    # A file of clients whose outcomes are recorded the wrong way round: the deployed model looks terrible on
    # them (drift), and a model retrained with them is worse on the test data.
    poisoned = generate_data.clients(np.random.default_rng(1), 600, "new")
    poisoned["exited"] = 1 - poisoned["exited"]
    poisoned.to_csv(ws / "sourcedata" / "poisoned.csv", index=False)
    p = fullprocess(ws)
    assert "model drift: drift" in p.stdout and "challenger rejected, release 1 stays" in p.stdout
    run_id, outcome, _ = last_run(ws)
    assert outcome == "ok" and decisions(ws, run_id) == ["retrain", "reject-challenger"]
    reason = query(ws, "SELECT reason FROM decisions WHERE run_id = ? AND decision = 'reject-challenger'", run_id)
    assert "worse by more than the 0.000 tolerance" in reason[0][0]
    scores = dict(query(ws, "SELECT role, f1 FROM scores WHERE run_id = ? AND role IN ('challenger', 'deployed')",
                        run_id))
    assert scores["challenger"] < scores["deployed"]
    assert current(ws) == "releases/0001" and releases(ws) == ["0001"]
    assert "sourcedata/poisoned.csv" in ingested_names(ws)
    # The next tick does not repeat the work: the files are ingested and checked.
    before = artifacts(ws)
    p = fullprocess(ws)
    assert p.stdout.startswith("no new data") and "release 1 stays" in p.stdout
    assert last_run(ws)[1] == "no-new-data"
    after = artifacts(ws)
    hist = str(ws / "history" / "history.sqlite3")
    assert {k: v for k, v in before.items() if k != hist} == {k: v for k, v in after.items() if k != hist}


# ---------------------------------------------------------------- --dry-run

def test_dry_run_changes_nothing_and_says_what_it_would_do(states, tmp_path):
    ws = clone(states["practice"], tmp_path / "ws")                      # the source data is new here
    before = artifacts(ws)
    p = fullprocess(ws, "--dry-run")
    assert p.stdout.startswith("dry run:")
    assert "would ingest sourcedata/dataset3.csv" in p.stdout and "would ingest sourcedata/dataset4.csv" in p.stdout
    assert "model drift on 1,700 rows: drift" in p.stdout
    assert "would retrain" in p.stdout
    assert artifacts(ws) == before
    assert not (ws / "models").exists()
    # And a real run then does what the dry run announced.
    p = fullprocess(ws)
    assert "ingested 2 new files" in p.stdout and "deployed release 2" in p.stdout


@pytest.mark.parametrize("on", [False, True], ids=["data-drift-off", "data-drift-on"])
def test_dry_run_and_real_run_reach_the_same_decision(states, tmp_path, on):
    """The dry run takes the real run's path read-only: the same rows checked, the same data-drift verdict, the same
    retrain rule. A batch whose data drifts while the model holds up retrains only with retrain_on_data_drift."""
    ws = clone(states["shipped"], tmp_path / "ws")
    write_config(ws, drift={"retrain_on_data_drift": on})
    generate_data.write_large(ws / "sourcedata", 3000, 1, seed=1, period="new")  # enough rows to decide
    before = artifacts(ws)
    dry = json.loads(fullprocess(ws, "--dry-run", "--json").stdout)
    assert artifacts(ws) == before
    real = json.loads(fullprocess(ws, "--json").stdout)
    assert (real["check"]["verdict"], real["check"]["data_verdict"]) == ("no-drift", "DRIFT"), \
        "the batch no longer drifts in its data alone: pick one that does"
    for key in ("verdict", "data_verdict", "new_rows", "new_score"):
        assert dry["check"][key] == real["check"][key], key
    assert dry["decision"] == real["decisions"][0]["decision"] == ("retrain" if on else "keep")


def test_dry_run_with_nothing_deployed_changes_nothing(workspace):
    p = fullprocess(workspace, "--dry-run")
    assert "would ingest sourcedata/dataset3.csv" in p.stdout and "would bootstrap" in p.stdout
    for name in ("ingesteddata/finaldata.csv", "ingesteddata/ingestedfiles.txt", "models", "production_deployment",
                 "history/history.sqlite3"):
        assert not (workspace / name).exists(), f"--dry-run created {name}"


# ---------------------------------------------------------------- overlapping runs

def test_two_runs_started_together_ingest_and_deploy_once(states, tmp_path):
    ws = clone(states["practice"], tmp_path / "ws")
    expected_rows = len(finaldata(ws)) + 1700                            # dataset3 + dataset4 minus duplicates
    cmd = [sys.executable, str(ROOT / "fullprocess.py"), "--config", str(ws / "config.json")]
    procs = [subprocess.Popen(cmd, cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    df = finaldata(ws)
    assert len(df) == expected_rows and not df.duplicated().any()
    names = ingested_names(ws)
    assert len(names) == len(set(names)) == 4
    assert releases(ws) == ["0001", "0002"] and current(ws) == "releases/0002"
    outcomes = sorted(o for (o,) in query(ws, "SELECT outcome FROM runs WHERE step = 'fullprocess' AND id > 1"))
    assert outcomes in (["busy", "ok"], ["no-new-data", "ok"]), outcomes
    ingested_rows = query(ws, "SELECT name, COUNT(*) FROM files WHERE status = 'ingested' AND name LIKE 'sourcedata/%' "
                              "GROUP BY name")
    assert sorted(ingested_rows) == [("sourcedata/dataset3.csv", 1), ("sourcedata/dataset4.csv", 1)]
    if "busy" in outcomes:
        assert any("in progress" in out for out, _ in outs)


# ---------------------------------------------------------------- defects found by the reliability campaigns

AUDITED = """
import os, runpy, sys
sys.addaudithook(lambda event, args: event == "open" and isinstance(args[0], str) and print("OPEN", args[0],
                                                                                           file=sys.stderr))
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_touched_file_is_hashed_once_and_then_never_read_again(states, tmp_path):
    """Found by the simulated month: a touched (not changed) file used to be hashed by every tick, forever."""
    ws = clone(states["source"], tmp_path / "ws")
    src = ws / "sourcedata" / "dataset3.csv"
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10**9))
    assert fullprocess(ws).stdout.startswith("no new data")
    assert ingested_record(ws)["sourcedata/dataset3.csv"]["mtime_ns"] == src.stat().st_mtime_ns
    # The next tick opens no data file at all (an audit hook prints every file the process opens).
    p = subprocess.run([sys.executable, "-c", AUDITED, str(ROOT / "fullprocess.py"), "--config",
                        str(ws / "config.json")], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("no new data"), p.stderr[-2000:]
    opened = [line for line in p.stderr.splitlines() if line.startswith("OPEN ")]
    assert any("store/manifest.json" in line for line in opened), "the audit hook saw nothing"
    assert [line for line in opened if "/sourcedata/" in line] == []


def test_leftovers_of_killed_runs_are_removed_but_not_a_running_writers(states, tmp_path):
    """Found by the kill campaign: temporary files of runs killed in training, scoring or reporting, and a
    killed deployment's partial release, stayed for good."""
    ws = clone(states["source"], tmp_path / "ws")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])  # a process id that no longer runs
    dead.wait()
    prod = ws / "production_deployment"
    left = [ws / "models" / f".trainedmodel.pkl.tmp-{dead.pid}-0a0b0c0d",
            ws / "ingesteddata" / f".finaldata.csv.tmp-{dead.pid}-0a0b0c0d",
            ws / "reports" / f".report.pdf.tmp-{dead.pid}-0a0b0c0d", prod / "releases" / ".partial-0002" / "x"]
    for p in left:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
    os.symlink("releases/0001", prod / f".current.partial-{dead.pid}")
    running = ws / "models" / f".scores.json.tmp-{os.getpid()}-0a0b0c0d"  # this test process: still running
    running.write_bytes(b"being written")
    assert fullprocess(ws).stdout.startswith("no new data")
    assert [p for p in left if p.exists()] == [] and not (prod / "releases" / ".partial-0002").exists()
    assert not os.path.lexists(prod / f".current.partial-{dead.pid}")
    assert running.read_bytes() == b"being written"
    assert current(ws) == "releases/0001"


def test_data_drift_on_too_few_rows_does_not_retrain(states, tmp_path):
    """Found by the simulated month: three odd rows put PSI past its noise floor, and with
    drift.retrain_on_data_drift on, a retrain followed although the batch was too small for any check."""
    ws = clone(states["source"], tmp_path / "ws")
    write_config(ws, drift={"retrain_on_data_drift": True})
    (ws / "sourcedata" / "three.csv").write_text(
        "corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\n"
        "oddaa,10,1200,40,0\noddab,,1300,41,1\noddac,12,,42,0\n")
    p = fullprocess(ws)
    run_id, outcome, _ = last_run(ws)
    ((verdict, data_verdict),) = query(ws, "SELECT verdict, data_verdict FROM drift_checks WHERE run_id = ?", run_id)
    assert data_verdict == "DRIFT", "the three rows no longer look like data drift: pick rows that do"
    assert verdict == "insufficient-data" and decisions(ws, run_id) == ["keep"], p.stdout
    assert releases(ws) == ["0001"]


def test_cron_log_is_rotated_like_the_step_logs(states, tmp_path):
    """Found by the simulated month: cron appends every tick's line to logs/cron.log (cronjob.txt), which grew
    without end. Now a tick whose output goes to a file of the log folder rotates it past log.max_bytes."""
    ws = clone(states["source"], tmp_path / "ws")
    write_config(ws, log={"max_bytes": 2000, "backups": 2})
    logs = ws / "logs"
    for name, fill in (("cron.log", "new"), ("cron.log.1", "older"), ("cron.log.2", "oldest")):
        (logs / name).write_text(f"{fill}\n" * 600)
    for _ in range(3):
        assert cron_tick(ws)[0] == 0
    assert sorted(p.name for p in logs.glob("cron.log*")) == ["cron.log", "cron.log.1", "cron.log.2"]
    assert (logs / "cron.log.1").read_text().startswith("new\n")       # kept, one step older; "oldest" dropped
    assert (logs / "cron.log.2").read_text().startswith("older\n")
    assert (logs / "cron.log").read_text().count("no new data") == 2   # the ticks after the rotation
    assert (logs / "cron.log.1").read_text().count("no new data") == 1  # the tick that rotated it


def test_a_huge_value_is_refused_and_does_not_spoil_later_retrains(states, tmp_path):
    """Found by the reliability campaigns: 1e308 is finite and non-negative, so it used to be ingested; the scaler
    then overflowed and no challenger passed the promotion gate again. Now the file is refused by feature_max and
    the shipped drift story still deploys release 2."""
    ws = clone(states["practice"], tmp_path / "ws")                      # the source data (drift) is new here
    (ws / "sourcedata" / "huge.csv").write_text(
        "corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\n"
        "hugea,1e308,123456789012345678901234567890,9007199254740993,0\n")
    p = fullprocess(ws)
    assert "1 file rejected" in p.stdout, p.stdout
    assert "huge.csv: row 1, column 'lastmonth_activity': expected a number at most 1e+15" in p.stderr, p.stderr
    assert "deployed release 2" in p.stdout, p.stdout
