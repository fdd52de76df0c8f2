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
from conftest import (
    ingested_record,
    make_workspace,
    rejected_record,
    run_json,
    run_script,
    store_manifest,
    tree_hashes,
    write_config,
)
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


def exported_names(ws: Path) -> list[str]:
    """The file names the ingestedfiles.txt export lists, one a line."""
    return (out(ws) / "ingestedfiles.txt").read_text(encoding="utf-8").splitlines()


def recorded_names(record: dict[str, Any]) -> list[str]:
    """The base names of the files a record of the store's manifest holds."""
    return [Path(name).name for name in record]


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

    names = [f"sourcedata/{f.name}" for f in sources]
    assert exported_names(workspace) == names
    record = ingested_record(workspace)
    assert list(record) == names and rejected_record(workspace) == {}
    for name, source in zip(names, sources, strict=True):
        assert record[name]["sha256"] == sha256(source) and record[name]["rows"] == len(pd.read_csv(source))


def test_running_again_without_new_data_changes_nothing(ingested: Path) -> None:
    before = tree_hashes(out(ingested))
    p = run_script("ingestion.py", ingested)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("no new data"), p.stdout
    assert tree_hashes(out(ingested)) == before

    source = ingested / "sourcedata" / "dataset3.csv"  # touched (a copy, a checkout) but not changed
    st = source.stat()
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns - 5_000_000_000))
    data = (out(ingested) / "finaldata.csv").read_bytes()
    batches = store_manifest(ingested)["batches"]
    p = run_script("ingestion.py", ingested)
    assert p.returncode == 0 and p.stdout.startswith("no new data"), (p.stdout, p.stderr)
    assert (out(ingested) / "finaldata.csv").read_bytes() == data
    # Its record notes the new mtime (so it is not hashed again), and nothing else: the same batch, no new one.
    now = store_manifest(ingested)["batches"]
    assert now == [{**b, "mtime_ns": source.stat().st_mtime_ns} if b["file"] == "sourcedata/dataset3.csv" else b
                   for b in batches]
    before = tree_hashes(out(ingested))
    p = run_script("ingestion.py", ingested)
    assert p.stdout.startswith("no new data") and tree_hashes(out(ingested)) == before, (p.stdout, p.stderr)


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


def distinct_rows(*sources: Path) -> pd.DataFrame:
    """The distinct rows of the source files, as finaldata.csv reads back."""
    return pd.concat([pd.read_csv(f) for f in sources], ignore_index=True).drop_duplicates()


def test_a_changed_file_replaces_its_old_version_old_rows_leave_and_new_rows_join(ingested: Path) -> None:
    src = ingested / "sourcedata"
    source, original = src / "dataset4.csv", (src / "dataset4.csv").read_bytes()
    old_batch = ingested_record(ingested)["sourcedata/dataset4.csv"]
    lines = original.decode().splitlines()
    gone = {line.split(",")[0] for line in lines[1:4]}  # clients only these rows of this file hold
    kept = (src / "dataset3.csv").read_text().splitlines()[1:] + lines[4:]
    assert len(gone) == 3 and not [line for line in kept if line.split(",")[0] in gone]
    source.write_text("".join(line + "\n" for line in [lines[0], *lines[4:], "chgaa,11,1100,11,0",
                                                         "chgbb,22,2200,22,1"]))
    r = ingest_ok(ingested)
    new_id = store_manifest(ingested)["next_batch"] - 1
    assert r["ingested_files"] == [{"name": "sourcedata/dataset4.csv", "batch": new_id, "rows_read": len(lines) - 2,
                                    "rows_added": 2, "rows_removed": 3, "replaced": True, "labelled": True}], r
    assert (r["rows_added"], r["rows_removed"]) == (2, 3)
    got = final_rows(ingested)
    assert not got.duplicated().any() and {"chgaa", "chgbb"} <= set(got.corporation)
    assert not set(got.corporation) & gone
    pd.testing.assert_frame_equal(canonical(got), canonical(distinct_rows(src / "dataset3.csv", source)))
    # The store holds the new version; the old one is retired, replaced by it; the file is listed once.
    record = ingested_record(ingested)["sourcedata/dataset4.csv"]
    assert record["sha256"] == sha256(source) and record["id"] == new_id
    assert store_manifest(ingested)["retired"] == [{**old_batch, "replaced_by": new_id,
                                                    "retired_at": store_manifest(ingested)["retired"][0]["retired_at"]}]
    assert exported_names(ingested) == ["sourcedata/dataset3.csv", "sourcedata/dataset4.csv"]

    source.write_bytes(original)  # the change undone: its rows come back, the two new ones leave
    p = run_script("ingestion.py", ingested)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("ingested 1 new file (1 a new version: 2 rows removed): 3 rows,"), p.stdout
    pd.testing.assert_frame_equal(canonical(final_rows(ingested)),
                                  canonical(distinct_rows(src / "dataset3.csv", source)))
    assert ingested_record(ingested)["sourcedata/dataset4.csv"]["sha256"] == sha256(source)


def test_on_change_append_keeps_the_old_version_rows_and_adds_only_the_new_ones(ingested: Path) -> None:
    write_config(ingested, ingestion={"settle_seconds": 0, "unterminated_seconds": 0, "on_change": "append"})
    old = final_rows(ingested)
    source = ingested / "sourcedata" / "dataset4.csv"
    source.write_text(csv_text("chgaa,11,1100,11,0", "chgbb,22,2200,22,1"))  # every earlier row gone from it
    r = ingest_ok(ingested)
    assert [(f["name"], f["rows_added"], f["rows_removed"], f["replaced"]) for f in r["ingested_files"]] == \
        [("sourcedata/dataset4.csv", 2, 0, False)]
    got = final_rows(ingested)
    assert len(got) == len(old) + 2 and not got.duplicated().any()
    pd.testing.assert_frame_equal(canonical(got.head(len(old))), canonical(old))
    assert exported_names(ingested) == ["sourcedata/dataset3.csv", "sourcedata/dataset4.csv",
                                        "sourcedata/dataset4.csv"]


def test_deleted_or_edited_exports_and_a_killed_run_leftovers_are_rebuilt_and_deduplication_still_holds(
        workspace: Path) -> None:
    # decimals and missing values too: the rebuilt export must read back to the very values stored
    (workspace / "sourcedata" / "decimals.csv").write_text(
        csv_text("decaa,0.1,1234.5678901234567,3,0", "decbb,1e-7,2.675,,1", "decbb,1e-7,2.675,,1"))
    ingest_ok(workspace)
    cfg = load_config(workspace / "config.json")
    final, listed = out(workspace) / "finaldata.csv", out(workspace) / "ingestedfiles.txt"
    data, names, old = final.read_bytes(), listed.read_bytes(), final_rows(workspace)
    store = out(workspace) / "store"
    batches = sorted(p.name for p in (store / "batches").iterdir())
    # What a run killed before its commit leaves: a batch and an index no manifest names.
    next_batch = store_manifest(workspace)["next_batch"]
    shutil.copy(store / "batches" / batches[0], store / "batches" / f"{next_batch:06d}.parquet")
    shutil.copy(store / store_manifest(workspace)["index"], store / "index-000099.npz")
    final.unlink()
    listed.write_text("sourcedata/dataset3.csv\n")
    p = run_script("ingestion.py", workspace)
    assert p.returncode == 0 and p.stdout.startswith("no new data"), (p.stdout, p.stderr)
    assert final.read_bytes() == data and listed.read_bytes() == names  # rebuilt as they were
    assert sorted(p.name for p in (store / "batches").iterdir()) == batches
    assert not (store / "index-000099.npz").exists()

    with open(final, "a") as f:  # edited by hand: a row nobody ingested
        f.write("handmade,1,2,3,0\n")
    again = old.sample(10, random_state=1)
    again.to_csv(workspace / "sourcedata" / "again.csv", index=False)
    (workspace / "sourcedata" / "again2.csv").write_text(
        csv_text("decaa,0.1,1234.5678901234567,3,0", "decbb,1e-7,2.675,,1", "fresh,1,2,3,0"))
    r = ingest_ok(workspace)
    assert r["rows_added"] == 1, r
    got = final_rows(workspace)
    assert len(got) == len(old) + 1 and not got.duplicated().any() and "handmade" not in set(got.corporation)
    typed = typed_final(workspace, cfg)
    decimals = typed[typed.corporation.isin(["decaa", "decbb"])].reset_index(drop=True)
    expected = parse_csv(csv_text("decaa,0.1,1234.5678901234567,3,0", "decbb,1e-7,2.675,,1").encode(), cfg, "x")
    pd.testing.assert_frame_equal(decimals, expected, check_exact=True)


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
    assert sorted(recorded_names(ingested_record(ws))) == ["dataset3.csv", "dataset4.csv", "good.csv"]
    assert exported_names(ws) == ["sourcedata/dataset3.csv", "sourcedata/dataset4.csv", "sourcedata/good.csv"]
    assert sorted(recorded_names(rejected_record(ws))) == sorted(k["file"] for k in BAD)
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
    os.utime(bad, ns=(st.st_atime_ns, st.st_mtime_ns - 5_000_000_000))  # touched, not changed: still not retried
    p = run_script("ingestion.py", workspace)
    assert "1 still rejected" in p.stdout and "late.csv" not in p.stderr, (p.stdout, p.stderr)
    assert rejected_record(workspace)["sourcedata/late.csv"]["mtime_ns"] == bad.stat().st_mtime_ns  # not hashed again

    bad.write_text(csv_text("lateaa,1,2,3,0", "latebb,1,2,3,1"))  # fixed (and a different size)
    r = ingest_ok(workspace)
    assert [Path(f["name"]).name for f in r["ingested_files"]] == ["late.csv"] and r["rows_added"] == 2
    assert ingested_record(workspace)["sourcedata/late.csv"]["sha256"] == sha256(bad)
    assert "sourcedata/late.csv" in exported_names(workspace)
    assert "sourcedata/late.csv" not in rejected_record(workspace)
    assert {"lateaa", "latebb"} <= set(final_rows(workspace).corporation)


# ---------------------------------------------------------------- the configured column order


def test_config_columns_in_another_order_only_change_the_order_finaldata_is_exported_in(ingested: Path) -> None:
    """The store keeps columns by name: a config listing the features in another order ingests as before (a row
    already stored is still a duplicate) and exports finaldata.csv in its order, header and rows alike."""
    src = ingested / "sourcedata"
    (src / "more.csv").write_text(csv_text("moreaa,1,2,3,0"))
    (src / "again.csv").write_text(csv_text(*(src / "dataset3.csv").read_text().splitlines()[1:4]))
    order = ["number_of_employees", "lastyear_activity", "lastmonth_activity"]
    write_config(ingested, "reordered.json", feature_columns=order)
    p = run_script("ingestion.py", ingested, config="reordered.json")
    assert p.returncode == 0 and p.stderr == "", (p.stdout, p.stderr)
    assert p.stdout.startswith("ingested 2 new files: 1 row, 3 duplicates dropped"), p.stdout
    final = out(ingested) / "finaldata.csv"
    assert final.read_text().splitlines()[0] == ",".join(["corporation", *order, "exited"])
    expected = distinct_rows(*sorted(src.glob("*.csv")))
    got = final_rows(ingested)
    assert not got.duplicated().any()
    pd.testing.assert_frame_equal(canonical(got[expected.columns]), canonical(expected))

    r = ingest_ok(ingested)  # the shipped config again: nothing is new, and the export still reads right by name
    assert r["ingested_files"] == [] and r["rows_added"] == 0
    pd.testing.assert_frame_equal(canonical(final_rows(ingested)[expected.columns]), canonical(expected))


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


def test_long_steps_show_progress_on_a_terminal_and_nothing_under_cron(workspace: Path) -> None:
    """Files and rows done, the rate and the time left while a person watches; under cron (no
    terminal) stderr stays empty and stdout is the summary line either way."""
    code, stdout, shown = on_a_terminal("ingestion.py", workspace)
    assert code == 0 and stdout.startswith("ingested 2 new files") and stdout.count("\n") == 1
    assert "ingestion: 1/2 files, 918 rows" in shown and "rows/s" in shown and "s left" in shown, shown
    assert shown.rstrip().endswith("done") and "\r" in shown
    code, stdout, shown = on_a_terminal("training.py", workspace)
    assert code == 0 and stdout.startswith("trained model on") and "training: fitting on 1,712 rows" in shown, shown
    assert shown.rstrip().endswith("done")
    (workspace / "sourcedata" / "more.csv").write_text(csv_text("progressa,1,2,3,0"))
    p = run_script("ingestion.py", workspace)  # stderr a pipe, as under cron
    assert p.returncode == 0 and p.stderr == "" and p.stdout.startswith("ingested 1 new file")
