"""config.json as a user meets it: defaults, paths relative to the config file, and clear refusals."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from config import ConfigError, load_config
from conftest import ROOT, run_script, write_config

SCRIPTS = ["ingestion.py", "training.py", "scoring.py"]


def test_keys_not_given_take_their_defaults(workspace: Path) -> None:
    path = workspace / "minimal.json"
    path.write_text(json.dumps({"input_folder_path": "practicedata", "model": {"C": 0.5}}))
    cfg = load_config(path)
    assert cfg["input_folder_path"] == workspace / "practicedata"
    assert cfg["model"]["C"] == 0.5
    # everything else: the documented defaults, paths under the config's folder
    assert cfg["output_folder_path"] == workspace / "ingesteddata"
    assert cfg["test_data_path"] == workspace / "testdata"
    assert cfg["output_model_path"] == workspace / "models"
    assert cfg["prod_deployment_path"] == workspace / "production_deployment"
    assert cfg["input_file_extension"] == "csv"
    assert cfg["url"] == "http://127.0.0.1:8000/"
    assert cfg["id_column"] == "corporation"
    assert cfg["feature_columns"] == ["lastmonth_activity", "lastyear_activity", "number_of_employees"]
    assert cfg["target_column"] == "exited"
    assert cfg["model"]["max_iter"] == 1000
    assert cfg["model"]["imputer_strategy"] == "median"


def test_an_empty_config_runs_on_defaults(workspace: Path) -> None:
    (workspace / "config.json").write_text("{}")
    p = run_script("ingestion.py", workspace)
    assert p.returncode == 0, p.stderr
    assert (workspace / "ingesteddata" / "finaldata.csv").is_file()


def test_relative_paths_resolve_against_the_config_folder_not_the_cwd(workspace: Path, tmp_path_factory,
                                                                      monkeypatch) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "sourcedata").mkdir()  # a decoy: the cwd's folder must not be the one read
    monkeypatch.chdir(elsewhere)
    cfg = load_config(workspace / "config.json")
    assert cfg["input_folder_path"] == workspace / "sourcedata"
    assert cfg["output_folder_path"] == workspace / "ingesteddata"

    p = run_script("ingestion.py", workspace, cwd=elsewhere)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("ingested 2 new files"), p.stdout
    assert (workspace / "ingesteddata" / "finaldata.csv").is_file()
    assert sorted(x.name for x in elsewhere.iterdir()) == ["sourcedata"]  # nothing written into the cwd
    assert not any((elsewhere / "sourcedata").iterdir())


def test_config_named_by_a_relative_path_still_resolves_against_its_own_folder(workspace: Path,
                                                                               monkeypatch) -> None:
    monkeypatch.chdir(workspace.parent)
    cfg = load_config(Path(workspace.name) / "config.json")
    assert cfg["input_folder_path"] == workspace / "sourcedata"
    assert cfg["output_model_path"].is_absolute()


def _bad_json(ws: Path) -> None:
    (ws / "config.json").write_text('{"input_folder_path": "sourcedata",\n "output_folder_path": }\n')


def _unknown_key(ws: Path) -> None:
    write_config(ws, modle={"C": 1.0})


def _text_for_number(ws: Path) -> None:
    write_config(ws, model={"C": "high"})


def _string_for_list(ws: Path) -> None:
    write_config(ws, feature_columns="x")


def _missing_input_folder(ws: Path) -> None:
    write_config(ws, input_folder_path="no_such_folder")


BROKEN = {
    "bad JSON": (_bad_json, ["JSON", "line 2"]),
    "unknown key": (_unknown_key, ["'modle'", "unknown"]),
    "wrong type: text for a number": (_text_for_number, ["'model.C'", "number", "high"]),
    "wrong type: text for a list": (_string_for_list, ["'feature_columns'", "list"]),
    "missing input folder": (_missing_input_folder, ["'input_folder_path'", "no_such_folder", "does not exist"]),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_config_exits_2_with_one_line_naming_the_problem(workspace: Path, case: str) -> None:
    breaks, words = BROKEN[case]
    breaks(workspace)
    p = run_script("ingestion.py", workspace)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert "config.json" in lines[0]
    assert "Traceback" not in p.stderr
    assert not (workspace / "ingesteddata").exists()  # stopped before doing anything

    with pytest.raises(ConfigError) as err:  # the same refusal for code that imports the loader
        load_config(workspace / "config.json")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_answers_help(script: str, tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, str(ROOT / script), "--help"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "--config" in p.stdout
    assert not any(tmp_path.iterdir())  # asking for help writes nothing
