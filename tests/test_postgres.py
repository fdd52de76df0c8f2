"""The history on PostgreSQL (history_url), against a real server the tests start (conftest.pg_server): every step,
reader and writer through it, one tick at a time across hosts, the release pointer in the database.

    .venv/bin/python -m pytest -q tests/test_postgres.py
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config import load_config
from conftest import (
    ROOT,
    deploy_shipped,
    free_port,
    history_rows,
    make_workspace,
    run_script,
    use_history,
    write_config,
)


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
    from app import create_app
    client = create_app(ws / "config.json").test_client()
    health = client.get("/health").get_json()
    assert health["release"] == 1 and health["last_successful_run"]["outcome"] == "no-new-data"
    page = client.get("/dashboard")
    assert page.status_code == 200 and b"release 1" in page.data


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


def test_an_older_sqlite_history_is_upgraded_in_place(tmp_path: Path) -> None:
    """A version-4 file (before the indexes the report reads by) gains them, keeps its rows, and says version 5."""
    import sqlite3

    import history
    ws = make_workspace(tmp_path / "ws")
    cfg = load_config(ws / "config.json")
    history.call(cfg, "write", history.record_run, "ingestion", "a", "b", 1.0, "ok", "kept", {})
    with sqlite3.connect(cfg["history_path"]) as db:
        db.executescript("DROP INDEX feature_drift_check; DROP INDEX decisions_run; PRAGMA user_version=4;")
    assert history_rows(ws, "SELECT summary FROM runs") == [("kept",)]
    names = {n for (n,) in history_rows(ws, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"feature_drift_check", "decisions_run"} <= names
    assert history_rows(ws, "PRAGMA user_version") == [(history.SCHEMA_VERSION,)]


# ---------------------------------------------------------------- two hosts over one database

def two_hosts(tmp_path: Path, pg_url: str) -> list[Path]:
    """Two workspaces playing two hosts: each its own config, models, logs and reports, both over one database and
    the same input, store and deployment folders (the shared path of a real set-up)."""
    shared = make_workspace(tmp_path / "shared")
    base = json.loads((shared / "config.json").read_text())
    hosts = []
    for name in ("host-a", "host-b"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({
            **base, "history_url": pg_url, "input_folder_path": str(shared / "sourcedata"),
            "test_data_path": str(shared / "testdata"), "output_folder_path": str(shared / "ingesteddata"),
            "prod_deployment_path": str(shared / "production_deployment")}, indent=2))
        hosts.append(folder)
    return hosts


def start_tick(host: Path, *args: str) -> subprocess.Popen:
    """A real fullprocess tick of a host, in the background."""
    return subprocess.Popen([sys.executable, str(ROOT / "fullprocess.py"), "--config", str(host / "config.json"),
                             *args], cwd=host, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def tick_lock_held(pg_url: str) -> bool:
    """Whether some session holds the tick's advisory lock in this database."""
    import psycopg
    with psycopg.connect(pg_url) as db:
        return bool(db.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
                               "database = (SELECT oid FROM pg_database WHERE datname = current_database())")
                    .fetchone()[0])


def test_overlapping_ticks_on_two_hosts_make_one_ingestion_and_one_release(tmp_path: Path, pg_url: str) -> None:
    a, b = two_hosts(tmp_path, pg_url)
    procs = [start_tick(a), start_tick(b)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    lines = sorted(out for out, _ in outs)
    assert lines[0].startswith("another fullprocess run is in progress; this tick does nothing")
    assert "bootstrap: deployed release 1" in lines[1]
    assert sorted(o for (o,) in history_rows(a, "SELECT outcome FROM runs WHERE step = 'fullprocess'")) == \
        ["busy", "ok"]
    assert history_rows(a, "SELECT step, COUNT(*) FROM runs WHERE step IN ('ingestion', 'deployment') "
                           "GROUP BY step ORDER BY step") == [("deployment", 1), ("ingestion", 1)]
    assert sorted(p.name for p in (tmp_path / "shared" / "production_deployment" / "releases").iterdir()) == ["0001"]
    assert not tick_lock_held(pg_url)  # both ticks let go on exit


def test_a_killed_holder_frees_the_tick_for_the_other_host(tmp_path: Path, pg_url: str) -> None:
    """kill -9 of the host holding the tick, mid-tick: its connection closes, the server drops its lock, and the
    other host's next tick does the work (here, the bootstrap the killed one never finished)."""
    a, b = two_hosts(tmp_path, pg_url)
    holder = start_tick(a)
    deadline = time.monotonic() + 60
    while not tick_lock_held(pg_url):
        assert holder.poll() is None and time.monotonic() < deadline, holder.communicate()
        time.sleep(0.05)
    time.sleep(1.0)  # into its ingestion or training
    assert holder.poll() is None, "the tick ended before it could be killed mid-way"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    deadline = time.monotonic() + 10
    while tick_lock_held(pg_url):
        assert time.monotonic() < deadline, "the killed tick's lock outlived its process by 10 s"
        time.sleep(0.05)
    p = run_script("fullprocess.py", b, cwd=b)
    assert p.returncode == 0, p.stderr
    assert "bootstrap: deployed release 1" in p.stdout
    assert history_rows(b, "SELECT outcome FROM runs WHERE step = 'fullprocess'") == [("ok",)]


def test_the_release_pointer_is_shared_and_rollback_works_from_either_host(tmp_path: Path, pg_url: str) -> None:
    """Host A deploys release 1, host B a forced release 2, host A rolls back: both hosts (and the API's loader) see
    the same current release at each step, and the deployment log tells what was live at any time."""
    import history
    import releases
    a, b = two_hosts(tmp_path, pg_url)
    cfg_a, cfg_b = load_config(a / "config.json"), load_config(b / "config.json")
    assert run_script("fullprocess.py", a, cwd=a).returncode == 0
    p = run_script("fullprocess.py", b, "--force", cwd=b)
    assert p.returncode == 0 and "deployed release 2" in p.stdout, p.stderr
    assert [releases.current_release(c)["version"] for c in (cfg_a, cfg_b)] == [2, 2]
    p = run_script("deployment.py", a, "--rollback", cwd=a)
    assert p.returncode == 0 and "rolled back from release 2 to release 1" in p.stdout, p.stderr
    assert [releases.current_release(c)["version"] for c in (cfg_a, cfg_b)] == [1, 1]
    assert releases.load_deployed_model(cfg_b)[1]["version"] == 1
    p = run_script("deployment.py", b, "--list", cwd=b)
    assert "* release    1" in p.stdout, p.stdout
    # and back again from host B: the rollback target is the newest older release, so 1 has none
    p = run_script("deployment.py", b, "--rollback", cwd=b)
    assert p.returncode == 1 and "release 1 is the oldest kept release" in p.stderr
    log = history_rows(a, "SELECT at, version, action, from_version FROM deployment_log ORDER BY id")
    assert [r[1:] for r in log] == [(1, "deploy", None), (2, "deploy", 1), (1, "rollback", 2)]

    def live(at: str) -> int | None:
        """The release live at a time, by history.live_at."""
        found = history.call(cfg_b, "read", history.live_at, at)
        return found and found["version"]
    assert live("2000-01-01T00:00:00.000Z") is None
    assert [live(at) for at, *_ in log] == [1, 2, 1]
    assert live(history.now_iso()) == 1
    p = run_script("deployment.py", b, "--live-at", log[1][0], cwd=b)
    assert p.returncode == 0 and p.stdout.startswith(f"release 2 was live at {log[1][0]} (deploy at "), p.stderr
    p = run_script("deployment.py", b, "--live-at", "yesterday", cwd=b)
    assert p.returncode == 1 and "expected an ISO 8601 time such as 2026-11-30T12:00:00Z, got 'yesterday'" in p.stderr
    # a pointer move that expects another release to be current changes nothing (a rollback came first)
    assert history.call(cfg_a, "write", history.move_release_pointer, "releases/0002", 2, "deploy", 2) is False
    assert releases.current_release(cfg_a)["version"] == 1
    # a deployment killed between the row and the link leaves the link behind: the next tick, on any host, mends it
    prod = tmp_path / "shared" / "production_deployment"
    (prod / "stale").symlink_to("releases/0002")
    os.replace(prod / "stale", prod / "current")
    p = run_script("fullprocess.py", b, cwd=b)
    assert p.returncode == 0 and "release 1 stays" in p.stdout, p.stderr
    assert os.readlink(prod / "current") == "releases/0001"
    assert (prod / "trainedmodel.pkl").read_bytes() == (prod / "releases/0001/trainedmodel.pkl").read_bytes()
