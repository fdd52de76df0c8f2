"""Shared test fixtures: a throwaway workspace with the shipped data and a config pointing into it."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

import pgserver
from config import load_config
from pgserver import free_port

ROOT = Path(__file__).resolve().parents[1]
SOAK = os.environ.get("SOAK", "") not in ("", "0")  # `make soak`: the campaigns' long forms


def soak_sizes(**quick_long: tuple[int, int]) -> dict[str, int]:
    """A campaign's sizes: the quick form of each (make test), or the long one under SOAK=1 (make soak)."""
    return {name: long if SOAK else quick for name, (quick, long) in quick_long.items()}



def write_config(ws: Path, name: str = "config.json", **overrides: Any) -> Path:
    """Write a config file into ws with relative paths (so they must resolve against ws)."""
    cfg = json.loads((ROOT / "config.json").read_text())
    # Files the tests write are taken at once; the landing rules have tests of their own, which set these.
    cfg["ingestion"] = {"settle_seconds": 0, "unterminated_seconds": 0}
    cfg.update(overrides)
    path = ws / name
    path.write_text(json.dumps(cfg, indent=2))
    return path


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A project folder of our own: shipped data copied in, config.json with relative paths."""
    return make_workspace(tmp_path)


@pytest.fixture
def cfg(workspace: Path) -> dict[str, Any]:
    """The loaded config of the workspace."""
    return load_config(workspace / "config.json")


def run_script(script: str, ws: Path, *args: str, config: str = "config.json", cwd: Path | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    """Run one of our scripts for real, as a person would, with the workspace's config."""
    cmd = [sys.executable, str(ROOT / script), "--config", str(ws / config), *args]
    return subprocess.run(cmd, cwd=cwd or ws, capture_output=True, text=True, timeout=timeout)


def run_json(script: str, ws: Path, *args: str, **kw: Any) -> dict[str, Any]:
    """Run a script with --json and return its parsed result (asserting it succeeded)."""
    p = run_script(script, ws, "--json", *args, **kw)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def store_manifest(ws: Path) -> dict[str, Any]:
    """The ingested store's manifest (ingesteddata/store/manifest.json): live batches, retired ones, rejected files."""
    path = ws / "ingesteddata" / "store" / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {"batches": [], "retired": [], "rejected": {}}


def ingested_record(ws: Path) -> dict[str, dict[str, Any]]:
    """The live batch of each ingested file, by name: sha256, size, mtime_ns, rows, rows_added, id, ingested_at."""
    return {b["file"]: b for b in store_manifest(ws)["batches"]}


def rejected_record(ws: Path) -> dict[str, dict[str, Any]]:
    """The rejected files, by name: sha256, size, mtime_ns, reason, rejected_at."""
    return store_manifest(ws)["rejected"]


def tree_hashes(*folders: Path) -> dict[str, str]:
    """SHA-256 of every file under the folders, by path: to prove nothing changed."""
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def make_workspace(path: Path) -> Path:
    """Like the workspace fixture, in a folder of the caller's choosing (for module-scoped fixtures)."""
    path.mkdir(parents=True, exist_ok=True)
    for folder in ("practicedata", "sourcedata", "testdata"):
        shutil.copytree(ROOT / folder, path / folder)
    write_config(path)
    write_config(path, "config.practice.json", input_folder_path="practicedata", output_model_path="practicemodels")
    return path


@contextlib.contextmanager
def gunicorn_server(ws: Path, workers: int = 2) -> Iterator[str]:
    """A real gunicorn serving a workspace on a free loopback port, built as `make serve` builds it; yields its URL."""
    port = free_port()
    env = {**os.environ, "RISK_CONFIG": str(ws / "config.json")}
    env.pop("RISK_API_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
                             "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "wsgi:app"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "health", timeout=5).status_code == 200:
                break
        except requests.RequestException:  # not listening yet, or the workers are still importing
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"gunicorn did not start: {proc.stdout.read().decode()[-2000:]}")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def deploy_shipped(ws: Path) -> None:
    """Bootstrap on the practice data, then let fullprocess deploy release 2 from the source data."""
    for config in ("config.practice.json", "config.json"):
        p = run_script("fullprocess.py", ws, config=config)
        assert p.returncode == 0, p.stderr


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with release 2 deployed and a 10,000-row file to predict (built once per test module)."""
    import numpy as np

    import generate_data
    ws = make_workspace(tmp_path_factory.mktemp("api"))
    deploy_shipped(ws)
    big = generate_data.clients_fast(np.random.default_rng(1), 10_000, "new")
    (ws / "ingesteddata" / "big10k.csv").write_text(big.to_csv(index=False))
    return ws


@pytest.fixture
def app(deployed: Path) -> Any:
    """The Flask app of the deployed workspace, built by the factory gunicorn's wsgi.py uses."""
    from app import create_app
    return create_app(deployed / "config.json")


@pytest.fixture
def client(app: Any) -> Any:
    """The Flask test client of that app."""
    return app.test_client()


# ---------------------------------------------------------------- a real PostgreSQL server (history_url tests)

@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A throwaway PostgreSQL server for the session (tests/pgserver.py); yields its maintenance database's URL."""
    try:
        with pgserver.throwaway_server() as url:
            yield url
    except pgserver.ServerError as e:
        pytest.fail(str(e))


@pytest.fixture
def pg_url(pg_server: str, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the session's server, for one test; its URL."""
    return pgserver.fresh_database(pg_server, "t_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16])


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """The history store a test runs on: each test using this runs twice, on SQLite and on PostgreSQL."""
    return request.param


def use_history(ws: Path, backend: str, request: pytest.FixtureRequest, *configs: str) -> None:
    """Point a workspace's configs at the backend's history store: SQLite (the default) or a fresh PostgreSQL
    database."""
    if backend == "sqlite":
        return
    url = request.getfixturevalue("pg_url")
    for name in configs or ("config.json", "config.practice.json"):
        path = ws / name
        path.write_text(json.dumps({**json.loads(path.read_text()), "history_url": url}, indent=2))


def history_rows(ws: Path, sql: str, *params: Any, config: str = "config.json") -> list[tuple]:
    """Rows of a query on a workspace's history store, SQLite or PostgreSQL, through history.py."""
    import history
    cfg = load_config(ws / config)
    return history.call(cfg, "cannot be read", lambda db: [tuple(r) for r in db.execute(sql, params)])
