"""Time our drift check in one process, as fullprocess.py runs it after ingesting new rows (bench/run.py case 5).

    python bench/drift_probe.py --config WS/config.json

Imports first what fullprocess.run_pipeline has imported when it calls the check (fullprocess, drift,
ingestion, scoring, training: pandas, numpy, scikit-learn), resets the peak (VmHWM) and reads VmRSS, then calls
fullprocess.drift_check(cfg, release, size): load the deployed model (hash checked), read the rows of
finaldata.csv after the last check, predict, model drift with its bootstrap interval, PSI and KS per feature
against the release's reference profile. Prints one JSON line: the call's wall time, VmRSS before it, VmHWM
(peak) after it, the verdicts, and the same work again split into its parts (a second, warm pass).
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
import drift  # noqa: E402 (importable only after the sys.path line)
import fullprocess  # noqa: E402 (importable only after the sys.path line)
import history  # noqa: E402 (importable only after the sys.path line)
import ingestion  # noqa: E402 (importable only after the sys.path line)
import releases  # noqa: E402 (importable only after the sys.path line)
import scoring  # noqa: E402,F401 (after the sys.path line; imported only for its memory, see above)
import training  # noqa: E402,F401 (after the sys.path line; imported only for its memory, see above)
from config import load_config  # noqa: E402 (importable only after the sys.path line)


def parts(cfg: dict[str, Any], release: dict[str, Any], size: int) -> dict[str, float]:
    """drift_check's work timed part by part (the same calls it makes)."""
    t = [time.perf_counter()]
    model, manifest = releases.load_deployed_model(cfg)
    t.append(time.perf_counter())
    start = max(history.safely(cfg, "the last check", history.checked_up_to, reading=True) or 0,
                int(manifest["model"].get("data_bytes", 0)))
    new = ingestion.read_finaldata_since(cfg, start if start <= size else 0,
                                         keep=[*cfg["feature_columns"], cfg["target_column"]])
    t.append(time.perf_counter())
    y = new[cfg["target_column"]].to_numpy()
    pred = model.predict(new[cfg["feature_columns"]])
    t.append(time.perf_counter())
    past = history.safely(cfg, "past scores", history.past_new_scores, release["version"], reading=True) or []
    drift.model_drift(y, pred, float(manifest["scores"]["f1"]), past, cfg["drift"])
    t.append(time.perf_counter())
    profile = json.loads((Path(manifest["folder"]) / "reference_profile.json").read_text(encoding="utf-8"))
    drift.data_drift(profile, new, cfg["feature_columns"], cfg["drift"])
    t.append(time.perf_counter())
    names = ["load_model_s", "read_rows_s", "predict_s", "model_drift_s", "data_drift_s"]
    return {n: b - a for n, a, b in zip(names, t, t[1:], strict=False)}


def main() -> None:
    """Run the check once, measured, then once more in parts; print the JSON line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="a workspace with a release and unchecked rows")
    cfg = load_config(p.parse_args().config)
    release = releases.current_release(cfg)
    size = (cfg["output_folder_path"] / ingestion.FINALDATA_FILE).stat().st_size
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: the peak of the imports is not the check's
    rss0 = psutil.Process().memory_info().rss / 2**20
    t0 = time.perf_counter()
    check = fullprocess.drift_check(cfg, release, size)
    seconds = time.perf_counter() - t0
    peak = peak_rss_mb(psutil.Process().pid)
    out = {"seconds": seconds, "rss_before_mb": rss0, "peak_mb": peak, "extra_mb": peak - rss0,
           "new_rows": check["new_rows"], "verdict": check["verdict"], "data_verdict": check["data_verdict"],
           "parts": parts(cfg, release, size)}
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
