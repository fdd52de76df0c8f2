"""A database table as a data source: the rows past the last ingested key become a data file, then a batch.

    "input_table": {"url": "postgresql://user@db.example/crm", "table": "client_activity", "key_column": "row_id"}
    pull(cfg)      # (under ingestion's lock) new rows -> <output_folder_path>/table/<name>-NNNNNN.csv; their reasons
                   # for the rows that break the data contract, which are set aside and never block the others
    pending(cfg)   # how many rows wait past the last ingested key (the cron tick asks; nothing is written)

Instead of a table, `query` may give any SELECT (its rows must carry key_column). The key must only grow (an
identity column, or an insertion time). Rows are read in order of the key, at most input_table.batch_rows per run;
the file written is complete before it is renamed into place, so ingestion takes it as any landed file, and the
last key is saved only after it: a run killed in between reads those rows again, and the store's row hashes drop
them. URLs: postgresql://... (psycopg, imported only here) or sqlite:///path.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import artifacts
from atomicio import atomic_write, atomic_write_json

log = logging.getLogger("ingestion")

CONNECT_TIMEOUT = 5  # seconds: a database out of reach fails the run quickly, in one line


class TableError(OSError):
    """The table could not be read; the message is one line naming it (with the URL's password hidden)."""


def configured(cfg: dict[str, Any]) -> bool:
    """Whether a table source is set."""
    return bool(cfg["input_table"]["url"])


def source_name(cfg: dict[str, Any]) -> str:
    """How the source is named in records and messages: its table, or "query"."""
    t = cfg["input_table"]
    return t["table"] or "query"


def shown_url(url: str) -> str:
    """The URL with any password hidden."""
    return re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", url)


def _connect(url: str) -> Any:
    """A DB-API connection for a postgresql:// or sqlite:/// URL."""
    if url.startswith(("postgresql://", "postgres://")):
        import psycopg

        return psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT)
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not os.path.isfile(path):
            raise sqlite3.OperationalError(f"no database file {path}")
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=CONNECT_TIMEOUT)
    raise TableError(f"input_table.url {shown_url(url)}: expected postgresql://... or sqlite:///path")


def _select(cfg: dict[str, Any], db: Any, after: Any, what: str, limit: int | None) -> tuple[list[str], list[Any]]:
    """(column names, rows) of the source past a key, in key order."""
    t = cfg["input_table"]
    quote = '"{}"'.format
    source = quote(t["table"].replace('"', '""')) if t["table"] else f"({t['query']}) AS source"
    key = quote(t["key_column"].replace('"', '""'))
    mark = "?" if isinstance(db, sqlite3.Connection) else "%s"
    sql = f"SELECT {what} FROM {source}" + (f" WHERE {key} > {mark}" if after is not None else "")
    if what == "*":
        sql += f" ORDER BY {key}" + (f" LIMIT {int(limit)}" if limit else "")
    cur = db.execute(sql, () if after is None else (after,))
    return [d[0] for d in cur.description], cur.fetchall()


def _read(cfg: dict[str, Any], after: Any, what: str, limit: int | None = None) -> tuple[list[str], list[Any]]:
    """_select on a fresh connection; TableError naming the source on any failure."""
    url = cfg["input_table"]["url"]
    try:
        with closing(_connect(url)) as db:
            return _select(cfg, db, after, what, limit)
    except TableError:
        raise
    except Exception as e:  # every driver has its own error classes; any of them means "cannot read the table"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TableError(f"input_table {source_name(cfg)} at {shown_url(url)}: cannot be read ({first})") from None


def state_path(cfg: dict[str, Any]) -> Path:
    """Where the last ingested key is kept."""
    return artifacts.path(cfg, "table") / "state.json"


def _state(cfg: dict[str, Any]) -> dict[str, Any]:
    """The saved position in the source (started afresh when the source configured changed)."""
    t = cfg["input_table"]
    ident = {"url": shown_url(t["url"]), "table": t["table"], "query": t["query"], "key": t["key_column"]}
    try:
        saved = json.loads(state_path(cfg).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    return saved if saved.get("source") == ident else {"source": ident, "last_key": None, "pulls": 0}


def pending(cfg: dict[str, Any]) -> int:
    """How many rows of the source are past the last ingested key."""
    _, rows = _read(cfg, _state(cfg)["last_key"], "COUNT(*)")
    return int(rows[0][0])


def pull(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Write the rows past the last key as one landed data file; returns the rows set aside, each with its name
    (source#key) and reason. The caller holds ingestion's lock."""
    from datacontract import DataError, columns, parse_csv  # pandas: only when there are rows to check

    state = _state(cfg)
    names, rows = _read(cfg, state["last_key"], "*", cfg["input_table"]["batch_rows"])
    if not rows:
        return []
    key = cfg["input_table"]["key_column"]
    missing = [c for c in (key, *columns(cfg)[:-1]) if c not in names]
    if missing:
        raise TableError(f"input_table {source_name(cfg)}: no column {missing[0]!r}, expected the key column and "
                         f"{', '.join(columns(cfg))}")
    at = names.index(key)
    good, aside = list(rows), []
    while good:
        try:
            parse_csv(_csv(names, good), cfg, source_name(cfg), cfg["target_column"] in names)
            break
        except DataError as e:
            if e.row is None:
                raise TableError(str(e)) from None
            bad = good.pop(e.row - 1)
            aside.append({"name": f"{source_name(cfg)}#{bad[at]}",
                          "reason": str(e).replace(f"row {e.row}", f"the row with {key} {bad[at]}", 1)})
    state["pulls"] += 1
    if good:
        path = artifacts.path(cfg, "table") / f"{source_name(cfg)}-{state['pulls']:06d}.csv"
        atomic_write(path, _csv(names, good))
        settled = time.time() - cfg["ingestion"]["settle_seconds"] - 1
        os.utime(path, (settled, settled))  # written whole and renamed into place: it has landed already
    state["last_key"] = _jsonable(rows[-1][at])
    atomic_write_json(state_path(cfg), state)
    log.info("input_table %s: %d rows pulled, %d set aside, up to %s %s", source_name(cfg), len(good), len(aside),
             key, state["last_key"])
    return aside


def _csv(names: list[str], rows: list[Any]) -> bytes:
    """Rows as CSV text with a header (None as an empty cell), as a data file holds them."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(names)
    w.writerows(["" if v is None else v for v in r] for r in rows)
    return out.getvalue().encode("utf-8")


def _jsonable(value: Any) -> Any:
    """A key value as JSON keeps it: numbers and text as they are, anything else (a time) as its ISO text."""
    return value if isinstance(value, (int, float, str)) else value.isoformat() if hasattr(value, "isoformat") \
        else str(value)
