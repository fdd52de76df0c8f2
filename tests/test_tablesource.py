"""A database table as a data source (input_table): the rows past the last ingested key become a batch, rows that
break the data contract are set aside with their reasons, and a table out of reach never holds up the files.
On a real SQLite file and on a real PostgreSQL server the tests start (conftest.pg_server)."""
from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from conftest import (
    deploy_shipped,
    ingested_record,
    make_workspace,
    rejected_record,
    run_json,
    run_script,
    write_config,
)

COLUMNS = "corporation TEXT, lastmonth_activity REAL, lastyear_activity REAL, number_of_employees REAL, exited INTEGER"


def practice_rows(ws: Path) -> list[list[str]]:
    """The rows of practicedata/dataset1.csv."""
    with open(ws / "practicedata" / "dataset1.csv", newline="") as f:
        return list(csv.reader(f))[1:]


def table_workspace(tmp_path: Path, url: str, **table: Any) -> Path:
    """A workspace reading practicedata/ and the table client_activity keyed by row_id."""
    ws = make_workspace(tmp_path / "ws")
    write_config(ws, input_folder_path="practicedata",
                 input_table={"url": url, "table": "client_activity", "key_column": "row_id", **table})
    return ws


INSERT = ("INSERT INTO client_activity (corporation, lastmonth_activity, lastyear_activity, number_of_employees, "
          "exited) VALUES (?,?,?,?,?)")


@pytest.fixture(params=["sqlite", "postgresql"])
def crm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Callable[[list[Any]], None]]]:
    """A client_activity table keyed by an identity column: its URL, and a function inserting rows into it."""
    if request.param == "sqlite":
        db = sqlite3.connect(tmp_path / "crm.sqlite3")
        db.execute(f"CREATE TABLE client_activity (row_id INTEGER PRIMARY KEY, {COLUMNS})")

        def insert(rows: list[Any]) -> None:
            """Insert and commit."""
            db.executemany(INSERT, rows)
            db.commit()

        yield f"sqlite:///{tmp_path / 'crm.sqlite3'}", insert
        db.close()
        return
    import psycopg

    url = request.getfixturevalue("pg_url")
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute(f"CREATE TABLE client_activity (row_id INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                   f"{COLUMNS.replace('REAL', 'DOUBLE PRECISION')})")

        def insert_pg(rows: list[Any]) -> None:
            """Insert (autocommit); an empty cell of the CSV rows is a NULL, as a typed column holds it."""
            with pg.cursor() as cur:
                cur.executemany(INSERT.replace("?", "%s"), [[None if v == "" else v for v in r] for r in rows])

        yield url, insert_pg


def test_new_table_rows_become_batches_and_a_bad_row_is_set_aside(
        tmp_path: Path, crm: tuple[str, Callable[[list[Any]], None]]) -> None:
    url, insert = crm
    ws = table_workspace(tmp_path, url)
    insert(practice_rows(ws)[:100])

    first = run_json("ingestion.py", ws)
    table_files = [f for f in first["ingested_files"] if f["name"].startswith("ingesteddata/table/")]
    assert [f["rows_read"] for f in table_files] == [100]
    assert len(first["ingested_files"]) == 3, "the two practice files too"

    insert([("newco1", 10, 20, 3, 0), ("badco", 10, 20, 3, 7), ("newco2", None, 5, 2, 1)])
    second = run_json("ingestion.py", ws)
    assert [(f["name"], f["rows_read"]) for f in second["ingested_files"]] == \
        [("ingesteddata/table/client_activity-000002.csv", 2)]
    [aside] = second["rejected_files"]
    assert aside["name"] == "client_activity#102"
    assert "the row with row_id 102" in aside["reason"] and "exited" in aside["reason"], aside["reason"]
    assert "client_activity#102" in rejected_record(ws)
    finaldata = (ws / "ingesteddata" / "finaldata.csv").read_text()
    assert "newco1" in finaldata and "newco2" in finaldata and "badco" not in finaldata

    third = run_json("ingestion.py", ws)
    assert not third["ingested_files"] and not third["rejected_files"], "nothing past the last key"
    assert len(ingested_record(ws)) == 4


def test_a_table_out_of_reach_does_not_hold_up_the_files(tmp_path: Path) -> None:
    ws = table_workspace(tmp_path, f"sqlite:///{tmp_path / 'nowhere.sqlite3'}")
    p = run_script("ingestion.py", ws, "--json")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert len(result["ingested_files"]) == 2
    [skipped] = result["rejected_files"]
    assert skipped["name"] == "input_table client_activity"
    assert "nowhere.sqlite3" in skipped["reason"] and "try again next run" in skipped["reason"]


def test_a_table_without_a_key_column_is_refused_by_the_config(tmp_path: Path) -> None:
    ws = table_workspace(tmp_path, "sqlite:///x.sqlite3", key_column=None)
    p = run_script("ingestion.py", ws)
    assert p.returncode == 2 and "needs key_column and exactly one of table or query" in p.stderr


def test_the_cron_tick_takes_new_table_rows(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    deploy_shipped(ws)
    db_path = tmp_path / "crm.sqlite3"
    db = sqlite3.connect(db_path)
    db.execute(f"CREATE TABLE client_activity (row_id INTEGER PRIMARY KEY, {COLUMNS})")
    db.commit()
    write_config(ws, input_table={"url": f"sqlite:///{db_path}", "table": "client_activity", "key_column": "row_id"})
    quiet = run_json("fullprocess.py", ws)
    assert quiet["outcome"] == "no-new-data", "an empty table is no new data"

    db.executemany(INSERT, practice_rows(ws)[:80])
    db.commit()
    tick = run_json("fullprocess.py", ws)
    assert "80 rows in input_table client_activity" in " ".join(tick["new_files"]), tick
    assert "ingesteddata/table/client_activity-000001.csv" in ingested_record(ws)
