"""The library floor that bench/run.py measures ours against: the same work done directly with the libraries.

    python bench/floor.py ingest --config WS/config.json     # source CSVs -> de-duplicated finaldata.csv
    python bench/floor.py store --config WS/config.json      # the same into batch files, as our store keeps them
    python bench/floor.py store --engine duckdb --config WS/config.json   # DuckDB reading and writing the batches
    python bench/floor.py arrays --config WS/config.json --out DIR   # finaldata.csv -> DIR/X.npy, DIR/y.npy
    python bench/floor.py fit --config WS/config.json --arrays DIR   # training.build_pipeline() on those arrays
    python bench/floor.py read --config WS/config.json   # the store's Parquet batch files -> one pandas frame

ingest: pyarrow.csv reads each file (multi-threaded, column types given), the tables are concatenated, exact
duplicate rows dropped (first kept) by a 64-bit hash of each row (the id's pyarrow dictionary code and the other
columns' bits mixed with numpy; a hash table finds the repeats: a third of the CPU of pandas' hash_pandas_object or
pyarrow's group_by) and pyarrow.csv writes the result: what ingesting 10 files into an empty workspace has to do at
the least, with no checks. store: what an ingest that keeps our store's files has to do at the least, file by file as
ingestion.py does: the file's bytes read and SHA-256 hashed (the manifest's content hash), pyarrow.csv reads them
(column types given), a 64-bit hash per row computed on the Arrow buffers (no Python string per id: arrow_hashes),
the rows with their hash written as one Parquet batch file, de-duplicated against the earlier files' sorted hashes,
and finaldata.csv appended from the file's own lines less the repeated rows; two files in flight at once, the
de-duplication and the export in file order. With --engine duckdb, DuckDB reads each file, hashes its rows (its
hash()) and writes the batch (COPY ... TO parquet), the rest as above: DuckDB as the embedded engine of the
ingestion. No checks, no manifest or index, no recovery: a floor, not an ingest.
fit: the arrays are loaded from .npy (in memory in well under a second) and the same Pipeline our training.py
builds is fitted on them, so the figure is scikit-learn's own cost of the fit.
read: pyarrow reads the data columns of every batch file under <output_folder_path>/store/batches/ in one
multi-threaded pq.read_table and converts them to pandas: what reading the store for training costs at the least
(no index, no de-duplication filter).
Each command prints one JSON line with its timings (seconds) and row counts. Paths in the config are relative
to the config's folder; only the keys named here are read.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
STORE_THREADS = 2       # files in flight at once in the store floor (the machines have 2 cores)
MIX1, MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)  # splitmix64's finaliser
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
# WORD_MASK[k]: the low k bytes of a little-endian 64-bit word (an id's last word may be shorter than 8 bytes)
WORD_MASK = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
NULLS = ["", "NA", "N/A", "NaN", "nan", "NULL", "null", "None"]


def settings(config: Path) -> dict[str, Any]:
    """The keys the floor needs, with folders resolved against the config's folder."""
    cfg = json.loads(config.read_text(encoding="utf-8"))
    base = config.resolve().parent
    for key in ("input_folder_path", "output_folder_path"):
        cfg[key] = base / cfg[key]
    return cfg


def arrow_types(cfg: dict[str, Any]) -> dict[str, pa.DataType]:
    """Column types of the data files: id text, features float64 (empty = null), target int64."""
    return {cfg["id_column"]: pa.string(), **{f: pa.float64() for f in cfg["feature_columns"]},
            cfg["target_column"]: pa.int64()}


def read_csv(path: Path, cfg: dict[str, Any]) -> pa.Table:
    """One CSV file as an Arrow table with the configured column types (pyarrow's threads)."""
    return pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(column_types=arrow_types(cfg)))


def row_hashes(table: pa.Table, cfg: dict[str, Any]) -> np.ndarray:
    """One 64-bit hash per row: the id's dictionary code and each other column's float64 bits, mixed."""
    ids = pc.dictionary_encode(table.column(cfg["id_column"])).combine_chunks().indices
    h = ids.to_numpy().astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    for name in table.column_names:
        if name != cfg["id_column"]:
            bits = np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64).view(np.uint64)
            h = (h ^ bits) * np.uint64(0xBF58476D1CE4E5B9)  # splitmix64-style mixing, so columns do not cancel
            h ^= h >> np.uint64(31)
    return h


def ingest(cfg: dict[str, Any]) -> dict[str, Any]:
    """Read every source file, drop duplicate rows, write finaldata.csv; timings of each part."""
    t0 = time.perf_counter()
    files = sorted(cfg["input_folder_path"].glob(f"*.{cfg.get('input_file_extension', 'csv')}"))
    table = pa.concat_tables([read_csv(p, cfg) for p in files])
    t1 = time.perf_counter()
    repeated = pd.Series(row_hashes(table, cfg)).duplicated(keep="first").to_numpy()
    table = table.filter(pa.array(~repeated))
    t2 = time.perf_counter()
    cfg["output_folder_path"].mkdir(parents=True, exist_ok=True)
    pcsv.write_csv(table, cfg["output_folder_path"] / "finaldata.csv")
    t3 = time.perf_counter()
    return {"files": len(files), "rows": table.num_rows, "read_s": t1 - t0, "dedup_s": t2 - t1, "write_s": t3 - t2}


def mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place: every input bit moves every output bit."""
    x ^= x >> np.uint64(30)
    x *= MIX1
    x ^= x >> np.uint64(27)
    x *= MIX2
    x ^= x >> np.uint64(31)
    return x


def string_hashes(col: pa.ChunkedArray) -> np.ndarray:
    """One 64-bit hash per string, from its UTF-8 bytes 8 at a time (equal strings, equal hashes, in any table)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    wide = pa.types.is_large_string(arr.type)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64 if wide else np.int32)
    offsets = offsets[arr.offset:arr.offset + len(arr) + 1].astype(np.int64)
    raw = arr.buffers()[2]
    data = np.zeros((raw.size if raw is not None else 0) + 8, dtype=np.uint8)  # 8 zero bytes: a last word to read
    data[:len(data) - 8] = np.frombuffer(raw, dtype=np.uint8) if raw is not None else data[:0]
    # word_at[i]: the 8 bytes from byte i on, as one unaligned little-endian word (a view, not a copy)
    word_at = np.ndarray(shape=(len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))
    starts, lengths = offsets[:-1], np.diff(offsets)
    h = mix(lengths.astype(np.uint64) ^ GOLDEN)
    rows = np.arange(len(arr))
    for k in range(int((lengths.max(initial=0) + 7) // 8)):
        rows = rows[lengths[rows] > 8 * k]  # the strings with a k-th word
        left = np.minimum(lengths[rows] - 8 * k, 8)
        h[rows] = mix(h[rows] ^ (word_at[starts[rows] + 8 * k] & WORD_MASK[left]))
    return h


def arrow_hashes(table: pa.Table) -> np.ndarray:
    """One 64-bit hash per row of an Arrow table, whatever the order of its columns: strings by their bytes,
    numbers by their float64 bits (nulls as NaN, -0 as 0), each column's hashes mixed into the row's."""
    h = np.zeros(table.num_rows, dtype=np.uint64)
    for name in sorted(table.column_names):
        col = table.column(name)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            part = string_hashes(col)
        else:
            values = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64) + 0.0
            part = mix(values.view(np.uint64).copy())
        h = mix((h * GOLDEN) ^ part)
    return h


def kept_lines(data: bytes, keep: np.ndarray) -> list[memoryview]:
    """A file's data lines whose rows are kept: the runs between the dropped lines, as they are."""
    body = memoryview(data)[data.find(b"\n") + 1:]
    dropped = np.flatnonzero(~keep)
    if not len(dropped):
        return [body]
    ends = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == 10) + 1
    starts = np.concatenate([[0], ends[:-1]])
    cuts = np.concatenate([[0], np.column_stack([starts[dropped], ends[dropped]]).ravel(), [len(body)]])
    return [body[a:b] for a, b in zip(cuts[0::2].tolist(), cuts[1::2].tolist(), strict=True) if b > a]


def pyarrow_batch(cfg: dict[str, Any], path: Path, out: Path) -> tuple[bytes, np.ndarray]:
    """The store floor's batch by pyarrow: bytes, content hash, typed read, row hashes, Parquet file."""
    data = path.read_bytes()
    hashlib.sha256(data).hexdigest()
    table = pcsv.read_csv(pa.py_buffer(data), parse_options=pcsv.ParseOptions(quote_char=False),
                          convert_options=pcsv.ConvertOptions(column_types=arrow_types(cfg), null_values=NULLS,
                                                              strings_can_be_null=False))
    h = arrow_hashes(table)
    table = table.append_column("_hash", pa.array(h))
    # as store.batch_writer: nothing compressed, the numbers alone dictionary-encoded and with statistics
    numbers = [f.name for f in table.schema if f.name != "_hash" and not pa.types.is_string(f.type)]
    pq.write_table(table, out, use_dictionary=numbers, compression="none", write_statistics=numbers)
    return data, h


def duckdb_batch(con: Any, cfg: dict[str, Any], path: Path, out: Path) -> tuple[bytes, np.ndarray]:
    """The store floor's batch by DuckDB: bytes and content hash here, DuckDB's typed read, hash() and Parquet
    write in one COPY, the hashes read back from the batch file."""
    data = path.read_bytes()
    hashlib.sha256(data).hexdigest()
    names = list(arrow_types(cfg))
    types = ", ".join(f"'{c}': '{'VARCHAR' if c == cfg['id_column'] else 'DOUBLE'}'" for c in names)
    nulls = ", ".join(f"'{n}'" for n in NULLS)
    query = (f"SELECT *, hash({', '.join(names)}) AS _hash FROM read_csv('{path}', header = true, "
             f"auto_detect = false, columns = {{{types}}}, nullstr = [{nulls}], quote = '')")
    con.cursor().execute(f"COPY ({query}) TO '{out}' (FORMAT parquet)")
    return data, pq.read_table(out, columns=["_hash"]).column(0).to_numpy()


def store(cfg: dict[str, Any], engine: str) -> dict[str, Any]:
    """The store floor: every source file as a Parquet batch with its row hashes, de-duplicated, finaldata.csv."""
    t0 = time.perf_counter()
    files = sorted(cfg["input_folder_path"].glob(f"*.{cfg.get('input_file_extension', 'csv')}"))
    batches = cfg["output_folder_path"] / "floor-store"
    batches.mkdir(parents=True, exist_ok=True)
    if engine == "duckdb":
        import duckdb  # bench-only (requirements-bench.txt); only this engine needs it
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        make = partial(duckdb_batch, con, cfg)
    else:
        make = partial(pyarrow_batch, cfg)
    outs = [batches / f"{i:06d}.parquet" for i in range(1, len(files) + 1)]
    seen = np.empty(0, dtype=np.uint64)
    with open(cfg["output_folder_path"] / "finaldata.csv", "wb") as f, ThreadPoolExecutor(STORE_THREADS) as pool:
        f.write((",".join(arrow_types(cfg)) + "\n").encode())
        for data, h in pool.map(make, files, outs):
            distinct, first = np.unique(h, return_index=True)
            pos = np.searchsorted(seen, distinct)  # sorted lookups walk seen in order
            hit = (pos < len(seen)) & (seen[np.minimum(pos, max(len(seen) - 1, 0))] == distinct) if len(seen) \
                else np.zeros(len(distinct), dtype=bool)
            keep = np.zeros(len(h), dtype=bool)
            keep[first[~hit]] = True
            seen = np.insert(seen, pos[~hit], distinct[~hit])
            f.writelines(kept_lines(data, keep))
    return {"files": len(files), "rows": len(seen), "seconds": time.perf_counter() - t0}


def arrays(cfg: dict[str, Any], out: Path) -> dict[str, Any]:
    """Save the features and target of finaldata.csv as .npy files (NaN where a feature is missing)."""
    table = read_csv(cfg["output_folder_path"] / "finaldata.csv", cfg)
    X = np.column_stack([table[f].to_numpy(zero_copy_only=False) for f in cfg["feature_columns"]])
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "X.npy", X.astype("float64"))
    np.save(out / "y.npy", table[cfg["target_column"]].to_numpy())
    return {"rows": int(X.shape[0])}


def read(cfg: dict[str, Any]) -> dict[str, Any]:
    """Read the data columns of the store's batch files into one pandas frame; seconds of the read."""
    files = sorted(str(p) for p in (cfg["output_folder_path"] / "store" / "batches").glob("*.parquet"))
    if not files:
        raise SystemExit(f"no batch files under {cfg['output_folder_path'] / 'store' / 'batches'}")
    t0 = time.perf_counter()
    df = pq.read_table(files, columns=list(arrow_types(cfg))).to_pandas()
    return {"files": len(files), "rows": len(df), "seconds": time.perf_counter() - t0}


def fit(config: Path, folder: Path) -> dict[str, Any]:
    """Fit training.build_pipeline() on the saved arrays; seconds to load and to fit."""
    sys.path.insert(0, str(ROOT))
    from config import load_config
    from training import build_pipeline
    t0 = time.perf_counter()
    X, y = np.load(folder / "X.npy"), np.load(folder / "y.npy")
    t1 = time.perf_counter()
    model = build_pipeline(load_config(config)).fit(X, y)
    t2 = time.perf_counter()
    return {"rows": int(X.shape[0]), "load_s": t1 - t0, "fit_s": t2 - t1, "iterations": int(model[-1].n_iter_[0])}


def main() -> None:
    """Run one command and print its result as one JSON line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["ingest", "store", "arrays", "fit", "read"])
    p.add_argument("--engine", choices=["pyarrow", "duckdb"], default="pyarrow", help="store: who reads and writes")
    p.add_argument("--config", type=Path, required=True, help="the workspace's config.json")
    p.add_argument("--out", type=Path, help="arrays: folder for X.npy and y.npy")
    p.add_argument("--arrays", type=Path, help="fit: folder holding X.npy and y.npy")
    args = p.parse_args()
    if args.command == "ingest":
        result = ingest(settings(args.config))
    elif args.command == "store":
        result = store(settings(args.config), args.engine)
    elif args.command == "arrays":
        result = arrays(settings(args.config), args.out)
    elif args.command == "read":
        result = read(settings(args.config))
    else:
        result = fit(args.config, args.arrays)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
