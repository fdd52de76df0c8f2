"""The HTTP API: predictions and health figures of the deployed release, as JSON; and the dashboard page.

    gunicorn -c gunicorn.conf.py wsgi:app            # production (make serve)
    flask --app "app:create_app()" run               # development server

Endpoints (openapi.json describes them; GET /openapi.json serves it):
    POST /prediction   MLflow-style JSON (dataframe_split, dataframe_records, instances, inputs), {"records": [...]},
                       {"filepath": "testdata/testdata.csv"} (or file_path, data_file, data_path; a leading slash,
                       as in "/testdata/testdata.csv", still means the project's folder), or a CSV body
    GET  /prediction?filepath=...
    GET  /scoring      the deployed model's F1, precision, recall, accuracy, ROC AUC on the test data
                       (with Accept: text/plain, the bare F1 as text)
    GET  /summarystats summary statistics of the ingested data
    GET  /diagnostics  timings, missing data, dependency table, latest drift check
    GET  /health       liveness, the deployed release and the last successful fullprocess run (and its age)
    GET  /dashboard    the report's facts as a web page; /dashboard/report.pdf the latest PDF report

apirequest.py turns a request into rows and says what a client must fix: 4xx with {"error": ...}. A file path is
resolved only inside the configured data folders; a body must be uncompressed UTF-8 JSON or CSV (415 otherwise), at
most api.max_body_bytes (413), and arrive within api.timeout seconds (408; slowclient_worker.py's worker cuts off
clients that send too slowly or stop halfway).
The deployed model is loaded once per worker and loaded again when `current` points at another release (one
readlink per request); a request uses one release's model and manifest throughout. Set the environment variable
named by api.token_env to require `Authorization: Bearer <token>` on every endpoint.
"""
from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask.json.provider import JSONProvider
from werkzeug.exceptions import HTTPException

import artifacts
import diagnostics
import history
import releases
import reportdata
import store
from apirequest import ClientError, DataFiles, log_rows, request_frame
from charts import line_chart
from config import DEFAULT_CONFIG, load_config
from filerecord import read_manifest
from modelstore import ModelError

log = logging.getLogger("api")

OPENAPI_FILE = Path(__file__).resolve().parent / "openapi.json"
ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

api = Blueprint("api", __name__)
pages = Blueprint("pages", __name__)


class OrjsonProvider(JSONProvider):
    """Flask's JSON through orjson (Flask's documented extension point): numpy arrays and NaN (as null) included."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """Serialize with orjson."""
        return orjson.dumps(obj, option=ORJSON_OPTIONS).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Parse with orjson."""
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """A JSON response serialized straight to bytes."""
        return self._app.response_class(orjson.dumps(self._prepare_response_obj(args, kwargs), option=ORJSON_OPTIONS),
                                        mimetype="application/json")


@dataclass
class Risk:
    """One app's config and what its worker keeps loaded (app.extensions["risk"])."""

    cfg: dict[str, Any]
    token: str | None
    # (folder, model, manifest), replaced as one value: a thread reading it while another loads a new release gets
    # one release's model and manifest, never one of each
    release: tuple[Path | None, Any, Any] = (None, None, None)
    release_lock: threading.Lock = field(default_factory=threading.Lock)
    polled: float = -1e9  # time.monotonic() of the last look at a shared pointer
    # (finaldata's size and mtime, statistics, rows); its own lock, so parsing the data never holds up a release load
    stats: tuple[tuple[int, int] | None, dict[str, Any], int] | None = None
    stats_lock: threading.Lock = field(default_factory=threading.Lock)
    top: tuple[Any, pd.DataFrame] | None = None  # the dashboard's clients to call first, and what they came from
    files: DataFiles = field(default_factory=DataFiles)


def create_app(config_path: str | Path | None = None) -> Flask:
    """Build the Flask app for one config (default: $RISK_CONFIG, else config.json beside the scripts)."""
    cfg = load_config(config_path or os.environ.get("RISK_CONFIG") or DEFAULT_CONFIG)
    app = Flask(__name__)
    app.config["RISK"] = cfg
    app.config["MAX_CONTENT_LENGTH"] = cfg["api"]["max_body_bytes"]
    app.json = OrjsonProvider(app)
    app.jinja_env.filters.update(number=reportdata.number, percent=reportdata.percent,
                                 int_field=lambda v: reportdata.number(reportdata.record_int(v)),
                                 when=reportdata.when)
    token = os.environ.get(cfg["api"]["token_env"]) or None
    if token is None and cfg["api"]["host"] not in LOCAL_HOSTS:
        log.warning("API bound to %s without a bearer token: anyone who can reach it can use it; set %s",
                    cfg["api"]["host"], cfg["api"]["token_env"])
    app.extensions["risk"] = Risk(cfg=cfg, token=token)
    app.before_request(check_token)
    app.register_error_handler(ClientError, client_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected)
    app.register_blueprint(api)
    app.register_blueprint(pages)
    return app


def _risk() -> Risk:
    """The current app's state."""
    return current_app.extensions["risk"]


def check_token() -> Response | None:
    """Refuse requests without the bearer token when one is set."""
    token = _risk().token
    if token is None:
        return None
    sent = request.headers.get("Authorization", "")
    if not (sent.startswith("Bearer ") and hmac.compare_digest(sent[7:].encode(), token.encode())):
        return _error(401, "missing or wrong bearer token (Authorization: Bearer <token>)")
    return None


def client_error(e: ClientError) -> Response:
    """A client's mistake as a JSON error."""
    return _error(e.status, str(e))


def http_error(e: HTTPException) -> Response:
    """Werkzeug's HTTP errors (404, 405, 413, ...) as JSON errors."""
    if e.code == 413:
        return _error(413, f"request body larger than the {_risk().cfg['api']['max_body_bytes']:,}-byte limit")
    return _error(e.code or 500, e.description or e.name)


def unexpected(e: Exception) -> Response:
    """A bug: logged with its traceback, answered without one."""
    log.exception("unexpected error on %s %s", request.method, request.path)
    return _error(500, "internal error; the server log has the details")


def _error(status: int, message: str) -> Response:
    """A JSON error answer."""
    resp = jsonify({"error": message})
    resp.status_code = status
    return resp


@api.route("/prediction", methods=["GET", "POST"])
def prediction() -> Response:
    """Predictions and risk probabilities for the rows a request carries or names."""
    risk = _risk()
    cfg = risk.cfg
    df, cached = request_frame(cfg, risk.files)
    if len(df) > cfg["api"]["max_rows"]:
        raise ClientError(413, f"{len(df):,} rows is more than the {cfg['api']['max_rows']:,}-row limit")
    model, manifest = deployed(risk)
    if cfg["api"]["log_requests"] and cached is None:  # a named file is on disk already: only bodies are logged
        log_rows(cfg, df)
    # A named file's answer is kept with its parsed rows, for the release that gave it: the same file version and
    # the same model give the same answer, and asking again costs a stat instead of a prediction.
    answer = cached["answers"].get(manifest["folder"]) if cached is not None else None
    if answer is None:
        proba = model.predict_proba(df[cfg["feature_columns"]])[:, 1]
        # whole-array conversions: a Python loop over 10,000 rows costs more than the prediction itself
        out: dict[str, Any] = {"release": manifest["version"], "rows": len(df),
                               "predictions": (proba > 0.5).astype(int).tolist(),  # as model.predict
                               "probabilities": proba.round(6).tolist()}
        if cfg["id_column"] in df:
            out["ids"] = df[cfg["id_column"]].astype(str).tolist()
        answer = orjson.dumps(out, option=ORJSON_OPTIONS)
        if cached is not None:
            cached["answers"] = {manifest["folder"]: answer}  # one release at a time
    return current_app.response_class(answer, mimetype="application/json")


@api.get("/scoring")
def scoring() -> Response:
    """The deployed model's metrics on the test data (computed when the release was scored)."""
    _, manifest = deployed(_risk())
    # The course's clients read the bare F1 as text (float(response.text)); JSON stays the default, so */* and a
    # missing Accept header get the whole object.
    if request.accept_mimetypes.best_match(("application/json", "text/plain")) == "text/plain":
        f1 = manifest["scores"].get("f1")
        resp = Response("null" if f1 is None else repr(float(f1)), mimetype="text/plain")
    else:
        resp = jsonify({"release": manifest["version"], **manifest["scores"]})
    resp.vary.add("Accept")  # caches must keep the two forms apart
    return resp


@api.get("/summarystats")
def summarystats() -> Response:
    """Summary statistics of the ingested data."""
    stats, rows = cached_stats(_risk())
    return jsonify({"rows": rows, "columns": stats["summary_stats"]})


@api.get("/diagnostics")
def diagnostics_view() -> Response:
    """Timings, missing data, dependency table and the latest drift check."""
    risk = _risk()
    cfg = risk.cfg
    stats, rows = cached_stats(risk)
    saved = reportdata.saved_diagnostics(cfg)
    deps = saved.get("dependencies") or {"packages": [], "note": "run diagnostics.py to look up versions"}
    return jsonify({"rows": rows, "missing_data": stats["missing_data"], "timings": diagnostics.timings(cfg),
                    "dependencies": deps, "drift": diagnostics.latest_drift(cfg)})


@api.get("/health")
def health() -> Response:
    """Liveness, the deployed release and the last successful fullprocess run: its age shows a cron that died."""
    risk = _risk()
    try:
        release = releases.current_release(risk.cfg)
    except OSError as e:  # a shared release store out of reach: the API still serves what it has loaded
        log.warning("/health: %s", e)
        release = risk.release[2]
    # one indexed row; a store that cannot be read gives null (logged): the API itself is still alive
    last = history.safely(risk.cfg, "cannot be read for /health", history.last_successful_run)
    return jsonify({"status": "ok", "release": release["version"] if release else None,
                    "model_loaded": risk.release[1] is not None, "last_successful_run": last})


@api.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI description of this API."""
    return Response(OPENAPI_FILE.read_bytes(), mimetype="application/json")


@pages.get("/")
def index() -> Response:
    """People who open the bare address want the dashboard."""
    return redirect(url_for("pages.dashboard"))


@pages.get("/dashboard")
def dashboard() -> str:
    """The report's facts as a web page, read afresh from the artifacts and the history store on each load."""
    return render_template("dashboard.html", **dashboard_facts(_risk()))


@pages.get("/dashboard/report.pdf")
def report_pdf() -> Response:
    """The latest PDF report reporting.py wrote."""
    path = artifacts.path(_risk().cfg, "report")
    if not path.is_file():
        raise ClientError(404, "no report yet; run reporting.py or fullprocess.py")
    return send_file(path, mimetype="application/pdf", max_age=0)


def deployed(risk: Risk) -> tuple[Any, dict[str, Any]]:
    """The current release's model and manifest, loading it again only when the pointer moved. A shared pointer
    (a PostgreSQL row, an s3:// object) is looked at most every api.release_poll_seconds, and while it cannot be
    read the loaded release keeps serving."""
    cfg = risk.cfg
    folder, model, manifest = risk.release
    if folder is not None and not _due(risk):
        return model, manifest
    if folder is not None and not releases.shared_pointer(cfg) and folder == releases.current_dir(cfg):
        return model, manifest
    with risk.release_lock:  # one thread loads a new release; the others wait for it rather than load it too
        if risk.release[0] is not None and not _due(risk):
            return risk.release[1], risk.release[2]
        try:
            loaded = releases.follow(cfg, risk.release)
        except (ModelError, OSError, KeyError, ValueError) as e:
            if risk.release[0] is not None and isinstance(e, OSError):
                log.warning("release store unreachable, serving release %s: %s", risk.release[2]["version"], e)
                return risk.release[1], risk.release[2]
            if releases.current_version(cfg) is None:
                raise ClientError(503, "no release is deployed yet; run fullprocess.py") from None
            log.error("cannot load the deployed release: %s", e)
            raise ClientError(503, f"the deployed release cannot be loaded: {e}") from None
        finally:
            risk.polled = time.monotonic()
        if loaded[0] != risk.release[0]:
            risk.release = loaded
            log.info("loaded release %s", loaded[2]["version"])
    return loaded[1], loaded[2]


def _due(risk: Risk) -> bool:
    """Whether the pointer is to be looked at again: always when local (one readlink), else once per poll."""
    poll = risk.cfg["api"]["release_poll_seconds"]
    return not releases.shared_pointer(risk.cfg) or time.monotonic() - risk.polled >= poll


def cached_stats(risk: Risk) -> tuple[dict[str, Any], int]:
    """Summary statistics and missing data of the ingested data, recomputed only when the store changes."""
    path = artifacts.path(risk.cfg, "store_manifest")
    cached = risk.stats
    if cached is None or cached[0] != _stat_key(path):
        with risk.stats_lock:  # one thread parses a new version of the data; the others wait for its figures
            key = _stat_key(path)  # taken before reading: a file rewritten meanwhile is parsed again next time
            cached = risk.stats
            if cached is None or cached[0] != key:
                df = store.read_dataset(risk.cfg, read_manifest(risk.cfg))
                stats = {"summary_stats": diagnostics.summary_stats(df, risk.cfg),
                         "missing_data": diagnostics.missing_table(df)}
                cached = risk.stats = (key, stats, len(df))
    return cached[1], cached[2]


def dashboard_facts(risk: Risk) -> dict[str, Any]:
    """Everything the dashboard template shows: the deployed release, its scores, drift, trends and tables."""
    cfg = risk.cfg
    try:
        model, manifest = deployed(risk)
    except ClientError as e:
        model, manifest, problem = None, None, str(e)
    else:
        problem = None
    scores = releases.release_scores(manifest) if manifest else {}
    roc = scores.get("roc")
    stats, rows = cached_stats(risk)
    check, decisions = reportdata.latest_check(cfg)
    tables = reportdata.trends(cfg)
    ingested, rejected = reportdata.file_records(cfg)
    return {
        "manifest": manifest, "problem": problem, "scores": scores, "rows": rows, "stats": stats,
        "check": check, "decisions": decisions, "ingested": ingested, "rejected": rejected,
        "headline": reportdata.headline(check, decisions), "alerts": reportdata.recent_alerts(cfg),
        "top": _cached_top_clients(risk, model, manifest, check) if model is not None else None,
        "roc_chart": roc and line_chart(f"ROC curve on the test data (AUC {scores['roc_auc']:.3f})",
                                        {"model": list(zip(roc["fpr"], roc["tpr"], strict=True)),
                                         "chance": [(0, 0), (1, 1)]},
                                        x_label="false positive rate", y_label="true positive rate",
                                        y_range=(0, 1), integer_x=False, dashed=frozenset({"chance"}),
                                        legend_bottom=True),
        "trend_charts": [line_chart(**c) for c in reportdata.trend_series(tables)],
        "counts": reportdata.trend_counts(tables), "timings": diagnostics.timings(cfg),
        "dependencies": reportdata.saved_diagnostics(cfg).get("dependencies", {}).get("packages", []),
        "report_at": _mtime_iso(artifacts.path(cfg, "report")), "now": history.now_iso()[:19].replace("T", " "),
        "cfg": cfg,
    }


def _cached_top_clients(risk: Risk, model: Any, manifest: dict[str, Any],
                        check: dict[str, Any] | None) -> pd.DataFrame:
    """The clients to call first, recomputed only when the release, the data or the latest check changes."""
    key = (manifest["folder"], _stat_key(artifacts.path(risk.cfg, "store_manifest")), check and check["id"])
    cached = risk.top
    if cached and cached[0] == key:
        return cached[1]
    # no lock: two page loads racing here both compute the same table, and either result is right
    top = reportdata.top_clients(risk.cfg, model, check)
    risk.top = (key, top)
    return top


def _stat_key(path: Path) -> tuple[int, int] | None:
    """(size, mtime) of a file, None when it does not exist: a cheap "has it changed" key."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def _mtime_iso(path: Path) -> str | None:
    """When a file was last written, as 'YYYY-MM-DD HH:MM' UTC, or None."""
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M")
    except FileNotFoundError:
        return None
