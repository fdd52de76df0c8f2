"""Where files land: the ingested store against the ways real data arrives. A file copied in slowly while ticks run,
a 30 GB file beside a good one, a corrected re-delivery, the exports re-saved or deleted by hand, a manifest broken
by hand, a rollback racing a deployment. Every step is a real script run in a workspace of its own."""
from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import deployment
from campaign import clone
from config import load_config
from conftest import ROOT, make_workspace, run_json, run_script, write_config

HEADER = "corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\n"
COLUMNS = HEADER.strip().split(",")


def manifest(ws: Path) -> dict[str, Any]:
    """The store's manifest."""
    return json.loads((ws / "ingesteddata" / "store" / "manifest.json").read_text())


def stored(ws: Path) -> set[tuple[str, ...]]:
    """The rows of finaldata.csv (the store's export), as text tuples."""
    df = pd.read_csv(ws / "ingesteddata" / "finaldata.csv", dtype=str, keep_default_na=False)
    assert list(df.columns) == COLUMNS
    return set(df.itertuples(index=False, name=None))


def rows_of(text: str) -> set[tuple[str, ...]]:
    """The data rows of CSV text we wrote, as text tuples."""
    return {tuple(line.split(",")) for line in text.splitlines()[1:] if line}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace whose shipped source data is ingested and deployed as release 1."""
    ws = make_workspace(tmp_path_factory.mktemp("store") / "ws")
    assert run_script("fullprocess.py", ws).returncode == 0
    return ws


# ---------------------------------------------------------------- landing

def test_a_file_copied_in_slowly_while_ticks_run_ends_with_exactly_its_final_rows(deployed, tmp_path):
    """A writer pauses at random byte positions (mid-number, mid-row, right after a line end) while cron ticks run
    with the real landing rule; no row that exists in no version of the file is ever stored."""
    ws = clone(deployed, tmp_path / "ws")
    write_config(ws, ingestion={"settle_seconds": 1.0, "unterminated_seconds": 30.0})
    rng = random.Random(7)
    text = HEADER + "".join(f"slow{i:04d},{rng.randint(0, 900)},{rng.randint(0, 3000)},{rng.randint(1, 90)},"
                            f"{rng.randint(0, 1)}\n" for i in range(400))
    cuts = sorted(rng.sample(range(1, len(text)), 12)) + [len(text)]
    target = ws / "sourcedata" / "slow.csv"
    versions = []
    with open(target, "w") as f:
        start = 0
        for cut in cuts:
            f.write(text[start:cut])
            f.flush()
            start = cut
            versions.append(text[:cut])
            for _ in range(2):  # ticks while the writer pauses: some see it fresh, some settled mid-row
                p = run_script("fullprocess.py", ws)
                assert p.returncode == 0, p.stderr
                assert rows_of(text) >= {r for r in stored(ws) if r[0].startswith("slow")}, "a partial row was stored"
            time.sleep(rng.choice([0.2, 1.3]))
    time.sleep(1.2)
    assert run_script("fullprocess.py", ws).returncode == 0
    assert {r for r in stored(ws) if r[0].startswith("slow")} == rows_of(text)
    live = [b for b in manifest(ws)["batches"] if b["file"] == "sourcedata/slow.csv"]
    assert len(live) == 1 and live[0]["rows"] == 400


def test_a_huge_sparse_file_is_rejected_and_does_not_block_a_good_one(deployed, tmp_path):
    """30 GB of NUL bytes (a sparse file: no disk used) beside a good file: the good one is ingested, the huge one
    rejected with one line naming it, in bounded memory; the next run does not read it again."""
    ws = clone(deployed, tmp_path / "ws")
    huge = ws / "sourcedata" / "huge.csv"
    with open(huge, "wb") as f:
        f.truncate(30 * 2**30)
    (ws / "sourcedata" / "good.csv").write_text(HEADER + "gooda,1,2,3,0\ngoodb,4,5,6,1\n")
    cmd = [sys.executable, str(ROOT / "ingestion.py"), "--config", str(ws / "config.json"), "--json"]
    p = subprocess.run(["prlimit", f"--as={3 * 2**30}", *cmd], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert [f["name"] for f in result["ingested_files"]] == ["sourcedata/good.csv"]
    (reason,) = [f["reason"] for f in result["rejected_files"] if f["name"] == "sourcedata/huge.csv"]
    assert reason.startswith("sourcedata/huge.csv: ") and "\n" not in reason
    assert {("gooda", "1", "2", "3", "0"), ("goodb", "4", "5", "6", "1")} <= stored(ws)
    started = time.monotonic()
    again = run_json("ingestion.py", ws)
    assert again["rejected_files"] == [] and again["still_rejected_files"] == 1
    assert time.monotonic() - started < 60  # not hashed nor read again: 30 GB would take minutes


# ---------------------------------------------------------------- corrections

def corrected(ws: Path) -> tuple[str, str]:
    """A client file delivered, then delivered again under the same name with one label corrected."""
    src = ws / "sourcedata" / "client.csv"
    first = HEADER + "corra,10,20,3,0\ncorrb,11,21,4,1\ncorrc,12,22,5,0\n"
    src.write_text(first)
    assert run_script("ingestion.py", ws).returncode == 0
    second = first.replace("corrb,11,21,4,1", "corrb,11,21,4,0")
    recorded = src.stat().st_mtime_ns
    src.write_text(second)  # same size: only the content hash tells
    os.utime(src, ns=(recorded, recorded - 10**9))  # another mtime whatever the clock's granularity, in the past
    return first, second


def test_a_corrected_redelivery_replaces_the_wrong_row(deployed, tmp_path):
    ws = clone(deployed, tmp_path / "ws")
    first, second = corrected(ws)
    p = run_script("ingestion.py", ws)
    assert p.returncode == 0, p.stderr
    assert "a new version: 1 row removed): 1 row," in p.stdout, p.stdout
    rows = {r for r in stored(ws) if r[0].startswith("corr")}
    assert rows == rows_of(second)
    m = manifest(ws)
    assert [b["file"] for b in m["retired"]] == ["sourcedata/client.csv"]
    assert [b["file"] for b in m["batches"]].count("sourcedata/client.csv") == 1
    # The model trains on the store: the corrected label alone
    assert run_script("training.py", ws).returncode == 0


def test_with_on_change_append_both_versions_stay(deployed, tmp_path):
    ws = clone(deployed, tmp_path / "ws")
    write_config(ws, ingestion={"settle_seconds": 0, "unterminated_seconds": 0, "on_change": "append"})
    first, second = corrected(ws)
    assert run_script("ingestion.py", ws).returncode == 0
    assert {r for r in stored(ws) if r[0].startswith("corr")} == rows_of(first) | rows_of(second)


def test_a_file_that_grew_after_it_was_ingested_ends_with_exactly_its_rows(deployed, tmp_path):
    ws = clone(deployed, tmp_path / "ws")
    src = ws / "sourcedata" / "grow.csv"
    src.write_text(HEADER + "growa,1,2,3,0\n")
    assert run_script("ingestion.py", ws).returncode == 0
    with open(src, "a") as f:
        f.write("growb,4,5,6,1\n")
    assert run_script("ingestion.py", ws).returncode == 0
    assert {r for r in stored(ws) if r[0].startswith("grow")} == {("growa", "1", "2", "3", "0"),
                                                                   ("growb", "4", "5", "6", "1")}


# ---------------------------------------------------------------- the exports

@pytest.mark.parametrize("damage", ["crlf", "delete", "edit"])
def test_exports_edited_or_deleted_by_hand_are_rebuilt_and_no_tick_breaks(deployed, tmp_path, damage):
    ws = clone(deployed, tmp_path / "ws")
    final, record = ws / "ingesteddata" / "finaldata.csv", ws / "ingesteddata" / "ingestedfiles.txt"
    before = (final.read_bytes(), record.read_bytes())
    if damage == "crlf":  # re-saved by a spreadsheet: a valid CSV still
        final.write_bytes(final.read_bytes().replace(b"\n", b"\r\n"))
    elif damage == "delete":
        final.unlink()
        record.unlink()
    else:
        final.write_text(HEADER + "madeup,1,1,1,1\n")
    p = run_script("fullprocess.py", ws)
    assert p.returncode == 0 and p.stdout.startswith("no new data"), p.stderr
    assert (final.read_bytes(), record.read_bytes()) == before
    # and the next ticks are plain no-new-data ticks again
    assert run_script("fullprocess.py", ws).stdout.startswith("no new data")
    (ws / "sourcedata" / "more.csv").write_text(HEADER + "morea,1,2,3,0\n")
    p = run_script("fullprocess.py", ws)
    assert p.returncode == 0 and "ingested 1 new file" in p.stdout, p.stderr


def test_the_export_from_ingested_pieces_is_the_export_read_back_from_the_batches(tmp_path):
    """finaldata.csv written from the CSV lines made while the pieces were ingested (rows the dataset does not keep
    cut out) is byte for byte the one rebuilt from the batch files: duplicates within a piece, across pieces and
    across files, missing cells, decimals, whole floats, -0, an unlabelled file, and a file whose ids need quoting
    (read back instead); nothing of the lines is left in the store."""
    rng = random.Random(3)
    rows = [f"c{rng.randrange(10**5):05d},{rng.choice(['', 'NA', '7', '7.25', '-0', '1e3'])},"
            f"{rng.randrange(90000) / rng.choice([1, 4])},{rng.randrange(300)},{rng.randrange(2)}\n"
            for _ in range(2000)]
    ws = tmp_path / "ws"
    (ws / "sourcedata").mkdir(parents=True)
    shutil.copytree(ROOT / "testdata", ws / "testdata")
    write_config(ws, ingestion={"settle_seconds": 0, "unterminated_seconds": 0, "chunk_bytes": 8192})
    (ws / "sourcedata" / "a.csv").write_text(HEADER + "".join(rows + rows[:300] + rows[100:110]))
    (ws / "sourcedata" / "b.csv").write_text(HEADER + "".join(rows[1500:] + rows[:50] + rows[:50]))
    (ws / "sourcedata" / "c.csv").write_text(HEADER + '"x,1",1,2,3,0\n"x,1",1,2,3,0\nx2,1.5,2,3,1\n' + rows[7])
    (ws / "sourcedata" / "d.csv").write_text(HEADER.replace(",exited", "") + "u1,1,2,3\n")
    run_json("ingestion.py", ws)
    (ws / "sourcedata" / "e.csv").write_text(HEADER + "".join(rows[:20] + ["new1,1,2,3,1\n"] * 2))
    assert run_json("ingestion.py", ws)["rows_added"] == 1  # appended to finaldata.csv from e.csv's lines
    final = ws / "ingesteddata" / "finaldata.csv"
    made = final.read_bytes()
    final.unlink()
    p = run_script("ingestion.py", ws)
    assert p.returncode == 0 and p.stdout.startswith("no new data"), p.stderr
    assert final.read_bytes() == made
    assert made.count(b"\n") == 1 + len(set(rows + ["new1,1,2,3,1\n"])) + 2  # with "x,1" once and x2
    assert not list((ws / "ingesteddata" / "store").glob("csv-*")), "the CSV lines are left in the store"


def test_a_piece_s_own_lines_are_taken_only_when_they_are_the_lines_the_export_writes(cfg, tmp_path, monkeypatch):
    """store.own_lines answers only with the very bytes csv_rows writes (cells padded, signed, with a point, an
    exponent or a leading zero, ids with digits or spaces, numbers of 10 and 11 digits), and the export's cut of
    the rows a batch does not keep, and its copy of them all, take exactly the batch's lines from the run's lines
    file whatever the block size."""
    import numpy as np

    import store
    from datacontract import DataError, columns, parse_csv
    rng = random.Random(5)
    odd = ["00", "01", "7.5", "-0", "1e3", " 5", "5 ", "+5", "NA", "10000000000", "7.0"]
    taken = 0
    for _ in range(1500):
        lines = [",".join([rng.choice(["abc", "c123", "0", "a b", " a", "a ", "NA", ""]) if rng.random() < 0.2
                           else "abc"]
                          + [rng.choice(odd) if rng.random() < 0.05 else rng.choice(["0", "7", "", "9999999999"])
                             for _ in cfg["feature_columns"]] + [rng.choice("01")]) + "\n"
                 for _ in range(rng.randint(1, 5))]
        data = (",".join(columns(cfg)) + "\n" + "".join(lines)).encode()
        try:
            df = parse_csv(data, cfg, "x.csv")
        except DataError:
            continue
        table = store.stored_table(df).select(columns(cfg))
        own = store.own_lines(data, table)
        if own is not None:
            taken += 1
            assert bytes(own) == store.csv_rows(table, cfg), data
    assert taken > 300
    for _ in range(300):
        lines = [("x" * rng.randint(0, 12) + "\n").encode() for _ in range(rng.randint(1, 60))]
        keep = np.array([rng.random() < rng.choice([0.1, 0.5, 0.95, 1.0]) for _ in lines])
        monkeypatch.setattr(store, "EXPORT_BLOCK", rng.randint(1, 40))
        # the batch's lines amid other batches' in the run's lines file
        before, after = b"h,1\n" * rng.randint(0, 3), b"o,1\n" * rng.randint(0, 3)
        (tmp_path / "c.csv").write_bytes(before + b"".join(lines) + after)
        lines_at = {"path": tmp_path / "c.csv", "start": len(before), "end": len(before) + len(b"".join(lines))}
        with open(tmp_path / "out.csv", "wb") as f:
            store._append_kept(f, lines_at, keep)
        assert (tmp_path / "out.csv").read_bytes() == b"".join(line for line, k in zip(lines, keep, strict=True) if k)
        with open(tmp_path / "out.csv", "wb") as f:
            f.write(b"head\n")
            store._copy_into(f, lines_at)  # all of them kept
        assert (tmp_path / "out.csv").read_bytes() == b"head\n" + b"".join(lines)


def test_the_practice_data_survives_a_deleted_export(tmp_path):
    """The practice and production configs share the store: rebuilding the exports never drops the rows of files
    that only the other config's folder holds."""
    ws = make_workspace(tmp_path / "ws")
    assert run_script("fullprocess.py", ws, config="config.practice.json").returncode == 0
    assert run_script("fullprocess.py", ws).returncode == 0
    names = (ws / "ingesteddata" / "ingestedfiles.txt").read_text().splitlines()
    assert names == ["practicedata/dataset1.csv", "practicedata/dataset2.csv", "sourcedata/dataset3.csv",
                     "sourcedata/dataset4.csv"]
    rows = stored(ws)
    (ws / "ingesteddata" / "finaldata.csv").unlink()
    assert run_script("fullprocess.py", ws).returncode == 0
    assert stored(ws) == rows
    assert (ws / "ingesteddata" / "ingestedfiles.txt").read_text().splitlines() == names


def test_a_manifest_broken_by_hand_fails_the_tick_in_one_recorded_line(deployed, tmp_path):
    ws = clone(deployed, tmp_path / "ws")
    m = manifest(ws)
    (ws / "ingesteddata" / "store" / "manifest.json").write_text("{ not json")
    p = run_script("fullprocess.py", ws)
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "manifest.json: unreadable store manifest" in p.stderr
    db = sqlite3.connect(ws / "history" / "history.sqlite3")
    (outcome, summary), = db.execute("SELECT outcome, summary FROM runs WHERE step = 'fullprocess' "
                                     "ORDER BY id DESC LIMIT 1").fetchall()
    db.close()
    assert outcome == "failed" and "unreadable store manifest" in summary
    (ws / "ingesteddata" / "store" / "manifest.json").write_text(json.dumps(m))
    assert run_script("fullprocess.py", ws).stdout.startswith("no new data")  # restored: all is well again


# ---------------------------------------------------------------- concurrency

def test_training_waits_for_a_deployment_in_progress(deployed, tmp_path):
    """Training, scoring-free deployment and rollback share one lock: a manual training.py started while a
    deployment holds it writes nothing until the deployment is done, so no release mixes two trainings."""
    ws = clone(deployed, tmp_path / "ws")
    lock = ws / "production_deployment" / ".deployment.lock"
    model = ws / "models" / "trainedmodel.pkl"
    before = model.stat().st_mtime_ns
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what a deployment holds while it copies models/
        proc = subprocess.Popen([sys.executable, str(ROOT / "training.py"), "--config", str(ws / "config.json")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(4)
        assert proc.poll() is None and model.stat().st_mtime_ns == before, "training wrote under a deployment"
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert model.stat().st_mtime_ns != before


def test_a_rollback_during_a_tick_stands(deployed, tmp_path):
    """The tick compared its challenger with release 2; a rollback to release 1 came first: nothing is deployed
    over it, and the tick's decision says why."""
    ws = clone(deployed, tmp_path / "ws")
    assert run_script("fullprocess.py", ws, "--force").returncode == 0  # release 2
    cfg = load_config(ws / "config.json")
    assert run_script("training.py", ws).returncode == 0 and run_script("scoring.py", ws).returncode == 0
    assert run_script("deployment.py", ws, "--rollback").returncode == 0  # back to release 1
    with pytest.raises(deployment.Superseded, match="release 1 became current"):
        deployment.deploy(cfg, expected=2)
    assert os.readlink(ws / "production_deployment" / "current") == "releases/0001"


def test_a_deleted_index_is_rebuilt_from_the_batches(deployed, tmp_path):
    """The index is derived data: deleted by hand, it is rebuilt from the batches, and nothing is lost or doubled."""
    ws = clone(deployed, tmp_path / "ws")
    rows = stored(ws)
    (ws / "ingesteddata" / "store" / manifest(ws)["index"]).unlink()
    (ws / "sourcedata" / "more.csv").write_text(HEADER + "morea,1,2,3,0\n" + "".join(
        ",".join(r) + "\n" for r in sorted(rows)[:3]))  # three rows the store holds already
    p = run_script("ingestion.py", ws)
    assert p.returncode == 0 and "1 row, 3 duplicates dropped" in p.stdout, (p.stdout, p.stderr)
    assert stored(ws) == rows | {("morea", "1", "2", "3", "0")}


def test_a_file_larger_than_the_hashes_memory_dedups_on_disk_exactly_as_in_memory(tmp_path):
    """A file whose row hashes outgrow memory (ingestion.spill_rows) and a dataset whose hashes do
    (ingestion.held_hashes) take the on-disk path, range by range: the same rows kept, the same export, as in
    memory, and nothing of the spill left behind."""
    rng = random.Random(14)
    rows = [f"c{rng.randrange(10**6):06d},{rng.randrange(5000)},{rng.randrange(90000)},{rng.randrange(300)},"
            f"{rng.randrange(2)}\n" for _ in range(3000)]
    first = rows + rows[:400]                      # repeats far apart: in other pieces, held and spilled
    second = rows[2500:] + [r.replace("c", "d", 1) for r in rows[:700]]  # 500 known rows, 700 new ones
    small = {"settle_seconds": 0, "unterminated_seconds": 0, "chunk_bytes": 4096, "spill_rows": 100,
             "held_hashes": 500}
    results, exports = {}, {}
    for how, ingestion in (("disk", small), ("memory", {"settle_seconds": 0, "unterminated_seconds": 0})):
        ws = tmp_path / how
        (ws / "sourcedata").mkdir(parents=True)
        shutil.copytree(ROOT / "testdata", ws / "testdata")
        write_config(ws, ingestion=ingestion)
        (ws / "sourcedata" / "a.csv").write_text(HEADER + "".join(first))
        a = run_json("ingestion.py", ws)
        (ws / "sourcedata" / "b.csv").write_text(HEADER + "".join(second))
        b = run_json("ingestion.py", ws)
        results[how] = [(r["rows_added"], r["duplicates_dropped"], r["total_rows"]) for r in (a, b)]
        exports[how] = (ws / "ingesteddata" / "finaldata.csv").read_bytes()
        store_files = sorted(p.name for p in (ws / "ingesteddata" / "store").iterdir())
        assert not [n for n in store_files if n.startswith("spill-")], store_files
        assert manifest(ws)["hashes"] in store_files
    distinct = len(set(rows))
    assert results["disk"] == results["memory"] == [(distinct, 3400 - distinct, distinct),
                                                    (700, 500, distinct + 700)]
    assert exports["disk"] == exports["memory"]
    assert set(exports["disk"].decode().splitlines()[1:]) == {r.strip() for r in rows + second}


def test_hashes_kept_in_segments_dedup_exactly_as_one_merged_file(tmp_path):
    """With the dataset's hashes in segments (ingestion.hash_segments: each run writes only its own new hashes,
    merged into one file once there are that many), four runs of new files, a correction and a segment deleted by
    hand keep the same rows and write the same export as with every run merging them into one file."""
    rng = random.Random(15)
    rows = [f"c{i:05d},{rng.randrange(5000)},{rng.randrange(90000)},{rng.randrange(300)},{rng.randrange(2)}\n"
            for i in range(800)]
    files = {"a.csv": rows[:300], "b.csv": rows[200:500],    # b repeats 100 of a's rows (in the base file)
             "c.csv": rows[400:650] + rows[:10],            # c: 100 of b's (in a segment) and 10 of a's
             "d.csv": rows[600:] + rows[450:460]}           # d: c's and b's rows, two segments back
    results, exports, kept = {}, {}, {}
    for how, segments in (("segments", 2), ("merged", 0)):
        ws = tmp_path / how
        (ws / "sourcedata").mkdir(parents=True)
        shutil.copytree(ROOT / "testdata", ws / "testdata")
        write_config(ws, ingestion={"settle_seconds": 0, "unterminated_seconds": 0, "hash_segments": segments})
        results[how], kept[how] = [], []
        for name, lines in files.items():
            (ws / "sourcedata" / name).write_text(HEADER + "".join(lines))
            r = run_json("ingestion.py", ws)
            results[how].append((r["rows_added"], r["duplicates_dropped"], r["total_rows"]))
            kept[how].append(len(manifest(ws).get("hash_segments", [])))
        (ws / "sourcedata" / "b.csv").write_text(HEADER + "".join(rows[200:380]))  # corrected: 20 rows gone
        r = run_json("ingestion.py", ws)
        results[how].append((r["rows_added"], r["rows_removed"], r["total_rows"]))
        kept[how].append(len(manifest(ws).get("hash_segments", [])))
        (ws / "sourcedata" / "e.csv").write_text(HEADER + "".join(rows[470:490]) + "e1,1,2,3,0\n")
        run_json("ingestion.py", ws)
        for name in manifest(ws).get("hash_segments", []):   # deleted by hand: rebuilt from the batches
            (ws / "ingesteddata" / "store" / name).unlink()
        (ws / "sourcedata" / "f.csv").write_text(HEADER + "".join(rows[470:480]) + "f1,1,2,3,0\n")
        r = run_json("ingestion.py", ws)
        results[how].append((r["rows_added"], r["duplicates_dropped"], r["total_rows"]))
        exports[how] = (ws / "ingesteddata" / "finaldata.csv").read_bytes()
    assert kept == {"segments": [0, 1, 2, 0, 0], "merged": [0, 0, 0, 0, 0]}
    assert results["segments"] == results["merged"] == [(300, 0, 300), (200, 100, 500), (150, 110, 650),
                                                        (150, 60, 800), (0, 20, 780), (1, 10, 782)]
    assert exports["segments"] == exports["merged"]
    assert set(exports["segments"].decode().splitlines()[1:]) == \
        {r.strip() for r in rows[:380] + rows[400:]} | {"e1,1,2,3,0", "f1,1,2,3,0"}


def test_a_store_made_before_row_hash_2_keeps_its_hashes_and_dedups_as_a_new_one(tmp_path):
    """A store whose manifest predates row hash 2 (no "row_hash": made by an earlier version) goes on hashing rows
    as it did (pandas' hash_pandas_object, so its stored hashes still match); a new store uses row hash 2. Both
    keep the same rows through new files, a duplicate from a file the checked reader reads (quotes), a correction
    and an unlabelled file, and write the same export."""
    rng = random.Random(21)
    rows = [f"c{i:04d},{rng.randrange(5000)},{rng.choice(['', '7.5', '1e3'])},{rng.randrange(300)},"
            f"{rng.randrange(2)}\n" for i in range(600)]
    runs = [{"a.csv": HEADER + "".join(rows[:300] + rows[:20])},
            {"b.csv": HEADER + '"q,1",1,2,3,0\n' + "".join(rows[250:450])},  # quoted: the checked reader
            {"b.csv": HEADER + "".join(rows[250:400])},                         # corrected: 50 rows gone
            {"c.csv": HEADER + "".join(rows[390:]), "u.csv": HEADER.replace(",exited", "") + "u1,1,2,3\n"}]
    results, exports = {}, {}
    for how in ("before", "new"):
        ws = tmp_path / how
        (ws / "sourcedata").mkdir(parents=True)
        shutil.copytree(ROOT / "testdata", ws / "testdata")
        write_config(ws)
        if how == "before":  # the empty store's manifest as an earlier version wrote it
            (ws / "ingesteddata" / "store").mkdir(parents=True)
            (ws / "ingesteddata" / "store" / "manifest.json").write_text(json.dumps(
                {"format": 1, "commit": 0, "next_batch": 1, "batches": [], "retired": [], "rejected": {},
                 "index": None, "exports": {}}))
        results[how] = []
        for files in runs:
            for name, text in files.items():
                (ws / "sourcedata" / name).write_text(text)
            r = run_json("ingestion.py", ws)
            results[how].append((r["rows_added"], r["rows_removed"], r["duplicates_dropped"], r["total_rows"]))
        exports[how] = (ws / "ingesteddata" / "finaldata.csv").read_bytes()
        first = ws / "ingesteddata" / "store" / "batches" / "000001.parquet"
        batch = pd.read_parquet(first)
        data = batch.drop(columns="_hash")
        as_before = pd.util.hash_pandas_object(data[sorted(data.columns)], index=False).to_numpy()
        assert manifest(ws)["row_hash"] == (1 if how == "before" else 2)
        assert (batch["_hash"].to_numpy() == as_before).all() == (how == "before")
    assert results["before"] == results["new"] == [(300, 0, 20, 300), (151, 0, 50, 451), (0, 51, 150, 400),
                                                   (201, 0, 10, 601)]
    assert exports["before"] == exports["new"]


def test_an_empty_client_id_is_counted_as_missing_by_the_diagnostics(tmp_path):
    """Ids read from the store are pandas' str dtype: an empty one is still a missing value in the diagnostics'
    table, as the Spark engine's summary counts it (it was counted only in object columns, which the store never
    gives)."""
    import diagnostics
    ws = tmp_path / "ws"
    (ws / "sourcedata").mkdir(parents=True)
    shutil.copytree(ROOT / "testdata", ws / "testdata")
    write_config(ws)
    (ws / "sourcedata" / "a.csv").write_text(HEADER + "c1,1,2,3,0\n,4,5,6,1\nc3,,8,9,1\n")
    assert run_json("ingestion.py", ws)["rows_added"] == 3
    rows, _, missing = diagnostics.dataset_figures(load_config(ws / "config.json"))
    assert rows == 3
    assert missing["corporation"]["count"] == 1 and missing["lastmonth_activity"]["count"] == 1
