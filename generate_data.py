"""Deterministic generator of the shipped client data, and of large data sets for benchmarks.

    python generate_data.py                                  # rewrite practicedata/, sourcedata/, testdata/
    python generate_data.py --rows 1000000 --files 10 --out bench/data/1m   # benchmark data

Clients leave when their recent activity falls well below their usual level: the chance of exiting rises as
lastmonth_activity drops under 0.8 * lastyear_activity / 12, and small firms leave a little more often. In the
practice period all clients had about the same yearly activity, so a model trained on them learns "last-month
activity under about 100 means exit". In the source period clients of every size arrived: that rule no longer
holds, a model trained on practice data scores far worse on them (model drift), and a model retrained on all the
data learns the real relation.
The test set mixes both periods, so it measures a model on the clients the business has now.
Every file gets a few missing values and some exact duplicate rows (within and across files).
"""
from __future__ import annotations

import argparse
import string
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20261127  # one of several seeds that show the drift story clearly; any seed gives valid data
ROOT = Path(__file__).resolve().parent
ID, FEATURES, TARGET = "corporation", ["lastmonth_activity", "lastyear_activity", "number_of_employees"], "exited"
# (folder, file name, period, rows); "old" = the practice period, "new" = the source period.
SHIPPED = [
    ("practicedata", "dataset1.csv", "old", 600),
    ("practicedata", "dataset2.csv", "old", 500),
    ("sourcedata", "dataset3.csv", "new", 900),
    ("sourcedata", "dataset4.csv", "new", 800),
    ("testdata", "testdata.csv", "mixed", 600),
]
MISSING_RATE = 0.01
DUPLICATE_ROWS = 12


def client_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """n distinct five-letter client ids."""
    letters = np.array(list(string.ascii_lowercase))
    ids: set[str] = set()
    while len(ids) < n:
        ids.update("".join(w) for w in rng.choice(letters, size=(n, 5)))
    return rng.permutation(sorted(ids))[:n]


def clients(rng: np.random.Generator, n: int, period: str) -> pd.DataFrame:
    """n clients of a period ("old", "new" or "mixed") with their exit outcome."""
    if period == "mixed":
        half = n // 2
        both = pd.concat([clients(rng, half, "old"), clients(rng, n - half, "new")], ignore_index=True)
        return both.sample(frac=1.0, random_state=int(rng.integers(1 << 31))).reset_index(drop=True)
    return behaviour(rng, client_ids(rng, n), period)


def add_missing(rng: np.random.Generator, df: pd.DataFrame, rate: float = MISSING_RATE) -> pd.DataFrame:
    """Blank out a few feature cells, as real exports have."""
    df = df.copy()
    for col in FEATURES:
        df.loc[rng.random(len(df)) < rate, col] = pd.NA
    return df


def add_duplicates(rng: np.random.Generator, df: pd.DataFrame, pool: pd.DataFrame, k: int) -> pd.DataFrame:
    """Append k exact copies of rows drawn from pool (the same file or an earlier one)."""
    if k <= 0 or pool.empty:
        return df
    copies = pool.iloc[rng.choice(len(pool), size=min(k, len(pool)), replace=False)]
    return pd.concat([df, copies], ignore_index=True).sample(frac=1.0, random_state=int(rng.integers(1 << 31)))


def write_shipped(root: Path = ROOT, seed: int = SEED) -> list[Path]:
    """Write the shipped data folders; the same seed always gives the same bytes."""
    rng = np.random.default_rng(seed)
    written, previous = [], pd.DataFrame()
    for folder, name, period, rows in SHIPPED:
        df = add_missing(rng, clients(rng, rows, period))
        if folder != "testdata":
            df = add_duplicates(rng, df, df, DUPLICATE_ROWS // 2)           # within the file
            df = add_duplicates(rng, df, previous, DUPLICATE_ROWS)           # across files
            previous = df
        path = root / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(path, index=False, lineterminator="\n")
        written.append(path)
    return written


def write_large(out: Path, rows: int, files: int, seed: int = SEED, period: str = "new") -> list[Path]:
    """Write rows clients split over files CSV files in out (1% duplicate rows), for benchmarks."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    per_file = [rows // files + (1 if i < rows % files else 0) for i in range(files)]
    for i, n in enumerate(per_file):
        dup = n // 100
        df = add_missing(rng, clients_fast(rng, n - dup, period))
        df = add_duplicates(rng, df, df, dup)
        path = out / f"data{i + 1:03d}.csv"
        df.to_csv(path, index=False, lineterminator="\n")
        written.append(path)
    return written


def clients_fast(rng: np.random.Generator, n: int, period: str) -> pd.DataFrame:
    """Like clients() but with eight-letter ids drawn with replacement, so millions of rows are quick."""
    codes = rng.integers(0, 26, size=(n, 8)) + ord("a")
    ids = codes.astype(np.uint8).view("S8").ravel().astype(str)
    return behaviour(rng, ids, period)


def behaviour(rng: np.random.Generator, ids: np.ndarray, period: str) -> pd.DataFrame:
    """Features and exit outcome for the given client ids in a period ("old" or "new")."""
    n = len(ids)
    if period == "old":
        yearly = rng.normal(1500, 10, n)
        employees = rng.normal(40, 10, n)
    else:
        yearly = rng.uniform(600, 12000, n)
        employees = rng.uniform(5, 400, n)
    ratio = rng.lognormal(0.0, 0.45, n)                      # last month against a usual month
    monthly = yearly / 12 * ratio
    logit = 0.08 * (0.8 * yearly / 12 - monthly) - 0.005 * (employees - 40)
    return pd.DataFrame({
        ID: ids,
        FEATURES[0]: pd.array(np.round(monthly), dtype="Int64"),
        FEATURES[1]: pd.array(np.round(yearly), dtype="Int64"),
        FEATURES[2]: pd.array(np.maximum(1, np.round(employees)), dtype="Int64"),
        TARGET: (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int),
    })


def main() -> None:
    """Parse arguments and write the shipped data or a large data set."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, help="total rows of a large data set (needs --out)")
    p.add_argument("--files", type=int, default=10, help="how many files to split --rows over (default 10)")
    p.add_argument("--out", type=Path, help="folder for the large data set")
    p.add_argument("--period", choices=["old", "new"], default="new", help="client behaviour to draw from")
    p.add_argument("--seed", type=int, default=SEED, help=f"random seed (default {SEED})")
    args = p.parse_args()
    if args.rows is None:
        paths = write_shipped(ROOT, args.seed)
    elif args.out is None:
        p.error("--rows needs --out")
    else:
        paths = write_large(args.out, args.rows, args.files, args.seed, args.period)
    print(f"wrote {len(paths)} files: " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
