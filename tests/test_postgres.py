"""The history on PostgreSQL (history_url), against a real server the tests start (conftest.pg_server): every step,
reader and writer through it, one tick at a time across hosts, the release pointer in the database.

    .venv/bin/python -m pytest -q tests/test_postgres.py
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from config import load_config
from conftest import deploy_shipped, free_port, history_rows, make_workspace, run_script, use_history, write_config


@pytest.fixture
def pg_ws(tmp_path: Path, pg_url: str, request: pytest.FixtureRequest) -> Path:
    """A workspace whose history is a fresh PostgreSQL database, release 2 deployed by two real ticks."""
    ws = make_workspace(tmp_path / "ws")
    use_history(ws, "postgresql", request)
    deploy_shipped(ws)
    return ws


def test_the_course_runs_with_its_history_on_postgresql(pg_ws: Path) -> None:
    """Bootstrap and drift ticks, a rollback, a no-new-data tick, diagnostics and the report's trends: all recorded
    in and read from PostgreSQL, and nothing written to a SQLite file."""
    ws = pg_ws
    assert not (ws / "history").exists()
    ticks = history_rows(ws, "SELECT outcome, summary FROM runs WHERE step = 'fullprocess' ORDER BY id")
    assert [o for o, _ in ticks] == ["ok", "ok"]
    assert "bootstrap: deployed release 1" in ticks[0][1] and "deployed release 2" in ticks[1][1]
    assert history_rows(ws, "SELECT version, action FROM releases ORDER BY run_id") == [(1, "deploy"), (2, "deploy")]
    assert history_rows(ws, "SELECT COUNT(*) FROM feature_drift")[0][0] > 0
    p = run_script("deployment.py", ws, "--rollback")
    assert p.returncode == 0, p.stderr
    p = run_script("fullprocess.py", ws)
    assert p.returncode == 0, p.stderr
    assert "no new data" in p.stdout and "release 1 stays" in p.stdout
    assert history_rows(ws, "SELECT version FROM releases WHERE action = 'rollback'") == [(1,)]
    # the readers: diagnostics' timings, the report's trend tables, the API's /health
    import diagnostics
    import history
    import reportdata
    cfg = load_config(ws / "config.json")
    timings = history.call(cfg, "read", lambda db: history.step_seconds(db, "training"))
    assert len(timings) == 2 and all(s > 0 for s in timings)
    trends = reportdata.trends(cfg)
    assert list(trends["releases"]["version"]) == [1, 2, 1]
    assert trends["checks"]["new_score"].dtype == float
    assert diagnostics.latest_drift(cfg)["release"] == 1 and diagnostics.latest_drift(cfg)["features"]
    assert history.call(cfg, "read", history.last_successful_run)["outcome"] == "no-new-data"


def test_a_bad_history_url_is_one_line_exit_2(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    write_config(ws, history_url="mysql://localhost/risk")
    p = run_script("fullprocess.py", ws)
    assert p.returncode == 2
    assert p.stderr.strip().endswith("key 'history_url' must start with sqlite:/// or postgresql://, got "
                                     "\"mysql://localhost/risk\"")


def test_a_sqlite_url_is_the_history_path(tmp_path: Path) -> None:
    """sqlite:///<relative path> resolves against the config's folder, as every path does."""
    ws = make_workspace(tmp_path / "ws")
    write_config(ws, history_url="sqlite:///runs/h.sqlite3")
    cfg = load_config(ws / "config.json")
    assert cfg["history_path"] == ws / "runs" / "h.sqlite3"
    p = run_script("fullprocess.py", ws, config="config.json")
    assert p.returncode == 0, p.stderr
    assert (ws / "runs" / "h.sqlite3").is_file() and not (ws / "history").exists()


def test_an_unreachable_server_fails_the_tick_in_one_line(tmp_path: Path) -> None:
    """A server that cannot be reached: the tick can neither take its lock nor record itself; one line says which
    store, with no password in it."""
    ws = make_workspace(tmp_path / "ws")
    write_config(ws, history_url=f"postgresql://postgres:secret@127.0.0.1:{free_port()}/risk")
    p = run_script("fullprocess.py", ws)
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr
    assert lines[0].startswith("fullprocess: ERROR: the history store postgresql://postgres@127.0.0.1:")
    assert "cannot take the tick lock" in lines[0] and "secret" not in p.stderr
    assert not os.path.exists(ws / "history")
    assert json.loads((ws / "config.json").read_text())["history_url"].startswith("postgresql://")
