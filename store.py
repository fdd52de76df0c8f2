"""The ingested store: immutable Parquet batches, one per ingested file version, and the index of what the dataset is.

    df = read_dataset(cfg)                      # every labelled row, de-duplicated, in batch order
    df = read_dataset(cfg, after=7)             # rows first ingested in batches after 7 (a drift check's new rows)

Under <output_folder_path>/store/: batches/000012.parquet holds one file version's rows as read (typed, with their
64-bit row hash); index-000031.npz says, per live batch, which of its rows the dataset keeps (a row is kept in the
first live batch that holds it) and which were new to the store when ingested, with the dataset's sorted hashes;
manifest.json (filerecord.py) names the live batches and the index. Ingestion writes a batch, then the index, then
the manifest (an atomic rename): a run killed before the manifest leaves files no manifest names, and the next
ingestion removes them. finaldata.csv and ingestedfiles.txt are exports, rebuilt from the store whenever they do
not match what the manifest recorded of them.
"""
from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

import artifacts
from atomicio import atomic_file, fsync_path
from datacontract import columns
from filerecord import escape_name, exports_untouched, write_manifest

HASH = "_hash"
EXPORT_ROWS = 1_000_000  # rows exported at a time
log = logging.getLogger("ingestion")


def folder(cfg: dict[str, Any]) -> Path:
    """The store's folder."""
    return artifacts.path(cfg, "store")


def batch_path(cfg: dict[str, Any], batch_id: int) -> Path:
    """Where a batch's Parquet file lives."""
    return folder(cfg) / "batches" / f"{batch_id:06d}.parquet"


def row_hashes(df: pd.DataFrame) -> np.ndarray:
    """One 64-bit hash per row of a typed frame (equal rows, equal hashes), whatever the order of its columns (a
    config may list the features in another order than the data ingested before)."""
    ordered = df[sorted(df.columns)]
    return pd.util.hash_pandas_object(ordered, index=False, categorize=False).to_numpy(dtype=np.uint64)


def write_batch(cfg: dict[str, Any], batch_id: int, frames: Iterable[pd.DataFrame]) -> tuple[Path, np.ndarray]:
    """Write typed frames (one file version, chunk by chunk) as a batch; its path and row hashes. The file is
    fsynced but named by no manifest yet: until one does, it is garbage."""
    path = batch_path(cfg, batch_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    hashes, writer = [], None
    try:
        for df in frames:
            h = row_hashes(df)
            table = pa.Table.from_pandas(df.assign(**{HASH: h}), preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
            hashes.append(h)
    except BaseException:
        if writer is not None:
            writer.close()
        path.unlink(missing_ok=True)
        raise
    if writer is None:
        raise ValueError("no rows")
    writer.close()
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    return path, np.concatenate(hashes)


def batch_hashes(cfg: dict[str, Any], batch_id: int) -> np.ndarray:
    """The row hashes of a batch, in row order."""
    return pq.read_table(batch_path(cfg, batch_id), columns=[HASH]).column(HASH).to_numpy()


def first_seen(hashes: np.ndarray, seen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which rows are neither in seen (sorted) nor repeated earlier in hashes; and seen with them added."""
    distinct, first = np.unique(hashes, return_index=True)
    # Looking up sorted hashes walks seen in order: ten times faster than random-order lookups at 10M rows.
    pos = np.searchsorted(seen, distinct)
    hit = (pos < len(seen)) & (seen[np.minimum(pos, max(len(seen) - 1, 0))] == distinct) if len(seen) \
        else np.zeros(len(distinct), dtype=bool)
    keep = np.zeros(len(hashes), dtype=bool)
    keep[first[~hit]] = True
    merged = np.insert(seen, pos[~hit], distinct[~hit]) if (~hit).any() else seen
    return keep, merged


def empty_index() -> dict[str, Any]:
    """The index of an empty store."""
    return {"hashes": np.empty(0, dtype=np.uint64), "keep": {}, "fresh": {}}


def load_index(cfg: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """The index the manifest names: sorted dataset hashes, and keep and fresh masks per live batch."""
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
        index["hashes"] = z["hashes"]
        for b in manifest["batches"]:
            for mask in ("keep", "fresh"):
                index[mask][b["id"]] = np.unpackbits(z[f"{mask}_{b['id']}"], count=b["rows"]).astype(bool)
    return index


def rebuild_keep(cfg: dict[str, Any], batches: list[dict[str, Any]], index: dict[str, Any],
                 known: dict[int, np.ndarray]) -> None:
    """Recompute which rows the dataset keeps from the live batches' hashes (known: those no batch file holds yet),
    after a version left it."""
    seen = np.empty(0, dtype=np.uint64)
    for b in batches:
        hashes = known[b["id"]] if b["id"] in known else batch_hashes(cfg, b["id"])
        index["keep"][b["id"]], seen = first_seen(hashes, seen)
    index["hashes"] = seen
    for gone in set(index["keep"]) - {b["id"] for b in batches}:
        index["keep"].pop(gone)
        index["fresh"].pop(gone, None)


def commit(cfg: dict[str, Any], manifest: dict[str, Any], index: dict[str, Any]) -> None:
    """Write the index, then the manifest that names it: the store moves to its next state at one rename."""
    manifest["commit"] += 1
    name = f"index-{manifest['commit']:06d}.npz"
    arrays = {"hashes": index["hashes"]}
    for b in manifest["batches"]:
        for mask in ("keep", "fresh"):
            arrays[f"{mask}_{b['id']}"] = np.packbits(index[mask][b["id"]])
    with atomic_file(folder(cfg) / name) as f:
        np.savez(f, **arrays)
    manifest["index"] = name
    write_manifest(cfg, manifest)
    remove_garbage(cfg, manifest)


def remove_garbage(cfg: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    """Remove store files the manifest does not name: batches and indexes of runs killed before their commit, and
    those a commit superseded. Callers hold the ingestion lock."""
    named = {manifest["index"], *(batch_path(cfg, b["id"]).name for b in manifest["batches"])}
    gone = []
    for p in [*folder(cfg).glob("index-*.npz"), *(folder(cfg) / "batches").glob("*.parquet")]:
        if p.name not in named:
            p.unlink(missing_ok=True)
            gone.append(p.name)
    return gone


def read_dataset(cfg: dict[str, Any], manifest: dict[str, Any], index: dict[str, Any] | None = None,
                 keep: list[str] | None = None, after: int = 0, labelled: bool = True) -> pd.DataFrame:
    """The dataset's rows (only the columns in keep, if given), de-duplicated, in batch order: of every live batch,
    or, after a batch id, only the rows first ingested after it (what a drift check has not seen)."""
    index = index if index is not None else load_index(cfg, manifest)
    wanted = [c for c in columns(cfg) if keep is None or c in keep]
    tables = []
    for b in manifest["batches"]:
        if b["id"] <= after or b["labelled"] != labelled:
            continue
        mask = index["keep"][b["id"]] & index["fresh"][b["id"]] if after else index["keep"][b["id"]]
        names = [c for c in wanted if labelled or c != cfg["target_column"]]
        tables.append(pq.read_table(batch_path(cfg, b["id"]), columns=names).filter(pa.array(mask)))
    if not tables:
        return pd.DataFrame({c: pd.Series(dtype=object if c == cfg["id_column"] else "float64") for c in wanted})
    return pa.concat_tables(tables).to_pandas()


def csv_rows(df: pd.DataFrame, cfg: dict[str, Any]) -> bytes:
    """The rows of a typed frame as CSV lines without a header. pyarrow's writer is 3-5x faster than to_csv and
    writes whole floats without ".0"; it cannot quote only where needed, so ids with a comma, quote or line break
    go through pandas, which does."""
    table = pa.Table.from_pandas(df, preserve_index=False)  # NaN features become nulls: empty cells
    if len(df) and pc.any(pc.match_substring_regex(table.column(cfg["id_column"]), '[",\r\n]')).as_py():
        return _whole_floats(df).to_csv(index=False, header=False, lineterminator="\n").encode("utf-8")
    out = io.BytesIO()
    pacsv.write_csv(table, out, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return out.getvalue()


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
    else:
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
    """Write the kept labelled rows of the live batches (only those in `only`, if given) as CSV lines, a slice of a
    batch at a time (a batch of 20 million rows would take gigabytes as one frame)."""
    for b in manifest["batches"]:
        if b["labelled"] and (only is None or b["id"] in only):
            keep, start = index["keep"][b["id"]], 0
            for part in pq.ParquetFile(batch_path(cfg, b["id"])).iter_batches(EXPORT_ROWS, columns=columns(cfg)):
                mask = keep[start:start + part.num_rows]
                start += part.num_rows
                f.write(csv_rows(pa.Table.from_batches([part]).filter(pa.array(mask)).to_pandas(), cfg))
