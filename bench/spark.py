"""Both engines on the same data: ingestion.py and training.py with "engine" pandas, then spark, each a fresh
process; then the release deployed, a tenth more rows landed and ingested, and the tick's drift check on them
(fullprocess.check_new_rows, in a fresh process); wall time, rows per second and the peak memory of each process
of the step (the step's own Python process; with Spark also its JVM and its Python workers). Results printed as a
Markdown table.

    .venv/bin/python bench/spark.py --rows 10000000                    # data written under bench/data/spark/
    .venv/bin/python bench/spark.py --rows 1000000 --master 'local[2]' --driver-memory 2g
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
MB = 2**20
# The tick's drift check alone, as fullprocess runs it, in a fresh process; prints its verdicts and rows as JSON.
CHECK = """
import json, sys
sys.path.insert(0, %r)
import fullprocess
from config import load_config
from filerecord import read_manifest
cfg = load_config(sys.argv[1])
model, manifest = fullprocess._deployed_model(cfg)
check, start = fullprocess.check_new_rows(cfg, model, manifest, read_manifest(cfg))
print(json.dumps({"rows": check["new_rows"] + check["unlabelled_rows"], "verdict": check["verdict"],
                  "data_verdict": check["data_verdict"]}))
""" % str(ROOT)


def run(cmd: list[str], cwd: Path) -> dict[str, Any]:
    """Run a command; its wall time and the peak RSS of every process it started, grouped by kind."""
    started = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peaks: dict[int, tuple[str, int]] = {}
    done = threading.Event()

    def sample() -> None:
        """Every process of the tree's largest RSS, until the command ends."""
        while not done.is_set():
            try:
                for p in [proc, *proc.children(recursive=True)]:
                    rss = p.memory_info().rss
                    kind = "step" if p.pid == proc.pid else ("jvm" if "java" in p.name() else "worker")
                    peaks[p.pid] = (kind, max(rss, peaks.get(p.pid, (kind, 0))[1]))
            except psutil.Error:
                pass
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[1:])} failed: {err.decode()[-800:]}")
    by_kind: dict[str, float] = {}
    for kind, rss in peaks.values():
        by_kind[kind] = max(by_kind.get(kind, 0.0), rss / MB)
    return {"wall": time.perf_counter() - started, "peak_mb": by_kind, "result": json.loads(out)}


def workspace(base: Path, engine: str, args: argparse.Namespace) -> Path:
    """A workspace of one engine over the shared source data."""
    ws = base / engine
    shutil.rmtree(ws, ignore_errors=True)
    ws.mkdir(parents=True)
    cfg = json.loads((ROOT / "config.json").read_text())
    cfg.update(input_folder_path=str(base / "sourcedata"), test_data_path=str(ROOT / "testdata"), engine=engine,
               ingestion={"settle_seconds": 0, "unterminated_seconds": 0},
               spark={"master": args.master, "driver_memory": args.driver_memory,
                      "conf": {"spark.sql.shuffle.partitions": 4}})
    (ws / "config.json").write_text(json.dumps(cfg, indent=2))
    return ws


def main() -> None:
    """Write the data once, run both engines, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="1g")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "data" / "spark")
    args = parser.parse_args()
    source = args.out / "sourcedata"
    if not (source / f"data{args.files:03d}.csv").exists() or (args.out / "rows").read_text() != str(args.rows):
        shutil.rmtree(source, ignore_errors=True)
        subprocess.run([sys.executable, str(ROOT / "generate_data.py"), "--rows", str(args.rows), "--files",
                        str(args.files), "--out", str(source)], check=True, capture_output=True)
        (args.out / "rows").write_text(str(args.rows))
    size = sum(p.stat().st_size for p in source.glob("*.csv"))
    print(f"{args.rows:,} rows in {args.files} files ({size / MB:,.0f} MB of CSV); Spark {args.master}, driver "
          f"{args.driver_memory}; {psutil.cpu_count()} cores, load average {psutil.getloadavg()[0]:.1f}\n")
    print("| engine | step | wall s | rows/s | peak MB: step process | JVM | largest Python worker |")
    print("|---|---|---|---|---|---|---|")
    later = args.out / "later"
    if not (later / "data001.csv").exists() or (args.out / "later_rows").read_text() != str(args.rows // 10):
        shutil.rmtree(later, ignore_errors=True)
        subprocess.run([sys.executable, str(ROOT / "generate_data.py"), "--rows", str(args.rows // 10), "--files",
                        "1", "--out", str(later), "--period", "old"], check=True, capture_output=True)
        (args.out / "later_rows").write_text(str(args.rows // 10))
    (source / "later.csv").unlink(missing_ok=True)
    for engine in ("pandas", "spark"):
        ws = workspace(args.out, engine, args)
        for step in ("ingestion.py", "training.py", "scoring.py", "deployment.py", "later", "ingestion.py",
                     "check"):
            if step == "later":
                shutil.copy(later / "data001.csv", source / "later.csv")
                continue
            cmd = [sys.executable, str(ROOT / step), "--config", str(ws / "config.json"), "--json"] \
                if step != "check" else [sys.executable, "-c", CHECK, str(ws / "config.json")]
            r = run(cmd, ws)
            if step in ("scoring.py", "deployment.py"):
                continue
            rows = r["result"].get("rows_read") or r["result"].get("rows")
            peak = r["peak_mb"]
            print(f"| {engine} | {step if step != 'check' else 'drift check'} | {r['wall']:.1f} | "
                  f"{rows / r['wall']:,.0f} | {peak.get('step', 0):,.0f} | {peak.get('jvm', 0):,.0f} | "
                  f"{peak.get('worker', 0):,.0f} |", flush=True)
        (source / "later.csv").unlink()
    print(f"\nload average after: {psutil.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
