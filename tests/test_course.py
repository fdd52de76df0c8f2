"""The course's starter functions (ingestion.merge_multiple_dataframe() and the rest), called as a course user calls
them: `python -c` in the scripts' folder, no arguments, so the config.json beside the scripts is the one used."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import ROOT, make_workspace, run_script, tree_hashes

FEATURES = ["lastmonth_activity", "lastyear_activity", "number_of_employees"]
TARGET = "exited"
# What the scripts read beside themselves at import or run time (the schema, the pins, the API's files).
SCRIPT_FILES = ["schema.sql", "requirements.txt", "openapi.json"]
SCRIPT_FOLDERS = ["templates", "static"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace after `make run`'s two fullprocess runs (release 1 from the practice data, release 2 after the
    source data drifted), with the scripts copied beside its config.json."""
    ws = make_workspace(tmp_path_factory.mktemp("course"))
    for config in ("config.practice.json", "config.json"):
        p = run_script("fullprocess.py", ws, config=config, timeout=300)
        assert p.returncode == 0, p.stderr
    for script in ROOT.glob("*.py"):
        shutil.copy2(script, ws / script.name)
    for name in SCRIPT_FILES:
        shutil.copy2(ROOT / name, ws / name)
    for name in SCRIPT_FOLDERS:
        shutil.copytree(ROOT / name, ws / name)
    return ws


@pytest.fixture
def ws(ran: Path, tmp_path: Path) -> Path:
    """A private copy of the run workspace, since several course calls write (ingest, train, score, deploy)."""
    return Path(shutil.copytree(ran, tmp_path / "ws", symlinks=True))  # symlinks: current stays a link


def course(ws: Path, code: str) -> Any:
    """Run code with `python -c` in the scripts' folder and return the JSON it printed last."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only the copied scripts are importable
    check = "\nimport config\nprint(json.dumps(str(config.DEFAULT_CONFIG)))"
    p = subprocess.run([sys.executable, "-c", "import json\n" + code + check], cwd=ws, env=env,
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    *_, result, used = p.stdout.strip().splitlines()
    assert json.loads(used) == str(ws / "config.json")  # the workspace's config, not the repository's
    return json.loads(result)


def finaldata(ws: Path) -> pd.DataFrame:
    """The ingested data as a reader of finaldata.csv sees it."""
    return pd.read_csv(ws / "ingesteddata" / "finaldata.csv")


def latest_seconds(ws: Path, step: str) -> float:
    """Duration of the latest successful run of a step recorded in the history store."""
    with sqlite3.connect(ws / "history" / "history.sqlite3") as db:
        row = db.execute("SELECT seconds FROM runs WHERE step = ? AND outcome = 'ok' ORDER BY id DESC LIMIT 1",
                         (step,)).fetchone()
    return float(row[0])


def run_count(ws: Path) -> int:
    """How many runs the history store holds."""
    with sqlite3.connect(ws / "history" / "history.sqlite3") as db:
        return int(db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])


def sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_merge_multiple_dataframe_ingests_new_files_and_returns_every_row(ws: Path) -> None:
    before = finaldata(ws)
    known = before.dropna().iloc[0]
    new = pd.DataFrame([known.to_dict(),  # a duplicate of an ingested row: dropped
                        {"corporation": "zzcourse1", **dict.fromkeys(FEATURES, 7), TARGET: 0},
                        {"corporation": "zzcourse2", **dict.fromkeys(FEATURES, 9), TARGET: 1}])
    new.to_csv(ws / "sourcedata" / "dataset5.csv", index=False)
    r = course(ws, "import ingestion\ndf = ingestion.merge_multiple_dataframe()\n"
                   "print(json.dumps({'type': type(df).__name__, 'columns': list(df.columns), 'rows': len(df), "
                   "'duplicates': int(df.duplicated().sum()), 'ids': df['corporation'].tolist()}))")
    assert r["type"] == "DataFrame"
    assert r["columns"] == list(before.columns)
    assert r["rows"] == len(before) + 2 == len(finaldata(ws))
    assert r["duplicates"] == 0
    assert {"zzcourse1", "zzcourse2"} <= set(r["ids"])


def test_train_model_returns_the_fitted_pipeline_it_saved(ws: Path) -> None:
    (ws / "models" / "trainedmodel.pkl").unlink()
    r = course(ws, "import pandas as pd, training\nm = training.train_model()\n"
                   "X = pd.read_csv('testdata/testdata.csv')[m.feature_names_in_]\n"
                   "print(json.dumps({'class': type(m).__module__ + '.' + type(m).__name__, "
                   "'steps': [n for n, _ in m.steps], 'features': list(m.feature_names_in_), "
                   "'predicted': sorted(set(m.predict(X).tolist()))}))")
    assert r["class"] == "sklearn.pipeline.Pipeline"
    assert r["steps"][-1] == "classify"
    assert r["features"] == FEATURES
    assert set(r["predicted"]) <= {0, 1}
    record = json.loads((ws / "models" / "trainedmodel.json").read_text())
    assert (ws / "models" / "trainedmodel.pkl").is_file() and record["rows"] == len(finaldata(ws))


def test_score_model_returns_the_f1_it_writes_to_latestscore(ws: Path) -> None:
    score_file = ws / "models" / "latestscore.txt"
    score_file.unlink()
    r = course(ws, "import scoring\nf1 = scoring.score_model()\n"
                   "print(json.dumps({'type': type(f1).__name__, 'f1': f1}))")
    assert r["type"] == "float"
    assert 0 < r["f1"] < 1
    assert float(score_file.read_text()) == pytest.approx(r["f1"], abs=1e-6)


def test_store_model_into_pickle_deploys_the_trained_model_as_a_release(ws: Path) -> None:
    prod = ws / "production_deployment"
    assert os.readlink(prod / "current") == "releases/0002"
    r = course(ws, "import deployment\nprint(json.dumps(deployment.store_model_into_pickle()))")
    assert r["version"] == 3
    assert os.readlink(prod / "current") == "releases/0003"
    assert r["model_sha256"] == sha256(ws / "models" / "trainedmodel.pkl") == sha256(prod / "trainedmodel.pkl")


def test_store_model_into_pickle_refuses_another_model_and_takes_the_trained_one(ws: Path) -> None:
    prod = ws / "production_deployment"
    r = course(ws, "import cli, deployment, training\nfrom config import load_config\n"
                   "try:\n    deployment.store_model_into_pickle(training.build_pipeline(load_config()))\n"
                   "    print(json.dumps('deployed'))\n"
                   "except cli.StepError as e:\n    print(json.dumps(str(e)))")
    assert "not models/trainedmodel.pkl" in r
    assert os.readlink(prod / "current") == "releases/0002"
    # The course's order: train, score, then deploy the model train_model returned.
    r = course(ws, "import deployment, scoring, training\nm = training.train_model()\nscoring.score_model()\n"
                   "print(json.dumps(deployment.store_model_into_pickle(m)))")
    assert r["version"] == 3 and os.readlink(prod / "current") == "releases/0003"


def test_model_predictions_of_the_deployed_model_default_to_the_test_data(ws: Path) -> None:
    test = pd.read_csv(ws / "testdata" / "testdata.csv")
    r = course(ws, "import pandas as pd, diagnostics\n"
                   "print(json.dumps({'all': diagnostics.model_predictions(), "
                   "'five': diagnostics.model_predictions(pd.read_csv('testdata/testdata.csv').head(5))}))")
    assert len(r["all"]) == len(test)
    assert set(r["all"]) == {0, 1}
    assert r["five"] == r["all"][:5]


def test_dataframe_summary_gives_mean_median_std_per_numeric_column(ws: Path) -> None:
    df = finaldata(ws)
    rows = course(ws, "import diagnostics\nprint(json.dumps(diagnostics.dataframe_summary()))")
    assert [row[0] for row in rows] == [*FEATURES, TARGET]
    for col, mean, median, std in rows:
        assert [mean, median, std] == pytest.approx([df[col].mean(), df[col].median(), df[col].std()]), col


def test_missing_data_gives_the_fraction_missing_per_column(ws: Path) -> None:
    df = finaldata(ws)
    rows = course(ws, "import diagnostics\nprint(json.dumps(diagnostics.missing_data()))")
    assert [row[0] for row in rows] == list(df.columns)
    assert [row[1] for row in rows] == pytest.approx(df.isna().mean().tolist())
    assert any(0 < fraction < 1 for _, fraction in rows)  # the shipped data has gaps


def test_execution_time_reads_the_recorded_runs_without_running_anything(ws: Path) -> None:
    runs, data = run_count(ws), tree_hashes(ws / "ingesteddata")  # the store and its exports
    times = course(ws, "import diagnostics\nprint(json.dumps(diagnostics.execution_time()))")
    assert len(times) == 2 and all(isinstance(t, float) and t >= 0 for t in times)
    assert times == [latest_seconds(ws, "ingestion"), latest_seconds(ws, "training")]
    assert run_count(ws) == runs and tree_hashes(ws / "ingesteddata") == data


def test_outdated_packages_list_covers_the_pinned_packages(ws: Path) -> None:
    pinned = [line.split("==")[0] for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    rows = course(ws, "import diagnostics\nprint(json.dumps(diagnostics.outdated_packages_list()))")
    assert [row[0] for row in rows] == pinned
    for package, installed, latest in rows:
        assert installed == metadata.version(package)
        assert isinstance(latest, str) and latest  # a version, or "unknown" offline


def test_reporting_score_model_writes_the_confusion_matrix_png(ws: Path) -> None:
    from PIL import Image
    png = ws / "models" / "confusionmatrix.png"
    png.unlink()  # fullprocess's report drew one already
    path = course(ws, "import reporting\nprint(json.dumps(str(reporting.score_model())))")
    assert Path(path) == png
    assert png.read_bytes()[:8] == PNG_MAGIC
    lo, hi = Image.open(png).convert("L").getextrema()
    assert hi - lo > 100  # a drawn matrix, not a blank image
