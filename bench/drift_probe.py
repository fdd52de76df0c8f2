"""Time our drift check in one process, as fullprocess.py runs it after ingesting new rows (bench/run.py case 5).

    python bench/drift_probe.py --config WS/config.json

Imports first what fullprocess.run_pipeline has imported when it calls the check (fullprocess, drift,
ingestion, scoring, training: pandas, numpy, scikit-learn), resets the peak (VmHWM) and reads VmRSS, then makes
the calls fullprocess makes: load the deployed model (hash checked), read the rows of finaldata.csv after the last
check (fullprocess.rows_to_check), and fullprocess.drift_check (predict, model drift with its bootstrap interval,
PSI and KS per feature against the release's reference profile). Prints one JSON line: the wall time, VmRSS before,
VmHWM (peak) after, the verdicts, and the time of each of the three calls.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import psutil
from measure import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # our modules live at the repository root, bench/ alone is on the path

# All after the sys.path line above (hence E402); scoring and training are not called here but fullprocess's
# pipeline has imported them when it runs the check, so their memory counts before the check as it does there.
import artifacts  # noqa: E402 (importable only after the sys.path line)
import drift  # noqa: E402,F401 (after the sys.path line; imported before the check, as fullprocess has it)
import fullprocess  # noqa: E402 (importable only after the sys.path line)
import ingestion  # noqa: E402,F401 (after the sys.path line; imported only for its memory, see above)
import releases  # noqa: E402 (importable only after the sys.path line)
import scoring  # noqa: E402,F401 (after the sys.path line; imported only for its memory, see above)
import training  # noqa: E402,F401 (after the sys.path line; imported only for its memory, see above)
from config import load_config  # noqa: E402 (importable only after the sys.path line)


def main() -> None:
    """Run the check once, measured part by part; print the JSON line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="a workspace with a release and unchecked rows")
    cfg = load_config(p.parse_args().config)
    size = artifacts.path(cfg, "finaldata").stat().st_size
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: the peak of the imports is not the check's
    rss0 = psutil.Process().memory_info().rss / 2**20
    t = [time.perf_counter()]
    model, manifest = releases.load_deployed_model(cfg)
    t.append(time.perf_counter())
    new, _ = fullprocess.rows_to_check(cfg, manifest, size)
    t.append(time.perf_counter())
    check = fullprocess.drift_check(cfg, model, manifest, new)
    t.append(time.perf_counter())
    peak = peak_rss_mb(psutil.Process().pid)
    names = ["load_model_s", "read_rows_s", "check_s"]
    out = {"seconds": t[-1] - t[0], "rss_before_mb": rss0, "peak_mb": peak, "extra_mb": peak - rss0,
           "new_rows": check["new_rows"], "verdict": check["verdict"], "data_verdict": check["data_verdict"],
           "parts": {n: b - a for n, a, b in zip(names, t, t[1:], strict=False)}}
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
