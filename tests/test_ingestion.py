"""ingestion.py by hand: distinct rows only, bad files refused one by one, nothing lost or touched.
Each kind of odd or bad file has its own test in tests/test_badinput.py (the corpus is tests/badinput.py)."""
from __future__ import annotations

import csv
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from badinput import KINDS, write_bytes, write_corpus
from config import load_config
from conftest import make_workspace, run_json, run_script, tree_hashes, write_config
from datacontract import parse_csv

HEADER = "corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited"


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
    for fields, source in zip(lines, sources, strict=True):
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


def clients(rng: np.random.Generator, tag: str, n: int) -> pd.DataFrame:
    """n new clients: whole and decimal numbers, a few missing values."""
    df = pd.DataFrame({"corporation": [f"{tag}{i:03d}" for i in range(n)],
                       "lastmonth_activity": rng.integers(0, 2000, n).astype(float),
                       "lastyear_activity": np.round(rng.uniform(0, 30000, n), 3),
                       "number_of_employees": rng.integers(1, 1000, n).astype(float),
                       "exited": rng.integers(0, 2, n)})
    df.loc[rng.random(n) < 0.1, "lastmonth_activity"] = np.nan
    return df


def mixed(rng: np.random.Generator, *parts: pd.DataFrame) -> pd.DataFrame:
    """Rows of several frames in a shuffled order."""
    both = pd.concat(parts, ignore_index=True)
    return both.iloc[rng.permutation(len(both))]


def test_incremental_ingestion_ends_with_the_rows_of_one_run_from_scratch(workspace: Path, tmp_path: Path) -> None:
    """New files over several runs, with duplicates within files, across files and against older runs, written
    plainly (the fast reader), quoted (the checked reader) or with other number spellings: the data set ends up
    the same set of rows as one run over the same files from scratch, and both are the distinct rows of them all."""
    rng, src = np.random.default_rng(7), workspace / "sourcedata"
    old = pd.concat([pd.read_csv(f) for f in sorted(src.glob("*.csv"))], ignore_index=True)
    fresh = [clients(rng, tag, n) for tag, n in (("inca", 30), ("incb", 15), ("incc", 12), ("incd", 5))]
    added = [ingest_ok(workspace)["rows_added"]]

    mixed(rng, old.sample(20, random_state=1), fresh[0], fresh[0].sample(5, random_state=2)).to_csv(
        src / "new1.csv", index=False)
    mixed(rng, fresh[0].sample(10, random_state=3), fresh[1]).to_csv(src / "new2.csv", index=False,
                                                                     quoting=csv.QUOTE_ALL)
    added.append(ingest_ok(workspace)["rows_added"])

    mixed(rng, fresh[1].sample(8, random_state=4), old.sample(10, random_state=5), fresh[2]).to_csv(
        src / "new3.csv", index=False, float_format="%.6f")  # "10.000000" is the 10 already stored
    with open(src / "dataset4.csv", "a") as f:  # a changed file: its old rows and some new ones
        mixed(rng, fresh[3], fresh[2].head(2)).to_csv(f, index=False, header=False)
    added.append(ingest_ok(workspace)["rows_added"])
    added.append(ingest_ok(workspace)["rows_added"])  # nothing new

    scratch = make_workspace(tmp_path / "scratch")
    shutil.rmtree(scratch / "sourcedata")
    shutil.copytree(src, scratch / "sourcedata")
    r = ingest_ok(scratch)

    cfg = load_config(workspace / "config.json")
    typed = [parse_csv(f.read_bytes(), cfg, f.name) for f in sorted(src.glob("*.csv"))]
    distinct = pd.concat(typed, ignore_index=True).drop_duplicates()
    incremental, full = typed_final(workspace, cfg), typed_final(scratch, cfg)
    assert added[1] > 0 and added[2] > 0 and added[3] == 0
    assert sum(added) == len(incremental) == r["rows_added"] == len(full) == len(distinct)
    assert not incremental.duplicated().any()
    pd.testing.assert_frame_equal(canonical(incremental), canonical(full), check_exact=True)
    pd.testing.assert_frame_equal(canonical(incremental), canonical(distinct), check_exact=True)


def typed_final(ws: Path, cfg: dict[str, Any]) -> pd.DataFrame:
    """finaldata.csv read back through the data contract (the types every step works with)."""
    return parse_csv((out(ws) / "finaldata.csv").read_bytes(), cfg, "finaldata.csv")


# ---------------------------------------------------------------- bad files (each kind: tests/test_badinput.py)

# Every kind of bad file the corpus has that is bad for its bytes alone (not for its name, link or permissions).
BAD = [k for k in KINDS if k["outcome"] == "rejected" and k["make"] is write_bytes]
GOOD_ROWS = ["goodaa,5,600,7,0", "goodbb,8,900,10,1"]


@pytest.fixture(scope="module")
def rejection_run(tmp_path_factory) -> dict[str, Any]:
    """One ingestion run over the shipped data, every bad kind of file and one good file, all new at once."""
    ws = make_workspace(tmp_path_factory.mktemp("rejection"))
    write_corpus(ws / "sourcedata", ws / "outside", [k["kind"] for k in BAD])
    (ws / "sourcedata" / "good.csv").write_text(csv_text(*GOOD_ROWS))
    before = tree_hashes(ws / "sourcedata")
    p = run_script("ingestion.py", ws)
    return {"ws": ws, "proc": p, "before": before}


def test_bad_files_do_not_stop_the_good_ones_nor_get_touched(rejection_run: dict[str, Any]) -> None:
    ws, p = rejection_run["ws"], rejection_run["proc"]
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 1 and f"{len(BAD)} files rejected" in lines[0], p.stdout
    assert "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == len(BAD)  # one line each
    assert tree_hashes(ws / "sourcedata") == rejection_run["before"]  # byte-identical, none moved or deleted
    assert sorted(recorded_names(ws, "ingestedfiles.txt")) == ["dataset3.csv", "dataset4.csv", "good.csv"]
    assert sorted(recorded_names(ws, "rejectedfiles.txt")) == sorted(k["file"] for k in BAD)
    got = final_rows(ws)
    assert {"goodaa", "goodbb"} <= set(got.corporation)
    assert not [c for c in got.corporation if any(c.startswith(k["kind"] + "-") for k in BAD)]  # none got in


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


def on_a_terminal(script: str, ws: Path) -> tuple[int, str, str]:
    """Run a script with its stderr on a pseudo-terminal, as a person at a shell sees it: (exit code, stdout,
    what the terminal showed)."""
    import pty
    import subprocess
    import sys

    from conftest import ROOT
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, str(ROOT / script), "--config", str(ws / "config.json")], cwd=ws,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the last writer closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    stdout = p.stdout.read().decode()
    return p.wait(timeout=120), stdout, shown.decode(errors="replace")


def test_long_steps_show_progress_on_a_terminal_and_nothing_under_cron(workspace):
    """Issue 7: files and rows done, the rate and the time left while a person watches; under cron (no
    terminal) stderr stays empty and stdout is the summary line either way."""
    code, stdout, shown = on_a_terminal("ingestion.py", workspace)
    assert code == 0 and stdout.startswith("ingested 2 new files") and stdout.count("\n") == 1
    assert "ingestion: 1/2 files read" in shown and "rows/s" in shown and "s left" in shown, shown
    assert shown.rstrip().endswith("done") and "\r" in shown
    code, stdout, shown = on_a_terminal("training.py", workspace)
    assert code == 0 and stdout.startswith("trained model on") and "training: fitting on 1,712 rows" in shown, shown
    assert shown.rstrip().endswith("done")
    (workspace / "sourcedata" / "more.csv").write_text(csv_text("progressa,1,2,3,0"))
    p = run_script("ingestion.py", workspace)  # stderr a pipe, as under cron
    assert p.returncode == 0 and p.stderr == "" and p.stdout.startswith("ingested 1 new file")
