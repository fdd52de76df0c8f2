"""Time our drift check (or the store read training makes) in one process, as our steps run it (bench/run.py
cases 5 and 4).

    python bench/drift_probe.py --config WS/config.json           # the drift check on the unchecked rows
    python bench/drift_probe.py --config WS/config.json --read    # store.read_dataset, as training.train reads

Imports first what fullprocess.run_pipeline has imported when it calls the check (fullprocess, drift,
ingestion, scoring, training: pandas, numpy, scikit-learn), resets the peak (VmHWM) and reads VmRSS, then makes
the calls fullprocess makes: load the deployed model (hash checked), read the rows first ingested after the last
check from the store (fullprocess.rows_to_check), and fullprocess.drift_check (predict, model drift with its
bootstrap interval, PSI and KS per feature against the release's reference profile). Prints one JSON line: the
wall time, VmRSS before, VmHWM (peak) after, the verdicts, and the time of each of the three calls. With --read it
makes training's one read instead, store.read_dataset(cfg, read_manifest(cfg)) (the manifest, the index, the
batches' kept rows to pandas), so the read is timed apart from the fit: the wall time, rows and memory.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from measure import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # our modules live at the repository root, bench/ alone is on the path

# All after the sys.path line above (hence E402); scoring and training are not called here but fullprocess's
# pipeline has imported them when it runs the check, so their memory counts before the check as it does there.
import drift  # noqa: E402,F401 (after the sys.path line; imported before the check, as fullprocess has it)
import fullprocess  # noqa: E402 (importable only after the sys.path line)
import ingestion  # noqa: E402,F401 (after the sys.path line; imported only for its memory, see above)
import releases  # noqa: E402 (importable only after the sys.path line)
import scoring  # noqa: E402,F401 (after the sys.path line; imported only for its memory, see above)
import store  # noqa: E402 (importable only after the sys.path line)
import training  # noqa: E402,F401 (after the sys.path line; imported only for its memory, see above)
from config import load_config  # noqa: E402 (importable only after the sys.path line)
from filerecord import read_manifest  # noqa: E402 (importable only after the sys.path line)


def main() -> None:
    """Run the check (or the read) once, measured part by part; print the JSON line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="a workspace with a release and unchecked rows")
    p.add_argument("--read", action="store_true", help="time training's store read instead of the drift check")
    args = p.parse_args()
    cfg = load_config(args.config)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: the peak of the imports is not the check's
    rss0 = psutil.Process().memory_info().rss / 2**20
    out = read_once(cfg) if args.read else check_once(cfg)
    peak = peak_rss_mb(psutil.Process().pid)
    json.dump({**out, "rss_before_mb": rss0, "peak_mb": peak, "extra_mb": peak - rss0}, sys.stdout)
    print()


def check_once(cfg: dict[str, Any]) -> dict[str, Any]:
    """The drift check as fullprocess makes it on the rows it has not checked: the time of each call."""
    t = [time.perf_counter()]
    model, manifest = releases.load_deployed_model(cfg)
    t.append(time.perf_counter())
    new, unlabelled, _ = fullprocess.rows_to_check(cfg, manifest, read_manifest(cfg))
    t.append(time.perf_counter())
    check = fullprocess.drift_check(cfg, model, manifest, new, unlabelled)
    t.append(time.perf_counter())
    names = ["load_model_s", "read_rows_s", "check_s"]
    return {"seconds": t[-1] - t[0], "new_rows": check["new_rows"], "verdict": check["verdict"],
            "data_verdict": check["data_verdict"],
            "parts": {n: b - a for n, a, b in zip(names, t, t[1:], strict=False)}}


def read_once(cfg: dict[str, Any]) -> dict[str, Any]:
    """Training's read of the store (training.train's store.read_dataset call): its time and rows."""
    t0 = time.perf_counter()
    df = store.read_dataset(cfg, read_manifest(cfg))
    return {"seconds": time.perf_counter() - t0, "rows": len(df)}


if __name__ == "__main__":
    main()
