"""Alerts through Apprise, with real receivers: a local HTTP server behind json:// and a local SMTP server behind
mailto://, reached by the real fullprocess.py on the shipped data; and /health's last successful run."""
from __future__ import annotations

import email
import email.policy
import json
import mailbox
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult

import generate_data
from conftest import ROOT, free_port, make_workspace, run_script, use_history, write_config

PRACTICE = {"input_folder_path": "practicedata", "output_model_path": "practicemodels"}


class Receiver(BaseHTTPRequestHandler):
    """A webhook endpoint: keeps each JSON body posted to it, with its path, on the server."""

    def do_POST(self) -> None:
        """Keep the body and answer 200."""
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append({"path": self.path, **json.loads(body)})  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads what arrived, not the access log."""


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP server on a free loopback port: its json:// URL and the messages it received."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"json://127.0.0.1:{server.server_address[1]}/alerts", server.received  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def smtp_login(server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> AuthResult:
    """The local SMTP server's one account: user / pass."""
    return AuthResult(success=(auth.login, auth.password) == (b"user", b"pass"))


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real SMTP server (aiosmtpd, plain, with a login) on a free loopback port delivering into a Maildir: the
    mailto:// URL that reaches it and the Maildir."""
    port, maildir = free_port(), tmp_path / "maildir"
    controller = Controller(Mailbox(maildir), hostname="127.0.0.1", port=port, authenticator=smtp_login,
                            auth_require_tls=False)  # a local test server without a certificate
    controller.start()
    # mailto:// (not mailtos://) with mode=insecure: no TLS; smtp= names the server, so no provider defaults apply
    url = (f"mailto://user:pass@127.0.0.1:{port}?smtp=127.0.0.1&mode=insecure"
           f"&from=risk@example.com&to=ops@example.com")
    try:
        yield url, maildir
    finally:
        controller.stop()


def mails(maildir: Path) -> list[EmailMessage]:
    """The messages delivered so far, oldest first."""
    box = mailbox.Maildir(maildir, create=False)
    msgs = [email.message_from_bytes(box.get_bytes(k), policy=email.policy.default) for k in box.keys()]
    return sorted(msgs, key=lambda m: m["Date"].datetime)  # type: ignore[return-value]


def configure(ws: Path, urls: list[str], **alerts: Any) -> None:
    """Both of the workspace's configs with these alert URLs (they share the history store, which stays where
    it is)."""
    kept = {k: v for k, v in json.loads((ws / "config.json").read_text()).items() if k == "history_url"}
    write_config(ws, alerts={"urls": urls, **alerts}, **kept)
    write_config(ws, "config.practice.json", alerts={"urls": urls, **alerts}, **PRACTICE, **kept)


def tick(ws: Path, config: str = "config.json", code: int = 0) -> subprocess.CompletedProcess:
    """One real fullprocess run, asserting its exit code."""
    p = run_script("fullprocess.py", ws, config=config)
    assert p.returncode == code, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    assert "Traceback" not in p.stderr
    return p


def kinds(title: str) -> list[str]:
    """The kinds of event a message's title names: "Risk assessment host:folder: model-drift, deploy"."""
    return title.rsplit(": ", 1)[1].split(", ")


def alert_rows(ws: Path) -> list[tuple[str, str, int]]:
    """(kind, target, delivered) of every alert the history recorded, in order."""
    db = sqlite3.connect(ws / "history" / "history.sqlite3")
    try:
        return db.execute("SELECT kind, target, delivered FROM alerts ORDER BY id").fetchall()
    finally:
        db.close()


@pytest.fixture(scope="module")
def practice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with release 1 bootstrapped from the practice data and no alerts configured (built once)."""
    ws = make_workspace(tmp_path_factory.mktemp("alerts") / "practice")
    tick(ws, "config.practice.json")
    return ws


def clone(state: Path, dst: Path) -> Path:
    """A private copy of a prepared workspace (symlinks kept, so current still points into releases/)."""
    shutil.copytree(state, dst, symlinks=True)
    return dst


def practice_copy(practice: Path, dst: Path, backend: str, request: pytest.FixtureRequest) -> Path:
    """The practice workspace for one test: a copy on SQLite; on PostgreSQL, bootstrapped afresh into a database of
    its own (a copied SQLite file would not move there)."""
    if backend == "sqlite":
        return clone(practice, dst)
    ws = make_workspace(dst)
    use_history(ws, backend, request)
    tick(ws, "config.practice.json")
    return ws


def break_store(ws: Path) -> bytes:
    """Spoil the ingested store's manifest (the next run fails); returns what it held."""
    path = ws / "ingesteddata" / "store" / "manifest.json"
    good = path.read_bytes()
    path.write_text("{")
    return good


# ---------------------------------------------------------------- what arrives, where

def test_drift_and_deploy_arrive_by_webhook_and_by_email(practice, tmp_path, webhook, smtp):
    (url, received), (mailto, maildir) = webhook, smtp
    ws = clone(practice, tmp_path / "ws")
    configure(ws, [url, mailto])
    p = tick(ws)
    assert "model drift: drift" in p.stdout and "deployed release 2" in p.stdout
    (msg,) = received
    assert msg["path"] == "/alerts" and msg["type"] == "warning"  # the most severe kind's type
    assert kinds(msg["title"]) == ["model-drift", "data-drift", "deploy"]
    lines = msg["message"].splitlines()
    assert lines[0].startswith("model-drift: release 1: ") and lines[1].startswith("data-drift: release 1: ")
    assert lines[2].startswith("deploy: challenger F1") and lines[2].endswith("deployed release 2")
    assert lines[3] == "run: " + p.stdout.strip()
    assert lines[4].startswith("at: ") and str(ws / "config.json") in lines[4]
    (mail,) = mails(maildir)
    assert mail["To"] == "ops@example.com" and "risk@example.com" in mail["From"]
    assert mail["Subject"] == msg["title"]
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert text.strip() == msg["message"].strip()
    # Each kind once to each URL, recorded under a hash of the URL (its password never reaches the history).
    rows = alert_rows(ws)
    assert sorted(k for k, _, ok in rows if ok) == sorted(["model-drift", "data-drift", "deploy"] * 2)
    assert len({t for _, t, _ in rows}) == 2
    assert b"pass@" not in (ws / "history" / "history.sqlite3").read_bytes()


def test_a_second_drift_within_the_cooldown_sends_only_what_is_new(practice, tmp_path, webhook):
    url, received = webhook
    ws = clone(practice, tmp_path / "ws")
    configure(ws, [url])
    tick(ws)  # drift, release 2 deployed
    assert kinds(received[0]["title"]) == ["model-drift", "data-drift", "deploy"]
    # Clients whose outcomes are recorded the wrong way round: release 2 drifts on them, and a model retrained with
    # them is worse on the test data.
    poisoned = generate_data.clients(np.random.default_rng(1), 600, "new")
    poisoned["exited"] = 1 - poisoned["exited"]
    poisoned.to_csv(ws / "sourcedata" / "poisoned.csv", index=False)
    p = tick(ws)
    assert "model drift: drift" in p.stdout and "challenger rejected" in p.stdout
    assert len(received) == 2 and kinds(received[1]["title"]) == ["challenger-refused"]
    assert received[1]["message"].startswith("challenger-refused: challenger F1")
    # With no cooldown, every event goes again.
    (ws / "sourcedata" / "poisoned2.csv").write_text(
        poisoned.assign(corporation=poisoned["corporation"] + "x").to_csv(index=False))
    configure(ws, [url], cooldown_minutes=0)
    tick(ws)
    assert "model-drift" in kinds(received[2]["title"]) and "challenger-refused" in kinds(received[2]["title"])


def test_a_failed_run_is_told_and_so_is_the_recovery(practice, tmp_path, webhook, backend, request):
    url, received = webhook
    ws = practice_copy(practice, tmp_path / "ws", backend, request)
    configure(ws, [url])
    good = break_store(ws)
    p = tick(ws, code=1)
    (failed,) = received
    assert kinds(failed["title"]) == ["failed"] and failed["type"] == "failure"
    assert failed["message"].splitlines()[0] == "failed: " + p.stderr.strip().splitlines()[-1].split(": ", 2)[2]
    tick(ws, code=1)  # still failing, within the cooldown: nothing new to say
    assert len(received) == 1
    (ws / "ingesteddata" / "store" / "manifest.json").write_bytes(good)
    tick(ws)
    recovered = received[1]
    assert kinds(recovered["title"]) == ["recovered", "model-drift", "data-drift", "deploy"]
    assert recovered["message"].startswith("recovered: this run succeeded after 2 failed runs (the first started at ")
    tick(ws)  # no new data, and nothing to say
    assert len(received) == 2
    # Failing again soon after the recovery is told at once: a recovery ends the cooldown of "failed".
    break_store(ws)
    tick(ws, code=1)
    assert len(received) == 3 and kinds(received[2]["title"]) == ["failed"]


def test_an_unreachable_receiver_is_a_warning_and_the_run_succeeds(tmp_path, webhook):
    url, received = webhook
    closed = free_port()  # nothing listens there
    silent = socket.socket()  # listens, never answers: only the short timeout ends the wait
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    ws = make_workspace(tmp_path / "ws")
    try:
        configure(ws, [f"json://127.0.0.1:{closed}/down", f"json://127.0.0.1:{silent.getsockname()[1]}/silent",
                       "nonsense://nowhere", url])
        t0 = time.monotonic()
        p = tick(ws, "config.practice.json")
        seconds = time.monotonic() - t0
    finally:
        silent.close()
    assert p.stdout.startswith("ingested") and "deployed release 1" in p.stdout
    warnings = [line for line in p.stderr.splitlines() if line.startswith("fullprocess.alerts: WARNING: ")]
    assert len(warnings) == 3, p.stderr
    assert f"alert to json://127.0.0.1:{closed}/down" in warnings[0] and "not sent (deploy)" in warnings[0]
    assert "Connection error" in warnings[0] and "the run goes on" in warnings[0]
    assert "/silent" in warnings[1]
    assert "alerts.urls[2]" in warnings[2] and "not a URL Apprise can use (nonsense://...)" in warnings[2]
    assert "apprise" not in p.stderr.replace("Apprise", "")  # Apprise's own lines are folded into ours
    (msg,) = received  # the receiver that works still gets its message: the bootstrap is a deploy
    assert kinds(msg["title"]) == ["deploy"] and msg["type"] == "success"
    assert msg["message"].startswith("deploy: bootstrap: deployed release 1 (nothing is deployed")
    assert seconds < 60, "the silent receiver held the run up"
    # Undelivered alerts start no cooldown: the next event is tried again.
    assert [ok for kind, _, ok in alert_rows(ws)] == [0, 0, 0, 1]


def test_a_tick_with_nothing_to_say_does_not_import_apprise(practice, tmp_path, webhook):
    url, received = webhook
    ws = clone(practice, tmp_path / "ws")
    configure(ws, [url])
    p = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "fullprocess.py"), "--config",
                        str(ws / "config.practice.json")], cwd="/", capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.startswith("no new data"), p.stderr[-3000:]
    modules = {line.rsplit("|", 1)[1].strip() for line in p.stderr.splitlines()
               if line.startswith("import time:") and "|" in line}
    assert "alerts" in modules and "history" in modules, "importtime output not understood"
    assert not any(m.split(".")[0] == "apprise" for m in modules)
    assert received == []


# ---------------------------------------------------------------- /health

def test_health_shows_the_last_successful_run_and_its_age(practice, tmp_path):
    from app import create_app
    fresh = make_workspace(tmp_path / "fresh")
    assert create_app(fresh / "config.json").test_client().get("/health").get_json()["last_successful_run"] is None
    ws = clone(practice, tmp_path / "ws")
    client = create_app(ws / "config.json").test_client()
    first = client.get("/health").get_json()
    last = first["last_successful_run"]
    assert first["release"] == 1 and last["outcome"] == "ok"
    ended = datetime.fromisoformat(last["at"])
    assert ended.tzinfo is not None and last["age_seconds"] >= 0
    assert abs((datetime.now(timezone.utc) - ended).total_seconds() - last["age_seconds"]) < 5
    time.sleep(0.2)
    assert client.get("/health").get_json()["last_successful_run"]["age_seconds"] > last["age_seconds"]
    break_store(ws)
    tick(ws, code=1)  # a failed run is not a successful one: the age keeps growing
    after = client.get("/health").get_json()["last_successful_run"]
    assert after["at"] == last["at"] and after["age_seconds"] > last["age_seconds"]
