"""Row hashes by range (a partition: the top PART_BITS bits of a hash), so de-duplication holds one range at a time.

    hs = new_hashes(spill_folder)             # a file's row hashes as it is read
    hold(hs, row_hashes)                      # each piece's; past the limit they wait on disk, one file per range
    for p, h, rows in partitions(hs): ...     # range by range: the hashes and their row numbers, ascending
    keep, merged = first_seen(h, hashes_part(dataset_hashes, p))
    keep, segment = first_new(h, [hashes_part(x, p) for x in (dataset_hashes, *segments)])  # or only the new ones

store.py keeps the dataset's distinct hashes sorted (a sorted array is already grouped by range), in memory or in
raw uint64 files read one range at a time through a memory map: one base file and a few segments (each run's own
new hashes), merged into the base now and then.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np

PART_BITS = 6            # 64 hash ranges: 3.5M of a 225M-row store's hashes in memory at a time
SHIFT = np.uint64(64 - PART_BITS)
LOW_BITS = np.uint64(0xFFFF)
PAIR = np.dtype([("h", "<u8"), ("pos", "<u8")])  # a spilled row: its hash and its row number in the file


def new_hashes(spill: Path | None = None, limit: int = 0, held: list[np.ndarray] | None = None) -> dict[str, Any]:
    """A file's row hashes as they are read: held in memory, spilled by partition under spill past limit rows."""
    return {"rows": sum(len(h) for h in held or []), "held": held or [], "spill": spill, "limit": limit,
            "spilled": 0}


def hold(hs: dict[str, Any], h: np.ndarray, parts: list[tuple[Any, ...]] | None = None) -> None:
    """Add the next rows' hashes; past the limit held (and a spill folder given), move them to disk. parts: split(h),
    when the caller had it made (the first rows only: a file read in one piece)."""
    hs["held"].append(h)
    hs["rows"] += len(h)
    hs["parts"] = parts if len(hs["held"]) == 1 and not hs["spilled"] else None
    if hs["spill"] is not None and hs["rows"] - hs["spilled"] > hs["limit"]:
        _spill(hs)


def _by_partition(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The order that groups hashes by partition (row order kept within each), and where each partition starts."""
    part = (h >> SHIFT).astype(np.uint8)
    order = np.argsort(part, kind="stable")  # a radix sort on one byte: linear
    starts = np.concatenate([[0], np.cumsum(np.bincount(part, minlength=1 << PART_BITS))])
    return order, starts


def split(h: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]]:
    """A file's hashes by partition as partitions gives them, each with its distinct hashes and the first row of
    each (distinct): made ahead, on the thread that parsed the file, so the de-duplication, which must take the files
    one at a time, only looks them up."""
    order, starts = _by_partition(h)
    out = []
    for p in range(1 << PART_BITS):
        rows = order[starts[p]:starts[p + 1]]
        part = h[rows]
        out.append((part, rows, distinct(part)))
    return out


def distinct(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct hashes, sorted, and which rows are the first of their hash."""
    # A plain sort, not np.unique's: it would also find each hash's first row, which takes an argsort (twice the
    # time), when only the few hashes repeated within a file need their first row found.
    s = np.sort(hashes)
    same = s[1:] == s[:-1]
    if not same.any():
        return s, np.ones(len(hashes), dtype=bool)
    repeated = np.unique(s[1:][same])
    first = np.ones(len(hashes), dtype=bool)
    rows = np.flatnonzero(member(hashes, repeated))
    first[rows] = False
    first[rows[np.unique(hashes[rows], return_index=True)[1]]] = True  # a stable sort: the first row of each
    return s[np.concatenate([[True], ~same])], first


def member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Which values are in a sorted array of hashes."""
    found = np.zeros(len(values), dtype=bool)
    if not len(sorted_set):
        return found
    maybe = np.arange(len(values))
    if len(sorted_set) * 16 < len(values):
        # Binary searches of values in random order mispredict a branch a step (35 ns a value): a table of the
        # set's low 16 bits leaves only the values that may be in it to look up.
        table = np.zeros(1 << 16, dtype=bool)
        table[(sorted_set & LOW_BITS).astype(np.intp)] = True
        maybe = np.flatnonzero(table[(values & LOW_BITS).astype(np.intp)])
    pos = np.searchsorted(sorted_set, values[maybe])
    found[maybe] = sorted_set[np.minimum(pos, len(sorted_set) - 1)] == values[maybe]
    return found


def _spill(hs: dict[str, Any]) -> None:
    """Append the held hashes, with their row numbers, to one file per partition."""
    hs["parts"] = None
    h = np.concatenate(hs["held"])
    order, starts = _by_partition(h)
    pairs = np.empty(len(h), dtype=PAIR)
    pairs["h"], pairs["pos"] = h[order], order + hs["spilled"]
    hs["spill"].mkdir(parents=True, exist_ok=True)
    for p in range(1 << PART_BITS):
        if starts[p + 1] > starts[p]:
            with open(hs["spill"] / f"{p:03d}", "ab") as f:
                f.write(pairs[starts[p]:starts[p + 1]].tobytes())
    hs["spilled"], hs["held"] = hs["rows"], []


def partitions(hs: dict[str, Any]
               ) -> Iterator[tuple[int, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]]:
    """A file's hashes partition by partition: (partition, hashes, their row numbers ascending, and their
    distinct() when split made them)."""
    if hs.get("parts") is not None:
        for p, (h, rows, made) in enumerate(hs["parts"]):
            yield p, h, rows, made
        return
    if not hs["spilled"]:
        h = np.concatenate(hs["held"]) if hs["held"] else np.empty(0, dtype=np.uint64)
        order, starts = _by_partition(h)
        for p in range(1 << PART_BITS):
            rows = order[starts[p]:starts[p + 1]]
            yield p, h[rows], rows, None
        return
    if hs["held"]:
        _spill(hs)
    for p in range(1 << PART_BITS):
        path = hs["spill"] / f"{p:03d}"
        pairs = np.fromfile(path, dtype=PAIR) if path.exists() else np.empty(0, dtype=PAIR)
        yield p, pairs["h"], pairs["pos"], None
    shutil.rmtree(hs["spill"], ignore_errors=True)


def all_hashes(hs: dict[str, Any]) -> np.ndarray:
    """A file's row hashes in row order, in memory (a correction's bookkeeping and the preview need them whole)."""
    out = np.empty(hs["rows"], dtype=np.uint64)
    for _, h, pos, _ in partitions(hs):
        out[pos] = h
    return out


def first_seen(hashes: np.ndarray, seen: np.ndarray,
               made: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Which rows are neither in seen (sorted) nor repeated earlier in hashes; and seen with them added (made: the
    hashes' distinct(), if made ahead: split)."""
    keep, unique, pos, hit = _first_new(hashes, [seen], made)
    merged = np.insert(seen, pos[0][~hit], unique[~hit]) if (~hit).any() else seen
    return keep, merged


def first_new(hashes: np.ndarray, seen: list[np.ndarray],
              made: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Which rows are in none of the sorted arrays in seen nor repeated earlier in hashes; and their distinct
    hashes, sorted (a segment of the dataset's hashes: hashes_part reads it like the rest)."""
    keep, unique, _, hit = _first_new(hashes, seen, made)
    return keep, unique[~hit]


def _first_new(hashes: np.ndarray, seen: list[np.ndarray], made: tuple[np.ndarray, np.ndarray] | None = None
               ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
    """first_seen's and first_new's lookup: the keep mask, the distinct hashes, where each falls in every seen
    array, and whether any holds it."""
    unique, first = made if made is not None else distinct(hashes)
    hit, positions = np.zeros(len(unique), dtype=bool), []
    for s in seen:
        # Looking up sorted hashes walks s in order: ten times faster than random-order lookups at 10M rows.
        pos = np.searchsorted(s, unique)
        positions.append(pos)
        if len(s):
            hit |= (pos < len(s)) & (s[np.minimum(pos, len(s) - 1)] == unique)
    keep = first.copy()
    if hit.any():
        keep &= ~member(hashes, unique[hit])
    return keep, unique, positions, hit


def hashes_part(source: np.ndarray | Path, p: int) -> np.ndarray:
    """The dataset's sorted hashes in partition p, from an array or a hashes file (mapped: only p's pages read)."""
    if isinstance(source, Path):
        if source.stat().st_size == 0:
            return np.empty(0, dtype=np.uint64)
        source = np.memmap(source, dtype="<u8", mode="r")
    bounds = np.array([p, p + 1], dtype=np.uint64) << SHIFT if p + 1 < 1 << PART_BITS else None
    lo, hi = np.searchsorted(source, bounds) if bounds is not None else \
        (np.searchsorted(source, np.uint64(p) << SHIFT), len(source))
    # A memory map's part is copied (the map is released with this function's frame); an array's is a view.
    return np.array(source[lo:hi], dtype=np.uint64) if isinstance(source, np.memmap) else source[lo:hi]
