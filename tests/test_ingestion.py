"""ingestion.py by hand (SPEC section 4): distinct rows only, bad files refused one by one, nothing lost or touched."""
from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from conftest import make_workspace, run_json, run_script, tree_hashes, write_config
from config import load_config
from datacontract import DataError, parse_csv

HEADER = "corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited"
ROW_REF = r"(row 2\b|line 3\b)"  # the bad value sits in the second data row, the file's third line


def csv_text(*rows: str, header: str = HEADER) -> str:
    return "".join(line + "\n" for line in (header, *rows))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def out(ws: Path) -> Path:
    return ws / "ingesteddata"


def final_rows(ws: Path) -> pd.DataFrame:
    return pd.read_csv(out(ws) / "finaldata.csv")


def record_lines(ws: Path, name: str) -> list[list[str]]:
    path = out(ws) / name
    if not path.exists():
        return []
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line]


def recorded_names(ws: Path, name: str) -> list[str]:
    return [Path(fields[0]).name for fields in record_lines(ws, name)]


def canonical(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in a fixed order, for comparing data sets as sets of rows."""
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def ingest_ok(ws: Path, *args: str, **kw: Any) -> dict[str, Any]:
    return run_json("ingestion.py", ws, *args, **kw)


# ---------------------------------------------------------------- the shipped data


@pytest.fixture(scope="module")
def ingested_once(tmp_path_factory) -> Path:
    """A workspace whose shipped source data has been ingested (by one real run), to copy from."""
    ws = make_workspace(tmp_path_factory.mktemp("ingested") / "ws")
    ingest_ok(ws)
    return ws


@pytest.fixture
def ingested(ingested_once: Path, tmp_path: Path) -> Path:
    """A private copy of an ingested workspace (file times kept, so the records still match the sources)."""
    return Path(shutil.copytree(ingested_once, tmp_path / "ws"))


def test_shipped_data_becomes_exactly_the_distinct_rows(workspace: Path) -> None:
    p = run_script("ingestion.py", workspace)
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) == 1 and p.stdout.startswith("ingested 2 new files"), p.stdout

    sources = sorted((workspace / "sourcedata").glob("*.csv"))
    expected = pd.concat([pd.read_csv(f) for f in sources], ignore_index=True).drop_duplicates()
    got = final_rows(workspace)
    assert len(got) == len(expected) < sum(len(pd.read_csv(f)) for f in sources)  # the shipped data has duplicates
    assert not got.duplicated().any()
    pd.testing.assert_frame_equal(canonical(got), canonical(expected))

    lines = record_lines(workspace, "ingestedfiles.txt")
    assert [Path(f[0]).name for f in lines] == [f.name for f in sources]
    for fields, source in zip(lines, sources):
        assert sha256(source) in fields[1:]


def test_running_again_without_new_data_changes_nothing(ingested: Path) -> None:
    before = tree_hashes(out(ingested))
    p = run_script("ingestion.py", ingested)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("no new data"), p.stdout
    assert tree_hashes(out(ingested)) == before

    source = ingested / "sourcedata" / "dataset3.csv"  # touched (a copy, a checkout) but not changed
    st = source.stat()
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    data = (out(ingested) / "finaldata.csv").read_bytes()
    p = run_script("ingestion.py", ingested)
    assert p.returncode == 0 and p.stdout.startswith("no new data"), (p.stdout, p.stderr)
    assert (out(ingested) / "finaldata.csv").read_bytes() == data


def test_duplicates_across_files_and_against_earlier_runs_are_dropped(ingested: Path) -> None:
    old = final_rows(ingested)
    old_bytes = (out(ingested) / "finaldata.csv").read_bytes()
    known = (ingested / "sourcedata" / "dataset3.csv").read_text().splitlines()[1:6]  # already ingested
    fresh = ["newaa,10,1200,40,0", "newbb,20,2400,50,1", "newcc,30,3600,60,0"]
    # file A: 5 rows already ingested, 3 new ones (one of them twice); file B: 2 of A's new rows and one more
    (ingested / "sourcedata" / "dataset5.csv").write_text(csv_text(*known, *fresh, fresh[0]))
    (ingested / "sourcedata" / "dataset6.csv").write_text(csv_text(fresh[1], fresh[2], "newdd,40,4800,70,1"))

    r = ingest_ok(ingested)
    assert r["rows_added"] == 4
    got = final_rows(ingested)
    assert len(got) == len(old) + 4
    assert not got.duplicated().any()
    assert sorted(got.corporation.iloc[len(old):]) == ["newaa", "newbb", "newcc", "newdd"]
    assert (out(ingested) / "finaldata.csv").read_bytes().startswith(old_bytes)  # appended, nothing rewritten


def test_a_changed_file_is_ingested_again_adding_only_its_new_rows(ingested: Path) -> None:
    old = final_rows(ingested)
    source = ingested / "sourcedata" / "dataset4.csv"
    with open(source, "a") as f:
        f.write("chgaa,11,1100,11,0\nchgbb,22,2200,22,1\n")
    r = ingest_ok(ingested)
    assert [Path(f["name"]).name for f in r["ingested_files"]] == ["dataset4.csv"]
    assert r["rows_added"] == 2
    got = final_rows(ingested)
    assert len(got) == len(old) + 2 and not got.duplicated().any()
    lines = [f for f in record_lines(ingested, "ingestedfiles.txt") if Path(f[0]).name == "dataset4.csv"]
    assert len(lines) == 1 and sha256(source) in lines[0]


def test_a_deleted_row_hash_cache_is_rebuilt_and_deduplication_still_holds(workspace: Path) -> None:
    # decimals and missing values too: the rebuilt hashes come from finaldata.csv's text, not the source's
    (workspace / "sourcedata" / "decimals.csv").write_text(
        csv_text("decaa,0.1,1234.5678901234567,3,0", "decbb,1e-7,2.675,,1", "decbb,1e-7,2.675,,1"))
    ingest_ok(workspace)
    old = final_rows(workspace)
    cache = out(workspace) / "rowhashes.npz"
    cache.unlink()
    again = old.sample(10, random_state=1)
    again.to_csv(workspace / "sourcedata" / "again.csv", index=False)
    (workspace / "sourcedata" / "again2.csv").write_text(
        csv_text("decaa,0.1,1234.5678901234567,3,0", "decbb,1e-7,2.675,,1", "fresh,1,2,3,0"))
    r = ingest_ok(workspace)
    assert r["rows_added"] == 1, r
    got = final_rows(workspace)
    assert len(got) == len(old) + 1 and not got.duplicated().any()
    assert cache.is_file()


# ---------------------------------------------------------------- bad files

LATIN1 = csv_text("okaaa,1,2,3,0", "soci\u00e9t\u00e9,1,2,3,1").encode("latin-1")
BAD_FILES: dict[str, tuple[bytes, list[str]]] = {
    # name: (bytes, regular expressions the one-line reason must match, besides naming the file)
    "empty.csv": (b"", [r"(?i)empty"]),
    "headeronly.csv": (csv_text().encode(), [r"(?i)(header only|no data rows)"]),
    "missingcolumn.csv": (csv_text("aaaaa,1,2,3", header=HEADER.rsplit(",", 1)[0]).encode(),
                          [r"(?i)missing column", "exited"]),
    "textnumber.csv": (csv_text("aaaaa,1,2,3,0", "bbbbb,1,lots,3,1").encode(),
                       [ROW_REF, "lastyear_activity", "lots", "(?i)number"]),
    "negative.csv": (csv_text("aaaaa,1,2,3,0", "bbbbb,1,2,-3,1").encode(),
                     [ROW_REF, "number_of_employees", "-3", "(?i)negative"]),
    "infinite.csv": (csv_text("aaaaa,1,2,3,0", "bbbbb,inf,2,3,1").encode(),
                     [ROW_REF, "lastmonth_activity", "inf", "(?i)finite"]),
    "target2.csv": (csv_text("aaaaa,1,2,3,0", "bbbbb,1,2,3,2").encode(), [ROW_REF, "exited", "'2'", "0 or 1"]),
    "targetyes.csv": (csv_text("aaaaa,1,2,3,0", "bbbbb,1,2,3,yes").encode(), [ROW_REF, "exited", "yes", "0 or 1"]),
    "latin1.csv": (LATIN1, [r"UTF-8"]),
    "garbage.csv": (bytes(range(256)) * 8, [r"(?i)(binary|not UTF-8|not a .*CSV)"]),
    "gzipped.csv": (gzip.compress(csv_text("aaaaa,1,2,3,0").encode()), [r"(?i)gzip"]),
    "semicolons.csv": (csv_text("aaaaa;1;2;3;0", header=HEADER.replace(",", ";")).encode(), [r"(?i)semicolon"]),
    # "2,000" written with a thousands separator: one field too many, which must not shift or drop values
    "extrafield.csv": (csv_text("aaaaa,1,2,3,0", "bbbbb,5,2,000,1,0").encode(), [r"line 3\b", "(?i)fields"]),
    "extrafieldfirst.csv": (csv_text("bbbbb,5,2,000,1,0", "aaaaa,1,2,3,0").encode(), [r"(?i)first data row|line 2\b",
                                                                                      "(?i)fields"]),
}
GOOD_ROWS = ["goodaa,5,600,7,0", "goodbb,8,900,10,1"]


@pytest.fixture(scope="module")
def rejection_run(tmp_path_factory) -> dict[str, Any]:
    """One ingestion run over the shipped data plus every kind of bad file and one good file."""
    ws = make_workspace(tmp_path_factory.mktemp("rejection"))
    for name, (data, _) in BAD_FILES.items():
        (ws / "sourcedata" / name).write_bytes(data)
    (ws / "sourcedata" / "good.csv").write_text(csv_text(*GOOD_ROWS))
    before = tree_hashes(ws / "sourcedata")
    p = run_script("ingestion.py", ws)
    reasons = {Path(f[0]).name: f for f in record_lines(ws, "rejectedfiles.txt")}
    return {"ws": ws, "proc": p, "before": before, "reasons": reasons}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_each_kind_of_bad_file_is_rejected_with_a_one_line_reason(rejection_run: dict[str, Any], name: str) -> None:
    p, reasons = rejection_run["proc"], rejection_run["reasons"]
    assert name in reasons, f"{name} not listed in rejectedfiles.txt"
    named = [f for f in reasons[name][1:] if name in f]
    assert len(named) == 1, reasons[name]  # the reason names the file
    reason = named[0]
    for pattern in BAD_FILES[name][1]:
        assert re.search(pattern, reason), (pattern, reason)
    stderr_lines = [line for line in p.stderr.splitlines() if name in line]
    assert len(stderr_lines) == 1, p.stderr
    assert reason in stderr_lines[0]

    with pytest.raises(DataError) as err:  # the same verdict for code that checks a file directly
        parse_csv(BAD_FILES[name][0], load_config(rejection_run["ws"] / "config.json"), name)
    assert "\n" not in str(err.value) and name in str(err.value)


def test_bad_files_do_not_stop_the_good_ones_nor_get_touched(rejection_run: dict[str, Any]) -> None:
    ws, p = rejection_run["ws"], rejection_run["proc"]
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 1 and f"{len(BAD_FILES)} files rejected" in lines[0], p.stdout
    assert "Traceback" not in p.stderr
    assert tree_hashes(ws / "sourcedata") == rejection_run["before"]  # byte-identical, none moved or deleted
    assert sorted(recorded_names(ws, "ingestedfiles.txt")) == ["dataset3.csv", "dataset4.csv", "good.csv"]
    assert sorted(recorded_names(ws, "rejectedfiles.txt")) == sorted(BAD_FILES)
    got = final_rows(ws)
    assert {"goodaa", "goodbb"} <= set(got.corporation)
    assert not set(got.corporation) & {"aaaaa", "bbbbb", "okaaa"}  # nothing of a bad file got in


def test_an_unchanged_rejected_file_is_not_retried_and_a_fixed_one_is_ingested(workspace: Path) -> None:
    bad = workspace / "sourcedata" / "late.csv"
    bad.write_text(csv_text("lateaa,1,2,3,0", "latebb,1,2,3,yes"))
    r = ingest_ok(workspace)
    assert [Path(f["name"]).name for f in r["rejected_files"]] == ["late.csv"]
    before = tree_hashes(out(workspace))

    p = run_script("ingestion.py", workspace)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("no new data") and "1 still rejected" in p.stdout, p.stdout
    assert "late.csv" not in p.stderr  # no new complaint about a file nobody changed
    assert tree_hashes(out(workspace)) == before

    st = bad.stat()
    os.utime(bad, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touched, not changed: still not retried
    p = run_script("ingestion.py", workspace)
    assert "1 still rejected" in p.stdout and "late.csv" not in p.stderr, (p.stdout, p.stderr)

    bad.write_text(csv_text("lateaa,1,2,3,0", "latebb,1,2,3,1"))  # fixed (and a different size)
    r = ingest_ok(workspace)
    assert [Path(f["name"]).name for f in r["ingested_files"]] == ["late.csv"] and r["rows_added"] == 2
    assert "late.csv" in recorded_names(workspace, "ingestedfiles.txt")
    assert "late.csv" not in recorded_names(workspace, "rejectedfiles.txt")
    assert {"lateaa", "latebb"} <= set(final_rows(workspace).corporation)


# ---------------------------------------------------------------- odd but acceptable files

PLAIN = csv_text("oddaa,10,1200,40,0", "oddbb,,2400,50,1", "oddcc,30,NA,60,0")
ODD_FILES = {
    "reordered.csv": ("exited,number_of_employees,corporation,lastyear_activity,lastmonth_activity\n"
                      "0,40,oddaa,1200,10\n1,50,oddbb,2400,\n0,60,oddcc,NA,30\n").encode(),
    "extracolumn.csv": ("region," + HEADER + "\nnorth,oddaa,10,1200,40,0\nsouth,oddbb,,2400,50,1\n"
                        "east,oddcc,30,NA,60,0\n").encode(),
    "bom.csv": b"\xef\xbb\xbf" + PLAIN.encode(),
    "crlf.csv": PLAIN.replace("\n", "\r\n").encode(),
}


@pytest.mark.parametrize("name", list(ODD_FILES))
def test_odd_but_acceptable_files_read_like_the_plain_one(cfg: dict[str, Any], name: str) -> None:
    pd.testing.assert_frame_equal(parse_csv(ODD_FILES[name], cfg, name), parse_csv(PLAIN.encode(), cfg, "plain.csv"))


def test_missing_feature_values_are_kept_as_missing(cfg: dict[str, Any]) -> None:
    df = parse_csv(PLAIN.encode(), cfg, "plain.csv")
    assert np.isnan(df.loc[1, "lastmonth_activity"]) and np.isnan(df.loc[2, "lastyear_activity"])
    assert df.loc[0, "lastmonth_activity"] == 10 and df.loc[2, "number_of_employees"] == 60


def test_odd_but_acceptable_files_are_ingested(workspace: Path) -> None:
    for i, (name, data) in enumerate(ODD_FILES.items()):
        # each file its own clients, so each one's rows must arrive
        (workspace / "sourcedata" / name).write_bytes(data.replace(b"odd", f"od{i}".encode()))
    (workspace / "sourcedata" / "missing.csv").write_text(csv_text("missaa,,1200,40,0", "missbb,20,,,1"))
    r = ingest_ok(workspace)
    assert r["rejected_files"] == []
    assert sorted(Path(f["name"]).name for f in r["ingested_files"]) == sorted(
        ["dataset3.csv", "dataset4.csv", "missing.csv", *ODD_FILES])
    got = final_rows(workspace).set_index("corporation")
    for i in range(len(ODD_FILES)):
        assert got.loc[f"od{i}aa"].tolist() == [10, 1200, 40, 0]  # values in their own columns, wherever they were
        assert np.isnan(got.loc[f"od{i}bb", "lastmonth_activity"])
    assert np.isnan(got.loc["missaa", "lastmonth_activity"]) and got.loc["missaa", "lastyear_activity"] == 1200
    assert got.loc["missbb"].isna().tolist() == [False, True, True, False]
    assert "missbb,20,,,1\n" in (out(workspace) / "finaldata.csv").read_text()  # not filled in with a guess


# ---------------------------------------------------------------- failed runs lose nothing


def test_config_columns_in_another_order_than_finaldata_fails_and_changes_nothing(ingested: Path) -> None:
    (ingested / "sourcedata" / "more.csv").write_text(csv_text("moreaa,1,2,3,0"))
    write_config(ingested, "reordered.json",
                 feature_columns=["number_of_employees", "lastyear_activity", "lastmonth_activity"])
    before = tree_hashes(out(ingested))
    p = run_script("ingestion.py", ingested, config="reordered.json")
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "finaldata.csv" in lines[0] and "columns" in lines[0], p.stderr
    assert tree_hashes(out(ingested)) == before

    r = ingest_ok(ingested)  # with the right config the new file is still new
    assert r["rows_added"] == 1


def test_a_run_where_every_new_file_is_bad_keeps_the_data(ingested: Path) -> None:
    data, record = out(ingested) / "finaldata.csv", out(ingested) / "ingestedfiles.txt"
    kept = data.read_bytes(), record.read_bytes()
    (ingested / "sourcedata" / "bad1.csv").write_bytes(BAD_FILES["targetyes.csv"][0])
    (ingested / "sourcedata" / "bad2.csv").write_bytes(BAD_FILES["gzipped.csv"][0])
    p = run_script("ingestion.py", ingested)
    assert "2 files rejected" in p.stdout, (p.stdout, p.stderr)
    assert (data.read_bytes(), record.read_bytes()) == kept
    assert sorted(recorded_names(ingested, "rejectedfiles.txt")) == ["bad1.csv", "bad2.csv"]
