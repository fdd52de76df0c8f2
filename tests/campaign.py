"""What the reliability campaigns share (tests/test_crash.py, test_overlap.py, test_month.py): their sizes, the data
drops they make with generate_data.py, the rows those drops should leave in finaldata.csv, real cron-like ticks, and
the checks that every artifact is whole.

Sizes: the quick form runs in `make test`; SOAK=1 (`make soak`) selects the long form whose figures are in
docs/reliability.md. Everything random is drawn from seeded generators, so a campaign's plan (which drops, which
kill points) is the same on every run; where a timed kill lands still depends on the machine's speed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import generate_data
import history
from conftest import ROOT, free_port, history_rows, make_workspace, run_script, soak_sizes, write_config

SIZES = soak_sizes(kills=(40, 200), overlap_rounds=(2, 10), days=(1, 30), disk_points=(2, 10))
# CAMPAIGN_HISTORY=postgresql: the kill campaign with its history on a PostgreSQL server the tests start
ON_POSTGRESQL = os.environ.get("CAMPAIGN_HISTORY", "sqlite") == "postgresql"
TICKS_PER_DAY = 24 * 6  # cron runs fullprocess every 10 minutes
COLUMNS = [generate_data.ID, *generate_data.FEATURES, generate_data.TARGET]
TEMP_MARKS = (".tmp-", ".partial-")  # atomicio.TEMP_MARK and deployment.PARTIAL: half-written files and folders


def command(ws: Path, config: str = "config.json") -> list[str]:
    """The cron command for a workspace."""
    return [sys.executable, str(ROOT / "fullprocess.py"), "--config", str(ws / config)]


def cron_tick(ws: Path, config: str = "config.json") -> tuple[int, float]:
    """One tick as cron runs it (cronjob.txt): stdout and stderr appended to logs/cron.log; (exit code, seconds)."""
    (ws / "logs").mkdir(exist_ok=True)
    t0 = time.monotonic()
    with open(ws / "logs" / "cron.log", "ab") as out:
        code = subprocess.run(command(ws, config), cwd="/", stdout=out, stderr=subprocess.STDOUT,
                              timeout=600).returncode
    return code, time.monotonic() - t0


def prepared_workspace(path: Path, **overrides: Any) -> Path:
    """Release 1 bootstrapped from the practice data (an old-period model), the shipped source data waiting (the
    drift story), diagnostics' version look-ups cached, and the API URL pointing where nothing listens (apicalls
    then finds the API down at once instead of calling a live one)."""
    ws = make_workspace(path)
    settings = {"url": f"http://127.0.0.1:{free_port()}/", **overrides}
    write_config(ws, **settings)
    write_config(ws, "config.practice.json", input_folder_path="practicedata", output_model_path="practicemodels",
                 **settings)
    p = run_script("fullprocess.py", ws, config="config.practice.json", timeout=300)
    assert p.returncode == 0, p.stderr
    run_script("diagnostics.py", ws, timeout=120)  # as a user would; later runs reuse its looked-up versions
    return ws


# ---------------------------------------------------------------- data drops

def rows_of(df: pd.DataFrame) -> list[tuple]:
    """Rows as comparable tuples (missing values as None), read the way a user reads a CSV file."""
    typed = df[COLUMNS].astype(object).where(df[COLUMNS].notna(), None)
    return [(str(r[0]), *(None if v is None else float(v) for v in r[1:-1]), int(r[-1]))
            for r in typed.itertuples(index=False)]


def read_rows(path: Path) -> list[tuple]:
    """The rows of a CSV file we wrote, or of finaldata.csv."""
    return rows_of(pd.read_csv(path, dtype={generate_data.ID: str}, keep_default_na=False,
                               na_values={c: [""] for c in generate_data.FEATURES}))


@dataclass
class Drops:
    """Every file dropped into one input folder, and the rows each good one holds."""
    folder: Path
    rng: np.random.Generator
    good: dict[str, set[tuple]] = field(default_factory=dict)    # record name -> its distinct rows
    bad: list[str] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)
    drifting: list[str] = field(default_factory=list)
    seq: int = 0


def expected(drops: Drops, names: Any = None) -> set[tuple]:
    """The distinct good rows of the named files (default: all dropped so far)."""
    out: set[tuple] = set()
    for name, rows in drops.good.items():
        if names is None or name in names:
            out |= rows
    return out


def register_shipped(drops: Drops, ws: Path, folders: tuple[str, ...] = ("practicedata", "sourcedata")) -> None:
    """Count the files already in the workspace's data folders as dropped good files."""
    for folder in folders:
        for p in sorted((ws / folder).glob("*.csv")):
            drops.good[f"{folder}/{p.name}"] = set(read_rows(p))


def clients(rng: np.random.Generator, n: int, period: str) -> pd.DataFrame:
    """n clients of a period as generate_data makes them: a few missing values, a few rows repeated in the file."""
    df = generate_data.add_missing(rng, generate_data.clients(rng, n, period))
    return generate_data.add_duplicates(rng, df, df, max(1, n // 50))


def pool(drops: Drops) -> pd.DataFrame:
    """All good rows dropped so far, as a frame (to copy duplicates from)."""
    rows = sorted(expected(drops), key=repr)
    return pd.DataFrame(rows, columns=COLUMNS)


def drop(drops: Drops, kind: str, ws: Path) -> str | None:
    """Write one new file of a kind into the input folder (or touch an old one); returns its record name.

    old / new:  clients of generate_data's practice or source period (new after old is model drift: the story)
    flip:       source-period clients whose outcome is reversed: what used to mean "stays" now means "leaves"
                (a concept drift the deployed model must catch)
    dup:        only copies of rows dropped before;  mixed: half copies, half new clients
    small:      too few rows for a drift check (they wait for the next one)
    large:      ten thousand clients (a longer ingestion and training to be killed in)
    bad:        a file the data contract refuses (tests/badinput.py's corpus when present)
    odd:        a file odd but within the contract (tests/badinput.py's corpus when present)
    touch:      an already ingested file touched: new mtime, same bytes, so not new data"""
    rng = drops.rng
    drops.seq += 1
    drops.kinds[kind] = drops.kinds.get(kind, 0) + 1
    name = f"drop{drops.seq:04d}-{kind}.csv"
    if kind == "touch":
        old = sorted(n for n in drops.good if n.startswith(f"{drops.folder.name}/"))
        if not old:
            return None
        p = ws / old[int(rng.integers(len(old)))]
        st = p.stat()
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        return None
    if kind in ("bad", "odd"):
        return write_corpus_kind(drops, "rejected" if kind == "bad" else "accepted")
    if kind in ("old", "new"):
        df = clients(rng, int(rng.integers(150, 400)), kind)
    elif kind == "flip":
        df = clients(rng, int(rng.integers(100, 150)), "new")
        df[generate_data.TARGET] = 1 - df[generate_data.TARGET]
        drops.drifting.append(f"{drops.folder.name}/{name}")
    elif kind == "small":
        df = clients(rng, int(rng.integers(10, 30)), "new")
    elif kind == "large":
        df = generate_data.add_missing(rng, generate_data.clients_fast(rng, 10_000, "new"))
    elif kind == "dup":
        old = pool(drops)
        df = old.iloc[rng.choice(len(old), size=min(len(old), int(rng.integers(50, 200))), replace=False)]
    elif kind == "mixed":
        old = pool(drops)
        df = pd.concat([clients(rng, 150, "new"), old.iloc[rng.choice(len(old), size=150, replace=False)]])
    else:
        raise ValueError(kind)
    path = drops.folder / name
    df.to_csv(path, index=False, lineterminator="\n")
    record = f"{drops.folder.name}/{name}"
    drops.good[record] = set(read_rows(path))
    return record


def write_corpus_kind(drops: Drops, outcome: str) -> str:
    """One file of tests/badinput.py's corpus with that outcome ("rejected": the contract refuses it, "accepted":
    odd but good), the kinds taken in turn; three bad files of our own when that module is absent (then "odd"
    drops are bad ones too)."""
    kinds = corpus(outcome) or OWN_BAD
    k = kinds[drops.kinds["bad" if outcome == "rejected" else "odd"] % len(kinds)]
    name = f"drop{drops.seq:04d}-{outcome}-{k['kind']}.csv"
    (drops.folder / name).write_bytes(k["data"])
    record = f"{drops.folder.name}/{name}"
    if outcome == "rejected" or k in OWN_BAD:
        drops.bad.append(record)
    else:
        drops.good[record] = {(str(r[0]), *(None if v is None else float(v) for v in r[1:-1]), int(r[-1]))
                              for r in k["expect"]}
    return record


HEADER = ",".join(COLUMNS).encode()
OWN_BAD = [{"kind": "not-utf8", "data": HEADER + b"\nabc\xff,1,2,3,0\n"},
           {"kind": "missing-column", "data": b"corporation,lastmonth_activity,exited\nabcde,1,0\n"},
           {"kind": "target-2", "data": HEADER + b"\nabcde,1,2,3,2\n"}]


def corpus(outcome: str) -> list[dict[str, Any]]:
    """The plain-file kinds of tests/badinput.py's corpus with an outcome (none when that module is absent).
    Left out: kinds made by links, folders or permissions, and the megabyte-sized ones (slow to parse)."""
    try:
        import badinput  # written by another engineer; used when present
    except ImportError:
        return []
    return [k for k in badinput.KINDS if k["outcome"] in OUTCOMES[outcome] and k["make"] is badinput.write_bytes
            and len(k["data"]) < 100_000]


OUTCOMES = {"rejected": ("rejected",), "accepted": ("accepted", "dropped")}


# ---------------------------------------------------------------- reading the workspace back

def query(ws: Path, sql: str, *params: Any) -> list[tuple]:
    """Rows of a query on the workspace's history store (SQLite or PostgreSQL)."""
    return history_rows(ws, sql, *params)


def exports_in_step(cfg: dict[str, Any], manifest: dict[str, Any]) -> bool:
    """Whether finaldata.csv and ingestedfiles.txt are the export of the store as its manifest now stands (a kill
    between the manifest and the exports leaves them behind, for the next ingestion to bring up to date)."""
    from filerecord import exports_current
    return exports_current(cfg, manifest) and \
        manifest.get("exported_batches") == [b["id"] for b in manifest["batches"]]


def store_garbage(cfg: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    """Store files no manifest names (batches, hashes and indexes of a run killed before its commit, or
    superseded)."""
    import store
    named = {manifest["index"], manifest.get("hashes"), *manifest.get("hash_segments", []),
             *(store.batch_path(cfg, b["id"]).name for b in manifest["batches"])}
    found = [*store.folder(cfg).glob("index-*.npz"), *store.folder(cfg).glob("hashes-*.u64"),
             *(store.folder(cfg) / "batches").glob("*.parquet")]
    return sorted(p.name for p in found if p.name not in named)


def check_store(ws: Path, drops: Drops, cfg: dict[str, Any]) -> dict[str, Any]:
    """Assert the ingested store is whole and holds only dropped rows: the manifest parses, every live batch it
    names reads with its recorded row count, the index it names loads, and the dataset holds every row of the
    ingested files, only rows of dropped good files, each once; when the exports are in step with it, finaldata.csv
    holds exactly the dataset's rows and ingestedfiles.txt exactly its files. Returns the manifest."""
    import pyarrow.parquet as pq

    import store
    from filerecord import escape_name, live_files, read_manifest
    manifest = read_manifest(cfg)                      # OSError when it does not parse
    ids = [b["id"] for b in manifest["batches"]]
    assert ids == sorted(set(ids)) and all(i < manifest["next_batch"] for i in ids), f"batch ids {ids}"
    for b in manifest["batches"]:
        path = store.batch_path(cfg, b["id"])
        assert path.exists(), f"live batch {b['id']} ({b['file']}) has no file"
        assert pq.read_table(path).num_rows == b["rows"], f"batch {b['id']} does not hold its {b['rows']} rows"
    if manifest["batches"]:
        assert manifest["index"] and (store.folder(cfg) / manifest["index"]).exists(), manifest["index"]
        assert manifest["hashes"] and (store.folder(cfg) / manifest["hashes"]).exists(), manifest["hashes"]
    index = store.load_index(cfg, manifest)
    ingested, rejected = live_files(manifest), manifest["rejected"]
    assert len(ingested) == len(manifest["batches"]), "a file is live in two batches"
    assert set(ingested) <= set(drops.good), sorted(set(ingested) - set(drops.good))
    assert set(rejected) <= set(drops.bad), sorted(set(rejected) - set(drops.bad))
    data = rows_of(store.read_dataset(cfg, manifest, index))
    assert len(data) == len(set(data)), "the store's dataset holds a row twice"
    assert len(data) == store.dataset_rows(index), "the index counts other rows than the dataset holds"
    missing = expected(drops, ingested) - set(data)
    assert not missing, f"{len(missing)} rows of ingested files are missing from the store's dataset"
    stray = set(data) - expected(drops)
    assert not stray, f"{len(stray)} rows in the store's dataset come from no good dropped file"
    if exports_in_step(cfg, manifest):
        final = ws / "ingesteddata" / "finaldata.csv"
        assert list(pd.read_csv(final, nrows=0).columns) == COLUMNS
        assert read_rows(final) == data, "finaldata.csv is not the export of the store's dataset"
        listed = (ws / "ingesteddata" / "ingestedfiles.txt").read_text(encoding="utf-8").splitlines()
        assert listed == [escape_name(b["file"]) for b in manifest["batches"]], "ingestedfiles.txt is not the export"
    return manifest


def stale_temps(ws: Path) -> list[str]:
    """Half-written files or release folders left anywhere in the workspace's artifact folders."""
    found = []
    for folder in ("ingesteddata", "models", "practicemodels", "production_deployment", "reports", "history"):
        base = ws / folder
        if base.exists():
            found += [str(p.relative_to(ws)) for p in base.rglob("*") if any(m in p.name for m in TEMP_MARKS)]
    return sorted(found)


def check_whole(ws: Path, drops: Drops) -> None:
    """Assert what a kill may have hit is whole: one complete release, parsable artifacts, a sound history store,
    and a whole ingested store holding every row of the ingested files, only rows of dropped good files, each once
    (check_store)."""
    import releases
    from config import load_config
    from modelstore import ModelError, load_model
    cfg = load_config(ws / "config.json")
    prod = cfg["prod_deployment_path"]
    linked = (prod / os.readlink(prod / "current")).resolve()
    # the release every reader follows: the link, or with the history on PostgreSQL the row there (the link may
    # lag it by a kill between the two until the next tick mends it; both must be whole releases)
    pointed = releases.current_dir(cfg)
    for folder in {linked, pointed}:
        assert folder and folder.parent.name == "releases" and folder.name.isdigit(), f"current -> {folder}"
        manifest = json.loads((folder / "manifest.json").read_text())
        for name, digest in manifest["files"].items():
            assert sha(folder / name) == digest, f"release {folder.name}: {name} does not match its manifest"
    for name in ("trainedmodel.pkl", "latestscore.txt", "ingestedfiles.txt"):
        assert (prod / name).resolve() == linked / name, f"{name} is not served from the current release"
    model, _ = releases.load_deployed_model(cfg)
    assert hasattr(model, "predict")
    check_store(ws, drops, cfg)
    # Model artifacts: each parses; a model that does not match its record is refused, never half-loaded.
    for models in (cfg["output_model_path"], ws / "practicemodels"):
        for p in models.glob("*.json"):
            json.loads(p.read_text())
        if (models / "latestscore.txt").exists():
            assert 0 <= float((models / "latestscore.txt").read_text()) <= 1
        if (models / "trainedmodel.pkl").exists():
            try:
                load_model(models / "trainedmodel.pkl")
            except ModelError:
                pass
        for p in models.glob("*.png"):
            from PIL import Image
            with Image.open(p) as im:
                im.verify()
    for pdf in sorted(cfg["report_folder_path"].glob("*.pdf"))[-2:]:
        p = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True)
        assert p.returncode == 0, f"{pdf.name} does not parse: {p.stderr}"
    if not history.shared(cfg):  # PostgreSQL's own crash safety is not on trial: its client is what gets killed
        assert query(ws, "PRAGMA integrity_check") == [("ok",)]
    query(ws, "SELECT COUNT(*) FROM runs")


def check_done(ws: Path, drops: Drops) -> None:
    """Assert a completed run finished everything: every good file ingested (its rows exactly once), every bad
    one rejected, every drift verdict acted on, every ingested row drift-checked or trained on, no leftovers."""
    check_whole(ws, drops)
    from config import load_config
    cfg = load_config(ws / "config.json")
    manifest = check_store(ws, drops, cfg)
    assert exports_in_step(cfg, manifest), "finaldata.csv and ingestedfiles.txt were left behind the store"
    data = read_rows(ws / "ingesteddata" / "finaldata.csv")
    assert len(data) == len(set(data)), "finaldata.csv holds a row twice"
    assert set(data) == expected(drops), "finaldata.csv differs from the distinct good rows dropped"
    listed = (ws / "ingesteddata" / "ingestedfiles.txt").read_text(encoding="utf-8").splitlines()
    assert sorted(listed) == sorted(drops.good), "ingestedfiles.txt does not list exactly the good files dropped"
    assert set(manifest["rejected"]) == set(drops.bad), "the store's rejected files are not the bad files dropped"
    # A commit killed before removing what it superseded leaves the previous index and hashes until the next
    # ingestion (a tick with nothing new runs none); anything else no manifest names is a batch, hashes or index
    # left behind.
    left = [n for n in store_garbage(cfg, manifest) if not (n.startswith("index-") and n < manifest["index"]
                                                           or n.startswith("hashes-") and n < manifest["hashes"])]
    assert left == [], f"store files no manifest names: {left}"
    release = json.loads((ws / "production_deployment" / "current" / "manifest.json").read_text())
    (checked,) = query(ws, "SELECT COALESCE(MAX(batch_to), 0) FROM drift_checks")[0]
    newest = max(b["id"] for b in manifest["batches"])
    assert max(checked, release["model"]["data_batch"]) == newest, \
        f"ingested batches were left unchecked: checked up to {checked}, the model trained up to " \
        f"{release['model']['data_batch']}, the newest batch {newest}"
    unacted = query(ws, "SELECT c.run_id FROM drift_checks c WHERE c.verdict = 'drift' AND NOT EXISTS "
                        "(SELECT 1 FROM decisions d WHERE d.run_id = c.run_id AND d.decision = 'retrain')")
    assert not unacted, f"drift verdicts of runs {unacted} were never acted on"
    assert stale_temps(ws) == [], stale_temps(ws)
    # The outputs show the current release: refreshed after it was made, none pending.
    assert not (ws / "ingesteddata" / ".outputs-pending").exists(), "outputs were left to refresh"
    report = ws / "reports" / "report.pdf"
    made = (ws / "production_deployment" / "current" / "manifest.json").stat().st_mtime_ns
    assert report.stat().st_mtime_ns >= made, "reports/report.pdf is older than the current release"


def sha(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def clone(src: Path, dst: Path) -> Path:
    """A private copy of a prepared workspace (symlinks kept, so current still points into releases/); a history on
    PostgreSQL is copied into a database of its own (CREATE DATABASE ... TEMPLATE)."""
    shutil.copytree(src, dst, symlinks=True)
    url = json.loads((dst / "config.json").read_text()).get("history_url", "")
    if url.startswith("postgresql://"):
        import psycopg
        server, name = url.rsplit("/", 1)
        copy = "c_" + hashlib.sha256(str(dst).encode()).hexdigest()[:16]
        with psycopg.connect(f"{server}/postgres", autocommit=True) as db:
            db.execute(f"DROP DATABASE IF EXISTS {copy} WITH (FORCE)")
            db.execute(f"CREATE DATABASE {copy} TEMPLATE {name}")
        for config in ("config.json", "config.practice.json"):
            path = dst / config
            path.write_text(json.dumps({**json.loads(path.read_text()), "history_url": f"{server}/{copy}"}, indent=2))
    return dst
