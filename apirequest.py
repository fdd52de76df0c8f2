"""What a prediction request carries or names, as typed rows; ClientError says what the client must fix.

    df, cached = request_frame(cfg, files)   # inside a Flask request; files is the worker's DataFiles

Accepted: MLflow-style JSON (dataframe_split, dataframe_records, instances, inputs), {"records": [...]}, a list of
records, a CSV body, or a data file named by {"filepath": ...} (or file_path, data_file, data_path) in the body or
the query string. A named file is resolved only inside the configured data folders.
"""
from __future__ import annotations

import codecs
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson
import pandas as pd
from flask import request
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge

import artifacts
from datacontract import DataError, parse_csv, typed_frame

log = logging.getLogger("api")

PATH_KEYS = ("filepath", "file_path", "data_file", "data_path")
MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
CSV_TYPES = ("text/csv", "application/csv", "text/plain")
# no Content-Type at all, and curl -d's form type, are read as JSON: clients send JSON that way every day
JSON_TYPES = ("application/json", "", "application/x-www-form-urlencoded")
SHOWN_CHARS = 200  # a client's path is echoed in error messages up to this length
FILES_CACHED = 4  # parsed data files (each at most api.max_rows rows) and their latest answer kept per worker


class ClientError(Exception):
    """A request the client must fix: status code and one-line message."""

    def __init__(self, status: int, message: str) -> None:
        """Keep the HTTP status with the message."""
        super().__init__(message)
        self.status = status


class DataFiles:
    """The data files clients name, each parsed once per version and kept (a few) with its latest answer."""

    def __init__(self, size: int = FILES_CACHED) -> None:
        """An empty cache of at most `size` files."""
        self._size = size
        self._files: OrderedDict[tuple[Path, int, int], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def frame(self, cfg: dict[str, Any], value: str | None) -> tuple[pd.DataFrame, dict[str, Any] | None]:
        """The typed rows of the file a client named, and its cache entry (None when too large to keep)."""
        if value is None:
            raise ClientError(400, f"name a data file with one of {', '.join(PATH_KEYS)}")
        path = resolve_data_path(cfg, value)
        st = path.stat()
        limit = cfg["api"]["max_body_bytes"]
        if st.st_size > limit:  # refused before reading: a named file is held to the same limit as a sent body
            raise ClientError(413, too_large(value, st.st_size, limit))
        key = (path, st.st_size, st.st_mtime_ns)  # a rewritten file has a new size or mtime, so it is parsed again
        with self._lock:
            if key in self._files:
                self._files.move_to_end(key)
                return self._files[key]["frame"], self._files[key]
        # read and parsed outside the lock: one slow file must not hold up requests for the others
        data = read_limited(path, value, limit)
        rows = data_lines(data)
        if rows > cfg["api"]["max_rows"]:  # counted, not parsed: a file over the limit costs no parsing
            raise ClientError(413, f"'{shown(value)}' has {rows:,} data rows, more than the "
                                   f"{cfg['api']['max_rows']:,}-row limit (api.max_rows)")
        df = checked(lambda: parse_csv(data, cfg, value, require_target=False))
        if len(df) > cfg["api"]["max_rows"]:  # refused by the caller; keeping it would only cost memory
            return df, None
        entry: dict[str, Any] = {"frame": df, "answers": {}}
        with self._lock:
            self._files[key] = entry
            while len(self._files) > self._size:
                self._files.popitem(last=False)
        return df, entry


def too_large(value: str, size: int, limit: int) -> str:
    """The 413 message for a named file over api.max_body_bytes."""
    return f"'{shown(value)}' is {size:,} bytes, more than the {limit:,}-byte limit (api.max_body_bytes)"


def read_limited(path: Path, value: str, limit: int) -> bytes:
    """A named file's bytes, at most limit of them: a file that grew since it was measured is refused, not read."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise ClientError(404, f"'{shown(value)}' is not a readable file ({e.strerror or e})") from None
    if len(data) > limit:
        raise ClientError(413, too_large(value, len(data), limit))
    return data


def data_lines(data: bytes) -> int:
    """Lines after the header, counted without parsing: the data rows of a file as the data contract describes it
    (a blank line or a quoted line end would count one more, never one less)."""
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    return max(0, lines - 1)


def request_frame(cfg: dict[str, Any], files: DataFiles) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """The typed rows the current request carries or names, and a named file's cache entry (else None)."""
    if request.method == "GET":
        return files.frame(cfg, path_arg(request.args))
    ctype = (request.mimetype or "").lower()
    is_json = ctype in JSON_TYPES or ctype.endswith("+json")
    if ctype not in CSV_TYPES and not is_json:
        raise ClientError(415, f"Content-Type '{ctype}' is not accepted: send JSON (application/json) or a CSV "
                               f"body (text/csv), or name a file with ?filepath=")
    body = request_body(cfg)
    if not body:
        if path_arg(request.args):
            return files.frame(cfg, path_arg(request.args))
        raise ClientError(400, "empty request body: send JSON, a CSV body, or ?filepath=")
    if not is_json:
        return checked(lambda: parse_csv(body, cfg, "request body", require_target=False)), None
    payload = json_body(body)
    if isinstance(payload, dict) and path_arg(payload):
        return files.frame(cfg, path_arg(payload))
    return checked(lambda: typed_frame(json_rows(payload, cfg), cfg, "request", require_target=False)), None


def request_body(cfg: dict[str, Any]) -> bytes:
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
        # the server stops reading a body that is not in after api.timeout seconds (slowclient_worker.py)
        raise ClientError(408, f"request body ended after {len(body):,} of the {request.content_length:,} bytes "
                               f"its Content-Length announced: the client stopped sending or was too slow")
    return body


def json_body(body: bytes) -> Any:
    """The parsed JSON body; ClientError with what is wrong in the client's terms."""
    data = body[len(codecs.BOM_UTF8):] if body.startswith(codecs.BOM_UTF8) else body  # RFC 8259: may be ignored
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise ClientError(400, json_problem(data, e)) from None


def json_problem(body: bytes, e: orjson.JSONDecodeError) -> str:
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


def shown(value: str) -> str:
    """A client's path as error messages echo it: cut short when very long."""
    return value if len(value) <= SHOWN_CHARS else f"{value[:SHOWN_CHARS]}... ({len(value):,} characters)"


def path_arg(source: Mapping[str, Any]) -> str | None:
    """The file path a request names under any accepted key."""
    for key in PATH_KEYS:
        value = source.get(key)
        if value is not None:
            if not isinstance(value, str) or not value.strip():
                raise ClientError(400, f"'{key}' must be a non-empty string path")
            return value
    return None


def checked(make: Callable[[], pd.DataFrame]) -> pd.DataFrame:
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
    """A client's file path resolved inside the data folders; ClientError 403 outside them, 404 for no file."""
    folders = [f.resolve() for f in allowed_folders(cfg)]
    names = ", ".join(str(f.relative_to(cfg["root"])) if f.is_relative_to(cfg["root"]) else str(f) for f in folders)
    if "\x00" in value:
        raise ClientError(403, f"'{shown(value)}' is not a file name (it holds a NUL byte); name a file in the data "
                               f"folders ({names})")
    if len(urlparse(value).scheme) > 1:  # a one-letter "scheme" is a Windows drive (C:\\...), refused below
        raise ClientError(403, f"only files inside the data folders ({names}) can be read, not URLs")
    raw = Path(value)
    if raw.is_absolute():
        # The course writes project paths with a leading slash ("/testdata/testdata.csv"): an absolute path that
        # is not inside the data folders is read as one from the project folder, under the same check.
        project = cfg["root"] / value.lstrip("/")
        try:
            found = _inside(raw, value, folders, names)
        except ClientError as refused:
            found = _inside(project, value, folders, names)
            if found is None:
                raise refused from None
        if found is None:
            found = _inside(project, value, folders, names)
        candidates = [raw, project]
    else:
        candidates = [cfg["root"] / raw, *(f / raw for f in folders)]
        found = next((p for p in (_inside(c, value, folders, names) for c in candidates) if p is not None), None)
    if found is not None:
        return found
    if not any(Path(os.path.normpath(c)).is_relative_to(f) for c in candidates for f in folders):
        raise ClientError(403, f"'{shown(value)}' is outside the data folders ({names})")
    raise ClientError(404, f"no file '{shown(value)}' in the data folders ({names})")


def _inside(candidate: Path, value: str, folders: list[Path], names: str) -> Path | None:
    """A candidate's real path if it is a file inside the data folders, None if absent; else ClientError."""
    if not os.path.lexists(candidate):
        return None
    try:
        real = candidate.resolve()  # follows symlinks: a link pointing out of the folders is refused below
    except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError for a symbolic link loop
        raise ClientError(404, f"'{shown(value)}' is not a readable file (a symbolic link loop?)") from None
    if not any(real.is_relative_to(f) for f in folders):
        raise ClientError(403, f"'{shown(value)}' is outside the data folders ({names})")
    if real.is_file():
        return real
    raise ClientError(404, f"'{shown(value)}' is not a file")


def json_rows(payload: Any, cfg: dict[str, Any]) -> pd.DataFrame:
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


def log_rows(cfg: dict[str, Any], df: pd.DataFrame) -> None:
    """Append rows a request sent (id and features, no label) to this worker's request log, which ingestion takes
    in as unlabelled monitoring data (api.log_requests). Bounded: a log is closed past api.log_requests_bytes and
    only the newest api.log_requests_files are kept. A log that cannot be written never fails the request."""
    folder = artifacts.path(cfg, "requests")
    cols = [cfg["id_column"], *cfg["feature_columns"]]
    rows = df.reindex(columns=cols)
    ids = rows[cfg["id_column"]].astype(object)
    missing = ids.isna().to_numpy()
    if missing.any():  # rows sent without an id get one, so each is a row of the contract
        ids[missing] = [f"request-{time.time_ns()}-{i}" for i in range(int(missing.sum()))]
        rows[cfg["id_column"]] = ids
    try:
        folder.mkdir(parents=True, exist_ok=True)
        logs = sorted(folder.glob(f"requests-*-{os.getpid()}.csv"))
        path = logs[-1] if logs and logs[-1].stat().st_size < cfg["api"]["log_requests_bytes"] else \
            folder / f"requests-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}.csv"
        text = rows.to_csv(index=False, header=not path.exists(), lineterminator="\n")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, text.encode("utf-8"))  # one write of whole lines: a reader never sees half a row
        finally:
            os.close(fd)
        for old in sorted(folder.glob("requests-*.csv"))[:-cfg["api"]["log_requests_files"]]:
            old.unlink(missing_ok=True)
    except OSError as e:
        log.warning("could not log the request's rows in %s: %s", folder, e)
