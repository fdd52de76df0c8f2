"""Ingest new client data files into one de-duplicated dataset.

    python ingestion.py                                  # config.json: sourcedata/ -> ingesteddata/
    python ingestion.py --config config.practice.json    # the practice data
    python ingestion.py --json                           # the result as JSON

Every data file in input_folder_path is checked against the data contract (datacontract.py). Good files have
their rows appended to <output_folder_path>/finaldata.csv, minus exact duplicates (within the file, across files
and against everything ingested before), and are listed in ingestedfiles.txt with their content hash. A bad
file is listed in rejectedfiles.txt with the reason, and retried only once its content changes. Files already
ingested and unchanged are skipped; a changed file is ingested again. Source files are never modified.
A symbolic link that leads out of the input folder is rejected unread. A file that cannot be read, or that
changed while it was read (a writer still at work), is reported and tried again next run, not recorded.

De-duplication keeps a sorted array of 64-bit row hashes (rowhashes.npz) beside finaldata.csv, so a run costs
in proportion to the new data, not to everything ingested so far. The hashes are a cache: when they do not
match finaldata.csv (a run killed between the two writes) they are rebuilt from it.
"""
from __future__ import annotations

import errno
import io
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

import cli
import history
from artifacts import FINALDATA, INGESTED, INGESTION_LOCK, REJECTED, ROW_HASHES
from atomicio import LockBusy, atomic_file, file_lock, remove_stale_temps, sha256_bytes
from config import display_path, load_config
from datacontract import DataError, columns, parse_csv, read_finaldata
from filerecord import (
    INGESTED_FIELDS,
    REJECTED_FIELDS,
    escape_name,
    list_data_files,
    read_record,
    record_name,
    recorded_as,
    write_record,
)

log = logging.getLogger("ingestion")

LOCK_WAIT_SECONDS = 60.0


def row_hashes(df: pd.DataFrame) -> np.ndarray:
    """One 64-bit hash per row of a typed frame (equal rows, equal hashes)."""
    return pd.util.hash_pandas_object(df, index=False, categorize=False).to_numpy(dtype=np.uint64)


def load_hashes(cfg: dict[str, Any]) -> np.ndarray:
    """Sorted row hashes of finaldata.csv, rebuilt from it if the saved ones do not belong to it."""
    out = cfg["output_folder_path"]
    data, saved = out / FINALDATA, out / ROW_HASHES
    size = data.stat().st_size if data.exists() else 0
    if size == 0:
        return np.empty(0, dtype=np.uint64)
    try:
        with np.load(saved) as z:
            if int(z["finaldata_size"]) == size:
                return z["hashes"]
        log.warning("%s does not match %s (an interrupted run?): rebuilding it", ROW_HASHES, FINALDATA)
    except FileNotFoundError:
        log.info("no %s yet: building it from %s", ROW_HASHES, FINALDATA)
    except (OSError, ValueError, KeyError) as e:
        log.warning("%s unreadable (%s): rebuilding it", ROW_HASHES, e)
    return np.unique(row_hashes(read_finaldata(cfg)))


def save_hashes(cfg: dict[str, Any], hashes: np.ndarray) -> None:
    """Atomically save the sorted hashes with the size of the finaldata.csv they describe."""
    out = cfg["output_folder_path"]
    size = (out / FINALDATA).stat().st_size
    with atomic_file(out / ROW_HASHES) as f:
        np.savez(f, hashes=hashes, finaldata_size=np.int64(size))


def new_rows(df: pd.DataFrame, seen: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows of df that are neither in seen (sorted hashes) nor repeated earlier in df; and seen with them added."""
    h = row_hashes(df)
    distinct, first = np.unique(h, return_index=True)  # sorted, each with the row it first appears in
    # Looking up sorted hashes walks seen in order: ten times faster than random-order lookups at 10M rows.
    pos = np.searchsorted(seen, distinct)
    fresh = ~((pos < len(seen)) & (seen[np.minimum(pos, max(len(seen) - 1, 0))] == distinct)) if len(seen) \
        else np.ones(len(distinct), dtype=bool)
    keep = np.zeros(len(h), dtype=bool)
    keep[first[fresh]] = True
    merged = np.insert(seen, pos[fresh], distinct[fresh]) if fresh.any() else seen
    return df[keep], merged


def append_finaldata(cfg: dict[str, Any], frames: list[pd.DataFrame]) -> None:
    """Atomically replace finaldata.csv with its old bytes followed by the new rows."""
    path = cfg["output_folder_path"] / FINALDATA
    with atomic_file(path) as f:
        old_size = path.stat().st_size if path.exists() else 0
        if old_size:
            _check_header(path, cfg)
            with open(path, "rb") as old:
                _copy(old, f)
            if _last_byte(path) != b"\n":
                f.write(b"\n")
        else:
            f.write((",".join(columns(cfg)) + "\n").encode())
        for df in frames:
            f.write(csv_rows(df, cfg))


def csv_rows(df: pd.DataFrame, cfg: dict[str, Any]) -> bytes:
    """The rows of a typed frame as CSV lines without a header. pyarrow's writer is 3-5x faster than to_csv and
    writes whole floats without ".0"; it cannot quote only where needed, so ids with a comma, quote or line break
    go through pandas, which does."""
    table = pa.Table.from_pandas(df, preserve_index=False)  # NaN features become nulls: empty cells
    if len(df) and pc.any(pc.match_substring_regex(table.column(cfg["id_column"]), '[",\r\n]')).as_py():
        return _for_csv(df).to_csv(index=False, header=False, lineterminator="\n").encode("utf-8")
    out = io.BytesIO()
    pacsv.write_csv(table, out, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return out.getvalue()


def _for_csv(df: pd.DataFrame) -> pd.DataFrame:
    """Write whole-number feature columns without a trailing ".0" (they read back to the same floats)."""
    out = df.copy()
    for col in out.columns:
        values = out[col]
        if values.dtype == "float64" and bool(np.all(np.isnan(values) | (values == np.round(values)))) \
                and not bool((values.abs() >= 2**53).any()):
            out[col] = values.astype("Int64")
    return out


def _copy(src: Any, dst: Any) -> None:
    """Copy one open file into another: inside the kernel where it can (no trip of 240 MB through Python at 10M
    rows), else in large blocks."""
    dst.flush()
    try:
        while os.copy_file_range(src.fileno(), dst.fileno(), 1 << 30):
            pass
        dst.seek(0, os.SEEK_END)  # the buffered file object learns where the kernel left the offset
        return
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    src.seek(0)
    dst.seek(0)
    dst.truncate()
    for chunk in iter(lambda: src.read(1 << 22), b""):
        dst.write(chunk)


def _last_byte(path: Path) -> bytes:
    """The last byte of a non-empty file."""
    with open(path, "rb") as f:
        f.seek(-1, 2)
        return f.read(1)


def _check_header(path: Path, cfg: dict[str, Any]) -> None:
    """Refuse to append to a finaldata.csv whose columns are not the configured ones."""
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline().strip()
    if header != ",".join(columns(cfg)):
        raise cli.StepError(f"{display_path(cfg, path)} has columns '{header}' but the config expects "
                            f"'{','.join(columns(cfg))}': move it aside or fix the config")


def ingest(cfg: dict[str, Any]) -> dict[str, Any]:
    """Ingest every new or changed data file of the input folder; returns what was done."""
    out = cfg["output_folder_path"]
    out.mkdir(parents=True, exist_ok=True)
    try:
        with file_lock(out / INGESTION_LOCK, wait_seconds=LOCK_WAIT_SECONDS):
            return _ingest_locked(cfg)
    except LockBusy:
        raise cli.StepError(f"another ingestion has held {display_path(cfg, out / INGESTION_LOCK)} for "
                            f"{LOCK_WAIT_SECONDS:.0f} s; try again later") from None


def preview(cfg: dict[str, Any]) -> dict[str, Any]:
    """What ingest() would do now, writing nothing: its result, with the rows it would add in "new_rows"."""
    return _ingest_locked(cfg, write=False)


def _ingest_locked(cfg: dict[str, Any], write: bool = True) -> dict[str, Any]:
    """ingest() once the lock is held; with write=False nothing is written and result["new_rows"] holds the rows a
    real run would add (what --dry-run checks for drift)."""
    started = time.monotonic()
    out = cfg["output_folder_path"]
    if write:
        remove_stale_temps(out)
    ingested = read_record(out / INGESTED, INGESTED_FIELDS)
    rejected = read_record(out / REJECTED, REJECTED_FIELDS)
    files = list_data_files(cfg["input_folder_path"], cfg["input_file_extension"])
    result: dict[str, Any] = {"files_seen": len(files), "ingested_files": [], "rejected_files": [],
                              "unchanged_files": 0, "still_rejected_files": 0,
                              "rows_read": 0, "rows_added": 0, "duplicates_dropped": 0}
    if (out / FINALDATA).exists() is False and ingested:
        log.warning("%s is missing although %d files are recorded: ingesting everything again",
                    FINALDATA, len(ingested))
        ingested = {}
    accepted, changed_record = _read_files(cfg, files, ingested, rejected, result, started)
    frames = []
    if accepted:
        cli.progress("ingestion", f"{len(files)} files read, {sum(len(a[2]) for a in accepted):,} rows; "
                                  f"de-duplicating")
        seen = load_hashes(cfg)
        for name, stat, df in accepted:
            fresh, seen = new_rows(df, seen)
            frames.append(fresh)
            ingested[name] = {"name": name, **stat, "rows_read": str(len(df)), "rows_added": str(len(fresh)),
                              "ingested_at": history.now_iso()}
            rejected.pop(name, None)
            result["ingested_files"].append({"name": escape_name(name), "rows_read": len(df),
                                             "rows_added": len(fresh)})
            result["rows_read"] += len(df)
            result["rows_added"] += len(fresh)
            log.info("%s %s: %d rows read, %d new", "ingested" if write else "would ingest", escape_name(name),
                     len(df), len(fresh))
        result["total_rows"] = int(len(seen))
        if write:
            # Order matters for a kill at any point: data first, then its hashes, then the records that
            # say the files are done. A file not yet recorded is simply ingested again, and de-duplicated.
            cli.progress("ingestion", f"writing {result['rows_added']:,} new rows to {FINALDATA}")
            append_finaldata(cfg, frames)
            save_hashes(cfg, seen)
            changed_record = True
    if changed_record and write:
        write_record(out / REJECTED, REJECTED_FIELDS, rejected)
        write_record(out / INGESTED, INGESTED_FIELDS, ingested)
    if not write:
        result["new_rows"] = pd.concat(frames, ignore_index=True) if frames else None
    result["duplicates_dropped"] = result["rows_read"] - result["rows_added"]
    result["seconds"] = round(time.monotonic() - started, 3)
    cli.progress("ingestion", f"{len(files)} files, {result['rows_read']:,} rows read in {result['seconds']:.1f} s, "
                              f"done", last=True)
    result["log"] = display_path(cfg, cfg["log_folder_path"] / "ingestion.log")
    return result


def _read_files(cfg: dict[str, Any], files: list[Path], ingested: dict[str, dict[str, Any]],
                rejected: dict[str, dict[str, Any]], result: dict[str, Any],
                started: float) -> tuple[list[tuple[str, dict[str, Any], pd.DataFrame]], bool]:
    """Read and check each new or changed file: the accepted ones as (name, stat, frame); the records updated in
    place for rejected and touched files; and whether they changed."""
    accepted: list[tuple[str, dict[str, Any], pd.DataFrame]] = []
    changed_record = False
    read_rows = 0
    for done, path in enumerate(files):
        cli.progress("ingestion", f"{done}/{len(files)} files read, {read_rows:,} rows, {cli.rate(read_rows, started)}",
                     done, len(files), started)
        name = record_name(path, cfg["root"])
        shown = escape_name(name)  # control characters or undecodable bytes in a name must not break a line
        try:
            st = path.stat()
            kind = recorded_as(name, ingested, rejected, st)
            if kind is None:
                outside = link_outside(path, cfg["input_folder_path"])
                data, st = (b"", st) if outside else read_whole(path)
        except OSError as e:
            reason = f"{shown}: {_unreadable(e)}; will try again next run"  # not recorded: nothing to remember
            log.warning("skipped %s", reason)
            result["rejected_files"].append({"name": shown, "reason": reason})
            continue
        if kind is None:
            digest = "" if outside else sha256_bytes(data)
            stat = {"sha256": digest, "size": str(st.st_size), "mtime_ns": str(st.st_mtime_ns)}
            kind = recorded_as(name, ingested, rejected, st, digest)
            if kind:  # touched, not changed: remember the new mtime so it is not hashed again
                (ingested if kind == "ingested" else rejected)[name].update(stat)
                changed_record = True
        if kind:
            result["unchanged_files" if kind == "ingested" else "still_rejected_files"] += 1
            continue
        try:
            if outside:
                raise DataError(f"{shown}: a symbolic link to {escape_name(str(outside))}, outside the input "
                                f"folder; expected a file in the folder (copy it in instead)")
            df = parse_csv(data, cfg, shown)
        except DataError as e:
            log.warning("rejected %s", e)
            rejected[name] = {"name": name, **stat, "reason": str(e), "rejected_at": history.now_iso()}
            result["rejected_files"].append({"name": shown, "reason": str(e)})
            changed_record = True
            continue
        accepted.append((name, stat, df))
        read_rows += len(df)
    return accepted, changed_record


def read_whole(path: Path) -> tuple[bytes, os.stat_result]:
    """A file's bytes and its stat; OSError when it changed while being read (a writer still at work)."""
    with open(path, "rb") as f:
        before = os.fstat(f.fileno())
        data = f.read()
        after = os.fstat(f.fileno())
    if len(data) != after.st_size or (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise OSError(errno.EAGAIN, "changed while being read (still being written?)")
    return data, after


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
    """One line for people: what this run ingested, dropped and rejected."""
    n_rej = len(r["rejected_files"])
    rejected = f", {n_rej} file{'s' if n_rej != 1 else ''} rejected (see {r['log']})" if n_rej else ""
    if not r["ingested_files"]:
        known = f"{r['unchanged_files']} already ingested"
        if r["still_rejected_files"]:
            known += f", {r['still_rejected_files']} still rejected"
        return f"no new data: {r['files_seen']} files seen, {known}{rejected}"
    n = len(r["ingested_files"])
    return (f"ingested {n} new file{'s' if n != 1 else ''}: {r['rows_added']:,} rows, "
            f"{r['duplicates_dropped']:,} duplicates dropped{rejected}; {r['total_rows']:,} rows in total")


# The course's starter names (Udacity's "A Dynamic Risk Assessment System"): thin calls of the functions above.
def merge_multiple_dataframe(*, config_path: str | Path | None = None) -> pd.DataFrame:
    """Ingest the new files of input_folder_path; return every ingested row (what finaldata.csv holds)."""
    cfg = load_config(config_path)
    ingest(cfg)
    return read_finaldata(cfg)


if __name__ == "__main__":
    cli.run("ingestion", cli.parser(__doc__).parse_args(), ingest, summary)
