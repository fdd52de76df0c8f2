"""The PDF report: parsed back as text, every section and the current F1 present, pages rendered non-blank."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, free_port, make_workspace, run_script, write_config

SECTIONS = ["Model quality on the test data", "Clients to call first", "Latest drift check",
            "Trends over runs", "Summary statistics of the ingested data", "Missing data", "Step timings",
            "Dependencies", "Ingested files", "Rejected files", "Alerts sent"]


ODD_NAME = "q3 <final> & signed.csv"


def need(tool: str) -> str:
    """The path of a poppler tool; the test fails (not skips) without it: .ci/run installs poppler-utils."""
    path = shutil.which(tool)
    assert path, f"{tool} not found: install Debian's poppler-utils (.ci/run does)"
    return path


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace where fullprocess bootstrapped, detected drift, redeployed and wrote the report; its alerts went
    to a receiver that is down, so they are recorded as not delivered."""
    ws = make_workspace(tmp_path_factory.mktemp("report"))
    alerts = {"urls": [f"json://127.0.0.1:{free_port()}/down"]}
    write_config(ws, alerts=alerts)
    write_config(ws, "config.practice.json", alerts=alerts, input_folder_path="practicedata",
                 output_model_path="practicemodels")
    (ws / "sourcedata" / "broken.csv").write_text("corporation,lastmonth_activity\nabc,1\n")
    (ws / "sourcedata" / ODD_NAME).write_text("corporation;exited\nabc;1\n")  # reportlab markup in a name
    for config in ("config.practice.json", "config.json"):
        p = run_script("fullprocess.py", ws, config=config, timeout=300)
        assert p.returncode == 0, p.stderr
    return ws


def test_report_has_every_section_and_the_current_f1(reported: Path) -> None:
    pdf = reported / "reports" / "report.pdf"
    text = subprocess.run([need("pdftotext"), "-layout", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    for section in SECTIONS:
        assert section in text, section
    f1 = json.loads((reported / "production_deployment" / "current" / "scores.json").read_text())["f1"]
    assert f"{f1:.3f}" in text
    assert "Release 2" in text or "release 2" in text
    assert "sourcedata/broken.csv" in text and "missing column" in text  # the rejected file and why
    assert ODD_NAME in " ".join(text.split())
    pages = text.count("\f")
    for n in range(1, pages + 1):
        assert f"page {n}" in text


def pdf_text(ws: Path) -> str:
    """The report's text, its whitespace runs made single spaces (a line may wrap anywhere)."""
    out = subprocess.run([need("pdftotext"), "-layout", str(ws / "reports" / "report.pdf"), "-"],
                         capture_output=True, text=True, check=True).stdout
    return " ".join(out.split())


def test_report_headline_says_what_was_done_and_lists_the_alerts(reported: Path) -> None:
    import history
    import reportdata
    from config import load_config
    text = pdf_text(reported)
    assert "Latest check: drift found -> retrained -> release 2 deployed" in text
    # near the top: before the first section
    assert text.index("Latest check:") < text.index("Model quality on the test data")
    cfg = load_config(reported / "config.json")
    alerts = history.call(cfg, "read", history.recent_alerts, 10)
    assert alerts and not any(a["delivered"] for a in alerts)  # the receiver was down
    # A tick sends its alerts before it refreshes its outputs: the PDF lists every alert, its own tick's too.
    assert f"Alerts sent (latest {len(alerts)}) when kind delivered title" in text
    for a in alerts:  # a long title wraps in its cell, so pdftotext may put its words around the row's others
        assert f"{reportdata.when(a['at'])} {a['kind']} no" in text
        assert all(word in text for word in a["title"].split())
    # the trend figure holds the realized and estimated F1 of each check
    charts = {c["title"]: c for c in reportdata.trend_series(reportdata.trends(cfg))}
    f1 = charts["F1 per drift check: realized and estimated"]["series"]
    assert [x for x, _ in f1["realized F1"]] == [1] and 0 <= f1["realized F1"][0][1] <= 1


def test_report_pages_render_non_blank(reported: Path, tmp_path: Path) -> None:
    from PIL import Image
    pdf = reported / "reports" / "report.pdf"
    subprocess.run([need("pdftoppm"), "-r", "40", "-png", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) >= 3
    for page in pages:
        lo, hi = Image.open(page).convert("L").getextrema()
        assert hi - lo > 100, f"{page.name} looks blank"


def test_confusion_matrix_png_and_dated_copies(reported: Path) -> None:
    png = reported / "models" / "confusionmatrix.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = sorted((reported / "reports").glob("report-*.pdf"))
    p = run_script("reporting.py", reported)
    assert p.returncode == 0, p.stderr
    assert "report for release 2" in p.stdout
    assert len(sorted((reported / "reports").glob("report-*.pdf"))) >= len(first)


def test_outputs_of_a_run_killed_before_them_are_made_by_the_next_tick(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    assert run_script("fullprocess.py", ws, config="config.practice.json").returncode == 0
    marker = ws / "ingesteddata" / ".outputs-pending"
    # Kill the run that deploys release 2 the moment it has decided its outputs are stale.
    p = subprocess.Popen([sys.executable, str(ROOT / "fullprocess.py"), "--config", str(ws / "config.json")],
                         cwd=ws, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while p.poll() is None and not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert marker.exists(), "the run ended before it could be killed"
    report = ws / "reports" / "report.pdf"
    stale = subprocess.run([need("pdftotext"), str(report), "-"], capture_output=True, text=True).stdout
    assert "Release 2" not in stale
    # The next tick (there is no new file) refreshes the outputs of release 2 and clears the marker.
    nxt = run_script("fullprocess.py", ws, timeout=300)
    assert nxt.returncode == 0, nxt.stderr
    text = subprocess.run([need("pdftotext"), str(report), "-"], capture_output=True, text=True, check=True).stdout
    assert "Release 2" in text and not marker.exists()


@pytest.mark.parametrize(("verdict", "decisions", "expected"), [
    ("drift", [("retrain", "model drift: F1 0.100 on 1,700 new rows"),
               ("reject-challenger", "challenger F1 0.812 vs release 1's 0.860 on the test data: worse by more than "
                                     "the 0.010 tolerance; release 1 stays")],
     "drift found -> retrained -> challenger refused (F1 0.81 vs 0.86) -> release 1 stays"),
    ("no-drift", [("keep", "release 1 stays: F1 0.9 is not below 0.86")], "no drift -> release 1 stays"),
    ("insufficient-data", [("keep", "release 1 stays: 3 new rows")],
     "insufficient data (rows wait for the next check)"),
    ("no-drift", [("retrain", "data drift (drift.retrain_on_data_drift is on): PSI"),
                  ("deploy", "challenger F1 0.870 vs release 1's 0.860 on the test data: deployed release 2")],
     "no drift -> data drift -> retrained -> release 2 deployed"),
])
def test_headline_names_what_was_done(verdict: str, decisions: list[tuple[str, str]], expected: str) -> None:
    import reportdata
    check = {"verdict": verdict, "release": 1, "est_f1": None}
    assert reportdata.headline(check, [{"decision": d, "reason": r} for d, r in decisions]) == expected
    with_estimate = reportdata.headline({**check, "est_f1": 0.7712, "est_low": 0.68, "est_high": 0.85}, [])
    assert with_estimate.endswith("; estimated F1 without labels 0.77 (0.68-0.85)")
