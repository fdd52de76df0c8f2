"""The library floor that bench/run.py measures ours against: the same work done directly with the libraries.

    python bench/floor.py ingest --config WS/config.json     # source CSVs -> de-duplicated finaldata.csv
    python bench/floor.py arrays --config WS/config.json --out DIR   # finaldata.csv -> DIR/X.npy, DIR/y.npy
    python bench/floor.py fit --config WS/config.json --arrays DIR   # training.build_pipeline() on those arrays
    python bench/floor.py read --config WS/config.json   # the store's Parquet batch files -> one pandas frame

ingest: pyarrow.csv reads each file (multi-threaded, column types given), the tables are concatenated, exact
duplicate rows dropped (first kept) by a 64-bit hash of each row (the id's pyarrow dictionary code and the other
columns' bits mixed with numpy; a hash table finds the repeats: a third of the CPU of pandas' hash_pandas_object or
pyarrow's group_by) and pyarrow.csv writes the result: what ingesting 10 files into an empty workspace has to do at
the least, with no checks. fit: the arrays are loaded from .npy (in memory in well under a second) and the
same Pipeline our training.py builds is fitted on them, so the figure is scikit-learn's own cost of the fit.
read: pyarrow reads the data columns of every batch file under <output_folder_path>/store/batches/ in one
multi-threaded pq.read_table and converts them to pandas: what reading the store for training costs at the least
(no index, no de-duplication filter).
Each command prints one JSON line with its timings (seconds) and row counts. Paths in the config are relative
to the config's folder; only the keys named here are read.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]


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
    p.add_argument("command", choices=["ingest", "arrays", "fit", "read"])
    p.add_argument("--config", type=Path, required=True, help="the workspace's config.json")
    p.add_argument("--out", type=Path, help="arrays: folder for X.npy and y.npy")
    p.add_argument("--arrays", type=Path, help="fit: folder holding X.npy and y.npy")
    args = p.parse_args()
    if args.command == "ingest":
        result = ingest(settings(args.config))
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
