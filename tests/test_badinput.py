"""The bad-input corpus (tests/badinput.py) against real ingestion runs and both CSV readers.

Each kind of odd or bad data file meets the outcome a user expects (accepted; accepted with duplicates dropped and
counted; rejected with a one-line reason naming the file and what was expected; not a data file at all), and no
run touches what was ingested before. Runs drop privileges when they can, so an unreadable file is unreadable.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pytest

from badinput import BY_KIND, HEADER, KINDS, grow_file, one_row, write_bytes, write_corpus
from config import load_config
from conftest import (
    ROOT,
    ingested_record,
    make_workspace,
    rejected_record,
    store_manifest,
    tree_hashes,
    write_config,
)
from datacontract import DataError, checked_parse, fast_parse, parse_csv
from filerecord import escape_name

CFG = load_config(ROOT / "config.json")
EXPORTS = ("finaldata.csv", "ingestedfiles.txt")
SETPRIV = shutil.which("setpriv")
# Root reads a chmod 000 file anyway, so as root the runs drop every capability and keep uid 0: the file's mode
# bits then apply as they would to a cron job's user, while the checkout and its venv (which may sit in a folder
# only root can enter) stay reachable.
DROP = os.geteuid() == 0 and SETPRIV is not None
CAN_BE_UNREADABLE = os.geteuid() != 0 or DROP
IN_RUN = [k for k in KINDS if k["kind"] != "unreadable" or CAN_BE_UNREADABLE]
LATE = ("accepted", "dropped", "unlabelled")  # written after the run that must change nothing


def ingest(ws: Path, unprivileged: bool = DROP) -> tuple[dict[str, Any], str]:
    """One real `ingestion.py --json` run in ws (without root's capabilities if asked); its result and stderr."""
    prefix = [SETPRIV, "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--"] if unprivileged else []
    cmd = [*prefix, sys.executable, str(ROOT / "ingestion.py"), "--config", str(ws / "config.json"), "--json"]
    p = subprocess.run(cmd, cwd=ws, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    return json.loads(p.stdout), p.stderr


def stored(ws: Path) -> dict[str, bytes]:
    """The bytes of what ingestion has stored: every file of the store (manifest, batches, index) and the exports."""
    out = ws / "ingesteddata"
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted((out / "store").rglob("*")) if p.is_file()}
    return {**files, **{name: (out / name).read_bytes() for name in EXPORTS}}


def manifest_of(files: dict[str, bytes]) -> dict[str, Any]:
    """The manifest among stored files."""
    return json.loads(files["store/manifest.json"])


def index_of(files: dict[str, bytes]) -> dict[str, np.ndarray]:
    """The arrays of the index the manifest names (per batch the rows kept and new) and the dataset's sorted row
    hashes (the hashes file it names and its segments)."""
    manifest = manifest_of(files)
    with np.load(io.BytesIO(files["store/" + manifest["index"]])) as z:
        arrays = {name: z[name] for name in z.files}
    names = [manifest["hashes"], *manifest.get("hash_segments", [])]
    return {**arrays, "hashes": np.sort(np.concatenate([np.frombuffer(files["store/" + n], dtype="<u8")
                                                        for n in names]))}


def ingested_data(files: dict[str, bytes]) -> dict[str, Any]:
    """What stored files say was ingested, leaving out the rejected files and the bookkeeping a commit of them moves
    (commit number, index file name, the exports' stat): the batches' bytes, the index's arrays, the exports' bytes,
    the manifest's batches, retired versions and next batch id."""
    manifest = manifest_of(files)
    return {"batches": {name: data for name, data in files.items() if name.startswith("store/batches/")},
            "index": {name: a.tobytes() for name, a in index_of(files).items()},
            "exports": {name: files[name] for name in EXPORTS},
            "manifest": {key: manifest[key] for key in ("format", "next_batch", "batches", "retired")}}


def saved_hashes(ws: Path) -> np.ndarray:
    """The store's sorted row hashes of the dataset."""
    return index_of(stored(ws))["hashes"]


def typed_rows(ws: Path) -> set[tuple[Any, ...]]:
    """finaldata.csv as a set of typed rows, None for a missing value."""
    df = parse_csv((ws / "ingesteddata" / "finaldata.csv").read_bytes(), CFG, "finaldata.csv")
    return {tuple(None if isinstance(v, float) and v != v else v for v in row)
            for row in df.itertuples(index=False, name=None)}


@pytest.fixture(scope="module", params=["pandas", "spark"])
def runs(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Shipped data ingested (A); then every kind that must change nothing (B); then the good kinds (C); then a
    run with nothing new (D); by each engine (the same verdicts and reasons are expected of both)."""
    base = Path(tempfile.mkdtemp(prefix="badinput-"))
    ws = make_workspace(base / "ws")
    if request.param == "spark":
        write_config(ws, engine="spark", spark={"master": "local[2]", "conf": {"spark.sql.shuffle.partitions": 2}})
    src, outside = ws / "sourcedata", ws / "outside"
    out: dict[str, Any] = {"ws": ws}
    out["A"], _ = ingest(ws)
    out["stored_A"] = stored(ws)
    write_corpus(src, outside, [k["kind"] for k in IN_RUN if k["outcome"] not in LATE])
    out["B"], out["stderr_B"] = ingest(ws)
    out["stored_B"] = stored(ws)
    out["rejected_B"] = rejected_record(ws)
    write_corpus(src, outside, [k["kind"] for k in IN_RUN if k["outcome"] in LATE])
    out["sources"] = tree_hashes(src)
    out["C"], out["stderr_C"] = ingest(ws)
    out["stored_C"] = stored(ws)
    out["D"], out["stderr_D"] = ingest(ws)
    out["stored_D"] = stored(ws)
    out["ingested"] = ingested_record(ws)
    out["rejected"] = rejected_record(ws)
    out["manifest"] = store_manifest(ws)
    out["rows"] = typed_rows(ws)
    yield out
    shutil.rmtree(base, ignore_errors=True)


def entry(result: dict[str, Any], key: str, name: str) -> dict[str, Any] | None:
    """The entry for one file in a run's list of ingested or rejected files."""
    found = [e for e in result[key] if e["name"] == escape_name(name)]  # as people see it: one printable line
    assert len(found) <= 1, found
    return found[0] if found else None


def of_kind(rows: set[tuple[Any, ...]], kind: str) -> set[tuple[Any, ...]]:
    return {r for r in rows if str(r[0]).strip().startswith(f"{kind}-")}


def test_no_kind_can_be_mistaken_for_another() -> None:
    for k in KINDS:  # whose rows arrived is told by the id prefix "<kind>-"
        assert not [o["kind"] for o in KINDS if o is not k and o["kind"].startswith(k["kind"] + "-")], k["kind"]
    assert len({k["file"] for k in KINDS}) == len(KINDS)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("k", KINDS, ids=[k["kind"] for k in KINDS])
def test_each_kind_meets_its_expected_outcome_in_a_real_run(runs: dict[str, Any], k: dict[str, Any]) -> None:
    if k not in IN_RUN:
        pytest.skip("running as root without setpriv: chmod 000 does not stop root, so nothing is unreadable")
    name = f"sourcedata/{k['file']}"
    shown, want = escape_name(name), f"{k['file']!r}: expected {k['outcome']}"
    late = runs["C"] if k["outcome"] in LATE else runs["B"]
    done, refused = entry(late, "ingested_files", name), entry(late, "rejected_files", name)
    rows = runs["rows"]
    if k["outcome"] in LATE:
        assert done and not refused, f"{want}, got {refused}"
        assert (done["rows_read"], done["rows_added"]) == k["rows"], f"{want} with (read, added) {k['rows']}"
        if k["outcome"] == "unlabelled":  # kept in the store as monitoring data: not exported, never trained on
            assert runs["ingested"][name]["labelled"] is False and not of_kind(rows, k["kind"]), want
        assert set(k["expect"]) <= rows, f"{want}: rows missing from finaldata.csv: {set(k['expect']) - rows}"
        if k["expect"]:  # and no other rows of its clients (a blank line is not a row, a quote not a value)
            assert of_kind(rows, k["kind"]) == set(k["expect"]), f"{want}: other rows in finaldata.csv"
        batch = runs["ingested"][name]
        assert batch["sha256"] == sha256(runs["ws"] / name) and batch["id"] == done["batch"], want
        assert (batch["rows"], batch["rows_added"]) == k["rows"], f"{want}: the store's batch {batch}"
        assert name not in runs["rejected"], f"{want}: also recorded as rejected"
    elif k["outcome"] in ("rejected", "retried"):
        assert refused and not done, f"{want}, got {done}"
        reason = refused["reason"]
        assert re.search(k["reason"], reason), f"{want}: reason {reason!r} does not match {k['reason']!r}"
        assert "\n" not in reason and shown in reason and re.search("(?i)expect", reason), f"{want}: {reason!r}"
        told = [line for line in runs["stderr_B"].splitlines() if shown in line]
        assert len(told) == 1 and reason in told[0], f"{want}: one stderr line, got {told}"
        assert not of_kind(rows, k["kind"]), f"{want}: its rows reached finaldata.csv"
        recorded = runs["rejected"].get(name, {}).get("reason")
        assert recorded == (reason if k["outcome"] == "rejected" else None), f"{want}: recorded reason {recorded!r}"
        if k["make"] is write_bytes:  # recorded with the content it was refused for: retried once that changes
            assert runs["rejected"][name]["sha256"] == sha256(runs["ws"] / name), want
        assert name not in runs["ingested"], f"{want}: in the store"
    else:
        for run in "BCD":
            assert not entry(runs[run], "ingested_files", name) and not entry(runs[run], "rejected_files", name), want
        assert name not in runs["ingested"] and name not in runs["rejected"], f"{want}: recorded"
        assert not of_kind(rows, k["kind"]), f"{want}: its rows reached finaldata.csv"
    # The run after: nothing new, except a file that could not be read at all is tried again.
    again = entry(runs["D"], "rejected_files", name)
    assert (again is not None) == (k["outcome"] == "retried"), f"{want}: on the next run, got {again}"
    assert not entry(runs["D"], "ingested_files", name), f"{want}: ingested again on the next run"


def test_rejected_and_ignored_files_leave_stored_data_byte_for_byte(runs: dict[str, Any]) -> None:
    assert runs["B"]["ingested_files"] == [] and runs["B"]["rows_added"] == runs["B"]["rows_removed"] == 0
    # The batches, the index's arrays, the exports and what the manifest says was ingested: all as run A left them.
    assert ingested_data(runs["stored_B"]) == ingested_data(runs["stored_A"])
    # The only change to the store: the rejected files are recorded (and nothing else is among them).
    assert manifest_of(runs["stored_A"])["rejected"] == {}
    assert set(runs["rejected_B"]) == {f"sourcedata/{k['file']}" for k in IN_RUN if k["outcome"] == "rejected"}
    refused = [k for k in IN_RUN if k["outcome"] in ("rejected", "retried")]
    assert len(runs["B"]["rejected_files"]) == len(refused)
    assert runs["B"]["files_seen"] == runs["A"]["files_seen"] + len(refused)  # ignored kinds are not data files
    assert runs["rejected"] == runs["rejected_B"]  # not retried since, so recorded as they were


def test_good_files_only_append_and_a_run_with_nothing_new_changes_nothing(runs: dict[str, Any]) -> None:
    before, after = runs["stored_A"], runs["stored_C"]
    assert after["finaldata.csv"].startswith(before["finaldata.csv"])
    assert after["finaldata.csv"].count(b"\n") > before["finaldata.csv"].count(b"\n")
    old_lines = before["ingestedfiles.txt"].decode().splitlines()
    new_lines = after["ingestedfiles.txt"].decode().splitlines()
    assert new_lines[:len(old_lines)] == old_lines and len(new_lines) == len(runs["ingested"])
    # Earlier batches are immutable and stay live: the same bytes, the same manifest entries, first in order.
    old_batches = {name: data for name, data in before.items() if name.startswith("store/batches/")}
    assert old_batches and {name: after[name] for name in old_batches} == old_batches
    old_live = manifest_of(before)["batches"]
    assert manifest_of(after)["batches"][:len(old_live)] == old_live and manifest_of(after)["retired"] == []
    assert np.isin(index_of(before)["hashes"], saved_hashes(runs["ws"])).all()
    assert runs["stored_D"] == runs["stored_C"]  # every file of the store and both exports, byte for byte
    assert runs["D"]["ingested_files"] == []
    assert tree_hashes(runs["ws"] / "sourcedata") == runs["sources"]  # nothing moved, changed or deleted
    df = parse_csv(after["finaldata.csv"], CFG, "finaldata.csv")
    assert not df.duplicated().any()
    unlabelled = sum(b["rows"] for b in manifest_of(after)["batches"] if not b["labelled"])  # not exported
    assert len(df) == len(saved_hashes(runs["ws"])) - unlabelled


# ---------------------------------------------------------------- the two readers


FILE_KINDS = [k for k in KINDS if k["data"] or k["make"] is write_bytes]


@pytest.mark.parametrize("k", FILE_KINDS, ids=[k["kind"] for k in FILE_KINDS])
def test_both_readers_give_each_kind_the_same_verdict(k: dict[str, Any]) -> None:
    data, source = k["data"], escape_name(k["file"])
    labelled = k["outcome"] != "unlabelled"  # as ingestion reads a file whose header has no target column
    try:
        checked, error = checked_parse(data, CFG, source, labelled), None
    except DataError as e:
        checked, error = None, e
    fast = fast_parse(data, CFG, labelled)
    if error is not None:
        assert fast is None, f"{k['file']}: the fast reader accepted a file the checked one refuses ({error})"
        with pytest.raises(DataError) as err:
            parse_csv(data, CFG, source, labelled)
        assert str(err.value) == str(error)
    else:
        if fast is not None:
            pd.testing.assert_frame_equal(fast, checked, check_exact=True)
            assert fast.columns.tolist() == checked.columns.tolist()
            assert [str(t) for t in fast.dtypes] == [str(t) for t in checked.dtypes]
        pd.testing.assert_frame_equal(parse_csv(data, CFG, source, labelled), checked, check_exact=True)
    if k["make"] is not write_bytes:
        return  # its outcome is about the link, the folder or the permissions, not the bytes
    if k["outcome"] == "rejected":
        assert error is not None and re.search(k["reason"], str(error)), f"{k['file']}: expected rejected, got {error}"
    elif k["outcome"] in LATE:
        assert error is None, f"{k['file']}: expected {k['outcome']}, got {error}"
        assert len(checked) == k["rows"][0]
        got = {tuple(None if isinstance(v, float) and v != v else v for v in row)
               for row in checked.itertuples(index=False, name=None)}
        assert set(k["expect"]) <= got


def test_the_shipped_data_and_a_large_export_take_the_fast_reader() -> None:
    for path in sorted((ROOT / "sourcedata").glob("*.csv")):
        assert fast_parse(path.read_bytes(), CFG) is not None, path.name
    big = "".join(",".join(map(str, one_row("big", i))).replace("None", "") + "\r\n" for i in range(3, 20_000))
    data = HEADER + "\r\n" + big
    fast = fast_parse(data.encode(), CFG)
    assert fast is not None
    pd.testing.assert_frame_equal(fast, checked_parse(data.encode(), CFG, "big.csv"), check_exact=True)


SPELLINGS = ["1", "1.5", ".5", "5.", "+5", "-5", "-0", "-0.0", "0", "1e5", "1E5", "1e+5", "1.e5", "00.5", "01", "1e",
             "e5", ".", "+", "-", "1_000", "0x10", "0b1", "1d5", "1.5.5", "1 2", "1f", "true", "#N/A", "inf", "Inf",
             "INF", "infinity", "-inf", "+inf", "nan", "NaN", "NAN", "-nan", "1e400", "1e-400", "1e308",
             "99999999999999999999999", "18446744073709551616", "9007199254740993", "0.1", "2.675",
             "1234.5678901234567", " 5", "5 ", "\t5", "5\t", "NA", "N/A", "null", "NULL", "None", "", "\u00a05",
             "\uff11\uff12", "\u0663", "1e-7", "3.14159265358979323846264338327950288"]


@pytest.mark.parametrize("column", [1, 4], ids=["feature", "target"])
def test_both_readers_agree_on_every_spelling_of_a_number(column: int) -> None:
    for spelling in SPELLINGS:
        cells = ["spelling-a", "1", "2", "3", "0"]
        cells[column] = spelling
        data = f"{HEADER}\n{','.join(cells)}\n".encode()
        fast = fast_parse(data, CFG)
        try:
            checked = checked_parse(data, CFG, "spelling.csv")
        except DataError as e:
            assert fast is None, f"{spelling!r}: the fast reader accepted what the checked one refuses: {e}"
            continue
        if fast is not None:
            pd.testing.assert_frame_equal(fast, checked, check_exact=True, obj=repr(spelling))
            assert np.signbit(fast.iloc[:, column]).tolist() == np.signbit(checked.iloc[:, column]).tolist()


# ---------------------------------------------------------------- a file still being written


def test_a_file_growing_while_ingestion_reads_it_never_lands_half_a_row(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    first, _ = ingest(ws, unprivileged=False)
    before = stored(ws)
    path, stop = ws / "sourcedata" / "growing.csv", threading.Event()
    writer = grow_file(path, stop)
    for _ in range(1000):  # until a few dozen rows are in: the writer is well under way
        if path.stat().st_size >= 2_000 or not writer.is_alive():
            break
        writer.join(0.01)
    assert writer.is_alive() and path.stat().st_size >= 2_000
    during, _ = ingest(ws, unprivileged=False)  # the writer goes on appending, half a row at a time, throughout
    stop.set()
    writer.join(30)
    finished = {one_row("growing", i) for i in range(len(path.read_text().splitlines()) - 1)}
    name = "sourcedata/growing.csv"
    refused = entry(during, "rejected_files", name)
    if refused:  # caught mid-row or mid-read: refused for now, with the reason
        assert re.search(r"still being written", refused["reason"]), refused
    assert of_kind(typed_rows(ws), "growing") <= finished  # whatever arrived is whole rows
    assert stored(ws)["finaldata.csv"].startswith(before["finaldata.csv"])
    after, _ = ingest(ws, unprivileged=False)  # the file is finished now: every row arrives, once
    assert entry(after, "ingested_files", name), after
    assert ingested_record(ws)[name]["sha256"] == sha256(path) and name not in rejected_record(ws)
    assert of_kind(typed_rows(ws), "growing") == finished
    assert first["rows_added"] + len(finished) == len(parse_csv(stored(ws)["finaldata.csv"], CFG, "finaldata.csv"))


@pytest.mark.skipif(not CAN_BE_UNREADABLE, reason="as root without setpriv chmod 000 stops nothing")
def test_an_unreadable_file_is_reported_every_run_and_ingested_once_made_readable(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    write_corpus(ws / "sourcedata", ws / "outside", ["unreadable"])
    k, name = BY_KIND["unreadable"], "sourcedata/unreadable.csv"
    path = ws / name
    for _ in range(2):  # not recorded: the reason is told again every run, and nothing of it is stored
        result, stderr = ingest(ws)
        refused = entry(result, "rejected_files", name)
        assert refused and re.search(k["reason"], refused["reason"]) and refused["reason"] in stderr, result
        assert name not in rejected_record(ws) and name not in ingested_record(ws)
    st = path.stat()
    path.chmod(0o644)  # made readable: its ctime changes, its size and mtime do not
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    result, _ = ingest(ws)
    done = entry(result, "ingested_files", name)
    assert done and (done["rows_read"], done["rows_added"]) == k["rows"], result
    assert of_kind(typed_rows(ws), "unreadable") == set(k["expect"])
    assert ingested_record(ws)[name]["sha256"] == sha256(path)


def test_write_corpus_from_the_command_line(tmp_path: Path) -> None:
    # As its usage line says: PYTHONPATH=. python tests/badinput.py OUTDIR, from the checkout.
    p = subprocess.run([sys.executable, str(ROOT / "tests" / "badinput.py"), str(tmp_path / "in")], cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": "."}, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert f"wrote {len(KINDS)} kinds" in p.stdout
    names = set(os.listdir(tmp_path / "in"))
    assert {k["file"] for k in KINDS} <= names
    assert os.readlink(tmp_path / "in" / "symlink-outside.csv").startswith(str(tmp_path / "in-outside"))
