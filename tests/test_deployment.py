"""Versioned deployment (deployment.py): releases, --list, --rollback, pruning, and the model hash
check that keeps a tampered pickle from ever being loaded."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

import releases
from config import load_config
from conftest import make_workspace, run_script, write_config
from modelstore import ModelError


@pytest.fixture(scope="module")
def states(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Pipeline states built once for this module, copied for each test: release 1 from the practice data
    ("one"), then release 2 after the source data drifted ("two")."""
    base = tmp_path_factory.mktemp("deployment-states")
    ws = make_workspace(base / "two")
    write_config(ws, "config.practice.json", input_folder_path="practicedata", output_model_path="practicemodels")
    p = run_script("fullprocess.py", ws, config="config.practice.json")
    assert p.returncode == 0, p.stderr
    shutil.copytree(ws, base / "one", symlinks=True)
    p = run_script("fullprocess.py", ws)
    assert p.returncode == 0, p.stderr
    return {"one": base / "one", "two": ws}


def clone(state: Path, dst: Path) -> Path:
    """A private copy of a prepared workspace (symlinks kept, so current still points into releases/)."""
    shutil.copytree(state, dst, symlinks=True)
    return dst


def current_target(ws: Path) -> str:
    """Where production_deployment/current points."""
    return os.readlink(ws / "production_deployment" / "current")


def release_folders(ws: Path) -> list[str]:
    """The release folders kept in production_deployment/releases."""
    return sorted(p.name for p in (ws / "production_deployment" / "releases").iterdir())


def listed(ws: Path, config: str = "config.json") -> dict[int, bool]:
    """deployment.py --list as {version: is current}, from the lines people read."""
    p = run_script("deployment.py", ws, "--list", config=config)
    assert p.returncode == 0, p.stderr
    out = {}
    for line in p.stdout.splitlines():
        assert line.startswith(("*", " ")) and "release" in line, line
        out[int(line.split("release")[1].split()[0])] = line.startswith("*")
    return out


@pytest.fixture
def two_releases(states: dict[str, Path], tmp_path: Path) -> Path:
    """The shipped story: release 1 from the practice data, release 2 after the source data drifted."""
    ws = clone(states["two"], tmp_path / "ws")
    assert current_target(ws) == "releases/0002"
    return ws


def test_list_marks_the_current_release(two_releases):
    ws = two_releases
    assert listed(ws) == {1: False, 2: True}
    data = json.loads(run_script("deployment.py", ws, "--list", "--json").stdout)
    assert [(r["version"], r["current"]) for r in data["releases"]] == [(1, False), (2, True)]
    assert data["releases"][0]["trained_on_rows"] == 1100        # the practice data
    assert data["releases"][1]["trained_on_rows"] == 2800        # practice + source


def test_rollback_returns_to_the_previous_release(two_releases):
    ws = two_releases
    prod = ws / "production_deployment"
    p = run_script("deployment.py", ws, "--rollback")
    assert p.returncode == 0, p.stderr
    assert "rolled back from release 2 to release 1" in p.stdout
    assert current_target(ws) == "releases/0001"
    assert listed(ws) == {1: True, 2: False}
    # The well-known names now serve release 1's files, and the loader agrees.
    assert (prod / "latestscore.txt").read_bytes() == (prod / "releases/0001/latestscore.txt").read_bytes()
    assert (prod / "trainedmodel.pkl").read_bytes() == (prod / "releases/0001/trainedmodel.pkl").read_bytes()
    model, manifest = releases.load_deployed_model(load_config(ws / "config.json"))
    assert manifest["version"] == 1 and hasattr(model, "predict")
    # The rollback is in the history, and the next cron tick respects it (no new data: nothing to redo).
    with sqlite3.connect(ws / "history" / "history.sqlite3") as db:
        assert db.execute("SELECT version FROM releases WHERE action = 'rollback'").fetchall() == [(1,)]
    p = run_script("fullprocess.py", ws)
    assert p.returncode == 0, p.stderr
    assert "no new data" in p.stdout and "release 1 stays" in p.stdout
    assert current_target(ws) == "releases/0001"
    # Rolling back again: release 1 is the oldest kept.
    p = run_script("deployment.py", ws, "--rollback")
    assert p.returncode == 1
    assert "release 1 is the oldest kept release; nothing to roll back to" in p.stderr
    assert current_target(ws) == "releases/0001"


def test_rollback_with_nothing_deployed_fails_clearly(workspace):
    p = run_script("deployment.py", workspace, "--rollback")
    assert p.returncode == 1
    assert "nothing is deployed, so there is nothing to roll back" in p.stderr
    assert "Traceback" not in p.stderr
    assert not (workspace / "production_deployment" / "current").exists()


def test_rollback_with_a_single_release_fails_clearly(states, tmp_path):
    ws = clone(states["one"], tmp_path / "ws")
    p = run_script("deployment.py", ws, "--rollback")
    assert p.returncode == 1
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "release 1 is the oldest kept release; nothing to roll back to" in lines[0]
    assert "Traceback" not in p.stderr and p.stdout == ""
    assert current_target(ws) == "releases/0001"


def test_releases_beyond_the_kept_number_are_pruned(states, tmp_path):
    workspace = clone(states["one"], tmp_path / "ws")                   # release 1, trained in practicemodels/
    write_config(workspace, "config.practice.json", input_folder_path="practicedata",
                 output_model_path="practicemodels", deployment={"releases_kept": 3})
    for version in (2, 3, 4, 5):
        p = run_script("deployment.py", workspace, config="config.practice.json")
        assert p.returncode == 0, p.stderr
        assert f"deployed release {version}" in p.stdout
        assert current_target(workspace) == f"releases/{version:04d}"
    assert release_folders(workspace) == ["0003", "0004", "0005"]
    assert listed(workspace, "config.practice.json") == {3: False, 4: False, 5: True}
    # Roll back, then deploy: the new release becomes current and the oldest goes; a rollback target stays.
    assert run_script("deployment.py", workspace, "--rollback", config="config.practice.json").returncode == 0
    assert current_target(workspace) == "releases/0004"
    assert run_script("deployment.py", workspace, config="config.practice.json").returncode == 0
    assert release_folders(workspace) == ["0004", "0005", "0006"]
    assert current_target(workspace) == "releases/0006"
    prod = workspace / "production_deployment"
    for name in ("trainedmodel.pkl", "latestscore.txt", "ingestedfiles.txt"):
        assert (prod / name).is_file(), f"{name} must resolve through current"
    with sqlite3.connect(workspace / "history" / "history.sqlite3") as db:
        versions = [v for (v,) in db.execute("SELECT version FROM releases WHERE action = 'deploy' ORDER BY rowid")]
    assert versions == [1, 2, 3, 4, 5, 6]


def test_each_release_records_the_hash_of_every_file(two_releases):
    import hashlib
    for folder in sorted((two_releases / "production_deployment" / "releases").iterdir()):
        manifest = json.loads((folder / "manifest.json").read_text())
        assert set(manifest["files"]) >= {"trainedmodel.pkl", "latestscore.txt", "ingestedfiles.txt",
                                          "reference_profile.json"}
        for name, digest in manifest["files"].items():
            assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, f"{folder.name}/{name}"
        assert float((folder / "latestscore.txt").read_text()) == pytest.approx(manifest["scores"]["f1"], abs=1e-6)


def test_a_tampered_model_is_refused(states, tmp_path):
    workspace = clone(states["one"], tmp_path / "ws")
    cfg = load_config(workspace / "config.json")
    model_file = workspace / "production_deployment" / "current" / "trainedmodel.pkl"
    with open(model_file, "ab") as f:
        f.write(b"\x00 appended by an attacker")
    with pytest.raises(ModelError, match="does not match the recorded"):
        releases.load_deployed_model(cfg)
    # New data arrives (the source data is not ingested yet): the run must stop with one clear line, not a
    # traceback, and deploy nothing.
    p = run_script("fullprocess.py", workspace)
    assert p.returncode == 1
    assert "does not match the recorded" in p.stderr and "refusing to load it" in p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    assert current_target(workspace) == "releases/0001"
    assert release_folders(workspace) == ["0001"]
    with sqlite3.connect(workspace / "history" / "history.sqlite3") as db:
        outcome, summary = db.execute("SELECT outcome, summary FROM runs WHERE step = 'fullprocess' "
                                      "ORDER BY id DESC LIMIT 1").fetchone()
    assert outcome == "failed" and "does not match" in summary
