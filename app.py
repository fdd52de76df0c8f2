"""The HTTP API: predictions and health figures of the deployed release, as JSON.

    gunicorn -c gunicorn.conf.py wsgi:app            # production (make serve)
    flask --app "app:create_app()" run               # development server

Endpoints (openapi.json describes them; GET /openapi.json serves it):
    POST /prediction   MLflow-style JSON (dataframe_split, dataframe_records, instances, inputs), {"records": [...]},
                       {"filepath": "testdata/testdata.csv"} (or file_path, data_file, data_path), or a CSV body
    GET  /prediction?filepath=...
    GET  /scoring      the deployed model's F1, precision, recall, accuracy, ROC AUC on the test data
    GET  /summarystats summary statistics of the ingested data
    GET  /diagnostics  timings, missing data, dependency table, latest drift check
    GET  /health       liveness and the deployed release

A file path is resolved only inside the configured data folders. Client mistakes get 4xx with {"error": ...}:
a body must be uncompressed UTF-8 JSON or CSV (415 otherwise), at most api.max_body_bytes (413), and arrive within
api.timeout seconds (408; gunicorn.conf.py's worker cuts off clients that send too slowly or stop halfway).
The deployed model is loaded once per worker and loaded again when `current` points at another release (one
readlink per request); a request uses one release's model and manifest throughout. Set the environment variable
named by api.token_env to require `Authorization: Bearer <token>` on every endpoint.
"""
from __future__ import annotations

import codecs
import hmac
import json
import logging
import os
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson
import pandas as pd
from flask import Flask, Response, jsonify, redirect, render_template, request, send_file, url_for
from flask.json.provider import JSONProvider
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge

import deployment
import diagnostics
import history
import reportdata
from charts import line_chart
from config import DEFAULT_CONFIG, load_config
from datacontract import DataError, parse_csv, typed_frame
from ingestion import FINALDATA_FILE, read_finaldata
from modelstore import ModelError, load_model
from reportdata import REPORT_FILE

log = logging.getLogger("api")

OPENAPI_FILE = Path(__file__).resolve().parent / "openapi.json"
PATH_KEYS = ("filepath", "file_path", "data_file", "data_path")
ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
FILES_CACHED = 4  # parsed data files (each at most api.max_rows rows) and their latest answer kept per worker
MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
CSV_TYPES = ("text/csv", "application/csv", "text/plain")
# no Content-Type at all, and curl -d's form type, are read as JSON: clients send JSON that way every day
JSON_TYPES = ("application/json", "", "application/x-www-form-urlencoded")
SHOWN_CHARS = 200  # a client's path is echoed in error messages up to this length


class ClientError(Exception):
    """A request the client must fix: status code and one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class OrjsonProvider(JSONProvider):
    """Flask's JSON through orjson (Flask's documented extension point): numpy arrays and NaN (as null) included."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, option=ORJSON_OPTIONS).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        return self._app.response_class(orjson.dumps(self._prepare_response_obj(args, kwargs), option=ORJSON_OPTIONS),
                                        mimetype="application/json")


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
    # "release" is (folder, model, manifest), replaced as one value: a thread reading it while another loads a new
    # release gets one release's model and manifest, never one of each
    state = {"lock": threading.Lock(), "release": (None, None, None), "cache": {},
             "files": OrderedDict(), "files_lock": threading.Lock()}
    token = os.environ.get(cfg["api"]["token_env"]) or None
    if token is None and cfg["api"]["host"] not in ("127.0.0.1", "localhost", "::1"):
        log.warning("API bound to %s without a bearer token: anyone who can reach it can use it; set %s",
                    cfg["api"]["host"], cfg["api"]["token_env"])

    @app.before_request
    def check_token() -> Any:
        """Refuse requests without the bearer token when one is set."""
        if token is None:
            return None
        sent = request.headers.get("Authorization", "")
        if not (sent.startswith("Bearer ") and hmac.compare_digest(sent[7:].encode(), token.encode())):
            return _error(401, "missing or wrong bearer token (Authorization: Bearer <token>)")
        return None

    @app.errorhandler(ClientError)
    def client_error(e: ClientError) -> Response:
        return _error(e.status, str(e))

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        if e.code == 413:
            return _error(413, f"request body larger than the {cfg['api']['max_body_bytes']:,}-byte limit")
        return _error(e.code or 500, e.description or e.name)

    @app.errorhandler(Exception)
    def unexpected(e: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _error(500, "internal error; the server log has the details")

    @app.route("/prediction", methods=["GET", "POST"])
    def prediction() -> Response:
        """Predictions and risk probabilities for the rows a request carries or names."""
        df, cached = _request_frame(cfg, state)
        if len(df) > cfg["api"]["max_rows"]:
            raise ClientError(413, f"{len(df):,} rows is more than the {cfg['api']['max_rows']:,}-row limit")
        model, manifest = _deployed(cfg, state)
        # A named file's answer is kept with its parsed rows, for the release that gave it: the same file version
        # and the same model give the same answer, and asking again costs a stat instead of a prediction.
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
        return app.response_class(answer, mimetype="application/json")

    @app.get("/scoring")
    def scoring() -> Response:
        """The deployed model's metrics on the test data (computed when the release was scored)."""
        _, manifest = _deployed(cfg, state)
        return jsonify({"release": manifest["version"], **manifest["scores"]})

    @app.get("/summarystats")
    def summarystats() -> Response:
        """Summary statistics of the ingested data."""
        stats, rows = _cached_stats(cfg, state)
        return jsonify({"rows": rows, "columns": stats["summary_stats"]})

    @app.get("/diagnostics")
    def diagnostics_view() -> Response:
        """Timings, missing data, dependency table and the latest drift check."""
        stats, rows = _cached_stats(cfg, state)
        saved = reportdata.saved_diagnostics(cfg)
        deps = saved.get("dependencies") or {"packages": [], "note": "run diagnostics.py to look up versions"}
        return jsonify({"rows": rows, "missing_data": stats["missing_data"], "timings": diagnostics.timings(cfg),
                        "dependencies": deps, "drift": diagnostics.latest_drift(cfg)})

    @app.get("/health")
    def health() -> Response:
        """Liveness and the deployed release."""
        release = deployment.current_release(cfg)
        return jsonify({"status": "ok", "release": release["version"] if release else None,
                        "model_loaded": state["release"][1] is not None})

    @app.get("/")
    def index() -> Response:
        """People who open the bare address want the dashboard."""
        return redirect(url_for("dashboard"))

    @app.get("/dashboard")
    def dashboard() -> str:
        """The report's facts as a web page, read afresh from the artifacts and the history store on each load."""
        return render_template("dashboard.html", **dashboard_facts(cfg, state))

    @app.get("/dashboard/report.pdf")
    def report_pdf() -> Response:
        """The latest PDF report reporting.py wrote."""
        path = cfg["report_folder_path"] / REPORT_FILE
        if not path.is_file():
            raise ClientError(404, "no report yet; run reporting.py or fullprocess.py")
        return send_file(path, mimetype="application/pdf", max_age=0)

    @app.get("/openapi.json")
    def openapi() -> Response:
        """The OpenAPI description of this API."""
        return Response(OPENAPI_FILE.read_bytes(), mimetype="application/json")

    return app


def _error(status: int, message: str) -> Response:
    """A JSON error answer."""
    resp = jsonify({"error": message})
    resp.status_code = status
    return resp


def _deployed(cfg: dict[str, Any], state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The current release's model and manifest, loading it again only when `current` moved."""
    folder = deployment.current_dir(cfg)
    loaded, model, manifest = state["release"]
    if folder is not None and folder == loaded:
        return model, manifest
    with state["lock"]:
        for _ in range(3):  # a deployment may switch away from (and prune) the release being loaded: follow it
            folder = deployment.current_dir(cfg)
            if folder is None:
                raise ClientError(503, "no release is deployed yet; run fullprocess.py")
            loaded, model, manifest = state["release"]
            if folder == loaded:
                return model, manifest
            try:
                manifest = {**deployment.read_manifest(folder), "folder": str(folder)}
                model, _ = load_model(folder / "trainedmodel.pkl",
                                      expected_sha256=manifest["files"]["trainedmodel.pkl"])
            except (ModelError, OSError, ValueError) as e:
                if deployment.current_dir(cfg) != folder:
                    continue
                log.error("cannot load release %s: %s", folder, e)
                raise ClientError(503, f"the deployed release cannot be loaded: {e}") from None
            state["release"] = (folder, model, manifest)
            log.info("loaded release %s", manifest["version"])
            return model, manifest
    raise ClientError(503, "the deployed release changed three times while loading it; try again")


def dashboard_facts(cfg: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """Everything the dashboard template shows: the deployed release, its scores, drift, trends and tables."""
    try:
        model, manifest = _deployed(cfg, state)
    except ClientError as e:
        model, manifest, problem = None, None, str(e)
    else:
        problem = None
    scores = _release_scores(manifest) if manifest else {}
    roc = scores.get("roc")
    stats, rows = _cached_stats(cfg, state)
    check, decisions = reportdata.latest_check(cfg)
    tables = reportdata.trends(cfg)
    ingested, rejected = reportdata.file_records(cfg)
    report = cfg["report_folder_path"] / REPORT_FILE
    return {
        "manifest": manifest, "problem": problem, "scores": scores, "rows": rows, "stats": stats,
        "check": check, "decisions": decisions, "ingested": ingested, "rejected": rejected,
        "top": _cached_top_clients(cfg, state, model, check) if model is not None else None,
        "roc_chart": roc and line_chart(f"ROC curve on the test data (AUC {scores['roc_auc']:.3f})",
                                        {"model": list(zip(roc["fpr"], roc["tpr"])), "chance": [(0, 0), (1, 1)]},
                                        x_label="false positive rate", y_label="true positive rate",
                                        y_range=(0, 1), integer_x=False, dashed=frozenset({"chance"}),
                                        legend_bottom=True),
        "trend_charts": [line_chart(**c) for c in reportdata.trend_series(tables)],
        "counts": reportdata.trend_counts(tables), "timings": diagnostics.timings(cfg),
        "dependencies": reportdata.saved_diagnostics(cfg).get("dependencies", {}).get("packages", []),
        "report_at": _mtime_iso(report), "now": history.now_iso()[:19].replace("T", " "),
        "cfg": cfg,
    }


def _release_scores(manifest: dict[str, Any]) -> dict[str, Any]:
    """The release's scores.json (with the confusion matrix and ROC points), else the manifest's summary."""
    try:
        saved = json.loads((Path(manifest["folder"]) / "scores.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    return {**saved, **manifest["scores"]}


def _cached_top_clients(cfg: dict[str, Any], state: dict[str, Any], model: Any,
                        check: dict[str, Any] | None) -> pd.DataFrame:
    """The clients to call first, recomputed only when the release, the data or the latest check changes."""
    key = (state["release"][0], _stat_key(cfg["output_folder_path"] / FINALDATA_FILE), check and check["id"])
    cached = state["cache"].get("top")
    if cached and cached[0] == key:
        return cached[1]
    top = reportdata.top_clients(cfg, model, check)
    state["cache"]["top"] = (key, top)
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


def _cached_stats(cfg: dict[str, Any], state: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Summary statistics and missing data of finaldata.csv, recomputed only when the file changes."""
    key = _stat_key(cfg["output_folder_path"] / FINALDATA_FILE)
    cached = state["cache"].get("stats")
    if cached and cached[0] == key:
        return cached[1], cached[2]
    with state["lock"]:
        df = read_finaldata(cfg)
        stats = {"summary_stats": diagnostics.summary_stats(df, cfg), "missing_data": diagnostics.missing_data(df)}
        state["cache"]["stats"] = (key, stats, len(df))
    return stats, len(df)


def _request_frame(cfg: dict[str, Any], state: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """The typed rows a prediction request carries or names, with the cache entry of a named file (None for rows
    sent in the request); ClientError says what is wrong."""
    if request.method == "GET":
        return _file_frame(cfg, state, _path_arg(request.args))
    ctype = (request.mimetype or "").lower()
    is_json = ctype in JSON_TYPES or ctype.endswith("+json")
    if ctype not in CSV_TYPES and not is_json:
        raise ClientError(415, f"Content-Type '{ctype}' is not accepted: send JSON (application/json) or a CSV "
                               f"body (text/csv), or name a file with ?filepath=")
    body = _request_body(cfg)
    if not body:
        if _path_arg(request.args):
            return _file_frame(cfg, state, _path_arg(request.args))
        raise ClientError(400, "empty request body: send JSON, a CSV body, or ?filepath=")
    if not is_json:
        return _checked(lambda: parse_csv(body, cfg, "request body", require_target=False)), None
    payload = _json_body(body)
    if isinstance(payload, dict) and _path_arg(payload):
        return _file_frame(cfg, state, _path_arg(payload))
    return _checked(lambda: typed_frame(_json_rows(payload, cfg), cfg, "request", require_target=False)), None


def _request_body(cfg: dict[str, Any]) -> bytes:
    """The whole request body; ClientError when it is compressed, unreadable, cut short or over the size limit."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise ClientError(415, f"Content-Encoding '{encoding}' is not accepted; send the body uncompressed")
    limit = cfg["api"]["max_body_bytes"]
    try:
        body = request.get_data(cache=False)  # werkzeug stops at the limit; a larger Content-Length is a 413
        # a body without Content-Length (chunked) is cut at the limit: one more byte means it was larger
        over = request.content_length is None and len(body) >= limit and request.input_stream.read(1)
    except ClientDisconnected:
        raise ClientError(408, "the client stopped sending before the whole request body arrived") from None
    except HTTPException:
        raise
    except Exception as e:  # the server's body reader: malformed chunked encoding, a connection that broke
        raise ClientError(400, f"the request body could not be read: {e}") from None
    if over:
        raise RequestEntityTooLarge()
    if request.content_length is not None and len(body) < request.content_length:
        # the server stops reading a body that is not in after api.timeout seconds (gunicorn.conf.py)
        raise ClientError(408, f"request body ended after {len(body):,} of the {request.content_length:,} bytes "
                               f"its Content-Length announced: the client stopped sending or was too slow")
    return body


def _json_body(body: bytes) -> Any:
    """The parsed JSON body; ClientError with what is wrong in the client's terms."""
    data = body[len(codecs.BOM_UTF8):] if body.startswith(codecs.BOM_UTF8) else body  # RFC 8259: may be ignored
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise ClientError(400, _json_problem(data, e)) from None


def _json_problem(body: bytes, e: orjson.JSONDecodeError) -> str:
    """One line saying why a body is not JSON: compressed, not UTF-8, binary, NaN/Infinity, a CSV, or where."""
    if body.startswith(b"\x1f\x8b"):
        return "the JSON body is gzip-compressed data; send it uncompressed (no Content-Encoding)"
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or body[:64].count(0) > len(body[:64]) // 4:
        return "the JSON body is UTF-16 text; send it as UTF-8"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as u:
        return f"the JSON body is not UTF-8 text (invalid byte 0x{body[u.start]:02x} at byte {u.start:,}); send UTF-8"
    where = f"line {e.lineno} column {e.colno}"
    if "\x00" in text:
        return f"the JSON body holds a NUL byte (at byte {body.find(0):,}); JSON is text"
    if text[e.pos:].startswith(("NaN", "Infinity", "-Infinity")):
        return f"the JSON body has a NaN or Infinity at {where}, which JSON does not allow; send null for a missing " \
               f"value"
    if "infinity" in e.msg:
        return f"the JSON body has a number too large for a 64-bit float at {where}"
    first = text.lstrip().split("\n", 1)[0]
    if "," in first and not first.startswith(("{", "[")):
        return f"malformed JSON body ({e.msg} at {where}); a CSV body needs Content-Type: text/csv"
    return f"malformed JSON body: {e.msg} at {where}"


def _shown(value: str) -> str:
    """A client's path as error messages echo it: cut short when very long."""
    return value if len(value) <= SHOWN_CHARS else f"{value[:SHOWN_CHARS]}... ({len(value):,} characters)"


def _path_arg(source: Any) -> str | None:
    """The file path a request names under any accepted key."""
    for key in PATH_KEYS:
        value = source.get(key)
        if value is not None:
            if not isinstance(value, str) or not value.strip():
                raise ClientError(400, f"'{key}' must be a non-empty string path")
            return value
    return None


def _checked(make: Any) -> pd.DataFrame:
    """Run a frame builder, turning a broken data contract into a 400."""
    try:
        df = make()
    except DataError as e:
        raise ClientError(400, str(e)) from None
    if len(df) == 0:
        raise ClientError(400, "no rows to predict")
    return df


def allowed_folders(cfg: dict[str, Any]) -> list[Path]:
    """The data folders a file path may point into."""
    return [cfg["input_folder_path"], cfg["test_data_path"], cfg["output_folder_path"]]


def resolve_data_path(cfg: dict[str, Any], value: str) -> Path:
    """A client's file path resolved inside the data folders; ClientError 403 for anything outside."""
    folders = [f.resolve() for f in allowed_folders(cfg)]
    names = ", ".join(str(f.relative_to(cfg["root"])) if f.is_relative_to(cfg["root"]) else str(f) for f in folders)
    if "\x00" in value:
        raise ClientError(403, f"'{_shown(value)}' is not a file name (it holds a NUL byte); name a file in the data "
                               f"folders ({names})")
    if len(urlparse(value).scheme) > 1:  # a one-letter "scheme" is a Windows drive (C:\\...), refused below
        raise ClientError(403, f"only files inside the data folders ({names}) can be read, not URLs")
    raw = Path(value)
    candidates = [raw] if raw.is_absolute() else [cfg["root"] / raw, *(f / raw for f in folders)]
    for c in candidates:
        if not os.path.lexists(c):
            continue
        try:
            real = c.resolve()  # follows symlinks: a link pointing out of the folders is refused below
        except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError for a symbolic link loop
            raise ClientError(404, f"'{_shown(value)}' is not a readable file (a symbolic link loop?)") from None
        if not any(real.is_relative_to(f) for f in folders):
            raise ClientError(403, f"'{_shown(value)}' is outside the data folders ({names})")
        if real.is_file():
            return real
        raise ClientError(404, f"'{_shown(value)}' is not a file")
    if not any(Path(os.path.normpath(c)).is_relative_to(f) for c in candidates for f in folders):
        raise ClientError(403, f"'{_shown(value)}' is outside the data folders ({names})")
    raise ClientError(404, f"no file '{_shown(value)}' in the data folders ({names})")


def _file_frame(cfg: dict[str, Any], state: dict[str, Any],
                value: str | None) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """The typed rows of a data file named by a client, parsed once per version of the file, and its cache entry
    (None when the file is too large to keep)."""
    if value is None:
        raise ClientError(400, f"name a data file with one of {', '.join(PATH_KEYS)}")
    path = resolve_data_path(cfg, value)
    st = path.stat()
    if st.st_size > cfg["api"]["max_body_bytes"] * 16:
        raise ClientError(413, f"'{_shown(value)}' is too large to score in one request")
    key = (path, st.st_size, st.st_mtime_ns)  # a rewritten file has a new size or mtime, so it is parsed again
    files = state["files"]
    with state["files_lock"]:
        if key in files:
            files.move_to_end(key)
            return files[key]["frame"], files[key]
    df = _checked(lambda: parse_csv(path.read_bytes(), cfg, value, require_target=False))
    if len(df) > cfg["api"]["max_rows"]:  # refused by the caller; keeping it would only cost memory
        return df, None
    entry: dict[str, Any] = {"frame": df, "answers": {}}
    with state["files_lock"]:
        files[key] = entry
        while len(files) > FILES_CACHED:
            files.popitem(last=False)
    return df, entry


def _json_rows(payload: Any, cfg: dict[str, Any]) -> pd.DataFrame:
    """Rows from the JSON shapes clients send (ours and MLflow's scoring server's) as a frame of cells."""
    features = cfg["feature_columns"]
    if isinstance(payload, list):
        return _records(payload, "body")
    if not isinstance(payload, dict):
        raise ClientError(400, "JSON body must be an object or a list of records")
    if "records" in payload:
        return _records(payload["records"], "records")
    if "dataframe_records" in payload:
        return _records(payload["dataframe_records"], "dataframe_records")
    if "dataframe_split" in payload:
        split = payload["dataframe_split"]
        if not isinstance(split, dict) or not isinstance(split.get("data"), list):
            raise ClientError(400, "'dataframe_split' must be an object with 'columns' and 'data' lists")
        columns = split.get("columns", features)
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise ClientError(400, "'dataframe_split.columns' must be a list of column names")
        return _matrix(split["data"], columns, "dataframe_split.data")
    for key in ("instances", "inputs"):
        if key in payload:
            value = payload[key]
            if isinstance(value, dict):
                return _columns(value, key)
            if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
                return _matrix(value, features, key)
            return _records(value, key)
    raise ClientError(400, f"JSON body needs one of: records, {', '.join(MLFLOW_KEYS)}, {', '.join(PATH_KEYS)}")


def _records(rows: Any, where: str) -> pd.DataFrame:
    """A list of {column: value} objects as a frame."""
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ClientError(400, f"'{where}' must be a list of objects (one per row)")
    return pd.DataFrame.from_records(rows)


def _matrix(rows: Any, columns: list[str], where: str) -> pd.DataFrame:
    """A list of value lists, in the given column order, as a frame."""
    if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == len(columns) for r in rows):
        raise ClientError(400, f"'{where}' must be a list of rows of {len(columns)} values ({', '.join(columns)})")
    return pd.DataFrame(rows, columns=columns)


def _columns(cols: dict[str, Any], where: str) -> pd.DataFrame:
    """A {column: [values]} object as a frame."""
    if not all(isinstance(v, list) for v in cols.values()) or len({len(v) for v in cols.values()}) > 1:
        raise ClientError(400, f"'{where}' must map each column to a list of values of the same length")
    return pd.DataFrame(cols)
