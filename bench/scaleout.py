"""Releases shared by hosts: how fast a second host's API follows a deployment, and what serving costs.

    .venv/bin/python bench/scaleout.py                  # about 3 minutes; rewrites docs/scale-out.md's figures
    .venv/bin/python bench/scaleout.py --switches 3 --seconds 3 --no-doc    # a quick look

What it does, all on loopback:
1. Starts moto's S3 server (the emulator the tests use: it shows the protocol's round trips, not a real bucket's
   latency) and builds three workspaces from the shipped data: `local` (releases in a local folder, as a single
   machine runs) and hosts `a` and `b` (releases in s3://bench/prod, each with its own release cache). `local` and
   `a` run fullprocess.py on the practice then the source data (releases 1 and 2).
2. Starts gunicorn for `local` and for `b` (api.release_poll_seconds at its default).
3. Switch latency: --switches times, host a deploys its trained model again as a new release; a client of b's
   API asks POST /prediction (the test data) back to back and notes when the answers first name the new release.
   Latency = that moment minus the end of the deployment command (the pointer is written just before it ends).
4. Throughput: GET /scoring, GET /summarystats and POST /prediction on `local` and on `b`, 8 client threads,
   --seconds each, in the same run (bench_api.measure).
5. Prints the figures and rewrites the part of docs/scale-out.md between <!-- switch:start --> and
   <!-- switch:end -->.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests
from bench_api import free_port, measure, start_server, stop_server, wait_ready
from measure import PY, fmt, machine, run, write_doc

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "scale-out.md"
MARKS = ("<!-- switch:start -->", "<!-- switch:end -->")
BUCKET = "bench"


def workspace(ws: Path, api_url: str, releases: str | None) -> Path:
    """Shipped data and both configs in ws (releases in the given s3:// location, else locally)."""
    for folder in ("practicedata", "sourcedata", "testdata"):
        shutil.copytree(ROOT / folder, ws / folder)
    cfg = json.loads((ROOT / "config.json").read_text(encoding="utf-8"))
    cfg["url"] = api_url
    cfg["ingestion"] = {"settle_seconds": 0}
    if releases:
        cfg["prod_deployment_path"] = releases
    (ws / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    practice = {**cfg, "input_folder_path": "practicedata", "output_model_path": "practicemodels"}
    (ws / "config.practice.json").write_text(json.dumps(practice, indent=2), encoding="utf-8")
    return ws


def pipeline(ws: Path) -> None:
    """Releases 1 and 2, as `make run` deploys them."""
    for config in ("config.practice.json", "config.json"):
        run([PY, ROOT / "fullprocess.py", "--config", ws / config], ws, timeout=600)


def serve(ws: Path, port: int, logs: Path) -> subprocess.Popen:
    """gunicorn for a workspace, as `make serve` starts it."""
    proc = start_server([PY, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{port}",
                         "wsgi:app"], ROOT, logs / f"{ws.name}.log", RISK_CONFIG=str(ws / "config.json"))
    wait_ready(f"http://127.0.0.1:{port}", proc, logs / f"{ws.name}.log")
    return proc


def switch_latency(a: Path, url: str, switches: int) -> tuple[list[float], int, int]:
    """Seconds from each deployment on host a to the first answer of host b naming it; requests, failures."""
    body = {"filepath": "testdata/testdata.csv"}
    out, asked, failed = [], 0, 0
    with requests.Session() as s:
        s.trust_env = False
        for _ in range(switches):
            done = run([PY, ROOT / "deployment.py", "--config", a / "config.json", "--json"], a)
            version, t0 = json.loads(done["stdout"])["version"], time.monotonic()
            while True:
                r = s.post(url + "prediction", json=body, timeout=10)
                asked, failed = asked + 1, failed + (r.status_code != 200)
                if r.status_code == 200 and r.json()["release"] == version:
                    break
                if time.monotonic() - t0 > 60:
                    raise RuntimeError(f"host b never served release {version}")
            out.append(time.monotonic() - t0)
    return out, asked, failed


def bench(switches: int, seconds: float, write: bool) -> dict[str, Any]:
    """Run the whole benchmark; returns its figures."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    s3_port = free_port()
    moto = subprocess.Popen([str(Path(PY).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(s3_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    servers: dict[str, subprocess.Popen] = {}
    try:
        os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{s3_port}", AWS_ACCESS_KEY_ID="bench",
                          AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")  # child_env passes them on
        for _ in range(100):
            try:
                requests.put(f"http://127.0.0.1:{s3_port}/{BUCKET}", timeout=2).raise_for_status()
                break
            except requests.RequestException:
                time.sleep(0.2)
        ports = {name: free_port() for name in ("local", "b")}
        local = workspace(tmp / "local", f"http://127.0.0.1:{ports['local']}/", None)
        a = workspace(tmp / "a", f"http://127.0.0.1:{free_port()}/", f"s3://{BUCKET}/prod")
        b = workspace(tmp / "b", f"http://127.0.0.1:{ports['b']}/", f"s3://{BUCKET}/prod")
        print("building releases ...", flush=True)
        pipeline(local)
        pipeline(a)
        servers = {"local": serve(local, ports["local"], tmp), "b": serve(b, ports["b"], tmp)}
        print(f"measuring {switches} switches ...", flush=True)
        latencies, asked, failed = switch_latency(a, f"http://127.0.0.1:{ports['b']}/", switches)
        rows = {}
        for method, path, body in (("GET", "scoring", None), ("GET", "summarystats", None),
                                   ("POST", "prediction", {"filepath": "testdata/testdata.csv"})):
            for name in ("local", "b"):
                print(f"  {method} /{path} on {name} ...", flush=True)
                rows[(path, name)] = measure(f"http://127.0.0.1:{ports[name]}/{path}", method, body,
                                             servers[name], 8, seconds, "threads", 10)
        info = {"machine": machine(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                "latencies": latencies, "asked": asked, "failed": failed, "rows": rows, "seconds": seconds}
        print(render(info))
        if write:
            write_doc(DOC, render(info), MARKS)
        return info
    finally:
        for p in servers.values():
            stop_server(p)
        moto.terminate()
        moto.wait(timeout=15)
        shutil.rmtree(tmp, ignore_errors=True)


def render(info: dict[str, Any]) -> str:
    """The docs section."""
    m, lat = info["machine"], info["latencies"]
    lines = [MARKS[0], f"Measured {info['date']} on {m.get('cpu', '?')} ({m.get('cores', '?')} cores), "
             f"`.venv/bin/python bench/scaleout.py`; S3 is moto's server on loopback.", "",
             f"- Release switch across hosts ({len(lat)} deployments on host a, host b's API polling at the "
             f"default api.release_poll_seconds): median **{statistics.median(lat):.2f} s**, "
             f"max {max(lat):.2f} s, min {min(lat):.2f} s; {info['failed']} of {info['asked']:,} requests during the "
             f"switches failed.", "",
             "| endpoint | releases local: req/s | releases on S3: req/s | S3/local | errors (local, S3) |",
             "|---|---:|---:|---:|---|"]
    for path in ("scoring", "summarystats", "prediction"):
        loc, rem = info["rows"][(path, "local")], info["rows"][(path, "b")]
        lines.append(f"| {path} | {fmt(loc['rps'], 0)} | {fmt(rem['rps'], 0)} | {rem['rps'] / loc['rps']:.2f} | "
                     f"{loc['errors']}, {rem['errors']} |")
    lines += ["", f"{info['seconds']:g} s per endpoint and server, 8 client threads.", MARKS[1]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--switches", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-doc", action="store_true", help="print only; docs/scale-out.md untouched")
    args = parser.parse_args()
    sys.exit(0 if bench(args.switches, args.seconds, not args.no_doc) else 1)
