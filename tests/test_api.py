"""The HTTP API: every endpoint and error case, through the Flask test client and a real gunicorn server.

`deployed` (a workspace with release 2), `app` and `client` come from conftest.py."""
from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from conftest import deploy_shipped, free_port, gunicorn_server, run_script, write_config

__all__ = ["FEATURES", "ROWS", "deploy_shipped"]  # test_api_abuse.py imports these from here

FEATURES = ["lastmonth_activity", "lastyear_activity", "number_of_employees"]


@pytest.fixture(scope="module")
def server(deployed: Path) -> Iterator[str]:
    """A real gunicorn serving the deployed workspace on a free loopback port; yields its base URL."""
    with gunicorn_server(deployed) as url:
        yield url


# ---- predictions: every accepted request shape ------------------------------------------------------------

ROWS = [{"corporation": "aaa", "lastmonth_activity": 10, "lastyear_activity": 1500, "number_of_employees": 30},
        {"corporation": "bbb", "lastmonth_activity": 900, "lastyear_activity": 1500, "number_of_employees": 30}]


@pytest.mark.parametrize("body", [
    {"records": ROWS},
    {"dataframe_records": ROWS},
    {"dataframe_split": {"columns": list(ROWS[0]), "data": [list(r.values()) for r in ROWS]}},
    {"instances": ROWS},
    {"instances": [[r[f] for f in FEATURES] for r in ROWS]},
    {"inputs": {k: [r[k] for r in ROWS] for k in ROWS[0]}},
    {"inputs": ROWS},
    ROWS,
])
def test_prediction_json_shapes(client: Any, body: Any) -> None:
    r = client.post("/prediction", json=body)
    assert r.status_code == 200, r.get_json()
    out = r.get_json()
    assert out["release"] == 2 and out["rows"] == 2
    # a client whose activity collapsed is at risk; one far above its usual level is not
    assert out["predictions"] == [1, 0]
    assert out["probabilities"][0] > 0.5 > out["probabilities"][1]


def test_prediction_csv_body_and_ids(client: Any) -> None:
    csv = "corporation,lastmonth_activity,lastyear_activity,number_of_employees\nxyz,10,1500,30\nqqq,,1500,30\n"
    out = client.post("/prediction", data=csv, content_type="text/csv").get_json()
    assert out["ids"] == ["xyz", "qqq"] and out["rows"] == 2


@pytest.mark.parametrize("key", ["filepath", "file_path", "data_file", "data_path"])
def test_prediction_named_file_post_and_get(client: Any, key: str) -> None:
    post = client.post("/prediction", json={key: "testdata/testdata.csv"})
    get = client.get(f"/prediction?{key}=testdata/testdata.csv")
    assert post.status_code == get.status_code == 200
    assert post.get_json()["rows"] == 600 and post.get_json() == get.get_json()


def test_prediction_matches_model_predict(client: Any, deployed: Path) -> None:
    from config import load_config
    from datacontract import read_data_file
    from releases import load_deployed_model
    cfg = load_config(deployed / "config.json")
    model, _ = load_deployed_model(cfg)
    df = read_data_file(deployed / "testdata" / "testdata.csv", cfg)
    out = client.get("/prediction?filepath=testdata/testdata.csv").get_json()
    assert out["predictions"] == model.predict(df[FEATURES]).tolist()


# ---- client mistakes: 4xx with a JSON error, never a 500 --------------------------------------------------

@pytest.mark.parametrize("path,status", [
    ("../../etc/passwd", 403), ("/etc/passwd", 403), ("testdata/../../../etc/passwd", 403),
    ("%2e%2e/%2e%2e/etc/passwd", 404), ("http://example.com/x.csv", 403), ("file:///etc/passwd", 403),
    ("testdata/missing.csv", 404),
])
def test_path_tricks_refused(client: Any, path: str, status: int) -> None:
    r = client.post("/prediction", json={"filepath": path})
    assert r.status_code == status
    assert "error" in r.get_json()
    if status == 403:
        assert "testdata" in r.get_json()["error"]  # names the allowed folders


def test_url_encoded_dots_in_query_refused(client: Any) -> None:
    r = client.get("/prediction?filepath=%2e%2e%2f%2e%2e%2fetc%2fpasswd")
    assert r.status_code == 403


def test_course_style_leading_slash_path(client: Any, deployed: Path) -> None:
    """The course writes paths from the project folder with a leading slash; they resolve inside the data folders."""
    post = client.post("/prediction", json={"filepath": "/testdata/testdata.csv"})
    assert post.status_code == 200, post.get_json()
    out = post.get_json()
    assert out["rows"] == 600 and len(out["predictions"]) == len(out["probabilities"]) == 600
    assert client.get("/prediction?filepath=/testdata/testdata.csv").get_json() == out
    # a real absolute path inside the data folders is still read as itself
    real = client.post("/prediction", json={"filepath": str(deployed / "testdata" / "testdata.csv")})
    assert real.status_code == 200 and real.get_json() == out


@pytest.mark.parametrize("path", ["/etc/passwd", "/../x", "/../../etc/passwd", "/testdata/../../x.csv"])
def test_leading_slash_outside_the_data_folders_refused(client: Any, path: str) -> None:
    """A leading slash is no way out: what leads outside the data folders stays a 4xx with a JSON error."""
    r = client.post("/prediction", json={"filepath": path})
    assert 400 <= r.status_code < 500 and "error" in r.get_json()


def test_escaping_symlink_refused(client: Any, deployed: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("corporation,lastmonth_activity,lastyear_activity,number_of_employees\nx,1,2,3\n")
    link = deployed / "testdata" / "link.csv"
    link.symlink_to(secret)
    try:
        r = client.get("/prediction?filepath=testdata/link.csv")
        assert r.status_code == 403
    finally:
        link.unlink()


@pytest.mark.parametrize("kwargs,status,words", [
    ({"json": {"records": [{"lastmonth_activity": 1, "lastyear_activity": 2}]}}, 400, "number_of_employees"),
    ({"json": {"records": [{**ROWS[0], "lastmonth_activity": "lots"}]}}, 400, "expected a number"),
    ({"json": {"records": []}}, 400, "no rows"),
    ({"json": {}}, 400, "needs one of"),
    ({"json": 42}, 400, "object"),
    ({"data": "{not json", "content_type": "application/json"}, 400, "malformed JSON"),
    ({"data": "a;b;c\n1;2;3\n", "content_type": "text/csv"}, 400, "semicolon"),
    ({"data": b"\xff\xfe\x00\x01", "content_type": "text/csv"}, 400, "UTF"),
    ({"data": "", "content_type": "application/json"}, 400, "empty request body"),
    ({"json": {"dataframe_split": {"columns": FEATURES, "data": [[1, 2]]}}}, 400, "3 values"),
    ({"json": {"instances": [[1, 2, 3, 4]]}}, 400, "3 values"),
    ({"json": {"filepath": 7}}, 400, "string"),
])
def test_bad_requests_are_4xx_json(client: Any, kwargs: dict[str, Any], status: int, words: str) -> None:
    r = client.post("/prediction", **kwargs)
    assert r.status_code == status
    assert words in r.get_json()["error"]


def limited_client(deployed: Path, tmp_path: Path, **api: int) -> Any:
    """A test client for the deployed release with lowered api limits; tmp_path/drops is its input folder."""
    from app import create_app  # built by hand: the data folders of `deployed` with lower limits
    (tmp_path / "drops").mkdir(exist_ok=True)
    cfg = write_config(tmp_path, input_folder_path=str(tmp_path / "drops"),
                       test_data_path=str(deployed / "testdata"), output_folder_path=str(deployed / "ingesteddata"),
                       prod_deployment_path=str(deployed / "production_deployment"), api=api)
    return create_app(cfg).test_client()


def test_too_many_rows_and_too_large_body(deployed: Path, tmp_path: Path) -> None:
    c = limited_client(deployed, tmp_path, max_rows=100, max_body_bytes=50_000)
    r = c.get("/prediction?filepath=testdata.csv")  # a bare name is looked up in each data folder
    assert r.status_code == 413 and "100-row limit" in r.get_json()["error"]
    r = c.post("/prediction", json={"records": ROWS * 300})
    assert r.status_code == 413 and "limit" in r.get_json()["error"]


HEADER = "corporation,lastmonth_activity,lastyear_activity,number_of_employees\n"
GARBAGE = "\x00\x01 not;a,row\t\"\n"  # any parse of it is a 400


@pytest.fixture
def no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A named file that gets parsed fails the test: the refusals below must come before any parsing."""
    import apirequest

    def parse_csv(*args: Any, **kwargs: Any) -> None:
        pytest.fail("the named file was parsed")
    monkeypatch.setattr(apirequest, "parse_csv", parse_csv)


def test_named_file_over_the_row_limit_is_refused_before_parsing(deployed: Path, tmp_path: Path) -> None:
    c = limited_client(deployed, tmp_path, max_rows=100)
    (tmp_path / "drops" / "garbage.csv").write_text(HEADER + GARBAGE * 40)
    r = c.get("/prediction?filepath=garbage.csv")
    assert r.status_code == 400, r.get_json()  # under the row limit it is parsed, and its content refused
    (tmp_path / "drops" / "garbage.csv").write_text(HEADER + GARBAGE * 101)
    for r in (c.get("/prediction?filepath=garbage.csv"), c.post("/prediction", json={"filepath": "garbage.csv"})):
        # over it: 413 for its rows, not the 400 its content would get, so it was counted, not parsed
        assert r.status_code == 413 and r.is_json, r.data
        assert r.get_json()["error"] == "'garbage.csv' has 101 data rows, more than the 100-row limit (api.max_rows)"


def test_named_file_over_the_row_limit_never_reaches_the_parser(deployed: Path, tmp_path: Path,
                                                                no_parsing: None) -> None:
    c = limited_client(deployed, tmp_path, max_rows=599)
    r = c.get("/prediction?filepath=testdata.csv")  # 600 rows, each one valid
    assert r.status_code == 413 and "600 data rows" in r.get_json()["error"]


def test_named_file_over_the_size_limit_is_refused_before_reading(deployed: Path, tmp_path: Path,
                                                                 no_parsing: None) -> None:
    c = limited_client(deployed, tmp_path, max_body_bytes=5000)
    size = (deployed / "testdata" / "testdata.csv").stat().st_size
    r = c.post("/prediction", json={"filepath": "testdata.csv"})
    assert r.status_code == 413 and r.is_json
    assert r.get_json()["error"] == (f"'testdata.csv' is {size:,} bytes, more than the 5,000-byte limit "
                                     f"(api.max_body_bytes)")
    (tmp_path / "drops" / "garbage.csv").write_text(HEADER + GARBAGE * 1000)  # few rows, many bytes of garbage
    r = c.get("/prediction?filepath=garbage.csv")
    assert r.status_code == 413 and "bytes, more than the 5,000-byte limit" in r.get_json()["error"]


def test_named_file_is_parsed_once_per_version(deployed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import apirequest
    parsed = []
    real = apirequest.parse_csv
    monkeypatch.setattr(apirequest, "parse_csv", lambda *a, **kw: parsed.append(a[2]) or real(*a, **kw))
    c = limited_client(deployed, tmp_path)
    named = tmp_path / "drops" / "named.csv"
    named.write_bytes((deployed / "testdata" / "testdata.csv").read_bytes())
    first, again = (c.get("/prediction?filepath=named.csv").get_json() for _ in range(2))
    assert first == again and first["rows"] == 600 and parsed == ["named.csv"]
    named.write_bytes(named.read_bytes() + b"new,1,2,3,0\n")  # a new version is parsed again
    assert c.get("/prediction?filepath=named.csv").get_json()["rows"] == 601 and len(parsed) == 2


def test_unknown_route_and_method_are_json(client: Any) -> None:
    assert client.get("/nope").status_code == 404 and "error" in client.get("/nope").get_json()
    r = client.delete("/prediction")
    assert r.status_code == 405 and "error" in r.get_json()


def test_no_release_is_503(tmp_path: Path) -> None:
    from app import create_app  # built by hand: a workspace with nothing deployed
    for folder in ("sourcedata", "testdata"):
        (tmp_path / folder).mkdir()
    c = create_app(write_config(tmp_path)).test_client()
    assert c.get("/health").get_json() == {"status": "ok", "release": None, "model_loaded": False,
                                           "last_successful_run": None}  # no fullprocess run yet
    r = c.post("/prediction", json={"records": ROWS})
    assert r.status_code == 503 and "no release" in r.get_json()["error"]


# ---- figures -----------------------------------------------------------------------------------------------

def test_scoring_summarystats_diagnostics_health(client: Any, deployed: Path) -> None:
    scores = json.loads((deployed / "production_deployment" / "current" / "scores.json").read_text())
    s = client.get("/scoring").get_json()
    assert s["release"] == 2 and s["f1"] == pytest.approx(scores["f1"])
    assert {"precision", "recall", "accuracy", "roc_auc"} <= set(s)
    st = client.get("/summarystats").get_json()
    assert st["rows"] == 2800
    assert set(st["columns"]["lastmonth_activity"]) == {"count", "mean", "median", "std", "min", "max"}
    d = client.get("/diagnostics").get_json()
    assert d["missing_data"]["lastmonth_activity"]["count"] > 0
    assert d["timings"]["steps"]["ingestion"]["runs"] >= 1
    assert d["drift"]["verdict"] == "drift"
    assert client.get("/health").get_json()["release"] == 2


@pytest.mark.parametrize("accept", ["text/plain", "text/plain;q=0.9, application/xml;q=0.5"])
def test_scoring_as_text_when_asked(client: Any, deployed: Path, accept: str) -> None:
    """Accept: text/plain gets the bare F1, as the course's clients read it: float(response.text)."""
    scores = json.loads((deployed / "production_deployment" / "current" / "scores.json").read_text())
    r = client.get("/scoring", headers={"Accept": accept})
    assert r.status_code == 200 and r.mimetype == "text/plain"
    assert float(r.text) == pytest.approx(scores["f1"]) and r.text.strip() == r.text


@pytest.mark.parametrize("headers", [{}, {"Accept": "*/*"}, {"Accept": "application/json"},
                                     {"Accept": "application/json, text/plain"}])
def test_scoring_is_json_by_default(client: Any, headers: dict[str, str]) -> None:
    """Without a preference for text/plain, /scoring answers the JSON object, and says it varies by Accept."""
    r = client.get("/scoring", headers=headers)
    assert r.status_code == 200 and r.mimetype == "application/json" and r.get_json()["release"] == 2
    assert "Accept" in r.headers["Vary"]


def test_bearer_token_protects_every_endpoint(deployed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app import create_app  # built by hand: the token is read when the app is built
    monkeypatch.setenv("RISK_API_TOKEN", "s3cret")
    c = create_app(deployed / "config.json").test_client()
    for path in ("/health", "/scoring", "/summarystats", "/diagnostics", "/openapi.json",
                 "/prediction?filepath=testdata/testdata.csv"):
        assert c.get(path).status_code == 401
        assert c.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_openapi_lists_every_endpoint(client: Any) -> None:
    spec = client.get("/openapi.json").get_json()
    assert set(spec["paths"]) == {"/prediction", "/scoring", "/summarystats", "/diagnostics", "/health",
                                  "/openapi.json", "/dashboard", "/dashboard/report.pdf"}


# ---- the real server ---------------------------------------------------------------------------------------

def test_gunicorn_serves_every_endpoint(server: str) -> None:
    for path in ("health", "scoring", "summarystats", "diagnostics", "openapi.json"):
        r = requests.get(server + path, timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    r = requests.post(server + "prediction", json={"filepath": "testdata/testdata.csv"}, timeout=10)
    assert r.status_code == 200 and r.json()["rows"] == 600
    r = requests.get(server + "prediction", params={"filepath": "../../etc/passwd"}, timeout=10)
    assert r.status_code == 403 and "error" in r.json()
    r = requests.post(server + "prediction", json={"filepath": "/testdata/testdata.csv"}, timeout=10)
    assert r.status_code == 200 and r.json()["rows"] == 600
    r = requests.get(server + "scoring", headers={"Accept": "text/plain"}, timeout=10)
    assert r.status_code == 200 and 0 < float(r.text) <= 1


def test_apicalls_writes_every_answer(server: str, deployed: Path, tmp_path: Path) -> None:
    cfg_path = deployed / "config.apicalls.json"
    cfg_path.write_text(json.dumps({**json.loads((deployed / "config.json").read_text()), "url": server}))
    p = run_script("apicalls.py", deployed, config="config.apicalls.json")
    assert p.returncode == 0, p.stderr
    assert "called 5 endpoints" in p.stdout
    answers = json.loads((deployed / "models" / "apireturns.txt").read_text())["endpoints"]
    assert {a["status"] for a in answers.values()} == {200}
    assert answers["prediction"]["answer"]["rows"] == 600


def test_apicalls_api_down_one_line_exit_1(deployed: Path) -> None:
    cfg_path = deployed / "config.down.json"
    cfg_path.write_text(json.dumps({**json.loads((deployed / "config.json").read_text()),
                                    "url": f"http://127.0.0.1:{free_port()}/"}))
    p = run_script("apicalls.py", deployed, config="config.down.json")
    assert p.returncode == 1
    assert len(p.stderr.strip().splitlines()) == 1 and "not reachable" in p.stderr


def test_new_release_served_without_restart(server: str, deployed: Path) -> None:
    before = requests.get(server + "scoring", timeout=10).json()["release"]
    p = run_script("deployment.py", deployed, "--rollback")
    assert p.returncode == 0, p.stderr
    try:
        for _ in range(4):  # whichever worker answers, it serves the release now current
            assert requests.get(server + "scoring", timeout=10).json()["release"] == before - 1
            r = requests.post(server + "prediction", json={"records": ROWS}, timeout=10).json()
            assert r["release"] == before - 1
    finally:
        p = run_script("fullprocess.py", deployed, "--force")
        assert p.returncode == 0, p.stderr
    assert requests.get(server + "scoring", timeout=10).json()["release"] > before


def test_a_named_files_answer_follows_the_release_and_the_file(server: str, deployed: Path) -> None:
    """A named file's answer is kept per file version and release: after a rollback, and after the file is
    rewritten, every worker answers with the probabilities the now-current model gives the file as it now is."""
    import numpy as np

    import releases
    from config import load_config
    from datacontract import read_data_file
    cfg = load_config(deployed / "config.json")
    path = deployed / "ingesteddata" / "named.csv"
    path.write_bytes((deployed / "testdata" / "testdata.csv").read_bytes())

    def check() -> None:
        model, manifest = releases.load_deployed_model(cfg)
        df = read_data_file(path, cfg)
        expected = model.predict_proba(df[cfg["feature_columns"]])[:, 1].round(6)
        for _ in range(6):  # several workers, each with its own cache
            r = requests.post(server + "prediction", json={"filepath": "ingesteddata/named.csv"}, timeout=10).json()
            assert r["release"] == manifest["version"] and np.array_equal(r["probabilities"], expected)

    check()
    assert run_script("deployment.py", deployed, "--rollback").returncode == 0
    try:
        check()
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[:1] + lines[2:] + lines[1:2]))  # same size, rows in another order
        check()
    finally:
        assert run_script("fullprocess.py", deployed, "--force").returncode == 0
    check()


def test_schemathesis_finds_no_5xx_and_no_schema_violation(server: str) -> None:
    st = Path(sys.executable).parent / "st"
    p = subprocess.run([str(st), "run", server + "openapi.json", "--url", server.rstrip("/"),
                        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                                    "response_schema_conformance,response_headers_conformance",
                        "--max-examples", "60", "--seed", "20261123", "--phases", "examples,coverage,fuzzing",
                        "--request-timeout", "20", "--generation-database", "none"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-2000:]


def test_bounded_load_mixed_endpoints_zero_errors(server: str) -> None:
    """A few thousand requests from 8 concurrent clients, 10,000-row predictions included."""
    plan = []
    for i in range(2400):
        if i % 40 == 0:
            plan.append(("GET", "prediction", {"params": {"filepath": "ingesteddata/big10k.csv"}}))
        elif i % 4 == 0:
            plan.append(("POST", "prediction", {"json": {"records": ROWS * 50}}))
        else:
            plan.append(("GET", ("scoring", "summarystats", "health", "diagnostics")[i % 3], {}))

    def worker(chunk: list[tuple[str, str, dict[str, Any]]]) -> list[int]:
        with requests.Session() as s:
            return [s.request(m, server + p, timeout=60, **kw).status_code for m, p, kw in chunk]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = [c for chunk in pool.map(worker, [plan[i::8] for i in range(8)]) for c in chunk]
    assert len(codes) == 2400
    assert codes.count(200) == 2400, {c: codes.count(c) for c in set(codes)}
