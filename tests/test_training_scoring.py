"""training.py and scoring.py by hand: the model and its record, the score files, and clear refusals."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import make_workspace, run_script, store_manifest, write_config


def models(ws: Path) -> Path:
    return ws / "models"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Any]:
    """A workspace taken through ingestion, training and scoring once, from the workspace folder."""
    ws = make_workspace(tmp_path_factory.mktemp("trained") / "ws")
    steps = {}
    for script in ("ingestion.py", "training.py", "scoring.py"):
        p = run_script(script, ws)
        assert p.returncode == 0, (script, p.stderr)
        steps[script] = p
    return {"ws": ws, "steps": steps}


def copy_of(trained: dict[str, Any], tmp_path: Path) -> Path:
    """A private copy of the trained workspace, for tests that change it."""
    return Path(shutil.copytree(trained["ws"], tmp_path / "ws"))


def test_training_writes_the_model_and_a_record_vouching_for_it(trained: dict[str, Any]) -> None:
    ws, p = trained["ws"], trained["steps"]["training.py"]
    assert len(p.stdout.splitlines()) == 1 and "trained model on" in p.stdout, p.stdout
    pkl, record = models(ws) / "trainedmodel.pkl", models(ws) / "trainedmodel.json"
    meta = json.loads(record.read_text())
    assert meta["sha256"] == hashlib.sha256(pkl.read_bytes()).hexdigest()
    ingested_rows = len((ws / "ingesteddata" / "finaldata.csv").read_text().splitlines()) - 1
    assert meta["rows"] == ingested_rows
    assert f"{ingested_rows:,} rows" in p.stdout


def test_training_from_another_folder_behaves_the_same(trained: dict[str, Any], tmp_path: Path) -> None:
    ws = copy_of(trained, tmp_path)
    shutil.rmtree(models(ws))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    p = run_script("training.py", ws, cwd=elsewhere)
    assert p.returncode == 0, p.stderr
    assert p.stdout == trained["steps"]["training.py"].stdout
    assert not any(elsewhere.iterdir())
    here = json.loads((models(ws) / "trainedmodel.json").read_text())
    there = json.loads((models(trained["ws"]) / "trainedmodel.json").read_text())
    assert here["sha256"] == there["sha256"]  # the very same model
    # trained on the same state of the store: its commit, up to its newest batch
    stored = store_manifest(ws)
    assert here["data_commit"] == there["data_commit"] == stored["commit"]
    assert here["data_batch"] == there["data_batch"] == max(b["id"] for b in stored["batches"])


def test_training_refuses_when_nothing_is_ingested(workspace: Path) -> None:
    p = run_script("training.py", workspace)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "no ingested data" in lines[0], p.stderr
    assert not (models(workspace) / "trainedmodel.pkl").exists()


def test_training_refuses_data_with_a_single_class(workspace: Path) -> None:
    folder = workspace / "calmdata"
    folder.mkdir()
    (folder / "calm.csv").write_text("corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\n"
                                     + "".join(f"calm{i},{100 + i},{1200 + i},{10 + i},0\n" for i in range(30)))
    write_config(workspace, input_folder_path="calmdata")
    assert run_script("ingestion.py", workspace).returncode == 0
    p = run_script("training.py", workspace)
    assert p.returncode == 1, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "exited=0" in lines[0] and "class" in lines[0], p.stderr
    assert not (models(workspace) / "trainedmodel.pkl").exists()


def test_scoring_writes_the_f1_and_the_other_metrics(trained: dict[str, Any]) -> None:
    ws, p = trained["ws"], trained["steps"]["scoring.py"]
    assert len(p.stdout.splitlines()) == 1 and p.stdout.startswith("F1 "), p.stdout
    text = (models(ws) / "latestscore.txt").read_text()
    assert len(text.split()) == 1
    scores = json.loads((models(ws) / "scores.json").read_text())
    assert float(text) == pytest.approx(scores["f1"], abs=1e-6)
    for key in ("f1", "precision", "recall", "accuracy", "roc_auc"):
        assert 0.0 <= scores[key] <= 1.0, key
    assert scores["f1"] > 0.5 and scores["roc_auc"] > 0.5  # a model that learnt something, not a constant
    assert scores["rows"] == len((ws / "testdata" / "testdata.csv").read_text().splitlines()) - 1


def test_scoring_refuses_a_tampered_model(trained: dict[str, Any], tmp_path: Path) -> None:
    ws = copy_of(trained, tmp_path)
    score_file = models(ws) / "latestscore.txt"
    kept = score_file.read_bytes()
    with open(models(ws) / "trainedmodel.pkl", "ab") as f:
        f.write(b"appended by someone else")
    p = run_script("scoring.py", ws)
    assert p.returncode == 1, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "trainedmodel.pkl" in lines[0] and "hash" in lines[0] and "does not match" in lines[0]
    assert score_file.read_bytes() == kept


def test_scoring_without_a_model_says_so(workspace: Path) -> None:
    p = run_script("scoring.py", workspace)
    assert p.returncode == 1, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "trainedmodel.pkl" in lines[0], p.stderr
    assert not (models(workspace) / "latestscore.txt").exists()
