"""Ingest new client data files into the store: one immutable batch per file version, de-duplicated as a dataset.

    python ingestion.py                                  # config.json: sourcedata/ -> ingesteddata/store/
    python ingestion.py --config config.practice.json    # the practice data (the same store)
    python ingestion.py --json                           # the result as JSON

Every data file in input_folder_path that has landed (unchanged for ingestion.settle_seconds, ending with a line
end) and that the store's manifest does not hold with its content is read chunk by chunk (bounded memory) and
checked against the data contract (datacontract.py). A good file becomes a batch (store.py); the dataset keeps each
distinct row once, in the first live batch that holds it. A known file whose content changed is a new version: it
replaces the old version's rows (ingestion.on_change "replace") or adds to them ("append"), and the run says how many
rows came and went. A bad file is recorded as rejected with its reason and retried only once it changes; so is any
file that cannot be read whole (too large, an I/O or decoding error). A file that changed while it was read is
tried again next run; so is one the store could not take (a full disk), and the run fails in one line. Source files
are never modified. After every change finaldata.csv and ingestedfiles.txt are exported from the store; edited or
deleted by hand, they are rebuilt from it.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

import cli
import hashparts
import history
import store
import tablesource
from artifacts import INGESTION_LOCK
from atomicio import LockBusy, file_lock, remove_stale_temps, sha256_file
from config import display_path, load_config
from datacontract import DataError, header_names, parse_csv, row_end
from filerecord import (
    data_files,
    escape_name,
    exports_current,
    landed,
    live_files,
    read_manifest,
    record_name,
    recorded_as,
    write_manifest,
)

log = logging.getLogger("ingestion")

LOCK_WAIT_SECONDS = 60.0
# Parses the next data file while the one before it is stored (read_ahead); one file ahead at most (two were no
# faster on 2 cores: every thread is busy by then).
READER = ThreadPoolExecutor(1, thread_name_prefix="read-ahead")


def ingest(cfg: dict[str, Any]) -> dict[str, Any]:
    """Ingest every new or changed data file of the input folder; returns what was done."""
    out = cfg["output_folder_path"]
    out.mkdir(parents=True, exist_ok=True)
    store.reuse_freed_memory()
    try:
        with file_lock(out / INGESTION_LOCK, wait_seconds=LOCK_WAIT_SECONDS):
            return _ingest(cfg, write=True)
    except LockBusy:
        raise cli.StepError(f"another ingestion has held {display_path(cfg, out / INGESTION_LOCK)} for "
                            f"{LOCK_WAIT_SECONDS:.0f} s; try again later") from None


def preview(cfg: dict[str, Any]) -> dict[str, Any]:
    """What ingest() would do now, writing nothing: its result, with the rows it would add in "new_rows"."""
    return _ingest(cfg, write=False)


def _ingest(cfg: dict[str, Any], write: bool) -> dict[str, Any]:
    """ingest() (under the lock) or its preview."""
    started = time.monotonic()
    manifest = read_manifest(cfg)
    if write:
        remove_stale_temps(cfg["output_folder_path"])
        if store.folder(cfg).is_dir():
            remove_stale_temps(store.folder(cfg))
            store.remove_garbage(cfg, manifest)
    index = store.load_index(cfg, manifest)
    aside = _pull_table(cfg, manifest) if write and tablesource.configured(cfg) else {}
    files = data_files(cfg)
    result: dict[str, Any] = {"files_seen": len(files), "ingested_files": [], "rejected_files": [],
                              "unchanged_files": 0, "still_rejected_files": 0, "landing_files": 0,
                              "rows_read": 0, "rows_added": 0, "rows_removed": 0}
    result["rejected_files"] += aside.get("rejected_files", [])
    added: list[int] = []
    frames: dict[int, pd.DataFrame] = {}  # the preview's rows, which no batch file holds
    changed = aside.get("changed", False)
    ahead: dict[Path, Future[tuple[tuple[int, int], str, bool, Any] | None]] = {}
    what: dict[str, Any] = {}
    for done, path in enumerate(files):
        cli.progress("ingestion", f"{done}/{len(files)} files, {result['rows_read']:,} rows, "
                                  f"{cli.rate(result['rows_read'], started)}", done, len(files), started)
        if write and cfg["engine"] != "spark" and done + 1 < len(files):
            read_ahead(cfg, files[done + 1], manifest, ahead)
        if write and cfg["engine"] != "spark" and done == 0:
            read_ahead(cfg, path, manifest, ahead, here=True)
        wait_written(what)  # one batch written at a time: the one before this file's
        what = _take(cfg, path, manifest, index, write, frames, ahead.pop(path, None))
        changed |= what["changed"]
        if what.get("batch"):
            added.append(what["batch"])
        for key in ("ingested_files", "rejected_files"):
            result[key] += what.get(key, [])
        for key in ("unchanged_files", "still_rejected_files", "landing_files", "rows_read", "rows_added",
                    "rows_removed"):
            result[key] += what.get(key, 0)
    wait_written(what)
    if write and added:
        cli.progress("ingestion", f"committing {len(added)} new batch{'es' if len(added) != 1 else ''}")
        store.commit(cfg, manifest, index)
    elif write and changed:  # rejections and touched files: the manifest alone changes, the dataset does not
        write_manifest(cfg, manifest)
    if write and (added or not exports_current(cfg, manifest)):
        replaced = any(f.get("replaced") for f in result["ingested_files"])
        store.export(cfg, manifest, index, [] if replaced else added)
    if not write:  # the rows a real run would check: labelled ones, and unlabelled monitoring rows
        labels = {b["id"]: b["labelled"] for b in manifest["batches"]}
        for key, labelled in (("new_rows", True), ("new_unlabelled", False)):
            kept = [frames[b][index["keep"][b] & index["fresh"][b]] for b in added if labels[b] == labelled]
            result[key] = pd.concat(kept, ignore_index=True) if kept else None
    result["total_rows"] = store.dataset_rows(index)
    result["duplicates_dropped"] = result["rows_read"] - result["rows_added"]
    result["seconds"] = round(time.monotonic() - started, 3)
    cli.progress("ingestion", f"{len(files)} files, {result['rows_read']:,} rows read in {result['seconds']:.1f} s, "
                              f"done", last=True)
    result["log"] = display_path(cfg, cfg["log_folder_path"] / "ingestion.log")
    return result


def _take(cfg: dict[str, Any], path: Path, manifest: dict[str, Any], index: dict[str, Any], write: bool,
          frames: dict[int, pd.DataFrame], early: Future[tuple[tuple[int, int], str, bool, Any] | None] | None = None
          ) -> dict[str, Any]:
    """Look at one data file and take what it holds into the manifest and index (not yet committed); early: its
    read_ahead, used when it read the file as it is now."""
    name = record_name(path, cfg["root"])
    shown = escape_name(name)  # control characters or undecodable bytes in a name must not break a line
    live, rejected = live_files(manifest), manifest["rejected"]
    try:
        st = path.stat()
        kind = recorded_as(name, live, rejected, st)
        if kind is None and not landed(path, st, cfg):
            log.info("%s is still landing (changed in the last %g s or no final line end): next run",
                     shown, cfg["ingestion"]["settle_seconds"])
            return {"changed": False, "landing_files": 1}
        outside = link_outside(path, cfg["input_folder_path"])
        read = early.result() if early is not None and not kind and not outside else None
        read = read if read is not None and read[0] == (st.st_size, st.st_mtime_ns) else None
        digest = "" if kind or outside else read[1] if read else sha256_file(path)
    except OSError as e:
        reason = f"{shown}: {_unreadable(e)}; will try again next run"  # not recorded: nothing to remember
        log.warning("skipped %s", reason)
        return {"changed": False, "rejected_files": [{"name": shown, "reason": reason}]}
    stat = {"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    kind = kind or (recorded_as(name, live, rejected, st, digest) if digest else None)
    if kind:
        counted = {"unchanged_files" if kind == "ingested" else "still_rejected_files": 1, "changed": False}
        entry = live.get(name) if kind == "ingested" else rejected.get(name)
        if entry and (entry["size"], entry["mtime_ns"]) != (st.st_size, st.st_mtime_ns):
            entry.update(stat)  # touched, not changed: remember the new mtime so it is not hashed again
            counted["changed"] = True
        return counted
    batch_id = manifest["next_batch"]
    try:
        if outside:
            raise DataError(f"{shown}: a symbolic link to {escape_name(str(outside))}, outside the input "
                            f"folder; expected a file in the folder (copy it in instead)")
        if read is not None:
            labelled, chunks = read[2], _parsed(read[3])
        else:
            labelled = has_target(path, cfg)
            chunks = read_chunks(path, cfg, shown, labelled, sources=write)
        on_spark = spark_batch(cfg, batch_id, path, shown, labelled, manifest["row_hash"]) \
            if write and cfg["engine"] == "spark" else None
        if on_spark is not None:
            hashes = hashparts.new_hashes(held=[on_spark])
        elif write:
            export = store.csv_run(cfg, index, batch_id) if labelled and store.room_for_lines(cfg, index, st.st_size) \
                else None
            _, hashes = store.write_batch(cfg, batch_id, chunks, manifest["row_hash"], export=export,
                                          later=read is not None)
        else:
            frames[batch_id] = pd.concat(list(chunks), ignore_index=True)
            hashes = hashparts.new_hashes(held=[store.row_hashes(frames[batch_id], manifest["row_hash"])])
        after = path.stat()
        if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            store.drop_batch(cfg, batch_id, hashes)
            raise OSError(errno.EAGAIN, "changed while being read (still being written?)")
    except DataError as e:
        return _reject(name, stat, str(e), manifest)
    except store.StoreWriteError as e:  # the store's disk, not the file: not recorded, the run fails
        raise store_failed(e, shown) from None
    except OSError as e:
        if e.errno == errno.EAGAIN:
            reason = f"{shown}: {_unreadable(e)}; will try again next run"
            log.warning("skipped %s", reason)
            return {"changed": False, "rejected_files": [{"name": shown, "reason": reason}]}
        return _reject(name, stat, f"{shown}: {_unreadable(e)}", manifest)
    except (MemoryError, ValueError, UnicodeError) as e:  # one file's trouble must not stop the others
        return _reject(name, stat, f"{shown}: cannot be read ({type(e).__name__}: {e}), expected a CSV file "
                                   f"that can be read in pieces of {cfg['ingestion']['chunk_bytes']:,} bytes",
                       manifest)
    what = _add_batch(cfg, name, stat, batch_id, hashes, manifest, index, labelled, write)
    return {**what, "written": (hashes, shown)} if "written" in hashes else what


def store_failed(e: store.StoreWriteError, shown: str) -> cli.StepError:
    """The run's failure when the store could not be written: not the file's fault, so not recorded."""
    return cli.StepError(f"{e}; {shown} is not ingested, it is tried again next run")


def wait_written(what: dict[str, Any]) -> None:
    """Wait for the Parquet batch _take left to be written while it de-duplicated the file's rows."""
    hashes, shown = what.pop("written", (None, ""))
    try:
        store.written(hashes)
    except store.StoreWriteError as e:
        raise store_failed(e, shown) from None


def _pull_table(cfg: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """Take input_table's new rows as a data file; the rows set aside are recorded like rejected files, and a table
    that cannot be read is named in one line without holding up the files."""
    try:
        aside = tablesource.pull(cfg)
    except tablesource.TableError as e:
        log.warning("skipped %s; will try again next run", e)
        return {"changed": False, "rejected_files": [{"name": f"input_table {tablesource.source_name(cfg)}",
                                                      "reason": f"{e}; will try again next run"}]}
    out: dict[str, Any] = {"changed": bool(aside), "rejected_files": []}
    for row in aside:
        out["rejected_files"] += _reject(row["name"], {"sha256": "", "size": 0, "mtime_ns": 0}, row["reason"],
                                         manifest)["rejected_files"]
    return out


def _reject(name: str, stat: dict[str, Any], reason: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """Record a file as rejected (it is not read again until it changes)."""
    log.warning("rejected %s", reason)
    manifest["rejected"][name] = {**stat, "reason": reason, "rejected_at": history.now_iso()}
    return {"changed": True, "rejected_files": [{"name": escape_name(name), "reason": reason}]}


def _add_batch(cfg: dict[str, Any], name: str, stat: dict[str, Any], batch_id: int, hs: dict[str, Any],
               manifest: dict[str, Any], index: dict[str, Any], labelled: bool, write: bool) -> dict[str, Any]:
    """Add a read file version (its row hashes: hashparts.new_hashes) to the manifest and index: a new batch
    (unlabelled: monitoring data, never trained on), which replaces the file's previous version when
    ingestion.on_change says so."""
    previous = live_files(manifest).get(name)
    replace = previous is not None and cfg["ingestion"]["on_change"] == "replace"
    if replace:  # a correction: the dataset is rebuilt in memory (the bounded path is for new files)
        hashes, before = hashparts.all_hashes(hs), store.dataset_hashes(index)
        keep, _ = hashparts.first_seen(hashes, before)
        # Rows new to the store: not in the dataset, and not in the version this one replaces (a corrected file's
        # unchanged rows were drift-checked already).
        fresh = keep & ~np.isin(hashes, store.batch_hashes(cfg, previous["id"]))
    else:
        keep = fresh = store.add_hashes(cfg, index, hs, batch_id, write)
    rows = hs["rows"]
    now = history.now_iso()
    batch = {"id": batch_id, "file": name, **stat, "rows": rows, "rows_added": int(fresh.sum()),
             "labelled": labelled, "ingested_at": now}
    manifest["next_batch"] = batch_id + 1
    manifest["rejected"].pop(name, None)
    index["fresh"][batch_id] = fresh
    if hs.get("csv"):
        index["csv"][batch_id] = hs["csv"]  # the batch's CSV lines, for the export
        # lines that waited for the de-duplication: only the kept rows' (a correction's rebuild moves them: all)
        store.keep_csv(hs["csv"], None if replace else keep)
    removed = 0
    if replace:
        manifest["batches"].remove(previous)
        manifest["retired"].append({**previous, "replaced_by": batch_id, "retired_at": now})
        manifest["batches"].append(batch)
        store.rebuild_keep(cfg, manifest["batches"], index, {batch_id: hashes})
        removed = int(np.count_nonzero(~np.isin(before, store.dataset_hashes(index))))
        log.info("replaced %s (batch %d -> %d): %d rows added, %d removed", escape_name(name), previous["id"],
                 batch_id, batch["rows_added"], removed)
    else:
        manifest["batches"].append(batch)
        index["keep"][batch_id] = keep
        log.info("ingested %s as batch %d: %d rows read, %d new", escape_name(name), batch_id, rows,
                 batch["rows_added"])
    return {"changed": True, "batch": batch_id, "rows_read": rows, "rows_added": batch["rows_added"],
            "rows_removed": removed,
            "ingested_files": [{"name": escape_name(name), "batch": batch_id, "rows_read": rows,
                                "rows_added": batch["rows_added"], "rows_removed": removed, "replaced": replace,
                                "labelled": labelled}]}


def spark_batch(cfg: dict[str, Any], batch_id: int, path: Path, shown: str, labelled: bool,
                row_hash: int) -> np.ndarray | None:
    """The spark engine's read of a data file into its batch (sparkengine.py): the batch's row hashes, or None when
    the file is to be read here instead (every refusal is worded by read_chunks)."""
    import sparkengine  # only here: pyspark is installed where a config chooses the engine (requirements-spark.txt)
    return sparkengine.write_batch(cfg, batch_id, path, shown, labelled, row_hash)


def has_target(path: Path, cfg: dict[str, Any]) -> bool:
    """Whether a data file's header names the target column; a file without it is unlabelled monitoring data. When
    the header cannot be read here, True: the full read then says what is wrong."""
    with open(path, "rb") as f:
        return header_has_target(f.readline(cfg["ingestion"]["chunk_bytes"]), cfg)


def header_has_target(head: bytes, cfg: dict[str, Any]) -> bool:
    """has_target of a file's first line (the whole header line: it may have 100,000 names)."""
    try:
        text = head.decode("utf-8-sig")
        return cfg["target_column"] in header_names(text if "\n" in text else text + "\n", "")
    except (UnicodeDecodeError, DataError):
        return True


def read_chunks(path: Path, cfg: dict[str, Any], source: str, labelled: bool = True,
                sources: bool = False) -> Iterator[pd.DataFrame]:
    """A data file as typed frames of at most ingestion.chunk_bytes of it each, so any size is read in bounded
    memory: one frame for a file that fits (the common case), else pieces cut at row ends, each checked under the
    contract with the header (unlabelled: without the target column); DataError names the row within the whole
    file. With sources, each frame's attrs[store.SOURCE] holds the bytes it was parsed from (store.write_batch
    takes them for the export)."""
    size = cfg["ingestion"]["chunk_bytes"]
    with open(path, "rb") as f:
        first = f.read(size)
        if len(first) < size:
            yield _with_source(parse_csv(first, cfg, source, labelled), first if sources else None)
            return
        end = first.find(b"\n") + 1
        if end == 0:
            raise DataError(f"{source}: no line end in the first {size:,} bytes, expected a CSV header line")
        header, rest, row = first[:end], first[end:], 1
        del first
        while True:
            more = f.read(size)
            data = rest + more
            if not data:
                return
            cut = row_end(data) if more else len(data)
            if cut == 0:
                raise DataError(f"{source}: a row longer than {size:,} bytes after row {row - 1}, expected rows of "
                                f"a CSV file (config ingestion.chunk_bytes)")
            piece, rest, last = data[:cut], data[cut:], not more
            del data, more  # each piece is held once at a time (bounded memory)
            if piece and not piece.isspace():
                chunk = header + piece
                del piece
                try:
                    df = parse_csv(chunk, cfg, source, labelled)
                except DataError as e:
                    if e.row is None:
                        raise
                    whole = e.row + row - 1
                    raise DataError(str(e).replace(f"row {e.row}", f"row {whole}", 1), whole) from None
                row += len(df)
                yield _with_source(df, chunk if sources else None)
                del df, chunk  # not held while the next piece is read and parsed
            if last:
                return


def read_ahead(cfg: dict[str, Any], path: Path, manifest: dict[str, Any],
               ahead: dict[Path, Future[tuple[tuple[int, int], str, bool, Any] | None]], here: bool = False) -> None:
    """Start parsing a data file on READER, while the file before it is stored, when _take will read it (new or
    changed by size and mtime, landed, one piece of ingestion.chunk_bytes): the parse's pyarrow read and the
    other file's Parquet and CSV writing release the GIL, so the two cores both work. here: parse it on this
    thread instead (the first file, while READER parses the second), so every file in one piece is taken alike:
    its Parquet batch written while it is de-duplicated, and only its kept rows' CSV lines written."""
    try:
        st = path.stat()
        name = record_name(path, cfg["root"])
        if not stat.S_ISREG(st.st_mode) or st.st_size >= cfg["ingestion"]["chunk_bytes"] \
                or recorded_as(name, live_files(manifest), manifest["rejected"], st) \
                or link_outside(path, cfg["input_folder_path"]) or not landed(path, st, cfg):
            return
    except OSError:
        return  # _take says why
    if here:
        ahead[path] = Future()
        ahead[path].set_result(_read_whole(path, cfg, escape_name(name), manifest["row_hash"]))
    else:
        ahead[path] = READER.submit(_read_whole, path, cfg, escape_name(name), manifest["row_hash"])


def _read_whole(path: Path, cfg: dict[str, Any], shown: str,
                row_hash: int) -> tuple[tuple[int, int], str, bool, Any] | None:
    """On READER (the first file: on the main thread): a one-piece file's (size, mtime) as read, its SHA-256, whether
    it is labelled, and its typed frame or the exception read_chunks would raise (None: it changed while read, or is
    no longer one piece)."""
    try:
        with open(path, "rb") as f:
            before = os.fstat(f.fileno())
            data = f.read(cfg["ingestion"]["chunk_bytes"])
        after = path.stat()
    except Exception:  # noqa: BLE001 (_take then reads the file itself, and says what is wrong)
        return None
    stamp = (before.st_size, before.st_mtime_ns)
    if stamp != (after.st_size, after.st_mtime_ns) or len(data) != before.st_size \
            or len(data) >= cfg["ingestion"]["chunk_bytes"]:
        return None
    digest = hashlib.sha256(data).hexdigest()
    labelled = header_has_target(data[:data.find(b"\n") + 1] or data, cfg)  # has_target of the bytes read
    try:
        df = _with_source(parse_csv(data, cfg, shown, labelled), data)
        df.attrs[store.HASHES] = store.row_hashes(df, row_hash)  # here too, while the other thread writes Parquet
        df.attrs[store.PARTS] = hashparts.split(df.attrs[store.HASHES])  # and de-duplicates the file before
    except Exception as e:  # noqa: BLE001 (raised where read_chunks would raise it: _parsed)
        return stamp, digest, labelled, e
    return stamp, digest, labelled, df


def _parsed(outcome: Any) -> Iterator[pd.DataFrame]:
    """read_chunks of a file read ahead: its one frame, or the exception its parse raised."""
    if isinstance(outcome, BaseException):
        raise outcome
    yield outcome


def _with_source(df: pd.DataFrame, data: bytes | None) -> pd.DataFrame:
    """A parsed piece with the bytes it was parsed from in its attrs, if given."""
    if data is not None:
        df.attrs[store.SOURCE] = data
    return df


def _unreadable(e: OSError) -> str:
    """Why a file could not be read, and what was expected of it."""
    if e.errno == errno.EAGAIN:
        return f"{e.strerror}, expected a finished file"
    return f"cannot read file ({e.strerror or e}), expected a readable file"


def link_outside(path: Path, folder: Path) -> Path | None:
    """Where a symbolic link in the input folder leads, when that is outside the folder (else None)."""
    if not path.is_symlink():
        return None
    target = path.resolve()
    return None if target.is_relative_to(folder.resolve()) else target


def summary(r: dict[str, Any]) -> str:
    """One line for people: what this run ingested, dropped, replaced and rejected."""
    n_rej = len(r["rejected_files"])
    rejected = f", {n_rej} file{'s' if n_rej != 1 else ''} rejected (see {r['log']})" if n_rej else ""
    landing = f", {r['landing_files']} still landing" if r.get("landing_files") else ""
    if not r["ingested_files"]:
        known = f"{r['unchanged_files']} already ingested"
        if r["still_rejected_files"]:
            known += f", {r['still_rejected_files']} still rejected"
        return f"no new data: {r['files_seen']} files seen, {known}{landing}{rejected}"
    n = len(r["ingested_files"])
    replaced = sum(f["replaced"] for f in r["ingested_files"])
    versions = f" ({replaced} a new version: {_rows(r['rows_removed'])} removed)" if replaced else ""
    return (f"ingested {n} new file{'s' if n != 1 else ''}{versions}: {_rows(r['rows_added'])}, "
            f"{r['duplicates_dropped']:,} duplicates dropped{landing}{rejected}; {r['total_rows']:,} rows in total")


def _rows(n: int) -> str:
    """"1 row", "2,000 rows"."""
    return f"{n:,} row{'s' if n != 1 else ''}"


# The course's starter names (Udacity's "A Dynamic Risk Assessment System"): thin calls of the functions above.
def merge_multiple_dataframe(*, config_path: str | Path | None = None) -> pd.DataFrame:
    """Ingest the new files of input_folder_path; return every ingested row (what finaldata.csv holds)."""
    cfg = load_config(config_path)
    ingest(cfg)
    return store.read_dataset(cfg, read_manifest(cfg))


if __name__ == "__main__":
    cli.run("ingestion", cli.parser(__doc__).parse_args(), ingest, summary)
