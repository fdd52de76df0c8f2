"""The /dashboard page in a real headless Chromium against a real gunicorn, after a history of several fullprocess
runs over a sequence of data drops: the key figures are visible, nothing is fetched from outside the app, the
browser logs no error, and the trend charts (on the page and in the PDF) show every run."""
from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import requests
from test_reporting import need

import generate_data
from config import load_config
from conftest import free_port, gunicorn_server, make_workspace, run_script, write_config

DROPS = ["dataset3.csv", "broken.csv", "dataset4.csv", "data005.csv"]  # in this order, one per fullprocess run


@pytest.fixture(scope="module")
def history_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace bootstrapped on the practice data, then fed the source files one drop per fullprocess run."""
    ws = make_workspace(tmp_path_factory.mktemp("dashboard"))
    (ws / "sourcedata" / "broken.csv").write_text("corporation,lastmonth_activity\nabc,1\n")
    fresh = generate_data.clients(np.random.default_rng(5), 400, "new")
    (ws / "sourcedata" / "data005.csv").write_text(fresh.to_csv(index=False))
    (ws / "drops").mkdir()
    # alerts go to a receiver that is down: each is recorded, as not delivered
    alerts = {"urls": [f"json://127.0.0.1:{free_port()}/down"]}
    write_config(ws, input_folder_path="drops", alerts=alerts)
    runs = [("config.practice.json", None)] + [("config.json", name) for name in DROPS]
    for config, drop in runs:
        if drop:
            shutil.copy(ws / "sourcedata" / drop, ws / "drops" / drop)
        p = run_script("fullprocess.py", ws, config=config, timeout=300)
        assert p.returncode == 0, p.stderr
    p = run_script("fullprocess.py", ws)  # nothing new: a light tick, not a run that did work
    assert p.returncode == 0 and "no new data" in p.stdout, p.stdout
    return ws


@pytest.fixture(scope="module")
def server(history_ws: Path) -> Iterator[str]:
    """The real gunicorn serving that workspace."""
    with gunicorn_server(history_ws) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, driven by selenium through Debian's chromedriver (no driver download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "install Debian's chromium and chromium-driver (.ci/run does)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    b = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        yield b
    finally:
        b.quit()


def history_counts(ws: Path) -> dict[str, int]:
    """What the history store holds: release events, fullprocess runs that did work, drift checks of new rows."""
    with sqlite3.connect(f"file:{load_config(ws / 'config.json')['history_path']}?mode=ro", uri=True) as db:
        def one(sql: str) -> Any:
            return db.execute(sql).fetchone()[0]
        return {"releases": one("SELECT count(*) FROM releases"),
                "runs": one("SELECT count(*) FROM runs WHERE step = 'fullprocess' AND outcome = 'ok'"),
                "checks": one("SELECT count(*) FROM drift_checks WHERE new_rows > 0")}


def chart_points(browser: Any, title: str) -> dict[str, int]:
    """Points drawn per series in the dashboard chart with this title, counted from the rendered page."""
    from selenium.webdriver.common.by import By
    chart = browser.find_element(By.CSS_SELECTOR, f'svg[data-title^="{title}"]')
    return {g.get_attribute("data-series"): len(g.find_elements(By.TAG_NAME, "circle"))
            for g in chart.find_elements(By.CSS_SELECTOR, "g.series")}


def test_dashboard_in_headless_chromium(server: str, history_ws: Path, browser: Any, tmp_path: Path) -> None:
    from PIL import Image
    from selenium.webdriver.common.by import By
    browser.get(server + "dashboard")
    def text(css: str) -> str:
        return browser.find_element(By.CSS_SELECTOR, css).text
    scoring = requests.get(server + "scoring", timeout=10).json()
    # The key figures, as a manager sees them, agree with the API.
    assert browser.find_element(By.ID, "f1").is_displayed()
    assert text("#f1") == f"{scoring['f1']:.3f}" and text("#release") == str(scoring["release"])
    assert text("#roc_auc") == f"{scoring['roc_auc']:.3f}"
    cells = [int(c.text.split()[0].replace(",", "")) for c in browser.find_elements(By.CSS_SELECTOR, "#confusion td")]
    assert sum(cells) == scoring["rows"] == 600
    assert len(browser.find_elements(By.CSS_SELECTOR, "#clients tr")) == 1 + 20
    assert "sourcedata" not in text("#rejected") and "drops/broken.csv" in text("#rejected")
    assert "missing column" in text("#rejected")
    # Everything the page loaded came from the app itself: it works with no internet access.
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(u.startswith(server) for u in loaded), loaded
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    # The PDF is one click away.
    pdf = requests.get(browser.find_element(By.ID, "report-link").get_attribute("href"), timeout=10)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1400, height)
    shot = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(shot))
    lo, hi = Image.open(shot).convert("L").getextrema()
    assert hi - lo > 100 and Image.open(shot).size[1] >= height - 200


def test_trend_charts_show_every_run(server: str, history_ws: Path, browser: Any) -> None:
    counts = history_counts(history_ws)
    # The bootstrap and every drop did work; the last tick had nothing new and is not a run of the charts.
    assert counts["runs"] == 1 + len(DROPS)
    # Every drop of good rows was checked for drift (the rejected file brought no rows to check).
    assert counts["releases"] >= 2 and counts["checks"] == len(DROPS) - 1
    browser.get(server + "dashboard")
    assert chart_points(browser, "Step duration per run")["fullprocess"] == counts["runs"]
    assert chart_points(browser, "F1 on the test data per release") == {"F1": counts["releases"]}
    for title in ("Data drift per drift check", "Missing values per drift check"):
        per_feature = chart_points(browser, title)
        assert set(per_feature) == {"lastmonth_activity", "lastyear_activity", "number_of_employees"}
        assert set(per_feature.values()) == {counts["checks"]}
    from selenium.webdriver.common.by import By
    assert browser.find_element(By.ID, "trend-counts").text == (
        f"{counts['releases']} release events, {counts['runs']} fullprocess runs that did work and "
        f"{counts['checks']} drift checks of new rows.")
    # The PDF's trend page covers the same runs.
    text = subprocess.run([need("pdftotext"), str(history_ws / "reports" / "report.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    assert f"{counts['releases']} release events, {counts['runs']} fullprocess runs that did work" in " ".join(
        text.split())


def test_dashboard_shows_the_headline_and_the_alerts_sent(server: str, history_ws: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    import history
    import reportdata
    cfg = load_config(history_ws / "config.json")
    check, decisions = history.call(cfg, "read", history.latest_check)
    browser.get(server + "dashboard")
    headline = browser.find_element(By.ID, "headline")
    assert headline.is_displayed()
    # what was done, not a bare verdict: the release that serves now is named
    assert headline.text == reportdata.headline(check, decisions)
    assert f"release {check['release']}" in headline.text or "insufficient data" in headline.text
    if check.get("est_f1") is not None:
        assert f"estimated F1 without labels {check['est_f1']:.2f}" in headline.text
    alerts = history.call(cfg, "read", history.recent_alerts, 10)
    assert alerts  # every drop that drifted or deployed was alerted
    section = browser.find_element(By.ID, "alerts")
    assert section.is_displayed() and f"Alerts sent (latest {len(alerts)})" in section.text
    rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in section.find_elements(By.CSS_SELECTOR, "tr")[1:]]
    assert rows == [[reportdata.when(a["at"]), a["kind"], "no", a["title"]] for a in alerts]
    # the realized F1 of every check with labelled rows, and the estimate of every check that made one
    with sqlite3.connect(cfg["history_path"]) as db:
        realized, estimated = db.execute("SELECT count(new_score), count(est_f1) FROM drift_checks "
                                         "WHERE new_rows > 0").fetchone()
    assert realized > 0
    assert chart_points(browser, "F1 per drift check: realized and estimated") == {
        "realized F1": realized, "estimated F1 (no labels)": estimated}


def test_dashboard_without_a_release_says_so(tmp_path: Path) -> None:
    from app import create_app
    ws = make_workspace(tmp_path / "empty")
    page = create_app(ws / "config.json").test_client().get("/dashboard")
    assert page.status_code == 200
    assert b"no release is deployed yet" in page.data and b"No drift check has run yet" in page.data
    assert create_app(ws / "config.json").test_client().get("/dashboard/report.pdf").status_code == 404


def test_root_leads_to_the_dashboard(history_ws: Path) -> None:
    from app import create_app
    r = create_app(history_ws / "config.json").test_client().get("/")
    assert r.status_code == 302 and r.headers["Location"].endswith("/dashboard")
    assert json.loads((history_ws / "production_deployment" / "current" / "scores.json").read_text())["confusion"]
