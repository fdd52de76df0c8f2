"""The data contract: which files are data files, and how one is read and checked.

    df = read_data_file(path, cfg)            # typed DataFrame [id, *features, target] or DataError
    df = parse_csv(raw_bytes, cfg, "x.csv")   # the same from bytes already in memory

A file either passes whole or is refused with a DataError whose message is one line naming the file, and the
row and column where one applies. Missing feature values are allowed; everything else must be as the config says.

Two readers, one verdict: the common case (plain comma-separated text, no quotes, every value well-formed) is read
by pyarrow with explicit types, multi-threaded; anything else, and anything that reader cannot vouch for, goes
through the checked reader (every cell as text, then converted and checked), which alone words the refusals.
The fast reader only ever answers when its frame is the one the checked reader would return.
"""
from __future__ import annotations

import csv
import io
import itertools
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

# Cells that mean "no value" in a feature column (the model's imputer fills them).
MISSING_TOKENS = ["", "NA", "N/A", "NaN", "nan", "NULL", "null", "None"]
SNIFF_BYTES = 8192
WIDE_HEADER = 1000  # columns; wider headers are measured row by row instead of read whole (see checked_parse)
BOM = b"\xef\xbb\xbf"
WELL_FORMED = "expected one comma-separated value per column and every quote closed"
LINE_END = re.compile(r"\r\n|\n|\r")
# The characters Python's str.strip() removes from ASCII text (the checked reader strips every cell with it).
ASCII_SPACE = np.zeros(256, dtype=bool)
ASCII_SPACE[[*range(0x09, 0x0e), *range(0x1c, 0x21)]] = True


class DataError(ValueError):
    """A data file that breaks the contract; the message is one line for a person (row: the data row, if one)."""

    def __init__(self, message: str, row: int | None = None) -> None:
        super().__init__(message)
        self.row = row


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


def parse_csv(data: bytes, cfg: dict[str, Any], source: str, require_target: bool = True,
              keep: list[str] | None = None) -> pd.DataFrame:
    """Check raw bytes against the contract and return the typed frame [id, *features, target] (only the columns
    in keep, if given: a reader that needs no client ids need not build a million Python strings)."""
    fast = fast_parse(data, cfg, require_target, keep)
    if fast is not None:
        return fast
    df = checked_parse(data, cfg, source, require_target)
    return df if keep is None else df[[c for c in df.columns if c in keep]]


def checked_parse(data: bytes, cfg: dict[str, Any], source: str, require_target: bool = True) -> pd.DataFrame:
    """parse_csv by the checked reader alone: every cell read as text, then converted and checked."""
    text = _decode(data, source)
    header = header_names(text, source)
    _check_header(header, cfg, source, require_target)
    wanted = [c for c in columns(cfg) if c in header]
    # Every row must have as many fields as the header: pandas would pad a short row with empty cells ("sr2,1"
    # stored as "sr2,,,,1") and shift values on a long one (a "2,000" written with a thousands separator). Once
    # the rows are measured, a very wide header reads only our columns (pandas would spend seconds building every
    # column as text).
    measured = _check_widths(text, header, source)
    usecols = [i for i, name in enumerate(header) if name in wanted] if measured and len(header) > WIDE_HEADER \
        else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False,
                              index_col=False, skipinitialspace=True, usecols=usecols)
    except pd.errors.ParserWarning:
        raise DataError(f"{source}: not a well-formed CSV file (the first data row has more fields than the "
                        f"header); {WELL_FORMED}") from None
    except (pd.errors.ParserError, ValueError) as e:
        raise DataError(f"{source}: not a well-formed CSV file ({_first_line(e)}); {WELL_FORMED}") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    raw = raw.loc[:, [c in wanted for c in raw.columns]]
    if raw.empty:
        raise DataError(f"{source}: no data rows (header only), expected at least one row")
    try:
        return _typed(raw, cfg, source, require_target)
    except DataError as e:
        if e.row == len(raw) and not text.endswith(("\n", "\r")):  # a writer caught in the middle of a row
            raise DataError(f"{e} (the last line has no line end: is the file still being written?)") from None
        raise


def _check_widths(text: str, header: list[str], source: str) -> bool:
    """DataError naming the first data row whose field count is not the header's; False when the rows could not be
    measured here (a field beyond the csv module's size limit: pandas, which has none, then decides)."""
    rows = (r for r in csv.reader(_text_lines(text), skipinitialspace=True) if r and (len(r) > 1 or r[0].strip()))
    try:
        next(rows, None)  # the header
        for i, r in enumerate(rows, 1):
            if len(r) != len(header):
                cut = next(rows, None) is None and not text.endswith(("\n", "\r"))  # a writer caught mid-row
                hint = " (the last line has no line end: is the file still being written?)" if cut else ""
                raise DataError(f"{source}: row {i} has {len(r)} field{'s' if len(r) != 1 else ''}, the header "
                                f"{len(header)}; {WELL_FORMED}{hint}", i)
    except csv.Error:
        return False
    return True


def fast_parse(data: bytes, cfg: dict[str, Any], require_target: bool = True,
               keep: list[str] | None = None) -> pd.DataFrame | None:
    """The typed frame by one multi-threaded pyarrow read, or None whenever the checked reader must decide."""
    data = data[len(BOM):] if data.startswith(BOM) else data
    ascii_only = data.isascii()
    # Quotes (skipinitialspace changes how they parse), NUL bytes and bad UTF-8 are where the two readers could
    # disagree; they are rare in real exports, so those files simply take the checked path.
    if b'"' in data or b"\x00" in data or not ascii_only and not _is_utf8(data):
        return None
    end = data.find(b"\n")
    line = data[:end if end >= 0 else len(data)].removesuffix(b"\r")
    header = [c.strip() for c in line.decode("utf-8").split(",")]
    if b"\r" in line or len(header) < 2 or not _header_ok(header, cfg, require_target):
        return None
    wanted = [c for c in columns(cfg) if c in header and (keep is None or c in keep)]
    at = {c: f"c{header.index(c)}" for c in wanted}
    types = {at[c]: pa.string() if c == cfg["id_column"] else pa.float64() for c in wanted}
    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(column_names=[f"c{i}" for i in range(len(header))], skip_rows=1,
                                           block_size=max(1 << 20, 4 * len(line))),
            parse_options=pacsv.ParseOptions(quote_char=False),
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=list(at.values()),
                                                 null_values=MISSING_TOKENS, strings_can_be_null=False))
    except (pa.ArrowException, ValueError):
        return None
    if table.num_rows == 0 or table.num_rows != _lines(data) - 1:  # blank lines or lone CRs: the checked reader counts
        return None
    out: dict[str, Any] = {}
    for c in wanted:
        out[c] = _fast_column(table.column(at[c]), c, cfg, ascii_only)
        if out[c] is None:
            return None
    return pd.DataFrame(out, copy=False)


def _fast_column(col: pa.ChunkedArray, name: str, cfg: dict[str, Any], ascii_only: bool) -> Any:
    """One column of a pyarrow read as the checked reader would type it, or None if that reader might refuse it."""
    if name == cfg["id_column"]:
        ids = col.to_pandas()  # pandas' str dtype, on pyarrow's own buffers: no Python string per id
        padded = not ascii_only or any(_padded(chunk) for chunk in col.chunks)
        return ids.str.strip() if padded else ids
    values = col.to_numpy(zero_copy_only=False)
    if name == cfg["target_column"]:
        return values.astype("int64") if col.null_count == 0 and np.isin(values, (0.0, 1.0)).all() else None
    missing = np.isnan(values)
    # A NaN that is not a missing token ("NAN", "-nan"), an infinity, a negative or an implausibly large number is
    # refused by the checked reader, which says which row.
    plausible = (values >= 0) & (values <= cfg["feature_max"])
    if np.count_nonzero(missing) != col.null_count or not (missing | plausible).all():
        return None
    return values + 0.0  # -0 becomes 0, as the checked reader has it


def _padded(ids: pa.StringArray) -> bool:
    """Whether an ASCII string starts or ends with whitespace: a look at the first and last bytes of each (a regex
    took a third as long as the read)."""
    buffers = ids.buffers()
    if not len(ids) or buffers[2] is None:
        return False
    offsets = np.frombuffer(buffers[1], dtype=np.int32)[ids.offset:ids.offset + len(ids) + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8)
    starts, ends = offsets[:-1], offsets[1:]
    filled = ends > starts
    return bool(ASCII_SPACE[data[starts[filled]]].any() or ASCII_SPACE[data[ends[filled] - 1]].any())


def _header_ok(header: list[str], cfg: dict[str, Any], require_target: bool) -> bool:
    """True when a header has every required column exactly once."""
    try:
        _check_header(header, cfg, "", require_target)
    except DataError:
        return False
    return True


def _lines(data: bytes) -> int:
    """Lines of text up to the last one that is not empty."""
    end = len(data)
    while end and data[end - 1] in b"\r\n":
        end -= 1
    # numpy counts a byte four times faster than bytes.count (10 ms a million rows)
    return int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8, count=end) == ord("\n"))) + 1 if end else 0


def _is_utf8(data: bytes) -> bool:
    """True when bytes are valid UTF-8."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


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
        raise DataError(f"{source}: empty file ({len(data)} bytes), expected a header row and data rows")
    head = data[:SNIFF_BYTES]
    if head.startswith(b"\x1f\x8b"):
        raise DataError(f"{source}: gzip-compressed data, expected a plain-text CSV file")
    if head.startswith(b"PK\x03\x04"):
        raise DataError(f"{source}: a zip archive (an .xlsx workbook?), expected a plain-text CSV file")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{source}: UTF-16 text, expected UTF-8")
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise DataError(f"{source}: an OLE2 document (an old .xls workbook?), expected a plain-text CSV file")
    odd, even = head[1::2].count(0), head[::2].count(0)
    if max(odd, even) > len(head) // 4 and min(odd, even) == 0:  # every other byte NUL: UTF-16 without a BOM
        raise DataError(f"{source}: UTF-16 text without a byte-order mark, expected UTF-8")
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise DataError(f"{source}: binary data (a NUL byte on line {line}), expected a plain-text CSV file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DataError(f"{source}: not UTF-8 text (invalid byte 0x{data[e.start]:02x} on line {line}), expected "
                        f"UTF-8") from None


def header_names(text: str, source: str) -> list[str]:
    """The header row's column names, stripped (blank lines before it are skipped, as pandas skips them)."""
    lines = _text_lines(text)
    row: list[str] = []
    for line in lines:
        if not line.strip():
            continue
        if '"' not in line:  # plain names: no field-size limit, so a header of any width reads
            row = line.rstrip("\r\n").split(",")
            break
        try:  # quoted names may hold commas or line breaks, and quote the way pandas will read them
            row = next(csv.reader(itertools.chain([line], lines), skipinitialspace=True))
        except csv.Error as e:
            raise DataError(f"{source}: not a well-formed CSV header ({_first_line(e)}), expected column "
                            f"names") from None
        break
    names = [c.strip() for c in row]
    if not any(names):
        raise DataError(f"{source}: no header row, expected column names on the first line")
    return names


def _text_lines(text: str) -> Iterator[str]:
    """The lines of a text one at a time, ending in \\n, \\r\\n or a lone \\r (old Mac files), without copying it."""
    start = 0
    for m in LINE_END.finditer(text):
        yield text[start:m.end()]
        start = m.end()
    if start < len(text):
        yield text[start:]


def row_end(data: bytes) -> int:
    """Where the last complete row of a piece of CSV ends (after a line end outside quotes); 0 if none does."""
    end = data.rfind(b"\n") + 1
    quotes = data.count(b'"', 0, end)
    while end and quotes % 2:  # inside a quoted field: that line end belongs to a value
        before = data.rfind(b"\n", 0, end - 1) + 1
        quotes -= data.count(b'"', before, end)
        end = before
    return end


def _check_header(header: list[str], cfg: dict[str, Any], source: str, require_target: bool) -> None:
    """Every required column present exactly once; a wrong delimiter gets its own hint."""
    needed = columns(cfg) if require_target else list(cfg["feature_columns"])
    counts = Counter(header)  # not header.count() per name: a header may have 100,000 columns
    for name in columns(cfg):
        if counts[name] > 1:
            raise DataError(f"{source}: column '{name}' appears {counts[name]} times in the header, expected once")
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
        out[id_col] = raw[id_col].str.strip().astype("str")
    for col in cfg["feature_columns"]:
        out[col] = _numbers(raw[col], col, source, cfg["feature_max"])
    if target in raw:
        out[target] = _target(raw[target], target, source)
    elif require_target:
        raise DataError(f"{source}: missing column '{target}'")
    return out.reset_index(drop=True)


def _numbers(text: pd.Series, col: str, source: str, most: float) -> pd.Series:
    """A feature column as float64: missing tokens become NaN; anything else must be a number from 0 to most."""
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
    # 1e308 is finite, but the scaler squares it: one such row would leave every later model worthless.
    bad = values > most
    if bad.any():
        _refuse(source, col, bad, cells, f"a number at most {most:g} (config feature_max)")
    return values + 0.0  # "-0" and "0" are the same number (and written the same in finaldata.csv)


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
    raise DataError(f"{source}: row {first + 1}, column '{col}': expected {expected}, got {got}{more}", first + 1)


def _first_line(e: Exception) -> str:
    """The first line of an exception message, trimmed."""
    return str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
