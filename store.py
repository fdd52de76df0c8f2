"""The ingested store: immutable Parquet batches, one per ingested file version, and the index of what the dataset is.

    df = read_dataset(cfg)                      # every labelled row, de-duplicated, in batch order
    df = read_dataset(cfg, after=7)             # rows first ingested in batches after 7 (a drift check's new rows)

Under <output_folder_path>/store/: batches/000012.parquet holds one file version's rows as read (typed, with their
64-bit row hash: row_hashes, by the manifest's row_hash); index-000031.npz says, per live batch, which of its
rows the dataset keeps (a row is kept in the first live batch that holds it) and which were new to the store when
ingested; hashes-000012.u64 holds the dataset's distinct row hashes, sorted (raw little-endian uint64, read a hash
range at a time), and up to ingestion.hash_segments files hashes-000013-seg.u64 those that later batches added,
each sorted (an incremental run writes its own hashes, not the dataset's: merged into a new hashes file once there
are that many); manifest.json (filerecord.py) names the live batches, the index and the hashes. Ingestion writes a
batch, then the hashes, the index and the manifest (an atomic rename): a run killed before the manifest leaves
files no manifest names, and the next ingestion removes them. finaldata.csv and ingestedfiles.txt are exports,
rebuilt from the store whenever they do not match what the manifest recorded of them; csv-000012.csv holds the
CSV lines of a run's labelled batches (the first of them 12), after a header, one batch after another, made while
they were ingested when the disk has room for them (room_for_lines), until that run's export appends them or,
when they are all of it, renames the file to finaldata.csv (then gone; a run killed before leaves it to the
next): a file read ahead in one piece has its lines written once its rows are de-duplicated, only the kept rows'
(keep_csv), and its Parquet file written on WRITER meanwhile (write_batch's later). A store file that cannot be
written (a full disk) raises StoreWriteError: the run fails, and the file being ingested is not blamed for it.

Memory is bounded whatever the size of a file or of the store: de-duplication works on one range of hash values
at a time, and a large file's hashes wait on disk, by range, until the file is read (hashparts.py;
docs/benchmarks.md, case 8).
"""
from __future__ import annotations

import ctypes
import io
import logging
import os
import re
import shutil
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

import artifacts
from atomicio import atomic_file, fsync_path
from config import display_path
from datacontract import columns
from filerecord import escape_name, exports_untouched, write_manifest
from hashparts import first_new, first_seen, hashes_part, hold, new_hashes, partitions

HASH = "_hash"
EXPORT_ROWS = 1_000_000  # rows exported at a time
EXPORT_THREADS = 2       # the machines this runs on have 2 cores or more
EXPORT_BLOCK = 32 << 20  # bytes of a batch's CSV lines appended at a time
# Writes the CSV lines of the chunks being ingested (spill_csv); one thread, so a batch's chunks append in order.
CSV_WORKER = ThreadPoolExecutor(1, thread_name_prefix="csv-lines")
# Writes a read-ahead file's Parquet batch while ingestion de-duplicates its rows (write_batch's later).
WRITER = ThreadPoolExecutor(1, thread_name_prefix="batch-writer")
SOURCE = "csv_source"    # a piece's frame.attrs key: the CSV bytes it was parsed from (ingestion.read_chunks)
HASHES = "row_hashes"    # and its row_hashes, when they were computed on the thread that parsed it
PARTS = "hash_parts"     # and hashparts.split of them
PLAIN_DIGITS = 10        # pyarrow writes a whole float of up to 10 digits as those digits (1e10 as "1e+10")
# Free bytes, in sizes of the file, that keeping its CSV lines until the export needs: the lines, finaldata.csv
# growing by them at the export (while they still exist), and the batch (smaller than the file).
LINES_ROOM = 3
# glibc's mallopt options (malloc.h): arrays up to 32 MB come from the heap (its most), freed memory stays there up
# to 1 GB, and the heap grows 256 MB at a time.
MALLOC_KEEP = ((-3, 32 << 20), (-1, 1 << 30), (-2, 256 << 20))  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, M_TOP_PAD
ARROW_ERRNO = re.compile(r"\[errno (\d+)\]")  # pyarrow's I/O errors carry the errno in their message only
GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # row hash 2: 2^64 over the golden ratio, the usual odd multiplier
MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))  # splitmix64's finaliser constants
# WORD_MASK[k]: the low k bytes of a little-endian word (a string's last word may have fewer than 8)
WORD_MASK = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
log = logging.getLogger("ingestion")


class StoreWriteError(OSError):
    """The store could not be written (a full disk, say): the run fails, and the file it was storing is not to
    blame: it is tried again next run."""


def reuse_freed_memory() -> None:
    """Have glibc's malloc keep the memory an ingest frees for its next arrays instead of giving it back to the
    system at once: each file's hash and mask arrays (8 to 32 MB) were mapped and unmapped anew, and zeroing the
    fresh pages took a fifth of the ingest's CPU (docs/benchmarks.md, case 3). Elsewhere than glibc, nothing."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return
    for option, value in MALLOC_KEEP:
        mallopt(option, value)


def folder(cfg: dict[str, Any]) -> Path:
    """The store's folder."""
    return artifacts.path(cfg, "store")


def batch_path(cfg: dict[str, Any], batch_id: int) -> Path:
    """Where a batch's Parquet file lives."""
    return folder(cfg) / "batches" / f"{batch_id:06d}.parquet"


def row_hashes(df: pd.DataFrame, version: int) -> np.ndarray:
    """One 64-bit hash per row of a typed frame (equal rows, equal hashes), whatever the order of its columns (a
    config may list the features in another order than the data ingested before), by the store's row hash
    (its manifest's row_hash): 2 mixes each column's hashes (_column_hashes); 1, of stores made before it, is
    pandas' hash_pandas_object (SipHash of each id as a Python string: three times the time)."""
    ordered = df[sorted(df.columns)]
    if version == 1:
        return pd.util.hash_pandas_object(ordered, index=False, categorize=False).to_numpy(dtype=np.uint64)
    h = np.zeros(len(df), dtype=np.uint64)
    for name in ordered.columns:
        h = _mix((h * GOLDEN) ^ _column_hashes(ordered[name]))
    return h


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place: every bit of a word moves every bit of its hash."""
    x ^= x >> np.uint64(30)
    x *= MIX[0]
    x ^= x >> np.uint64(27)
    x *= MIX[1]
    x ^= x >> np.uint64(31)
    return x


def _column_hashes(col: pd.Series) -> np.ndarray:
    """One 64-bit hash per value: text by its UTF-8 bytes, read from the Arrow buffers pandas keeps it in (no
    Python string per id); numbers by their float64 bits (missing as NaN, -0 as 0, so 1 and 1.0 hash alike)."""
    if pd.api.types.is_numeric_dtype(col.dtype):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan) + 0.0
        values[np.isnan(values)] = np.nan  # one NaN: a NaN's payload bits are not part of its value
        return _mix(values.view(np.uint64))
    text = pa.array(col, type=pa.large_string(), from_pandas=True)  # pandas' str dtype: its own buffers
    chunks = text.chunks if isinstance(text, pa.ChunkedArray) else [text]
    return np.concatenate([_text_hashes(c) for c in chunks]) if chunks else np.empty(0, dtype=np.uint64)


def _text_hashes(arr: pa.LargeStringArray) -> np.ndarray:
    """One 64-bit hash per string of an Arrow array: its length, then its bytes 8 at a time, mixed in."""
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset:arr.offset + len(arr) + 1]
    raw = arr.buffers()[2]
    first, size = int(offsets[0]), int(offsets[-1] - offsets[0])
    data = np.zeros(size + 8, dtype=np.uint8)  # 8 zero bytes past the end: a last word can always be read whole
    if raw is not None and size:
        data[:size] = np.frombuffer(raw, dtype=np.uint8, count=size, offset=first)
    # word_at[i]: the 8 bytes from byte i on as one little-endian word (a strided view, not a copy)
    word_at = np.ndarray(shape=(size + 1,), dtype="<u8", buffer=data, strides=(1,))
    starts, lengths = offsets[:-1] - first, np.diff(offsets)
    h = _mix(lengths.astype(np.uint64) ^ GOLDEN)
    rows = np.arange(len(arr))
    for k in range(int((lengths.max(initial=0) + 7) // 8)):
        rows = rows[lengths[rows] > 8 * k]  # the strings that have a k-th word
        tail = np.minimum(lengths[rows] - 8 * k, 8)
        h[rows] = _mix(h[rows] ^ (word_at[starts[rows] + 8 * k] & WORD_MASK[tail]))
    return h


def stored_table(df: pd.DataFrame) -> pa.Table:
    """A typed frame as the Arrow table a batch stores: text as Arrow's string (pandas keeps its str dtype as
    large_string), so every batch has one schema whichever reader typed its rows."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    return table.cast(pa.schema([f.with_type(pa.string()) if pa.types.is_large_string(f.type) else f
                                 for f in table.schema], metadata=table.schema.metadata))


def batch_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """The Parquet writer of a batch file: every engine writes batches alike."""
    # Measured on a million rows (0.11 s of CPU with every column compressed, dictionary-encoded and with
    # statistics; 0.08 s like this, the file 10% larger): random hashes and near-unique ids neither compress nor
    # dictionary-encode, and trying costs; the numbers' dictionary pages are already bit-packed, so compressing
    # them saves little; min/max statistics of ids and hashes help no reader of the store.
    numbers = [c for c in schema.names if pa.types.is_floating(schema.field(c).type)
               or pa.types.is_integer(schema.field(c).type) and c != HASH]
    return pq.ParquetWriter(path, schema, use_dictionary=numbers, compression="none", write_statistics=numbers)


def write_batch(cfg: dict[str, Any], batch_id: int, frames: Iterable[pd.DataFrame], row_hash: int,
                export: dict[str, Any] | None = None, later: bool = False) -> tuple[Path, dict[str, Any]]:
    """Write typed frames (one file version, chunk by chunk) as a batch; its path and row hashes (new_hashes, by
    the store's row hash: row_hashes). The file is fsynced but named by no manifest yet: until one does, it is
    garbage. With export (a labelled batch of an ingestion: the run's lines file, csv_run), each chunk's CSV lines
    are also written to it, on a worker thread, for the export (hashes["csv"]: spill_csv). A failed write raises
    StoreWriteError; anything else raised is the frames'. With later (frames already parsed: a file read ahead),
    the Parquet file is written on WRITER while the caller de-duplicates its rows; written() waits for it, and
    raises its StoreWriteError."""
    path = batch_path(cfg, batch_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    hashes, writer = new_hashes(folder(cfg) / f"spill-{batch_id:06d}", cfg["ingestion"]["spill_rows"]), None
    lines = hashes["csv"] = new_csv(export) if export is not None else None
    shown, tables = display_path(cfg, path), []
    try:
        for df in frames:  # reading the file: what goes wrong here is the file's
            source, h, parts = df.attrs.pop(SOURCE, None), df.attrs.pop(HASHES, None), df.attrs.pop(PARTS, None)
            h = row_hashes(df, row_hash) if h is None else h
            table = stored_table(df.assign(**{HASH: h}))
            with writing(shown):  # writing the store: what goes wrong here is not
                writer = writer or batch_writer(path, table.schema)
                if lines is not None:
                    spill_csv(lines, table, cfg, source, later)
                if later:
                    tables.append(table)
                else:
                    writer.write_table(table)
                hold(hashes, h, parts)
            del df, table  # before the next piece is parsed: a 32 MB piece takes 0.4 GB as a frame
        if writer is None:
            raise ValueError("no rows")
        if later:
            hashes["written"] = WRITER.submit(_close_batch, writer, tables, path, shown, hashes)
        else:
            _close_batch(writer, tables, path, shown, hashes)
    except BaseException:
        _discard(writer, path, hashes)
        raise
    return path, hashes


def _close_batch(writer: pq.ParquetWriter, tables: list[pa.Table], path: Path, shown: str,
                 hashes: dict[str, Any]) -> None:
    """Write what waits to be written of a batch, close and fsync it; on failure, nothing of it is left."""
    try:
        with writing(shown):
            for table in tables:
                writer.write_table(table)
            writer.close()
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    except BaseException:
        _discard(writer, path, hashes)
        raise


def _discard(writer: pq.ParquetWriter | None, path: Path, hashes: dict[str, Any]) -> None:
    """Remove what a failed batch write left: the file, its spilled hashes, its CSV lines."""
    if writer is not None:
        with suppress(OSError, ValueError):  # closing flushes: on a full disk it fails too; the file goes anyway
            writer.close()
    path.unlink(missing_ok=True)
    shutil.rmtree(hashes["spill"], ignore_errors=True)
    drop_csv(hashes["csv"])


def written(hashes: dict[str, Any] | None) -> None:
    """Wait for a batch written later (write_batch); its StoreWriteError, if it failed."""
    job = (hashes or {}).pop("written", None)
    if job is not None:
        job.result()


@contextmanager
def writing(shown: str) -> Iterator[None]:
    """Turn an OSError of writing a store file (shown: its name for people) into StoreWriteError, one line naming
    the file and the reason."""
    try:
        yield
    except StoreWriteError:
        raise
    except OSError as e:
        found = ARROW_ERRNO.search(str(e))
        reason = os.strerror(int(found[1])) if found else e.strerror or str(e)
        raise StoreWriteError(f"cannot write {shown} ({reason})") from e


def room_for_lines(cfg: dict[str, Any], index: dict[str, Any], size: int) -> bool:
    """Whether the disk has room to keep a file of size bytes as CSV lines until the export (LINES_ROOM, and as
    much again for the lines this run already keeps, which the export copies too); without it the export reads
    the batch back, which needs no more room than the export itself."""
    try:
        run = index.get("csv_run")
        kept = run["path"].stat().st_size if run is not None and run["path"].exists() else 0
        return shutil.disk_usage(cfg["output_folder_path"]).free >= LINES_ROOM * size + kept
    except OSError:
        return False


def csv_run(cfg: dict[str, Any], index: dict[str, Any], batch_id: int) -> dict[str, Any]:
    """The file where this run's labelled batches' CSV lines wait for the export, one batch after another (made
    for the run's first, batch_id, and named by it)."""
    if "csv_run" not in index:
        path = folder(cfg) / f"csv-{batch_id:06d}.csv"
        path.unlink(missing_ok=True)
        index["csv_run"] = {"path": path}
    return index["csv_run"]


def new_csv(run: dict[str, Any]) -> dict[str, Any]:
    """A batch's CSV lines as its chunks are written: the run's file they go to (csv_run), the jobs writing them,
    whether they are usable (no id needed quoting), and where in the file they start and end."""
    return {"path": run["path"], "jobs": [], "ok": True, "start": None, "end": None}


def spill_csv(lines: dict[str, Any], table: pa.Table, cfg: dict[str, Any], source: bytes | None = None,
              later: bool = False) -> None:
    """Append a chunk's CSV lines (csv_rows, the export's own bytes) to the batch's file on CSV_WORKER: pyarrow's
    CSV writer releases the GIL, so the lines are made while the next chunk or file is parsed instead of by
    reading every batch back at the export (a third of a full ingest); source: the CSV bytes the chunk was parsed
    from, whose lines are taken as they are when they are those bytes (own_lines). At most two chunks wait at a
    time (bounded memory). With later (a file read ahead, one chunk), the lines wait for keep_csv."""
    if later:
        lines["later"] = (table.select(columns(cfg)), source)
        return
    jobs = lines["jobs"]
    if len(jobs) >= 2:
        jobs[-2].result()
    jobs.append(CSV_WORKER.submit(_append_csv, lines, table.select(columns(cfg)), source))


def keep_csv(lines: dict[str, Any], keep: np.ndarray | None) -> None:
    """Once a batch's rows are de-duplicated, write the lines of a batch whose lines wait (spill_csv's later): only
    those of the rows it keeps, given keep (lines["kept"]: the export then copies the file whole), else all."""
    if "later" in lines:
        table, source = lines.pop("later")
        lines["jobs"].append(CSV_WORKER.submit(_append_csv, lines, table, source,
                                               None if keep is None else keep.copy()))


def _append_csv(lines: dict[str, Any], table: pa.Table, source: bytes | None = None,
                keep: np.ndarray | None = None) -> None:
    """On CSV_WORKER: append a chunk's CSV lines, one line per row (only the kept rows', given keep): its source's
    own lines when they are csv_rows' bytes, else csv_rows'; ids that need quoting (csv_rows writes them through
    pandas, whose floats depend on the whole slice) leave the batch to be read back instead."""
    if not lines["ok"]:
        return
    data: Any = own_lines(source, table) if source is not None else None
    if data is None:
        if _needs_quotes(table.column(0)):
            lines["ok"] = False
            return
        data = _plain_csv(table)
        if data.nbytes and np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == 10) != table.num_rows:
            lines["ok"] = False  # not one line per row: the export reads the batch back
            return
    runs = [data] if keep is None or keep.all() else _kept_runs(data, keep)[0]
    at = None
    try:
        with open(lines["path"], "ab") as f:
            at = f.tell()
            if at == 0:  # the run's first lines: the header first, so the file can become the export
                f.write((",".join(table.column_names) + "\n").encode())
                at = f.tell()
            if lines["end"] not in (None, at):  # another batch's lines between this batch's: not one range
                lines["ok"] = False
                return
            f.writelines(runs)
            end = f.tell()
    except OSError:  # a full disk, say: the lines are a shortcut, the export reads the batch back instead
        lines["ok"] = False
        if at is not None:
            with suppress(OSError):  # what this write left goes, so the next batch's lines follow the last whole ones
                os.truncate(lines["path"], at)
        return
    lines["start"] = at if lines["start"] is None else lines["start"]
    lines["end"] = end
    if keep is not None:
        lines["kept"] = keep


def own_lines(source: bytes, table: pa.Table) -> memoryview | None:
    """The data lines of the CSV bytes a table was parsed from when they are what csv_rows writes of it (None when
    that cannot be told by counting): the header names the table's columns in order, every row is one line ending
    in "\n", the ids are as read (not stripped) and need no quotes, and every other cell is empty (a null) or a
    whole number written as its digits (no sign, point, exponent or leading zero; below 1e10, which pyarrow writes
    as "1e+10"). Most exports are like that, and taking their lines saves writing the CSV again (pyarrow's writer
    spends 0.2 s a million rows formatting floats)."""
    head = (",".join(table.column_names) + "\n").encode()
    if not source.startswith(head) or not source.endswith(b"\n") or not source.isascii() \
            or b"\r" in source or b'"' in source or table.num_columns < 2:
        return None
    body, rows, width = memoryview(source)[len(head):], table.num_rows, table.num_columns
    # Both readers refuse a row of more or fewer cells than the header: as many lines as rows and as many commas as
    # their cells need mean one line per row. Then every character that is not a digit must be a comma, a line end
    # or one of an id's.
    chars = np.frombuffer(body, dtype=np.uint8)  # numpy counts a byte 4 times faster than bytes.count
    if np.count_nonzero(chars == ord("\n")) != rows or np.count_nonzero(chars == ord(",")) != rows * (width - 1):
        return None
    body_digits = int(np.count_nonzero(chars - np.uint8(48) < 10))  # unsigned: below "0" wraps past 10
    # The ids: their characters other than digits, as many as in the file (none stripped)...
    ids = pa.concat_arrays(table.column(0).chunks) if table.column(0).num_chunks != 1 else table.column(0).chunk(0)
    wide = np.int64 if pa.types.is_large_string(ids.type) else np.int32
    offsets = np.frombuffer(ids.buffers()[1], dtype=wide)[ids.offset:ids.offset + len(ids) + 1]
    id_chars = np.frombuffer(ids.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]] if len(ids) \
        else np.empty(0, dtype=np.uint8)
    id_digits = int(np.count_nonzero(id_chars - np.uint8(48) < 10))
    if len(id_chars) - id_digits != len(body) - body_digits - rows * width:
        return None
    # ... and the numbers: whole, below 1e10, and written with exactly as many digits as they have (a digit more
    # anywhere is a leading zero), empty cells being the nulls.
    digits = 0
    for i in range(1, width):
        column = table.column(i)
        values = column.to_numpy(zero_copy_only=False)
        if column.null_count:
            values = values[~np.isnan(values)]
        if not ((values >= 0) & (values < 10.0 ** PLAIN_DIGITS) & (values == np.floor(values))).all():
            return None
        top = values.max(initial=0)  # no pass for the digits no value has
        digits += len(values) + sum(int(np.count_nonzero(values >= 10 ** k)) for k in range(1, PLAIN_DIGITS)
                                    if 10 ** k <= top)
    if body_digits - id_digits != digits:
        return None
    return body


def csv_ready(lines: dict[str, Any] | None) -> bool:
    """Wait for a batch's CSV lines; whether the export can take them (a job that failed leaves the batch to be
    read back, as a failed write does)."""
    if lines is None:
        return False
    try:
        for job in lines["jobs"]:
            job.result()
    except Exception:  # noqa: BLE001 (the lines are a shortcut: whatever went wrong, the batch is read back)
        log.warning("the CSV lines of %s could not be made: the export reads the batch back", lines["path"].name)
        return False
    return bool(lines["ok"]) and lines["end"] is not None and lines["path"].exists()


def drop_csv(lines: dict[str, Any] | None) -> None:
    """Give up a batch's CSV lines once their jobs are done (they stay in the run's file, unused)."""
    if lines is None:
        return
    for job in lines["jobs"]:
        try:
            job.result()
        except Exception:  # noqa: BLE001 (the file goes whatever went wrong in writing it)
            pass
    lines["ok"] = False


def drop_batch(cfg: dict[str, Any], batch_id: int, hashes: dict[str, Any] | None = None) -> None:
    """Remove a batch no manifest names yet, its spilled hashes and its CSV lines (a file that changed while it was
    read)."""
    with suppress(OSError):  # a write still under way must not recreate the file; a failed one removed it
        written(hashes)
    batch_path(cfg, batch_id).unlink(missing_ok=True)
    shutil.rmtree(folder(cfg) / f"spill-{batch_id:06d}", ignore_errors=True)
    drop_csv((hashes or {}).get("csv"))


def batch_hashes(cfg: dict[str, Any], batch_id: int) -> np.ndarray:
    """The row hashes of a batch, in row order."""
    return pq.read_table(batch_path(cfg, batch_id), columns=[HASH]).column(HASH).to_numpy()


def dataset_hashes(index: dict[str, Any]) -> np.ndarray:
    """The dataset's distinct row hashes, sorted, in memory (a correction's bookkeeping needs them whole)."""
    h = index["hashes"]
    base = h if isinstance(h, np.ndarray) else np.fromfile(h, dtype="<u8")
    if not index["segments"]:
        return base
    return np.sort(np.concatenate([base, *(np.fromfile(s, dtype="<u8") for s in index["segments"])]))


def dataset_rows(index: dict[str, Any]) -> int:
    """How many distinct rows the dataset holds."""
    h = index["hashes"]
    return (len(h) if isinstance(h, np.ndarray) else h.stat().st_size // 8) + \
        sum(s.stat().st_size // 8 for s in index["segments"])


def add_hashes(cfg: dict[str, Any], index: dict[str, Any], hs: dict[str, Any], batch_id: int,
               write: bool) -> np.ndarray:
    """Which rows of a new batch join the dataset (in no live batch, not repeated earlier in it), one partition at
    a time. Their hashes go to a new segment file while the committed hashes file has fewer than
    ingestion.hash_segments beside it; else the hashes file and its segments are merged with them into
    index["hashes"]: an array up to ingestion.held_hashes (commit writes it), else a new hashes file."""
    keep = np.zeros(hs["rows"], dtype=bool)
    source, segments, merged = index["hashes"], index["segments"], []
    if write and isinstance(source, Path) and source.name == index["committed"] \
            and len(segments) < cfg["ingestion"]["hash_segments"]:
        return _add_segment(cfg, index, hs, batch_id, keep)
    held = dataset_rows(index) + hs["rows"] <= cfg["ingestion"]["held_hashes"]
    out = None if held or not write else folder(cfg) / f"hashes-{batch_id:06d}.u64"
    with open(out, "wb") if out else nullcontext() as f:
        for p, h, pos, made in partitions(hs):
            # The segments hold hashes new to the file and to each other: together with it, one sorted set.
            seen = np.sort(np.concatenate([hashes_part(x, p) for x in (source, *segments)])) if segments \
                else hashes_part(source, p)
            part_keep, part = first_seen(h, seen, made)
            keep[pos[part_keep]] = True
            if f is None:
                merged.append(part)
            else:
                f.write(part.tobytes())
    if isinstance(source, Path) and source.name != index.get("committed"):
        source.unlink(missing_ok=True)  # an earlier file of this run's: superseded before any commit named it
    index["hashes"], index["segments"] = (out if out else np.concatenate(merged)), []
    return keep


def _add_segment(cfg: dict[str, Any], index: dict[str, Any], hs: dict[str, Any], batch_id: int,
                 keep: np.ndarray) -> np.ndarray:
    """add_hashes for a batch whose new hashes go to a segment file of their own (the commit syncs it)."""
    out = folder(cfg) / f"hashes-{batch_id:06d}-seg.u64"
    sources = [index["hashes"], *index["segments"]]
    with open(out, "wb") as f:
        for p, h, pos, made in partitions(hs):
            part_keep, new = first_new(h, [hashes_part(x, p) for x in sources], made)
            keep[pos[part_keep]] = True
            f.write(new.tobytes())
    index["segments"] = [*index["segments"], out]
    return keep


def empty_index() -> dict[str, Any]:
    """The index of an empty store."""
    return {"hashes": np.empty(0, dtype=np.uint64), "segments": [], "keep": {}, "fresh": {}, "committed": None,
            "csv": {}}


def load_index(cfg: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """The index the manifest names: the dataset's sorted hashes (their file), keep and fresh masks per live
    batch."""
    if not manifest["index"]:
        return empty_index()
    index = empty_index()
    path = folder(cfg) / manifest["index"]
    if not path.exists():  # deleted by hand: derived data, rebuilt from the batches
        log.warning("%s is missing: rebuilding the index from the batches", path)
        rebuild_keep(cfg, manifest["batches"], index, {})
        index["fresh"] = {k: v.copy() for k, v in index["keep"].items()}  # the best the batches alone can say
        return index
    with np.load(path) as z:
        for b in manifest["batches"]:
            for mask in ("keep", "fresh"):
                # 0/1 bytes seen as booleans: no second copy (225 MB for a 5 GB file's batch)
                index[mask][b["id"]] = np.unpackbits(z[f"{mask}_{b['id']}"], count=b["rows"]).view(bool)
        legacy = z["hashes"] if "hashes" in z.files else None  # an index written before the hashes had a file
    hashes = folder(cfg) / manifest["hashes"] if manifest.get("hashes") else None
    segments = [folder(cfg) / name for name in manifest.get("hash_segments", [])]
    if hashes is not None and hashes.exists() and all(s.exists() for s in segments):
        index["hashes"], index["committed"], index["segments"] = hashes, hashes.name, segments
    elif legacy is not None:
        index["hashes"] = legacy
    else:  # deleted by hand: the kept rows' hashes, from the batches
        log.warning("%s or a segment of it is missing: rebuilding the dataset's hashes from the batches", hashes)
        kept = [batch_hashes(cfg, b["id"])[index["keep"][b["id"]]] for b in manifest["batches"]]
        index["hashes"] = np.sort(np.concatenate(kept)) if kept else empty_index()["hashes"]
    return index


def rebuild_keep(cfg: dict[str, Any], batches: list[dict[str, Any]], index: dict[str, Any],
                 known: dict[int, np.ndarray]) -> None:
    """Recompute which rows the dataset keeps from the live batches' hashes (known: those no batch file holds yet),
    after a version left it."""
    seen = np.empty(0, dtype=np.uint64)
    for b in batches:
        hashes = known[b["id"]] if b["id"] in known else batch_hashes(cfg, b["id"])
        index["keep"][b["id"]], seen = first_seen(hashes, seen)
    index["hashes"], index["segments"] = seen, []
    for gone in set(index["keep"]) - {b["id"] for b in batches}:
        index["keep"].pop(gone)
        index["fresh"].pop(gone, None)


def commit(cfg: dict[str, Any], manifest: dict[str, Any], index: dict[str, Any]) -> None:
    """Write the index (and the hashes, if still in memory), then the manifest that names them: the store moves to
    its next state at one rename."""
    manifest["commit"] += 1
    if isinstance(index["hashes"], np.ndarray):  # held in memory (a small dataset, a correction's rebuild)
        path = folder(cfg) / f"hashes-{manifest['next_batch'] - 1:06d}.u64"
        with atomic_file(path) as f:
            f.write(memoryview(index["hashes"]))  # no copy of what may be 128 MB
        index["hashes"] = path
    elif index["hashes"].name != index["committed"]:  # add_hashes leaves the syncing to the commit
        with open(index["hashes"], "rb") as f:
            os.fsync(f.fileno())
    for segment in index["segments"]:
        if segment.name not in manifest.get("hash_segments", []):
            with open(segment, "rb") as f:
                os.fsync(f.fileno())
    name = f"index-{manifest['commit']:06d}.npz"
    arrays = {}
    for b in manifest["batches"]:
        for mask in ("keep", "fresh"):
            arrays[f"{mask}_{b['id']}"] = np.packbits(index[mask][b["id"]])
    with atomic_file(folder(cfg) / name) as f:
        np.savez(f, **arrays)
    manifest["index"], manifest["hashes"] = name, index["hashes"].name
    manifest["hash_segments"] = [s.name for s in index["segments"]]
    write_manifest(cfg, manifest)
    index["committed"] = manifest["hashes"]
    remove_garbage(cfg, manifest, lines=False)


def remove_garbage(cfg: dict[str, Any], manifest: dict[str, Any], lines: bool = True) -> list[str]:
    """Remove store files the manifest does not name: batches, hashes and indexes of runs killed before their
    commit (and their spilled hashes), and those a commit superseded; with lines, the CSV lines of batches a run
    left before its export (a commit keeps its own run's, which the export then takes). Callers hold the ingestion
    lock."""
    named = {manifest["index"], manifest.get("hashes"), *manifest.get("hash_segments", []),
             *(batch_path(cfg, b["id"]).name for b in manifest["batches"])}
    gone = []
    store = folder(cfg)
    for p in [*store.glob("index-*.npz"), *store.glob("hashes-*.u64"), *(store / "batches").glob("*.parquet"),
              *(store.glob("csv-*.csv") if lines else [])]:
        if p.name not in named:
            p.unlink(missing_ok=True)
            gone.append(p.name)
    for p in store.glob("spill-*"):
        shutil.rmtree(p, ignore_errors=True)
        gone.append(p.name)
    return gone


def read_dataset(cfg: dict[str, Any], manifest: dict[str, Any], index: dict[str, Any] | None = None,
                 keep: list[str] | None = None, after: int = 0, labelled: bool = True) -> pd.DataFrame:
    """The dataset's rows (only the columns in keep, if given), de-duplicated, in batch order: of every live batch,
    or, after a batch id, only the rows first ingested after it (what a drift check has not seen)."""
    index = index if index is not None else load_index(cfg, manifest)
    wanted = [c for c in columns(cfg) if keep is None or c in keep]
    names = [c for c in wanted if labelled or c != cfg["target_column"]]
    tables = [pq.read_table(batch_path(cfg, b["id"]), columns=names).filter(pa.array(rows_read(index, b, after)))
              for b in batches_read(manifest, after, labelled)]
    if not tables:
        return pd.DataFrame({c: pd.Series(dtype="str" if c == cfg["id_column"] else "float64") for c in wanted})
    return pa.concat_tables(tables).to_pandas()


def batches_read(manifest: dict[str, Any], after: int = 0, labelled: bool = True) -> list[dict[str, Any]]:
    """The live batches read_dataset reads: the labelled (or the unlabelled) ones, after a batch id if given."""
    return [b for b in manifest["batches"] if b["id"] > after and b["labelled"] == labelled]


def rows_read(index: dict[str, Any], batch: dict[str, Any], after: int = 0) -> np.ndarray:
    """Which rows of a batch read_dataset reads: the ones the dataset keeps; after a batch id, only those of them
    that were new to the store when ingested (what a drift check has not seen)."""
    keep = index["keep"][batch["id"]]
    return keep & index["fresh"][batch["id"]] if after else keep


def csv_rows(table: pa.Table, cfg: dict[str, Any]) -> bytes | memoryview:
    """The rows of a typed table as CSV lines without a header. pyarrow's writer is 3-5x faster than to_csv and
    writes whole floats without ".0" (nulls as empty cells); it cannot quote only where needed, so ids with a comma,
    quote or line break go through pandas, which does."""
    if table.num_rows and _needs_quotes(table.column(cfg["id_column"])):
        return _whole_floats(table.to_pandas()).to_csv(index=False, header=False, lineterminator="\n").encode("utf-8")
    return _plain_csv(table)


def _plain_csv(table: pa.Table) -> memoryview:
    """csv_rows of a table whose ids need no quotes: pyarrow's writer, no header, nothing quoted."""
    out = io.BytesIO()
    pacsv.write_csv(table, out, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return out.getbuffer()


def _needs_quotes(ids: pa.ChunkedArray) -> bool:
    """Whether any id holds a comma, quote or line break: a look at the strings' bytes (a regex took as long as
    writing the CSV)."""
    for chunk in ids.chunks:
        data = chunk.buffers()[2]
        raw = data.to_pybytes() if data is not None else b""
        if any(c in raw for c in (b",", b'"', b"\r", b"\n")):
            return True
    return False


def _whole_floats(df: pd.DataFrame) -> pd.DataFrame:
    """Write whole-number feature columns without a trailing ".0" (they read back to the same floats)."""
    out = df.copy()
    for col in out.columns:
        values = out[col]
        if values.dtype == "float64" and bool(np.all(np.isnan(values) | (values == np.round(values)))) \
                and not bool((values.abs() >= 2**53).any()):
            out[col] = values.astype("Int64")
    return out


def export(cfg: dict[str, Any], manifest: dict[str, Any], index: dict[str, Any], added: list[int]) -> None:
    """Bring finaldata.csv (every labelled row of the dataset) and ingestedfiles.txt (one ingested file per line)
    in step with the store. Only batches added and the export as last written: finaldata.csv gets their rows
    appended (no copy of what it holds); else it is written anew. The manifest records what was written."""
    path = artifacts.path(cfg, "finaldata")
    appendable = added and exports_untouched(cfg, manifest) and manifest.get("exported_columns") == columns(cfg) \
        and manifest.get("exported_batches") == [b["id"] for b in manifest["batches"] if b["id"] not in added]
    if appendable:
        with open(path, "ab") as f:
            _write_rows(f, cfg, manifest, index, set(added))
            f.flush()
            os.fsync(f.fileno())
    elif not _take_run(cfg, manifest, index, path):
        with atomic_file(path) as f:
            f.write((",".join(columns(cfg)) + "\n").encode())
            _write_rows(f, cfg, manifest, index, None)
    names = "".join(escape_name(b["file"]) + "\n" for b in manifest["batches"])
    with atomic_file(artifacts.path(cfg, "ingested")) as f:
        f.write(names.encode("utf-8"))
    fsync_path(path.parent)
    manifest["exported_batches"] = [b["id"] for b in manifest["batches"]]
    manifest["exported_columns"] = columns(cfg)
    manifest["exports"] = {what: [st.st_size, st.st_mtime_ns] for what in ("finaldata", "ingested")
                           for st in [artifacts.path(cfg, what).stat()]}
    write_manifest(cfg, manifest)


def _write_rows(f: Any, cfg: dict[str, Any], manifest: dict[str, Any], index: dict[str, Any],
                only: set[int] | None) -> None:
    """Write the kept labelled rows of the live batches (only those in `only`, if given) as CSV lines: a batch
    written this run by its CSV lines (spill_csv) less the rows it does not keep (copied whole when they hold only
    those it keeps: keep_csv); any other a slice at a time (a
    batch of 20 million rows would take gigabytes as one frame). pyarrow's CSV writer uses one core and releases
    the GIL: slices are turned into CSV on EXPORT_THREADS threads, a few ahead, written in order."""
    pending: deque[Future[bytes]] = deque()
    spilled = index["csv"]
    with ThreadPoolExecutor(EXPORT_THREADS) as pool:
        for b in manifest["batches"]:
            if not b["labelled"] or only is not None and b["id"] not in only:
                continue
            keep, lines = index["keep"][b["id"]], spilled.get(b["id"])
            wanted = _lines_kept(lines, keep)
            if wanted is not None:
                while pending:
                    f.write(pending.popleft().result())
                if wanted.all():
                    _copy_into(f, lines)
                else:
                    _append_kept(f, lines, wanted)
                continue
            for table in _kept_slices(cfg, b["id"], keep):
                pending.append(pool.submit(csv_rows, table, cfg))
                if len(pending) > EXPORT_THREADS:
                    f.write(pending.popleft().result())
        while pending:
            f.write(pending.popleft().result())
    _drop_run(index)


def _take_run(cfg: dict[str, Any], manifest: dict[str, Any], index: dict[str, Any], path: Path) -> bool:
    """Make the run's lines file finaldata.csv, as atomic_file would, when it holds what the export is to write
    anew: the header, then every labelled batch's lines, each kept whole, in the manifest's order (a first
    ingestion, or one after the export was deleted that finds every file new); whether it did."""
    run, head = index.get("csv_run"), (",".join(columns(cfg)) + "\n").encode()
    if run is None:
        return False
    at = len(head)
    for b in manifest["batches"]:
        if b["labelled"]:
            lines = index["csv"].get(b["id"])
            wanted = _lines_kept(lines, index["keep"][b["id"]])
            if wanted is None or not wanted.all() or lines["start"] != at:
                return False
            at = lines["end"]
    try:
        with open(run["path"], "rb") as f:
            if f.read(len(head)) != head or os.fstat(f.fileno()).st_size != at:
                return False
            os.fsync(f.fileno())
        os.replace(run["path"], path)
    except OSError:  # no lines written at all, or another filesystem than the export's: the export copies
        return False
    fsync_path(path.parent)
    _drop_run(index)
    return True


def _drop_run(index: dict[str, Any]) -> None:
    """Remove the run's lines file, its jobs done (a job must not write after the removal)."""
    for lines in index["csv"].values():
        drop_csv(lines)
    run = index.pop("csv_run", None)
    if run is not None:
        run["path"].unlink(missing_ok=True)
    index["csv"] = {}


def _lines_kept(lines: dict[str, Any] | None, keep: np.ndarray) -> np.ndarray | None:
    """Which of a batch's CSV lines the export takes, given the rows the batch keeps; None when the lines cannot
    serve (none made, a failed job, or lines cut to rows a later correction's rebuild has since added to)."""
    if not csv_ready(lines):
        return None
    cut = lines.get("kept")  # keep_csv wrote only these rows' lines
    if cut is None:
        return keep
    return None if (keep & ~cut).any() else keep[cut]


def _copy_into(f: Any, lines: dict[str, Any]) -> None:
    """Append a batch's CSV lines to an open file: in the kernel where it can (copy_file_range), else through
    memory."""
    f.flush()  # what the writer buffered goes first; the copy writes at the file's own offset
    at, end = lines["start"], lines["end"]
    with open(lines["path"], "rb", buffering=0) as src:
        try:
            while at < end and (n := os.copy_file_range(src.fileno(), f.fileno(), end - at, at)):
                at += n
        except OSError:  # no such copy between these two filesystems (or onto a file opened to append)
            pass
        src.seek(at)
        while at < end and (block := src.read(min(EXPORT_BLOCK, end - at))):
            f.write(block)
            at += len(block)


def _append_kept(f: Any, lines: dict[str, Any], keep: np.ndarray) -> None:
    """Append those of a batch's CSV lines whose rows it keeps, EXPORT_BLOCK bytes of them at a time."""
    row, rest, path, left = 0, b"", lines["path"], lines["end"] - lines["start"]
    with open(path, "rb") as src:
        src.seek(lines["start"])
        while left > 0 and (block := src.read(min(EXPORT_BLOCK, left))):
            left -= len(block)
            data = rest + block if rest else block
            runs, rows, used = _kept_runs(data, keep[row:])
            f.writelines(runs)
            row, rest = row + rows, data[used:]
    if rest or row != len(keep):
        raise ValueError(f"{path.name} holds {row} lines of a batch of {len(keep)} rows")


def _kept_runs(data: Any, keep: np.ndarray) -> tuple[list[memoryview], int, int]:
    """The whole lines of data whose rows keep keeps (from data's first line on), as the runs between the dropped
    lines (few, mostly) as they are; how many lines and bytes the whole lines take."""
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
    if len(ends) > len(keep):
        raise ValueError(f"CSV lines hold more lines ({len(ends)}) than their batch has rows ({len(keep)})")
    dropped = np.flatnonzero(~keep[:len(ends)])
    # byte ranges to write: from the start, and after each dropped line, to the next dropped line's start
    cuts = np.empty(2 * len(dropped) + 2, dtype=np.int64)
    cuts[0], cuts[-1] = 0, ends[-1] if len(ends) else 0
    cuts[2:-1:2] = ends[dropped]
    cuts[1:-1:2] = ends[dropped] - np.diff(ends, prepend=0)[dropped]
    view = memoryview(data)
    runs = [view[a:b] for a, b in zip(cuts[0::2].tolist(), cuts[1::2].tolist(), strict=True) if b > a]
    return runs, len(ends), int(cuts[-1])


def _kept_slices(cfg: dict[str, Any], batch_id: int, keep: np.ndarray) -> Iterator[pa.Table]:
    """A batch's kept rows, read back from its file, EXPORT_ROWS at most at a time."""
    start = 0
    # pre_buffer would keep every range read until the end: a 5 GB batch's export grew to 4 GB
    reader = pq.ParquetFile(batch_path(cfg, batch_id), pre_buffer=False)
    for part in reader.iter_batches(EXPORT_ROWS, columns=columns(cfg)):
        mask = keep[start:start + part.num_rows]
        start += part.num_rows
        yield pa.Table.from_batches([part]).filter(pa.array(mask))
