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


# ---- configurations that would silently switch a safety check off ---------------------------------------------

OVERLAPS = {  # overrides (a value "x/" is created first as a folder) -> the two keys the refusal names
    "input is output": ({"output_folder_path": "sourcedata"}, "input_folder_path", "output_folder_path"),
    "output inside input": ({"output_folder_path": "sourcedata/ingested"}, "output_folder_path", "input_folder_path"),
    "input inside output": ({"input_folder_path": "ingesteddata/drops/"}, "input_folder_path", "output_folder_path"),
    "test is input": ({"test_data_path": "sourcedata"}, "input_folder_path", "test_data_path"),
    "test inside input": ({"test_data_path": "sourcedata/test/"}, "test_data_path", "input_folder_path"),
    "input inside test": ({"input_folder_path": "testdata/new/"}, "input_folder_path", "test_data_path"),
    "output is test": ({"output_folder_path": "testdata"}, "test_data_path", "output_folder_path"),
    "models in input": ({"output_model_path": "sourcedata"}, "output_model_path", "input_folder_path"),
    "releases inside test": ({"prod_deployment_path": "testdata/prod"}, "prod_deployment_path", "test_data_path"),
    "reports inside output": ({"report_folder_path": "ingesteddata/reports"}, "report_folder_path",
                              "output_folder_path"),
    "logs in input": ({"log_folder_path": "sourcedata"}, "log_folder_path", "input_folder_path"),
    "releases are models": ({"prod_deployment_path": "models"}, "prod_deployment_path", "output_model_path"),
}


@pytest.mark.parametrize("case", list(OVERLAPS))
def test_overlapping_folders_exit_2_and_write_nothing(workspace: Path, case: str) -> None:
    overrides, first, second = OVERLAPS[case]
    for value in overrides.values():
        if value.endswith("/"):
            (workspace / value).mkdir(parents=True)
    write_config(workspace, **{k: v.rstrip("/") for k, v in overrides.items()})
    before = sorted(p.relative_to(workspace) for p in workspace.rglob("*"))
    for script in ("ingestion.py", "fullprocess.py"):
        p = run_script(script, workspace)
        assert p.returncode == 2, (script, p.stdout, p.stderr)
        assert p.stdout == ""
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
        for key in (first, second):  # both keys, both folders
            assert f"'{key}'" in lines[0], lines[0]
        cfg = {**json.loads((ROOT / "config.json").read_text()), **overrides}
        for key in (first, second):
            assert str(workspace / cfg.get(key, "").rstrip("/")) in lines[0], (key, lines[0])
        assert "expected separate folders" in lines[0]
    assert sorted(p.relative_to(workspace) for p in workspace.rglob("*")) == before  # nothing written


def test_overlap_through_a_symbolic_link_is_found(workspace: Path) -> None:
    (workspace / "alias").symlink_to(workspace / "sourcedata")
    write_config(workspace, output_folder_path="alias")
    with pytest.raises(ConfigError) as err:
        load_config(workspace / "config.json")
    assert str(err.value).endswith(f"keys 'input_folder_path' and 'output_folder_path' are the same folder "
                                   f"({workspace / 'sourcedata'}): ingestion would read its own output; expected "
                                   f"separate folders")


@pytest.mark.parametrize("overrides", [
    {},  # the shipped layout
    {"input_folder_path": "practicedata", "output_model_path": "practicemodels"},  # the practice layout
    {"prod_deployment_path": "prod2"},
    {"output_model_path": "work/models", "report_folder_path": "work/reports", "log_folder_path": "work/logs"},
    {"history_path": "ingesteddata/history.sqlite3"},
])
def test_separate_folders_are_accepted(workspace: Path, overrides: dict[str, str]) -> None:
    load_config(write_config(workspace, **overrides))


def test_shipped_configs_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RISK_API_TOKEN", raising=False)
    for name in ("config.json", "config.practice.json"):
        load_config(ROOT / name)


@pytest.mark.parametrize("value", ["", "  \t"])
@pytest.mark.parametrize("variable", ["RISK_API_TOKEN", "OUR_TOKEN"])
def test_token_variable_set_but_empty_exits_2(workspace: Path, monkeypatch: pytest.MonkeyPatch, value: str,
                                              variable: str) -> None:
    if variable != "RISK_API_TOKEN":
        write_config(workspace, api={"token_env": variable})
    monkeypatch.setenv(variable, value)  # the scripts inherit it
    for script in ("ingestion.py", "apicalls.py"):
        p = run_script(script, workspace)
        assert p.returncode == 2, (script, p.stdout, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1, p.stderr
        assert lines[0].endswith(f"environment variable {variable} is set but empty: authentication would be off; "
                                 f"unset it or give it a token"), lines[0]
    assert not (workspace / "ingesteddata").exists()
    from app import create_app  # the API refuses to start rather than serve without authentication
    with pytest.raises(ConfigError, match=variable):
        create_app(workspace / "config.json")


def _one_class_test_data(ws: Path) -> None:
    """Keep only the test rows of clients who stayed (exited=0)."""
    path = ws / "testdata" / "testdata.csv"
    header, *rows = path.read_text().splitlines()
    path.write_text("\n".join([header, *(r for r in rows if r.endswith(",0"))]) + "\n")


def test_one_class_test_data_stops_scoring_with_exit_2(workspace: Path) -> None:
    _one_class_test_data(workspace)
    for script in ("ingestion.py", "training.py"):
        assert run_script(script, workspace).returncode == 0
    p = run_script("scoring.py", workspace)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "'test_data_path'" in lines[0] and "testdata has only exited=0" in lines[0], lines[0]
    assert "F1 cannot be measured" in lines[0]
    assert not (workspace / "models" / "latestscore.txt").exists()


def test_one_class_test_data_deploys_nothing(workspace: Path) -> None:
    """Neither a first release (bootstrap) nor a challenger: with F1 0 for every model, any one would pass."""
    shipped = (workspace / "testdata" / "testdata.csv").read_bytes()
    _one_class_test_data(workspace)
    p = run_script("fullprocess.py", workspace, config="config.practice.json")
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "testdata has only exited=0" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (workspace / "production_deployment" / "current").exists()

    (workspace / "testdata" / "testdata.csv").write_bytes(shipped)
    assert run_script("fullprocess.py", workspace, config="config.practice.json").returncode == 0  # release 1
    _one_class_test_data(workspace)
    p = run_script("fullprocess.py", workspace)  # the source data drifts: a challenger is trained
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "testdata has only exited=0" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    releases = workspace / "production_deployment" / "releases"
    assert len(list(releases.iterdir())) == 1  # release 1 stays the only one
