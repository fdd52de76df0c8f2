"""Decisions that see what the data can tell: a shift that makes exits rare is caught by the real cron process
within a few hundred rows, because a check is conclusive once predicted exits give its F1 a narrow interval."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import generate_data
from conftest import make_workspace, run_script, use_history


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace whose shipped source data is ingested and deployed as release 1."""
    ws = make_workspace(tmp_path_factory.mktemp("decisions") / "ws")
    assert run_script("fullprocess.py", ws).returncode == 0
    return ws


def test_exits_becoming_rare_while_the_model_predicts_them_is_caught_within_forty_ticks(deployed):
    """After a shift, almost no client exits, yet the model keeps flagging the usual share: precision, and F1
    with it, collapse. Waiting for real exits to reach a count would wait through it; the predicted exits make the
    check conclusive, and the tick decides to retrain."""
    ws = deployed
    rng = np.random.default_rng(5)
    for tick in range(1, 41):
        batch = generate_data.clients_fast(rng, 20, "new")
        batch["exited"] = (rng.random(20) < 0.02).astype(int)  # exits became rare
        batch.to_csv(ws / "sourcedata" / f"rare{tick:02d}.csv", index=False)
        p = run_script("fullprocess.py", ws, "--json")
        assert p.returncode == 0, p.stderr
        result = json.loads(p.stdout)
        if [d["decision"] for d in result["decisions"]][:1] == ["retrain"]:
            break
    else:
        pytest.fail("40 ticks of 20 rows and no retrain decision")
    assert result["check"]["verdict"] == "drift" and result["check"]["new_rows"] <= 400, result["check"]
    db = sqlite3.connect(ws / "history" / "history.sqlite3")
    waited = db.execute("SELECT COUNT(*) FROM drift_checks WHERE verdict = 'insufficient-data'").fetchone()[0]
    db.close()
    assert waited == tick - 1  # every earlier tick kept its rows for the next check


def test_a_lasting_drop_stays_drift_when_the_challenger_is_refused(tmp_path, backend, request):
    """Parametric rule, a release with a stable past (F1 about 0.90), then a lasting drop to 0.70 that no
    challenger fixes (each is refused, the release stays): every tick still calls it drift. Scores of checks that
    were drift verdicts never enter the baseline (they once lowered it until the drop passed as normal)."""
    import drift
    import history
    from config import load_config
    ws = make_workspace(tmp_path / "ws")
    use_history(ws, backend, request)
    cfg = load_config(ws / "config.json")
    t = {**cfg["drift"], "rule": "parametric", "min_history": 5}
    rng = np.random.default_rng(3)

    def batch(f1_target: float) -> tuple[np.ndarray, np.ndarray]:
        """2,000 labels and predictions whose F1 is about f1_target (as many false positives as negatives)."""
        tp = int(500 * f1_target) + int(rng.integers(-8, 9))
        wrong = 500 - tp
        y = np.array([1] * tp + [0] * wrong + [1] * wrong + [0] * (2000 - tp - 2 * wrong))
        pred = np.array([1] * tp + [1] * wrong + [0] * wrong + [0] * (2000 - tp - 2 * wrong))
        return y, pred

    verdicts = []
    for tick in range(20):
        y, pred = batch(0.9 if tick < 8 else 0.7)
        past = history.call(cfg, "cannot be read", history.past_new_scores, 1)
        check = drift.model_drift(y, pred, 0.9, past, t)
        verdicts.append(check["verdict"])
        history.call(cfg, "could not record", lambda db, c=check, n=tick: history.record_drift_check(
            db, history.record_run(db, "fullprocess", "t", "t", 0, "ok", "", {}), {**c, "release": 1,
                                                                                    "batch_to": n}))
    assert verdicts[:8].count("drift") == 0 and verdicts[8:] == ["drift"] * 12, verdicts
    assert len(history.call(cfg, "cannot be read", history.past_new_scores, 1)) == 8


def test_an_unlabelled_file_is_monitored_and_never_trained_on(tmp_path):
    """A file without the target column is monitoring data: validated, stored as unlabelled, estimated without
    labels and checked for data and prediction drift, kept out of finaldata.csv and out of training."""
    ws = make_workspace(tmp_path / "ws")
    assert run_script("fullprocess.py", ws).returncode == 0
    rng = np.random.default_rng(9)
    batch = generate_data.clients_fast(rng, 400, "new").drop(columns=["exited"])
    batch["corporation"] = [f"unl{i:04d}" for i in range(len(batch))]
    batch.to_csv(ws / "sourcedata" / "monitoring.csv", index=False)
    p = run_script("fullprocess.py", ws, "--json")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    (f,) = result["ingestion"]["ingested_files"]
    assert f["name"] == "sourcedata/monitoring.csv" and f["labelled"] is False and f["rows_added"] == 400
    check = result["check"]
    assert check["unlabelled_rows"] == 400 and check["new_rows"] == 0 and check["verdict"] == "insufficient-data"
    est = check["estimated"]
    assert est["rows"] == 400 and 0 < est["ci_low"] <= est["f1"] <= est["ci_high"] < 1, est
    assert est["verdict"] in ("no-drop", "insufficient-data")  # the same population the model was trained on
    assert check["data_verdict"] == "OK" and check["prediction"]["verdict"] == "OK", check
    assert "unl0000" not in (ws / "ingesteddata" / "finaldata.csv").read_text()
    assert run_script("training.py", ws, "--json").returncode == 0
    trained = json.loads(run_script("training.py", ws, "--json").stdout)
    release = json.loads((ws / "production_deployment" / "current" / "manifest.json").read_text())
    assert trained["rows"] == release["model"]["rows"]  # the 400 unlabelled rows were not trained on


@pytest.mark.parametrize("on", [False, True], ids=["off", "on"])
def test_rows_the_api_scored_join_the_store_as_monitoring_data_only_when_asked(tmp_path, on):
    """api.log_requests: rows sent in /prediction bodies are logged, and the next tick ingests them as unlabelled
    data (estimated, checked for drift, never trained on); off, nothing is kept."""
    from app import create_app
    from conftest import write_config
    ws = make_workspace(tmp_path / "ws")
    write_config(ws, api={"log_requests": on, "log_requests_files": 2})
    assert run_script("fullprocess.py", ws).returncode == 0
    rng = np.random.default_rng(4)
    batch = generate_data.clients_fast(rng, 120, "new").drop(columns=["exited"])
    records = batch.drop(columns=["corporation"]).to_dict(orient="records")  # sent without ids, as clients do
    client = create_app(ws / "config.json").test_client()
    for part in (records[:60], records[60:]):
        assert client.post("/prediction", json={"dataframe_records": part}).status_code == 200
    client.post("/prediction", json={"filepath": "testdata/testdata.csv"})  # a named file is never logged
    logs = sorted((ws / "ingesteddata" / "requests").glob("*.csv")) if on else []
    assert (ws / "ingesteddata" / "requests").exists() == on
    result = json.loads(run_script("fullprocess.py", ws, "--json").stdout)
    if not on:
        assert result["outcome"] == "no-new-data"
        return
    assert len(logs) == 1 and len(logs[0].read_text().splitlines()) == 121
    (f,) = result["ingestion"]["ingested_files"]
    assert f["labelled"] is False and f["rows_read"] == 120
    assert result["check"]["unlabelled_rows"] == 120 and result["check"]["estimated"]["rows"] == 120
    assert "request-" not in (ws / "ingesteddata" / "finaldata.csv").read_text()


def test_refused_challengers_do_not_wear_the_baseline_down_in_real_ticks(tmp_path):
    """The real cron process, parametric rule: a stable stretch builds the release's past scores, then a lasting
    drop (labels corrupted, so no challenger trained on them beats the release and each is refused) stays drift
    tick after tick: the drift verdicts' own scores never lower the bar."""
    from conftest import write_config
    ws = make_workspace(tmp_path / "ws")
    write_config(ws, drift={"rule": "parametric", "min_history": 3})
    assert run_script("fullprocess.py", ws).returncode == 0
    rng = np.random.default_rng(8)
    verdicts, refused = [], 0
    for tick in range(9):
        batch = generate_data.clients_fast(rng, 3000, "new")
        if tick >= 4:  # the drop: a third of the labels wrong from now on
            flip = rng.random(len(batch)) < 0.35
            batch.loc[flip, "exited"] = 1 - batch.loc[flip, "exited"]
        batch.to_csv(ws / "sourcedata" / f"tick{tick}.csv", index=False)
        result = json.loads(run_script("fullprocess.py", ws, "--json").stdout)
        verdicts.append(result["check"]["verdict"])
        refused += "reject-challenger" in [d["decision"] for d in result["decisions"]]
    assert "drift" not in verdicts[:4], verdicts
    assert verdicts[4:] == ["drift"] * 5 and refused == 5, (verdicts, refused)
