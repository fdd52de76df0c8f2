"""Drift-detection quality: how often our drift checks, Evidently and NannyML raise an alarm on the same batches.

    python bench/drift_quality.py              # default run (~10 min on 2 cores); rewrites docs/drift_quality.md
    python bench/drift_quality.py --quick      # a small run (a few minutes), same tables with fewer repeats
    python bench/drift_quality.py --no-doc     # print the tables only

The anchors (Evidently, NannyML) need pandas 2 while the project pins pandas 3, so they run in their own venv:

    python3 -m venv bench/.anchors-venv
    bench/.anchors-venv/bin/pip install -r bench/anchors-requirements.txt

Reference: REF_ROWS clients of the "new" period (generate_data.clients_fast), the population the deployed model
is trained on; the model is training.build_pipeline(cfg) fitted on them, its deployed F1 is measured on a held-out
sample, and our profile is drift.reference_profile of the same rows. Evidently and NannyML get the same reference
rows (with the model's probabilities and labels for CBPE). Batches, each drawn afresh from the same population:
unchanged; one feature (rotating over the three, one per batch) shifted by +0.25, +0.5 or +1 reference sd, or
spread x1.5 around its mean, labels redrawn from the generator's exit rule (P(y|x) unchanged); concept drift (same
features, labels from a different exit rule); prior shift (exit rate x2 or x0.5 by resampling exits and stayers).
Each (scenario, size) is repeated with a seeded generator; an alarm rate is the share of batches that alarm.

Our verdicts are the calls fullprocess makes: drift.data_drift (DRIFT is an alarm) and drift.model_drift with the
raw rule and no history ("drift" is an alarm; "insufficient-data" is not), and, where drift.py has it,
drift.estimate_performance without labels ("drop" is an alarm). The anchors get the batches as Parquet
files and answer with JSON from a subprocess in their venv (this same file, run with --anchor-worker).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import pickle
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "drift_quality.md"
ANCHORS_PY = ROOT / "bench" / ".anchors-venv" / "bin" / "python"
# Both anchors phone home unless told not to; set before anything imports them, and inherited by the subprocesses.
QUIET_ENV = {"NML_DISABLE_USAGE_LOGGING": "1", "DO_NOT_TRACK": "1"}

SEED = 20261130
REF_ROWS = 100_000      # the training sample: reference for every tool
HOLDOUT_ROWS = 200_000  # held-out rows for the deployed F1, as deployment scores the release on test data
SIZES = [20, 100, 1_000, 10_000, 100_000]
REPEATS = {20: 200, 100: 200, 1_000: 100, 10_000: 30, 100_000: 10}
QUICK_REPEATS = {20: 30, 100: 30, 1_000: 15, 10_000: 4, 100_000: 2}
TIMING_ROWS, QUICK_TIMING_ROWS = 1_000_000, 100_000
CONCEPT_CUT = 0.77  # the concept-drift rule's cut on last month / usual month, chosen to keep the exit rate ~28%

# (key, label, kind, parameter)
SCENARIOS: list[tuple[str, str, str, float]] = [
    ("none", "unchanged population", "none", 0.0),
    ("shift0.25", "one feature shifted +0.25 sd", "shift", 0.25),
    ("shift0.5", "one feature shifted +0.5 sd", "shift", 0.5),
    ("shift1", "one feature shifted +1 sd", "shift", 1.0),
    ("scale1.5", "one feature's spread x1.5", "scale", 1.5),
    ("concept", "concept drift (new exit rule)", "concept", 0.0),
    ("prior2", "exit rate x2 (resampled)", "prior", 2.0),
    ("prior0.5", "exit rate x0.5 (resampled)", "prior", 0.5),
]
# (key, label) of every verdict the tables show, ours first
TOOLS: list[tuple[str, str]] = [
    ("ours_data", "ours: data drift (DRIFT)"),
    ("ours_model", "ours: model drift (drift, labels)"),
    ("ours_estimated", "ours: estimated F1 drop (no labels)"),
    ("evidently_dataset", "Evidently: dataset drift (>= 50% of columns)"),
    ("evidently_any", "Evidently: any column drifted"),
    ("nannyml_univariate", "NannyML: univariate drift (any feature alert)"),
    ("nannyml_cbpe", "NannyML: CBPE estimated F1 alert"),
]


# ---------------------------------------------------------------------------------------------------- our side


def _project() -> tuple[Any, ...]:
    """The project's modules (importable only in the project's venv, hence imported late)."""
    sys.path.insert(0, str(ROOT))
    import drift
    import generate_data
    import training
    from config import load_config
    return drift, generate_data, training, load_config


def exit_logit(monthly: np.ndarray, yearly: np.ndarray, employees: np.ndarray) -> np.ndarray:
    """The generator's exit rule (generate_data.behaviour), applied to given feature values."""
    return 0.08 * (0.8 * yearly / 12 - monthly) - 0.005 * (employees - 40)


def concept_logit(monthly: np.ndarray, yearly: np.ndarray, employees: np.ndarray) -> np.ndarray:
    """A changed exit rule: clients leave on a relative drop in activity whatever their size or employees."""
    return 8.0 * (CONCEPT_CUT - monthly / np.maximum(yearly / 12, 1.0))


def draw(gen: Any, rng: np.random.Generator, n: int, features: list[str], target: str) -> Any:
    """n clients of the "new" period as float features and a 0/1 label."""
    with np.errstate(over="ignore"):  # the generator's exp overflows for clients far from leaving: p is 0 there
        df = gen.clients_fast(rng, n, "new")
    out = df[features].astype("float64")
    out["y"] = df[target].to_numpy(dtype="int64")
    return out


def relabel(rng: np.random.Generator, df: Any, features: list[str], logit: Any = exit_logit) -> None:
    """Redraw the labels from a rule on the batch's (possibly changed) feature values."""
    with np.errstate(over="ignore"):  # exp overflows far from the boundary, where p is 0 anyway
        p = 1 / (1 + np.exp(-logit(*(df[f].to_numpy() for f in features))))
    df["y"] = (rng.random(len(df)) < p).astype("int64")


def make_batch(gen: Any, rng: np.random.Generator, scenario: tuple[str, str, str, float], n: int, i: int,
               ref: dict[str, Any], features: list[str], target: str) -> Any:
    """Batch i (n rows) of a scenario."""
    _, _, kind, param = scenario
    if kind == "prior":
        # Exits and stayers drawn apart from a big enough pool, in the proportion that multiplies the exit rate.
        k = int(round(min(ref["exit_rate"] * param, 1.0) * n))
        need = max(k / ref["exit_rate"], (n - k) / (1 - ref["exit_rate"]))
        pool = draw(gen, rng, int(need * 1.3) + 200, features, target)
        pos, neg = pool[pool["y"] == 1], pool[pool["y"] == 0]
        import pandas as pd
        both = pd.concat([pos.iloc[rng.choice(len(pos), k, replace=False)],
                          neg.iloc[rng.choice(len(neg), n - k, replace=False)]], ignore_index=True)
        return both.iloc[rng.permutation(n)].reset_index(drop=True)
    df = draw(gen, rng, n, features, target)
    if kind in ("shift", "scale"):
        f = features[i % len(features)]  # one feature per batch, rotating, so each is moved in a third of the runs
        x = df[f].to_numpy()
        x = x + param * ref["sd"][f] if kind == "shift" else ref["mean"][f] + param * (x - ref["mean"][f])
        # Still whole, non-negative counts (employees at least 1), as the data the generator writes.
        df[f] = np.maximum(np.round(x), 1.0 if f == features[2] else 0.0)
        relabel(rng, df, features)
    elif kind == "concept":
        relabel(rng, df, features, concept_logit)
    return df


def setup(seed: int) -> dict[str, Any]:
    """Reference rows, the model trained as the project trains it, its deployed F1, our profile."""
    drift, gen, training, load_config = _project()
    from sklearn.metrics import f1_score
    cfg = load_config()
    features, target = list(cfg["feature_columns"]), cfg["target_column"]
    rng = np.random.default_rng([seed, 0])
    ref = draw(gen, rng, REF_ROWS, features, target)
    model = training.build_pipeline(cfg).fit(ref[features], ref["y"])
    hold = draw(gen, rng, HOLDOUT_ROWS, features, target)
    deployed_f1 = float(f1_score(hold["y"], model.predict(hold[features])))
    ref["proba"] = model.predict_proba(ref[features])[:, 1]
    ref["pred"] = model.predict(ref[features]).astype("int64")
    stats = {"exit_rate": float(ref["y"].mean()), "sd": {f: float(ref[f].std()) for f in features},
             "mean": {f: float(ref[f].mean()) for f in features}}
    return {"drift": drift, "gen": gen, "cfg": cfg, "features": features, "target": target, "ref": ref,
            "model": model, "deployed_f1": deployed_f1, "profile": drift.reference_profile(ref, features),
            "stats": stats, "estimate": getattr(drift, "estimate_performance", None),
            "drift_sha": hashlib.sha256(Path(drift.__file__).read_bytes()).hexdigest()[:12]}


def add_calibration(ctx: dict[str, Any]) -> None:
    """The release's label-free reference (drift.calibration of cross-validated training probabilities), as
    training saves it in the profile, when drift.py has the estimate; else no estimated-performance row."""
    drift, ref, features = ctx["drift"], ctx["ref"], ctx["features"]
    if ctx["estimate"] is None or not hasattr(drift, "calibration"):
        ctx["estimate"] = None
        return
    from sklearn.model_selection import cross_val_predict
    training = _project()[2]
    cv = cross_val_predict(training.build_pipeline(ctx["cfg"]), ref[features], ref["y"], cv=5,
                           method="predict_proba")[:, 1]
    ctx["est_profile"] = {**ctx["profile"], **drift.calibration(cv, ref["y"].to_numpy())}


def estimated_verdict(ctx: dict[str, Any], proba: np.ndarray) -> str | None:
    """Our label-free estimated-performance verdict ("drop" is the alarm), None where drift.py has none."""
    if ctx["estimate"] is None:
        return None
    return str(ctx["estimate"](ctx["est_profile"], proba, ctx["cfg"]["drift"])["verdict"])


def run_ours(ctx: dict[str, Any], repeats: dict[int, int], seed: int, folder: Path | None) -> dict[str, Any]:
    """Our verdicts on every batch; writes each (scenario, size)'s batches as one Parquet file for the anchors."""
    drift, features, cfg, model = ctx["drift"], ctx["features"], ctx["cfg"], ctx["model"]
    rates: dict[str, Any] = {}
    seconds = 0.0
    for s_idx, scenario in enumerate(SCENARIOS):
        key = scenario[0]
        rates[key] = {}
        for n in SIZES:
            rng = np.random.default_rng([seed, 1 + s_idx, n])
            data, model_v, est_v, frames, exit_rates = [], [], [], [], []
            for i in range(repeats[n]):
                b = make_batch(ctx["gen"], rng, scenario, n, i, ctx["stats"], features, ctx["target"])
                t0 = time.perf_counter()
                X = b[features]
                pred = model.predict(X)
                data.append(drift.data_drift(ctx["profile"], b, features, cfg["drift"])["verdict"] == "DRIFT")
                model_v.append(drift.model_drift(b["y"].to_numpy(), pred, ctx["deployed_f1"], [],
                                                 cfg["drift"])["verdict"])
                seconds += time.perf_counter() - t0
                proba = model.predict_proba(X)[:, 1]
                t0 = time.perf_counter()
                est_v.append(estimated_verdict(ctx, proba))
                seconds += time.perf_counter() - t0
                exit_rates.append(float(b["y"].mean()))
                if folder is not None:
                    b["proba"], b["pred"], b["batch"] = proba, pred.astype("int64"), i
                    frames.append(b)
            rates[key][n] = {
                "runs": repeats[n],
                "ours_data": float(np.mean(data)),
                "ours_model": float(np.mean([v == "drift" for v in model_v])),
                "ours_insufficient": float(np.mean([v == "insufficient-data" for v in model_v])),
                "ours_estimated": None if est_v[0] is None else float(np.mean([v == "drop" for v in est_v])),
                "est_insufficient": None if est_v[0] is None else float(np.mean([v == "insufficient-data"
                                                                                  for v in est_v])),
                "exit_rate": float(np.mean(exit_rates)),
            }
            if folder is not None:
                import pandas as pd
                pd.concat(frames, ignore_index=True).to_parquet(folder / f"{key}_{n}.parquet", index=False)
        print(f"  ours: {key} done", flush=True)
    return {"rates": rates, "seconds": seconds}


# -------------------------------------------------------------------------------------------- the anchors' side


def anchor_worker(job_path: Path, out_path: Path) -> None:
    """Run in the anchors' venv: Evidently and NannyML verdicts on the batches a job file names; JSON out."""
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)  # NannyML logs a warning per small chunk
    from importlib import metadata

    import nannyml as nml
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount

    job = json.loads(job_path.read_text())
    features = job["features"]
    ref = pd.read_parquet(job["reference"])
    definition = DataDefinition(numerical_columns=features)
    ref_ds = Dataset.from_pandas(ref[features], data_definition=definition)
    out: dict[str, Any] = {"evidently": {}, "nannyml": {}, "seconds": {"evidently": 0.0, "nannyml": 0.0},
                           "versions": {p: metadata.version(p) for p in ("evidently", "nannyml", "pandas")}}
    for task in job["tasks"]:
        t0 = time.perf_counter()
        if task["tool"] == "evidently":
            df = pd.read_parquet(task["file"])
            dataset, anyone = [], []
            for _, b in df.groupby("batch", sort=True):
                cur = Dataset.from_pandas(b[features].reset_index(drop=True), data_definition=definition)
                # DriftedColumnsCount is the metric behind DataDriftPreset's dataset-drift flag, with the same
                # defaults (per-column test chosen by Evidently, drift_share 0.5); the preset adds per-column
                # metrics and renders plots, four times the time for the same flag.
                value = Report([DriftedColumnsCount()]).run(current_data=cur, reference_data=ref_ds) \
                    .dict()["metrics"][0]["value"]
                dataset.append(bool(value["share"] >= 0.5))
                anyone.append(bool(value["count"] >= 1))
            out["evidently"].setdefault(task["scenario"], {})[str(task["size"])] = {
                "dataset": float(np.mean(dataset)), "any": float(np.mean(anyone)), "runs": len(dataset)}
            out["seconds"]["evidently"] += time.perf_counter() - t0
        else:
            n = task["size"]
            # Chunk = the batch: NannyML sets its thresholds from the reference cut into chunks of the same size.
            uni = nml.UnivariateDriftCalculator(column_names=features, chunk_size=n).fit(ref[features])
            cbpe = nml.CBPE(problem_type="classification_binary", y_pred_proba="proba", y_pred="pred", y_true="y",
                            metrics=["f1"], chunk_size=n).fit(ref[features + ["proba", "pred", "y"]])
            ref_chunks = len(ref) // n
            for scenario, file in task["files"].items():
                df = pd.read_parquet(file)  # rows in batch order, every batch exactly n rows: chunk k = batch k
                u = uni.calculate(df[features]).filter(period="analysis").to_df()
                alerts = np.any([u[(f, "jensen_shannon", "alert")].to_numpy(dtype=bool) for f in features], axis=0)
                c = cbpe.estimate(df[features + ["proba", "pred"]]).filter(period="analysis").to_df()
                cbpe_alerts = c[("f1", "alert")].to_numpy(dtype=bool)
                runs = len(df) // n
                if len(alerts) != runs or len(cbpe_alerts) != runs:
                    raise RuntimeError(f"NannyML made {len(alerts)} chunks of {runs} batches ({scenario}, {n})")
                out["nannyml"].setdefault(scenario, {})[str(n)] = {
                    "univariate": float(alerts.mean()), "cbpe": float(cbpe_alerts.mean()), "runs": runs,
                    "reference_chunks": ref_chunks}
            out["seconds"]["nannyml"] += time.perf_counter() - t0
        print(f"  anchors: {task['tool']} {task.get('scenario', '')} {task['size']} done", flush=True)
    out_path.write_text(json.dumps(out))


def plan_workers(folder: Path, repeats: dict[int, int], jobs: int) -> list[list[dict[str, Any]]]:
    """Split the anchors' work over `jobs` worker processes, balanced by a rough cost estimate."""
    tasks = []
    for n in SIZES:
        # NannyML's fit works through REF_ROWS / n reference chunks: at 20 rows that is most of its time.
        tasks.append((30.0 * 20 / n + 2.0 * len(SCENARIOS),
                      {"tool": "nannyml", "size": n,
                       "files": {s[0]: str(folder / f"{s[0]}_{n}.parquet") for s in SCENARIOS}}))
        for s in SCENARIOS:
            tasks.append((repeats[n] * (0.2 + n * 2e-6), {"tool": "evidently", "scenario": s[0], "size": n,
                                                         "file": str(folder / f"{s[0]}_{n}.parquet")}))
    loads: list[float] = [0.0] * jobs
    plans: list[list[dict[str, Any]]] = [[] for _ in range(jobs)]
    for cost, task in sorted(tasks, key=lambda t: -t[0]):
        w = loads.index(min(loads))
        loads[w] += cost
        plans[w].append(task)
    return [p for p in plans if p]


def run_anchors(python: Path, folder: Path, features: list[str], repeats: dict[int, int],
                jobs: int) -> dict[str, Any]:
    """Start the workers in the anchors' venv and merge their answers."""
    import subprocess
    procs = []
    for w, tasks in enumerate(plan_workers(folder, repeats, jobs)):
        job = folder / f"job{w}.json"
        job.write_text(json.dumps({"reference": str(folder / "reference.parquet"), "features": features,
                                   "tasks": tasks}))
        procs.append((subprocess.Popen([str(python), __file__, "--anchor-worker", str(job),
                                        str(folder / f"out{w}.json")], env={**os.environ, **QUIET_ENV}), w))
    merged: dict[str, Any] = {"evidently": {}, "nannyml": {}, "seconds": {"evidently": 0.0, "nannyml": 0.0}}
    for proc, w in procs:
        if proc.wait() != 0:
            raise SystemExit(f"anchor worker {w} exited with {proc.returncode}")
        part = json.loads((folder / f"out{w}.json").read_text())
        for tool in ("evidently", "nannyml"):
            for s, by_size in part[tool].items():
                merged[tool].setdefault(s, {}).update(by_size)
            merged["seconds"][tool] += part["seconds"][tool]
        merged["versions"] = part["versions"]
    return merged


# ------------------------------------------------------------------------------------------ time and memory


def time_one(tool: str, folder: Path) -> None:
    """One tool's check of the big batch in this fresh process; prints its compute seconds as JSON."""
    t0 = time.perf_counter()
    if tool == "ours":
        drift = _project()[0]
        import pandas as pd
        meta = json.loads((folder / "ours.json").read_text())
        batch = pd.read_parquet(folder / "batch.parquet", columns=meta["features"] + ["y"])
        with open(folder / "model.pkl", "rb") as fh:
            model = pickle.load(fh)  # our own file, written by this run
        pred = model.predict(batch[meta["features"]])
        data = drift.data_drift(meta["profile"], batch, meta["features"], meta["thresholds"])
        if meta["estimated"]:
            proba = model.predict_proba(batch[meta["features"]])[:, 1]
            drift.estimate_performance(meta["profile"], proba, meta["thresholds"])
        check = drift.model_drift(batch["y"].to_numpy(), pred, meta["deployed_f1"], [], meta["thresholds"])
        verdicts = {"data": data["verdict"], "model": check["verdict"]}
    else:
        for k, v in QUIET_ENV.items():
            os.environ.setdefault(k, v)
        warnings.filterwarnings("ignore")
        logging.disable(logging.WARNING)
        import pandas as pd
        features = json.loads((folder / "ours.json").read_text())["features"]
        ref = pd.read_parquet(folder / "reference.parquet")
        batch = pd.read_parquet(folder / "batch.parquet", columns=features + ["proba", "pred"])
        if tool == "evidently":
            from evidently import Report
            from evidently.presets import DataDriftPreset
            value = Report([DataDriftPreset()]).run(current_data=batch[features], reference_data=ref[features]) \
                .dict()["metrics"][0]["value"]
            verdicts = {"dataset_drift": bool(value["share"] >= 0.5)}
        else:
            import nannyml as nml
            if tool == "nannyml-univariate":
                calc = nml.UnivariateDriftCalculator(column_names=features, chunk_size=len(batch))
                res = calc.fit(ref[features]).calculate(batch[features]).filter(period="analysis").to_df()
                verdicts = {"alert": bool(any(res[(f, "jensen_shannon", "alert")].any() for f in features))}
            else:
                calc = nml.CBPE(problem_type="classification_binary", y_pred_proba="proba", y_pred="pred",
                                y_true="y", metrics=["f1"], chunk_size=len(batch))
                res = calc.fit(ref[features + ["proba", "pred", "y"]]).estimate(batch).filter(period="analysis")
                verdicts = {"alert": bool(res.to_df()[("f1", "alert")].any())}
    print(json.dumps({"seconds": time.perf_counter() - t0, "verdicts": verdicts}))


def run_timing(ctx: dict[str, Any], rows: int, seed: int, folder: Path, anchors: Path | None) -> list[dict[str, Any]]:
    """Time and peak memory of each tool checking one unchanged batch of `rows` rows, each in a fresh process."""
    from measure import BenchError, run
    features = ctx["features"]
    rng = np.random.default_rng([seed, 99])
    batch = draw(ctx["gen"], rng, rows, features, ctx["target"])
    batch["proba"] = ctx["model"].predict_proba(batch[features])[:, 1]
    batch["pred"] = ctx["model"].predict(batch[features]).astype("int64")
    batch.to_parquet(folder / "batch.parquet", index=False)
    ctx["ref"].to_parquet(folder / "reference.parquet", index=False)
    estimated = ctx["estimate"] is not None
    (folder / "ours.json").write_text(json.dumps({"features": features, "estimated": estimated,
                                                  "profile": ctx["est_profile"] if estimated else ctx["profile"],
                                                  "deployed_f1": ctx["deployed_f1"],
                                                  "thresholds": ctx["cfg"]["drift"]}))
    with open(folder / "model.pkl", "wb") as fh:
        pickle.dump(ctx["model"], fh)
    what = "data drift + model drift" + (" + estimated F1" if estimated else "")
    cases = [("ours", sys.executable, f"ours: {what} (with predict)")]
    if anchors is not None:
        cases += [("evidently", str(anchors), "Evidently: DataDriftPreset"),
                  ("nannyml-univariate", str(anchors), "NannyML: univariate drift (fit + calculate)"),
                  ("nannyml-cbpe", str(anchors), "NannyML: CBPE F1 (fit + estimate)")]
    out = []
    for tool, python, label in cases:
        try:
            r = run([python, __file__, "--time-one", tool, folder], cwd=ROOT)
            inner = json.loads(r["stdout"].strip().splitlines()[-1])
            out.append({"tool": label, "wall": r["wall"], "cpu": r["cpu"], "peak_mb": r["peak_mb"],
                        "check": inner["seconds"]})
        except BenchError as e:
            out.append({"tool": label, "error": str(e)})
        print(f"  timing: {label} done", flush=True)
    return out


# ---------------------------------------------------------------------------------------------------- report


def pct(v: float | None) -> str:
    """A rate as a table cell."""
    return "n/a" if v is None else f"{100 * v:.1f}%"


def merged_rates(ours: dict[str, Any], anchors: dict[str, Any] | None) -> dict[str, dict[int, dict[str, Any]]]:
    """Every tool's alarm rate per scenario and size in one table."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for key, *_ in SCENARIOS:
        out[key] = {}
        for n in SIZES:
            r = dict(ours["rates"][key][n])
            ev = (anchors or {}).get("evidently", {}).get(key, {}).get(str(n))
            nm = (anchors or {}).get("nannyml", {}).get(key, {}).get(str(n))
            r["evidently_dataset"] = ev["dataset"] if ev else None
            r["evidently_any"] = ev["any"] if ev else None
            r["nannyml_univariate"] = nm["univariate"] if nm else None
            r["nannyml_cbpe"] = nm["cbpe"] if nm else None
            r["reference_chunks"] = nm["reference_chunks"] if nm else None
            out[key][n] = r
    return out


def rate_table(rates: dict[int, dict[str, Any]], repeats: dict[int, int], estimated: bool) -> list[str]:
    """A markdown table: one row per tool, one column per batch size."""
    head = "| tool | " + " | ".join(f"{n:,} rows ({repeats[n]} runs)" for n in SIZES) + " |"
    lines = [head, "|---|" + "---:|" * len(SIZES)]
    for key, label in TOOLS:
        if key == "ours_estimated" and not estimated:
            continue
        cells = []
        for n in SIZES:
            cell = pct(rates[n][key])
            if key.startswith("nannyml") and rates[n]["reference_chunks"] == 1:
                cell += " †"
            if key == "ours_model" and rates[n]["ours_insufficient"] > 0:
                cell += f" ({pct(rates[n]['ours_insufficient'])} insuff.)"
            if key == "ours_estimated" and rates[n]["est_insufficient"]:
                cell += f" ({pct(rates[n]['est_insufficient'])} insuff.)"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def render(args: argparse.Namespace, ctx: dict[str, Any], ours: dict[str, Any], anchors: dict[str, Any] | None,
           anchor_note: str, timing: list[dict[str, Any]], minutes: float, repeats: dict[int, int]) -> str:
    """The whole docs/drift_quality.md page."""
    from measure import machine, versions
    m = machine()
    v = versions(("numpy", "pandas", "scikit-learn"))
    rates = merged_rates(ours, anchors)
    estimated = ctx["estimate"] is not None
    cmd = "python bench/drift_quality.py" + (" --quick" if args.quick else "")
    av = (anchors or {}).get("versions", {})
    lines = [
        "# Drift-detection quality: ours against Evidently and NannyML",
        "",
        f"Generated by `{cmd}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; the run took {minutes:.1f} "
        "minutes. A re-run rewrites this page.",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB memory, Linux {m['kernel']}; other "
        "engineers' work may share the cores.",
        f"- Ours: Python {v['python']}, numpy {v['numpy']}, pandas {v['pandas']}, scikit-learn {v['scikit-learn']} "
        "(the project's .venv). Anchors: " + (f"Evidently {av['evidently']}, NannyML {av['nannyml']}, pandas "
                                            f"{av['pandas']} in bench/.anchors-venv." if av else anchor_note),
        f"- drift.py as run: sha256 {ctx['drift_sha']} (other work changes it; the verdicts are of that file), "
        f"thresholds `{json.dumps(ctx['cfg']['drift'])}` from `config.load_config()`.",
        f"- Reference: {REF_ROWS:,} clients of the \"new\" period (`generate_data.clients_fast`), exit rate "
        f"{ctx['stats']['exit_rate']:.1%}; the model is `training.build_pipeline(cfg)` fitted on them; deployed F1 "
        f"{ctx['deployed_f1']:.3f} on {HOLDOUT_ROWS:,} held-out rows. Every tool gets these rows as its reference "
        "(ours as `drift.reference_profile`; NannyML with the model's probabilities, predictions and labels).",
        "- Batches: drawn afresh from the same population, seeded per scenario and size. Shift and scale move one "
        "feature per batch, rotating over the three (so each feature is moved in a third of the runs), with the "
        "labels redrawn from the generator's exit rule on the moved values (P(y|x) unchanged). Concept drift keeps "
        f"the features and draws labels from another rule (exit when last month < {CONCEPT_CUT} x the usual month, "
        "whatever the firm's size); `generate_data.behaviour` uses one exit rule in both periods, so the \"old\" "
        "period's labels on \"new\" features would be no change at all. Prior shift resamples exits and stayers to "
        "double or halve the exit rate (the features move with it, through the exits' low activity).",
        "- Verdicts: ours as fullprocess calls them, `drift.data_drift` (DRIFT = alarm) and `drift.model_drift` "
        "with the config's thresholds, raw rule, no history (drift = alarm; insufficient-data, shown in brackets, "
        "is not)" + (". Estimated F1 (no labels): `drift.estimate_performance` on the model's probabilities, "
                     "with the release's calibration made by `drift.calibration` from 5-fold cross-validated "
                     "probabilities of the reference rows (as drift.py describes training saving it); \"drop\" "
                     "= alarm, insufficient-data in brackets" if estimated else "")
        + ". Evidently: `DriftedColumnsCount()` (the metric behind `DataDriftPreset`'s dataset-drift flag, "
        "same defaults: Evidently picks each column's test, here Wasserstein distance (normed) > 0.1 because the "
        "reference has over 1,000 rows; the flag is share of drifted columns >= 0.5), and also any drifted column. "
        "NannyML: `UnivariateDriftCalculator` with default methods (Jensen-Shannon, threshold mean + 3 sd of the "
        "reference chunks) and `CBPE` estimated F1 (isotonic calibration, mean +- 3 sd of the reference chunks' "
        "F1), `chunk_size` = the batch size.",
        "",
        "## False alarms on unchanged batches",
        "",
        *rate_table(rates["none"], repeats, estimated),
        "",
        "## Detection rate per change and batch size",
        "",
    ]
    for key, label, *_ in SCENARIOS[1:]:
        er = " / ".join(f"{rates[key][n]['exit_rate']:.0%}" for n in SIZES)
        lines += [f"### {label}", "", f"Exit rate in the batches (by size): {er}.", "",
                  *rate_table(rates[key], repeats, estimated), ""]
    lines += ["† NannyML's reference holds one chunk of this size, so its threshold is that chunk's own value "
              "(mean + 3 x 0): it alarms on nearly everything. A reference of 10+ batch sizes is what its "
              "thresholds need.", ""]
    if not estimated:
        lines += ["Ours, estimated performance without labels: drift.py has no `estimate_performance` (or "
                  "similarly named) function at the time of this run, so there is no row for it.", ""]
    rows = timing[0].get("rows") if timing else None
    lines += [f"## Time and peak memory on one batch of {rows or 0:,} rows x 3 features", "",
              "Each a fresh process (interpreter start, imports, reading the Parquet batch and the reference, "
              "the check), wall and CPU from the runner, peak memory (RSS, sampled every 2 ms) of the whole "
              "process; `check` is the tool's own calls, timed inside the process. Ours predicts with the "
              "deployed model inside the process, as fullprocess does; CBPE is given the probabilities.", "",
              "| tool | wall s | CPU s | check s | peak MB |", "|---|---:|---:|---:|---:|"]
    for t in timing:
        if "error" in t:
            lines.append(f"| {t['tool']} | failed: {t['error'][:200]} | | | |")
        else:
            lines.append(f"| {t['tool']} | {t['wall']:.1f} | {t['cpu']:.1f} | {t['check']:.2f} | "
                         f"{t['peak_mb']:,.0f} |")
    spent = f"ours {ours['seconds']:.0f} s (predict, data drift, model drift{', estimated F1' if estimated else ''})"
    if anchors:
        spent += (f"; Evidently {anchors['seconds']['evidently']:.0f} s; NannyML {anchors['seconds']['nannyml']:.0f} s "
                  "(its fits on the reference included)")
    lines += ["", f"Verdict time over all the quality batches, summed over processes: {spent}.", ""]
    lines += NOTES
    return "\n".join(lines) + "\n"


NOTES = [
    "## Notes",
    "",
    "- The tools answer different questions. Ours and NannyML's univariate check ask whether any feature moved; "
    "Evidently's dataset flag needs half the columns to move, so with one feature moved at a time it can only fire "
    "by also raising false alarms on the others (its \"any column\" row is the comparable one). Model drift needs "
    "labels and fires only on a drop in F1 beyond noise and the margin; CBPE estimates F1 without labels and "
    "alerts both ways (up and down).",
    "- Evidently's default test on a reference over 1,000 rows is a Wasserstein distance with a fixed threshold "
    "(0.1 of the reference's sd), whatever the batch size: on batches of 20-100 rows the distance of pure noise "
    "passes it, and on large batches any move past 0.1 sd is flagged, however small for the model, while one "
    "under 0.1 sd never is.",
    "- NannyML's thresholds come from the spread of its statistic over reference chunks of the batch's size: the "
    "fewer reference chunks, the noisier (10 at 10,000 rows here) and at one chunk meaningless (see †).",
    "- Our data-drift verdict needs both significance (noise floor / p-value for the batch size) and a minimum "
    "effect (psi_drift, ks_drift), so tiny shifts on huge batches are deliberately not DRIFT.",
    "- Concept drift leaves the features unchanged: no data-drift tool and not CBPE (which assumes P(y|x) is "
    "unchanged) can see it; only a labelled check can. Prior shift moves the features too and changes F1 both "
    "ways: more exits raise precision, fewer lower it.",
    "- Rates are over the runs given in each header: at 200 runs a 5% rate is +-3 points (95%), at 10 runs only "
    "0%, 10%, ... 100% exist.",
]


# ---------------------------------------------------------------------------------------------------- main


def main() -> None:
    """Parse arguments, run every tool on the same batches, print the tables and write the doc."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="few repeats and a 100k-row timing batch (a few minutes)")
    p.add_argument("--no-doc", action="store_true", help="print the tables only; leave docs/drift_quality.md")
    p.add_argument("--seed", type=int, default=SEED, help=f"random seed (default {SEED})")
    p.add_argument("--anchors-python", type=Path, default=ANCHORS_PY,
                   help="python of the venv with Evidently and NannyML (default bench/.anchors-venv/bin/python)")
    p.add_argument("--no-anchors", action="store_true", help="ours only")
    p.add_argument("--no-timing", action="store_true", help="skip the time and memory part")
    p.add_argument("--jobs", type=int, default=2, help="anchor worker processes (default 2, one per core)")
    p.add_argument("--anchor-worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    p.add_argument("--time-one", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.anchor_worker:
        anchor_worker(*args.anchor_worker)
        return
    if args.time_one:
        time_one(args.time_one[0], Path(args.time_one[1]))
        return
    os.environ.update(QUIET_ENV)
    started = time.monotonic()
    repeats = QUICK_REPEATS if args.quick else REPEATS
    anchors_py: Path | None = None if args.no_anchors else args.anchors_python
    note = "not run (--no-anchors)."
    if anchors_py is not None and not anchors_py.exists():
        note = (f"not run: {anchors_py} is missing; create it with `python3 -m venv bench/.anchors-venv && "
                "bench/.anchors-venv/bin/pip install -r bench/anchors-requirements.txt`.")
        print(note, file=sys.stderr)
        anchors_py = None
    print("training the reference model", flush=True)
    ctx = setup(args.seed)
    add_calibration(ctx)
    with tempfile.TemporaryDirectory(prefix="drift_quality_") as tmp:
        folder = Path(tmp)
        ours = run_ours(ctx, repeats, args.seed, folder if anchors_py else None)
        anchors = None
        if anchors_py is not None:
            ctx["ref"].to_parquet(folder / "reference.parquet", index=False)
            anchors = run_anchors(anchors_py, folder, ctx["features"], repeats, args.jobs)
        timing: list[dict[str, Any]] = []
        if not args.no_timing:
            rows = QUICK_TIMING_ROWS if args.quick else TIMING_ROWS
            timing = run_timing(ctx, rows, args.seed, folder, anchors_py)
            for t in timing:
                t["rows"] = rows
    page = render(args, ctx, ours, anchors, note, timing, (time.monotonic() - started) / 60, repeats)
    print(page)
    if not args.no_doc:
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(page, encoding="utf-8")
        print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
