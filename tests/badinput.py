"""A bad-input corpus made by code: each kind of odd or bad data file ingestion must survive, with the outcome a
user expects.

    python tests/badinput.py OUTDIR          # write every kind into OUTDIR (e.g. a soak test's input folder)
    from badinput import KINDS, write_corpus
    write_corpus(folder)                      # the same from Python; returns {kind: file name}

Outcomes:
    accepted  every row arrives                        rows = (rows read, rows added)
    dropped   accepted; duplicate rows dropped, counted  rows = (rows read, rows added)
    rejected  not ingested: recorded among the store manifest's rejected files with a one-line reason (reason: a
              regular expression), tried again only once the file changes
    retried   not ingested and not recorded: reported with its reason, tried again every run
    ignored   not a data file (another extension, hidden, not a regular file): never read, never listed
A kind's rows use client ids that start with the kind's name, so a test can tell whose rows arrived. "rows" are
the typed rows (id, features..., target; None = missing) a user expects to find in finaldata.csv.
Two kinds need more than a file: "unreadable" is only unreadable to a user that is not root, and a file growing
while ingestion reads it is made by grow_file() (a writer thread), not by write_corpus().
"""
from __future__ import annotations

import csv
import gzip
import io
import os
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

from config import defaults

_CFG = defaults()
ID, FEATURES, TARGET = _CFG["id_column"], list(_CFG["feature_columns"]), _CFG["target_column"]
COLUMNS = [ID, *FEATURES, TARGET]
HEADER = ",".join(COLUMNS)
# already ingested by the time the corpus arrives (the baseline of the tests)
SHIPPED = Path(__file__).resolve().parents[1] / "sourcedata"

Row = tuple[Any, ...]


def rows(kind: str, n: int = 3) -> list[Row]:
    """n distinct rows of a kind, the second and third each with one missing feature value."""
    return [one_row(kind, i) for i in range(n)]


def one_row(kind: str, i: int) -> Row:
    """Row i of a kind: client id "<kind>-<letter>", features, target."""
    values: list[Any] = [10 + i, 1200 + 100 * i, 40 + i]
    if i in (1, 2):
        values[i - 1] = None
    return (f"{kind}-{'abcdefghijklmnopqrstuvwxyz'[i % 26]}{i // 26 or ''}", *values, i % 2)


def cell(v: Any) -> str:
    """A value as a CSV cell (None = empty)."""
    return "" if v is None else str(v)


def text(table: list[Row], header: str = HEADER, sep: str = ",", end: str = "\n") -> str:
    """A header and rows as CSV text, unquoted."""
    return "".join(line + end for line in [header, *(sep.join(cell(v) for v in r) for r in table)])


def quoted(table: list[Row], quoting: int = csv.QUOTE_MINIMAL) -> str:
    """A header and rows as CSV text, quoted the way the csv module does it."""
    buf = io.StringIO()
    w = csv.writer(buf, quoting=quoting, lineterminator="\n")
    w.writerow(COLUMNS)
    w.writerows([[cell(v) for v in r] for r in table])
    return buf.getvalue()


def shipped_lines(name: str) -> list[str]:
    """The data lines of a shipped (already ingested) source file."""
    return (SHIPPED / name).read_text(encoding="utf-8").splitlines()[1:]


def xlsx_bytes() -> bytes:
    """A minimal .xlsx workbook (a zip of XML parts), as a spreadsheet saved under a .csv name would be."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
                                          'package/2006/content-types"/>')
        z.writestr("xl/workbook.xml", "<workbook/>")
        z.writestr("xl/worksheets/sheet1.xml", "<worksheet><sheetData/></worksheet>")
    return buf.getvalue()


# ---------------------------------------------------------------- how kinds are written

Maker = Callable[[Path, Path, str, "dict[str, Any]"], None]


def write_bytes(folder: Path, outside: Path, name: str, k: dict[str, Any]) -> None:
    """The usual kind: its bytes in a file of its name."""
    (folder / name).write_bytes(k["data"])


def write_unreadable(folder: Path, outside: Path, name: str, k: dict[str, Any]) -> None:
    """A good file nobody but root may read."""
    write_bytes(folder, outside, name, k)
    os.chmod(folder / name, 0)


def write_directory(folder: Path, outside: Path, name: str, k: dict[str, Any]) -> None:
    """A folder with a data file's name (and a good data file inside it, which is not in the input folder)."""
    (folder / name).mkdir()
    (folder / name / "inside.csv").write_bytes(k["data"])


def write_fifo(folder: Path, outside: Path, name: str, k: dict[str, Any]) -> None:
    """A named pipe with a data file's name: opening it for reading would wait for a writer forever."""
    os.mkfifo(folder / name)


def write_link_inside(folder: Path, outside: Path, name: str, k: dict[str, Any]) -> None:
    """A good file and a second name for it: a symbolic link beside it."""
    (folder / "symlink-base.csv").write_bytes(k["data"])  # sorts before the link: ingested first, so the link adds 0
    (folder / name).symlink_to("symlink-base.csv")


def write_link_outside(folder: Path, outside: Path, name: str, k: dict[str, Any]) -> None:
    """A symbolic link to a good data file outside the input folder."""
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "outside-target.csv").write_bytes(k["data"])
    (folder / name).symlink_to(outside / "outside-target.csv")


def write_link_dangling(folder: Path, outside: Path, name: str, k: dict[str, Any]) -> None:
    """A symbolic link to nothing."""
    (folder / name).symlink_to(folder / "no-such-file.csv")


def write_link_directory(folder: Path, outside: Path, name: str, k: dict[str, Any]) -> None:
    """A symbolic link, with a data file's name, to a folder."""
    (folder / "linked-folder").mkdir(exist_ok=True)  # an empty folder: nothing to ingest through the link
    (folder / name).symlink_to(folder / "linked-folder", target_is_directory=True)


def kind(name: str, outcome: str, data: bytes | str = b"", file: str | None = None, make: Maker = write_bytes,
         rows: tuple[int, int] | None = None, expect: list[Row] | None = None, reason: str = "") -> dict[str, Any]:
    """One entry of the corpus."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return {"kind": name, "outcome": outcome, "data": raw, "file": file or f"{name}.csv", "make": make,
            "rows": rows, "expect": expect or [], "reason": reason}


def accepted(name: str, data: bytes | str, table: list[Row], **kw: Any) -> dict[str, Any]:
    """A kind whose rows all arrive."""
    return kind(name, "accepted", data, rows=(len(table), len(table)), expect=table, **kw)


def rejected(name: str, data: bytes | str, reason: str, **kw: Any) -> dict[str, Any]:
    """A kind refused with a reason matching a regular expression."""
    return kind(name, "rejected", data, reason=reason, **kw)


def ignored(name: str, file: str, data: bytes | str = b"", **kw: Any) -> dict[str, Any]:
    """A kind that is not a data file."""
    return kind(name, "ignored", data, file=file, **kw)


ROW2 = r"row 2\b"  # the bad value sits in the second data row


def build() -> list[dict[str, Any]]:
    """Every kind of the corpus."""
    r = rows
    pads = 100_000 - len(COLUMNS)  # a header of 100,000 columns, ours spread among them

    def spread(values: list[str], fill: list[str]) -> str:
        return ",".join([values[0], *fill[:50_000], *values[1:-1], *fill[50_000:], values[-1]])
    wide_header = spread(COLUMNS, [f"pad{i}" for i in range(pads)])
    dup_fmt = [("dup-formatting-a", 10, 1200, 40, 0)]
    large = [("large-numbers-a", 1e15, 999999999999999.0, 9007199254740.0, 0)]  # feature_max (1e15) and just under
    utf8 = [("utf8-text-soci\u00e9t\u00e9", 1, 2, 3, 0), ("utf8-text-M\u00fcller GmbH", 4, 5, 6, 1),
            ("utf8-text-\u5317\u4eac", 7, 8, 9, 0)]
    old = shipped_lines("dataset3.csv")[:5]
    fresh = r("dup-old", 2)
    copied = (SHIPPED / "dataset4.csv").read_bytes()
    long_id = [("long-line-" + "x" * 1_000_000, 1, 2, 3, 0)]
    kinds = [
        # ---- accepted: odd but within the contract
        accepted("bom", b"\xef\xbb\xbf" + text(r("bom")).encode(), r("bom")),
        accepted("crlf", text(r("crlf")).replace("\n", "\r\n"), r("crlf")),
        accepted("cr-only", text(r("cr-only")).replace("\n", "\r"), r("cr-only")),  # classic Mac line ends
        accepted("no-final-newline", text(r("no-final-newline")).rstrip("\n"), r("no-final-newline")),
        accepted("blank-lines", text(r("blank-lines")).replace("\n", "\n\n   \n") + "\n\n", r("blank-lines")),
        accepted("blank-before-header", "\n\n" + text(r("blank-before-header")), r("blank-before-header")),
        accepted("quoted-comma", quoted([("quoted-comma-a, Inc.", 1, 2, 3, 0), *r("quoted-comma")[1:]]),
                 [("quoted-comma-a, Inc.", 1, 2, 3, 0), *r("quoted-comma")[1:]]),
        accepted("quoted-newline", quoted([("quoted-newline-a\nline two", 1, 2, 3, 1)]),
                 [("quoted-newline-a\nline two", 1, 2, 3, 1)]),
        accepted("quoted-all", quoted(r("quoted-all"), csv.QUOTE_ALL), r("quoted-all")),
        accepted("reordered", "".join(",".join(line.split(",")[::-1]) + "\n"
                                      for line in text(r("reordered")).splitlines()), r("reordered")),
        accepted("extra-columns", "".join(f"x{i},{line},note {i}\n" for i, line in
                                          enumerate(text(r("extra-columns")).splitlines())), r("extra-columns")),
        accepted("duplicate-extra-column", "".join(f"{line},n,n\n" for line in
                                                   text(r("duplicate-extra-column")).splitlines()),
                 r("duplicate-extra-column")),
        accepted("padded", "".join(" " + line.replace(",", " , ") + " \n"
                                   for line in text(r("padded")).splitlines()), r("padded")),
        accepted("missing-tokens", text([("missing-tokens-a", "NaN", "NA", "null", 0),
                                         ("missing-tokens-b", "N/A", "None", "", 1), ("missing-tokens-c", "nan",
                                                                                       "NULL", 7, 0)]),
                 [("missing-tokens-a", None, None, None, 0), ("missing-tokens-b", None, None, None, 1),
                  ("missing-tokens-c", None, None, 7, 0)]),
        accepted("large-numbers", text([("large-numbers-a", "1e15", "999999999999999", "9007199254740", 0)]), large),
        accepted("negative-zero", text([("negative-zero-a", "-0", "-0.0", "0", 1)]), [("negative-zero-a", 0, 0, 0, 1)]),
        accepted("target-float", text([("target-float-a", 1, 2, 3, "1.0"), ("target-float-b", 1, 2, 3, "0.0")]),
                 [("target-float-a", 1, 2, 3, 1), ("target-float-b", 1, 2, 3, 0)]),
        accepted("upper-ext", text(r("upper-ext")), r("upper-ext"), file="UPPER-EXT.CSV"),
        accepted("long-line", text(long_id), long_id),  # a 1 MB client id: the contract sets no length
        accepted("wide-header-plain", "".join(line + "\n" for line in [wide_header, *(
            spread([cell(v) for v in k], [""] * pads) for k in r("wide-header-plain"))]), r("wide-header-plain")),
        accepted("wide-header-quoted", "".join(line + "\n" for line in [wide_header, *(
            spread([f'"{k[0]}"', *(cell(v) for v in k[1:])], [""] * pads) for k in r("wide-header-quoted"))]),
                 r("wide-header-quoted")),  # quotes: read by the checked reader
        rejected("wide-header-long-row", "".join(line + "\n" for line in [wide_header, *(
            spread([cell(v) for v in k], [""] * (pads + i)) for i, k in enumerate(r("wide-header-long-row")))]),
                 r"row 2 has 100001 fields, the header 100000"),
        accepted("long-header-field", text([(*k, None) for k in r("long-header-field")],
                                           header=HEADER + "," + "h" * 200_000), r("long-header-field")),
        accepted("utf8-text", text(utf8), utf8),
        accepted("odd-name-tab", text(r("odd-name-tab")), r("odd-name-tab"), file="odd\tname.csv"),
        accepted("odd-name-newline", text(r("odd-name-newline")), r("odd-name-newline"), file="odd\nname.csv"),
        accepted("odd-name-percent", text(r("odd-name-percent")), r("odd-name-percent"), file="100%25 sure.csv"),
        accepted("odd-name-latin1", text(r("odd-name-latin1")), r("odd-name-latin1"),
                 file=os.fsdecode(b"caf\xe9 latin1.csv")),
        accepted("odd-name-spaces", text(r("odd-name-spaces")), r("odd-name-spaces"), file=" spaced  name .csv"),
        # ---- accepted, duplicates dropped and counted
        kind("dup-within", "dropped", text(r("dup-within") + r("dup-within")[:2]), rows=(5, 3),
             expect=r("dup-within")),
        kind("dup-formatting", "dropped", text([("dup-formatting-a", "10", "1200", "40", "0"),
                                                ("dup-formatting-a", "10.0", "1.2e3", "040", "0"),
                                                (" dup-formatting-a ", " 1e1", "1200.000", "40 ", " 0")]),
             rows=(3, 1), expect=dup_fmt),
        kind("dup-old", "dropped", text([]) + "".join(line + "\n" for line in old) + text(fresh).split("\n", 1)[1],
             rows=(7, 2), expect=fresh),
        kind("copy-of-ingested", "dropped", copied, rows=(len(copied.splitlines()) - 1, 0)),
        kind("symlink-inside", "dropped", text(r("symlink-inside")), make=write_link_inside, rows=(3, 0),
             expect=r("symlink-inside")),
        # ---- rejected, with the reason
        rejected("empty", b"", r"(?i)empty file \(0 bytes\)"),
        rejected("whitespace-only", " \n\n\t\r\n", r"(?i)empty file"),
        rejected("header-only-lf", text([]), r"(?i)no data rows"),
        rejected("header-only-crlf", text([], end="\r\n"), r"(?i)no data rows"),
        rejected("semicolons", text(r("semicolons"), header=HEADER.replace(",", ";"), sep=";"), r"semicolon-sep"),
        rejected("tabs", text(r("tabs"), header=HEADER.replace(",", "\t"), sep="\t"), r"tab-separated"),
        rejected("missing-feature", text([(k[0], k[1], k[3], k[4]) for k in r("missing-feature")],
                                         header=HEADER.replace(FEATURES[1] + ",", "")),
                 rf"missing column '{FEATURES[1]}'"),
        # No target column: unlabelled monitoring data, stored and checked but never trained on
        kind("missing-target", "unlabelled", text([k[:-1] for k in r("missing-target")],
                                                  header=HEADER.rsplit(",", 1)[0]), rows=(3, 3)),
        rejected("duplicate-column", text([(*k, 1) for k in r("duplicate-column")], header=HEADER + "," + TARGET),
                 rf"'{TARGET}' appears 2 times"),
        rejected("wrong-case-header", text(r("wrong-case-header"), header=HEADER.upper()), r"(?i)missing columns"),
        rejected("text-in-number", text([("text-in-number-a", 1, 2, 3, 0), ("text-in-number-b", 1, "lots", 3, 1)]),
                 rf"{ROW2}.*'{FEATURES[1]}'.*expected a number, got 'lots'"),
        rejected("infinite", text([("infinite-a", 1, 2, 3, 0), ("infinite-b", "inf", 2, 3, 1)]),
                 rf"{ROW2}.*'{FEATURES[0]}'.*expected a finite number, got 'inf'"),
        rejected("overflow", text([("overflow-a", 1, 2, 3, 0), ("overflow-b", 1, "1e400", 3, 1)]),
                 rf"{ROW2}.*'{FEATURES[1]}'.*expected a finite number, got '1e400'"),
        # Finite, but past feature_max: the scaler would overflow on 1e308 and every later model be worthless.
        rejected("huge-numbers", text([("huge-numbers-a", 1, 2, 3, 0), ("huge-numbers-b", "1e308", 2, 3, 1)]),
                 rf"{ROW2}.*'{FEATURES[0]}'.*expected a number at most 1e\+15 \(config feature_max\), got '1e308'"),
        rejected("past-feature-max", text([("past-feature-max-a", 1, 2, 3, 0),
                                           ("past-feature-max-b", 1, "123456789012345678901234567890", 3, 1)]),
                 rf"{ROW2}.*'{FEATURES[1]}'.*expected a number at most 1e\+15"),
        rejected("negative-number", text([("negative-number-a", 1, 2, 3, 0), ("negative-number-b", 1, 2, -3, 1)]),
                 rf"{ROW2}.*'{FEATURES[2]}'.*expected a non-negative number, got '-3'"),
        rejected("thousands-separator", text([("thousands-separator-a", 1, 2, 3, 0),
                                              ("thousands-separator-b", 5, "2,000", 1, 0)]),
                 r"row 2 has 6 fields, the header 5; expected one comma-separated value per column"),
        rejected("thousands-first-row", text([("thousands-first-row-a", 5, "2,000", 1, 0)]),
                 r"row 1 has 6 fields, the header 5; expected one comma-separated value per column"),
        rejected("quoted-thousands", quoted([("quoted-thousands-a", 1, "2,000", 3, 0)]),
                 rf"row 1\b.*'{FEATURES[1]}'.*expected a number, got '2,000'"),
        rejected("target-2", text([("target-2-a", 1, 2, 3, 0), ("target-2-b", 1, 2, 3, 2)]),
                 rf"{ROW2}.*'{TARGET}'.*expected 0 or 1, got '2'"),
        rejected("target-yes", text([("target-yes-a", 1, 2, 3, 0), ("target-yes-b", 1, 2, 3, "yes")]),
                 rf"{ROW2}.*'{TARGET}'.*expected 0 or 1, got 'yes'"),
        rejected("target-empty", text([("target-empty-a", 1, 2, 3, 0), ("target-empty-b", 1, 2, 3, None)]),
                 rf"{ROW2}.*'{TARGET}'.*expected 0 or 1, got an empty cell"),
        # A short row is not padded with empty cells: its values may belong to other columns.
        rejected("short-row", text(r("short-row")[:1]) + "short-row-b,1,2\n",
                 r"row 2 has 3 fields, the header 5; expected one comma-separated value per column"),
        rejected("unbalanced-quote", text(r("unbalanced-quote")).replace("unbalanced-quote-b", '"unbalanced-quote-b'),
                 r"row 2 has 1 field, the header 5; expected .*every quote closed"),
        rejected("repeated-header", text(r("repeated-header")[:1]) + text(r("repeated-header")[1:]),
                 rf"{ROW2}.*expected a number, got '{FEATURES[0]}'"),
        # A writer caught in the middle of a row.
        rejected("partial-last-line", text(r("partial-last-line")) + "partial-last-line-z,5,6",
                 r"row 4 has 3 fields, the header 5; expected .*still being written"),
        rejected("utf16-bom", text(rows("utf16-bom")).encode("utf-16"), r"UTF-16 text, expected UTF-8"),
        rejected("utf16-no-bom", text(r("utf16-no-bom")).encode("utf-16-le"), r"UTF-16 text without a byte-order"),
        rejected("latin1", text([("latin1-soci\u00e9t\u00e9", 1, 2, 3, 0)]).encode("latin-1"),
                 r"not UTF-8 text \(invalid byte 0xe9 on line 2\)"),
        rejected("gzip", gzip.compress(text(r("gzip")).encode()), r"gzip-compressed"),
        rejected("xlsx", xlsx_bytes(), r"zip archive \(an \.xlsx workbook\?\)"),
        rejected("xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504) + b"Workbook" + bytes(512),
                 r"OLE2 document \(an old \.xls workbook\?\)"),
        rejected("binary", bytes(range(256)) * 8, r"binary data \(a NUL byte on line 1\)"),
        rejected("nul-byte-late", text(r("nul-byte-late", 500)) + "nul-byte-late-z\x00,1,2,3,0\n",
                 r"binary data \(a NUL byte on line 502\)"),
        rejected("html-page", "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>\n",
                 r"(?i)missing columns"),
        rejected("json-document", '[{"%s": "json-document-a", "%s": 1}]\n' % (ID, FEATURES[0]), r"(?i)missing columns"),
        rejected("symlink-outside", text(r("symlink-outside")), r"symbolic link to .*outside the input folder",
                 make=write_link_outside),
        # ---- not recorded, tried again every run
        kind("unreadable", "retried", text(r("unreadable")), make=write_unreadable,
             reason=r"cannot read file \(Permission denied\).*try again next run",
             rows=(3, 3), expect=r("unreadable")),  # rows and expect: once it is made readable
        # ---- not data files
        ignored("icon-litter", "Icon\r"),  # macOS folder-icon litter: zero bytes, a CR in its name
        ignored("txt-extension", "notes.txt", text(r("txt-extension"))),
        ignored("gz-extension", "archive.csv.gz", gzip.compress(text(r("gz-extension")).encode())),
        ignored("tsv-extension", "tabbed.tsv", text(r("tsv-extension"), sep="\t", header=HEADER.replace(",", "\t"))),
        ignored("editor-backup", "backup.csv~", text(r("editor-backup"))),
        ignored("appledouble", "._resource.csv", b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "),
        ignored("office-lock", ".~lock.open.csv#", ",user,host,01.01.2026 10:00,file:///home/user/.config;\n"),
        ignored("directory", "folder.csv", text(r("directory")), make=write_directory),
        ignored("dangling-symlink", "dangling.csv", make=write_link_dangling),
        ignored("symlink-to-directory", "linkdir.csv", make=write_link_directory),
        ignored("fifo", "pipe.csv", make=write_fifo),
    ]
    return kinds


KINDS: list[dict[str, Any]] = build()
BY_KIND: dict[str, dict[str, Any]] = {k["kind"]: k for k in KINDS}


def write_corpus(folder: Path, outside: Path | None = None, kinds: list[str] | None = None) -> dict[str, str]:
    """Write the corpus (or the named kinds) into folder; returns {kind: file name} of those written. A kind whose
    name is already taken in folder is left as it is (so the corpus can be dropped again). Links that must lead
    out of the folder point into outside (default: a sibling folder named <folder>-outside)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    outside = Path(outside) if outside else folder.parent / f"{folder.name}-outside"
    written = {}
    for k in KINDS:
        if (kinds is None or k["kind"] in kinds) and not os.path.lexists(folder / k["file"]):
            k["make"](folder, outside, k["file"], k)
            written[k["kind"]] = k["file"]
    return written


def grow_file(path: Path, stop: threading.Event, kind: str = "growing", seconds: float = 30.0) -> threading.Thread:
    """Start a writer thread that appends rows to path half a row at a time until stop is set (or seconds pass),
    then finishes the row it is in. The file is growing, and mostly ends mid-row, whenever ingestion reads it."""
    f = open(path, "w", encoding="utf-8")

    def write() -> None:
        with f:
            f.write(HEADER + "\n")
            deadline, i = time.monotonic() + seconds, 0
            while not stop.is_set() and time.monotonic() < deadline:
                line = ",".join(cell(v) for v in one_row(kind, i)) + "\n"
                for part in (line[:len(line) // 2], line[len(line) // 2:]):
                    f.write(part)
                    f.flush()
                    time.sleep(0.002)
                i += 1
    t = threading.Thread(target=write, daemon=True)
    t.start()
    return t


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit(f"usage: PYTHONPATH=. python tests/{Path(__file__).name} OUTDIR   "
                 f"(writes {len(KINDS)} kinds of odd or bad data file)")
    done = write_corpus(Path(sys.argv[1]))
    print(f"wrote {len(done)} kinds of odd or bad data file into {sys.argv[1]}")
