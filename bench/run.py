"""The benchmark suite: ours against DuckDB, the libraries' floor and a straightforward implementation, side by
side in one run on this machine; the figures go to docs/benchmarks.md.

    make bench                                             # every case at 10k-10M rows (the 5 GB file included)
    .venv/bin/python bench/run.py --sizes 10k,100k --cases 1,3,4 --no-doc      # a quick look, doc untouched
    .venv/bin/python bench/run.py --cases 5 --sizes 1m     # one case; what it needs is built first, unmeasured

Cases (each figure the median of several fresh processes; ratios are ours / the reference named):
1. Cron tick with no new data: `fullprocess.py` on an ingested, deployed workspace with 1,000 runs of history,
   against `python -c pass` and the straightforward tick (imports pandas and scikit-learn, compares names); one
   more, unmeasured tick under `python -X importtime` says which libraries it imported.
2. Incremental ingest: `ingestion.py` with one new file (a tenth of the rows) on top of the ingested store,
   against ingesting that file alone into an empty store; the straightforward ingest re-reads every file.
3. Full ingest of 10 files: `ingestion.py` (the store and its exports) against DuckDB (`COPY (SELECT DISTINCT *
   FROM read_csv([...])) TO 'duckdb.csv'`), the floor (bench/floor.py: pyarrow read, hash de-duplication,
   pyarrow write), the store floor (bench/floor.py store: the least that keeping our store's files takes, with
   pyarrow and with DuckDB as the engine) and the straightforward ingest (pandas read_csv, concat,
   drop_duplicates, to_csv).
4. Training and scoring: `training.py` + `scoring.py` against fitting training.build_pipeline() on the same
   rows as in-memory arrays (bench/floor.py fit), and the straightforward train + score; beside it the training
   read alone: store.read_dataset in a probe (bench/drift_probe.py --read) against pyarrow reading the store's
   Parquet batch files to pandas (bench/floor.py read).
5. Drift check on 1M new rows (the largest size up to 1M): fullprocess.drift_check() timed in one process
   (bench/drift_probe.py) against the straightforward check (re-reads the training data; scipy KS, PSI).
6. API throughput: bench/bench_api.py (it writes its own section of docs/benchmarks.md).
7. Report: `reporting.py` on the largest size with 1,000 runs of history (made with history.py's functions).
8. A 5 GB file: `ingestion.py` ingesting one CSV of about 5 GB (scaled down with the size: 5 MB at 10k), for its
   peak memory (the file is read ingestion.chunk_bytes at a time).
Cases 1, 3 and 4 run at every size, 2, 7 and 8 at the largest; the ingest and training targets are judged at 10M
rows (the smaller sizes are context), the others at every size measured.

Data: generate_data.py writes each size as 10 files under bench/data/source/ (git-ignored), once: a recipe.json
with the arguments and the generator's hash says when they must be written again; the 5 GB file is written
there too, a million generate_data.py rows at a time. Workspaces: bench/data/<case>/<size>-<impl>/, each with its
own config.json (relative paths) and the source files hard-linked in; removed at the end unless --keep.
Measurements: bench/measure.py (each command a fresh process).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import bench_api
from measure import MB, PY, BenchError, fmt, machine, run, versions, write_doc

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # our modules live at the repository root, bench/ alone is on the path

import history  # noqa: E402 (importable only after the sys.path line above)
from config import load_config  # noqa: E402 (importable only after the sys.path line above)
from filerecord import read_manifest  # noqa: E402 (importable only after the sys.path line above)

DATA = BENCH / "data"
SOURCE = DATA / "source"
DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = BENCH / "results" / "suite.json"  # every figure of the last run (git-ignored)
MARKS = ("<!-- suite:start -->", "<!-- suite:end -->")
SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000, "10m": 10_000_000}
FILES = 10
NEW_FILE = "data011.csv"    # the file that arrives after the first ten
NEW_SEED = 20261128         # the generator's default seed makes the first ten files; another seed, other clients
DRIFT_ROWS = 1_000_000
HISTORY_RUNS = 1000
CLOSED_URL = "http://127.0.0.1:9/"  # apicalls and anything else that would call out finds nothing listening
LIBRARIES = ("numpy", "pandas", "pyarrow", "scikit-learn", "scipy", "matplotlib", "reportlab", "duckdb")
HEAVY = ("pandas", "pyarrow", "sklearn")  # what a tick with nothing new must not import
TICK_LIMIT = 10.0           # the tick's target: within this many times `python -c pass`
BIG = 10_000_000            # from this size on the straightforward implementation runs --big-sf-repeat times
TARGET_SIZE = "10m"         # the size the ingest and training targets are set at; smaller ones are context
GB = 1024 * MB
BIG_FILE_BYTES = 5 * GB     # case 8's file at TARGET_SIZE; each smaller size scales it down with its rows
BIG_FILE_SEED = 20261129    # neither the ten files' seed nor the new file's: other clients
CHUNK_ROWS = 1_000_000      # the 5 GB file is generated this many rows at a time (bounded memory)
# DuckDB's de-duplicating ingest, run as `python -c` so the process imports DuckDB alone (not this suite's
# numpy, pandas or pyarrow); it prints the rows COPY wrote and the seconds after the import. Its progress bar is
# off: past 2 s DuckDB draws one on stdout, where the JSON goes.
DUCKDB_PROGRAM = ("import json, sys, time; import duckdb; duckdb.execute('SET enable_progress_bar = false'); "
                  "t = time.perf_counter(); rows = duckdb.execute(sys.argv[1]).fetchone()[0]; "
                  "print(json.dumps({'rows': rows, 'seconds': time.perf_counter() - t}))")
OTHERS_MIN_SECONDS = 1.0    # shortest time over which other processes' CPU is worth giving

STATE: dict[str, dict[str, dict[str, Path]]] = {"ingested": {}, "trained": {}}  # prerequisites built this run
T0 = time.monotonic()


def say(msg: str) -> None:
    """Print a progress line with the time since the start."""
    s = int(time.monotonic() - T0)
    print(f"[{s // 60:02d}:{s % 60:02d}] {msg}", flush=True)


# ---------------------------------------------------------------- commands and their figures

def output(r: dict[str, Any]) -> dict[str, Any]:
    """The JSON a command printed (ours with --json, the benchmark's own scripts always)."""
    return json.loads(r["stdout"])


def combine(*runs: dict[str, Any]) -> dict[str, Any]:
    """Commands run one after the other, as one measurement: times add up, the peak is the largest."""
    wall = sum(r["wall"] for r in runs)
    return {"wall": wall, "peak_mb": max(r["peak_mb"] for r in runs), "cpu": sum(r["cpu"] for r in runs),
            "others_cpu": sum(r["others_cpu"] for r in runs), "parts": [r["wall"] for r in runs]}


def stats(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median, min and max wall time, median and max peak memory, median CPU, and others' cores over runs."""
    # Others' cores are averaged over all the runs together: the machine's CPU counters tick every 10 ms, too
    # coarse for one short run; under OTHERS_MIN_SECONDS in all they are not given.
    walls, peaks = [r["wall"] for r in runs], [r["peak_mb"] for r in runs]
    return {"n": len(runs), "wall": statistics.median(walls), "wall_min": min(walls), "wall_max": max(walls),
            "peak_mb": statistics.median(peaks), "peak_max_mb": max(peaks),
            "cpu": statistics.median(r["cpu"] for r in runs),
            "others_cores": sum(r["others_cpu"] for r in runs) / sum(walls)
            if sum(walls) >= OTHERS_MIN_SECONDS else None}


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    """The median of one figure a command printed (its JSON output) over runs."""
    return statistics.median(output(r)[key] if key in output(r) else r[key] for r in runs)


def ours_cmd(script: str, ws: Path, *args: Any) -> list[Any]:
    """One of our scripts on a workspace's config."""
    return [PY, ROOT / script, "--config", ws / "config.json", *args]


def sf_cmd(command: str, ws: Path, *args: Any) -> list[Any]:
    """A command of the straightforward implementation on a workspace."""
    return [PY, BENCH / "straightforward.py", command, "--workspace", ws, *args]


def floor_cmd(command: str, ws: Path, *args: Any) -> list[Any]:
    """A command of the libraries' floor on a workspace's config."""
    return [PY, BENCH / "floor.py", command, "--config", ws / "config.json", *args]


# ---------------------------------------------------------------- data and workspaces

def file_sha256(path: Path) -> str:
    """SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dataset(rows: int, files: int, out: Path, seed: int | None = None) -> list[Path]:
    """The data files generate_data.py writes for these arguments, written only when missing or stale."""
    want = {"rows": rows, "files": files, "seed": seed, "generator_sha256": file_sha256(ROOT / "generate_data.py")}
    recipe = out / "recipe.json"
    found = sorted(out.glob("*.csv"))
    if recipe.exists() and json.loads(recipe.read_text()) == want and len(found) == files:
        return found
    shutil.rmtree(out, ignore_errors=True)
    say(f"generating {rows:,} rows in {files} files -> {out.relative_to(ROOT)}")
    cmd = [PY, ROOT / "generate_data.py", "--rows", rows, "--files", files, "--out", out]
    run(cmd + (["--seed", seed] if seed is not None else []), ROOT)
    recipe.write_text(json.dumps(want))
    return sorted(out.glob("*.csv"))


def source_files(label: str) -> dict[str, Path]:
    """The ten source files of a size, by name."""
    return {p.name: p for p in dataset(SIZES[label], FILES, SOURCE / f"rows{label}")}


def new_file(rows: int) -> Path:
    """One more source file of rows clients (another seed), the data that arrives later."""
    return dataset(rows, 1, SOURCE / f"new{rows}", NEW_SEED)[0]


def big_file(label: str) -> Path:
    """Case 8's one large CSV for a size (BIG_FILE_BYTES at TARGET_SIZE, in proportion below), written once."""
    want_bytes = BIG_FILE_BYTES * SIZES[label] // SIZES[TARGET_SIZE]
    sample = source_files(label)
    # As many rows as make want_bytes at the ten files' bytes per row: the same generator, the same row length.
    rows = want_bytes * SIZES[label] // sum(p.stat().st_size for p in sample.values())
    out = SOURCE / f"big{label}"
    want = {"rows": rows, "seed": BIG_FILE_SEED, "chunk_rows": CHUNK_ROWS,
            "generator_sha256": file_sha256(ROOT / "generate_data.py")}
    path, recipe = out / "big.csv", out / "recipe.json"
    if recipe.exists() and json.loads(recipe.read_text()) == want and path.exists():
        return path
    say(f"generating {rows:,} rows ({want_bytes / MB:,.0f} MB) in one file -> {path.relative_to(ROOT)}")
    fresh(out)
    write_big_csv(path, rows)
    recipe.write_text(json.dumps(want))
    return path


def write_big_csv(path: Path, rows: int) -> None:
    """Write rows generate_data.py rows (1% duplicates, a few empty cells) to one CSV, CHUNK_ROWS at a time."""
    # generate_data.write_large holds a whole file's rows in memory (tens of GB for 5 GB of CSV): the same row
    # functions are called here a chunk at a time instead. Imported only here: the runner stays light otherwise.
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    import generate_data
    rng = np.random.default_rng(BIG_FILE_SEED)
    with open(path, "wb") as f:
        f.write((",".join([generate_data.ID, *generate_data.FEATURES, generate_data.TARGET]) + "\n").encode())
        for start in range(0, rows, CHUNK_ROWS):
            n = min(CHUNK_ROWS, rows - start)
            df = generate_data.add_missing(rng, generate_data.clients_fast(rng, n - n // 100, "new"))
            df = generate_data.add_duplicates(rng, df, df, n // 100)
            # pyarrow writes what pandas' to_csv does here (ids are letters: no quotes) at several times its speed
            pacsv.write_csv(pa.Table.from_pandas(df, preserve_index=False), f,
                            pacsv.WriteOptions(include_header=False, quoting_style="none"))


def fresh(path: Path) -> Path:
    """An empty folder at path (whatever was there removed)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def make_workspace(path: Path, sources: dict[str, Path]) -> Path:
    """A workspace like tests/conftest.py make_workspace: source files (hard links), test data, config.json."""
    (fresh(path) / "sourcedata").mkdir()
    for name, src in sources.items():
        os.link(src, path / "sourcedata" / name)
    shutil.copytree(ROOT / "testdata", path / "testdata")
    cfg = json.loads((ROOT / "config.json").read_text(encoding="utf-8"))
    cfg["url"] = CLOSED_URL
    # The data files are whole before a run starts: none is still landing, so none need wait out the settle time
    # (a file generated a moment ago would otherwise be left for the next run).
    cfg["ingestion"] = {"settle_seconds": 0, "unterminated_seconds": 0}
    (path / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    return path


def copy_workspace(src: Path, dst: Path) -> Path:
    """A copy of a workspace to work on: source files hard-linked (never written), everything else copied."""
    def copy(s: str, d: str) -> None:
        """Hard-link a source file, copy anything else."""
        if Path(s).parent.name == "sourcedata":
            os.link(s, d)
        else:
            shutil.copy2(s, d)
    shutil.rmtree(dst, ignore_errors=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dst, symlinks=True, copy_function=copy)  # the release links are relative
    return dst


def add_source(ws: Path, name: str, src: Path) -> None:
    """A new data file arrives in a workspace's sourcedata/."""
    os.link(src, ws / "sourcedata" / name)


def ingested(label: str) -> dict[str, Path]:
    """Workspaces where ours and the straightforward ingest have ingested a size (built unmeasured if needed)."""
    if label not in STATE["ingested"]:
        say(f"preparing: ingesting {label} (unmeasured)")
        files = source_files(label)
        ours = make_workspace(DATA / "ingest" / f"{label}-ours", files)
        run(ours_cmd("ingestion.py", ours), ours)
        sf = make_workspace(DATA / "ingest" / f"{label}-straightforward", files)
        run(sf_cmd("ingest", sf), sf)
        STATE["ingested"][label] = {"ours": ours, "straightforward": sf}
    return STATE["ingested"][label]


def trained(label: str) -> dict[str, Path]:
    """Workspaces with a trained, scored model: ours deployed, the straightforward one pickled."""
    if label not in STATE["trained"]:
        say(f"preparing: training {label} (unmeasured)")
        src = ingested(label)
        ours = copy_workspace(src["ours"], DATA / "train" / f"{label}-ours")
        sf = copy_workspace(src["straightforward"], DATA / "train" / f"{label}-straightforward")
        for cmd in (ours_cmd("training.py", ours), ours_cmd("scoring.py", ours)):
            run(cmd, ours)
        for cmd in (sf_cmd("train", sf), sf_cmd("score", sf)):
            run(cmd, sf)
        deploy(label, ours, sf)
    return STATE["trained"][label]


def deploy(label: str, ours: Path, sf: Path) -> None:
    """Deploy ours's trained model and remember both trained workspaces."""
    run(ours_cmd("deployment.py", ours), ours)
    STATE["trained"][label] = {"ours": ours, "straightforward": sf}


def fill_history(ws: Path, runs: int) -> None:
    """Add runs synthetic fullprocess runs to a workspace's history store with history.py's own functions."""
    # Each run ingested a batch and checked drift on it (per-feature figures included); every 50th also retrained,
    # scored and deployed. The checks cover the store's live batches in order, the last one its last batch alone,
    # so the tick sees nothing unchecked and the report reads the latest batch as it would in production.
    cfg = load_config(ws / "config.json")
    batches = read_manifest(cfg)["batches"]
    if not batches:
        raise BenchError(f"{ws}: nothing ingested to write a history over")
    ids, added = [b["id"] for b in batches], [b["rows_added"] for b in batches]
    upto = {0: 0, **{b: sum(added[:i + 1]) for i, b in enumerate(ids)}}  # rows in the dataset up to each batch
    rng = random.Random(0)
    release = 1 + max((int(p.name) for p in (cfg["prod_deployment_path"] / "releases").iterdir()
                       if p.name.isdigit()), default=0)
    with history.connect(cfg) as db:
        start = 0
        for i in range(runs):
            # runs before the last spread over the batches before the last one: many check no whole batch of
            # their own, as many 10-minute ticks would between two data files
            end = ids[-1] if i == runs - 1 else [0, *ids][(len(ids) - 1) * (i + 1) // (runs - 1)]
            rows = added[-1] if i == runs - 1 else max(1, upto[ids[-2] if len(ids) > 1 else 0] // runs)
            began, secs = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=10 * i), rng.uniform(2, 30)
            iso = (iso_ms(began), iso_ms(began + timedelta(seconds=secs)))
            retrain = i % 50 == 49
            check = synthetic_check(rng, cfg, release, rows, (start, end), retrain)
            name = f"sourcedata/batch{i:04d}.csv"
            result = {"outcome": "ok", "new_files": [name], "check": check}
            run_id = history.record_run(db, "fullprocess", *iso, secs, "ok", check["reason"], result)
            history.record_run(db, "ingestion", *iso, secs / 3, "ok", "", {"rejected_files": [], "ingested_files": [
                {"name": name, "batch": end, "rows_read": rows, "rows_added": rows, "rows_removed": 0,
                 "replaced": False}]}, parent_id=run_id)
            history.record_drift_check(db, run_id, check)
            if retrain:
                release += 1
                record_retrain(db, run_id, iso, secs, release, check, upto[end])
            else:
                history.record_decision(db, run_id, "keep", f"release {release} stays")
            start = end


def iso_ms(t: datetime) -> str:
    """A UTC time as the history store writes it (history.now_iso)."""
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def synthetic_check(rng: random.Random, cfg: dict[str, Any], release: int, rows: int, batches: tuple[int, int],
                    drifted: bool) -> dict[str, Any]:
    """A plausible drift check of rows new rows, those of the store batches after batches[0] up to batches[1], with
    per-feature figures."""
    f1 = rng.gauss(0.86, 0.01)
    return {"release": release, "rule": "raw", "new_rows": rows, "new_score": f1, "ci_low": f1 - 0.01,
            "ci_high": f1 + 0.01, "deployed_score": 0.86, "threshold": 0.86,
            "verdict": "drift" if drifted else "no-drift", "reason": f"F1 {f1:.3f} on {rows:,} new rows",
            "data_verdict": "OK", "batch_from": batches[0], "batch_to": batches[1],
            "features": [{"feature": f, "psi": rng.uniform(0, 0.05), "psi_floor": 0.02, "ks": rng.uniform(0, 0.03),
                          "ks_pvalue": rng.random(), "missing_rate": rng.uniform(0.008, 0.012), "verdict": "OK"}
                         for f in cfg["feature_columns"]]}


def record_retrain(db: Any, run_id: int, iso: tuple[str, str], secs: float, release: int,
                   check: dict[str, Any], rows: int) -> None:
    """The training (on rows rows), scoring and deployment a synthetic run did after its check found drift."""
    scores = {"f1": check["new_score"] + 0.02, "precision": 0.85, "recall": 0.88, "accuracy": 0.9, "roc_auc": 0.95,
              "rows": 600, "model_sha256": f"{release:064x}"}
    history.record_run(db, "training", *iso, secs / 3, "ok", "", {"rows": rows, "data_batch": check["batch_to"]},
                       parent_id=run_id)
    history.record_run(db, "scoring", *iso, 1.0, "ok", "", scores, parent_id=run_id)
    history.record_run(db, "deployment", *iso, 0.1, "ok", "", {"version": release, "action": "deploy",
                       "model_sha256": scores["model_sha256"], "f1": scores["f1"]}, parent_id=run_id)
    history.record_score(db, run_id, "challenger", scores)
    history.record_decision(db, run_id, "retrain", check["reason"])
    history.record_decision(db, run_id, "deploy", f"deployed release {release}")


# ---------------------------------------------------------------- cases

def row(label: str, impl: str, command: str, runs: list[dict[str, Any]], ref: dict[str, Any] | None = None,
        note: str = "") -> dict[str, Any]:
    """One line of a case's table: the statistics of runs and their ratio to a reference's."""
    s = stats(runs)
    return {"size": label, "impl": impl, "command": command, "stats": s, "note": note,
            "ratio": s["wall"] / ref["wall"] if ref else None, "cpu_ratio": s["cpu"] / ref["cpu"] if ref else None}


def target(label: str, what: str, value: float, limit: float, unit: str, met: bool) -> dict[str, Any]:
    """One target judged: what was measured, its value, the limit, met or not."""
    return {"size": label, "what": what, "value": value, "limit": limit, "unit": unit, "met": met}


def ratio_target(label: str, what: str, r: dict[str, Any], limit: float) -> dict[str, Any]:
    """A wall-time ratio target judged on a table row (its CPU ratio kept beside, for a busy machine)."""
    return {**target(label, what, r["ratio"], limit, "x", r["ratio"] <= limit), "cpu_ratio": r["cpu_ratio"]}


def heavy_imports(importtime: str) -> list[str]:
    """The HEAVY libraries named in a `python -X importtime` report (its stderr)."""
    found = set()
    for line in importtime.splitlines():
        if line.startswith("import time:") and "|" in line:
            found.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return [m for m in HEAVY if m in found]


def case_tick(label: str, reps: int) -> dict[str, Any]:
    """Case 1: a cron tick that finds no new data, against `python -c pass` and the straightforward tick."""
    ws = copy_workspace(trained(label)["ours"], DATA / "tick" / f"{label}-ours")
    fill_history(ws, HISTORY_RUNS)
    sf = copy_workspace(ingested(label)["straightforward"], DATA / "tick" / f"{label}-straightforward")
    cmds = {"python -c pass": [PY, "-c", "pass"], "ours": ours_cmd("fullprocess.py", ws),
            "straightforward": sf_cmd("tick", sf)}
    # The copied workspace may still owe an output refresh (a full run leaves that to its next tick): tick until
    # one says it found nothing, as cron's ticks would.
    for _ in range(3):
        out = run(cmds["ours"], ws)["stdout"]
        if out.startswith("no new data"):
            break
    else:
        raise BenchError(f"our tick did work on a workspace with no new data: {out.strip()[:300]}")
    if output(run(cmds["straightforward"], sf))["new_files"]:
        raise BenchError("the straightforward tick found new files")
    # Imports are checked on a separate, unmeasured tick: -X importtime writes a line per module and would slow
    # the timed ones. It sees every module the tick imports, lazily imported ones included (sys.modules at the
    # start would not).
    heavy = heavy_imports(run([PY, "-X", "importtime", *cmds["ours"][1:]], ws)["stderr"])
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in cmds}
    for _ in range(reps):
        for name, cmd in cmds.items():  # interleaved, so a busy moment on the machine hits every command alike
            runs[name].append(run(cmd, ws))
            if name == "ours" and not runs[name][-1]["stdout"].startswith("no new data"):
                raise BenchError(f"our tick did work: {runs[name][-1]['stdout'].strip()[:300]}")
    base = stats(runs["python -c pass"])
    rows = [row(label, "python -c pass", "`python -c pass`", runs["python -c pass"], base),
            row(label, "ours", "`fullprocess.py` (a release deployed, nothing new)", runs["ours"], base,
                "imports " + (", ".join(heavy) if heavy else "none of " + ", ".join(HEAVY))),
            row(label, "straightforward", "`straightforward.py tick`", runs["straightforward"], base)]
    return {"rows": rows, "targets": [
        ratio_target(label, "tick / `python -c pass`", rows[1], TICK_LIMIT),
        {**target(label, "libraries the tick imports", len(heavy), 0, "imports", not heavy),
         "names": heavy}]}


def case_incremental(label: str, reps: int, sf_reps: int) -> dict[str, Any]:
    """Case 2: one new file on top of the ingested rows, against that file alone into an empty workspace."""
    src, rows_new = ingested(label), SIZES[label] // FILES
    new = new_file(rows_new)
    runs: dict[str, list[dict[str, Any]]] = {"alone": [], "ours": [], "straightforward": []}
    added: dict[str, int] = {}
    for _ in range(reps):
        alone = make_workspace(DATA / "incremental" / f"{label}-alone", {NEW_FILE: new})
        runs["alone"].append(run(ours_cmd("ingestion.py", alone, "--json"), alone))
        added["alone"] = output(runs["alone"][-1])["rows_added"]
        ws = copy_workspace(src["ours"], DATA / "incremental" / f"{label}-ours")
        add_source(ws, NEW_FILE, new)
        runs["ours"].append(run(ours_cmd("ingestion.py", ws, "--json"), ws))
        added["ours"], total = output(runs["ours"][-1])["rows_added"], output(runs["ours"][-1])["total_rows"]
        if len(runs["straightforward"]) >= sf_reps:
            continue
        sf = copy_workspace(src["straightforward"], DATA / "incremental" / f"{label}-straightforward")
        add_source(sf, NEW_FILE, new)
        runs["straightforward"].append(run(sf_cmd("ingest", sf), sf))
        added["straightforward"] = output(runs["straightforward"][-1])["rows"]
    base = stats(runs["alone"])
    rows = [row(label, "ours, the new file alone", f"`ingestion.py` ({rows_new:,} rows, empty workspace)",
                runs["alone"], base),
            row(label, "ours", f"`ingestion.py` ({rows_new:,} new rows on {SIZES[label]:,})", runs["ours"], base),
            row(label, "straightforward", "`straightforward.py ingest` (re-reads all 11 files)",
                runs["straightforward"], base)]
    same = added["ours"] == added["alone"] and added["straightforward"] == total
    note = (f"Rows: the new file adds {added['ours']:,} rows on top of the ingested ones ({added['alone']:,} "
            f"alone); {total:,} in all, the straightforward ingest writes {added['straightforward']:,}"
            + ("." if same else " (**the counts differ**)."))
    return {"rows": rows, "notes": [note],
            "targets": [ratio_target(label, "incremental / the file alone", rows[1], 1.2)]}


def duckdb_cmd(ws: Path) -> list[Any]:
    """DuckDB's de-duplicating ingest of a workspace's source files into one CSV, as a fresh process."""
    files = ", ".join(f"'sourcedata/{p.name}'" for p in sorted((ws / "sourcedata").glob("*.csv")))
    return [PY, "-c", DUCKDB_PROGRAM, f"COPY (SELECT DISTINCT * FROM read_csv([{files}])) TO 'duckdb.csv'"]


def case_ingest(label: str, reps: int, sf_reps: int) -> dict[str, Any]:
    """Case 3: ingest 10 files into an empty workspace: ours, DuckDB, the floor and the straightforward ingest."""
    files = source_files(label)
    cmds: dict[str, Callable[[Path], list[Any]]] = {
        "duckdb": duckdb_cmd, "floor": lambda ws: floor_cmd("ingest", ws),
        "store floor": lambda ws: floor_cmd("store", ws),
        "store floor (DuckDB)": lambda ws: floor_cmd("store", ws, "--engine", "duckdb"),
        "ours": lambda ws: ours_cmd("ingestion.py", ws, "--json"), "straightforward": lambda ws: sf_cmd("ingest", ws)}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in cmds}
    kept: dict[str, int] = {}
    for _ in range(reps):
        for impl, cmd in cmds.items():  # interleaved, so a busy moment on the machine hits every command alike
            if impl == "straightforward" and len(runs[impl]) >= sf_reps:
                continue
            ws = make_workspace(DATA / "ingest" / f"{label}-{impl}", files)
            runs[impl].append(run(cmd(ws), ws))
            out = output(runs[impl][-1])
            kept[impl] = out["total_rows"] if impl == "ours" else out["rows"]
    STATE["ingested"][label] = {k: DATA / "ingest" / f"{label}-{k}" for k in ("ours", "straightforward")}
    base = stats(runs["duckdb"])
    parts = {k: median_of(runs["floor"], k) for k in ("read_s", "dedup_s", "write_s")}
    rows = [row(label, "DuckDB", "`COPY (SELECT DISTINCT * FROM read_csv([...])) TO 'duckdb.csv'`",
                runs["duckdb"], base, f"{median_of(runs['duckdb'], 'seconds'):.2f} s after the import"),
            row(label, "ours", "`ingestion.py` (store and exports)", runs["ours"], base,
                f"{median_of(runs['ours'], 'seconds'):.2f} s inside the step"),
            row(label, "floor", "`floor.py ingest` (pyarrow)", runs["floor"], base,
                f"read {parts['read_s']:.2f} s, de-duplicate {parts['dedup_s']:.2f} s, "
                f"write {parts['write_s']:.2f} s"),
            row(label, "store floor", "`floor.py store` (pyarrow; our store's files, no checks)",
                runs["store floor"], base, f"{median_of(runs['store floor'], 'seconds'):.2f} s after the imports"),
            row(label, "store floor (DuckDB)", "`floor.py store --engine duckdb` (DuckDB reads, hashes, writes)",
                runs["store floor (DuckDB)"], base,
                f"{median_of(runs['store floor (DuckDB)'], 'seconds'):.2f} s after the imports"),
            row(label, "straightforward", "`straightforward.py ingest`", runs["straightforward"], base,
                f"{median_of(runs['straightforward'], 'seconds'):.2f} s after the imports")]
    same = len(set(kept.values())) == 1
    note = ("Rows kept after de-duplication: " + ", ".join(f"{k} {v:,}" for k, v in kept.items())
            + ("." if same else " (**they differ**)."))
    peak = rows[1]["stats"]["peak_max_mb"]
    targets = [ratio_target(label, "ingest / DuckDB", rows[1], 1.2),
               target(label, "ingest peak memory", peak, 4096, "MB", peak < 4096)]
    return {"rows": rows, "notes": [note], "targets": targets if label == TARGET_SIZE else []}


def case_train(label: str, reps: int, sf_reps: int) -> dict[str, Any]:
    """Case 4: training.py + scoring.py against fitting the same Pipeline on in-memory arrays."""
    src = ingested(label)
    ws = copy_workspace(src["ours"], DATA / "train" / f"{label}-ours")
    sf = copy_workspace(src["straightforward"], DATA / "train" / f"{label}-straightforward")
    arrays = DATA / "train" / f"{label}-arrays"
    run(floor_cmd("arrays", ws, "--out", arrays), ws)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in ("reference", "ours", "straightforward",
                                                              "pyarrow read", "our read")}
    f1: dict[str, float] = {}
    for _ in range(reps):
        runs["reference"].append(run(floor_cmd("fit", ws, "--arrays", arrays), ws))
        fitted = run(ours_cmd("training.py", ws, "--json"), ws)
        scored = run(ours_cmd("scoring.py", ws, "--json"), ws)
        runs["ours"].append(combine(fitted, scored))
        f1["ours"] = output(scored)["f1"]
        if len(runs["straightforward"]) >= sf_reps:
            continue
        fitted = run(sf_cmd("train", sf), sf)
        scored = run(sf_cmd("score", sf), sf)
        runs["straightforward"].append(combine(fitted, scored))
        f1["straightforward"] = output(scored)["f1"]
    for _ in range(reps):  # the training read alone, in processes of its own (no fit after it)
        runs["pyarrow read"].append(run(floor_cmd("read", ws), ws))
        runs["our read"].append(run([PY, BENCH / "drift_probe.py", "--config", ws / "config.json", "--read"], ws))
    deploy(label, ws, sf)
    base = stats(runs["reference"])
    fit_s = median_of(runs["reference"], "fit_s")
    split = [statistics.median(r["parts"][i] for r in runs["ours"]) for i in (0, 1)]
    sf_split = [statistics.median(r["parts"][i] for r in runs["straightforward"]) for i in (0, 1)]
    rows = [row(label, "reference", "`floor.py fit` (build_pipeline on arrays)", runs["reference"], base,
                f"the fit itself {fit_s:.2f} s"),
            row(label, "ours", "`training.py` + `scoring.py`", runs["ours"], base,
                f"training {split[0]:.2f} s + scoring {split[1]:.2f} s; F1 {f1['ours']:.4f}"),
            row(label, "straightforward", "`straightforward.py train` + `score`", runs["straightforward"], base,
                f"train {sf_split[0]:.2f} s + score {sf_split[1]:.2f} s; F1 {f1['straightforward']:.4f}")]
    read_s = {k: median_of(runs[k], "seconds") for k in ("pyarrow read", "our read")}
    probe = output(runs["our read"][-1])
    reads = [row(label, "reference read", "`floor.py read` (pyarrow: the batch files to pandas)",
                 runs["pyarrow read"], None, f"the read itself {read_s['pyarrow read']:.3f} s, "
                 f"{output(runs['pyarrow read'][-1])['rows']:,} rows"),
             row(label, "our read", "`drift_probe.py --read` (store.read_dataset)", runs["our read"], None,
                 f"the read itself {read_s['our read']:.3f} s and +{probe['extra_mb']:.0f} MB, "
                 f"{probe['rows']:,} rows (de-duplicated)")]
    reads[0]["ratio"], reads[1]["ratio"] = 1.0, read_s["our read"] / read_s["pyarrow read"]
    reads[1]["cpu_ratio"] = None  # the processes also import different things: only the reads are compared
    note = (f"Against the fit alone (no interpreter start, imports or loading the arrays) ours takes "
            f"{rows[1]['stats']['wall'] / fit_s:.2f}x. The two reads: their ratio compares the reads themselves "
            "(after the imports), ours / pyarrow's.")
    targets = [ratio_target(label, "train + score / reference", rows[1], 1.5),
               target(label, "training read / pyarrow read", reads[1]["ratio"], 1.3, "x", reads[1]["ratio"] <= 1.3)]
    return {"rows": rows + reads, "notes": [note], "targets": targets if label == TARGET_SIZE else []}


def case_drift(label: str, reps: int) -> dict[str, Any]:
    """Case 5: the drift check on as many new rows as the size has (1M at 1m), in one process."""
    t, rows_new = trained(label), SIZES[label]
    new = new_file(rows_new)
    ws = copy_workspace(t["ours"], DATA / "drift" / f"{label}-ours")
    add_source(ws, NEW_FILE, new)
    run(ours_cmd("ingestion.py", ws), ws)
    sf = copy_workspace(t["straightforward"], DATA / "drift" / f"{label}-straightforward")
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "straightforward": []}
    for _ in range(reps):
        runs["ours"].append(run([PY, BENCH / "drift_probe.py", "--config", ws / "config.json"], ws))
        runs["straightforward"].append(run(sf_cmd("drift", sf, "--new", new), sf))
    ours = [output(r) for r in runs["ours"]]
    secs, extra = statistics.median(o["seconds"] for o in ours), statistics.median(o["extra_mb"] for o in ours)
    parts = {k: statistics.median(o["parts"][k] for o in ours) for k in ours[0]["parts"]}
    sf_secs = median_of(runs["straightforward"], "seconds")
    rows = [row(label, "ours", "`drift_probe.py` (fullprocess.drift_check)", runs["ours"], None,
                f"the check {secs:.3f} s and +{extra:.0f} MB over the {ours[0]['rss_before_mb']:.0f} MB "
                f"after the imports; {ours[0]['new_rows']:,} rows, verdicts {ours[0]['verdict']} / "
                f"{ours[0]['data_verdict']}"),
            row(label, "straightforward", "`straightforward.py drift`", runs["straightforward"], None,
                f"the check {sf_secs:.2f} s after the imports")]
    rows[0]["ratio"] = secs / sf_secs
    note = ("Ours part by part (a second pass in the same process): "
            + ", ".join(f"{k[:-2].replace('_', ' ')} {v:.3f} s" for k, v in parts.items())
            + ". The ratio compares the checks themselves (after the imports), ours / straightforward.")
    return {"rows": rows, "notes": [note],
            "targets": [target(label, "drift check time", secs, 1.0, "s", secs < 1.0),
                        target(label, "drift check memory over the interpreter", extra, 200, "MB", extra < 200)]}


def case_report(label: str, reps: int) -> dict[str, Any]:
    """Case 7: reporting.py with the largest size ingested and 1,000 runs of history."""
    ws = copy_workspace(trained(label)["ours"], DATA / "report" / f"{label}-ours")
    fill_history(ws, HISTORY_RUNS)
    diag = run(ours_cmd("diagnostics.py", ws, "--json"), ws)
    runs = [run(ours_cmd("reporting.py", ws, "--json"), ws) for _ in range(reps)]
    pdf = max(output(r)["bytes"] for r in runs) / MB
    rows = [row(label, "ours", "`reporting.py`", runs, None, f"PDF {pdf:.2f} MB")]
    wall = rows[0]["stats"]["wall"]
    note = (f"Set-up, unmeasured by the target: `diagnostics.py` (which the report reads, as fullprocess refreshes "
            f"it first) took {diag['wall']:.1f} s and {diag['peak_mb']:,.0f} MB at this size.")
    return {"rows": rows, "notes": [note],
            "targets": [target(label, "report time", wall, 10.0, "s", wall < 10.0),
                        target(label, "report PDF size", pdf, 2.0, "MB", pdf < 2.0)]}


def case_big_file(label: str, reps: int) -> dict[str, Any]:
    """Case 8: ingestion.py ingesting one large CSV (5 GB at TARGET_SIZE) into an empty store, for its peak memory."""
    path = big_file(label)
    runs: list[dict[str, Any]] = []
    for _ in range(reps):
        ws = make_workspace(DATA / "bigfile" / f"{label}-ours", {"big.csv": path})
        runs.append(run(ours_cmd("ingestion.py", ws, "--json"), ws))
        out = output(runs[-1])
        if out["rejected_files"] or not out["rows_read"]:  # a rejection exits 0, but then nothing was measured
            why = "; ".join(f["reason"] for f in out["rejected_files"]) or "no rows read"
            raise BenchError(f"ingestion.py did not ingest the {path.stat().st_size:,}-byte file: {why}")
    size = path.stat().st_size
    chunk = load_config(ws / "config.json")["ingestion"]["chunk_bytes"]
    rows = [row(label, "ours", f"`ingestion.py` (one file of {size / MB:,.0f} MB)", runs, None,
                f"{out['rows_read']:,} rows read, {out['total_rows']:,} kept; "
                f"{median_of(runs, 'seconds'):.1f} s inside the step")]
    peak = rows[0]["stats"]["peak_max_mb"]
    limit = 1.5 * GB / MB
    note = (f"The file is {size:,} bytes, read {chunk // MB} MB at a time (ingestion.chunk_bytes); the store's "
            f"files and finaldata.csv it leaves: {folder_bytes(ws / 'ingesteddata') / MB:,.0f} MB.")
    targets = [target(label, f"ingest peak memory, one {size / GB:,.2f} GB file", peak, limit, "MB", peak < limit)]
    return {"rows": rows, "notes": [note], "targets": targets if label == TARGET_SIZE else []}


def folder_bytes(path: Path) -> int:
    """The bytes of the files under a folder."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def case_api(seconds: float, rows: int, write: bool) -> dict[str, Any]:
    """Case 6: bench/bench_api.py with rows more ingested rows than the shipped data, summarised from its JSON."""
    # Extra rows because /scoring and /summarystats are meant to cost the same whatever the data's size.
    started = time.time()
    cmd = [PY, BENCH / "bench_api.py", "--seconds", seconds, "--extra-rows", rows, *([] if write else ["--no-doc"])]
    p = subprocess.run([str(c) for c in cmd], cwd=ROOT)
    if p.returncode != 0 or bench_api.RESULTS.stat().st_mtime < started:
        raise BenchError(f"bench/bench_api.py exited with {p.returncode} (its output is above)")
    info = json.loads(bench_api.RESULTS.read_text(encoding="utf-8"))
    targets = []
    for name, method, path, _, limit in bench_api.ENDPOINTS:
        r = info["results"][name]
        ratio = r["ours"]["rps"] / r["straightforward"]["rps"]
        errors = r["ours"]["errors"] + r["straightforward"]["errors"]
        targets.append(target(f"+{rows:,} rows", f"{method} {path} req/s, ours / straightforward", ratio, limit, "x>=",
                              ratio >= limit and errors == 0))
    return {"rows": [], "targets": targets, "notes": [
        "Measured and written up by `bench/bench_api.py` in its own section below, \"API throughput\"."]}


# ---------------------------------------------------------------- the report

CASES: dict[int, tuple[str, str]] = {
    1: ("Cron tick with no new data", "`fullprocess.py --config WS/config.json` on a workspace whose ten files "
        "are ingested and whose model is deployed, with 1,000 runs in its history store, against `python -c pass` "
        "and the straightforward tick (`bench/straightforward.py tick`: imports pandas and scikit-learn, then "
        "finds every file name in ingestedfiles.txt). Ours as cron runs it, after a full run deployed a release: "
        "a plain `python fullprocess.py --config ...`, which reads the store's manifest.json and lists the input "
        "folder. One more tick, unmeasured, runs under `python -X importtime` to see which libraries it imports. "
        f"Target: imports neither pandas, pyarrow nor scikit-learn, and within {TICK_LIMIT:g}x of `python -c pass`."),
    2: ("Incremental ingest: one new file on top of the ingested store", "`ingestion.py` with an eleventh file of "
        "a tenth of the rows (1M on 10M) in sourcedata/: one more Parquet batch, the index, the manifest, and the "
        "new rows appended to finaldata.csv; against `ingestion.py` ingesting that file alone into an empty "
        "store; the straightforward ingest reads all eleven files again. Target: within 1.2x of the file alone."),
    3: ("Full ingest of 10 files", "`ingestion.py` into an empty workspace (ten Parquet batches, the index, the "
        "manifest, and the exports finaldata.csv and ingestedfiles.txt), against DuckDB (`python -c` importing "
        "duckdb and running `COPY (SELECT DISTINCT * FROM read_csv([the ten files])) TO 'duckdb.csv'`: its "
        "multi-threaded CSV reader, column types sniffed, a hash DISTINCT, one CSV written), the floor "
        "(`bench/floor.py ingest`: pyarrow.csv multi-threaded read with the column types given, de-duplication "
        "by a 64-bit row hash, pyarrow.csv write of finaldata.csv), the store floor (`bench/floor.py store`: "
        "what keeping our store's files takes at the least, file by file, two files in flight: the bytes read and "
        "SHA-256 hashed, pyarrow's typed read, a row hash on the Arrow buffers, one Parquet batch per file with "
        "its hashes, de-duplication against the earlier files, finaldata.csv from the files' own lines; no checks, "
        "manifest or index), the same with DuckDB as the engine (`--engine duckdb`: DuckDB's read_csv, hash() and "
        "COPY to Parquet for each batch) and the straightforward ingest "
        "(`bench/straightforward.py ingest`: pandas read_csv per file, concat, drop_duplicates, to_csv). Targets "
        "at 10M: within 1.2x of DuckDB, peak below 4 GB."),
    4: ("Training and scoring", "`training.py` then `scoring.py` (read the store's labelled rows, fit, reference "
        "profile, model file with its hash; score on the test data), against the reference "
        "(`bench/floor.py fit`: a process that loads the same rows as numpy arrays from .npy and fits "
        "training.build_pipeline() on them) and the straightforward train + score. Beside them the training read "
        "alone: `bench/drift_probe.py --read` times store.read_dataset(cfg, read_manifest(cfg)) after its imports "
        "(the batches' data columns, filtered to the rows the dataset keeps, to pandas), against `bench/floor.py "
        "read` timing pyarrow's pq.read_table of store/batches/*.parquet (the same data columns, no filter) to "
        "pandas. Targets at 10M: train + score within 1.5x of the reference (the smaller sizes are context: there "
        "a second interpreter importing scikit-learn weighs more than the fit); the read within 1.3x of pyarrow's."),
    5: ("Drift check on the new rows", "`bench/drift_probe.py` imports what fullprocess.run_pipeline has "
        "imported when it calls the check (pandas, scikit-learn, our steps), then times "
        "fullprocess.drift_check(): load the deployed model (hash checked), read the rows first ingested after "
        "the last check from the store (fullprocess.rows_to_check), predict, model drift with its bootstrap "
        "interval, PSI and KS per feature against the release's reference profile. Memory is the peak of the call "
        "above the process's RSS just before it (VmHWM reset there). The straightforward check "
        "(`bench/straightforward.py drift`) re-reads the training data and runs scipy's ks_2samp and a PSI per "
        "feature. Target at 1M new rows: below 1 s and 200 MB."),
    6: ("API throughput", "`bench/bench_api.py` (ours under gunicorn against `bench/straightforward_app.py` on "
        "Flask's development server)."),
    7: ("Report", "`reporting.py` (confusion matrix, ROC curve, trend charts over the history, the PDF) with the "
        "largest size ingested and 1,000 synthetic runs in the history store (written with history.py's "
        "functions: each run ingested a batch and checked drift, the checks covering the store's batches in "
        "order; every 50th retrained and deployed; release numbers in it run past the workspace's real release "
        "1). Targets: below 10 s, PDF below 2 MB."),
    8: ("A 5 GB file", "`ingestion.py` ingesting one CSV of about 5 GB (generate_data.py's rows, 1% duplicates; at "
        "a smaller size the file is smaller in proportion: 500 MB at 1M) into an empty store: read "
        "ingestion.chunk_bytes (32 MB) at a time into one Parquet batch (row hashes past 4M spilled to disk by hash "
        "range), then the dataset's hashes one range at a time, the index, the manifest and finaldata.csv. Target "
        "at 10M (the 5 GB file): peak memory below 1.5 GB."),
}


def seconds_text(s: float) -> str:
    """A duration for a table: milliseconds under a second, else seconds."""
    return f"{s * 1000:,.0f} ms" if s < 1 else f"{s:,.2f} s" if s < 100 else f"{s:,.0f} s"


def value_text(t: dict[str, Any]) -> str:
    """A target's measured value with its unit (and the CPU ratio beside a wall-time ratio)."""
    value, unit, cpu_ratio = t["value"], t["unit"], t.get("cpu_ratio")
    if unit == "imports":
        return ", ".join(t["names"]) or "none"
    if unit in ("x", "x>="):
        return f"{value:,.2f}x" + (f" (CPU {cpu_ratio:,.2f}x)" if cpu_ratio else "")
    if unit == "s":
        return seconds_text(value)
    return f"{value:,.0f} MB" if value >= 10 else f"{value:,.2f} MB"


def limit_text(t: dict[str, Any]) -> str:
    """A target's limit as written in the tables."""
    if t["unit"] == "imports":
        return "none of " + ", ".join(HEAVY)
    if t["unit"] == "x>=":
        return f">= {t['limit']:g}x"
    if t["unit"] == "x":
        return f"<= {t['limit']:g}x"
    return f"< {t['limit']:g} {t['unit']}" if t["unit"] == "s" else f"< {t['limit']:,g} MB"


def case_table(rows: list[dict[str, Any]], ref_name: str) -> list[str]:
    """The measurements of one case as a Markdown table."""
    lines = [f"| size | implementation | command | wall time, median (min-max) | peak memory | CPU | ratio to "
             f"{ref_name} | other processes | notes |", "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        s = r["stats"]
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:,.2f}x" + (
            f" (CPU {r['cpu_ratio']:,.2f}x)" if r.get("cpu_ratio") else "")
        lines.append(f"| {r['size']} | {r['impl']} | {r['command']} | {seconds_text(s['wall'])} "
                     f"({seconds_text(s['wall_min'])}-{seconds_text(s['wall_max'])}) | {s['peak_mb']:,.0f} MB | "
                     f"{seconds_text(s['cpu'])} | {ratio} | {fmt(s['others_cores'], 2)} | {r['note']} |")
    return lines


REFERENCE = {1: "`python -c pass`", 2: "the file alone", 3: "DuckDB", 4: "the reference (of the fit or the read)",
             5: "straightforward (the check itself)", 7: "-", 8: "-"}


def render(info: dict[str, Any]) -> str:
    """The docs/benchmarks.md section between the suite marks."""
    m, results = info["machine"], info["results"]
    lines = [MARKS[0], "## Benchmark suite: ours against DuckDB, the libraries' floor and a straightforward "
             "implementation",
             "", f"Generated by `make bench` (`bench/run.py {' '.join(info['argv'])}`".rstrip() + f") on "
             f"{info['date']}; the run took {info['minutes']:.1f} minutes. A re-run rewrites this section, and "
             "case 6 rewrites the API section below; the notes outside the two are written by hand.", "",
             f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB memory, Linux {m['kernel']}. Other "
             "engineers' work shares the 2 cores: the `other processes` column gives the most cores the rest of the "
             "machine used on average during a row's runs (not given for rows under a second in all).",
             f"- Software: Python {info['versions']['python']}; "
             + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if k != "python") + ".",
             "- Data: `generate_data.py --rows N --files 10 --out bench/data/source/rowsN` (new files: `--files 1 "
             f"--seed {NEW_SEED}`; case 8's one large file: the same rows, seed {BIG_FILE_SEED}, written "
             f"{CHUNK_ROWS:,} rows at a time), generated once and kept (git-ignored); 1% of each file's rows are "
             "duplicates of others in it, and a few feature cells are empty.",
             "", "| size | rows | files | bytes |", "|---|---:|---:|---:|"]
    lines += [f"| {d['label']} | {d['rows']:,} | {d['files']} | {d['bytes']:,} |" for d in info["data"]]
    lines += ["", f"- Method: every command is a fresh process started by the runner; wall time by the clock, peak "
              "memory the largest RSS sampled every 2 ms (psutil), CPU (user + system, the process and its children) "
              "from the kernel's rusage when the runner reaps it (wait4). Each "
              f"figure is the median of {info['repeat']} runs ({info['tick_repeat']} for the tick, "
              f"{info['drift_repeat']} for the drift check, {info['big_file_repeat']} for the large file; the "
              "straightforward implementation "
              f"{info['big_sf_repeat']} at {BIG // 1_000_000}M rows, where it is slow and only context), min-max in "
              "brackets; the data files are in the page cache, and what preparing a run wrote is on disk before it "
              "starts (os.sync). A workspace per case and size under "
              "bench/data/<case>/, with its own config.json (relative paths) and the source files hard-linked in.",
              "- Ratios are of median wall times, ours / the reference the case names; targets are judged on them. "
              "Beside each, the same ratio of CPU time (user + system): it moves less when other processes take "
              "the cores, but charges a multi-threaded reference (pyarrow) for all its threads.",
              "",
              "### Targets", "", "| case | size | measured | value | target | met |",
              "|---|---|---|---:|---:|---|"]
    for n, r in sorted(results.items()):
        if "error" in r:
            lines.append(f"| {n}. {CASES[n][0]} | - | **failed** | - | - | - |")
        for t in r.get("targets", []):
            value = value_text(t)
            lines.append(f"| {n}. {CASES[n][0]} | {t['size']} | {t['what']} | {value} | {limit_text(t)} | "
                         f"{'yes' if t['met'] else '**no**'} |")
    for n, r in sorted(results.items()):
        lines += ["", f"### {n}. {CASES[n][0]}", "", CASES[n][1], ""]
        if "error" in r:
            lines += [f"**The case failed:** {r['error']}"]
            continue
        if r.get("rows"):
            lines += case_table(r["rows"], REFERENCE[n]) + [""]
        lines += [*r.get("notes", [])]
    return "\n".join([*lines, MARKS[1]]) + "\n"


# ---------------------------------------------------------------- the run

def suite(args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen cases at the chosen sizes; returns everything measured."""
    labels = [s for s in SIZES if s in args.sizes]
    results: dict[int, dict[str, Any]] = {}

    def attempt(n: int, fn: Callable[..., dict[str, Any]], *fargs: Any) -> None:
        """Run one case at one size, merging its rows into the case's results; a failure is recorded."""
        say(f"case {n} ({CASES[n][0][0].lower() + CASES[n][0][1:]}) {' '.join(str(a) for a in fargs[:1])}")
        try:
            r = fn(*fargs)
        except (BenchError, OSError, ValueError, KeyError) as e:
            say(f"  case {n} failed: {e}")
            results.setdefault(n, {})["error"] = f"{type(e).__name__}: {e}" if not isinstance(e, BenchError) \
                else str(e)
            return
        into = results.setdefault(n, {"rows": [], "targets": [], "notes": []})
        for key in ("rows", "targets"):
            into.setdefault(key, []).extend(r.get(key, []))
        size = f"{fargs[0]}: " if fargs[0] in SIZES else ""
        into.setdefault("notes", []).extend(f"- {size}{note}" for note in r.get("notes", []))
        for t in r.get("targets", []):
            say(f"  {t['size']}: {t['what']} {value_text(t)} (target {limit_text(t)}): "
                f"{'met' if t['met'] else 'NOT met'}")

    def sf_reps(label: str) -> int:
        """Runs of the straightforward implementation per figure: fewer at the largest sizes (it is slow)."""
        return min(args.repeat, args.big_sf_repeat) if SIZES[label] >= BIG else args.repeat

    for label in labels:
        if 3 in args.cases:
            attempt(3, case_ingest, label, args.repeat, sf_reps(label))
        if 4 in args.cases:
            attempt(4, case_train, label, args.repeat, sf_reps(label))
        if 1 in args.cases:
            attempt(1, case_tick, label, args.tick_repeat)
    if 2 in args.cases:
        attempt(2, case_incremental, labels[-1], args.repeat, sf_reps(labels[-1]))
    if 8 in args.cases:
        attempt(8, case_big_file, labels[-1], args.big_file_repeat)
    if 5 in args.cases:
        attempt(5, case_drift, max((s for s in labels if SIZES[s] <= DRIFT_ROWS), key=SIZES.get,
                                   default=labels[0]), args.drift_repeat)
    if 7 in args.cases:
        attempt(7, case_report, labels[-1], args.repeat)
    if 6 in args.cases:
        attempt(6, case_api, args.api_seconds, args.api_rows, not args.no_doc)
    data = []
    for label in labels:
        files = list(source_files(label).values())
        data.append({"label": label, "rows": SIZES[label], "files": len(files),
                     "bytes": sum(p.stat().st_size for p in files)})
    big = SOURCE / f"big{labels[-1]}"
    if 8 in args.cases and (big / "recipe.json").exists():
        data.append({"label": f"{labels[-1]}, case 8", "rows": json.loads((big / "recipe.json").read_text())["rows"],
                     "files": 1, "bytes": (big / "big.csv").stat().st_size})
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "argv": sys.argv[1:],
            "minutes": (time.monotonic() - T0) / 60, "machine": machine(),
            "versions": versions(LIBRARIES), "data": data, "repeat": args.repeat,
            "big_sf_repeat": args.big_sf_repeat, "tick_repeat": args.tick_repeat, "drift_repeat": args.drift_repeat,
            "big_file_repeat": args.big_file_repeat, "results": results}


def main() -> None:
    """Parse arguments, run the suite, write the results and the doc section, clean up the workspaces."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=",".join(SIZES), help=f"sizes to run, of {', '.join(SIZES)} (all)")
    p.add_argument("--cases", default=",".join(str(n) for n in CASES), help="case numbers to run (all)")
    p.add_argument("--repeat", type=int, default=3, help="runs per figure (3)")
    p.add_argument("--big-sf-repeat", type=int, default=1,
                   help="runs per figure of the straightforward implementation at 10M rows and more (1)")
    p.add_argument("--tick-repeat", type=int, default=10, help="runs per figure of the tick, case 1 (10)")
    p.add_argument("--drift-repeat", type=int, default=5, help="runs per figure of the drift check, case 5 (5)")
    p.add_argument("--big-file-repeat", type=int, default=1,
                   help="runs of the large file's ingest, case 8 (1: minutes at 5 GB, and its target is memory)")
    p.add_argument("--api-seconds", type=float, default=20.0, help="bench_api.py --seconds, case 6 (20)")
    p.add_argument("--api-rows", type=int, default=1_000_000,
                   help="bench_api.py --extra-rows, case 6: rows ingested beside the shipped data (1000000)")
    p.add_argument("--keep", action="store_true", help="keep the workspaces under bench/data/ afterwards")
    p.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = p.parse_args()
    args.sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    args.cases = {int(c) for c in args.cases.split(",") if c.strip()}
    unknown = [s for s in args.sizes if s not in SIZES] + [str(c) for c in args.cases if c not in CASES]
    if unknown or not args.sizes:
        p.error(f"unknown size or case: {', '.join(unknown) or 'none given'}")
    try:
        info = suite(args)
    finally:
        if not args.keep:
            for case in ("ingest", "train", "tick", "incremental", "drift", "report", "bigfile"):
                shutil.rmtree(DATA / case, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(info, indent=1, default=str), encoding="utf-8")
    section = render(info)
    print("\n" + section)
    if not args.no_doc:
        write_doc(DOC, section, MARKS, before=bench_api.START_MARK)
        print(f"wrote {DOC.relative_to(ROOT)}; raw figures in {RESULTS.relative_to(ROOT)}")
    say("done")


if __name__ == "__main__":
    main()
