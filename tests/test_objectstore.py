"""Releases shared by hosts through S3-compatible object storage (prod_deployment_path: s3://bucket/prefix).

Two workspaces play two hosts: each has its own data, history and release cache, and both deploy into one bucket
served by moto's S3 server on loopback. What moto cannot show: a real bucket's consistency under concurrent writers
across regions, its latency and throughput, and real credentials (moto accepts any key); the code path — boto3
over HTTP against an S3 endpoint, objects listed, written whole and read back — is the real one.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from conftest import deploy_shipped, free_port, gunicorn_server, make_workspace, run_json, run_script, write_config

BUCKET = "risk"
RELEASES_URL = f"s3://{BUCKET}/prod"


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """moto's S3 server on a free loopback port, with the bucket made; yields the endpoint URL."""
    port = free_port()
    moto = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the scripts and gunicorn run as subprocesses and read these, as boto3 does
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.put(f"{url}/{BUCKET}", timeout=2).raise_for_status()
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    pytest.fail("moto_server did not start")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def host(path: Path, releases_url: str = RELEASES_URL, **more: Any) -> Path:
    """A workspace whose releases live in the shared bucket, polled every half second by its API."""
    ws = make_workspace(path)
    api = {"release_poll_seconds": 0.5}
    write_config(ws, prod_deployment_path=releases_url, api=api, **more)
    write_config(ws, "config.practice.json", input_folder_path="practicedata", output_model_path="practicemodels",
                 prod_deployment_path=releases_url, api=api, **more)
    return ws


def listed(ws: Path) -> tuple[list[int], int | None]:
    """The releases deployment.py --list shows on a host, and the current one."""
    releases = run_json("deployment.py", ws, "--list")["releases"]
    return [r["version"] for r in releases], next((r["version"] for r in releases if r["current"]), None)


@pytest.mark.parametrize("pointer", ["bucket", "postgresql"])
def test_hosts_share_releases_and_an_api_follows_another_hosts_switch_under_load(
        s3: str, tmp_path: Path, pointer: str, request: pytest.FixtureRequest) -> None:
    """The current-release pointer is the bucket's `current` object, or with the history on PostgreSQL a row there
    (the bucket then holds the files)."""
    more = {"history_url": request.getfixturevalue("pg_url")} if pointer == "postgresql" else {}
    url = f"s3://{BUCKET}/switch-{pointer}"
    a, b = host(tmp_path / "a", url, **more), host(tmp_path / "b", url, **more)
    deploy_shipped(a)
    assert listed(a) == ([1, 2], 2)
    assert listed(b) == ([1, 2], 2), "host b sees the releases host a deployed"
    assert not (b / "release_cache" / "releases" / "0001").exists(), "a release is fetched only when read"

    with gunicorn_server(b) as server:
        assert requests.get(server + "health", timeout=5).json()["release"] == 2
        seen: list[Any] = []
        stop = threading.Event()

        def load() -> None:
            """Predictions as fast as one client asks, recording each answer's release or error."""
            while not stop.is_set():
                try:
                    r = requests.post(server + "prediction", json={"filepath": "testdata/testdata.csv"}, timeout=10)
                    seen.append((time.monotonic(), r.json()["release"] if r.status_code == 200 else r.status_code))
                except requests.RequestException as e:
                    seen.append((time.monotonic(), repr(e)))

        clients = [threading.Thread(target=load) for _ in range(3)]
        for t in clients:
            t.start()
        time.sleep(1.5)
        rolled = run_json("deployment.py", a, "--rollback")
        switched_at = time.monotonic()
        assert rolled["version"] == 1
        time.sleep(3)
        stop.set()
        for t in clients:
            t.join()

    answers = [r for _, r in seen]
    assert set(answers) <= {1, 2}, f"errors during the switch: {[r for r in answers if r not in (1, 2)][:3]}"
    after = [r for t, r in seen if t > switched_at + 2 * 0.5 + 1.0]  # two polls (two workers) and a load
    assert after and set(after) == {1}, "host b's workers serve host a's rollback within the poll interval"
    assert answers.count(2) > 10 and answers.count(1) > 10

    # Host b trains on its own data and deploys release 3; host a sees it and rolls it back.
    for script in ("ingestion.py", "training.py", "scoring.py", "deployment.py"):
        p = run_script(script, b)
        assert p.returncode == 0, p.stderr
    assert listed(a) == ([1, 2, 3], 3)
    assert run_json("deployment.py", a, "--rollback")["version"] == 2
    assert listed(b) == ([1, 2, 3], 2)
    assert run_json("deployment.py", b, "--rollback")["version"] == 1, "rollback from either host"


def test_a_tampered_object_is_refused_and_leaves_no_partial_copy(s3: str, tmp_path: Path) -> None:
    import boto3

    a = host(tmp_path / "a", f"s3://{BUCKET}/tampered")
    deploy_shipped(a)
    s3c = boto3.client("s3")
    key = "tampered/releases/0002/trainedmodel.pkl"
    s3c.put_object(Bucket=BUCKET, Key=key, Body=b"not the model the manifest names")

    b = host(tmp_path / "b", f"s3://{BUCKET}/tampered")
    p = run_script("diagnostics.py", b)
    assert p.returncode == 1
    assert "tampered/releases/0002/trainedmodel.pkl: missing or not the file its manifest names" in p.stderr
    assert "refusing release 2" in p.stderr and "Traceback" not in p.stderr, p.stderr
    cache = b / "release_cache" / "releases"
    assert not cache.exists() or not any(cache.iterdir()), "nothing half-fetched stays in the cache"


def test_an_unreachable_store_fails_a_step_in_one_line(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    write_config(ws, prod_deployment_path=RELEASES_URL)
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}
    started = time.monotonic()
    p = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "deployment.py"), "--config",
                        str(ws / "config.json"), "--list"], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 1
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith(f"deployment: ERROR: {RELEASES_URL}/current: cannot read"), p.stderr
    assert time.monotonic() - started < 60, "short timeouts, not a hang"


def test_a_bucketless_location_is_refused_by_the_config(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    write_config(ws, prod_deployment_path="s3://")
    p = run_script("deployment.py", ws, "--list")
    assert p.returncode == 2 and "must name a bucket" in p.stderr


def test_an_s3_landing_prefix_is_ingested_under_the_landing_rules(s3: str, tmp_path: Path) -> None:
    import boto3

    s3c = boto3.client("s3")
    ws = make_workspace(tmp_path / "ws")
    write_config(ws, input_folder_path=f"s3://{BUCKET}/landing/", ingestion={"settle_seconds": 6})
    practice = (ws / "practicedata" / "dataset1.csv").read_bytes()
    s3c.put_object(Bucket=BUCKET, Key="landing/dataset1.csv", Body=practice)
    s3c.put_object(Bucket=BUCKET, Key="landing/notes.txt", Body=b"not a data file")
    s3c.put_object(Bucket=BUCKET, Key="landing/older/dataset9.csv", Body=practice)  # not directly under the prefix

    first = run_json("ingestion.py", ws)
    assert first["landing_files"] == 1 and not first["ingested_files"], "uploaded just now: not settled yet"
    time.sleep(6.5)
    second = run_json("ingestion.py", ws)
    assert [f["name"] for f in second["ingested_files"]] == ["landing_cache/dataset1.csv"]
    rows = len(practice.decode().strip().splitlines()) - 1
    assert second["rows_read"] == rows

    # A corrected re-delivery of the same object: the old version's rows leave, the new one's join.
    lines = practice.decode().splitlines(keepends=True)
    fixed = lines[0] + lines[1].replace(",0\n", ",1\n") + "".join(lines[2:])
    s3c.put_object(Bucket=BUCKET, Key="landing/dataset1.csv", Body=fixed.encode())
    time.sleep(6.5)
    third = run_json("ingestion.py", ws)
    assert third["rows_added"] == 1 and third["rows_removed"] == 1, third
    finaldata = (ws / "ingesteddata" / "finaldata.csv").read_text()
    assert lines[1].replace(",0\n", ",1\n") in finaldata and lines[1] not in finaldata
    assert sorted(p.name for p in (ws / "landing_cache").iterdir()) == ["dataset1.csv"]


def test_a_deployment_waits_while_another_host_holds_the_release_lock(s3: str, tmp_path: Path, pg_url: str) -> None:
    """Over one PostgreSQL history the release lock holds across hosts (each with its own release cache): a host
    deploying while another deploys would otherwise see the same newest release and upload its own under the same
    number. Here the test plays the other host, holding the lock as a deployment does."""
    import psycopg

    import history

    hosts = []
    for name in ("a", "b"):
        ws = host(tmp_path / name, f"s3://{BUCKET}/both")
        for config in ("config.json", "config.practice.json"):
            cfg = json.loads((ws / config).read_text())
            (ws / config).write_text(json.dumps({**cfg, "history_url": pg_url}))
        hosts.append(ws)
    a, b = hosts
    deploy_shipped(a)
    for script in ("ingestion.py", "training.py", "scoring.py"):
        assert run_script(script, b).returncode == 0
    with psycopg.connect(pg_url, autocommit=True) as other:
        assert other.execute("SELECT pg_try_advisory_lock(%s)", (history.RELEASE_LOCK_KEY,)).fetchone()[0]
        waiting = subprocess.Popen([sys.executable, str(Path(__file__).parents[1] / "deployment.py"), "--config",
                                    str(b / "config.json"), "--json"], stdout=subprocess.PIPE, text=True)
        time.sleep(8)
        assert waiting.poll() is None, "host b deployed while another host held the release lock"
    out, _ = waiting.communicate(timeout=120)
    assert waiting.returncode == 0 and json.loads(out)["version"] == 3
    assert listed(a) == ([1, 2, 3], 3)
