"""The data contract (SPEC section 4): which files are data files, and how one is read and checked.

    df = read_data_file(path, cfg)            # typed DataFrame [id, *features, target] or DataError
    df = parse_csv(raw_bytes, cfg, "x.csv")   # the same from bytes already in memory

A file either passes whole or is refused with a DataError whose message is one line naming the file, and the
row and column where one applies. Missing feature values are allowed; everything else must be as the config says.
"""
from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# Cells that mean "no value" in a feature column (the model's imputer fills them).
MISSING_TOKENS = ["", "NA", "N/A", "NaN", "nan", "NULL", "null", "None"]
SNIFF_BYTES = 8192


class DataError(ValueError):
    """A data file that breaks the contract; the message is one line for a person."""


def columns(cfg: dict[str, Any]) -> list[str]:
    """The stored column order: id, features, target."""
    return [cfg["id_column"], *cfg["feature_columns"], cfg["target_column"]]


def read_data_file(path: Path, cfg: dict[str, Any], require_target: bool = True) -> pd.DataFrame:
    """Read and check one data file; DataError names the file and what is wrong."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path.name}: cannot read file ({e.strerror or e})") from None
    return parse_csv(data, cfg, path.name, require_target)


def parse_csv(data: bytes, cfg: dict[str, Any], source: str, require_target: bool = True) -> pd.DataFrame:
    """Check raw bytes against the contract and return the typed frame [id, *features, target]."""
    text = _decode(data, source)
    header = _header(text, source)
    _check_header(header, cfg, source, require_target)
    wanted = [c for c in columns(cfg) if c in header]
    # All columns are read (no usecols) with index_col=False: a row with more fields than the header is then an
    # error, not silently cut short or shifted (a "2,000" written with a thousands separator would move values).
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False,
                              index_col=False, skipinitialspace=True)
    except pd.errors.ParserWarning:
        raise DataError(f"{source}: not a well-formed CSV file (the first data row has more fields than "
                        f"the header)") from None
    except (pd.errors.ParserError, ValueError) as e:
        raise DataError(f"{source}: not a well-formed CSV file ({_first_line(e)})") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    raw = raw.loc[:, [c in wanted for c in raw.columns]]
    if raw.empty:
        raise DataError(f"{source}: no data rows (header only)")
    return _typed(raw, cfg, source, require_target)


def typed_frame(raw: pd.DataFrame, cfg: dict[str, Any], source: str, require_target: bool = True) -> pd.DataFrame:
    """Check a frame of cells from elsewhere (JSON, say) against the contract, exactly like a parsed file."""
    if len(raw) == 0:
        raise DataError(f"{source}: no rows")
    header = [str(c).strip() for c in raw.columns]
    _check_header(header, cfg, source, require_target)
    raw = raw.set_axis(header, axis=1)
    cells = pd.DataFrame({c: raw[c].map(_cell).astype(str) for c in columns(cfg) if c in header})
    return _typed(cells, cfg, source, require_target)


def _cell(v: Any) -> str:
    """One JSON value as the text a CSV cell would hold (null = empty, true/false stay words)."""
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def _decode(data: bytes, source: str) -> str:
    """UTF-8 text of a file, or a DataError that says what the bytes look like instead."""
    if not data.strip():
        raise DataError(f"{source}: empty file ({len(data)} bytes)")
    head = data[:SNIFF_BYTES]
    if head.startswith(b"\x1f\x8b"):
        raise DataError(f"{source}: gzip-compressed data, expected a plain-text CSV file")
    if head.startswith(b"PK\x03\x04"):
        raise DataError(f"{source}: a zip archive (an .xlsx workbook?), expected a plain-text CSV file")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{source}: UTF-16 text, expected UTF-8")
    if b"\x00" in head:
        raise DataError(f"{source}: binary data (NUL bytes), expected a plain-text CSV file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DataError(f"{source}: not UTF-8 text (invalid byte 0x{data[e.start]:02x} on line {line})") from None


def _header(text: str, source: str) -> list[str]:
    """The header row's column names, stripped."""
    first = next(csv.reader(io.StringIO(text[:1_000_000])), [])
    names = [c.strip() for c in first]
    if not any(names):
        raise DataError(f"{source}: no header row")
    return names


def _check_header(header: list[str], cfg: dict[str, Any], source: str, require_target: bool) -> None:
    """Every required column present exactly once; a wrong delimiter gets its own hint."""
    needed = columns(cfg) if require_target else list(cfg["feature_columns"])
    for name in set(header):
        if name and header.count(name) > 1 and name in columns(cfg):
            raise DataError(f"{source}: column '{name}' appears {header.count(name)} times in the header")
    missing = [c for c in needed if c not in header]
    if not missing:
        return
    if len(header) == 1:
        for sep, label in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
            if sep in header[0]:
                raise DataError(f"{source}: columns are {label}-separated, expected comma-separated "
                                f"columns {', '.join(needed)}")
    raise DataError(f"{source}: missing column{'s' if len(missing) > 1 else ''} "
                    f"{', '.join(repr(m) for m in missing)} (expected columns {', '.join(needed)})")


def _typed(raw: pd.DataFrame, cfg: dict[str, Any], source: str, require_target: bool) -> pd.DataFrame:
    """Convert checked text columns to the stored types: id text, features float64, target int64."""
    out = pd.DataFrame(index=raw.index)
    id_col, target = cfg["id_column"], cfg["target_column"]
    if id_col in raw:
        out[id_col] = raw[id_col].str.strip().astype(object)
    for col in cfg["feature_columns"]:
        out[col] = _numbers(raw[col], col, source)
    if target in raw:
        out[target] = _target(raw[target], target, source)
    elif require_target:
        raise DataError(f"{source}: missing column '{target}'")
    return out.reset_index(drop=True)


def _numbers(text: pd.Series, col: str, source: str) -> pd.Series:
    """A feature column as float64: missing tokens become NaN; anything else must be a finite number >= 0."""
    cells = text.str.strip()
    cells = cells.where(~cells.isin(MISSING_TOKENS), None)
    values = pd.to_numeric(cells, errors="coerce").astype("float64")
    bad = cells.notna() & values.isna()
    if bad.any():
        _refuse(source, col, bad, cells, "a number")
    bad = np.isinf(values)
    if bad.any():
        _refuse(source, col, bad, cells, "a finite number")
    bad = values < 0
    if bad.any():
        _refuse(source, col, bad, cells, "a non-negative number")
    return values


def _target(text: pd.Series, col: str, source: str) -> pd.Series:
    """The target column as int64 0/1; anything else (including a missing value) refuses the file."""
    cells = text.str.strip()
    values = pd.to_numeric(cells, errors="coerce")
    bad = ~values.isin([0, 1])
    if bad.any():
        _refuse(source, col, bad, cells, "0 or 1")
    return values.astype("int64")


def _refuse(source: str, col: str, bad: pd.Series, cells: pd.Series, expected: str) -> None:
    """Raise the DataError for the first bad cell of a column, with how many more there are."""
    first = int(np.flatnonzero(bad.to_numpy())[0])
    count = int(bad.sum())
    value = cells.iloc[first]
    more = f" ({count - 1} more bad rows)" if count > 1 else ""
    got = "an empty cell" if value is None or value == "" else repr(str(value)[:40])
    raise DataError(f"{source}: row {first + 1}, column '{col}': expected {expected}, got {got}{more}")


def _first_line(e: Exception) -> str:
    """The first line of an exception message, trimmed."""
    return str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
