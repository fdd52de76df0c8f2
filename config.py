"""One config loader for every script: every key, its type, default and meaning live in SCHEMA below.

    from config import load_config
    cfg = load_config("config.json")   # nested dict; path keys resolved to absolute pathlib.Path

A config file may give any subset of the keys; the rest take the defaults. Relative paths resolve against the
folder that holds the config file, never the current directory, so cron can run a script from anywhere.
A broken config raises ConfigError with one line naming the key and what was expected (scripts exit 2).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = Path(__file__).resolve().parent / "config.json"

# key -> (default, expected type or tuple of choices, kind, meaning).
# kind: "in" = folder that must exist, "out" = folder created on demand, "file" = file path, "" = plain value.
SCHEMA: dict[str, tuple[Any, Any, str, str]] = {
    "input_folder_path": ("sourcedata", str, "in", "folder scanned for new data files, or s3://bucket/prefix (its "
                                                   "objects are copied into input_cache_path, then taken as files)"),
    "input_cache_path": ("landing_cache", str, "out", "when input_folder_path is s3://...: this host's copy of the "
                                                      "objects there"),
    "output_folder_path": ("ingesteddata", str, "out",
                           "the ingested store and its exports (finaldata.csv, ingestedfiles.txt)"),
    "test_data_path": ("testdata", str, "in", "labelled data every model is scored on"),
    "output_model_path": ("models", str, "out", "where training and scoring write the model and its score"),
    "prod_deployment_path": ("production_deployment", str, "out",
                             "the deployed releases: a folder (local, or shared by hosts), or s3://bucket/prefix "
                             "(endpoint and credentials from the environment, as boto3 reads them)"),
    "release_cache_path": ("release_cache", str, "out", "when prod_deployment_path is s3://...: this host's "
                                                        "hash-checked copy of the releases it reads"),
    "input_file_extension": ("csv", str, "", "only files with this extension are data files"),
    "url": ("http://127.0.0.1:8000/", str, "", "where apicalls.py finds the API"),
    "log_folder_path": ("logs", str, "out", "one rotated log file per step"),
    "history_path": ("history/history.sqlite3", str, "file", "the SQLite run history"),
    "history_url": ("", str, "", "where the run history lives: sqlite:///<path> (unset: history_path) or "
                                 "postgresql://user@host:port/db (psycopg 3; shared by several hosts, which then "
                                 "take turns to tick and share the release pointer)"),
    "report_folder_path": ("reports", str, "out", "PDF reports"),
    "id_column": ("corporation", str, "", "client id column (text)"),
    "feature_columns": (["lastmonth_activity", "lastyear_activity", "number_of_employees"], list, "",
                        "numeric, non-negative feature columns"),
    "feature_max": (1e15, float, "", "largest plausible feature value; a file with a larger one is refused (values "
                                     "near float64's limit overflow the model's scaler)"),
    "target_column": ("exited", str, "", "target column, 0 or 1"),
    "input_table.url": (None, str, "", "a database table (or query) as a data source: postgresql://... or "
                                       "sqlite:///path (none = no table source)"),
    "input_table.table": (None, str, "", "the table whose new rows are ingested (or give input_table.query)"),
    "input_table.query": (None, str, "", "a SELECT whose rows are ingested, instead of a table"),
    "input_table.key_column": (None, str, "", "a column that only grows (an identity, an insertion time): rows past "
                                              "the last ingested key are new"),
    "input_table.batch_rows": (100_000, int, "", "most rows taken from the table in one run"),
    "ingestion.settle_seconds": (5.0, float, "", "a data file is taken once unchanged this long and ending with a "
                                                 "line end (a file still being copied in is never read half-way)"),
    "ingestion.unterminated_seconds": (300.0, float, "", "a data file whose last line has no line end is taken "
                                                         "once unchanged this long"),
    "ingestion.on_change": ("replace", ("replace", "append"), "",
                            "a known file whose content changed: its new version replaces the old one's rows, or adds "
                            "to them"),
    "ingestion.chunk_bytes": (32 * 2**20, int, "", "a data file is read this many bytes at a time (bounded memory: a "
                                                    "piece takes about 25 times its size as typed rows)"),
    "ingestion.spill_rows": (4_000_000, int, "", "a file's row hashes held in memory while it is read; beyond, they "
                                                 "wait on disk beside the store, by hash range"),
    "ingestion.held_hashes": (16_000_000, int, "", "the dataset's row hashes held in memory during a run; beyond, "
                                                   "they go to a file read one hash range at a time"),
    "ingestion.hash_segments": (8, int, "", "the dataset's row hashes kept in one file and up to this many segments "
                                            "(each run's new ones: an incremental run writes only those) before "
                                            "they are merged into one file"),
    "model.C": (1.0, float, "", "inverse regularisation strength of LogisticRegression"),
    "model.max_iter": (1000, int, "", "LogisticRegression iteration limit"),
    "model.class_weight": (None, (None, "balanced"), "", "LogisticRegression class_weight"),
    "model.imputer_strategy": ("median", ("mean", "median", "most_frequent"), "", "how missing features are filled"),
    "engine": ("pandas", ("pandas", "spark"), "", "what ingestion and training run on: this process (pandas) or Apache "
                                                 "Spark (sparkengine.py; pip install -r requirements-spark.txt)"),
    "spark.master": ("local[*]", str, "", "the Spark engine's cluster: local[*] = this machine's cores, or a "
                                          "cluster's master URL (spark://host:7077, yarn, k8s://...)"),
    "spark.driver_memory": ("1g", str, "", "the Spark driver's JVM heap (spark.driver.memory)"),
    "spark.conf": ({}, dict, "", "more Spark settings, name to value (spark.executor.memory, "
                                 "spark.sql.shuffle.partitions, ...)"),
    "drift.rule": ("raw", ("raw", "parametric", "nonparametric"), "", "model-drift rule"),
    "drift.min_new_rows": (50, int, "", "fewer new labelled rows than this: insufficient data, wait"),
    "drift.min_new_positives": (5, int, "", "fewer exits among the new rows than this: insufficient data"),
    "drift.min_margin": (0.05, float, "", "a drop in F1 smaller than this never counts as drift"),
    "drift.confidence": (0.95, float, "", "width of the bootstrap interval of the new score"),
    "drift.bootstrap_samples": (2000, int, "", "bootstrap resamples of the new score"),
    "drift.min_history": (5, int, "", "past scores the parametric and nonparametric rules need"),
    "drift.alarm_rate": (0.05, float, "", "largest share of checks of unchanged data that may say DRIFT, all "
                                          "features and statistics together (each test gets its share)"),
    "drift.psi_warn": (0.02, float, "", "PSI at or above this (and beyond its noise floor) is WARN"),
    "drift.psi_drift": (0.05, float, "", "PSI at or above this (and beyond its noise floor) is DRIFT"),
    "drift.ks_warn": (0.03, float, "", "KS distance at or above this (and significant) is WARN"),
    "drift.ks_drift": (0.06, float, "", "KS distance at or above this (and significant) is DRIFT"),
    "drift.retrain_on_data_drift": (False, bool, "", "also retrain when data drift alone is DRIFT"),
    "drift.retrain_on_estimated_drop": (False, bool, "", "also retrain when the label-free performance estimate "
                                                         "drops (and labelled new rows exist to train on)"),
    "deployment.releases_kept": (5, int, "", "releases kept in prod_deployment_path (at least 2)"),
    "deployment.promotion_tolerance": (0.0, float, "", "a challenger may score this much below the deployed "
                                                            "model on the test data and still be deployed"),
    "api.host": ("127.0.0.1", str, "", "address gunicorn binds to (loopback unless you mean it)"),
    "api.port": (8000, int, "", "port gunicorn binds to"),
    "api.workers": (0, int, "", "gunicorn workers; 0 = one per CPU core"),
    "api.threads": (4, int, "", "threads per gunicorn worker (keep-alive clients and slow readers do not block)"),
    "api.timeout": (30, int, "", "seconds a request may take to arrive (else 408) and a worker to answer it"),
    "api.release_poll_seconds": (2.0, float, "", "with the release pointer shared (history on PostgreSQL, or "
                                                 "releases on s3://), each API worker looks for a new current "
                                                 "release at most this often (a local pointer: on every request)"),
    "api.max_rows": (100_000, int, "", "most rows one /prediction request may score"),
    "api.log_requests": (False, bool, "", "rows sent in /prediction bodies join the store as unlabelled monitoring "
                                          "data (logged under <output_folder_path>/requests/)"),
    "api.log_requests_bytes": (10_000_000, int, "", "a request log file is closed past this size"),
    "api.log_requests_files": (20, int, "", "request log files kept (the oldest is deleted)"),
    "api.max_body_bytes": (16_000_000, int, "", "largest request body accepted"),
    "api.token_env": ("RISK_API_TOKEN", str, "", "environment variable holding the bearer token (unset = no token; "
                                                 "set but empty is refused)"),
    "api.request_timeout": (10.0, float, "", "seconds apicalls.py waits for each answer"),
    "diagnostics.pip_timeout": (5.0, float, "", "seconds to wait for pip's index when looking up latest versions"),
    "diagnostics.cache_hours": (24.0, float, "", "how long looked-up latest versions are reused"),
    "reporting.reports_kept": (10, int, "", "dated copies of the PDF report kept in report_folder_path"),
    "log.max_bytes": (1_000_000, int, "", "a log file is rotated past this size"),
    "log.backups": (3, int, "", "rotated log files kept per step"),
    "alerts.urls": ([], list, "", "Apprise URLs told when something matters (json://, mailto://, slack://, ...); "
                                  "none = no alerts"),
    "alerts.cooldown_minutes": (60.0, float, "", "an alert of one kind is sent to a URL at most once this long"),
}


class ConfigError(Exception):
    """A config file that cannot be used; the message is one line naming the key."""


def defaults() -> dict[str, Any]:
    """The default config as a nested dict (before path resolution)."""
    out: dict[str, Any] = {}
    for key, (default, *_rest) in SCHEMA.items():
        _set(out, key, json.loads(json.dumps(default)))
    return out


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Store value at a dotted key, creating sections as needed."""
    *sections, leaf = dotted.split(".")
    for s in sections:
        tree = tree.setdefault(s, {})
    tree[leaf] = value


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys for a nested dict, keeping section dicts whole only when they are not sections."""
    flat: dict[str, Any] = {}
    sections = {k.split(".")[0] for k in SCHEMA if "." in k}
    for key, value in tree.items():
        dotted = prefix + key
        if not prefix and key in sections:
            if not isinstance(value, dict):
                raise ConfigError(f"key '{dotted}' must be an object of settings, got {json.dumps(value)}")
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _check(key: str, value: Any) -> Any:
    """Return value if it fits SCHEMA[key], else raise ConfigError naming the key."""
    default, expected, kind, _ = SCHEMA[key]
    if value is None and default is None:  # an optional setting left unset
        return None
    if isinstance(expected, tuple):
        if value not in expected:
            names = ", ".join(json.dumps(c) for c in expected)
            raise ConfigError(f"key '{key}' must be one of {names}, got {json.dumps(value)}")
        return value
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, expected) or isinstance(value, bool) != isinstance(default, bool):
        raise ConfigError(f"key '{key}' must be {_type_name(expected)}, got {json.dumps(value)}")
    if expected is list and not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"key '{key}' must be a list of non-empty strings, got {json.dumps(value)}")
    if expected is list and not value and default:  # the feature columns: a model needs at least one
        raise ConfigError(f"key '{key}' must not be an empty list")
    if expected is dict and not all(isinstance(v, (str, int, float, bool)) for v in value.values()):
        raise ConfigError(f"key '{key}' must map names to text, numbers or true/false, got {json.dumps(value)}")
    if expected is str and not value:
        raise ConfigError(f"key '{key}' must not be empty")
    if expected in (int, float) and not isinstance(value, bool) and value < 0:
        raise ConfigError(f"key '{key}' must not be negative, got {value}")
    return value


def _type_name(t: type) -> str:
    """A reader's name for a JSON type."""
    return {str: "a string", int: "a whole number", float: "a number", list: "a list", bool: "true or false",
            dict: "an object"}[t]


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """Read, check and resolve a config file (default: config.json beside the scripts); raises ConfigError with one
    line naming the problem."""
    path = Path(path or DEFAULT_CONFIG).expanduser().resolve()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config file ({e})") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object of settings")
    try:
        flat = _flatten(raw)
        cfg = defaults()
        for key, value in flat.items():
            if key not in SCHEMA:
                raise ConfigError(f"unknown key '{key}' (known keys are listed in config.py SCHEMA)")
            _set(cfg, key, _check(key, value))
        _check_columns(cfg)
        _resolve_paths(cfg, path.parent)
        _resolve_history(cfg, path.parent)
        _check_folders(cfg)
        _check_token(cfg)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    cfg["config_path"] = path
    cfg["root"] = path.parent
    return cfg


def _check_columns(cfg: dict[str, Any]) -> None:
    """Column names must be distinct: one column cannot be both id and feature, say."""
    names = [cfg["id_column"], *cfg["feature_columns"], cfg["target_column"]]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"column '{name}' is named twice among id_column, feature_columns, target_column")
    if cfg["deployment"]["releases_kept"] < 2:
        raise ConfigError("key 'deployment.releases_kept' must be at least 2 (the current and the previous release)")
    if cfg["feature_max"] <= 0:
        raise ConfigError(f"key 'feature_max' must be above 0, got {cfg['feature_max']}")
    if not 0 < cfg["drift"]["confidence"] < 1:
        raise ConfigError(f"key 'drift.confidence' must be between 0 and 1, got {cfg['drift']['confidence']}")
    table = cfg["input_table"]
    if table["url"] and (not table["key_column"] or bool(table["table"]) == bool(table["query"])):
        raise ConfigError("key 'input_table' needs key_column and exactly one of table or query")
    ext = cfg["input_file_extension"]
    if "/" in ext or ext.startswith("."):
        raise ConfigError(f"key 'input_file_extension' must be a bare extension like \"csv\", got {json.dumps(ext)}")


def _resolve_paths(cfg: dict[str, Any], base: Path) -> None:
    """Turn path keys into absolute Paths against the config's folder; input folders must exist. A folder given as
    s3://bucket/prefix is kept as its URL (input_url, release_url) and the path key becomes this host's copy."""
    for key, url_key, copy_key in (("input_folder_path", "input_url", "input_cache_path"),
                                   ("prod_deployment_path", "release_url", "release_cache_path")):
        if str(cfg[key]).startswith("s3://"):
            if not str(cfg[key])[5:].strip("/"):
                raise ConfigError(f"key '{key}' must name a bucket: s3://bucket/prefix")
            cfg[url_key] = cfg[key].rstrip("/")
            cfg[key] = cfg[copy_key]
    for key, (_, _, kind, _) in SCHEMA.items():
        if not kind:
            continue
        p = Path(cfg[key]).expanduser()
        p = (base / p).resolve() if not p.is_absolute() else p.resolve()
        if key == "input_folder_path" and "input_url" in cfg:
            p.mkdir(parents=True, exist_ok=True)
        if kind == "in" and not p.is_dir():
            raise ConfigError(f"key '{key}': folder {p} does not exist")
        if kind == "out" and p.exists() and not p.is_dir():
            raise ConfigError(f"key '{key}': {p} exists and is not a folder")
        cfg[key] = p


HISTORY_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")


def _resolve_history(cfg: dict[str, Any], base: Path) -> None:
    """history_url in full: unset, the SQLite file history_path; a sqlite:/// URL sets history_path (relative to the
    config's folder, as every path); a PostgreSQL URL is kept as given."""
    url = cfg["history_url"] or f"sqlite:///{cfg['history_path']}"
    if not url.startswith(HISTORY_SCHEMES):
        raise ConfigError(f"key 'history_url' must start with sqlite:/// or postgresql://, got {json.dumps(url)}")
    if url.startswith("sqlite:///"):
        # sqlite:///name is relative, sqlite:////abs/name absolute (SQLAlchemy's form)
        p = Path(url.removeprefix("sqlite:///")).expanduser()
        cfg["history_path"] = (base / p).resolve() if not p.is_absolute() else p.resolve()
        url = f"sqlite:///{cfg['history_path']}"
    cfg["history_url"] = url


# Data folders that must not overlap each other (equal, or one inside the other), and why.
DATA_OVERLAPS = {
    ("input_folder_path", "output_folder_path"): "ingestion would read its own output",
    ("input_folder_path", "test_data_path"): "test rows would be trained on",
    ("test_data_path", "output_folder_path"): "models would be scored on their own training data",
}
# Folders a step writes must not be or lie inside a folder read as data.
WRITTEN_FOLDERS = ("output_model_path", "prod_deployment_path", "report_folder_path", "log_folder_path")
READ_AS_DATA = {
    "input_folder_path": "ingestion would read what is written there as new data",
    "test_data_path": "scoring would read what is written there as test data",
    "output_folder_path": "what is written there would mix with the ingested data and its record",
}


def _check_folders(cfg: dict[str, Any]) -> None:
    """Refuse folders that overlap so that a step would read data it must not: each one silently defeats a check
    (finaldata.csv ingested again, test rows trained on, artifacts read as data)."""
    for (a, b), why in DATA_OVERLAPS.items():
        _refuse_overlap(cfg, a, b, why, both_ways=True)
    for written in WRITTEN_FOLDERS:
        for data, why in READ_AS_DATA.items():
            _refuse_overlap(cfg, written, data, why, both_ways=False)
    # deployment's well-known links (trainedmodel.pkl, latestscore.txt) would replace what training and scoring wrote
    _refuse_overlap(cfg, "prod_deployment_path", "output_model_path",
                    "deployment's links would replace the trained model and its score", both_ways=False, nested=False)


def _refuse_overlap(cfg: dict[str, Any], a: str, b: str, why: str, both_ways: bool, nested: bool = True) -> None:
    """ConfigError naming both keys and paths when folder a is folder b, or lies inside it (or b inside a)."""
    if cfg[a] == cfg[b]:
        raise ConfigError(f"keys '{a}' and '{b}' are the same folder ({cfg[a]}): {why}; expected separate folders")
    if not nested:
        return
    for inner, outer in ((a, b), (b, a)) if both_ways else ((a, b),):
        if cfg[inner].is_relative_to(cfg[outer]):
            raise ConfigError(f"key '{inner}' ({cfg[inner]}) lies inside key '{outer}' ({cfg[outer]}): {why}; "
                              f"expected separate folders")


def _check_token(cfg: dict[str, Any]) -> None:
    """A token variable that is set but blank would turn authentication off without a word: refuse it."""
    name = cfg["api"]["token_env"]
    value = os.environ.get(name)
    if value is not None and not value.strip():
        raise ConfigError(f"environment variable {name} is set but empty: authentication would be off; "
                          f"unset it or give it a token")


def display_path(cfg: dict[str, Any], p: Path) -> str:
    """A path as people know it: relative to the project folder when it lies inside it."""
    try:
        return str(Path(p).relative_to(cfg["root"]))
    except ValueError:
        return str(p)
